/* Weights built into the library: the default model trained by this framework
 * (models/weights/retinaface_mnet025.safetensors, RetinaFace MobileNet-0.25; how it was trained is in
 * models/weights/README.md). The bytes are read-only and live as long as the program. */
#ifndef MODELS_BUILTIN_WEIGHTS_H
#define MODELS_BUILTIN_WEIGHTS_H

#include <stddef.h>

#include "models/retinaface.h"

/* The safetensors bytes of the variant's built-in weights, or NULL (size 0) when it has none. */
const void *retinaface_builtin_weights(const char *variant, size_t *size);
/* Loads the built-in weights into m (ERR_ARG naming the variant when it has none). */
ErrorCode retinaface_load_builtin(RetinaFace *m, Error *err);

#endif
