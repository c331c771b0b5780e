/* Every op's backward against central finite differences (tests/gradcheck.h). Tolerances: eps
 * 1e-2, |analytic - numeric| <= 2e-3 + 1e-2 |numeric| unless a test states otherwise; inputs of
 * non-smooth ops are kept at least 0.05 away from their kinks so eps never crosses one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/batchnorm_cpu.h"
#include "autograd/conv2d_avx2.h"
#include "autograd/conv2d_cpu.h"
#include "autograd/conv2d_winograd.h"
#include "tests/gradcheck.h"
#include "tests/suites.h"

typedef struct {
    Tensor t[6];
    int n;
} Inputs;

static Tensor *add_input(Inputs *in, Rng *r, int ndim, const int64_t *shape)
{
    Tensor *t = &in->t[in->n++];
    ck_assert_int_eq(tensor_new(t, DEVICE_CPU, ndim, shape, NULL), ERR_OK);
    tensor_fill_normal(t, r, 0, 1);
    return t;
}

static void free_inputs(Inputs *in)
{
    for (int i = 0; i < in->n; i++) tensor_free(&in->t[i]);
}

static void run_check(GradcheckFn fn, void *arg, Inputs *in, const bool *wrt, GradcheckOptions opt,
                      const char *what)
{
    Context *ctx = context_create(2);
    bool all[6] = {true, true, true, true, true, true};
    GradcheckResult res = gradcheck(ctx, fn, arg, in->t, in->n, wrt ? wrt : all, opt, 99);
    context_destroy(ctx);
    ck_assert_msg(res.failed == 0, "%s: %d of %d elements off (max abs err %.3g, max |grad| %.3g): %s",
                  what, res.failed, res.checked, res.max_abs_err, res.max_grad, res.first_failure);
    ck_assert_int_gt(res.checked, 0);
}

/* Moves every value at least `gap` away from `kink`. */
static void avoid_kink(Tensor *t, float kink, float gap)
{
    for (int64_t i = 0; i < tensor_numel(t); i++) {
        float d = t->data[i] - kink;
        if (fabsf(d) < gap) t->data[i] = kink + (d < 0 ? -gap : gap);
    }
}

/* max |got - want| over the largest |want| (1e-30 at least): the error relative to the tensor's scale */
static double max_relative_difference(const float *got, const float *want, int64_t n)
{
    double worst = 0, scale = 1e-30;
    for (int64_t e = 0; e < n; e++) {
        double d = fabs((double)got[e] - want[e]);
        worst = d > worst ? d : worst;
        scale = fabs(want[e]) > scale ? fabs(want[e]) : scale;
    }
    return worst / scale;
}

/* fn on in's tensors (each wanting a gradient) in a fresh graph of ctx, its backward seeded with a fixed
 * pattern: copies of the output (*out, *ny elements) and of every input's gradient (grads[i]), which the
 * caller frees. For comparing an op with the ops it stands for. */
static void forward_backward_copies(Context *ctx, GradcheckFn fn, void *arg, Inputs *in, float **out, int64_t *ny,
                                    float **grads)
{
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    Var *v[6];
    for (int i = 0; i < in->n; i++) v[i] = var_from_tensor(&g, &in->t[i], true);
    Var *y = fn(&g, v, arg);
    ck_assert_msg(y != NULL, "%s", g.err.msg);
    *ny = tensor_numel(&y->value);
    *out = malloc(tensor_bytes(&y->value));
    memcpy(*out, y->value.data, tensor_bytes(&y->value));
    float *seed = malloc(tensor_bytes(&y->value));
    for (int64_t e = 0; e < *ny; e++) seed[e] = (float)((e * 7919) % 13) / 6.0f - 1.0f;
    ck_assert_int_eq(graph_backward_with_grad(&g, y, seed), ERR_OK);
    free(seed);
    for (int i = 0; i < in->n; i++) {
        ck_assert_ptr_nonnull(v[i]->grad.data);
        grads[i] = malloc(tensor_bytes(&in->t[i]));
        memcpy(grads[i], v[i]->grad.data, tensor_bytes(&in->t[i]));
    }
    graph_destroy(&g);
}

/* ---- conv2d ---------------------------------------------------------------------------------- */

typedef struct {
    int N, Cin, H, W, Cout, K, stride, pad, dil, groups, bias;
} ConvCase;

static Var *conv_fn(Graph *g, Var **in, void *arg)
{
    const ConvCase *c = arg;
    return ag_conv2d(g, in[0], in[1], c->bias ? in[2] : NULL,
                     conv2d_params(c->stride, c->pad, c->dil, c->groups));
}

