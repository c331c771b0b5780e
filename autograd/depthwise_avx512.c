/* AVX-512 twin of the depthwise 3x3 padding-1 forward plane kernel of conv2d_avx2.c (same arguments, same
 * results to the bit: each output's nine taps are summed in the same single chain of FMAs, stencil row 0
 * to 2, taps left to right, starting from the bias). What AVX-512 changes:
 * - 16 outputs per register, and the row ends read through k-masks (masked-off lanes neither read nor
 *   fault) instead of AVX2's vmaskmov;
 * - at stride 2 the even and odd input columns come from one two-source permute each (vpermt2ps), in
 *   output order, where AVX2 needs two in-lane shuffles and a cross-lane permute per 8 outputs.
 * Chosen at run time by depthwise3x3_plane_kernel (conv2d_avx2.h) where the CPU has AVX-512F (see there);
 * tests/test_ops_grad.c checks it against the direct sum and the AVX2 kernel wherever the CPU has it. */
#include "autograd/conv2d_avx2.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

enum { LANES16 = 16, ROWS16 = 4 };

/* Lanes i of a 16-float load from column col whose column col + i lies in [0, W). */
AVX512 static inline __mmask16 cols_inside(int col, int W)
{
    int lo = col < 0 ? -col : 0, hi = W - col;
    if (hi > LANES16) hi = LANES16;
    if (hi <= lo) return 0;
    return (__mmask16)((((unsigned)1 << hi) - 1) & ~(((unsigned)1 << lo) - 1));
}

AVX512 static inline __m512 load16(const float *row, int col, int W, const bool edge)
{
    if (!edge) return _mm512_loadu_ps(row + col);
    return _mm512_maskz_loadu_ps(cols_inside(col, W), row + col);
}

/* The three taps of one stencil row for the 16 outputs from ow (zero outside the row; all zero for a
 * padding row, NULL). */
AVX512 __attribute__((always_inline)) static inline void row_taps16(const float *r, int W, int ow, const int stride,
                                                                    const bool edge, __m512 *a, __m512 *b, __m512 *c)
{
    if (!r) {
        *a = *b = *c = _mm512_setzero_ps();
    } else if (stride == 1) {
        *a = load16(r, ow - 1, W, edge), *b = load16(r, ow, W, edge), *c = load16(r, ow + 1, W, edge);
    } else {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        __m512 lo = load16(r, 2 * ow - 1, W, edge), hi = load16(r, 2 * ow + 15, W, edge);
        *a = _mm512_permutex2var_ps(lo, even, hi); /* x[2 (ow + i) - 1] */
        *b = _mm512_permutex2var_ps(lo, odd, hi);  /* x[2 (ow + i)] */
        __m512 lo2 = load16(r, 2 * ow + 1, W, edge), hi2 = load16(r, 2 * ow + 17, W, edge);
        *c = _mm512_permutex2var_ps(lo2, even, hi2); /* x[2 (ow + i) + 1] */
    }
}

/* Outputs [ow, ow + 16) of `rows` (1 or ROWS16) consecutive output rows from input rows r[0 .. stride *
 * (rows - 1) + 2]. */
AVX512 __attribute__((always_inline)) static inline void stencil16(const float *const r[], int W, int ow,
                                                                   const int stride, const bool edge, const int rows,
                                                                   const __m512 wv[9], __m512 vb, __m512 slope,
                                                                   float *yr, int Wo)
{
    __m512 acc[ROWS16];
#pragma GCC unroll 4
    for (int j = 0; j < rows; j++) acc[j] = vb;
#pragma GCC unroll 9
    for (int i = 0; i < stride * (rows - 1) + 3; i++) {
        __m512 a, b, c;
        row_taps16(r[i], W, ow, stride, edge, &a, &b, &c);
#pragma GCC unroll 4
        for (int j = 0; j < rows; j++) {
            int ki = i - stride * j;
            if (ki >= 0 && ki < 3)
                acc[j] = _mm512_fmadd_ps(wv[3 * ki + 2], c,
                                         _mm512_fmadd_ps(wv[3 * ki + 1], b, _mm512_fmadd_ps(wv[3 * ki], a, acc[j])));
        }
    }
    __mmask16 out = edge ? cols_inside(ow, Wo) : (__mmask16)0xFFFF;
#pragma GCC unroll 4
    for (int j = 0; j < rows; j++) {
        __m512 v = acc[j];
        /* the leaky ReLU of leaky_avx2: slope * v where v < 0 (slope 1: none) */
        v = _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v, slope);
        _mm512_mask_storeu_ps(yr + (long)j * Wo + ow, out, v);
    }
}

