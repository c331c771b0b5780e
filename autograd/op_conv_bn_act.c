/* conv2d -> batchnorm2d (train mode) -> activation as one training op (ops.h).
 * Forward: the convolution writes z (the forward's fast kernels, no bias), then per channel one pass
 * for the batch moments and one that writes y = act(z * scale + shift). Backward: per channel one pass
 * for dgamma, dbeta and one that writes dz into backward scratch (batchnorm_cpu.h), then the
 * convolution's backward from dz. Kept for the backward: x, w, the per-channel mean and inverse std,
 * and either z, or nothing more when y (which the next op keeps anyway) gives z back: an activation
 * that can be undone (none, or leaky with slope > 0) and every |beta| at most GAMMA_RANGE |gamma| (the
 * division by gamma then loses at most two of float's seven digits of xhat). In that case z is never
 * a buffer of its own: the convolution writes into y and the normalisation runs in place. When z is
 * kept (ReLU), y can be made again from it (graph_saved_value), so model code may release y early.
 * Depthwise 3x3 layers run plane by plane instead: the forward takes each plane's moments while the
 * plane is in cache, the backward writes each plane's dz to thread scratch and takes both gradients from
 * there; pointwise layers run their forward image by image likewise (those of few input channels make z
 * twice from x instead of storing it) and their backward by column blocks, the stem its backward by bands
 * of output rows (those paths: autograd/conv_bn_act_paths.c). The backward of the layer after often takes
 * this one's dgamma/dbeta sums for it (conv_bn_act_sums_receiver). The residual variant adds its fifth input
 * in the normalisation pass before the activation; it keeps z, and its backward first masks dy in place by
 * y's sign, runs BN's backward without activation on it, and hands it to the residual at the end. */
#include <math.h>
#include <string.h>

#include "autograd/activation_cpu.h"
#include "autograd/conv_bn_act_state.h"
#include "tensor/comm.h"

enum { GAMMA_RANGE = 100 };

static void group_backward(Graph *g, Conv2dBranchGroup *grp);
static void conv_bn_act_backward(Graph *g, Var *y);

static BnLayout layout(const ConvBnActState *st)
{
    BnLayout l = {st->s.N, st->s.Cout, (size_t)st->s.Ho * st->s.Wo};
    return l;
}

/* BN and its affine step as one per-channel affine map: y = act(z * scale + shift). Every pass that
 * computes y or its pre-activation (the forward, the recompute, the backward's mask) takes it from here,
 * so they agree to the bit. */
static void channel_affine(const ConvBnActState *st, int c, float *scale, float *shift)
{
    *scale = st->gamma[c] * st->invstd[c];
    *shift = st->beta[c] - st->mean[c] * *scale;
}

/* Channel c's pair of sums over the images from per-plane pairs planes [N * C][2], added in image order
 * (the result does not depend on which thread made which plane). */
static void add_plane_pairs(const ConvBnActState *st, const double *planes, int c, double *a, double *b)
{
    *a = 0, *b = 0;
    for (int n = 0; n < st->s.N; n++) {
        const double *p = planes + ((size_t)n * st->s.Cout + c) * 2;
        *a += p[0], *b += p[1];
    }
}

/* This rank's sum and sum of squares of channel c's convolution output. */
static void channel_sums(const ConvBnActState *st, int c, double *sum, double *sumsq)
{
    if (st->plane_moments) /* taken where each plane was made (by plane or by image) */
        add_plane_pairs(st, st->plane_moments, c, sum, sumsq);
    else
        bn_channel_moments(st->z, layout(st), c, sum, sumsq);
}

/* Statistics from the sums over m values, running statistics updated, then y = act(z * scale + shift). */
static void normalize_channel(ConvBnActState *st, int c, double sum, double sumsq, double m)
{
    BnLayout l = layout(st);
    double mu = sum / m, var = sumsq / m - mu * mu;
    if (var < 0) var = 0; /* rounding of a near-constant channel */
    st->mean[c] = (float)mu;
    st->invstd[c] = (float)(1.0 / sqrt(var + st->eps));
    float *rm = st->running_mean->data, *rv = st->running_var->data;
    double unbiased = m > 1 ? var * m / (m - 1) : var;
    rm[c] = (float)((1.0 - st->momentum) * rm[c] + st->momentum * mu);
    rv[c] = (float)((1.0 - st->momentum) * rv[c] + st->momentum * unbiased);
    float scale, shift;
    channel_affine(st, c, &scale, &shift);
    if (st->affine) /* a narrow pointwise layer: its output pass applies it (conv_bn_act_narrow_output) */
        st->affine[c] = scale, st->affine[st->s.Cout + c] = shift;
    else
        bn_channel_normalize_act(st->z, st->residual, l, c, scale, shift, st->residual ? st->residual_act : st->act, st->y);
}

