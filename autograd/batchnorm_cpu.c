#include "autograd/batchnorm_cpu.h"

#include <math.h>
#include <stdint.h>

#include "autograd/conv2d_avx2.h"
#include "autograd/row_load_avx2.h"

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

static void normalize_act_c(const float *z, const float *r, BnLayout l, int c, float scale, float shift, float act,
                            float *y)
{
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(z, l, n, c), *rp = r ? r + (p - z) : NULL;
        float *q = y + (p - z);
        for (size_t i = 0; i < l.HW; i++) {
            float v = p[i] * scale + shift + (rp ? rp[i] : 0.0f), scaled = act * v;
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

/* y = act(z * scale + shift + r) of 8 elements at i. */
AVX2 static inline __m256 normalized8(const float *p, const float *rp, size_t i, __m256 sc, __m256 sh, float act,
                                      __m256 sl)
{
    __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(p + i), sc, sh);
    if (rp) v = _mm256_add_ps(v, _mm256_loadu_ps(rp + i));
    if (act >= 0.0f) v = _mm256_blendv_ps(_mm256_mul_ps(v, sl), v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
    return v;
}

/* Whether a pass writing a buffer of its own over layout l streams it (bn_output_streams; planes of at least 16
 * floats, for the start below). */
static bool pass_streams(BnLayout l) { return l.HW >= 16 && bn_output_streams((size_t)l.N * l.C * l.HW); }

/* Where a streamed plane's aligned stores start, its first 8 floats having been stored singly: o's first
 * 32-byte boundary past o (1 to 8 floats in; the floats stored twice get the same values, as the output is a
 * buffer of its own). */
static size_t stream_start(const float *o)
{
    size_t i = (32 - ((uintptr_t)o & 31)) / sizeof(float) % 8;
    return i ? i : 8;
}

AVX2 static void normalize_act_avx2(const float *z, const float *r, BnLayout l, int c, float scale, float shift,
                                    float act, float *y)
{
    __m256 sc = _mm256_set1_ps(scale), sh = _mm256_set1_ps(shift), sl = _mm256_set1_ps(act);
    /* A y of its own too large for the cache goes past it (BN_STREAM_MIN_BYTES) */
    bool stream = y != z && pass_streams(l);
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(z, l, n, c), *rp = r ? r + (p - z) : NULL;
        float *q = y + (p - z);
        size_t i = 0;
        if (stream) {
            _mm256_storeu_ps(q, normalized8(p, rp, 0, sc, sh, act, sl));
            for (i = stream_start(q); i + 8 <= l.HW; i += 8)
                _mm256_stream_ps(q + i, normalized8(p, rp, i, sc, sh, act, sl));
        }
        for (; i + 8 <= l.HW; i += 8) _mm256_storeu_ps(q + i, normalized8(p, rp, i, sc, sh, act, sl));
        for (; i < l.HW; i++) {
            float v = fmaf(p[i], scale, shift) + (rp ? rp[i] : 0.0f);
            q[i] = act < 0.0f || v > 0.0f ? v : act * v;
        }
    }
    if (stream) _mm_sfence(); /* the streaming stores done before the pool reports this task finished */
}

/* The backward's kernels are specialised by the kept tensor's mode (z or y) and by whether there is an
 * activation, both compile-time constants of each instance: with the tests and the constants' broadcasts in
 * the loop (one general kernel) they ran at a third of the speed. They work on xhat's centred numerator t
 * (z - mean, or v - beta: xhat = t * xfac with xfac = invstd, or 1 / gamma) and fold xfac into per-channel
 * constants, two multiplications fewer per vector. */
typedef struct {
    __m256 scale, shift, mean, inv_slope, beta, slope;
    float xfac;
} SavedConsts;

AVX2 static inline SavedConsts saved_consts(const BnSaved *s)
{
    SavedConsts k = {_mm256_set1_ps(s->scale),     _mm256_set1_ps(s->shift), _mm256_set1_ps(s->mean),
                     _mm256_set1_ps(s->inv_slope), _mm256_set1_ps(s->beta),  _mm256_set1_ps(s->act),
                     s->from_output ? s->inv_gamma : s->invstd};
    return k;
}

/* g and t of 8 elements of a kept tensor (the AVX2 twin of saved_element, xhat = t * xfac; the
 * pre-activation from z is fmaf(z, scale, shift), as the forward computed it). Zero lanes of t and d give
 * g = 0. */
AVX2 __attribute__((always_inline)) static inline void saved8(const SavedConsts *k, const bool from_output,
                                                              const bool act, __m256 x, __m256 d, __m256 *g,
                                                              __m256 *t)
{
    __m256 zero = _mm256_setzero_ps();
    if (!from_output) {
        *g = act ? _mm256_blendv_ps(_mm256_mul_ps(d, k->slope), d,
                                    _mm256_cmp_ps(_mm256_fmadd_ps(x, k->scale, k->shift), zero, _CMP_GT_OQ))
                 : d;
        *t = _mm256_sub_ps(x, k->mean);
        return;
    }
    __m256 v = x;
    if (act) { /* y > 0 exactly where v > 0 */
        __m256 pos = _mm256_cmp_ps(x, zero, _CMP_GT_OQ);
        v = _mm256_blendv_ps(_mm256_mul_ps(x, k->inv_slope), x, pos);
        *g = _mm256_blendv_ps(_mm256_mul_ps(d, k->slope), d, pos);
    } else {
        *g = d;
    }
    *t = _mm256_sub_ps(v, k->beta);
}

/* The sums go into float lanes for SUM_FLUSH_FLOATS elements at a time, then into double: converting every
 * vector to double bound the kernel by the conversions; 32 float additions per lane lose nothing of note
 * next to the rounding of g and g * t themselves. */
enum { SUM_FLUSH_FLOATS = 256 };

AVX2 __attribute__((always_inline)) static inline void backward_sums_body(const BnSaved *s, const float *dy, BnLayout l,
                                                                          int c, const bool from_output,
                                                                          const bool act, double *sum_g,
                                                                          double *sum_gx)
{
    SavedConsts k = saved_consts(s);
    __m256d g0 = _mm256_setzero_pd(), g1 = g0, x0 = g0, x1 = g0;
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(s->t, l, n, c), *d = dy + (p - s->t);
        for (size_t i = 0; i < l.HW;) {
            size_t end = l.HW - i > SUM_FLUSH_FLOATS ? i + SUM_FLUSH_FLOATS : l.HW;
            __m256 fg0 = _mm256_setzero_ps(), fg1 = fg0, fx0 = fg0, fx1 = fg0, g, t;
            for (; i + 16 <= end; i += 16) {
                saved8(&k, from_output, act, _mm256_loadu_ps(p + i), _mm256_loadu_ps(d + i), &g, &t);
                fg0 = _mm256_add_ps(fg0, g), fx0 = _mm256_fmadd_ps(g, t, fx0);
                saved8(&k, from_output, act, _mm256_loadu_ps(p + i + 8), _mm256_loadu_ps(d + i + 8), &g, &t);
                fg1 = _mm256_add_ps(fg1, g), fx1 = _mm256_fmadd_ps(g, t, fx1);
            }
            if (i + 8 <= end) {
                saved8(&k, from_output, act, _mm256_loadu_ps(p + i), _mm256_loadu_ps(d + i), &g, &t);
                fg0 = _mm256_add_ps(fg0, g), fx0 = _mm256_fmadd_ps(g, t, fx0);
                i += 8;
            }
            if (i < end) { /* masked-off lanes read nothing and add g = 0 */
                __m256i m = first_lanes((int)(end - i));
                saved8(&k, from_output, act, _mm256_maskload_ps(p + i, m), _mm256_maskload_ps(d + i, m), &g, &t);
                fg1 = _mm256_add_ps(fg1, g), fx1 = _mm256_fmadd_ps(g, t, fx1);
                i = end;
            }
            add_pd8(_mm256_add_ps(fg0, fg1), &g0, &g1);
            add_pd8(_mm256_add_ps(fx0, fx1), &x0, &x1);
        }
    }
    *sum_g = hsum_pd(g0, g1), *sum_gx = hsum_pd(x0, x1) * k.xfac;
}

