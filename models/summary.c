#include "models/summary.h"

#include <string.h>

#include "autograd/graph_trace.h"

static const char *param_name(const RetinaFace *m, const Var *v)
{
    for (int i = 0; i < m->params.n; i++)
        if (m->params.entries[i].kind == ENTRY_PARAM && m->params.entries[i].param == v) return m->params.entries[i].name;
    return "";
}

ErrorCode retinaface_print_summary(FILE *out, RetinaFace *m, Context *ctx, int height, int width, Error *err)
{
    Graph g;
    if (graph_init(&g, ctx, DEVICE_CPU, err)) return err->code;
    int64_t shape[4] = {1, 3, height, width};
    /* the export trace lists every op with its inputs, whatever the grad mode */
    Var *x = graph_trace_begin(&g) ? NULL : var_new(&g, 4, shape);
    if (x) memset(x->value.data, 0, tensor_bytes(&x->value));
    RetinaOutputs o;
    if (!x || !retinaface_forward(&g, m, x, false, &o)) {
        error_set(err, g.err.code ? g.err.code : ERR_OOM, "summary: %s", g.err.msg);
        graph_destroy(&g);
        return err->code;
    }
    fprintf(out, "%s: %s\ninput [1, 3, %d, %d]\n\n", m->cfg.name, m->cfg.description, height, width);
    fprintf(out, "%-4s %-18s %-22s %-40s %12s\n", "#", "op", "output", "parameter", "MFLOPs");
    double total = 0;
    const GraphTrace *t = graph_trace(&g);
    for (int i = 0; i < t->n; i++) {
        const TraceEntry *e = &t->entries[i];
        char s[96];
        double flops = 0;
        const char *pname = "";
        if (!strncmp(e->op, "conv2d", 6) && e->n_inputs >= 2) {
            /* weight [Cout, Cin / groups, KH, KW]: each output value is one multiply-add per weight of its row */
            const Tensor *w = &e->inputs[1]->value, *y = &e->out->value;
            flops = 2.0 * (double)tensor_numel(y) * (double)(w->shape[1] * w->shape[2] * w->shape[3]);
            pname = param_name(m, e->inputs[1]);
        } else if (!strcmp(e->op, "batchnorm2d") && e->n_inputs >= 2) {
            pname = param_name(m, e->inputs[1]);
        }
        total += flops;
        fprintf(out, "%-4d %-18s %-22s %-40s %12.2f\n", i, e->op, tensor_shape_str(&e->out->value, s, sizeof s), pname,
                flops / 1e6);
    }
    fprintf(out, "\nparameters: %lld\nconvolution FLOPs at %dx%d: %.3f GFLOPs (2 per multiply-add)\n",
            (long long)params_count(&m->params), width, height, total / 1e9);
    graph_destroy(&g);
    return ERR_OK;
}
