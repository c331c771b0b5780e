/* The transforms' skeletons, shared by the Winograd variants (conv2d_winograd_job.h): each variant's file
 * defines TILE, ALPHA, XI = ALPHA^2, LANES, the Lanes and Quad types and its pieces, then includes this file
 * once, which defines the variant's five pool tasks (input_channel, filter_panel, output_channel, dy_channel,
 * filter_grad). The pieces, on LANES = 8 tiles at a time:
 *   input_1d(d, ds, o, os)          o[k*os] = (B^T d)[k], k < ALPHA, for ALPHA values d[k*ds]
 *   output_1d(m, ms, o, os)         o[k*os] = (A^T m)[k], k < TILE, for ALPHA values
 *   output_adjoint_1d(d, ds, o, os) o[k*os] = (A d)[k], k < ALPHA, for TILE values
 *   filter_1d(g, gs, o, os)         o[k*os] = (G g)[k], k < ALPHA, for 3 values
 *   filter_adjoint_1d(u, us, r, rs) r[k*rs] = (G^T u)[k], k < 3, for ALPHA values, in double (Quad)
 *   tile_columns(row, cols)         cols[c] lane k = row[TILE k + c], c < ALPHA: the 8 tiles' patch columns
 *                                   (reading at most 8 TILE + 8 floats)
 *   store_tile_row(o, y, acc)       o[c] lane k (c < TILE) to y[TILE k + c]: one output row of 8 whole tiles,
 *                                   written or added; nothing past y[8 TILE - 1] is written
 *   load_tile_row(y, d)             its inverse: d[c] lane k = y[TILE k + c]; nothing past y[8 TILE - 1] read
 * Internal to autograd/; x86-64 with AVX2/FMA. */
#ifndef AUTOGRAD_CONV2D_WINOGRAD_TEMPLATE_H
#define AUTOGRAD_CONV2D_WINOGRAD_TEMPLATE_H

/* The input transform goes one tile row and up to STRIP_TILES tiles at a time: the ALPHA input rows the
 * tiles read are transformed down the columns where they lie (contiguous vectors: T = B^T d for every column
 * at once; the zero padding comes from masked loads at the row ends and zero vectors for padding rows, where
 * copying the rows with their padding first cost 7% of a 64-channel layer), and then across, 8 tiles per
 * register: tile_columns turns the rows of T into "column c of tiles 0..7" vectors, so no element is gathered
 * one by one. */
enum { STRIP_TILES = 64, STRIP_FLOATS = TILE * STRIP_TILES + 8 };

/* V[ci][xi][t] = (B^T d B)[xi] for every tile t of the chunk, d its ALPHA x ALPHA input patch of channel ci. Stores are
 * whole 8-tile vectors; lanes past the end of a strip land on tiles that a later strip of this task rewrites,
 * or in the padding columns of V. */
WINOGRAD_TARGET static void input_channel(void *arg, int ci)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    const TileGrid *g = &j->grid;
    float cols_t[ALPHA][STRIP_FLOATS] __attribute__((aligned(32)));
    Lanes cols[ALPHA], rows[XI];
    for (int n = 0; n < j->images; n++) {
        const float *xc = j->x + ((size_t)(j->n0 + n) * s->Cin + ci) * s->H * s->W;
        for (int ty = j->ty0; ty < j->ty0 + j->rows; ty++)
            for (int tx0 = 0; tx0 < g->tiles_w; tx0 += STRIP_TILES) {
                int nt = g->tiles_w - tx0 < STRIP_TILES ? g->tiles_w - tx0 : STRIP_TILES;
                /* group m's tile_columns reads below 8 TILE (m + 1) + 8 */
                int groups = (nt + LANES - 1) / LANES, width = groups * LANES * TILE + 8;
                const float *row[ALPHA]; /* NULL: a padding row */
                for (int r = 0; r < ALPHA; r++) {
                    int iy = ty * TILE - s->p.pad_h + r;
                    row[r] = iy >= 0 && iy < s->H ? xc + (size_t)iy * s->W : NULL;
                }
                int c0 = tx0 * TILE - s->p.pad_w; /* input column of the strip's first */
                for (int k = 0; k < width; k += LANES) {
                    Lanes d[ALPHA], t[ALPHA];
                    bool edge = c0 + k < 0 || c0 + k + LANES > s->W;
                    for (int r = 0; r < ALPHA; r++)
                        d[r] = row[r] ? (Lanes)load_cols(row[r], c0 + k, s->W, edge) : (Lanes){0};
                    input_1d(d, 1, t, 1);
                    for (int i = 0; i < ALPHA; i++) *(Lanes *)(cols_t[i] + k) = t[i];
                }
                size_t t_first = ((size_t)n * j->rows + ty - j->ty0) * g->tiles_w + tx0;
                for (int m = 0; m < groups; m++) {
                    for (int i = 0; i < ALPHA; i++) {
                        tile_columns(cols_t[i] + m * LANES * TILE, cols);
                        input_1d(cols, 1, rows + i * ALPHA, 1);
                    }
                    float *dst = j->V + (size_t)ci * XI * g->row_floats + t_first + (size_t)m * LANES;
                    for (int e = 0; e < XI; e++) *(Lanes *)(dst + (size_t)e * g->row_floats) = rows[e];
                }
            }
    }
    /* the GEMMs also read the columns up to tiles_padded: keep them defined */
    int tiles = j->images * j->rows * g->tiles_w;
    for (int e = 0; e < XI; e++)
        for (int t = tiles; t < g->tiles_padded; t++) j->V[((size_t)ci * XI + e) * g->row_floats + t] = 0.0f;
}

