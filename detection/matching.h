/* Anchor matching for training (the reference's `match`): IoU (no +1) between ground-truth boxes
 * and priors in corner form; every prior takes its best ground truth; every ground truth whose
 * best IoU is >= 0.2 is forced onto its best prior (overlap set to 2); priors whose overlap is
 * below `threshold` (0.35) become background. Targets are encoded against the priors.
 * Inputs per image: n objects with boxes [n,4] (normalised corners), landmarks [n,10] (normalised;
 * ignored where has_landmarks is 0) and labels (class index >= 1). */
#ifndef DETECTION_MATCHING_H
#define DETECTION_MATCHING_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int n;
    const float *boxes;         /* n x 4 */
    const float *landmarks;     /* n x 10 */
    const int32_t *labels;      /* n, >= 1 */
    const uint8_t *has_landmarks; /* n */
} ImageTargets;

/* Outputs over P priors: loc_t [P,4], landm_t [P,10], conf_t [P] (0 background, else the class),
 * landm_valid [P] (matched to a face with landmarks). Returns the number of positives. */
int match_priors(const ImageTargets *t, const float *priors, int64_t P, float threshold, const float variance[2],
                 float *loc_t, float *landm_t, int32_t *conf_t, uint8_t *landm_valid);

#endif
