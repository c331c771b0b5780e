/* CPU conv2d kernels behind ag_conv2d, exposed so that inference paths can call them without a
 * graph. All tensors contiguous NCHW float32; `scratch` must hold conv2d_cpu_scratch_floats() floats
 * for the forward (the im2col buffer of one image and group; 0 for depthwise and 1x1 stride-1 convs)
 * and conv2d_cpu_backward_scratch_floats() for the backward.
 * Backward kernels ACCUMULATE into dw, db and, when dx_accumulate, into dx (else they write dx whole);
 * any of dx, dw, db may be NULL. */
#ifndef AUTOGRAD_CONV2D_CPU_H
#define AUTOGRAD_CONV2D_CPU_H

#include "autograd/ops.h"
#include "tensor/sgemm.h"

typedef struct {
    int N, Cin, H, W;      /* input */
    int Cout, KH, KW;      /* weight [Cout, Cin/groups, KH, KW] */
    int Ho, Wo;            /* output */
    Conv2dParams p;
} Conv2dShape;

/* Fills s from shapes; returns false (and writes why into msg) when they do not fit. */
bool conv2d_shape(Conv2dShape *s, const Tensor *x, const Tensor *w, const Tensor *b,
                  Conv2dParams p, char *msg, size_t msg_len);
size_t conv2d_cpu_scratch_floats(const Conv2dShape *s);
/* The `scratch` of conv2d_backward_cpu: one image's im2col buffer and the weight gradient's sums. */
size_t conv2d_cpu_backward_scratch_floats(const Conv2dShape *s);

/* Which CPU forward kernel a shape takes: depthwise (direct per plane), Winograd (dense 3x3 stride 1;
 * F(4x4,3x3) or F(6x6,3x3), conv2d_winograd.h), direct 3x3 stride 2 (few input channels: the stem), else
 * im2col + GEMM (no im2col for 1x1 stride 1). The backward always takes the depthwise or im2col + GEMM kernels. */
typedef enum { CONV_CPU_GEMM, CONV_CPU_DEPTHWISE, CONV_CPU_WINOGRAD, CONV_CPU_DIRECT3X3_S2 } ConvCpuAlgorithm;
ConvCpuAlgorithm conv2d_cpu_algorithm(const Conv2dShape *s);
const char *conv2d_cpu_algorithm_name(ConvCpuAlgorithm a);
/* 1 or 2 when the AVX2 kernels of a 3x3 padding-1 depthwise convolution of that stride apply, else 0. */
int conv2d_depthwise3x3_stride(const Conv2dShape *s);
/* With them, the input gradient of one plane: dy [Ho,Wo] and the plane's kernel w [3,3] into dx [H,W]
 * (added to dx when accumulate; at stride 1 it is written, so accumulate must be false). */
void conv2d_depthwise3x3_input_grad_plane(const Conv2dShape *s, const float *dy, const float *w, float *dx,
                                          bool accumulate);
/* For profiles: the algorithm's name, "1x1" for the GEMM path without im2col. */
const char *conv2d_cpu_kind(const Conv2dShape *s);
/* Multiply-adds x 2 of the forward (each of the two backward products costs the same). */
double conv2d_flops(const Conv2dShape *s);

/* A convolution's weights packed once for the CPU forward, for weights that no longer change
 * (inference): the GEMM path's left operand and the Winograd path's transformed weights, so neither
 * is redone per call. Built by conv2d_pack_weights, owned by whoever built it. */
struct Conv2dPacked {
    SgemmPackedA gemm;         /* w as [Cout, Cin*KH*KW] (groups == 1; else data NULL) */
    SgemmPackedA winograd[36]; /* U[xi] [Cout, Cin] when the weight's shape can take the Winograd path */
};
ErrorCode conv2d_pack_weights(Conv2dPacked *pk, const Tensor *w, Conv2dParams p, Error *err);
void conv2d_packed_free(Conv2dPacked *pk);

/* One of the convolutions of a forward over a shared input: its weight [Cout, Cin/groups, KH, KW],
 * bias [Cout] or NULL, activation (act < 0: none; >= 0: leaky ReLU with that slope, 0 = ReLU, applied
 * with the bias in the output pass), packed weights or NULL, and output [N, Cout, Ho, Wo]. */
typedef struct {
    const float *w, *b;
    int Cout;
    float act;
    const Conv2dPacked *packed;
    float *y;
    bool accumulate; /* add into y instead of writing it (Winograd path only: the input gradient) */
} Conv2dCpuTarget;

/* n <= SGEMM_MAX_PRODUCTS convolutions of one input with the same kernel size, stride, padding,
 * dilation and groups; s is their shape with Cout the sum of theirs (that is what `scratch` is sized
 * for). Where the algorithm allows, the input is read and transformed once for all (im2col, Winograd's
 * input transform, the packing of the GEMM's right operand); otherwise they run one after another. */
void conv2d_forward_cpu_shared(Context *ctx, const Conv2dShape *s, const float *x, int n, const Conv2dCpuTarget *t,
                               float *scratch);
void conv2d_backward_cpu(Context *ctx, const Conv2dShape *s, const float *x, const float *w,
                         const float *dy, float *dx, bool dx_accumulate, float *dw, float *db, float *scratch);

/* The outputs of one shared-input op (ag_conv2d_shared_input, ag_conv_bn_act_train_shared; groups == 1), made
 * together, whose convolutions run their backward as one: the first of them whose backward runs does all
 * (by then every member's output gradient is complete: every op that reads a member is made after all of
 * them, so its backward has run) and sets done; the others find it done. Each member's weight is its
 * inputs[1] ([C_i, Cin, KH, KW]), its output [N, C_i, Ho, Wo]. Host scratch of the graph that made them. */
typedef struct {
    int n;
    Var *members[SGEMM_MAX_PRODUCTS];
    Conv2dShape total; /* Cout: the sum of the members' */
    bool done;
} Conv2dBranchGroup;

/* The members' convolution backward as one of Cout = total.Cout, their weights stacked along the output
 * channels in member order: dy [N, total.Cout, Ho, Wo] holds their output-side gradients stacked the same
 * way. Adds each member's weight gradient (and, with biases, the gradient of its inputs[2] bias where it
 * has one) into its Var and writes or adds x's gradient; x is read (and for Winograd transformed) once.
 * Failures are recorded in g. */
void conv2d_stacked_backward(Graph *g, const Conv2dBranchGroup *grp, const float *dy, bool biases);

#endif
