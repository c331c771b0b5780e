/* The backward paths of the conv -> BN -> activation op that keep dz in cache (conv_bn_act_state.h), and
 * the depthwise layers' forward by plane. */
#include <string.h>

#include "autograd/conv2d_avx2.h"
#include "autograd/conv_bn_act_state.h"
#include "tensor/sgemm_nt.h"

/* dw[i] += the sum over the N images of sums[n][i], i < count, added in image order (the per-image
 * double sums of the backward paths below: the result does not depend on the thread count). */
static void add_image_sums(float *dw, const double *sums, int N, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        double sum = 0;
        for (int n = 0; n < N; n++) sum += sums[(size_t)n * count + i];
        dw[i] += (float)sum;
    }
}

/* ---- depthwise 3x3 (stride 1 or 2, padding 1, AVX2): the backward plane by plane, dz in cache ------
 * Once the per-channel sums are known, each (image, channel) plane's dz is written to its thread's
 * scratch and read there by the input gradient (the kernels of conv2d_avx2.h) and the weight gradient's
 * nine sums, so dz never goes to memory: the layer-wide dz was one write and two reads of its output
 * size. The weight gradient's sums are kept per plane and added per channel in image order afterwards. */

typedef struct {
    ConvBnActState *st;
    ThreadPool *pool;
    const float *x, *w;
    float *dx, *dw;
    bool dx_accumulate;
    ConvBnActState *dx_sums; /* x's op, which takes its BN sums from here (conv_bn_act_sums_receiver), or NULL */
    double *plane_sums; /* [N * C][9] */
    int no_scratch;     /* set by a task whose thread had no scratch (out of memory) */
} DepthwiseBackJob;

static void depthwise_backward_plane(void *arg, int plane)
{
    DepthwiseBackJob *j = arg;
    const ConvBnActState *st = j->st;
    const Conv2dShape *s = &st->s;
    int c = plane % s->Cin, stride = s->p.stride_h;
    size_t out = (size_t)s->Ho * s->Wo, in = (size_t)s->H * s->W;
    float *dz = threadpool_scratch(j->pool, out);
    if (!dz) {
        j->no_scratch = 1; /* the caller fails the graph */
        return;
    }
    BnSaved kept = conv_bn_act_kept_channel(st, c, (st->from_output ? st->y : st->z) + plane * out);
    BnLayout one = {1, 1, out};
    bn_channel_backward_dz(&kept, st->dy + plane * out, one, 0, st->mg[c], st->mgx[c], dz);
    if (j->dx) {
        conv2d_depthwise3x3_input_grad_plane(s, dz, j->w + (size_t)c * 9, j->dx + plane * in, j->dx_accumulate);
        if (j->dx_sums) conv_bn_act_receive_sums(j->dx_sums, plane / s->Cin, c, j->x + plane * in, j->dx + plane * in, in);
    }
    if (j->dw) {
        double *acc = j->plane_sums + (size_t)plane * 9;
        for (int k = 0; k < 9; k++) acc[k] = 0;
        depthwise3x3_backward_weight_avx2(j->x + plane * in, s->H, s->W, dz, s->Ho, s->Wo, stride, acc);
    }
}

void conv_bn_act_depthwise_backward(Graph *g, ConvBnActState *st, const float *x, const float *w, float *dx,
                                    bool dx_accumulate, ConvBnActState *dx_sums, float *dw)
{
    const Conv2dShape *s = &st->s;
    int planes = s->N * s->Cin;
    DepthwiseBackJob j = {st, g->ctx->pool, x, w, dx, dw, dx_accumulate, dx ? dx_sums : NULL,
                          dw ? graph_host_scratch(g, sizeof(double) * 9 * (size_t)planes) : NULL, 0};
    if (dw && !j.plane_sums) return;
    threadpool_run(g->ctx->pool, planes, depthwise_backward_plane, &j);
    if (j.no_scratch) {
        graph_fail(g, ERR_OOM, "conv_bn_act backward: out of memory for a plane of scratch");
        return;
    }
    if (dw) add_image_sums(dw, j.plane_sums, s->N, (size_t)s->Cin * 9); /* plane n * Cin + c: image n's */
}


