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
/* Mirrors detections of an image `width` pixels wide back onto the unmirrored image (boxes, and the
 * landmarks with left and right swapped). */
void detections_unmirror(Detection *d, int n, int width);

#endif
