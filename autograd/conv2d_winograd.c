/* Winograd convolution for dense 3x3 stride-1 layers: every output tile of a channel is
 * A^T [ (G g G^T) . (B^T d B) ] A, d the input patch, g the 3x3 filter. Summed over input channels, the
 * elementwise product becomes XI independent GEMMs [Cout x Cin] x [Cin x T], which is where the saving is.
 * Two variants (conv2d_winograd_job.h): F(4x4, 3x3), 36 multiplications per 16 outputs instead of 144, and
 * F(6x6, 3x3), 64 per 36 instead of 324, for large layers without prepacked weights (choose_variant).
 *
 * The transforms work on 8 tiles at a time (one AVX register per patch element), so V and M are laid
 * out [channels][XI][tiles] and each transform reads or writes whole 8-tile vectors: a channel's XI
 * rows are one contiguous block, which the transform streams through (the GEMMs instead read and
 * write rows XI apart; with [XI][channels][tiles] the transforms, touching XI distant rows at once,
 * were 15% slower end to end). Tiles are taken in chunks, several whole images or some whole tile rows of
 * one, whose V and M fit CHUNK_FLOATS (cache-sized) or, for a layer too large to stay in cache, hold at
 * least CHUNK_MIN_TILES tiles within CHUNK_MAX_FLOATS (tile_grid_sized), so that the scratch stays bounded. */
#include "autograd/conv2d_winograd.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/conv2d_avx2.h"
#include "autograd/conv2d_winograd_job.h"
#include "tensor/sgemm.h"
#include "tensor/sgemm_nt.h"

/* CHUNK_FLOATS bounds V and M of one chunk of tiles (2 MiB) of a layer that stays in cache (an inference at
 * 640x480; see tile_grid_sized for larger ones): a chunk's V and M then stay in the last-level
 * cache while its three passes run, and the next chunk reuses the same memory. Taking the whole image
 * at once (5.6 MB for the FPN merge at 80x60) made those passes write memory that the rest of the
 * forward had pushed out of the cache: 1.3-1.4 ms in the 640x480 forward for a layer that takes 0.9
 * ms alone on 2 threads. */
enum { LANES = WINOGRAD_LANES, CHUNK_FLOATS = 1 << 19, CHUNK_MIN_TILES = 256, CHUNK_MAX_FLOATS = 8 << 20,
       LAYER_CACHED_BYTES = 4 << 20 };

