/* The levels of a detector's feature pyramid and the anchors on them: the one description a variant
 * gives (models/retinaface_<variant>.c) and that the FPN, the heads and the priors
 * (detection/priors.h) all read. */
#ifndef NN_ANCHORS_H
#define NN_ANCHORS_H

#include <stdbool.h>

enum { PYRAMID_MAX_LEVELS = 6, PYRAMID_MAX_ANCHORS = 4 };

typedef struct {
    int n_levels;                                          /* detection levels */
    int steps[PYRAMID_MAX_LEVELS];                         /* stride of each level, input pixels */
    int per_location;                                      /* anchors per feature-map cell, every level */
    float sizes[PYRAMID_MAX_LEVELS][PYRAMID_MAX_ANCHORS];  /* anchor sides, pixels (the square's side) */
    /* aspect ratio (width / height) of each anchor: side s and ratio r make a box of s sqrt(r) x s / sqrt(r),
     * the same area as the square; 0 (a variant that sets none) or 1: the square, RetinaFace's only shape */
    float ratios[PYRAMID_MAX_LEVELS][PYRAMID_MAX_ANCHORS];
    bool clip;                                             /* clip the priors to [0, 1] */
} AnchorLayout;

#endif
