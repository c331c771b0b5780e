#include "nn/ssh.h"

#include <stdio.h>

static ErrorCode branch(ConvBnAct *c, ParamStore *ps, const char *prefix, const char *name, int cin,
                        int cout, float act, Rng *rng, Error *err)
{
    char conv[128], bn[128];
    snprintf(conv, sizeof conv, "%s%s.0", prefix, name);
    snprintf(bn, sizeof bn, "%s%s.1", prefix, name);
    ConvBnActSpec s = {cin, cout, 3, 1, 1, 1, true, act};
    return conv_bn_act_init(c, ps, conv, bn, s, rng, err);
}

ErrorCode ssh_init(Ssh *s, ParamStore *ps, const char *prefix, int in, int out, Rng *rng, Error *err)
{
    if (out % 4) return error_set(err, ERR_ARG, "ssh: out_channels %d not a multiple of 4", out);
    float leaky = out <= 64 ? 0.1f : 0.0f;
    /* The reference applies ReLU to the concatenation of the three branch ends; ReLU commutes with
     * concatenation, so each branch end carries it instead (fused into its conv at inference). */
    if (branch(&s->conv3x3, ps, prefix, "conv3X3", in, out / 2, 0.0f, rng, err) ||
        branch(&s->conv5x5_1, ps, prefix, "conv5X5_1", in, out / 4, leaky, rng, err) ||
        branch(&s->conv5x5_2, ps, prefix, "conv5X5_2", out / 4, out / 4, 0.0f, rng, err) ||
        branch(&s->conv7x7_2, ps, prefix, "conv7X7_2", out / 4, out / 4, leaky, rng, err) ||
        branch(&s->conv7x7_3, ps, prefix, "conv7x7_3", out / 4, out / 4, 0.0f, rng, err))
        return err->code;
    return ERR_OK;
}

Var *ssh_forward(Graph *g, const Ssh *s, Var *x, bool training)
{
    Var *c3 = conv_bn_act_forward(g, &s->conv3x3, x, training);
    Var *c5_1 = conv_bn_act_forward(g, &s->conv5x5_1, x, training);
    Var *c5 = conv_bn_act_forward(g, &s->conv5x5_2, c5_1, training);
    Var *c7_2 = conv_bn_act_forward(g, &s->conv7x7_2, c5_1, training);
    Var *c7 = conv_bn_act_forward(g, &s->conv7x7_3, c7_2, training);
    Var *parts[3] = {c3, c5, c7};
    return ag_concat(g, parts, 3, 1);
}
