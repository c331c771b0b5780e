// Global average and max pooling (autograd/op_pool.c).
#include "cuda_kernels/cuda_common.h"

__global__ void k_gap_fwd(const float *x, float *y, int64_t planes, int64_t hw)
{
    GRID_STRIDE(p, planes)
    {
        double acc = 0;
        for (int64_t i = 0; i < hw; i++) acc += x[p * hw + i];
        y[p] = (float)(acc / (double)hw);
    }
}

__global__ void k_gap_bwd(const float *dy, float *dx, int64_t planes, int64_t hw)
{
    GRID_STRIDE(i, planes * hw) dx[i] += dy[i / hw] / (float)hw;
}

__global__ void k_maxpool_fwd(const float *x, float *y, int32_t *argmax, int planes, int H, int W, int Ho, int Wo, int k,
                              int stride, int pad)
{
    GRID_STRIDE(i, (int64_t)planes * Ho * Wo)
    {
        int ow = (int)(i % Wo), oh = (int)((i / Wo) % Ho);
        int64_t p = i / ((int64_t)Wo * Ho);
        const float *in = x + p * H * W;
        float best = -3.402823466e38f;
        int arg = -1;
        for (int ki = 0; ki < k; ki++) {
            int ih = oh * stride - pad + ki;
            if (ih < 0 || ih >= H) continue;
            for (int kj = 0; kj < k; kj++) {
                int iw = ow * stride - pad + kj;
                if (iw < 0 || iw >= W) continue;
                float v = in[ih * W + iw];
                if (arg < 0 || v > best) best = v, arg = ih * W + iw;
            }
        }
        y[i] = best;
        argmax[i] = arg;
    }
}

// Gather: each input pixel sums the outputs whose argmax it is (windows overlap by at most k/stride).
__global__ void k_maxpool_bwd(const float *dy, const int32_t *argmax, float *dx, int planes, int H, int W, int Ho,
                              int Wo, int k, int stride, int pad)
{
    GRID_STRIDE(i, (int64_t)planes * H * W)
    {
        int iw = (int)(i % W), ih = (int)((i / W) % H);
        int64_t p = i / ((int64_t)W * H);
        float acc = 0;
        int oh0 = (ih + pad - k + 1 + stride - 1) / stride, ow0 = (iw + pad - k + 1 + stride - 1) / stride;
        if (ih + pad - k + 1 < 0) oh0 = 0;
        if (iw + pad - k + 1 < 0) ow0 = 0;
        for (int oh = oh0; oh < Ho && oh * stride - pad <= ih; oh++)
            for (int ow = ow0; ow < Wo && ow * stride - pad <= iw; ow++) {
                int64_t o = (p * Ho + oh) * Wo + ow;
                if (argmax[o] == ih * W + iw) acc += dy[o];
            }
        dx[i] += acc;
    }
}

extern "C" {
void cuda_global_avg_pool(Context *ctx, const float *x, float *y, int64_t planes, int64_t hw, bool backward)
{
    if (backward)
        k_gap_bwd<<<blocks_for(planes * hw), 256, 0, stream_of(ctx)>>>(x, y, planes, hw);
    else
        k_gap_fwd<<<blocks_for(planes), 256, 0, stream_of(ctx)>>>(x, y, planes, hw);
}
void cuda_max_pool2d_forward(Context *ctx, const float *x, float *y, int32_t *argmax, int planes, int H, int W, int Ho,
                             int Wo, int k, int stride, int pad)
{
    k_maxpool_fwd<<<blocks_for((int64_t)planes * Ho * Wo), 256, 0, stream_of(ctx)>>>(x, y, argmax, planes, H, W, Ho, Wo,
                                                                                      k, stride, pad);
}
void cuda_max_pool2d_backward_full(Context *ctx, const float *dy, const int32_t *argmax, float *dx, int planes, int H,
                                   int W, int Ho, int Wo, int k, int stride, int pad)
{
    k_maxpool_bwd<<<blocks_for((int64_t)planes * H * W), 256, 0, stream_of(ctx)>>>(dy, argmax, dx, planes, H, W, Ho,
                                                                                    Wo, k, stride, pad);
}
}
