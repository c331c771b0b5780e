/* Prior (anchor) boxes of an AnchorLayout (nn/anchors.h), as RetinaFace's PriorBox: for level k with
 * stride steps[k], feature map ceil(H/step) x ceil(W/step); for every cell (row i, column j) and
 * every anchor size s of the level: (cx, cy, w, h) = ((j+0.5)*step/W, (i+0.5)*step/H, s/W, s/H),
 * normalised to the image; an anchor with aspect ratio r (AnchorLayout.ratios) is s sqrt(r) wide and
 * s / sqrt(r) high instead. Order: level, row, column, size — the order of the heads' outputs.
 * Optional clipping to [0,1]. Computed in double and rounded once, as the reference builds them in
 * Python. */
#ifndef DETECTION_PRIORS_H
#define DETECTION_PRIORS_H

#include <stdint.h>

#include "nn/anchors.h"
#include "tensor/error.h"

int64_t priors_count(const AnchorLayout *a, int height, int width);
/* out: priors_count * 4 floats. */
void priors_generate(const AnchorLayout *a, int height, int width, float *out);
/* The priors of an input size, malloc'd (the caller frees), count in *count. */
float *priors_for(const AnchorLayout *a, int height, int width, int64_t *count, Error *err);

#endif
