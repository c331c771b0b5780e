/* AVX2/FMA backward kernels of the depthwise 3x3 padding-1 convolution (conv2d_avx2.h), one plane each:
 * - input gradient at stride 2 (at stride 1 it is the forward stencil with the kernel flipped, which
 *   op_conv2d.c runs through depthwise3x3_plane_avx2). Input row ih gets kernel row 1 of output row ih/2
 *   when ih is even, rows 0 and 2 of output rows (ih+1)/2 and (ih-1)/2 when odd; within a row, with
 *   d the output-gradient row,
 *       dx[2q] += w1 d[q],   dx[2q + 1] += w0 d[q + 1] + w2 d[q]
 *   so 8 even and 8 odd inputs come from two contiguous loads of d and are interleaved once;
 * - weight gradient at stride 1 and 2: dw[ki][kj] = sum over the plane of dy[oh][ow] x[s oh - 1 + ki]
 *   [s ow - 1 + kj], nine vector accumulators over a row (stride 2 reads x split into even and odd
 *   columns as the forward does, dy put in the same lane order), the lanes' sums added in double every few rows (WGRAD_FLUSH_FLOATS). */
#include "autograd/conv2d_avx2.h"
#include "autograd/row_load_avx2.h"
#include "tensor/hsum_avx2.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

/* d[q .. q + 7] of an output-gradient row of Wo floats, zero past its end. */
AVX2 static inline __m256 drow(const float *d, int q, int Wo) { return load_cols(d, q, Wo, q < 0 || q + 8 > Wo); }

/* Stores 16 consecutive floats from col, those inside [0, W), adding them to what is there when acc. */
AVX2 static inline void store16(float *r, int col, int W, __m256 lo, __m256 hi, bool acc)
{
    if (col + 16 <= W) {
        if (acc) lo = _mm256_add_ps(lo, _mm256_loadu_ps(r + col)), hi = _mm256_add_ps(hi, _mm256_loadu_ps(r + col + 8));
        _mm256_storeu_ps(r + col, lo), _mm256_storeu_ps(r + col + 8, hi);
        return;
    }
    float t[16];
    _mm256_storeu_ps(t, lo), _mm256_storeu_ps(t + 8, hi);
    for (int k = 0; col + k < W; k++) r[col + k] = acc ? r[col + k] + t[k] : t[k];
}

AVX2 void depthwise3x3_s2_backward_input_avx2(const float *dy, int Ho, int Wo, const float *w, float *dx, int H, int W,
                                              bool accumulate)
{
    for (int ih = 0; ih < H; ih++) {
        /* the output rows and kernel rows that reach input row ih */
        const float *rows[2];
        int krow[2], n = 0;
        if (ih % 2 == 0) {
            if (ih / 2 < Ho) rows[n] = dy + (size_t)(ih / 2) * Wo, krow[n++] = 1;
        } else {
            if ((ih + 1) / 2 < Ho) rows[n] = dy + (size_t)((ih + 1) / 2) * Wo, krow[n++] = 0;
            if ((ih - 1) / 2 < Ho) rows[n] = dy + (size_t)((ih - 1) / 2) * Wo, krow[n++] = 2;
        }
        float *out = dx + (size_t)ih * W;
        for (int q = 0; 2 * q < W; q += 8) {
            __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();
            for (int r = 0; r < n; r++) {
                const float *k = w + 3 * krow[r];
                __m256 d0 = drow(rows[r], q, Wo), d1 = drow(rows[r], q + 1, Wo);
                even = _mm256_fmadd_ps(_mm256_set1_ps(k[1]), d0, even);
                odd = _mm256_fmadd_ps(_mm256_set1_ps(k[2]), d0, _mm256_fmadd_ps(_mm256_set1_ps(k[0]), d1, odd));
            }
            __m256 a = _mm256_unpacklo_ps(even, odd), b = _mm256_unpackhi_ps(even, odd);
            store16(out, 2 * q, W, _mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31), accumulate);
        }
    }
}

