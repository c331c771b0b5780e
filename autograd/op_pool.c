/* Global average pooling and max pooling (the ResNet stem's 3x3/2, pad 1). Max pooling saves the
 * argmax of every output so backward routes the gradient to the chosen input (first max wins, as
 * PyTorch). */
#include <float.h>
#include <string.h>

#include "autograd/conv2d_avx2.h"
#include "autograd/ops.h"
#include "cuda_kernels/cuda_ops.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static void global_avg_pool_backward(Graph *g, Var *y)
{
    Var *x = y->inputs[0];
    float *dx = var_grad(g, x);
    if (!dx) return;
    int64_t planes = x->value.shape[0] * x->value.shape[1];
    int64_t hw = x->value.shape[2] * x->value.shape[3];
    if (var_on_cuda(y)) {
        cuda_global_avg_pool(g->ctx, y->grad.data, dx, planes, hw, true);
        graph_check_cuda(g, "global_avg_pool backward");
        return;
    }
    for (int64_t p = 0; p < planes; p++) {
        float d = y->grad.data[p] / (float)hw;
        for (int64_t i = 0; i < hw; i++) dx[p * hw + i] += d;
    }
}

Var *ag_global_avg_pool(Graph *g, Var *x)
{
    if (!graph_ok(g)) return NULL;
    if (!x || x->value.ndim != 4) return graph_fail(g, ERR_SHAPE, "global_avg_pool: needs a 4-d input");
    int64_t shape[4] = {x->value.shape[0], x->value.shape[1], 1, 1};
    Var *y = graph_op_output(g, "global_avg_pool", &x, 1, 4, shape, global_avg_pool_backward);
    if (y) graph_op_saves(y, 0);
    if (!y) return NULL;
    int64_t planes = shape[0] * shape[1], hw = x->value.shape[2] * x->value.shape[3];
    if (var_on_cuda(x)) {
        cuda_global_avg_pool(g->ctx, x->value.data, y->value.data, planes, hw, false);
        return graph_check_cuda(g, "global_avg_pool") ? y : NULL;
    }
    for (int64_t p = 0; p < planes; p++) {
        double acc = 0;
        for (int64_t i = 0; i < hw; i++) acc += x->value.data[p * hw + i];
        y->value.data[p] = (float)(acc / (double)hw);
    }
    return y;
}

/* One plane per pool task, forward and backward. On the CPU each output keeps where its max was as its
 * index in the window (one byte: kernels up to 15x15), not as a flat input index (four). */
typedef struct {
    const float *x, *dy;
    float *y, *dx;
    uint8_t *window;
    int H, W, Ho, Wo, kernel, stride, padding;
    bool dx_accumulate; /* backward: add to dx (false: write it) */
} MaxPoolJob;

/* The window of output (oh, ow) within rows [k0, k1) and columns [c0, c1) of the kernel: its max (the
 * first one in scan order on ties) and that position in the window. Branch-free compare and select: with
 * a branch per element, the data-dependent maxima mispredicted (ResNet-50's 3x3 stride-2 pool at 420x420
 * took 56 ms). */
static inline void window_max(const float *in, int W, int ih0, int iw0, int kernel, int k0, int k1, int c0, int c1,
                              float *best_out, int *arg_out)
{
    float best = in[(size_t)(ih0 + k0) * W + iw0 + c0];
    int arg = k0 * kernel + c0;
    for (int ki = k0; ki < k1; ki++) {
        const float *row = in + (size_t)(ih0 + ki) * W + iw0;
        for (int kj = c0; kj < c1; kj++) {
            float v = row[kj];
            int gt = v > best;
            best = gt ? v : best;
            arg = gt ? ki * kernel + kj : arg;
        }
    }
    *best_out = best, *arg_out = arg;
}

