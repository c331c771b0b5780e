/* A depthwise-separable block as one op: h = act_d(depthwise3x3(x) + b_d) (padding 1, stride 1 or 2), then
 * y = act_p(W_p h + b_p) (1x1). The CPU forward goes by bands of h's rows: a task makes a band of h, every
 * channel, in a buffer of its own and multiplies it by W_p there, so h is never written out and read back.
 * The backward makes h again and runs the two convolutions' backwards. */
#include <string.h>

#include "autograd/activation_cpu.h"
#include "autograd/conv2d_avx2.h"
#include "autograd/conv2d_cpu.h"
#include "autograd/ops.h"
#include "tensor/context.h"

/* A band's buffer of h holds about BAND_FLOATS floats, so that it stays in the core's L2 between the
 * depthwise kernel writing it and the GEMM reading it; SLOTS_PER_THREAD buffers (tasks) per thread let the
 * pool even out the threads' finishing times. */
enum { BAND_FLOATS = 32768, SLOTS_PER_THREAD = 4 };

typedef struct {
    Conv2dShape dw, pw; /* dw: x -> h (groups = channels), pw: h -> y */
    float act_d, act_p;
    int w_d, b_d, w_p, b_p; /* input index of each weight and bias (-1: no bias) */
} SeparableSaved;

typedef struct {
    const SeparableSaved *s;
    const float *x, *w_d, *b_d, *w_p, *b_p;
    const SgemmPackedA *packed_p; /* W_p packed, or NULL */
    float *y, *slots;
    ThreadPool *pool;
    int band_rows, bands, units, tasks;
    size_t slot_floats;
} SeparableJob;

/* Units (image, band) [units task / tasks, units (task + 1) / tasks), in slot `task`: a task per slot, so no
 * two tasks running at once share a buffer. */
static void separable_task(void *arg, int task)
{
    const SeparableJob *j = arg;
    const Conv2dShape *d = &j->s->dw, *p = &j->s->pw;
    float *h = j->slots + (size_t)task * j->slot_floats;
    int u0 = (int)((long)j->units * task / j->tasks), u1 = (int)((long)j->units * (task + 1) / j->tasks);
    size_t in_plane = (size_t)d->H * d->W, out_plane = (size_t)d->Ho * d->Wo;
    DepthwisePlaneFn plane = depthwise3x3_plane_kernel();
    for (int u = u0; u < u1; u++) {
        int n = u / j->bands, r0 = u % j->bands * j->band_rows;
        int r1 = r0 + j->band_rows < d->Ho ? r0 + j->band_rows : d->Ho, cols = (r1 - r0) * d->Wo;
        for (int c = 0; c < d->Cin; c++)
            plane(j->x + ((size_t)n * d->Cin + c) * in_plane, d->H, d->W, j->w_d + (size_t)c * 9, j->b_d ? j->b_d[c] : 0.0f,
                  j->s->act_d, h + (size_t)c * cols, d->p.stride_h, d->Wo, r0, r1);
        SgemmProduct pr = {p->Cout, j->w_p, p->Cin, false, j->packed_p,
                           j->y + (size_t)n * p->Cout * out_plane + (size_t)r0 * d->Wo, (int)out_plane, j->b_p,
                           j->s->act_p};
        SgemmRight right = {h, cols, false};
        /* a nested call: the pool runs it on this thread, with this thread's packing buffer */
        sgemm_multi(j->pool, cols, p->Cin, 1.0f, &right, 0.0f, &pr, 1);
    }
}

static bool separable_forward_cpu(Graph *g, const SeparableSaved *s, const float *x, const float *w_d,
                                  const float *b_d, const float *w_p, const float *b_p, const SgemmPackedA *packed_p,
                                  float *y)
{
    ThreadPool *pool = g->ctx->pool;
    const Conv2dShape *d = &s->dw;
    int threads = threadpool_size(pool), rows = BAND_FLOATS / (d->Cin * d->Wo);
    rows = rows < 1 ? 1 : rows > d->Ho ? d->Ho : rows;
    /* bands of an image a multiple of the threads (then as even as the rows allow): a layer of few bands
     * (30x40 in three) would otherwise leave a thread waiting for a whole band */
    int bands = (d->Ho + rows - 1) / rows;
    if (d->N < SLOTS_PER_THREAD * threads) {
        bands = (bands + threads - 1) / threads * threads;
        rows = (d->Ho + bands - 1) / bands;
        bands = (d->Ho + rows - 1) / rows;
    }
    int units = d->N * bands, tasks = SLOTS_PER_THREAD * threads;
    if (tasks > units) tasks = units;
    size_t slot_floats = ((size_t)d->Cin * rows * d->Wo + 15) / 16 * 16;
    float *slots = graph_workspace(g, sizeof(float) * slot_floats * (size_t)tasks);
    if (!slots) return false;
    SeparableJob j = {s, x, w_d, b_d, w_p, b_p, packed_p, y, slots, pool, rows, bands, units, tasks, slot_floats};
    threadpool_run(pool, tasks, separable_task, &j);
    return true;
}

