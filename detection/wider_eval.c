#include "detection/wider_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void wider_normalise_scores(WiderPreds *p)
{
    /* As the script: the running max starts at 0 and the min at 1. */
    double max_score = 0, min_score = 1;
    for (int e = 0; e < p->n_events; e++)
        for (int i = 0; i < p->events[e].n_images; i++) {
            const WiderPredImage *im = &p->events[e].images[i];
            for (int k = 0; k < im->n; k++) {
                double s = im->boxes[5 * k + 4];
                if (s > max_score) max_score = s;
                if (s < min_score) min_score = s;
            }
        }
    double diff = max_score - min_score;
    for (int e = 0; e < p->n_events; e++)
        for (int i = 0; i < p->events[e].n_images; i++) {
            WiderPredImage *im = &p->events[e].images[i];
            for (int k = 0; k < im->n; k++) im->boxes[5 * k + 4] = (im->boxes[5 * k + 4] - min_score) / diff;
        }
}

/* numpy's maximum: NaN wins. */
static double np_maximum(double a, double b) { return (isnan(a) || isnan(b)) ? NAN : (a > b ? a : b); }

double voc_ap(const double *rec, const double *prec, int n)
{
    double *mrec = malloc(sizeof(double) * ((size_t)n + 2)), *mpre = malloc(sizeof(double) * ((size_t)n + 2));
    if (!mrec || !mpre) {
        free(mrec), free(mpre);
        return NAN;
    }
    mrec[0] = 0, mpre[0] = 0;
    for (int i = 0; i < n; i++) mrec[i + 1] = rec[i], mpre[i + 1] = prec[i];
    mrec[n + 1] = 1, mpre[n + 1] = 0;
    for (int i = n + 1; i > 0; i--) mpre[i - 1] = np_maximum(mpre[i - 1], mpre[i]);
    double ap = 0;
    for (int i = 0; i < n + 1; i++)
        if (mrec[i + 1] != mrec[i]) ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
    free(mrec), free(mpre);
    return ap;
}

