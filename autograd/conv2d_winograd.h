/* Winograd forward convolution for the CPU: the dense 3x3 stride-1 convolutions of the backbone, FPN and
 * SSH blocks do 4x fewer multiplications than through im2col + GEMM with F(4x4, 3x3), and 5x fewer with
 * F(6x6, 3x3), which large layers take when their weights are transformed per call (training; prepacked
 * weights are F(4x4)'s).
 *
 * Shapes: x [N, Cin, H, W], and per target w [Cout, Cin, 3, 3], b [Cout] or NULL, y [N, Cout, Ho, Wo],
 * all contiguous NCHW float32, any padding, stride 1, dilation 1, one group. Several targets share
 * the input transform; s->Cout is the sum of theirs. `scratch` (caller-owned) holds
 * conv2d_winograd_scratch_floats() floats: the transformed weights U [XI][Cout][Cin] of targets
 * without packed ones (packed as the GEMMs' left operands, once per call), inputs V [Cin][XI][T] and
 * products M [Cout][XI][T], XI = 36 (F(4x4)) or 64 (F(6x6)), T = the output tiles of one chunk (whole
 * images or whole tile rows: about 2 MiB of V and M and at least 64 tiles, or for a layer too large to stay
 * in cache at least 256 tiles within 32 MiB) rounded up to 8, plus 8. Bias and activation are applied in
 * the output transform, which adds into y instead of writing it for a target marked accumulate. The backward's input gradient of a 3x3 stride-1 padding-1
 * convolution runs through here as the convolution of dy with the flipped, transposed kernel (see
 * conv2d_backward_cpu). Needs AVX2/FMA (conv2d_avx2_available). */
#ifndef AUTOGRAD_CONV2D_WINOGRAD_H
#define AUTOGRAD_CONV2D_WINOGRAD_H

#include "autograd/conv2d_cpu.h"

/* Shapes for which the Winograd path is both valid and faster than im2col + GEMM. */
bool conv2d_winograd_applies(const Conv2dShape *s);
/* The side of the output tiles (4 or 6) that such a shape takes without prepacked weights. */
int conv2d_winograd_tile(const Conv2dShape *s);
size_t conv2d_winograd_scratch_floats(const Conv2dShape *s);
void conv2d_winograd_forward(Context *ctx, const Conv2dShape *s, const float *x, int n, const Conv2dCpuTarget *t,
                             float *scratch);
/* dw [Cout, Cin, 3, 3] += the weight gradient of the convolution of x with output gradient dy (shapes
 * as the forward's, one target), through the Winograd domain: the forward's input transform, the adjoint
 * of its output transform on dy, XI GEMMs along the tiles (dot products with sums in double, or blocked
 * ones into float sums for many filters), the adjoint of the filter transform; the variant as the forward's. `scratch` holds conv2d_winograd_weight_grad_scratch_floats() floats. */
size_t conv2d_winograd_weight_grad_scratch_floats(const Conv2dShape *s);
void conv2d_winograd_weight_grad(Context *ctx, const Conv2dShape *s, const float *x, const float *dy, float *dw,
                                 float *scratch);
/* Whether weights of this shape and params can take the Winograd path (at a large enough input). */
bool conv2d_winograd_weight_shape(const Tensor *w, Conv2dParams p);
/* u[xi] = F(4x4)'s U[xi] [Cout, Cin] of w [Cout, Cin, 3, 3], packed as GEMM left operands; false when out of
 * memory (nothing is then left allocated). */
bool conv2d_winograd_pack_weights(const float *w, int Cout, int Cin, SgemmPackedA u[36]);

#endif
