/* Elementwise add, scale and the full sum. */
#include "autograd/ops.h"
#include "tensor/context.h"
#include "cuda_kernels/cuda_ops.h"

/* dst += k * src over n elements, on the device of v. */
enum { ELEMENTWISE_CHUNK = 32768 }; /* elements per pool task: large enough to amortise the hand-off */

static void accumulate(Graph *g, const Var *v, float *dst, const float *src, float k, int64_t n)
{
    if (var_on_cuda(v)) {
        cuda_axpy(g->ctx, dst, src, k, n);
        graph_check_cuda(g, "accumulate");
        return;
    }
    (void)g, (void)v;
    for (int64_t i = 0; i < n; i++) dst[i] += k * src[i];
}

typedef struct {
    const float *a, *b;
    float *y;
    float act;
    const float *dy;
    float *d[2];
    bool accumulate[2];
} AddJob;

/* dd = act'(y) dy written into (or added to) each input's gradient, over [lo, hi). Both gradients in one
 * pass where there are two (a residual block's sum: ResNet-50's add backward had 1.8% of a training step's
 * samples, reading dy and y once per input). Local restrict pointers and a loop per case, so that each loop
 * vectorises; an input given twice (the same gradient buffer) takes the two passes in turn. */
#define ADD_BACKWARD_LOOPS(DD)                                                                                         \
    do {                                                                                                               \
        if (d0 && d1 && !acc0 && !acc1)                                                                                \
            for (int64_t i = lo; i < hi; i++) d0[i] = d1[i] = (DD);                                                    \
        else if (d0 && d1 && acc0 && !acc1)                                                                            \
            for (int64_t i = lo; i < hi; i++) d0[i] += d1[i] = (DD);                                                   \
        else if (d0 && d1 && !acc0 && acc1)                                                                            \
            for (int64_t i = lo; i < hi; i++) d1[i] += d0[i] = (DD);                                                   \
        else if (d0 && d1)                                                                                             \
            for (int64_t i = lo; i < hi; i++) {                                                                        \
                float v = (DD);                                                                                        \
                d0[i] += v, d1[i] += v;                                                                                \
            }                                                                                                          \
        else if (acc0)                                                                                                 \
            for (int64_t i = lo; i < hi; i++) d0[i] += (DD);                                                           \
        else                                                                                                           \
            for (int64_t i = lo; i < hi; i++) d0[i] = (DD);                                                            \
    } while (0)

static void add_backward_range(void *arg, int64_t lo, int64_t hi)
{
    const AddJob *j = arg;
    const float *restrict dy = j->dy, *restrict y = j->y;
    float act = j->act;
    if (j->d[0] && j->d[0] == j->d[1]) { /* a + a: d gets dd twice */
        AddJob one = *j;
        one.d[1] = NULL;
        add_backward_range(&one, lo, hi);
        one.d[0] = j->d[1], one.accumulate[0] = true;
        add_backward_range(&one, lo, hi);
        return;
    }
    /* d0: the first gradient wanted; d1 the second, or NULL */
    int first = j->d[0] ? 0 : 1;
    float *restrict d0 = j->d[first], *restrict d1 = first == 0 ? j->d[1] : NULL;
    bool acc0 = j->accumulate[first], acc1 = d1 && j->accumulate[1];
    if (!d0) return;
    if (act < 0.0f)
        ADD_BACKWARD_LOOPS(dy[i]);
    else
        ADD_BACKWARD_LOOPS(y[i] > 0.0f ? dy[i] : act * dy[i]);
}
#undef ADD_BACKWARD_LOOPS

static void add_backward(Graph *g, Var *y)
{
    int64_t n = tensor_numel(&y->value);
    AddJob j = {NULL, NULL, y->value.data, *(const float *)y->saved, y->grad.data, {NULL, NULL}, {true, true}};
    for (int i = 0; i < 2; i++)
        if (y->inputs[i]->requires_grad && !(j.d[i] = var_grad_for_write(g, y->inputs[i], &j.accumulate[i]))) return;
    if (var_on_cuda(y)) { /* on the GPU the activation is an op of its own: here act < 0 */
        for (int i = 0; i < 2; i++) {
            if (!j.d[i]) continue;
            if (!j.accumulate[i]) cuda_fill(g->ctx, j.d[i], 0.0f, n);
            accumulate(g, y, j.d[i], y->grad.data, 1.0f, n);
        }
        return;
    }
    threadpool_run_ranges(g->ctx->pool, n, ELEMENTWISE_CHUNK, add_backward_range, &j);
}