/* IoU of prediction (x1,y1,x2,y2) and ground truth (x1,y1,x2,y2), +1 convention (bbox_overlaps). */
static double overlap(const double *p, const double *g)
{
    double iw = fmin(p[2], g[2]) - fmax(p[0], g[0]) + 1;
    if (iw <= 0) return 0;
    double ih = fmin(p[3], g[3]) - fmax(p[1], g[1]) + 1;
    if (ih <= 0) return 0;
    double ua = (p[2] - p[0] + 1) * (p[3] - p[1] + 1) + (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - iw * ih;
    return iw * ih / ua;
}

typedef struct {
    double *pred, *gt;           /* corner forms */
    int *pred_recall, *proposal; /* per prediction */
    int *recall_list;            /* per gt: 0, 1 or -1 */
    int *ignore;
    int cap_pred, cap_gt;
} Scratch;

static bool scratch_fit(Scratch *s, int n_pred, int n_gt)
{
    if (n_pred > s->cap_pred) {
        s->cap_pred = n_pred * 2;
        s->pred = realloc(s->pred, sizeof(double) * 5 * (size_t)s->cap_pred);
        s->pred_recall = realloc(s->pred_recall, sizeof(int) * (size_t)s->cap_pred);
        s->proposal = realloc(s->proposal, sizeof(int) * (size_t)s->cap_pred);
    }
    if (n_gt > s->cap_gt) {
        s->cap_gt = n_gt * 2;
        s->gt = realloc(s->gt, sizeof(double) * 4 * (size_t)s->cap_gt);
        s->recall_list = realloc(s->recall_list, sizeof(int) * (size_t)s->cap_gt);
        s->ignore = realloc(s->ignore, sizeof(int) * (size_t)s->cap_gt);
    }
    return s->pred && s->pred_recall && s->proposal && s->gt && s->recall_list && s->ignore;
}

/* Adds one image's (proposal count, recall count) at every threshold into pr[t][0..1]. */
static void image_pr(const WiderPredImage *pi, const WiderGtImage *gi, const int *keep, int n_keep, double iou,
                     const double *thresh, Scratch *s, double (*pr)[2])
{
    int n = pi->n, m = gi->n_gt;
    for (int h = 0; h < n; h++) {
        const double *b = pi->boxes + 5 * h;
        double *p = s->pred + 5 * h;
        p[0] = b[0], p[1] = b[1], p[2] = b[2] + b[0], p[3] = b[3] + b[1], p[4] = b[4];
    }
    for (int k = 0; k < m; k++) {
        const double *b = gi->gt + 4 * k;
        double *g = s->gt + 4 * k;
        g[0] = b[0], g[1] = b[1], g[2] = b[2] + b[0], g[3] = b[3] + b[1];
        s->recall_list[k] = 0;
        s->ignore[k] = 0;
    }
    for (int k = 0; k < n_keep; k++) s->ignore[keep[k] - 1] = 1;
    int recalled = 0;
    for (int h = 0; h < n; h++) {
        double best = -1;
        int arg = 0;
        for (int k = 0; k < m; k++) {
            double o = overlap(s->pred + 5 * h, s->gt + 4 * k);
            if (o > best) best = o, arg = k; /* first maximum, as argmax */
        }
        s->proposal[h] = 1;
        if (best >= iou) {
            if (s->ignore[arg] == 0) {
                if (s->recall_list[arg] == 1) recalled--;
                s->recall_list[arg] = -1;
                s->proposal[h] = -1;
            } else if (s->recall_list[arg] == 0) {
                s->recall_list[arg] = 1;
                recalled++;
            }
        }
        s->pred_recall[h] = recalled;
    }
    /* r(t) = last prediction index whose score >= thresh[t]; thresh decreases with t, so r(t) is the
     * running maximum over t of the last index that first qualifies at t. */
    int first_t_last[WIDER_THRESHOLDS];
    for (int t = 0; t < WIDER_THRESHOLDS; t++) first_t_last[t] = -1;
    for (int h = 0; h < n; h++) {
        double sc = s->pred[5 * h + 4];
        /* smallest t with thresh[t] <= sc */
        int lo = 0, hi = WIDER_THRESHOLDS;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (thresh[mid] <= sc)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (lo < WIDER_THRESHOLDS && h > first_t_last[lo]) first_t_last[lo] = h;
    }
    /* proposals counted in prefix [0..r] */
    int r = -1, proposals_upto_r = 0, counted_to = -1;
    for (int t = 0; t < WIDER_THRESHOLDS; t++) {
        if (first_t_last[t] > r) r = first_t_last[t];
        if (r < 0) continue;
        while (counted_to < r) proposals_upto_r += s->proposal[++counted_to] == 1;
        pr[t][0] += proposals_upto_r;
        pr[t][1] += s->pred_recall[r];
    }
}

void wider_normalise_scores(WiderPreds *p);

ErrorCode wider_evaluate(const WiderGt *gt, const WiderPreds *p, const char *const *events, int n_events,
                         double iou, WiderResult *res, Error *err)
{
    memset(res, 0, sizeof *res);
    double thresh[WIDER_THRESHOLDS];
    for (int t = 0; t < WIDER_THRESHOLDS; t++) thresh[t] = 1.0 - (double)(t + 1) / WIDER_THRESHOLDS;
    Scratch s = {0};
    for (int sub = 0; sub < WIDER_SUBSETS; sub++) {
        double(*pr)[2] = calloc(WIDER_THRESHOLDS, sizeof *pr);
        if (!pr) return error_set(err, ERR_OOM, "out of memory");
        long count_face = 0;
        for (int e = 0; e < gt->n_events; e++) {
            const WiderGtEvent *ge = &gt->events[e];
            if (events) {
                bool wanted = false;
                for (int k = 0; k < n_events && !wanted; k++) wanted = !strcmp(events[k], ge->name);
                if (!wanted) continue;
            }
            const WiderPredEvent *pe = wider_preds_event(p, ge->name);
            for (int i = 0; i < ge->n_images; i++) {
                const WiderGtImage *gi = &ge->images[i];
                count_face += gi->n_keep[sub];
                const WiderPredImage *pi = wider_preds_image(pe, gi->name);
                if (!pi) {
                    if (sub == 0) res->images_without_predictions++;
                    continue;
                }
                if (gi->n_gt == 0 || pi->n == 0) continue;
                if (!scratch_fit(&s, pi->n, gi->n_gt)) {
                    free(pr);
                    return error_set(err, ERR_OOM, "out of memory");
                }
                image_pr(pi, gi, gi->keep[sub], gi->n_keep[sub], iou, thresh, &s, pr);
            }
        }
        for (int t = 0; t < WIDER_THRESHOLDS; t++) {
            res->precision[sub][t] = pr[t][1] / pr[t][0]; /* 0/0 is NaN, as numpy */
            res->recall[sub][t] = pr[t][1] / (double)count_face;
        }
        res->ap[sub] = voc_ap(res->recall[sub], res->precision[sub], WIDER_THRESHOLDS);
        free(pr);
    }
    free(s.pred), free(s.gt), free(s.pred_recall), free(s.proposal), free(s.recall_list), free(s.ignore);
    return ERR_OK;
}