static void forward_channel(void *arg, int c)
{
    ConvBnActState *st = arg;
    double sum, sumsq;
    channel_sums(st, c, &sum, &sumsq);
    normalize_channel(st, c, sum, sumsq, (double)st->s.N * st->s.Ho * st->s.Wo);
}

/* Synchronised BatchNorm: the sums of every channel first (then summed over the ranks), */
static void sums_channel(void *arg, int c)
{
    ConvBnActState *st = arg;
    channel_sums(st, c, &st->global[2 * c], &st->global[2 * c + 1]);
}

/* then each channel normalised with the job's statistics. */
static void global_normalize_channel(void *arg, int c)
{
    ConvBnActState *st = arg;
    normalize_channel(st, c, st->global[2 * c], st->global[2 * c + 1], st->global[2 * st->s.Cout]);
}

/* What the backward reads of channel c; t: the kept tensor where the caller's layout starts. */
BnSaved conv_bn_act_kept_channel(const ConvBnActState *st, int c, const float *t)
{
    float scale, shift;
    channel_affine(st, c, &scale, &shift);
    BnSaved kept = {t, st->from_output, st->act, scale, shift, st->mean[c], st->invstd[c],
                    st->act > 0.0f ? 1.0f / st->act : 1.0f, st->beta[c], 1.0f / st->gamma[c]};
    return kept;
}

/* This rank's sums of channel c for the backward: dgamma, dbeta added; sum_g, sum_gx returned. */
static void backward_sums(ConvBnActState *st, int c, double *sg, double *sgx)
{
    if (st->handed_sums) { /* added by the backward that wrote dy, per plane */
        add_plane_pairs(st, st->handed_sums, c, sg, sgx);
    } else {
        BnSaved kept = conv_bn_act_kept_channel(st, c, st->from_output ? st->y : st->z);
        bn_channel_backward_sums(&kept, st->dy, layout(st), c, sg, sgx);
    }
    if (st->dgamma) st->dgamma[c] += (float)*sgx;
    if (st->dbeta) st->dbeta[c] += (float)*sg;
}

ConvBnActState *conv_bn_act_sums_receiver(Graph *g, Var *x)
{
    if (!x || x->backward != conv_bn_act_backward || !graph_last_reader(x)) return NULL;
    ConvBnActState *st = x->saved;
    if (!st->from_output || st->group || st->global || st->handed_sums) return NULL;
    size_t bytes = sizeof(double) * 2 * (size_t)st->s.N * st->s.Cout;
    if (!(st->handed_sums = graph_host_scratch(g, bytes))) return NULL; /* the failure is recorded in g */
    memset(st->handed_sums, 0, bytes);
    return st;
}

void conv_bn_act_receive_sums(ConvBnActState *r, int n, int c, const float *y, const float *dy, size_t len)
{
    BnSaved kept = conv_bn_act_kept_channel(r, c, y);
    BnLayout one = {1, 1, len};
    double sg, sgx;
    bn_channel_backward_sums(&kept, dy, one, 0, &sg, &sgx);
    double *p = r->handed_sums + ((size_t)n * r->s.Cout + c) * 2;
    p[0] += sg, p[1] += sgx;
}

/* dz of channel c from the sums over m values (this batch's, or the job's under synchronised BN). */
static void backward_dz(ConvBnActState *st, int c, double sg, double sgx, double m)
{
    st->mg[c] = (float)(sg / m), st->mgx[c] = (float)(sgx / m);
    if (st->dz) {
        BnSaved kept = conv_bn_act_kept_channel(st, c, st->from_output ? st->y : st->z);
        bn_channel_backward_dz(&kept, st->dy, layout(st), c, st->mg[c], st->mgx[c], st->dz);
    }
}

