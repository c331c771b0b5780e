/* Winograd F(6x6, 3x3), the transforms (conv2d_winograd_job.h): every 6x6 output tile of a channel is
 * A^T [ (G g G^T) . (B^T d B) ] A, d the 8x8 input patch, g the 3x3 filter, with the points 0, +-1, +-2,
 * +-1/2 and infinity: 64 multiplications per 36 outputs instead of 324 (F(4x4)'s 36 per 16 is 2.25 per
 * output, this is 1.78). The constants are the usual ones for these points (B^T's 21/4 and 17/4, G's 2/9,
 * 1/90, 32/45): the transforms are exact in real arithmetic, and their float rounding is what the tests bound.
 *
 * The patches of 8 neighbouring tiles start 6 columns apart: the 8 columns of tile k are the 8 floats at 6k,
 * so one unaligned load per tile and an 8x8 register transpose turn them into "column c of tiles 0..7"
 * vectors, and back on the way out (6 of the 8 lanes stored). */
#include "autograd/conv2d_winograd_job.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "autograd/row_load_avx2.h"
#include "tensor/leaky_avx2.h"
#include "tensor/transpose_avx2.h"

enum { TILE = 6, ALPHA = 8, XI = ALPHA * ALPHA, LANES = WINOGRAD_LANES };
typedef WinogradLanes Lanes;
typedef WinogradQuad Quad;

/* o[k*os] = (B^T d)[k] for the 8 values d[k*ds]. */
WINOGRAD_TARGET static inline void input_1d(const Lanes *d, int ds, Lanes *o, int os)
{
    Lanes d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds], d6 = d[6 * ds],
          d7 = d[7 * ds];
    Lanes a = d2 + d6 - 4.25f * d4, b = d1 + d5 - 4.25f * d3;
    Lanes c = 0.25f * d2 - 1.25f * d4 + d6, e = 0.5f * d1 - 2.5f * d3 + 2.0f * d5;
    Lanes f = 4.0f * d2 - 5.0f * d4 + d6, h = 2.0f * d1 - 2.5f * d3 + 0.5f * d5;
    o[0] = d0 - d6 + 5.25f * (d4 - d2);
    o[os] = a + b;
    o[2 * os] = a - b;
    o[3 * os] = c + e;
    o[4 * os] = c - e;
    o[5 * os] = f + h;
    o[6 * os] = f - h;
    o[7 * os] = d7 - d1 + 5.25f * (d3 - d5);
}

/* o[k*os] = (A^T m)[k], k < 6, for the 8 values m[k*ms]. */
WINOGRAD_TARGET static inline void output_1d(const Lanes *m, int ms, Lanes *o, int os)
{
    Lanes m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms], m5 = m[5 * ms], m6 = m[6 * ms];
    Lanes s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4, s56 = m5 + m6, d56 = m5 - m6;
    o[0] = m[0] + s12 + s34 + s56;
    o[os] = d12 + 2.0f * d34 + 0.5f * d56;
    o[2 * os] = s12 + 4.0f * s34 + 0.25f * s56;
    o[3 * os] = d12 + 8.0f * d34 + 0.125f * d56;
    o[4 * os] = s12 + 16.0f * s34 + 0.0625f * s56;
    o[5 * os] = d12 + 32.0f * d34 + 0.03125f * d56 + m[7 * ms];
}

/* o[k*os] = (A d)[k], k < 8, for the 6 values d[k*ds]: the adjoint of output_1d. */
WINOGRAD_TARGET static inline void output_adjoint_1d(const Lanes *d, int ds, Lanes *o, int os)
{
    Lanes d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
    Lanes e1 = d0 + d2 + d4, f1 = d1 + d3 + d5;
    Lanes e2 = d0 + 4.0f * d2 + 16.0f * d4, f2 = 2.0f * d1 + 8.0f * d3 + 32.0f * d5;
    Lanes e3 = d0 + 0.25f * d2 + 0.0625f * d4, f3 = 0.5f * d1 + 0.125f * d3 + 0.03125f * d5;
    o[0] = d0;
    o[os] = e1 + f1;
    o[2 * os] = e1 - f1;
    o[3 * os] = e2 + f2;
    o[4 * os] = e2 - f2;
    o[5 * os] = e3 + f3;
    o[6 * os] = e3 - f3;
    o[7 * os] = d5;
}

