/* Memory on a device. CPU memory is 64-byte aligned host memory (buffers of 2 MiB or more 2 MiB aligned and
 * advised as transparent huge pages, tensor/device.c); CUDA memory comes from
 * cuda_kernels/ (only when built with CUDA; otherwise CUDA requests fail with ERR_DEVICE). */
#ifndef TENSOR_DEVICE_H
#define TENSOR_DEVICE_H

#include <stddef.h>

#include "tensor/tensor.h"

ErrorCode device_alloc(void **ptr, Device dev, size_t bytes, Error *err);
void device_free(void *ptr, Device dev);
ErrorCode device_memset_zero(void *ptr, Device dev, size_t bytes, Error *err);
ErrorCode device_memcpy(void *dst, Device dst_dev, const void *src, Device src_dev, size_t bytes,
                        Error *err);
/* Page-locked host memory (fast, asynchronous-capable copies to the GPU); falls back to ordinary
 * aligned memory when CUDA is unavailable. Free with host_free_pinned. */
void *host_alloc_pinned(size_t bytes);
void host_free_pinned(void *ptr);
/* Number of usable CUDA devices (0 when built without CUDA or none present). */
int device_cuda_count(void);

/* Implemented in cuda_kernels/device_cuda.cu when HAVE_CUDA. */
ErrorCode cuda_alloc(void **ptr, size_t bytes, Error *err);
void cuda_free(void *ptr);
ErrorCode cuda_memset_zero(void *ptr, size_t bytes, Error *err);
ErrorCode cuda_memcpy(void *dst, int dst_on_device, const void *src, int src_on_device,
                      size_t bytes, Error *err);
int cuda_device_count(void);
void *cuda_host_alloc(size_t bytes); /* NULL when not possible */
int cuda_host_free(void *ptr);       /* 1 when ptr was page-locked memory */

#endif