/* The tiles of a chunk whose V and M fit chunk_floats. */
static TileGrid tile_grid_sized(const Conv2dShape *s, const WinogradVariant *v, int chunk_floats)
{
    TileGrid t;
    int xi = winograd_xi(v);
    t.tiles_h = (s->Ho + v->tile - 1) / v->tile;
    t.tiles_w = (s->Wo + v->tile - 1) / v->tile;
    t.per_image = t.tiles_h * t.tiles_w;
    int chunk_tiles = chunk_floats / (xi * (s->Cin + s->Cout));
    /* The GEMMs (Cout x Cin by Cin x chunk tiles) want many columns: each re-reads its U[xi] from the
     * last-level cache for every chunk. Wide layers (ResNet-50's 256 channels: 28 tiles in 2 MiB) keep at
     * least four column panels; a layer whose activations do not stay in the cache anyway (a training
     * batch) gains from chunks of CHUNK_MIN_TILES while V and M stay within CHUNK_MAX_FLOATS (time against
     * 64-tile chunks, forward / backward, medians of alternated pairs on Zen 4, F(4x4): ResNet-50's 256
     * channels at 53x53 0.83 / 0.90, 512 at 27x27 0.88 / 0.93, 128 at 105x105 0.95 / 1.0; MobileNet's 64 -> 64
     * and 64 -> 16 at 80x80, batch 8, 0.95 / 0.98 and 0.92 / 0.95; 512-tile chunks were slower again at 128
     * channels). A 640x480 inference keeps the small chunks that stay in cache (see CHUNK_FLOATS). */
    int min_tiles = 4 * SGEMM_NR;
    double activation_bytes = sizeof(float) * (double)s->N * ((double)s->Cin * s->H * s->W + (double)s->Cout * s->Ho * s->Wo);
    if (activation_bytes > LAYER_CACHED_BYTES) {
        int fit = CHUNK_MAX_FLOATS / (xi * (s->Cin + s->Cout));
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

static TileGrid tile_grid(const Conv2dShape *s, const WinogradVariant *v) { return tile_grid_sized(s, v, CHUNK_FLOATS); }

/* The weight gradient takes 4x larger chunks: its GEMMs sum over the chunk's tiles, and longer sums
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
    return winograd_params(s->KH, s->KW, &s->p) && s->Cin >= 8 && s->Cout >= 8 && s->Ho >= 4 && s->Wo >= 4;
}

bool conv2d_winograd_weight_shape(const Tensor *w, Conv2dParams p)
{
    return w->ndim == 4 && winograd_params((int)w->shape[2], (int)w->shape[3], &p);
}

/* The variant for a shape whose weights are transformed per call: F(6x6) where its fewer multiplications
 * outweigh its costs, which are larger transformed weights (64 elements to 36: for few tiles per filter the
 * filter transform dominates) and tiles of 6 (more padding on small outputs). So outputs of at least
 * F6_MIN_SIZE a side and layers whose GEMMs dominate the transforms, Cin Cout / (Cin + Cout) >= F6_MIN_GEMM.
 * Time of F(6x6) over F(4x4), forward / backward, medians of 10-15 alternated pairs (bench_train_layer, batch 2
 * unless said, 2 threads, Zen 4): 256 -> 256 at 53x53 0.87 / 0.93, at 105x105 0.85 / 0.83; 256 -> 64 at
 * 105x105 0.81 / 0.83; 128 -> 128 at 105x105 0.88 / 0.92, at 53x53 0.81 / 0.85; 64 -> 64 at 210x210 0.95 / 0.98,
 * at 105x105 0.89 / 0.89, at 53x53 0.94 / 0.94, batch 8 at 160x160 0.87 / 0.87 and at 80x80 0.91 / 0.85.
 * Below the lines: 512 -> 512 at 27x27 1.30 / 1.32; 64 -> 64 at 27x27 1.25 / 1.27, batch 8 at 40x40 1.06 / 0.98;
 * batch 8 at 80x80: 64 -> 32 1.04 / 1.03, 32 -> 32 1.02 / 1.01, 64 -> 16 1.09 / 1.06, 16 -> 16 1.03 / 1.08.
 * (An earlier sitting's 64 -> 64 at 80x80, batch 8, gave 1.02 / 1.0, which put the line at 48.) */
enum { F6_MIN_SIZE = 48, F6_MIN_GEMM = 32 };

static const WinogradVariant *choose_variant(const Conv2dShape *s)
{
    bool large = s->Ho >= F6_MIN_SIZE && s->Wo >= F6_MIN_SIZE;
    bool gemm_bound = (long)s->Cin * s->Cout >= (long)F6_MIN_GEMM * (s->Cin + s->Cout);
    return large && gemm_bound ? &winograd_f6x6 : &winograd_f4x4;
}

int conv2d_winograd_tile(const Conv2dShape *s) { return choose_variant(s)->tile; }

/* The packed U of all targets (each target's rows padded to whole panels: at most SGEMM_MAX_PRODUCTS). */
static size_t packed_u_floats(const Conv2dShape *s, const WinogradVariant *v)
{
    return (size_t)winograd_xi(v) * ((size_t)s->Cout + (SGEMM_MR - 1) * SGEMM_MAX_PRODUCTS) * s->Cin;
}

static size_t variant_scratch_floats(const Conv2dShape *s, const WinogradVariant *v)
{
    TileGrid t = tile_grid(s, v);
    return packed_u_floats(s, v) + (size_t)winograd_xi(v) * (size_t)(s->Cin + s->Cout) * t.row_floats;
}

size_t conv2d_winograd_scratch_floats(const Conv2dShape *s)
{
    /* F(4x4) always (targets with prepacked weights take it), and the variant of the shape */
    size_t f4 = variant_scratch_floats(s, &winograd_f4x4), chosen = variant_scratch_floats(s, choose_variant(s));
    return f4 > chosen ? f4 : chosen;
}

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
    float *P[WINOGRAD_MAX_XI];
    for (int e = 0; e < winograd_xi(j->v); e++) P[e] = packed_u(j, q, e);
    j->v->filter_panel(t->w, t->Cout, j->s->Cin, task, P);
}

bool conv2d_winograd_pack_weights(const float *w, int Cout, int Cin, SgemmPackedA u[36])
{
    bool ok = true;
    float *P[36];
    for (int e = 0; e < 36; e++) {
        size_t floats = sgemm_packed_a_floats(Cout, Cin);
        u[e] = (SgemmPackedA){Cout, Cin, ok ? aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63) : NULL};
        ok = ok && u[e].data;
        P[e] = u[e].data;
    }
    for (int panel = 0; ok && panel < row_panels(Cout); panel++) winograd_f4x4.filter_panel(w, Cout, Cin, panel, P);
    if (!ok)
        for (int e = 0; e < 36; e++) sgemm_packed_a_free(&u[e]);
    return ok;
}

