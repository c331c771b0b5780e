/* Prior (anchor) boxes, as RetinaFace's PriorBox: for level k with stride steps[k], feature map
 * ceil(H/step) x ceil(W/step); for every cell (row i, column j) and every anchor size s of the
 * level: (cx, cy, w, h) = ((j+0.5)*step/W, (i+0.5)*step/H, s/W, s/H), normalised to the image.
 * Order: level, row, column, size — the order of the heads' outputs. Optional clipping to [0,1].
 * Computed in double and rounded once, as the reference builds them in Python. */
#ifndef DETECTION_PRIORS_H
#define DETECTION_PRIORS_H

#include <stdbool.h>
#include <stdint.h>

enum { PRIOR_MAX_LEVELS = 6, PRIOR_MAX_SIZES = 4 };

typedef struct {
    int n_levels;
    int steps[PRIOR_MAX_LEVELS];
    int n_sizes;                                        /* anchors per location */
    float sizes[PRIOR_MAX_LEVELS][PRIOR_MAX_SIZES];     /* pixels */
    bool clip;
} PriorSpec;

int64_t priors_count(const PriorSpec *s, int height, int width);
/* out: priors_count * 4 floats. */
void priors_generate(const PriorSpec *s, int height, int width, float *out);

#endif