/* dy of channel c times residual_act's derivative, read from the output y, in place: done by the channel's task
 * just before its sums, which then read the planes from cache. A pass over the whole gradient beforehand had
 * read and written it through memory, and the sums read it once more (ResNet-50's 64->256 block ends at
 * 210x210, batch 2: 90 MB each). */
static void mask_residual_channel(const ConvBnActState *st, int c)
{
    size_t HW = (size_t)st->s.Ho * st->s.Wo;
    for (int n = 0; n < st->s.N; n++) {
        size_t at = ((size_t)n * st->s.Cout + c) * HW;
        act_grad_from_output(NULL, st->y + at, st->residual_act, st->dy_unmasked + at, st->dy_unmasked + at,
                             (int64_t)HW); /* on this task's thread */
    }
}

static void backward_channel(void *arg, int c)
{
    ConvBnActState *st = arg;
    if (st->dy_unmasked) mask_residual_channel(st, c);
    double sg, sgx;
    backward_sums(st, c, &sg, &sgx);
    backward_dz(st, c, sg, sgx, (double)st->s.N * st->s.Ho * st->s.Wo);
}

/* Synchronised BatchNorm's backward: every channel's sums (then summed over the ranks; the parameter
 * gradients keep this rank's part, which the gradient all-reduce adds up), */
static void backward_sums_channel(void *arg, int c)
{
    ConvBnActState *st = arg;
    if (st->dy_unmasked) mask_residual_channel(st, c);
    backward_sums(st, c, &st->global[2 * c], &st->global[2 * c + 1]);
}

/* then dz with the job's sums. */
static void global_backward_dz_channel(void *arg, int c)
{
    ConvBnActState *st = arg;
    backward_dz(st, c, st->global[2 * c], st->global[2 * c + 1], st->global[2 * st->s.Cout]);
}

/* Whether this op takes its statistics over every rank (Context.sync_bn with more than one rank). */
static bool synchronised(const Graph *g) { return g->ctx->sync_bn && g->ctx->comm && comm_size(g->ctx->comm) > 1; }

/* The [C][2] sums of st->global summed over the ranks, and the element count after them. */
static bool sum_over_ranks(Graph *g, ConvBnActState *st, const char *what)
{
    int C = st->s.Cout;
    st->global[2 * C] = (double)st->s.N * st->s.Ho * st->s.Wo;
    Error err = {0};
    if (comm_allreduce_sum_f64(g->ctx->comm, st->global, 2 * (size_t)C + 1, what, &err)) {
        graph_fail(g, err.code, "conv_bn_act: %s", err.msg);
        return false;
    }
    return true;
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
    if (st->group) { /* branches of one input: the first of them to come does all */
        if (!st->group->done) group_backward(g, st->group);
        return;
    }
    /* y's gradient is this backward's alone: masked where it is (by channel, in backward_channel), then handed to
     * the residual (below) */
    st->dy_unmasked = st->residual && st->residual_act >= 0.0f ? y->grad.data : NULL;
    Var *x = y->inputs[0], *w = y->inputs[1], *gamma = y->inputs[2], *beta = y->inputs[3];
    bool dx_accumulate = true;
    float *dx = x->requires_grad ? var_grad_for_write(g, x, &dx_accumulate) : NULL;
    float *dw = w->requires_grad ? var_grad(g, w) : NULL;
    st->dgamma = gamma->requires_grad ? var_grad(g, gamma) : NULL;
    st->dbeta = beta->requires_grad ? var_grad(g, beta) : NULL;
    st->dy = y->grad.data;
    /* the depthwise layers' plane-by-plane backward, where its kernels apply and dx is written whole */
    int fast = conv2d_depthwise3x3_stride(&st->s);
    bool by_plane = (dx || dw) && fast && !(dx && dx_accumulate && fast == 1);
    bool by_block = (dx || dw) && !by_plane && conv_bn_act_pointwise_fused(g, st);
    bool by_image = dw && !by_plane && !by_block && conv_bn_act_stem_by_image(g, st, dx != NULL);
    st->mg = graph_host_scratch(g, 2 * sizeof(float) * (size_t)st->s.Cout);
    st->dz = (dx || dw) && !by_plane && !by_block && !by_image ? graph_scratch(g, tensor_bytes(&y->value)) : NULL;
    size_t scratch_n = st->dz ? conv2d_cpu_backward_scratch_floats(&st->s) : 0;
    float *scratch = scratch_n ? graph_workspace(g, scratch_n * sizeof(float)) : NULL;
    if (!graph_ok(g) || !st->mg) return;
    st->mgx = st->mg + st->s.Cout;
    graph_profile_note(g, conv2d_cpu_kind(&st->s), conv2d_flops(&st->s) * ((dx != NULL) + (dw != NULL)), 0);
    if (st->global) {
        threadpool_run(g->ctx->pool, st->s.Cout, backward_sums_channel, st);
        if (!sum_over_ranks(g, st, "synchronised BatchNorm backward")) return;
        threadpool_run(g->ctx->pool, st->s.Cout, global_backward_dz_channel, st);
    } else {
        threadpool_run(g->ctx->pool, st->s.Cout, backward_channel, st);
    }
    const float *xv = (dx || dw) ? graph_saved_value(g, x) : NULL;
    /* x's BN sums taken here, where these paths have each piece of x and dx in cache */
    ConvBnActState *dx_sums = dx && xv && (by_plane || by_block) ? conv_bn_act_sums_receiver(g, x) : NULL;
    if (by_plane && xv)
        conv_bn_act_depthwise_backward(g, st, xv, w->value.data, dx, dx_accumulate, dx_sums, dw);
    else if (by_block && xv)
        conv_bn_act_pointwise_backward(g, st, xv, w->value.data, dx, dx_accumulate, dx_sums, dw);
    else if (by_image && xv)
        conv_bn_act_stem_backward(g, st, xv, dw);
    else if (st->dz && xv)
        conv2d_backward_cpu(g->ctx, &st->s, xv, w->value.data, st->dz, dx, dx_accumulate, dw, NULL, scratch);
    /* the sum's other input: the same gradient, whose last reader this was */
    if (st->residual && y->inputs[4]->requires_grad && graph_ok(g)) var_grad_pass_host(g, y->inputs[4], y);
}

