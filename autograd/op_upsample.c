/* Nearest upsampling to an explicit size, alone or added to a tensor of that size (the FPN's top-down
 * path: one pass instead of writing the upsampled tensor and reading it back). The source index is
 * computed exactly as PyTorch's "nearest" does, in float: floor(o * (float)in / out), clamped; the
 * integer form o*in/out can differ by one where the float product rounds down. */
#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "autograd/conv2d_avx2.h"
#include "autograd/ops.h"
#include "tensor/context.h"
#include "cuda_kernels/cuda_ops.h"

static int source_index(int o, int in, int out)
{
    float scale = (float)in / (float)out;
    int s = (int)floorf((float)o * scale);
    return s < in ? s : in - 1;
}

/* dx [NC,H,W] += the sum of dy [NC,Ho,Wo] over each source pixel's copies (CPU): a pool task per plane,
 * source rows and columns looked up once per call. */
typedef struct {
    const float *dy;
    float *dx;
    int H, W, Ho, Wo;
    int *rows, *cols; /* source row of each output row, source column of each output column */
} ScatterJob;

static void scatter_plane(void *arg, int p)
{
    const ScatterJob *j = arg;
    float *d = j->dx + (size_t)p * j->H * j->W;
    const float *dyp = j->dy + (size_t)p * j->Ho * j->Wo;
    for (int oh = 0; oh < j->Ho; oh++) {
        float *row = d + (size_t)j->rows[oh] * j->W;
        const float *src = dyp + (size_t)oh * j->Wo;
        for (int ow = 0; ow < j->Wo; ow++) row[j->cols[ow]] += src[ow];
    }
}

static void upsample_scatter_add(Graph *g, const float *dy, float *dx, int NC, int H, int W, int Ho, int Wo)
{
    ScatterJob j = {dy, dx, H, W, Ho, Wo, graph_host_scratch(g, sizeof(int) * (size_t)Ho),
                    graph_host_scratch(g, sizeof(int) * (size_t)Wo)};
    if (!j.rows || !j.cols) return;
    for (int oh = 0; oh < Ho; oh++) j.rows[oh] = source_index(oh, H, Ho);
    for (int ow = 0; ow < Wo; ow++) j.cols[ow] = source_index(ow, W, Wo);
    threadpool_run(g->ctx->pool, NC, scatter_plane, &j);
}

static void upsample_backward(Graph *g, Var *y)
{
    Var *x = y->inputs[0];
    float *dx = var_grad(g, x);
    if (!dx) return;
    int NC = (int)(x->value.shape[0] * x->value.shape[1]);
    int H = (int)x->value.shape[2], W = (int)x->value.shape[3];
    int Ho = (int)y->value.shape[2], Wo = (int)y->value.shape[3];
    if (var_on_cuda(y)) {
        cuda_upsample_nearest(g->ctx, y->grad.data, dx, NC, H, W, Ho, Wo, true);
        graph_check_cuda(g, "upsample_nearest backward");
        return;
    }
    upsample_scatter_add(g, y->grad.data, dx, NC, H, W, Ho, Wo);
}

typedef struct {
    const float *x, *add; /* add: the tensor the upsampled x is added to, or NULL */
    float *y;
    int H, W, out_h, out_w;
    const int *cols; /* source column of each output column */
    bool doubled;    /* out_w == 2 W on a CPU with AVX2: the register-duplication path applies */
} UpsampleJob;

#if defined(__x86_64__)
/* out[k] = add[k] + row[k / 2] for k < n, n a multiple of 8: the exact 2x case, each source float
 * duplicated in registers rather than gathered. */
__attribute__((target("avx2"))) static void add_doubled_row_avx2(const float *row, const float *add, float *out, int n)
{
    for (int k = 0; k < n; k += 8) {
        __m128 src = _mm_loadu_ps(row + k / 2);
        __m256 dup = _mm256_set_m128(_mm_unpackhi_ps(src, src), _mm_unpacklo_ps(src, src));
        _mm256_storeu_ps(out + k, _mm256_add_ps(_mm256_loadu_ps(add + k), dup));
    }
}
#endif