/* dz = scale (g - mg - xhat mgx) = scale g - scale mg - (scale xfac mgx) t, as two FMAs. */
AVX2 __attribute__((always_inline)) static inline __m256 dz8(__m256 g, __m256 t, __m256 kv, __m256 nkmg, __m256 c1)
{
    return _mm256_fmadd_ps(c1, t, _mm256_fmadd_ps(kv, g, nkmg));
}

AVX2 __attribute__((always_inline)) static inline void backward_dz_body(const BnSaved *s, const float *dy, BnLayout l,
                                                                        int c, float mg, float mgx,
                                                                        const bool from_output, const bool act,
                                                                        float *dz)
{
    SavedConsts k = saved_consts(s);
    __m256 kv = k.scale, g, t; /* scale: gamma * invstd */
    __m256 nkmg = _mm256_set1_ps(-s->scale * mg), c1 = _mm256_set1_ps(-s->scale * k.xfac * mgx);
    /* as the forward's output pass: a layer-wide dz of BN_STREAM_MIN_BYTES or more goes past the cache */
    bool stream = pass_streams(l);
    for (int n = 0; n < l.N; n++) {
        const float *p = plane(s->t, l, n, c), *d = dy + (p - s->t);
        float *o = dz + (p - s->t);
        size_t i = 0;
        if (stream) {
            saved8(&k, from_output, act, _mm256_loadu_ps(p), _mm256_loadu_ps(d), &g, &t);
            _mm256_storeu_ps(o, dz8(g, t, kv, nkmg, c1));
            for (i = stream_start(o); i + 8 <= l.HW; i += 8) {
                saved8(&k, from_output, act, _mm256_loadu_ps(p + i), _mm256_loadu_ps(d + i), &g, &t);
                _mm256_stream_ps(o + i, dz8(g, t, kv, nkmg, c1));
            }
        }
        for (; i + 8 <= l.HW; i += 8) {
            saved8(&k, from_output, act, _mm256_loadu_ps(p + i), _mm256_loadu_ps(d + i), &g, &t);
            _mm256_storeu_ps(o + i, dz8(g, t, kv, nkmg, c1));
        }
        if (i < l.HW) {
            __m256i m = first_lanes((int)(l.HW - i));
            saved8(&k, from_output, act, _mm256_maskload_ps(p + i, m), _mm256_maskload_ps(d + i, m), &g, &t);
            _mm256_maskstore_ps(o + i, m, dz8(g, t, kv, nkmg, c1));
        }
    }
    if (stream) _mm_sfence();
}