typedef struct {
    ConvBnActState *st;
    float *dst;
} RecomputeJob;

static void recompute_channel(void *arg, int c)
{
    const RecomputeJob *j = arg;
    const ConvBnActState *st = j->st;
    float scale, shift;
    channel_affine(st, c, &scale, &shift);
    bn_channel_normalize_act(st->z, NULL, layout(st), c, scale, shift, st->act, j->dst); /* as forward_channel did */
}

static void conv_bn_act_recompute(Graph *g, const Var *y, float *dst)
{
    RecomputeJob j = {y->saved, dst};
    threadpool_run(g->ctx->pool, j.st->s.Cout, recompute_channel, &j);
}

/* One branch's output Var and state, z allocated, nothing computed yet (NULL on error, recorded in g);
 * residual: the tensor added before the activation (ag_conv_bn_act_train_residual), or NULL. */
static Var *branch_new(Graph *g, Var *x, const ConvBnActBranch *b, Conv2dParams p, float momentum, float eps,
                       Var *residual)
{
    if (!b->w || !b->gamma || !b->beta || !b->running_mean || !b->running_var)
        return graph_fail(g, ERR_ARG, "conv_bn_act: NULL input");
    ConvBnActState *st = graph_host_scratch(g, sizeof *st);
    if (!st) return NULL;
    memset(st, 0, sizeof *st);
    char msg[256];
    if (!conv2d_shape(&st->s, &x->value, &b->w->value, NULL, p, msg, sizeof msg))
        return graph_fail(g, ERR_SHAPE, "conv_bn_act: %s", msg);
    int C = st->s.Cout;
    if (tensor_numel(&b->gamma->value) != C || tensor_numel(&b->beta->value) != C ||
        tensor_numel(b->running_mean) != C || tensor_numel(b->running_var) != C)
        return graph_fail(g, ERR_SHAPE, "conv_bn_act: %d output channels but BN parameters of another size", C);
    int64_t shape[4] = {st->s.N, C, st->s.Ho, st->s.Wo};
    if (residual && (residual->value.ndim != 4 || residual->value.shape[0] != shape[0] || residual->value.shape[1] != C ||
                     residual->value.shape[2] != shape[2] || residual->value.shape[3] != shape[3]))
        return graph_fail(g, ERR_SHAPE, "conv_bn_act: the residual is not of the output's shape [%lld, %d, %lld, %lld]",
                          (long long)shape[0], C, (long long)shape[2], (long long)shape[3]);
    Var *inputs[5] = {x, b->w, b->gamma, b->beta, residual};
    Var *y = graph_op_output(g, "conv_bn_act", inputs, residual ? 5 : 4, 4, shape, conv_bn_act_backward);
    if (!y) return NULL;
    st->act = residual ? -1.0f : b->act, st->momentum = momentum, st->eps = eps;
    st->residual = residual ? residual->value.data : NULL, st->residual_act = b->act;
    st->gamma = b->gamma->value.data, st->beta = b->beta->value.data;
    st->running_mean = b->running_mean, st->running_var = b->running_var;
    /* with a residual y no longer gives z back, and cannot be made again from z alone */
    st->from_output = !residual && output_gives_input(st->gamma, st->beta, C, b->act);
    graph_op_saves(y, GRAPH_SAVES_INPUT(0) | GRAPH_SAVES_INPUT(1) |
                          (st->from_output || (residual && b->act >= 0.0f) ? GRAPH_SAVES_OUTPUT : 0));
    y->reads_recomputed = true;
    if (!st->from_output && !residual) y->recompute = conv_bn_act_recompute; /* y from the z it keeps */
    st->z = st->from_output ? y->value.data : graph_scratch(g, tensor_bytes(&y->value));
    st->mean = graph_host_scratch(g, 2 * sizeof(float) * (size_t)C);
    if (!graph_ok(g) || !st->z || !st->mean) return graph_ok(g) ? graph_fail(g, ERR_OOM, "conv_bn_act: out of memory") : NULL;
    st->invstd = st->mean + C;
    st->y = y->value.data;
    y->saved = st;
    return y;
}