/* Tile columns of one GEMM task: the GEMMs are cut in column halves when there are tiles enough,
 * so that the pool has pieces to even out the threads' finishing times. */
static int gemm_column_parts(const TileGrid *g) { return g->tiles_padded >= 4 * SGEMM_NR ? 2 : 1; }

/* M[xi] = U[xi] V[xi] over a part of the tile columns: one GEMM per patch element (all targets'
 * products sharing V[xi]), each task on one thread (a nested sgemm runs serially, with the packing
 * buffers of the thread it runs on). */
static void multiply_element(void *arg, int task)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    int xi = winograd_xi(j->v);
    int ld = j->grid.row_floats, parts = gemm_column_parts(&j->grid), e = task / parts, part = task % parts;
    int cols = (j->grid.tiles_padded / parts + SGEMM_NR - 1) / SGEMM_NR * SGEMM_NR, c0 = part * cols;
    if (c0 + cols > j->grid.tiles_padded) cols = j->grid.tiles_padded - c0;
    if (cols <= 0) return;
    SgemmProduct prods[SGEMM_MAX_PRODUCTS];
    SgemmPackedA made[SGEMM_MAX_PRODUCTS]; /* views of the scratch's packed U (transform_weights) */
    SgemmRight right = {j->V + (size_t)e * ld + c0, xi * ld, false};
    for (int q = 0, first = 0; q < j->n_targets; first += j->t[q++].Cout) {
        const Conv2dCpuTarget *t = &j->t[q];
        made[q] = (SgemmPackedA){t->Cout, s->Cin, t->packed ? NULL : packed_u(j, q, e)};
        prods[q] = (SgemmProduct){t->Cout, NULL, s->Cin, false, t->packed ? &t->packed->winograd[e] : &made[q],
                                  j->M + ((size_t)first * xi + e) * ld + c0, xi * ld, NULL, -1.0f};
    }
    sgemm_multi(j->pool, cols, s->Cin, 1.0f, &right, 0.0f, prods, j->n_targets);
}

void conv2d_winograd_forward(Context *ctx, const Conv2dShape *s, const float *x, int n, const Conv2dCpuTarget *t,
                             float *scratch)
{
    bool prepacked = false; /* prepacked weights are F(4x4)'s */
    for (int i = 0; i < n; i++) prepacked = prepacked || t[i].packed;
    const WinogradVariant *v = prepacked ? &winograd_f4x4 : choose_variant(s);
    WinogradJob j = {.v = v, .s = s, .grid = tile_grid(s, v), .x = x, .t = t, .n_targets = n, .pool = ctx->pool};
    int xi = winograd_xi(v);
    j.U = scratch;
    j.V = j.U + packed_u_floats(s, v);
    j.M = j.V + (size_t)xi * s->Cin * j.grid.row_floats;
    int panels = 0; /* row panels of the targets without packed weights, each transformed by a task */
    for (int i = 0; i < n; i++) panels += t[i].packed ? 0 : row_panels(t[i].Cout);
    if (panels) threadpool_run(ctx->pool, panels, transform_weights, &j);
    for (j.n0 = 0; j.n0 < s->N; j.n0 += j.grid.images_per_chunk) {
        j.images = s->N - j.n0 < j.grid.images_per_chunk ? s->N - j.n0 : j.grid.images_per_chunk;
        for (j.ty0 = 0; j.ty0 < j.grid.tiles_h; j.ty0 += j.grid.rows_per_chunk) {
            j.rows = j.grid.tiles_h - j.ty0 < j.grid.rows_per_chunk ? j.grid.tiles_h - j.ty0 : j.grid.rows_per_chunk;
            threadpool_run(ctx->pool, s->Cin, v->input_channel, &j);
            threadpool_run(ctx->pool, xi * gemm_column_parts(&j.grid), multiply_element, &j);
            threadpool_run(ctx->pool, s->Cout, v->output_channel, &j);
        }
    }
}

