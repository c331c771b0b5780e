/* Cascade heads: the second stage is matched against the first stage's regressed boxes, its joint loss
 * with the first has the gradient central differences give, and detection reads the second stage. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detection/box_coding.h"
#include "detection/cascade.h"
#include "detection/detector.h"
#include "detection/image.h"
#include "detection/priors.h"
#include "tests/suites.h"

/* Two priors: A at (0.3, 0.3) and B at (0.7, 0.7), both 0.2 wide; one face exactly on B. Stage 1 moves A
 * onto the face and B away from it. The second stage must see A as the positive (its refined box is the
 * face: a zero regression target) and B as background, though B is the first stage's perfect anchor. */
START_TEST(second_stage_matches_the_regressed_boxes)
{
    Context *ctx = context_create(1);
    Graph g;
    ck_assert_int_eq(graph_init(&g, ctx, DEVICE_CPU, NULL), ERR_OK);
    float priors[8] = {0.3f, 0.3f, 0.2f, 0.2f, 0.7f, 0.7f, 0.2f, 0.2f};
    float face[4] = {0.6f, 0.6f, 0.8f, 0.8f}, lm[10];
    for (int k = 0; k < 5; k++) lm[2 * k] = 0.65f + 0.02f * k, lm[2 * k + 1] = 0.7f;
    int32_t label = 1;
    uint8_t has = 1;
    ImageTargets t = {1, face, lm, &label, &has};
    int64_t s4[3] = {1, 2, 4}, s2[3] = {1, 2, 2}, s10[3] = {1, 2, 10};
    RetinaOutputs out = {0};
    out.loc = var_new(&g, 3, s4), out.conf = var_new(&g, 3, s2), out.landms = var_new(&g, 3, s10);
    out.loc2 = var_new(&g, 3, s4), out.conf2 = var_new(&g, 3, s2), out.landms2 = var_new(&g, 3, s10);
    ck_assert(graph_ok(&g));
    float move[8] = {20, 20, 0, 0, -20, -20, 0, 0}; /* (0.7 - 0.3) / (0.1 * 0.2) = 20 */
    memcpy(out.loc->value.data, move, sizeof move);
    Var *zero[4] = {out.conf, out.landms, out.conf2, out.landms2};
    for (int k = 0; k < 4; k++) memset(zero[k]->value.data, 0, tensor_bytes(&zero[k]->value));
    memset(out.loc2->value.data, 0, tensor_bytes(&out.loc2->value));
    /* the refined priors are the decoded first-stage boxes */
    float *refined = cascade_priors(&g, out.loc, priors, (float[2]){0.1f, 0.2f});
    ck_assert_ptr_nonnull(refined);
    ck_assert_float_eq_tol(refined[0], 0.7f, 1e-6);
    ck_assert_float_eq_tol(refined[4], 0.3f, 1e-6);
    RetinaConfig cfg = *retinaface_config("mobilenet0.25_cascade");
    ck_assert_float_eq_tol(cfg.cascade_overlap, 0.7f, 1e-6);
    MultiBoxOptions opt = multibox_defaults();
    MultiBoxLosses first, second;
    ck_assert(multibox_loss(&g, out.loc, out.conf, out.landms, priors, &t, &opt, &first));
    ck_assert(cascade_loss(&g, &cfg, &out, priors, &t, &opt, &second));
    ck_assert_int_eq(first.num_pos, 1);
    ck_assert_int_eq(second.num_pos, 1);
    /* stage 1's positive is B, whose regression (-20) is far from its target (0) */
    ck_assert(first.loss_l->value.data[0] > 10);
    /* stage 2's positive is A, whose target against its refined box is 0, as loc2 says */
    ck_assert_float_eq_tol(second.loss_l->value.data[0], 0.0f, 1e-5);
    /* no face near a refined box at the config's IoU and no forced match: nothing is positive */
    cfg.cascade_overlap = 0.7f;
    float far[8] = {-20, -20, 0, 0, -20, -20, 0, 0}; /* both at (0.3, 0.3): IoU 0 with the face */
    memcpy(out.loc->value.data, far, sizeof far);
    ck_assert(cascade_loss(&g, &cfg, &out, priors, &t, &opt, &second));
    ck_assert_int_eq(second.num_pos, 0);
    graph_destroy(&g);
    context_destroy(ctx);
}
END_TEST

/* Both stages' losses of a cascade model on two 64x64 images with faces at the anchors' sizes. */
typedef struct {
    RetinaFace *m;
    Tensor x;
    float *priors;
    ImageTargets t[2];
    float *refined; /* NULL: cascade_loss (the training path); else the second stage's priors held fixed */
} CascadeCase;

