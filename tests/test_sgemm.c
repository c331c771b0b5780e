#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tensor/context.h"
#include "tensor/rng.h"
#include "tensor/sgemm.h"
#include "tensor/sgemm_kernel.h"
#include "tests/suites.h"

static void fill(float *p, int n, Rng *r)
{
    for (int i = 0; i < n; i++) p[i] = rng_uniform(r) * 2 - 1;
}

/* Compares sgemm (sgemm_bias_act with a row bias and/or an activation slope >= 0) against the naive
 * double-accumulating reference, followed by the epilogue, on one problem. */
static void check_case_epilogue(Context *ctx, bool ta, bool tb, int M, int N, int K, float alpha, float beta,
                                int pad, bool with_bias, float slope)
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
    float *bias = malloc(sizeof(float) * (size_t)M);
    fill(bias, M, &r);
    sgemm_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    if (with_bias || slope >= 0.0f) {
        sgemm_bias_act(ctx->pool, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, with_bias ? bias : NULL,
                       slope);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *v = &R[i * ldc + j];
                if (with_bias) *v += bias[i];
                if (slope >= 0.0f && *v < 0.0f) *v *= slope;
            }
    } else {
        sgemm(ctx->pool, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
    free(bias);
    double tol = 1e-5 * (K + 1);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            double d = fabs((double)C[i * ldc + j] - R[i * ldc + j]);
            ck_assert_msg(d <= tol, "ta=%d tb=%d M=%d N=%d K=%d: C[%d,%d] = %g, reference %g", ta, tb, M,
                          N, K, i, j, C[i * ldc + j], R[i * ldc + j]);
        }
    free(A), free(B), free(C), free(R);
}

static void check_case(Context *ctx, bool ta, bool tb, int M, int N, int K, float alpha, float beta, int pad)
{
    check_case_epilogue(ctx, ta, tb, M, N, K, alpha, beta, pad, false, -1.0f);
}

/* The microkernels on a panel of up to three tiles: the AVX2 and AVX-512 kernels give the same floats (the
 * same FMA chains in the same order), the generic one agrees to rounding; every edge (rows not a multiple
 * of MR, nr), overwrite and epilogue, each tile with its own rows of A and of the bias. The kernels this
 * CPU lacks are skipped, saying so. */
START_TEST(sgemm_microkernels_agree)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), avx512 = __builtin_cpu_supports("avx512f");
    if (!avx2 || !avx512) printf("  sgemm microkernels: %s%s not on this CPU, not compared\n", avx2 ? "" : "AVX2 ",
                                 avx512 ? "" : "AVX-512");
    if (!avx2) return;
    enum { KC = 37, TILES = 3, ROWS = TILES * SGEMM_MR, LDC = 20 };
    float a[KC * ROWS], b[KC * SGEMM_NR], bias[ROWS];
    Rng r;
    rng_seed(&r, 77, 0);
    for (int i = 0; i < KC * ROWS; i++) a[i] = rng_uniform(&r) - 0.5f;
    for (int i = 0; i < KC * SGEMM_NR; i++) b[i] = rng_uniform(&r) - 0.5f;
    for (int i = 0; i < ROWS; i++) bias[i] = rng_uniform(&r) - 0.5f;
    for (int rows = 1; rows <= ROWS; rows++)
        for (int nr = 1; nr <= SGEMM_NR; nr += 5)
            for (int mode = 0; mode < 4; mode++) {
                int overwrite = mode & 1;
                SgemmTileEpilogue ep = {bias, 0.1f};
                const SgemmTileEpilogue *e = mode & 2 ? &ep : NULL;
                float c[3][ROWS * LDC], ref[ROWS * LDC];
                for (int k = 0; k < 3; k++)
                    for (int i = 0; i < ROWS * LDC; i++) c[k][i] = (float)(i % 7) * 0.25f;
                memcpy(ref, c[0], sizeof ref);
                sgemm_kernel_generic(KC, a, b, SGEMM_NR, 0, c[0], LDC, 0.5f, rows, nr, overwrite, e, NULL);
                sgemm_kernel_avx2(KC, a, b, SGEMM_NR, mode & 1 ? SGEMM_NR : 0, c[1], LDC, 0.5f, rows, nr, overwrite, e,
                                  c[1] + SGEMM_NR);
                if (avx512)
                    sgemm_kernel_avx512(KC, a, b, SGEMM_NR, mode & 1 ? SGEMM_NR : 0, c[2], LDC, 0.5f, rows, nr, overwrite,
                                        e, NULL);
                for (int i = 0; i < ROWS * LDC; i++) {
                    int row = i / LDC, col = i % LDC;
                    if (row >= rows || col >= nr) { /* outside the panel's tiles: untouched */
                        ck_assert_msg(c[0][i] == ref[i] && c[1][i] == ref[i], "rows %d nr %d wrote outside at %d", rows,
                                      nr, i);
                        continue;
                    }
                    /* the direct sum, with tile row `row`'s A panel and bias */
                    const float *ap = a + (size_t)(row / SGEMM_MR) * SGEMM_MR * KC;
                    double sum = 0;
                    for (int p = 0; p < KC; p++) sum += (double)ap[p * SGEMM_MR + row % SGEMM_MR] * b[p * SGEMM_NR + col];
                    double v = 0.5 * sum + (overwrite ? 0.0 : ref[i]);
                    if (e) v += bias[row], v = v > 0 ? v : 0.1 * v;
                    ck_assert_msg(fabs(c[0][i] - v) <= 1e-4, "generic rows %d nr %d mode %d at %d: %g vs %g", rows, nr,
                                  mode, i, c[0][i], v);
                    ck_assert_msg(fabsf(c[0][i] - c[1][i]) <= 1e-5f, "avx2 rows %d nr %d mode %d at %d", rows, nr, mode, i);
                    if (avx512) ck_assert_msg(c[1][i] == c[2][i], "avx512 rows %d nr %d mode %d at %d: %g vs %g", rows, nr,
                                              mode, i, c[2][i], c[1][i]);
                }
            }
