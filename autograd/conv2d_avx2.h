/* AVX2/FMA kernels of the CPU convolution (and the AVX-512 twins of some), internal to autograd/, used
 * when the CPU has them (conv2d_avx2_available, conv2d_avx512_available). act < 0: no activation, else leaky slope. */
#ifndef AUTOGRAD_CONV2D_AVX2_H
#define AUTOGRAD_CONV2D_AVX2_H

#include <stdbool.h>
#include <stddef.h>

bool conv2d_avx2_available(void);

/* Depthwise 3x3 padding-1 forward of one plane [H,W] -> [Ho,Wo], stride 1 or 2: output rows [oh0, oh1)
 * (oh1 <= Ho), written from y on (y is row oh0, so a band can go to a buffer of its own rows). Its AVX-512 twin (autograd/depthwise_avx512.c) gives the same floats; callers take the
 * best this CPU runs from depthwise3x3_plane_kernel. */
typedef void (*DepthwisePlaneFn)(const float *x, int H, int W, const float *w, float bias, float act, float *y,
                                 int stride, int Wo, int oh0, int oh1);
void depthwise3x3_plane_avx2(const float *x, int H, int W, const float *w, float bias, float act, float *y, int stride,
                             int Wo, int oh0, int oh1);
void depthwise3x3_plane_avx512(const float *x, int H, int W, const float *w, float bias, float act, float *y,
                               int stride, int Wo, int oh0, int oh1);
bool conv2d_avx512_available(void);
DepthwisePlaneFn depthwise3x3_plane_kernel(void);

/* Depthwise 3x3 padding-1 backward of one plane (autograd/depthwise_backward_avx2.c). Input gradient at
 * stride 2: dy [Ho,Wo] and the plane's kernel w [3,3] into dx [H,W] (added to dx when accumulate, else
 * written). Weight gradient at stride 1 or 2: the nine sums of dy times the input x [H,W] under each
 * tap, added to acc. */
void depthwise3x3_s2_backward_input_avx2(const float *dy, int Ho, int Wo, const float *w, float *dx, int H, int W,
                                         bool accumulate);
void depthwise3x3_backward_weight_avx2(const float *x, int H, int W, const float *dy, int Ho, int Wo, int stride,
                                       double acc[9]);

/* Dense 3x3 stride-2 padding-1 convolution with few input channels (Cin <= CONV3X3_S2_MAX_CIN),
 * output rows [oy0, oy1) of one image: x [Cin,H,W], w [Cout,Cin,3,3], b [Cout] or NULL, y [Cout,Ho,Wo]. */
enum { CONV3X3_S2_MAX_CIN = 8 };
void conv3x3_s2_rows_avx2(const float *x, int Cin, int H, int W, const float *w, const float *b, int Cout,
                          float act, float *y, int Ho, int Wo, int oy0, int oy1);

/* Its weight gradient over output rows [oy_begin, oy_end) of one image [Cin,H,W], output channels co0 .. co0 +
 * nco - 1 (any number): dy holds row oy_begin of channel co0 + j at dy + (co0 + j) * dy_plane, the rows after it
 * Wo floats apart; acc [nco, Cin, 3, 3] (double) is added to. */
enum { CONV3X3_S2_CO_BLOCK = 4 };
void conv3x3_s2_backward_weight_avx2(const float *x, int Cin, int H, int W, const float *dy, size_t dy_plane, int co0,
                                     int nco, int oy_begin, int oy_end, int Wo, double *acc);

/* Pointwise (1x1) convolution of few input channels made in registers, without packing
 * (autograd/pointwise_narrow_avx2.c): x [Cin, HW] of one image, w [Cout, Cin], pixels [p0, p1);
 * Cin <= POINTWISE_NARROW_MAX_CIN, Cout <= POINTWISE_NARROW_MAX_COUT. Moments (BatchNorm in training):
 * moments[2 m], [2 m + 1] = sum and sum of squares of z = W x of output channel m (z not stored). Affine:
 * y [Cout, HW] = act(z * scale + shift) per output channel (BN's affine map); stream: non-temporal stores,
 * for an output too large to stay in cache for the next layer. Inference keeps the GEMM for these layers:
 * this kernel measured no faster there (640x480, 1 thread, 5 alternations: forward median 16.86 ms without
 * it, 17.08 with it). */
enum { POINTWISE_NARROW_MAX_CIN = 16, POINTWISE_NARROW_MAX_COUT = 64 };
void pointwise_narrow_moments_avx2(const float *x, int Cin, size_t HW, size_t p0, size_t p1, const float *w, int Cout,
                                   double *moments);
void pointwise_narrow_affine_act_avx2(const float *x, int Cin, size_t HW, size_t p0, size_t p1, const float *w,
                                      int Cout, const float *scale, const float *shift, float act, bool stream,
                                      float *y);

#endif
