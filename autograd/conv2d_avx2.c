/* AVX2/FMA kernels of the CPU convolution, chosen at run time (conv2d_avx2_available):
 * - depthwise 3x3 stride-1 padding-1 forward of one plane, 8 outputs per step (the bulk of
 *   MobileNet's depthwise layers; border pixels through a scalar path), bias and activation applied
 *   while the outputs are in registers;
 * - the bias + activation epilogue of the GEMM path (the compiler does not vectorise the select under
 *   the default -ftrapping-math). */
#include "autograd/conv2d_avx2.h"

#if defined(__x86_64__)
#include <immintrin.h>

bool conv2d_avx2_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

__attribute__((target("avx2,fma"))) static inline float act_scalar(float v, float act) { return (act < 0.0f || v > 0.0f) ? v : act * v; }

/* Same target as the caller: mixing legacy-SSE code into the AVX loop stalled it (measured 5x). */
__attribute__((target("avx2,fma"))) static float tap_sum(const float *x, int H, int W, const float *w, int oh, int ow)
{
    float acc = 0.0f;
    for (int ki = 0; ki < 3; ki++) {
        int ih = oh - 1 + ki;
        if (ih < 0 || ih >= H) continue;
        for (int kj = 0; kj < 3; kj++) {
            int iw = ow - 1 + kj;
            if (iw < 0 || iw >= W) continue;
            acc += w[ki * 3 + kj] * x[(long)ih * W + iw];
        }
    }
    return acc;
}

__attribute__((target("avx2,fma"))) void depthwise3x3_s1_plane_avx2(const float *x, int H, int W, const float *w,
                                                                    float bias, float act, float *y)
{
    __m256 wv[9];
    for (int k = 0; k < 9; k++) wv[k] = _mm256_set1_ps(w[k]);
    __m256 vb = _mm256_set1_ps(bias), vslope = _mm256_set1_ps(act < 0.0f ? 1.0f : act), zero = _mm256_setzero_ps();
    for (int oh = 0; oh < H; oh++) {
        float *yr = y + (long)oh * W;
        bool full = oh > 0 && oh < H - 1;
        int ow = 0;
        if (full && W >= 10) {
            const float *r0 = x + (long)(oh - 1) * W, *r1 = r0 + W, *r2 = r1 + W;
            yr[0] = act_scalar(bias + tap_sum(x, H, W, w, oh, 0), act);
            for (ow = 1; ow + 8 <= W - 1; ow += 8) {
                __m256 acc = vb;
                acc = _mm256_fmadd_ps(wv[0], _mm256_loadu_ps(r0 + ow - 1), acc);
                acc = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(r0 + ow), acc);
                acc = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(r0 + ow + 1), acc);
                acc = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(r1 + ow - 1), acc);
                acc = _mm256_fmadd_ps(wv[4], _mm256_loadu_ps(r1 + ow), acc);
                acc = _mm256_fmadd_ps(wv[5], _mm256_loadu_ps(r1 + ow + 1), acc);
                acc = _mm256_fmadd_ps(wv[6], _mm256_loadu_ps(r2 + ow - 1), acc);
                acc = _mm256_fmadd_ps(wv[7], _mm256_loadu_ps(r2 + ow), acc);
                acc = _mm256_fmadd_ps(wv[8], _mm256_loadu_ps(r2 + ow + 1), acc);
                if (act >= 0.0f) {
                    /* leaky: max(v, 0) + slope * min(v, 0) */
                    acc = _mm256_add_ps(_mm256_max_ps(acc, zero), _mm256_mul_ps(vslope, _mm256_min_ps(acc, zero)));
                }
                _mm256_storeu_ps(yr + ow, acc);
            }
        }
        for (; ow < W; ow++) yr[ow] = act_scalar(bias + tap_sum(x, H, W, w, oh, ow), act);
    }
}
/* Sum of the 3x3 taps at output (oh, ow) for stride 2, padding 1, with bounds checks. */
__attribute__((target("avx2,fma"))) static float tap_sum_s2(const float *x, int H, int W, const float *w, int oh, int ow)
{
    float acc = 0.0f;
    for (int ki = 0; ki < 3; ki++) {
        int ih = 2 * oh - 1 + ki;
        if (ih < 0 || ih >= H) continue;
        for (int kj = 0; kj < 3; kj++) {
            int iw = 2 * ow - 1 + kj;
            if (iw < 0 || iw >= W) continue;
            acc += w[ki * 3 + kj] * x[(long)ih * W + iw];
        }
    }
    return acc;
}