START_TEST(conv2d_gradients)
{
    ConvCase cases[] = {
        {2, 3, 7, 9, 4, 3, 1, 1, 1, 1, 1},   /* plain 3x3, odd sizes, bias */
        {1, 4, 8, 7, 6, 3, 2, 1, 1, 1, 0},   /* stride 2 */
        {2, 6, 9, 8, 6, 3, 1, 1, 1, 6, 0},   /* depthwise */
        {1, 6, 9, 9, 6, 3, 2, 1, 1, 6, 1},   /* depthwise stride 2, bias */
        {1, 4, 7, 6, 6, 3, 1, 0, 1, 2, 1},   /* 2 groups, padding 0 */
        {2, 5, 6, 7, 3, 1, 1, 0, 1, 1, 1},   /* pointwise (no im2col path) */
        {1, 4, 9, 9, 4, 3, 1, 2, 2, 1, 0},   /* dilation 2 */
        {1, 3, 11, 10, 5, 7, 2, 3, 1, 1, 0}, /* 7x7 stride 2 stem */
        {1, 4, 6, 7, 8, 1, 2, 0, 1, 1, 0},   /* 1x1 stride 2 (ResNet downsample) */
        {1, 4, 5, 5, 8, 3, 1, 1, 1, 4, 0},   /* grouped with channel multiplier 2 */
        {2, 8, 9, 11, 9, 3, 1, 1, 1, 1, 1},  /* Winograd forward (partial tiles), bias */
        {1, 3, 9, 13, 5, 3, 2, 1, 1, 1, 1},  /* direct stride-2 stem forward, channel-block tail */
        {2, 3, 5, 301, 4, 3, 2, 1, 1, 1, 0}, /* the stem's weight gradient over more columns than one pass */
        {1, 3, 37, 20, 5, 3, 2, 1, 1, 1, 0}, /* the stem's weight gradient over chunks of 8, 8 and 3 output rows */
        {1, 4, 200, 200, 6, 7, 2, 3, 1, 1, 0}, /* im2col in two bands of output rows (ResNet's 7x7 stem) */
        {1, 8, 120, 130, 4, 7, 1, 3, 1, 2, 1}, /* grouped, im2col in three bands */
        /* rows of K = 1440 over 20 columns: 36 rows a band would be 720 columns, so bands of 80 rows (1600
         * columns; op_conv2d.c's COL_BAND_MIN_COLS), one full and one of 5 */
        {1, 160, 170, 40, 2, 3, 2, 1, 1, 1, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ConvCase *c = &cases[k];
        Rng r;
        rng_seed(&r, 100 + k, 0);
        Inputs in = {0};
        int64_t xs[4] = {c->N, c->Cin, c->H, c->W}, ws[4] = {c->Cout, c->Cin / c->groups, c->K, c->K};
        int64_t bs[1] = {c->Cout};
        add_input(&in, &r, 4, xs);
        add_input(&in, &r, 4, ws);
        if (c->bias) add_input(&in, &r, 1, bs);
        char what[64];
        snprintf(what, sizeof what, "conv2d case %zu", k);
        run_check(conv_fn, c, &in, NULL, gradcheck_defaults(), what);
        free_inputs(&in);
    }
}
END_TEST

/* x feeds two depthwise convolutions, so the second backward to reach x adds to what the first wrote
 * (the fast kernels write a fresh input gradient, add to one that holds a contribution). */
static Var *depthwise_twice_fn(Graph *g, Var **in, void *arg)
{
    const int *stride = arg;
    Conv2dParams p = conv2d_params(*stride, 1, 1, (int)in[0]->value.shape[1]);
    return ag_add(g, ag_conv2d(g, in[0], in[1], NULL, p), ag_conv2d(g, in[0], in[2], NULL, p));
}

START_TEST(depthwise_gradients_wide_rows_and_accumulation)
{
    static const int shapes[][3] = {{21, 20, 1}, {20, 21, 2}, {5, 6, 2}, {17, 35, 2}}; /* H, W, stride */
    for (int k = 0; k < 4; k++) {
        Rng r;
        rng_seed(&r, 1300 + k, 0);
        Inputs in = {0};
        int64_t xs[4] = {2, 3, shapes[k][0], shapes[k][1]}, ws[4] = {3, 1, 3, 3};
        add_input(&in, &r, 4, xs), add_input(&in, &r, 4, ws), add_input(&in, &r, 4, ws);
        char what[64];
        snprintf(what, sizeof what, "depthwise twice %dx%d stride %d", shapes[k][0], shapes[k][1], shapes[k][2]);
        run_check(depthwise_twice_fn, (void *)&shapes[k][2], &in, NULL, gradcheck_defaults(), what);
        free_inputs(&in);
    }
}
END_TEST

/* x feeds two dense 3x3 convolutions whose input gradients take the Winograd path (8 or more channels
 * both ways): the second adds into what the first wrote, in the output transform. */
static Var *dense_twice_fn(Graph *g, Var **in, void *arg)
{
    Conv2dParams p = conv2d_params(1, 1, 1, 1);
    return ag_concat(g, (Var *[]){ag_conv2d(g, in[0], in[1], NULL, p), ag_conv2d(g, in[0], in[2], NULL, p)}, 2, 1);
}

START_TEST(winograd_input_gradient_writes_and_accumulates)
{
    Rng r;
    rng_seed(&r, 1400, 0);
    Inputs in = {0};
    int64_t xs[4] = {2, 8, 9, 13}, w0[4] = {9, 8, 3, 3}, w1[4] = {10, 8, 3, 3};
    add_input(&in, &r, 4, xs), add_input(&in, &r, 4, w0), add_input(&in, &r, 4, w1);
    /* linear in every input: a large step loses nothing, and keeps the forward's Winograd rounding (about
     * 1e-6 of outputs near 10 here) out of the finite differences */
    GradcheckOptions opt = gradcheck_defaults();
    opt.eps = 0.5;
    run_check(dense_twice_fn, NULL, &in, NULL, opt, "dense 3x3 twice (Winograd input gradient)");
    free_inputs(&in);
}
END_TEST

/* A weight with 2^18 outputs or more: its gradient takes the blocked GEMM per image instead of the dot
 * products (op_conv2d.c, NT_MAX_OUTPUTS), for a 1x1 and a 3x3 convolution. */
START_TEST(large_weight_gradients_take_the_blocked_gemm)
{
    static const ConvCase cases[] = {{2, 512, 4, 5, 512, 1, 1, 0, 1, 1, 0},
                                     {2, 128, 5, 4, 256, 3, 2, 1, 1, 1, 0},
                                     {2, 64, 44, 43, 256, 3, 1, 1, 1, 1, 0}}; /* Winograd: blocked weight GEMMs, 2 chunks */
    for (int k = 0; k < 3; k++) {
        const ConvCase *c = &cases[k];
        Rng r;
        rng_seed(&r, 1500 + k, 0);
        Inputs in = {0};
        int64_t xs[4] = {c->N, c->Cin, c->H, c->W}, ws[4] = {c->Cout, c->Cin, c->K, c->K};
        add_input(&in, &r, 4, xs), add_input(&in, &r, 4, ws);
        GradcheckOptions opt = gradcheck_defaults();
        opt.eps = 0.5; /* linear: a large step keeps the forward's rounding out of the differences */
        static const char *what[3] = {"1x1 with a large weight", "3x3 with a large weight",
                                      "Winograd 3x3 with 256x64 filters"};
        run_check(conv_fn, (void *)c, &in, NULL, opt, what[k]);
        free_inputs(&in);
    }
}
END_TEST

/* A layer large and wide enough for Winograd F(6x6, 3x3) (conv2d_winograd_tile): its weight gradient and,
 * through the flipped kernel, its input gradient take it too (odd sizes: partial tiles at both far edges). */
START_TEST(winograd_f6_gradients)
{
    static const ConvCase c = {2, 96, 49, 53, 100, 3, 1, 1, 1, 1, 1};
    Conv2dShape fwd = {c.N, c.Cin, c.H, c.W, c.Cout, 3, 3, c.H, c.W, conv2d_params(1, 1, 1, 1)}, flipped = fwd;
    flipped.Cin = c.Cout, flipped.Cout = c.Cin;
    if (conv2d_avx2_available()) {
        ck_assert_int_eq(conv2d_winograd_tile(&fwd), 6);
        ck_assert_int_eq(conv2d_winograd_tile(&flipped), 6);
    }
    Rng r;
    rng_seed(&r, 1450, 0);
    Inputs in = {0};
    int64_t xs[4] = {c.N, c.Cin, c.H, c.W}, ws[4] = {c.Cout, c.Cin, 3, 3}, bs[1] = {c.Cout};
    add_input(&in, &r, 4, xs), add_input(&in, &r, 4, ws), add_input(&in, &r, 1, bs);
    GradcheckOptions opt = gradcheck_defaults();
    opt.eps = 0.5; /* linear: a large step keeps the forward's rounding out of the differences */
    run_check(conv_fn, (void *)&c, &in, NULL, opt, "Winograd F(6x6) 96 -> 100 at 49x53");
    free_inputs(&in);
}
END_TEST

/* Two convolutions of one input through ag_conv2d_shared_input, their outputs concatenated on
 * channels: the backward of each branch (and so dx, which both feed) against finite differences. */
static Var *shared_conv_fn(Graph *g, Var **in, void *arg)
{
    const int *k = arg; /* kernel size, stride */
    Conv2dBranch br[2] = {{in[1], in[2], -1.0f, NULL}, {in[3], NULL, -1.0f, NULL}};
    Var *out[2];
    if (!ag_conv2d_shared_input(g, in[0], conv2d_params(k[1], k[0] / 2, 1, 1), 2, br, out)) return NULL;
    return ag_concat(g, out, 2, 1);
}

START_TEST(conv2d_shared_input_gradients)
{
    static const int kinds[][2] = {{3, 1}, {1, 1}, {3, 2}};
    for (int k = 0; k < 3; k++) {
        Rng r;
        rng_seed(&r, 300 + k, 0);
        Inputs in = {0};
        int Cin = k == 0 ? 8 : 5, K = kinds[k][0];
        int64_t xs[4] = {2, Cin, 9, 11}, w0[4] = {6, Cin, K, K}, b0[1] = {6}, w1[4] = {3, Cin, K, K};
        add_input(&in, &r, 4, xs), add_input(&in, &r, 4, w0), add_input(&in, &r, 1, b0), add_input(&in, &r, 4, w1);
        char what[64];
        snprintf(what, sizeof what, "shared-input conv %dx%d stride %d", K, K, kinds[k][1]);
        run_check(shared_conv_fn, (void *)kinds[k], &in, NULL, gradcheck_defaults(), what);
        free_inputs(&in);
    }
}
END_TEST

/* Shapes of the shared-input tests below: branches of one input on every CPU path (Winograd where the thin
 * branches alone would not take it, 1x1 GEMM, im2col 5x5, direct 3x3/2, and depthwise, whose branches run
 * one by one), with the largest difference each allows against one op per branch, relative to the largest
 * value: Winograd sums in another order than im2col. */
typedef struct {
    const char *what;
    int Cin, H, W, K, stride, groups, couts[3];
    double out_tol, grad_tol;
} SharedCase;
static const SharedCase shared_cases[] = {
    {"winograd, thin branches", 9, 13, 17, 3, 1, 1, {5, 11, 3}, 2e-5, 1e-4},
    {"winograd, every branch too", 9, 33, 35, 3, 1, 1, {8, 9, 10}, 2e-5, 1e-4}, /* 81 tiles an image */
    {"1x1 gemm", 16, 7, 9, 1, 1, 1, {4, 8, 20}, 1e-6, 1e-5},
    {"5x5 im2col gemm", 3, 8, 10, 5, 1, 1, {7, 2, 6}, 1e-6, 1e-5},
    {"direct 3x3/2", 3, 12, 37, 3, 2, 1, {8, 4, 5}, 1e-6, 1e-5},
    {"depthwise", 6, 10, 11, 3, 1, 6, {6, 6, 6}, 1e-6, 1e-5},
};
enum { N_SHARED_CASES = sizeof shared_cases / sizeof shared_cases[0] };

/* Backward from three branches' outputs concatenated on channels (branch 1 left out when unreached), seeded
 * with a fixed pattern of mixed signs. */
static void backward_through_branches(Graph *g, Var *const out[3], bool unreached)
{
    Var *reached[3] = {out[0], unreached ? out[2] : out[1], out[2]};
    Var *y = ag_concat(g, reached, 3 - unreached, 1);
    ck_assert_msg(y != NULL, "%s", g->err.msg);
    int64_t ny = tensor_numel(&y->value);
    float *seed = malloc(sizeof(float) * ny);
    for (int64_t e = 0; e < ny; e++) seed[e] = (float)((e * 7919) % 13) / 6.0f - 1.0f;
    ck_assert_int_eq(graph_backward_with_grad(g, y, seed), ERR_OK);
    free(seed);
}

/* The branches of one ag_conv2d_shared_input op run their backward as one convolution (op_conv2d.c,
 * ConvGroup): its gradients against those of one ag_conv2d_act per branch, with activations (leaky, none,
 * ReLU), a branch without bias, every branch reached and one branch the loss does not reach, on the CPU
 * paths the stacked convolution takes (Winograd where the thin branches alone would not, 1x1, im2col 5x5,
 * direct 3x3/2, and depthwise, whose branches keep a backward each). */
START_TEST(conv2d_shared_input_backward_matches_separate_convs)
{
    static const float acts[3] = {0.1f, -1.0f, 0.0f};
    Context *ctx = context_create(2);
    Rng r;
    rng_seed(&r, 953, 0);
    for (int c = 0; c < N_SHARED_CASES; c++)
        for (int unreached = 0; unreached < 2; unreached++) {
            const SharedCase *sc = &shared_cases[c];
            Conv2dParams p = conv2d_params(sc->stride, sc->K / 2, 1, sc->groups);
            int64_t xs[4] = {2, sc->Cin, sc->H, sc->W};
            Tensor x, w[3], b[3];
            tensor_new(&x, DEVICE_CPU, 4, xs, NULL);
            tensor_fill_normal(&x, &r, 0, 1);
            for (int i = 0; i < 3; i++) {
                int64_t ws[4] = {sc->couts[i], sc->Cin / sc->groups, sc->K, sc->K}, bs[1] = {sc->couts[i]};
                tensor_new(&w[i], DEVICE_CPU, 4, ws, NULL), tensor_new(&b[i], DEVICE_CPU, 1, bs, NULL);
                tensor_fill_normal(&w[i], &r, 0, 1), tensor_fill_normal(&b[i], &r, 0, 1);
            }
            float *grads[2][7] = {{0}};
            const Tensor *of[7] = {&x, &w[0], &b[0], &w[1], &w[2], &b[2], NULL};
            for (int shared = 0; shared < 2; shared++) {
                Graph g;
                graph_init(&g, ctx, DEVICE_CPU, NULL);
                Var *xv = var_from_tensor(&g, &x, true), *wv[3], *bv[3], *out[3];
                Conv2dBranch br[3];
                for (int i = 0; i < 3; i++) {
                    wv[i] = var_from_tensor(&g, &w[i], true);
                    bv[i] = i == 1 ? NULL : var_from_tensor(&g, &b[i], true);
                    br[i] = (Conv2dBranch){wv[i], bv[i], acts[i], NULL};
                }
                if (shared)
                    ck_assert(ag_conv2d_shared_input(&g, xv, p, 3, br, out));
                else
                    for (int i = 0; i < 3; i++) ck_assert_ptr_nonnull(out[i] = ag_conv2d_act(&g, xv, wv[i], bv[i], p, acts[i]));
                backward_through_branches(&g, out, unreached);
                Var *vs[6] = {xv, wv[0], bv[0], wv[1], wv[2], bv[2]};
                for (int j = 0; j < 6; j++) {
                    size_t bytes = tensor_bytes(of[j]);
                    grads[shared][j] = calloc(1, bytes);
                    if (vs[j]->grad.data) memcpy(grads[shared][j], vs[j]->grad.data, bytes);
                }
                graph_destroy(&g);
            }
            for (int j = 0; j < 6; j++) {
                TensorDiff d = tensor_diff(grads[1][j], grads[0][j], tensor_numel(of[j]), 1e-6);
                ck_assert_msg(d.max_rel_to_max <= sc->grad_tol, "%s, unreached branch %d, gradient %d: %.3g of the largest",
                              sc->what, unreached, j, d.max_rel_to_max);
                free(grads[0][j]), free(grads[1][j]);
            }
            for (int i = 0; i < 3; i++) tensor_free(&w[i]), tensor_free(&b[i]);
            tensor_free(&x);
        }
    context_destroy(ctx);
}
END_TEST

/* ag_conv2d_shared_input equals one ag_conv2d_act per branch, with and without packed weights, on
 * every CPU path: shared Winograd (branches too thin for it alone among them), shared 1x1 GEMM,
 * shared im2col GEMM (5x5), and the paths that run branch by branch (direct stride 2, depthwise). */
START_TEST(conv2d_shared_input_matches_separate_convs)
{
    Context *ctx = context_create(2);
    Rng r;
    rng_seed(&r, 951, 0);
    for (int c = 0; c < N_SHARED_CASES; c++) {
        const SharedCase *sc = &shared_cases[c];
        Conv2dParams p = conv2d_params(sc->stride, sc->K / 2, 1, sc->groups);
        int64_t xs[4] = {2, sc->Cin, sc->H, sc->W};
        Tensor x, w[3], b[3];
        Conv2dPacked packed[3];
        tensor_new(&x, DEVICE_CPU, 4, xs, NULL);
        tensor_fill_normal(&x, &r, 0, 1);
        for (int i = 0; i < 3; i++) {
            int64_t ws[4] = {sc->couts[i], sc->Cin / sc->groups, sc->K, sc->K}, bs[1] = {sc->couts[i]};
            tensor_new(&w[i], DEVICE_CPU, 4, ws, NULL), tensor_new(&b[i], DEVICE_CPU, 1, bs, NULL);
            tensor_fill_normal(&w[i], &r, 0, 1), tensor_fill_normal(&b[i], &r, 0, 1);
            ck_assert_int_eq(conv2d_pack_weights(&packed[i], &w[i], p, NULL), ERR_OK);
        }
        for (int use_packed = 0; use_packed < 2; use_packed++) {
            Graph g;
            graph_init(&g, ctx, DEVICE_CPU, NULL);
            graph_set_grad_enabled(&g, false);
            Var *xv = var_from_tensor(&g, &x, false), *out[3], *alone[3];
            Conv2dBranch br[3];
            float acts[3] = {0.1f, -1.0f, 0.0f};
            for (int i = 0; i < 3; i++) {
                br[i] = (Conv2dBranch){var_from_tensor(&g, &w[i], false), i == 1 ? NULL : var_from_tensor(&g, &b[i], false),
                                       acts[i], use_packed ? &packed[i] : NULL};
                alone[i] = ag_conv2d_act(&g, xv, br[i].w, br[i].b, p, acts[i]);
                ck_assert_ptr_nonnull(alone[i]);
            }
            ck_assert(ag_conv2d_shared_input(&g, xv, p, 3, br, out));
            for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(out[i]->value.shape[1], sc->couts[i]);
                double rel = max_relative_difference(out[i]->value.data, alone[i]->value.data,
                                                     tensor_numel(&alone[i]->value));
                ck_assert_msg(rel <= sc->out_tol, "%s, branch %d, packed %d: max difference %g of the largest output",
                              sc->what, i, use_packed, rel);
            }
            graph_destroy(&g);
        }
        for (int i = 0; i < 3; i++) conv2d_packed_free(&packed[i]), tensor_free(&w[i]), tensor_free(&b[i]);
        tensor_free(&x);
    }
    context_destroy(ctx);
}
END_TEST

