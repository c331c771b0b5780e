/* CPU kernels of BatchNorm in train mode followed by an activation, over one channel c of an NCHW
 * tensor [N, C, HW] (callers run the C channels as pool tasks). Shared by the fused training op
 * conv2d -> BN -> activation (autograd/op_conv_bn_act.c). act < 0: no activation, else leaky ReLU of
 * that slope (0 = ReLU). Sums are accumulated in double.
 *
 * Forward: the channel's sum and sum of squares (one read of z), then y = act(z * scale + shift) with
 * scale = gamma * invstd, shift = beta - mean * scale (one read of z, one write of y; y may be z).
 * Backward, from dy and what the forward kept of the channel (BnSaved): g = act'(v) dy with v the
 * pre-activation, xhat the normalised input, then
 *   sum_g = sum g, sum_gx = sum g * xhat                                  (dbeta, dgamma)
 *   dz = gamma * invstd * (g - sum_g / m - xhat * sum_gx / m)             (m = N * HW)
 * in two passes over the channel. The forward keeps either
 * - z (BN's input): v = z * scale + shift recomputed exactly as the forward computed it, xhat =
 *   (z - mean) * invstd; or
 * - y alone (the activation's output), where the activation can be undone (none, or leaky with slope > 0)
 *   and gamma is not small next to beta: v = y, or y / slope where y <= 0, and xhat = (v - beta) / gamma.
 *   The op then keeps one tensor per layer instead of two (In-Place Activated BatchNorm, Rota Bulo et
 *   al. 2018). */
#ifndef AUTOGRAD_BATCHNORM_CPU_H
#define AUTOGRAD_BATCHNORM_CPU_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int N, C;
    size_t HW;
} BnLayout;

/* One channel's kept tensor and how to read v and xhat from it. */
typedef struct {
    const float *t;  /* z, or y when from_output */
    bool from_output;
    float act;       /* as above */
    float scale, shift, mean, invstd; /* from z: v = z * scale + shift, xhat = (z - mean) * invstd */
    float inv_slope, beta, inv_gamma; /* from y: v = y or y * inv_slope, xhat = (v - beta) * inv_gamma */
} BnSaved;

/* Sum and sum of squares of channel c of z. */
void bn_channel_moments(const float *z, BnLayout l, int c, double *sum, double *sumsq);
/* Outputs of at least this many bytes are written past the cache (streaming stores): larger than what the
 * last-level cache keeps for the next layer, whose read of them would miss anyway; the stores then skip
 * reading each line before writing it. ResNet-50's 64->256 pointwise layer at 210x210, batch 2 (90 MB):
 * forward 0.92-0.94 of the time in alternated pairs (2 threads, Zen 4), 128->512 at 105x105 (45 MB) 0.95. */
#define BN_STREAM_MIN_BYTES ((size_t)16 << 20)

/* Whether an output of this many floats is streamed (the BN passes below and the narrow pointwise path's). */
static inline bool bn_output_streams(size_t floats) { return sizeof(float) * floats >= BN_STREAM_MIN_BYTES; }

/* y = act(z * scale + shift + r) over channel c (r, laid out as z, or NULL: none; y == z allowed; a y of its
 * own of BN_STREAM_MIN_BYTES or more is streamed). */
void bn_channel_normalize_act(const float *z, const float *r, BnLayout l, int c, float scale, float shift, float act,
                              float *y);
/* Backward reductions of channel c: *sum_g and *sum_gx as above. */
void bn_channel_backward_sums(const BnSaved *s, const float *dy, BnLayout l, int c, double *sum_g, double *sum_gx);
/* dz over channel c (written, not accumulated; a buffer of its own, streamed from BN_STREAM_MIN_BYTES on:
 * 128->512 at 105x105, batch 2, backward 0.97 of the time), with mg = sum_g / m, mgx = sum_gx / m (gamma *
 * invstd is s->scale in either mode). */
void bn_channel_backward_dz(const BnSaved *s, const float *dy, BnLayout l, int c, float mg, float mgx,
                            float *dz);

#endif