/* Even-indexed floats of x[0..15], in order. */
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
    __m256 vb = _mm256_set1_ps(bias), vslope = _mm256_set1_ps(act < 0.0f ? 1.0f : act), zero = _mm256_setzero_ps();
    for (int oh = 0; oh < Ho; oh++) {
        float *yr = y + (long)oh * Wo;
        int ih0 = 2 * oh - 1;
        bool full = ih0 >= 0 && ih0 + 2 < H;
        int ow = 0;
        if (full) {
            const float *r0 = x + (long)ih0 * W, *r1 = r0 + W, *r2 = r1 + W;
            yr[0] = act_scalar(bias + tap_sum_s2(x, H, W, w, oh, 0), act);
            /* 8 outputs read input columns 2*ow-1 .. 2*ow+16 */
            for (ow = 1; 2 * ow + 16 <= W - 1; ow += 8) {
                int b = 2 * ow - 1;
                __m256 acc = vb;
                acc = _mm256_fmadd_ps(wv[0], even16(r0 + b), acc);
                acc = _mm256_fmadd_ps(wv[1], odd16(r0 + b), acc);
                acc = _mm256_fmadd_ps(wv[2], even16(r0 + b + 2), acc);
                acc = _mm256_fmadd_ps(wv[3], even16(r1 + b), acc);
                acc = _mm256_fmadd_ps(wv[4], odd16(r1 + b), acc);
                acc = _mm256_fmadd_ps(wv[5], even16(r1 + b + 2), acc);
                acc = _mm256_fmadd_ps(wv[6], even16(r2 + b), acc);
                acc = _mm256_fmadd_ps(wv[7], odd16(r2 + b), acc);
                acc = _mm256_fmadd_ps(wv[8], even16(r2 + b + 2), acc);
                if (act >= 0.0f)
                    acc = _mm256_add_ps(_mm256_max_ps(acc, zero), _mm256_mul_ps(vslope, _mm256_min_ps(acc, zero)));
                _mm256_storeu_ps(yr + ow, acc);
            }
        }
        for (; ow < Wo; ow++) yr[ow] = act_scalar(bias + tap_sum_s2(x, H, W, w, oh, ow), act);
    }
}

__attribute__((target("avx2,fma"))) void conv2d_epilogue_avx2(float *y, int n, float bias, float act)
{
    __m256 vb = _mm256_set1_ps(bias), va = _mm256_set1_ps(act), zero = _mm256_setzero_ps();
    int i = 0;
    if (act < 0.0f) {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), vb));
        for (; i < n; i++) y[i] += bias;
        return;
    }
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_add_ps(_mm256_loadu_ps(y + i), vb);
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_max_ps(v, zero), _mm256_mul_ps(va, _mm256_min_ps(v, zero))));
    }
    for (; i < n; i++) y[i] = act_scalar(y[i] + bias, act);
}
#else
bool conv2d_avx2_available(void) { return false; }
void depthwise3x3_s2_plane_avx2(const float *x, int H, int W, const float *w, float bias, float act, float *y, int Ho,
                                int Wo)
{
    (void)x, (void)H, (void)W, (void)w, (void)bias, (void)act, (void)y, (void)Ho, (void)Wo;
}
void conv2d_epilogue_avx2(float *y, int n, float bias, float act)
{
    (void)y, (void)n, (void)bias, (void)act;
}
void depthwise3x3_s1_plane_avx2(const float *x, int H, int W, const float *w, float bias, float act, float *y)
{
    (void)x, (void)H, (void)W, (void)w, (void)bias, (void)act, (void)y;
}
#endif
