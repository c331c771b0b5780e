// Nearest upsampling (autograd/op_upsample.c).
#include "cuda_kernels/cuda_common.h"

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

extern "C" {
void cuda_upsample_nearest(Context *ctx, const float *x, float *y, int NC, int H, int W, int Ho, int Wo, bool backward)
{
    if (backward)
        k_upsample_bwd<<<blocks_for((int64_t)NC * H * W), 256, 0, stream_of(ctx)>>>(x, y, NC, H, W, Ho, Wo);
    else
        k_upsample_fwd<<<blocks_for((int64_t)NC * Ho * Wo), 256, 0, stream_of(ctx)>>>(x, y, NC, H, W, Ho, Wo);
}
}