#else
    printf("  sgemm microkernels: not an x86-64 CPU, not compared\n");
#endif
}
END_TEST

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

START_TEST(sgemm_bias_act_epilogue_matches_reference)
{
    /* Bias and activation applied per finished tile: only after the last K block (K > 256 has two),
     * on edge tiles, with beta accumulation, both transposes, threaded, and with K = 0. */
    Context *ctx = context_create(2);
    check_case_epilogue(ctx, false, false, 13, 37, 300, 1.0f, 0.0f, 0, true, 0.1f);
    check_case_epilogue(ctx, true, true, 7, 50, 20, 0.5f, 1.0f, 2, true, 0.0f);
    check_case_epilogue(ctx, false, true, 64, 1000, 33, 1.0f, 0.0f, 0, false, 0.1f);
    check_case_epilogue(ctx, true, false, 300, 12, 40, 1.0f, 0.0f, 1, true, -1.0f);
    check_case_epilogue(ctx, false, false, 5, 9, 0, 1.0f, 0.5f, 0, true, 0.1f);
    context_destroy(ctx);
}
END_TEST

/* Several products sharing one right operand, with A prepacked or not: each equals the same product
 * computed alone by sgemm_bias_act, bit for bit (same blocks, same summation order), and the naive
 * reference within tolerance. K = 300 spans two K blocks; K = 40 reads B in place, K = 9 packs it. */
static void check_multi(Context *ctx, int N, int K, bool a_packed, bool tb)
{
    enum { P = 3 };
    int Ms[P] = {4, 13, 20};
    Rng r;
    rng_seed(&r, (uint64_t)(N * 7 + K), 11);
    int ldb = tb ? K : N;
    float *B = malloc(sizeof(float) * (size_t)K * N);
    fill(B, K * N, &r);
    SgemmProduct prods[P];
    SgemmPackedA packed[P];
    float *A[P], *C[P], *R[P], *bias[P];
    for (int q = 0; q < P; q++) {
        A[q] = malloc(sizeof(float) * (size_t)Ms[q] * K), C[q] = malloc(sizeof(float) * (size_t)Ms[q] * N);
        R[q] = malloc(sizeof(float) * (size_t)Ms[q] * N), bias[q] = malloc(sizeof(float) * (size_t)Ms[q]);
        fill(A[q], Ms[q] * K, &r), fill(bias[q], Ms[q], &r), fill(C[q], Ms[q] * N, &r);
        ck_assert(sgemm_pack_a(&packed[q], false, Ms[q], K, A[q], K));
        float slope = q == 1 ? -1.0f : 0.1f * q;
        prods[q] = (SgemmProduct){Ms[q], A[q], K, false, a_packed ? &packed[q] : NULL, C[q], N, q ? bias[q] : NULL, slope};
        sgemm_bias_act(ctx->pool, false, tb, Ms[q], N, K, 1.0f, A[q], K, B, ldb, 0.0f, R[q], N, prods[q].row_bias, slope);
    }
    SgemmRight right = {B, ldb, tb};
    sgemm_multi(ctx->pool, N, K, 1.0f, &right, 0.0f, prods, P);
    for (int q = 0; q < P; q++) {
        float *naive = malloc(sizeof(float) * (size_t)Ms[q] * N);
        sgemm_naive(false, tb, Ms[q], N, K, 1.0f, A[q], K, B, ldb, 0.0f, naive, N);
        for (int i = 0; i < Ms[q] * N; i++) {
            ck_assert_msg(C[q][i] == R[q][i], "product %d (a_packed %d, N %d, K %d): C[%d] = %g, alone %g", q, a_packed,
                          N, K, i, C[q][i], R[q][i]);
            float v = naive[i] + (prods[q].row_bias ? prods[q].row_bias[i / N] : 0.0f);
            if (prods[q].leaky_slope >= 0.0f && v < 0.0f) v *= prods[q].leaky_slope;
            ck_assert_msg(fabs(C[q][i] - v) <= 1e-5 * (K + 1), "product %d: C[%d] = %g, naive %g", q, i, C[q][i], v);
        }
        free(naive), free(A[q]), free(C[q]), free(R[q]), free(bias[q]);
        sgemm_packed_a_free(&packed[q]);
    }
    free(B);
}

