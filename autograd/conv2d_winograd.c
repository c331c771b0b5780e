/* Winograd F(4x4, 3x3) (Lavin & Gray's points 0, +-1, +-2, infinity): every 4x4 output tile of a
 * channel is A^T [ (G g G^T) . (B^T d B) ] A, d the 6x6 input patch, g the 3x3 filter. Summed over
 * input channels, the elementwise product becomes 36 independent GEMMs [Cout x Cin] x [Cin x T], which
 * is where the 4x saving is: 36 multiplications per 16 outputs instead of 144.
 *
 * The transforms work on 8 tiles at a time (one AVX register per patch element), so V and M are laid
 * out [channels][36][tiles] and each transform reads or writes whole 8-tile vectors: a channel's 36
 * rows are one contiguous block, which the transform streams through (the 36 GEMMs instead read and
 * write rows 36 apart; with [36][channels][tiles] the transforms, touching 36 distant rows at once,
 * were 15% slower end to end). Tiles are taken in chunks, several whole images or some whole tile rows of
 * one, whose V and M fit CHUNK_FLOATS (cache-sized) or, for a layer too large to stay in cache, hold at
 * least CHUNK_MIN_TILES tiles within CHUNK_MAX_FLOATS (tile_grid_sized), so that the scratch stays bounded. */
#include "autograd/conv2d_winograd.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/conv2d_avx2.h"
#include "autograd/row_load_avx2.h"
#include "tensor/leaky_avx2.h"
#include "tensor/transpose_avx2.h"
#include "tensor/sgemm.h"
#include "tensor/sgemm_nt.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* CHUNK_FLOATS bounds V and M of one chunk of tiles (2 MiB) of a layer that stays in cache (an inference at
 * 640x480; see tile_grid_sized for larger ones): a chunk's V and M then stay in the last-level
 * cache while its three passes run, and the next chunk reuses the same memory. Taking the whole image
 * at once (5.6 MB for the FPN merge at 80x60) made those passes write memory that the rest of the
 * forward had pushed out of the cache: 1.3-1.4 ms in the 640x480 forward for a layer that takes 0.9
 * ms alone on 2 threads. */
enum { TILE = 4, ALPHA = 6, XI = ALPHA * ALPHA, LANES = 8, CHUNK_FLOATS = 1 << 19, CHUNK_MIN_TILES = 256,
       CHUNK_MAX_FLOATS = 8 << 20, LAYER_CACHED_BYTES = 4 << 20 };

typedef struct {
    int tiles_h, tiles_w, per_image; /* 4x4 output tiles of one image */
    int images_per_chunk;
    int rows_per_chunk; /* tile rows of a chunk: all of an image's when a chunk holds whole images */
    int tiles_padded; /* tiles of one chunk, rounded up to LANES: the GEMMs' N */
    int row_floats;   /* row length of V and M: room for the input transform's spill-over lanes */
} TileGrid;