START_TEST(conv2d_rejects_mismatched_shapes)
{
    Context *ctx = context_create(1);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    int64_t xs[4] = {1, 3, 8, 8}, ws[4] = {4, 2, 3, 3};
    Var *y = ag_conv2d(&g, var_new(&g, 4, xs), var_new(&g, 4, ws), NULL, conv2d_params(1, 1, 1, 1));
    ck_assert_ptr_null(y);
    ck_assert_int_eq(g.err.code, ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(g.err.msg, "conv2d"));
    graph_destroy(&g);
    /* packed weights of another shape are refused, not used */
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    int64_t ws2[4] = {4, 3, 3, 3}, other[4] = {5, 3, 3, 3};
    Tensor w_other;
    tensor_new(&w_other, DEVICE_CPU, 4, other, NULL);
    tensor_fill(&w_other, 0.5f);
    Conv2dPacked pk;
    ck_assert_int_eq(conv2d_pack_weights(&pk, &w_other, conv2d_params(1, 1, 1, 1), NULL), ERR_OK);
    Conv2dBranch br = {var_new(&g, 4, ws2), NULL, -1.0f, &pk};
    Var *out;
    ck_assert(!ag_conv2d_shared_input(&g, var_new(&g, 4, xs), conv2d_params(1, 1, 1, 1), 1, &br, &out));
    ck_assert_int_eq(g.err.code, ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(g.err.msg, "packed"));
    conv2d_packed_free(&pk);
    tensor_free(&w_other);
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

/* ---- depthwise-separable block (ag_conv2d_separable) ------------------------------------------ */

typedef struct {
    int N, C, H, W, Cout, stride;
    float act_d, act_p;
    int bias;
    const char *what;
} SeparableCase;

/* Small odd planes, stride 2, no biases; and planes of several bands of rows (32768 floats of the
 * depthwise output per band: 16 x 70 x 70 is four bands on 2 threads, 16 x 140 x 71 at stride 2 two). */
static const SeparableCase separable_cases[] = {
    {2, 3, 7, 9, 5, 1, 0.1f, -1.0f, 1, "3 channels 7x9, depthwise leaky"},
    {1, 4, 9, 6, 3, 2, -1.0f, 0.1f, 0, "4 channels 9x6 stride 2, no biases"},
    {2, 5, 1, 1, 2, 1, 0.0f, 0.0f, 1, "1x1 planes, relu"},
    {2, 16, 70, 70, 6, 1, 0.1f, 0.1f, 1, "16 channels 70x70, four bands"},
    {1, 16, 140, 71, 4, 2, 0.0f, -1.0f, 1, "16 channels 140x71 stride 2, two bands"},
};
enum { N_SEPARABLE_CASES = sizeof separable_cases / sizeof separable_cases[0] };

/* inputs: x, w_d [C,1,3,3], (b_d), w_p [Cout,C,1,1], (b_p); arg: the case, and whether to build the op
 * as the two convolutions it stands for (the reference) */
typedef struct {
    SeparableCase c;
    bool two_ops;
    bool reuse_x; /* y concatenated with x (stride 1): x's gradient is there before the op's backward adds to it */
} SeparableArg;

static Var *separable_fn(Graph *g, Var **in, void *arg)
{
    const SeparableArg *a = arg;
    const SeparableCase *c = &a->c;
    int k = 0;
    Var *x = in[k++], *wd = in[k++], *bd = c->bias ? in[k++] : NULL, *wp = in[k++], *bp = c->bias ? in[k++] : NULL;
    Conv2dBranch d = {wd, bd, c->act_d, NULL}, p = {wp, bp, c->act_p, NULL};
    Var *h, *y = NULL;
    if (!a->two_ops)
        y = ag_conv2d_separable(g, x, &d, c->stride, &p);
    else if (ag_conv2d_shared_input(g, x, conv2d_params(c->stride, 1, 1, c->C), 1, &d, &h))
        ag_conv2d_shared_input(g, h, conv2d_params(1, 0, 1, 1), 1, &p, &y);
    Var *parts[2] = {y, x};
    return a->reuse_x && y ? ag_concat(g, parts, 2, 1) : y;
}

static void separable_inputs(Inputs *in, Rng *r, const SeparableCase *c)
{
    int64_t xs[4] = {c->N, c->C, c->H, c->W}, wds[4] = {c->C, 1, 3, 3}, bds[1] = {c->C}, wps[4] = {c->Cout, c->C, 1, 1},
            bps[1] = {c->Cout};
    add_input(in, r, 4, xs);
    add_input(in, r, 4, wds);
    if (c->bias) add_input(in, r, 1, bds);
    add_input(in, r, 4, wps);
    if (c->bias) add_input(in, r, 1, bps);
}

/* Central differences through the activations' kinks are off wherever a perturbation crosses one (a
 * depthwise weight moves a whole plane of h): the shapes are checked against them without activations,
 * and with them against the backward of the two convolutions (whose own checks avoid the kinks). */
START_TEST(conv2d_separable_gradients)
{
    Rng r;
    rng_seed(&r, 970, 0);
    for (int k = 0; k < N_SEPARABLE_CASES; k++) {
        SeparableArg a = {separable_cases[k], false, separable_cases[k].stride == 1};
        a.c.act_d = a.c.act_p = -1.0f;
        Inputs in = {0};
        separable_inputs(&in, &r, &a.c);
        GradcheckOptions opt = gradcheck_defaults();
        opt.max_elems = 40;
        run_check(separable_fn, &a, &in, NULL, opt, separable_cases[k].what);
        free_inputs(&in);
    }
}
END_TEST

/* The op's values and gradients are those of the depthwise and the pointwise ag_conv2d_shared_input ops,
 * with the pointwise weight packed or not, on 1 and 2 threads. */
START_TEST(conv2d_separable_matches_two_convs)
{
    Rng r;
    rng_seed(&r, 971, 0);
    for (int threads = 1; threads <= 2; threads++) {
        Context *ctx = context_create(threads);
        for (int k = 0; k < N_SEPARABLE_CASES; k++) {
            const SeparableCase *c = &separable_cases[k];
            Inputs in = {0};
            separable_inputs(&in, &r, c);
            const Tensor *tp = &in.t[c->bias ? 3 : 2];
            Conv2dPacked packed;
            ck_assert_int_eq(conv2d_pack_weights(&packed, tp, conv2d_params(1, 0, 1, 1), NULL), ERR_OK);
            for (int use_packed = 0; use_packed < 2; use_packed++) {
                Graph g;
                graph_init(&g, ctx, DEVICE_CPU, NULL);
                graph_set_grad_enabled(&g, false);
                Var *v[5];
                for (int i = 0; i < in.n; i++) v[i] = var_from_tensor(&g, &in.t[i], false);
                int j = 0;
                Var *x = v[j++], *wd = v[j++], *bd = c->bias ? v[j++] : NULL, *wp = v[j++], *bp = c->bias ? v[j++] : NULL;
                Conv2dBranch d = {wd, bd, c->act_d, NULL}, p = {wp, bp, c->act_p, use_packed ? &packed : NULL};
                Var *h, *two, *one = ag_conv2d_separable(&g, x, &d, c->stride, &p);
                ck_assert_ptr_nonnull(one);
                ck_assert_str_eq(one->op, "conv2d_separable");
                ck_assert(ag_conv2d_shared_input(&g, x, conv2d_params(c->stride, 1, 1, c->C), 1, &d, &h));
                ck_assert(ag_conv2d_shared_input(&g, h, conv2d_params(1, 0, 1, 1), 1, &p, &two));
                ck_assert(tensor_same_shape(&one->value, &two->value));
                double rel = max_relative_difference(one->value.data, two->value.data, tensor_numel(&two->value));
                ck_assert_msg(rel <= 1e-6, "%s, %d threads, packed %d: max difference %g of the largest output", c->what,
                              threads, use_packed, rel);
                graph_destroy(&g);
            }
            /* gradients, the backward seeded alike */
            float *grads[2][5] = {{0}}, *outs[2];
            int64_t ny;
            for (int two_ops = 0; two_ops < 2; two_ops++) {
                SeparableArg a = {*c, two_ops, c->stride == 1};
                forward_backward_copies(ctx, separable_fn, &a, &in, &outs[two_ops], &ny, grads[two_ops]);
            }
            free(outs[0]), free(outs[1]);
            for (int i = 0; i < in.n; i++) {
                double rel = max_relative_difference(grads[0][i], grads[1][i], tensor_numel(&in.t[i]));
                ck_assert_msg(rel <= 1e-5, "%s, %d threads: input %d's gradient off by %g of its largest", c->what, threads,
                              i, rel);
                free(grads[0][i]), free(grads[1][i]);
            }
            conv2d_packed_free(&packed);
            free_inputs(&in);
        }
        context_destroy(ctx);
    }
}
END_TEST

START_TEST(conv2d_separable_rejects_mismatched_shapes)
{
    Context *ctx = context_create(1);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    int64_t xs[4] = {1, 4, 8, 8}, wds[4] = {4, 1, 3, 3}, wps[4] = {6, 3, 1, 1};
    Conv2dBranch d = {var_new(&g, 4, wds), NULL, -1.0f, NULL}, p = {var_new(&g, 4, wps), NULL, -1.0f, NULL};
    ck_assert_ptr_null(ag_conv2d_separable(&g, var_new(&g, 4, xs), &d, 1, &p));
    ck_assert_int_eq(g.err.code, ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(g.err.msg, "pointwise"));
    graph_destroy(&g);
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    int64_t dense[4] = {4, 4, 3, 3};
    d.w = var_new(&g, 4, dense);
    p.w = var_new(&g, 4, (int64_t[4]){6, 4, 1, 1});
    ck_assert_ptr_null(ag_conv2d_separable(&g, var_new(&g, 4, xs), &d, 1, &p));
    ck_assert_int_eq(g.err.code, ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(g.err.msg, "depthwise"));
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

/* ---- batchnorm ------------------------------------------------------------------------------- */

typedef struct {
    bool training;
    Tensor rm, rv;
} BnCase;

static Var *bn_fn(Graph *g, Var **in, void *arg)
{
    BnCase *c = arg;
    return ag_batchnorm2d(g, in[0], in[1], in[2], &c->rm, &c->rv, c->training, 0.1f, 1e-5f);
}

static void bn_case(bool training, int N, int C, int H, int W)
{
    Rng r;
    rng_seed(&r, 200 + training, 0);
    Inputs in = {0};
    int64_t xs[4] = {N, C, H, W}, cs[1] = {C};
    Tensor *x = add_input(&in, &r, 4, xs);
    for (int64_t i = 0; i < tensor_numel(x); i++) x->data[i] = 2.0f * x->data[i] + 0.5f;
    add_input(&in, &r, 1, cs);
    add_input(&in, &r, 1, cs);
    BnCase c = {training, {0}, {0}};
    tensor_new(&c.rm, DEVICE_CPU, 1, cs, NULL);
    tensor_new(&c.rv, DEVICE_CPU, 1, cs, NULL);
    tensor_fill_uniform(&c.rm, &r, -0.5f, 0.5f);
    tensor_fill_uniform(&c.rv, &r, 0.5f, 2.0f);
    run_check(bn_fn, &c, &in, NULL, gradcheck_defaults(), training ? "batchnorm train" : "batchnorm eval");
    tensor_free(&c.rm), tensor_free(&c.rv);
    free_inputs(&in);
}

START_TEST(batchnorm2d_gradients)
{
    bn_case(true, 3, 4, 5, 3);
    bn_case(false, 2, 5, 3, 7);
}
END_TEST

START_TEST(batchnorm2d_running_statistics)
{
    /* momentum 0.1, unbiased variance, as torch.nn.BatchNorm2d. */
    Context *ctx = context_create(1);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    int64_t xs[4] = {2, 1, 1, 2}, cs[1] = {1};
    Tensor x, gm, bt, rm, rv;
    tensor_new(&x, DEVICE_CPU, 4, xs, NULL);
    float vals[4] = {1, 2, 3, 6};
    memcpy(x.data, vals, sizeof vals);
    tensor_new(&gm, DEVICE_CPU, 1, cs, NULL), tensor_fill(&gm, 1);
    tensor_new(&bt, DEVICE_CPU, 1, cs, NULL);
    tensor_new(&rm, DEVICE_CPU, 1, cs, NULL);
    tensor_new(&rv, DEVICE_CPU, 1, cs, NULL), tensor_fill(&rv, 1);
    Var *y = ag_batchnorm2d(&g, var_from_tensor(&g, &x, false), var_from_tensor(&g, &gm, false),
                            var_from_tensor(&g, &bt, false), &rm, &rv, true, 0.1f, 1e-5f);
    ck_assert_ptr_nonnull(y);
    /* mean 3, biased var 3.5, unbiased 14/3 */
    ck_assert_float_eq_tol(rm.data[0], 0.3f, 1e-6);
    ck_assert_float_eq_tol(rv.data[0], 0.9f + 0.1f * 14.0f / 3.0f, 1e-6);
    ck_assert_float_eq_tol(y->value.data[3], (float)(3.0 / sqrt(3.5 + 1e-5)), 1e-5);
    tensor_free(&x), tensor_free(&gm), tensor_free(&bt), tensor_free(&rm), tensor_free(&rv);
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

/* ---- conv2d -> batchnorm (train) -> activation, one op ---------------------------------------- */

typedef struct {
    ConvCase c;
    float act;
    Tensor rm, rv;
} ConvBnCase;

static Var *conv_bn_act_fn(Graph *g, Var **in, void *arg)
{
    ConvBnCase *k = arg;
    Conv2dParams p = conv2d_params(k->c.stride, k->c.pad, k->c.dil, k->c.groups);
    return ag_conv_bn_act_train(g, in[0], in[1], in[2], in[3], &k->rm, &k->rv, p, 0.1f, 1e-5f, k->act);
}

/* The same through the three ops it stands for. */
static Var *conv_then_bn_then_act_fn(Graph *g, Var **in, void *arg)
{
    ConvBnCase *k = arg;
    Conv2dParams p = conv2d_params(k->c.stride, k->c.pad, k->c.dil, k->c.groups);
    Var *y = ag_batchnorm2d(g, ag_conv2d(g, in[0], in[1], NULL, p), in[2], in[3], &k->rm, &k->rv, true, 0.1f, 1e-5f);
    return k->act < 0 ? y : ag_leaky_relu(g, y, k->act);
}

static const ConvCase conv_bn_cases[] = {
    {2, 8, 9, 11, 6, 3, 1, 1, 1, 1, 0},  /* dense 3x3 stride 1, 6 outputs (im2col: Winograd needs 8), odd sizes */
    {2, 8, 33, 35, 9, 3, 1, 1, 1, 1, 0}, /* Winograd (8 channels or more each side), 81 tiles an image */
    {2, 6, 9, 8, 6, 3, 2, 1, 1, 6, 0},   /* depthwise stride 2 */
    {3, 5, 5, 7, 5, 3, 1, 1, 1, 5, 0},   /* depthwise stride 1, odd channel count */
    {2, 5, 6, 7, 3, 1, 1, 0, 1, 1, 0},   /* pointwise: one column block per image */
    {2, 100, 23, 25, 156, 1, 1, 0, 1, 1, 0}, /* pointwise: two column blocks (512 + 63) per image */
    {1, 5, 6, 7, 3, 1, 1, 0, 1, 1, 0},   /* pointwise, fewer images than threads: the general path */
    {2, 16, 63, 67, 20, 1, 1, 0, 1, 1, 0}, /* pointwise, 16 input channels: z made twice from x (with an activation
                                            * y gives back), in two chunks of pixels, the last block partial */
    {1, 3, 9, 13, 5, 3, 2, 1, 1, 1, 0},  /* the stem: direct stride 2 */
    {1, 4, 7, 6, 6, 3, 1, 0, 1, 2, 0},   /* 2 groups, padding 0 (im2col + GEMM) */
    {4, 16, 9, 11, 16, 3, 2, 1, 1, 16, 0}, /* depthwise with planes enough for a task each: moments per plane */
    {3, 12, 7, 10, 12, 3, 1, 1, 1, 12, 0}, /* the same at stride 1 */
};

/* Fresh running statistics (mean 0, variance 1) of k's output channels. */
static void conv_bn_running_stats(ConvBnCase *k)
{
    int64_t cs[1] = {k->c.Cout};
    tensor_new(&k->rm, DEVICE_CPU, 1, cs, NULL);
    tensor_new(&k->rv, DEVICE_CPU, 1, cs, NULL);
    tensor_fill(&k->rm, 0.0f);
    tensor_fill(&k->rv, 1.0f);
}

static void conv_bn_inputs(const ConvCase *c, Rng *r, Inputs *in, ConvBnCase *k)
{
    int64_t xs[4] = {c->N, c->Cin, c->H, c->W}, ws[4] = {c->Cout, c->Cin / c->groups, c->K, c->K}, cs[1] = {c->Cout};
    add_input(in, r, 4, xs);
    add_input(in, r, 4, ws);
    Tensor *gamma = add_input(in, r, 1, cs);
    for (int i = 0; i < c->Cout; i++) gamma->data[i] = 0.5f + fabsf(gamma->data[i]);
    add_input(in, r, 1, cs);
    conv_bn_running_stats(k);
}

/* Two images of three channels whose planes (of odd length) together are just over BN_STREAM_MIN_BYTES. */
static BnLayout streamed_layout(void)
{
    BnLayout l = {2, 3, BN_STREAM_MIN_BYTES / sizeof(float) / 6 + 13};
    ck_assert(bn_output_streams((size_t)l.N * l.C * l.HW));
    return l;
}

/* BN's output pass over a tensor large enough to be streamed past the cache (BN_STREAM_MIN_BYTES): every
 * element as the scalar formula gives it, with and without a residual and an activation, y starting off a
 * 32-byte boundary (the pass streams from the first one) and an odd plane (a scalar tail), and in place. */
START_TEST(bn_normalize_streams_large_outputs_exactly)
{
    BnLayout l = streamed_layout();
    size_t n = (size_t)l.N * l.C * l.HW;
    float *z = malloc(sizeof(float) * n), *r = malloc(sizeof(float) * n), *buf = malloc(sizeof(float) * (n + 1));
    ck_assert(z && r && buf);
    for (size_t i = 0; i < n; i++) z[i] = (float)((i * 7919) % 1000) / 250.0f - 2.0f, r[i] = (float)(i % 13) / 13.0f - 0.5f;
    float *y = buf + 1;
    const float acts[] = {-1.0f, 0.0f, 0.1f};
    for (int ai = 0; ai < 3; ai++)
        for (int with_r = 0; with_r < 2; with_r++)
            for (int in_place = 0; in_place < 2; in_place++) {
                float act = acts[ai];
                const float *src = z;
                if (in_place) memcpy(y, z, sizeof(float) * n), src = y;
                for (int c = 0; c < l.C; c++)
                    bn_channel_normalize_act(src, with_r ? r : NULL, l, c, 0.5f + c, 0.25f - c, act, y);
                for (size_t i = 0; i < n; i++) {
                    int c = (int)(i / l.HW % l.C);
                    float v = fmaf(z[i], 0.5f + c, 0.25f - c) + (with_r ? r[i] : 0.0f);
                    float want = act < 0.0f || v > 0.0f ? v : act * v;
                    if (y[i] != want)
                        ck_abort_msg("act %g residual %d in place %d: y[%zu] = %.9g, want %.9g", act, with_r, in_place,
                                     i, y[i], want);
                }
            }
    free(z), free(r), free(buf);
}
END_TEST

/* BN's dz pass over a layer-wide buffer large enough to be streamed (BN_STREAM_MIN_BYTES) gives the floats
 * the same pass gives plane by plane (never streamed), in each kept-tensor mode, with and without an
 * activation, dz starting off a 32-byte boundary and planes of odd length. */
START_TEST(bn_backward_dz_streams_large_buffers_exactly)
{
    BnLayout l = streamed_layout();
    size_t n = (size_t)l.N * l.C * l.HW;
    float *t = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n), *buf = malloc(sizeof(float) * (n + 3)),
          *want = malloc(sizeof(float) * l.HW);
    ck_assert(t && dy && buf && want);
    for (size_t i = 0; i < n; i++) t[i] = (float)((i * 7919) % 1000) / 250.0f - 2.0f, dy[i] = (float)(i % 17) / 17.0f - 0.5f;
    float *dz = buf + 3;
    for (int mode = 0; mode < 4; mode++) {
        bool from_output = mode & 1;
        float act = mode & 2 ? 0.1f : -1.0f;
        for (int c = 0; c < l.C; c++) {
            BnSaved kept = {t, from_output, act, 1.5f, -0.25f, 0.1f, 2.0f, act > 0.0f ? 1.0f / act : 1.0f, -0.25f, 1.0f / 0.75f};
            bn_channel_backward_dz(&kept, dy, l, c, 0.03f, -0.02f, dz);
            for (int img = 0; img < l.N; img++) {
                size_t at = ((size_t)img * l.C + c) * l.HW;
                BnSaved one = kept;
                one.t = t + at;
                BnLayout plane = {1, 1, l.HW};
                bn_channel_backward_dz(&one, dy + at, plane, 0, 0.03f, -0.02f, want);
                for (size_t i = 0; i < l.HW; i++)
                    if (dz[at + i] != want[i])
                        ck_abort_msg("mode %d channel %d image %d: dz[%zu] = %.9g, by plane %.9g", mode, c, img, i,
                                     dz[at + i], want[i]);
            }
        }
    }
    free(t), free(dy), free(buf), free(want);
}
END_TEST

START_TEST(conv_bn_act_gradients)
{
    /* No activation: a kink of BN's output would be crossed by the finite differences. The activations
     * are checked against the separate ops below. */
    for (size_t i = 0; i < sizeof conv_bn_cases / sizeof conv_bn_cases[0]; i++) {
        Rng r;
        rng_seed(&r, 1100 + i, 0);
        Inputs in = {0};
        ConvBnCase k = {conv_bn_cases[i], -1.0f, {0}, {0}};
        conv_bn_inputs(&k.c, &r, &in, &k);
        char what[64];
        snprintf(what, sizeof what, "conv_bn_act case %zu", i);
        run_check(conv_bn_act_fn, &k, &in, NULL, gradcheck_defaults(), what);
        tensor_free(&k.rm), tensor_free(&k.rv);
        free_inputs(&in);
    }
    /* The stem as a network has it: an input without gradient and images enough for a task each, which
     * takes the weight gradient image by image in bands of output rows (two bands, a partial one; two
     * column passes of the kernel, 128 + 3; output channels in a block of four and one more). */
    static const ConvCase stem = {2, 3, 19, 261, 5, 3, 2, 1, 1, 1, 0};
    Rng r;
    rng_seed(&r, 1150, 0);
    Inputs in = {0};
    ConvBnCase k = {stem, -1.0f, {0}, {0}};
    conv_bn_inputs(&k.c, &r, &in, &k);
    const bool no_input_grad[4] = {false, true, true, true};
    run_check(conv_bn_act_fn, &k, &in, no_input_grad, gradcheck_defaults(), "conv_bn_act stem without input gradient");
    tensor_free(&k.rm), tensor_free(&k.rv);
    free_inputs(&in);
}
END_TEST

/* act(BN(conv(x)) + r), r the fifth input (of the output's shape): the residual op, or conv_bn_act without
 * activation then ag_add_act (the reference). k->c.bias set: r is read again by a later op, so its gradient
 * is there before the op's backward adds to it. */
typedef struct {
    ConvBnCase k;
    bool fused;
} ResidualCase;

static Var *conv_bn_residual_fn(Graph *g, Var **in, void *arg)
{
    ResidualCase *rc = arg;
    ConvBnCase *k = &rc->k;
    Conv2dParams p = conv2d_params(k->c.stride, k->c.pad, k->c.dil, k->c.groups);
    Var *y = rc->fused ? ag_conv_bn_act_train_residual(g, in[0], in[1], in[2], in[3], &k->rm, &k->rv, p, 0.1f, 1e-5f,
                                                       in[4], k->act)
                       : ag_add_act(g, ag_conv_bn_act_train(g, in[0], in[1], in[2], in[3], &k->rm, &k->rv, p, 0.1f, 1e-5f,
                                                            -1.0f),
                                    in[4], k->act);
    return y && k->c.bias ? ag_add(g, y, ag_scale(g, in[4], 0.5f)) : y;
}

/* The residual's input: a tensor of the case's output shape. */
static void residual_input(const ConvCase *c, Rng *r, Inputs *in)
{
    int Ho = (c->H + 2 * c->pad - c->dil * (c->K - 1) - 1) / c->stride + 1;
    int Wo = (c->W + 2 * c->pad - c->dil * (c->K - 1) - 1) / c->stride + 1;
    int64_t ys[4] = {c->N, c->Cout, Ho, Wo};
    add_input(in, r, 4, ys);
}

START_TEST(conv_bn_act_residual_gradients_and_values)
{
    Context *ctx = context_create(2);
    static const float acts[3] = {-1.0f, 0.0f, 0.1f};
    for (size_t i = 0; i < sizeof conv_bn_cases / sizeof conv_bn_cases[0]; i++) {
        /* central differences without the activation (its kinks), on every path */
        Rng r;
        rng_seed(&r, 1300 + i, 0);
        Inputs in = {0};
        ResidualCase rc = {{conv_bn_cases[i], -1.0f, {0}, {0}}, true};
        rc.k.c.bias = (int)(i % 2);
        conv_bn_inputs(&rc.k.c, &r, &in, &rc.k);
        residual_input(&rc.k.c, &r, &in);
        char what[64];
        snprintf(what, sizeof what, "conv_bn_act residual case %zu", i);
        /* r adds its own spread to every output, so the loss of the largest cases (169K outputs) carries
         * more float rounding into the differences: a looser absolute tolerance than conv_bn_act's */
        GradcheckOptions opt = gradcheck_defaults();
        opt.atol = 5e-3;
        run_check(conv_bn_residual_fn, &rc, &in, NULL, opt, what);
        tensor_free(&rc.k.rm), tensor_free(&rc.k.rv);
        /* values and the five gradients against the two ops, with each activation */
        for (int a = 0; a < 3; a++) {
            float *out[2] = {0}, *grads[2][5] = {{0}};
            int64_t ny = 0;
            for (int fused = 0; fused < 2; fused++) {
                ResidualCase one = {{conv_bn_cases[i], acts[a], {0}, {0}}, fused};
                one.k.c.bias = (int)(i % 2);
                conv_bn_running_stats(&one.k);
                forward_backward_copies(ctx, conv_bn_residual_fn, &one, &in, &out[fused], &ny, grads[fused]);
                tensor_free(&one.k.rm), tensor_free(&one.k.rv);
            }
            ck_assert_msg(tensor_diff(out[1], out[0], ny, 1e-6).max_abs <= 2e-5, "case %zu act %g: output", i, acts[a]);
            for (int j = 0; j < 5; j++) {
                TensorDiff d = tensor_diff(grads[1][j], grads[0][j], tensor_numel(&in.t[j]), 1e-6);
                ck_assert_msg(d.max_rel_to_max <= 1e-4, "case %zu act %g grad %d: %.3g", i, acts[a], j, d.max_rel_to_max);
                free(grads[0][j]), free(grads[1][j]);
            }
            free(out[0]), free(out[1]);
        }
        free_inputs(&in);
    }
    context_destroy(ctx);
}
END_TEST

START_TEST(conv_bn_act_equals_conv_bn_then_activation)
{
    /* Output, the four gradients and the running statistics against conv2d -> batchnorm2d -> leaky_relu,
     * for every path, with no activation, ReLU and leaky ReLU 0.1. */
    static const float acts[3] = {-1.0f, 0.0f, 0.1f};
    Context *ctx = context_create(2);
    for (size_t i = 0; i < sizeof conv_bn_cases / sizeof conv_bn_cases[0]; i++)
        for (int a = 0; a < 3; a++) {
            Rng r;
            rng_seed(&r, 1200 + i, a);
            Inputs in = {0};
            ConvBnCase k[2] = {{conv_bn_cases[i], acts[a], {0}, {0}}, {conv_bn_cases[i], acts[a], {0}, {0}}};
            conv_bn_inputs(&k[0].c, &r, &in, &k[0]);
            conv_bn_running_stats(&k[1]);
            float *out[2] = {0}, *grads[2][4] = {{0}};
            int64_t ny = 0;
            for (int fused = 0; fused < 2; fused++)
                forward_backward_copies(ctx, fused ? conv_bn_act_fn : conv_then_bn_then_act_fn, &k[fused], &in, &out[fused],
                                        &ny, grads[fused]);
            ck_assert_msg(tensor_diff(out[1], out[0], ny, 1e-6).max_abs <= 2e-5, "case %zu act %g: output", i, acts[a]);
            for (int j = 0; j < 4; j++) {
                TensorDiff d = tensor_diff(grads[1][j], grads[0][j], tensor_numel(&in.t[j]), 1e-6);
                ck_assert_msg(d.max_rel_to_max <= 1e-4, "case %zu act %g grad %d: %.3g", i, acts[a], j, d.max_rel_to_max);
                free(grads[0][j]), free(grads[1][j]);
            }
            int C = k[0].c.Cout;
            ck_assert(tensor_diff(k[1].rm.data, k[0].rm.data, C, 1e-6).max_abs <= 1e-5);
            ck_assert(tensor_diff(k[1].rv.data, k[0].rv.data, C, 1e-6).max_abs <= 1e-5);
            free(out[0]), free(out[1]);
            for (int f = 0; f < 2; f++) tensor_free(&k[f].rm), tensor_free(&k[f].rv);
            free_inputs(&in);
        }
    context_destroy(ctx);
}
END_TEST

/* A chain pointwise -> depthwise -> pointwise -> depthwise (stride 2), leaky 0.1, as MobileNet has it: each
 * layer's BN backward sums are taken by the next layer's backward as it writes its input gradient
 * (conv_bn_act_sums_receiver); the last layer's input also feeds a second reader, whose sums stay with its
 * own backward. Every gradient and running statistic against the same chain of separate ops. */
enum { CHAIN_LAYERS = 4 };

typedef struct {
    Tensor x, w[CHAIN_LAYERS], gamma[CHAIN_LAYERS], beta[CHAIN_LAYERS], rm[CHAIN_LAYERS], rv[CHAIN_LAYERS];
} BnChain;

static const int chain_cout[CHAIN_LAYERS] = {12, 12, 7, 7}, chain_k[CHAIN_LAYERS] = {1, 3, 1, 3},
                 chain_stride[CHAIN_LAYERS] = {1, 1, 1, 2};

static Var *bn_chain_forward(Graph *g, BnChain *c, bool fused, Var **vx, Var *vw[], Var *vg[], Var *vb[])
{
    Var *h = *vx = var_from_tensor(g, &c->x, true);
    Var *side = NULL;
    for (int l = 0; l < CHAIN_LAYERS; l++) {
        int cin = (int)h->value.shape[1], groups = chain_k[l] == 3 ? cin : 1;
        Conv2dParams p = conv2d_params(chain_stride[l], chain_k[l] / 2, 1, groups);
        vw[l] = var_from_tensor(g, &c->w[l], true);
        vg[l] = var_from_tensor(g, &c->gamma[l], true);
        vb[l] = var_from_tensor(g, &c->beta[l], true);
        if (l == CHAIN_LAYERS - 1) side = h; /* two readers: this layer and the sum below */
        if (fused) {
            h = ag_conv_bn_act_train(g, h, vw[l], vg[l], vb[l], &c->rm[l], &c->rv[l], p, 0.1f, 1e-5f, 0.1f);
        } else {
            h = ag_batchnorm2d(g, ag_conv2d(g, h, vw[l], NULL, p), vg[l], vb[l], &c->rm[l], &c->rv[l], true, 0.1f, 1e-5f);
            h = ag_leaky_relu(g, h, 0.1f);
        }
    }
    return ag_add(g, ag_sum(g, ag_scale(g, h, 0.7f)), ag_sum(g, ag_scale(g, side, -0.3f)));
}

START_TEST(conv_bn_act_chain_hands_bn_sums_to_the_layer_before)
{
    Context *ctx = context_create(2);
    Rng r;
    rng_seed(&r, 1300, 0);
    BnChain c[2];
    int64_t xs[4] = {4, 5, 9, 11};
    tensor_new(&c[0].x, DEVICE_CPU, 4, xs, NULL), tensor_fill_normal(&c[0].x, &r, 0, 1);
    for (int l = 0, cin = 5; l < CHAIN_LAYERS; cin = chain_cout[l], l++) {
        int64_t ws[4] = {chain_cout[l], chain_k[l] == 3 ? 1 : cin, chain_k[l], chain_k[l]}, cs[1] = {chain_cout[l]};
        tensor_new(&c[0].w[l], DEVICE_CPU, 4, ws, NULL), tensor_fill_normal(&c[0].w[l], &r, 0, 1);
        tensor_new(&c[0].gamma[l], DEVICE_CPU, 1, cs, NULL), tensor_fill_normal(&c[0].gamma[l], &r, 0, 1);
        for (int i = 0; i < chain_cout[l]; i++) c[0].gamma[l].data[i] = 0.5f + fabsf(c[0].gamma[l].data[i]);
        tensor_new(&c[0].beta[l], DEVICE_CPU, 1, cs, NULL), tensor_fill_normal(&c[0].beta[l], &r, 0, 1);
        for (int f = 0; f < 2; f++) {
            tensor_new(&c[f].rm[l], DEVICE_CPU, 1, cs, NULL), tensor_fill(&c[f].rm[l], 0.0f);
            tensor_new(&c[f].rv[l], DEVICE_CPU, 1, cs, NULL), tensor_fill(&c[f].rv[l], 1.0f);
        }
        c[1].w[l] = c[0].w[l], c[1].gamma[l] = c[0].gamma[l], c[1].beta[l] = c[0].beta[l];
    }
    c[1].x = c[0].x;
    float *grads[2][1 + 3 * CHAIN_LAYERS];
    size_t counts[1 + 3 * CHAIN_LAYERS];
    for (int f = 0; f < 2; f++) {
        Graph g;
        graph_init(&g, ctx, DEVICE_CPU, NULL);
        Var *vx, *vw[CHAIN_LAYERS], *vg[CHAIN_LAYERS], *vb[CHAIN_LAYERS];
        Var *loss = bn_chain_forward(&g, &c[f], f == 1, &vx, vw, vg, vb);
        ck_assert_msg(loss != NULL, "%s", g.err.msg);
        ck_assert_int_eq(graph_backward(&g, loss), ERR_OK);
        Var *all[1 + 3 * CHAIN_LAYERS] = {vx};
        for (int l = 0; l < CHAIN_LAYERS; l++) all[1 + 3 * l] = vw[l], all[2 + 3 * l] = vg[l], all[3 + 3 * l] = vb[l];
        for (int i = 0; i < 1 + 3 * CHAIN_LAYERS; i++) {
            counts[i] = (size_t)tensor_numel(&all[i]->value);
            grads[f][i] = malloc(counts[i] * sizeof(float));
            memcpy(grads[f][i], all[i]->grad.data, counts[i] * sizeof(float));
        }
        graph_destroy(&g);
    }
    for (int i = 0; i < 1 + 3 * CHAIN_LAYERS; i++) {
        TensorDiff d = tensor_diff(grads[1][i], grads[0][i], (int64_t)counts[i], 1e-6);
        ck_assert_msg(d.max_rel_to_max <= 1e-4, "gradient %d of the chain: %.3g", i, d.max_rel_to_max);
        free(grads[0][i]), free(grads[1][i]);
    }
    for (int l = 0; l < CHAIN_LAYERS; l++) {
        ck_assert(tensor_diff(c[1].rm[l].data, c[0].rm[l].data, chain_cout[l], 1e-6).max_abs <= 1e-5);
        ck_assert(tensor_diff(c[1].rv[l].data, c[0].rv[l].data, chain_cout[l], 1e-6).max_abs <= 1e-5);
        tensor_free(&c[0].w[l]), tensor_free(&c[0].gamma[l]), tensor_free(&c[0].beta[l]);
        for (int f = 0; f < 2; f++) tensor_free(&c[f].rm[l]), tensor_free(&c[f].rv[l]);
    }
    tensor_free(&c[0].x);
    context_destroy(ctx);
}
END_TEST

/* ---- activations, elementwise ------------------------------------------------------------------ */

static Var *relu_fn(Graph *g, Var **in, void *arg) { return ag_relu(g, in[0]); }
static Var *leaky_fn(Graph *g, Var **in, void *arg) { return ag_leaky_relu(g, in[0], 0.1f); }
static Var *add_fn(Graph *g, Var **in, void *arg)
{
    /* in[0] used twice: its gradient must collect both uses. */
    return ag_add(g, ag_add(g, in[0], in[1]), ag_scale(g, in[0], -0.5f));
}
static Var *sum_fn(Graph *g, Var **in, void *arg) { return ag_sum(g, in[0]); }
static Var *add_act_fn(Graph *g, Var **in, void *arg)
{
    Var *y = ag_add_act(g, in[0], in[1], *(const float *)arg);
    return ag_add(g, y, ag_scale(g, in[1], 2.0f)); /* in[1]'s gradient gets a second contribution */
}
/* The other orders of the two inputs' gradients (add_backward_range's cases; ops made later run their
 * backward first): fresh finds neither gradient there, both finds both (the scales ran before it), self
 * is a + a. */
static Var *add_act_orders_fn(Graph *g, Var **in, void *arg)
{
    float act = *(const float *)arg;
    Var *self = ag_add_act(g, in[0], in[0], act), *both = ag_add_act(g, in[0], in[1], act);
    Var *s0 = ag_scale(g, in[0], 0.5f), *s1 = ag_scale(g, in[1], -1.5f);
    Var *fresh = ag_add_act(g, in[0], in[1], act);
    Var *t = ag_add(g, ag_add(g, both, s0), ag_add(g, s1, ag_scale(g, fresh, 0.7f)));
    return ag_add(g, self, t);
}

START_TEST(activation_and_elementwise_gradients)
{
    Rng r;
    rng_seed(&r, 300, 0);
    int64_t s[4] = {2, 3, 5, 7};
    Inputs in = {0};
    avoid_kink(add_input(&in, &r, 4, s), 0.0f, 0.05f);
    run_check(relu_fn, NULL, &in, NULL, gradcheck_defaults(), "relu");
    run_check(leaky_fn, NULL, &in, NULL, gradcheck_defaults(), "leaky_relu");
    run_check(sum_fn, NULL, &in, NULL, gradcheck_defaults(), "sum");
    add_input(&in, &r, 4, s);
    run_check(add_fn, NULL, &in, NULL, gradcheck_defaults(), "add/scale with reuse");
    /* act(a + b), its sums kept 0.05 away from the kink; b also feeds the sum twice over (reuse) */
    for (int64_t i = 0; i < tensor_numel(&in.t[0]); i++) {
        float v = in.t[0].data[i] + in.t[1].data[i];
        if (fabsf(v) < 0.05f) in.t[0].data[i] += v < 0 ? -0.05f - v : 0.05f - v;
    }
    for (int k = 0; k < 2; k++) {
        float act = k ? 0.1f : 0.0f;
        run_check(add_act_fn, &act, &in, NULL, gradcheck_defaults(), k ? "add + leaky" : "add + relu");
        run_check(add_act_orders_fn, &act, &in, NULL, gradcheck_defaults(), k ? "add + leaky, orders" : "add + relu, orders");
    }
    free_inputs(&in);
}
END_TEST

/* ---- shape ops ------------------------------------------------------------------------------- */

typedef struct {
    int axis, n;
} ConcatCase;

static Var *concat_fn(Graph *g, Var **in, void *arg)
{
    const ConcatCase *c = arg;
    return ag_concat(g, in, c->n, c->axis);
}

START_TEST(concat_gradients)
{
    Rng r;
    rng_seed(&r, 400, 0);
    Inputs in = {0};
    int64_t a[4] = {2, 3, 4, 5}, b[4] = {2, 1, 4, 5}, c[4] = {2, 4, 4, 5};
    add_input(&in, &r, 4, a), add_input(&in, &r, 4, b), add_input(&in, &r, 4, c);
    ConcatCase cc = {1, 3};
    run_check(concat_fn, &cc, &in, NULL, gradcheck_defaults(), "concat channels");
    free_inputs(&in);
    /* The heads' concatenation: [N, P_i, k] along the prior axis. */
    Inputs in2 = {0};
    int64_t p1[3] = {2, 7, 4}, p2[3] = {2, 3, 4};
    add_input(&in2, &r, 3, p1), add_input(&in2, &r, 3, p2);
    ConcatCase pc = {1, 2};
    run_check(concat_fn, &pc, &in2, NULL, gradcheck_defaults(), "concat priors");
    ConcatCase last = {-1, 2};
    int64_t q1[3] = {2, 7, 3};
    tensor_free(&in2.t[1]);
    in2.n = 1;
    add_input(&in2, &r, 3, q1);
    run_check(concat_fn, &last, &in2, NULL, gradcheck_defaults(), "concat last axis");
    free_inputs(&in2);
}
END_TEST

typedef struct {
    int h, w;
} SizeCase;

static Var *upsample_fn(Graph *g, Var **in, void *arg)
{
    const SizeCase *s = arg;
    return ag_upsample_nearest(g, in[0], s->h, s->w);
}

START_TEST(upsample_nearest_gradients_and_indices)
{
    Rng r;
    rng_seed(&r, 500, 0);
    Inputs in = {0};
    int64_t s[4] = {1, 2, 3, 4};
    add_input(&in, &r, 4, s);
    SizeCase double_size = {6, 8}, odd = {5, 9}, shrink = {2, 3};
    run_check(upsample_fn, &double_size, &in, NULL, gradcheck_defaults(), "upsample x2");
    run_check(upsample_fn, &odd, &in, NULL, gradcheck_defaults(), "upsample to odd size");
    run_check(upsample_fn, &shrink, &in, NULL, gradcheck_defaults(), "nearest downsample");
    /* 20 -> 39 (the FPN's stride-32 to stride-16 step at 624 px): row o takes floor(o*20/39). */
    Context *ctx = context_create(1);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    int64_t col[4] = {1, 1, 20, 1};
    Var *x = var_new(&g, 4, col);
    for (int i = 0; i < 20; i++) x->value.data[i] = (float)i;
    Var *y = ag_upsample_nearest(&g, x, 39, 1);
    for (int o = 0; o < 39; o++) ck_assert_float_eq(y->value.data[o], (float)(o * 20 / 39));
    graph_destroy(&g);
    context_destroy(ctx);
    free_inputs(&in);
}
END_TEST

static Var *add_upsampled_fn(Graph *g, Var **in, void *arg)
{
    (void)arg;
    return ag_add_upsampled(g, in[0], in[1]);
}

/* m = 3 in[0] read by add_upsampled and by a node made before it and one made after it: the backward hands
 * add_upsampled's output gradient over to m as its buffer (var_grad_pass_host) only while m has none, so
 * here it adds to what the later reader left, and the reshape of the later reader's output hands its
 * gradient over to a fresh one that the earlier reader's branch then adds into. */
static Var *handed_gradient_fn(Graph *g, Var **in, void *arg)
{
    (void)arg;
    int64_t flat[1] = {-1};
    Var *m = ag_scale(g, in[0], 3.0f);
    Var *before = ag_relu(g, m);
    Var *y = ag_add_upsampled(g, m, in[1]);
    Var *after = ag_leaky_relu(g, m, 0.25f);
    Var *sum = ag_add(g, ag_add(g, y, before), after);
    Var *r = ag_reshape(g, sum, 1, flat);
    return ag_add(g, ag_scale(g, r, 0.5f), ag_reshape(g, before, 1, flat));
}

START_TEST(add_upsampled_gradients_and_values)
{
    /* gradients through both inputs: the exact 2x case (with a tail past the vector width) and an odd
     * size; then equality with add(a, upsample(x)) */
    static const int64_t shapes[][2][4] = {
        {{1, 2, 6, 22}, {1, 2, 3, 11}}, /* 2x: 16 columns by vectors, 6 after */
        {{2, 3, 5, 9}, {2, 3, 3, 4}},   /* not 2x: the general gather */
    };
    Rng r;
    rng_seed(&r, 510, 0);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        Inputs in = {0};
        add_input(&in, &r, 4, shapes[k][0]);
        add_input(&in, &r, 4, shapes[k][1]);
        run_check(add_upsampled_fn, NULL, &in, NULL, gradcheck_defaults(), k ? "add_upsampled, odd size" : "add_upsampled x2");
        avoid_kink(&in.t[0], 0.0f, 0.05f);
        run_check(handed_gradient_fn, NULL, &in, NULL, gradcheck_defaults(), "add_upsampled and reshape, gradient handed over");
        Context *ctx = context_create(2);
        Graph g;
        graph_init(&g, ctx, DEVICE_CPU, NULL);
        Var *a = var_from_tensor(&g, &in.t[0], false), *x = var_from_tensor(&g, &in.t[1], false);
        Var *fused = ag_add_upsampled(&g, a, x);
        Var *apart = ag_add(&g, a, ag_upsample_nearest(&g, x, (int)shapes[k][0][2], (int)shapes[k][0][3]));
        ck_assert_ptr_nonnull(fused);
        ck_assert_ptr_nonnull(apart);
        for (int64_t i = 0; i < tensor_numel(&fused->value); i++)
            ck_assert_float_eq(fused->value.data[i], apart->value.data[i]);
        graph_destroy(&g);
        context_destroy(ctx);
        free_inputs(&in);
    }
}
END_TEST

static Var *head_layout_fn(Graph *g, Var **in, void *arg)
{
    /* permute(0,2,3,1).view(N, -1, 4), as a RetinaFace head does. */
    int perm[4] = {0, 2, 3, 1};
    Var *p = ag_permute(g, in[0], perm);
    int64_t shape[3] = {p ? p->value.shape[0] : 0, -1, 4};
    return ag_reshape(g, p, 3, shape);
}

/* The head layout of x, and x itself read by a later op (its backward runs first): the permute's backward
 * then adds to a gradient already there. Both flattened per image and concatenated. */
static Var *head_layout_reused_fn(Graph *g, Var **in, void *arg)
{
    Var *p = head_layout_fn(g, in, arg), *s = ag_scale(g, in[0], 0.5f);
    int64_t flat[2] = {in[0]->value.shape[0], -1};
    Var *parts[2] = {ag_reshape(g, p, 2, flat), ag_reshape(g, s, 2, flat)};
    return parts[0] && parts[1] ? ag_concat(g, parts, 2, 1) : NULL;
}

START_TEST(permute_reshape_gradients)
{
    Rng r;
    rng_seed(&r, 600, 0);
    Inputs in = {0};
    int64_t s[4] = {2, 8, 3, 5};
    add_input(&in, &r, 4, s);
    run_check(head_layout_fn, NULL, &in, NULL, gradcheck_defaults(), "permute+reshape");
    free_inputs(&in);
    /* planes whose transposes take whole 8x8 blocks and leave edges, forward and backward */
    static const int64_t wide[2][4] = {{1, 16, 9, 10}, {2, 20, 5, 11}};
    for (int k = 0; k < 2; k++) {
        Inputs w = {0};
        add_input(&w, &r, 4, wide[k]);
        run_check(head_layout_reused_fn, NULL, &w, NULL, gradcheck_defaults(), "permute+reshape, gradient added to");
        free_inputs(&w);
    }
    /* values of permutes large enough to be cut into pool tasks that start inside a run of rows, and
     * one whose rows are not contiguous runs, against the index arithmetic written out */
    static const int perms[][4] = {{0, 2, 3, 1}, {3, 1, 0, 2}};
    int64_t big[4] = {2, 20, 37, 53};
    Context *ctx = context_create(2);
    for (int k = 0; k < 2; k++) {
        Graph g;
        graph_init(&g, ctx, DEVICE_CPU, NULL);
        Var *x = var_new(&g, 4, big);
        for (int64_t i = 0; i < tensor_numel(&x->value); i++) x->value.data[i] = (float)i;
        Var *y = ag_permute(&g, x, perms[k]);
        ck_assert_ptr_nonnull(y);
        int64_t o[4], n = 0;
        for (o[0] = 0; o[0] < y->value.shape[0]; o[0]++)
            for (o[1] = 0; o[1] < y->value.shape[1]; o[1]++)
                for (o[2] = 0; o[2] < y->value.shape[2]; o[2]++)
                    for (o[3] = 0; o[3] < y->value.shape[3]; o[3]++, n++) {
                        int64_t src[4], off = 0;
                        for (int d = 0; d < 4; d++) src[perms[k][d]] = o[d];
                        for (int d = 0; d < 4; d++) off = off * big[d] + src[d];
                        ck_assert_float_eq(y->value.data[n], (float)off);
                    }
        graph_destroy(&g);
    }
    context_destroy(ctx);
}
END_TEST

/* ---- softmax, losses --------------------------------------------------------------------------- */

static Var *softmax_fn(Graph *g, Var **in, void *arg) { return ag_softmax(g, in[0]); }

typedef struct {
    int32_t labels[64];
    uint8_t select[64];
    float target[64 * 4];
} LossCase;

static Var *ce_fn(Graph *g, Var **in, void *arg)
{
    LossCase *c = arg;
    return ag_cross_entropy(g, in[0], c->labels, c->select);
}

static Var *sl1_fn(Graph *g, Var **in, void *arg)
{
    LossCase *c = arg;
    return ag_smooth_l1(g, in[0], c->target, c->select);
}

START_TEST(softmax_and_loss_gradients)
{
    Rng r;
    rng_seed(&r, 700, 0);
    Inputs in = {0};
    int64_t s[3] = {2, 9, 3};
    add_input(&in, &r, 3, s);
    run_check(softmax_fn, NULL, &in, NULL, gradcheck_defaults(), "softmax");
    Inputs two = {0}; /* the two-class path, ties and large differences included */
    int64_t s2[3] = {1, 7, 2};
    Tensor *t2 = add_input(&two, &r, 3, s2);
    t2->data[0] = t2->data[1] = 0.3f, t2->data[2] = 40.0f, t2->data[3] = -45.0f;
    run_check(softmax_fn, NULL, &two, NULL, gradcheck_defaults(), "softmax, two classes");
    free_inputs(&two);
    /* two-class values, 8 rows to a vector and the rest (37 rows), against exp in double: differences from
     * 0 to 200 (past where e^-d leaves the normal floats), ties, either input the larger */
    {
        Context *ctx = context_create(2);
        Graph g;
        graph_init(&g, ctx, DEVICE_CPU, NULL);
        int64_t s3[3] = {1, 37, 2};
        Var *x = var_new(&g, 3, s3);
        for (int i = 0; i < 37; i++) {
            float base = (float)rng_normal(&r) * 3.0f, d = i % 9 == 4 ? 0.0f : (float)(i * i) * 0.15f;
            x->value.data[2 * i + (i % 2)] = base + d, x->value.data[2 * i + 1 - (i % 2)] = base;
        }
        Var *y = ag_softmax(&g, x);
        ck_assert_ptr_nonnull(y);
        for (int i = 0; i < 37; i++) {
            /* each probability from its own formula (1 - p would lose the small one to cancellation); the
             * tolerance grows with |a - b|, whose rounding to a float moves e^-|a - b| by that much */
            double a = x->value.data[2 * i], b = x->value.data[2 * i + 1], pa = 1.0 / (1.0 + exp(b - a)),
                   pb = 1.0 / (1.0 + exp(a - b)), tol = 1e-6 + 6e-8 * fabs(a - b);
            ck_assert_msg(fabs(y->value.data[2 * i] - pa) <= tol * pa + 1e-37 &&
                              fabs(y->value.data[2 * i + 1] - pb) <= tol * pb + 1e-37,
                          "softmax row %d (%g, %g): %.9g %.9g, want %.9g %.9g", i, a, b, y->value.data[2 * i],
                          y->value.data[2 * i + 1], pa, pb);
        }
        graph_destroy(&g);
        context_destroy(ctx);
    }
    LossCase c;
    for (int i = 0; i < 18; i++) {
        c.labels[i] = (int32_t)rng_below(&r, 3);
        c.select[i] = (uint8_t)(i % 3 != 1);
    }
    run_check(ce_fn, &c, &in, NULL, gradcheck_defaults(), "cross_entropy");
    free_inputs(&in);

    Inputs in2 = {0};
    int64_t b[3] = {2, 8, 4};
    Tensor *pred = add_input(&in2, &r, 3, b);
    for (int i = 0; i < 64; i++) {
        /* differences spread over both branches (|d| < 1 and > 1), none within 0.05 of a kink */
        float d = (rng_uniform(&r) * 2 - 1) * 2.5f;
        if (fabsf(fabsf(d) - 1.0f) < 0.05f) d = d > 0 ? d + 0.1f : d - 0.1f;
        c.target[i] = pred->data[i] - d;
    }
    for (int i = 0; i < 16; i++) c.select[i] = (uint8_t)(i % 4 != 0);
    run_check(sl1_fn, &c, &in2, NULL, gradcheck_defaults(), "smooth_l1");
    free_inputs(&in2);
}
END_TEST

START_TEST(loss_values)
{
    Context *ctx = context_create(1);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    int64_t s[2] = {2, 2};
    Var *z = var_new(&g, 2, s);
    float v[4] = {0, 0, 1, 3};
    memcpy(z->value.data, v, sizeof v);
    int32_t labels[2] = {1, 0};
    uint8_t sel[2] = {1, 1};
    Var *ce = ag_cross_entropy(&g, z, labels, sel);
    ck_assert_double_eq_tol(ce->value.data[0], log(2.0) + log(1 + exp(2.0)), 1e-6);
    float target[4] = {0.5f, 0, 0, 0};
    Var *l = ag_smooth_l1(&g, z, target, NULL); /* 0.125 + 0 + 0.5 + 2.5 */
    ck_assert_double_eq_tol(l->value.data[0], 3.125, 1e-6);
    int32_t bad[2] = {2, 0};
    ck_assert_ptr_null(ag_cross_entropy(&g, z, bad, NULL));
    ck_assert_int_eq(g.err.code, ERR_ARG);
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

/* ---- pooling, linear --------------------------------------------------------------------------- */

static Var *gap_fn(Graph *g, Var **in, void *arg) { return ag_global_avg_pool(g, in[0]); }
static Var *maxpool_fn(Graph *g, Var **in, void *arg) { return ag_max_pool2d(g, in[0], 3, 2, 1); }
static Var *linear_fn(Graph *g, Var **in, void *arg) { return ag_linear(g, in[0], in[1], in[2]); }

START_TEST(pool_and_linear_gradients)
{
    Rng r;
    rng_seed(&r, 800, 0);
    Inputs in = {0};
    int64_t s[4] = {2, 3, 7, 6};
    Tensor *x = add_input(&in, &r, 4, s);
    run_check(gap_fn, NULL, &in, NULL, gradcheck_defaults(), "global_avg_pool");
    /* Distinct values 0.05 apart so the argmax of every window is stable under +-eps. */
    int64_t n = tensor_numel(x);
    for (int64_t i = 0; i < n; i++) x->data[i] = (float)i * 0.05f;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = rng_below(&r, (uint32_t)(i + 1));
        float t = x->data[i];
        x->data[i] = x->data[j], x->data[j] = t;
    }
    run_check(maxpool_fn, NULL, &in, NULL, gradcheck_defaults(), "max_pool2d 3/2/1");
    free_inputs(&in);

    Inputs lin = {0};
    int64_t xs[2] = {3, 7}, ws[2] = {5, 7}, bs[1] = {5};
    add_input(&lin, &r, 2, xs), add_input(&lin, &r, 2, ws), add_input(&lin, &r, 1, bs);
    run_check(linear_fn, NULL, &lin, NULL, gradcheck_defaults(), "linear");
    free_inputs(&lin);
}
END_TEST

/* The 3x3 stride-2 max pool against a direct scan (first maximum in row-major window order wins) on rows
 * wide enough for its 8-output vector path and with many ties (3 values), forward values and where the
 * backward sends each output's gradient: the pool alone, then (the step's memory reused, holding the first
 * pass's gradients) the pool read twice, whose input gradient the second backward adds to. */
START_TEST(max_pool_3x3s2_matches_direct_scan_with_ties)
{
    Context *ctx = context_create(2);
    Rng r;
    rng_seed(&r, 801, 0);
    const int N = 2, C = 3, H = 13, W = 53, Ho = (H + 2 - 3) / 2 + 1, Wo = (W + 2 - 3) / 2 + 1;
    int64_t xs[4] = {N, C, H, W};
    Tensor x;
    ck_assert_int_eq(tensor_new(&x, DEVICE_CPU, 4, xs, NULL), ERR_OK);
    for (int64_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)rng_below(&r, 3);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    float *seed = malloc(sizeof(float) * (size_t)N * C * Ho * Wo), *want_dx = calloc((size_t)N * C * H * W, sizeof(float));
    for (int twice = 0; twice < 2; twice++) {
        graph_reset(&g);
        Var *xv = var_from_tensor(&g, &x, true), *y = ag_max_pool2d(&g, xv, 3, 2, 1);
        ck_assert_msg(y != NULL, "%s", g.err.msg);
        memset(want_dx, 0, sizeof(float) * (size_t)N * C * H * W);
        for (int p = 0; p < N * C; p++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    size_t o = ((size_t)p * Ho + oh) * Wo + ow;
                    seed[o] = (float)(o % 7) + 1.0f;
                    int best_at = -1;
                    for (int ki = 0; ki < 3; ki++)
                        for (int kj = 0; kj < 3; kj++) {
                            int ih = 2 * oh - 1 + ki, iw = 2 * ow - 1 + kj;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            int at = (p * H + ih) * W + iw;
                            if (best_at < 0 || x.data[at] > x.data[best_at]) best_at = at;
                        }
                    ck_assert_msg(y->value.data[o] == x.data[best_at], "output %zu: %g, want %g", o, y->value.data[o],
                                  x.data[best_at]);
                    want_dx[best_at] += (twice ? 2.0f : 1.0f) * seed[o];
                }
        if (twice) y = ag_add(&g, y, ag_max_pool2d(&g, xv, 3, 2, 1));
        ck_assert_msg(y != NULL, "%s", g.err.msg);
        ck_assert_int_eq(graph_backward_with_grad(&g, y, seed), ERR_OK);
        for (int64_t i = 0; i < tensor_numel(&x); i++)
            ck_assert_msg(xv->grad.data[i] == want_dx[i], "pass %d: dx[%lld] %g, want %g", twice, (long long)i,
                          xv->grad.data[i], want_dx[i]);
    }
    free(seed), free(want_dx);
    graph_destroy(&g);
    tensor_free(&x);
    context_destroy(ctx);
}
END_TEST

typedef struct {
    Conv2dParams p;
    float act;
    bool fused;
} ActArg;

static Var *conv_act_fn(Graph *g, Var **in, void *arg)
{
    ActArg *a = arg;
    if (a->fused) return ag_conv2d_act(g, in[0], in[1], in[2], a->p, a->act);
    return ag_leaky_relu(g, ag_conv2d(g, in[0], in[1], in[2], a->p), a->act);
}

START_TEST(conv2d_act_equals_conv_then_activation)
{
    /* The fused epilogue against the two ops it replaces: outputs and all gradients, general and
     * depthwise convolutions, ReLU and leaky. */
    struct {
        int C, Co, groups;
        float act;
    } cases[] = {{4, 6, 1, 0.1f}, {6, 6, 6, 0.0f}, {5, 3, 1, 0.0f}};
    for (size_t k = 0; k < 3; k++) {
        Context *ctx = context_create(2);
        Rng r;
        rng_seed(&r, 900 + k, 0);
        int64_t xs[4] = {2, cases[k].C, 9, 7}, ws[4] = {cases[k].Co, cases[k].C / cases[k].groups, 3, 3}, bs[1] = {cases[k].Co};
        Tensor t[3];
        tensor_new(&t[0], DEVICE_CPU, 4, xs, NULL), tensor_new(&t[1], DEVICE_CPU, 4, ws, NULL);
        tensor_new(&t[2], DEVICE_CPU, 1, bs, NULL);
        for (int i = 0; i < 3; i++) tensor_fill_normal(&t[i], &r, 0, 1);
        float *out[2], *grads[2][3];
        int64_t ny = 0;
        for (int fused = 0; fused < 2; fused++) {
            Graph g;
            graph_init(&g, ctx, DEVICE_CPU, NULL);
            Var *v[3];
            for (int i = 0; i < 3; i++) v[i] = var_from_tensor(&g, &t[i], true);
            ActArg a = {conv2d_params(1, 1, 1, cases[k].groups), cases[k].act, fused};
            Var *y = conv_act_fn(&g, v, &a);
            ck_assert_ptr_nonnull(y);
            ny = tensor_numel(&y->value);
            out[fused] = malloc(tensor_bytes(&y->value));
            memcpy(out[fused], y->value.data, tensor_bytes(&y->value));
            float *seed = malloc(tensor_bytes(&y->value));
            for (int64_t i = 0; i < ny; i++) seed[i] = (float)((i * 7919) % 13) / 6.0f - 1.0f;
            ck_assert_int_eq(graph_backward_with_grad(&g, y, seed), ERR_OK);
            for (int i = 0; i < 3; i++) {
                grads[fused][i] = malloc(tensor_bytes(&t[i]));
                memcpy(grads[fused][i], v[i]->grad.data, tensor_bytes(&t[i]));
            }
            free(seed);
            graph_destroy(&g);
        }
        ck_assert(tensor_diff(out[1], out[0], ny, 1e-6).max_abs <= 1e-6);
        for (int i = 0; i < 3; i++) {
            ck_assert_msg(tensor_diff(grads[1][i], grads[0][i], tensor_numel(&t[i]), 1e-6).max_abs <= 1e-5,
                          "case %zu grad %d", k, i);
            free(grads[0][i]), free(grads[1][i]);
            tensor_free(&t[i]);
        }
        free(out[0]), free(out[1]);
        context_destroy(ctx);
    }
}
END_TEST

typedef struct {
    const char *what;
    ConvCpuAlgorithm algo; /* the path the shape must take */
    int N, Cin, H, W, Cout, stride, pad, groups;
    float act;
    double tol; /* of the largest output: Winograd's transforms round more than a direct sum */
    int K;      /* kernel size; 0: 3 */
    int tile;   /* Winograd: the output tile side the shape must take (0: not checked) */
} FastConvCase;

/* Largest |y - direct double sum| over the output, divided by max(1, max |direct sum|). */
static double conv_error_vs_direct_sum(const FastConvCase *c, const Tensor *x, const Tensor *w, const Tensor *b,
                                       const Tensor *y)
{
    int Ho = (int)y->shape[2], Wo = (int)y->shape[3], Cg = c->Cin / c->groups, Cog = c->Cout / c->groups;
    int K = c->K ? c->K : 3;
    double worst = 0, scale = 1;
    for (int n = 0; n < c->N; n++)
        for (int co = 0; co < c->Cout; co++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    double acc = b->data[co];
                    for (int cg = 0; cg < Cg; cg++) {
                        int ci = co / Cog * Cg + cg;
                        for (int ki = 0; ki < K; ki++)
                            for (int kj = 0; kj < K; kj++) {
                                int ih = oh * c->stride - c->pad + ki, iw = ow * c->stride - c->pad + kj;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                acc += (double)w->data[((size_t)co * Cg + cg) * K * K + ki * K + kj] *
                                       x->data[(((size_t)n * c->Cin + ci) * c->H + ih) * c->W + iw];
                            }
                    }
                    if (c->act >= 0 && acc < 0) acc *= c->act;
                    double d = fabs(acc - y->data[(((size_t)n * c->Cout + co) * Ho + oh) * Wo + ow]);
                    if (d > worst) worst = d;
                    if (fabs(acc) > scale) scale = fabs(acc);
                }
    return worst / scale;
}

START_TEST(fast_conv_paths_match_direct_sum)
{
    /* Each specialised CPU forward path on shapes that reach its edges (odd sizes, column chunks,
     * partial tiles, tile chunks over images and over tile rows, channel-block tails), with the fused epilogue, against a
     * direct 3x3 sum in double. */
    static const FastConvCase cases[] = {
        {"depthwise 3x3/1", CONV_CPU_DEPTHWISE, 2, 5, 37, 45, 5, 1, 1, 5, 0.1f, 1e-6, 3, 0},
        {"depthwise 3x3/2", CONV_CPU_DEPTHWISE, 2, 5, 37, 45, 5, 2, 1, 5, 0.1f, 1e-6, 3, 0},
        {"depthwise 3x3/1, column chunks", CONV_CPU_DEPTHWISE, 1, 3, 5, 1030, 3, 1, 1, 3, 0.1f, 1e-6, 3, 0},
        {"depthwise 3x3/2, column chunks, odd width", CONV_CPU_DEPTHWISE, 1, 3, 6, 1101, 3, 2, 1, 3, -1.0f, 1e-6, 3, 0},
        {"winograd pad 1", CONV_CPU_WINOGRAD, 2, 9, 13, 17, 11, 1, 1, 1, 0.1f, 2e-5, 3, 0},
        {"winograd pad 0, no activation", CONV_CPU_WINOGRAD, 1, 8, 10, 23, 8, 1, 0, 1, -1.0f, 2e-5, 3, 0},
        {"winograd pad 2, relu", CONV_CPU_WINOGRAD, 1, 12, 7, 9, 10, 1, 2, 1, 0.0f, 2e-5, 3, 0},
        {"winograd, chunks of tile rows", CONV_CPU_WINOGRAD, 2, 8, 258, 258, 8, 1, 1, 1, 0.1f, 2e-5, 3, 0},
        {"winograd, tile-row chunks, short last one", CONV_CPU_WINOGRAD, 1, 16, 201, 130, 16, 1, 1, 1, 0.1f, 2e-5, 3, 0},
        {"winograd, wide: chunks of the four-panel floor", CONV_CPU_WINOGRAD, 1, 128, 40, 70, 128, 1, 1, 1, 0.1f, 2e-5, 3, 4},
        /* F(6x6): large and wide enough; partial tiles at the right and bottom edges, padding 1 and 2. It rounds
         * about twice as much as F(4x4) at these widths (1.2e-5 against 7e-6 of the largest output) */
        {"winograd F(6x6), odd sizes", CONV_CPU_WINOGRAD, 2, 97, 49, 59, 100, 1, 1, 1, 0.1f, 3e-5, 3, 6},
        {"winograd F(6x6), pad 2, no activation", CONV_CPU_WINOGRAD, 1, 96, 52, 47, 120, 1, 2, 1, -1.0f, 3e-5, 3, 6},
        {"winograd F(6x6), chunks of tile rows", CONV_CPU_WINOGRAD, 1, 96, 101, 100, 96, 1, 1, 1, 0.1f, 3e-5, 3, 6},
        /* more input channels than a K block of the packed transformed weights (SGEMM_KC = 256), an odd
         * output channel count (the last row panel padded) */
        {"winograd, two K blocks of packed weights", CONV_CPU_WINOGRAD, 1, 300, 9, 11, 13, 1, 1, 1, 0.1f, 2e-5, 3, 0},
        {"direct 3x3/2 stem, column chunks", CONV_CPU_DIRECT3X3_S2, 2, 3, 37, 301, 8, 2, 1, 1, 0.1f, 1e-6, 3, 0},
        {"direct 3x3/2, channel-block tail", CONV_CPU_DIRECT3X3_S2, 1, 5, 20, 33, 7, 2, 1, 1, -1.0f, 1e-6, 3, 0},
        /* pointwise: the GEMM straight on x, with the bias and activation epilogue (partial column panels,
         * an odd output channel count) */
        {"pointwise 8 -> 19", CONV_CPU_GEMM, 2, 8, 37, 139, 19, 1, 0, 1, 0.1f, 1e-6, 1, 0},
        {"pointwise 16 -> 64, no activation", CONV_CPU_GEMM, 1, 16, 9, 11, 64, 1, 0, 1, -1.0f, 1e-6, 1, 0},
        {"pointwise 17 -> 8, relu", CONV_CPU_GEMM, 1, 17, 9, 11, 8, 1, 0, 1, 0.0f, 1e-6, 1, 0},
    };
    Context *ctx = context_create(2);
    Rng r;
    rng_seed(&r, 950, 0);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const FastConvCase *c = &cases[k];
        int K = c->K ? c->K : 3;
        int64_t xs[4] = {c->N, c->Cin, c->H, c->W}, ws[4] = {c->Cout, c->Cin / c->groups, K, K}, bs[1] = {c->Cout};
        Tensor x, w, b;
        tensor_new(&x, DEVICE_CPU, 4, xs, NULL), tensor_new(&w, DEVICE_CPU, 4, ws, NULL), tensor_new(&b, DEVICE_CPU, 1, bs, NULL);
        tensor_fill_normal(&x, &r, 0, 1), tensor_fill_normal(&w, &r, 0, 1), tensor_fill_normal(&b, &r, 0, 1);
        Graph g;
        graph_init(&g, ctx, DEVICE_CPU, NULL);
        graph_set_grad_enabled(&g, false);
        Var *y = ag_conv2d_act(&g, var_from_tensor(&g, &x, false), var_from_tensor(&g, &w, false),
                               var_from_tensor(&g, &b, false), conv2d_params(c->stride, c->pad, 1, c->groups), c->act);
        ck_assert_ptr_nonnull(y);
        Conv2dShape shape;
        char msg[128];
        ck_assert(conv2d_shape(&shape, &x, &w, &b, conv2d_params(c->stride, c->pad, 1, c->groups), msg, sizeof msg));
        if (conv2d_avx2_available())
            ck_assert_msg(conv2d_cpu_algorithm(&shape) == c->algo, "%s: takes the %s path", c->what,
                          conv2d_cpu_algorithm_name(conv2d_cpu_algorithm(&shape)));
        if (c->tile && conv2d_avx2_available())
            ck_assert_msg(conv2d_winograd_tile(&shape) == c->tile, "%s: takes %dx%d tiles", c->what,
                          conv2d_winograd_tile(&shape), conv2d_winograd_tile(&shape));
        double err = conv_error_vs_direct_sum(c, &x, &w, &b, &y->value);
        ck_assert_msg(err <= c->tol, "%s: max error %g of the largest output", c->what, err);
        graph_destroy(&g);
        tensor_free(&x), tensor_free(&w), tensor_free(&b);
    }
    context_destroy(ctx);
}
END_TEST

