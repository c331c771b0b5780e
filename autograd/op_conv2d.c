/* conv2d: im2col + our SGEMM for general convolutions, a direct kernel for depthwise ones
 * (groups == Cin == Cout, where a GEMM would have M = 1), and no im2col at all for 1x1 stride-1
 * unpadded convolutions (the input already is the column matrix). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/activation_cpu.h"
#include "autograd/batchnorm_cpu.h"
#include "autograd/conv2d_cpu.h"
#include "autograd/conv2d_avx2.h"
#include "autograd/conv2d_winograd.h"
#include "tensor/sgemm.h"
#include "tensor/sgemm_nt.h"
#include "cuda_kernels/cuda_ops.h"

Conv2dParams conv2d_params(int stride, int padding, int dilation, int groups)
{
    Conv2dParams p = {stride, stride, padding, padding, dilation, dilation, groups};
    return p;
}

bool conv2d_shape(Conv2dShape *s, const Tensor *x, const Tensor *w, const Tensor *b,
                  Conv2dParams p, char *msg, size_t msg_len)
{
    if (x->ndim != 4 || w->ndim != 4) {
        snprintf(msg, msg_len, "input and weight must be 4-d (got %d and %d)", x->ndim, w->ndim);
        return false;
    }
    if (p.groups < 1 || p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1 ||
        p.pad_h < 0 || p.pad_w < 0) {
        snprintf(msg, msg_len, "invalid stride/padding/dilation/groups");
        return false;
    }
    s->N = (int)x->shape[0], s->Cin = (int)x->shape[1], s->H = (int)x->shape[2], s->W = (int)x->shape[3];
    s->Cout = (int)w->shape[0], s->KH = (int)w->shape[2], s->KW = (int)w->shape[3];
    s->p = p;
    if (s->Cin % p.groups || s->Cout % p.groups || w->shape[1] * p.groups != s->Cin) {
        snprintf(msg, msg_len, "input has %d channels, weight [%d,%lld,%d,%d] with %d groups", s->Cin,
                 s->Cout, (long long)w->shape[1], s->KH, s->KW, p.groups);
        return false;
    }
    if (b && (b->ndim != 1 || b->shape[0] != s->Cout)) {
        snprintf(msg, msg_len, "bias must be [%d]", s->Cout);
        return false;
    }
    s->Ho = (s->H + 2 * p.pad_h - p.dil_h * (s->KH - 1) - 1) / p.stride_h + 1;
    s->Wo = (s->W + 2 * p.pad_w - p.dil_w * (s->KW - 1) - 1) / p.stride_w + 1;
    if (s->H + 2 * p.pad_h - p.dil_h * (s->KH - 1) - 1 < 0 ||
        s->W + 2 * p.pad_w - p.dil_w * (s->KW - 1) - 1 < 0) {
        snprintf(msg, msg_len, "input %dx%d smaller than the dilated kernel", s->H, s->W);
        return false;
    }
    return true;
}

static bool is_depthwise(const Conv2dShape *s)
{
    return s->p.groups == s->Cin && s->Cout == s->Cin && s->p.groups > 1;
}

static bool is_pointwise(const Conv2dShape *s)
{
    return s->KH == 1 && s->KW == 1 && s->p.stride_h == 1 && s->p.stride_w == 1 && s->p.pad_h == 0 &&
           s->p.pad_w == 0;
}

/* The stem's shape: dense 3x3 stride 2 over a few channels, where im2col + GEMM is a poor fit. */
static bool is_direct3x3_s2(const Conv2dShape *s)
{
    const Conv2dParams *p = &s->p;
    return s->KH == 3 && s->KW == 3 && p->stride_h == 2 && p->stride_w == 2 && p->pad_h == 1 && p->pad_w == 1 &&
           p->dil_h == 1 && p->dil_w == 1 && p->groups == 1 && s->Cin <= CONV3X3_S2_MAX_CIN &&
           conv2d_avx2_available();
}

typedef struct {
    const Conv2dShape *s;
    const float *x, *w, *b;
    float *y;
    float act;
} DirectJob;

/* Tasks of a few output rows: consecutive rows share split input rows (conv3x3_s2_rows_avx2). */
enum { DIRECT_ROWS_PER_TASK = 8 };

static void direct3x3_s2_rows(void *arg, int task)
{
    const DirectJob *j = arg;
    const Conv2dShape *s = j->s;
    int tasks_per_image = (s->Ho + DIRECT_ROWS_PER_TASK - 1) / DIRECT_ROWS_PER_TASK;
    int n = task / tasks_per_image, oy0 = task % tasks_per_image * DIRECT_ROWS_PER_TASK;
    int oy1 = oy0 + DIRECT_ROWS_PER_TASK < s->Ho ? oy0 + DIRECT_ROWS_PER_TASK : s->Ho;
    conv3x3_s2_rows_avx2(j->x + (size_t)n * s->Cin * s->H * s->W, s->Cin, s->H, s->W, j->w, j->b, s->Cout, j->act,
                         j->y + (size_t)n * s->Cout * s->Ho * s->Wo, s->Ho, s->Wo, oy0, oy1);
}

ConvCpuAlgorithm conv2d_cpu_algorithm(const Conv2dShape *s)
{
    if (is_depthwise(s)) return CONV_CPU_DEPTHWISE;
    if (conv2d_winograd_applies(s)) return CONV_CPU_WINOGRAD;
    if (is_direct3x3_s2(s)) return CONV_CPU_DIRECT3X3_S2;
    return CONV_CPU_GEMM;
}

const char *conv2d_cpu_algorithm_name(ConvCpuAlgorithm a)
{
    switch (a) {
    case CONV_CPU_DEPTHWISE: return "depthwise";
    case CONV_CPU_WINOGRAD: return "winograd";
    case CONV_CPU_DIRECT3X3_S2: return "direct3x3s2";
    case CONV_CPU_GEMM: break;
    }
    return "gemm";
}

/* im2col runs in bands of output rows whose columns fill at most COL_BAND_FLOATS: the buffer stays
 * cache-sized and is reused band after band (whole, a 7x7 stem's at 840x840 took 104 MB per image). Where
 * that leaves fewer than COL_BAND_MIN_COLS columns (long rows of K = Cin * 9 over narrow images), the band
 * takes about COL_BAND_WIDE_COLS columns, up to COL_BAND_MAX_FLOATS: every band's GEMMs pay a fixed cost
 * of Cout x K (each thread packs all of W for its columns, the weight gradient's C is read and written once
 * more) and a join of the pool, which 216 or 424 columns did not amortise. Time with the wider bands over
 * the narrow ones, alternated pairs (bench_train_layer, stride 2, batch 2, 2 threads, Zen 4), forward /
 * backward: ResNet-50's 512->512 at 27x27 (216 columns -> the whole image, 729) 0.89 / 0.87 and 0.88 / 0.82,
 * 256->256 at 53x53 (424 -> 1643) 0.945 / 0.945; 128->128 at 105x105 keeps its 840 columns (widened to
 * 1050 or more it measured 1.11-1.12 forward). */
