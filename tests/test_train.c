/* Training: matching and MultiBox loss parity with the reference step, gradients, BN statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detection/detector.h"
#include "detection/multibox_loss.h"
#include "tests/suites.h"

/* Reads manifest.json's train_targets.value: [[[15 numbers] per face] per image]. */
static int read_targets(const char *manifest, float rows[][8][15], int *counts, int max_images)
{
    FILE *f = fopen(manifest, "rb");
    ck_assert_ptr_nonnull(f);
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *p = strstr(text, "\"train_targets\"");
    ck_assert_ptr_nonnull(p);
    p = strstr(p, "\"value\"");
    p = strchr(p, '[');
    int depth = 0, image = -1, face = -1, k = 0;
    for (; *p; p++) {
        if (*p == '[') {
            depth++;
            if (depth == 2) image++, face = -1;
            if (depth == 3) face++, k = 0;
        } else if (*p == ']') {
            if (depth == 3) counts[image] = face + 1;
            if (--depth == 0) break;
        } else if (depth == 3 && (*p == '-' || (*p >= '0' && *p <= '9'))) {
            char *end;
            float v = strtof(p, &end);
            ck_assert_int_lt(image, max_images);
            rows[image][face][k++] = v;
            p = end - 1;
        }
    }
    return image + 1;
}

static void compare_grad(RetinaFace *m, const char *name, double *worst)
{
    char rel[512], buf[512];
    snprintf(rel, sizeof rel, "reference/retinaface_mnet025/train_grad__%s.f32", name);
    const char *path = shared_path(rel, buf, sizeof buf);
    ck_assert_ptr_nonnull(path);
    ParamEntry *e = params_find(&m->params, name);
    ck_assert_ptr_nonnull(e);
    Tensor ref;
    Error err = {0};
    ck_assert_int_eq(tensor_load_raw(&ref, path, e->param->grad.ndim, e->param->grad.shape, &err), ERR_OK);
    TensorDiff d = tensor_diff(e->param->grad.data, ref.data, tensor_numel(&ref), 1e-6);
    printf("  grad %-38s max abs %.3e  max|a-b|/max|b| %.3e\n", name, d.max_abs, d.max_rel_to_max);
    if (d.max_rel_to_max > *worst) *worst = d.max_rel_to_max;
    ck_assert_msg(d.max_rel_to_max <= 1e-3, "%s: %.3e", name, d.max_rel_to_max);
    tensor_free(&ref);
}