/* U[xi] [M, Cin] = (G g G^T)[xi] of the filters g of w [M, Cin, 3, 3], for the output channels of one row
 * panel (rows SGEMM_MR panel ..; those past M are zeros), written straight into the GEMMs' packed left
 * operands P[xi] (sgemm_packed_a_offset's layout). There a panel's rows at 8 input channels are 48
 * consecutive floats: the rows' transforms are transposed in registers and stored whole. Packed here once
 * per convolution: the training forward (weights new every step) used to write U plainly and have every
 * chunk of tiles pack all 36 of them again (5% of a ResNet-50 step in pack_a); written row by row, the
 * stores went 6 floats apart (1% of the step). */
WINOGRAD_TARGET static void filter_panel(const float *w, int M, int Cin, int panel, float *const *P)
{
    float taps[9][LANES] __attribute__((aligned(32)));
    float u[SGEMM_MR][XI][LANES] __attribute__((aligned(32)));
    Lanes rows[ALPHA * 3];
    int co0 = panel * SGEMM_MR;
    for (int c0 = 0; c0 < Cin; c0 += LANES) {
        int lanes = Cin - c0 < LANES ? Cin - c0 : LANES;
        for (int i = 0; i < SGEMM_MR; i++) {
            int co = co0 + i;
            for (int k = 0; k < LANES; k++)
                for (int t = 0; t < 9; t++)
                    taps[t][k] = co < M && k < lanes ? w[((size_t)co * Cin + c0 + k) * 9 + t] : 0.0f;
            const Lanes *g = (const Lanes *)taps;
            for (int c = 0; c < 3; c++) filter_1d(g + c, 3, rows + c, 3);
            for (int r = 0; r < ALPHA; r++) filter_1d(rows + r * 3, 1, (Lanes *)u[i] + r * ALPHA, 1);
        }
        /* the 8 channels lie in one K block (SGEMM_KC is a multiple of 8) */
        size_t at = sgemm_packed_a_offset(M, Cin, co0, c0);
        for (int e = 0; e < XI; e++) {
            __m256 r[8];
            for (int i = 0; i < SGEMM_MR; i++) r[i] = _mm256_load_ps(u[i][e]);
            r[6] = r[7] = _mm256_setzero_ps();
            transpose8_avx2(r);
            for (int k = 0; k < lanes; k++) store6_avx2(P[e] + at + (size_t)k * SGEMM_MR, r[k]);
        }
    }
}

/* y tiles of channel co = A^T M A, plus bias and activation, cropped at the output's edges. */
WINOGRAD_TARGET static void output_channel(void *arg, int co)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    const TileGrid *g = &j->grid;
    int first;
    const Conv2dCpuTarget *t = winograd_target_of(j, co, &first);
    int own = co - first; /* the channel within its target */
    __m256 bias = _mm256_set1_ps(t->b ? t->b[own] : 0.0f);
    __m256 slope = _mm256_set1_ps(t->act < 0.0f ? 1.0f : t->act); /* slope 1: no activation */
    Lanes m[XI], rows[TILE * ALPHA], o[TILE * TILE];
    for (int n = 0; n < j->images; n++) {
        float *yc = t->y + ((size_t)(j->n0 + n) * t->Cout + own) * s->Ho * s->Wo;
        for (int ty = j->ty0; ty < j->ty0 + j->rows; ty++) {
            int oy = ty * TILE, rows_here = s->Ho - oy < TILE ? s->Ho - oy : TILE;
            size_t t_first = ((size_t)n * j->rows + ty - j->ty0) * g->tiles_w;
            for (int tx0 = 0; tx0 < g->tiles_w; tx0 += LANES) {
                const float *src = j->M + (size_t)co * XI * g->row_floats + t_first + tx0;
                for (int e = 0; e < XI; e++) m[e] = *(const Lanes *)(src + (size_t)e * g->row_floats);
                for (int c = 0; c < ALPHA; c++) output_1d(m + c, ALPHA, rows + c, ALPHA);
                for (int r = 0; r < TILE; r++) output_1d(rows + r * ALPHA, 1, o + r * TILE, 1);
                for (int e = 0; e < TILE * TILE; e++) o[e] = (Lanes)leaky_avx2(_mm256_add_ps((__m256)o[e], bias), slope);
                int ox0 = tx0 * TILE;
                if (tx0 + LANES <= g->tiles_w && ox0 + LANES * TILE <= s->Wo && rows_here == TILE) {
                    for (int r = 0; r < TILE; r++) /* 8 whole tiles */
                        store_tile_row(o + r * TILE, yc + (size_t)(oy + r) * s->Wo + ox0, t->accumulate);
                    continue;
                }
                float out[TILE * TILE][LANES] __attribute__((aligned(32)));
                for (int e = 0; e < TILE * TILE; e++) *(Lanes *)out[e] = o[e];
                int last = g->tiles_w - tx0 < LANES ? g->tiles_w - tx0 : LANES;
                for (int k = 0; k < last; k++) {
                    int ox = ox0 + k * TILE, cols = s->Wo - ox < TILE ? s->Wo - ox : TILE;
                    for (int r = 0; r < rows_here; r++) {
                        float *yr = yc + (size_t)(oy + r) * s->Wo + ox;
                        for (int c = 0; c < cols; c++) yr[c] = t->accumulate ? yr[c] + out[r * TILE + c][k] : out[r * TILE + c][k];
                    }
                }
            }
        }
    }
}

