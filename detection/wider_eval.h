/* The official WIDER FACE evaluation protocol (the semantics of the public evaluation script
 * and its Python port): prediction scores normalised to [0,1] over all predictions evaluated;
 * per image, predictions matched to ground truth by IoU with the +1-pixel convention; faces
 * outside a subset's gt_list are "ignored" (a detection on them is neither true nor false
 * positive); precision/recall at 1000 score thresholds 1 - (t+1)/1000; VOC-style AP (precision
 * envelope, sum over recall steps). */
#ifndef DETECTION_WIDER_EVAL_H
#define DETECTION_WIDER_EVAL_H

#include "detection/wider_data.h"

enum { WIDER_THRESHOLDS = 1000 };

typedef struct {
    double ap[WIDER_SUBSETS];
    /* precision and recall at each threshold, per subset (for plots) */
    double precision[WIDER_SUBSETS][WIDER_THRESHOLDS];
    double recall[WIDER_SUBSETS][WIDER_THRESHOLDS];
    int images_without_predictions; /* ground-truth images with no prediction file */
} WiderResult;

/* Normalises the scores of every prediction in p in place (once, before evaluating). */
void wider_normalise_scores(WiderPreds *p);
/* Evaluates the events of gt named in events (all when NULL) at one IoU threshold. Scores of p must
 * already be normalised. An event without predictions counts its faces with no detections. */
ErrorCode wider_evaluate(const WiderGt *gt, const WiderPreds *p, const char *const *events, int n_events,
                         double iou_threshold, WiderResult *res, Error *err);
double voc_ap(const double *recall, const double *precision, int n);

#endif
