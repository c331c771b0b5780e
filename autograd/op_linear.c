/* linear: y[N,out] = x[N,in] w[out,in]^T + b, on the SGEMM. */
#include "autograd/ops.h"
#include "tensor/sgemm.h"
#include "cuda_kernels/cuda_ops.h"

static void linear_backward(Graph *g, Var *y)
{
    Var *x = y->inputs[0], *w = y->inputs[1], *b = y->n_inputs > 2 ? y->inputs[2] : NULL;
    int N = (int)x->value.shape[0], in = (int)x->value.shape[1], out = (int)w->value.shape[0];
    ThreadPool *pool = g->ctx->pool;
    const float *dy = y->grad.data;
    if (var_on_cuda(y)) {
        float *dx = x->requires_grad ? var_grad(g, x) : NULL;
        float *dw = w->requires_grad ? var_grad(g, w) : NULL;
        float *db = b && b->requires_grad ? var_grad(g, b) : NULL;
        if (!graph_ok(g)) return;
        if (dx) cuda_sgemm(g->ctx, false, false, N, in, out, 1.0f, dy, out, w->value.data, in, 1.0f, dx, in, &g->err);
        if (dw) cuda_sgemm(g->ctx, true, false, out, in, N, 1.0f, dy, out, x->value.data, in, 1.0f, dw, in, &g->err);
        if (db) cuda_bias_grad_rows(g->ctx, dy, db, N, out);
        graph_check_cuda(g, "linear backward");
        return;
    }
    if (x->requires_grad) {
        float *dx = var_grad(g, x);
        if (!dx) return;
        sgemm(pool, false, false, N, in, out, 1.0f, dy, out, w->value.data, in, 1.0f, dx, in);
    }
    if (w->requires_grad) {
        float *dw = var_grad(g, w);
        if (!dw) return;
        sgemm(pool, true, false, out, in, N, 1.0f, dy, out, x->value.data, in, 1.0f, dw, in);
    }
    if (b && b->requires_grad) {
        float *db = var_grad(g, b);
        if (!db) return;
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) db[o] += dy[(size_t)n * out + o];
    }
}

Var *ag_linear(Graph *g, Var *x, Var *w, Var *b)
{
    if (!graph_ok(g)) return NULL;
    if (!x || !w) return graph_fail(g, ERR_ARG, "linear: NULL input");
    if (x->value.ndim != 2 || w->value.ndim != 2 || x->value.shape[1] != w->value.shape[1] ||
        (b && tensor_numel(&b->value) != w->value.shape[0]))
        return graph_fail(g, ERR_SHAPE, "linear: x must be [N,in], w [out,in], b [out]");
    int N = (int)x->value.shape[0], in = (int)x->value.shape[1], out = (int)w->value.shape[0];
    Var *inputs[3] = {x, w, b};
    int64_t shape[2] = {N, out};
    Var *y = graph_op_output(g, "linear", inputs, b ? 3 : 2, 2, shape, linear_backward);
    if (y) graph_op_saves(y, GRAPH_SAVES_INPUT(0) | GRAPH_SAVES_INPUT(1));
    if (!y) return NULL;
    if (var_on_cuda(x)) {
        cuda_sgemm(g->ctx, false, true, N, out, in, 1.0f, x->value.data, in, w->value.data, in, 0.0f, y->value.data, out,
                   &g->err);
        if (b) cuda_bias_add_rows(g->ctx, y->value.data, b->value.data, N, out);
        return graph_check_cuda(g, "linear") ? y : NULL;
    }
    sgemm(g->ctx->pool, false, true, N, out, in, 1.0f, x->value.data, in, w->value.data, in, 0.0f,
          y->value.data, out);
    if (b)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) y->value.data[(size_t)n * out + o] += b->value.data[o];
    return y;
}