static void separable_backward(Graph *g, Var *y)
{
    const SeparableSaved *s = y->saved;
    Var *x = y->inputs[0], *wd = y->inputs[s->w_d], *wp = y->inputs[s->w_p];
    Var *bd = s->b_d >= 0 ? y->inputs[s->b_d] : NULL, *bp = s->b_p >= 0 ? y->inputs[s->b_p] : NULL;
    bool need_h_grad = x->requires_grad || wd->requires_grad || (bd && bd->requires_grad);
    if (!need_h_grad && !wp->requires_grad && !(bp && bp->requires_grad)) return;
    int64_t h_n = (int64_t)s->dw.N * s->dw.Cout * s->dw.Ho * s->dw.Wo, y_n = tensor_numel(&y->value);
    float *h = graph_scratch(g, sizeof(float) * (size_t)h_n);
    float *dh = need_h_grad ? graph_scratch(g, sizeof(float) * (size_t)h_n) : NULL;
    float *dyp = s->act_p >= 0.0f ? graph_scratch(g, sizeof(float) * (size_t)y_n) : NULL;
    size_t sd = conv2d_cpu_backward_scratch_floats(&s->dw), sp = conv2d_cpu_backward_scratch_floats(&s->pw);
    size_t sf = conv2d_cpu_scratch_floats(&s->dw);
    size_t scratch_n = sd > sp ? sd : sp;
    if (sf > scratch_n) scratch_n = sf;
    float *scratch = scratch_n ? graph_workspace(g, sizeof(float) * scratch_n) : NULL;
    const float *xv = graph_saved_value(g, x);
    if (!graph_ok(g) || !h || !xv) return;
    /* h again: the depthwise convolution with its bias and activation */
    Conv2dCpuTarget t = {wd->value.data, bd ? bd->value.data : NULL, s->dw.Cout, s->act_d, NULL, h, false};
    conv2d_forward_cpu_shared(g->ctx, &s->dw, xv, 1, &t, scratch);
    const float *dy = y->grad.data;
    if (dyp) {
        act_grad_from_output(g->ctx->pool, y->value.data, s->act_p, dy, dyp, y_n);
        dy = dyp;
    }
    float *dwp = wp->requires_grad ? var_grad(g, wp) : NULL, *dbp = bp && bp->requires_grad ? var_grad(g, bp) : NULL;
    if (!graph_ok(g)) return;
    graph_profile_note(g, "separable", conv2d_flops(&s->dw) * (1 + need_h_grad) + conv2d_flops(&s->pw) * (2 + need_h_grad), 0);
    conv2d_backward_cpu(g->ctx, &s->pw, h, wp->value.data, dy, dh, false, dwp, dbp, scratch);
    if (!need_h_grad) return;
    if (s->act_d >= 0.0f) act_grad_from_output(g->ctx->pool, h, s->act_d, dh, dh, h_n);
    bool dx_accumulate = true;
    float *dx = x->requires_grad ? var_grad_for_write(g, x, &dx_accumulate) : NULL;
    float *dwd = wd->requires_grad ? var_grad(g, wd) : NULL, *dbd = bd && bd->requires_grad ? var_grad(g, bd) : NULL;
    if (!graph_ok(g)) return;
    conv2d_backward_cpu(g->ctx, &s->dw, xv, wd->value.data, dh, dx, dx_accumulate, dwd, dbd, scratch);
}

