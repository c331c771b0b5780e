// Elementwise ops and reductions to a scalar (autograd/op_elementwise.c).
#include "cuda_kernels/cuda_common.h"

__global__ void k_fill(float *x, float v, int64_t n) { GRID_STRIDE(i, n) x[i] = v; }

__global__ void k_axpy(float *y, const float *x, float a, int64_t n) { GRID_STRIDE(i, n) y[i] += a * x[i]; }

__global__ void k_add(const float *a, const float *b, float *y, int64_t n) { GRID_STRIDE(i, n) y[i] = a[i] + b[i]; }

__global__ void k_scale(const float *x, float *y, float s, int64_t n) { GRID_STRIDE(i, n) y[i] = s * x[i]; }

__global__ void k_add_scalar_grad(float *dx, const float *dy, int64_t n)
{
    float d = dy[0];
    GRID_STRIDE(i, n) dx[i] += d;
}

// One block of 1024 threads sums everything in double: deterministic, and n is at most a few
// million where it is used (losses, test sums).
__global__ void k_sum(const float *x, float *y, int64_t n)
{
    __shared__ double part[1024];
    double acc = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += x[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) y[0] = (float)part[0];
}

extern "C" {
void cuda_fill(Context *ctx, float *x, float v, int64_t n) { k_fill<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(x, v, n); }
void cuda_axpy(Context *ctx, float *y, const float *x, float a, int64_t n)
{
    k_axpy<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(y, x, a, n);
}
void cuda_add(Context *ctx, const float *a, const float *b, float *y, int64_t n)
{
    k_add<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(a, b, y, n);
}
void cuda_scale(Context *ctx, const float *x, float *y, float s, int64_t n)
{
    k_scale<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(x, y, s, n);
}
void cuda_sum(Context *ctx, const float *x, float *y, int64_t n) { k_sum<<<1, 1024, 0, stream_of(ctx)>>>(x, y, n); }
void cuda_add_scalar_grad(Context *ctx, float *dx, const float *dy, int64_t n)
{
    k_add_scalar_grad<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(dx, dy, n);
}
}
