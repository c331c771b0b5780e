#include "autograd/batchnorm_cpu.h"

#include <math.h>

#include "autograd/conv2d_avx2.h"

static inline const float *plane(const float *t, BnLayout l, int n, int c)
{
    return t + ((size_t)n * l.C + c) * l.HW;
}

/* The activation's derivative times d, from the pre-activation v (v > 0: d, else slope * d). */
static inline float act_grad(float v, float d, float act)
{
    return act < 0.0f || v > 0.0f ? d : act * d;
}

/* ---- portable kernels ------------------------------------------------------------------------ */

static void moments_c(const float *z, BnLayout l, int c, double *sum, double *sumsq)
{
    double s = 0, q = 0;
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(z, l, n, c);
        for (size_t i = 0; i < l.HW; i++) s += p[i], q += (double)p[i] * p[i];
    }
    *sum = s, *sumsq = q;
}

static void normalize_act_c(const float *z, BnLayout l, int c, float scale, float shift, float act, float *y)
{
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(z, l, n, c);
        float *q = y + (p - z);
        for (size_t i = 0; i < l.HW; i++) {
            float v = p[i] * scale + shift, scaled = act * v; /* unconditional: the loop vectorises */
            q[i] = act < 0.0f || v > 0.0f ? v : scaled;
        }
    }
}

/* g and xhat of element i of a channel's kept tensor p (portable path). */
static inline void saved_element(const BnSaved *s, float t, float d, float *g, float *xhat)
{
    if (!s->from_output) {
        *g = act_grad(t * s->scale + s->shift, d, s->act);
        *xhat = (t - s->mean) * s->invstd;
        return;
    }
    float v = s->act < 0.0f || t > 0.0f ? t : t * s->inv_slope;
    *g = act_grad(t, d, s->act); /* y > 0 exactly where v > 0 */
    *xhat = (v - s->beta) * s->inv_gamma;
}

static void backward_sums_c(const BnSaved *s, const float *dy, BnLayout l, int c, double *sum_g, double *sum_gx)
{
    double sg = 0, sgx = 0;
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(s->t, l, n, c), *d = dy + (p - s->t);
        for (size_t i = 0; i < l.HW; i++) {
            float g, xhat;
            saved_element(s, p[i], d[i], &g, &xhat);
            sg += g, sgx += g * xhat;
        }
    }
    *sum_g = sg, *sum_gx = sgx;
}

static void backward_dz_c(const BnSaved *s, const float *dy, BnLayout l, int c, float mg, float mgx, float *dz)
{
    float k = s->scale; /* gamma * invstd */
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(s->t, l, n, c), *d = dy + (p - s->t);
        float *o = dz + (p - s->t);
        for (size_t i = 0; i < l.HW; i++) {
            float g, xhat;
            saved_element(s, p[i], d[i], &g, &xhat);
            o[i] = k * (g - mg - xhat * mgx);
        }
    }
}

/* ---- AVX2/FMA kernels: the pre-activation is fmaf(z, scale, shift) in every lane and tail, so the
 * backward's mask is exactly the forward's. ------------------------------------------------------ */
#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline void add_pd8(__m256 v, __m256d *lo, __m256d *hi)
{
    *lo = _mm256_add_pd(*lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    *hi = _mm256_add_pd(*hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

AVX2 static inline double hsum_pd(__m256d a, __m256d b)
{
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a, b));
    return (t[0] + t[1]) + (t[2] + t[3]);
}

/* g = act'(v) d on 8 lanes: d where v > 0 (or no activation), slope * d elsewhere. */
AVX2 static inline __m256 act_grad8(__m256 v, __m256 d, float act)
{
    if (act < 0.0f) return d;
    __m256 pos = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ);
    return _mm256_blendv_ps(_mm256_mul_ps(d, _mm256_set1_ps(act)), d, pos);
}

AVX2 static void moments_avx2(const float *z, BnLayout l, int c, double *sum, double *sumsq)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
    double s = 0, q = 0;
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(z, l, n, c);
        size_t i = 0;
        for (; i + 8 <= l.HW; i += 8) {
            __m256 v = _mm256_loadu_ps(p + i);
            __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
            s0 = _mm256_add_pd(s0, lo), s1 = _mm256_add_pd(s1, hi);
            q0 = _mm256_fmadd_pd(lo, lo, q0), q1 = _mm256_fmadd_pd(hi, hi, q1);
        }
        for (; i < l.HW; i++) s += p[i], q += (double)p[i] * p[i];
    }
    *sum = s + hsum_pd(s0, s1), *sumsq = q + hsum_pd(q0, q1);
}

AVX2 static void normalize_act_avx2(const float *z, BnLayout l, int c, float scale, float shift, float act, float *y)
{
    __m256 sc = _mm256_set1_ps(scale), sh = _mm256_set1_ps(shift), sl = _mm256_set1_ps(act);
    __m256 zero = _mm256_setzero_ps();
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(z, l, n, c);
        float *q = y + (p - z);
        size_t i = 0;
        for (; i + 8 <= l.HW; i += 8) {
            __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(p + i), sc, sh);
            if (act >= 0.0f) v = _mm256_blendv_ps(_mm256_mul_ps(v, sl), v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
            _mm256_storeu_ps(q + i, v);
        }
        for (; i < l.HW; i++) {
            float v = fmaf(p[i], scale, shift);
            q[i] = act < 0.0f || v > 0.0f ? v : act * v;
        }
    }
}