/* The two ops this one stands for (a GPU graph, a CPU without AVX2, an export trace). */
static Var *separable_as_two_ops(Graph *g, Var *x, const Conv2dBranch *dw, int stride, const Conv2dBranch *pw)
{
    Var *h, *y;
    if (!ag_conv2d_shared_input(g, x, conv2d_params(stride, 1, 1, (int)x->value.shape[1]), 1, dw, &h)) return NULL;
    return ag_conv2d_shared_input(g, h, conv2d_params(1, 0, 1, 1), 1, pw, &y) ? y : NULL;
}

Var *ag_conv2d_separable(Graph *g, Var *x, const Conv2dBranch *dw, int stride, const Conv2dBranch *pw)
{
    if (!graph_ok(g)) return NULL;
    if (!x || !dw || !pw || !dw->w || !pw->w) return graph_fail(g, ERR_ARG, "conv2d_separable: NULL input or weight");
    if (x->value.ndim != 4) return graph_fail(g, ERR_SHAPE, "conv2d_separable: input of %d dimensions", x->value.ndim);
    if (var_on_cuda(x) || !conv2d_avx2_available() || graph_trace(g)) return separable_as_two_ops(g, x, dw, stride, pw);
    SeparableSaved *s = graph_host_scratch(g, sizeof *s);
    if (!s) return NULL;
    char msg[256];
    int C = (int)x->value.shape[1];
    if (!conv2d_shape(&s->dw, &x->value, &dw->w->value, dw->b ? &dw->b->value : NULL, conv2d_params(stride, 1, 1, C),
                      msg, sizeof msg))
        return graph_fail(g, ERR_SHAPE, "conv2d_separable: depthwise: %s", msg);
    if (s->dw.Cout != C || !conv2d_depthwise3x3_stride(&s->dw))
        return graph_fail(g, ERR_SHAPE, "conv2d_separable: the depthwise weight is not [%d, 1, 3, 3]", C);
    const Tensor *wp = &pw->w->value;
    if (wp->ndim != 4 || wp->shape[1] != C || wp->shape[2] != 1 || wp->shape[3] != 1 ||
        (pw->b && (pw->b->value.ndim != 1 || pw->b->value.shape[0] != wp->shape[0])))
        return graph_fail(g, ERR_SHAPE, "conv2d_separable: the pointwise weight is not [Cout, %d, 1, 1] (with a [Cout] bias)",
                          C);
    s->pw = (Conv2dShape){s->dw.N, C, s->dw.Ho, s->dw.Wo, (int)wp->shape[0], 1, 1, s->dw.Ho, s->dw.Wo,
                          conv2d_params(1, 0, 1, 1)};
    const Conv2dPacked *pk = pw->packed;
    if (pk && pk->gemm.data && (pk->gemm.M != s->pw.Cout || pk->gemm.K != C))
        return graph_fail(g, ERR_SHAPE, "conv2d_separable: packed weights are not those of the pointwise weight");
    s->act_d = dw->act, s->act_p = pw->act;
    Var *inputs[5];
    int n = 0;
    inputs[n++] = x;
    s->w_d = n, inputs[n++] = dw->w;
    s->b_d = dw->b ? n : -1;
    if (dw->b) inputs[n++] = dw->b;
    s->w_p = n, inputs[n++] = pw->w;
    s->b_p = pw->b ? n : -1;
    if (pw->b) inputs[n++] = pw->b;
    int64_t shape[4] = {s->pw.N, s->pw.Cout, s->pw.Ho, s->pw.Wo};
    Var *y = graph_op_output(g, "conv2d_separable", inputs, n, 4, shape, separable_backward);
    if (!y) return NULL;
    uint32_t saves = GRAPH_SAVES_INPUT(0) | GRAPH_SAVES_INPUT(s->w_d) | GRAPH_SAVES_INPUT(s->w_p);
    if (dw->b) saves |= GRAPH_SAVES_INPUT(s->b_d);
    if (pw->act >= 0.0f) saves |= GRAPH_SAVES_OUTPUT; /* the activation's mask */
    graph_op_saves(y, saves);
    y->reads_recomputed = true; /* the backward reads x through graph_saved_value */
    y->saved = s;
    graph_profile_note(g, "separable", conv2d_flops(&s->dw) + conv2d_flops(&s->pw), 0);
    return separable_forward_cpu(g, s, x->value.data, dw->w->value.data, dw->b ? dw->b->value.data : NULL,
                                 pw->w->value.data, pw->b ? pw->b->value.data : NULL,
                                 pk && pk->gemm.data ? &pk->gemm : NULL, y->value.data)
               ? y
               : NULL;
}