/* The tiles of a chunk whose V and M fit chunk_floats. */
static TileGrid tile_grid_sized(const Conv2dShape *s, int chunk_floats)
{
    TileGrid t;
    t.tiles_h = (s->Ho + TILE - 1) / TILE;
    t.tiles_w = (s->Wo + TILE - 1) / TILE;
    t.per_image = t.tiles_h * t.tiles_w;
    int chunk_tiles = chunk_floats / (XI * (s->Cin + s->Cout));
    /* The 36 GEMMs (Cout x Cin by Cin x chunk tiles) want many columns: each re-reads its U[xi] from the
     * last-level cache for every chunk. Wide layers (ResNet-50's 256 channels: 28 tiles in 2 MiB) keep at
     * least four column panels; a layer whose activations do not stay in the cache anyway (a training
     * batch) gains from chunks of CHUNK_MIN_TILES while V and M stay within CHUNK_MAX_FLOATS (time against
     * 64-tile chunks, forward / backward, medians of alternated pairs on Zen 4: ResNet-50's 256 channels at
     * 53x53 0.83 / 0.90, 512 at 27x27 0.88 / 0.93, 128 at 105x105 0.95 / 1.0; MobileNet's 64 -> 64 and
     * 64 -> 16 at 80x80, batch 8, 0.95 / 0.98 and 0.92 / 0.95; 512-tile chunks were slower again at 128
     * channels). A 640x480 inference keeps the small chunks that stay in cache (see CHUNK_FLOATS). */
    int min_tiles = 4 * SGEMM_NR;
    double activation_bytes = sizeof(float) * (double)s->N * ((double)s->Cin * s->H * s->W + (double)s->Cout * s->Ho * s->Wo);
    if (activation_bytes > LAYER_CACHED_BYTES) {
        int fit = CHUNK_MAX_FLOATS / (XI * (s->Cin + s->Cout));
        min_tiles = fit < min_tiles ? min_tiles : fit < CHUNK_MIN_TILES ? fit : CHUNK_MIN_TILES;
    }
    if (chunk_tiles < min_tiles) chunk_tiles = min_tiles;
    t.images_per_chunk = t.per_image >= chunk_tiles ? 1 : chunk_tiles / t.per_image;
    if (t.images_per_chunk > s->N) t.images_per_chunk = s->N;
    t.rows_per_chunk = t.tiles_h;
    if (t.per_image > chunk_tiles) {
        t.rows_per_chunk = chunk_tiles / t.tiles_w;
        if (t.rows_per_chunk < 1) t.rows_per_chunk = 1;
        /* even chunks: the last one as full as the others */
        int chunks = (t.tiles_h + t.rows_per_chunk - 1) / t.rows_per_chunk;
        t.rows_per_chunk = (t.tiles_h + chunks - 1) / chunks;
    }
    int tiles = t.images_per_chunk * t.rows_per_chunk * t.tiles_w;
    t.tiles_padded = (tiles + LANES - 1) / LANES * LANES;
    t.row_floats = t.tiles_padded + LANES;
    return t;
}

static TileGrid tile_grid(const Conv2dShape *s) { return tile_grid_sized(s, CHUNK_FLOATS); }

/* The weight gradient takes 4x larger chunks: its 36 GEMMs sum over the chunk's tiles, and longer sums
 * use the dot products better (64x64 channels, single thread: 113 tiles 61 GFLOP/s, 452 tiles 89). */
enum { WGRAD_CHUNK_FLOATS = 4 * CHUNK_FLOATS };
/* From this many filters (Cout x Cin) on, the weight gradient's GEMMs are the blocked, packed kind into
 * float sums: with few tiles per chunk and many outputs the dot products reuse too little (256x256 over 64
 * tiles, single thread: 47 against 96 GFLOP/s); and the sums take half the memory. Since the GEMM packs
 * with register transposes the line is 512 filters (was 2^14): MobileNet's 64 -> 64 and 64 -> 16 at 80x80,
 * batch 8, 0.97 of the dot products' backward time, 32 -> 16 0.99; 16 -> 16 1.02, below the line. */
enum { WGRAD_BLOCKED_FILTERS = 1 << 9 };

static bool wgrad_blocked(const Conv2dShape *s) { return (long)s->Cout * s->Cin >= WGRAD_BLOCKED_FILTERS; }

static bool winograd_params(int KH, int KW, const Conv2dParams *p)
{
    return KH == 3 && KW == 3 && p->stride_h == 1 && p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1 &&
           p->groups == 1 && conv2d_avx2_available();
}

bool conv2d_winograd_applies(const Conv2dShape *s)
{
    /* Below 8 channels the 36 GEMMs are too thin to beat one im2col GEMM; below one tile the
     * padding of the 4x4 tiles costs more than it saves. */
    return winograd_params(s->KH, s->KW, &s->p) && s->Cin >= 8 && s->Cout >= 8 && s->Ho >= TILE && s->Wo >= TILE;
}

bool conv2d_winograd_weight_shape(const Tensor *w, Conv2dParams p)
{
    return w->ndim == 4 && winograd_params((int)w->shape[2], (int)w->shape[3], &p);
}

/* The packed U of all targets (each target's rows padded to whole panels: at most SGEMM_MAX_PRODUCTS). */
static size_t packed_u_floats(const Conv2dShape *s)
{
    return (size_t)XI * ((size_t)s->Cout + (SGEMM_MR - 1) * SGEMM_MAX_PRODUCTS) * s->Cin;
}

size_t conv2d_winograd_scratch_floats(const Conv2dShape *s)
{
    TileGrid t = tile_grid(s);
    return packed_u_floats(s) + (size_t)XI * (size_t)(s->Cin + s->Cout) * t.row_floats;
}

