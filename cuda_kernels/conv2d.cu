// conv2d on the GPU, mirroring autograd/op_conv2d.c: im2col + cuBLAS SGEMM per image and group
// (no im2col for 1x1 stride-1 convolutions), a direct kernel for depthwise convolutions. Backward
// kernels are written as gathers (each output element summed by one thread), so there are no
// atomics and results are deterministic.
#include "cuda_kernels/cuda_common.h"

struct ConvGeom {
    int Cin, H, W, Cout, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw, groups;
};

static ConvGeom geom(const Conv2dShape *s)
{
    ConvGeom g = {s->Cin, s->H, s->W, s->Cout, s->KH, s->KW, s->Ho, s->Wo, s->p.stride_h, s->p.stride_w,
                  s->p.pad_h, s->p.pad_w, s->p.dil_h, s->p.dil_w, s->p.groups};
    return g;
}

// col[(c*KH+ki)*KW+kj][oh*Wo+ow] for the Cg channels starting at x.
__global__ void k_im2col(const float *x, float *col, ConvGeom g, int Cg)
{
    int64_t hw = (int64_t)g.Ho * g.Wo, n = (int64_t)Cg * g.KH * g.KW * hw;
    GRID_STRIDE(i, n)
    {
        int64_t r = i / hw, o = i % hw;
        int kj = (int)(r % g.KW), ki = (int)((r / g.KW) % g.KH), c = (int)(r / (g.KW * g.KH));
        int oh = (int)(o / g.Wo), ow = (int)(o % g.Wo);
        int ih = oh * g.sh - g.ph + ki * g.dh, iw = ow * g.sw - g.pw + kj * g.dw;
        col[i] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? x[((int64_t)c * g.H + ih) * g.W + iw] : 0.0f;
    }
}

// dx[c][ih][iw] += sum of the col entries that read it.
__global__ void k_col2im(const float *col, float *dx, ConvGeom g, int Cg)
{
    int64_t n = (int64_t)Cg * g.H * g.W, hw = (int64_t)g.Ho * g.Wo;
    GRID_STRIDE(i, n)
    {
        int iw = (int)(i % g.W), ih = (int)((i / g.W) % g.H), c = (int)(i / ((int64_t)g.W * g.H));
        float acc = 0;
        for (int ki = 0; ki < g.KH; ki++) {
            int th = ih + g.ph - ki * g.dh;
            if (th < 0 || th % g.sh) continue;
            int oh = th / g.sh;
            if (oh >= g.Ho) continue;
            for (int kj = 0; kj < g.KW; kj++) {
                int tw = iw + g.pw - kj * g.dw;
                if (tw < 0 || tw % g.sw) continue;
                int ow = tw / g.sw;
                if (ow >= g.Wo) continue;
                acc += col[(((int64_t)c * g.KH + ki) * g.KW + kj) * hw + (int64_t)oh * g.Wo + ow];
            }
        }
        dx[i] += acc;
    }
}

__global__ void k_depthwise_fwd(const float *x, const float *w, const float *b, float *y, ConvGeom g, int N)
{
    int64_t n = (int64_t)N * g.Cin * g.Ho * g.Wo;
    GRID_STRIDE(i, n)
    {
        int ow = (int)(i % g.Wo), oh = (int)((i / g.Wo) % g.Ho);
        int64_t plane = i / ((int64_t)g.Wo * g.Ho);
        int c = (int)(plane % g.Cin);
        const float *xp = x + plane * g.H * g.W, *wc = w + (int64_t)c * g.KH * g.KW;
        float acc = b ? b[c] : 0.0f;
        for (int ki = 0; ki < g.KH; ki++) {
            int ih = oh * g.sh - g.ph + ki * g.dh;
            if (ih < 0 || ih >= g.H) continue;
            for (int kj = 0; kj < g.KW; kj++) {
                int iw = ow * g.sw - g.pw + kj * g.dw;
                if (iw < 0 || iw >= g.W) continue;
                acc += wc[ki * g.KW + kj] * xp[(int64_t)ih * g.W + iw];
            }
        }
        y[i] = acc;
    }
}

