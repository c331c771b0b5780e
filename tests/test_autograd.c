#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/memory_plan.h"
#include "autograd/ops.h"
#include "tensor/rng.h"
#include "tests/gradcheck.h"
#include "tests/suites.h"

static Var *make_param(int ndim, const int64_t *shape, Rng *r)
{
    Var *p = var_param_new(DEVICE_CPU, ndim, shape, NULL);
    ck_assert_ptr_nonnull(p);
    tensor_fill_normal(&p->value, r, 0, 1);
    return p;
}

START_TEST(shared_subexpression_gets_both_contributions)
{
    Context *ctx = context_create(2);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    Rng r;
    rng_seed(&r, 5, 0);
    int64_t shape[1] = {10};
    Var *w = make_param(1, shape, &r);
    /* L = sum(w + 3w) = 4 sum(w): dL/dw = 4 everywhere; w is used twice. */
    Var *a = ag_scale(&g, w, 3.0f);
    Var *L = ag_sum(&g, ag_add(&g, w, a));
    ck_assert_int_eq(graph_backward(&g, L), ERR_OK);
    for (int i = 0; i < 10; i++) ck_assert_float_eq_tol(w->grad.data[i], 4.0f, 1e-6);
    /* A second step without zeroing accumulates; after zeroing it starts over. */
    graph_reset(&g);
    L = ag_sum(&g, ag_add(&g, w, ag_scale(&g, w, 3.0f)));
    graph_backward(&g, L);
    for (int i = 0; i < 10; i++) ck_assert_float_eq_tol(w->grad.data[i], 8.0f, 1e-6);
    var_zero_grad(w);
    graph_reset(&g);
    L = ag_sum(&g, ag_scale(&g, w, 2.0f));
    graph_backward(&g, L);
    for (int i = 0; i < 10; i++) ck_assert_float_eq_tol(w->grad.data[i], 2.0f, 1e-6);
    var_param_free(w);
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

START_TEST(no_grad_records_nothing)
{
    Context *ctx = context_create(1);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    Rng r;
    rng_seed(&r, 6, 0);
    int64_t shape[4] = {1, 2, 5, 5}, wshape[4] = {3, 2, 3, 3};
    Var *w = make_param(4, wshape, &r);
    Tensor xt;
    tensor_new(&xt, DEVICE_CPU, 4, shape, NULL);
    tensor_fill_normal(&xt, &r, 0, 1);
    graph_set_grad_enabled(&g, false);
    Var *y = ag_relu(&g, ag_conv2d(&g, var_from_tensor(&g, &xt, false), w, NULL, conv2d_params(1, 1, 1, 1)));
    ck_assert_ptr_nonnull(y);
    ck_assert(!y->requires_grad);
    ck_assert_uint_eq(g.n_tape, 0);
    /* Backward from a value that recorded nothing is an error, not a silent no-op. */
    ck_assert_int_ne(graph_backward(&g, ag_sum(&g, y)), ERR_OK);
    graph_set_grad_enabled(&g, true);
    graph_reset(&g);
    y = ag_relu(&g, ag_conv2d(&g, var_from_tensor(&g, &xt, false), w, NULL, conv2d_params(1, 1, 1, 1)));
    ck_assert_uint_eq(g.n_tape, 2);
    tensor_free(&xt);
    var_param_free(w);
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

START_TEST(errors_are_sticky_and_named)
{
    Context *ctx = context_create(1);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    int64_t s1[4] = {1, 3, 4, 4}, s2[4] = {1, 3, 5, 4};
    Var *a = var_new(&g, 4, s1), *b = var_new(&g, 4, s2);
    Var *c = ag_add(&g, a, b);
    ck_assert_ptr_null(c);
    ck_assert_ptr_null(ag_relu(&g, c));
    ck_assert_int_eq(g.err.code, ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(g.err.msg, "add"));
    ck_assert_ptr_nonnull(strstr(g.err.msg, "[1, 3, 5, 4]"));
    graph_reset(&g);
    ck_assert(graph_ok(&g));
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

START_TEST(backward_frees_what_it_no_longer_reads)
{
    /* y1 = relu(x w1) feeds a conv whose backward reads its input, and a sum whose backward reads
     * nothing: the backward frees y1 after the conv's backward, the sum's output at once, each gradient
     * with its node; what the caller may read afterwards stays: the loss, a kept value and its own input
     * (gradients of inputs that require one stay too: every gradcheck reads them). A second backward
     * in the step is refused. */
    Context *ctx = context_create(1);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    Rng r;
    rng_seed(&r, 8, 0);
    int64_t ws[4] = {3, 2, 3, 3}, w2s[4] = {2, 3, 1, 1}, xs[4] = {1, 2, 6, 5};
    Var *w1 = make_param(4, ws, &r), *w2 = make_param(4, w2s, &r);
    Var *x = var_new(&g, 4, xs);
    tensor_fill_normal(&x->value, &r, 0, 1);
    Var *y1 = ag_relu(&g, ag_conv2d(&g, x, w1, NULL, conv2d_params(1, 1, 1, 1)));
    Var *y2 = ag_conv2d(&g, y1, w2, NULL, conv2d_params(1, 0, 1, 1));
    Var *s1 = ag_sum(&g, y1), *s2 = ag_sum(&g, y2);
    graph_keep(s2);
    int64_t flat[1] = {-1};
    Var *y2_view = ag_reshape(&g, y2, 1, flat); /* keeping a view keeps the memory it lies in */
    graph_keep(y2_view);
    float s2_value = s2->value.data[0];
    Var *L = ag_add(&g, s1, s2);
    size_t live_before = g.heap.live;
    ck_assert_int_eq(graph_backward(&g, L), ERR_OK);
    ck_assert_uint_lt(g.heap.live, live_before);
    ck_assert(!y2->grad.data && !y1->grad.data); /* gradients die with their nodes */
    /* what is left: the root, the kept value and the caller's input (each rounded to 64 bytes) */
    ck_assert(step_heap_owns(&g.heap, L->value.data) && step_heap_owns(&g.heap, s2->value.data));
    ck_assert(step_heap_owns(&g.heap, x->value.data));
    ck_assert(step_heap_owns(&g.heap, y2->value.data)); /* y2, kept through its view */
    ck_assert_uint_eq(g.heap.live, 64 + 64 + 1 * 2 * 6 * 5 * 4 + 16 + 2 * 6 * 5 * 4 + 16);
    ck_assert_float_eq(s2->value.data[0], s2_value);
    GraphMemory m = graph_memory(&g);
    ck_assert_uint_gt(m.saved_peak, 0);
    ck_assert_uint_gt(m.backward_peak, 0);
    ck_assert_int_ne(graph_backward(&g, L), ERR_OK);
    ck_assert_ptr_nonnull(strstr(g.err.msg, "already run"));
    var_param_free(w1), var_param_free(w2);
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

START_TEST(done_with_frees_what_only_the_forward_read)
{
    /* y = relu(x w) feeds a sum (whose backward reads nothing) and a conv (whose backward reads y): after
     * graph_done_with, relu's output stays (the conv's backward and relu's own read it); the sum's input
     * of a second branch, z = 2 x, read by nothing's backward, goes at once; the gradients are unchanged. */
    Context *ctx = context_create(1);
    Rng r;
    rng_seed(&r, 9, 0);
    int64_t ws[4] = {3, 2, 3, 3}, w2s[4] = {1, 3, 3, 3}, xs[4] = {1, 2, 6, 5};
    Var *w = make_param(4, ws, &r), *w2 = make_param(4, w2s, &r);
    Tensor xt;
    tensor_new(&xt, DEVICE_CPU, 4, xs, NULL);
    tensor_fill_normal(&xt, &r, 0, 1);
    float grads[2][54];
    for (int pass = 0; pass < 2; pass++) {
        Graph g;
        graph_init(&g, ctx, DEVICE_CPU, NULL);
        var_zero_grad(w), var_zero_grad(w2);
        Var *x = var_from_tensor(&g, &xt, false);
        Var *y = ag_relu(&g, ag_conv2d(&g, x, w, NULL, conv2d_params(1, 1, 1, 1)));
        Var *z = ag_scale(&g, y, 2.0f);
        Var *s = ag_add(&g, ag_sum(&g, z), ag_sum(&g, ag_conv2d(&g, y, w2, NULL, conv2d_params(1, 1, 1, 1))));
        if (pass) {
            size_t live = g.heap.live;
            graph_done_with(&g, y);
            ck_assert_uint_eq(g.heap.live, live); /* read by backwards: kept */
            graph_done_with(&g, z);
            ck_assert_uint_lt(g.heap.live, live); /* read by none: freed */
            ck_assert(!step_heap_owns(&g.heap, z->value.data));
        }
        ck_assert_msg(graph_backward(&g, s) == ERR_OK, "%s", g.err.msg);
        memcpy(grads[pass], w->grad.data, sizeof grads[pass]);
        graph_destroy(&g);
    }
    for (int i = 0; i < 54; i++) ck_assert_float_eq(grads[0][i], grads[1][i]);
    tensor_free(&xt);
    var_param_free(w), var_param_free(w2);
    context_destroy(ctx);
}
END_TEST

START_TEST(done_with_releases_what_can_be_recomputed)
{
    /* conv -> BN -> ReLU keeps z, so its output y can be made again: after graph_done_with(y) (y read only
     * by the next conv, whose backward reads its input through graph_saved_value) y's memory is gone, and
     * every gradient is bitwise what it is when y is kept. */
    Context *ctx = context_create(2);
    Rng r;
    rng_seed(&r, 10, 0);
    int64_t ws[4] = {4, 3, 3, 3}, w2s[4] = {5, 4, 3, 3}, cs[1] = {4}, xs[4] = {2, 3, 9, 7};
    Var *w = make_param(4, ws, &r), *w2 = make_param(4, w2s, &r), *gm = make_param(1, cs, &r), *bt = make_param(1, cs, &r);
    Tensor xt, rm, rv;
    tensor_new(&xt, DEVICE_CPU, 4, xs, NULL), tensor_new(&rm, DEVICE_CPU, 1, cs, NULL), tensor_new(&rv, DEVICE_CPU, 1, cs, NULL);
    tensor_fill_normal(&xt, &r, 0, 1);
    float gw[2][108], gg[2][4], gw2[2][180];
    for (int pass = 0; pass < 2; pass++) {
        Graph g;
        graph_init(&g, ctx, DEVICE_CPU, NULL);
        var_zero_grad(w), var_zero_grad(w2), var_zero_grad(gm), var_zero_grad(bt);
        tensor_fill(&rm, 0.0f), tensor_fill(&rv, 1.0f);
        Var *x = var_from_tensor(&g, &xt, false);
        Var *y = ag_conv_bn_act_train(&g, x, w, gm, bt, &rm, &rv, conv2d_params(1, 1, 1, 1), 0.1f, 1e-5f, 0.0f);
        Var *z = ag_conv2d(&g, y, w2, NULL, conv2d_params(2, 1, 1, 1));
        ck_assert_ptr_nonnull(z);
        if (pass) {
            size_t live = g.heap.live;
            graph_done_with(&g, y);
            ck_assert(y->released && g.heap.live < live);
        }
        float *seed = malloc(tensor_bytes(&z->value));
        for (int64_t i = 0; i < tensor_numel(&z->value); i++) seed[i] = (float)(i % 5) - 2.0f;
        ck_assert_msg(graph_backward_with_grad(&g, z, seed) == ERR_OK, "%s", g.err.msg);
        memcpy(gw[pass], w->grad.data, sizeof gw[pass]);
        memcpy(gg[pass], gm->grad.data, sizeof gg[pass]);
        memcpy(gw2[pass], w2->grad.data, sizeof gw2[pass]); /* reads the recomputed y */
        free(seed);
        graph_destroy(&g);
    }
    ck_assert(!memcmp(gw[0], gw[1], sizeof gw[0]) && !memcmp(gg[0], gg[1], sizeof gg[0]));
    ck_assert(!memcmp(gw2[0], gw2[1], sizeof gw2[0]));
    tensor_free(&xt), tensor_free(&rm), tensor_free(&rv);
    var_param_free(w), var_param_free(w2), var_param_free(gm), var_param_free(bt);
    context_destroy(ctx);
}
END_TEST

START_TEST(steps_free_their_graph)
{
    /* Many train steps: the arena returns to one block and the tape is reused, so memory is flat
     * (ASan/valgrind runs of this test catch leaks in the per-step path). */
    Context *ctx = context_create(2);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    Rng r;
    rng_seed(&r, 7, 0);
    int64_t wshape[4] = {4, 3, 3, 3}, xshape[4] = {2, 3, 12, 12}, c1[1] = {4};
    Var *w = make_param(4, wshape, &r), *gamma = make_param(1, c1, &r), *beta = make_param(1, c1, &r);
    Tensor rm, rv, xt;
    tensor_new(&rm, DEVICE_CPU, 1, c1, NULL);
    tensor_new(&rv, DEVICE_CPU, 1, c1, NULL);
    tensor_fill(&rv, 1.0f);
    tensor_new(&xt, DEVICE_CPU, 4, xshape, NULL);
    tensor_fill_normal(&xt, &r, 0, 1);
    size_t peak_after_warmup = 0;
    for (int step = 0; step < 50; step++) {
        graph_reset(&g);
        Var *x = var_from_tensor(&g, &xt, false);
        Var *y = ag_conv2d(&g, x, w, NULL, conv2d_params(2, 1, 1, 1));
        y = ag_leaky_relu(&g, ag_batchnorm2d(&g, y, gamma, beta, &rm, &rv, true, 0.1f, 1e-5f), 0.1f);
        ck_assert_int_eq(graph_backward(&g, ag_sum(&g, y)), ERR_OK);
        if (step == 2) peak_after_warmup = g.heap.peak;
    }
    ck_assert_uint_eq(g.heap.peak, peak_after_warmup);
    tensor_free(&rm), tensor_free(&rv), tensor_free(&xt);
    var_param_free(w), var_param_free(gamma), var_param_free(beta);
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

/* A deliberately wrong op (y = x^2 with backward 1.9 x dy): the gradient checker must catch it,
 * otherwise the op tests could not fail. */
static void wrong_square_backward(Graph *g, Var *y)
{
    Var *x = y->inputs[0];
    float *dx = var_grad(g, x);
    for (int64_t i = 0; i < tensor_numel(&x->value); i++) dx[i] += 1.9f * x->value.data[i] * y->grad.data[i];
}

static Var *wrong_square(Graph *g, Var **in, void *arg)
{
    Var *y = graph_op_output(g, "wrong_square", in, 1, in[0]->value.ndim, in[0]->value.shape,
                             wrong_square_backward);
    if (!y) return NULL;
    for (int64_t i = 0; i < tensor_numel(&y->value); i++)
        y->value.data[i] = in[0]->value.data[i] * in[0]->value.data[i];
    return y;
}

START_TEST(gradcheck_detects_a_wrong_backward)
{
    Context *ctx = context_create(1);
    Rng r;
    rng_seed(&r, 8, 0);
    int64_t shape[2] = {3, 5};
    Tensor x;
    tensor_new(&x, DEVICE_CPU, 2, shape, NULL);
    tensor_fill_uniform(&x, &r, 0.5f, 1.5f);
    bool wrt[1] = {true};
    GradcheckResult res = gradcheck(ctx, wrong_square, NULL, &x, 1, wrt, gradcheck_defaults(), 1);
    ck_assert_int_gt(res.failed, 0);
    tensor_free(&x);
    context_destroy(ctx);
}
END_TEST

/* A small inference step with values of several lifetimes: `side` is an output no op reads, `y` the
 * last one; x is filled from a fixed pattern. Returns y (side through *side_out). */
static Var *planned_step(Graph *g, const Tensor *w, int hw, Var **side_out)
{
    int64_t xs[4] = {1, 4, hw, hw};
    Var *x = var_new(g, 4, xs);
    if (!x) return NULL;
    for (int64_t i = 0; i < tensor_numel(&x->value); i++) x->value.data[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
    Var *wv = var_from_tensor(g, w, false);
    Var *a = ag_leaky_relu(g, ag_conv2d(g, x, wv, NULL, conv2d_params(1, 1, 1, 1)), 0.1f);
    Var *b = ag_conv2d(g, a, wv, NULL, conv2d_params(1, 1, 1, 1));
    *side_out = ag_scale(g, a, 2.0f); /* read by no later op: an output */
    Var *c = ag_add(g, b, ag_leaky_relu(g, b, 0.0f));
    return ag_add(g, ag_conv2d(g, c, wv, NULL, conv2d_params(1, 1, 1, 1)), x);
}

START_TEST(memory_plan_reuses_memory_and_replays_exactly)
{
    Context *ctx = context_create(2);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    graph_set_grad_enabled(&g, false);
    int64_t ws[4] = {4, 4, 3, 3};
    Tensor w;
    tensor_new(&w, DEVICE_CPU, 4, ws, NULL);
    for (int i = 0; i < 144; i++) w.data[i] = (float)((i * 13) % 7) / 7.0f - 0.4f;
    enum { HW = 9, N = 4 * HW * HW };
    float plain[2][N], planned[2][N];
    Var *side, *y = planned_step(&g, &w, HW, &side); /* no plan: the reference values */
    ck_assert_ptr_nonnull(y);
    memcpy(plain[0], y->value.data, sizeof plain[0]), memcpy(plain[1], side->value.data, sizeof plain[1]);
    for (int step = 0; step < 3; step++) { /* record, then replay twice */
        graph_reset(&g);
        graph_plan_memory(&g, 7);
        y = planned_step(&g, &w, HW, &side);
        ck_assert_msg(y != NULL, "step %d: %s", step, g.err.msg);
        memcpy(planned[0], y->value.data, sizeof planned[0]), memcpy(planned[1], side->value.data, sizeof planned[1]);
        ck_assert(!memcmp(planned, plain, sizeof plain));
    }
    /* 9 values of N floats (64-byte aligned slots); at most 5 live at once (x, side, b, relu(b), c) */
    size_t slot = (N * sizeof(float) + 63) / 64 * 64;
    ck_assert_msg(g.plan->ready && g.plan->n == 9 && g.plan->total <= 5 * slot, "plan of %zu bytes for %zu values",
                  g.plan->total, g.plan->n);
    /* the same key with another allocation sequence is an error, not a corrupt step */
    graph_reset(&g);
    graph_plan_memory(&g, 7);
    ck_assert_ptr_null(planned_step(&g, &w, HW + 2, &side));
    ck_assert_ptr_nonnull(strstr(g.err.msg, "memory plan"));
    /* under its own key that step records a plan of its own */
    graph_reset(&g);
    graph_plan_memory(&g, 8);
    ck_assert_ptr_nonnull(planned_step(&g, &w, HW + 2, &side));
    tensor_free(&w);
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

/* A step with two concatenations: cat1 of three fresh values nothing else reads (the plan may place
 * them inside cat1), cat2 of `late`, which is read after it (it may not), and another value. */
typedef struct {
    Var *parts[3], *cat1, *late, *cat2, *out;
} ConcatStep;

static bool concat_step(Graph *g, ConcatStep *st)
{
    int64_t xs[4] = {1, 3, 5, 7};
    Var *x = var_new(g, 4, xs);
    if (!x) return false;
    for (int64_t i = 0; i < tensor_numel(&x->value); i++) x->value.data[i] = (float)((i * 29) % 13) / 6.0f - 1.0f;
    st->parts[0] = ag_scale(g, x, 2.0f), st->parts[1] = ag_leaky_relu(g, x, 0.1f), st->parts[2] = ag_scale(g, x, -1.0f);
    st->cat1 = ag_concat(g, st->parts, 3, 1);
    st->late = ag_scale(g, x, 3.0f);
    Var *pair[2] = {st->late, ag_scale(g, x, 4.0f)}, *twice[2] = {st->late, st->late};
    st->cat2 = ag_concat(g, pair, 2, 1);
    st->out = ag_add(g, ag_scale(g, st->cat2, 1.0f), ag_concat(g, twice, 2, 1));
    return st->out != NULL;
}

START_TEST(memory_plan_places_concatenated_parts_in_place)
{
    Context *ctx = context_create(2);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    graph_set_grad_enabled(&g, false);
    enum { N1 = 9 * 5 * 7, N2 = 6 * 5 * 7 };
    float plain1[N1], plain2[N2];
    ConcatStep st;
    ck_assert(concat_step(&g, &st));
    memcpy(plain1, st.cat1->value.data, sizeof plain1), memcpy(plain2, st.out->value.data, sizeof plain2);
    for (int step = 0; step < 3; step++) { /* record, then replay */
        graph_reset(&g);
        graph_plan_memory(&g, 11);
        ck_assert_msg(concat_step(&g, &st), "step %d: %s", step, g.err.msg);
        ck_assert(!memcmp(st.cat1->value.data, plain1, sizeof plain1));
        ck_assert(!memcmp(st.out->value.data, plain2, sizeof plain2));
        if (step == 0) continue;
        for (int i = 0; i < 3; i++)
            ck_assert_msg(st.parts[i]->value.data == st.cat1->value.data + i * 3 * 5 * 7, "part %d not in place", i);
        /* read after its concatenation: inside it, its memory would live only as long as cat2 */
        ck_assert_ptr_ne(st.late->value.data, st.cat2->value.data);
    }
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

Suite *autograd_suite(void)
{
    Suite *s = suite_create("autograd");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, shared_subexpression_gets_both_contributions);
    tcase_add_test(tc, no_grad_records_nothing);
    tcase_add_test(tc, errors_are_sticky_and_named);
    tcase_add_test(tc, steps_free_their_graph);
    tcase_add_test(tc, backward_frees_what_it_no_longer_reads);
    tcase_add_test(tc, done_with_frees_what_only_the_forward_read);
    tcase_add_test(tc, done_with_releases_what_can_be_recomputed);
    tcase_add_test(tc, memory_plan_reuses_memory_and_replays_exactly);
    tcase_add_test(tc, memory_plan_places_concatenated_parts_in_place);
    tcase_add_test(tc, gradcheck_detects_a_wrong_backward);
    suite_add_tcase(s, tc);
    return s;
}
