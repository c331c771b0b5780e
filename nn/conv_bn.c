#include "nn/conv_bn.h"

#include <math.h>

ErrorCode conv_bn_act_init(ConvBnAct *c, ParamStore *ps, const char *conv_name,
                           const char *bn_name, ConvBnActSpec s, Rng *rng, Error *err)
{
    *c = (ConvBnAct){0};
    c->p = conv2d_params(s.stride, s.padding, 1, s.groups);
    c->leaky = s.leaky;
    c->cin = s.cin, c->cout = s.cout, c->k = s.kernel;
    int64_t wshape[4] = {s.cout, s.cin / s.groups, s.kernel, s.kernel}, cshape[1] = {s.cout};
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

Var *conv_bn_act_forward(Graph *g, const ConvBnAct *c, Var *x, bool training)
{
    Var *y = ag_conv2d(g, x, c->weight, c->bias, c->p);
    if (c->bn_weight)
        y = ag_batchnorm2d(g, y, c->bn_weight, c->bn_bias, c->running_mean, c->running_var, training,
                           0.1f, 1e-5f);
    if (c->leaky >= 0.0f) y = ag_leaky_relu(g, y, c->leaky);
    return y;
}

double conv_bn_act_flops(const ConvBnAct *c, int64_t ho, int64_t wo)
{
    return 2.0 * (double)ho * wo * c->cout * (c->cin / c->p.groups) * c->k * c->k;
}