/* ---- pointwise (1x1, stride 1) layers: the backward by column blocks, dz in cache -------------------
 * Once the per-channel sums are known, each image goes in blocks of output columns: the block's dz [Cout,
 * cols] is written to a buffer of the image that stays in L2, and both gradients read it there, dx[:, block]
 * = W^T dz (W^T packed once) and the image's dW += dz x[:, block]^T (dot products into the image's double
 * sums): dz never goes to memory, where the layer-wide dz had been one write and two reads of the output's
 * size. A task per image (its own buffers; images added in order afterwards), so the result does not depend
 * on the thread count. Measured alone (batch 8, 2 threads, Zen 4), backward ms before -> after: 8->16 at
 * 320x320 20.2-20.9 -> 17.3-18.1, 64->64 at 80x80 9.6-9.8 -> 8.5-8.8, 16->32 at 160x160 11.4-11.6 ->
 * 10.3-10.8, 32->32 at 160x160 14.4 -> 13.4-13.5; 128->128 at 40x40 unchanged (6.3-7.1). Layers whose
 * weight has more than POINTWISE_FUSED_MAX_W values keep the general path (the per-image sums would be
 * large), and so do layers with more than POINTWISE_FUSED_MAX_CHANNELS input and output channels together:
 * their blocks shrink below 350 columns, too narrow for the GEMM and the dot products (ResNet-50's
 * 128->512 at 105x105, batch 2: backward 97.6 ms fused against 66.9 general, 512->128 69.6 against 57.2;
 * 64->256 and 256->64 at 210x210, 320 channels, about even). */
enum { POINTWISE_FUSED_MAX_W = 1 << 16, POINTWISE_FUSED_MAX_CHANNELS = 384, POINTWISE_BLOCK_FLOATS = 1 << 17 };
/* From this many weights on, a block's weight gradient is the blocked GEMM (dz x^T, its operands packed by
 * register transposes) into the image's float sums instead of the dot products into double: backward time
 * in alternated pairs, 2 threads, Zen 4: 128->128 at 40x40 0.91, 64->256 and 256->64 at 210x210 0.90 and
 * 0.88, 64->64 at 80x80 0.96; 32->32 even, 8->16 1.33 (below the line); the ResNet-50 step 0.94. */
enum { POINTWISE_BLOCKED_DW_W = 1 << 12 };

typedef struct {
    ConvBnActState *st;
    ThreadPool *pool;
    const float *x;
    float *dx;
    bool dx_accumulate;
    ConvBnActState *dx_sums; /* x's op, which takes its BN sums from here (conv_bn_act_sums_receiver), or NULL */
    const SgemmPackedA *wt; /* W^T [Cin, Cout] packed, or NULL without dx */
    bool dw;
    int cols;               /* columns of a block */
    float *dz;              /* [N][Cout x cols] block buffers */
    double *sums;           /* [N][Cout x Cin] weight-gradient sums, or NULL */
    float *block_sums;      /* [N][Cout x Cin] the blocked GEMM's sums over an image, or NULL (dot products) */
} PointwiseBackJob;

