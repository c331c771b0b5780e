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
    /* conv3X3 and conv5X5_1 read x, conv5X5_2 and conv7X7_2 read conv5X5_1's output: each pair is
     * one shared-input op in eval mode */
    const ConvBnAct *on_x[2] = {&s->conv3x3, &s->conv5x5_1}, *on_c5_1[2] = {&s->conv5x5_2, &s->conv7x7_2};
    Var *a[2], *b[2];
    if (!conv_bn_act_forward_shared(g, on_x, 2, x, training, a) ||
        !conv_bn_act_forward_shared(g, on_c5_1, 2, a[1], training, b))
        return NULL;
    Var *c7 = conv_bn_act_forward(g, &s->conv7x7_3, b[1], training);
    Var *parts[3] = {a[0], b[0], c7};
    Var *y = ag_concat(g, parts, 3, 1);
    for (int i = 0; i < 3; i++) graph_done_with(g, parts[i]); /* freed now where no backward reads them */
    return y;
}
