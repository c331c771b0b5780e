/* ConvBnAct: conv2d -> optional BatchNorm2d -> optional (leaky) ReLU, the unit every RetinaFace
 * block is made of. Parameter names follow the PyTorch module that holds them: conv_name
 * ".weight" (and ".bias"), bn_name ".weight", ".bias", ".running_mean", ".running_var".
 * Initialisation is PyTorch's default (conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BN: 1, 0, 0, 1). */
#ifndef NN_CONV_BN_H
#define NN_CONV_BN_H

#include "autograd/ops.h"
#include "nn/params.h"
#include "tensor/rng.h"

enum { ACT_NONE = -1 }; /* pass as `leaky` for no activation; 0 is ReLU; > 0 leaky slope */

typedef struct ConvBnAct {
    Var *weight, *bias;              /* bias only when there is no BN */
    Var *bn_weight, *bn_bias;        /* NULL without BN */
    Tensor *running_mean, *running_var;
    Conv2dParams p;
    float leaky;                     /* ACT_NONE, 0 (ReLU) or the negative slope */
    int cin, cout, k;
    /* Inference copies with the BatchNorm folded in (w * gamma/std, beta - mean * gamma/std), owned by
     * the ParamStore given to conv_bn_act_fold; used by eval-mode forwards without gradients. */
    Var *folded_w, *folded_b;
    /* The inference weight (folded, or the conv's own without BN) packed for the CPU forward by
     * conv_bn_act_fold; owned here, freed by conv_bn_act_unfold. NULL: packed per call. */
    Conv2dPacked *packed;
} ConvBnAct;

typedef struct {
    int cin, cout, kernel, stride, padding, groups;
    bool batchnorm;                  /* false: the conv has a bias instead */
    float leaky;
} ConvBnActSpec;

ErrorCode conv_bn_act_init(ConvBnAct *c, ParamStore *ps, const char *conv_name,
                           const char *bn_name, ConvBnActSpec spec, Rng *rng, Error *err);
/* Eval mode without gradients, with the BN folded (or none to fold): one fused conv + bias + activation
 * op; otherwise conv, BN and activation ops. */
Var *conv_bn_act_forward(Graph *g, const ConvBnAct *c, Var *x, bool training);
/* act(conv_bn_act_forward(c, x) + residual) for a c without activation (a residual block's end): in
 * training, BN without conv bias, one ag_conv_bn_act_train_residual op; otherwise the layer and ag_add_act. */
Var *conv_bn_act_forward_residual(Graph *g, const ConvBnAct *c, Var *x, Var *residual, float act, bool training);
/* A depthwise 3x3 ConvBnAct (padding 1, stride 1 or 2) and then a 1x1 one (MobileNet's block): in eval mode
 * without gradients one ag_conv2d_separable op, whose depthwise output is never written out; otherwise
 * the two conv_bn_act_forward. */
Var *conv_bn_act_forward_separable(Graph *g, const ConvBnAct *dw, const ConvBnAct *pw, Var *x, bool training);
/* Several ConvBnActs of one input x with the same stride and padding (out[i] = conv_bn_act_forward of
 * convs[i]): in eval mode without gradients one ag_conv2d_shared_input op, which reads and transforms
 * x once for all; in training, BN without conv bias, one ag_conv_bn_act_train_shared op; otherwise one
 * after another. False on error (recorded in g). */
bool conv_bn_act_forward_shared(Graph *g, const ConvBnAct *const *convs, int n, Var *x, bool training, Var **out);
/* Prepares the inference forward: folds the BN (running statistics) into new tensors added to store
 * as "<name>.weight/.bias" (nothing to fold without BN), then packs the inference weight for the CPU
 * forward. Parameters must be on the CPU; fold again after changing them. */
ErrorCode conv_bn_act_fold(ConvBnAct *c, ParamStore *store, const char *name, Error *err);
/* Drops what conv_bn_act_fold made (the folded tensors stay in their store, unused). */
void conv_bn_act_unfold(ConvBnAct *c);
/* FLOPs (2 per multiply-add) of the convolution for an output of ho x wo, batch 1. */
double conv_bn_act_flops(const ConvBnAct *c, int64_t ho, int64_t wo);

#endif
