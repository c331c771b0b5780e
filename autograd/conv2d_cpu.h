/* CPU conv2d kernels behind ag_conv2d, exposed so that inference paths can call them without a
 * graph. All tensors contiguous NCHW float32; `scratch` must hold conv2d_cpu_scratch_floats()
 * floats (the im2col buffer of one image and group; 0 for depthwise and 1x1 stride-1 convs).
 * Backward kernels ACCUMULATE into dx, dw, db (any may be NULL). */
#ifndef AUTOGRAD_CONV2D_CPU_H
#define AUTOGRAD_CONV2D_CPU_H

#include "autograd/ops.h"

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

/* Which CPU forward kernel a shape takes: depthwise (direct per plane), Winograd F(4x4,3x3) (dense 3x3
 * stride 1), direct 3x3 stride 2 (few input channels: the stem), else im2col + GEMM (no im2col for
 * 1x1 stride 1). The backward always takes the depthwise or im2col + GEMM kernels. */
typedef enum { CONV_CPU_GEMM, CONV_CPU_DEPTHWISE, CONV_CPU_WINOGRAD, CONV_CPU_DIRECT3X3_S2 } ConvCpuAlgorithm;
ConvCpuAlgorithm conv2d_cpu_algorithm(const Conv2dShape *s);
const char *conv2d_cpu_algorithm_name(ConvCpuAlgorithm a);

/* act < 0: no activation; act >= 0: leaky ReLU with that slope (0 = ReLU), applied with the bias in
 * one pass over the output (the conv epilogue). */
void conv2d_forward_cpu(Context *ctx, const Conv2dShape *s, const float *x, const float *w,
                        const float *b, float act, float *y, float *scratch);
void conv2d_backward_cpu(Context *ctx, const Conv2dShape *s, const float *x, const float *w,
                         const float *dy, float *dx, float *dw, float *db, float *scratch);

#endif
