/* CPU/GPU parity of every op (forward and backward) and of a full RetinaFace training step.
 * Registered only when a CUDA device is present; otherwise the suite reports itself skipped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "detection/detector.h"
#include "detection/multibox_loss.h"
#include "nn/sgd.h"
#include "tensor/device.h"
#include "tensor/rng.h"
#include "tests/reference_targets.h"
#include "tests/suites.h"
#ifdef HAVE_CUDA
#include "cuda_kernels/cuda_ops.h"
#endif

#ifdef HAVE_CUDA
typedef Var *(*OpFn)(Graph *g, Var **in, void *arg);

typedef struct {
    float *y;         /* forward output */
    float *grads[6];  /* input gradients */
    int64_t ny;
} Run;

static void copy_to_host(float *dst, const Tensor *t)
{
    Error err = {0};
    ck_assert_int_eq(device_memcpy(dst, DEVICE_CPU, t->data, t->device, tensor_bytes(t), &err), ERR_OK);
}

/* Runs fn on dev with copies of the inputs; backward seeded with r (same for both devices). */
static Run run_on(Context *ctx, Device dev, OpFn fn, void *arg, Tensor *inputs, int n, const float *r_seed, uint64_t seed)
{
    Run run = {0};
    Graph g;
    ck_assert_int_eq(graph_init(&g, ctx, dev, NULL), ERR_OK);
    Var *vars[6];
    Tensor dev_in[6];
    for (int k = 0; k < n; k++) {
        ck_assert_int_eq(tensor_new(&dev_in[k], dev, inputs[k].ndim, inputs[k].shape, NULL), ERR_OK);
        ck_assert_int_eq(tensor_copy(&dev_in[k], &inputs[k], NULL), ERR_OK);
        vars[k] = var_from_tensor(&g, &dev_in[k], true);
    }
    Var *y = fn(&g, vars, arg);
    ck_assert_msg(y != NULL, "forward on %s: %s", dev == DEVICE_CUDA ? "GPU" : "CPU", g.err.msg);
    run.ny = tensor_numel(&y->value);
    run.y = malloc(sizeof(float) * (size_t)run.ny);
    copy_to_host(run.y, &y->value);
    float *r = malloc(sizeof(float) * (size_t)run.ny);
    Rng rng;
    rng_seed(&rng, seed, 1);
    for (int64_t i = 0; i < run.ny; i++) r[i] = r_seed ? r_seed[i] : rng_uniform(&rng) * 2 - 1;
    ck_assert_msg(graph_backward_with_grad(&g, y, r) == ERR_OK, "backward: %s", g.err.msg);
    for (int k = 0; k < n; k++) {
        run.grads[k] = calloc((size_t)tensor_numel(&inputs[k]), sizeof(float));
        if (vars[k]->grad.data) {
            Tensor gt = vars[k]->grad;
            copy_to_host(run.grads[k], &gt);
        }
    }
    free(r);
    graph_destroy(&g);
    for (int k = 0; k < n; k++) tensor_free(&dev_in[k]);
    return run;
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    TensorDiff d = tensor_diff(a, b, n, 1e-6);
    return d.max_rel_to_max;
}

static void parity(const char *what, OpFn fn, void *arg, Tensor *inputs, int n)
{
    Context *ctx = context_create(2);
    Error err = {0};
    ck_assert_msg(cuda_context_init(ctx, false, &err) == ERR_OK, "%s", err.msg);
    Run c = run_on(ctx, DEVICE_CPU, fn, arg, inputs, n, NULL, 5);
    Run gpu = run_on(ctx, DEVICE_CUDA, fn, arg, inputs, n, NULL, 5);
    double e = rel_err(gpu.y, c.y, c.ny);
    printf("  gpu parity %-28s forward %.2e", what, e);
    ck_assert_msg(e <= 1e-4, "%s forward: %.3e", what, e);
    for (int k = 0; k < n; k++) {
        double ge = rel_err(gpu.grads[k], c.grads[k], tensor_numel(&inputs[k]));
        printf("  grad%d %.2e", k, ge);
        if (ge > 1e-4) {
            int64_t worst = 0;
            double wd = -1;
            for (int64_t i = 0; i < tensor_numel(&inputs[k]); i++)
                if (fabs(gpu.grads[k][i] - c.grads[k][i]) > wd) wd = fabs(gpu.grads[k][i] - c.grads[k][i]), worst = i;
            printf(" [worst at %lld: gpu %g cpu %g]", (long long)worst, gpu.grads[k][worst], c.grads[k][worst]);
        }
        ck_assert_msg(ge <= 1e-4, "%s grad %d: %.3e", what, k, ge);
        free(c.grads[k]), free(gpu.grads[k]);
    }
    printf("\n");
    free(c.y), free(gpu.y);
    cuda_context_destroy(ctx);
    context_destroy(ctx);
}

