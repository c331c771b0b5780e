/* The forward of pointwise (1x1) conv -> BN -> activation layers with few input channels, from x in two
 * passes (conv2d_avx2.h). Such a layer's output is several times larger than its input (MobileNet's 8 -> 16
 * channels at 320x320, 16 -> 32 at 160x160), so the general forward (the GEMM writes z, a pass reads it for
 * the moments, another reads it and writes y) moves the output four times; here z is made in registers, 32
 * pixels by every output channel at a time, twice: once for the moments, once for y, which is written once.
 * With K = Cin <= POINTWISE_NARROW_MAX_CIN the second convolution costs less than the memory traffic it
 * saves. Both passes make z with the same arithmetic, so the moments are those of the z that y comes from. */
#include "autograd/conv2d_avx2.h"
#include "autograd/row_load_avx2.h"

#include <stdbool.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

enum { BLOCK = 32, VECS = BLOCK / 8 };

/* The block's x [Cin][BLOCK] copied to contiguous scratch (lanes past `valid` zero, not read from x): x's
 * rows lie a plane apart, often a multiple of 4 KiB, so that read in place the block's lines of 16 rows
 * fell into the same L1 sets and evicted each other between output channels. */
AVX2 __attribute__((always_inline)) static inline void load_block(const float *x, size_t HW, int Cin, int valid, float *xb)
{
    for (int k = 0; k < Cin; k++)
        for (int v = 0; v < VECS; v++) {
            const float *src = x + (size_t)k * HW + 8 * v;
            __m256 t;
            if (valid == BLOCK) {
                t = _mm256_loadu_ps(src);
            } else {
                __m256i m = first_lanes(valid - 8 * v);
                t = _mm256_maskload_ps(src, m);
            }
            _mm256_store_ps(xb + k * BLOCK + 8 * v, t);
        }
}

/* z of output channels m (weights w0) and m + 1 (w1) over the block: 8 accumulators, each loaded x vector
 * used twice. */
AVX2 __attribute__((always_inline)) static inline void pair_z(const float *xb, int Cin, const float *w0, const float *w1, __m256 z0[VECS],
                               __m256 z1[VECS])
{
    for (int v = 0; v < VECS; v++) z0[v] = _mm256_setzero_ps(), z1[v] = _mm256_setzero_ps();
    for (int k = 0; k < Cin; k++) {
        __m256 b0 = _mm256_broadcast_ss(w0 + k), b1 = _mm256_broadcast_ss(w1 + k);
        for (int v = 0; v < VECS; v++) {
            __m256 xv = _mm256_load_ps(xb + k * BLOCK + 8 * v);
            z0[v] = _mm256_fmadd_ps(b0, xv, z0[v]), z1[v] = _mm256_fmadd_ps(b1, xv, z1[v]);
        }
    }
}

/* Adds one block's sum and sum of squares of z (4 terms per lane in float, then double) to acc[4]. */
AVX2 __attribute__((always_inline)) static inline void add_moments(const __m256 z[VECS], __m256d acc[4])
{
    __m256 s = _mm256_add_ps(_mm256_add_ps(z[0], z[1]), _mm256_add_ps(z[2], z[3]));
    __m256 q = _mm256_fmadd_ps(z[0], z[0], _mm256_mul_ps(z[1], z[1]));
    q = _mm256_fmadd_ps(z[2], z[2], _mm256_fmadd_ps(z[3], z[3], q));
    acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(s)));
    acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
    acc[2] = _mm256_add_pd(acc[2], _mm256_cvtps_pd(_mm256_castps256_ps128(q)));
    acc[3] = _mm256_add_pd(acc[3], _mm256_cvtps_pd(_mm256_extractf128_ps(q, 1)));
}

/* y's row of the block: act(z * scale + shift), as channel_affine's passes compute it. */
AVX2 __attribute__((always_inline)) static inline void store_affine(const __m256 z[VECS], float scale, float shift,
                                                                    float act, int valid, bool stream, float *ym)
{
    __m256 sc = _mm256_set1_ps(scale), sh = _mm256_set1_ps(shift), zero = _mm256_setzero_ps();
    for (int v = 0; v < VECS; v++) {
        __m256 o = _mm256_fmadd_ps(z[v], sc, sh);
        if (act >= 0.0f) o = _mm256_blendv_ps(_mm256_mul_ps(o, _mm256_set1_ps(act)), o, _mm256_cmp_ps(o, zero, _CMP_GT_OQ));
        if (stream && valid == BLOCK && ((uintptr_t)(ym + 8 * v) & 31) == 0) {
            _mm256_stream_ps(ym + 8 * v, o);
        } else if (valid == BLOCK) {
            _mm256_storeu_ps(ym + 8 * v, o);
        } else {
            __m256i m = first_lanes(valid - 8 * v);
            _mm256_maskstore_ps(ym + 8 * v, m, o);
        }
    }
}

