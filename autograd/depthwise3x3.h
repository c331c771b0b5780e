/* Specialised depthwise 3x3 stride-1 padding-1 forward (one plane [H,W] -> [H,W]), internal to
 * autograd/op_conv2d.c. act < 0: none, else leaky slope. */
#ifndef AUTOGRAD_DEPTHWISE3X3_H
#define AUTOGRAD_DEPTHWISE3X3_H

#include <stdbool.h>

bool depthwise3x3_s1_available(void);
void depthwise3x3_s1_plane_avx2(const float *x, int H, int W, const float *w, float bias, float act, float *y);

#endif