typedef struct {
    const Conv2dShape *s; /* Cout: all targets' */
    TileGrid grid;
    const float *x;
    const Conv2dCpuTarget *t;
    int n_targets;
    float *U, *V, *M; /* U: packed GEMM operands (packed_u); M: the targets' rows one after another */
    const float *dy;  /* weight gradient: the output gradient [N, Cout, Ho, Wo], M holds its transform */
    double *dU;       /* weight gradient: [36][Cout][Cin] sums (dot products, few filters) */
    float *dUf;       /* or, with many filters, float sums of the blocked GEMMs */
    float *dw;        /* weight gradient: [Cout, Cin, 3, 3], added to */
    int n0, images; /* the chunk being processed: images n0.. n0 + images - 1, */
    int ty0, rows;  /* tile rows ty0.. ty0 + rows - 1 of each */
    ThreadPool *pool;
} WinogradJob;

/* Which target output channel `co` (counted over all targets) belongs to; *first its target's first. */
static const Conv2dCpuTarget *target_of(const WinogradJob *j, int co, int *first)
{
    int base = 0, i = 0;
    while (i + 1 < j->n_targets && co >= base + j->t[i].Cout) base += j->t[i++].Cout;
    *first = base;
    return &j->t[i];
}

#if defined(__x86_64__)
#define WINOGRAD_TARGET __attribute__((target("avx2,fma")))
#else
#define WINOGRAD_TARGET
#endif

/* 8 tiles' worth of one patch element. aligned(4): V and M rows start wherever the scratch puts them. */
typedef float Lanes __attribute__((vector_size(LANES * sizeof(float)), aligned(4)));

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

/* The input transform goes one tile row and up to STRIP_TILES tiles at a time: the six input rows
 * the tiles read are transformed down the columns where they lie (contiguous vectors: T = B^T d for
 * every column at once; the zero padding comes from masked loads at the row ends and zero vectors for
 * padding rows, where copying the rows with their padding first cost 7% of a 64-channel layer), and
 * then across, 8 tiles per register: two in-lane 4x4 transposes turn the rows of T into "column c of
 * tiles 0..7" vectors, so no element is gathered one by one. */
enum { STRIP_TILES = 64, STRIP_FLOATS = TILE * STRIP_TILES + 8 };

#if defined(__x86_64__)

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

/* V[xi][ci][t] = (B^T d B)[xi] for every tile t of the chunk, d its 6x6 input patch of channel ci.
 * Stores are whole 8-tile vectors; lanes past the end of a strip land on tiles that a later strip of
 * this task rewrites, or in the padding columns of V. */
WINOGRAD_TARGET static void transform_input_channel(void *arg, int ci)
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

#else
/* AVX2 only, and conv2d_winograd_applies says so: never chosen */
static void transform_input_channel(void *arg, int ci) { (void)arg, (void)ci; }
#endif

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

#if defined(__x86_64__)
/* U[xi] [M, Cin] = (G g G^T)[xi] of the filters g of w [M, Cin, 3, 3], for the output channels of one row
 * panel (rows SGEMM_MR panel ..; those past M are zeros), written straight into the GEMMs' packed left
 * operands P[xi] (sgemm_packed_a_offset's layout). There a panel's rows at 8 input channels are 48
 * consecutive floats: the rows' transforms are transposed in registers and stored whole. Packed here once
 * per convolution: the training forward (weights new every step) used to write U plainly and have every
 * chunk of tiles pack all 36 of them again (5% of a ResNet-50 step in pack_a); written row by row, the
 * stores went 6 floats apart (1% of the step). */
WINOGRAD_TARGET static void transform_filter_panel(const float *w, int M, int Cin, int panel, float *const P[XI])
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
#else
/* AVX2 only, and conv2d_winograd_applies says so: never chosen */
static void transform_filter_panel(const float *w, int M, int Cin, int panel, float *const P[XI])
{
    (void)w, (void)M, (void)Cin, (void)panel, (void)P;
}
#endif

static int row_panels(int M) { return (M + SGEMM_MR - 1) / SGEMM_MR; }

/* Where target q's packed U[e] lies in the scratch: element by element, the targets' row-padded operands
 * one after another. */
