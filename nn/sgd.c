#include "nn/sgd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ErrorCode sgd_init(Sgd *s, const ParamStore *ps, float momentum, float weight_decay, Error *err)
{
    memset(s, 0, sizeof *s);
    s->momentum = momentum, s->weight_decay = weight_decay;
    s->n = ps->n;
    s->velocity = calloc((size_t)ps->n + 1, sizeof *s->velocity);
    if (!s->velocity) return error_set(err, ERR_OOM, "sgd: out of memory");
    for (int i = 0; i < ps->n; i++) {
        if (ps->entries[i].kind != ENTRY_PARAM) continue;
        const Tensor *v = &ps->entries[i].param->value;
        if (tensor_new(&s->velocity[i], v->device, v->ndim, v->shape, err)) {
            sgd_free(s);
            return err->code;
        }
    }
    return ERR_OK;
}

void sgd_free(Sgd *s)
{
    for (int i = 0; i < s->n && s->velocity; i++) tensor_free(&s->velocity[i]);
    free(s->velocity);
    memset(s, 0, sizeof *s);
}

void sgd_step(Sgd *s, ParamStore *ps, float lr)
{
    for (int i = 0; i < ps->n; i++) {
        if (ps->entries[i].kind != ENTRY_PARAM) continue;
        Var *p = ps->entries[i].param;
        if (!p->requires_grad) continue;
        float *w = p->value.data, *g = p->grad.data, *v = s->velocity[i].data;
        int64_t n = tensor_numel(&p->value);
        for (int64_t k = 0; k < n; k++) {
            float d = g[k] + s->weight_decay * w[k];
            v[k] = s->momentum * v[k] + d;
            w[k] -= lr * v[k];
        }
    }
}

ErrorCode sgd_state_to_dict(const Sgd *s, const ParamStore *ps, TensorDict *d, Error *err)
{
    for (int i = 0; i < ps->n; i++) {
        if (ps->entries[i].kind != ENTRY_PARAM) continue;
        const Tensor *v = &s->velocity[i];
        float *data = malloc(tensor_bytes(v) + 1);
        if (!data) return error_set(err, ERR_OOM, "out of memory");
        memcpy(data, v->data, tensor_bytes(v));
        char name[200];
        snprintf(name, sizeof name, "optimizer.momentum.%s", ps->entries[i].name);
        if (tensor_dict_add(d, name, "F32", v->ndim, v->shape, data, err)) return err->code;
    }
    return ERR_OK;
}

ErrorCode sgd_state_from_dict(Sgd *s, const ParamStore *ps, TensorDict *d, const char *source, Error *err)
{
    for (int i = 0; i < ps->n; i++) {
        if (ps->entries[i].kind != ENTRY_PARAM) continue;
        char name[200];
        snprintf(name, sizeof name, "optimizer.momentum.%s", ps->entries[i].name);
        NamedTensor *t = tensor_dict_find(d, name);
        if (!t) return error_set(err, ERR_MISSING, "%s: optimizer state %s missing", source, name);
        if (shape_numel(t->ndim, t->shape) != tensor_numel(&s->velocity[i]))
            return error_set(err, ERR_SHAPE, "%s: optimizer state %s has the wrong size", source, name);
        memcpy(s->velocity[i].data, t->data, tensor_bytes(&s->velocity[i]));
    }
    return ERR_OK;
}