/* The branch's BatchNorm and activation once its convolution has written z. */
static bool branch_normalize(Graph *g, ConvBnActState *st)
{
    int C = st->s.Cout;
    if (synchronised(g)) {
        /* host scratch of the step: the backward uses it again */
        if (!(st->global = graph_host_scratch(g, sizeof(double) * (2 * (size_t)C + 1)))) return false;
        threadpool_run(g->ctx->pool, C, sums_channel, st);
        if (!sum_over_ranks(g, st, "synchronised BatchNorm forward")) return false;
        threadpool_run(g->ctx->pool, C, global_normalize_channel, st);
    } else {
        threadpool_run(g->ctx->pool, C, forward_channel, st);
    }
    if (st->affine) conv_bn_act_narrow_output(g, st);
    return graph_ok(g);
}

static Var *conv_bn_act_train_one(Graph *g, Var *x, Var *w, Var *gamma, Var *beta, Tensor *running_mean,
                                  Tensor *running_var, Conv2dParams p, float momentum, float eps, float act, Var *residual)
{
    if (!graph_ok(g)) return NULL;
    if (!x) return graph_fail(g, ERR_ARG, "conv_bn_act: NULL input");
    if (var_on_cuda(x)) { /* the CUDA twin is the ops it stands for */
        Var *y = ag_batchnorm2d(g, ag_conv2d(g, x, w, NULL, p), gamma, beta, running_mean, running_var, true, momentum,
                                eps);
        if (residual) return ag_add_act(g, y, residual, act);
        return act < 0.0f ? y : ag_leaky_relu(g, y, act);
    }
    ConvBnActBranch b = {w, gamma, beta, running_mean, running_var, act};
    Var *y = branch_new(g, x, &b, p, momentum, eps, residual);
    if (!y) return NULL;
    ConvBnActState *st = y->saved;
    size_t scratch_n = conv2d_cpu_scratch_floats(&st->s);
    float *scratch = scratch_n ? graph_workspace(g, scratch_n * sizeof(float)) : NULL;
    if (!graph_ok(g)) return NULL;
    graph_profile_note(g, conv2d_cpu_kind(&st->s), conv2d_flops(&st->s), 0);
    int planes = st->s.N * st->s.Cout;
    st->x = x->value.data, st->w = w->value.data;
    /* depthwise with enough planes for the pool (the banded kernel of conv2d serves the few-plane case) */
    if (conv2d_depthwise3x3_stride(&st->s) && planes >= 16 * threadpool_size(g->ctx->pool) &&
        (st->plane_moments = graph_host_scratch(g, sizeof(double) * 2 * (size_t)planes))) {
        threadpool_run(g->ctx->pool, planes, conv_bn_act_depthwise_forward_plane, st);
    } else if (!residual && conv_bn_act_pointwise_narrow(g, st)) { /* z made twice from x, never stored */
        if (!conv_bn_act_narrow_moments(g, st)) return NULL;
    } else if (conv_bn_act_pointwise_by_image(g, st)) {
        if (!conv_bn_act_pointwise_forward(g, st)) return NULL;
    } else {
        Conv2dCpuTarget t = {w->value.data, NULL, st->s.Cout, -1.0f, NULL, st->z, false};
        conv2d_forward_cpu_shared(g->ctx, &st->s, x->value.data, 1, &t, scratch);
    }
    return graph_ok(g) && branch_normalize(g, st) ? y : NULL;
}

