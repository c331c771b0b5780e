#include "nn/fpn.h"

#include <stdio.h>

ErrorCode fpn_init(Fpn *f, ParamStore *ps, const char *prefix, const int *in_channels, int n_in,
                   int n_extra, int out_channels, Rng *rng, Error *err)
{
    *f = (Fpn){0};
    if (n_in < 1 || n_in + n_extra > PYRAMID_MAX_LEVELS)
        return error_set(err, ERR_ARG, "fpn: %d levels unsupported", n_in + n_extra);
    f->n_in = n_in, f->n_extra = n_extra, f->out_channels = out_channels;
    float leaky = out_channels <= 64 ? 0.1f : 0.0f;
    char conv[128], bn[128];
    for (int i = 0; i < n_in; i++) {
        snprintf(conv, sizeof conv, "%soutput%d.0", prefix, i + 1);
        snprintf(bn, sizeof bn, "%soutput%d.1", prefix, i + 1);
        ConvBnActSpec lat = {in_channels[i], out_channels, 1, 1, 0, 1, true, leaky};
        if (conv_bn_act_init(&f->lateral[i], ps, conv, bn, lat, rng, err)) return err->code;
    }
    /* Merges are registered finest first (merge1, merge2, ...), as the reference's state_dict. */
    for (int i = 0; i + 1 < n_in; i++) {
        snprintf(conv, sizeof conv, "%smerge%d.0", prefix, i + 1);
        snprintf(bn, sizeof bn, "%smerge%d.1", prefix, i + 1);
        ConvBnActSpec m = {out_channels, out_channels, 3, 1, 1, 1, true, leaky};
        if (conv_bn_act_init(&f->merge[i], ps, conv, bn, m, rng, err)) return err->code;
    }
    for (int k = 0; k < n_extra; k++) {
        snprintf(conv, sizeof conv, "%sextra%d.0", prefix, k + 1);
        snprintf(bn, sizeof bn, "%sextra%d.1", prefix, k + 1);
        ConvBnActSpec e = {out_channels, out_channels, 3, 2, 1, 1, true, leaky};
        if (conv_bn_act_init(&f->extra[k], ps, conv, bn, e, rng, err)) return err->code;
    }
    return ERR_OK;
}

bool fpn_forward(Graph *g, const Fpn *f, Var *const *ins, bool training, Var **outs)
{
    for (int i = 0; i < f->n_in; i++) outs[i] = conv_bn_act_forward(g, &f->lateral[i], ins[i], training);
    if (!graph_ok(g)) return false;
    for (int i = f->n_in - 2; i >= 0; i--) {
        outs[i] = conv_bn_act_forward(g, &f->merge[i], ag_add_upsampled(g, outs[i], outs[i + 1]), training);
        if (!graph_ok(g)) return false;
    }
    for (int k = 0; k < f->n_extra; k++)
        outs[f->n_in + k] = conv_bn_act_forward(g, &f->extra[k], outs[f->n_in + k - 1], training);
    return graph_ok(g);
}
