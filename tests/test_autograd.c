#include <math.h>
#include <string.h>

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
        if (step == 2) peak_after_warmup = g.arena.peak;
    }
    ck_assert_uint_eq(g.arena.peak, peak_after_warmup);
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

Suite *autograd_suite(void)
{
    Suite *s = suite_create("autograd");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, shared_subexpression_gets_both_contributions);
    tcase_add_test(tc, no_grad_records_nothing);
    tcase_add_test(tc, errors_are_sticky_and_named);
    tcase_add_test(tc, steps_free_their_graph);
    tcase_add_test(tc, gradcheck_detects_a_wrong_backward);
    suite_add_tcase(s, tc);
    return s;
}
