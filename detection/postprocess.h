/* From network outputs to detections, with the reference pipeline's semantics: decode boxes and
 * landmarks against the priors, scale to pixels, keep scores > conf_threshold, take the top_k by
 * score, greedy NMS (IoU with the +1-pixel area convention of py_cpu_nms; a box is suppressed when
 * its IoU with a kept box exceeds nms_threshold), then keep the first keep_top_k. */
#ifndef DETECTION_POSTPROCESS_H
#define DETECTION_POSTPROCESS_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/error.h"

typedef struct {
    float box[4];       /* x1, y1, x2, y2 in pixels of the original image */
    float score;
    float landmarks[10];
    int label;          /* class index (1 = face for the face models) */
} Detection;

typedef struct {
    float conf_threshold;   /* 0.02 */
    float nms_threshold;    /* 0.4 */
    int top_k;              /* 5000 */
    int keep_top_k;         /* 750 */
} PostprocessOptions;

PostprocessOptions postprocess_defaults(void);

/* Greedy NMS over boxes sorted by descending score: writes kept indices into keep, returns count. */
int nms_greedy(const float *boxes, int n, float threshold, int *keep);

/* loc [P,4], probs [P,C] (softmax), landms [P,10] or NULL, priors [P,4]; class `label` is scored.
 * scale_x/scale_y: pixels per normalised unit (the network input size divided by any resize
 * factor). Results are malloc'd into *out (count in *n_out). */
ErrorCode detections_from_outputs(const float *loc, const float *probs, int num_classes, const float *landms,
                                  const float *priors, int64_t P, const float variance[2], float scale_x,
                                  float scale_y, int label, const PostprocessOptions *opt, Detection **out,
                                  int *n_out, Error *err);

#endif
