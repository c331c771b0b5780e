/* Concatenation along any axis: viewed as [outer, len_i * inner] blocks per input. */
#include <string.h>

#include "autograd/ops.h"
#include "cuda_kernels/cuda_ops.h"

typedef struct {
    int axis;
    int64_t outer, out_row; /* out_row = total length along axis * inner */
} ConcatSaved;

static int64_t inner_size(const Tensor *t, int axis)
{
    int64_t n = 1;
    for (int d = axis + 1; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* The CPU copies: a task per (outer index, input), so both directions use the pool (one thread's memcpy
 * ran at a third of the copy bandwidth). Backward: each input's slice of dy written into its gradient, or
 * added where something is already there. */
typedef struct {
    const ConcatSaved *s;
    int n;
    float *y;             /* forward: y; backward: dy */
    float *const *parts;  /* forward: the inputs' data; backward: their gradients (NULL: none needed) */
    const int64_t *rows, *offsets;
    const bool *accumulate; /* backward only */
} ConcatJob;

static void concat_forward_task(void *arg, int task)
{
    const ConcatJob *j = arg;
    int64_t o = task / j->n;
    int i = task % j->n;
    float *dst = j->y + o * j->s->out_row + j->offsets[i];
    const float *src = j->parts[i] + o * j->rows[i];
    if (dst != src) /* a part the memory plan placed inside y is already where it belongs */
        memcpy(dst, src, (size_t)j->rows[i] * sizeof(float));
}

static void concat_backward_task(void *arg, int task)
{
    const ConcatJob *j = arg;
    int64_t o = task / j->n;
    int i = task % j->n;
    if (!j->parts[i]) return;
    const float *src = j->y + o * j->s->out_row + j->offsets[i];
    float *dst = j->parts[i] + o * j->rows[i];
    if (j->accumulate[i])
        for (int64_t k = 0; k < j->rows[i]; k++) dst[k] += src[k];
    else
        memcpy(dst, src, (size_t)j->rows[i] * sizeof(float));
}

/* Each input's row (length along the axis times inner) and offset in y's row; false when out of memory. */
static bool concat_layout(Graph *g, const ConcatSaved *s, Var *const *xs, int n, int64_t **rows, int64_t **offsets)
{
    *rows = graph_host_scratch(g, 2 * sizeof(int64_t) * (size_t)n);
    if (!*rows) return false;
    *offsets = *rows + n;
    int64_t off = 0;
    for (int i = 0; i < n; off += (*rows)[i], i++) {
        (*rows)[i] = xs[i]->value.shape[s->axis] * inner_size(&xs[i]->value, s->axis);
        (*offsets)[i] = off;
    }
    return true;
}

static void concat_backward(Graph *g, Var *y)
{
    const ConcatSaved *s = y->saved;
    int n = y->n_inputs;
    int64_t *rows, *offsets;
    float **grads = graph_host_scratch(g, sizeof(float *) * (size_t)n);
    bool *accumulate = graph_host_scratch(g, sizeof(bool) * (size_t)n);
    if (!grads || !accumulate || !concat_layout(g, s, y->inputs, n, &rows, &offsets)) return;
    for (int i = 0; i < n; i++) {
        Var *x = y->inputs[i];
        grads[i] = NULL;
        if (!x->requires_grad) continue;
        if (var_on_cuda(y)) {
            float *dx = var_grad(g, x);
            if (!dx) return;
            cuda_concat_copy(g->ctx, y->grad.data, dx, s->outer, rows[i], s->out_row, offsets[i], true);
            if (!graph_check_cuda(g, "concat backward")) return;
            continue;
        }
        if (!(grads[i] = var_grad_for_write(g, x, &accumulate[i]))) return;
    }
    if (var_on_cuda(y)) return;
    ConcatJob j = {s, n, y->grad.data, grads, rows, offsets, accumulate};
    threadpool_run(g->ctx->pool, (int)(s->outer * n), concat_backward_task, &j);
}

Var *ag_concat(Graph *g, Var *const *xs, int n, int axis)
{
    if (!graph_ok(g)) return NULL;
    if (n < 1 || !xs[0]) return graph_fail(g, ERR_ARG, "concat: no inputs");
    const Tensor *t0 = &xs[0]->value;
    if (axis < 0) axis += t0->ndim;
    if (axis < 0 || axis >= t0->ndim) return graph_fail(g, ERR_ARG, "concat: axis out of range");
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, t0->shape, sizeof shape);
    shape[axis] = 0;
    for (int i = 0; i < n; i++) {
        if (!xs[i]) return graph_fail(g, ERR_ARG, "concat: NULL input %d", i);
        const Tensor *t = &xs[i]->value;
        bool ok = t->ndim == t0->ndim;
        for (int d = 0; ok && d < t->ndim; d++) ok = d == axis || t->shape[d] == t0->shape[d];
        if (!ok) {
            char a[96], b[96];
            return graph_fail(g, ERR_SHAPE, "concat: input %d %s does not fit input 0 %s on axis %d",
                              i, tensor_shape_str(t, a, sizeof a), tensor_shape_str(t0, b, sizeof b),
                              axis);
        }
        shape[axis] += t->shape[axis];
    }
    Var *y = graph_op_output(g, "concat", xs, n, t0->ndim, shape, concat_backward);
    if (y) graph_op_saves(y, 0);
    int64_t ax = axis;
    graph_trace_attrs(g, y, &ax, 1, 0.0f);
    if (!y) return NULL;
    ConcatSaved *s = graph_host_scratch(g, sizeof *s);
    if (!s) return NULL;
    s->axis = axis;
    s->outer = 1;
    for (int d = 0; d < axis; d++) s->outer *= shape[d];
    s->out_row = shape[axis] * inner_size(t0, axis);
    y->saved = s;
    int64_t *rows, *offsets;
    if (!concat_layout(g, s, xs, n, &rows, &offsets)) return NULL;
    if (var_on_cuda(y)) {
        for (int i = 0; i < n; i++)
            cuda_concat_copy(g->ctx, xs[i]->value.data, y->value.data, s->outer, rows[i], s->out_row, offsets[i], false);
    } else {
        float **parts = graph_host_scratch(g, sizeof(float *) * (size_t)n);
        if (!parts) return NULL;
        for (int i = 0; i < n; i++) parts[i] = xs[i]->value.data;
        ConcatJob j = {s, n, y->value.data, parts, rows, offsets, NULL};
        threadpool_run(g->ctx->pool, (int)(s->outer * n), concat_forward_task, &j);
    }
    if (s->outer == 1) graph_plan_concat(g, y, xs, n);
    return graph_check_cuda(g, "concat") ? y : NULL;
}
