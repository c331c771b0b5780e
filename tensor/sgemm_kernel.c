#include "tensor/sgemm_kernel.h"

static inline float tile_value(float acc, float old, float alpha, int overwrite, const SgemmTileEpilogue *ep,
                               int row)
{
    float v = overwrite ? alpha * acc : old + alpha * acc;
    if (!ep) return v;
    if (ep->bias) v += ep->bias[row];
    return ep->slope < 0.0f || v > 0.0f ? v : ep->slope * v;
}

static void store_tile(const float acc[SGEMM_MR][SGEMM_NR], float *c, int ldc, float alpha,
                       int mr, int nr, int overwrite, const SgemmTileEpilogue *ep)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *d = &c[(long)i * ldc + j];
            *d = tile_value(acc[i][j], *d, alpha, overwrite, ep, i);
        }
}

static void generic_tile(int kc, const float *a, const float *b, long ldb, float *c, int ldc, float alpha, int mr, int nr,
                         int overwrite, const SgemmTileEpilogue *ep)
{
    float acc[SGEMM_MR][SGEMM_NR] = {{0}};
    for (int p = 0; p < kc; p++) {
        for (int i = 0; i < SGEMM_MR; i++) {
            float av = a[p * SGEMM_MR + i];
            for (int j = 0; j < SGEMM_NR; j++) acc[i][j] += av * b[p * ldb + j];
        }
    }
    store_tile(acc, c, ldc, alpha, mr, nr, overwrite, ep);
}

/* The epilogue of the tile `ir` rows down the panel. */
static inline const SgemmTileEpilogue *tile_ep(const SgemmTileEpilogue *ep, int ir, SgemmTileEpilogue *own)
{
    if (!ep) return NULL;
    own->bias = ep->bias ? ep->bias + ir : NULL, own->slope = ep->slope;
    return own;
}

/* The tiles of a panel (sgemm_kernel.h), each by TILE_FN(kc, a, b, ldb, pf, c, ldc, alpha, mr, nr, overwrite, ep),
 * the next tile's lines of C asked for before each. */
#define WALK_PANEL(TILE_FN)                                                                                         \
    for (int ir = 0; ir < rows; ir += SGEMM_MR) {                                                                   \
        int mr = rows - ir < SGEMM_MR ? rows - ir : SGEMM_MR, left = rows - ir - SGEMM_MR;                          \
        if (left > 0)                                                                                               \
            sgemm_prefetch_tile(c + (size_t)(ir + SGEMM_MR) * ldc, ldc, left < SGEMM_MR ? left : SGEMM_MR);        \
        else if (c_next)                                                                                            \
            sgemm_prefetch_tile(c_next, ldc, rows < SGEMM_MR ? rows : SGEMM_MR);                                    \
        SgemmTileEpilogue own;                                                                                      \
        TILE_FN(kc, a + (size_t)ir * kc, b, ldb, ir ? 0 : pf, c + (size_t)ir * ldc, ldc, alpha, mr, nr, overwrite,  \
                tile_ep(ep, ir, &own));                                                                             \
    }

#define GENERIC_TILE(kc, a, b, ldb, pf, c, ldc, alpha, mr, nr, overwrite, ep) \
    generic_tile(kc, a, b, ldb, c, ldc, alpha, mr, nr, overwrite, ep)

