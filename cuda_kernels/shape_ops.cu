// Data movement ops: concat, nearest upsampling, permute; softmax over the last axis.
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

__device__ int nearest_src(int o, int in, int out)
{
    float scale = (float)in / (float)out;
    int s = (int)floorf((float)o * scale);
    return s < in ? s : in - 1;
}

__global__ void k_upsample_fwd(const float *x, float *y, int NC, int H, int W, int Ho, int Wo)
{
    int64_t n = (int64_t)NC * Ho * Wo;
    GRID_STRIDE(i, n)
    {
        int ow = (int)(i % Wo), oh = (int)((i / Wo) % Ho);
        int64_t p = i / ((int64_t)Wo * Ho);
        y[i] = x[(p * H + nearest_src(oh, H, Ho)) * W + nearest_src(ow, W, Wo)];
    }
}

// Gather form of the backward: each input pixel sums the outputs that copied it.
__global__ void k_upsample_bwd(const float *dy, float *dx, int NC, int H, int W, int Ho, int Wo)
{
    int64_t n = (int64_t)NC * H * W;
    GRID_STRIDE(i, n)
    {
        int iw = (int)(i % W), ih = (int)((i / W) % H);
        int64_t p = i / ((int64_t)W * H);
        float acc = 0;
        // Output rows mapping to ih form a contiguous range; scan a window around ih*Ho/H.
        int oh0 = (int)((int64_t)ih * Ho / H) - 2, ow0 = (int)((int64_t)iw * Wo / W) - 2;
        int oh1 = (int)((int64_t)(ih + 1) * Ho / H) + 2, ow1 = (int)((int64_t)(iw + 1) * Wo / W) + 2;
        for (int oh = oh0 < 0 ? 0 : oh0; oh < Ho && oh <= oh1; oh++) {
            if (nearest_src(oh, H, Ho) != ih) continue;
            for (int ow = ow0 < 0 ? 0 : ow0; ow < Wo && ow <= ow1; ow++)
                if (nearest_src(ow, W, Wo) == iw) acc += dy[(p * Ho + oh) * Wo + ow];
        }
        dx[i] += acc;
    }
}

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
void cuda_concat_copy(Context *ctx, const float *src, float *dst, int64_t outer, int64_t row, int64_t out_row,
                      int64_t offset, bool backward)
{
    k_concat<<<blocks_for(outer * row), 256, 0, stream_of(ctx)>>>(src, dst, outer, row, out_row, offset, backward);
}
void cuda_upsample_nearest(Context *ctx, const float *x, float *y, int NC, int H, int W, int Ho, int Wo, bool backward)
{
    if (backward)
        k_upsample_bwd<<<blocks_for((int64_t)NC * H * W), 256, 0, stream_of(ctx)>>>(x, y, NC, H, W, Ho, Wo);
    else
        k_upsample_fwd<<<blocks_for((int64_t)NC * Ho * Wo), 256, 0, stream_of(ctx)>>>(x, y, NC, H, W, Ho, Wo);
}
void cuda_permute(Context *ctx, const float *src, float *dst, int ndim, const int64_t *out_shape,
                  const int64_t *src_strides_permuted, bool accumulate)
{
    PermuteGeom g;
    g.ndim = ndim;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) g.shape[d] = out_shape[d], g.strides[d] = src_strides_permuted[d], n *= out_shape[d];
    k_permute<<<blocks_for(n), 256, 0, stream_of(ctx)>>>(src, dst, g, n, accumulate);
}
void cuda_softmax_forward(Context *ctx, const float *x, float *y, int64_t rows, int64_t C)
{
    k_softmax_fwd<<<blocks_for(rows), 256, 0, stream_of(ctx)>>>(x, y, rows, C);
}
void cuda_softmax_backward(Context *ctx, const float *y, const float *dy, float *dx, int64_t rows, int64_t C)
{
    k_softmax_bwd<<<blocks_for(rows), 256, 0, stream_of(ctx)>>>(y, dy, dx, rows, C);
}
}
