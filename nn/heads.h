/* Dense prediction head: per level a 1x1 conv (with bias) to anchors*k channels ("<name>.<i>.
 * conv1x1"), laid out as permute(0,2,3,1).view(N, -1, k) and concatenated over levels into
 * [N, P, k] — prior order: level, row, column, anchor. */
#ifndef NN_HEADS_H
#define NN_HEADS_H

#include "nn/anchors.h"
#include "nn/conv_bn.h"


typedef struct {
    int n_levels, k;
    ConvBnAct conv[PYRAMID_MAX_LEVELS];
} DenseHead;

ErrorCode dense_head_init(DenseHead *h, ParamStore *ps, const char *name, int n_levels,
                          int in_channels, int anchors, int k, Rng *rng, Error *err);
/* Heads over the same features (same level count): outs[i] is heads[i]'s [N, P, k] output; each
 * level's convolutions share their input (conv_bn_act_forward_shared). False on error. */
enum { DENSE_HEADS_MAX = 6 }; /* a cascade's two stages of class, box and landmark heads */
bool dense_heads_forward(Graph *g, const DenseHead *const *heads, int n_heads, Var *const *features, Var **outs);

#endif
