#include "tests/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

GradcheckOptions gradcheck_defaults(void)
{
    GradcheckOptions o = {1e-2, 2e-3, 1e-2, 48};
    return o;
}

/* Forward only; returns L in double, or NAN on error. */
static double eval_loss(Graph *g, GradcheckFn fn, void *arg, Tensor *inputs, int n, const float *r,
                        int64_t *y_numel)
{
    graph_reset(g);
    bool prev = graph_set_grad_enabled(g, false);
    Var *vars[16];
    for (int k = 0; k < n; k++) vars[k] = var_from_tensor(g, &inputs[k], false);
    Var *y = fn(g, vars, arg);
    graph_set_grad_enabled(g, prev);
    if (!y) return NAN;
    int64_t ny = tensor_numel(&y->value);
    if (y_numel) *y_numel = ny;
    double L = 0;
    if (r)
        for (int64_t i = 0; i < ny; i++) L += (double)r[i] * y->value.data[i];
    return L;
}

GradcheckResult gradcheck(Context *ctx, GradcheckFn fn, void *arg, Tensor *inputs, int n_inputs,
                          const bool *wrt, GradcheckOptions opt, uint64_t seed)
{
    GradcheckResult res;
    memset(&res, 0, sizeof res);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    Rng rng;
    rng_seed(&rng, seed, 7);

    int64_t ny = 0;
    if (isnan(eval_loss(&g, fn, arg, inputs, n_inputs, NULL, &ny))) {
        snprintf(res.first_failure, sizeof res.first_failure, "forward failed: %s", g.err.msg);
        res.failed = 1;
        graph_destroy(&g);
        return res;
    }
    float *r = malloc((size_t)ny * sizeof(float));
    for (int64_t i = 0; i < ny; i++) r[i] = rng_uniform(&rng) * 2.0f - 1.0f;

    /* Analytic gradients. */
    graph_reset(&g);
    Var *vars[16];
    for (int k = 0; k < n_inputs; k++) vars[k] = var_from_tensor(&g, &inputs[k], wrt[k]);
    Var *y = fn(&g, vars, arg);
    float *analytic[16] = {0};
    if (!y || graph_backward_with_grad(&g, y, r)) {
        snprintf(res.first_failure, sizeof res.first_failure, "backward failed: %s", g.err.msg);
        res.failed = 1;
        free(r);
        graph_destroy(&g);
        return res;
    }
    for (int k = 0; k < n_inputs; k++) {
        if (!wrt[k]) continue;
        int64_t n = tensor_numel(&inputs[k]);
        analytic[k] = calloc((size_t)n, sizeof(float));
        if (vars[k]->grad.data) memcpy(analytic[k], vars[k]->grad.data, (size_t)n * sizeof(float));
    }

    for (int k = 0; k < n_inputs; k++) {
        if (!wrt[k]) continue;
        int64_t n = tensor_numel(&inputs[k]);
        int count = n < opt.max_elems ? (int)n : opt.max_elems;
        for (int c = 0; c < count; c++) {
            int64_t i = n <= opt.max_elems ? c : (int64_t)rng_below(&rng, (uint32_t)n);
            float orig = inputs[k].data[i];
            inputs[k].data[i] = orig + (float)opt.eps;
            double lp = eval_loss(&g, fn, arg, inputs, n_inputs, r, NULL);
            inputs[k].data[i] = orig - (float)opt.eps;
            double lm = eval_loss(&g, fn, arg, inputs, n_inputs, r, NULL);
            inputs[k].data[i] = orig;
            double numeric = (lp - lm) / (2 * opt.eps);
            double a = analytic[k][i];
            double err = fabs(a - numeric);
            res.checked++;
            if (fabs(numeric) > res.max_grad) res.max_grad = fabs(numeric);
            if (!(err <= res.max_abs_err)) res.max_abs_err = err;
            if (!(err <= opt.atol + opt.rtol * fabs(numeric))) {
                if (!res.failed)
                    snprintf(res.first_failure, sizeof res.first_failure,
                             "input %d element %lld: analytic %.6g numeric %.6g", k, (long long)i, a,
                             numeric);
                res.failed++;
            }
        }
    }
    for (int k = 0; k < n_inputs; k++) free(analytic[k]);
    free(r);
    graph_destroy(&g);
    return res;
}