/* What a pass does with each output channel's z of a block: add its moments to acc[m] (the moments pass), or
 * write y's row (the affine pass). */
typedef struct {
    __m256d (*acc)[4];
    const float *scale, *shift;
    float act;
    bool stream;
    float *y;
} NarrowSink;

/* Both passes: the blocks of [p0, p1), each copied once and every output channel's z made from it, two at a
 * time. moments: a compile-time constant of each caller. */
AVX2 __attribute__((always_inline)) static inline void narrow_blocks(const float *x, int Cin, size_t HW, size_t p0,
                                                                     size_t p1, const float *w, int Cout,
                                                                     const bool moments, const NarrowSink *k)
{
    float xb[POINTWISE_NARROW_MAX_CIN * BLOCK] __attribute__((aligned(32)));
    for (size_t p = p0; p < p1; p += BLOCK) {
        int valid = p1 - p < BLOCK ? (int)(p1 - p) : BLOCK;
        load_block(x + p, HW, Cin, valid, xb);
        for (int m = 0; m < Cout; m += 2) {
            int m1 = m + 1 < Cout ? m + 1 : m; /* an odd last channel is made twice, kept once */
            __m256 z[2][VECS];
            pair_z(xb, Cin, w + (size_t)m * Cin, w + (size_t)m1 * Cin, z[0], z[1]);
            for (int i = 0; i <= m1 - m; i++) {
                if (moments)
                    add_moments(z[i], k->acc[m + i]);
                else
                    store_affine(z[i], k->scale[m + i], k->shift[m + i], k->act, valid, k->stream,
                                 k->y + (size_t)(m + i) * HW + p);
            }
        }
    }
}

AVX2 void pointwise_narrow_moments_avx2(const float *x, int Cin, size_t HW, size_t p0, size_t p1, const float *w,
                                        int Cout, double *moments)
{
    __m256d acc[POINTWISE_NARROW_MAX_COUT][4];
    for (int m = 0; m < Cout; m++)
        for (int i = 0; i < 4; i++) acc[m][i] = _mm256_setzero_pd();
    NarrowSink k = {acc, NULL, NULL, 0.0f, false, NULL};
    narrow_blocks(x, Cin, HW, p0, p1, w, Cout, true, &k);
    for (int m = 0; m < Cout; m++) {
        double t[4];
        _mm256_storeu_pd(t, _mm256_add_pd(acc[m][0], acc[m][1]));
        moments[2 * m] = (t[0] + t[1]) + (t[2] + t[3]);
        _mm256_storeu_pd(t, _mm256_add_pd(acc[m][2], acc[m][3]));
        moments[2 * m + 1] = (t[0] + t[1]) + (t[2] + t[3]);
    }
}

AVX2 void pointwise_narrow_affine_act_avx2(const float *x, int Cin, size_t HW, size_t p0, size_t p1, const float *w,
                                           int Cout, const float *scale, const float *shift, float act, bool stream,
                                           float *y)
{
    NarrowSink k = {NULL, scale, shift, act, stream, y};
    narrow_blocks(x, Cin, HW, p0, p1, w, Cout, false, &k);
    if (stream) _mm_sfence(); /* the streaming stores done before the pool reports this task finished */
}

#else
/* AVX2 only: conv_bn_act takes this path only where conv2d_avx2_available() */
void pointwise_narrow_moments_avx2(const float *x, int Cin, size_t HW, size_t p0, size_t p1, const float *w, int Cout,
                                   double *moments)
{
    (void)x, (void)Cin, (void)HW, (void)p0, (void)p1, (void)w, (void)Cout, (void)moments;
}
void pointwise_narrow_affine_act_avx2(const float *x, int Cin, size_t HW, size_t p0, size_t p1, const float *w,
                                      int Cout, const float *scale, const float *shift, float act, bool stream, float *y)
{
    (void)x, (void)Cin, (void)HW, (void)p0, (void)p1, (void)w, (void)Cout, (void)scale, (void)shift, (void)act,
        (void)stream, (void)y;
}
#endif
