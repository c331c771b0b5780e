// conv2d on the GPU, mirroring autograd/op_conv2d.c: im2col of all images of a group at once and
// one cuBLAS strided-batched SGEMM over the images (no im2col for 1x1 stride-1 convolutions), a
// direct kernel for depthwise convolutions. Backward kernels are gathers or two-stage reductions
// (each output summed by one thread in a fixed order), so there are no atomics and results are
// deterministic.
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

// Batched: col[n][(c*KH+ki)*KW+kj][oh*Wo+ow] for group gi of every image n.
__global__ void k_im2col_batched(const float *x, float *col, ConvGeom g, int Cg, int gi, int N)
{
    int64_t hw = (int64_t)g.Ho * g.Wo, per = (int64_t)Cg * g.KH * g.KW * hw, n_all = per * N;
    GRID_STRIDE(i, n_all)
    {
        int64_t img = i / per, rem = i % per;
        int64_t r = rem / hw, o = rem % hw;
        int kj = (int)(r % g.KW), ki = (int)((r / g.KW) % g.KH), c = (int)(r / (g.KW * g.KH));
        int oh = (int)(o / g.Wo), ow = (int)(o % g.Wo);
        int ih = oh * g.sh - g.ph + ki * g.dh, iw = ow * g.sw - g.pw + kj * g.dw;
        const float *xc = x + ((img * g.Cin) + (int64_t)gi * Cg + c) * g.H * g.W;
        col[i] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? xc[(int64_t)ih * g.W + iw] : 0.0f;
    }
}

// The output position whose kernel tap k reads input position in (one axis), or -1: the inverse of
// in = o * stride - pad + k * dil, shared by every gather-form backward.
__device__ __forceinline__ int output_reading(int in, int k, int pad, int dil, int stride, int out)
{
    int t = in + pad - k * dil;
    if (t < 0 || t % stride) return -1;
    int o = t / stride;
    return o < out ? o : -1;
}

// Batched gather col2im: dx[n][gi*Cg + c][ih][iw] += entries of col[n] that read it.
__global__ void k_col2im_batched(const float *col, float *dx, ConvGeom g, int Cg, int gi, int N)
{
    int64_t hw = (int64_t)g.Ho * g.Wo, plane = (int64_t)g.H * g.W, per = (int64_t)Cg * plane;
    int64_t col_per = (int64_t)Cg * g.KH * g.KW * hw;
    GRID_STRIDE(i, per * N)
    {
        int64_t img = i / per, rem = i % per;
        int iw = (int)(rem % g.W), ih = (int)((rem / g.W) % g.H), c = (int)(rem / plane);
        const float *cn = col + img * col_per;
        float acc = 0;
        for (int ki = 0; ki < g.KH; ki++) {
            int oh = output_reading(ih, ki, g.ph, g.dh, g.sh, g.Ho);
            if (oh < 0) continue;
            for (int kj = 0; kj < g.KW; kj++) {
                int ow = output_reading(iw, kj, g.pw, g.dw, g.sw, g.Wo);
                if (ow < 0) continue;
                acc += cn[(((int64_t)c * g.KH + ki) * g.KW + kj) * hw + (int64_t)oh * g.Wo + ow];
            }
        }
        dx[(img * g.Cin + (int64_t)gi * Cg + c) * plane + rem % plane] += acc;
    }
}

// dw[j] += sum over n of partial[n][j] (fixed order: deterministic).
__global__ void k_sum_partials(const float *partial, float *dw, int N, int64_t len)
{
    GRID_STRIDE(j, len)
    {
        float acc = 0;
        for (int n = 0; n < N; n++) acc += partial[(int64_t)n * len + j];
        dw[j] += acc;
    }
}

__global__ void k_depthwise_fwd(const float *x, const float *w, const float *b, float act, float *y, ConvGeom g, int N)
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
        y[i] = (act < 0.0f || acc > 0.0f) ? acc : act * acc;
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
            int oh = output_reading(ih, ki, g.ph, g.dh, g.sh, g.Ho);
            if (oh < 0) continue;
            for (int kj = 0; kj < g.KW; kj++) {
                int ow = output_reading(iw, kj, g.pw, g.dw, g.sw, g.Wo);
                if (ow < 0) continue;
                acc += wc[ki * g.KW + kj] * dyp[(int64_t)oh * g.Wo + ow];
            }
        }
        dx[i] += acc;
    }
}