static void upsample_plane(void *arg, int p)
{
    const UpsampleJob *j = arg;
    const float *src = j->x + (size_t)p * j->H * j->W;
    size_t out_plane = (size_t)p * j->out_h * j->out_w;
    float *dst = j->y + out_plane;
    const float *add = j->add ? j->add + out_plane : NULL;
    int prev = -1;
    for (int oh = 0; oh < j->out_h; oh++) {
        int ih = source_index(oh, j->H, j->out_h);
        float *out = dst + (size_t)oh * j->out_w;
        const float *row = src + (size_t)ih * j->W;
        if (!add) {
            if (ih == prev) { /* the same source row as the row above: a copy */
                memcpy(out, out - j->out_w, sizeof(float) * (size_t)j->out_w);
                continue;
            }
            prev = ih;
            for (int ow = 0; ow < j->out_w; ow++) out[ow] = row[j->cols[ow]];
            continue;
        }
        const float *a = add + (size_t)oh * j->out_w;
        int ow = 0;
#if defined(__x86_64__)
        if (j->doubled) {
            ow = j->out_w / 8 * 8;
            add_doubled_row_avx2(row, a, out, ow);
        }
#endif
        for (; ow < j->out_w; ow++) out[ow] = a[ow] + row[j->cols[ow]];
    }
}

/* y = add + upsample(x) (add NULL: the upsampling alone) on the CPU. */
static bool upsample_forward_cpu(Graph *g, const Var *x, const float *add, Var *y)
{
    int NC = (int)(y->value.shape[0] * y->value.shape[1]);
    int H = (int)x->value.shape[2], W = (int)x->value.shape[3];
    int out_h = (int)y->value.shape[2], out_w = (int)y->value.shape[3];
    /* source columns once, not per pixel; one pool task per plane */
    int *cols = graph_host_scratch(g, sizeof(int) * (size_t)out_w);
    if (!cols) return false;
    for (int ow = 0; ow < out_w; ow++) cols[ow] = source_index(ow, W, out_w);
    UpsampleJob j = {x->value.data, add, y->value.data, H, W, out_h, out_w, cols,
                     out_w == 2 * W && conv2d_avx2_available()};
    threadpool_run(g->ctx->pool, NC, upsample_plane, &j);
    return true;
}

Var *ag_upsample_nearest(Graph *g, Var *x, int out_h, int out_w)
{
    if (!graph_ok(g)) return NULL;
    if (!x) return graph_fail(g, ERR_ARG, "upsample_nearest: NULL input");
    if (x->value.ndim != 4 || out_h < 1 || out_w < 1)
        return graph_fail(g, ERR_SHAPE, "upsample_nearest: needs a 4-d input and a positive size");
    int64_t shape[4] = {x->value.shape[0], x->value.shape[1], out_h, out_w};
    Var *y = graph_op_output(g, "upsample_nearest", &x, 1, 4, shape, upsample_backward);
    if (y) graph_op_saves(y, 0);
    if (!y) return NULL;
    if (var_on_cuda(x)) {
        int NC = (int)(shape[0] * shape[1]);
        int H = (int)x->value.shape[2], W = (int)x->value.shape[3];
        cuda_upsample_nearest(g->ctx, x->value.data, y->value.data, NC, H, W, out_h, out_w, false);
        return graph_check_cuda(g, "upsample_nearest") ? y : NULL;
    }
    return upsample_forward_cpu(g, x, NULL, y) ? y : NULL;
}

static void add_upsampled_backward(Graph *g, Var *y)
{
    Var *a = y->inputs[0], *x = y->inputs[1];
    float *dx = x->requires_grad ? var_grad(g, x) : NULL;
    if (dx)
        upsample_scatter_add(g, y->grad.data, dx, (int)(x->value.shape[0] * x->value.shape[1]), (int)x->value.shape[2],
                             (int)x->value.shape[3], (int)y->value.shape[2], (int)y->value.shape[3]);
    if (graph_ok(g) && a->requires_grad) var_grad_pass_host(g, a, y); /* last: it may take y's gradient */
}

Var *ag_add_upsampled(Graph *g, Var *a, Var *x)
{
    if (!graph_ok(g)) return NULL;
    if (!a || !x) return graph_fail(g, ERR_ARG, "add_upsampled: NULL input");
    if (a->value.ndim != 4 || x->value.ndim != 4 || a->value.shape[0] != x->value.shape[0] ||
        a->value.shape[1] != x->value.shape[1]) {
        char sa[96], sx[96];
        return graph_fail(g, ERR_SHAPE, "add_upsampled: shapes %s and %s are not [N,C,H,W] of the same N and C",
                          tensor_shape_str(&a->value, sa, sizeof sa), tensor_shape_str(&x->value, sx, sizeof sx));
    }
    /* on the GPU the two ops it stands for, each with its CUDA kernels */
    if (var_on_cuda(a)) return ag_add(g, a, ag_upsample_nearest(g, x, (int)a->value.shape[2], (int)a->value.shape[3]));
    Var *inputs[2] = {a, x};
    Var *y = graph_op_output(g, "add_upsampled", inputs, 2, 4, a->value.shape, add_upsampled_backward);
    if (y) graph_op_saves(y, 0);
    if (!y) return NULL;
    return upsample_forward_cpu(g, x, a->value.data, y) ? y : NULL;
}
