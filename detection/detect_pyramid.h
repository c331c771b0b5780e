/* Test-time augmentation: the detector run at several scales of an image (an image pyramid) and
 * optionally on its mirror image, all detections merged by NMS. Small faces gain from the larger
 * scales, large ones from the smaller; the mirror adds a second look at every face. */
#ifndef DETECTION_DETECT_PYRAMID_H
#define DETECTION_DETECT_PYRAMID_H

#include "detection/detector.h"

enum { PYRAMID_MAX_SCALES = 8 };

/* scales: resize factors applied to img (1 = original size), n_scales of them (1 to
 * PYRAMID_MAX_SCALES); flip: also the mirror image at every scale. Detections are in img's pixels,
 * strongest first, after NMS at opt->nms_threshold and opt->keep_top_k. */
ErrorCode detector_detect_pyramid(Detector *d, const Image *img, const float *scales, int n_scales, bool flip,
                                  const PostprocessOptions *opt, Detection **dets, int *n, Error *err);
/* Test-time augmentation as the apps take it: resize factors relative to the size the caller chose
 * (--scales A,B,...; none: that size alone) and whether to add the mirror image (--flip). */
typedef struct {
    float scales[PYRAMID_MAX_SCALES];
    int n_scales; /* 0: no pyramid */
    bool flip;
} PyramidOptions;
/* Parses a comma-separated list of 1 to PYRAMID_MAX_SCALES factors from 0.05 to 8 into p->scales;
 * ERR_ARG naming the problem otherwise (p->n_scales then 0). */
ErrorCode pyramid_parse_scales(PyramidOptions *p, const char *list, Error *err);
/* One image at resize (the factor the caller chose for it) under p: the plain detector_detect when p is
 * NULL or asks for nothing, else detector_detect_pyramid at resize times each factor (and mirrored). */
ErrorCode detector_detect_tta(Detector *d, const Image *img, float resize, const PyramidOptions *p,
                              const PostprocessOptions *opt, Detection **dets, int *n, Error *err);
static inline bool pyramid_options_active(const PyramidOptions *p) { return p && (p->n_scales || p->flip); }
/* Mirrors detections of an image `width` pixels wide back onto the unmirrored image (boxes, and the
 * landmarks with left and right swapped). */
void detections_unmirror(Detection *d, int n, int width);

#endif
