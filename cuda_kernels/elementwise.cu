// Elementwise ops, reductions to a scalar, the fused SGD update.
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
__global__ void k_leaky_fwd(const float *x, float *y, float s, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : s * x[i];
}
__global__ void k_leaky_bwd(const float *y, const float *dy, float *dx, float s, int64_t n)
{
    GRID_STRIDE(i, n) dx[i] += y[i] > 0.0f ? dy[i] : s * dy[i];
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

// Grid-stride over the concatenation of all parameters; each element finds its parameter by binary
// search in the prefix sums (159 parameters for MobileNet-0.25: 8 steps).
__global__ void k_sgd_all(float *const *w, float *const *g, float *const *v, const int64_t *offsets, int n_params,
                          float lr, float m, float wd)
{
    int64_t total = offsets[n_params];
    GRID_STRIDE(i, total)
    {
        int lo = 0, hi = n_params - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (offsets[mid] <= i)
                lo = mid;
            else
                hi = mid - 1;
        }
        int64_t k = i - offsets[lo];
        float wi = w[lo][k];
        float d = g[lo][k] + wd * wi;
        float vi = m * v[lo][k] + d;
        v[lo][k] = vi;
        w[lo][k] = wi - lr * vi;
    }
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
void cuda_leaky_relu_forward(Context *ctx, const float *x, float *y, float slope, int64_t n)
{
    k_leaky_fwd<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(x, y, slope, n);
}
void cuda_leaky_relu_backward(Context *ctx, const float *y, const float *dy, float *dx, float slope, int64_t n)
{
    k_leaky_bwd<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(y, dy, dx, slope, n);
}
void cuda_sgd_update_all(Context *ctx, float *const *w, float *const *g, float *const *v, const int64_t *offsets,
                         int n_params, float lr, float momentum, float wd)
{
    if (n_params <= 0) return;
    // The element count lives on the device; a grid sized for ~1M elements per 256-thread block
    // row strides over any total.
    k_sgd_all<<<4096, 256, 0, stream_of(ctx)>>>(w, g, v, offsets, n_params, lr, momentum, wd);
}
}