/* ag_conv_bn_act_train_shared equals one ag_conv_bn_act_train per branch: outputs, running statistics and
 * every gradient, with no activation, ReLU and leaky ReLU on different branches, every branch reached and one
 * the loss does not reach, on the shapes of shared_cases (the depthwise one: one op per branch). */
START_TEST(conv_bn_act_shared_input_matches_separate_layers)
{
    static const float acts[3] = {-1.0f, 0.0f, 0.1f};
    const double tol = 1e-4; /* of the largest gradient: BN's normalisation magnifies the convolution's rounding */
    Context *ctx = context_create(2);
    Rng r;
    rng_seed(&r, 1250, 0);
    for (int c = 0; c < N_SHARED_CASES; c++)
        for (int unreached = 0; unreached < 2; unreached++) {
            const SharedCase *sc = &shared_cases[c];
            Conv2dParams p = conv2d_params(sc->stride, sc->K / 2, 1, sc->groups);
            int64_t xs[4] = {3, sc->Cin, sc->H, sc->W};
            Tensor x, w[3], gm[3], bt[3], rm[2][3], rv[2][3];
            tensor_new(&x, DEVICE_CPU, 4, xs, NULL);
            tensor_fill_normal(&x, &r, 0, 1);
            for (int i = 0; i < 3; i++) {
                int64_t ws[4] = {sc->couts[i], sc->Cin / sc->groups, sc->K, sc->K}, cs[1] = {sc->couts[i]};
                tensor_new(&w[i], DEVICE_CPU, 4, ws, NULL), tensor_fill_normal(&w[i], &r, 0, 1);
                tensor_new(&gm[i], DEVICE_CPU, 1, cs, NULL), tensor_new(&bt[i], DEVICE_CPU, 1, cs, NULL);
                tensor_fill_normal(&gm[i], &r, 0, 1), tensor_fill_normal(&bt[i], &r, 0, 1);
                for (int k = 0; k < sc->couts[i]; k++) gm[i].data[k] = 0.5f + fabsf(gm[i].data[k]);
                for (int f = 0; f < 2; f++) {
                    tensor_new(&rm[f][i], DEVICE_CPU, 1, cs, NULL), tensor_new(&rv[f][i], DEVICE_CPU, 1, cs, NULL);
                    tensor_fill(&rm[f][i], 0.0f), tensor_fill(&rv[f][i], 1.0f);
                }
            }
            const Tensor *of[10] = {&x, &w[0], &gm[0], &bt[0], &w[1], &gm[1], &bt[1], &w[2], &gm[2], &bt[2]};
            float *grads[2][10] = {{0}}, *outs[2][3] = {{0}};
            for (int shared = 0; shared < 2; shared++) {
                Graph g;
                graph_init(&g, ctx, DEVICE_CPU, NULL);
                Var *vs[10], *out[3];
                for (int j = 0; j < 10; j++) vs[j] = var_from_tensor(&g, of[j], true);
                ConvBnActBranch br[3];
                for (int i = 0; i < 3; i++)
                    br[i] = (ConvBnActBranch){vs[1 + 3 * i], vs[2 + 3 * i], vs[3 + 3 * i], &rm[shared][i], &rv[shared][i],
                                              acts[i]};
                if (shared)
                    ck_assert_msg(ag_conv_bn_act_train_shared(&g, vs[0], 3, br, p, 0.1f, 1e-5f, out), "%s", g.err.msg);
                else
                    for (int i = 0; i < 3; i++)
                        ck_assert_ptr_nonnull(out[i] = ag_conv_bn_act_train(&g, vs[0], br[i].w, br[i].gamma, br[i].beta,
                                                                            br[i].running_mean, br[i].running_var, p,
                                                                            0.1f, 1e-5f, acts[i]));
                for (int i = 0; i < 3; i++) {
                    outs[shared][i] = malloc(tensor_bytes(&out[i]->value));
                    memcpy(outs[shared][i], out[i]->value.data, tensor_bytes(&out[i]->value));
                }
                backward_through_branches(&g, out, unreached);
                for (int j = 0; j < 10; j++) {
                    grads[shared][j] = calloc(1, tensor_bytes(of[j]));
                    if (vs[j]->grad.data) memcpy(grads[shared][j], vs[j]->grad.data, tensor_bytes(of[j]));
                }
                graph_destroy(&g);
            }
            for (int i = 0; i < 3; i++) {
                int64_t no = (int64_t)3 * sc->couts[i] * ((sc->H - 1) / sc->stride + 1) * ((sc->W - 1) / sc->stride + 1);
                ck_assert_msg(tensor_diff(outs[1][i], outs[0][i], no, 1e-6).max_abs <= 2e-5, "%s: output %d", sc->what, i);
                ck_assert(tensor_diff(rm[1][i].data, rm[0][i].data, sc->couts[i], 1e-6).max_abs <= 1e-5);
                ck_assert(tensor_diff(rv[1][i].data, rv[0][i].data, sc->couts[i], 1e-6).max_abs <= 1e-5);
                free(outs[0][i]), free(outs[1][i]);
            }
            for (int j = 0; j < 10; j++) {
                TensorDiff d = tensor_diff(grads[1][j], grads[0][j], tensor_numel(of[j]), 1e-6);
                ck_assert_msg(d.max_rel_to_max <= tol, "%s, unreached branch %d, gradient %d: %.3g of the largest",
                              sc->what, unreached, j, d.max_rel_to_max);
                free(grads[0][j]), free(grads[1][j]);
            }
            tensor_free(&x);
            for (int i = 0; i < 3; i++) {
                tensor_free(&w[i]), tensor_free(&gm[i]), tensor_free(&bt[i]);
                for (int f = 0; f < 2; f++) tensor_free(&rm[f][i]), tensor_free(&rv[f][i]);
            }
        }
    context_destroy(ctx);
}
END_TEST

