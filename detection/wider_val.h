/* Running a detector over a WIDER FACE style val tree and scoring it with the official protocol:
 * the image list (wider_val.txt or a directory scan), prediction files in the official layout
 * <out>/<event>/<image>.txt, and the evaluation of such a folder. build/eval and the trainer's
 * validation share these. Ownership: a WiderImageList owns its strings. */
#ifndef DETECTION_WIDER_VAL_H
#define DETECTION_WIDER_VAL_H

#include <stdio.h>

#include "detection/detect_pyramid.h"
#include "detection/detector.h"
#include "detection/wider_eval.h"

typedef struct {
    char **names;   /* "19--Couple/19_Couple_Couple_19_106.jpg", relative to the image root */
    int n;
    char **events;  /* the distinct events of names, in order of first appearance */
    int n_events;
} WiderImageList;

/* The lines of list (wider_val.txt; a leading '/' is dropped, blank lines skipped) or, with list
 * NULL, every .jpg of every event directory under images, sorted. An empty result is an error. */
ErrorCode wider_image_list(const char *images, const char *list, WiderImageList *l, Error *err);
void wider_image_list_free(WiderImageList *l);

/* Runs d over images/<name> for every name of l, at original size or with the long side resized to
 * long_side (> 0), and writes out_dir/<event>/<stem>.txt (directories created). Images go batch at a time
 * through detector_detect_batch (same sizes share a forward; detections as one at a time), or one at a time
 * through detector_detect_tta when tta asks for a pyramid or the mirror image (tta NULL: none). An image that
 * cannot be read or detected is reported on progress (when not NULL) and counted in *failures; the others
 * go on. progress also gets a rate/ETA line. Errors: out_dir cannot be created or written. */
ErrorCode wider_predict(Detector *d, const char *images, const WiderImageList *l, const char *out_dir, int long_side,
                        int batch, const PyramidOptions *tta, const PostprocessOptions *opt, FILE *progress,
                        int *failures, Error *err);

/* Loads the predictions of pred_dir for the events of l, normalises their scores and evaluates
 * them against gt at IoU iou. */
ErrorCode wider_evaluate_dir(const WiderGt *gt, const char *pred_dir, const WiderImageList *l, double iou,
                             WiderResult *res, Error *err);

#endif
