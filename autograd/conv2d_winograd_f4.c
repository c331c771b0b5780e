/* Winograd F(4x4, 3x3), the transforms (conv2d_winograd_job.h): every 4x4 output tile of a channel is
 * A^T [ (G g G^T) . (B^T d B) ] A, d the 6x6 input patch, g the 3x3 filter (Lavin & Gray's points 0, +-1,
 * +-2, infinity): 36 multiplications per 16 outputs instead of 144. */
#include "autograd/conv2d_winograd_job.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "autograd/row_load_avx2.h"
#include "tensor/leaky_avx2.h"
#include "tensor/transpose_avx2.h"

enum { TILE = 4, ALPHA = 6, XI = ALPHA * ALPHA, LANES = WINOGRAD_LANES };
typedef WinogradLanes Lanes;
typedef WinogradQuad Quad;

/* o[k*os] = (B^T d)[k] for the 6 values d[k*ds]. */
WINOGRAD_TARGET static inline void input_1d(const Lanes *d, int ds, Lanes *o, int os)
{
    Lanes d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
    o[0] = 4.0f * d0 - 5.0f * d2 + d4;
    o[os] = d3 + d4 - 4.0f * (d1 + d2);
    o[2 * os] = d4 - d3 + 4.0f * (d1 - d2);
    o[3 * os] = d4 - d2 + 2.0f * (d3 - d1);
    o[4 * os] = d4 - d2 + 2.0f * (d1 - d3);
    o[5 * os] = 4.0f * d1 - 5.0f * d3 + d5;
}

/* o[k*os] = (A^T m)[k] for the 6 values m[k*ms]. */
WINOGRAD_TARGET static inline void output_1d(const Lanes *m, int ms, Lanes *o, int os)
{
    Lanes m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms];
    Lanes s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
    o[0] = m[0] + s12 + s34;
    o[os] = d12 + 2.0f * d34;
    o[2 * os] = s12 + 4.0f * s34;
    o[3 * os] = d12 + 8.0f * d34 + m[5 * ms];
}

/* Four floats from lo and four from hi as one register. */
WINOGRAD_TARGET static inline __m256 load_pair(const float *lo, const float *hi)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(hi), 1);
}

/* 4x4 transpose within each 128-bit lane: afterwards a, b, c, d hold elements 0, 1, 2, 3 of the
 * inputs' lanes. */
WINOGRAD_TARGET static inline void transpose_lanes4(__m256 *a, __m256 *b, __m256 *c, __m256 *d)
{
    __m256 t0 = _mm256_unpacklo_ps(*a, *b), t1 = _mm256_unpackhi_ps(*a, *b);
    __m256 t2 = _mm256_unpacklo_ps(*c, *d), t3 = _mm256_unpackhi_ps(*c, *d);
    *a = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    *b = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    *c = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    *d = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
}

/* cols[c][k] = row[4 k + c] for the 8 tiles k whose patches start at row[0], row[4], ..., c < 6. */
WINOGRAD_TARGET static inline void tile_columns(const float *row, Lanes cols[ALPHA])
{
    __m256 a = load_pair(row, row + 16), b = load_pair(row + 4, row + 20);
    __m256 c = load_pair(row + 8, row + 24), d = load_pair(row + 12, row + 28);
    __m256 e = b, f = c, g = d, h = load_pair(row + 16, row + 32); /* columns 4, 5 = 0, 1 of the next tile */
    transpose_lanes4(&a, &b, &c, &d);
    transpose_lanes4(&e, &f, &g, &h);
    cols[0] = (Lanes)a, cols[1] = (Lanes)b, cols[2] = (Lanes)c, cols[3] = (Lanes)d, cols[4] = (Lanes)e,
    cols[5] = (Lanes)f;
}

