/* Tensor: a float32 N-d array (N <= TENSOR_MAX_DIMS), images in NCHW.
 *
 * Shapes: shape[0..ndim-1], row-major; strides are in elements. Every op in this codebase produces
 * contiguous tensors; non-contiguous views only come from tensor_permute_view and are made
 * contiguous with tensor_contiguous_copy.
 * Ownership: a tensor either owns its buffer (tensor_new*, freed by tensor_free) or borrows it
 * (tensor_wrap, or arena memory freed with the arena); tensor_free on a borrowed tensor only
 * forgets the pointer. The device tag says where data lives; a CUDA tensor's data is a device
 * pointer and must not be dereferenced on the host. */
#ifndef TENSOR_TENSOR_H
#define TENSOR_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

#define TENSOR_MAX_DIMS 6

typedef enum { DEVICE_CPU = 0, DEVICE_CUDA = 1 } Device;

typedef struct {
    float *data;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t strides[TENSOR_MAX_DIMS];
    Device device;
    bool owns;
} Tensor;

/* Shape helpers. */
int64_t shape_numel(int ndim, const int64_t *shape);
int64_t tensor_numel(const Tensor *t);
size_t tensor_bytes(const Tensor *t);
bool tensor_same_shape(const Tensor *a, const Tensor *b);
bool tensor_is_contiguous(const Tensor *t);
/* Writes "[2, 3, 4]" into buf; returns buf. */
const char *tensor_shape_str(const Tensor *t, char *buf, size_t len);

/* Creation. Owned storage, zero-filled. */
ErrorCode tensor_new(Tensor *t, Device dev, int ndim, const int64_t *shape, Error *err);
/* Borrowed storage. */
Tensor tensor_wrap(float *data, Device dev, int ndim, const int64_t *shape);
void tensor_free(Tensor *t);

void tensor_fill(Tensor *t, float value);            /* CPU only */
ErrorCode tensor_copy(Tensor *dst, const Tensor *src, Error *err); /* same numel, any devices */

/* Views: same storage, new shape (numel must match; -1 in one position is inferred). */
ErrorCode tensor_reshape_view(Tensor *view, const Tensor *src, int ndim, const int64_t *shape,
                              Error *err);
/* Permuted view: view.shape[i] = src.shape[perm[i]]; strides follow, so it is not contiguous. */
ErrorCode tensor_permute_view(Tensor *view, const Tensor *src, const int *perm, Error *err);
/* Copies any strided CPU tensor into the contiguous dst of the same shape. */
ErrorCode tensor_contiguous_copy(Tensor *dst, const Tensor *src, Error *err);

/* Raw little-endian float32 files (the reference .f32 files). The loader checks the byte size
 * against the expected shape. */
ErrorCode tensor_load_raw(Tensor *t, const char *path, int ndim, const int64_t *shape, Error *err);
ErrorCode tensor_save_raw(const Tensor *t, const char *path, Error *err);

/* Comparison used by parity tests: max |a-b| and max |a-b| / max|b|, plus elementwise
 * max |a-b|/(|b|+floor). */
typedef struct {
    double max_abs;
    double max_rel_to_max; /* max|a-b| / max|b| */
    double max_rel;        /* max over elements |a-b| / max(|b|, floor) */
} TensorDiff;
TensorDiff tensor_diff(const float *a, const float *b, int64_t n, double floor);

#endif