Var *ag_conv_bn_act_train(Graph *g, Var *x, Var *w, Var *gamma, Var *beta, Tensor *running_mean, Tensor *running_var,
                          Conv2dParams p, float momentum, float eps, float act)
{
    return conv_bn_act_train_one(g, x, w, gamma, beta, running_mean, running_var, p, momentum, eps, act, NULL);
}

Var *ag_conv_bn_act_train_residual(Graph *g, Var *x, Var *w, Var *gamma, Var *beta, Tensor *running_mean,
                                   Tensor *running_var, Conv2dParams p, float momentum, float eps, Var *residual,
                                   float act)
{
    if (!residual && graph_ok(g)) return graph_fail(g, ERR_ARG, "conv_bn_act: NULL residual");
    return conv_bn_act_train_one(g, x, w, gamma, beta, running_mean, running_var, p, momentum, eps, act, residual);
}

/* ---- branches of one input (ag_conv_bn_act_train_shared) ---------------------------------------
 * Several layers that read the same x with the same convolution parameters (SSH's pairs): one
 * convolution forward writes every branch's z (the input read and, for Winograd, transformed once),
 * then each branch's BN and activation as alone. Their backward runs as one (Conv2dBranchGroup): each
 * branch's BN backward writes its dz into a buffer that stacks the branches along the channels, then
 * conv2d_stacked_backward (x read and transformed once, dx written once). BN's statistics are per channel,
 * so the result is that of the separate layers. */
typedef struct {
    ConvBnActState *st;
    float *dz; /* [N, C_total, Ho, Wo] */
    int C_total, c0;
} StackedDzJob;

/* Plane (n, c) of one branch's dz, into its place in the stacked buffer. */
static void stacked_dz_plane(void *arg, int plane)
{
    const StackedDzJob *j = arg;
    const ConvBnActState *st = j->st;
    int C = st->s.Cout, n = plane / C, c = plane % C;
    size_t HW = (size_t)st->s.Ho * st->s.Wo, at = (size_t)plane * HW;
    BnSaved kept = conv_bn_act_kept_channel(st, c, (st->from_output ? st->y : st->z) + at);
    BnLayout one = {1, 1, HW};
    bn_channel_backward_dz(&kept, st->dy + at, one, 0, st->mg[c], st->mgx[c],
                           j->dz + ((size_t)n * j->C_total + j->c0 + c) * HW);
}

