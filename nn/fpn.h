/* FPN as in RetinaFace: a 1x1 conv-BN-act lateral per input level ("fpn.output<i>"), then top-down:
 * level i += nearest-upsample(level i+1) to level i's size, followed by a 3x3 conv-BN-act merge
 * ("fpn.merge<i>"); the top level has no merge. Optional extra levels ("fpn.extra<k>") are 3x3
 * stride-2 conv-BN-act on the previous top level (P6 from P5). Leaky slope 0.1 when out_channels
 * <= 64, else ReLU — the reference's rule. */
#ifndef NN_FPN_H
#define NN_FPN_H

#include "nn/anchors.h"
#include "nn/conv_bn.h"


typedef struct {
    int n_in, n_extra, out_channels;
    ConvBnAct lateral[PYRAMID_MAX_LEVELS];
    ConvBnAct merge[PYRAMID_MAX_LEVELS];
    ConvBnAct extra[PYRAMID_MAX_LEVELS];
} Fpn;

ErrorCode fpn_init(Fpn *f, ParamStore *ps, const char *prefix, const int *in_channels, int n_in,
                   int n_extra, int out_channels, Rng *rng, Error *err);
/* outs receives n_in + n_extra maps, finest first. */
bool fpn_forward(Graph *g, const Fpn *f, Var *const *ins, bool training, Var **outs);

#endif
