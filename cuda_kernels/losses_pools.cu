// Losses with row selection, pooling, bias rows (linear).
#include "cuda_kernels/cuda_common.h"

__device__ double block_reduce(double v)
{
    __shared__ double part[1024];
    part[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    return part[0];
}

// max and sum of exp(z - max) of one row of logits (the sum in double), as the CPU op.
__device__ void row_softmax_terms(const float *z, int64_t C, float *max, double *sum)
{
    float m = z[0];
    for (int64_t c = 1; c < C; c++) m = fmaxf(m, z[c]);
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += exp((double)z[c] - m);
    *max = m, *sum = s;
}

// Single block, double accumulation: deterministic, exact enough to match the CPU op.
__global__ void k_ce_fwd(const float *z, const int32_t *labels, const uint8_t *sel, int64_t rows, int64_t C, float *out)
{
    double acc = 0;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
        if (sel && !sel[r]) continue;
        const float *zr = z + r * C;
        float m;
        double s;
        row_softmax_terms(zr, C, &m, &s);
        acc += log(s) + m - zr[labels[r]];
    }
    double total = block_reduce(acc);
    if (threadIdx.x == 0) out[0] = (float)total;
}

__global__ void k_ce_bwd(const float *z, const int32_t *labels, const uint8_t *sel, int64_t rows, int64_t C,
                         const float *dl, float *dz)
{
    float d = dl[0];
    GRID_STRIDE(r, rows)
    {
        if (sel && !sel[r]) continue;
        const float *zr = z + r * C;
        float m;
        double s;
        row_softmax_terms(zr, C, &m, &s);
        for (int64_t c = 0; c < C; c++) {
            double p = exp((double)zr[c] - m) / s;
            dz[r * C + c] += d * (float)(p - (c == labels[r] ? 1.0 : 0.0));
        }
    }
}

__global__ void k_sl1_fwd(const float *x, const float *t, const uint8_t *sel, int64_t rows, int64_t k, float *out)
{
    double acc = 0;
    int64_t n = rows * k;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        if (sel && !sel[i / k]) continue;
        double d = fabs((double)x[i] - t[i]);
        acc += d < 1.0 ? 0.5 * d * d : d - 0.5;
    }
    double total = block_reduce(acc);
    if (threadIdx.x == 0) out[0] = (float)total;
}

__global__ void k_sl1_bwd(const float *x, const float *t, const uint8_t *sel, int64_t rows, int64_t k, const float *dl,
                          float *dx)
{
    float g = dl[0];
    GRID_STRIDE(i, rows * k)
    {
        if (sel && !sel[i / k]) continue;
        float d = x[i] - t[i];
        dx[i] += g * (d < -1.0f ? -1.0f : d > 1.0f ? 1.0f : d);
    }
}

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

__global__ void k_bias_rows(float *y, const float *b, int64_t rows, int64_t cols)
{
    GRID_STRIDE(i, rows * cols) y[i] += b[i % cols];
}

__global__ void k_bias_grad_rows(const float *dy, float *db, int64_t rows, int64_t cols)
{
    GRID_STRIDE(c, cols)
    {
        double acc = 0;
        for (int64_t r = 0; r < rows; r++) acc += dy[r * cols + c];
        db[c] += (float)acc;
    }
}

extern "C" {
void cuda_cross_entropy_forward(Context *ctx, const float *z, const int32_t *labels, const uint8_t *select,
                                int64_t rows, int64_t C, float *out)
{
    k_ce_fwd<<<1, 1024, 0, stream_of(ctx)>>>(z, labels, select, rows, C, out);
}
void cuda_cross_entropy_backward(Context *ctx, const float *z, const int32_t *labels, const uint8_t *select,
                                 int64_t rows, int64_t C, const float *dl, float *dz)
{
    k_ce_bwd<<<blocks_for(rows), 256, 0, stream_of(ctx)>>>(z, labels, select, rows, C, dl, dz);
}
void cuda_smooth_l1_forward(Context *ctx, const float *x, const float *t, const uint8_t *select, int64_t rows,
                            int64_t k, float *out)
{
    k_sl1_fwd<<<1, 1024, 0, stream_of(ctx)>>>(x, t, select, rows, k, out);
}
void cuda_smooth_l1_backward(Context *ctx, const float *x, const float *t, const uint8_t *select, int64_t rows,
                             int64_t k, const float *dl, float *dx)
{
    k_sl1_bwd<<<blocks_for(rows * k), 256, 0, stream_of(ctx)>>>(x, t, select, rows, k, dl, dx);
}
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
void cuda_bias_add_rows(Context *ctx, float *y, const float *b, int64_t rows, int64_t cols)
{
    k_bias_rows<<<blocks_for(rows * cols), 256, 0, stream_of(ctx)>>>(y, b, rows, cols);
}
void cuda_bias_grad_rows(Context *ctx, const float *dy, float *db, int64_t rows, int64_t cols)
{
    k_bias_grad_rows<<<blocks_for(cols), 256, 0, stream_of(ctx)>>>(dy, db, rows, cols);
}
}
