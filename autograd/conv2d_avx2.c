/* AVX2/FMA kernels of the CPU convolution, chosen at run time (conv2d_avx2_available):
 * - depthwise 3x3 padding-1 forward of one plane at stride 1 and 2, 8 columns of 4 rows per step (MobileNet's
 *   depthwise layers), bias and activation applied while the outputs are in registers;
 * - direct 3x3 stride-2 padding-1 convolution for few input channels (the network's stem: 3 -> 8).
 *   Through im2col its GEMM has K = 27 and M = 8, shapes the 6x16 GEMM kernel wastes most of its time
 *   on; here each output row is computed from its three input rows of every channel, split once into
 *   even and odd columns so that every tap becomes a contiguous vector load:
 *       x[2 ox - 1] = odd[ox],  x[2 ox] = even[ox],  x[2 ox + 1] = odd[ox + 1]
 *   where odd[i] holds x[2 i - 1] (odd[0] is the left padding). Outputs are done COLS columns at a
 *   time so the split rows live on the stack. */
#include "autograd/conv2d_avx2.h"
#include "autograd/row_load_avx2.h"
#include "tensor/hsum_avx2.h"
#include "tensor/leaky_avx2.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <limits.h>
#include <string.h>

bool conv2d_avx2_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
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

/* One 3-tap row of the stencil: acc + w0 a + w1 b + w2 c. The nine taps of an output are summed in one
 * chain, in order (as a direct sum does): splitting an output's sum into independent chains moved the
 * training-step gradient of the layer before it, which is ill-conditioned (see the note of issue 5),
 * from 2e-4 to 4e-2 of the PyTorch reference. Independent chains come from several outputs at once
 * instead (STENCIL_ROWS). */
__attribute__((target("avx2,fma"))) static inline __m256 taps3(__m256 w0, __m256 a, __m256 w1, __m256 b, __m256 w2,
                                                               __m256 c, __m256 acc)
{
    return _mm256_fmadd_ps(w2, c, _mm256_fmadd_ps(w1, b, _mm256_fmadd_ps(w0, a, acc)));
}

/* Even- and odd-indexed floats of the 16 in lo, hi, in the lane order [0 1 4 5 2 3 6 7] that one
 * in-lane shuffle leaves them in: the stride-2 stencil sums every tap in that order (the sums are
 * elementwise, so the order of lanes changes nothing) and puts the lanes back once per output vector
 * (in_order) instead of twice per input row. */
__attribute__((target("avx2,fma"))) static inline __m256 even_of(__m256 lo, __m256 hi)
{
    return _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
}

__attribute__((target("avx2,fma"))) static inline __m256 odd_of(__m256 lo, __m256 hi)
{
    return _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
}

__attribute__((target("avx2,fma"))) static inline __m256 in_order(__m256 v)
{
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xD8));
}

/* The three taps of one stencil row for the 8 outputs from ow: input columns stride * ow - 1 + 0, 1,
 * 2 (every other column at stride 2, lanes as even_of leaves them), zero outside the row; all zero for
 * a padding row (NULL), which adds exactly nothing to the accumulators. */
__attribute__((target("avx2,fma"), always_inline)) static inline void row_taps(const float *r, int W, int ow,
                                                                               const int stride, const bool edge,
                                                                               const bool pad, __m256 *a, __m256 *b,
                                                                               __m256 *c)
{
    if (pad && !r) {
        *a = *b = *c = _mm256_setzero_ps();
    } else if (stride == 1) {
        *a = load_cols(r, ow - 1, W, edge), *b = load_cols(r, ow, W, edge), *c = load_cols(r, ow + 1, W, edge);
    } else {
        __m256 lo = load_cols(r, 2 * ow - 1, W, edge), hi = load_cols(r, 2 * ow + 7, W, edge);
        *a = even_of(lo, hi), *b = odd_of(lo, hi);
        *c = even_of(load_cols(r, 2 * ow + 1, W, edge), load_cols(r, 2 * ow + 9, W, edge));
    }
}

