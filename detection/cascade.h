/* The cascade's second stage (models with cfg.cascade_overlap > 0): its priors are the first stage's
 * regressed boxes, image by image, so its loss matches the ground truth against those boxes (at the
 * config's IoU) and detection decodes its regressions against them. The refined priors are constants
 * of the step: no gradient flows into the first stage through them (as in the published cascades).
 * Shapes: loc1 [B,P,4] (host or device), priors [P,4], refined [B,P,4], all (cx, cy, w, h) normalised. */
#ifndef DETECTION_CASCADE_H
#define DETECTION_CASCADE_H

#include "detection/multibox_loss.h"
#include "models/retinaface.h"

/* The second stage's priors as step scratch of g (host), or NULL (g failed) on error. */
float *cascade_priors(Graph *g, const Var *loc1, const float *priors, const float variance[2]);
/* The second stage's MultiBox loss: opt's loss (negatives, weights, ranks) with overlap_threshold set to
 * the config's cascade_overlap, on out->loc2/conf2/landms2. */
bool cascade_loss(Graph *g, const RetinaConfig *cfg, const RetinaOutputs *out, const float *priors,
                  const ImageTargets *targets, const MultiBoxOptions *opt, MultiBoxLosses *losses);

#endif
