#include "models/retinaface_export.h"

#include <stdlib.h>
#include <string.h>

#include "nn/formats/onnx_export.h"

/* A parameter's state_dict-style name (the folded copies are "folded.<conv index>.weight"). */
static const char *param_name(const Var *v, void *ctx)
{
    const RetinaFace *m = ctx;
    const ParamStore *stores[2] = {&m->folded, &m->params};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < stores[s]->n; i++)
            if (stores[s]->entries[i].param == v) return stores[s]->entries[i].name;
    return NULL;
}

/* The traced inference forward: the outputs on success (g's error otherwise). */
static bool forward(Graph *g, RetinaFace *m, Var *x, Var **outs)
{
    RetinaOutputs o;
    if (!retinaface_forward(g, m, x, false, &o)) return false;
    outs[0] = o.loc, outs[1] = ag_softmax(g, o.conf), outs[2] = o.landms;
    return graph_ok(g);
}

static ErrorCode prepare(RetinaFace *m, Context *ctx, Graph *g, Error *err)
{
    if (m->params.device != DEVICE_CPU) return error_set(err, ERR_ARG, "onnx export: the model must be on the CPU");
    if (m->cfg.cascade_overlap > 0) /* its answer needs the first stage's boxes decoded between the stages */
        return error_set(err, ERR_UNSUPPORTED, "onnx export: %s has a cascade stage; the export writes single-stage models only",
                         m->cfg.name);
    if (retinaface_fold_batchnorm(m, err) || graph_init(g, ctx, DEVICE_CPU, err)) return err->code;
    graph_set_grad_enabled(g, false);
    return ERR_OK;
}

ErrorCode retinaface_export_onnx(RetinaFace *m, Context *ctx, uint8_t **bytes, size_t *len, Error *err)
{
    *bytes = NULL, *len = 0;
    Graph g;
    if (prepare(m, ctx, &g, err)) return err->code;
    /* any size traces the same ops; 64x64 keeps every level at least 2x2 */
    int64_t shape[4] = {1, 3, 64, 64};
    Var *x = NULL, *outs[3] = {NULL, NULL, NULL};
    ErrorCode rc = graph_trace_begin(&g);
    if (!rc && (x = var_new(&g, 4, shape)) != NULL) memset(x->value.data, 0, tensor_bytes(&x->value));
    if (!rc && (!x || !forward(&g, m, x, outs))) rc = error_set(err, g.err.code ? g.err.code : ERR_OOM, "onnx export: %s", g.err.msg);
    if (!rc) {
        OnnxExportSpec spec = {x, "input", {outs[0], outs[1], outs[2]}, {"loc", "conf", "landms"}, outs[2] ? 3 : 2,
                               m->cfg.name, "retinaface-c", "0.1.0", param_name, m};
        rc = onnx_export(&g, &spec, bytes, len, err);
    }
    graph_destroy(&g);
    return rc;
}

ErrorCode retinaface_forward_outputs(RetinaFace *m, Context *ctx, const float *in, int height, int width,
                                     float **loc, float **conf, float **landms, int *priors, Error *err)
{
    *loc = *conf = *landms = NULL, *priors = 0;
    Graph g;
    if (prepare(m, ctx, &g, err)) return err->code;
    int64_t shape[4] = {1, 3, height, width};
    Var *x = var_new(&g, 4, shape), *outs[3] = {NULL, NULL, NULL};
    if (x) memcpy(x->value.data, in, tensor_bytes(&x->value));
    ErrorCode rc = ERR_OK;
    if (!x || !forward(&g, m, x, outs)) rc = error_set(err, g.err.code ? g.err.code : ERR_OOM, "forward: %s", g.err.msg);
    float **dst[3] = {loc, conf, landms};
    for (int k = 0; k < 3 && !rc; k++) {
        if (!outs[k]) continue;
        *dst[k] = malloc(tensor_bytes(&outs[k]->value));
        if (!*dst[k]) rc = error_set(err, ERR_OOM, "forward: out of memory");
        else memcpy(*dst[k], outs[k]->value.data, tensor_bytes(&outs[k]->value));
    }
    if (!rc) *priors = (int)outs[0]->value.shape[1];
    else free(*loc), free(*conf), free(*landms), *loc = *conf = *landms = NULL;
    graph_destroy(&g);
    return rc;
}