/* One instance per (mode, activation). */
#define BN_BACKWARD_INSTANCES(FO, ACT, SUFFIX)                                                                      \
    AVX2 static void backward_sums_##SUFFIX(const BnSaved *s, const float *dy, BnLayout l, int c, double *sg,       \
                                            double *sgx)                                                            \
    {                                                                                                               \
        backward_sums_body(s, dy, l, c, FO, ACT, sg, sgx);                                                          \
    }                                                                                                               \
    AVX2 static void backward_dz_##SUFFIX(const BnSaved *s, const float *dy, BnLayout l, int c, float mg, float mgx, \
                                          float *dz)                                                                \
    {                                                                                                               \
        backward_dz_body(s, dy, l, c, mg, mgx, FO, ACT, dz);                                                        \
    }
BN_BACKWARD_INSTANCES(false, false, z)
BN_BACKWARD_INSTANCES(false, true, z_act)
BN_BACKWARD_INSTANCES(true, false, y)
BN_BACKWARD_INSTANCES(true, true, y_act)
#undef BN_BACKWARD_INSTANCES

AVX2 static void backward_sums_avx2(const BnSaved *s, const float *dy, BnLayout l, int c, double *sum_g,
                                    double *sum_gx)
{
    bool act = s->act >= 0.0f;
    if (s->from_output)
        (act ? backward_sums_y_act : backward_sums_y)(s, dy, l, c, sum_g, sum_gx);
    else
        (act ? backward_sums_z_act : backward_sums_z)(s, dy, l, c, sum_g, sum_gx);
}

AVX2 static void backward_dz_avx2(const BnSaved *s, const float *dy, BnLayout l, int c, float mg, float mgx,
                                  float *dz)
{
    bool act = s->act >= 0.0f;
    if (s->from_output)
        (act ? backward_dz_y_act : backward_dz_y)(s, dy, l, c, mg, mgx, dz);
    else
        (act ? backward_dz_z_act : backward_dz_z)(s, dy, l, c, mg, mgx, dz);
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

void bn_channel_normalize_act(const float *z, const float *r, BnLayout l, int c, float scale, float shift, float act,
                              float *y)
{
#ifdef HAVE_AVX2_KERNELS
    if (conv2d_avx2_available()) return normalize_act_avx2(z, r, l, c, scale, shift, act, y);
#endif
    normalize_act_c(z, r, l, c, scale, shift, act, y);
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
