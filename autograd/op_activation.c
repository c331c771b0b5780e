/* relu / leaky_relu. Backward uses the output's sign, which equals the input's for slope > 0 and
 * for relu, so the input need not be kept. */
#include "autograd/activation_cpu.h"
#include "autograd/ops.h"
#include "cuda_kernels/cuda_ops.h"

static void leaky_relu_backward(Graph *g, Var *y)
{
    Var *x = y->inputs[0];
    float *dx = var_grad(g, x);
    if (!dx) return;
    float slope = *(const float *)y->saved;
    const float *yv = y->value.data, *dy = y->grad.data;
    int64_t n = tensor_numel(&y->value);
    if (var_on_cuda(y)) {
        cuda_leaky_relu_backward(g->ctx, yv, dy, dx, slope, n);
        graph_check_cuda(g, "leaky_relu backward");
        return;
    }
    for (int64_t i = 0; i < n; i++) dx[i] += yv[i] > 0.0f ? dy[i] : slope * dy[i];
}

Var *ag_leaky_relu(Graph *g, Var *x, float negative_slope)
{
    if (!graph_ok(g)) return NULL;
    if (!x) return graph_fail(g, ERR_ARG, "leaky_relu: NULL input");
    if (negative_slope < 0.0f) return graph_fail(g, ERR_ARG, "leaky_relu: negative slope < 0");
    Var *y = graph_op_output(g, negative_slope == 0.0f ? "relu" : "leaky_relu", &x, 1, x->value.ndim,
                             x->value.shape, leaky_relu_backward);
    if (!y) return NULL;
    graph_trace_attrs(g, y, NULL, 0, negative_slope);
    graph_op_saves(y, GRAPH_SAVES_OUTPUT); /* the mask comes from the output's sign */
    float *saved = graph_host_scratch(g, sizeof(float));
    if (!saved) return NULL;
    *saved = negative_slope;
    y->saved = saved;
    const float *xv = x->value.data;
    float *yv = y->value.data;
    int64_t n = tensor_numel(&x->value);
    if (var_on_cuda(x)) {
        cuda_leaky_relu_forward(g->ctx, xv, yv, negative_slope, n);
        return graph_check_cuda(g, "leaky_relu") ? y : NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = xv[i], scaled = negative_slope * v; /* unconditional: the loop vectorises */
        yv[i] = v > 0.0f ? v : scaled;
    }
    return y;
}

Var *ag_relu(Graph *g, Var *x) { return ag_leaky_relu(g, x, 0.0f); }

typedef struct {
    const float *y, *dy;
    float *dst;
    float act;
} ActGradJob;

/* AVX2 where the CPU has it (chosen at run time): the select and multiply give the same floats either way. */
__attribute__((target_clones("avx2", "default"))) static void act_grad_range(void *arg, int64_t lo, int64_t hi)
{
    const ActGradJob *j = arg;
    const float *y = j->y, *dy = j->dy;
    float *dst = j->dst, act = j->act;
    for (int64_t i = lo; i < hi; i++) dst[i] = y[i] > 0.0f ? dy[i] : act * dy[i];
}

void act_grad_from_output(ThreadPool *pool, const float *y, float act, const float *dy, float *dst, int64_t n)
{
    ActGradJob j = {y, dy, dst, act};
    threadpool_run_ranges(pool, n, 32768, act_grad_range, &j);
}
