#include "tensor/device.h"

#include <stdlib.h>
#include <string.h>

#ifndef HAVE_CUDA
static ErrorCode no_cuda(Error *err)
{
    return error_set(err, ERR_DEVICE, "this build has no CUDA support (rebuild with nvcc, CUDA=1)");
}
ErrorCode cuda_alloc(void **ptr, size_t bytes, Error *err)
{
    (void)ptr, (void)bytes;
    return no_cuda(err);
}
void cuda_free(void *ptr) { (void)ptr; }
ErrorCode cuda_memset_zero(void *ptr, size_t bytes, Error *err)
{
    (void)ptr, (void)bytes;
    return no_cuda(err);
}
ErrorCode cuda_memcpy(void *dst, int dst_on_device, const void *src, int src_on_device,
                      size_t bytes, Error *err)
{
    (void)dst, (void)dst_on_device, (void)src, (void)src_on_device, (void)bytes;
    return no_cuda(err);
}
int cuda_device_count(void) { return 0; }
void *cuda_host_alloc(size_t bytes)
{
    (void)bytes;
    return NULL;
}
int cuda_host_free(void *ptr)
{
    (void)ptr;
    return 0;
}
#endif

void *host_alloc_pinned(size_t bytes)
{
    void *p = cuda_host_alloc(bytes);
    if (p) return p;
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}

void host_free_pinned(void *ptr)
{
    if (ptr && !cuda_host_free(ptr)) free(ptr);
}

ErrorCode device_alloc(void **ptr, Device dev, size_t bytes, Error *err)
{
    *ptr = NULL;
    if (dev == DEVICE_CUDA) return cuda_alloc(ptr, bytes, err);
    size_t rounded = (bytes + 63) & ~(size_t)63;
    *ptr = aligned_alloc(64, rounded ? rounded : 64);
    if (!*ptr) return error_set(err, ERR_OOM, "out of host memory allocating %zu bytes", bytes);
    return ERR_OK;
}

void device_free(void *ptr, Device dev)
{
    if (!ptr) return;
    if (dev == DEVICE_CUDA)
        cuda_free(ptr);
    else
        free(ptr);
}

ErrorCode device_memset_zero(void *ptr, Device dev, size_t bytes, Error *err)
{
    if (dev == DEVICE_CUDA) return cuda_memset_zero(ptr, bytes, err);
    memset(ptr, 0, bytes);
    return ERR_OK;
}

ErrorCode device_memcpy(void *dst, Device dst_dev, const void *src, Device src_dev, size_t bytes,
                        Error *err)
{
    if (dst_dev == DEVICE_CPU && src_dev == DEVICE_CPU) {
        if (bytes) memmove(dst, src, bytes);
        return ERR_OK;
    }
    return cuda_memcpy(dst, dst_dev == DEVICE_CUDA, src, src_dev == DEVICE_CUDA, bytes, err);
}

int device_cuda_count(void) { return cuda_device_count(); }