enum { COL_BAND_FLOATS = 1 << 20, COL_BAND_MIN_COLS = 768, COL_BAND_WIDE_COLS = 1600, COL_BAND_MAX_FLOATS = 1 << 22 };

static int col_band_rows(const Conv2dShape *s)
{
    size_t per_row = (size_t)(s->Cin / s->p.groups) * s->KH * s->KW * s->Wo;
    size_t rows = per_row ? COL_BAND_FLOATS / per_row : 1;
    if (per_row && rows * s->Wo < COL_BAND_MIN_COLS) {
        size_t wide = (COL_BAND_WIDE_COLS + (size_t)s->Wo - 1) / s->Wo, most = COL_BAND_MAX_FLOATS / per_row;
        rows = wide < most ? wide : most;
    }
    return rows < 1 ? 1 : rows > (size_t)s->Ho ? s->Ho : (int)rows;
}

static size_t col_band_floats(const Conv2dShape *s)
{
    return (size_t)(s->Cin / s->p.groups) * s->KH * s->KW * col_band_rows(s) * s->Wo;
}

size_t conv2d_cpu_scratch_floats(const Conv2dShape *s)
{
    if (is_depthwise(s) || is_pointwise(s)) return 0;
    size_t col = col_band_floats(s);
    /* the forward may take the Winograd path, the backward always takes im2col */
    if (conv2d_winograd_applies(s)) {
        size_t wino = conv2d_winograd_scratch_floats(s);
        if (wino > col) return wino;
    }
    return col;
}

/* The input gradient of a dense 3x3 stride-1 padding-1 convolution is the same convolution of dy with the
 * kernel flipped and its channel axes swapped (padding 1 again): Winograd's shape, when it pays. */
static bool winograd_input_grad_shape(const Conv2dShape *s, Conv2dShape *t)
{
    const Conv2dParams *p = &s->p;
    if (s->KH != 3 || s->KW != 3 || p->groups != 1 || p->stride_h != 1 || p->stride_w != 1 || p->pad_h != 1 ||
        p->pad_w != 1 || p->dil_h != 1 || p->dil_w != 1)
        return false;
    *t = *s;
    t->Cin = s->Cout, t->Cout = s->Cin, t->H = s->Ho, t->W = s->Wo, t->Ho = s->H, t->Wo = s->W;
    return conv2d_winograd_applies(t);
}

size_t conv2d_cpu_backward_scratch_floats(const Conv2dShape *s)
{
    if (is_depthwise(s)) return 0;
    size_t col = is_pointwise(s) ? 0 : col_band_floats(s);
    /* groups == 1: the weight gradient's double sums after the im2col buffer (16-float aligned) */
    size_t sums = s->p.groups == 1 ? 2 * (size_t)s->Cout * s->Cin * s->KH * s->KW : 0;
    size_t need = (col + 15) / 16 * 16 + sums;
    if (conv2d_winograd_applies(s) && conv2d_winograd_weight_grad_scratch_floats(s) > need)
        need = conv2d_winograd_weight_grad_scratch_floats(s);
    Conv2dShape t;
    if (winograd_input_grad_shape(s, &t)) { /* after the weight gradient: the same scratch again */
        size_t wino = (size_t)s->Cout * s->Cin * 9 + 16 + conv2d_winograd_scratch_floats(&t);
        if (wino > need) need = wino;
    }
    return need;
}

typedef struct {
    const float *w;
    float *wt;
    int Cout, Cin;
} FlipJob;

/* wt[ci][co] = w[co][ci] rotated by 180 degrees, for input channel ci. */
static void flip_transpose_channel(void *arg, int ci)
{
    const FlipJob *j = arg;
    for (int co = 0; co < j->Cout; co++)
        for (int k = 0; k < 9; k++) j->wt[((size_t)ci * j->Cout + co) * 9 + k] = j->w[((size_t)co * j->Cin + ci) * 9 + 8 - k];
}

/* Valid output range [lo, hi) of o such that o*stride + off lies in [0, size). */
static void valid_range(int out, int stride, int off, int size, int *lo, int *hi)
{
    int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int h = size - 1 - off < 0 ? 0 : (size - 1 - off) / stride + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l, *hi = h;
}

/* ---- im2col / col2im over one image and group and a band of output rows [oh0, oh1): rows (c, ki,
 * kj), columns (oh - oh0, ow) ------------------------------------------------------------------ */

typedef struct {
    const Conv2dShape *s;
    const float *x; /* first channel of the group, image n */
    float *col;
    float *dx;
    int oh0, oh1;
} ColJob;

/* One task per (channel, kernel row): the col rows (c, ki, 0..KW). A task per channel left a 3-channel
 * stem's im2col with 3 tasks for 2 threads. AVX2 where the CPU has it (chosen at run time): the stride-2
 * gather of every other input then vectorises (ResNet-50's stride-2 3x3 layers and 7x7 stem). */
__attribute__((target_clones("avx2", "default"))) static void im2col_kernel_row(void *arg, int task)
{
    const ColJob *j = arg;
    const Conv2dShape *s = j->s;
    const Conv2dParams *p = &s->p;
    int c = task / s->KH, ki = task % s->KH;
    const float *xc = j->x + (size_t)c * s->H * s->W;
    size_t band = (size_t)(j->oh1 - j->oh0) * s->Wo;
    for (int kj = 0; kj < s->KW; kj++) {
        float *row = j->col + ((size_t)(c * s->KH + ki) * s->KW + kj) * band;
        int off_w = kj * p->dil_w - p->pad_w, lo, hi;
        valid_range(s->Wo, p->stride_w, off_w, s->W, &lo, &hi);
        for (int oh = j->oh0; oh < j->oh1; oh++) {
            float *r = row + (size_t)(oh - j->oh0) * s->Wo;
            int ih = oh * p->stride_h - p->pad_h + ki * p->dil_h;
            if (ih < 0 || ih >= s->H) {
                memset(r, 0, (size_t)s->Wo * sizeof(float));
                continue;
            }
            const float *xr = xc + (size_t)ih * s->W + off_w;
            for (int ow = 0; ow < lo; ow++) r[ow] = 0.0f;
            if (p->stride_w == 1)
                memcpy(r + lo, xr + lo, (size_t)(hi - lo) * sizeof(float));
            else if (p->stride_w == 2) /* a constant stride: vectorised */
                for (int ow = lo; ow < hi; ow++) r[ow] = xr[(size_t)ow * 2];
            else
                for (int ow = lo; ow < hi; ow++) r[ow] = xr[(size_t)ow * p->stride_w];
            for (int ow = hi; ow < s->Wo; ow++) r[ow] = 0.0f;
        }
    }
}