static void pointwise_backward_image(void *arg, int n)
{
    PointwiseBackJob *j = arg;
    const ConvBnActState *st = j->st;
    const Conv2dShape *s = &st->s;
    int C = s->Cout, Cin = s->Cin, HW = s->Ho * s->Wo;
    float *dz = j->dz + (size_t)n * C * j->cols;
    double *sums = j->sums ? j->sums + (size_t)n * C * Cin : NULL;
    if (sums) memset(sums, 0, sizeof(double) * (size_t)C * Cin);
    const float *kept_base = st->from_output ? st->y : st->z;
    for (int j0 = 0; j0 < HW; j0 += j->cols) {
        int cols = HW - j0 < j->cols ? HW - j0 : j->cols;
        for (int c = 0; c < C; c++) {
            size_t at = ((size_t)n * C + c) * HW + j0;
            BnSaved kept = conv_bn_act_kept_channel(st, c, kept_base + at);
            BnLayout one = {1, 1, (size_t)cols};
            bn_channel_backward_dz(&kept, st->dy + at, one, 0, st->mg[c], st->mgx[c], dz + (size_t)c * cols);
        }
        if (j->dx) {
            SgemmRight right = {dz, cols, false};
            SgemmProduct prod = {Cin, NULL, 0, false, j->wt, j->dx + (size_t)n * Cin * HW + j0, HW, NULL, -1.0f};
            sgemm_multi(j->pool, cols, C, 1.0f, &right, j->dx_accumulate ? 1.0f : 0.0f, &prod, 1);
            for (int ci = 0; j->dx_sums && ci < Cin; ci++) { /* the block of dx is still in cache */
                size_t at = ((size_t)n * Cin + ci) * HW + j0;
                conv_bn_act_receive_sums(j->dx_sums, n, ci, j->x + at, j->dx + at, (size_t)cols);
            }
        }
        const float *xb = j->x + (size_t)n * Cin * HW + j0;
        if (sums && j->block_sums) { /* nested in the pool's task: runs on this thread */
            sgemm(j->pool, false, true, C, Cin, cols, 1.0f, dz, cols, xb, HW, j0 == 0 ? 0.0f : 1.0f,
                  j->block_sums + (size_t)n * C * Cin, Cin);
        } else if (sums) {
            SgemmNtOperand a = {dz, (size_t)cols, 0}, b = {xb, (size_t)HW, 0};
            sgemm_nt_accumulate(j->pool, C, Cin, cols, 1, a, b, sums, (size_t)Cin);
        }
    }
    if (sums && j->block_sums)
        for (size_t i = 0; i < (size_t)C * Cin; i++) sums[i] = j->block_sums[(size_t)n * C * Cin + i];
}

/* A 1x1 convolution of stride 1 without padding or groups: a GEMM of each image's pixels. */
static bool pointwise_shape(const Conv2dShape *s)
{
    return s->KH == 1 && s->KW == 1 && s->p.stride_h == 1 && s->p.stride_w == 1 && s->p.pad_h == 0 &&
           s->p.pad_w == 0 && s->p.groups == 1 && s->H == s->Ho && s->W == s->Wo;
}

/* Whether the fused pointwise backward serves this layer (see above). */
bool conv_bn_act_pointwise_fused(const Graph *g, const ConvBnActState *st)
{
    const Conv2dShape *s = &st->s;
    return pointwise_shape(s) && (long)s->Cout * s->Cin <= POINTWISE_FUSED_MAX_W &&
           s->Cout + s->Cin <= POINTWISE_FUSED_MAX_CHANNELS && s->N >= threadpool_size(g->ctx->pool);
}

void conv_bn_act_pointwise_backward(Graph *g, ConvBnActState *st, const float *x, const float *w, float *dx,
                                    bool dx_accumulate, ConvBnActState *dx_sums, float *dw)
{
    const Conv2dShape *s = &st->s;
    int C = s->Cout, Cin = s->Cin, HW = s->Ho * s->Wo;
    /* a block's dz and x together about half of L2 (512 KB), 16-column multiples */
    int cols = POINTWISE_BLOCK_FLOATS / (C + Cin) / 16 * 16;
    if (cols < 64) cols = 64;
    if (cols > HW) cols = HW;
    PointwiseBackJob j = {st, g->ctx->pool, x, dx, dx_accumulate, dx ? dx_sums : NULL, NULL, dw != NULL, cols,
                          graph_host_scratch(g, sizeof(float) * (size_t)s->N * C * cols),
                          dw ? graph_host_scratch(g, sizeof(double) * (size_t)s->N * C * Cin) : NULL, NULL};
    bool blocked = dw && (long)C * Cin >= POINTWISE_BLOCKED_DW_W;
    if (blocked) j.block_sums = graph_host_scratch(g, sizeof(float) * (size_t)s->N * C * Cin);
    SgemmPackedA wt = {0};
    if (!j.dz || (dw && !j.sums) || (blocked && !j.block_sums) || (dx && !sgemm_pack_a(&wt, true, Cin, C, w, Cin))) {
        graph_fail(g, ERR_OOM, "conv_bn_act backward: out of memory");
        return;
    }
    j.wt = dx ? &wt : NULL;
    threadpool_run(g->ctx->pool, s->N, pointwise_backward_image, &j);
    sgemm_packed_a_free(&wt);
    if (dw) add_image_sums(dw, j.sums, s->N, (size_t)C * Cin);
}