/* Out of memory for its packing buffers (an address-space limit just above what the process holds), sgemm
 * computes the product without them instead of aborting: the same result as the reference, with and
 * without an epilogue, transposed or not. Check runs each test in a child process, so the limit ends with
 * it; an ASan build reserves its shadow memory up front, so the limit cannot be set there. */
START_TEST(sgemm_survives_out_of_memory)
{
#if defined(__SANITIZE_ADDRESS__)
    printf("SKIP sgemm out of memory: address-space limits and ASan do not mix\n");
    return;
#endif
    enum { M = 21, N = 3000, K = 70 };
    Rng r;
    rng_seed(&r, 99, 0);
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
    float *R = malloc(sizeof(float) * M * N), *bias = malloc(sizeof(float) * M);
    fill(A, M * K, &r), fill(B, K * N, &r), fill(bias, M, &r);
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld", &pages), 1);
    fclose(f);
    struct rlimit lim = {(rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (256 << 10), RLIM_INFINITY};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0);
    void *probe = malloc(1 << 20);
    ck_assert_msg(probe == NULL, "the limit should leave no MiB to allocate");
    for (int variant = 0; variant < 3; variant++) {
        bool ta = variant == 1, with_epilogue = variant == 2;
        float *At = A;
        if (ta) { /* A^T stored K x M: transpose in place into R's memory, then back */
            for (int i = 0; i < M; i++)
                for (int k = 0; k < K; k++) R[k * M + i] = A[i * K + k];
            At = R;
        }
        for (int i = 0; i < M * N; i++) C[i] = 0.5f;
        sgemm_bias_act(NULL, ta, false, M, N, K, 1.0f, At, ta ? M : K, B, N, 1.0f, C, N, with_epilogue ? bias : NULL,
                       with_epilogue ? 0.1f : -1.0f);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double acc = 0.5;
                for (int k = 0; k < K; k++) acc += (double)A[i * K + k] * B[k * N + j];
                if (with_epilogue) {
                    acc += bias[i];
                    if (acc < 0) acc *= 0.1;
                }
                ck_assert_msg(fabs(C[i * N + j] - acc) <= 1e-4, "variant %d C[%d,%d] %g, reference %g", variant, i, j,
                              C[i * N + j], acc);
            }
    }
    free(A), free(B), free(C), free(R), free(bias);
}
END_TEST

START_TEST(sgemm_multi_and_prepacked_operands_match_single_products)
{
    Context *ctx = context_create(3);
    for (int v = 0; v < 4; v++) {
        check_multi(ctx, 37, 300, v & 1, v & 2);
        check_multi(ctx, 1000, 9, v & 1, v & 2);
        check_multi(ctx, 501, 40, v & 1, v & 2);
    }
    context_destroy(ctx);
}
END_TEST

Suite *sgemm_suite(void)
{
    Suite *s = suite_create("sgemm");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, sgemm_microkernels_agree);
    tcase_add_test(tc, sgemm_matches_naive_on_odd_sizes);
    tcase_add_test(tc, sgemm_alpha_beta_and_leading_dimensions);
    tcase_add_test(tc, sgemm_bias_act_epilogue_matches_reference);
    tcase_add_test(tc, sgemm_threaded_equals_reference);
    tcase_add_test(tc, sgemm_multi_and_prepacked_operands_match_single_products);
    tcase_add_test(tc, sgemm_survives_out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}