void sgemm_kernel_generic(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc, float alpha,
                          int rows, int nr, int overwrite, const SgemmTileEpilogue *ep, const float *c_next)
{
    (void)pf;
    WALK_PANEL(GENERIC_TILE)
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "tensor/leaky_avx2.h"
#include "tensor/transpose_avx2.h"

/* act(v + bias) on a full row of the tile (slope 1: no activation). */
__attribute__((target("avx2,fma"))) static inline __m256 tile_epilogue(__m256 v, __m256 bias, __m256 slope)
{
    return leaky_avx2(_mm256_add_ps(v, bias), slope);
}

/* Stores rows [0, n) of a tile whose rows are full (NR columns): C = alpha acc (+ C), then the
 * epilogue. Rows below MR matter: a product whose M is not a multiple of MR ends in such a tile, and
 * storing it value by value took a third of the time of a 16-row pointwise convolution. */
__attribute__((target("avx2,fma"), always_inline)) static inline void store_rows(float *c, int ldc,
                                                                                 const __m256 rows[12], int n,
                                                                                 float alpha, int overwrite,
                                                                                 const SgemmTileEpilogue *ep)
{
    __m256 al = _mm256_set1_ps(alpha);
    __m256 slope = _mm256_set1_ps(ep && ep->slope >= 0.0f ? ep->slope : 1.0f);
    for (int i = 0; i < n; i++) {
        float *ci = c + (long)i * ldc;
        __m256 v0 = rows[2 * i], v1 = rows[2 * i + 1];
        if (!ep && !overwrite) {
            _mm256_storeu_ps(ci, _mm256_fmadd_ps(al, v0, _mm256_loadu_ps(ci)));
            _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(al, v1, _mm256_loadu_ps(ci + 8)));
            continue;
        }
        /* alpha 1 (every convolution): the multiply would return the same values */
        if (alpha != 1.0f) v0 = _mm256_mul_ps(al, v0), v1 = _mm256_mul_ps(al, v1);
        if (ep) {
            __m256 bias = _mm256_set1_ps(ep->bias ? ep->bias[i] : 0.0f);
            if (!overwrite) v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci)), v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci + 8));
            v0 = tile_epilogue(v0, bias, slope), v1 = tile_epilogue(v1, bias, slope);
        }
        _mm256_storeu_ps(ci, v0);
        _mm256_storeu_ps(ci + 8, v1);
    }
}

/* The tile of the first `rows` rows of a panel (a constant at each call, so the loops unroll and the
 * accumulators stay in registers): a tile whose valid rows fit in 4 (the last tile of M = 16, 32, the
 * heads' 4, 8, 20) runs 8 FMA chains instead of 12, which at 2 FMAs of latency 4 per cycle still fill
 * the pipes, and skips the rows that would only be thrown away. */
__attribute__((target("avx2,fma"), always_inline)) static inline void kernel_rows(const int rows, int kc,
                                                                                  const float *a, const float *b,
                                                                                  long ldb, long pf, float *c, int ldc,
                                                                                  float alpha, int mr, int nr,
                                                                                  int overwrite,
                                                                                  const SgemmTileEpilogue *ep)
{
    __m256 acc[SGEMM_MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++) {
        if (pf) _mm_prefetch((const char *)(b + pf), _MM_HINT_T0);
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < rows; i++) {
            __m256 av = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]), acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
        a += SGEMM_MR;
        b += ldb;
    }
    __m256 tile[12];
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++) tile[2 * i] = acc[i][0], tile[2 * i + 1] = acc[i][1];
    if (nr == SGEMM_NR) {
        /* full-width rows, vector stores; a constant count unrolls (and keeps them in registers) */
        if (mr == rows)
            store_rows(c, ldc, tile, rows, alpha, overwrite, ep);
        else
            store_rows(c, ldc, tile, mr, alpha, overwrite, ep);
        return;
    }
    if (overwrite) {
        /* a tile past N's edge (a product's last columns): computed whole into a buffer by the same
         * vector store as any tile, then its valid columns copied */
        float tmp[SGEMM_MR][SGEMM_NR] __attribute__((aligned(32)));
        store_rows(tmp[0], SGEMM_NR, tile, mr, alpha, 1, ep);
        for (int i = 0; i < mr; i++) {
            float *ci = c + (long)i * ldc;
            int j = 0;
            if (nr >= 8) _mm256_storeu_ps(ci, _mm256_load_ps(tmp[i])), j = 8;
            for (; j < nr; j++) ci[j] = tmp[i][j];
        }
        return;
    }
    float out[SGEMM_MR][SGEMM_NR] __attribute__((aligned(32)));
    for (int i = 0; i < mr; i++) _mm256_store_ps(out[i], tile[2 * i]), _mm256_store_ps(out[i] + 8, tile[2 * i + 1]);
    /* The edge store stays in AVX code: calling legacy-SSE code with live 256-bit state stalls. */
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *d = &c[(long)i * ldc + j];
            *d = tile_value(out[i][j], *d, alpha, overwrite, ep, i);
        }
}

