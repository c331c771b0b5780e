// The fused SGD update of every parameter (nn/sgd.c).
#include "cuda_kernels/cuda_common.h"

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
void cuda_sgd_update_all(Context *ctx, float *const *w, float *const *g, float *const *v, const int64_t *offsets,
                         int n_params, float lr, float momentum, float wd)
{
    if (n_params <= 0) return;
    // The element count lives on the device; a grid sized for ~1M elements per 256-thread block
    // row strides over any total.
    k_sgd_all<<<4096, 256, 0, stream_of(ctx)>>>(w, g, v, offsets, n_params, lr, momentum, wd);
}
}
