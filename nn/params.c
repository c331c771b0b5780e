#include "nn/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"

void params_init(ParamStore *ps, Device dev)
{
    memset(ps, 0, sizeof *ps);
    ps->device = dev;
}

ErrorCode params_add_unit(ParamStore *ps, struct ConvBnAct *u, Error *err)
{
    if (ps->n_units == ps->cap_units) {
        int cap = ps->cap_units ? 2 * ps->cap_units : 64;
        struct ConvBnAct **a = realloc(ps->units, sizeof *a * (size_t)cap);
        if (!a) return error_set(err, ERR_OOM, "out of memory");
        ps->units = a, ps->cap_units = cap;
    }
    ps->units[ps->n_units++] = u;
    return ERR_OK;
}

void params_free(ParamStore *ps)
{
    free(ps->units);
    for (int i = 0; i < ps->n; i++) {
        if (ps->entries[i].kind == ENTRY_PARAM)
            var_param_free(ps->entries[i].param);
        else if (ps->entries[i].buffer) {
            tensor_free(ps->entries[i].buffer);
            free(ps->entries[i].buffer);
        }
    }
    free(ps->entries);
    memset(ps, 0, sizeof *ps);
}

static ParamEntry *new_entry(ParamStore *ps, const char *prefix, const char *suffix, Error *err)
{
    char name[128];
    if ((size_t)snprintf(name, sizeof name, "%s%s", prefix, suffix) >= sizeof name) {
        error_set(err, ERR_ARG, "parameter name too long: %s%s", prefix, suffix);
        return NULL;
    }
    if (params_find(ps, name)) {
        error_set(err, ERR_ARG, "parameter %s defined twice", name);
        return NULL;
    }
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 64;
        ParamEntry *e = realloc(ps->entries, (size_t)cap * sizeof *e);
        if (!e) {
            error_set(err, ERR_OOM, "out of memory adding parameter %s", name);
            return NULL;
        }
        ps->entries = e;
        ps->cap = cap;
    }
    ParamEntry *e = &ps->entries[ps->n];
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, sizeof name);
    return e;
}

Var *params_add(ParamStore *ps, const char *prefix, const char *suffix, int ndim,
                const int64_t *shape, Error *err)
{
    ParamEntry *e = new_entry(ps, prefix, suffix, err);
    if (!e) return NULL;
    e->kind = ENTRY_PARAM;
    e->param = var_param_new(ps->device, ndim, shape, err);
    if (!e->param) return NULL;
    ps->n++;
    return e->param;
}

Tensor *params_add_buffer(ParamStore *ps, const char *prefix, const char *suffix, int ndim,
                          const int64_t *shape, Error *err)
{
    ParamEntry *e = new_entry(ps, prefix, suffix, err);
    if (!e) return NULL;
    e->kind = ENTRY_BUFFER;
    e->buffer = calloc(1, sizeof *e->buffer);
    if (!e->buffer) {
        error_set(err, ERR_OOM, "out of memory adding buffer %s", e->name);
        return NULL;
    }
    if (tensor_new(e->buffer, ps->device, ndim, shape, err)) {
        free(e->buffer);
        return NULL;
    }
    ps->n++;
    return e->buffer;
}

ParamEntry *params_find(ParamStore *ps, const char *name)
{
    for (int i = 0; i < ps->n; i++)
        if (!strcmp(ps->entries[i].name, name)) return &ps->entries[i];
    return NULL;
}

Tensor *param_entry_tensor(ParamEntry *e)
{
    return e->kind == ENTRY_PARAM ? &e->param->value : e->buffer;
}

int64_t params_count(const ParamStore *ps)
{
    int64_t n = 0;
    for (int i = 0; i < ps->n; i++)
        if (ps->entries[i].kind == ENTRY_PARAM) n += tensor_numel(&ps->entries[i].param->value);
    return n;
}

static ErrorCode move_tensor(Tensor *t, Device dev, Error *err)
{
    if (!t->data || t->device == dev) return ERR_OK;
    Tensor moved;
    if (tensor_new(&moved, dev, t->ndim, t->shape, err)) return err->code;
    if (tensor_copy(&moved, t, err)) {
        tensor_free(&moved);
        return err->code;
    }
    tensor_free(t);
    *t = moved;
    return ERR_OK;
}

ErrorCode params_to_device(ParamStore *ps, Device dev, Error *err)
{
    for (int i = 0; i < ps->n; i++) {
        ParamEntry *e = &ps->entries[i];
        ErrorCode rc = e->kind == ENTRY_PARAM ? move_tensor(&e->param->value, dev, err) || move_tensor(&e->param->grad, dev, err)
                                              : move_tensor(e->buffer, dev, err);
        if (rc) return err && err->code ? err->code : ERR_DEVICE;
    }
    ps->device = dev;
    return ERR_OK;
}

void params_zero_grad(ParamStore *ps)
{
    for (int i = 0; i < ps->n; i++)
        if (ps->entries[i].kind == ENTRY_PARAM) var_zero_grad(ps->entries[i].param);
}
