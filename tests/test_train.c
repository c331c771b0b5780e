/* Training: matching and MultiBox loss parity with the reference step, gradients, BN statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "detection/augment.h"
#include "detection/class_eval.h"
#include "detection/detector.h"
#include "detection/photometric.h"
#include "detection/multibox_loss.h"
#include "detection/train_log.h"
#include "detection/trainer.h"
#include "tests/png_writer.h"
#include "tests/reference_targets.h"
#include "tests/suites.h"

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
    static ReferenceTargets ref_t;
    reference_targets_read(manifest, &ref_t);
    ck_assert_int_eq(ref_t.n_images, 2);
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
    int64_t P;
    float *priors = priors_for(&m->cfg.anchors, 640, 640, &P, NULL);
    const ImageTargets *t = ref_t.targets;
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

static float box_iou(const float *a, const float *b)
{
    float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    if (w <= 0 || h <= 0) return 0;
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h);
}

/* Zoom-out puts the whole image on a mean-colour canvas: every face it keeps lands on image content
 * (not on the padding, which is exactly zero after the mean is subtracted), boxes stay inside the
 * canvas, and the faces come out smaller on the whole than the reference crops make them. */
START_TEST(zoom_out_shrinks_faces_onto_the_image)
{
    char lb[512];
    const char *labels = shared_path("data/tiny/train/label.txt", lb, sizeof lb);
    if (!labels) return;
    TrainSet set;
    Error err = {0};
    ck_assert_int_eq(trainset_load(labels, NULL, &set, &err), ERR_OK);
    ck_assert_int_gt(set.n, 0);
    const int size = 160, max_faces = 256, draws = 24;
    float *chw = malloc(sizeof(float) * 3 * size * size), *targets = malloc(sizeof(float) * FACE_FIELDS * max_faces);
    double side_sum[2] = {0, 0};
    int count[2] = {0, 0}, padded_draws = 0;
    for (int zoom = 0; zoom < 2; zoom++) {
        AugmentOptions opt = augment_defaults(size);
        opt.zoom_out = zoom ? 4.0f : 1.0f;
        Rng rng;
        rng_seed(&rng, 11, 3);
        for (int d = 0; d < draws; d++) {
            int n = 0;
            ck_assert_int_eq(augment_sample(&set.samples[0], &opt, &rng, chw, targets, max_faces, &n, &err), ERR_OK);
            ck_assert_int_gt(n, 0);
            int zero_corners = 0;
            for (int k = 0; k < 4; k++) {
                int x = k & 1 ? size - 1 : 0, y = k & 2 ? size - 1 : 0;
                zero_corners += chw[y * size + x] == 0 && chw[size * size + y * size + x] == 0 && chw[2 * size * size + y * size + x] == 0;
            }
            padded_draws += zoom && zero_corners >= 2;
            for (int i = 0; i < n; i++) {
                const float *o = targets + FACE_FIELDS * i;
                ck_assert(o[0] >= -1e-5f && o[1] >= -1e-5f && o[2] <= 1 + 1e-5f && o[3] <= 1 + 1e-5f);
                ck_assert(o[0] < o[2] && o[1] < o[3]);
                int cx = (int)((o[0] + o[2]) / 2 * size), cy = (int)((o[1] + o[3]) / 2 * size);
                bool on_image = false;
                for (int c = 0; c < 3; c++) on_image |= chw[c * size * size + cy * size + cx] != 0;
                ck_assert_msg(on_image, "draw %d face %d: its centre (%d, %d) is on the padding", d, i, cx, cy);
                side_sum[zoom] += (o[2] - o[0]) * size;
                count[zoom]++;
            }
        }
    }
    double mean_crop = side_sum[0] / count[0], mean_zoom = side_sum[1] / count[1];
    printf("  zoom-out: mean face side %.1f px (crops) vs %.1f px (zoom-out 4), %d of %d draws show padding\n", mean_crop,
           mean_zoom, padded_draws, draws);
    ck_assert_int_ge(padded_draws, draws / 4);
    ck_assert(mean_zoom < 0.8 * mean_crop);
    free(chw), free(targets);
    trainset_free(&set);
}
END_TEST

/* PNG training images train like JPEGs: the same pixels give the same input and targets (at the image's
 * own size, where no JPEG DCT scaling applies), and a file in neither format is an error naming it. */
