/* Softmax over the last axis (max-subtracted). */
#include <math.h>

#include "autograd/ops.h"
#include "tensor/context.h"
#include "cuda_kernels/cuda_ops.h"

static void softmax_backward(Graph *g, Var *y)
{
    float *dx = var_grad(g, y->inputs[0]);
    if (!dx) return;
    int64_t C = y->value.shape[y->value.ndim - 1], rows = tensor_numel(&y->value) / C;
    if (var_on_cuda(y)) {
        cuda_softmax_backward(g->ctx, y->value.data, y->grad.data, dx, rows, C);
        graph_check_cuda(g, "softmax backward");
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        const float *p = y->value.data + r * C, *dy = y->grad.data + r * C;
        double dot = 0;
        for (int64_t c = 0; c < C; c++) dot += (double)p[c] * dy[c];
        for (int64_t c = 0; c < C; c++) dx[r * C + c] += p[c] * (dy[c] - (float)dot);
    }
}

typedef struct {
    const float *x;
    float *y;
    int64_t C;
} SoftmaxJob;

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

/* e^x for x <= 0, 8 lanes: x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor polynomial to r^6 (relative
 * error about 1e-7), times 2^n put into the exponent. Below -87 (where e^x leaves the normal floats) the
 * result is e^-87. */
AVX2 static inline __m256 exp_nonpositive_avx2(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - n ln2, ln2 in two parts so that n ln2's rounding does not reach r */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

/* Rows [r0, r1) of two classes, 8 at a time (the rest by the scalar loop): the larger input's probability
 * is 1 / (1 + e), the other's e / (1 + e), e = exp(-|a - b|). */
AVX2 static int64_t softmax2_rows_avx2(const float *x, float *y, int64_t r0, int64_t r1)
{
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) {
        __m256 lo = _mm256_loadu_ps(x + 2 * r), hi = _mm256_loadu_ps(x + 2 * r + 8);
        /* a: the rows' first inputs, b: their second (lane order permuted alike, undone at the store) */
        __m256 a = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)), b = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
        __m256 d = _mm256_sub_ps(a, b), neg_abs = _mm256_or_ps(d, _mm256_set1_ps(-0.0f));
        __m256 e = exp_nonpositive_avx2(neg_abs);
        __m256 top = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e)), other = _mm256_mul_ps(e, top);
        __m256 b_top = _mm256_cmp_ps(b, a, _CMP_GT_OQ); /* the scalar rule: the second wins only when larger */
        __m256 pa = _mm256_blendv_ps(top, other, b_top), pb = _mm256_blendv_ps(other, top, b_top);
        _mm256_storeu_ps(y + 2 * r, _mm256_unpacklo_ps(pa, pb));
        _mm256_storeu_ps(y + 2 * r + 8, _mm256_unpackhi_ps(pa, pb));
    }
    return r;
}
#endif

static void softmax_rows(void *arg, int64_t r0, int64_t r1)
{
    const SoftmaxJob *j = arg;
    if (j->C == 2) {
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) r0 = softmax2_rows_avx2(j->x, j->y, r0, r1);
#endif
        /* the detector's two classes: the larger input's exponential is exp(0) = 1 exactly, so one
         * expf per row gives the same floats as the general loop (sum 1 + e in double either way) */
        for (int64_t r = r0; r < r1; r++) {
            const float *in = j->x + 2 * r;
            float *out = j->y + 2 * r;
            int top = in[1] > in[0];
            float e = expf(in[1 - top] - in[top]);
            float inv = (float)(1.0 / (1.0 + (double)e));
            out[top] = inv, out[1 - top] = e * inv;
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const float *in = j->x + r * j->C;
        float *out = j->y + r * j->C;
        float m = in[0];
        for (int64_t c = 1; c < j->C; c++) m = in[c] > m ? in[c] : m;
        double sum = 0;
        for (int64_t c = 0; c < j->C; c++) sum += out[c] = expf(in[c] - m);
        float inv = (float)(1.0 / sum);
        for (int64_t c = 0; c < j->C; c++) out[c] *= inv;
    }
}

Var *ag_softmax(Graph *g, Var *x)
{
    if (!graph_ok(g)) return NULL;
    if (!x) return graph_fail(g, ERR_ARG, "softmax: NULL input");
    Var *y = graph_op_output(g, "softmax", &x, 1, x->value.ndim, x->value.shape, softmax_backward);
    if (y) graph_op_saves(y, GRAPH_SAVES_OUTPUT);
    if (!y) return NULL;
    int64_t C = x->value.shape[x->value.ndim - 1], rows = tensor_numel(&x->value) / C;
    if (var_on_cuda(x)) {
        cuda_softmax_forward(g->ctx, x->value.data, y->value.data, rows, C);
        return graph_check_cuda(g, "softmax") ? y : NULL;
    }
    SoftmaxJob j = {x->value.data, y->value.data, C};
    threadpool_run_ranges(g->ctx->pool, rows, (4096 + C - 1) / C, softmax_rows, &j);
    return y;
}