static double joint_loss(Context *ctx, CascadeCase *c, bool backward, double *stage2)
{
    Graph g;
    ck_assert_int_eq(graph_init(&g, ctx, DEVICE_CPU, NULL), ERR_OK);
    RetinaOutputs out;
    MultiBoxLosses a, b;
    MultiBoxOptions opt = multibox_defaults();
    ck_assert_msg(retinaface_forward(&g, c->m, var_from_tensor(&g, &c->x, false), true, &out), "%s", g.err.msg);
    ck_assert(multibox_loss(&g, out.loc, out.conf, out.landms, c->priors, c->t, &opt, &a));
    if (!c->refined) {
        ck_assert_msg(cascade_loss(&g, &c->m->cfg, &out, c->priors, c->t, &opt, &b), "%s", g.err.msg);
        float *r = cascade_priors(&g, out.loc, c->priors, opt.variance);
        size_t bytes = tensor_bytes(&out.loc->value);
        c->refined = malloc(bytes);
        memcpy(c->refined, r, bytes);
    } else {
        MultiBoxOptions second = opt;
        second.overlap_threshold = c->m->cfg.cascade_overlap, second.per_image_priors = true;
        ck_assert(multibox_loss(&g, out.loc2, out.conf2, out.landms2, c->refined, c->t, &second, &b));
    }
    Var *total = ag_add(&g, a.total, b.total);
    double v = total->value.data[0];
    if (stage2) *stage2 = b.total->value.data[0];
    if (backward) ck_assert_int_eq(graph_backward(&g, total), ERR_OK);
    graph_destroy(&g);
    return v;
}

/* The joint loss's gradient against central differences, in the second stage's heads (which only its
 * loss reaches), the first stage's heads and the SSH and backbone weights both stages share. The second
 * stage's priors are constants of the step (no gradient flows through them into the first stage's box
 * head): the differences hold them at the unperturbed step's values. The hard negatives are chosen anew
 * at each evaluation, as in training: steps small enough not to flip them. */
START_TEST(joint_loss_gradient_matches_central_differences)
{
    Context *ctx = context_create(2);
    Error err = {0};
    CascadeCase c = {0};
    c.m = retinaface_create(retinaface_config("mobilenet0.25_cascade"), DEVICE_CPU, 5, &err);
    ck_assert_msg(c.m != NULL, "%s", err.msg);
    int64_t xs[4] = {2, 3, 64, 64}, P;
    ck_assert_int_eq(tensor_new(&c.x, DEVICE_CPU, 4, xs, &err), ERR_OK);
    Rng r;
    rng_seed(&r, 9, 1);
    tensor_fill_normal(&c.x, &r, 0, 40);
    c.priors = priors_for(&c.m->cfg.anchors, 64, 64, &P, &err);
    ck_assert_ptr_nonnull(c.priors);
    static const float boxes[2][8] = {{0.1f, 0.1f, 0.4f, 0.45f, 0.5f, 0.55f, 0.75f, 0.8f},
                                      {0.2f, 0.3f, 0.7f, 0.75f, 0.05f, 0.6f, 0.3f, 0.9f}};
    static float lms[2][20];
    static const int32_t labels[2] = {1, 1};
    static const uint8_t has[2] = {1, 0};
    for (int i = 0; i < 2; i++) {
        for (int f = 0; f < 2; f++)
            for (int k = 0; k < 5; k++) {
                const float *b = boxes[i] + 4 * f;
                lms[i][10 * f + 2 * k] = b[0] + (b[2] - b[0]) * (0.2f + 0.15f * k);
                lms[i][10 * f + 2 * k + 1] = b[1] + (b[3] - b[1]) * (k < 2 ? 0.35f : 0.7f);
            }
        c.t[i] = (ImageTargets){2, boxes[i], lms[i], labels, has};
    }
    double stage2 = 0, base = joint_loss(ctx, &c, true, &stage2); /* the training path: cascade_loss */
    ck_assert(stage2 > 0 && c.refined);
    ck_assert_float_eq_tol(joint_loss(ctx, &c, false, NULL), base, 1e-6 * base); /* the same loss, priors held */
    static const char *const names[] = {"ClassHead_cascade.0.conv1x1.weight", "BboxHead_cascade.1.conv1x1.bias",
                                        "LandmarkHead_cascade.0.conv1x1.weight", "BboxHead.0.conv1x1.weight",
                                        "ssh1.conv3X3.0.weight", "fpn.output1.0.weight"};
    const double eps = 2e-3;
    int checked = 0, worst_i = -1;
    double worst = 0;
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        ParamEntry *e = params_find(&c.m->params, names[n]);
        ck_assert_msg(e != NULL, "%s missing", names[n]);
        Tensor *w = &e->param->value;
        /* the analytic gradient, kept before the differences run their own graphs */
        int64_t numel = tensor_numel(w);
        for (int s = 0; s < 4; s++) {
            int64_t i = (int64_t)rng_below(&r, (uint32_t)numel);
            double analytic = e->param->grad.data[i];
            float keep = w->data[i];
            w->data[i] = keep + (float)eps;
            double up = joint_loss(ctx, &c, false, NULL);
            w->data[i] = keep - (float)eps;
            double down = joint_loss(ctx, &c, false, NULL);
            w->data[i] = keep;
            double numeric = (up - down) / (2 * eps), diff = fabs(numeric - analytic);
            double tol = 2e-3 + 3e-2 * fabs(numeric);
            ck_assert_msg(diff <= tol, "%s[%lld]: analytic %.6g, numeric %.6g", names[n], (long long)i, analytic, numeric);
            if (diff > worst) worst = diff, worst_i = (int)n;
            checked++;
        }
    }
    printf("  cascade joint loss: %d gradient elements in 6 tensors agree with central differences (worst |diff| "
           "%.2e in %s)\n", checked, worst, worst_i >= 0 ? names[worst_i] : "-");
    free(c.priors), free(c.refined);
    tensor_free(&c.x);
    retinaface_free(c.m);
    context_destroy(ctx);
}
END_TEST

