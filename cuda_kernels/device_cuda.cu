// CUDA memory primitives behind tensor/device.h. Every CUDA call is checked; failures come back
// as ERR_DEVICE (ERR_OOM for allocation failures) with the call, file and line in the message.
extern "C" {
#include "tensor/device.h"
}

#include <cuda_runtime.h>

#define CUDA_CHECK(call, err)                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return error_set(err, e_ == cudaErrorMemoryAllocation ? ERR_OOM : ERR_DEVICE,          \
                             "%s failed at %s:%d: %s", #call, __FILE__, __LINE__,                  \
                             cudaGetErrorString(e_));                                              \
    } while (0)

extern "C" ErrorCode cuda_alloc(void **ptr, size_t bytes, Error *err)
{
    *ptr = nullptr;
    CUDA_CHECK(cudaMalloc(ptr, bytes ? bytes : 1), err);
    return ERR_OK;
}

extern "C" void cuda_free(void *ptr)
{
    if (ptr) cudaFree(ptr);
}

extern "C" ErrorCode cuda_memset_zero(void *ptr, size_t bytes, Error *err)
{
    CUDA_CHECK(cudaMemset(ptr, 0, bytes), err);
    return ERR_OK;
}

extern "C" ErrorCode cuda_memcpy(void *dst, int dst_on_device, const void *src, int src_on_device,
                                 size_t bytes, Error *err)
{
    cudaMemcpyKind kind = dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                        : (src_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind), err);
    return ERR_OK;
}

extern "C" void *cuda_host_alloc(size_t bytes)
{
    void *p = nullptr;
    if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
    }
    return p;
}

extern "C" int cuda_host_free(void *ptr)
{
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, ptr) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (a.type != cudaMemoryTypeHost) return 0;
    cudaFreeHost(ptr);
    return 1;
}

extern "C" int cuda_device_count(void)
{
    int n = 0;
    // No driver or no device: report zero devices so the CPU path is used.
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}
