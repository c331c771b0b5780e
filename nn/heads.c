#include "nn/heads.h"

#include <stdio.h>

ErrorCode dense_head_init(DenseHead *h, ParamStore *ps, const char *name, int n_levels,
                          int in_channels, int anchors, int k, Rng *rng, Error *err)
{
    if (n_levels > PYRAMID_MAX_LEVELS) return error_set(err, ERR_ARG, "head: too many levels");
    h->n_levels = n_levels, h->k = k;
    for (int i = 0; i < n_levels; i++) {
        char conv[128];
        snprintf(conv, sizeof conv, "%s.%d.conv1x1", name, i);
        ConvBnActSpec s = {in_channels, anchors * k, 1, 1, 0, 1, false, ACT_NONE};
        if (conv_bn_act_init(&h->conv[i], ps, conv, "", s, rng, err)) return err->code;
    }
    return ERR_OK;
}

/* Level l of a head's output: its conv's [N, A*k, H, W] as [N, H*W*A, k]. */
static Var *level_rows(Graph *g, const DenseHead *h, Var *conv_out)
{
    static const int nhwc[4] = {0, 2, 3, 1};
    Var *y = ag_permute(g, conv_out, nhwc);
    if (!y) return NULL;
    int64_t shape[3] = {y->value.shape[0], -1, h->k};
    return ag_reshape(g, y, 3, shape);
}

bool dense_heads_forward(Graph *g, const DenseHead *const *heads, int n_heads, Var *const *features, Var **outs)
{
    Var *parts[DENSE_HEADS_MAX][PYRAMID_MAX_LEVELS];
    if (n_heads < 1 || n_heads > DENSE_HEADS_MAX) return graph_fail(g, ERR_ARG, "heads: %d heads", n_heads), false;
    for (int i = 0; i < heads[0]->n_levels; i++) {
        const ConvBnAct *convs[DENSE_HEADS_MAX];
        Var *y[DENSE_HEADS_MAX];
        for (int h = 0; h < n_heads; h++) {
            if (heads[h]->n_levels != heads[0]->n_levels) return graph_fail(g, ERR_ARG, "heads: level counts differ"), false;
            convs[h] = &heads[h]->conv[i];
        }
        if (!conv_bn_act_forward_shared(g, convs, n_heads, features[i], false, y)) return false;
        for (int h = 0; h < n_heads; h++)
            if (!(parts[h][i] = level_rows(g, heads[h], y[h]))) return false;
    }
    for (int h = 0; h < n_heads; h++)
        if (!(outs[h] = ag_concat(g, parts[h], heads[h]->n_levels, 1))) return false;
    return true;
}
