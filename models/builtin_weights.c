#include "models/builtin_weights.h"

#include <string.h>

#include "nn/formats/safetensors.h"

/* models/builtin_weights_data.S */
extern const unsigned char retina_builtin_mnet025[];
extern const unsigned long long retina_builtin_mnet025_size;

const void *retinaface_builtin_weights(const char *variant, size_t *size)
{
    const RetinaConfig *cfg = variant ? retinaface_config(variant) : NULL;
    if (cfg && cfg == retinaface_mnet025_config()) {
        *size = (size_t)retina_builtin_mnet025_size;
        return retina_builtin_mnet025;
    }
    *size = 0;
    return NULL;
}

ErrorCode retinaface_load_builtin(RetinaFace *m, Error *err)
{
    size_t size;
    const void *bytes = retinaface_builtin_weights(m->cfg.name, &size);
    if (!bytes) return error_set(err, ERR_ARG, "model %s has no built-in weights: give a weights file", m->cfg.name);
    TensorDict d;
    if (safetensors_read_memory(bytes, size, "built-in weights", &d, err)) return err->code;
    ErrorCode rc = retinaface_load_dict(m, &d, "built-in weights", err);
    tensor_dict_free(&d);
    return rc;
}
