/* conv2d -> batchnorm2d (train mode) -> activation as one training op (ops.h).
 * Forward: the convolution writes z (the forward's fast kernels, no bias), then per channel one pass
 * for the batch moments and one that writes y = act(z * scale + shift). Backward: per channel one pass
 * for dgamma, dbeta and one that writes dz into backward scratch (batchnorm_cpu.h), then the
 * convolution's backward from dz. Kept for the backward: x, w, the per-channel mean and inverse std,
 * and either z, or nothing more when y (which the next op keeps anyway) gives z back: an activation
 * that can be undone (none, or leaky with slope > 0) and every |beta| at most GAMMA_RANGE |gamma| (the
 * division by gamma then loses at most two of float's seven digits of xhat). In that case z is never
 * a buffer of its own: the convolution writes into y and the normalisation runs in place. */
#include <math.h>
#include <string.h>

#include "autograd/batchnorm_cpu.h"
#include "autograd/conv2d_cpu.h"

enum { GAMMA_RANGE = 100 };

typedef struct {
    Conv2dShape s;
    float act, momentum, eps;
    bool from_output;    /* the backward reads y, not z (see above) */
    float *z;            /* conv output [N, Cout, Ho, Wo], step memory (y itself when from_output) */
    float *mean, *invstd; /* [Cout], host scratch of the step */
    const float *gamma, *beta;
    Tensor *running_mean, *running_var;
    /* backward only */
    const float *dy;
    float *dz, *dgamma, *dbeta;
    float *y;
} ConvBnActState;

static BnLayout layout(const ConvBnActState *st)
{
    BnLayout l = {st->s.N, st->s.Cout, (size_t)st->s.Ho * st->s.Wo};
    return l;
}

static void forward_channel(void *arg, int c)
{
    ConvBnActState *st = arg;
    BnLayout l = layout(st);
    double sum, sumsq, m = (double)l.N * l.HW;
    bn_channel_moments(st->z, l, c, &sum, &sumsq);
    double mu = sum / m, var = sumsq / m - mu * mu;
    if (var < 0) var = 0; /* rounding of a near-constant channel */
    st->mean[c] = (float)mu;
    st->invstd[c] = (float)(1.0 / sqrt(var + st->eps));
    float *rm = st->running_mean->data, *rv = st->running_var->data;
    double unbiased = m > 1 ? var * m / (m - 1) : var;
    rm[c] = (float)((1.0 - st->momentum) * rm[c] + st->momentum * mu);
    rv[c] = (float)((1.0 - st->momentum) * rv[c] + st->momentum * unbiased);
    float scale = st->gamma[c] * st->invstd[c], shift = st->beta[c] - st->mean[c] * scale;
    bn_channel_normalize_act(st->z, l, c, scale, shift, st->act, st->y);
}

static void backward_channel(void *arg, int c)
{
    ConvBnActState *st = arg;
    BnLayout l = layout(st);
    float mean = st->mean[c], invstd = st->invstd[c];
    float scale = st->gamma[c] * invstd, shift = st->beta[c] - mean * scale;
    BnSaved kept = {st->from_output ? st->y : st->z, st->from_output, st->act, scale, shift, mean, invstd,
                    st->act > 0.0f ? 1.0f / st->act : 1.0f, st->beta[c], 1.0f / st->gamma[c]};
    double sg, sgx, m = (double)l.N * l.HW;
    bn_channel_backward_sums(&kept, st->dy, l, c, &sg, &sgx);
    if (st->dgamma) st->dgamma[c] += (float)sgx;
    if (st->dbeta) st->dbeta[c] += (float)sg;
    if (st->dz) bn_channel_backward_dz(&kept, st->dy, l, c, scale, (float)(sg / m), (float)(sgx / m), st->dz);
}

/* Whether the backward can take z back from y (see the top of the file). */
static bool output_gives_input(const float *gamma, const float *beta, int C, float act)
{
    if (act == 0.0f) return false; /* ReLU: y = 0 forgets v */
    for (int c = 0; c < C; c++)
        if (!(fabsf(beta[c]) <= GAMMA_RANGE * fabsf(gamma[c])) || gamma[c] == 0.0f) return false;
    return true;
}