/* One tile by a vector kernel's ROWS_FN(rows, ...): 4 rows where the tile's valid rows fit in 4, else MR (the
 * row count a compile-time constant at each call). */
#define TILE_BY_ROWS(ROWS_FN, kc, a, b, ldb, pf, c, ldc, alpha, mr, nr, overwrite, ep)           \
    do {                                                                                         \
        if (mr <= 4)                                                                             \
            ROWS_FN(4, kc, a, b, ldb, pf, c, ldc, alpha, mr, nr, overwrite, ep);                 \
        else                                                                                     \
            ROWS_FN(SGEMM_MR, kc, a, b, ldb, pf, c, ldc, alpha, mr, nr, overwrite, ep);          \
    } while (0)
#define AVX2_TILE(...) TILE_BY_ROWS(kernel_rows, __VA_ARGS__)

__attribute__((target("avx2,fma"))) void sgemm_kernel_avx2(int kc, const float *a, const float *b, long ldb,
                                                             long pf, float *c, int ldc, float alpha, int rows, int nr,
                                                             int overwrite, const SgemmTileEpilogue *ep,
                                                             const float *c_next)
{
    WALK_PANEL(AVX2_TILE)
}

/* Rows [0, n) of an AVX-512 tile: C = alpha acc (+ C), then the epilogue; columns past nr masked off. */
__attribute__((target("avx512f"), always_inline)) static inline void store512_rows(const int n, const __m512 *acc,
                                                                                   float *c, int ldc, float alpha,
                                                                                   int nr, int overwrite,
                                                                                   const SgemmTileEpilogue *ep)
{
    __mmask16 cols = (__mmask16)((1u << nr) - 1);
    __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 6
    for (int i = 0; i < n; i++) {
        float *ci = c + (long)i * ldc;
        __m512 v = acc[i];
        if (!ep && !overwrite) {
            _mm512_mask_storeu_ps(ci, cols, _mm512_fmadd_ps(al, v, _mm512_maskz_loadu_ps(cols, ci)));
            continue;
        }
        if (alpha != 1.0f) v = _mm512_mul_ps(al, v);
        if (ep) {
            if (!overwrite) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(cols, ci));
            if (ep->bias) v = _mm512_add_ps(v, _mm512_set1_ps(ep->bias[i]));
            if (ep->slope >= 0.0f) /* leaky_avx2's rule: slope * v where v's sign bit is set */
                v = _mm512_mask_mul_ps(v, _mm512_cmplt_epi32_mask(_mm512_castps_si512(v), _mm512_setzero_si512()), v,
                                       _mm512_set1_ps(ep->slope));
        }
        _mm512_mask_storeu_ps(ci, cols, v);
    }
}

/* The AVX-512 kernel: the same 6x16 tile and packing, one zmm register per row, so a k step is one load of
 * B, six broadcasts and six FMAs (13 instructions where the AVX2 kernel takes 20), and the tile's edges
 * are masked stores. Each output is the same chain of FMAs in the same k order as in the AVX2 kernel,
 * so the two give the same floats. On Zen 4 a 512-bit FMA takes both 256-bit pipes (same peak, fewer
 * instructions to issue); Intel's AVX-512 cores have twice the FMA width. */
__attribute__((target("avx512f"), always_inline)) static inline void kernel512_rows(const int rows, int kc,
                                                                                    const float *a, const float *b,
                                                                                    long ldb, long pf, float *c, int ldc,
                                                                                    float alpha, int mr, int nr,
                                                                                    int overwrite,
                                                                                    const SgemmTileEpilogue *ep)
{
    __m512 acc[SGEMM_MR];
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++) acc[i] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        if (pf) _mm_prefetch((const char *)(b + pf), _MM_HINT_T0);
        __m512 bv = _mm512_loadu_ps(b);
