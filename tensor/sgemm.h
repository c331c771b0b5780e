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

void sgemm(ThreadPool *pool, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
           const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* sgemm, then C[i][j] = act(C[i][j] + row_bias[i]) applied to each tile as it is finished (while it
 * is in cache, instead of a second pass over C): row_bias may be NULL, act is leaky ReLU with slope
 * leaky_slope (0: ReLU), or none when leaky_slope < 0. */
void sgemm_bias_act(ThreadPool *pool, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc, const float *row_bias,
                    float leaky_slope);

/* Straightforward triple loop with double accumulation: the reference the tests compare to. */
void sgemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Which microkernel sgemm uses on this CPU ("avx2-fma 6x16" or "generic 6x16"). */
const char *sgemm_kernel_name(void);

#endif
