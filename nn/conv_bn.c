#include "nn/conv_bn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/conv2d_cpu.h"

ErrorCode conv_bn_act_init(ConvBnAct *c, ParamStore *ps, const char *conv_name,
                           const char *bn_name, ConvBnActSpec s, Rng *rng, Error *err)
{
    *c = (ConvBnAct){0};
    c->p = conv2d_params(s.stride, s.padding, 1, s.groups);
    c->leaky = s.leaky;
    c->cin = s.cin, c->cout = s.cout, c->k = s.kernel;
    int64_t wshape[4] = {s.cout, s.cin / s.groups, s.kernel, s.kernel}, cshape[1] = {s.cout};
    if (params_add_unit(ps, c, err)) return err ? err->code : ERR_OOM;
    c->weight = params_add(ps, conv_name, ".weight", 4, wshape, err);
    if (!c->weight) return err ? err->code : ERR_ARG;
    float bound = 1.0f / sqrtf((float)(s.cin / s.groups * s.kernel * s.kernel));
    tensor_fill_uniform(&c->weight->value, rng, -bound, bound);
    if (!s.batchnorm) {
        c->bias = params_add(ps, conv_name, ".bias", 1, cshape, err);
        if (!c->bias) return err ? err->code : ERR_ARG;
        tensor_fill_uniform(&c->bias->value, rng, -bound, bound);
        return ERR_OK;
    }
    c->bn_weight = params_add(ps, bn_name, ".weight", 1, cshape, err);
    c->bn_bias = params_add(ps, bn_name, ".bias", 1, cshape, err);
    c->running_mean = params_add_buffer(ps, bn_name, ".running_mean", 1, cshape, err);
    c->running_var = params_add_buffer(ps, bn_name, ".running_var", 1, cshape, err);
    if (!c->bn_weight || !c->bn_bias || !c->running_mean || !c->running_var)
        return err ? err->code : ERR_ARG;
    tensor_fill(&c->bn_weight->value, 1.0f);
    tensor_fill(c->running_var, 1.0f);
    return ERR_OK;
}

static ErrorCode fold_batchnorm(ConvBnAct *c, ParamStore *store, const char *name, Error *err)
{
    int64_t cshape[1] = {c->cout};
    c->folded_w = params_add(store, name, ".weight", 4, c->weight->value.shape, err);
    c->folded_b = params_add(store, name, ".bias", 1, cshape, err);
    if (!c->folded_w || !c->folded_b) return err ? err->code : ERR_OOM;
    c->folded_w->requires_grad = c->folded_b->requires_grad = false;
    int64_t per_out = tensor_numel(&c->weight->value) / c->cout;
    for (int o = 0; o < c->cout; o++) {
        double scale = c->bn_weight->value.data[o] / sqrt((double)c->running_var->data[o] + 1e-5);
        for (int64_t k = 0; k < per_out; k++)
            c->folded_w->value.data[o * per_out + k] = (float)(c->weight->value.data[o * per_out + k] * scale);
        c->folded_b->value.data[o] = (float)(c->bn_bias->value.data[o] - c->running_mean->data[o] * scale);
    }
    return ERR_OK;
}

ErrorCode conv_bn_act_fold(ConvBnAct *c, ParamStore *store, const char *name, Error *err)
{
    conv_bn_act_unfold(c);
    if (c->weight->value.device != DEVICE_CPU) return error_set(err, ERR_ARG, "fold %s: parameters must be on the CPU", name);
    if (c->bn_weight && fold_batchnorm(c, store, name, err)) return err ? err->code : ERR_OOM;
    if (!(c->packed = malloc(sizeof *c->packed))) return error_set(err, ERR_OOM, "fold %s: out of memory", name);
    if (conv2d_pack_weights(c->packed, c->folded_w ? &c->folded_w->value : &c->weight->value, c->p, err)) {
        free(c->packed);
        c->packed = NULL;
        return err ? err->code : ERR_OOM;
    }
    return ERR_OK;
}

void conv_bn_act_unfold(ConvBnAct *c)
{
    if (c->packed) conv2d_packed_free(c->packed);
    free(c->packed);
    c->packed = NULL;
    c->folded_w = c->folded_b = NULL;
}

/* The fused inference op applies: eval mode, no gradients, and BN folded (or none to fold). */
static bool fused_inference(const Graph *g, const ConvBnAct *c, bool training)
{
    return !training && !g->grad_enabled && (c->folded_w || !c->bn_weight);
}

static Conv2dBranch inference_branch(const ConvBnAct *c)
{
    Conv2dBranch b = {c->folded_w ? c->folded_w : c->weight, c->folded_w ? c->folded_b : c->bias, c->leaky, c->packed};
    return b;
}

/* A convolution that is one conv2d op (with its bias and activation) in this mode: the fused inference
 * op, or one without BatchNorm in any mode (the heads). Such convolutions of one input can share it. */
static bool single_conv_op(const Graph *g, const ConvBnAct *c, bool training)
{
    return fused_inference(g, c, training) || !c->bn_weight;
}

