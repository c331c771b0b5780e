// Softmax over the last axis (autograd/op_softmax.c).
#include "cuda_kernels/cuda_common.h"

__global__ void k_softmax_fwd(const float *x, float *y, int64_t rows, int64_t C)
{
    GRID_STRIDE(r, rows)
    {
        const float *in = x + r * C;
        float *out = y + r * C;
        float m = in[0];
        for (int64_t c = 1; c < C; c++) m = fmaxf(m, in[c]);
        double sum = 0;
        for (int64_t c = 0; c < C; c++) sum += out[c] = expf(in[c] - m);
        float inv = (float)(1.0 / sum);
        for (int64_t c = 0; c < C; c++) out[c] *= inv;
    }
}

__global__ void k_softmax_bwd(const float *y, const float *dy, float *dx, int64_t rows, int64_t C)
{
    GRID_STRIDE(r, rows)
    {
        double dot = 0;
        for (int64_t c = 0; c < C; c++) dot += (double)y[r * C + c] * dy[r * C + c];
        for (int64_t c = 0; c < C; c++) dx[r * C + c] += y[r * C + c] * (dy[r * C + c] - (float)dot);
    }
}

extern "C" {
void cuda_softmax_forward(Context *ctx, const float *x, float *y, int64_t rows, int64_t C)
{
    k_softmax_fwd<<<blocks_for(rows), 256, 0, stream_of(ctx)>>>(x, y, rows, C);
}
void cuda_softmax_backward(Context *ctx, const float *y, const float *dy, float *dx, int64_t rows, int64_t C)
{
    k_softmax_bwd<<<blocks_for(rows), 256, 0, stream_of(ctx)>>>(y, dy, dx, rows, C);
}
}