START_TEST(training_step_matches_reference)
{
    char wb[512], ib[512], mb[512];
    const char *weights = shared_path("weights/mobilenet0.25_Final.pth", wb, sizeof wb);
    const char *input = shared_path("reference/retinaface_mnet025/train_input.f32", ib, sizeof ib);
    const char *manifest = shared_path("reference/retinaface_mnet025/manifest.json", mb, sizeof mb);
    if (!weights || !input || !manifest) {
        printf("SKIP training parity: ../shared absent\n");
        return;
    }
    static float rows[4][8][15];
    int counts[4] = {0};
    int B = read_targets(manifest, rows, counts, 4);
    ck_assert_int_eq(B, 2);
    Error err = {0};
    RetinaFace *m = retinaface_create(retinaface_config("mobilenet0.25"), DEVICE_CPU, 1, &err);
    ck_assert_int_eq(retinaface_load(m, weights, &err), ERR_OK);
    Context *ctx = context_create(2);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    int64_t xs[4] = {2, 3, 640, 640};
    Tensor x;
    ck_assert_int_eq(tensor_load_raw(&x, input, 4, xs, &err), ERR_OK);
    RetinaOutputs out;
    ck_assert(retinaface_forward(&g, m, var_from_tensor(&g, &x, false), true, &out));
    PriorSpec spec;
    retinaface_prior_spec(&m->cfg, &spec);
    int64_t P = priors_count(&spec, 640, 640);
    float *priors = malloc(sizeof(float) * 4 * (size_t)P);
    priors_generate(&spec, 640, 640, priors);
    ImageTargets t[2];
    static float boxes[2][8][4], landms[2][8][10];
    static int32_t labels[2][8];
    static uint8_t has[2][8];
    for (int b = 0; b < B; b++) {
        for (int k = 0; k < counts[b]; k++) {
            memcpy(boxes[b][k], rows[b][k], 4 * sizeof(float));
            memcpy(landms[b][k], rows[b][k] + 4, 10 * sizeof(float));
            labels[b][k] = 1;
            has[b][k] = rows[b][k][14] > 0;
        }
        t[b] = (ImageTargets){counts[b], &boxes[b][0][0], &landms[b][0][0], labels[b], has[b]};
    }
    MultiBoxOptions opt = multibox_defaults();
    MultiBoxLosses L;
    ck_assert_msg(multibox_loss(&g, out.loc, out.conf, out.landms, priors, t, &opt, &L), "%s", g.err.msg);
    static const double ref[3] = {3.567366361618042, 7.204226493835449, 14.51461124420166};
    double ours[3] = {L.loss_l->value.data[0], L.loss_c->value.data[0], L.loss_landm->value.data[0]};
    const char *names[3] = {"loss_l", "loss_c", "loss_landm"};
    for (int i = 0; i < 3; i++) {
        double rel = fabs(ours[i] - ref[i]) / fabs(ref[i]);
        printf("  %-10s ours %.7f reference %.7f rel %.2e\n", names[i], ours[i], ref[i], rel);
        ck_assert_msg(rel <= 1e-4, "%s: rel %.3e", names[i], rel);
    }
    ck_assert_int_eq(graph_backward(&g, L.total), ERR_OK);
    double worst = 0;
    static const char *grads[7] = {"ClassHead.0.conv1x1.weight", "BboxHead.2.conv1x1.bias",
                                   "LandmarkHead.1.conv1x1.weight", "fpn.merge1.0.weight", "ssh1.conv3X3.1.weight",
                                   "body.stage1.0.0.weight", "body.stage3.1.3.weight"};
    for (int i = 0; i < 7; i++) compare_grad(m, grads[i], &worst);
    /* BN running statistics after the step. */
    static const char *stats[2] = {"body.stage1.0.1.running_mean", "body.stage1.0.1.running_var"};
    for (int i = 0; i < 2; i++) {
        char rel[256], buf[512];
        snprintf(rel, sizeof rel, "reference/retinaface_mnet025/train_after__%s.f32", stats[i]);
        Tensor r;
        int64_t c8[1] = {8};
        ck_assert_int_eq(tensor_load_raw(&r, shared_path(rel, buf, sizeof buf), 1, c8, &err), ERR_OK);
        Tensor *mine = param_entry_tensor(params_find(&m->params, stats[i]));
        TensorDiff d = tensor_diff(mine->data, r.data, 8, 1e-6);
        printf("  %-30s max abs %.3e  max rel %.3e\n", stats[i], d.max_abs, d.max_rel);
        ck_assert_msg(d.max_rel <= 1e-5, "%s: %.3e", stats[i], d.max_rel);
        tensor_free(&r);
    }
    free(priors);
    tensor_free(&x);
    graph_destroy(&g);
    context_destroy(ctx);
    retinaface_free(m);
}
END_TEST

START_TEST(matching_forces_best_prior_and_skips_missing_landmarks)
{
    /* Two priors side by side and one tiny face overlapping the first only a little: the face is
     * still matched to its best prior (forced), and without landmarks it gives no landmark target. */
    float priors[8] = {0.25f, 0.5f, 0.5f, 1.0f, 0.75f, 0.5f, 0.5f, 1.0f};
    float box[4] = {0.05f, 0.4f, 0.15f, 0.6f}, lm[10] = {0};
    int32_t label = 1;
    uint8_t has = 0;
    ImageTargets t = {1, box, lm, &label, &has};
    float loc_t[8], landm_t[20], v[2] = {0.1f, 0.2f};
    int32_t conf_t[2];
    uint8_t valid[2];
    /* IoU with prior 0 = 0.02/0.5 = 0.04 < 0.2: not forced, so nothing matches. */
    ck_assert_int_eq(match_priors(&t, priors, 2, 0.35f, v, loc_t, landm_t, conf_t, valid), 0);
    float big[4] = {0.0f, 0.0f, 0.4f, 0.9f}; /* IoU 0.36/0.54 = 0.67 with prior 0 */
    t.boxes = big;
    ck_assert_int_eq(match_priors(&t, priors, 2, 0.35f, v, loc_t, landm_t, conf_t, valid), 1);
    ck_assert_int_eq(conf_t[0], 1);
    ck_assert_int_eq(conf_t[1], 0);
    ck_assert_int_eq(valid[0], 0);
    /* encoded centre offset: ((0.2 - 0.25) / (0.1 * 0.5)) = -1 */
    ck_assert_float_eq_tol(loc_t[0], -1.0f, 1e-5);
}
END_TEST

Suite *train_suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("loss");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, matching_forces_best_prior_and_skips_missing_landmarks);
    tcase_add_test(tc, training_step_matches_reference);
    suite_add_tcase(s, tc);
    return s;
}