static Conv2dBranch single_conv_branch(const Graph *g, const ConvBnAct *c, bool training)
{
    if (fused_inference(g, c, training)) return inference_branch(c);
    Conv2dBranch b = {c->weight, c->bias, c->leaky, NULL}; /* weights that change: nothing packed */
    return b;
}

bool conv_bn_act_forward_shared(Graph *g, const ConvBnAct *const *convs, int n, Var *x, bool training, Var **out)
{
    bool together = n <= SGEMM_MAX_PRODUCTS;
    for (int i = 0; i < n && together; i++)
        together = single_conv_op(g, convs[i], training) && !memcmp(&convs[i]->p, &convs[0]->p, sizeof convs[0]->p);
    if (together) {
        Conv2dBranch br[SGEMM_MAX_PRODUCTS];
        for (int i = 0; i < n; i++) br[i] = single_conv_branch(g, convs[i], training);
        return ag_conv2d_shared_input(g, x, convs[0]->p, n, br, out);
    }
    /* the training step's op for every branch (BN, no bias): one op over the shared input */
    bool train_op = training && n <= SGEMM_MAX_PRODUCTS;
    for (int i = 0; i < n && train_op; i++)
        train_op = convs[i]->bn_weight && !convs[i]->bias && !memcmp(&convs[i]->p, &convs[0]->p, sizeof convs[0]->p);
    if (train_op) {
        ConvBnActBranch br[SGEMM_MAX_PRODUCTS];
        for (int i = 0; i < n; i++)
            br[i] = (ConvBnActBranch){convs[i]->weight, convs[i]->bn_weight, convs[i]->bn_bias, convs[i]->running_mean,
                                      convs[i]->running_var, convs[i]->leaky};
        return ag_conv_bn_act_train_shared(g, x, n, br, convs[0]->p, 0.1f, 1e-5f, out);
    }
    for (int i = 0; i < n; i++)
        if (!(out[i] = conv_bn_act_forward(g, convs[i], x, training))) return false;
    return true;
}

Var *conv_bn_act_forward(Graph *g, const ConvBnAct *c, Var *x, bool training)
{
    if (single_conv_op(g, c, training)) { /* conv + bias (+ act) in one op */
        Conv2dBranch br = single_conv_branch(g, c, training);
        Var *y;
        return ag_conv2d_shared_input(g, x, c->p, 1, &br, &y) ? y : NULL;
    }
    if (training && c->bn_weight && !c->bias) /* the training step's op: no BN output or mask kept */
        return ag_conv_bn_act_train(g, x, c->weight, c->bn_weight, c->bn_bias, c->running_mean, c->running_var, c->p,
                                    0.1f, 1e-5f, c->leaky);
    Var *y = ag_conv2d(g, x, c->weight, c->bias, c->p);
    if (c->bn_weight)
        y = ag_batchnorm2d(g, y, c->bn_weight, c->bn_bias, c->running_mean, c->running_var, training,
                           0.1f, 1e-5f);
    if (c->leaky >= 0.0f) y = ag_leaky_relu(g, y, c->leaky);
    return y;
}

Var *conv_bn_act_forward_residual(Graph *g, const ConvBnAct *c, Var *x, Var *residual, float act, bool training)
{
    if (training && c->bn_weight && !c->bias && c->leaky == ACT_NONE) /* the training step's op: BN output never kept */
        return ag_conv_bn_act_train_residual(g, x, c->weight, c->bn_weight, c->bn_bias, c->running_mean, c->running_var,
                                             c->p, 0.1f, 1e-5f, residual, act);
    return ag_add_act(g, conv_bn_act_forward(g, c, x, training), residual, act);
}

Var *conv_bn_act_forward_separable(Graph *g, const ConvBnAct *dw, const ConvBnAct *pw, Var *x, bool training)
{
    bool depthwise = dw->k == 3 && dw->p.groups == dw->cin && dw->cout == dw->cin && dw->p.pad_h == 1 && dw->p.pad_w == 1 &&
                     dw->p.stride_h == dw->p.stride_w && dw->p.stride_h <= 2 && dw->p.dil_h == 1 && dw->p.dil_w == 1;
    bool pointwise = pw->k == 1 && pw->p.groups == 1 && pw->p.stride_h == 1 && pw->p.stride_w == 1 && pw->p.pad_h == 0 &&
                     pw->p.pad_w == 0;
    if (depthwise && pointwise && fused_inference(g, dw, training) && fused_inference(g, pw, training)) {
        Conv2dBranch d = inference_branch(dw), p = inference_branch(pw);
        return ag_conv2d_separable(g, x, &d, dw->p.stride_h, &p);
    }
    return conv_bn_act_forward(g, pw, conv_bn_act_forward(g, dw, x, training), training);
}

double conv_bn_act_flops(const ConvBnAct *c, int64_t ho, int64_t wo)
{
    return 2.0 * (double)ho * wo * c->cout * (c->cin / c->p.groups) * c->k * c->k;
}
