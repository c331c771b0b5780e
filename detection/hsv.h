/* The saturation/hue step of the training photometric distortion, in OpenCV's 8-bit HSV convention
 * (H in [0,180), S and V in [0,255]), as the reference's cv2.cvtColor round trip does it:
 * BGR -> HSV, S = uint8(clamp(S * alpha)), H = (H + shift) mod 180, HSV -> BGR, in place on `pixels`
 * interleaved BGR pixels. alpha 1 and shift 0 still round-trip (which is not the identity). */
#ifndef DETECTION_HSV_H
#define DETECTION_HSV_H

#include <stddef.h>
#include <stdint.h>

void hsv_adjust(uint8_t *bgr, size_t pixels, float alpha, int shift);

#endif
