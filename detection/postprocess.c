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
    /* Areas with +1, as py_cpu_nms; suppressed flags in one pass per kept box. */
    char *dead = calloc((size_t)n + 1, 1);
    float *area = malloc(sizeof(float) * ((size_t)n + 1));
    if (!dead || !area) {
        free(dead), free(area);
        return -1;
    }
    for (int i = 0; i < n; i++) area[i] = (b[4 * i + 2] - b[4 * i] + 1) * (b[4 * i + 3] - b[4 * i + 1] + 1);
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (dead[i]) continue;
        keep[kept++] = i;
        const float *bi = b + 4 * i;
        for (int j = i + 1; j < n; j++) {
            if (dead[j]) continue;
            const float *bj = b + 4 * j;
            float xx1 = bi[0] > bj[0] ? bi[0] : bj[0], yy1 = bi[1] > bj[1] ? bi[1] : bj[1];
            float xx2 = bi[2] < bj[2] ? bi[2] : bj[2], yy2 = bi[3] < bj[3] ? bi[3] : bj[3];
            float w = xx2 - xx1 + 1, h = yy2 - yy1 + 1;
            if (w <= 0 || h <= 0) continue;
            float inter = w * h;
            float iou = inter / (area[i] + area[j] - inter);
            if (iou > threshold) dead[j] = 1;
        }
    }
    free(dead), free(area);
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
    Scored *cand = malloc(sizeof(Scored) * ((size_t)P + 1));
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