enum { DW_MAX_CHUNKS = 64 };

static int dw_chunks(int64_t total)
{
    int64_t c = (total + 16383) / 16384;
    return (int)(c < 1 ? 1 : c > DW_MAX_CHUNKS ? DW_MAX_CHUNKS : c);
}

// grid (chunks, channel * taps): partial[(c*taps+tap)*chunks + chunk] = the chunk's share of
// sum over images and output pixels of dy * x; finished in a fixed order by k_depthwise_dw_finish.
__global__ void k_depthwise_bwd_weight(const float *x, const float *dy, float *partial, ConvGeom g, int N, int chunks)
{
    int taps = g.KH * g.KW;
    int c = blockIdx.y / taps, tap = blockIdx.y % taps, ki = tap / g.KW, kj = tap % g.KW, chunk = blockIdx.x;
    int64_t hw = (int64_t)g.Ho * g.Wo, total = (int64_t)N * hw;
    int64_t lo = total * chunk / chunks, hi = total * (chunk + 1) / chunks;
    float acc = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
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
    if (threadIdx.x == 0) partial[(int64_t)blockIdx.y * chunks + chunk] = part[0];
}

__global__ void k_depthwise_dw_finish(const float *partial, float *dw, int64_t n, int chunks)
{
    GRID_STRIDE(j, n)
    {
        float acc = 0;
        for (int k = 0; k < chunks; k++) acc += partial[j * chunks + k];
        dw[j] += acc;
    }
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

// Bias and activation epilogue (act < 0: none).
__global__ void k_epilogue(float *y, const float *b, float act, int C, int64_t hw, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        float v = y[i] + (b ? b[(i / hw) % C] : 0.0f);
        y[i] = (act < 0.0f || v > 0.0f) ? v : act * v;
    }
}

static bool depthwise(const Conv2dShape *s) { return s->p.groups == s->Cin && s->Cout == s->Cin && s->p.groups > 1; }
static bool pointwise(const Conv2dShape *s)
{
    return s->KH == 1 && s->KW == 1 && s->p.stride_h == 1 && s->p.stride_w == 1 && s->p.pad_h == 0 && s->p.pad_w == 0;
}

extern "C" size_t cuda_conv2d_workspace_floats(const Conv2dShape *s)
{
    if (depthwise(s)) return (size_t)s->Cin * s->KH * s->KW * DW_MAX_CHUNKS;
    size_t K = (size_t)(s->Cin / s->p.groups) * s->KH * s->KW, hwo = (size_t)s->Ho * s->Wo;
    size_t cols = pointwise(s) ? 0 : (size_t)s->N * K * hwo;
    return cols + (size_t)s->N * (s->Cout / s->p.groups) * K;
}

extern "C" ErrorCode cuda_conv2d_forward(Context *ctx, const Conv2dShape *s, const float *x, const float *w,
                                         const float *b, float act, float *y, float *scratch, Error *err)
{
    ConvGeom g = geom(s);
    cudaStream_t st = stream_of(ctx);
    int64_t hwo = (int64_t)s->Ho * s->Wo;
    if (depthwise(s)) {
        k_depthwise_fwd<<<blocks_for((int64_t)s->N * s->Cin * hwo), 256, 0, st>>>(x, w, b, act, y, g, s->N);
        return cuda_check_launch("conv2d depthwise", err);
    }
    int G = s->p.groups, Cg = s->Cin / G, Cog = s->Cout / G, K = Cg * s->KH * s->KW, N = s->N;
    /* All images of a group in one strided-batched GEMM: y[n] = W[g] col[n]. */
    for (int gi = 0; gi < G; gi++) {
        const float *B = x + (int64_t)gi * Cg * s->H * s->W;
        long long strideB = (long long)s->Cin * s->H * s->W;
        if (!pointwise(s)) {
            k_im2col_batched<<<blocks_for((int64_t)N * K * hwo), 256, 0, st>>>(x, scratch, g, Cg, gi, N);
            B = scratch, strideB = (long long)K * hwo;
        }
        if (cuda_sgemm_strided_batched(ctx, false, false, Cog, (int)hwo, K, 1.0f, w + (int64_t)gi * Cog * K, K, 0, B,
                                       (int)hwo, strideB, 0.0f, y + (int64_t)gi * Cog * hwo, (int)hwo,
                                       (long long)s->Cout * hwo, N, err))
            return err->code;
    }
    if (b || act >= 0.0f)
        k_epilogue<<<blocks_for((int64_t)s->N * s->Cout * hwo), 256, 0, st>>>(y, b, act, s->Cout, hwo,
                                                                             (int64_t)s->N * s->Cout * hwo);
    return cuda_check_launch("conv2d", err);
}

