// Permutation into a contiguous tensor (autograd/op_permute.c).
#include "cuda_kernels/cuda_common.h"

struct PermuteGeom {
    int ndim;
    int64_t shape[6], strides[6];
};

__global__ void k_permute(const float *src, float *dst, PermuteGeom g, int64_t n, bool accumulate)
{
    GRID_STRIDE(i, n)
    {
        int64_t rem = i, off = 0;
        for (int d = g.ndim - 1; d >= 0; d--) {
            off += (rem % g.shape[d]) * g.strides[d];
            rem /= g.shape[d];
        }
        if (accumulate)
            dst[i] += src[off];
        else
            dst[i] = src[off];
    }
}

extern "C" {
void cuda_permute(Context *ctx, const float *src, float *dst, int ndim, const int64_t *out_shape,
                  const int64_t *src_strides_permuted, bool accumulate)
{
    PermuteGeom g;
    g.ndim = ndim;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) g.shape[d] = out_shape[d], g.strides[d] = src_strides_permuted[d], n *= out_shape[d];
    k_permute<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(src, dst, g, n, accumulate);
}
}
