/* The state of one conv -> BN -> activation training op (autograd/op_conv_bn_act.c) and its backward
 * paths by plane, block and band (autograd/conv_bn_act_paths.c). Internal to autograd/. Shapes: x [N, Cin,
 * H, W], w [Cout, Cin/groups, KH, KW], z and y [N, Cout, Ho, Wo]; every pointer is step memory of the graph
 * that made the op (host scratch for the per-channel arrays), owned by that graph. */
#ifndef AUTOGRAD_CONV_BN_ACT_STATE_H
#define AUTOGRAD_CONV_BN_ACT_STATE_H

#include "autograd/batchnorm_cpu.h"
#include "autograd/conv2d_cpu.h"
#include "autograd/graph.h"
#include "tensor/sgemm.h"

typedef struct {
    Conv2dShape s;
    float act, momentum, eps;
    bool from_output;    /* the backward reads y, not z (see above) */
    float *z;            /* conv output [N, Cout, Ho, Wo], step memory (y itself when from_output) */
    float *mean, *invstd; /* [Cout], host scratch of the step */
    const float *gamma, *beta;
    Tensor *running_mean, *running_var;
    /* backward only */
    const float *dy;
    float *dz, *dgamma, *dbeta;
    float *y;
    float *mg, *mgx;     /* [Cout]: sum_g / m and sum_gx / m, for dz */
    double *plane_moments; /* forward of the depthwise and pointwise layers taken by plane or image: [N * C][2]
                            * sums of each output plane, or NULL */
    const float *x, *w;  /* the forward's input and weights */
    float *affine;       /* a narrow pointwise layer, whose y a pass of its own makes from x
                          * (conv_bn_act_narrow_output): [2][Cout] each channel's scale, then shift; else NULL */
    /* synchronised BatchNorm (Context.sync_bn over several ranks): [C][2] sums over every rank's batch,
     * then their element count, or NULL for this batch's own statistics */
    double *global;
    Conv2dBranchGroup *group; /* a branch of ag_conv_bn_act_train_shared, or NULL */
    /* [N * Cout][2]: each plane's sum_g and sum_gx, added by the backward that wrote dy while it had the
     * plane in cache (conv_bn_act_sums_receiver), or NULL: this op's backward makes its own pass */
    double *handed_sums;
    /* ag_conv_bn_act_train_residual: y = residual_act(BN(z) + residual), act then -1 (BN's own: none; the
     * backward takes residual_act's mask from y first); NULL otherwise */
    const float *residual;
    float residual_act;
    /* the backward of such an op: dy (the output's gradient) while residual_act's mask is still to be applied to
     * it, channel by channel before the channel's sums (backward_channel); NULL otherwise */
    float *dy_unmasked;
} ConvBnActState;

/* What the backward reads of channel c; t: the kept tensor where the caller's layout starts. */
BnSaved conv_bn_act_kept_channel(const ConvBnActState *st, int c, const float *t);

/* The backward sums handed over. BN's backward first needs, per channel, sums over dy and what the
 * forward kept: a pass over both of the layer's tensors. The backward that writes dy, when it is the last
 * reader of y and so completes dy, has a piece of dy and of y (its own input, which it reads too) in cache
 * right after writing it, and adds the piece's sums there instead (conv_bn_act_receive_sums).
 * conv_bn_act_sums_receiver(g, x): the state of x's conv_bn_act op, with its per-plane sums allocated and
 * zeroed, when the backward running now may do so (it is x's last reader, the op keeps y, which is x, no
 * synchronised BatchNorm, not a branch of a shared op); NULL otherwise. A caller that takes it must add
 * every element of every plane exactly once. */
ConvBnActState *conv_bn_act_sums_receiver(Graph *g, Var *x);
/* Adds to plane (n, c)'s sums those of len values of y (x of the caller) and dy (its gradient dx). */
void conv_bn_act_receive_sums(ConvBnActState *r, int n, int c, const float *y, const float *dy, size_t len);

/* Backward paths that write each piece of dz to cache-sized scratch and take both gradients from there
 * (mg, mgx already set): depthwise 3x3 layers plane by plane, pointwise layers by column blocks, the stem
 * (no input gradient) by bands of output rows. Each adds its weight gradient into dw (when not NULL) and
 * writes or adds dx as dx_accumulate says, and hands dx's BN sums to dx_sums (conv_bn_act_sums_receiver(x),
 * or NULL); failures are recorded in g. */
void conv_bn_act_depthwise_backward(Graph *g, ConvBnActState *st, const float *x, const float *w, float *dx,
                                    bool dx_accumulate, ConvBnActState *dx_sums, float *dw);
bool conv_bn_act_pointwise_fused(const Graph *g, const ConvBnActState *st);
void conv_bn_act_pointwise_backward(Graph *g, ConvBnActState *st, const float *x, const float *w, float *dx,
                                    bool dx_accumulate, ConvBnActState *dx_sums, float *dw);
bool conv_bn_act_stem_by_image(const Graph *g, const ConvBnActState *st, bool dx);
void conv_bn_act_stem_backward(Graph *g, ConvBnActState *st, const float *x, float *dw);
/* The depthwise layers' forward, a threadpool task per (image, channel) plane (st->x, st->w, st->z,
 * st->plane_moments set). */
void conv_bn_act_depthwise_forward_plane(void *arg, int plane);
/* Pointwise layers of few input channels whose y gives z back (autograd/pointwise_narrow_avx2.c): the
 * moments from x without storing z (st->x, st->w set; st->plane_moments and st->affine allocated; false
 * when out of memory, recorded in g), and once the statistics have filled st->affine, y from x. */
bool conv_bn_act_pointwise_narrow(const Graph *g, const ConvBnActState *st);
bool conv_bn_act_narrow_moments(Graph *g, ConvBnActState *st);
void conv_bn_act_narrow_output(Graph *g, ConvBnActState *st);
/* Other pointwise layers with images enough for the pool, whose images' outputs fit the cache or whose images
 * are enough to even out the threads: the forward a task per image, z and its planes' moments (st->x, st->w set;
 * st->plane_moments filled; false on failure, recorded in g). */
bool conv_bn_act_pointwise_by_image(const Graph *g, const ConvBnActState *st);
bool conv_bn_act_pointwise_forward(Graph *g, ConvBnActState *st);

#endif