/* Direct sum of one output of a depthwise 3x3 padding-1 plane, in double. */
static double depthwise_direct(const float *x, int H, int W, const float *w, float bias, int stride, int oh, int ow)
{
    double v = bias;
    for (int ki = 0; ki < 3; ki++)
        for (int kj = 0; kj < 3; kj++) {
            int ih = stride * oh - 1 + ki, iw = stride * ow - 1 + kj;
            if (ih >= 0 && ih < H && iw >= 0 && iw < W) v += (double)w[ki * 3 + kj] * x[(size_t)ih * W + iw];
        }
    return v;
}

START_TEST(depthwise_plane_kernels_match_direct_sum_and_each_other)
{
    /* Every plane kernel this CPU runs, called directly on planes narrower and wider than a register, odd
     * and even, with row ranges that start and end inside the plane: each against the direct sum, and the
     * AVX-512 twin equal to the AVX2 kernel to the bit (they sum each output's taps in the same order). */
    if (!conv2d_avx2_available()) {
        printf("SKIP depthwise plane kernels: this CPU lacks AVX2/FMA\n");
        return;
    }
    bool avx512 = conv2d_avx512_available();
    if (!avx512) printf("SKIP AVX-512 depthwise plane kernel: this CPU lacks AVX-512F (the AVX2 one is checked)\n");
    static const int sizes[][2] = {{1, 1}, {2, 3}, {3, 17}, {5, 16}, {7, 33}, {9, 40}, {6, 47}, {11, 65}, {4, 100}};
    static const float acts[3] = {-1.0f, 0.0f, 0.1f};
    Rng r;
    rng_seed(&r, 960, 0);
    int checked = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int stride = 1; stride <= 2; stride++) {
            int H = sizes[k][0], W = sizes[k][1], Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
            float *x = malloc(sizeof(float) * H * W), w[9], bias = (float)rng_normal(&r);
            for (int i = 0; i < H * W; i++) x[i] = (float)rng_normal(&r);
            for (int i = 0; i < 9; i++) w[i] = (float)rng_normal(&r);
            float *y2 = malloc(sizeof(float) * Ho * Wo), *y5 = malloc(sizeof(float) * Ho * Wo);
            for (int a = 0; a < 3; a++) {
                int oh0 = Ho > 2 ? 1 : 0, oh1 = Ho > 3 ? Ho - 1 : Ho; /* a range inside, then the whole plane */
                for (int whole = 0; whole < 2; whole++, oh0 = 0, oh1 = Ho) {
                    for (int i = 0; i < Ho * Wo; i++) y2[i] = y5[i] = -7.0f; /* rows outside the range stay */
                    depthwise3x3_plane_avx2(x, H, W, w, bias, acts[a], y2 + oh0 * Wo, stride, Wo, oh0, oh1);
                    if (avx512) depthwise3x3_plane_avx512(x, H, W, w, bias, acts[a], y5 + oh0 * Wo, stride, Wo, oh0, oh1);
                    for (int oh = 0; oh < Ho; oh++)
                        for (int ow = 0; ow < Wo; ow++) {
                            int i = oh * Wo + ow;
                            double want = -7.0;
                            if (oh >= oh0 && oh < oh1) {
                                want = depthwise_direct(x, H, W, w, bias, stride, oh, ow);
                                if (acts[a] >= 0.0f && want < 0) want *= acts[a];
                            }
                            ck_assert_msg(fabs(y2[i] - want) <= 1e-5 * (1 + fabs(want)),
                                          "avx2 %dx%d stride %d act %g (%d, %d): %g, direct sum %g", H, W, stride,
                                          acts[a], oh, ow, y2[i], want);
                            if (avx512)
                                ck_assert_msg(memcmp(&y5[i], &y2[i], sizeof(float)) == 0,
                                              "avx512 %dx%d stride %d act %g (%d, %d): %.9g, avx2 %.9g", H, W, stride,
                                              acts[a], oh, ow, y5[i], y2[i]);
                            checked++;
                        }
                }
            }
            free(x), free(y2), free(y5);
        }
    ck_assert_int_gt(checked, 0);
}
END_TEST