static float *packed_u(const WinogradJob *j, int q, int e)
{
    size_t rows = 0, before = 0;
    for (int i = 0; i < j->n_targets; i++) {
        size_t r = sgemm_packed_a_floats(j->t[i].Cout, 1);
        if (i < q) before += r;
        rows += r;
    }
    return j->U + ((size_t)e * rows + before) * j->s->Cin;
}

/* The packed U of the targets without packed weights: a task per row panel, counted over those targets. */
static void transform_weights(void *arg, int task)
{
    const WinogradJob *j = arg;
    int q = 0;
    for (;; q++) {
        int panels = j->t[q].packed ? 0 : row_panels(j->t[q].Cout);
        if (task < panels) break;
        task -= panels;
    }
    const Conv2dCpuTarget *t = &j->t[q];
    float *P[XI];
    for (int e = 0; e < XI; e++) P[e] = packed_u(j, q, e);
    transform_filter_panel(t->w, t->Cout, j->s->Cin, task, P);
}

bool conv2d_winograd_pack_weights(const float *w, int Cout, int Cin, SgemmPackedA u[36])
{
    bool ok = true;
    float *P[XI];
    for (int e = 0; e < XI; e++) {
        size_t floats = sgemm_packed_a_floats(Cout, Cin);
        u[e] = (SgemmPackedA){Cout, Cin, ok ? aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63) : NULL};
        ok = ok && u[e].data;
        P[e] = u[e].data;
    }
    for (int panel = 0; ok && panel < row_panels(Cout); panel++) transform_filter_panel(w, Cout, Cin, panel, P);
    if (!ok)
        for (int e = 0; e < XI; e++) sgemm_packed_a_free(&u[e]);
    return ok;
}

/* Tile columns of one GEMM task: the 36 GEMMs are cut in column halves when there are tiles enough,
 * so that the pool has pieces to even out the threads' finishing times. */
static int gemm_column_parts(const TileGrid *g) { return g->tiles_padded >= 4 * SGEMM_NR ? 2 : 1; }

/* M[xi] = U[xi] V[xi] over a part of the tile columns: one GEMM per patch element (all targets'
 * products sharing V[xi]), each task on one thread (a nested sgemm runs serially, with the packing
 * buffers of the thread it runs on). */
static void multiply_element(void *arg, int task)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    int ld = j->grid.row_floats, parts = gemm_column_parts(&j->grid), e = task / parts, part = task % parts;
    int cols = (j->grid.tiles_padded / parts + SGEMM_NR - 1) / SGEMM_NR * SGEMM_NR, c0 = part * cols;
    if (c0 + cols > j->grid.tiles_padded) cols = j->grid.tiles_padded - c0;
    if (cols <= 0) return;
    SgemmProduct prods[SGEMM_MAX_PRODUCTS];
    SgemmPackedA made[SGEMM_MAX_PRODUCTS]; /* views of the scratch's packed U (transform_weights) */
    SgemmRight right = {j->V + (size_t)e * ld + c0, XI * ld, false};
    for (int q = 0, first = 0; q < j->n_targets; first += j->t[q++].Cout) {
        const Conv2dCpuTarget *t = &j->t[q];
        made[q] = (SgemmPackedA){t->Cout, s->Cin, t->packed ? NULL : packed_u(j, q, e)};
        prods[q] = (SgemmProduct){t->Cout, NULL, s->Cin, false, t->packed ? &t->packed->winograd[e] : &made[q],
                                  j->M + ((size_t)first * XI + e) * ld + c0, XI * ld, NULL, -1.0f};
    }
    sgemm_multi(j->pool, cols, s->Cin, 1.0f, &right, 0.0f, prods, j->n_targets);
}

