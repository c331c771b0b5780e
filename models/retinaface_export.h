/* ONNX export of a RetinaFace variant (nn/onnx_export.h): the inference forward (BatchNorm folded into the
 * convolutions, eval mode) traced once at a small input and written with symbolic batch, height and
 * width. Input "input" [batch, 3, height, width] (BGR minus the means 104, 117, 123); outputs "loc"
 * [batch, P, 4], "conf" [batch, P, classes] as softmax scores (what the detector reads, and what the
 * reference PyTorch export gives) and "landms" [batch, P, 10] where the variant has landmarks.
 * Cascade variants are refused (ERR_UNSUPPORTED): their second stage is read against the first stage's
 * decoded boxes, a step between the heads that the export does not write. */
#ifndef MODELS_RETINAFACE_EXPORT_H
#define MODELS_RETINAFACE_EXPORT_H

#include "models/retinaface.h"

/* *bytes: the serialised model (malloc'd; the caller frees it). Folds m's BatchNorm (as the detector does). */
ErrorCode retinaface_export_onnx(RetinaFace *m, Context *ctx, uint8_t **bytes, size_t *len, Error *err);

/* The outputs the export computes, by our own forward: x [1, 3, H, W] as above; loc, conf (softmax) and
 * landms (NULL without landmarks) are malloc'd [P, k] arrays, *priors P. For checking an export. */
ErrorCode retinaface_forward_outputs(RetinaFace *m, Context *ctx, const float *x, int height, int width,
                                     float **loc, float **conf, float **landms, int *priors, Error *err);

#endif