Suite *ops_grad_suite(void)
{
    Suite *s = suite_create("ops_grad");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, conv2d_gradients);
    tcase_add_test(tc, conv2d_rejects_mismatched_shapes);
    tcase_add_test(tc, conv2d_act_equals_conv_then_activation);
    tcase_add_test(tc, fast_conv_paths_match_direct_sum);
    tcase_add_test(tc, depthwise_plane_kernels_match_direct_sum_and_each_other);
    tcase_add_test(tc, conv2d_shared_input_gradients);
    tcase_add_test(tc, conv2d_shared_input_matches_separate_convs);
    tcase_add_test(tc, conv2d_shared_input_backward_matches_separate_convs);
    tcase_add_test(tc, conv2d_separable_gradients);
    tcase_add_test(tc, conv2d_separable_matches_two_convs);
    tcase_add_test(tc, conv2d_separable_rejects_mismatched_shapes);
    tcase_add_test(tc, batchnorm2d_gradients);
    tcase_add_test(tc, batchnorm2d_running_statistics);
    tcase_add_test(tc, conv_bn_act_gradients);
    tcase_add_test(tc, bn_normalize_streams_large_outputs_exactly);
    tcase_add_test(tc, bn_backward_dz_streams_large_buffers_exactly);
    tcase_add_test(tc, depthwise_gradients_wide_rows_and_accumulation);
    tcase_add_test(tc, winograd_input_gradient_writes_and_accumulates);
    tcase_add_test(tc, winograd_f6_gradients);
    tcase_add_test(tc, large_weight_gradients_take_the_blocked_gemm);
    tcase_add_test(tc, conv_bn_act_equals_conv_bn_then_activation);
    tcase_add_test(tc, conv_bn_act_residual_gradients_and_values);
    tcase_add_test(tc, conv_bn_act_shared_input_matches_separate_layers);
    tcase_add_test(tc, conv_bn_act_chain_hands_bn_sums_to_the_layer_before);
    tcase_add_test(tc, activation_and_elementwise_gradients);
    tcase_add_test(tc, concat_gradients);
    tcase_add_test(tc, upsample_nearest_gradients_and_indices);
    tcase_add_test(tc, add_upsampled_gradients_and_values);
    tcase_add_test(tc, permute_reshape_gradients);
    tcase_add_test(tc, softmax_and_loss_gradients);
    tcase_add_test(tc, loss_values);
    tcase_add_test(tc, pool_and_linear_gradients);
    tcase_add_test(tc, max_pool_3x3s2_matches_direct_scan_with_ties);
    suite_add_tcase(s, tc);
    return s;
}