/* Detection reads the second stage against the first: with the second stage's box heads zeroed, every
 * detection lies exactly on a box the first stage regressed (and not on an anchor, where a detector
 * reading the second stage against the anchors would put it). */
START_TEST(detection_decodes_the_second_stage_against_the_first)
{
    Context *ctx = context_create(2);
    Error err = {0};
    RetinaFace *m = retinaface_create(retinaface_config("mobilenet0.25_cascade"), DEVICE_CPU, 3, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    for (int l = 0; l < m->box2.n_levels; l++) {
        Tensor *wb[2] = {&m->box2.conv[l].weight->value, &m->box2.conv[l].bias->value};
        for (int k = 0; k < 2; k++) memset(wb[k]->data, 0, tensor_bytes(wb[k]));
    }
    enum { W = 48, H = 32 };
    Image img;
    ck_assert_int_eq(image_alloc(&img, W, H, &err), ERR_OK);
    Rng r;
    rng_seed(&r, 4, 4);
    for (int i = 0; i < W * H * 3; i++) img.bgr[i] = (uint8_t)rng_below(&r, 256);
    /* the first stage's boxes and the anchors, from the training graph in eval mode */
    Graph g;
    ck_assert_int_eq(graph_init(&g, ctx, DEVICE_CPU, NULL), ERR_OK);
    int64_t xs[4] = {1, 3, H, W}, P;
    Var *x = var_new(&g, 4, xs);
    static const float mean[3] = {104.0f, 117.0f, 123.0f};
    image_to_chw(&img, mean, x->value.data);
    RetinaOutputs out;
    ck_assert(retinaface_forward(&g, m, x, false, &out));
    ck_assert_ptr_nonnull(out.loc2);
    float *priors = priors_for(&m->cfg.anchors, H, W, &P, &err), *first = malloc(sizeof(float) * 4 * P);
    boxes_decode(out.loc->value.data, priors, P, m->cfg.variance, first);
    Detector det;
    ck_assert_msg(detector_init_from_params(&det, m, 2, false, &err) == ERR_OK, "%s", err.msg);
    PostprocessOptions opt = postprocess_defaults();
    opt.conf_threshold = 0, opt.nms_threshold = 1.0f; /* every prior's box comes out */
    Detection *d;
    int n;
    ck_assert_msg(detector_detect(&det, &img, 1.0f, &opt, &d, &n, NULL, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_gt(n, 10);
    int on_first = 0, on_anchor = 0;
    for (int k = 0; k < n; k++) {
        bool a = false, b = false;
        for (int64_t i = 0; i < P && !a; i++) {
            const float *f = first + 4 * i;
            a = fabsf(d[k].box[0] - f[0] * W) < 1e-2f && fabsf(d[k].box[1] - f[1] * H) < 1e-2f &&
                fabsf(d[k].box[2] - f[2] * W) < 1e-2f && fabsf(d[k].box[3] - f[3] * H) < 1e-2f;
        }
        for (int64_t i = 0; i < P && !b; i++) {
            const float *p = priors + 4 * i;
            b = fabsf(d[k].box[0] - (p[0] - p[2] / 2) * W) < 1e-2f && fabsf(d[k].box[2] - (p[0] + p[2] / 2) * W) < 1e-2f &&
                fabsf(d[k].box[1] - (p[1] - p[3] / 2) * H) < 1e-2f && fabsf(d[k].box[3] - (p[1] + p[3] / 2) * H) < 1e-2f;
        }
        on_first += a, on_anchor += b;
    }
    ck_assert_msg(on_first == n && on_anchor == 0, "%d detections: %d on the first stage's boxes, %d on anchors", n,
                  on_first, on_anchor);
    free(d), free(first), free(priors);
    image_free(&img);
    detector_free(&det);
    graph_destroy(&g);
    retinaface_free(m);
    context_destroy(ctx);
}
END_TEST

Suite *cascade_suite(void)
{
    Suite *s = suite_create("cascade");
    TCase *tc = tcase_create("cascade");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, second_stage_matches_the_regressed_boxes);
    tcase_add_test(tc, joint_loss_gradient_matches_central_differences);
    tcase_add_test(tc, detection_decodes_the_second_stage_against_the_first);
    suite_add_tcase(s, tc);
    return s;
}
