/* Elementwise add, scale and the full sum. */
#include "autograd/ops.h"
#include "tensor/context.h"
#ifdef HAVE_CUDA
#include "cuda_kernels/cuda_ops.h"
#endif

/* dst += k * src over n elements, on the device of v. */
static void accumulate(Graph *g, const Var *v, float *dst, const float *src, float k, int64_t n)
{
#ifdef HAVE_CUDA
    if (var_on_cuda(v)) {
        cuda_axpy(g->ctx, dst, src, k, n);
        graph_check_cuda(g, "accumulate");
        return;
    }
#endif
    (void)g, (void)v;
    for (int64_t i = 0; i < n; i++) dst[i] += k * src[i];
}

static void add_backward(Graph *g, Var *y)
{
    int64_t n = tensor_numel(&y->value);
    for (int i = 0; i < 2; i++) {
        Var *in = y->inputs[i];
        if (!in->requires_grad) continue;
        float *d = var_grad(g, in);
        if (!d) return;
        accumulate(g, y, d, y->grad.data, 1.0f, n);
    }
}

typedef struct {
    const float *a, *b;
    float *y;
} AddJob;

enum { ELEMENTWISE_CHUNK = 32768 }; /* elements per pool task: large enough to amortise the hand-off */

static void add_range(void *arg, int64_t lo, int64_t hi)
{
    const AddJob *j = arg;
    for (int64_t i = lo; i < hi; i++) j->y[i] = j->a[i] + j->b[i];
}

Var *ag_add(Graph *g, Var *a, Var *b)
{
    if (!graph_ok(g)) return NULL;
    if (!a || !b) return graph_fail(g, ERR_ARG, "add: NULL input");
    if (!tensor_same_shape(&a->value, &b->value)) {
        char sa[96], sb[96];
        return graph_fail(g, ERR_SHAPE, "add: shapes %s and %s differ",
                          tensor_shape_str(&a->value, sa, sizeof sa),
                          tensor_shape_str(&b->value, sb, sizeof sb));
    }
    Var *inputs[2] = {a, b};
    Var *y = graph_op_output(g, "add", inputs, 2, a->value.ndim, a->value.shape, add_backward);
    if (y) graph_op_saves(y, 0);
    if (!y) return NULL;
    int64_t n = tensor_numel(&a->value);
#ifdef HAVE_CUDA
    if (var_on_cuda(a)) {
        cuda_add(g->ctx, a->value.data, b->value.data, y->value.data, n);
        return graph_check_cuda(g, "add") ? y : NULL;
    }
#endif
    AddJob j = {a->value.data, b->value.data, y->value.data};
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
    if (!y) return NULL;
    float *saved = graph_host_scratch(g, sizeof(float));
    if (!saved) return NULL;
    *saved = s;
    y->saved = saved;
    int64_t n = tensor_numel(&x->value);
#ifdef HAVE_CUDA
    if (var_on_cuda(x)) {
        cuda_scale(g->ctx, x->value.data, y->value.data, s, n);
        return graph_check_cuda(g, "scale") ? y : NULL;
    }
#endif
    for (int64_t i = 0; i < n; i++) y->value.data[i] = s * x->value.data[i];
    return y;
}

static void sum_backward(Graph *g, Var *y)
{
    Var *x = y->inputs[0];
    float *d = var_grad(g, x);
    if (!d) return;
    int64_t n = tensor_numel(&x->value);
#ifdef HAVE_CUDA
    if (var_on_cuda(y)) {
        cuda_add_scalar_grad(g->ctx, d, y->grad.data, n);
        graph_check_cuda(g, "sum backward");
        return;
    }
#endif
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
#ifdef HAVE_CUDA
    if (var_on_cuda(x)) {
        cuda_sum(g->ctx, x->value.data, y->value.data, n);
        return graph_check_cuda(g, "sum") ? y : NULL;
    }
#endif
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += x->value.data[i];
    y->value.data[0] = (float)acc;
    return y;
}
