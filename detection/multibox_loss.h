/* MultiBox loss with hard negative mining (the reference's MultiBoxLoss):
 *   loss_l     = smooth-L1 (sum) of box regressions over positive priors / N
 *   loss_c     = cross-entropy (sum) over positives and the hardest negatives / N, negatives ranked
 *                by their background cross-entropy, negpos_ratio (7) per positive, per image, at
 *                most P-1
 *   loss_landm = smooth-L1 (sum) of landmarks over positives with landmarks / N1
 * N = number of positives in the batch (at least 1), N1 = positives with landmarks (at least 1).
 * Matching is done per image on the host (match_priors); the losses are autograd ops over the
 * network outputs, so backward flows into the model. */
#ifndef DETECTION_MULTIBOX_LOSS_H
#define DETECTION_MULTIBOX_LOSS_H

#include "autograd/ops.h"
#include "detection/matching.h"

typedef struct {
    float overlap_threshold; /* 0.35 */
    int negpos_ratio;        /* 7 */
    float variance[2];
    float loc_weight;        /* 2: total = loc_weight * loss_l + loss_c + loss_landm */
    /* data-parallel training: the losses are normalised by the positives of every rank's batch (and the
     * negatives ranked with the job's largest logit), so that summing the ranks' gradients gives the
     * gradient over the job's whole batch; NULL: this batch alone */
    struct Comm *comm;
    bool per_image_priors;   /* priors are [B,P,4], each image its own (the cascade's second stage); else [P,4] */
} MultiBoxOptions;

typedef struct {
    Var *loss_l, *loss_c, *loss_landm, *total;
    int num_pos, num_pos_landm;
} MultiBoxLosses;

MultiBoxOptions multibox_defaults(void);
/* loc [B,P,4], conf [B,P,C] logits, landms [B,P,10] or NULL, priors [P,4] (or [B,P,4]: per_image_priors),
 * targets[B]. */
bool multibox_loss(Graph *g, Var *loc, Var *conf, Var *landms, const float *priors, const ImageTargets *targets,
                   const MultiBoxOptions *opt, MultiBoxLosses *out);

#endif
