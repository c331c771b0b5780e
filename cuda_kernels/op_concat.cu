// Concatenation (autograd/op_concat.c).
#include "cuda_kernels/cuda_common.h"

__global__ void k_concat(const float *src, float *dst, int64_t outer, int64_t row, int64_t out_row, int64_t offset,
                         bool backward)
{
    int64_t n = outer * row;
    GRID_STRIDE(i, n)
    {
        int64_t o = i / row, k = i % row;
        if (backward)
            dst[i] += src[o * out_row + offset + k]; // src = dy of the concat, dst = dx of input
        else
            dst[o * out_row + offset + k] = src[i];
    }
}

extern "C" {
void cuda_concat_copy(Context *ctx, const float *src, float *dst, int64_t outer, int64_t row, int64_t out_row,
                      int64_t offset, bool backward)
{
    k_concat<<<blocks_for(outer * row), 256, 0, stream_of(ctx)>>>(src, dst, outer, row, out_row, offset, backward);
}
}