/* g and xhat of 8 elements of a kept tensor (the AVX2 twin of saved_element; the pre-activation from z
 * is fmaf(z, scale, shift), as the forward computed it). */
AVX2 static inline void saved8(const BnSaved *s, __m256 t, __m256 d, __m256 *g, __m256 *xhat)
{
    if (!s->from_output) {
        *g = act_grad8(_mm256_fmadd_ps(t, _mm256_set1_ps(s->scale), _mm256_set1_ps(s->shift)), d, s->act);
        *xhat = _mm256_mul_ps(_mm256_sub_ps(t, _mm256_set1_ps(s->mean)), _mm256_set1_ps(s->invstd));
        return;
    }
    __m256 v = t;
    if (s->act >= 0.0f)
        v = _mm256_blendv_ps(_mm256_mul_ps(t, _mm256_set1_ps(s->inv_slope)), t,
                             _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GT_OQ));
    *g = act_grad8(t, d, s->act);
    *xhat = _mm256_mul_ps(_mm256_sub_ps(v, _mm256_set1_ps(s->beta)), _mm256_set1_ps(s->inv_gamma));
}

/* The scalar tail of the AVX2 kernels: the same arithmetic as saved8 (fmaf for the pre-activation). */
static inline void saved_tail(const BnSaved *s, float t, float d, float *g, float *xhat)
{
    if (!s->from_output) {
        *g = act_grad(fmaf(t, s->scale, s->shift), d, s->act);
        *xhat = (t - s->mean) * s->invstd;
        return;
    }
    saved_element(s, t, d, g, xhat);
}

AVX2 static void backward_sums_avx2(const BnSaved *s, const float *dy, BnLayout l, int c, double *sum_g,
                                    double *sum_gx)
{
    __m256d g0 = _mm256_setzero_pd(), g1 = g0, x0 = g0, x1 = g0;
    double sg = 0, sgx = 0;
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(s->t, l, n, c), *d = dy + (p - s->t);
        size_t i = 0;
        for (; i + 8 <= l.HW; i += 8) {
            __m256 g, xhat;
            saved8(s, _mm256_loadu_ps(p + i), _mm256_loadu_ps(d + i), &g, &xhat);
            add_pd8(g, &g0, &g1);
            add_pd8(_mm256_mul_ps(g, xhat), &x0, &x1);
        }
        for (; i < l.HW; i++) {
            float g, xhat;
            saved_tail(s, p[i], d[i], &g, &xhat);
            sg += g, sgx += g * xhat;
        }
    }
    *sum_g = sg + hsum_pd(g0, g1), *sum_gx = sgx + hsum_pd(x0, x1);
}

AVX2 static void backward_dz_avx2(const BnSaved *s, const float *dy, BnLayout l, int c, float mg, float mgx,
                                  float *dz)
{
    float k = s->scale; /* gamma * invstd */
    __m256 kv = _mm256_set1_ps(k), mgv = _mm256_set1_ps(mg), mgxv = _mm256_set1_ps(mgx);
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(s->t, l, n, c), *d = dy + (p - s->t);
        float *o = dz + (p - s->t);
        size_t i = 0;
        for (; i + 8 <= l.HW; i += 8) {
            __m256 g, xhat;
            saved8(s, _mm256_loadu_ps(p + i), _mm256_loadu_ps(d + i), &g, &xhat);
            _mm256_storeu_ps(o + i, _mm256_mul_ps(kv, _mm256_sub_ps(_mm256_sub_ps(g, mgv), _mm256_mul_ps(xhat, mgxv))));
        }
        for (; i < l.HW; i++) {
            float g, xhat;
            saved_tail(s, p[i], d[i], &g, &xhat);
            o[i] = k * (g - mg - xhat * mgx);
        }
    }
}
#define HAVE_AVX2_KERNELS 1
#endif

/* ---- dispatch ------------------------------------------------------------------------------- */

void bn_channel_moments(const float *z, BnLayout l, int c, double *sum, double *sumsq)
{
#ifdef HAVE_AVX2_KERNELS
    if (conv2d_avx2_available()) return moments_avx2(z, l, c, sum, sumsq);
#endif
    moments_c(z, l, c, sum, sumsq);
}

void bn_channel_normalize_act(const float *z, BnLayout l, int c, float scale, float shift, float act, float *y)
{
#ifdef HAVE_AVX2_KERNELS
    if (conv2d_avx2_available()) return normalize_act_avx2(z, l, c, scale, shift, act, y);
#endif
    normalize_act_c(z, l, c, scale, shift, act, y);
}

void bn_channel_backward_sums(const BnSaved *s, const float *dy, BnLayout l, int c, double *sum_g, double *sum_gx)
{
#ifdef HAVE_AVX2_KERNELS
    if (conv2d_avx2_available()) return backward_sums_avx2(s, dy, l, c, sum_g, sum_gx);
#endif
    backward_sums_c(s, dy, l, c, sum_g, sum_gx);
}

void bn_channel_backward_dz(const BnSaved *s, const float *dy, BnLayout l, int c, float mg, float mgx,
                            float *dz)
{
#ifdef HAVE_AVX2_KERNELS
    if (conv2d_avx2_available()) return backward_dz_avx2(s, dy, l, c, mg, mgx, dz);
#endif
    backward_dz_c(s, dy, l, c, mg, mgx, dz);
}
