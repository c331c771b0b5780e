// Leaky ReLU (and ReLU, slope 0) forward and backward (autograd/op_activation.c).
#include "cuda_kernels/cuda_common.h"

__global__ void k_leaky_fwd(const float *x, float *y, float s, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : s * x[i];
}

__global__ void k_leaky_bwd(const float *y, const float *dy, float *dx, float s, int64_t n)
{
    GRID_STRIDE(i, n) dx[i] += y[i] > 0.0f ? dy[i] : s * dy[i];
}

extern "C" {
void cuda_leaky_relu_forward(Context *ctx, const float *x, float *y, float slope, int64_t n)
{
    k_leaky_fwd<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(x, y, slope, n);
}
void cuda_leaky_relu_backward(Context *ctx, const float *y, const float *dy, float *dx, float slope, int64_t n)
{
    k_leaky_bwd<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(y, dy, dx, slope, n);
}
}
