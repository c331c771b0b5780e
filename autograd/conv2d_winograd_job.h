/* Internal to the Winograd convolution (conv2d_winograd.c): the job its pool tasks share, and the two
 * variants' transforms, each in a file of its own:
 *   F(4x4, 3x3), conv2d_winograd_f4.c: 6x6 patches, 36 transform-domain products per 16 outputs;
 *   F(6x6, 3x3), conv2d_winograd_f6.c: 8x8 patches, 64 per 36 outputs (21% fewer at large sizes, with
 *   larger transformed weights and somewhat larger rounding errors).
 * Both use Lavin & Gray's construction; F(6x6) takes the points 0, +-1, +-2, +-1/2, infinity.
 *
 * Layouts, XI = alpha^2 patch elements: V [Cin][XI][row_floats] (the input transform of a chunk of tiles),
 * M [Cout][XI][row_floats] (the products, or the output gradient's transform in the weight gradient), a tile t
 * of the chunk at column t; U packed as the GEMMs' left operands (sgemm_packed_a_offset), XI of them; the
 * weight gradient's sums dU [XI][Cout][Cin] (double, or float for the blocked GEMMs). The transforms work on
 * LANES tiles at a time (one AVX register per patch element). x86-64 with AVX2/FMA only (conv2d_winograd_applies). */
#ifndef AUTOGRAD_CONV2D_WINOGRAD_JOB_H
#define AUTOGRAD_CONV2D_WINOGRAD_JOB_H

#include "autograd/conv2d_cpu.h"

enum { WINOGRAD_LANES = 8, WINOGRAD_MAX_XI = 64 };

typedef struct {
    int tiles_h, tiles_w, per_image; /* output tiles of one image */
    int images_per_chunk;
    int rows_per_chunk; /* tile rows of a chunk: all of an image's when a chunk holds whole images */
    int tiles_padded; /* tiles of one chunk, rounded up to LANES: the GEMMs' N */
    int row_floats;   /* row length of V and M: room for the input transform's spill-over lanes */
} TileGrid;

typedef struct WinogradVariant WinogradVariant;

typedef struct {
    const WinogradVariant *v;
    const Conv2dShape *s; /* Cout: all targets' */
    TileGrid grid;
    const float *x;
    const Conv2dCpuTarget *t;
    int n_targets;
    float *U, *V, *M; /* U: packed GEMM operands (packed_u); M: the targets' rows one after another */
    const float *dy;  /* weight gradient: the output gradient [N, Cout, Ho, Wo], M holds its transform */
    double *dU;       /* weight gradient: [XI][Cout][Cin] sums (dot products, few filters) */
    float *dUf;       /* or, with many filters, float sums of the blocked GEMMs */
    float *dw;        /* weight gradient: [Cout, Cin, 3, 3], added to */
    int n0, images; /* the chunk being processed: images n0.. n0 + images - 1, */
    int ty0, rows;  /* tile rows ty0.. ty0 + rows - 1 of each */
    ThreadPool *pool;
} WinogradJob;

/* A variant's transforms, each a pool task over the job's current chunk (arg: the WinogradJob). */
struct WinogradVariant {
    int tile, alpha; /* output tile side, patch side (tile + 2) */
    /* V[ci] of the chunk's tiles, from x (padding as s->p; V's columns up to tiles_padded defined) */
    void (*input_channel)(void *job, int ci);
    /* y of output channel co (over all targets) from M[co]: the inverse transform, bias, activation, cropped at
     * the output's edges, written or added (the target's accumulate) */
    void (*output_channel)(void *job, int co);
    /* M[co] = the adjoint of the output transform on dy's tiles (zero past the output's edges) */
    void (*dy_channel)(void *job, int co);
    /* the filters of w [M, Cin, 3, 3] of one MR-row panel, transformed into the packed operands P[0..XI) */
    void (*filter_panel)(const float *w, int M, int Cin, int panel, float *const *P);
    /* dw[co] += the adjoint of the filter transform of dU[.][co][.] (or dUf) */
    void (*filter_grad)(void *job, int co);
};

extern const WinogradVariant winograd_f4x4, winograd_f6x6;

static inline int winograd_xi(const WinogradVariant *v) { return v->alpha * v->alpha; }

/* Which target output channel `co` (counted over all targets) belongs to; *first its target's first. */
static inline const Conv2dCpuTarget *winograd_target_of(const WinogradJob *j, int co, int *first)
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

/* LANES tiles' worth of one patch element. aligned(4): V and M rows start wherever the scratch puts them. */
typedef float WinogradLanes __attribute__((vector_size(WINOGRAD_LANES * sizeof(float)), aligned(4)));
/* 4 input channels' values in double, the lanes of the adjoint filter transforms. */
typedef double WinogradQuad __attribute__((vector_size(4 * sizeof(double))));

#endif
