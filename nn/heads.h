/* Dense prediction head: per level a 1x1 conv (with bias) to anchors*k channels ("<name>.<i>.
 * conv1x1"), laid out as permute(0,2,3,1).view(N, -1, k) and concatenated over levels into
 * [N, P, k] — prior order: level, row, column, anchor. */
#ifndef NN_HEADS_H
#define NN_HEADS_H

#include "nn/conv_bn.h"

enum { HEAD_MAX_LEVELS = 6 };

typedef struct {
    int n_levels, k;
    ConvBnAct conv[HEAD_MAX_LEVELS];
} DenseHead;

ErrorCode dense_head_init(DenseHead *h, ParamStore *ps, const char *name, int n_levels,
                          int in_channels, int anchors, int k, Rng *rng, Error *err);
Var *dense_head_forward(Graph *g, const DenseHead *h, Var *const *features);

#endif