START_TEST(png_training_images_load_like_jpeg)
{
    char ib[512];
    const char *jpeg = shared_path("data/tiny/train/images/test.jpg", ib, sizeof ib);
    if (!jpeg) {
        printf("SKIP PNG training images: ../shared absent\n");
        return;
    }
    Error err = {0};
    Image img;
    ck_assert_int_eq(image_load_jpeg(jpeg, &img, &err), ERR_OK);
    char png[] = "/tmp/retina_train_pngXXXXXX.png";
    close(mkstemps(png, 4));
    write_png(png, &img);
    int size = img.width > img.height ? img.width : img.height;
    float face[FACE_FIELDS] = {100, 120, 180, 220, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    face[FACE_CLASS] = 1;
    TrainSample a = {(char *)jpeg, 1, face}, b = {png, 1, face};
    AugmentOptions opt = augment_defaults(size);
    opt.augment = false;
    size_t n = (size_t)3 * size * size;
    float *ca = malloc(sizeof(float) * n), *cb = malloc(sizeof(float) * n), ta[FACE_FIELDS], tb[FACE_FIELDS];
    int na = 0, nb = 0;
    Rng r1, r2;
    rng_seed(&r1, 1, 1), rng_seed(&r2, 1, 1);
    ck_assert_msg(augment_sample(&a, &opt, &r1, ca, ta, 1, &na, &err) == ERR_OK, "%s", err.msg);
    ck_assert_msg(augment_sample(&b, &opt, &r2, cb, tb, 1, &nb, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_eq(na, 1);
    ck_assert_int_eq(nb, 1);
    ck_assert(memcmp(ta, tb, sizeof ta) == 0);
    ck_assert_msg(memcmp(ca, cb, sizeof(float) * n) == 0, "the PNG's input differs from the JPEG's");
    /* augmented: the JPEG's crop decoded alone (image_load_jpeg_region) gives what the PNG's crop of the whole
     * image gives, draw after draw (crops, colours, flips and resizes; at this size no DCT scaling) */
    opt.augment = true;
    rng_seed(&r1, 5, 1), rng_seed(&r2, 5, 1);
    for (int k = 0; k < 24; k++) {
        ck_assert_msg(augment_sample(&a, &opt, &r1, ca, ta, 1, &na, &err) == ERR_OK, "%s", err.msg);
        ck_assert_msg(augment_sample(&b, &opt, &r2, cb, tb, 1, &nb, &err) == ERR_OK, "%s", err.msg);
        ck_assert_int_eq(na, nb);
        ck_assert(memcmp(ta, tb, sizeof(float) * FACE_FIELDS * na) == 0);
        ck_assert_msg(memcmp(ca, cb, sizeof(float) * n) == 0, "draw %d: the JPEG's augmented input differs from the PNG's", k);
    }
    /* neither JPEG, PNG nor WebP: refused with the file's name */
    FILE *f = fopen(png, "wb");
    fputs("GIF89a not an image we read", f);
    fclose(f);
    ck_assert_int_eq(augment_sample(&b, &opt, &r2, cb, tb, 1, &nb, &err), ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, png) != NULL, "%s", err.msg);
    remove(png);
    free(ca), free(cb);
    image_free(&img);
}
END_TEST

/* A region of a JPEG decoded alone is the same region of the whole decoding, at each DCT scale: random
 * regions of a 4:2:0 image (whose chroma is upsampled across the region's edges), edges and corners included. */
typedef struct {
    int x0, y0, w, h; /* asked, in thousandths of the scaled size; then what was picked */
    int W, H;         /* the scaled size the picker was given */
} RegionAsk;

static void pick_region(void *ctx, int W, int H, int *x0, int *y0, int *w, int *h)
{
    RegionAsk *r = ctx;
    *x0 = r->x0 * W / 1000, *y0 = r->y0 * H / 1000;
    *w = r->w * W / 1000, *h = r->h * H / 1000;
    if (*w < 1) *w = 1;
    if (*h < 1) *h = 1;
    if (*x0 + *w > W) *w = W - *x0;
    if (*y0 + *h > H) *h = H - *y0;
    r->x0 = *x0, r->y0 = *y0, r->w = *w, r->h = *h, r->W = W, r->H = H;
}

static void pick_past_edge(void *ctx, int W, int H, int *x0, int *y0, int *w, int *h)
{
    (void)ctx;
    *x0 = W - 10, *y0 = 0, *w = 20, *h = H;
}

START_TEST(jpeg_regions_decode_like_the_whole_image)
{
    char ib[512];
    const char *jpeg = shared_path("data/tiny/train/images/test.jpg", ib, sizeof ib);
    if (!jpeg) {
        printf("SKIP JPEG regions: ../shared absent\n");
        return;
    }
    Error err = {0};
    int W, H;
    ck_assert_int_eq(image_jpeg_size(jpeg, &W, &H, &err), ERR_OK);
    Rng rng;
    rng_seed(&rng, 3, 0);
    int differing = 0, regions = 0;
    for (int denom = 1; denom <= 4; denom *= 2) {
        Image whole, part;
        ck_assert_int_eq(image_load_jpeg_scaled(jpeg, W / denom, H / denom, &whole, &err), ERR_OK);
        for (int k = 0; k < 40; k++) {
            RegionAsk r = {(int)rng_below(&rng, 1000), (int)rng_below(&rng, 1000), 1 + (int)rng_below(&rng, 700),
                           1 + (int)rng_below(&rng, 700), 0, 0};
            if (k == 0) r = (RegionAsk){0, 0, 300, 1000, 0, 0};   /* the left edge, every row */
            if (k == 1) r = (RegionAsk){700, 600, 300, 400, 0, 0}; /* the bottom right corner */
            ImageRegion region = {pick_region, &r};
            ck_assert_msg(image_load_jpeg_region(jpeg, W / denom, H / denom, &region, &part, &err) == ERR_OK, "%s",
                          err.msg);
            ck_assert_int_eq(r.W, whole.width);
            ck_assert_int_eq(r.H, whole.height);
            ck_assert_int_eq(part.width, r.w);
            ck_assert_int_eq(part.height, r.h);
            bool same = true;
            for (int y = 0; y < r.h && same; y++)
                same = !memcmp(part.bgr + (size_t)y * r.w * 3, whole.bgr + ((size_t)(r.y0 + y) * whole.width + r.x0) * 3,
                               (size_t)r.w * 3);
            differing += !same, regions++;
            image_free(&part);
        }
        image_free(&whole);
    }
    ck_assert_msg(differing == 0, "%d of %d regions differ from the whole decoding", differing, regions);
    /* a region past the image's edge is an error naming the file, not a read past the rows */
    ImageRegion past = {pick_past_edge, NULL};
    Image part;
    ck_assert_int_eq(image_load_jpeg_region(jpeg, 0, 0, &past, &part, &err), ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, jpeg) && strstr(err.msg, "outside"), "%s", err.msg);
    ck_assert_ptr_null(part.bgr);
}
END_TEST

/* The augmentation's bilinear, nearest and area resizes against their definitions, written plainly here
 * (bilinear: reference_bilinear; the vector columns and the scalar ones at the right edge alike); nearest
 * takes source pixel (x * src_w / w, y * src_h / h); area averages the window [x * src_w / w, (x + 1) *
 * src_w / w) (at least one pixel) with rounding, each channel; random pixels and all-255 ones (the largest
 * sums), enlargements, shrinks by up to 16 (windows of up to 256 pixels) and beyond. */
static void reference_resize(const Image *src, int w, int h, bool area, uint8_t *out)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int x0 = (int)((int64_t)x * src->width / w), y0 = (int)((int64_t)y * src->height / h);
            int x1 = area ? (int)((int64_t)(x + 1) * src->width / w) : x0 + 1;
            int y1 = area ? (int)((int64_t)(y + 1) * src->height / h) : y0 + 1;
            if (x1 <= x0) x1 = x0 + 1;
            if (y1 <= y0) y1 = y0 + 1;
            for (int c = 0; c < 3; c++) {
                uint64_t sum = 0, n = (uint64_t)(x1 - x0) * (y1 - y0);
                for (int yy = y0; yy < y1; yy++)
                    for (int xx = x0; xx < x1; xx++) sum += src->bgr[((size_t)yy * src->width + xx) * 3 + c];
                out[((size_t)y * w + x) * 3 + c] = (uint8_t)((sum + n / 2) / n);
            }
        }
}