static void group_backward(Graph *g, Conv2dBranchGroup *grp)
{
    grp->done = true;
    const Conv2dShape *s = &grp->total;
    int C = s->Cout;
    size_t HW = (size_t)s->Ho * s->Wo;
    bool any_dy = false;
    for (int i = 0; i < grp->n; i++) any_dy |= grp->members[i]->grad.data != NULL;
    if (!any_dy) return;
    float *dz = graph_scratch(g, sizeof(float) * s->N * C * HW);
    if (!dz) return;
    for (int i = 0, c0 = 0; i < grp->n; c0 += ((ConvBnActState *)grp->members[i]->saved)->s.Cout, i++) {
        Var *y = grp->members[i], *gamma = y->inputs[2], *beta = y->inputs[3];
        ConvBnActState *st = y->saved;
        int Ci = st->s.Cout;
        if (!y->grad.data) { /* a branch the loss does not reach */
            for (int n = 0; n < s->N; n++) memset(dz + ((size_t)n * C + c0) * HW, 0, sizeof(float) * Ci * HW);
            continue;
        }
        st->dgamma = gamma->requires_grad ? var_grad(g, gamma) : NULL;
        st->dbeta = beta->requires_grad ? var_grad(g, beta) : NULL;
        st->dy = y->grad.data;
        st->dz = NULL; /* the sums and mg, mgx only: dz goes to the stacked buffer below */
        st->mg = graph_host_scratch(g, 2 * sizeof(float) * (size_t)Ci);
        if (!graph_ok(g) || !st->mg) return;
        st->mgx = st->mg + Ci;
        if (st->global) {
            threadpool_run(g->ctx->pool, Ci, backward_sums_channel, st);
            if (!sum_over_ranks(g, st, "synchronised BatchNorm backward")) return;
            threadpool_run(g->ctx->pool, Ci, global_backward_dz_channel, st);
        } else {
            threadpool_run(g->ctx->pool, Ci, backward_channel, st);
        }
        StackedDzJob j = {st, dz, C, c0};
        threadpool_run(g->ctx->pool, s->N * Ci, stacked_dz_plane, &j);
    }
    conv2d_stacked_backward(g, grp, dz, false); /* inputs[2] is gamma: no conv bias */
}

bool ag_conv_bn_act_train_shared(Graph *g, Var *x, int n, const ConvBnActBranch *br, Conv2dParams p, float momentum,
                                 float eps, Var **out)
{
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (!graph_ok(g)) return false;
    if (!x || n < 1 || n > SGEMM_MAX_PRODUCTS)
        return graph_fail(g, ERR_ARG, "conv_bn_act: NULL input or %d branches (1 to %d)", n, SGEMM_MAX_PRODUCTS), false;
    /* one branch, a CUDA graph, grouped convolutions (whose stacking would interleave the branches'
     * channels with the groups'): one op each */
    if (n == 1 || var_on_cuda(x) || p.groups != 1) {
        for (int i = 0; i < n; i++)
            if (!(out[i] = ag_conv_bn_act_train(g, x, br[i].w, br[i].gamma, br[i].beta, br[i].running_mean,
                                                br[i].running_var, p, momentum, eps, br[i].act)))
                return false;
        return true;
    }
    Conv2dShape total;
    Conv2dCpuTarget t[SGEMM_MAX_PRODUCTS];
    size_t scratch_n = 0;
    for (int i = 0; i < n; i++) {
        if (!(out[i] = branch_new(g, x, &br[i], p, momentum, eps, NULL))) return false;
        ConvBnActState *st = out[i]->saved;
        if (i == 0) {
            total = st->s;
            total.Cout = 0;
        } else if (st->s.KH != total.KH || st->s.KW != total.KW) {
            return graph_fail(g, ERR_SHAPE, "conv_bn_act: branches of one input need one kernel size (%dx%d, %dx%d)",
                              total.KH, total.KW, st->s.KH, st->s.KW), false;
        }
        total.Cout += st->s.Cout;
        size_t own = conv2d_cpu_scratch_floats(&st->s);
        if (own > scratch_n) scratch_n = own;
        t[i] = (Conv2dCpuTarget){br[i].w->value.data, NULL, st->s.Cout, -1.0f, NULL, st->z, false};
    }
    size_t shared_n = conv2d_cpu_scratch_floats(&total);
    if (shared_n > scratch_n) scratch_n = shared_n;
    float *scratch = scratch_n ? graph_workspace(g, scratch_n * sizeof(float)) : NULL;
    Conv2dBranchGroup *grp = graph_host_scratch(g, sizeof *grp);
    if (!graph_ok(g) || !grp) return false;
    grp->n = n, grp->total = total, grp->done = false;
    graph_profile_note(g, conv2d_cpu_kind(&total), conv2d_flops(&total), 0);
    conv2d_forward_cpu_shared(g->ctx, &total, x->value.data, n, t, scratch);
    for (int i = 0; i < n; i++) {
        ConvBnActState *st = out[i]->saved;
        grp->members[i] = out[i], st->group = grp;
        if (!graph_ok(g) || !branch_normalize(g, st)) return false;
    }
    return true;
}
