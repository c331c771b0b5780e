#include "nn/formats/tensor_dict.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"

void tensor_dict_init(TensorDict *d) { memset(d, 0, sizeof *d); }

void tensor_dict_free(TensorDict *d)
{
    for (int i = 0; i < d->n; i++) {
        free(d->items[i].name);
        free(d->items[i].data);
    }
    free(d->items);
    memset(d, 0, sizeof *d);
}

ErrorCode tensor_dict_add(TensorDict *d, const char *name, const char *dtype, int ndim,
                          const int64_t *shape, float *data, Error *err)
{
    if (ndim > TENSOR_MAX_DIMS) {
        free(data);
        return error_set(err, ERR_FORMAT, "tensor %s has %d dimensions (max %d)", name, ndim,
                         TENSOR_MAX_DIMS);
    }
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 64;
        NamedTensor *items = realloc(d->items, (size_t)cap * sizeof *items);
        if (!items) {
            free(data);
            return error_set(err, ERR_OOM, "out of memory reading tensors");
        }
        d->items = items, d->cap = cap;
    }
    NamedTensor *t = &d->items[d->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        free(data);
        return error_set(err, ERR_OOM, "out of memory reading tensors");
    }
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    d->n++;
    return ERR_OK;
}

NamedTensor *tensor_dict_find(TensorDict *d, const char *name)
{
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->items[i].name, name)) return &d->items[i];
    return NULL;
}

void tensor_dict_drop_prefix(TensorDict *d, const char *prefix)
{
    size_t n = strlen(prefix);
    int kept = 0;
    for (int i = 0; i < d->n; i++) {
        if (!strncmp(d->items[i].name, prefix, n)) {
            free(d->items[i].name);
            free(d->items[i].data);
        } else {
            d->items[kept++] = d->items[i];
        }
    }
    d->n = kept;
}

void tensor_dict_strip_prefix(TensorDict *d, const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < d->n; i++)
        if (!strncmp(d->items[i].name, prefix, n))
            memmove(d->items[i].name, d->items[i].name + n, strlen(d->items[i].name + n) + 1);
}

static bool is_counter(const char *name)
{
    const char *s = strrchr(name, '.');
    return s && !strcmp(s + 1, "num_batches_tracked");
}

static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    Tensor t = tensor_wrap(NULL, DEVICE_CPU, ndim, shape);
    return tensor_shape_str(&t, buf, len);
}

ErrorCode params_load_dict(ParamStore *ps, TensorDict *d, const char *source, bool allow_missing,
                           bool allow_unexpected, Error *err)
{
    /* Check everything first so a failed load leaves the model untouched. */
    for (int i = 0; i < ps->n; i++) {
        Tensor *t = param_entry_tensor(&ps->entries[i]);
        NamedTensor *nt = tensor_dict_find(d, ps->entries[i].name);
        if (!nt) {
            if (allow_missing) continue;
            return error_set(err, ERR_MISSING, "%s: tensor %s missing", source, ps->entries[i].name);
        }
        int64_t n = shape_numel(nt->ndim, nt->shape);
        bool same = nt->ndim == t->ndim;
        for (int k = 0; same && k < t->ndim; k++) same = nt->shape[k] == t->shape[k];
        if (!same && !(n == tensor_numel(t) && n == 1)) {
            char a[96], b[96];
            return error_set(err, ERR_SHAPE, "%s: tensor %s has shape %s, the model expects %s", source,
                             nt->name, shape_str(nt->ndim, nt->shape, a, sizeof a),
                             tensor_shape_str(t, b, sizeof b));
        }
    }
    if (!allow_unexpected)
        for (int i = 0; i < d->n; i++)
            if (!is_counter(d->items[i].name) && !params_find(ps, d->items[i].name))
                return error_set(err, ERR_FORMAT, "%s: unexpected tensor %s (not in this model)", source,
                                 d->items[i].name);
    for (int i = 0; i < ps->n; i++) {
        Tensor *t = param_entry_tensor(&ps->entries[i]);
        NamedTensor *nt = tensor_dict_find(d, ps->entries[i].name);
        if (!nt) continue;
        if (device_memcpy(t->data, t->device, nt->data, DEVICE_CPU, tensor_bytes(t), err)) return err->code;
    }
    return ERR_OK;
}

ErrorCode params_to_dict(const ParamStore *ps, TensorDict *d, Error *err)
{
    tensor_dict_init(d);
    for (int i = 0; i < ps->n; i++) {
        Tensor *t = param_entry_tensor(&ps->entries[i]);
        float *data = malloc(tensor_bytes(t) ? tensor_bytes(t) : 1);
        if (!data) return error_set(err, ERR_OOM, "out of memory copying parameters");
        if (device_memcpy(data, DEVICE_CPU, t->data, t->device, tensor_bytes(t), err)) {
            free(data);
            return err->code;
        }
        if (tensor_dict_add(d, ps->entries[i].name, "F32", t->ndim, t->shape, data, err)) return err->code;
    }
    return ERR_OK;
}