/* Output rows computed together: each sum is one chain of nine dependent FMAs, so one row alone
 * waits on FMA latency; four rows give four independent chains, and the input rows they share are
 * loaded once. Every output's taps are still summed in the order a direct sum takes (stencil row 0
 * to 2, taps left to right). */
enum { STENCIL_ROWS = 4 };

/* Outputs [ow, ow + 8) of `rows` (1 or STENCIL_ROWS) consecutive output rows from input rows r[0 ..
 * stride * (rows - 1) + 2]: each input row's taps feed every output row whose stencil covers it. */
__attribute__((target("avx2,fma"), always_inline)) static inline void stencil8(
    const float *const r[], int W, int ow, const int stride, const bool edge, const bool pad, const int rows,
    const __m256 wv[9], __m256 vb, __m256 slope, float *yr, int Wo)
{
    __m256 acc[STENCIL_ROWS];
#pragma GCC unroll 4
    for (int j = 0; j < rows; j++) acc[j] = vb;
#pragma GCC unroll 9
    for (int i = 0; i < stride * (rows - 1) + 3; i++) {
        __m256 a, b, c;
        row_taps(r[i], W, ow, stride, edge, pad, &a, &b, &c);
#pragma GCC unroll 4
        for (int j = 0; j < rows; j++) {
            int ki = i - stride * j; /* the stencil row input row i is for output row j */
            if (ki >= 0 && ki < 3) acc[j] = taps3(wv[3 * ki], a, wv[3 * ki + 1], b, wv[3 * ki + 2], c, acc[j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < rows; j++) {
        __m256 v = leaky_avx2(stride == 2 ? in_order(acc[j]) : acc[j], slope);
        if (edge)
            store_outputs(yr + (long)j * Wo, Wo, ow, v);
        else /* an interior vector's 8 outputs all lie inside the row (see inner_end) */
            _mm256_storeu_ps(yr + (long)j * Wo + ow, v);
    }
}

/* One step of `rows` output rows from oh (the first of them at y): the interior vectors without bounds
 * checks, the edges with; rows that read no padding row (!pad) without a check for one. */
__attribute__((target("avx2,fma"), always_inline)) static inline void stencil_rows(
    const float *x, int H, int W, int oh, const int stride, const bool pad, const int rows, int Wo, int inner_end,
    const __m256 wv[9], __m256 vb, __m256 slope, float *y)
{
    const float *r[2 * STENCIL_ROWS + 1];
    for (int k = 0; k < stride * (rows - 1) + 3; k++) {
        int ih = stride * oh - 1 + k;
        r[k] = ih >= 0 && ih < H ? x + (long)ih * W : NULL;
    }
    float *yr = y;
    stencil8(r, W, 0, stride, true, pad, rows, wv, vb, slope, yr, Wo);
    int ow = 8;
    for (; ow < inner_end; ow += 8) stencil8(r, W, ow, stride, false, pad, rows, wv, vb, slope, yr, Wo);
    for (; ow < Wo; ow += 8) stencil8(r, W, ow, stride, true, pad, rows, wv, vb, slope, yr, Wo);
}

/* The plane kernel for one stride; inlined with a constant stride so each gets its own loop. Output
 * row oh reads input rows stride * oh - 1 to stride * oh + 1: only the first and last output rows can
 * touch the padding, and they go one at a time. */
__attribute__((target("avx2,fma"), always_inline)) static inline void depthwise3x3_plane(
    const float *x, int H, int W, const float *w, float bias, float act, float *y, const int stride, int Wo, int oh0,
    int oh1)
{
    __m256 wv[9];
    for (int k = 0; k < 9; k++) wv[k] = _mm256_set1_ps(w[k]);
    __m256 vb = _mm256_set1_ps(bias), slope = _mm256_set1_ps(act < 0.0f ? 1.0f : act);
    /* vectors from ow = 8 on read inside the row until stride * ow + 8 stride + 1 passes W */
    int inner_end = 8;
    while (inner_end < Wo && stride * inner_end + 8 * stride + 1 <= W) inner_end += 8;
    int oh = oh0;
    if (oh == 0 && oh < oh1) stencil_rows(x, H, W, 0, stride, true, 1, Wo, inner_end, wv, vb, slope, y), oh++;
    for (; oh + STENCIL_ROWS <= oh1 && stride * (oh + STENCIL_ROWS - 1) + 1 < H; oh += STENCIL_ROWS)
        stencil_rows(x, H, W, oh, stride, false, STENCIL_ROWS, Wo, inner_end, wv, vb, slope, y + (long)(oh - oh0) * Wo);
    for (; oh < oh1; oh++)
        stencil_rows(x, H, W, oh, stride, true, 1, Wo, inner_end, wv, vb, slope, y + (long)(oh - oh0) * Wo);
}

__attribute__((target("avx2,fma"))) void depthwise3x3_plane_avx2(const float *x, int H, int W, const float *w,
                                                                 float bias, float act, float *y, int stride, int Wo,
                                                                 int oh0, int oh1)
{
    if (stride == 1)
        depthwise3x3_plane(x, H, W, w, bias, act, y, 1, Wo, oh0, oh1);
    else
        depthwise3x3_plane(x, H, W, w, bias, act, y, 2, Wo, oh0, oh1);
}

/* The stem kernel: COLS output columns per pass, CO_BLOCK output channels per register block. */
enum { COLS = 128, ROW_FLOATS = COLS + 16, CO_BLOCK = 4 };

/* even[i] = xr[x0 + 2 i] for i < cols, odd[i] = xr[x0 + 2 i - 1] for i <= cols; zero outside the row
 * [0, W) and beyond those counts, as far as the 16-column blocks read. One pair of loads gives 8 of
 * each: odd[i + 1] = xr[x0 + 2 i + 1] is the odd half of the same 16 floats. */
__attribute__((target("avx2,fma"))) static void split_row(const float *xr, int W, int x0, int cols, float *even,
                                                          float *odd)
{
    odd[0] = x0 >= 1 && x0 - 1 < W ? xr[x0 - 1] : 0.0f;
    int i = 0;
    for (; i + 8 <= cols && x0 + 2 * i + 15 < W; i += 8) {
        __m256 lo = _mm256_loadu_ps(xr + x0 + 2 * i), hi = _mm256_loadu_ps(xr + x0 + 2 * i + 8);
        __m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
        _mm256_storeu_ps(even + i, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
        _mm256_storeu_ps(odd + i + 1, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8)));
    }
    int fill = (cols + 15) / 16 * 16 + 1;
    for (; i < fill; i++) {
        int xe = x0 + 2 * i, xo = xe + 1; /* odd[i + 1] */
        even[i] = i < cols && xe < W ? xr[xe] : 0.0f;
        odd[i + 1] = i + 1 <= cols && xo < W ? xr[xo] : 0.0f;
    }
}

/* Stores a block's 16 columns of nco channels: act(acc + bias) (slope 1 without an activation). */
__attribute__((target("avx2,fma"), always_inline)) static inline void store_block(float *y, size_t plane, int nco,
                                                                                  const float *b, float act, int ox,
                                                                                  int n, const __m256 acc[CO_BLOCK][2])
{
    __m256 slope = _mm256_set1_ps(act >= 0.0f ? act : 1.0f);
    for (int j = 0; j < nco; j++) {
        __m256 bias = _mm256_set1_ps(b ? b[j] : 0.0f);
        for (int h = 0; h < 2; h++)
            store_outputs(y + (size_t)j * plane, n, ox + 8 * h, leaky_avx2(_mm256_add_ps(acc[j][h], bias), slope));
    }
}

/* One register block of nco <= CO_BLOCK channels x 16 columns; split row r of the taps is
 * slot[r] of even/odd (r = ci * 3 + ki). The accumulators are locals rather than an array passed to
 * helpers, which GCC kept on the stack. */
__attribute__((target("avx2,fma"), always_inline)) static inline void conv_block(
    const float (*even)[ROW_FLOATS], const float (*odd)[ROW_FLOATS], const int *slot, int rows, const float *w,
    int nco, int ox, float *y, size_t plane, const float *b, float act, int cols)
{
    __m256 z = _mm256_setzero_ps();
    __m256 a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z;
    size_t wstride = (size_t)rows * 3; /* between channels' weights */
    for (int r = 0; r < rows; r++) {
        for (int k = 0; k < 3; k++) {
            /* tap k reads odd[ox], even[ox], odd[ox + 1]: two input vectors, then every channel's weight
             * (8 accumulators, 2 inputs and a weight fit the 16 registers) */
            const float *src = k == 1 ? even[slot[r]] + ox : odd[slot[r]] + ox + k / 2;
            __m256 i0 = _mm256_loadu_ps(src), i1 = _mm256_loadu_ps(src + 8);
            const float *wk = w + (size_t)r * 3 + k;
            __m256 wv = _mm256_broadcast_ss(wk);
            a00 = _mm256_fmadd_ps(wv, i0, a00), a01 = _mm256_fmadd_ps(wv, i1, a01);
            if (nco > 1) {
                wv = _mm256_broadcast_ss(wk + wstride);
                a10 = _mm256_fmadd_ps(wv, i0, a10), a11 = _mm256_fmadd_ps(wv, i1, a11);
            }
            if (nco > 2) {
                wv = _mm256_broadcast_ss(wk + 2 * wstride);
                a20 = _mm256_fmadd_ps(wv, i0, a20), a21 = _mm256_fmadd_ps(wv, i1, a21);
            }
            if (nco > 3) {
                wv = _mm256_broadcast_ss(wk + 3 * wstride);
                a30 = _mm256_fmadd_ps(wv, i0, a30), a31 = _mm256_fmadd_ps(wv, i1, a31);
            }
        }
    }
    const __m256 acc[CO_BLOCK][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
    store_block(y, plane, nco, b, act, ox, cols, acc);
}

__attribute__((target("avx2,fma"))) void conv3x3_s2_rows_avx2(const float *x, int Cin, int H, int W, const float *w,
                                                              const float *b, int Cout, float act, float *y, int Ho,
                                                              int Wo, int oy0, int oy1)
{
    /* split input rows, three per channel in a ring: output row oy reads input rows 2 oy - 1 .. 2 oy + 1,
     * the next one reuses 2 oy + 1, so each row is split once per column pass */
    float even[CONV3X3_S2_MAX_CIN * 3][ROW_FLOATS] __attribute__((aligned(32)));
    float odd[CONV3X3_S2_MAX_CIN * 3][ROW_FLOATS] __attribute__((aligned(32)));
    int rows = Cin * 3, slot[CONV3X3_S2_MAX_CIN * 3];
    size_t plane = (size_t)Ho * Wo;
    for (int c0 = 0; c0 < Wo; c0 += COLS) {
        int cols = Wo - c0 < COLS ? Wo - c0 : COLS;
        int held[3] = {INT_MIN, INT_MIN, INT_MIN}; /* input row in each ring slot */
        for (int oy = oy0; oy < oy1; oy++) {
            for (int ki = 0; ki < 3; ki++) {
                int iy = 2 * oy - 1 + ki, ring = (iy + 3) % 3; /* iy >= -1 */
                for (int ci = 0; ci < Cin; ci++) slot[ci * 3 + ki] = ci * 3 + ring;
                if (held[ring] == iy) continue;
                held[ring] = iy;
                for (int ci = 0; ci < Cin; ci++) {
                    float *e = even[ci * 3 + ring], *o = odd[ci * 3 + ring];
                    if (iy < 0 || iy >= H) {
                        for (int i = 0; i < ROW_FLOATS; i++) e[i] = o[i] = 0.0f;
                        continue;
                    }
                    split_row(x + ((size_t)ci * H + iy) * W, W, 2 * c0, cols, e, o);
                }
            }
            for (int co = 0; co < Cout; co += CO_BLOCK) {
                int nco = Cout - co < CO_BLOCK ? Cout - co : CO_BLOCK;
                const float *wb = w + (size_t)co * rows * 3;
                float *yb = y + (size_t)co * plane + (size_t)oy * Wo + c0;
                for (int ox = 0; ox < cols; ox += 16) {
                    if (nco == CO_BLOCK)
                        conv_block(even, odd, slot, rows, wb, CO_BLOCK, ox, yb, plane, b ? b + co : NULL, act, cols);
                    else
                        conv_block(even, odd, slot, rows, wb, nco, ox, yb, plane, b ? b + co : NULL, act, cols);
                }
            }
        }
    }
}
/* The stem's weight gradient over output rows [oy_begin, oy_end) of one image, output channels co0 ..
 * co0 + nco - 1: acc[(j * Cin + ci) * 9 + ki * 3 + kj] += sum over (oy, ox) of dy[co0 + j][oy][ox] x[ci]
 * [2 oy - 1 + ki][2 ox - 1 + kj]. Input rows are split into even and odd columns as the forward splits them,
 * so the three taps of a row are contiguous loads. Output rows go in chunks of STEM_GRAD_ROWS: the chunk's
 * input rows are split once for every output channel (each used by up to two output rows and three taps;
 * splitting per output row and tap had been 29% of the layer's backward, and splitting per block of
 * channels read the image once per block), then per (channel block, ci, ki) 4 channels x 3 taps of vector
 * sums (12 accumulators) run down the chunk's rows and are added to acc in double once per chunk. */
enum { STEM_GRAD_ROWS = 8, STEM_SPLIT_ROWS = 2 * STEM_GRAD_ROWS + 1 };

__attribute__((target("avx2,fma"))) void conv3x3_s2_backward_weight_avx2(const float *x, int Cin, int H, int W,
                                                                         const float *dy, size_t dy_plane, int co0,
                                                                         int nco, int oy_begin, int oy_end, int Wo,
                                                                         double *acc)
{
    /* [ci][row of the chunk] split rows, even and odd (Cin <= CONV3X3_S2_MAX_CIN: at most 160 KB of stack) */
    float even[Cin][STEM_SPLIT_ROWS][ROW_FLOATS] __attribute__((aligned(32)));
    float odd[Cin][STEM_SPLIT_ROWS][ROW_FLOATS] __attribute__((aligned(32)));
    for (int c0 = 0; c0 < Wo; c0 += COLS) {
        int cols = Wo - c0 < COLS ? Wo - c0 : COLS;
        __m256i mask_last = first_lanes(cols % 8 ? cols % 8 : 8);
        for (int oy0 = oy_begin; oy0 < oy_end; oy0 += STEM_GRAD_ROWS) {
            int oy1 = oy0 + STEM_GRAD_ROWS < oy_end ? oy0 + STEM_GRAD_ROWS : oy_end;
            int n_rows = 2 * (oy1 - oy0) + 1; /* input rows 2 oy0 - 1 .. 2 oy1 - 1 */
            for (int ci = 0; ci < Cin; ci++)
                for (int r = 0; r < n_rows; r++) {
                    int iy = 2 * oy0 - 1 + r;
                    if (iy < 0 || iy >= H) {
                        memset(even[ci][r], 0, sizeof even[ci][r]);
                        memset(odd[ci][r], 0, sizeof odd[ci][r]);
                    } else {
                        split_row(x + ((size_t)ci * H + iy) * W, W, 2 * c0, cols, even[ci][r], odd[ci][r]);
                    }
                }
            for (int b0 = 0; b0 < nco; b0 += CO_BLOCK) {
                int nb = nco - b0 < CO_BLOCK ? nco - b0 : CO_BLOCK;
                for (int ci = 0; ci < Cin; ci++)
                    for (int ki = 0; ki < 3; ki++) {
                        __m256 z = _mm256_setzero_ps();
                        __m256 a00 = z, a01 = z, a02 = z, a10 = z, a11 = z, a12 = z, a20 = z, a21 = z, a22 = z,
                               a30 = z, a31 = z, a32 = z;
                        for (int oy = oy0; oy < oy1; oy++) {
                            const float *ev = even[ci][2 * (oy - oy0) + ki], *od = odd[ci][2 * (oy - oy0) + ki];
                            const float *d[CO_BLOCK];
                            for (int j = 0; j < CO_BLOCK; j++)
                                d[j] = dy + (size_t)(co0 + b0 + (j < nb ? j : 0)) * dy_plane +
                                       (size_t)(oy - oy_begin) * Wo + c0;
                            for (int ox = 0; ox < cols; ox += 8) {
                                /* taps kj = 0, 1, 2 read x[2 ox - 1], x[2 ox], x[2 ox + 1]: odd[ox], even[ox],
                                 * odd[ox + 1]; the split rows are zero past cols, and dy lanes past cols are
                                 * masked off */
                                __m256 t0 = _mm256_loadu_ps(od + ox), t1 = _mm256_loadu_ps(ev + ox),
                                       t2 = _mm256_loadu_ps(od + ox + 1);
                                bool tail = ox + 8 > cols;
#define DY(j) (tail ? _mm256_maskload_ps(d[j] + ox, mask_last) : _mm256_loadu_ps(d[j] + ox))
                                __m256 v = DY(0);
                                a00 = _mm256_fmadd_ps(v, t0, a00), a01 = _mm256_fmadd_ps(v, t1, a01), a02 = _mm256_fmadd_ps(v, t2, a02);
                                v = DY(1);
                                a10 = _mm256_fmadd_ps(v, t0, a10), a11 = _mm256_fmadd_ps(v, t1, a11), a12 = _mm256_fmadd_ps(v, t2, a12);
                                v = DY(2);
                                a20 = _mm256_fmadd_ps(v, t0, a20), a21 = _mm256_fmadd_ps(v, t1, a21), a22 = _mm256_fmadd_ps(v, t2, a22);
                                v = DY(3);
                                a30 = _mm256_fmadd_ps(v, t0, a30), a31 = _mm256_fmadd_ps(v, t1, a31), a32 = _mm256_fmadd_ps(v, t2, a32);
#undef DY
                            }
                        }
                        const __m256 sums[CO_BLOCK][3] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22}, {a30, a31, a32}};
                        for (int j = 0; j < nb; j++)
                            for (int kj = 0; kj < 3; kj++)
                                acc[((size_t)(b0 + j) * Cin + ci) * 9 + ki * 3 + kj] += hsum_avx2(sums[j][kj]);
                    }
            }
        }
    }
}
#else
bool conv2d_avx2_available(void) { return false; }
void depthwise3x3_plane_avx2(const float *x, int H, int W, const float *w, float bias, float act, float *y, int stride,
                             int Wo, int oh0, int oh1)
{
    (void)x, (void)H, (void)W, (void)w, (void)bias, (void)act, (void)y, (void)stride, (void)Wo, (void)oh0, (void)oh1;
}
void conv3x3_s2_rows_avx2(const float *x, int Cin, int H, int W, const float *w, const float *b, int Cout,
                          float act, float *y, int Ho, int Wo, int oy0, int oy1)
{
    (void)x, (void)Cin, (void)H, (void)W, (void)w, (void)b, (void)Cout, (void)act, (void)y, (void)Ho, (void)Wo,
        (void)oy0, (void)oy1;
}
void conv3x3_s2_backward_weight_avx2(const float *x, int Cin, int H, int W, const float *dy, size_t dy_plane, int co0,
                                     int nco, int oy_begin, int oy_end, int Wo, double *acc)
{
    (void)x, (void)Cin, (void)H, (void)W, (void)dy, (void)dy_plane, (void)co0, (void)nco, (void)oy_begin,
        (void)oy_end, (void)Wo, (void)acc;
}
#endif
