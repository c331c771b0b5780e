#include "detection/detect_pyramid.h"

#include <stdlib.h>
#include <string.h>

void detections_unmirror(Detection *d, int n, int width)
{
    /* x -> width - 1 - x (pixel centres), as cv2.flip's pixel mapping; left eye <-> right eye and
     * left <-> right mouth corner keep the landmark order meaningful */
    static const int partner[5] = {1, 0, 2, 4, 3};
    for (int i = 0; i < n; i++) {
        float x1 = d[i].box[0], x2 = d[i].box[2];
        d[i].box[0] = (float)(width - 1) - x2, d[i].box[2] = (float)(width - 1) - x1;
        float lm[10];
        for (int p = 0; p < 5; p++) {
            lm[2 * partner[p]] = (float)(width - 1) - d[i].landmarks[2 * p];
            lm[2 * partner[p] + 1] = d[i].landmarks[2 * p + 1];
        }
        memcpy(d[i].landmarks, lm, sizeof lm);
    }
}

static int by_score(const void *a, const void *b)
{
    float x = ((const Detection *)a)->score, y = ((const Detection *)b)->score;
    return x > y ? -1 : x < y;
}

static ErrorCode mirror(const Image *src, Image *dst, Error *err)
{
    if (image_alloc(dst, src->width, src->height, err)) return err->code;
    for (int y = 0; y < src->height; y++) {
        const uint8_t *s = src->bgr + (size_t)y * src->width * 3;
        uint8_t *t = dst->bgr + (size_t)y * src->width * 3;
        for (int x = 0; x < src->width; x++) memcpy(t + 3 * x, s + 3 * (src->width - 1 - x), 3);
    }
    return ERR_OK;
}

ErrorCode detector_detect_pyramid(Detector *d, const Image *img, const float *scales, int n_scales, bool flip,
                                  const PostprocessOptions *opt, Detection **dets, int *n, Error *err)
{
    *dets = NULL, *n = 0;
    if (n_scales < 1 || n_scales > PYRAMID_MAX_SCALES)
        return error_set(err, ERR_ARG, "%d scales (1 to %d)", n_scales, PYRAMID_MAX_SCALES);
    Image mirrored = {0};
    if (flip && mirror(img, &mirrored, err)) return err->code;
    Detection *all = NULL;
    int total = 0;
    ErrorCode rc = ERR_OK;
    for (int pass = 0; pass < (flip ? 2 : 1) && !rc; pass++)
        for (int s = 0; s < n_scales && !rc; s++) {
            Detection *part = NULL;
            int m = 0;
            if ((rc = detector_detect(d, pass ? &mirrored : img, scales[s], opt, &part, &m, NULL, err))) break;
            if (pass) detections_unmirror(part, m, img->width);
            Detection *grown = realloc(all, sizeof *all * (size_t)(total + m + 1));
            if (!grown) {
                free(part);
                rc = error_set(err, ERR_OOM, "out of memory merging detections");
                break;
            }
            all = grown;
            memcpy(all + total, part, sizeof *part * (size_t)m);
            total += m;
            free(part);
        }
    image_free(&mirrored);
    float *boxes = rc ? NULL : malloc(sizeof(float) * 4 * (size_t)(total + 1));
    int *keep = rc ? NULL : malloc(sizeof(int) * (size_t)(total + 1));
    if (!rc && (!boxes || !keep)) rc = error_set(err, ERR_OOM, "out of memory merging detections");
    int kept = 0;
    if (!rc) {
        qsort(all, (size_t)total, sizeof *all, by_score);
        for (int i = 0; i < total; i++) memcpy(boxes + 4 * i, all[i].box, sizeof all[i].box);
        kept = nms_greedy(boxes, total, opt->nms_threshold, keep);
        if (kept < 0) rc = error_set(err, ERR_OOM, "out of memory in NMS");
    }
    if (!rc) {
        if (kept > opt->keep_top_k) kept = opt->keep_top_k;
        for (int k = 0; k < kept; k++) all[k] = all[keep[k]]; /* keep[] ascends: k <= keep[k] */
        *dets = all, *n = kept;
        all = NULL;
    }
    free(all), free(boxes), free(keep);
    return rc;
}

ErrorCode pyramid_parse_scales(PyramidOptions *p, const char *list, Error *err)
{
    p->n_scales = 0;
    for (const char *c = list;;) {
        char *end;
        float v = strtof(c, &end);
        if (end == c || !(v >= 0.05f && v <= 8.0f) || p->n_scales == PYRAMID_MAX_SCALES) {
            p->n_scales = 0;
            return error_set(err, ERR_ARG, "--scales expects 1 to %d factors from 0.05 to 8, e.g. 0.5,1,1.5",
                             PYRAMID_MAX_SCALES);
        }
        p->scales[p->n_scales++] = v;
        if (*end == 0) return ERR_OK;
        if (*end != ',') {
            p->n_scales = 0;
            return error_set(err, ERR_ARG, "--scales: '%s' is not a comma-separated list", list);
        }
        c = end + 1;
    }
}

ErrorCode detector_detect_tta(Detector *d, const Image *img, float resize, const PyramidOptions *p,
                              const PostprocessOptions *opt, Detection **dets, int *n, Error *err)
{
    if (!pyramid_options_active(p)) return detector_detect(d, img, resize, opt, dets, n, NULL, err);
    float factors[PYRAMID_MAX_SCALES];
    int nf = p->n_scales ? p->n_scales : 1;
    for (int f = 0; f < nf; f++) factors[f] = resize * (p->n_scales ? p->scales[f] : 1.0f);
    return detector_detect_pyramid(d, img, factors, nf, p->flip, opt, dets, n, err);
}
