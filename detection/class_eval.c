#include "detection/class_eval.h"

#include <stdlib.h>
#include <string.h>

#include "detection/image.h"
#include "tensor/clock.h"

/* One detection of the whole set: its image, class, score and box. */
typedef struct {
    int image, label;
    float score;
    float box[4];
} SetDetection;

static int by_score(const void *a, const void *b)
{
    const SetDetection *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->image != y->image ? (x->image < y->image ? -1 : 1) : 0; /* a fixed order for ties */
}

static double iou(const float *a, const float *b)
{
    double iw = (a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]);
    double ih = (a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]);
    if (iw <= 0 || ih <= 0) return 0;
    double inter = iw * ih, u = (double)(a[2] - a[0]) * (a[3] - a[1]) + (double)(b[2] - b[0]) * (b[3] - b[1]) - inter;
    return u > 0 ? inter / u : 0;
}

double class_ap_from_ranked(const unsigned char *tp, int n, int objects)
{
    if (objects <= 0) return 0;
    /* precision at each rank, then its envelope from the right, summed over the recall steps */
    double *prec = malloc(sizeof(double) * (size_t)(n + 1));
    double *rec = malloc(sizeof(double) * (size_t)(n + 1));
    if (!prec || !rec) {
        free(prec), free(rec);
        return 0;
    }
    int tps = 0;
    for (int i = 0; i < n; i++) {
        tps += tp[i];
        prec[i] = (double)tps / (i + 1);
        rec[i] = (double)tps / objects;
    }
    for (int i = n - 2; i >= 0; i--)
        if (prec[i + 1] > prec[i]) prec[i] = prec[i + 1];
    double ap = 0, last_recall = 0;
    for (int i = 0; i < n; i++)
        if (rec[i] > last_recall) ap += (rec[i] - last_recall) * prec[i], last_recall = rec[i];
    free(prec), free(rec);
    return ap;
}

ErrorCode class_ap_evaluate(Detector *d, const TrainSet *set, const double *ious, int n_ious, int long_side,
                            const PostprocessOptions *opt, FILE *progress, ClassApResult *res, Error *err)
{
    memset(res, 0, sizeof *res);
    if (n_ious < 1 || n_ious > CLASS_EVAL_MAX_IOUS) return error_set(err, ERR_ARG, "1 to %d IoU thresholds", CLASS_EVAL_MAX_IOUS);
    res->n_classes = d->model->cfg.num_classes - 1;
    res->n_ious = n_ious;
    memcpy(res->iou, ious, sizeof(double) * (size_t)n_ious);
    res->images = set->n;
    for (int i = 0; i < set->n; i++)
        for (int k = 0; k < set->samples[i].n; k++) {
            int c = (int)set->samples[i].faces[(size_t)k * FACE_FIELDS + FACE_CLASS];
            if (c >= 1 && c < RETINA_MAX_CLASSES) res->objects[c]++;
        }
    SetDetection *all = NULL;
    size_t n_all = 0, cap = 0;
    double t0 = clock_seconds();
    for (int i = 0; i < set->n; i++) {
        Image img = {0};
        Error e = {0};
        Detection *dets = NULL;
        int nd = 0;
        if (image_load(set->samples[i].path, &img, &e) ||
            detector_detect(d, &img, detector_resize_for_long_side(&img, long_side), opt, &dets, &nd, NULL, &e)) {
            if (img.bgr) image_free(&img);
            res->failed_images++;
            if (progress) fprintf(progress, "\nwarning: %s\n", e.msg);
            continue;
        }
        image_free(&img);
        if (n_all + (size_t)nd > cap) {
            cap = (n_all + (size_t)nd) * 2 + 64;
            SetDetection *grown = realloc(all, sizeof *all * cap);
            if (!grown) {
                free(all), free(dets);
                return error_set(err, ERR_OOM, "out of memory for the detections");
            }
            all = grown;
        }
        for (int k = 0; k < nd; k++) {
            SetDetection *s = &all[n_all++];
            s->image = i, s->label = dets[k].label, s->score = dets[k].score;
            memcpy(s->box, dets[k].box, sizeof s->box);
            if (s->label >= 1 && s->label < RETINA_MAX_CLASSES) res->detections[s->label]++;
        }
        free(dets);
        if (progress) {
            double rate = (i + 1) / (clock_seconds() - t0 + 1e-9);
            fprintf(progress, "\r[%d/%d] %.2f img/s  ETA %.0fs   ", i + 1, set->n, rate, (set->n - i - 1) / rate);
            fflush(progress);
        }
    }
    if (progress) fprintf(progress, "\n");
    if (n_all > 1) qsort(all, n_all, sizeof *all, by_score);
    unsigned char *tp = malloc(n_all + 1);
    /* per image and object, whether a stronger detection already took it */
    size_t n_objects = 0;
    for (int i = 0; i < set->n; i++) n_objects += (size_t)set->samples[i].n;
    unsigned char *taken = malloc(n_objects + 1);
    size_t *first = malloc(sizeof(size_t) * ((size_t)set->n + 1));
    ErrorCode rc = tp && taken && first ? ERR_OK : error_set(err, ERR_OOM, "out of memory");
    for (int i = 0, at = 0; !rc && i <= set->n; i++) {
        first[i] = (size_t)at;
        if (i < set->n) at += set->samples[i].n;
    }
    for (int c = 1; !rc && c <= res->n_classes && c < RETINA_MAX_CLASSES; c++)
        for (int t = 0; t < n_ious; t++) {
            memset(taken, 0, n_objects + 1);
            int n = 0;
            for (size_t k = 0; k < n_all; k++) {
                const SetDetection *s = &all[k];
                if (s->label != c) continue;
                const TrainSample *smp = &set->samples[s->image];
                double best = 0;
                int arg = -1;
                for (int o = 0; o < smp->n; o++) {
                    const float *f = smp->faces + (size_t)o * FACE_FIELDS;
                    if ((int)f[FACE_CLASS] != c || taken[first[s->image] + (size_t)o]) continue;
                    double v = iou(s->box, f);
                    if (v > best) best = v, arg = o;
                }
                bool hit = arg >= 0 && best >= ious[t];
                if (hit) taken[first[s->image] + (size_t)arg] = 1;
                tp[n++] = hit;
            }
            res->ap[c][t] = class_ap_from_ranked(tp, n, res->objects[c]);
        }
    free(all), free(tp), free(taken), free(first);
    return rc;
}
