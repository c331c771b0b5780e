#include "detection/matching.h"

#include <stdlib.h>
#include <string.h>

#include "detection/box_coding.h"

static float iou_corner(const float *a, const float *b)
{
    float iw = (a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]);
    float ih = (a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]);
    if (iw < 0) iw = 0;
    if (ih < 0) ih = 0;
    float inter = iw * ih;
    float ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    return inter / ua;
}

int match_priors(const ImageTargets *t, const float *priors, int64_t P, float threshold, const float variance[2],
                 float *loc_t, float *landm_t, int32_t *conf_t, uint8_t *landm_valid)
{
    memset(conf_t, 0, sizeof(int32_t) * (size_t)P);
    memset(landm_valid, 0, (size_t)P);
    memset(loc_t, 0, sizeof(float) * 4 * (size_t)P);
    memset(landm_t, 0, sizeof(float) * 10 * (size_t)P);
    if (t->n == 0) return 0;
    float *best_truth_overlap = malloc(sizeof(float) * (size_t)P);
    int32_t *best_truth_idx = malloc(sizeof(int32_t) * (size_t)P);
    float *best_prior_overlap = malloc(sizeof(float) * (size_t)t->n);
    int64_t *best_prior_idx = malloc(sizeof(int64_t) * (size_t)t->n);
    if (!best_truth_overlap || !best_truth_idx || !best_prior_overlap || !best_prior_idx) {
        free(best_truth_overlap), free(best_truth_idx), free(best_prior_overlap), free(best_prior_idx);
        return -1;
    }
    for (int j = 0; j < t->n; j++) best_prior_overlap[j] = -1, best_prior_idx[j] = 0;
    for (int64_t i = 0; i < P; i++) {
        const float *p = priors + 4 * i;
        float pc[4] = {p[0] - p[2] / 2, p[1] - p[3] / 2, p[0] + p[2] / 2, p[1] + p[3] / 2};
        float best = -1;
        int arg = 0;
        for (int j = 0; j < t->n; j++) {
            float o = iou_corner(t->boxes + 4 * j, pc);
            if (o > best) best = o, arg = j;               /* first max over objects, as torch.max */
            if (o > best_prior_overlap[j]) best_prior_overlap[j] = o, best_prior_idx[j] = i;
        }
        best_truth_overlap[i] = best;
        best_truth_idx[i] = arg;
    }
    bool any_valid = false;
    for (int j = 0; j < t->n; j++) any_valid |= best_prior_overlap[j] >= 0.2f;
    int positives = 0;
    if (any_valid) {
        for (int j = 0; j < t->n; j++)
            if (best_prior_overlap[j] >= 0.2f) best_truth_overlap[best_prior_idx[j]] = 2.0f;
        /* As the reference, every object (valid or not) claims its best prior; later objects win. */
        for (int j = 0; j < t->n; j++) best_truth_idx[best_prior_idx[j]] = j;
        for (int64_t i = 0; i < P; i++) {
            int j = best_truth_idx[i];
            if (best_truth_overlap[i] < threshold) continue;
            conf_t[i] = t->labels[j];
            positives++;
            box_encode(t->boxes + 4 * j, priors + 4 * i, variance, loc_t + 4 * i);
            if (t->has_landmarks[j]) {
                landm_valid[i] = 1;
                landmarks_encode(t->landmarks + 10 * j, priors + 4 * i, variance, landm_t + 10 * i);
            }
        }
    }
    free(best_truth_overlap), free(best_truth_idx), free(best_prior_overlap), free(best_prior_idx);
    return positives;
}