/* im2col of `channels` channels of cj's image and band over the pool. */
static void run_im2col(ThreadPool *pool, ColJob *cj, int channels)
{
    threadpool_run(pool, channels * cj->s->KH, im2col_kernel_row, cj);
}

static void col2im_channel(void *arg, int c)
{
    const ColJob *j = arg;
    const Conv2dShape *s = j->s;
    const Conv2dParams *p = &s->p;
    float *dxc = j->dx + (size_t)c * s->H * s->W;
    size_t band = (size_t)(j->oh1 - j->oh0) * s->Wo;
    for (int ki = 0; ki < s->KH; ki++)
        for (int kj = 0; kj < s->KW; kj++) {
            const float *row = j->col + ((size_t)(c * s->KH + ki) * s->KW + kj) * band;
            int off_w = kj * p->dil_w - p->pad_w, lo, hi;
            valid_range(s->Wo, p->stride_w, off_w, s->W, &lo, &hi);
            for (int oh = j->oh0; oh < j->oh1; oh++) {
                int ih = oh * p->stride_h - p->pad_h + ki * p->dil_h;
                if (ih < 0 || ih >= s->H) continue;
                const float *r = row + (size_t)(oh - j->oh0) * s->Wo;
                float *xr = dxc + (size_t)ih * s->W + off_w;
                for (int ow = lo; ow < hi; ow++) xr[(size_t)ow * p->stride_w] += r[ow];
            }
        }
}

/* ---- depthwise: forward tasks are row bands of (image, channel) planes (one band per plane unless
 * planes are few); one task per plane for the input backward, one per channel (looping over images)
 * for the weight gradient so tasks never share an output. ------------------------------------------ */

enum { DEPTHWISE_TASKS_PER_THREAD = 16, DEPTHWISE_MIN_BAND_ROWS = 16 };

typedef struct {
    const Conv2dShape *s;
    const float *x, *w, *b, *dy;
    float *y, *dx, *dw, *db;
    float act;
    int fast3x3; /* 1 or 2: the specialised 3x3 pad-1 kernel of that stride applies; 0: generic */
    int bands;   /* forward tasks per plane (row bands; the specialised kernel only) */
    bool dx_accumulate; /* backward: add into dx (else write it) */
} DepthwiseJob;

