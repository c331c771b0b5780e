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

static void concat_backward(Graph *g, Var *y)
{
    const ConcatSaved *s = y->saved;
    int64_t offset = 0;
    for (int i = 0; i < y->n_inputs; i++) {
        Var *x = y->inputs[i];
        int64_t row = x->value.shape[s->axis] * inner_size(&x->value, s->axis);
        if (x->requires_grad) {
            float *dx = var_grad(g, x);
            if (!dx) return;
            if (var_on_cuda(y)) {
                cuda_concat_copy(g->ctx, y->grad.data, dx, s->outer, row, s->out_row, offset, true);
                offset += row;
                if (!graph_check_cuda(g, "concat backward")) return;
                continue;
            }
            for (int64_t o = 0; o < s->outer; o++) {
                const float *src = y->grad.data + o * s->out_row + offset;
                float *dst = dx + o * row;
                for (int64_t k = 0; k < row; k++) dst[k] += src[k];
            }
        }
        offset += row;
    }
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
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const Tensor *t = &xs[i]->value;
        int64_t row = t->shape[axis] * inner_size(t, axis);
        if (var_on_cuda(y)) {
            cuda_concat_copy(g->ctx, t->data, y->value.data, s->outer, row, s->out_row, offset, false);
            offset += row;
            continue;
        }
        /* a part the memory plan placed inside y is already where it belongs */
        if (!(s->outer == 1 && t->data == y->value.data + offset))
            for (int64_t o = 0; o < s->outer; o++)
                memcpy(y->value.data + o * s->out_row + offset, t->data + o * row, (size_t)row * sizeof(float));
        offset += row;
    }
    if (s->outer == 1) graph_plan_concat(g, y, xs, n);
    return graph_check_cuda(g, "concat") ? y : NULL;
}