static void conv_bn_act_backward(Graph *g, Var *y)
{
    ConvBnActState *st = y->saved;
    Var *x = y->inputs[0], *w = y->inputs[1], *gamma = y->inputs[2], *beta = y->inputs[3];
    bool dx_accumulate = true;
    float *dx = x->requires_grad ? var_grad_for_write(g, x, &dx_accumulate) : NULL;
    float *dw = w->requires_grad ? var_grad(g, w) : NULL;
    st->dgamma = gamma->requires_grad ? var_grad(g, gamma) : NULL;
    st->dbeta = beta->requires_grad ? var_grad(g, beta) : NULL;
    st->dy = y->grad.data;
    st->dz = dx || dw ? graph_scratch(g, tensor_bytes(&y->value)) : NULL;
    size_t scratch_n = dx || dw ? conv2d_cpu_backward_scratch_floats(&st->s) : 0;
    float *scratch = scratch_n ? graph_workspace(g, scratch_n * sizeof(float)) : NULL;
    if (!graph_ok(g)) return;
    graph_profile_note(g, conv2d_cpu_kind(&st->s), conv2d_flops(&st->s) * ((dx != NULL) + (dw != NULL)), 0);
    threadpool_run(g->ctx->pool, st->s.Cout, backward_channel, st);
    const float *xv = st->dz ? graph_saved_value(g, x) : NULL;
    if (st->dz && xv) conv2d_backward_cpu(g->ctx, &st->s, xv, w->value.data, st->dz, dx, dx_accumulate, dw, NULL, scratch);
}

typedef struct {
    ConvBnActState *st;
    float *dst;
} RecomputeJob;

static void recompute_channel(void *arg, int c)
{
    const RecomputeJob *j = arg;
    const ConvBnActState *st = j->st;
    float scale = st->gamma[c] * st->invstd[c], shift = st->beta[c] - st->mean[c] * scale;
    bn_channel_normalize_act(st->z, layout(st), c, scale, shift, st->act, j->dst); /* as forward_channel did */
}

static void conv_bn_act_recompute(Graph *g, const Var *y, float *dst)
{
    RecomputeJob j = {y->saved, dst};
    threadpool_run(g->ctx->pool, j.st->s.Cout, recompute_channel, &j);
}

Var *ag_conv_bn_act_train(Graph *g, Var *x, Var *w, Var *gamma, Var *beta, Tensor *running_mean, Tensor *running_var,
                          Conv2dParams p, float momentum, float eps, float act)
{
    if (!graph_ok(g)) return NULL;
    if (!x || !w || !gamma || !beta || !running_mean || !running_var)
        return graph_fail(g, ERR_ARG, "conv_bn_act: NULL input");
    if (var_on_cuda(x)) { /* the CUDA twin is the three ops it stands for */
        Var *y = ag_batchnorm2d(g, ag_conv2d(g, x, w, NULL, p), gamma, beta, running_mean, running_var, true, momentum,
                                eps);
        return act < 0.0f ? y : ag_leaky_relu(g, y, act);
    }
    ConvBnActState *st = graph_host_scratch(g, sizeof *st);
    if (!st) return NULL;
    memset(st, 0, sizeof *st);
    char msg[256];
    if (!conv2d_shape(&st->s, &x->value, &w->value, NULL, p, msg, sizeof msg))
        return graph_fail(g, ERR_SHAPE, "conv_bn_act: %s", msg);
    int C = st->s.Cout;
    if (tensor_numel(&gamma->value) != C || tensor_numel(&beta->value) != C || tensor_numel(running_mean) != C ||
        tensor_numel(running_var) != C)
        return graph_fail(g, ERR_SHAPE, "conv_bn_act: %d output channels but BN parameters of another size", C);
    Var *inputs[4] = {x, w, gamma, beta};
    int64_t shape[4] = {st->s.N, C, st->s.Ho, st->s.Wo};
    Var *y = graph_op_output(g, "conv_bn_act", inputs, 4, 4, shape, conv_bn_act_backward);
    if (!y) return NULL;
    st->act = act, st->momentum = momentum, st->eps = eps;
    st->gamma = gamma->value.data, st->beta = beta->value.data;
    st->running_mean = running_mean, st->running_var = running_var;
    st->from_output = output_gives_input(st->gamma, st->beta, C, act);
    graph_op_saves(y, GRAPH_SAVES_INPUT(0) | GRAPH_SAVES_INPUT(1) | (st->from_output ? GRAPH_SAVES_OUTPUT : 0));
    y->reads_recomputed = true;
    if (!st->from_output) y->recompute = conv_bn_act_recompute; /* y from the z it keeps */
    st->z = st->from_output ? y->value.data : graph_scratch(g, tensor_bytes(&y->value));
    st->mean = graph_host_scratch(g, 2 * sizeof(float) * (size_t)C);
    size_t scratch_n = conv2d_cpu_scratch_floats(&st->s);
    float *scratch = scratch_n ? graph_workspace(g, scratch_n * sizeof(float)) : NULL;
    if (!graph_ok(g) || !st->z || !st->mean) return graph_ok(g) ? graph_fail(g, ERR_OOM, "conv_bn_act: out of memory") : NULL;
    st->invstd = st->mean + C;
    st->y = y->value.data;
    y->saved = st;
    graph_profile_note(g, conv2d_cpu_kind(&st->s), conv2d_flops(&st->s), 0);
    Conv2dCpuTarget t = {w->value.data, NULL, C, -1.0f, NULL, st->z, false};
    conv2d_forward_cpu_shared(g->ctx, &st->s, x->value.data, 1, &t, scratch);
    threadpool_run(g->ctx->pool, C, forward_channel, st);
    return y;
}