/* ---- weight gradient ---------------------------------------------------------------------------
 * The forward is y = A^T [ sum_ci (G g G^T) . (B^T d B) ] A per tile, so the gradient of the transformed
 * filter is dU[xi][co][ci] = sum over tiles of (A dy A^T)[xi] (B^T d B)[xi], dy the tile's output
 * gradient (zero past the output's edges): XI GEMMs dU[xi] = M'[xi] V[xi]^T whose rows run along the
 * tiles, which sgemm_nt reads in place. Then dw = G^T dU G. The input transform V is the forward's;
 * A dy A^T is the adjoint of the output transform. */

/* dU[xi] += M'[xi] V[xi]^T over the chunk's tiles, one patch element per task. */
static void wgrad_element(void *arg, int e)
{
    const WinogradJob *j = arg;
    const Conv2dShape *s = j->s;
    int tiles = j->images * j->rows * j->grid.tiles_w;
    size_t ld = (size_t)winograd_xi(j->v) * j->grid.row_floats;
    const float *m = j->M + (size_t)e * j->grid.row_floats, *v = j->V + (size_t)e * j->grid.row_floats;
    if (j->dUf) { /* nested in the pool's task: runs on this thread, with its packing buffers */
        sgemm(j->pool, false, true, s->Cout, s->Cin, tiles, 1.0f, m, (int)ld, v, (int)ld, 1.0f,
              j->dUf + (size_t)e * s->Cout * s->Cin, s->Cin);
        return;
    }
    SgemmNtOperand a = {m, ld, 0}, b = {v, ld, 0};
    sgemm_nt_accumulate(NULL, s->Cout, s->Cin, tiles, 1, a, b, j->dU + (size_t)e * s->Cout * s->Cin, (size_t)s->Cin);
}

static size_t wgrad_scratch_floats(const Conv2dShape *s, const WinogradVariant *v)
{
    TileGrid t = tile_grid_sized(s, v, WGRAD_CHUNK_FLOATS);
    size_t sums = (wgrad_blocked(s) ? 1 : 2) * (size_t)s->Cout * s->Cin;
    return (size_t)winograd_xi(v) * (sums + (size_t)(s->Cin + s->Cout) * t.row_floats);
}

size_t conv2d_winograd_weight_grad_scratch_floats(const Conv2dShape *s)
{
    return wgrad_scratch_floats(s, choose_variant(s));
}

void conv2d_winograd_weight_grad(Context *ctx, const Conv2dShape *s, const float *x, const float *dy, float *dw,
                                 float *scratch)
{
    const WinogradVariant *v = choose_variant(s);
    WinogradJob j = {.v = v, .s = s, .grid = tile_grid_sized(s, v, WGRAD_CHUNK_FLOATS), .x = x, .dy = dy, .dw = dw,
                     .pool = ctx->pool};
    int xi = winograd_xi(v);
    size_t filters = (size_t)xi * s->Cout * s->Cin;
    if (wgrad_blocked(s)) {
        j.dUf = scratch;
        j.V = scratch + filters;
        memset(j.dUf, 0, sizeof(float) * filters);
    } else {
        j.dU = (double *)scratch;
        j.V = scratch + 2 * filters;
        memset(j.dU, 0, sizeof(double) * filters);
    }
    j.M = j.V + (size_t)xi * s->Cin * j.grid.row_floats;
    for (j.n0 = 0; j.n0 < s->N; j.n0 += j.grid.images_per_chunk) {
        j.images = s->N - j.n0 < j.grid.images_per_chunk ? s->N - j.n0 : j.grid.images_per_chunk;
        for (j.ty0 = 0; j.ty0 < j.grid.tiles_h; j.ty0 += j.grid.rows_per_chunk) {
            j.rows = j.grid.tiles_h - j.ty0 < j.grid.rows_per_chunk ? j.grid.tiles_h - j.ty0 : j.grid.rows_per_chunk;
            threadpool_run(ctx->pool, s->Cin, v->input_channel, &j);
            threadpool_run(ctx->pool, s->Cout, v->dy_channel, &j);
            threadpool_run(ctx->pool, xi, wgrad_element, &j);
        }
    }
    threadpool_run(ctx->pool, s->Cout, v->filter_grad, &j);
}