/* Bilinear (OpenCV's pixel centres): each output is the blend of its four neighbours, first along x in each
 * of the two source rows, then between them, rounded to the byte. */
static uint8_t reference_bilinear(const Image *src, int w, int h, int x, int y, int c)
{
    double sx = (double)src->width / w, sy = (double)src->height / h;
    double fx = (x + 0.5) * sx - 0.5, fy = (y + 0.5) * sy - 0.5;
    int ix = (int)floor(fx), iy = (int)floor(fy);
    float a = (float)(fx - ix), b = (float)(fy - iy);
    if (ix < 0) ix = 0, a = 0;
    if (ix >= src->width - 1) ix = src->width - 1, a = 0;
    if (iy < 0) iy = 0, b = 0;
    if (iy >= src->height - 1) iy = src->height - 1, b = 0;
    int ix1 = ix + (ix < src->width - 1), iy1 = iy + (iy < src->height - 1);
    float row[2];
    for (int k = 0; k < 2; k++) {
        const uint8_t *r = src->bgr + (size_t)(k ? iy1 : iy) * src->width * 3;
        row[k] = r[3 * ix + c] + a * (r[3 * ix1 + c] - r[3 * ix + c]);
    }
    float v = row[0] + b * (row[1] - row[0]);
    return (uint8_t)(v < 0 ? 0.0f : v > 255 ? 255.0f : v + 0.5f);
}

START_TEST(resizes_match_their_definitions)
{
    static const int sizes[][4] = {{640, 480, 640, 640}, {230, 230, 640, 640}, {1024, 768, 640, 640},
                                   {1279, 961, 640, 640}, {2048, 2048, 128, 128}, {4096, 300, 200, 17},
                                   {33, 35, 7, 5}, {5000, 40, 9, 40}, {3, 2, 64, 64}, {1, 1, 5, 5}, {17, 9, 40, 3}};
    Rng rng;
    rng_seed(&rng, 11, 0);
    Error err = {0};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int fill = 0; fill < 2; fill++) {
            Image src, out;
            ck_assert_int_eq(image_alloc(&src, sizes[k][0], sizes[k][1], &err), ERR_OK);
            size_t bytes = (size_t)src.width * src.height * 3;
            for (size_t i = 0; i < bytes; i++) src.bgr[i] = fill ? 255 : (uint8_t)rng_below(&rng, 256);
            int w = sizes[k][2], h = sizes[k][3];
            uint8_t *ref = malloc((size_t)w * h * 3);
            ck_assert_int_eq(image_resize(&src, w, h, &out, &err), ERR_OK);
            size_t bilinear_bad = 0;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int c = 0; c < 3; c++)
                        bilinear_bad += out.bgr[((size_t)y * w + x) * 3 + c] != reference_bilinear(&src, w, h, x, y, c);
            ck_assert_msg(bilinear_bad == 0, "bilinear %dx%d -> %dx%d (fill %d): %zu bytes differ", src.width, src.height,
                          w, h, fill, bilinear_bad);
            image_free(&out);
            for (int area = 0; area < 2; area++) {
                if (area && (w >= src.width || h >= src.height)) continue; /* area enlarges bilinearly */
                ck_assert_int_eq((area ? image_resize_area : image_resize_nearest)(&src, w, h, &out, &err), ERR_OK);
                reference_resize(&src, w, h, area, ref);
                ck_assert_msg(!memcmp(out.bgr, ref, (size_t)w * h * 3), "%s %dx%d -> %dx%d (fill %d) differs",
                              area ? "area" : "nearest", src.width, src.height, w, h, fill);
                image_free(&out);
            }
            free(ref);
            image_free(&src);
        }
}
END_TEST

