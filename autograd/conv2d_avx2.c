/* AVX2/FMA kernels of the CPU convolution, chosen at run time (conv2d_avx2_available):
 * - depthwise 3x3 padding-1 forward of one plane at stride 1 and 2, 8 outputs per step (MobileNet's
 *   depthwise layers), bias and activation applied while the outputs are in registers. */
#include "autograd/conv2d_avx2.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <limits.h>
#include <string.h>

bool conv2d_avx2_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* Depthwise planes are taken DW_COLS output columns at a time through three zero-padded copies of the
 * input rows they read (a ring: consecutive output rows share two rows at stride 1, one at stride 2),
 * so that every output, border or not, is the same run of vector loads: no scalar border path, which
 * on the 20- to 40-wide planes of the deep layers was most of the work. */
enum { DW_COLS = 512, DW_ROW_FLOATS = 2 * DW_COLS + 24 };

typedef struct {
    float row[3][DW_ROW_FLOATS] __attribute__((aligned(32)));
    int held[3]; /* input row held by each slot, or INT_MIN */
} PaddedRows;

/* The padded copy of input row ih: dst[k] = x[ih][first + k] for k in [0, n), zero outside the plane.
 * Inline loops, not memcpy/memset: the rows of the deep layers are 20-40 floats, where the calls cost
 * more than the copy. */
__attribute__((target("avx2,fma"))) static inline const float *padded_row(PaddedRows *pr, const float *x, int H,
                                                                          int W, int ih, int first, int n)
{
    int slot = ((ih % 3) + 3) % 3;
    float *dst = pr->row[slot];
    if (pr->held[slot] == ih) return dst;
    pr->held[slot] = ih;
    int lo = first < 0 ? -first : 0, hi = W - first < n ? W - first : n; /* k range inside the row */
    if (ih < 0 || ih >= H || hi < lo) lo = hi = 0;
    const float *src = x + (long)ih * W + first;
    int k = 0;
    for (; k < lo; k++) dst[k] = 0.0f;
    for (; k + 8 <= hi; k += 8) _mm256_storeu_ps(dst + k, _mm256_loadu_ps(src + k));
    for (; k < hi; k++) dst[k] = src[k];
    for (; k < n; k++) dst[k] = 0.0f;
    return dst;
}

/* Stores the outputs [ow, ow + 8) that lie before `cols`. */
__attribute__((target("avx2,fma"))) static inline void store_outputs(float *y, int cols, int ow, __m256 v)
{
    if (ow + 8 <= cols) {
        _mm256_storeu_ps(y + ow, v);
        return;
    }
    float tmp[8];
    _mm256_storeu_ps(tmp, v);
    for (int k = 0; ow + k < cols; k++) y[ow + k] = tmp[k];
}

/* leaky: max(v, 0) + slope * min(v, 0); slope 1 (no activation) leaves v as it is, without a branch */
__attribute__((target("avx2,fma"))) static inline __m256 activate(__m256 v, __m256 slope)
{
    __m256 zero = _mm256_setzero_ps();
    return _mm256_fmadd_ps(slope, _mm256_min_ps(v, zero), _mm256_max_ps(v, zero));
}

/* One 3-tap row of the stencil: acc + w0 a + w1 b + w2 c. The nine taps are summed in one chain, in
 * order (as a direct sum does): splitting them into independent chains was no faster here (the loop's
 * iterations already overlap) and moved the training-step gradient of the layer before it, which is
 * ill-conditioned (see the note of issue 5), from 2e-4 to 4e-2 of the PyTorch reference. */
__attribute__((target("avx2,fma"))) static inline __m256 taps3(__m256 w0, __m256 a, __m256 w1, __m256 b, __m256 w2,
                                                               __m256 c, __m256 acc)
{
    return _mm256_fmadd_ps(w2, c, _mm256_fmadd_ps(w1, b, _mm256_fmadd_ps(w0, a, acc)));
}

