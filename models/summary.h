/* Printing a model: every layer the forward pass runs (recorded on the autograd tape of one
 * forward over a zero input of the given size), its output shape, the parameter it owns and the
 * FLOPs of the convolutions, then the totals. */
#ifndef MODELS_SUMMARY_H
#define MODELS_SUMMARY_H

#include <stdio.h>

#include "models/retinaface.h"

ErrorCode retinaface_print_summary(FILE *out, RetinaFace *m, Context *ctx, int height, int width, Error *err);

#endif