/* o[k*os] = (G g)[k] for the 3 values g[k*gs]. */
WINOGRAD_TARGET static inline void filter_1d(const Lanes *g, int gs, Lanes *o, int os)
{
    Lanes g0 = g[0], g1 = g[gs], g2 = g[2 * gs];
    Lanes even = (1.0f / 6) * (g0 + g2), odd = (1.0f / 6) * g1;
    o[0] = 0.25f * g0;
    o[os] = -(even + odd);
    o[2 * os] = odd - even;
    o[3 * os] = (1.0f / 24) * g0 + (1.0f / 12) * g1 + (1.0f / 6) * g2;
    o[4 * os] = (1.0f / 24) * g0 - (1.0f / 12) * g1 + (1.0f / 6) * g2;
    o[5 * os] = g2;
}

/* o[k*os] = (A d)[k], k < 6, for the 4 values d[k*ds]: the adjoint of output_1d. */
WINOGRAD_TARGET static inline void output_adjoint_1d(const Lanes *d, int ds, Lanes *o, int os)
{
    Lanes d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds];
    Lanes e = d0 + d2, f = d1 + d3, e4 = d0 + 4.0f * d2, f4 = 2.0f * d1 + 8.0f * d3;
    o[0] = d0;
    o[os] = e + f;
    o[2 * os] = e - f;
    o[3 * os] = e4 + f4;
    o[4 * os] = e4 - f4;
    o[5 * os] = d3;
}

/* r[k] = (G^T u)[k], k < 3, for the 6 values u[k*us] (the adjoint of filter_1d). */
WINOGRAD_TARGET static inline void filter_adjoint_1d(const Quad *u, int us, Quad *r, int rs)
{
    Quad u1 = u[us], u2 = u[2 * us], u3 = u[3 * us], u4 = u[4 * us];
    r[0] = 0.25 * u[0] - (u1 + u2) / 6 + (u3 + u4) / 24;
    r[rs] = (u2 - u1) / 6 + (u3 - u4) / 12;
    r[2 * rs] = (u3 + u4 - u1 - u2) / 6 + u[5 * us];
}

/* y[4 k + c] = o[c] lane k (added to y when accumulate), c < 4: the row's 4 column vectors transposed back into
 * 32 contiguous outputs (tiles k and k + 4 share a register). */
WINOGRAD_TARGET static inline void store_tile_row(const Lanes *o, float *y, bool accumulate)
{
    __m256 a = (__m256)o[0], b = (__m256)o[1], c = (__m256)o[2], d = (__m256)o[3];
    transpose_lanes4(&a, &b, &c, &d);
    if (accumulate) {
        a = _mm256_add_ps(a, _mm256_loadu2_m128(y + 16, y));
        b = _mm256_add_ps(b, _mm256_loadu2_m128(y + 20, y + 4));
        c = _mm256_add_ps(c, _mm256_loadu2_m128(y + 24, y + 8));
        d = _mm256_add_ps(d, _mm256_loadu2_m128(y + 28, y + 12));
    }
    _mm256_storeu2_m128(y + 16, y, a);
    _mm256_storeu2_m128(y + 20, y + 4, b);
    _mm256_storeu2_m128(y + 24, y + 8, c);
    _mm256_storeu2_m128(y + 28, y + 12, d);
}

/* d[c] lane k = y[4 k + c], c < 4. */
WINOGRAD_TARGET static inline void load_tile_row(const float *y, Lanes *d)
{
    __m256 a = _mm256_loadu2_m128(y + 16, y), b = _mm256_loadu2_m128(y + 20, y + 4);
    __m256 c = _mm256_loadu2_m128(y + 24, y + 8), e = _mm256_loadu2_m128(y + 28, y + 12);
    transpose_lanes4(&a, &b, &c, &e);
    d[0] = (Lanes)a, d[1] = (Lanes)b, d[2] = (Lanes)c, d[3] = (Lanes)e;
}

#include "autograd/conv2d_winograd_template.h"

const WinogradVariant winograd_f4x4 = {TILE, ALPHA, input_channel, output_channel, dy_channel, filter_panel, filter_grad};
#else
/* AVX2 only, and conv2d_winograd_applies says so: never chosen */
const WinogradVariant winograd_f4x4 = {4, 6, NULL, NULL, NULL, NULL, NULL};
#endif
