/* Per-class average precision of a detector on a labelled set (the training label formats of
 * detection/train_data.h, a class id per object): for every object class and IoU threshold, the
 * detections of that class over all images, strongest first, each a true positive when it overlaps an
 * object of its class not yet taken by a stronger one at IoU >= the threshold (continuous box areas),
 * and AP the area under the precision envelope (all-point interpolation, as PASCAL VOC since 2010).
 * No difficulty subsets: for WIDER FACE's own protocol see detection/wider_eval.h. */
#ifndef DETECTION_CLASS_EVAL_H
#define DETECTION_CLASS_EVAL_H

#include <stdio.h>

#include "detection/detector.h"
#include "detection/train_data.h"

enum { CLASS_EVAL_MAX_IOUS = 8 };

typedef struct {
    int n_classes;                          /* object classes: ids 1 .. n_classes */
    int objects[RETINA_MAX_CLASSES];        /* by class id */
    int detections[RETINA_MAX_CLASSES];
    int n_ious;
    double iou[CLASS_EVAL_MAX_IOUS];
    double ap[RETINA_MAX_CLASSES][CLASS_EVAL_MAX_IOUS]; /* [class id][threshold] */
    int images, failed_images;
} ClassApResult;

/* Runs d over every image of set (long side resized to long_side when > 0) with opt's thresholds and
 * scores it at each of the n_ious thresholds. progress (or NULL) gets a rate/ETA line. An unreadable image
 * is counted and skipped. */
ErrorCode class_ap_evaluate(Detector *d, const TrainSet *set, const double *ious, int n_ious, int long_side,
                            const PostprocessOptions *opt, FILE *progress, ClassApResult *res, Error *err);

/* AP of one class from whether each of its n detections, strongest first, is a true positive, and the
 * number of objects; exposed for tests. */
double class_ap_from_ranked(const unsigned char *tp, int n, int objects);

#endif
