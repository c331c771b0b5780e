/* Winograd F(4x4, 3x3) (Lavin & Gray's points 0, +-1, +-2, infinity): every 4x4 output tile of a
 * channel is A^T [ (G g G^T) . (B^T d B) ] A, d the 6x6 input patch, g the 3x3 filter. Summed over
 * input channels, the elementwise product becomes 36 independent GEMMs [Cout x Cin] x [Cin x T], which
 * is where the 4x saving is: 36 multiplications per 16 outputs instead of 144.
 *
 * The transforms work on 8 tiles at a time (one AVX register per patch element), so V and M are laid
 * out [36][channels][tiles] and each transform reads or writes whole 8-tile vectors. Images are taken in
 * chunks of at most CHUNK_TILES tiles so that the scratch stays bounded at large batches. */
#include "autograd/conv2d_winograd.h"

#include <string.h>

#include "autograd/conv2d_avx2.h"
#include "tensor/sgemm.h"

enum { TILE = 4, ALPHA = 6, XI = ALPHA * ALPHA, LANES = 8, CHUNK_TILES = 4096 };

typedef struct {
    int tiles_h, tiles_w, per_image; /* 4x4 output tiles of one image */
    int images_per_chunk;
    int tiles_padded; /* tiles of one chunk, rounded up to LANES */
} TileGrid;

static TileGrid tile_grid(const Conv2dShape *s)
{
    TileGrid t;
    t.tiles_h = (s->Ho + TILE - 1) / TILE;
    t.tiles_w = (s->Wo + TILE - 1) / TILE;
    t.per_image = t.tiles_h * t.tiles_w;
    t.images_per_chunk = t.per_image >= CHUNK_TILES ? 1 : CHUNK_TILES / t.per_image;
    if (t.images_per_chunk > s->N) t.images_per_chunk = s->N;
    int tiles = t.images_per_chunk * t.per_image;
    t.tiles_padded = (tiles + LANES - 1) / LANES * LANES;
    return t;
}

bool conv2d_winograd_applies(const Conv2dShape *s)
{
    const Conv2dParams *p = &s->p;
    /* Below 8 channels the 36 GEMMs are too thin to beat one im2col GEMM; below one tile the
     * padding of the 4x4 tiles costs more than it saves. */
    return s->KH == 3 && s->KW == 3 && p->stride_h == 1 && p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1 &&
           p->groups == 1 && s->Cin >= 8 && s->Cout >= 8 && s->Ho >= TILE && s->Wo >= TILE &&
           conv2d_avx2_available();
}

/* Where a tile sits: image (relative to the chunk), first output row and column. A table, computed
 * once per chunk, because dividing the tile index per tile and channel cost more than the transform. */
typedef struct {
    int n, oy, ox;
} TileOrigin;

size_t conv2d_winograd_scratch_floats(const Conv2dShape *s)
{
    TileGrid t = tile_grid(s);
    size_t table = (t.tiles_padded * sizeof(TileOrigin) + sizeof(float) - 1) / sizeof(float);
    return (size_t)XI * ((size_t)s->Cout * s->Cin + (size_t)(s->Cin + s->Cout) * t.tiles_padded) + table;
}

typedef struct {
    const Conv2dShape *s;
    TileGrid grid;
    const float *x, *w, *b;
    float *y, *U, *V, *M;
    TileOrigin *origin; /* [tiles_padded] */
    float act;
    int n0, images; /* the chunk of images being processed */
} WinogradJob;

#if defined(__x86_64__)
#define WINOGRAD_TARGET __attribute__((target("avx2,fma")))
#else
#define WINOGRAD_TARGET
#endif

/* 8 tiles' worth of one patch element. aligned(4): V and M rows start wherever the scratch puts them. */
typedef float Lanes __attribute__((vector_size(LANES * sizeof(float)), aligned(4)));
typedef int LaneMask __attribute__((vector_size(LANES * sizeof(int)), aligned(4)));

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

