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

#include <stddef.h>

#include "tensor/sgemm.h"

/* The epilogue of one tile: bias of its first row (or NULL) and the leaky slope (< 0: none). */
typedef struct {
    const float *bias;
    float slope;
} SgemmTileEpilogue;

/* A kernel walks one column panel down: `rows` rows of C from c (tiles of MR rows, the last one possibly
 * shorter), whose packed rows of A lie one MR x kc panel after another from a, all against the same panel
 * b. One call per panel instead of per tile: with the few k steps of a narrow layer (K = 16 to 64) the call
 * and its arguments cost a share of each tile's work (gemm_block, the caller, had 6% of the samples of a
 * 640x480 forward on 2 threads). Alternated runs in one process against calls per tile (same prefetches),
 * Zen 4: 640x480 forward 0.94-0.95 of the time at 1 and 2 threads (4 runs of 150 pairs), MobileNet training
 * step 0.976 (15 pairs).
 * Each tile asks for the next tile's lines of C during its k loop (sgemm_prefetch_tile); the last asks for
 * c_next's (the next panel's first tile; NULL: none). pf applies to the first tile only. */
typedef void (*SgemmKernelFn)(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc,
                              float alpha, int rows, int nr, int overwrite, const SgemmTileEpilogue *ep,
                              const float *c_next);

void sgemm_kernel_generic(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc, float alpha,
                          int rows, int nr, int overwrite, const SgemmTileEpilogue *ep, const float *c_next);
void sgemm_kernel_avx2(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc, float alpha,
                       int rows, int nr, int overwrite, const SgemmTileEpilogue *ep, const float *c_next);
void sgemm_kernel_avx512(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc, float alpha,
                         int rows, int nr, int overwrite, const SgemmTileEpilogue *ep, const float *c_next);

/* Asks for the lines of a tile of C (rows x NR floats, rows ldc apart) ahead of the kernel that writes it.
 * The tiles of one column panel go down C's rows, ldc apart: a stride no hardware prefetcher follows, so
 * without this every row of every tile stored (or read, when accumulating) waited for memory once C
 * outgrew the caches. Asked for one tile ahead, during the previous tile's k loop (a 256x64 by 64x44100
 * product, ResNet-50's first pointwise layer: 70 -> 97 GFLOP/s on one Zen 4 core; no loss where C is
 * cached). A 16-float row spans two lines unless aligned. */
static inline void sgemm_prefetch_tile(const float *c, int ldc, int rows)
{
    for (int i = 0; i < rows; i++) {
        __builtin_prefetch(c + (size_t)i * ldc, 1, 3);
        __builtin_prefetch(c + (size_t)i * ldc + SGEMM_NR - 1, 1, 3);
    }
}

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