static inline void activate_row(float *y, int n, float act)
{
    if (act < 0.0f) return;
    for (int i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : act * y[i];
}

static void depthwise_forward_plane(void *arg, int task)
{
    const DepthwiseJob *j = arg;
    const Conv2dShape *s = j->s;
    const Conv2dParams *p = &s->p;
    /* band-major: where planes are cut into bands, the pool's contiguous shares of tasks (threadpool.h)
     * are then bands of rows of every plane, the rows the same thread computed in the op before */
    int planes = s->N * s->Cin, plane = task % planes, band = task / planes;
    int c = plane % s->Cin;
    const float *x = j->x + (size_t)plane * s->H * s->W;
    const float *w = j->w + (size_t)c * s->KH * s->KW;
    float *y = j->y + (size_t)plane * s->Ho * s->Wo;
    float bias = j->b ? j->b[c] : 0.0f;
    if (j->fast3x3) {
        int rows = (s->Ho + j->bands - 1) / j->bands, oh0 = band * rows;
        int oh1 = oh0 + rows < s->Ho ? oh0 + rows : s->Ho;
        depthwise3x3_plane_kernel()(x, s->H, s->W, w, bias, j->act, y + (size_t)oh0 * s->Wo, j->fast3x3, s->Wo, oh0,
                                    oh1);
        return;
    }
    for (int oh = 0; oh < s->Ho; oh++) {
        float *yr = y + (size_t)oh * s->Wo;
        for (int ow = 0; ow < s->Wo; ow++) yr[ow] = bias;
        for (int ki = 0; ki < s->KH; ki++) {
            int ih = oh * p->stride_h - p->pad_h + ki * p->dil_h;
            if (ih < 0 || ih >= s->H) continue;
            const float *xr = x + (size_t)ih * s->W;
            for (int kj = 0; kj < s->KW; kj++) {
                int off = kj * p->dil_w - p->pad_w, lo, hi;
                valid_range(s->Wo, p->stride_w, off, s->W, &lo, &hi);
                float wv = w[ki * s->KW + kj];
                const float *xs = xr + off;
                if (p->stride_w == 1)
                    for (int ow = lo; ow < hi; ow++) yr[ow] += wv * xs[ow];
                else
                    for (int ow = lo; ow < hi; ow++) yr[ow] += wv * xs[(size_t)ow * p->stride_w];
            }
        }
        activate_row(yr, s->Wo, j->act);
    }
}

static void depthwise_backward_input_plane(void *arg, int plane)
{
    const DepthwiseJob *j = arg;
    const Conv2dShape *s = j->s;
    const Conv2dParams *p = &s->p;
    int c = plane % s->Cin;
    float *dx = j->dx + (size_t)plane * s->H * s->W;
    const float *w = j->w + (size_t)c * s->KH * s->KW;
    const float *dy = j->dy + (size_t)plane * s->Ho * s->Wo;
    for (int oh = 0; oh < s->Ho; oh++) {
        const float *dyr = dy + (size_t)oh * s->Wo;
        for (int ki = 0; ki < s->KH; ki++) {
            int ih = oh * p->stride_h - p->pad_h + ki * p->dil_h;
            if (ih < 0 || ih >= s->H) continue;
            float *xr = dx + (size_t)ih * s->W;
            for (int kj = 0; kj < s->KW; kj++) {
                int off = kj * p->dil_w - p->pad_w, lo, hi;
                valid_range(s->Wo, p->stride_w, off, s->W, &lo, &hi);
                float wv = w[ki * s->KW + kj];
                float *xs = xr + off;
                for (int ow = lo; ow < hi; ow++) xs[(size_t)ow * p->stride_w] += wv * dyr[ow];
            }
        }
    }
}

static void depthwise_backward_weight_channel(void *arg, int c)
{
    const DepthwiseJob *j = arg;
    const Conv2dShape *s = j->s;
    const Conv2dParams *p = &s->p;
    int taps = s->KH * s->KW;
    double a[taps];
    for (int t = 0; t < taps; t++) a[t] = 0;
    double bias_acc = 0;
    for (int n = 0; n < s->N; n++) {
        size_t plane = (size_t)n * s->Cin + c;
        const float *x = j->x + plane * s->H * s->W;
        const float *dy = j->dy + plane * s->Ho * s->Wo;
        for (int oh = 0; oh < s->Ho; oh++) {
            const float *dyr = dy + (size_t)oh * s->Wo;
            if (j->db)
                for (int ow = 0; ow < s->Wo; ow++) bias_acc += dyr[ow];
            if (!j->dw) continue;
            for (int ki = 0; ki < s->KH; ki++) {
                int ih = oh * p->stride_h - p->pad_h + ki * p->dil_h;
                if (ih < 0 || ih >= s->H) continue;
                const float *xr = x + (size_t)ih * s->W;
                for (int kj = 0; kj < s->KW; kj++) {
                    int off = kj * p->dil_w - p->pad_w, lo, hi;
                    valid_range(s->Wo, p->stride_w, off, s->W, &lo, &hi);
                    const float *xs = xr + off;
                    float sum = 0.0f;
                    for (int ow = lo; ow < hi; ow++) sum += dyr[ow] * xs[(size_t)ow * p->stride_w];
                    a[ki * s->KW + kj] += sum;
                }
            }
        }
    }
    if (j->dw)
        for (int t = 0; t < taps; t++) j->dw[(size_t)c * taps + t] += (float)a[t];
    if (j->db) j->db[c] += (float)bias_acc;
}

int conv2d_depthwise3x3_stride(const Conv2dShape *s)
{
    const Conv2dParams *p = &s->p;
    bool k3 = is_depthwise(s) && s->KH == 3 && s->KW == 3 && p->pad_h == 1 && p->pad_w == 1 && p->dil_h == 1 &&
              p->dil_w == 1 && p->stride_h == p->stride_w && conv2d_avx2_available();
    return k3 && (p->stride_h == 1 || p->stride_h == 2) ? p->stride_h : 0;
}

/* At stride 1 the input gradient is the forward stencil over dy with the kernel flipped. */
void conv2d_depthwise3x3_input_grad_plane(const Conv2dShape *s, const float *dy, const float *w, float *dx,
                                          bool accumulate)
{
    if (s->p.stride_h == 2) {
        depthwise3x3_s2_backward_input_avx2(dy, s->Ho, s->Wo, w, dx, s->H, s->W, accumulate);
        return;
    }
    float flipped[9];
    for (int k = 0; k < 9; k++) flipped[k] = w[8 - k];
    depthwise3x3_plane_kernel()(dy, s->Ho, s->Wo, flipped, 0.0f, -1.0f, dx, 1, s->W, 0, s->H);
}

/* The specialised backward (conv2d_depthwise3x3_stride): dx by plane, dw by channel. */
static void depthwise_backward_input_plane_fast(void *arg, int plane)
{
    const DepthwiseJob *j = arg;
    const Conv2dShape *s = j->s;
    conv2d_depthwise3x3_input_grad_plane(s, j->dy + (size_t)plane * s->Ho * s->Wo, j->w + (size_t)(plane % s->Cin) * 9,
                                         j->dx + (size_t)plane * s->H * s->W, j->dx_accumulate);
}

static void depthwise_backward_weight_channel_fast(void *arg, int c)
{
    const DepthwiseJob *j = arg;
    const Conv2dShape *s = j->s;
    double acc[9] = {0}, bias_acc = 0;
    for (int n = 0; n < s->N; n++) {
        size_t plane = (size_t)n * s->Cin + c;
        const float *dy = j->dy + plane * s->Ho * s->Wo;
        if (j->dw) depthwise3x3_backward_weight_avx2(j->x + plane * s->H * s->W, s->H, s->W, dy, s->Ho, s->Wo, j->fast3x3, acc);
        if (j->db)
            for (int i = 0; i < s->Ho * s->Wo; i++) bias_acc += dy[i];
    }
    if (j->dw)
        for (int k = 0; k < 9; k++) j->dw[(size_t)c * 9 + k] += (float)acc[k];
    if (j->db) j->db[c] += (float)bias_acc;
}

/* Weight gradients with this many outputs or more take the blocked, packed GEMM per image (its 6x16 tiles
 * reuse each loaded value more than the dot products' 3x4): 2 threads, best of 6, 1024x256 over 2809
 * pixels 147 -> 173 GFLOP/s, 2048x512 over 729 119 -> 158; below, the dot products win (64x64 over 44100
 * 143 against 92). Since the GEMM packs its operands with register transposes the line moved down from
 * 2^18: ResNet-50's 512x128, 128x512 and 512x256 pointwise layers at 105x105 and its 128x1152 stride-2
 * 3x3 took 0.92, 0.91, 0.85 and 0.84 of the dot products' backward time (medians of alternated pairs, 2
 * threads, Zen 4); its 7x7 stem (64x147) took 1.10, and stays below. */
enum { NT_MAX_OUTPUTS = 1 << 15 };

/* The stem's weight gradient, a task per block of output channels over every image (AVX2). */
typedef struct {
    const Conv2dShape *s;
    const float *x, *dy;
    float *dw;
} StemGradJob;

static void stem_weight_grad_block(void *arg, int task)
{
    const StemGradJob *j = arg;
    const Conv2dShape *s = j->s;
    int co0 = task * CONV3X3_S2_CO_BLOCK, nco = s->Cout - co0 < CONV3X3_S2_CO_BLOCK ? s->Cout - co0 : CONV3X3_S2_CO_BLOCK;
    double acc[CONV3X3_S2_CO_BLOCK * CONV3X3_S2_MAX_CIN * 9] = {0};
    for (int n = 0; n < s->N; n++)
        conv3x3_s2_backward_weight_avx2(j->x + (size_t)n * s->Cin * s->H * s->W, s->Cin, s->H, s->W,
                                        j->dy + (size_t)n * s->Cout * s->Ho * s->Wo, (size_t)s->Ho * s->Wo, co0, nco,
                                        0, s->Ho, s->Wo, acc);
    for (int i = 0; i < nco * s->Cin * 9; i++) j->dw[(size_t)co0 * s->Cin * 9 + i] += (float)acc[i];
}

/* ---- general path --------------------------------------------------------------------------- */

ErrorCode conv2d_pack_weights(Conv2dPacked *pk, const Tensor *w, Conv2dParams p, Error *err)
{
    memset(pk, 0, sizeof *pk);
    if (w->ndim != 4 || w->device != DEVICE_CPU) return error_set(err, ERR_ARG, "conv2d_pack_weights: a 4-d CPU weight");
    int Cout = (int)w->shape[0], K = (int)(w->shape[1] * w->shape[2] * w->shape[3]);
    bool ok = true;
    if (p.groups == 1) ok = sgemm_pack_a(&pk->gemm, false, Cout, K, w->data, K);
    if (ok && conv2d_winograd_weight_shape(w, p)) ok = conv2d_winograd_pack_weights(w->data, Cout, (int)w->shape[1], pk->winograd);
    if (!ok) {
        conv2d_packed_free(pk);
        return error_set(err, ERR_OOM, "out of memory packing conv2d weights");
    }
    return ERR_OK;
}

void conv2d_packed_free(Conv2dPacked *pk)
{
    sgemm_packed_a_free(&pk->gemm);
    for (int e = 0; e < 36; e++) sgemm_packed_a_free(&pk->winograd[e]);
}

/* Targets of groups == 1 through im2col (none for 1x1) + GEMM: one im2col and one packing of each
 * block of it for all of them. */
static void gemm_forward_shared(Context *ctx, const Conv2dShape *s, const float *x, int n, const Conv2dCpuTarget *t,
                                float *scratch)
{
    int K = s->Cin * s->KH * s->KW, HWo = s->Ho * s->Wo;
    int rows = is_pointwise(s) ? s->Ho : col_band_rows(s);
    for (int img = 0; img < s->N; img++) {
        const float *xn = x + (size_t)img * s->Cin * s->H * s->W;
        for (int oh0 = 0; oh0 < s->Ho; oh0 += rows) {
            int oh1 = oh0 + rows < s->Ho ? oh0 + rows : s->Ho, band = (oh1 - oh0) * s->Wo;
            const float *col = xn;
            if (!is_pointwise(s)) {
                ColJob cj = {s, xn, scratch, NULL, oh0, oh1};
                run_im2col(ctx->pool, &cj, s->Cin);
                col = scratch;
            }
            SgemmProduct prods[SGEMM_MAX_PRODUCTS];
            SgemmRight right = {col, band, false};
            for (int q = 0; q < n; q++) {
                const Conv2dCpuTarget *tq = &t[q];
                const SgemmPackedA *packed = tq->packed && tq->packed->gemm.data ? &tq->packed->gemm : NULL;
                /* bias and activation in the GEMM's tile epilogue, while each tile is in cache */
                prods[q] = (SgemmProduct){tq->Cout, tq->w, K, false, packed,
                                          tq->y + (size_t)img * tq->Cout * HWo + (size_t)oh0 * s->Wo, HWo, tq->b, tq->act};
            }
            sgemm_multi(ctx->pool, band, K, 1.0f, &right, 0.0f, prods, n);
        }
    }
}

/* Grouped (not depthwise) convolutions: im2col + GEMM per image and group. */
static void gemm_forward_grouped(Context *ctx, const Conv2dShape *s, const float *x, const Conv2dCpuTarget *t,
                                 float *scratch)
{
    int G = s->p.groups, Cg = s->Cin / G, Cog = s->Cout / G;
    int K = Cg * s->KH * s->KW, HWo = s->Ho * s->Wo;
    int rows = is_pointwise(s) ? s->Ho : col_band_rows(s);
    for (int n = 0; n < s->N; n++)
        for (int gi = 0; gi < G; gi++)
            for (int oh0 = 0; oh0 < s->Ho; oh0 += rows) {
                int oh1 = oh0 + rows < s->Ho ? oh0 + rows : s->Ho, band = (oh1 - oh0) * s->Wo;
                const float *xg = x + ((size_t)n * s->Cin + (size_t)gi * Cg) * s->H * s->W;
                const float *col = xg;
                if (!is_pointwise(s)) {
                    ColJob cj = {s, xg, scratch, NULL, oh0, oh1};
                    run_im2col(ctx->pool, &cj, Cg);
                    col = scratch;
                }
                float *yg = t->y + ((size_t)n * s->Cout + (size_t)gi * Cog) * HWo + (size_t)oh0 * s->Wo;
                sgemm_bias_act(ctx->pool, false, false, Cog, band, K, 1.0f, t->w + (size_t)gi * Cog * K, K, col, band,
                               0.0f, yg, HWo, t->b ? t->b + (size_t)gi * Cog : NULL, t->act);
            }
}

static void conv2d_forward_one(Context *ctx, const Conv2dShape *s, const float *x, const Conv2dCpuTarget *t,
                               float *scratch)
{
    ThreadPool *pool = ctx->pool;
    switch (conv2d_cpu_algorithm(s)) {
    case CONV_CPU_DEPTHWISE: {
        int fast = conv2d_depthwise3x3_stride(s);
        /* Few large planes (the early layers: 8 to 32 channels of 320x240 at 640x480) are cut into row
         * bands, so that the pool has enough pieces to even out the threads' finishing times. */
        int planes = s->N * s->Cin, want = DEPTHWISE_TASKS_PER_THREAD * threadpool_size(pool), bands = 1;
        int max_bands = s->Ho / DEPTHWISE_MIN_BAND_ROWS > 1 ? s->Ho / DEPTHWISE_MIN_BAND_ROWS : 1;
        if (fast && planes < want) bands = (want + planes - 1) / planes;
        if (bands > max_bands) bands = max_bands;
        DepthwiseJob j = {s, x, t->w, t->b, NULL, t->y, NULL, NULL, NULL, t->act, fast, bands, false};
        threadpool_run(pool, planes * bands, depthwise_forward_plane, &j);
        return;
    }
    case CONV_CPU_DIRECT3X3_S2: {
        DirectJob j = {s, x, t->w, t->b, t->y, t->act};
        threadpool_run(pool, s->N * ((s->Ho + DIRECT_ROWS_PER_TASK - 1) / DIRECT_ROWS_PER_TASK), direct3x3_s2_rows, &j);
        return;
    }
    case CONV_CPU_WINOGRAD: conv2d_winograd_forward(ctx, s, x, 1, t, scratch); return;
    case CONV_CPU_GEMM: break;
    }
    if (s->p.groups == 1)
        gemm_forward_shared(ctx, s, x, 1, t, scratch);
    else
        gemm_forward_grouped(ctx, s, x, t, scratch);
}

void conv2d_forward_cpu_shared(Context *ctx, const Conv2dShape *s, const float *x, int n, const Conv2dCpuTarget *t,
                               float *scratch)
{
    /* With one group, every target shares the kernel, params and input channels, so the algorithm of
     * the combined shape suits each (a target too thin for Winograd alone gains from the shared
     * transform). Groups > 1 (depthwise) and the direct kernel have nothing to share. */
    ConvCpuAlgorithm algo = conv2d_cpu_algorithm(s);
    if (n > 1 && s->p.groups == 1 && algo == CONV_CPU_WINOGRAD) {
        conv2d_winograd_forward(ctx, s, x, n, t, scratch);
    } else if (n > 1 && s->p.groups == 1 && algo == CONV_CPU_GEMM) {
        gemm_forward_shared(ctx, s, x, n, t, scratch);
    } else {
        for (int i = 0; i < n; i++) {
            Conv2dShape own = *s;
            own.Cout = t[i].Cout;
            conv2d_forward_one(ctx, &own, x, &t[i], scratch);
        }
    }
}

/* db[c] += the sum of dy over channel c of every image, a task per channel, in double through BatchNorm's
 * moments kernel (one thread's scalar loop took 1.8 ms of a MobileNet training step for the heads' biases:
 * each addition waited for the one before). */
typedef struct {
    const float *dy;
    BnLayout layout;
    float *db;
} BiasGradJob;

static void bias_grad_channel(void *arg, int c)
{
    const BiasGradJob *j = arg;
    double sum, sumsq;
    bn_channel_moments(j->dy, j->layout, c, &sum, &sumsq);
    j->db[c] += (float)sum;
}

void conv2d_backward_cpu(Context *ctx, const Conv2dShape *s, const float *x, const float *w,
                         const float *dy, float *dx, bool dx_accumulate, float *dw, float *db, float *scratch)
{
    ThreadPool *pool = ctx->pool;
    if (is_depthwise(s)) {
        int fast = conv2d_depthwise3x3_stride(s);
        DepthwiseJob j = {s, x, w, NULL, dy, NULL, dx, dw, db, -1.0f, fast, 1, dx_accumulate};
        if (dx && fast && (fast == 2 || !dx_accumulate)) {
            threadpool_run(pool, s->N * s->Cin, depthwise_backward_input_plane_fast, &j);
        } else if (dx) {
            if (!dx_accumulate) memset(dx, 0, sizeof(float) * (size_t)s->N * s->Cin * s->H * s->W);
            threadpool_run(pool, s->N * s->Cin, depthwise_backward_input_plane, &j);
        }
        if (dw || db) threadpool_run(pool, s->Cin, fast ? depthwise_backward_weight_channel_fast : depthwise_backward_weight_channel, &j);
        return;
    }
    int G = s->p.groups, Cg = s->Cin / G, Cog = s->Cout / G;
    int K = Cg * s->KH * s->KW, HWo = s->Ho * s->Wo;
    bool pointwise = is_pointwise(s);
    Conv2dShape t; /* the input gradient as a Winograd forward, where that applies */
    bool winograd_dx = dx && winograd_input_grad_shape(s, &t);
    /* a pointwise GEMM and Winograd write their dx whole; col2im adds into dx */
    if (dx && !dx_accumulate && !pointwise && !winograd_dx)
        memset(dx, 0, sizeof(float) * (size_t)s->N * s->Cin * s->H * s->W);
    if (dw && conv2d_winograd_applies(s)) {
        conv2d_winograd_weight_grad(ctx, s, x, dy, dw, scratch);
        dw = NULL; /* done */
    }
    if (dw && is_direct3x3_s2(s)) {
        StemGradJob sj = {s, x, dy, dw};
        threadpool_run(pool, (s->Cout + CONV3X3_S2_CO_BLOCK - 1) / CONV3X3_S2_CO_BLOCK, stem_weight_grad_block, &sj);
        dw = NULL;
    }
    if (dw && G == 1 && (size_t)s->Cout * K < NT_MAX_OUTPUTS) {
        /* dW[Cout, K] = sum over images of dy[Cout, HWo] col[K, HWo]^T: rows of both run along the output
         * pixels, so the dot-product GEMM reads them in place (a 1x1 convolution's input is its col, all
         * images in one call). Larger weights go through the blocked GEMM below (NT_MAX_OUTPUTS). */
        double *sums = (double *)(scratch + (pointwise ? 0 : (col_band_floats(s) + 15) / 16 * 16));
        memset(sums, 0, sizeof(double) * (size_t)s->Cout * K);
        SgemmNtOperand a = {dy, (size_t)HWo, (size_t)s->Cout * HWo};
        if (pointwise) {
            SgemmNtOperand b = {x, (size_t)HWo, (size_t)s->Cin * HWo};
            sgemm_nt_accumulate(pool, s->Cout, K, HWo, s->N, a, b, sums, (size_t)K);
        } else {
            int rows = col_band_rows(s);
            for (int n = 0; n < s->N; n++)
                for (int oh0 = 0; oh0 < s->Ho; oh0 += rows) {
                    int oh1 = oh0 + rows < s->Ho ? oh0 + rows : s->Ho;
                    ColJob cj = {s, x + (size_t)n * s->Cin * s->H * s->W, scratch, NULL, oh0, oh1};
                    run_im2col(pool, &cj, s->Cin);
                    a.p = dy + (size_t)n * s->Cout * HWo + (size_t)oh0 * s->Wo;
                    SgemmNtOperand b = {scratch, (size_t)(oh1 - oh0) * s->Wo, 0};
                    sgemm_nt_accumulate(pool, s->Cout, K, (oh1 - oh0) * s->Wo, 1, a, b, sums, (size_t)K);
                }
        }
        for (size_t i = 0; i < (size_t)s->Cout * K; i++) dw[i] += (float)sums[i];
        dw = NULL; /* done */
    }
    if (winograd_dx) {
        float *wt = scratch, *wino = scratch + ((size_t)s->Cout * s->Cin * 9 + 15) / 16 * 16;
        FlipJob fj = {w, wt, s->Cout, s->Cin};
        threadpool_run(pool, s->Cin, flip_transpose_channel, &fj);
        Conv2dCpuTarget target = {wt, NULL, s->Cin, -1.0f, NULL, dx, dx_accumulate};
        conv2d_winograd_forward(ctx, &t, dy, 1, &target, wino);
        dx = NULL; /* done */
    }
    int rows = pointwise ? s->Ho : col_band_rows(s);
    for (int n = 0; n < s->N && (dw || dx); n++)
        for (int gi = 0; gi < G; gi++)
            for (int oh0 = 0; oh0 < s->Ho; oh0 += rows) {
                int oh1 = oh0 + rows < s->Ho ? oh0 + rows : s->Ho, band = (oh1 - oh0) * s->Wo;
                const float *xg = x + ((size_t)n * s->Cin + (size_t)gi * Cg) * s->H * s->W;
                const float *dyg = dy + ((size_t)n * s->Cout + (size_t)gi * Cog) * HWo + (size_t)oh0 * s->Wo;
                const float *wg = w + (size_t)gi * Cog * K;
                if (dw) {
                    const float *col = xg;
                    if (!pointwise) {
                        ColJob cj = {s, xg, scratch, NULL, oh0, oh1};
                        run_im2col(pool, &cj, Cg);
                        col = scratch;
                    }
                    /* dW[Cog,K] += dy[Cog,band] col[K,band]^T */
                    sgemm(pool, false, true, Cog, K, band, 1.0f, dyg, HWo, col, band, 1.0f, dw + (size_t)gi * Cog * K, K);
                }
                if (dx) {
                    float *dxg = dx + ((size_t)n * s->Cin + (size_t)gi * Cg) * s->H * s->W;
                    /* dcol[K,band] = W[Cog,K]^T dy[Cog,band] */
                    if (pointwise) {
                        sgemm(pool, true, false, K, HWo, Cog, 1.0f, wg, K, dyg, HWo, dx_accumulate ? 1.0f : 0.0f, dxg,
                              HWo);
                    } else {
                        sgemm(pool, true, false, K, band, Cog, 1.0f, wg, K, dyg, HWo, 0.0f, scratch, band);
                        ColJob cj = {s, NULL, scratch, dxg, oh0, oh1};
                        threadpool_run(pool, Cg, col2im_channel, &cj);
                    }
                }
            }
    if (db) {
        BiasGradJob j = {dy, {s->N, s->Cout, (size_t)HWo}, db};
        threadpool_run(pool, s->Cout, bias_grad_channel, &j);
    }
}

/* ---- autograd wrapper ----------------------------------------------------------------------- */

const char *conv2d_cpu_kind(const Conv2dShape *s)
{
    ConvCpuAlgorithm a = conv2d_cpu_algorithm(s);
    if (a == CONV_CPU_GEMM && is_pointwise(s)) return "1x1";
    return conv2d_cpu_algorithm_name(a);
}

double conv2d_flops(const Conv2dShape *s)
{
    return 2.0 * s->N * s->Cout * s->Ho * s->Wo * (s->Cin / s->p.groups) * s->KH * s->KW;
}

/* The CPU kernels work image by image; the CUDA twin does all images in one batched GEMM. */
static size_t conv2d_scratch_floats(const Var *y, const Conv2dShape *s, bool backward)
{
    if (var_on_cuda(y)) return cuda_conv2d_workspace_floats(s);
    (void)y;
    return backward ? conv2d_cpu_backward_scratch_floats(s) : conv2d_cpu_scratch_floats(s);
}

typedef struct {
    Conv2dShape shape;
    float act;
    Conv2dBranchGroup *group; /* a branch of a shared-input op, or NULL: a convolution of its own */
} ConvSaved;

void conv2d_stacked_backward(Graph *g, const Conv2dBranchGroup *grp, const float *dy, bool biases)
{
    const Conv2dShape *s = &grp->total;
    Var *x = grp->members[0]->inputs[0];
    int K = s->Cin / s->p.groups * s->KH * s->KW, C = s->Cout;
    bool any_dw = false, any_db = false;
    for (int i = 0; i < grp->n; i++) {
        Var *y = grp->members[i], *b = biases && y->n_inputs > 2 ? y->inputs[2] : NULL;
        any_dw |= y->inputs[1]->requires_grad, any_db |= b && b->requires_grad;
    }
    bool dx_accumulate = true;
    float *dx = x->requires_grad ? var_grad_for_write(g, x, &dx_accumulate) : NULL;
    if (!dx && !any_dw && !any_db) return;
    float *w_all = graph_host_scratch(g, sizeof(float) * ((size_t)C * K * (1 + any_dw) + (any_db ? C : 0)));
    size_t scratch_n = conv2d_cpu_backward_scratch_floats(s);
    float *scratch = scratch_n ? graph_workspace(g, scratch_n * sizeof(float)) : NULL;
    if (!graph_ok(g) || !w_all) return;
    float *dw_all = any_dw ? w_all + (size_t)C * K : NULL, *db_all = any_db ? w_all + (size_t)C * K * (1 + any_dw) : NULL;
    if (dw_all) memset(dw_all, 0, sizeof(float) * (size_t)C * K);
    if (db_all) memset(db_all, 0, sizeof(float) * C);
    /* the weights stacked along the output channels, in member order */
    for (int i = 0, c0 = 0; i < grp->n; c0 += (int)grp->members[i]->value.shape[1], i++)
        memcpy(w_all + (size_t)c0 * K, grp->members[i]->inputs[1]->value.data,
               sizeof(float) * (size_t)grp->members[i]->value.shape[1] * K);
    graph_profile_note(g, conv2d_cpu_kind(s), conv2d_flops(s) * ((dx != NULL) + any_dw), 0);
    const float *xv = graph_saved_value(g, x);
    if (!xv) return;
    conv2d_backward_cpu(g->ctx, s, xv, w_all, dy, dx, dx_accumulate, dw_all, db_all, scratch);
    for (int i = 0, c0 = 0; i < grp->n; c0 += (int)grp->members[i]->value.shape[1], i++) {
        Var *y = grp->members[i], *w = y->inputs[1], *b = biases && y->n_inputs > 2 ? y->inputs[2] : NULL;
        int Ci = (int)y->value.shape[1];
        float *dw = w->requires_grad ? var_grad(g, w) : NULL, *db = b && b->requires_grad ? var_grad(g, b) : NULL;
        if (!graph_ok(g)) return;
        if (dw)
            for (size_t k = 0; k < (size_t)Ci * K; k++) dw[k] += dw_all[(size_t)c0 * K + k];
        if (db)
            for (int k = 0; k < Ci; k++) db[k] += db_all[c0 + k];
    }
}

/* A shared-input op's branches (Conv2dBranchGroup): their output gradients, each through its activation
 * (zeros for a branch the loss does not reach), stacked for one backward. */
static void conv2d_group_backward(Graph *g, Conv2dBranchGroup *grp)
{
    grp->done = true;
    const Conv2dShape *s = &grp->total;
    int C = s->Cout;
    size_t HWo = (size_t)s->Ho * s->Wo;
    bool any_dy = false;
    for (int i = 0; i < grp->n; i++) any_dy |= grp->members[i]->grad.data != NULL;
    if (!any_dy) return;
    float *dy = graph_scratch(g, sizeof(float) * s->N * C * HWo);
    if (!dy) return;
    for (int i = 0, c0 = 0; i < grp->n; i++) {
        Var *y = grp->members[i];
        const ConvSaved *cs = y->saved;
        int Ci = cs->shape.Cout;
        const float *dyi = y->grad.data;
        if (dyi && cs->act >= 0.0f) {
            float *masked = graph_scratch(g, tensor_bytes(&y->value));
            if (!masked) return;
            act_grad_from_output(g->ctx->pool, y->value.data, cs->act, dyi, masked, tensor_numel(&y->value));
            dyi = masked;
        }
        for (int n = 0; n < s->N; n++) {
            float *dst = dy + ((size_t)n * C + c0) * HWo;
            if (dyi)
                memcpy(dst, dyi + (size_t)n * Ci * HWo, sizeof(float) * Ci * HWo);
            else /* a branch the loss does not reach */
                memset(dst, 0, sizeof(float) * Ci * HWo);
        }
        c0 += Ci;
    }
    conv2d_stacked_backward(g, grp, dy, true);
}

static void conv2d_backward(Graph *g, Var *y)
{
    const ConvSaved *cs = y->saved;
    if (cs->group) {
        if (!cs->group->done) conv2d_group_backward(g, cs->group);
        return;
    }
    const Conv2dShape *s = &cs->shape;
    Var *x = y->inputs[0], *w = y->inputs[1], *b = y->n_inputs > 2 ? y->inputs[2] : NULL;
    bool dx_accumulate = true;
    float *dx = x->requires_grad ? var_grad_for_write(g, x, &dx_accumulate) : NULL;
    float *dw = w->requires_grad ? var_grad(g, w) : NULL;
    float *db = b && b->requires_grad ? var_grad(g, b) : NULL;
    const float *dy = y->grad.data;
    if (cs->act >= 0.0f) {
        /* Through the fused activation first: its derivative from the output's sign. */
        float *masked = graph_scratch(g, tensor_bytes(&y->value));
        if (!masked) return;
        int64_t n = tensor_numel(&y->value);
        if (var_on_cuda(y)) {
            cuda_fill(g->ctx, masked, 0.0f, n);
            cuda_leaky_relu_backward(g->ctx, y->value.data, dy, masked, cs->act, n);
        } else {
            act_grad_from_output(g->ctx->pool, y->value.data, cs->act, dy, masked, n);
        }
        dy = masked;
    }
    size_t scratch_n = conv2d_scratch_floats(y, s, true);
    float *scratch = scratch_n ? graph_workspace(g, scratch_n * sizeof(float)) : NULL;
    if (!graph_ok(g)) return;
    graph_profile_note(g, conv2d_cpu_kind(s), conv2d_flops(s) * ((dx != NULL) + (dw != NULL)), 0);
    if (var_on_cuda(y)) {
        if (dx && !dx_accumulate) cuda_fill(g->ctx, dx, 0.0f, tensor_numel(&x->value));
        cuda_conv2d_backward(g->ctx, s, x->value.data, w->value.data, dy, dx, dw, db, scratch, &g->err);
        return;
    }
    const float *xv = graph_saved_value(g, x);
    if (xv) conv2d_backward_cpu(g->ctx, s, xv, w->value.data, dy, dx, dx_accumulate, dw, db, scratch);
}

bool ag_conv2d_shared_input(Graph *g, Var *x, Conv2dParams p, int n, const Conv2dBranch *br, Var **out)
{
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (!graph_ok(g)) return false;
    if (!x || n < 1 || n > SGEMM_MAX_PRODUCTS)
        return graph_fail(g, ERR_ARG, "conv2d: NULL input or %d branches (1 to %d)", n, SGEMM_MAX_PRODUCTS), false;
    Conv2dCpuTarget t[SGEMM_MAX_PRODUCTS];
    Conv2dShape total;
    size_t scratch_n = 0;
    for (int i = 0; i < n; i++) {
        Var *w = br[i].w, *b = br[i].b;
        if (!w) return graph_fail(g, ERR_ARG, "conv2d: NULL weight"), false;
        ConvSaved *cs = graph_host_scratch(g, sizeof *cs);
        if (!cs) return false;
        Conv2dShape *s = &cs->shape;
        cs->act = br[i].act;
        cs->group = NULL;
        char msg[256];
        if (!conv2d_shape(s, &x->value, &w->value, b ? &b->value : NULL, p, msg, sizeof msg))
            return graph_fail(g, ERR_SHAPE, "conv2d: %s", msg), false;
        if (i == 0) {
            total = *s;
            total.Cout = 0;
        } else if (s->KH != total.KH || s->KW != total.KW) {
            return graph_fail(g, ERR_SHAPE, "conv2d: branches of one input need one kernel size (%dx%d, %dx%d)",
                              total.KH, total.KW, s->KH, s->KW), false;
        }
        total.Cout += s->Cout;
        Var *inputs[3] = {x, w, b};
        int64_t shape[4] = {s->N, s->Cout, s->Ho, s->Wo};
        Var *y = graph_op_output(g, cs->act < 0.0f ? "conv2d" : "conv2d_act", inputs, b ? 3 : 2, 4, shape,
                                 conv2d_backward);
        if (!y) return false;
        int64_t attrs[7] = {p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w, p.groups};
        graph_trace_attrs(g, y, attrs, 7, cs->act);
        graph_op_saves(y, GRAPH_SAVES_INPUT(0) | GRAPH_SAVES_INPUT(1) | (cs->act >= 0.0f ? GRAPH_SAVES_OUTPUT : 0));
        y->reads_recomputed = !var_on_cuda(y); /* the CPU backward reads x through graph_saved_value */
        y->saved = cs;
        out[i] = y;
        size_t own = conv2d_scratch_floats(y, s, false);
        if (own > scratch_n) scratch_n = own;
        const Conv2dPacked *pk = br[i].packed;
        int K = s->Cin / p.groups * s->KH * s->KW;
        if (pk && ((pk->gemm.data && (pk->gemm.M != s->Cout || pk->gemm.K != K)) ||
                   (pk->winograd[0].data && (pk->winograd[0].M != s->Cout || pk->winograd[0].K != s->Cin))))
            return graph_fail(g, ERR_SHAPE, "conv2d: packed weights are not those of a [%d,%d,%d,%d] weight", s->Cout,
                              s->Cin / p.groups, s->KH, s->KW), false;
        t[i] = (Conv2dCpuTarget){w->value.data, b ? b->value.data : NULL, s->Cout, cs->act, pk, y->value.data, false};
    }
    /* one backward for the branches (Conv2dBranchGroup); grouped convolutions would interleave the
     * branches' channels with the groups', so they keep a backward each */
    if (n > 1 && p.groups == 1 && !var_on_cuda(out[0])) {
        Conv2dBranchGroup *grp = graph_host_scratch(g, sizeof *grp);
        if (!grp) return false;
        grp->n = n, grp->total = total, grp->done = false;
        for (int i = 0; i < n; i++) grp->members[i] = out[i], ((ConvSaved *)out[i]->saved)->group = grp;
    }
    size_t shared_n = conv2d_scratch_floats(out[0], &total, false);
    if (shared_n > scratch_n) scratch_n = shared_n;
    float *scratch = scratch_n ? graph_workspace(g, scratch_n * sizeof(float)) : NULL;
    if (!graph_ok(g)) return false;
    graph_profile_note(g, conv2d_cpu_kind(&total), conv2d_flops(&total), 0);
    if (var_on_cuda(out[0])) {
        for (int i = 0; i < n && graph_ok(g); i++)
            cuda_conv2d_forward(g->ctx, &((const ConvSaved *)out[i]->saved)->shape, x->value.data, t[i].w, t[i].b,
                                t[i].act, t[i].y, scratch, &g->err);
        return graph_ok(g);
    }
    conv2d_forward_cpu_shared(g->ctx, &total, x->value.data, n, t, scratch);
    return true;
}

Var *ag_conv2d_act(Graph *g, Var *x, Var *w, Var *b, Conv2dParams p, float act)
{
    Conv2dBranch br = {w, b, act, NULL};
    Var *y;
    return ag_conv2d_shared_input(g, x, p, 1, &br, &y) ? y : NULL;
}

Var *ag_conv2d(Graph *g, Var *x, Var *w, Var *b, Conv2dParams p) { return ag_conv2d_act(g, x, w, b, p, -1.0f); }
