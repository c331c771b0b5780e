/* Box and landmark coding relative to priors (cx, cy, w, h), with variances v = (0.1, 0.2):
 *   encode: ((gcx - pcx) / (v0 pw), (gcy - pcy) / (v0 ph), log(gw / pw) / v1, log(gh / ph) / v1)
 *   decode: centre = p.c + d.xy * v0 * p.wh, size = p.wh * exp(d.wh * v1), returned as corners
 *   landmarks: each point encoded as (l - p.c) / (v0 p.wh).
 * Arrays are row-major [n, 4] / [n, 10]; boxes in corner form (x1, y1, x2, y2). */
#ifndef DETECTION_BOX_CODING_H
#define DETECTION_BOX_CODING_H

#include <stdint.h>

void boxes_decode(const float *loc, const float *priors, int64_t n, const float variance[2], float *boxes);
/* The same decode left in prior form (cx, cy, w, h): the cascade's second-stage priors. */
void priors_refine(const float *loc, const float *priors, int64_t n, const float variance[2], float *refined);
void landmarks_decode(const float *pre, const float *priors, int64_t n, const float variance[2], float *landms);
/* One matched ground truth box (corners) -> 4 regression targets for a prior. */
void box_encode(const float gt[4], const float prior[4], const float variance[2], float out[4]);
void landmarks_encode(const float gt[10], const float prior[4], const float variance[2], float out[10]);

#endif