#if defined(__x86_64__)
/* y tiles of channel co = A^T M A, plus bias and activation, cropped at the output's edges. */
WINOGRAD_TARGET static void transform_output_channel(void *arg, int co)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    const TileGrid *g = &j->grid;
    int first;
    const Conv2dCpuTarget *t = target_of(j, co, &first);
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
                    /* 8 whole tiles: transpose each output row's 4 column vectors back into 32
                     * contiguous outputs (tiles k and k + 4 share a register) */
                    for (int r = 0; r < TILE; r++) {
                        __m256 a = (__m256)o[r * TILE], b = (__m256)o[r * TILE + 1];
                        __m256 c = (__m256)o[r * TILE + 2], d = (__m256)o[r * TILE + 3];
                        transpose_lanes4(&a, &b, &c, &d);
                        float *yr = yc + (size_t)(oy + r) * s->Wo + ox0;
                        if (t->accumulate) {
                            a = _mm256_add_ps(a, _mm256_loadu2_m128(yr + 16, yr));
                            b = _mm256_add_ps(b, _mm256_loadu2_m128(yr + 20, yr + 4));
                            c = _mm256_add_ps(c, _mm256_loadu2_m128(yr + 24, yr + 8));
                            d = _mm256_add_ps(d, _mm256_loadu2_m128(yr + 28, yr + 12));
                        }
                        _mm256_storeu2_m128(yr + 16, yr, a);
                        _mm256_storeu2_m128(yr + 20, yr + 4, b);
                        _mm256_storeu2_m128(yr + 24, yr + 8, c);
                        _mm256_storeu2_m128(yr + 28, yr + 12, d);
                    }
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
#else
static void transform_output_channel(void *arg, int co) { (void)arg, (void)co; }
#endif

void conv2d_winograd_forward(Context *ctx, const Conv2dShape *s, const float *x, int n, const Conv2dCpuTarget *t,
                             float *scratch)
{
    WinogradJob j = {.s = s, .grid = tile_grid(s), .x = x, .t = t, .n_targets = n, .pool = ctx->pool};
    j.U = scratch;
    j.V = j.U + packed_u_floats(s);
    j.M = j.V + (size_t)XI * s->Cin * j.grid.row_floats;
    int panels = 0; /* row panels of the targets without packed weights, each transformed by a task */
    for (int i = 0; i < n; i++) panels += t[i].packed ? 0 : row_panels(t[i].Cout);
    if (panels) threadpool_run(ctx->pool, panels, transform_weights, &j);
    for (j.n0 = 0; j.n0 < s->N; j.n0 += j.grid.images_per_chunk) {
        j.images = s->N - j.n0 < j.grid.images_per_chunk ? s->N - j.n0 : j.grid.images_per_chunk;
        for (j.ty0 = 0; j.ty0 < j.grid.tiles_h; j.ty0 += j.grid.rows_per_chunk) {
            j.rows = j.grid.tiles_h - j.ty0 < j.grid.rows_per_chunk ? j.grid.tiles_h - j.ty0 : j.grid.rows_per_chunk;
            threadpool_run(ctx->pool, s->Cin, transform_input_channel, &j);
            threadpool_run(ctx->pool, XI * gemm_column_parts(&j.grid), multiply_element, &j);
            threadpool_run(ctx->pool, s->Cout, transform_output_channel, &j);
        }
    }
}

/* ---- weight gradient ---------------------------------------------------------------------------
 * The forward is y = A^T [ sum_ci (G g G^T) . (B^T d B) ] A per tile, so the gradient of the transformed
 * filter is dU[xi][co][ci] = sum over tiles of (A dy A^T)[xi] (B^T d B)[xi], dy the tile's 4x4 output
 * gradient (zero past the output's edges): 36 GEMMs dU[xi] = M'[xi] V[xi]^T whose rows run along the
 * tiles, which sgemm_nt reads in place. Then dw = G^T dU G. The input transform V is the forward's;
 * A dy A^T is the adjoint of the output transform. 4x fewer multiplications than im2col's GEMM. */

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

#if defined(__x86_64__)
/* M'[co][xi][t] = (A dy A^T)[xi] for every tile t of the chunk, 8 tiles per register. */
WINOGRAD_TARGET static void transform_dy_channel(void *arg, int co)
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
                    for (int r = 0; r < TILE; r++) { /* the output transform's stores, undone */
                        const float *dr = dc + (size_t)(oy + r) * s->Wo + ox0;
                        __m256 a = _mm256_loadu2_m128(dr + 16, dr), b = _mm256_loadu2_m128(dr + 20, dr + 4);
                        __m256 c = _mm256_loadu2_m128(dr + 24, dr + 8), e = _mm256_loadu2_m128(dr + 28, dr + 12);
                        transpose_lanes4(&a, &b, &c, &e);
                        d[r * TILE] = (Lanes)a, d[r * TILE + 1] = (Lanes)b, d[r * TILE + 2] = (Lanes)c,
                                  d[r * TILE + 3] = (Lanes)e;
                    }
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
#else
static void transform_dy_channel(void *arg, int co) { (void)arg, (void)co; }
#endif

