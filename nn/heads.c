#include "nn/heads.h"

#include <stdio.h>

ErrorCode dense_head_init(DenseHead *h, ParamStore *ps, const char *name, int n_levels,
                          int in_channels, int anchors, int k, Rng *rng, Error *err)
{
    if (n_levels > HEAD_MAX_LEVELS) return error_set(err, ERR_ARG, "head: too many levels");
    h->n_levels = n_levels, h->k = k;
    for (int i = 0; i < n_levels; i++) {
        char conv[128];
        snprintf(conv, sizeof conv, "%s.%d.conv1x1", name, i);
        ConvBnActSpec s = {in_channels, anchors * k, 1, 1, 0, 1, false, ACT_NONE};
        if (conv_bn_act_init(&h->conv[i], ps, conv, "", s, rng, err)) return err->code;
    }
    return ERR_OK;
}

Var *dense_head_forward(Graph *g, const DenseHead *h, Var *const *features)
{
    Var *parts[HEAD_MAX_LEVELS];
    static const int nhwc[4] = {0, 2, 3, 1};
    for (int i = 0; i < h->n_levels; i++) {
        Var *y = ag_permute(g, conv_bn_act_forward(g, &h->conv[i], features[i], false), nhwc);
        if (!y) return NULL;
        int64_t shape[3] = {y->value.shape[0], -1, h->k};
        parts[i] = ag_reshape(g, y, 3, shape);
    }
    return ag_concat(g, parts, h->n_levels, 1);
}