/* ---- the stem (dense 3x3 stride 2 over few input channels, no input gradient): by image, dz in cache --
 * Once the per-channel sums are known, each image goes in bands of STEM_BAND_ROWS output rows: the band's
 * dz [Cout, rows, Wo] is written to its thread's scratch (L2-sized) and the weight-gradient kernel reads it
 * there with the band's input rows split once for every output channel. Before, dz was written layer-wide
 * and read back, and the kernel read the whole batch's input once per block of four output channels. A task
 * per image (its own double sums; images added in order afterwards), so the result does not depend on the
 * thread count. */
enum { STEM_BAND_ROWS = 8 };

typedef struct {
    ConvBnActState *st;
    ThreadPool *pool;
    const float *x;
    double *sums;   /* [N][Cout x Cin x 9] */
    int no_scratch; /* set by a task whose thread had no scratch (out of memory) */
} StemBackJob;

static void stem_backward_image(void *arg, int n)
{
    StemBackJob *j = arg;
    const ConvBnActState *st = j->st;
    const Conv2dShape *s = &st->s;
    int C = s->Cout, Wo = s->Wo;
    size_t HW = (size_t)s->Ho * Wo, per_image = (size_t)C * s->Cin * 9;
    float *dz = threadpool_scratch(j->pool, (size_t)C * STEM_BAND_ROWS * Wo);
    if (!dz) {
        j->no_scratch = 1; /* the caller fails the graph */
        return;
    }
    double *acc = j->sums + n * per_image;
    memset(acc, 0, sizeof(double) * per_image);
    const float *kept_base = st->from_output ? st->y : st->z;
    for (int oy0 = 0; oy0 < s->Ho; oy0 += STEM_BAND_ROWS) {
        int rows = s->Ho - oy0 < STEM_BAND_ROWS ? s->Ho - oy0 : STEM_BAND_ROWS;
        size_t band = (size_t)rows * Wo;
        for (int c = 0; c < C; c++) {
            size_t at = ((size_t)n * C + c) * HW + (size_t)oy0 * Wo;
            BnSaved kept = conv_bn_act_kept_channel(st, c, kept_base + at);
            BnLayout one = {1, 1, band};
            bn_channel_backward_dz(&kept, st->dy + at, one, 0, st->mg[c], st->mgx[c], dz + c * band);
        }
        conv3x3_s2_backward_weight_avx2(j->x + (size_t)n * s->Cin * s->H * s->W, s->Cin, s->H, s->W, dz, band, 0, C,
                                        oy0, oy0 + rows, Wo, acc);
    }
}

/* Whether the stem's backward by image serves this layer (see above). */
bool conv_bn_act_stem_by_image(const Graph *g, const ConvBnActState *st, bool dx)
{
    return !dx && conv2d_cpu_algorithm(&st->s) == CONV_CPU_DIRECT3X3_S2 && st->s.N >= threadpool_size(g->ctx->pool);
}

void conv_bn_act_stem_backward(Graph *g, ConvBnActState *st, const float *x, float *dw)
{
    const Conv2dShape *s = &st->s;
    size_t per_image = (size_t)s->Cout * s->Cin * 9;
    StemBackJob j = {st, g->ctx->pool, x, graph_host_scratch(g, sizeof(double) * s->N * per_image), 0};
    if (!j.sums) return;
    threadpool_run(g->ctx->pool, s->N, stem_backward_image, &j);
    if (j.no_scratch) {
        graph_fail(g, ERR_OOM, "conv_bn_act backward: out of memory for a band of scratch");
        return;
    }
    add_image_sums(dw, j.sums, s->N, per_image);
}

/* The depthwise layers' forward, a task per (image, channel) plane: the stencil, then the plane's moments
 * while it is in cache (instead of a pass over the whole output that reads it back from memory). */
void conv_bn_act_depthwise_forward_plane(void *arg, int plane)
{
    ConvBnActState *st = arg;
    const Conv2dShape *s = &st->s;
    size_t out = (size_t)s->Ho * s->Wo;
    float *z = st->z + plane * out;
    depthwise3x3_plane_kernel()(st->x + (size_t)plane * s->H * s->W, s->H, s->W, st->w + (size_t)(plane % s->Cin) * 9, 0.0f,
                            -1.0f, z, s->p.stride_h, s->Wo, 0, s->Ho);
    BnLayout one = {1, 1, out};
    bn_channel_moments(z, one, 0, &st->plane_moments[(size_t)plane * 2], &st->plane_moments[(size_t)plane * 2 + 1]);
}