/* M'[co][xi][t] = (A dy A^T)[xi] for every tile t of the chunk, 8 tiles per register. */
WINOGRAD_TARGET static void dy_channel(void *arg, int co)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    const TileGrid *g = &j->grid;
    Lanes d[TILE * TILE], rows[ALPHA * TILE], m[XI];
    for (int n = 0; n < j->images; n++) {
        const float *dc = j->dy + ((size_t)(j->n0 + n) * s->Cout + co) * s->Ho * s->Wo;
        for (int ty = j->ty0; ty < j->ty0 + j->rows; ty++) {
            int oy = ty * TILE, rows_here = s->Ho - oy < TILE ? s->Ho - oy : TILE;
            size_t t_first = ((size_t)n * j->rows + ty - j->ty0) * g->tiles_w;
            for (int tx0 = 0; tx0 < g->tiles_w; tx0 += LANES) {
                int ox0 = tx0 * TILE;
                if (tx0 + LANES <= g->tiles_w && ox0 + LANES * TILE <= s->Wo && rows_here == TILE) {
                    for (int r = 0; r < TILE; r++) /* 8 whole tiles */
                        load_tile_row(dc + (size_t)(oy + r) * s->Wo + ox0, d + r * TILE);
                } else { /* tiles at the edges: zero past the output */
                    float in[TILE * TILE][LANES] __attribute__((aligned(32))) = {{0}};
                    int last = g->tiles_w - tx0 < LANES ? g->tiles_w - tx0 : LANES;
                    for (int k = 0; k < last; k++) {
                        int ox = ox0 + k * TILE, cols = s->Wo - ox < TILE ? s->Wo - ox : TILE;
                        for (int r = 0; r < rows_here; r++)
                            for (int c = 0; c < cols; c++) in[r * TILE + c][k] = dc[(size_t)(oy + r) * s->Wo + ox + c];
                    }
                    for (int e = 0; e < TILE * TILE; e++) d[e] = *(const Lanes *)in[e];
                }
                for (int c = 0; c < TILE; c++) output_adjoint_1d(d + c, TILE, rows + c, TILE);
                for (int r = 0; r < ALPHA; r++) output_adjoint_1d(rows + r * TILE, 1, m + r * ALPHA, 1);
                float *dst = j->M + (size_t)co * XI * g->row_floats + t_first + tx0;
                int valid = g->tiles_w - tx0 < LANES ? g->tiles_w - tx0 : LANES;
                for (int e = 0; e < XI; e++) {
                    if (valid == LANES) {
                        *(Lanes *)(dst + (size_t)e * g->row_floats) = m[e];
                    } else { /* the next tile row's first tiles follow: store only this row's */
                        float tmp[LANES] __attribute__((aligned(32)));
                        *(Lanes *)tmp = m[e];
                        for (int k = 0; k < valid; k++) dst[(size_t)e * g->row_floats + k] = tmp[k];
                    }
                }
            }
        }
    }
}

/* dw[co][ci] += G^T dU[.][co][ci] G for output channel co, 4 input channels at a time (one channel at a time
 * in scalar double it was 1.4% of a ResNet-50 step). */
WINOGRAD_TARGET static void filter_grad(void *arg, int co)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    float *dw = j->dw;
    for (int c0 = 0; c0 < s->Cin; c0 += 4) {
        int lanes = s->Cin - c0 < 4 ? s->Cin - c0 : 4;
        Quad u[XI], half[3 * ALPHA], r[9];
        for (int e = 0; e < XI; e++) {
            size_t k = ((size_t)e * s->Cout + co) * s->Cin + c0;
            for (int l = 0; l < 4; l++) u[e][l] = l >= lanes ? 0.0 : j->dUf ? j->dUf[k + l] : j->dU[k + l];
        }
        for (int c = 0; c < ALPHA; c++) filter_adjoint_1d(u + c, ALPHA, half + c, ALPHA);
        for (int k = 0; k < 3; k++) filter_adjoint_1d(half + k * ALPHA, 1, r + k * 3, 1);
        for (int l = 0; l < lanes; l++)
            for (int k = 0; k < 9; k++) dw[((size_t)co * s->Cin + c0 + l) * 9 + k] += (float)r[k][l];
    }
}

#endif
