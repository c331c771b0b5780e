#include <math.h>
#include <stdlib.h>

#include "tensor/context.h"
#include "tensor/rng.h"
#include "tensor/sgemm.h"
#include "tests/suites.h"

static void fill(float *p, int n, Rng *r)
{
    for (int i = 0; i < n; i++) p[i] = rng_uniform(r) * 2 - 1;
}

/* Compares sgemm against the naive double-accumulating reference on one problem. */
static void check_case(Context *ctx, bool ta, bool tb, int M, int N, int K, float alpha, float beta,
                       int pad)
{
    Rng r;
    rng_seed(&r, (uint64_t)(M * 131 + N * 17 + K), 3);
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    int a_rows = ta ? K : M, b_rows = tb ? N : K;
    float *A = malloc(sizeof(float) * (size_t)a_rows * lda);
    float *B = malloc(sizeof(float) * (size_t)b_rows * ldb);
    float *C = malloc(sizeof(float) * (size_t)M * ldc);
    float *R = malloc(sizeof(float) * (size_t)M * ldc);
    fill(A, a_rows * lda, &r);
    fill(B, b_rows * ldb, &r);
    fill(C, M * ldc, &r);
    for (int i = 0; i < M * ldc; i++) R[i] = C[i];
    sgemm(ctx->pool, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    sgemm_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    double tol = 1e-5 * (K + 1);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            double d = fabs((double)C[i * ldc + j] - R[i * ldc + j]);
            ck_assert_msg(d <= tol, "ta=%d tb=%d M=%d N=%d K=%d: C[%d,%d] = %g, reference %g", ta, tb, M,
                          N, K, i, j, C[i * ldc + j], R[i * ldc + j]);
        }
    free(A), free(B), free(C), free(R);
}

START_TEST(sgemm_matches_naive_on_odd_sizes)
{
    Context *ctx = context_create(1);
    int sizes[][3] = {{1, 1, 1}, {5, 7, 3}, {6, 16, 8}, {7, 17, 9}, {13, 33, 300}, {37, 5, 129},
                      {64, 100, 27}, {3, 1000, 72}, {300, 12, 40}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int t = 0; t < 4; t++)
            check_case(ctx, t & 1, t & 2, sizes[s][0], sizes[s][1], sizes[s][2], 1.0f, 0.0f, 0);
    context_destroy(ctx);
}
END_TEST

START_TEST(sgemm_alpha_beta_and_leading_dimensions)
{
    Context *ctx = context_create(1);
    check_case(ctx, false, false, 9, 23, 11, 0.5f, 1.0f, 3);
    check_case(ctx, true, true, 10, 19, 260, -2.0f, 0.25f, 5);
    check_case(ctx, false, true, 8, 8, 8, 1.0f, 1.0f, 1);
    check_case(ctx, true, false, 4, 4, 0, 1.0f, 0.5f, 0); /* K = 0 only scales C */
    context_destroy(ctx);
}
END_TEST

START_TEST(sgemm_threaded_equals_reference)
{
    Context *ctx = context_create(3); /* odd thread count: uneven chunks */
    check_case(ctx, false, false, 64, 1000, 150, 1.0f, 0.0f, 0);
    check_case(ctx, false, true, 500, 70, 300, 1.0f, 1.0f, 0);
    check_case(ctx, true, false, 257, 333, 65, 1.0f, 0.0f, 2);
    context_destroy(ctx);
}
END_TEST

Suite *sgemm_suite(void)
{
    Suite *s = suite_create("sgemm");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, sgemm_matches_naive_on_odd_sizes);
    tcase_add_test(tc, sgemm_alpha_beta_and_leading_dimensions);
    tcase_add_test(tc, sgemm_threaded_equals_reference);
    suite_add_tcase(s, tc);
    return s;
}
