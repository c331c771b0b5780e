/* sgemm: our own single-precision GEMM, row-major:
 *     C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
 * op(A) = A (lda >= K) or A^T (A stored K x M, lda >= M); the same for B.
 * Blocked in the BLIS manner (KC x NC panels of B, MC x KC panels of A, an MR x NR register
 * microkernel), with an AVX2/FMA microkernel chosen at run time and a portable fallback. Work is
 * split over the pool along the larger of M and N. beta == 0 overwrites C (NaNs in C ignored). */
#ifndef TENSOR_SGEMM_H
#define TENSOR_SGEMM_H

#include <stdbool.h>

#include "tensor/threadpool.h"

/* Blocking constants, public for the packed left operand's layout (SgemmPackedA): K is cut in blocks of
 * SGEMM_KC, rows of op(A) in panels of SGEMM_MR, columns of B in panels of SGEMM_NR. */
enum { SGEMM_MR = 6, SGEMM_NR = 16, SGEMM_KC = 256, SGEMM_MAX_PRODUCTS = 8 };

void sgemm(ThreadPool *pool, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
           const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* sgemm, then C[i][j] = act(C[i][j] + row_bias[i]) applied to each tile as it is finished (while it
 * is in cache, instead of a second pass over C): row_bias may be NULL, act is leaky ReLU with slope
 * leaky_slope (0: ReLU), or none when leaky_slope < 0. */
void sgemm_bias_act(ThreadPool *pool, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc, const float *row_bias,
                    float leaky_slope);

/* op(A) [M,K] packed once into the microkernel's layout, for a left operand that many products use
 * (constant weights): K block pc (a multiple of SGEMM_KC) starts at pc * ceil(M/MR)*MR floats, and
 * holds MR-row panels of kc columns, MR values per column. Owns data. */
typedef struct {
    int M, K;
    float *data;
} SgemmPackedA;

/* False when out of memory (pa is then empty). */
bool sgemm_pack_a(SgemmPackedA *pa, bool trans_a, int M, int K, const float *A, int lda);

/* Floats of a packed M x K operand (rows rounded up to whole panels), and where its element (row, col)
 * sits: for code that writes an operand in packed form as it makes it, instead of writing it plainly and
 * packing it again at every product. Rows past M in the last panel must hold zeros. */
static inline size_t sgemm_packed_a_floats(int M, int K)
{
    return (size_t)((M + SGEMM_MR - 1) / SGEMM_MR * SGEMM_MR) * (size_t)K;
}
static inline size_t sgemm_packed_a_offset(int M, int K, int row, int col)
{
    int pc = col / SGEMM_KC * SGEMM_KC, kc = K - pc < SGEMM_KC ? K - pc : SGEMM_KC;
    return sgemm_packed_a_floats(M, pc) + (size_t)(row / SGEMM_MR) * kc * SGEMM_MR + (size_t)(col - pc) * SGEMM_MR +
           (size_t)(row % SGEMM_MR);
}
void sgemm_packed_a_free(SgemmPackedA *pa);

/* The right operand of sgemm_multi: op(B) [K,N] as in sgemm. */
typedef struct {
    const float *B;
    int ldb;
    bool trans_b;
} SgemmRight;

/* One product of sgemm_multi: C = alpha * op(A) op(B) + beta * C, then the epilogue of
 * sgemm_bias_act (row_bias may be NULL; leaky_slope < 0: no activation). */
typedef struct {
    int M;
    const float *A; /* with lda, trans_a as in sgemm; unused when packed is set */
    int lda;
    bool trans_a;
    const SgemmPackedA *packed; /* op(A) packed beforehand (its M and K must match) */
    float *C;
    int ldc;
    const float *row_bias;
    float leaky_slope;
} SgemmProduct;

/* Products with one right operand, e.g. several convolutions of one input: each block of B is packed
 * once (or read in place) and used by up to SGEMM_MAX_PRODUCTS of them (more go in groups). */
void sgemm_multi(ThreadPool *pool, int N, int K, float alpha, const SgemmRight *b, float beta,
                 const SgemmProduct *prods, int n_prods);

/* Straightforward triple loop with double accumulation: the reference the tests compare to. */
void sgemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Which microkernel sgemm uses on this CPU ("avx2-fma 6x16" or "generic 6x16"). */
const char *sgemm_kernel_name(void);

#endif
