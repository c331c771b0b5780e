/* sgemm_nt: C += A B^T for operands whose rows both run along a long reduction, summed over a batch:
 *     C[i][j] += sum_b sum_k A_b[i][k] B_b[j][k]        (A_b: M rows, B_b: N rows, K long)
 * the weight gradient of a convolution (A = output gradient [Cout, HW], B = input or its im2col
 * [Cin*KH*KW, HW], K = output pixels, b = images). Both operands are read in place, row by row, with
 * no packing or transposing: each output is the dot product of two contiguous rows, 8 lanes at a time,
 * in tiles of 3 x 4 outputs (12 accumulators, every loaded vector used 3 or 4 times). K is taken in
 * chunks that keep the smaller operand's rows in L2 while the larger one streams past once; chunk sums
 * go into C in double. Threads split the larger operand's rows (disjoint rows of C: no partial
 * copies of C, no reduction); results do not depend on the thread count.
 * C: double, M x N, element (i, j) at c[i * ldc + j]. AVX2/FMA at run time, portable C otherwise. */
#ifndef TENSOR_SGEMM_NT_H
#define TENSOR_SGEMM_NT_H

#include <stddef.h>

#include "tensor/threadpool.h"

typedef struct {
    const float *p;   /* row 0 of batch 0 */
    size_t ld;        /* floats between rows */
    size_t batch_ld;  /* floats between batches */
} SgemmNtOperand;

void sgemm_nt_accumulate(ThreadPool *pool, int M, int N, int K, int batch, SgemmNtOperand a, SgemmNtOperand b,
                         double *c, size_t ldc);

#endif