static void add_range(void *arg, int64_t lo, int64_t hi)
{
    const AddJob *j = arg;
    const float *restrict a = j->a, *restrict b = j->b;
    float *restrict y = j->y, act = j->act;
    if (act < 0.0f) {
        for (int64_t i = lo; i < hi; i++) y[i] = a[i] + b[i];
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        float v = a[i] + b[i], scaled = act * v; /* unconditional: the loop vectorises */
        y[i] = v > 0.0f ? v : scaled;
    }
}

Var *ag_add(Graph *g, Var *a, Var *b) { return ag_add_act(g, a, b, -1.0f); }

Var *ag_add_act(Graph *g, Var *a, Var *b, float act)
{
    if (!graph_ok(g)) return NULL;
    if (!a || !b) return graph_fail(g, ERR_ARG, "add: NULL input");
    if (act >= 0.0f && var_on_cuda(a)) return ag_leaky_relu(g, ag_add(g, a, b), act); /* the two ops on the GPU */
    if (!tensor_same_shape(&a->value, &b->value)) {
        char sa[96], sb[96];
        return graph_fail(g, ERR_SHAPE, "add: shapes %s and %s differ",
                          tensor_shape_str(&a->value, sa, sizeof sa),
                          tensor_shape_str(&b->value, sb, sizeof sb));
    }
    Var *inputs[2] = {a, b};
    Var *y = graph_op_output(g, act < 0.0f ? "add" : "add_act", inputs, 2, a->value.ndim, a->value.shape, add_backward);
    if (!y) return NULL;
    graph_trace_attrs(g, y, NULL, 0, act);
    graph_op_saves(y, act < 0.0f ? 0 : GRAPH_SAVES_OUTPUT); /* the activation's mask: the output's sign */
    float *saved = graph_host_scratch(g, sizeof(float));
    if (!saved) return NULL;
    *saved = act;
    y->saved = saved;
    int64_t n = tensor_numel(&a->value);
    if (var_on_cuda(a)) {
        cuda_add(g->ctx, a->value.data, b->value.data, y->value.data, n);
        return graph_check_cuda(g, "add") ? y : NULL;
    }
    AddJob j = {a->value.data, b->value.data, y->value.data, act, NULL, {NULL, NULL}, {true, true}};
    threadpool_run_ranges(g->ctx->pool, n, ELEMENTWISE_CHUNK, add_range, &j);
    return y;
}

static void scale_backward(Graph *g, Var *y)
{
    float *d = var_grad(g, y->inputs[0]);
    if (d) accumulate(g, y, d, y->grad.data, *(const float *)y->saved, tensor_numel(&y->value));
}

Var *ag_scale(Graph *g, Var *x, float s)
{
    if (!graph_ok(g)) return NULL;
    if (!x) return graph_fail(g, ERR_ARG, "scale: NULL input");
    Var *y = graph_op_output(g, "scale", &x, 1, x->value.ndim, x->value.shape, scale_backward);
    if (y) graph_op_saves(y, 0);
    graph_trace_attrs(g, y, NULL, 0, s);
    if (!y) return NULL;
    float *saved = graph_host_scratch(g, sizeof(float));
    if (!saved) return NULL;
    *saved = s;
    y->saved = saved;
    int64_t n = tensor_numel(&x->value);
    if (var_on_cuda(x)) {
        cuda_scale(g->ctx, x->value.data, y->value.data, s, n);
        return graph_check_cuda(g, "scale") ? y : NULL;
    }
    for (int64_t i = 0; i < n; i++) y->value.data[i] = s * x->value.data[i];
    return y;
}

static void sum_backward(Graph *g, Var *y)
{
    Var *x = y->inputs[0];
    float *d = var_grad(g, x);
    if (!d) return;
    int64_t n = tensor_numel(&x->value);
    if (var_on_cuda(y)) {
        cuda_add_scalar_grad(g->ctx, d, y->grad.data, n);
        graph_check_cuda(g, "sum backward");
        return;
    }
    float dy = y->grad.data[0];
    for (int64_t i = 0; i < n; i++) d[i] += dy;
}

Var *ag_sum(Graph *g, Var *x)
{
    if (!graph_ok(g)) return NULL;
    if (!x) return graph_fail(g, ERR_ARG, "sum: NULL input");
    int64_t one = 1;
    Var *y = graph_op_output(g, "sum", &x, 1, 1, &one, sum_backward);
    if (y) graph_op_saves(y, 0);
    if (!y) return NULL;
    int64_t n = tensor_numel(&x->value);
    if (var_on_cuda(x)) {
        cuda_sum(g->ctx, x->value.data, y->value.data, n);
        return graph_check_cuda(g, "sum") ? y : NULL;
    }
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += x->value.data[i];
    y->value.data[0] = (float)acc;
    return y;
}
