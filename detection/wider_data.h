/* WIDER FACE val ground truth (from the official .mat files) and prediction folders (the official
 * layout <event>/<image>.txt: image name, count, then one "x y w h score" line per face).
 * Ownership: everything is owned by the WiderGt / WiderPreds that holds it. */
#ifndef DETECTION_WIDER_DATA_H
#define DETECTION_WIDER_DATA_H

#include <stdbool.h>

#include "tensor/error.h"

enum { WIDER_EASY, WIDER_MEDIUM, WIDER_HARD, WIDER_SUBSETS };

typedef struct {
    char *name;        /* image name without .jpg */
    int n_gt;
    double *gt;        /* n_gt x 4: x, y, w, h */
    int n_keep[WIDER_SUBSETS];
    int *keep[WIDER_SUBSETS]; /* 1-based indices of the faces that count in each subset */
} WiderGtImage;

typedef struct {
    char *name;        /* "0--Parade" */
    WiderGtImage *images;
    int n_images;
} WiderGtEvent;

typedef struct {
    WiderGtEvent *events;
    int n_events;
} WiderGt;

/* dir holds wider_face_val.mat and wider_{easy,medium,hard}_val.mat. */
ErrorCode wider_gt_load(const char *dir, WiderGt *gt, Error *err);
void wider_gt_free(WiderGt *gt);

typedef struct {
    char *name;        /* from the file's first line, without directories and .jpg */
    int n;
    double *boxes;     /* n x 5: x, y, w, h, score (in file order) */
} WiderPredImage;

typedef struct {
    char *name;
    WiderPredImage *images;
    int n_images;
} WiderPredEvent;

typedef struct {
    WiderPredEvent *events;
    int n_events;
} WiderPreds;

/* Reads the listed events (or, with events NULL, every sub-directory) of a prediction folder.
 * A malformed file is an error naming the file and line. */
ErrorCode wider_preds_load(const char *dir, const char *const *events, int n_events, WiderPreds *p, Error *err);
void wider_preds_free(WiderPreds *p);
const WiderPredEvent *wider_preds_event(const WiderPreds *p, const char *name);
const WiderPredImage *wider_preds_image(const WiderPredEvent *e, const char *name);
/* Parses one prediction file (exposed for tests). */
ErrorCode wider_pred_file_read(const char *path, WiderPredImage *img, Error *err);
/* Writes one prediction file as the reference does: name, count, "x y w h score " lines with integer
 * coordinates truncated toward zero (int(x1), int(y1), int(x2)-int(x1), int(y2)-int(y1)). */
ErrorCode wider_pred_file_write(const char *path, const char *image_name, const float *boxes_xyxy,
                                const float *scores, int n, Error *err);

#endif