__attribute__((target("avx2,fma"))) void depthwise3x3_s1_plane_avx2(const float *x, int H, int W, const float *w,
                                                                    float bias, float act, float *y)
{
    __m256 wv[9];
    for (int k = 0; k < 9; k++) wv[k] = _mm256_set1_ps(w[k]);
    __m256 vb = _mm256_set1_ps(bias), slope = _mm256_set1_ps(act < 0.0f ? 1.0f : act);
    PaddedRows pr;
    for (int c0 = 0; c0 < W; c0 += DW_COLS) {
        int cols = W - c0 < DW_COLS ? W - c0 : DW_COLS;
        int n = (cols + 7) / 8 * 8 + 2; /* outputs [c0, c0 + cols) read input columns c0 - 1 .. */
        pr.held[0] = pr.held[1] = pr.held[2] = INT_MIN;
        for (int oh = 0; oh < H; oh++) {
            const float *r0 = padded_row(&pr, x, H, W, oh - 1, c0 - 1, n);
            const float *r1 = padded_row(&pr, x, H, W, oh, c0 - 1, n);
            const float *r2 = padded_row(&pr, x, H, W, oh + 1, c0 - 1, n);
            float *yr = y + (long)oh * W + c0;
            for (int ow = 0; ow < cols; ow += 8) {
                __m256 acc = taps3(wv[0], _mm256_loadu_ps(r0 + ow), wv[1], _mm256_loadu_ps(r0 + ow + 1), wv[2],
                                   _mm256_loadu_ps(r0 + ow + 2), vb);
                acc = taps3(wv[3], _mm256_loadu_ps(r1 + ow), wv[4], _mm256_loadu_ps(r1 + ow + 1), wv[5],
                            _mm256_loadu_ps(r1 + ow + 2), acc);
                acc = taps3(wv[6], _mm256_loadu_ps(r2 + ow), wv[7], _mm256_loadu_ps(r2 + ow + 1), wv[8],
                            _mm256_loadu_ps(r2 + ow + 2), acc);
                store_outputs(yr, cols, ow, activate(acc, slope));
            }
        }
    }
}

/* Even- and odd-indexed floats of x[0..15], in order. */
__attribute__((target("avx2,fma"))) static inline __m256 even16(const float *x)
{
    __m256 lo = _mm256_loadu_ps(x), hi = _mm256_loadu_ps(x + 8);
    __m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
}

__attribute__((target("avx2,fma"))) static inline __m256 odd16(const float *x)
{
    __m256 lo = _mm256_loadu_ps(x), hi = _mm256_loadu_ps(x + 8);
    __m256 o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8));
}

__attribute__((target("avx2,fma"))) void depthwise3x3_s2_plane_avx2(const float *x, int H, int W, const float *w,
                                                                    float bias, float act, float *y, int Ho, int Wo)
{
    __m256 wv[9];
    for (int k = 0; k < 9; k++) wv[k] = _mm256_set1_ps(w[k]);
    __m256 vb = _mm256_set1_ps(bias), slope = _mm256_set1_ps(act < 0.0f ? 1.0f : act);
    PaddedRows pr;
    for (int c0 = 0; c0 < Wo; c0 += DW_COLS) {
        int cols = Wo - c0 < DW_COLS ? Wo - c0 : DW_COLS;
        /* output ow reads padded columns 2 ow .. 2 ow + 2; 8 outputs load 18 floats from 2 ow */
        int n = (cols + 7) / 8 * 16 + 2;
        pr.held[0] = pr.held[1] = pr.held[2] = INT_MIN;
        for (int oh = 0; oh < Ho; oh++) {
            const float *r0 = padded_row(&pr, x, H, W, 2 * oh - 1, 2 * c0 - 1, n);
            const float *r1 = padded_row(&pr, x, H, W, 2 * oh, 2 * c0 - 1, n);
            const float *r2 = padded_row(&pr, x, H, W, 2 * oh + 1, 2 * c0 - 1, n);
            float *yr = y + (long)oh * Wo + c0;
            for (int ow = 0; ow < cols; ow += 8) {
                int b = 2 * ow;
                __m256 acc = taps3(wv[0], even16(r0 + b), wv[1], odd16(r0 + b), wv[2], even16(r0 + b + 2), vb);
                acc = taps3(wv[3], even16(r1 + b), wv[4], odd16(r1 + b), wv[5], even16(r1 + b + 2), acc);
                acc = taps3(wv[6], even16(r2 + b), wv[7], odd16(r2 + b), wv[8], even16(r2 + b + 2), acc);
                store_outputs(yr, cols, ow, activate(acc, slope));
            }
        }
    }
}

#else
bool conv2d_avx2_available(void) { return false; }
void depthwise3x3_s2_plane_avx2(const float *x, int H, int W, const float *w, float bias, float act, float *y, int Ho,
                                int Wo)
{
    (void)x, (void)H, (void)W, (void)w, (void)bias, (void)act, (void)y, (void)Ho, (void)Wo;
}
void depthwise3x3_s1_plane_avx2(const float *x, int H, int W, const float *w, float bias, float act, float *y)
{
    (void)x, (void)H, (void)W, (void)w, (void)bias, (void)act, (void)y;
}
#endif
