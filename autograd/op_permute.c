/* permute (into a contiguous copy) and reshape (a view sharing the input's data). */
#include <string.h>

#include "autograd/ops.h"
#include "tensor/context.h"
#include "cuda_kernels/cuda_ops.h"

typedef struct {
    const Tensor *view; /* the source seen in output order */
    const float *src;
    float *dst;
    bool accumulate;
} PermuteJob;

/* Output rows [r0, r1) of the innermost length: the source offset of r0 from its mixed-radix index,
 * then walked. */
static void permute_rows(void *arg, int64_t r0, int64_t r1)
{
    const PermuteJob *j = arg;
    const Tensor *v = j->view;
    int nd = v->ndim;
    int64_t inner_len = nd ? v->shape[nd - 1] : 1, inner_stride = nd ? v->strides[nd - 1] : 1;
    int64_t idx[TENSOR_MAX_DIMS] = {0}, off = 0, rest = r0;
    for (int d = nd - 2; d >= 0; d--) {
        idx[d] = rest % v->shape[d];
        rest /= v->shape[d];
        off += idx[d] * v->strides[d];
    }
    for (int64_t r = r0; r < r1; r++) {
        const float *s = j->src + off;
        float *d = j->dst + r * inner_len;
        if (j->accumulate)
            for (int64_t k = 0; k < inner_len; k++) d[k] += s[k * inner_stride];
        else
            for (int64_t k = 0; k < inner_len; k++) d[k] = s[k * inner_stride];
        for (int dd = nd - 2; dd >= 0; dd--) {
            idx[dd]++;
            off += v->strides[dd];
            if (idx[dd] < v->shape[dd]) break;
            off -= v->strides[dd] * v->shape[dd];
            idx[dd] = 0;
        }
    }
}

/* dst (contiguous, shape of src permuted by perm) += or = src permuted. */
static void permute_copy(Graph *g, const Tensor *src, const int *perm, float *dst, bool accumulate)
{
    Tensor view;
    tensor_permute_view(&view, src, perm, NULL);
    if (src->device == DEVICE_CUDA) {
        cuda_permute(g->ctx, src->data, dst, view.ndim, view.shape, view.strides, accumulate);
        graph_check_cuda(g, "permute");
        return;
    }
    int64_t n = tensor_numel(src), inner_len = view.ndim ? view.shape[view.ndim - 1] : 1;
    if (n == 0) return;
    /* tasks of about 16K elements: the heads' permutes are ~10^5 strided reads each */
    PermuteJob j = {&view, src->data, dst, accumulate};
    threadpool_run_ranges(g->ctx->pool, n / inner_len, (16384 + inner_len - 1) / inner_len, permute_rows, &j);
}

static void permute_backward(Graph *g, Var *y)
{
    Var *x = y->inputs[0];
    float *dx = var_grad(g, x);
    if (!dx) return;
    const int *perm = y->saved;
    int inverse[TENSOR_MAX_DIMS];
    for (int i = 0; i < y->value.ndim; i++) inverse[perm[i]] = i;
    Tensor dy = y->value;
    dy.data = y->grad.data;
    permute_copy(g, &dy, inverse, dx, true);
}

Var *ag_permute(Graph *g, Var *x, const int *perm)
{
    if (!graph_ok(g)) return NULL;
    if (!x) return graph_fail(g, ERR_ARG, "permute: NULL input");
    Tensor view;
    Error err = {0};
    if (tensor_permute_view(&view, &x->value, perm, &err))
        return graph_fail(g, err.code, "permute: %s", err.msg);
    Var *y = graph_op_output(g, "permute", &x, 1, view.ndim, view.shape, permute_backward);
    if (y) graph_op_saves(y, 0);
    int64_t order[TENSOR_MAX_DIMS];
    for (int i = 0; i < view.ndim; i++) order[i] = perm[i];
    graph_trace_attrs(g, y, order, view.ndim, 0.0f);
    if (!y) return NULL;
    int *saved = graph_host_scratch(g, TENSOR_MAX_DIMS * sizeof(int));
    if (!saved) return NULL;
    memcpy(saved, perm, (size_t)x->value.ndim * sizeof(int));
    y->saved = saved;
    permute_copy(g, &x->value, perm, y->value.data, false);
    return graph_ok(g) ? y : NULL;
}

static void reshape_backward(Graph *g, Var *y)
{
    if (var_on_cuda(y)) {
        float *dx = var_grad(g, y->inputs[0]);
        if (!dx) return;
        cuda_axpy(g->ctx, dx, y->grad.data, 1.0f, tensor_numel(&y->value));
        graph_check_cuda(g, "reshape backward");
        return;
    }
    var_grad_pass_host(g, y->inputs[0], y); /* the heads' outputs, 9 per MobileNet step */
}

Var *ag_reshape(Graph *g, Var *x, int ndim, const int64_t *shape)
{
    if (!graph_ok(g)) return NULL;
    if (!x) return graph_fail(g, ERR_ARG, "reshape: NULL input");
    Tensor view;
    Error err = {0};
    if (tensor_reshape_view(&view, &x->value, ndim, shape, &err))
        return graph_fail(g, err.code, "reshape: %s", err.msg);
    /* One element-sized placeholder buffer is allocated by graph_op_output; the output then
     * aliases the input's data instead (no copy). */
    int64_t one = 1;
    Var *y = graph_op_output(g, "reshape", &x, 1, 1, &one, reshape_backward);
    if (y) graph_op_saves(y, 0);
    if (!y) return NULL;
    y->value = view;
    return y;
}