__global__ void k_depthwise_bwd_input(const float *dy, const float *w, float *dx, ConvGeom g, int N)
{
    int64_t n = (int64_t)N * g.Cin * g.H * g.W;
    GRID_STRIDE(i, n)
    {
        int iw = (int)(i % g.W), ih = (int)((i / g.W) % g.H);
        int64_t plane = i / ((int64_t)g.W * g.H);
        int c = (int)(plane % g.Cin);
        const float *dyp = dy + plane * g.Ho * g.Wo, *wc = w + (int64_t)c * g.KH * g.KW;
        float acc = 0;
        for (int ki = 0; ki < g.KH; ki++) {
            int th = ih + g.ph - ki * g.dh;
            if (th < 0 || th % g.sh) continue;
            int oh = th / g.sh;
            if (oh >= g.Ho) continue;
            for (int kj = 0; kj < g.KW; kj++) {
                int tw = iw + g.pw - kj * g.dw;
                if (tw < 0 || tw % g.sw) continue;
                int ow = tw / g.sw;
                if (ow >= g.Wo) continue;
                acc += wc[ki * g.KW + kj] * dyp[(int64_t)oh * g.Wo + ow];
            }
        }
        dx[i] += acc;
    }
}

// One block per (channel, tap): dw[c][tap] += sum over images and output pixels.
__global__ void k_depthwise_bwd_weight(const float *x, const float *dy, float *dw, ConvGeom g, int N)
{
    int taps = g.KH * g.KW;
    int c = blockIdx.x / taps, tap = blockIdx.x % taps, ki = tap / g.KW, kj = tap % g.KW;
    int64_t hw = (int64_t)g.Ho * g.Wo, total = (int64_t)N * hw;
    float acc = 0;
    for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
        int64_t img = i / hw, o = i % hw;
        int oh = (int)(o / g.Wo), ow = (int)(o % g.Wo);
        int ih = oh * g.sh - g.ph + ki * g.dh, iw = ow * g.sw - g.pw + kj * g.dw;
        if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
        int64_t plane = img * g.Cin + c;
        acc += dy[plane * hw + o] * x[(plane * g.H + ih) * g.W + iw];
    }
    __shared__ float part[256];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) dw[(int64_t)c * taps + tap] += part[0];
}

// One block per channel: db[c] += sum over images and pixels of dy[n][c].
__global__ void k_channel_sum(const float *dy, float *db, int N, int C, int64_t hw)
{
    int c = blockIdx.x;
    float acc = 0;
    for (int64_t i = threadIdx.x; i < (int64_t)N * hw; i += blockDim.x) {
        int64_t img = i / hw, o = i % hw;
        acc += dy[(img * C + c) * hw + o];
    }
    __shared__ float part[256];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) db[c] += part[0];
}

__global__ void k_bias_planes(float *y, const float *b, int C, int64_t hw, int64_t n)
{
    GRID_STRIDE(i, n) y[i] += b[(i / hw) % C];
}

static bool depthwise(const Conv2dShape *s) { return s->p.groups == s->Cin && s->Cout == s->Cin && s->p.groups > 1; }
static bool pointwise(const Conv2dShape *s)
{
    return s->KH == 1 && s->KW == 1 && s->p.stride_h == 1 && s->p.stride_w == 1 && s->p.pad_h == 0 && s->p.pad_w == 0;
}