/* x[s ow - 1 + kj] for the 8 outputs from ow, kj = 0..2, in the lane order of the dy vector (in_order
 * of the forward: stride 2 leaves lanes as [0 1 4 5 2 3 6 7]). */
AVX2 static inline void x_taps(const float *r, int W, int ow, int stride, __m256 t[3])
{
    bool edge = ow == 0 || (stride == 1 ? ow + 9 : 2 * ow + 17) > W; /* the last column read: ow + 8, 2 ow + 16 */
    if (stride == 1) {
        t[0] = load_cols(r, ow - 1, W, edge), t[1] = load_cols(r, ow, W, edge), t[2] = load_cols(r, ow + 1, W, edge);
        return;
    }
    __m256 lo = load_cols(r, 2 * ow - 1, W, edge), hi = load_cols(r, 2 * ow + 7, W, edge);
    t[0] = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    t[1] = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
    __m256 lo2 = load_cols(r, 2 * ow + 1, W, edge), hi2 = load_cols(r, 2 * ow + 9, W, edge);
    t[2] = _mm256_shuffle_ps(lo2, hi2, _MM_SHUFFLE(2, 0, 2, 0));
}

AVX2 static inline void weight_grad_plane(const float *x, int H, int W, const float *dy, int Ho, int Wo,
                                          const int stride, double acc[9])
{
    /* float lanes summed over up to WGRAD_FLUSH_FLOATS outputs each, then added to the double sums: one
     * horizontal sum per row had been a third of the work on the 20- to 40-wide planes */
    enum { WGRAD_FLUSH_FLOATS = 2048 };
    int rows_per_flush = WGRAD_FLUSH_FLOATS / (Wo + 7) > 1 ? WGRAD_FLUSH_FLOATS / (Wo + 7) : 1;
    __m256 a[9];
    for (int k = 0; k < 9; k++) a[k] = _mm256_setzero_ps();
    for (int oh = 0; oh < Ho; oh++) {
        const float *d = dy + (size_t)oh * Wo;
        for (int ow = 0; ow < Wo; ow += 8) {
            __m256 dv = drow(d, ow, Wo);
            if (stride == 2) dv = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(dv), 0xD8));
            for (int ki = 0; ki < 3; ki++) {
                int ih = stride * oh - 1 + ki;
                if (ih < 0 || ih >= H) continue;
                __m256 t[3];
                x_taps(x + (size_t)ih * W, W, ow, stride, t);
                for (int kj = 0; kj < 3; kj++) a[3 * ki + kj] = _mm256_fmadd_ps(dv, t[kj], a[3 * ki + kj]);
            }
        }
        if ((oh + 1) % rows_per_flush == 0 || oh + 1 == Ho)
            for (int k = 0; k < 9; k++) acc[k] += hsum_avx2(a[k]), a[k] = _mm256_setzero_ps();
    }
}

AVX2 void depthwise3x3_backward_weight_avx2(const float *x, int H, int W, const float *dy, int Ho, int Wo, int stride,
                                            double acc[9])
{
    if (stride == 1)
        weight_grad_plane(x, H, W, dy, Ho, Wo, 1, acc);
    else
        weight_grad_plane(x, H, W, dy, Ho, Wo, 2, acc);
}
#else
void depthwise3x3_s2_backward_input_avx2(const float *dy, int Ho, int Wo, const float *w, float *dx, int H, int W,
                                         bool accumulate)
{
    (void)dy, (void)Ho, (void)Wo, (void)w, (void)dx, (void)H, (void)W, (void)accumulate;
}
void depthwise3x3_backward_weight_avx2(const float *x, int H, int W, const float *dy, int Ho, int Wo, int stride,
                                       double acc[9])
{
    (void)x, (void)H, (void)W, (void)dy, (void)Ho, (void)Wo, (void)stride, (void)acc;
}
#endif
