/* AVX2/FMA kernels of the CPU convolution, internal to autograd/op_conv2d.c, used when the CPU has
 * them (conv2d_avx2_available). act < 0: no activation, else leaky slope. */
#ifndef AUTOGRAD_CONV2D_AVX2_H
#define AUTOGRAD_CONV2D_AVX2_H

#include <stdbool.h>

bool conv2d_avx2_available(void);

/* Depthwise 3x3 padding-1 forward of one plane [H,W] -> [Ho,Wo], stride 1 or 2: output rows [oh0, oh1)
 * (oh1 <= Ho). */
void depthwise3x3_plane_avx2(const float *x, int H, int W, const float *w, float bias, float act, float *y, int stride,
                             int Wo, int oh0, int oh1);

/* Dense 3x3 stride-2 padding-1 convolution with few input channels (Cin <= CONV3X3_S2_MAX_CIN),
 * output rows [oy0, oy1) of one image: x [Cin,H,W], w [Cout,Cin,3,3], b [Cout] or NULL, y [Cout,Ho,Wo]. */
enum { CONV3X3_S2_MAX_CIN = 8 };
void conv3x3_s2_rows_avx2(const float *x, int Cin, int H, int W, const float *w, const float *b, int Cout,
                          float act, float *y, int Ho, int Wo, int oy0, int oy1);

#endif