START_TEST(overfits_the_tiny_set)
{
    char lb[512], pb[512];
    const char *labels = shared_path("data/tiny/train/label.txt", lb, sizeof lb);
    const char *pre = shared_path("weights/mobilenetV1X0.25_pretrain.tar", pb, sizeof pb);
    if (!labels || !pre) {
        printf("SKIP overfit: ../shared absent\n");
        return;
    }
    TrainOptions o = train_defaults();
    o.data = labels, o.pretrained = pre;
    o.epochs = 60, o.batch = 1, o.lr = 0.01f, o.augment = false, o.workers = 1;
    RetinaFace *m = NULL;
    TrainReport rep;
    Error err = {0};
    ck_assert_msg(train_run(&o, &m, &rep, &err) == ERR_OK, "%s", err.msg);
    printf("  overfit: total loss %.3f -> %.3f in %d steps\n", rep.first_loss, rep.last_loss, rep.steps);
    ck_assert_double_lt(rep.last_loss, 0.2 * rep.first_loss);
    /* The trained model finds the labelled faces. */
    TrainSet set;
    ck_assert_int_eq(trainset_load(labels, NULL, &set, &err), ERR_OK);
    ck_assert_int_eq(set.samples[0].n, 27);
    Detector det = {0};
    det.model = m;
    det.ctx = context_create(2);
    graph_init(&det.graph, det.ctx, DEVICE_CPU, NULL);
    graph_set_grad_enabled(&det.graph, false);
    Image img;
    ck_assert_int_eq(image_load_jpeg(set.samples[0].path, &img, &err), ERR_OK);
    PostprocessOptions popt = postprocess_defaults();
    Detection *d;
    int n;
    /* At the training geometry: the long side at 640 (training pads to a square and resizes). */
    float resize = detector_resize_for_long_side(&img, 640);
    ck_assert_int_eq(detector_detect(&det, &img, resize, &popt, &d, &n, NULL, &err), ERR_OK);
    int found = 0;
    for (int f = 0; f < 27; f++) {
        bool hit = false;
        for (int k = 0; k < n && !hit; k++) hit = d[k].score >= 0.5f && box_iou(set.samples[0].faces + FACE_FIELDS * f, d[k].box) >= 0.5f;
        found += hit;
    }
    printf("  overfit: %d of 27 labelled faces detected (score >= 0.5, IoU >= 0.5)\n", found);
    ck_assert_int_ge(found, 20);
    free(d);
    image_free(&img);
    trainset_free(&set);
    detector_free(&det);
}
END_TEST


static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

