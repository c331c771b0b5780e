/* SSH context module (RetinaFace): three branches over the same input — a 3x3 conv-BN to out/2,
 * and a shared 3x3 conv-BN-act to out/4 followed either by one 3x3 conv-BN (the "5x5" branch) or
 * by two (the "7x7" branch) to out/4 each — concatenated on channels and ReLU'd (the ReLU is applied
 * to each branch end before the concatenation: the same values, one pass fewer). Leaky 0.1 inside
 * when out <= 64. Names: conv3X3, conv5X5_1, conv5X5_2, conv7X7_2, conv7x7_3 (sic, as the
 * reference), each with .0 conv and .1 BN. */
#ifndef NN_SSH_H
#define NN_SSH_H

#include "nn/conv_bn.h"

typedef struct {
    ConvBnAct conv3x3, conv5x5_1, conv5x5_2, conv7x7_2, conv7x7_3;
} Ssh;

ErrorCode ssh_init(Ssh *s, ParamStore *ps, const char *prefix, int in_channels, int out_channels,
                   Rng *rng, Error *err);
Var *ssh_forward(Graph *g, const Ssh *s, Var *x, bool training);

#endif
