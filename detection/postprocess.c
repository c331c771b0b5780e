#include "detection/postprocess.h"

#include <stdlib.h>
#include <string.h>

#include "detection/box_coding.h"

PostprocessOptions postprocess_defaults(void)
{
    PostprocessOptions o = {0.02f, 0.4f, 5000, 750};
    return o;
}

int nms_greedy(const float *b, int n, float threshold, int *keep)
{
    /* Areas with +1, as py_cpu_nms. The boxes go into columns (x1, y1, x2, y2, area) so that the IoU of
     * one kept box against all later ones is a branch-free loop the compiler vectorises; a box already
     * suppressed is compared again, harmlessly (the flag only ever goes from 0 to 1). */
    float *col = malloc(sizeof(float) * 5 * ((size_t)n + 1));
    unsigned char *dead = calloc((size_t)n + 1, 1);
    if (!col || !dead) {
        free(col), free(dead);
        return -1;
    }
    float *x1 = col, *y1 = x1 + n, *x2 = y1 + n, *y2 = x2 + n, *area = y2 + n;
    for (int i = 0; i < n; i++) {
        x1[i] = b[4 * i], y1[i] = b[4 * i + 1], x2[i] = b[4 * i + 2], y2[i] = b[4 * i + 3];
        area[i] = (x2[i] - x1[i] + 1) * (y2[i] - y1[i] + 1);
    }
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (dead[i]) continue;
        keep[kept++] = i;
        float bx1 = x1[i], by1 = y1[i], bx2 = x2[i], by2 = y2[i], ba = area[i];
        for (int j = i + 1; j < n; j++) {
            float w = (x2[j] < bx2 ? x2[j] : bx2) - (x1[j] > bx1 ? x1[j] : bx1) + 1;
            float h = (y2[j] < by2 ? y2[j] : by2) - (y1[j] > by1 ? y1[j] : by1) + 1;
            float inter = (w > 0 ? w : 0) * (h > 0 ? h : 0);
            float iou = inter / (ba + area[j] - inter);
            dead[j] |= inter > 0 && iou > threshold; /* disjoint boxes never suppress, whatever the threshold */
        }
    }
    free(col), free(dead);
    return kept;
}

typedef struct {
    float score;
    int64_t index;
} Scored;

/* Descending score; among equal scores the higher prior index first (numpy's argsort()[::-1]). */
static int by_score_desc(const void *a, const void *b)
{
    const Scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->index < y->index ? 1 : (x->index > y->index ? -1 : 0);
}

ErrorCode detections_from_outputs(const float *loc, const float *probs, int C, const float *landms,
                                  const float *priors, int64_t P, const float variance[2], float sx, float sy,
                                  int label, const PostprocessOptions *opt, Detection **out, int *n_out,
                                  Error *err)
{
    *out = NULL;
    *n_out = 0;
    /* counted first: a buffer for all P priors (200 KB at 640x480) would be a fresh mmap per image */
    int64_t above = 0;
    for (int64_t i = 0; i < P; i++) above += probs[i * C + label] > opt->conf_threshold;
    Scored *cand = malloc(sizeof(Scored) * ((size_t)above + 1));
    if (!cand) return error_set(err, ERR_OOM, "out of memory in postprocessing");
    int64_t n = 0;
    for (int64_t i = 0; i < P; i++) {
        float s = probs[i * C + label];
        if (s > opt->conf_threshold) cand[n].score = s, cand[n].index = i, n++;
    }
    qsort(cand, (size_t)n, sizeof *cand, by_score_desc);
    if (n > opt->top_k) n = opt->top_k;
    float *boxes = malloc(sizeof(float) * 4 * ((size_t)n + 1));
    int *keep = malloc(sizeof(int) * ((size_t)n + 1));
    Detection *dets = malloc(sizeof(Detection) * ((size_t)n + 1));
    if (!boxes || !keep || !dets) {
        free(cand), free(boxes), free(keep), free(dets);
        return error_set(err, ERR_OOM, "out of memory in postprocessing");
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t i = cand[k].index;
        float b[4];
        boxes_decode(loc + 4 * i, priors + 4 * i, 1, variance, b);
        boxes[4 * k] = b[0] * sx, boxes[4 * k + 1] = b[1] * sy;
        boxes[4 * k + 2] = b[2] * sx, boxes[4 * k + 3] = b[3] * sy;
    }
    int kept = nms_greedy(boxes, (int)n, opt->nms_threshold, keep);
    if (kept < 0) {
        free(cand), free(boxes), free(keep), free(dets);
        return error_set(err, ERR_OOM, "out of memory in NMS");
    }
    if (kept > opt->keep_top_k) kept = opt->keep_top_k;
    for (int k = 0; k < kept; k++) {
        int64_t i = cand[keep[k]].index;
        Detection *d = &dets[k];
        memcpy(d->box, boxes + 4 * keep[k], sizeof d->box);
        d->score = cand[keep[k]].score;
        d->label = label;
        if (landms) {
            landmarks_decode(landms + 10 * i, priors + 4 * i, 1, variance, d->landmarks);
            for (int p = 0; p < 5; p++) d->landmarks[2 * p] *= sx, d->landmarks[2 * p + 1] *= sy;
        } else {
            memset(d->landmarks, 0, sizeof d->landmarks);
        }
    }
    free(cand), free(boxes), free(keep);
    *out = dets;
    *n_out = kept;
    return ERR_OK;
}