/* V[xi][ci][t] = (B^T d B)[xi] for every tile t of the chunk, d its 6x6 input patch of channel ci. */
WINOGRAD_TARGET static void transform_input_channel(void *arg, int ci)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    const TileGrid *g = &j->grid;
    int tiles = j->images * g->per_image, ph = s->p.pad_h, pw = s->p.pad_w;
    float patch[XI][LANES] __attribute__((aligned(32)));
    Lanes rows[XI], v[XI];
    for (int t0 = 0; t0 < g->tiles_padded; t0 += LANES) {
        for (int k = 0; k < LANES; k++) {
            int t = t0 + k;
            if (t >= tiles) {
                for (int e = 0; e < XI; e++) patch[e][k] = 0.0f;
                continue;
            }
            const TileOrigin *o = &j->origin[t];
            const float *xc = j->x + ((size_t)(j->n0 + o->n) * s->Cin + ci) * s->H * s->W;
            int iy0 = o->oy - ph, ix0 = o->ox - pw;
            if (iy0 >= 0 && ix0 >= 0 && iy0 + ALPHA <= s->H && ix0 + ALPHA <= s->W) {
                for (int r = 0; r < ALPHA; r++) {
                    const float *xr = xc + (size_t)(iy0 + r) * s->W + ix0;
                    for (int c = 0; c < ALPHA; c++) patch[r * ALPHA + c][k] = xr[c];
                }
            } else {
                for (int r = 0; r < ALPHA; r++)
                    for (int c = 0; c < ALPHA; c++) {
                        int iy = iy0 + r, ix = ix0 + c;
                        bool inside = iy >= 0 && iy < s->H && ix >= 0 && ix < s->W;
                        patch[r * ALPHA + c][k] = inside ? xc[(size_t)iy * s->W + ix] : 0.0f;
                    }
            }
        }
        const Lanes *d = (const Lanes *)patch;
        for (int c = 0; c < ALPHA; c++) input_1d(d + c, ALPHA, rows + c, ALPHA);
        for (int r = 0; r < ALPHA; r++) input_1d(rows + r * ALPHA, 1, v + r * ALPHA, 1);
        for (int e = 0; e < XI; e++)
            *(Lanes *)(j->V + ((size_t)e * s->Cin + ci) * g->tiles_padded + t0) = v[e];
    }
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

/* U[xi][co][ci] = (G g G^T)[xi] for the filter g of (co, ci), 8 input channels at a time. */
WINOGRAD_TARGET static void transform_weights(void *arg, int co)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    float taps[9][LANES] __attribute__((aligned(32)));
    float u[XI][LANES] __attribute__((aligned(32)));
    Lanes rows[ALPHA * 3];
    for (int c0 = 0; c0 < s->Cin; c0 += LANES) {
        int lanes = s->Cin - c0 < LANES ? s->Cin - c0 : LANES;
        for (int k = 0; k < LANES; k++)
            for (int t = 0; t < 9; t++) taps[t][k] = k < lanes ? j->w[((size_t)co * s->Cin + c0 + k) * 9 + t] : 0.0f;
        const Lanes *g = (const Lanes *)taps;
        for (int c = 0; c < 3; c++) filter_1d(g + c, 3, rows + c, 3);
        for (int r = 0; r < ALPHA; r++) filter_1d(rows + r * 3, 1, (Lanes *)u + r * ALPHA, 1);
        for (int e = 0; e < XI; e++) {
            float *dst = j->U + ((size_t)e * s->Cout + co) * s->Cin + c0;
            if (lanes == LANES)
                *(Lanes *)dst = *(const Lanes *)u[e];
            else
                for (int k = 0; k < lanes; k++) dst[k] = u[e][k];
        }
    }
}