AVX512 __attribute__((always_inline)) static inline void stencil_rows16(const float *x, int H, int W, int oh,
                                                                        const int stride, const int rows, int Wo,
                                                                        int inner_end, const __m512 wv[9], __m512 vb,
                                                                        __m512 slope, float *y)
{
    const float *r[2 * ROWS16 + 1];
    for (int k = 0; k < stride * (rows - 1) + 3; k++) {
        int ih = stride * oh - 1 + k;
        r[k] = ih >= 0 && ih < H ? x + (long)ih * W : NULL;
    }
    float *yr = y; /* output row oh */
    stencil16(r, W, 0, stride, true, rows, wv, vb, slope, yr, Wo);
    int ow = LANES16;
    for (; ow < inner_end; ow += LANES16) stencil16(r, W, ow, stride, false, rows, wv, vb, slope, yr, Wo);
    for (; ow < Wo; ow += LANES16) stencil16(r, W, ow, stride, true, rows, wv, vb, slope, yr, Wo);
}

AVX512 __attribute__((always_inline)) static inline void plane16(const float *x, int H, int W, const float *w,
                                                                 float bias, float act, float *y, const int stride,
                                                                 int Wo, int oh0, int oh1)
{
    __m512 wv[9];
    for (int k = 0; k < 9; k++) wv[k] = _mm512_set1_ps(w[k]);
    __m512 vb = _mm512_set1_ps(bias), slope = _mm512_set1_ps(act < 0.0f ? 1.0f : act);
    /* vectors from ow = 16 on read inside the row while stride * ow + 16 stride + 1 <= W (the last tap of
     * the last lane; at stride 2 the loads reach one column further, 2 ow + 32) */
    int inner_end = LANES16;
    while (inner_end < Wo && stride * inner_end + LANES16 * stride + 1 <= W) inner_end += LANES16;
    int oh = oh0;
    if (oh == 0 && oh < oh1) stencil_rows16(x, H, W, 0, stride, 1, Wo, inner_end, wv, vb, slope, y), oh++;
    for (; oh + ROWS16 <= oh1 && stride * (oh + ROWS16 - 1) + 1 < H; oh += ROWS16)
        stencil_rows16(x, H, W, oh, stride, ROWS16, Wo, inner_end, wv, vb, slope, y + (long)(oh - oh0) * Wo);
    for (; oh < oh1; oh++) stencil_rows16(x, H, W, oh, stride, 1, Wo, inner_end, wv, vb, slope, y + (long)(oh - oh0) * Wo);
}

AVX512 void depthwise3x3_plane_avx512(const float *x, int H, int W, const float *w, float bias, float act, float *y,
                                      int stride, int Wo, int oh0, int oh1)
{
    if (stride == 1)
        plane16(x, H, W, w, bias, act, y, 1, Wo, oh0, oh1);
    else
        plane16(x, H, W, w, bias, act, y, 2, Wo, oh0, oh1);
}

bool conv2d_avx512_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#else
void depthwise3x3_plane_avx512(const float *x, int H, int W, const float *w, float bias, float act, float *y,
                               int stride, int Wo, int oh0, int oh1)
{
    (void)x, (void)H, (void)W, (void)w, (void)bias, (void)act, (void)y, (void)stride, (void)Wo, (void)oh0, (void)oh1;
}
bool conv2d_avx512_available(void) { return false; }
#endif

/* AMD's Zen 4 runs each 512-bit operation as two 256-bit halves: there the twin measured no faster
 * (build/bench_depthwise_kernels, single thread, one cache-resident plane, best of 20 rounds, AVX2 time /
 * AVX-512 time at stride 1 and 2: 20x20 0.97 and 1.58, 40x40 0.81 and 1.00, 80x80 0.96 and 0.88, 160x160
 * 1.02 and 0.94, 320x320 1.06 and 0.93; a 40-wide row fills two and a half 16-lane vectors but five 8-lane
 * ones), so AMD CPUs keep the AVX2 kernel and the twin serves the CPUs with full-width AVX-512 units. */
DepthwisePlaneFn depthwise3x3_plane_kernel(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (conv2d_avx512_available() && !__builtin_cpu_is("amd")) return depthwise3x3_plane_avx512;
#endif
    return depthwise3x3_plane_avx2;
}