/* ---- pointwise layers of few input channels: the forward from x twice (pointwise_narrow_avx2.c) -----
 * Tasks of NARROW_CHUNK pixels of one image, a fixed cut (the moments' order does not depend on the thread
 * count): the first pass keeps each chunk's moments and adds them per plane in chunk order. The second
 * streams y past the cache when the layer's output is too large to stay there for the next layer
 * (BN_STREAM_MIN_BYTES). */
enum { NARROW_CHUNK = 4096 };

bool conv_bn_act_pointwise_narrow(const Graph *g, const ConvBnActState *st)
{
    (void)g;
    return pointwise_shape(&st->s) && st->from_output && st->s.Cin <= POINTWISE_NARROW_MAX_CIN &&
           st->s.Cout <= POINTWISE_NARROW_MAX_COUT && conv2d_avx2_available();
}

typedef struct {
    ConvBnActState *st;
    int chunks;      /* per image */
    double *partial; /* [N][chunks][Cout][2] for the moments pass; NULL for the output pass */
} NarrowJob;

static void narrow_chunk_range(const NarrowJob *j, int task, int *n, size_t *p0, size_t *p1)
{
    size_t HW = (size_t)j->st->s.H * j->st->s.W;
    *n = task / j->chunks;
    *p0 = (size_t)(task % j->chunks) * NARROW_CHUNK;
    *p1 = *p0 + NARROW_CHUNK < HW ? *p0 + NARROW_CHUNK : HW;
}

/* One chunk of pixels: its moments (into the job's partial sums), or once st->affine is set, its y. */
static void narrow_task(void *arg, int task)
{
    const NarrowJob *j = arg;
    const ConvBnActState *st = j->st;
    const Conv2dShape *s = &st->s;
    int n;
    size_t p0, p1, HW = (size_t)s->H * s->W;
    narrow_chunk_range(j, task, &n, &p0, &p1);
    const float *xn = st->x + (size_t)n * s->Cin * HW;
    if (j->partial) {
        pointwise_narrow_moments_avx2(xn, s->Cin, HW, p0, p1, st->w, s->Cout, j->partial + (size_t)task * s->Cout * 2);
    } else {
        bool stream = bn_output_streams((size_t)s->N * s->Cout * HW);
        pointwise_narrow_affine_act_avx2(xn, s->Cin, HW, p0, p1, st->w, s->Cout, st->affine, st->affine + s->Cout,
                                         st->act, stream, st->y + (size_t)n * s->Cout * HW);
    }
}

static int narrow_chunks(const ConvBnActState *st)
{
    return (int)(((size_t)st->s.H * st->s.W + NARROW_CHUNK - 1) / NARROW_CHUNK);
}

bool conv_bn_act_narrow_moments(Graph *g, ConvBnActState *st)
{
    const Conv2dShape *s = &st->s;
    int C = s->Cout, chunks = narrow_chunks(st), tasks = s->N * chunks;
    NarrowJob j = {st, chunks, graph_host_scratch(g, sizeof(double) * 2 * (size_t)tasks * C)};
    st->plane_moments = graph_host_scratch(g, sizeof(double) * 2 * (size_t)s->N * C);
    st->affine = graph_host_scratch(g, sizeof(float) * 2 * (size_t)C);
    if (!j.partial || !st->plane_moments || !st->affine) return false;
    threadpool_run(g->ctx->pool, tasks, narrow_task, &j);
    for (int n = 0; n < s->N; n++)
        for (int c = 0; c < C; c++) {
            double *pm = st->plane_moments + ((size_t)n * C + c) * 2;
            pm[0] = pm[1] = 0;
            for (int k = 0; k < chunks; k++) {
                const double *part = j.partial + (((size_t)n * chunks + k) * C + c) * 2;
                pm[0] += part[0], pm[1] += part[1];
            }
        }
    return true;
}

