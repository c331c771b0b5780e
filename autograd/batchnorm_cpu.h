/* CPU kernels of BatchNorm in train mode followed by an activation, over one channel c of an NCHW
 * tensor [N, C, HW] (callers run the C channels as pool tasks). Shared by the fused training op
 * conv2d -> BN -> activation (autograd/op_conv_bn_act.c). act < 0: no activation, else leaky ReLU of
 * that slope (0 = ReLU). Sums are accumulated in double.
 *
 * Forward: the channel's sum and sum of squares (one read of z), then y = act(z * scale + shift) with
 * scale = gamma * invstd, shift = beta - mean * scale (one read of z, one write of y).
 * Backward, from dy and z alone (the activation's mask is the sign of z * scale + shift, recomputed
 * exactly as the forward computed it, so y is not read): g = act'(.) dy, then
 *   sum_g = sum g, sum_gx = sum g * xhat with xhat = (z - mean) * invstd   (dbeta, dgamma)
 *   dz = gamma * invstd * (g - sum_g / m - xhat * sum_gx / m)               (m = N * HW)
 * in two passes over the channel. */
#ifndef AUTOGRAD_BATCHNORM_CPU_H
#define AUTOGRAD_BATCHNORM_CPU_H

#include <stddef.h>

typedef struct {
    int N, C;
    size_t HW;
} BnLayout;

/* Sum and sum of squares of channel c of z. */
void bn_channel_moments(const float *z, BnLayout l, int c, double *sum, double *sumsq);
/* y = act(z * scale + shift) over channel c. */
void bn_channel_normalize_act(const float *z, BnLayout l, int c, float scale, float shift, float act, float *y);
/* Backward reductions of channel c: *sum_g and *sum_gx as above (scale, shift as in the forward). */
void bn_channel_backward_sums(const float *z, const float *dy, BnLayout l, int c, float scale, float shift, float act,
                              float mean, float invstd, double *sum_g, double *sum_gx);
/* dz over channel c (written, not accumulated): k = gamma * invstd, mg = sum_g / m, mgx = sum_gx / m. */
void bn_channel_backward_dz(const float *z, const float *dy, BnLayout l, int c, float scale, float shift, float act,
                            float mean, float invstd, float k, float mg, float mgx, float *dz);

#endif