extern "C" ErrorCode cuda_conv2d_backward(Context *ctx, const Conv2dShape *s, const float *x, const float *w,
                                          const float *dy, float *dx, float *dw, float *db, float *scratch, Error *err)
{
    ConvGeom g = geom(s);
    cudaStream_t st = stream_of(ctx);
    int64_t hwo = (int64_t)s->Ho * s->Wo;
    if (db) k_channel_sum<<<s->Cout, 256, 0, st>>>(dy, db, s->N, s->Cout, hwo);
    if (depthwise(s)) {
        if (dx) k_depthwise_bwd_input<<<blocks_for((int64_t)s->N * s->Cin * s->H * s->W), 256, 0, st>>>(dy, w, dx, g, s->N);
        if (dw) {
            int chunks = dw_chunks((int64_t)s->N * hwo), taps = s->KH * s->KW;
            k_depthwise_bwd_weight<<<dim3(chunks, s->Cin * taps), 256, 0, st>>>(x, dy, scratch, g, s->N, chunks);
            k_depthwise_dw_finish<<<blocks_for((int64_t)s->Cin * taps), 256, 0, st>>>(scratch, dw, (int64_t)s->Cin * taps, chunks);
        }
        return cuda_check_launch("conv2d depthwise backward", err);
    }
    int G = s->p.groups, Cg = s->Cin / G, Cog = s->Cout / G, K = Cg * s->KH * s->KW, N = s->N;
    bool pw = pointwise(s);
    /* scratch: [N][K][hwo] columns, then [N][Cog][K] per-image weight-gradient partials */
    float *cols = scratch, *partial = scratch + (pw ? 0 : (int64_t)N * K * hwo);
    for (int gi = 0; gi < G; gi++) {
        const float *xg = x + (int64_t)gi * Cg * s->H * s->W;
        const float *dyg = dy + (int64_t)gi * Cog * hwo;
        const float *wg = w + (int64_t)gi * Cog * K;
        long long x_stride = (long long)s->Cin * s->H * s->W, dy_stride = (long long)s->Cout * hwo;
        if (dw) {
            const float *col = xg;
            long long col_stride = x_stride;
            if (!pw) {
                k_im2col_batched<<<blocks_for((int64_t)N * K * hwo), 256, 0, st>>>(x, cols, g, Cg, gi, N);
                col = cols, col_stride = (long long)K * hwo;
            }
            /* partial[n] = dy[n] col[n]^T, then summed over n in a fixed order */
            if (cuda_sgemm_strided_batched(ctx, false, true, Cog, K, (int)hwo, 1.0f, dyg, (int)hwo, dy_stride, col,
                                           (int)hwo, col_stride, 0.0f, partial, K, (long long)Cog * K, N, err))
                return err->code;
            k_sum_partials<<<blocks_for((int64_t)Cog * K), 256, 0, st>>>(partial, dw + (int64_t)gi * Cog * K, N,
                                                                          (int64_t)Cog * K);
        }
        if (dx) {
            if (pw) {
                if (cuda_sgemm_strided_batched(ctx, true, false, K, (int)hwo, Cog, 1.0f, wg, K, 0, dyg, (int)hwo,
                                               dy_stride, 1.0f, dx + (int64_t)gi * Cg * s->H * s->W, (int)hwo, x_stride,
                                               N, err))
                    return err->code;
            } else {
                if (cuda_sgemm_strided_batched(ctx, true, false, K, (int)hwo, Cog, 1.0f, wg, K, 0, dyg, (int)hwo,
                                               dy_stride, 0.0f, cols, (int)hwo, (long long)K * hwo, N, err))
                    return err->code;
                k_col2im_batched<<<blocks_for((int64_t)N * Cg * s->H * s->W), 256, 0, st>>>(cols, dx, g, Cg, gi, N);
            }
        }
    }
    return cuda_check_launch("conv2d backward", err);
}