START_TEST(training_log_survives_a_resume)
{
    char dir[] = "/tmp/retina_logXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char csv[4200], svg[4200], cmd[4300];
    snprintf(csv, sizeof csv, "%s/train_log.csv", dir);
    snprintf(svg, sizeof svg, "%s/train_curves.svg", dir);
    Error err = {0};
    TrainLog log;
    ck_assert_int_eq(train_log_open(&log, csv, 1, 0, &err), ERR_OK);
    ck_assert_double_eq(log.best_val, -1);
    bool improved;
    const double ap1[3] = {0.5, 0.4, 0.3}, ap2[3] = {0.7, 0.6, 0.5}, ap3[3] = {0.6, 0.6, 0.5}, stage2[3] = {0.25, 0.5, 0.75};
    for (int e = 1; e <= 3; e++) {
        for (int s = 1; s <= 4; s++)
            ck_assert_int_eq(train_log_step(&log, e, s, 4 * (e - 1) + s, 1.0 / e, 2.0 / e, 3.0 / e, 7.0 / e,
                                            e == 2 ? stage2 : NULL, 1e-3, 20, &err),
                             ERR_OK);
        ck_assert_int_eq(train_log_val(&log, e, 4, 4 * e, e == 1 ? ap1 : e == 2 ? ap2 : ap3, &improved, &err), ERR_OK);
        ck_assert(improved == (e != 3));
    }
    ck_assert_int_eq(log.best_epoch, 2);
    train_log_close(&log);
    /* resuming at epoch 3 (the checkpoint of epoch 2): epoch 3's rows were of a lost epoch */
    ck_assert_int_eq(train_log_open(&log, csv, 3, 0, &err), ERR_OK);
    ck_assert_int_eq(log.best_epoch, 2);
    ck_assert_double_eq_tol(log.best_val, 0.6, 1e-9);
    train_log_close(&log);
    ck_assert_int_eq(count_lines(csv, "\n"), 1 + 2 * 5);
    ck_assert_int_eq(count_lines(csv, "epoch,step"), 1);
    ck_assert_int_eq(count_lines(csv, ",loss2_landm\n"), 1);
    ck_assert_int_eq(count_lines(csv, ",20,,,,0.25,0.5,0.75\n"), 4); /* epoch 2's steps carry the second stage */
    ck_assert_int_eq(count_lines(csv, ",20,,,,,,\n"), 4);
    ck_assert_int_eq(train_log_plot(csv, svg, &err), ERR_OK);
    /* two panels: 4 loss lines, 3 AP lines with a marker per validation */
    ck_assert_int_eq(count_lines(svg, "<polyline"), 7);
    ck_assert_int_eq(count_lines(svg, "<circle"), 3 * 2);
    ck_assert_int_eq(count_lines(svg, "</svg>"), 1);
    /* a log from before the stage-2 columns (12 of them) is read and continued: its rows up to the resume
     * point kept as they were, its best validation found, the new rows in the longer form, the plot drawn */
    FILE *old = fopen(csv, "w");
    ck_assert_ptr_nonnull(old);
    fputs("epoch,step,global_step,loss_loc,loss_cls,loss_landm,loss_total,lr,images_per_s,val_easy,val_medium,val_hard\n"
          "1,1,1,1,2,3,7,0.001,20,,,\n1,1,1,,,,,,,0.5,0.4,0.3\n2,1,2,1,2,3,7,0.001,20,,,\n",
          old);
    fclose(old);
    ck_assert_int_eq(train_log_open(&log, csv, 2, 0, &err), ERR_OK);
    ck_assert_int_eq(log.best_epoch, 1);
    ck_assert_double_eq_tol(log.best_val, 0.4, 1e-9);
    ck_assert_int_eq(train_log_step(&log, 2, 1, 2, 0.5, 1, 1.5, 3.5, stage2, 1e-3, 20, &err), ERR_OK);
    train_log_close(&log);
    ck_assert_int_eq(count_lines(csv, "\n"), 1 + 3);
    ck_assert_int_eq(count_lines(csv, "1,1,1,1,2,3,7,0.001,20,,,\n"), 1);
    ck_assert_int_eq(train_log_plot(csv, svg, &err), ERR_OK);
    ck_assert_int_eq(count_lines(svg, "<circle"), 3 * 1);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(validates_while_training)
{
    char lb[512], ib[512], gb[512], vb[512];
    const char *labels = shared_path("data/tiny/train/label.txt", lb, sizeof lb);
    const char *images = shared_path("widerface/WIDER_val/images", ib, sizeof ib);
    const char *gt = shared_path("widerface/ground_truth", gb, sizeof gb);
    const char *list = shared_path("widerface/WIDER_val/wider_val.txt", vb, sizeof vb);
    if (!labels || !images || !gt || !list) {
        printf("SKIP validation while training: ../shared absent\n");
        return;
    }
    char dir[] = "/tmp/retina_valXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    TrainOptions o = train_defaults();
    o.data = labels, o.batch = 1, o.size = 320, o.workers = 1, o.epochs = 2, o.threads = 2;
    o.val_images = images, o.val_gt = gt, o.val_list = list, o.val_every = 2;
    TrainReport rep;
    Error err = {0};
    /* validation writes its predictions and best checkpoint into the save directory */
    ck_assert_int_eq(train_run(&o, NULL, &rep, &err), ERR_ARG);
    ck_assert_msg(strstr(err.msg, "--save-dir"), "%s", err.msg);
    o.save_dir = dir;
    o.val_gt = NULL;
    error_clear(&err);
    ck_assert_int_eq(train_run(&o, NULL, &rep, &err), ERR_ARG);
    ck_assert_msg(strstr(err.msg, "--val-gt"), "%s", err.msg);
    o.val_gt = "/nonexistent";
    error_clear(&err);
    ck_assert_int_ne(train_run(&o, NULL, &rep, &err), ERR_OK);
    ck_assert_msg(strstr(err.msg, "/nonexistent"), "%s", err.msg);
    o.val_gt = gt;
    error_clear(&err);
    ck_assert_msg(train_run(&o, NULL, &rep, &err) == ERR_OK, "%s", err.msg);
    /* every second epoch: one validation, after epoch 2; a random-init model scores near zero */
    for (int k = 0; k < 3; k++) ck_assert(rep.last_val[k] >= 0 && rep.last_val[k] < 0.05);
    ck_assert_int_eq(rep.best_epoch, 2);
    char path[4300];
    snprintf(path, sizeof path, "%s/train_log.csv", dir);
    ck_assert_int_eq(count_lines(path, ",,,,,,\n"), 2); /* step rows: no validation, no second stage */
    ck_assert_int_eq(count_lines(path, ",,,,,,,"), 1); /* the validation row */
    snprintf(path, sizeof path, "%s/mobilenet0.25_best.safetensors", dir);
    ck_assert_str_eq(rep.best_checkpoint, path);
    ck_assert_int_eq(access(path, R_OK), 0);
    snprintf(path, sizeof path, "%s/val_predictions/19--Couple/19_Couple_Couple_19_106.txt", dir);
    ck_assert_int_eq(access(path, R_OK), 0);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    ck_assert_int_eq(system(path), 0);
}
END_TEST

/* --max-steps stops mid-epoch; the checkpoint records where, and --resume finishes that epoch
 * exactly as an uninterrupted run would (it used to skip the rest of the epoch silently). */
START_TEST(resume_mid_epoch_is_bit_exact)
{
    char lb[512];
    const char *labels = shared_path("data/tiny/train/label.txt", lb, sizeof lb);
    if (!labels) {
        printf("SKIP mid-epoch resume: ../shared absent\n");
        return;
    }
    char dir[] = "/tmp/retina_midXXXXXX", cmd[9000], list[4300], images[4300];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    /* the tiny image three times: three batches of one per epoch */
    snprintf(images, sizeof images, "%.*s/images", (int)(strrchr(labels, '/') - labels), labels);
    snprintf(list, sizeof list, "%s/label.txt", dir);
    snprintf(cmd, sizeof cmd, "for k in 1 2 3; do cat %s; done > %s", labels, list);
    ck_assert_int_eq(system(cmd), 0);
    TrainOptions o = train_defaults();
    o.data = list, o.images = images, o.batch = 1, o.size = 320, o.workers = 1, o.save_every = 1, o.seed = 3;
    o.epochs = 1, o.lr = 0.01f, o.threads = 2;
    TrainReport rep;
    Error err = {0};
    RetinaFace *straight = NULL, *resumed = NULL;
    ck_assert_msg(train_run(&o, &straight, &rep, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_eq(rep.steps, 3);
    o.save_dir = dir, o.max_steps = 2;
    ck_assert_msg(train_run(&o, NULL, &rep, &err) == ERR_OK, "%s", err.msg);
    char ck[4400];
    snprintf(ck, sizeof ck, "%s/mobilenet0.25_epoch1_step2.safetensors", dir);
    ck_assert_str_eq(rep.last_checkpoint, ck);
    /* a batch size whose steps do not end where the run stopped (2 images in) cannot continue it */
    o.max_steps = 0, o.resume = ck, o.batch = 3;
    ck_assert_int_eq(train_run(&o, NULL, &rep, &err), ERR_ARG);
    ck_assert_msg(strstr(err.msg, "stopped 2 images into epoch 1") && strstr(err.msg, "not a whole number of steps"), "%s",
                  err.msg);
    o.batch = 1;
    error_clear(&err);
    ck_assert_msg(train_run(&o, &resumed, &rep, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_eq(rep.steps, 1);
    for (int i = 0; i < straight->params.n; i++) {
        Tensor *a = param_entry_tensor(&straight->params.entries[i]), *b = param_entry_tensor(&resumed->params.entries[i]);
        ck_assert_msg(memcmp(a->data, b->data, tensor_bytes(a)) == 0, "%s differs", straight->params.entries[i].name);
    }
    /* the log holds each step once: 2 before the stop, 1 after */
    snprintf(cmd, sizeof cmd, "test $(grep -c ',,,$' %s/train_log.csv) -eq 3", dir);
    ck_assert_int_eq(system(cmd), 0);
    retinaface_free(straight);
    retinaface_free(resumed);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(resume_is_bit_exact)
{
    char lb[512];
    const char *labels = shared_path("data/tiny/train/label.txt", lb, sizeof lb);
    if (!labels) {
        printf("SKIP resume: ../shared absent\n");
        return;
    }
    char dir_a[] = "/tmp/retina_runaXXXXXX", dir_b[] = "/tmp/retina_runbXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir_a));
    ck_assert_ptr_nonnull(mkdtemp(dir_b));
    TrainOptions o = train_defaults();
    o.data = labels, o.batch = 1, o.size = 320, o.workers = 1, o.save_every = 1, o.seed = 7;
    TrainReport rep;
    Error err = {0};
    RetinaFace *straight = NULL, *resumed = NULL;
    o.epochs = 2, o.save_dir = dir_a;
    ck_assert_msg(train_run(&o, &straight, &rep, &err) == ERR_OK, "%s", err.msg);
    o.epochs = 1, o.save_dir = dir_b;
    ck_assert_int_eq(train_run(&o, NULL, &rep, &err), ERR_OK);
    char ck[4200];
    snprintf(ck, sizeof ck, "%s/mobilenet0.25_epoch1.safetensors", dir_b);
    o.epochs = 2, o.resume = ck;
    ck_assert_msg(train_run(&o, &resumed, &rep, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_eq(rep.steps, 1);
    for (int i = 0; i < straight->params.n; i++) {
        Tensor *a = param_entry_tensor(&straight->params.entries[i]), *b = param_entry_tensor(&resumed->params.entries[i]);
        ck_assert_msg(memcmp(a->data, b->data, tensor_bytes(a)) == 0, "%s differs", straight->params.entries[i].name);
    }
    retinaface_free(straight);
    retinaface_free(resumed);
    snprintf(ck, sizeof ck, "rm -rf %s %s", dir_a, dir_b);
    ck_assert_int_eq(system(ck), 0);
}
END_TEST

START_TEST(bad_training_input)
{
    char dir[] = "/tmp/retina_badsetXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[4200], cmd[8600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/images && printf 'junk' > %s/images/broken.jpg", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    char ib[512];
    const char *good = shared_path("data/tiny/train/images/test.jpg", ib, sizeof ib);
    if (good) {
        snprintf(cmd, sizeof cmd, "cp %s %s/images/good.jpg", good, dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    /* A malformed face line: the error names the file and the line. */
    snprintf(path, sizeof path, "%s/label.txt", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# good.jpg\n10 10 50 50 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 0.5\n10 10 oops 50\n");
    fclose(f);
    TrainSet set;
    Error err = {0};
    ck_assert_int_eq(trainset_load(path, NULL, &set, &err), ERR_FORMAT);
    char where[4300];
    snprintf(where, sizeof where, "%s:3", path);
    ck_assert_msg(strstr(err.msg, where) != NULL, "%s", err.msg);
    if (!good) return;
    /* A missing image is skipped and counted; an unreadable one is skipped by the loader. */
    f = fopen(path, "w");
    fprintf(f, "# good.jpg\n600 100 60 70 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 0.5\n"
               "# missing.jpg\n10 10 50 50\n# broken.jpg\n10 10 50 50\n");
    fclose(f);
    error_clear(&err);
    ck_assert_int_eq(trainset_load(path, NULL, &set, &err), ERR_OK);
    ck_assert_int_eq(set.n, 2);
    ck_assert_int_eq(set.missing_images, 1);
    trainset_free(&set);
    TrainOptions o = train_defaults();
    o.data = path, o.epochs = 1, o.batch = 2, o.size = 160, o.workers = 2;
    TrainReport rep;
    ck_assert_msg(train_run(&o, NULL, &rep, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_eq(rep.failed_images, 1);
    ck_assert_int_eq(rep.missing_images, 1);
    ck_assert_int_eq(rep.steps, 1);
    /* a save folder that cannot exist is refused before the first step */
    char bad_dir[4300];
    snprintf(bad_dir, sizeof bad_dir, "%s/label.txt/checkpoints", dir);
    o.save_dir = bad_dir;
    error_clear(&err);
    ck_assert_int_eq(train_run(&o, NULL, &rep, &err), ERR_IO);
    ck_assert_int_eq(rep.steps, 0);
    ck_assert_msg(strstr(err.msg, bad_dir) != NULL, "%s", err.msg);
    o.save_dir = NULL;
    /* nothing readable: an error, not epochs of 0 steps and exit 0 */
    f = fopen(path, "w");
    fprintf(f, "# broken.jpg\n10 10 50 50\n# broken.jpg\n20 20 50 50\n");
    fclose(f);
    error_clear(&err);
    ck_assert_int_eq(train_run(&o, NULL, &rep, &err), ERR_IO);
    ck_assert_msg(strstr(err.msg, "no image") != NULL, "%s", err.msg);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* Class ids in the label format: a trailing id after the score (1 face, 2 person; landmarks -1 where
 * absent) reaches the loss as the object's label, a bad id is an error naming the line, and a model
 * with fewer classes than the labels is refused before training. */
START_TEST(class_ids_reach_the_loss)
{
    char ib[512];
    const char *good = shared_path("data/tiny/train/images/test.jpg", ib, sizeof ib);
    if (!good) {
        printf("SKIP class ids: ../shared absent\n");
        return;
    }
    char dir[] = "/tmp/retina_classesXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[4200], cmd[8600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/images && cp %s %s/images/a.jpg", dir, good, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/label.txt", dir);
    static const char *const none = "-1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1";
    FILE *f = fopen(path, "w");
    fprintf(f, "# a.jpg\n653 105 52 66 %s 1 1\n600 80 160 460 %s 1 2\n520 346 56 69 %s 0.9\n", none, none, none);
    fclose(f);
    TrainSet set;
    Error err = {0};
    ck_assert_msg(trainset_load(path, NULL, &set, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_eq(set.n, 1);
    ck_assert_int_eq(set.samples[0].n, 3);
    ck_assert_int_eq(set.max_class, 2);
    int classes[3];
    for (int k = 0; k < 3; k++) classes[k] = (int)set.samples[0].faces[k * FACE_FIELDS + FACE_CLASS];
    ck_assert(classes[0] == 1 && classes[1] == 2 && classes[2] == 1); /* no id: a face */
    trainset_free(&set);
    /* the face model has one class: refused, naming it */
    TrainOptions o = train_defaults();
    o.data = path, o.epochs = 1, o.batch = 1, o.size = 160, o.workers = 1, o.threads = 1;
    TrainReport rep;
    ck_assert_int_eq(train_run(&o, NULL, &rep, &err), ERR_ARG);
    ck_assert_msg(strstr(err.msg, "class 2") && strstr(err.msg, "mobilenet0.25"), "%s", err.msg);
    /* the face + person model trains on both */
    o.model = "mobilenet0.25_2cls", o.max_steps = 2;
    error_clear(&err);
    ck_assert_msg(train_run(&o, NULL, &rep, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_eq(rep.steps, 1);
    /* ids that are not whole numbers from 1 are refused with the line */
    f = fopen(path, "w");
    fprintf(f, "# a.jpg\n653 105 52 66 %s 1 0\n", none);
    fclose(f);
    error_clear(&err);
    ck_assert_int_eq(trainset_load(path, NULL, &set, &err), ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "label.txt:2") && strstr(err.msg, "class id 0"), "%s", err.msg);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* The detector of a face + person model reports both classes, strongest first (a random model scores
 * about 1/3 everywhere: every prior passes 0.02 for both). */
START_TEST(detections_of_every_class)
{
    Detector det;
    Error err = {0};
    ck_assert_int_eq(detector_init(&det, "mobilenet0.25_2cls", NULL, 1, false, &err), ERR_OK);
    Image img;
    ck_assert_int_eq(image_alloc(&img, 96, 64, &err), ERR_OK);
    for (int i = 0; i < 96 * 64 * 3; i++) img.bgr[i] = (uint8_t)(i * 7);
    PostprocessOptions opt = postprocess_defaults();
    Detection *d;
    int n;
    ck_assert_int_eq(detector_detect(&det, &img, 1.0f, &opt, &d, &n, NULL, &err), ERR_OK);
    int seen[3] = {0, 0, 0};
    for (int k = 0; k < n; k++) {
        ck_assert(d[k].label == 1 || d[k].label == 2);
        seen[d[k].label]++;
        if (k) ck_assert(d[k - 1].score >= d[k].score);
    }
    ck_assert(seen[1] > 0 && seen[2] > 0);
    char buf[32];
    ck_assert_str_eq(retinaface_class_name(&det.model->cfg, 2, buf, sizeof buf), "person");
    ck_assert_str_eq(retinaface_class_name(retinaface_config("mobilenet0.25"), 1, buf, sizeof buf), "face");
    free(d);
    image_free(&img);
    detector_free(&det);
}
END_TEST

/* AP from a ranking: hits at ranks 1, 3, 4 of 5 detections, 4 objects: precision envelope 1, 0.75, 0.75
 * over recall steps of 0.25: 0.25 + 0.1875 + 0.1875 = 0.625; nothing found: 0. */
START_TEST(class_ap_from_a_ranking)
{
    unsigned char tp[5] = {1, 0, 1, 1, 0}, none[5] = {0, 0, 0, 0, 0};
    ck_assert(fabs(class_ap_from_ranked(tp, 5, 4) - 0.625) < 1e-12);
    ck_assert(class_ap_from_ranked(none, 5, 4) == 0);
    ck_assert(class_ap_from_ranked(tp, 5, 0) == 0);
}
END_TEST

START_TEST(sgd_matches_pytorch_formula)
{
    /* PyTorch SGD(momentum 0.9, weight_decay 0.1), lr 0.1, grad 0.5, w0 = 1:
     * step 1: d = 0.6, v = 0.6, w = 0.94; step 2: d = 0.594, v = 1.134, w = 0.8266. */
    ParamStore ps;
    params_init(&ps, DEVICE_CPU);
    int64_t one = 1;
    Error err = {0};
    Var *w = params_add(&ps, "w", "", 1, &one, &err);
    w->value.data[0] = 1.0f;
    Sgd sgd;
    ck_assert_int_eq(sgd_init(&sgd, &ps, 0.9f, 0.1f, &err), ERR_OK);
    w->grad.data[0] = 0.5f;
    ck_assert_int_eq(sgd_step(&sgd, &ps, 0.1f, NULL, &err), ERR_OK);
    ck_assert_float_eq_tol(w->value.data[0], 0.94f, 1e-6);
    ck_assert_int_eq(sgd_step(&sgd, &ps, 0.1f, NULL, &err), ERR_OK);
    ck_assert_float_eq_tol(w->value.data[0], 0.8266f, 1e-6);
    sgd_free(&sgd);
    params_free(&ps);
}
END_TEST

/* OpenCV's 8-bit BGR <-> HSV, pixel by pixel, as the reference's distortion uses it: the definition
 * the vectorised hsv_adjust must reproduce exactly. */
static uint8_t clamp_to_u8(float v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

static void reference_hsv_adjust(uint8_t *p, float alpha, int shift)
{
    int b = p[0], g = p[1], r = p[2];
    int v = b > g ? (b > r ? b : r) : (g > r ? g : r), mn = b < g ? (b < r ? b : r) : (g < r ? g : r), d = v - mn;
    int s = v ? (d * 255 + v / 2) / v : 0;
    float h = 0;
    if (d) {
        if (v == r) h = 60.0f * (g - b) / d;
        else if (v == g) h = 120.0f + 60.0f * (b - r) / d;
        else h = 240.0f + 60.0f * (r - g) / d;
        if (h < 0) h += 360;
    }
    int hh = (int)(h / 2 + 0.5f);
    hh = hh >= 180 ? hh - 180 : hh;
    s = clamp_to_u8(s * alpha);
    hh = ((hh + shift) % 180 + 180) % 180;
    float hs = hh * (2.0f / 60.0f), sf = s * (1.0f / 255.0f), vf = (float)v;
    int sector = (int)hs;
    float f = hs - (float)sector, c = vf * sf, x = c * ((sector & 1) ? 1.0f - f : f), m = vf - c;
    float rgb[6][3] = {{c, x, 0}, {x, c, 0}, {0, c, x}, {0, x, c}, {x, 0, c}, {c, 0, x}};
    p[0] = clamp_to_u8(rgb[sector][2] + m + 0.5f), p[1] = clamp_to_u8(rgb[sector][1] + m + 0.5f);
    p[2] = clamp_to_u8(rgb[sector][0] + m + 0.5f);
}

START_TEST(photometric_kernels_match_opencv_definition)
{
    uint8_t red[3] = {0, 0, 255};
    hsv_adjust(red, 1, 1.0f, 60); /* hue 0 -> 120 degrees: pure green */
    ck_assert(red[0] == 0 && red[1] == 255 && red[2] == 0);
    /* every 3rd level of each channel (plus 255), three parameter sets, bytes equal */
    enum { LEVELS = 86 };
    uint8_t *img = malloc((size_t)LEVELS * LEVELS * LEVELS * 3), *ref = malloc((size_t)LEVELS * LEVELS * LEVELS * 3);
    const float alphas[] = {0.5f, 1.0f, 1.37f};
    const int shifts[] = {-18, 0, 11};
    for (int k = 0; k < 3; k++) {
        size_t n = 0;
        for (int b = 0; b < LEVELS; b++)
            for (int g = 0; g < LEVELS; g++)
                for (int r = 0; r < LEVELS; r++, n++) {
                    uint8_t px[3] = {(uint8_t)(b == 85 ? 255 : 3 * b), (uint8_t)(g == 85 ? 255 : 3 * g),
                                     (uint8_t)(r == 85 ? 255 : 3 * r)};
                    memcpy(img + 3 * n, px, 3), memcpy(ref + 3 * n, px, 3);
                    reference_hsv_adjust(ref + 3 * n, alphas[k], shifts[k]);
                }
        hsv_adjust(img, n, alphas[k], shifts[k]);
        size_t bad = 0;
        for (size_t i = 0; i < 3 * n; i++) bad += img[i] != ref[i];
        ck_assert_msg(bad == 0, "alpha %g shift %d: %zu bytes differ", alphas[k], shifts[k], bad);
    }
    free(img), free(ref);
    /* brightness / contrast: every byte value against uint8(clamp(v * alpha + beta)) */
    const float ab[][2] = {{1.0f, -32.0f}, {1.0f, 31.7f}, {0.5f, 0.0f}, {1.4999f, 0.0f}};
    for (int k = 0; k < 4; k++) {
        uint8_t bytes[256];
        for (int v = 0; v < 256; v++) bytes[v] = (uint8_t)v;
        photometric_convert(bytes, 256, ab[k][0], ab[k][1]);
        for (int v = 0; v < 256; v++)
            ck_assert_msg(bytes[v] == clamp_to_u8(v * ab[k][0] + ab[k][1]), "convert %g %g at %d", ab[k][0], ab[k][1], v);
    }
}
END_TEST

Suite *train_suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("loss");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, matching_forces_best_prior_and_skips_missing_landmarks);
    tcase_add_test(tc, sgd_matches_pytorch_formula);
    tcase_add_test(tc, class_ids_reach_the_loss);
    tcase_add_test(tc, detections_of_every_class);
    tcase_add_test(tc, class_ap_from_a_ranking);
    tcase_add_test(tc, photometric_kernels_match_opencv_definition);
    tcase_add_test(tc, zoom_out_shrinks_faces_onto_the_image);
    tcase_add_test(tc, png_training_images_load_like_jpeg);
    tcase_add_test(tc, jpeg_regions_decode_like_the_whole_image);
    tcase_add_test(tc, resizes_match_their_definitions);
    tcase_add_test(tc, training_step_matches_reference);
    tcase_add_test(tc, bad_training_input);
    tcase_add_test(tc, resume_is_bit_exact);
    tcase_add_test(tc, resume_mid_epoch_is_bit_exact);
    tcase_add_test(tc, training_log_survives_a_resume);
    tcase_add_test(tc, validates_while_training);
    tcase_add_test(tc, overfits_the_tiny_set);
    suite_add_tcase(s, tc);
    return s;
}