void conv_bn_act_narrow_output(Graph *g, ConvBnActState *st)
{
    NarrowJob j = {st, narrow_chunks(st), NULL};
    threadpool_run(g->ctx->pool, st->s.N * j.chunks, narrow_task, &j);
}

/* ---- pointwise layers: the forward image by image ------------------------------------------------
 * A task per image: its GEMM alone (W packed once for all), then the moments of each of its output planes,
 * while they are in the thread's cache where the image's output fits it. Layers that take neither this nor
 * the narrow path run the general one: each image's GEMM split over the threads, then a pass over the whole
 * output for the moments (conv_bn_act_pointwise_by_image says which). */
typedef struct {
    ConvBnActState *st;
    const SgemmPackedA *w;
    ThreadPool *pool;
} PointwiseForwardJob;

static void pointwise_forward_image(void *arg, int n)
{
    const PointwiseForwardJob *j = arg;
    ConvBnActState *st = j->st;
    const Conv2dShape *s = &st->s;
    size_t HW = (size_t)s->H * s->W;
    float *z = st->z + (size_t)n * s->Cout * HW;
    SgemmRight right = {st->x + (size_t)n * s->Cin * HW, (int)HW, false};
    SgemmProduct prod = {s->Cout, NULL, 0, false, j->w, z, (int)HW, NULL, -1.0f};
    sgemm_multi(j->pool, (int)HW, s->Cin, 1.0f, &right, 0.0f, &prod, 1); /* within a task: on this thread */
    BnLayout one = {1, 1, HW};
    for (int c = 0; c < s->Cout; c++) {
        double *pm = st->plane_moments + ((size_t)n * s->Cout + c) * 2;
        bn_channel_moments(z + (size_t)c * HW, one, 0, &pm[0], &pm[1]);
    }
}

/* Image by image where that keeps each image's output in cache for its moments (at most
 * POINTWISE_IMAGE_CACHED_BYTES), or where the images are enough to even out the threads
 * (POINTWISE_IMAGES_PER_THREAD each); else the general path: each image's GEMM cut over the pool, then the
 * moments by channel from memory, which is where a larger image's moments come from anyway. With one image per
 * thread, one thread waited for the other about 9% of these layers' time in a ResNet-50 step (batch 2 at 840,
 * 2 threads). Forward time of the general path over image by image, alternated pairs (bench_train_layer,
 * batch 2, 2 threads, Zen 4): 64->256 at 210x210 0.95 (as a residual block's last layer 0.92), 256->64 0.98;
 * 128->512 at 105x105 0.98 (residual 0.97), 512->128 0.99; 1024->256 at 53x53 0.97, 256->1024 1.02 (residual
 * 1.0); 512->2048 at 27x27 0.99 (residual 0.98); one run of 10 pairs each, where two runs of the same code differed
 * by up to a tenth. The ResNet-50 step, alternated: 0.993 and 0.991 (16 pairs each). */
enum { POINTWISE_IMAGE_CACHED_BYTES = 2 << 20, POINTWISE_IMAGES_PER_THREAD = 4 };

bool conv_bn_act_pointwise_by_image(const Graph *g, const ConvBnActState *st)
{
    const Conv2dShape *s = &st->s;
    int threads = threadpool_size(g->ctx->pool);
    bool cached = (size_t)s->Cout * s->Ho * s->Wo * sizeof(float) <= POINTWISE_IMAGE_CACHED_BYTES;
    return pointwise_shape(s) && s->N >= threads && (cached || s->N >= POINTWISE_IMAGES_PER_THREAD * threads);
}

bool conv_bn_act_pointwise_forward(Graph *g, ConvBnActState *st)
{
    const Conv2dShape *s = &st->s;
    SgemmPackedA w = {0};
    st->plane_moments = graph_host_scratch(g, sizeof(double) * 2 * (size_t)s->N * s->Cout);
    if (!st->plane_moments) return false;
    if (!sgemm_pack_a(&w, false, s->Cout, s->Cin, st->w, s->Cin)) {
        graph_fail(g, ERR_OOM, "conv_bn_act: out of memory packing the weights");
        return false;
    }
    PointwiseForwardJob j = {st, &w, g->ctx->pool};
    threadpool_run(g->ctx->pool, s->N, pointwise_forward_image, &j);
    sgemm_packed_a_free(&w);
    return true;
}
