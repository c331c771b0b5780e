/* permute (into a contiguous copy) and reshape (a view sharing the input's data). */
#include <stdint.h>
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

/* ---- permutes that are transposes: the source's contiguous axis d comes before the output's last axis L,
 * so for fixed other indices the output block [shape[d], shape[L]] (rows out_ld apart) is the transpose of
 * a source block (rows strides[L] apart, contiguous along d). The heads' NCHW -> NHWC and its backward are
 * such; element by element each output row gathered floats a channel plane apart (3.7-8 GB/s). */

typedef struct {
    const float *src;
    float *dst;
    bool accumulate;
    int rows, cols;         /* of a source block: rows along L, cols along d */
    int64_t src_ld, dst_ld; /* source rows' stride (L's); output rows' stride (d's) */
    int n_outer;            /* the other axes, in output order */
    int64_t outer_shape[TENSOR_MAX_DIMS], outer_src[TENSOR_MAX_DIMS], outer_dst[TENSOR_MAX_DIMS];
} TransposeJob;

/* dst[c * dst_ld + r] (+)= src[r * src_ld + c] for r < rows, c < cols. */
static void transpose_block_scalar(const TransposeJob *j, const float *src, float *dst, int r0, int c0)
{
    for (int r = r0; r < j->rows; r++)
        for (int c = c0; c < j->cols; c++) {
            float v = src[(int64_t)r * j->src_ld + c];
            float *d = dst + (int64_t)c * j->dst_ld + r;
            *d = j->accumulate ? *d + v : v;
        }
}

#if defined(__x86_64__)
#include "tensor/transpose_avx2.h"

/* The block by 8x8 register transposes, the edges element by element. */
__attribute__((target("avx2"))) static void transpose_block_avx2(const TransposeJob *j, const float *src, float *dst)
{
    int r8 = j->rows / 8 * 8, c8 = j->cols / 8 * 8;
    for (int r0 = 0; r0 < r8; r0 += 8)
        for (int c0 = 0; c0 < c8; c0 += 8) {
            __m256 v[8];
            for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(src + (int64_t)(r0 + i) * j->src_ld + c0);
            transpose8_avx2(v);
            for (int q = 0; q < 8; q++) {
                float *d = dst + (int64_t)(c0 + q) * j->dst_ld + r0;
                _mm256_storeu_ps(d, j->accumulate ? _mm256_add_ps(_mm256_loadu_ps(d), v[q]) : v[q]);
            }
        }
    if (c8 < j->cols) { /* the last columns, every full row */
        TransposeJob edge = *j;
        edge.rows = r8;
        transpose_block_scalar(&edge, src, dst, 0, c8);
    }
    transpose_block_scalar(j, src, dst, r8, 0); /* the last rows, every column */
}
#endif

static void transpose_task(void *arg, int64_t b0, int64_t b1)
{
    const TransposeJob *j = arg;
#if defined(__x86_64__)
    bool avx2 = __builtin_cpu_supports("avx2");
#endif
    for (int64_t b = b0; b < b1; b++) {
        int64_t rest = b, so = 0, dof = 0;
        for (int k = j->n_outer - 1; k >= 0; k--) {
            int64_t i = rest % j->outer_shape[k];
            rest /= j->outer_shape[k];
            so += i * j->outer_src[k], dof += i * j->outer_dst[k];
        }
#if defined(__x86_64__)
        if (avx2) {
            transpose_block_avx2(j, j->src + so, j->dst + dof);
            continue;
        }
#endif
        transpose_block_scalar(j, j->src + so, j->dst + dof, 0, 0);
    }
}

/* The permute as transposes where it is one (see above); false where it is not. */
static bool permute_by_transposes(Graph *g, const Tensor *view, const float *src, float *dst, bool accumulate)
{
    int nd = view->ndim, L = nd - 1, d = -1;
    if (nd < 2 || view->strides[L] == 1) return false;
    for (int k = 0; k < L; k++)
        if (view->strides[k] == 1 && view->shape[k] > 1) d = k;
    if (d < 0 || view->shape[d] > INT32_MAX || view->shape[L] > INT32_MAX) return false;
    int64_t out_stride[TENSOR_MAX_DIMS], step = 1;
    for (int k = L; k >= 0; k--) out_stride[k] = step, step *= view->shape[k];
    TransposeJob j = {src, dst, accumulate, (int)view->shape[L], (int)view->shape[d], view->strides[L], out_stride[d], 0,
                      {0}, {0}, {0}};
    int64_t blocks = 1;
    for (int k = 0; k < L; k++) {
        if (k == d) continue;
        j.outer_shape[j.n_outer] = view->shape[k], j.outer_src[j.n_outer] = view->strides[k];
        j.outer_dst[j.n_outer++] = out_stride[k];
        blocks *= view->shape[k];
    }
    int64_t per_block = (int64_t)j.rows * j.cols;
    threadpool_run_ranges(g->ctx->pool, blocks, (16384 + per_block - 1) / per_block, transpose_task, &j);
    return true;
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
    if (permute_by_transposes(g, &view, src->data, dst, accumulate)) return;
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