#if defined(__x86_64__)
/* Columns c, c + 2, ..., c + 14 of a row, in order. */
__attribute__((target("avx2"))) static inline __m256 even_columns(const float *row, int c)
{
    __m256 s = _mm256_shuffle_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(row + c + 8), _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_permutevar8x32_ps(s, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
}

/* Outputs [ow, ow + 8) of one output row of the 3x3 stride-2 pool, whose windows lie inside the row's
 * columns (input rows k0..k1 of the window): window_max's compares in its scan order, 8 outputs a lane
 * each, so the maxima and their positions are the scalar ones. */
__attribute__((target("avx2"))) static void window_max3s2_x8(const float *in, int W, int ih0, int iw0, int k0, int k1,
                                                            float *y, uint8_t *win)
{
    __m256 best = _mm256_setzero_ps(), arg = _mm256_setzero_ps();
    for (int ki = k0; ki < k1; ki++) {
        const float *row = in + (size_t)(ih0 + ki) * W;
        for (int kj = 0; kj < 3; kj++) {
            __m256 v = even_columns(row, iw0 + kj), k = _mm256_set1_ps((float)(ki * 3 + kj));
            if (ki == k0 && kj == 0) {
                best = v, arg = k;
                continue;
            }
            __m256 gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
            best = _mm256_blendv_ps(best, v, gt), arg = _mm256_blendv_ps(arg, k, gt);
        }
    }
    float a[8];
    _mm256_storeu_ps(y, best), _mm256_storeu_ps(a, arg);
    for (int l = 0; l < 8; l++) win[l] = (uint8_t)a[l];
}
#endif

/* The ResNet stem's 3x3 stride-2 pool 8 outputs at a time where the CPU has AVX2 (scalar, its compares and
 * selects took 30 ms of a ResNet-50 step at 840x840, 3.7 GB/s). */
static bool pool3s2_vector(const MaxPoolJob *j)
{
#if defined(__x86_64__)
    return j->kernel == 3 && j->stride == 2 && conv2d_avx2_available();
#else
    (void)j;
    return false;
#endif
}

static void max_pool_forward_plane(void *arg, int p)
{
    const MaxPoolJob *j = arg;
    const float *in = j->x + (size_t)p * j->H * j->W;
    int k = j->kernel;
    bool vector = pool3s2_vector(j);
    for (int oh = 0; oh < j->Ho; oh++) {
        int ih0 = oh * j->stride - j->padding;
        int k0 = ih0 < 0 ? -ih0 : 0, k1 = ih0 + k > j->H ? j->H - ih0 : k;
        float *y = j->y + ((size_t)p * j->Ho + oh) * j->Wo;
        uint8_t *win = j->window + ((size_t)p * j->Ho + oh) * j->Wo;
        for (int ow = 0; ow < j->Wo; ow++) {
#if defined(__x86_64__)
            /* 8 windows from column 2 ow - padding >= 0, whose loads end at column 2 ow - padding + 17 < W */
            if (vector && 2 * ow - j->padding >= 0 && 2 * ow - j->padding + 17 < j->W && ow + 8 <= j->Wo) {
                window_max3s2_x8(in, j->W, ih0, 2 * ow - j->padding, k0, k1, y + ow, win + ow);
                ow += 7;
                continue;
            }
#endif
            int iw0 = ow * j->stride - j->padding;
            int c0 = iw0 < 0 ? -iw0 : 0, c1 = iw0 + k > j->W ? j->W - iw0 : k;
            float best;
            int a;
            if (c0 == 0 && c1 == k) /* the interior: the kernel's width is a constant of the loop */
                window_max(in, j->W, ih0, iw0, k, k0, k1, 0, k, &best, &a);
            else
                window_max(in, j->W, ih0, iw0, k, k0, k1, c0, c1, &best, &a);
            y[ow] = best;
            win[ow] = (uint8_t)a; /* every window holds an input pixel: 2 padding <= kernel */
        }
    }
}

/* dx of one plane: zeroed here first unless it accumulates, so the plane is in cache for the adds (a gradient
 * zeroed whole beforehand went to memory and came back plane by plane: ResNet-50's pool at 420x420, batch 2,
 * 90 MB of dx, backward 36.1-36.9 -> 15.9-16.2 ms, 2 threads, Zen 4, alternated in one process). */
static void max_pool_backward_plane(void *arg, int p)
{
    const MaxPoolJob *j = arg;
    size_t out_hw = (size_t)j->Ho * j->Wo;
    float *dx = j->dx + (size_t)p * j->H * j->W;
    if (!j->dx_accumulate) memset(dx, 0, sizeof(float) * (size_t)j->H * j->W);
    for (int oh = 0; oh < j->Ho; oh++)
        for (int ow = 0; ow < j->Wo; ow++) {
            size_t o = (size_t)p * out_hw + (size_t)oh * j->Wo + ow;
            int a = j->window[o], ih = oh * j->stride - j->padding + a / j->kernel;
            int iw = ow * j->stride - j->padding + a % j->kernel;
            dx[(size_t)ih * j->W + iw] += j->dy[o];
        }
}

typedef struct {
    int32_t *argmax; /* GPU: per output, flat input index of the max (device memory) */
    uint8_t *window; /* CPU: per output, its index in the window */
    int kernel, stride, padding;
} MaxPoolSaved;

static void max_pool2d_backward(Graph *g, Var *y)
{
    bool accumulate = true;
    float *dx = var_on_cuda(y) ? var_grad(g, y->inputs[0]) : var_grad_for_write(g, y->inputs[0], &accumulate);
    if (!dx) return;
    const MaxPoolSaved *ms = y->saved;
    Var *x = y->inputs[0];
    int64_t planes = y->value.shape[0] * y->value.shape[1];
    if (var_on_cuda(y)) {
        cuda_max_pool2d_backward_full(g->ctx, y->grad.data, ms->argmax, dx, (int)planes, (int)x->value.shape[2],
                                      (int)x->value.shape[3], (int)y->value.shape[2], (int)y->value.shape[3],
                                      ms->kernel, ms->stride, ms->padding);
        graph_check_cuda(g, "max_pool2d backward");
        return;
    }
    MaxPoolJob j = {NULL, y->grad.data, NULL, dx, ms->window, (int)x->value.shape[2], (int)x->value.shape[3],
                    (int)y->value.shape[2], (int)y->value.shape[3], ms->kernel, ms->stride, ms->padding, accumulate};
    threadpool_run(g->ctx->pool, (int)planes, max_pool_backward_plane, &j);
}

Var *ag_max_pool2d(Graph *g, Var *x, int kernel, int stride, int padding)
{
    if (!graph_ok(g)) return NULL;
    if (!x || x->value.ndim != 4) return graph_fail(g, ERR_SHAPE, "max_pool2d: needs a 4-d input");
    if (kernel < 1 || kernel > 15 || stride < 1 || padding < 0 || 2 * padding > kernel)
        return graph_fail(g, ERR_ARG, "max_pool2d: invalid kernel/stride/padding (kernel 1 to 15)");
    int H = (int)x->value.shape[2], W = (int)x->value.shape[3];
    int Ho = (H + 2 * padding - kernel) / stride + 1, Wo = (W + 2 * padding - kernel) / stride + 1;
    if (Ho < 1 || Wo < 1) return graph_fail(g, ERR_SHAPE, "max_pool2d: input smaller than kernel");
    int64_t shape[4] = {x->value.shape[0], x->value.shape[1], Ho, Wo};
    Var *y = graph_op_output(g, "max_pool2d", &x, 1, 4, shape, max_pool2d_backward);
    if (y) graph_op_saves(y, 0);
    int64_t attrs[3] = {kernel, stride, padding};
    graph_trace_attrs(g, y, attrs, 3, 0.0f);
    if (!y) return NULL;
    int64_t planes = shape[0] * shape[1];
    size_t n_out = (size_t)(planes * Ho * Wo);
    MaxPoolSaved *ms = graph_host_scratch(g, sizeof *ms);
    if (!ms) return NULL;
    memset(ms, 0, sizeof *ms);
    ms->kernel = kernel, ms->stride = stride, ms->padding = padding;
    if (var_on_cuda(x)) ms->argmax = graph_scratch(g, n_out * sizeof(int32_t));
    else ms->window = graph_host_scratch(g, n_out);
    if (!ms->argmax && !ms->window) return NULL;
    y->saved = ms;
    if (var_on_cuda(x)) {
        cuda_max_pool2d_forward(g->ctx, x->value.data, y->value.data, ms->argmax, (int)planes, H, W, Ho, Wo, kernel,
                                stride, padding);
        return graph_check_cuda(g, "max_pool2d") ? y : NULL;
    }
    MaxPoolJob j = {x->value.data, NULL, y->value.data, NULL, ms->window, H, W, Ho, Wo, kernel, stride, padding, false};
    threadpool_run(g->ctx->pool, (int)planes, max_pool_forward_plane, &j);
    return y;
}