/* o[k*os] = (G g)[k], k < 8, for the 3 values g[k*gs]. */
WINOGRAD_TARGET static inline void filter_1d(const Lanes *g, int gs, Lanes *o, int os)
{
    Lanes g0 = g[0], g1 = g[gs], g2 = g[2 * gs];
    Lanes even = g0 + g2;
    o[0] = g0;
    o[os] = (-2.0f / 9) * (even + g1);
    o[2 * os] = (-2.0f / 9) * (even - g1);
    Lanes e2 = (1.0f / 90) * g0 + (2.0f / 45) * g2, o2 = (1.0f / 45) * g1;
    o[3 * os] = e2 + o2;
    o[4 * os] = e2 - o2;
    Lanes e3 = (32.0f / 45) * g0 + (8.0f / 45) * g2, o3 = (16.0f / 45) * g1;
    o[5 * os] = e3 + o3;
    o[6 * os] = e3 - o3;
    o[7 * os] = g2;
}

/* r[k*rs] = (G^T u)[k], k < 3, for the 8 values u[k*us] (the adjoint of filter_1d), in double. */
WINOGRAD_TARGET static inline void filter_adjoint_1d(const Quad *u, int us, Quad *r, int rs)
{
    Quad s12 = u[us] + u[2 * us], d12 = u[us] - u[2 * us], s34 = u[3 * us] + u[4 * us], d34 = u[3 * us] - u[4 * us];
    Quad s56 = u[5 * us] + u[6 * us], d56 = u[5 * us] - u[6 * us];
    r[0] = u[0] - 2.0 / 9 * s12 + s34 / 90 + 32.0 / 45 * s56;
    r[rs] = -2.0 / 9 * d12 + d34 / 45 + 16.0 / 45 * d56;
    r[2 * rs] = -2.0 / 9 * s12 + 2.0 / 45 * s34 + 8.0 / 45 * s56 + u[7 * us];
}

/* Six floats at p as lanes 0-5, lanes 6 and 7 zero (nothing past them is read). */
WINOGRAD_TARGET static inline __m256 load6(const float *p)
{
    __m128 hi = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i_u *)(p + 4))); /* an unaligned 8-byte load */
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p)), hi, 1);
}

/* cols[c] lane k = row[6 k + c], c < 8: tile k's patch columns are the 8 floats at 6 k. */
WINOGRAD_TARGET static inline void tile_columns(const float *row, Lanes cols[ALPHA])
{
    __m256 c[8];
    for (int k = 0; k < 8; k++) c[k] = _mm256_loadu_ps(row + k * TILE);
    transpose8_avx2(c);
    for (int k = 0; k < ALPHA; k++) cols[k] = (Lanes)c[k];
}

/* y[6 k + c] = o[c] lane k (added to y when accumulate), c < 6: the row's 6 column vectors transposed back,
 * 6 of each tile's 8 lanes stored. */
WINOGRAD_TARGET static inline void store_tile_row(const Lanes *o, float *y, bool accumulate)
{
    __m256 v[8];
    for (int c = 0; c < TILE; c++) v[c] = (__m256)o[c];
    v[6] = v[7] = _mm256_setzero_ps();
    transpose8_avx2(v);
    for (int k = 0; k < LANES; k++) store6_avx2(y + k * TILE, accumulate ? _mm256_add_ps(v[k], load6(y + k * TILE)) : v[k]);
}

/* d[c] lane k = y[6 k + c], c < 6. */
WINOGRAD_TARGET static inline void load_tile_row(const float *y, Lanes *d)
{
    __m256 v[8];
    for (int k = 0; k < LANES; k++) v[k] = load6(y + k * TILE);
    transpose8_avx2(v);
    for (int c = 0; c < TILE; c++) d[c] = (Lanes)v[c];
}

#include "autograd/conv2d_winograd_template.h"

const WinogradVariant winograd_f6x6 = {TILE, ALPHA, input_channel, output_channel, dy_channel, filter_panel, filter_grad};
#else
/* AVX2 only, and conv2d_winograd_applies says so: never chosen */
const WinogradVariant winograd_f6x6 = {6, 8, NULL, NULL, NULL, NULL, NULL};
#endif
