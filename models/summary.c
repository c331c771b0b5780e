#include "models/summary.h"

#include <string.h>

#include "autograd/conv2d_cpu.h"

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
    Var *x = var_new(&g, 4, shape);
    if (x) memset(x->value.data, 0, tensor_bytes(&x->value));
    RetinaOutputs o;
    /* Grad mode so that every op lands on the tape; eval-mode BN leaves running stats alone. */
    if (!x || !retinaface_forward(&g, m, x, false, &o)) {
        error_set(err, g.err.code ? g.err.code : ERR_OOM, "summary: %s", g.err.msg);
        graph_destroy(&g);
        return err->code;
    }
    fprintf(out, "%s: %s\ninput [1, 3, %d, %d]\n\n", m->cfg.name, m->cfg.description, height, width);
    fprintf(out, "%-4s %-18s %-22s %-40s %12s\n", "#", "op", "output", "parameter", "MFLOPs");
    double total = 0;
    for (size_t i = 0; i < g.n_tape; i++) {
        Var *v = g.tape[i];
        char s[96];
        double flops = 0;
        const char *pname = "";
        if (!strncmp(v->op, "conv2d", 6)) { /* conv2d and conv2d_act: the saved state starts with the shape */
            const Conv2dShape *cs = v->saved;
            flops = 2.0 * cs->N * cs->Cout * cs->Ho * cs->Wo * (cs->Cin / cs->p.groups) * cs->KH * cs->KW;
            pname = param_name(m, v->inputs[1]);
        } else if (!strcmp(v->op, "batchnorm2d")) {
            pname = param_name(m, v->inputs[1]);
        }
        total += flops;
        fprintf(out, "%-4zu %-18s %-22s %-40s %12.2f\n", i, v->op, tensor_shape_str(&v->value, s, sizeof s), pname,
                flops / 1e6);
    }
    fprintf(out, "\nparameters: %lld\nconvolution FLOPs at %dx%d: %.3f GFLOPs (2 per multiply-add)\n",
            (long long)params_count(&m->params), width, height, total / 1e9);
    graph_destroy(&g);
    return ERR_OK;
}