/* dU[xi] += M'[xi] V[xi]^T over the chunk's tiles, one patch element per task. */
static void wgrad_element(void *arg, int e)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    int tiles = j->images * j->rows * j->grid.tiles_w;
    size_t ld = (size_t)XI * j->grid.row_floats;
    const float *m = j->M + (size_t)e * j->grid.row_floats, *v = j->V + (size_t)e * j->grid.row_floats;
    if (j->dUf) { /* nested in the pool's task: runs on this thread, with its packing buffers */
        sgemm(j->pool, false, true, s->Cout, s->Cin, tiles, 1.0f, m, (int)ld, v, (int)ld, 1.0f,
              j->dUf + (size_t)e * s->Cout * s->Cin, s->Cin);
        return;
    }
    SgemmNtOperand a = {m, ld, 0}, b = {v, ld, 0};
    sgemm_nt_accumulate(NULL, s->Cout, s->Cin, tiles, 1, a, b, j->dU + (size_t)e * s->Cout * s->Cin, (size_t)s->Cin);
}

/* 4 input channels' values in double, the lanes of the adjoint filter transform below. */
typedef double Quad __attribute__((vector_size(4 * sizeof(double))));

/* r[k] = (G^T u)[k], k < 3, for the 6 values u[k*us] (the adjoint of filter_1d). */
WINOGRAD_TARGET static inline void filter_adjoint_1d(const Quad *u, int us, Quad *r, int rs)
{
    Quad u1 = u[us], u2 = u[2 * us], u3 = u[3 * us], u4 = u[4 * us];
    r[0] = 0.25 * u[0] - (u1 + u2) / 6 + (u3 + u4) / 24;
    r[rs] = (u2 - u1) / 6 + (u3 - u4) / 12;
    r[2 * rs] = (u3 + u4 - u1 - u2) / 6 + u[5 * us];
}

/* dw[co][ci] += G^T dU[.][co][ci] G for output channel co, 4 input channels at a time (one channel at a time
 * in scalar double it was 1.4% of a ResNet-50 step). */
WINOGRAD_TARGET static void wgrad_filters(void *arg, int co)
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

size_t conv2d_winograd_weight_grad_scratch_floats(const Conv2dShape *s)
{
    TileGrid t = tile_grid_sized(s, WGRAD_CHUNK_FLOATS);
    size_t sums = (wgrad_blocked(s) ? 1 : 2) * (size_t)s->Cout * s->Cin;
    return (size_t)XI * (sums + (size_t)(s->Cin + s->Cout) * t.row_floats);
}

void conv2d_winograd_weight_grad(Context *ctx, const Conv2dShape *s, const float *x, const float *dy, float *dw,
                                 float *scratch)
{
    WinogradJob j = {.s = s, .grid = tile_grid_sized(s, WGRAD_CHUNK_FLOATS), .x = x, .dy = dy, .dw = dw,
                     .pool = ctx->pool};
    size_t filters = (size_t)XI * s->Cout * s->Cin;
    if (wgrad_blocked(s)) {
        j.dUf = scratch;
        j.V = scratch + filters;
        memset(j.dUf, 0, sizeof(float) * filters);
    } else {
        j.dU = (double *)scratch;
        j.V = scratch + 2 * filters;
        memset(j.dU, 0, sizeof(double) * filters);
    }
    j.M = j.V + (size_t)XI * s->Cin * j.grid.row_floats;
    for (j.n0 = 0; j.n0 < s->N; j.n0 += j.grid.images_per_chunk) {
        j.images = s->N - j.n0 < j.grid.images_per_chunk ? s->N - j.n0 : j.grid.images_per_chunk;
        for (j.ty0 = 0; j.ty0 < j.grid.tiles_h; j.ty0 += j.grid.rows_per_chunk) {
            j.rows = j.grid.tiles_h - j.ty0 < j.grid.rows_per_chunk ? j.grid.tiles_h - j.ty0 : j.grid.rows_per_chunk;
            threadpool_run(ctx->pool, s->Cin, transform_input_channel, &j);
            threadpool_run(ctx->pool, s->Cout, transform_dy_channel, &j);
            threadpool_run(ctx->pool, XI, wgrad_element, &j);
        }
    }
    threadpool_run(ctx->pool, s->Cout, wgrad_filters, &j);
}