extern "C" ErrorCode conv2d_forward_cuda(Context *ctx, const Conv2dShape *s, const float *x, const float *w,
                                         const float *b, float *y, float *scratch, Error *err)
{
    ConvGeom g = geom(s);
    cudaStream_t st = stream_of(ctx);
    int64_t hwo = (int64_t)s->Ho * s->Wo;
    if (depthwise(s)) {
        k_depthwise_fwd<<<blocks_for((int64_t)s->N * s->Cin * hwo), 256, 0, st>>>(x, w, b, y, g, s->N);
        return cuda_check_launch("conv2d depthwise", err);
    }
    int G = s->p.groups, Cg = s->Cin / G, Cog = s->Cout / G, K = Cg * s->KH * s->KW;
    for (int n = 0; n < s->N; n++)
        for (int gi = 0; gi < G; gi++) {
            const float *xg = x + ((int64_t)n * s->Cin + (int64_t)gi * Cg) * s->H * s->W;
            const float *col = xg;
            if (!pointwise(s)) {
                k_im2col<<<blocks_for((int64_t)K * hwo), 256, 0, st>>>(xg, scratch, g, Cg);
                col = scratch;
            }
            float *yg = y + ((int64_t)n * s->Cout + (int64_t)gi * Cog) * hwo;
            if (cuda_sgemm(ctx, false, false, Cog, (int)hwo, K, 1.0f, w + (int64_t)gi * Cog * K, K, col, (int)hwo, 0.0f,
                           yg, (int)hwo, err))
                return err->code;
        }
    if (b) k_bias_planes<<<blocks_for((int64_t)s->N * s->Cout * hwo), 256, 0, st>>>(y, b, s->Cout, hwo, (int64_t)s->N * s->Cout * hwo);
    return cuda_check_launch("conv2d", err);
}

extern "C" ErrorCode conv2d_backward_cuda(Context *ctx, const Conv2dShape *s, const float *x, const float *w,
                                          const float *dy, float *dx, float *dw, float *db, float *scratch, Error *err)
{
    ConvGeom g = geom(s);
    cudaStream_t st = stream_of(ctx);
    int64_t hwo = (int64_t)s->Ho * s->Wo;
    if (db) k_channel_sum<<<s->Cout, 256, 0, st>>>(dy, db, s->N, s->Cout, hwo);
    if (depthwise(s)) {
        if (dx) k_depthwise_bwd_input<<<blocks_for((int64_t)s->N * s->Cin * s->H * s->W), 256, 0, st>>>(dy, w, dx, g, s->N);
        if (dw) k_depthwise_bwd_weight<<<s->Cin * s->KH * s->KW, 256, 0, st>>>(x, dy, dw, g, s->N);
        return cuda_check_launch("conv2d depthwise backward", err);
    }
    int G = s->p.groups, Cg = s->Cin / G, Cog = s->Cout / G, K = Cg * s->KH * s->KW;
    bool pw = pointwise(s);
    for (int n = 0; n < s->N; n++)
        for (int gi = 0; gi < G; gi++) {
            const float *xg = x + ((int64_t)n * s->Cin + (int64_t)gi * Cg) * s->H * s->W;
            const float *dyg = dy + ((int64_t)n * s->Cout + (int64_t)gi * Cog) * hwo;
            const float *wg = w + (int64_t)gi * Cog * K;
            if (dw) {
                const float *col = xg;
                if (!pw) {
                    k_im2col<<<blocks_for((int64_t)K * hwo), 256, 0, st>>>(xg, scratch, g, Cg);
                    col = scratch;
                }
                if (cuda_sgemm(ctx, false, true, Cog, K, (int)hwo, 1.0f, dyg, (int)hwo, col, (int)hwo, 1.0f,
                               dw + (int64_t)gi * Cog * K, K, err))
                    return err->code;
            }
            if (dx) {
                float *dxg = dx + ((int64_t)n * s->Cin + (int64_t)gi * Cg) * s->H * s->W;
                if (pw) {
                    if (cuda_sgemm(ctx, true, false, K, (int)hwo, Cog, 1.0f, wg, K, dyg, (int)hwo, 1.0f, dxg, (int)hwo, err))
                        return err->code;
                } else {
                    if (cuda_sgemm(ctx, true, false, K, (int)hwo, Cog, 1.0f, wg, K, dyg, (int)hwo, 0.0f, scratch, (int)hwo,
                                   err))
                        return err->code;
                    k_col2im<<<blocks_for((int64_t)Cg * s->H * s->W), 256, 0, st>>>(scratch, dxg, g, Cg);
                }
            }
        }
    return cuda_check_launch("conv2d backward", err);
}
