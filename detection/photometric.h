/* The pixel kernels of the training photometric distortion (the reference's _distort), in place on
 * interleaved 8-bit BGR, vectorised and byte-identical to the per-pixel definitions.
 *
 * photometric_convert: v = uint8(clamp(v * alpha + beta)) on n bytes (cv2's convertTo as the
 * reference's _convert uses it: brightness with alpha 1, contrast with beta 0).
 *
 * hsv_adjust: the saturation/hue step, in OpenCV's 8-bit HSV convention
 * (H in [0,180), S and V in [0,255]), as the reference's cv2.cvtColor round trip does it:
 * BGR -> HSV, S = uint8(clamp(S * alpha)), H = (H + shift) mod 180, HSV -> BGR, in place on `pixels`
 * interleaved BGR pixels, shift in [-180, 180]. alpha 1 and shift 0 still round-trip (which is not
 * the identity). */
#ifndef DETECTION_PHOTOMETRIC_H
#define DETECTION_PHOTOMETRIC_H

#include <stddef.h>
#include <stdint.h>

void photometric_convert(uint8_t *bytes, size_t n, float alpha, float beta);
void hsv_adjust(uint8_t *bgr, size_t pixels, float alpha, int shift);

#endif