#pragma GCC unroll 6
        for (int i = 0; i < rows; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), bv, acc[i]);
        a += SGEMM_MR;
        b += ldb;
    }
    /* A tile of all its rows stores a constant count, so the loop unrolls and the accumulators stay in
     * registers; with mr's count they went to the stack after the k loop and came back. Panels of 96 rows
     * in L1, one core, Zen 4, medians of 20 alternated pairs, time after over before: kc 16 0.93, 32 0.96,
     * 64 0.975 (accumulating 0.94), 128 0.97, 256 0.98; training steps 0.971 and 0.991 (MobileNet-0.25),
     * 0.986 and 0.973 (ResNet-50). */
    if (mr == rows)
        store512_rows(rows, acc, c, ldc, alpha, nr, overwrite, ep);
    else
        store512_rows(mr, acc, c, ldc, alpha, nr, overwrite, ep);
}

#define AVX512_TILE(...) TILE_BY_ROWS(kernel512_rows, __VA_ARGS__)

__attribute__((target("avx512f"))) void sgemm_kernel_avx512(int kc, const float *a, const float *b, long ldb,
                                                                       long pf, float *c, int ldc, float alpha, int rows, int nr,
                                                                       int overwrite, const SgemmTileEpilogue *ep,
                                                                       const float *c_next)
{
    WALK_PANEL(AVX512_TILE)
}

__attribute__((target("avx2"))) void sgemm_pack_b_trans_panel_avx2(const float *src, long ld, int kc, float *dst)
{
    int p = 0;
    for (; p + 8 <= kc; p += 8)
        for (int h = 0; h < SGEMM_NR; h += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (h + i) * ld + p);
            transpose8_avx2(r);
            for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (size_t)(p + q) * SGEMM_NR + h, r[q]);
        }
    for (; p < kc; p++)
        for (int c = 0; c < SGEMM_NR; c++) dst[(size_t)p * SGEMM_NR + c] = src[c * ld + p];
}

__attribute__((target("avx2"))) void sgemm_pack_a_panel_avx2(const float *const rows[SGEMM_MR], int kc, float *dst)
{
    int p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = i < SGEMM_MR && rows[i] ? _mm256_loadu_ps(rows[i] + p) : _mm256_setzero_ps();
        transpose8_avx2(r);
        /* column q's MR values are lanes 0-5 of r[q]: 4 + 2 floats stored, so nothing past them is written */
        for (int q = 0; q < 8; q++) store6_avx2(dst + (size_t)(p + q) * SGEMM_MR, r[q]);
    }
    for (; p < kc; p++)
        for (int i = 0; i < SGEMM_MR; i++) dst[(size_t)p * SGEMM_MR + i] = rows[i] ? rows[i][p] : 0.0f;
}

SgemmKernelFn sgemm_select_kernel(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return sgemm_kernel_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return sgemm_kernel_avx2;
    return sgemm_kernel_generic;
}
#else
void sgemm_kernel_avx2(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc, float alpha,
                       int rows, int nr, int overwrite, const SgemmTileEpilogue *ep, const float *c_next)
{
    sgemm_kernel_generic(kc, a, b, ldb, pf, c, ldc, alpha, rows, nr, overwrite, ep, c_next);
}
void sgemm_kernel_avx512(int kc, const float *a, const float *b, long ldb, long pf, float *c, int ldc, float alpha,
                         int rows, int nr, int overwrite, const SgemmTileEpilogue *ep, const float *c_next)
{
    sgemm_kernel_generic(kc, a, b, ldb, pf, c, ldc, alpha, rows, nr, overwrite, ep, c_next);
}
SgemmKernelFn sgemm_select_kernel(void) { return sgemm_kernel_generic; }
void sgemm_pack_b_trans_panel_avx2(const float *src, long ld, int kc, float *dst)
{
    for (int p = 0; p < kc; p++)
        for (int c = 0; c < SGEMM_NR; c++) dst[(size_t)p * SGEMM_NR + c] = src[c * ld + p];
}
void sgemm_pack_a_panel_avx2(const float *const rows[SGEMM_MR], int kc, float *dst)
{
    for (int p = 0; p < kc; p++)
        for (int i = 0; i < SGEMM_MR; i++) dst[(size_t)p * SGEMM_MR + i] = rows[i] ? rows[i][p] : 0.0f;
}
#endif
