/* SGEMM register microkernels (internal to sgemm.c). A kernel computes, for a packed panel
 * a (kc x MR, MR values per k) and a panel b of kc rows of NR values, ldb floats apart (NR when
 * packed; B's own row stride when read in place), C[0:mr, 0:nr] += alpha * a^T b (or = when
 * overwrite: the first K block of a beta == 0 product, so C is never cleared separately), where C
 * has row stride ldc and mr <= MR, nr <= NR mark the valid edge of the tile. With ep (the last K
 * block of a product that has an epilogue), each stored value then becomes act(v + bias[row]).
 * pf != 0: at each k step the kernel also prefetches b + pf (the same row pf floats on). B read in place
 * is kc rows far apart, one cache line of each per panel: too many streams for the hardware prefetcher,
 * so the panel's first tile fetches the panel 8 ahead itself (pointwise convolutions whose B comes from
 * memory, 2 threads: 64x256x44100 121-128 -> 139-142 GFLOP/s, 32x32x25600 69-79 -> 80-84). */
#ifndef TENSOR_SGEMM_KERNEL_H
#define TENSOR_SGEMM_KERNEL_H

#include "tensor/sgemm.h"

/* The epilogue of one tile: bias of its first row (or NULL) and the leaky slope (< 0: none). */
typedef struct {
    const float *bias;
    float slope;
} SgemmTileEpilogue;

typedef void (*SgemmKernelFn)(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc,
                              float alpha, int mr, int nr, int overwrite, const SgemmTileEpilogue *ep);

void sgemm_kernel_generic(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc, float alpha,
                          int mr, int nr, int overwrite, const SgemmTileEpilogue *ep);
void sgemm_kernel_avx2(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc, float alpha,
                       int mr, int nr, int overwrite, const SgemmTileEpilogue *ep);
void sgemm_kernel_avx512(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc, float alpha,
                         int mr, int nr, int overwrite, const SgemmTileEpilogue *ep);
/* The best kernel this CPU supports (checked at run time, so one binary runs on any x86-64). */
SgemmKernelFn sgemm_select_kernel(void);

/* One whole NR-column panel of a transposed B packed: dst[p * NR + c] = src[c * ld + p] for p < kc, c < NR
 * (src at the panel's first column's row of B^T, its first k): 8x8 register transposes where the portable
 * loop moved one float at a time and made the weight gradients' GEMMs (dy col^T) 12-22% slower than the
 * same products with B untransposed. AVX2; only called where sgemm_select_kernel chose a vector kernel. */
void sgemm_pack_b_trans_panel_avx2(const float *src, long ld, int kc, float *dst);
/* One MR-row panel of an untransposed A packed: dst[p * MR + i] = rows[i][p] for p < kc, i < MR (rows[i]
 * NULL: a row past M, zeros), by the same 8x8 transposes (the blocked weight gradients pack their dy,
 * [Cout, pixels], this way at every product). AVX2; only where a vector kernel was chosen. */
void sgemm_pack_a_panel_avx2(const float *const rows[SGEMM_MR], int kc, float *dst);

#endif
