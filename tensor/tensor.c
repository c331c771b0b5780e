#include "tensor/tensor.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"

int64_t shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

int64_t tensor_numel(const Tensor *t) { return shape_numel(t->ndim, t->shape); }

size_t tensor_bytes(const Tensor *t) { return (size_t)tensor_numel(t) * sizeof(float); }

bool tensor_same_shape(const Tensor *a, const Tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

static void set_contiguous_strides(Tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->strides[i] = s;
        s *= t->shape[i];
    }
}

bool tensor_is_contiguous(const Tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

const char *tensor_shape_str(const Tensor *t, char *buf, size_t len)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, len - off, "[");
    for (int i = 0; i < t->ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (off < len) snprintf(buf + off, len - off, "]");
    return buf;
}

Tensor tensor_wrap(float *data, Device dev, int ndim, const int64_t *shape)
{
    Tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.device = dev;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    set_contiguous_strides(&t);
    t.owns = false;
    return t;
}

ErrorCode tensor_new(Tensor *t, Device dev, int ndim, const int64_t *shape, Error *err)
{
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        return error_set(err, ERR_ARG, "tensor_new: %d dimensions (max %d)", ndim, TENSOR_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return error_set(err, ERR_ARG, "tensor_new: negative dimension");
    *t = tensor_wrap(NULL, dev, ndim, shape);
    size_t bytes = tensor_bytes(t);
    if (bytes == 0) bytes = sizeof(float); /* a valid pointer even for empty tensors */
    ErrorCode rc = device_alloc((void **)&t->data, dev, bytes, err);
    if (rc) return rc;
    rc = device_memset_zero(t->data, dev, bytes, err);
    if (rc) {
        device_free(t->data, dev);
        t->data = NULL;
        return rc;
    }
    t->owns = true;
    return ERR_OK;
}

void tensor_free(Tensor *t)
{
    if (t->owns && t->data) device_free(t->data, t->device);
    t->data = NULL;
    t->owns = false;
}

void tensor_fill(Tensor *t, float value)
{
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = value;
}

ErrorCode tensor_copy(Tensor *dst, const Tensor *src, Error *err)
{
    if (tensor_numel(dst) != tensor_numel(src))
        return error_set(err, ERR_SHAPE, "tensor_copy: %lld elements into %lld",
                         (long long)tensor_numel(src), (long long)tensor_numel(dst));
    return device_memcpy(dst->data, dst->device, src->data, src->device, tensor_bytes(src), err);
}

ErrorCode tensor_reshape_view(Tensor *view, const Tensor *src, int ndim, const int64_t *shape,
                              Error *err)
{
    if (!tensor_is_contiguous(src))
        return error_set(err, ERR_ARG, "reshape: source is not contiguous");
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS) return error_set(err, ERR_ARG, "reshape: bad ndim %d", ndim);
    int64_t resolved[TENSOR_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        resolved[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) return error_set(err, ERR_ARG, "reshape: more than one -1");
            infer = i;
        } else {
            known *= shape[i];
        }
    }
    int64_t n = tensor_numel(src);
    if (infer >= 0) {
        if (known == 0 || n % known) return error_set(err, ERR_SHAPE, "reshape: cannot infer -1");
        resolved[infer] = n / known;
    } else if (known != n) {
        char buf[96];
        return error_set(err, ERR_SHAPE, "reshape: %s has %lld elements, target has %lld",
                         tensor_shape_str(src, buf, sizeof buf), (long long)n, (long long)known);
    }
    *view = tensor_wrap(src->data, src->device, ndim, resolved);
    return ERR_OK;
}

ErrorCode tensor_permute_view(Tensor *view, const Tensor *src, const int *perm, Error *err)
{
    int seen = 0;
    Tensor v = *src;
    v.owns = false;
    for (int i = 0; i < src->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= src->ndim || (seen >> perm[i]) & 1)
            return error_set(err, ERR_ARG, "permute: invalid permutation");
        seen |= 1 << perm[i];
        v.shape[i] = src->shape[perm[i]];
        v.strides[i] = src->strides[perm[i]];
    }
    *view = v;
    return ERR_OK;
}

ErrorCode tensor_contiguous_copy(Tensor *dst, const Tensor *src, Error *err)
{
    if (src->device != DEVICE_CPU || dst->device != DEVICE_CPU)
        return error_set(err, ERR_ARG, "tensor_contiguous_copy: CPU tensors only");
    if (!tensor_same_shape(dst, src) || !tensor_is_contiguous(dst))
        return error_set(err, ERR_SHAPE, "tensor_contiguous_copy: shape mismatch");
    int64_t n = tensor_numel(src);
    int64_t idx[TENSOR_MAX_DIMS] = {0};
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        dst->data[i] = src->data[off];
        for (int d = src->ndim - 1; d >= 0; d--) {
            idx[d]++;
            off += src->strides[d];
            if (idx[d] < src->shape[d]) break;
            off -= src->strides[d] * src->shape[d];
            idx[d] = 0;
        }
    }
    return ERR_OK;
}

ErrorCode tensor_load_raw(Tensor *t, const char *path, int ndim, const int64_t *shape, Error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    int64_t want = shape_numel(ndim, shape) * (int64_t)sizeof(float);
    if (size != want) {
        fclose(f);
        return error_set(err, ERR_FORMAT, "%s: %ld bytes, expected %lld for the given shape", path,
                         size, (long long)want);
    }
    ErrorCode rc = tensor_new(t, DEVICE_CPU, ndim, shape, err);
    if (rc) {
        fclose(f);
        return rc;
    }
    size_t got = fread(t->data, 1, (size_t)want, f);
    fclose(f);
    if ((int64_t)got != want) {
        tensor_free(t);
        return error_set(err, ERR_IO, "%s: short read", path);
    }
    return ERR_OK;
}

ErrorCode tensor_save_raw(const Tensor *t, const char *path, Error *err)
{
    if (t->device != DEVICE_CPU) return error_set(err, ERR_ARG, "%s: save a CPU tensor", path);
    FILE *f = fopen(path, "wb");
    if (!f) return error_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    size_t n = (size_t)tensor_numel(t);
    size_t put = fwrite(t->data, sizeof(float), n, f);
    if (fclose(f) != 0 || put != n) return error_set(err, ERR_IO, "%s: write failed", path);
    return ERR_OK;
}

TensorDiff tensor_diff(const float *a, const float *b, int64_t n, double floor)
{
    TensorDiff d = {0, 0, 0};
    double max_b = 0;
    for (int64_t i = 0; i < n; i++) {
        double diff = fabs((double)a[i] - (double)b[i]);
        double mb = fabs((double)b[i]);
        if (!(diff <= d.max_abs)) d.max_abs = diff; /* NaN propagates */
        if (mb > max_b) max_b = mb;
        double rel = diff / (mb > floor ? mb : floor);
        if (!(rel <= d.max_rel)) d.max_rel = rel;
    }
    d.max_rel_to_max = max_b > 0 ? d.max_abs / max_b : d.max_abs;
    return d;
}