/* M[xi] = U[xi] V[xi]: one GEMM per patch element, each on one thread (nested sgemm runs serially). */
static void multiply_element(void *arg, int e)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    int T = j->grid.tiles_padded;
    sgemm(NULL, false, false, s->Cout, T, s->Cin, 1.0f, j->U + (size_t)e * s->Cout * s->Cin, s->Cin,
          j->V + (size_t)e * s->Cin * T, T, 0.0f, j->M + (size_t)e * s->Cout * T, T);
}

/* y tiles of channel co = A^T M A, plus bias and activation, cropped at the output's edges. */
WINOGRAD_TARGET static void transform_output_channel(void *arg, int co)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    const TileGrid *g = &j->grid;
    int tiles = j->images * g->per_image;
    float bias = j->b ? j->b[co] : 0.0f, act = j->act;
    Lanes m[XI], rows[TILE * ALPHA];
    float out[TILE * TILE][LANES] __attribute__((aligned(32)));
    for (int t0 = 0; t0 < tiles; t0 += LANES) {
        for (int e = 0; e < XI; e++)
            m[e] = *(const Lanes *)(j->M + ((size_t)e * s->Cout + co) * g->tiles_padded + t0);
        for (int c = 0; c < ALPHA; c++) output_1d(m + c, ALPHA, rows + c, ALPHA);
        Lanes *o = (Lanes *)out;
        for (int r = 0; r < TILE; r++) output_1d(rows + r * ALPHA, 1, o + r * TILE, 1);
        for (int e = 0; e < TILE * TILE; e++) {
            Lanes v = o[e] + bias;
            if (act >= 0.0f) {
                LaneMask pos = v > 0.0f;
                Lanes scaled = act * v;
                v = (Lanes)((pos & (LaneMask)v) | (~pos & (LaneMask)scaled));
            }
            o[e] = v;
        }
        int last = tiles - t0 < LANES ? tiles - t0 : LANES;
        for (int k = 0; k < last; k++) {
            int oy = j->origin[t0 + k].oy, ox = j->origin[t0 + k].ox;
            float *yc = j->y + ((size_t)(j->n0 + j->origin[t0 + k].n) * s->Cout + co) * s->Ho * s->Wo;
            int rows_here = s->Ho - oy < TILE ? s->Ho - oy : TILE, cols = s->Wo - ox < TILE ? s->Wo - ox : TILE;
            for (int r = 0; r < rows_here; r++) {
                float *yr = yc + (size_t)(oy + r) * s->Wo + ox;
                for (int c = 0; c < cols; c++) yr[c] = out[r * TILE + c][k];
            }
        }
    }
}

void conv2d_winograd_forward(Context *ctx, const Conv2dShape *s, const float *x, const float *w, const float *b,
                             float act, float *y, float *scratch)
{
    WinogradJob j = {.s = s, .grid = tile_grid(s), .x = x, .w = w, .b = b, .y = y, .act = act};
    j.U = scratch;
    j.V = j.U + (size_t)XI * s->Cout * s->Cin;
    j.M = j.V + (size_t)XI * s->Cin * j.grid.tiles_padded;
    j.origin = (TileOrigin *)(j.M + (size_t)XI * s->Cout * j.grid.tiles_padded);
    for (int t = 0; t < j.grid.images_per_chunk * j.grid.per_image; t++) {
        int r = t % j.grid.per_image;
        j.origin[t] = (TileOrigin){t / j.grid.per_image, r / j.grid.tiles_w * TILE, r % j.grid.tiles_w * TILE};
    }
    threadpool_run(ctx->pool, s->Cout, transform_weights, &j);
    for (j.n0 = 0; j.n0 < s->N; j.n0 += j.grid.images_per_chunk) {
        j.images = s->N - j.n0 < j.grid.images_per_chunk ? s->N - j.n0 : j.grid.images_per_chunk;
        threadpool_run(ctx->pool, s->Cin, transform_input_channel, &j);
        threadpool_run(ctx->pool, XI, multiply_element, &j);
        threadpool_run(ctx->pool, s->Cout, transform_output_channel, &j);
    }
}
