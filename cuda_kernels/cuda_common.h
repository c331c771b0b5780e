// Internal helpers of the CUDA kernels: the stream and cuBLAS handle of a Context, launch shapes.
#ifndef CUDA_KERNELS_CUDA_COMMON_H
#define CUDA_KERNELS_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "cuda_kernels/cuda_ops.h"
}

struct CudaState {
    cudaStream_t stream;
    cublasHandle_t blas;
};

static inline cudaStream_t stream_of(Context *ctx) { return ((CudaState *)ctx->cuda)->stream; }
static inline cublasHandle_t blas_of(Context *ctx) { return ((CudaState *)ctx->cuda)->blas; }

static inline unsigned blocks_for(int64_t n, int threads = 256)
{
    int64_t b = (n + threads - 1) / threads;
    if (b > 65535LL * 32) b = 65535LL * 32;
    return (unsigned)(b > 0 ? b : 1);
}

#define GRID_STRIDE(i, n) for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

#endif
