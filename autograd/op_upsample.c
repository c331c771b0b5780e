/* Nearest upsampling to an explicit size. The source index is computed exactly as PyTorch's
 * "nearest" does, in float: floor(o * (float)in / out), clamped; the integer form o*in/out can
 * differ by one where the float product rounds down. */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "tensor/context.h"
#ifdef HAVE_CUDA
#include "cuda_kernels/cuda_ops.h"
#endif

static int source_index(int o, int in, int out)
{
    float scale = (float)in / (float)out;
    int s = (int)floorf((float)o * scale);
    return s < in ? s : in - 1;
}

static void upsample_backward(Graph *g, Var *y)
{
    Var *x = y->inputs[0];
    float *dx = var_grad(g, x);
    if (!dx) return;
    int NC = (int)(x->value.shape[0] * x->value.shape[1]);
    int H = (int)x->value.shape[2], W = (int)x->value.shape[3];
    int Ho = (int)y->value.shape[2], Wo = (int)y->value.shape[3];
#ifdef HAVE_CUDA
    if (var_on_cuda(y)) {
        cuda_upsample_nearest(g->ctx, y->grad.data, dx, NC, H, W, Ho, Wo, true);
        graph_check_cuda(g, "upsample_nearest backward");
        return;
    }
#endif
    for (int p = 0; p < NC; p++) {
        float *d = dx + (size_t)p * H * W;
        const float *dy = y->grad.data + (size_t)p * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++) {
            float *row = d + (size_t)source_index(oh, H, Ho) * W;
            for (int ow = 0; ow < Wo; ow++) row[source_index(ow, W, Wo)] += dy[(size_t)oh * Wo + ow];
        }
    }
}

typedef struct {
    const float *x;
    float *y;
    int H, W, out_h, out_w;
    const int *cols; /* source column of each output column */
} UpsampleJob;

static void upsample_plane(void *arg, int p)
{
    const UpsampleJob *j = arg;
    const float *src = j->x + (size_t)p * j->H * j->W;
    float *dst = j->y + (size_t)p * j->out_h * j->out_w;
    int prev = -1;
    for (int oh = 0; oh < j->out_h; oh++) {
        int ih = source_index(oh, j->H, j->out_h);
        float *out = dst + (size_t)oh * j->out_w;
        if (ih == prev) { /* the same source row as the row above: a copy */
            memcpy(out, out - j->out_w, sizeof(float) * (size_t)j->out_w);
            continue;
        }
        prev = ih;
        const float *row = src + (size_t)ih * j->W;
        for (int ow = 0; ow < j->out_w; ow++) out[ow] = row[j->cols[ow]];
    }
}

Var *ag_upsample_nearest(Graph *g, Var *x, int out_h, int out_w)
{
    if (!graph_ok(g)) return NULL;
    if (!x) return graph_fail(g, ERR_ARG, "upsample_nearest: NULL input");
    if (x->value.ndim != 4 || out_h < 1 || out_w < 1)
        return graph_fail(g, ERR_SHAPE, "upsample_nearest: needs a 4-d input and a positive size");
    int64_t shape[4] = {x->value.shape[0], x->value.shape[1], out_h, out_w};
    Var *y = graph_op_output(g, "upsample_nearest", &x, 1, 4, shape, upsample_backward);
    if (!y) return NULL;
    int NC = (int)(shape[0] * shape[1]);
    int H = (int)x->value.shape[2], W = (int)x->value.shape[3];
#ifdef HAVE_CUDA
    if (var_on_cuda(x)) {
        cuda_upsample_nearest(g->ctx, x->value.data, y->value.data, NC, H, W, out_h, out_w, false);
        return graph_check_cuda(g, "upsample_nearest") ? y : NULL;
    }
#endif
    /* source columns once, not per pixel; one pool task per plane */
    int *cols = graph_host_scratch(g, sizeof(int) * (size_t)out_w);
    if (!cols) return NULL;
    for (int ow = 0; ow < out_w; ow++) cols[ow] = source_index(ow, W, out_w);
    UpsampleJob j = {x->value.data, y->value.data, H, W, out_h, out_w, cols};
    threadpool_run(g->ctx->pool, NC, upsample_plane, &j);
    return y;
}
