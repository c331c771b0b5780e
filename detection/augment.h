/* Training augmentation, the reference's `preproc`: a random square crop of 0.3/0.45/0.6/0.8/1.0
 * of the short side containing at least one whole face (up to 250 tries; faces whose centre falls
 * inside are kept, boxes and landmarks clipped), photometric distortion (brightness, contrast,
 * saturation, hue in the reference's two random orders), padding to a square with the mean colour
 * when no crop was found, a random horizontal mirror (landmark eyes and mouth corners swapped),
 * a resize to size x size with a random interpolation, and mean subtraction.
 * When the crop will be shrunk by 2x or more, the JPEG is decoded at 1/2, 1/4 or 1/8 scale
 * (libjpeg's DCT scaling), which is much faster and loses nothing at the training size. PNG and WebP
 * training images are decoded whole (no such scaling).
 * With zoom_out > 1, half the samples skip the crop and shrink instead (see the field).
 * Output targets: normalised rows of 15 floats (x1 y1 x2 y2, 10 landmark coords, 1 or -1). */
#ifndef DETECTION_AUGMENT_H
#define DETECTION_AUGMENT_H

#include "detection/train_data.h"
#include "tensor/rng.h"

typedef struct {
    int size;            /* training resolution (640 / 840) */
    float mean[3];       /* B, G, R: 104, 117, 123 */
    float min_face;      /* faces whose side after resizing is not above this are dropped (reference: 0) */
    bool augment;        /* false: resize the whole image only (evaluation-style, deterministic) */
    float zoom_out;      /* > 1: half the samples are the whole image placed at random on a mean-colour square
                          * canvas up to zoom_out times its long side (SSD's "expand"), so faces come out
                          * smaller than any crop makes them; 1: off (the reference recipe) */
} AugmentOptions;

AugmentOptions augment_defaults(int size);

/* chw: 3*size*size floats. targets: up to max_faces rows; *n_faces gets the count. */
ErrorCode augment_sample(const TrainSample *s, const AugmentOptions *opt, Rng *rng, float *chw, float *targets,
                         int max_faces, int *n_faces, Error *err);

#endif
