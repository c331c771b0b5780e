#include "nn/sgd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"
#include "cuda_kernels/cuda_ops.h"

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
    if (s->device_tables) device_free(s->device_tables, DEVICE_CUDA);
    for (int i = 0; i < s->n && s->velocity; i++) tensor_free(&s->velocity[i]);
    free(s->velocity);
    memset(s, 0, sizeof *s);
}

ErrorCode sgd_step(Sgd *s, ParamStore *ps, float lr, Context *ctx, Error *err)
{
    if (ps->device == DEVICE_CUDA) {
        if (!s->device_tables) {
            /* [w ptrs][g ptrs][v ptrs][offsets] uploaded once: parameters never move afterwards */
            int n = 0;
            for (int i = 0; i < ps->n; i++) n += ps->entries[i].kind == ENTRY_PARAM && ps->entries[i].param->requires_grad;
            size_t bytes = sizeof(float *) * 3 * (size_t)n + sizeof(int64_t) * ((size_t)n + 1);
            char *host = malloc(bytes);
            if (!host) return error_set(err, ERR_OOM, "sgd: out of host memory");
            float **w = (float **)host, **g = w + n, **v = g + n;
            int64_t *off = (int64_t *)(v + n);
            int k = 0;
            off[0] = 0;
            for (int i = 0; i < ps->n; i++) {
                if (ps->entries[i].kind != ENTRY_PARAM || !ps->entries[i].param->requires_grad) continue;
                Var *p = ps->entries[i].param;
                w[k] = p->value.data, g[k] = p->grad.data, v[k] = s->velocity[i].data;
                off[k + 1] = off[k] + tensor_numel(&p->value);
                k++;
            }
            if (device_alloc(&s->device_tables, DEVICE_CUDA, bytes, err) ||
                device_memcpy(s->device_tables, DEVICE_CUDA, host, DEVICE_CPU, bytes, err)) {
                free(host);
                return err ? err->code : ERR_DEVICE;
            }
            free(host);
            s->n_trainable = n;
        }
        float **w = s->device_tables, **g = w + s->n_trainable, **v = g + s->n_trainable;
        cuda_sgd_update_all(ctx, w, g, v, (const int64_t *)(v + s->n_trainable), s->n_trainable, lr, s->momentum,
                            s->weight_decay);
        return cuda_check_launch("sgd update", err);
    }
    (void)ctx;
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
    return ERR_OK;
}

ErrorCode sgd_state_to_dict(const Sgd *s, const ParamStore *ps, TensorDict *d, Error *err)
{
    for (int i = 0; i < ps->n; i++) {
        if (ps->entries[i].kind != ENTRY_PARAM) continue;
        const Tensor *v = &s->velocity[i];
        float *data = malloc(tensor_bytes(v) + 1);
        if (!data) return error_set(err, ERR_OOM, "out of memory");
        if (device_memcpy(data, DEVICE_CPU, v->data, v->device, tensor_bytes(v), err)) {
            free(data);
            return err->code;
        }
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
        if (device_memcpy(s->velocity[i].data, s->velocity[i].device, t->data, DEVICE_CPU, tensor_bytes(&s->velocity[i]), err))
            return err->code;
    }
    return ERR_OK;
}