static void make_inputs(Tensor *t, int n, const int64_t shapes[][4], const int *ndims, uint64_t seed)
{
    Rng r;
    rng_seed(&r, seed, 2);
    for (int k = 0; k < n; k++) {
        ck_assert_int_eq(tensor_new(&t[k], DEVICE_CPU, ndims[k], shapes[k], NULL), ERR_OK);
        tensor_fill_normal(&t[k], &r, 0, 1);
    }
}

typedef struct {
    Conv2dParams p;
    bool bias;
} ConvArg;
static Var *conv_fn(Graph *g, Var **in, void *arg)
{
    ConvArg *a = arg;
    return ag_conv2d(g, in[0], in[1], a->bias ? in[2] : NULL, a->p);
}

START_TEST(gpu_conv2d_parity)
{
    struct {
        int N, C, H, W, Co, K, s, p, d, groups, bias;
    } cases[] = {{2, 3, 17, 19, 8, 3, 2, 1, 1, 1, 1}, {2, 8, 13, 11, 8, 3, 1, 1, 1, 8, 0}, {1, 16, 12, 12, 16, 3, 2, 1, 1, 16, 1},
                 {2, 6, 9, 10, 12, 1, 1, 0, 1, 1, 1}, {1, 4, 9, 9, 6, 3, 1, 2, 2, 2, 0}, {1, 3, 21, 20, 8, 7, 2, 3, 1, 1, 0},
                 {1, 8, 10, 10, 16, 1, 2, 0, 1, 1, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Tensor t[3];
        int64_t shapes[3][4] = {{cases[i].N, cases[i].C, cases[i].H, cases[i].W},
                                {cases[i].Co, cases[i].C / cases[i].groups, cases[i].K, cases[i].K},
                                {cases[i].Co, 0, 0, 0}};
        int nd[3] = {4, 4, 1};
        make_inputs(t, 2 + cases[i].bias, shapes, nd, 10 + i);
        ConvArg a = {conv2d_params(cases[i].s, cases[i].p, cases[i].d, cases[i].groups), cases[i].bias};
        char what[64];
        snprintf(what, sizeof what, "conv2d case %zu", i);
        parity(what, conv_fn, &a, t, 2 + cases[i].bias);
        for (int k = 0; k < 2 + cases[i].bias; k++) tensor_free(&t[k]);
    }
}
END_TEST

typedef struct {
    bool training;
} BnArg;
static Var *bn_fn(Graph *g, Var **in, void *arg)
{
    BnArg *a = arg;
    int64_t C = in[0]->value.shape[1];
    Tensor *rm = graph_host_scratch(g, sizeof(Tensor)), *rv = graph_host_scratch(g, sizeof(Tensor));
    /* fresh running statistics on the graph's device: 0 and 1 */
    *rm = tensor_wrap(graph_scratch(g, (size_t)C * 4), in[0]->value.device, 1, &C);
    *rv = tensor_wrap(graph_scratch(g, (size_t)C * 4), in[0]->value.device, 1, &C);
    float *ones = malloc((size_t)C * 4), *zeros = calloc((size_t)C, 4);
    for (int64_t c = 0; c < C; c++) ones[c] = 1.5f;
    device_memcpy(rm->data, rm->device, zeros, DEVICE_CPU, (size_t)C * 4, NULL);
    device_memcpy(rv->data, rv->device, ones, DEVICE_CPU, (size_t)C * 4, NULL);
    free(ones), free(zeros);
    return ag_batchnorm2d(g, in[0], in[1], in[2], rm, rv, a->training, 0.1f, 1e-5f);
}

static Var *act_fn(Graph *g, Var **in, void *arg)
{
    Var *a = ag_leaky_relu(g, in[0], 0.1f);
    Var *b = ag_relu(g, in[1]);
    Var *s = ag_add(g, ag_scale(g, a, 0.5f), b);
    Var *parts[3] = {s, in[0], a};
    return ag_concat(g, parts, 3, 1);
}

static Var *shape_fn(Graph *g, Var **in, void *arg)
{
    Var *u = ag_upsample_nearest(g, in[0], 9, 13);
    int perm[4] = {0, 2, 3, 1};
    Var *p = ag_permute(g, u, perm);
    int64_t shape[3] = {2, -1, 3};
    Var *r = ag_reshape(g, p, 3, shape);
    return ag_softmax(g, r);
}

static Var *pool_fn(Graph *g, Var **in, void *arg)
{
    Var *m = ag_max_pool2d(g, in[0], 3, 2, 1);
    Var *gp = ag_global_avg_pool(g, m);
    int64_t shape[2] = {2, 6};
    return ag_linear(g, ag_reshape(g, gp, 2, shape), in[1], in[2]);
}

START_TEST(gpu_other_ops_parity)
{
    Tensor t[3];
    int64_t bn_shapes[3][4] = {{4, 6, 9, 7}, {6}, {6}};
    int bn_nd[3] = {4, 1, 1};
    make_inputs(t, 3, bn_shapes, bn_nd, 20);
    BnArg train = {true}, eval = {false};
    parity("batchnorm2d train", bn_fn, &train, t, 3);
    parity("batchnorm2d eval", bn_fn, &eval, t, 3);
    for (int k = 0; k < 3; k++) tensor_free(&t[k]);

    int64_t act_shapes[2][4] = {{2, 3, 5, 7}, {2, 3, 5, 7}};
    int act_nd[2] = {4, 4};
    make_inputs(t, 2, act_shapes, act_nd, 21);
    parity("activations/add/scale/concat", act_fn, NULL, t, 2);
    for (int k = 0; k < 2; k++) tensor_free(&t[k]);

    int64_t sh[1][4] = {{2, 3, 4, 6}};
    int sh_nd[1] = {4};
    make_inputs(t, 1, sh, sh_nd, 22);
    parity("upsample/permute/softmax", shape_fn, NULL, t, 1);
    tensor_free(&t[0]);

    int64_t pl[3][4] = {{2, 6, 11, 9}, {5, 6}, {5}};
    int pl_nd[3] = {4, 2, 1};
    make_inputs(t, 3, pl, pl_nd, 23);
    parity("maxpool/avgpool/linear", pool_fn, NULL, t, 3);
    for (int k = 0; k < 3; k++) tensor_free(&t[k]);
}
END_TEST

typedef struct {
    int32_t labels[64];
    uint8_t select[64];
    float target[256];
} LossArg;
static Var *loss_fn(Graph *g, Var **in, void *arg)
{
    LossArg *a = arg;
    Var *ce = ag_cross_entropy(g, in[0], a->labels, a->select);
    Var *l1 = ag_smooth_l1(g, in[1], a->target, a->select);
    return ag_add(g, ce, ag_scale(g, l1, 2.0f));
}

START_TEST(gpu_losses_parity)
{
    Tensor t[2];
    int64_t shapes[2][4] = {{2, 32, 2}, {2, 32, 4}};
    int nd[2] = {3, 3};
    make_inputs(t, 2, shapes, nd, 30);
    LossArg a;
    Rng r;
    rng_seed(&r, 31, 0);
    for (int i = 0; i < 64; i++) a.labels[i] = (int32_t)rng_below(&r, 2), a.select[i] = (uint8_t)(i % 3 != 0);
    for (int i = 0; i < 256; i++) a.target[i] = rng_normal(&r) * 2;
    parity("cross_entropy + smooth_l1", loss_fn, &a, t, 2);
    tensor_free(&t[0]), tensor_free(&t[1]);
}
END_TEST

/* The fused all-parameter SGD kernel against the CPU update, over three steps. */
START_TEST(gpu_sgd_parity)
{
    Error err = {0};
    Context *ctx = context_create(1);
    ck_assert_msg(cuda_context_init(ctx, false, &err) == ERR_OK, "%s", err.msg);
    ParamStore ps[2];
    Sgd sgd[2];
    int64_t s1[2] = {7, 13}, s2[1] = {5};
    Rng r;
    for (int d = 0; d < 2; d++) {
        params_init(&ps[d], DEVICE_CPU);
        Var *a = params_add(&ps[d], "a", "", 2, s1, &err), *b = params_add(&ps[d], "b", "", 1, s2, &err);
        ck_assert_ptr_nonnull(params_add_buffer(&ps[d], "stats", "", 1, s2, &err));
        rng_seed(&r, 4, 4);
        Var *vs[2] = {a, b};
        for (int k = 0; k < 2; k++) tensor_fill_normal(&vs[k]->value, &r, 0, 1), tensor_fill_normal(&vs[k]->grad, &r, 0, 1);
        if (d) ck_assert_int_eq(params_to_device(&ps[d], DEVICE_CUDA, &err), ERR_OK);
        ck_assert_int_eq(sgd_init(&sgd[d], &ps[d], 0.9f, 5e-4f, &err), ERR_OK);
        for (int step = 0; step < 3; step++) ck_assert_int_eq(sgd_step(&sgd[d], &ps[d], 0.01f, ctx, &err), ERR_OK);
    }
    for (int i = 0; i < 2; i++) {
        Tensor *c = &ps[0].entries[i].param->value, *g = &ps[1].entries[i].param->value;
        float *host = malloc(tensor_bytes(g));
        copy_to_host(host, g);
        double e = rel_err(host, c->data, tensor_numel(c));
        printf("  gpu parity sgd (3 steps) %s %.2e\n", ps[0].entries[i].name, e);
        ck_assert_double_le(e, 1e-6);
        free(host);
    }
    for (int d = 0; d < 2; d++) sgd_free(&sgd[d]), params_free(&ps[d]);
    cuda_context_destroy(ctx);
    context_destroy(ctx);
}
END_TEST

/* A full training step of the imported MobileNet-0.25 on the reference batch: CPU vs GPU. */
START_TEST(gpu_training_step_parity)
{
    char wb[512], ib[512];
    const char *weights = shared_path("weights/mobilenet0.25_Final.pth", wb, sizeof wb);
    const char *input = shared_path("reference/retinaface_mnet025/train_input.f32", ib, sizeof ib);
    if (!weights || !input) {
        printf("SKIP gpu training step: ../shared absent\n");
        return;
    }
    Error err = {0};
    Context *ctx = context_create(2);
    ck_assert_msg(cuda_context_init(ctx, false, &err) == ERR_OK, "%s", err.msg);
    int64_t xs[4] = {2, 3, 640, 640};
    Tensor x;
    ck_assert_int_eq(tensor_load_raw(&x, input, 4, xs, &err), ERR_OK);
    char mb[512];
    const char *manifest = shared_path("reference/retinaface_mnet025/manifest.json", mb, sizeof mb);
    ck_assert_ptr_nonnull(manifest);
    static ReferenceTargets ref_t;
    reference_targets_read(manifest, &ref_t);
    const ImageTargets *t = ref_t.targets;
    float loss[2][3];
    float *grads[2][400];
    int64_t sizes[400];
    char names[400][128];
    int n_params = 0;
    for (int d = 0; d < 2; d++) {
        Device dev = d ? DEVICE_CUDA : DEVICE_CPU;
        RetinaFace *m = retinaface_create(retinaface_config("mobilenet0.25"), DEVICE_CPU, 1, &err);
        ck_assert_int_eq(retinaface_load(m, weights, &err), ERR_OK);
        ck_assert_msg(params_to_device(&m->params, dev, &err) == ERR_OK, "%s", err.msg);
        Graph g;
        ck_assert_int_eq(graph_init(&g, ctx, dev, &err), ERR_OK);
        Var *xv = var_new(&g, 4, xs);
        ck_assert_int_eq(tensor_copy(&xv->value, &x, &err), ERR_OK);
        RetinaOutputs out;
        ck_assert_msg(retinaface_forward(&g, m, xv, true, &out), "%s", g.err.msg);
        int64_t P;
        float *priors = priors_for(&m->cfg.anchors, 640, 640, &P, NULL);
        MultiBoxOptions opt = multibox_defaults();
        MultiBoxLosses L;
        ck_assert_msg(multibox_loss(&g, out.loc, out.conf, out.landms, priors, t, &opt, &L), "%s", g.err.msg);
        ck_assert_msg(graph_backward(&g, L.total) == ERR_OK, "%s", g.err.msg);
        Var *ls[3] = {L.loss_l, L.loss_c, L.loss_landm};
        for (int k = 0; k < 3; k++) copy_to_host(&loss[d][k], &ls[k]->value);
        n_params = 0;
        for (int i = 0; i < m->params.n; i++) {
            if (m->params.entries[i].kind != ENTRY_PARAM) continue;
            Var *p = m->params.entries[i].param;
            grads[d][n_params] = malloc(tensor_bytes(&p->grad));
            copy_to_host(grads[d][n_params], &p->grad);
            sizes[n_params] = tensor_numel(&p->grad);
            snprintf(names[n_params], sizeof names[0], "%s", m->params.entries[i].name);
            n_params++;
        }
        free(priors);
        graph_destroy(&g);
        retinaface_free(m);
    }
    for (int k = 0; k < 3; k++) {
        double rel = fabs(loss[1][k] - loss[0][k]) / fabs(loss[0][k]);
        printf("  gpu training step: loss %d cpu %.6f gpu %.6f rel %.2e\n", k, loss[0][k], loss[1][k], rel);
        ck_assert_double_le(rel, 1e-4);
    }
    /* Every gradient, GPU against CPU; and the seven PyTorch reference gradients against the GPU,
     * with the criterion the CPU meets (max|a-b| / max|b| <= 1e-3, tests/test_train.c). */
    double worst = 0, sum = 0;
    const char *worst_name = "";
    int above = 0;
    for (int i = n_params - 1; i >= 0; i--) {
        double ge = rel_err(grads[1][i], grads[0][i], sizes[i]);
        sum += ge;
        above += ge > 1e-3;
        if (ge > worst) worst = ge, worst_name = names[i];
    }
    printf("  gpu training step: %d parameter gradients GPU vs CPU: mean rel %.2e, worst %.2e (%s), %d above 1e-3\n",
           n_params, sum / n_params, worst, worst_name, above);
    ck_assert_double_le(worst, 2e-3);
    static const char *ref_names[7] = {"ClassHead.0.conv1x1.weight", "BboxHead.2.conv1x1.bias",
                                       "LandmarkHead.1.conv1x1.weight", "fpn.merge1.0.weight", "ssh1.conv3X3.1.weight",
                                       "body.stage1.0.0.weight", "body.stage3.1.3.weight"};
    for (int r = 0; r < 7; r++) {
        int i = 0;
        while (i < n_params && strcmp(names[i], ref_names[r])) i++;
        ck_assert_int_lt(i, n_params);
        char rel[256], buf[512];
        snprintf(rel, sizeof rel, "reference/retinaface_mnet025/train_grad__%s.f32", ref_names[r]);
        Tensor ref;
        int64_t n1 = sizes[i];
        ck_assert_int_eq(tensor_load_raw(&ref, shared_path(rel, buf, sizeof buf), 1, &n1, &err), ERR_OK);
        double e = rel_err(grads[1][i], ref.data, n1);
        printf("  gpu training step: %-32s vs PyTorch %.2e\n", ref_names[r], e);
        ck_assert_double_le(e, 1e-3);
        tensor_free(&ref);
    }
    for (int i = 0; i < n_params; i++) free(grads[0][i]), free(grads[1][i]);
    tensor_free(&x);
    cuda_context_destroy(ctx);
    context_destroy(ctx);
}
END_TEST
#endif

/* Counts devices in a child process: initialising CUDA in the parent would break the GPU in the
 * test processes Check forks from it. */
static int count_devices_in_child(void)
{
    pid_t pid = fork();
    if (pid == 0) _exit(device_cuda_count() > 0 ? 10 : 0);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 10;
}

Suite *cuda_suite(void)
{
    Suite *s = suite_create("gpu");
    int devices = count_devices_in_child();
    if (devices == 0) {
        printf("gpu suite: SKIPPED (no CUDA device%s)\n",
#ifdef HAVE_CUDA
               ""
#else
               "; built without CUDA"
#endif
        );
        return s;
    }
#ifdef HAVE_CUDA
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, gpu_conv2d_parity);
    tcase_add_test(tc, gpu_other_ops_parity);
    tcase_add_test(tc, gpu_losses_parity);
    tcase_add_test(tc, gpu_sgd_parity);
    tcase_add_test(tc, gpu_training_step_parity);
    suite_add_tcase(s, tc);
#endif
    return s;
}
