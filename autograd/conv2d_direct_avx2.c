/* Direct 3x3 stride-2 padding-1 convolution for few input channels (the network's stem: 3 -> 8).
 * Through im2col its GEMM has K = 27 and M = 8, shapes the 6x16 GEMM kernel wastes most of its time
 * on; here each output row is computed from its three input rows of every channel, split once into
 * even and odd columns so that every tap becomes a contiguous vector load:
 *     x[2 ox - 1] = odd[ox],  x[2 ox] = even[ox],  x[2 ox + 1] = odd[ox + 1]
 * where odd[i] holds x[2 i - 1] (odd[0] is the left padding). Outputs are done COLS columns at a
 * time so the split rows live on the stack. */
#include "autograd/conv2d_avx2.h"

#if defined(__x86_64__)
#include <immintrin.h>

enum { COLS = 128, ROW_FLOATS = COLS + 16, CO_BLOCK = 4 };

#define TARGET __attribute__((target("avx2,fma")))

/* Even-indexed floats of x[0..15], in order. */
TARGET static inline __m256 even_of_16(const float *x)
{
    __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8), _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
}

/* even[i] = xr[x0 + 2 i] for i < cols, odd[i] = xr[x0 + 2 i - 1] for i <= cols; zero outside the row
 * [0, W) and beyond those counts, as far as the 16-column blocks read. */
TARGET static void split_row(const float *xr, int W, int x0, int cols, float *even, float *odd)
{
    int i = 0;
    /* vector body: needs x0 + 2 i - 1 >= 0 and the loads' last column x0 + 2 i + 15 < W */
    if (x0 == 0) {
        even[0] = xr[0];
        odd[0] = 0.0f;
        i = 1;
    }
    for (; i + 8 <= cols && x0 + 2 * i + 15 < W; i += 8) {
        _mm256_storeu_ps(even + i, even_of_16(xr + x0 + 2 * i));
        _mm256_storeu_ps(odd + i, even_of_16(xr + x0 + 2 * i - 1));
    }
    int fill = (cols + 15) / 16 * 16 + 1;
    for (; i < fill; i++) {
        int xe = x0 + 2 * i, xo = xe - 1;
        even[i] = i < cols && xe < W ? xr[xe] : 0.0f;
        odd[i] = i <= cols && xo >= 0 && xo < W ? xr[xo] : 0.0f;
    }
}

/* Accumulates the 27 (x Cin) taps of `nco` output channels over 16 output columns at `ox`. */
TARGET static inline void taps_block(const float (*even)[ROW_FLOATS], const float (*odd)[ROW_FLOATS], int rows,
                                     const float *w, int nco, int ox, __m256 acc[CO_BLOCK][2])
{
    for (int r = 0; r < rows; r++) { /* r = ci * 3 + ki */
        __m256 o0 = _mm256_loadu_ps(odd[r] + ox), o1 = _mm256_loadu_ps(odd[r] + ox + 8);
        __m256 e0 = _mm256_loadu_ps(even[r] + ox), e1 = _mm256_loadu_ps(even[r] + ox + 8);
        __m256 p0 = _mm256_loadu_ps(odd[r] + ox + 1), p1 = _mm256_loadu_ps(odd[r] + ox + 9);
        for (int j = 0; j < nco; j++) {
            const float *wr = w + ((size_t)j * rows + r) * 3;
            __m256 w0 = _mm256_broadcast_ss(wr), w1 = _mm256_broadcast_ss(wr + 1), w2 = _mm256_broadcast_ss(wr + 2);
            acc[j][0] = _mm256_fmadd_ps(w0, o0, acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(w0, o1, acc[j][1]);
            acc[j][0] = _mm256_fmadd_ps(w1, e0, acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(w1, e1, acc[j][1]);
            acc[j][0] = _mm256_fmadd_ps(w2, p0, acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(w2, p1, acc[j][1]);
        }
    }
}

TARGET static inline void store_block(float *y, size_t plane, int nco, const float *b, float act, int ox, int n,
                                      __m256 acc[CO_BLOCK][2])
{
    __m256 zero = _mm256_setzero_ps(), slope = _mm256_set1_ps(act);
    for (int j = 0; j < nco; j++)
        for (int h = 0; h < 2; h++) {
            __m256 v = _mm256_add_ps(acc[j][h], _mm256_set1_ps(b ? b[j] : 0.0f));
            if (act >= 0.0f) v = _mm256_add_ps(_mm256_max_ps(v, zero), _mm256_mul_ps(slope, _mm256_min_ps(v, zero)));
            int at = ox + 8 * h, left = n - at;
            float *dst = y + (size_t)j * plane + at;
            if (left >= 8) {
                _mm256_storeu_ps(dst, v);
            } else if (left > 0) {
                float tmp[8];
                _mm256_storeu_ps(tmp, v);
                for (int k = 0; k < left; k++) dst[k] = tmp[k];
            }
        }
}

TARGET void conv3x3_s2_row_avx2(const float *x, int Cin, int H, int W, const float *w, const float *b, int Cout,
                                float act, float *y, int Ho, int Wo, int oy)
{
    float even[CONV3X3_S2_MAX_CIN * 3][ROW_FLOATS] __attribute__((aligned(32)));
    float odd[CONV3X3_S2_MAX_CIN * 3][ROW_FLOATS] __attribute__((aligned(32)));
    int rows = Cin * 3;
    size_t plane = (size_t)Ho * Wo;
    for (int c0 = 0; c0 < Wo; c0 += COLS) {
        int cols = Wo - c0 < COLS ? Wo - c0 : COLS;
        for (int r = 0; r < rows; r++) {
            int ci = r / 3, iy = 2 * oy - 1 + r % 3;
            float *e = even[r], *o = odd[r];
            if (iy < 0 || iy >= H) {
                for (int i = 0; i < ROW_FLOATS; i++) e[i] = o[i] = 0.0f;
                continue;
            }
            split_row(x + ((size_t)ci * H + iy) * W, W, 2 * c0, cols, e, o);
        }
        for (int co = 0; co < Cout; co += CO_BLOCK) {
            int nco = Cout - co < CO_BLOCK ? Cout - co : CO_BLOCK;
            const float *wb = w + (size_t)co * rows * 3;
            float *yb = y + (size_t)co * plane + (size_t)oy * Wo + c0;
            for (int ox = 0; ox < cols; ox += 16) {
                __m256 acc[CO_BLOCK][2];
                for (int j = 0; j < CO_BLOCK; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
                if (nco == CO_BLOCK)
                    taps_block(even, odd, rows, wb, CO_BLOCK, ox, acc);
                else
                    taps_block(even, odd, rows, wb, nco, ox, acc);
                store_block(yb, plane, nco, b ? b + co : NULL, act, ox, cols, acc);
            }
        }
    }
}
#else
void conv3x3_s2_row_avx2(const float *x, int Cin, int H, int W, const float *w, const float *b, int Cout,
                         float act, float *y, int Ho, int Wo, int oy)
{
    (void)x, (void)Cin, (void)H, (void)W, (void)w, (void)b, (void)Cout, (void)act, (void)y, (void)Ho, (void)Wo,
        (void)oy;
}
#endif
