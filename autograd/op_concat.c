/* Concatenation along any axis: viewed as [outer, len_i * inner] blocks per input. */
#include <string.h>

#include "autograd/ops.h"
#include "cuda_kernels/cuda_ops.h"

typedef struct {
    int axis;
    int64_t outer, out_row; /* out_row = total length along axis * inner */
    int64_t *rows, *offsets; /* [n]: each input's row (length along the axis times inner) and its offset in y's */
} ConcatSaved;

static int64_t inner_size(const Tensor *t, int axis)
{
    int64_t n = 1;
    for (int d = axis + 1; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* The CPU copies: a task per outer index, so both directions use the pool (one thread's memcpy ran at a
 * third of the copy bandwidth). Within a task the inputs go in order: an input given twice has its gradient
 * slice written by its first part and added to by its second, never both at once. Backward: each input's
 * slice of dy written into its gradient, or added where something is already there. */
typedef struct {
    const ConcatSaved *s;
    int n;
    float *y;             /* forward: y; backward: dy */
    float *const *parts;  /* forward: the inputs' data; backward: their gradients (NULL: none needed) */
    const bool *accumulate; /* backward only */
} ConcatJob;

static void concat_forward_task(void *arg, int task)
{
    const ConcatJob *j = arg;
    const ConcatSaved *s = j->s;
    for (int i = 0; i < j->n; i++) {
        float *dst = j->y + task * s->out_row + s->offsets[i];
        const float *src = j->parts[i] + task * s->rows[i];
        if (dst != src) /* a part the memory plan placed inside y is already where it belongs */
            memcpy(dst, src, (size_t)s->rows[i] * sizeof(float));
    }
}

static void concat_backward_task(void *arg, int task)
{
    const ConcatJob *j = arg;
    const ConcatSaved *s = j->s;
    for (int i = 0; i < j->n; i++) {
        if (!j->parts[i]) continue;
        const float *src = j->y + task * s->out_row + s->offsets[i];
        float *dst = j->parts[i] + task * s->rows[i];
        if (j->accumulate[i])
            for (int64_t k = 0; k < s->rows[i]; k++) dst[k] += src[k];
        else
            memcpy(dst, src, (size_t)s->rows[i] * sizeof(float));
    }
}

/* s->rows and s->offsets of the inputs xs; false when out of memory (recorded in g). */
static bool concat_layout(Graph *g, ConcatSaved *s, Var *const *xs, int n)
{
    if (!(s->rows = graph_host_scratch(g, 2 * sizeof(int64_t) * (size_t)n))) return false;
    s->offsets = s->rows + n;
    int64_t off = 0;
    for (int i = 0; i < n; off += s->rows[i], i++) {
        s->rows[i] = xs[i]->value.shape[s->axis] * inner_size(&xs[i]->value, s->axis);
        s->offsets[i] = off;
    }
    return true;
}

static void concat_backward(Graph *g, Var *y)
{
    const ConcatSaved *s = y->saved;
    int n = y->n_inputs;
    float **grads = graph_host_scratch(g, sizeof(float *) * (size_t)n);
    bool *accumulate = graph_host_scratch(g, sizeof(bool) * (size_t)n);
    if (!grads || !accumulate) return;
    for (int i = 0; i < n; i++) {
        Var *x = y->inputs[i];
        grads[i] = NULL;
        if (!x->requires_grad) continue;
        if (var_on_cuda(y)) {
            float *dx = var_grad(g, x);
            if (!dx) return;
            cuda_concat_copy(g->ctx, y->grad.data, dx, s->outer, s->rows[i], s->out_row, s->offsets[i], true);
            if (!graph_check_cuda(g, "concat backward")) return;
            continue;
        }
        if (!(grads[i] = var_grad_for_write(g, x, &accumulate[i]))) return;
    }
    if (var_on_cuda(y)) return;
    ConcatJob j = {s, n, y->grad.data, grads, accumulate};
    threadpool_run(g->ctx->pool, (int)s->outer, concat_backward_task, &j);
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
    if (!concat_layout(g, s, xs, n)) return NULL;
    if (var_on_cuda(y)) {
        for (int i = 0; i < n; i++)
            cuda_concat_copy(g->ctx, xs[i]->value.data, y->value.data, s->outer, s->rows[i], s->out_row, s->offsets[i],
                             false);
    } else {
        float **parts = graph_host_scratch(g, sizeof(float *) * (size_t)n);
        if (!parts) return NULL;
        for (int i = 0; i < n; i++) parts[i] = xs[i]->value.data;
        ConcatJob j = {s, n, y->value.data, parts, NULL};
        threadpool_run(g->ctx->pool, (int)s->outer, concat_forward_task, &j);
    }
    if (s->outer == 1) graph_plan_concat(g, y, xs, n);
    return graph_check_cuda(g, "concat") ? y : NULL;
}
