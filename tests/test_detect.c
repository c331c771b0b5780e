/* Detection pipeline: priors against the reference, NMS on hand-made boxes, detections of the
 * imported model on the reference image, and the detect app's handling of bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jpeglib.h> /* after stdio.h: it uses FILE and size_t */
#include <libexif/exif-data.h>
#include <webp/encode.h>

#include "detection/detector.h"
#include "detection/detect_pyramid.h"
#include "detection/face_align.h"
#include "detection/retina.h"
#include "models/builtin_weights.h"
#include "nn/formats/safetensors.h"
#include "tests/png_writer.h"
#include "tests/suites.h"

START_TEST(priors_match_reference)
{
    char buf[512];
    const char *ref = shared_path("reference/retinaface_mnet025/infer_priors.f32", buf, sizeof buf);
    const AnchorLayout *anchors = &retinaface_config("mobilenet0.25")->anchors;
    ck_assert_int_eq(priors_count(anchors, 624, 1024), 26240);
    if (!ref) {
        printf("SKIP prior parity: ../shared absent\n");
        return;
    }
    float *p = malloc(26240 * 4 * sizeof(float));
    priors_generate(anchors, 624, 1024, p);
    Tensor r;
    int64_t shape[2] = {26240, 4};
    Error err = {0};
    ck_assert_int_eq(tensor_load_raw(&r, ref, 2, shape, &err), ERR_OK);
    TensorDiff d = tensor_diff(p, r.data, 26240 * 4, 1e-6);
    ck_assert_msg(d.max_abs <= 1e-7, "priors differ by %g", d.max_abs);
    tensor_free(&r);
    free(p);
}
END_TEST

/* Anchors with aspect ratios: a 4:1 and a 1:4 anchor of side 16 beside the square on one level of stride
 * 8; same area, the centres of the square's; a ratio of 0 or 1 is the square itself. */
START_TEST(priors_with_aspect_ratios)
{
    AnchorLayout a = {0};
    a.n_levels = 1, a.steps[0] = 8, a.per_location = 4;
    float sizes[4] = {16, 16, 16, 16}, ratios[4] = {0, 4, 0.25f, 1};
    for (int s = 0; s < 4; s++) a.sizes[0][s] = sizes[s], a.ratios[0][s] = ratios[s];
    ck_assert_int_eq(priors_count(&a, 16, 32), 2 * 4 * 4);
    float p[32 * 4];
    priors_generate(&a, 16, 32, p);
    /* cell (row 1, column 2): centre (20/32, 12/16) */
    const float *cell = p + ((1 * 4 + 2) * 4) * 4;
    const float expect[4][4] = {{20.0f / 32, 12.0f / 16, 16.0f / 32, 16.0f / 16},
                                {20.0f / 32, 12.0f / 16, 32.0f / 32, 8.0f / 16},
                                {20.0f / 32, 12.0f / 16, 8.0f / 32, 32.0f / 16},
                                {20.0f / 32, 12.0f / 16, 16.0f / 32, 16.0f / 16}};
    for (int s = 0; s < 4; s++)
        for (int k = 0; k < 4; k++)
            ck_assert_msg(fabsf(cell[s * 4 + k] - expect[s][k]) < 1e-6f, "anchor %d value %d: %g, expected %g", s, k,
                          cell[s * 4 + k], expect[s][k]);
}
END_TEST

START_TEST(nms_suppresses_overlaps_only)
{
    /* Sorted by score. Box 1 overlaps box 0 with IoU (+1 convention) 0.68 > 0.4: suppressed.
     * Box 2 is disjoint; box 3 overlaps box 2 by 0.33 < 0.4: kept. */
    float boxes[4][4] = {{0, 0, 9, 9}, {1, 1, 10, 10}, {20, 20, 29, 29}, {25, 20, 34, 29}};
    int keep[4];
    int n = nms_greedy(&boxes[0][0], 4, 0.4f, keep);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(keep[0], 0);
    ck_assert_int_eq(keep[1], 2);
    ck_assert_int_eq(keep[2], 3);
    ck_assert_int_eq(nms_greedy(&boxes[0][0], 4, 0.3f, keep), 2);
}
END_TEST

typedef struct {
    float box[4], score;
} RefDet;

/* Reads "box": [...] and "score": x pairs of the reference JSON, in order. */
static int read_reference(const char *path, RefDet *out, int max)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    int count = 0;
    for (char *p = strstr(text, "\"box\""); p && count < max; p = strstr(p, "\"box\"")) {
        p = strchr(p, '[') + 1;
        for (int k = 0; k < 4; k++) {
            out[count].box[k] = strtof(p, &p);
            p = strchr(p, k < 3 ? ',' : ']') + 1;
        }
        p = strstr(p, "\"score\"");
        out[count].score = strtof(strchr(p, ':') + 1, &p);
        count++;
    }
    return count;
}

static float iou(const float *a, const float *b)
{
    float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    if (w <= 0 || h <= 0) return 0;
    float inter = w * h;
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

/* detector_detect_batch: images whose network input has one size share a forward (test.jpg, its mirror
 * image, and a 2x copy shrunk back by its resize factor), another size goes alone, and each image gets
 * exactly what detector_detect gives it. */
START_TEST(batch_detection_equals_single)
{
    char ib[512];
    const char *image = shared_path("reference/retinaface_mnet025/test.jpg", ib, sizeof ib);
    if (!image) {
        printf("SKIP batch detection: ../shared absent\n");
        return;
    }
    Detector det;
    Error err = {0};
    ck_assert_msg(detector_init(&det, "mobilenet0.25", NULL, 2, false, &err) == ERR_OK, "%s", err.msg);
    Image a, mirror, half, twice;
    ck_assert_int_eq(image_load_jpeg(image, &a, &err), ERR_OK);
    ck_assert_int_eq(image_alloc(&mirror, a.width, a.height, &err), ERR_OK);
    for (int y = 0; y < a.height; y++)
        for (int x = 0; x < a.width; x++)
            memcpy(mirror.bgr + ((size_t)y * a.width + x) * 3, a.bgr + ((size_t)y * a.width + a.width - 1 - x) * 3, 3);
    ck_assert_int_eq(image_resize(&a, a.width / 2, a.height / 2, &half, &err), ERR_OK);
    ck_assert_int_eq(image_resize(&a, a.width * 2, a.height * 2, &twice, &err), ERR_OK);
    const Image *imgs[4] = {&a, &half, &mirror, &twice};
    float resize[4] = {1.0f, 1.0f, 1.0f, 0.5f};
    PostprocessOptions opt = postprocess_defaults();
    Detection *dets[4];
    int counts[4];
    DetectTiming t;
    ck_assert_msg(detector_detect_batch(&det, 4, imgs, resize, 8, &opt, dets, counts, &t, &err) == ERR_OK, "%s", err.msg);
    for (int i = 0; i < 4; i++) {
        Detection *one;
        int n;
        ck_assert_int_eq(detector_detect(&det, imgs[i], resize[i], &opt, &one, &n, NULL, &err), ERR_OK);
        ck_assert_int_gt(n, 10);
        ck_assert_int_eq(counts[i], n);
        ck_assert_msg(!memcmp(dets[i], one, sizeof *one * (size_t)n), "image %d differs in a batch", i);
        free(one);
        free(dets[i]);
    }
    /* max_batch 1: one forward each, the same again */
    ck_assert_int_eq(detector_detect_batch(&det, 4, imgs, resize, 1, &opt, dets, counts, NULL, &err), ERR_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_gt(counts[i], 10);
        free(dets[i]);
    }
    /* a bad resize fails the whole call and returns nothing */
    float bad[4] = {1.0f, 1e-9f, 1.0f, 1.0f};
    ck_assert_int_eq(detector_detect_batch(&det, 4, imgs, bad, 8, &opt, dets, counts, NULL, &err), ERR_ARG);
    for (int i = 0; i < 4; i++) ck_assert(dets[i] == NULL && counts[i] == 0);
    image_free(&a), image_free(&mirror), image_free(&half), image_free(&twice);
    detector_free(&det);
}
END_TEST

START_TEST(detections_match_reference)
{
    char wb[512], ib[512], jb[512];
    const char *weights = shared_path("weights/mobilenet0.25_Final.pth", wb, sizeof wb);
    const char *image = shared_path("reference/retinaface_mnet025/test.jpg", ib, sizeof ib);
    const char *json = shared_path("reference/retinaface_mnet025/infer_detections.json", jb, sizeof jb);
    if (!weights || !image || !json) {
        printf("SKIP detection parity: ../shared absent\n");
        return;
    }
    static RefDet ref[1000];
    int n_ref = read_reference(json, ref, 1000);
    ck_assert_int_eq(n_ref, 150);
    Detector det;
    Error err = {0};
    ck_assert_msg(detector_init(&det, "mobilenet0.25", weights, 2, false, &err) == ERR_OK, "%s", err.msg);
    Image img;
    ck_assert_int_eq(image_load_jpeg(image, &img, &err), ERR_OK);
    PostprocessOptions opt = postprocess_defaults();
    Detection *d;
    int n;
    ck_assert_int_eq(detector_detect(&det, &img, 1.0f, &opt, &d, &n, NULL, &err), ERR_OK);
    int strong = 0, worst_matched = 0;
    float worst_iou = 1, worst_score = 0;
    for (int r = 0; r < n_ref; r++) {
        if (ref[r].score < 0.5f) continue;
        strong++;
        float best = 0, dscore = 1;
        for (int k = 0; k < n; k++) {
            float o = iou(ref[r].box, d[k].box);
            if (o > best) best = o, dscore = fabsf(d[k].score - ref[r].score);
        }
        worst_iou = fminf(worst_iou, best);
        worst_score = fmaxf(worst_score, dscore);
        worst_matched += best >= 0.95f && dscore <= 0.01f;
    }
    printf("  detections: ours %d, reference %d; %d/%d reference faces >= 0.5 matched (min IoU %.5f, max "
           "score diff %.2e)\n",
           n, n_ref, worst_matched, strong, worst_iou, worst_score);
    ck_assert_int_eq(worst_matched, strong);
    ck_assert_int_le(abs(n - n_ref), 2);
    /* the second and third runs at this size replay the first one's memory plan: same detections */
    for (int run = 0; run < 2; run++) {
        Detection *again;
        int n_again;
        ck_assert_int_eq(detector_detect(&det, &img, 1.0f, &opt, &again, &n_again, NULL, &err), ERR_OK);
        ck_assert_int_eq(n_again, n);
        ck_assert(!memcmp(again, d, sizeof *d * (size_t)n));
        free(again);
    }
    free(d);
    image_free(&img);
    detector_free(&det);
}
END_TEST

/* Runs the detect app; returns its exit status and fills out/errs with its streams. */
static int run_app(const char *args, char *out, size_t out_len, char *errs, size_t err_len)
{
    const char *build = getenv("RETINA_BUILD");
    char cmd[2048], errfile[] = "/tmp/retina_stderrXXXXXX";
    int fd = mkstemp(errfile);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s/detect %s 2>%s", build ? build : "build", args, errfile);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = 0;
    int status = pclose(p);
    FILE *e = fopen(errfile, "r");
    n = fread(errs, 1, err_len - 1, e);
    errs[n] = 0;
    fclose(e);
    unlink(errfile);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(builtin_model_finds_the_reference_faces)
{
    /* without ../shared: the weights are in the binary and load into the default model */
    size_t size = 0;
    ck_assert_ptr_nonnull(retinaface_builtin_weights("mobilenet0.25", &size));
    ck_assert_uint_gt(size, 1000000);
    ck_assert_ptr_null(retinaface_builtin_weights("resnet50", &size));
    Error err = {0};
    /* the buffer reader refuses a cut buffer as the file reader refuses a truncated file */
    const void *bytes = retinaface_builtin_weights("mnet025", &size);
    TensorDict dict;
    ck_assert_int_eq(safetensors_read_memory(bytes, size / 2, "half", &dict, &err), ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "half") != NULL, "%s", err.msg);
    error_clear(&err);
    ck_assert_int_eq(safetensors_read_memory(bytes, size, "built-in", &dict, &err), ERR_OK);
    ck_assert_int_ge(dict.n, 253);
    tensor_dict_free(&dict);
    Detector det;
    ck_assert_msg(detector_init(&det, "mobilenet0.25", NULL, 2, false, &err) == ERR_OK, "%s", err.msg);
    char ib[512], jb[512];
    const char *image = shared_path("reference/retinaface_mnet025/test.jpg", ib, sizeof ib);
    const char *json = shared_path("reference/retinaface_mnet025/infer_detections.json", jb, sizeof jb);
    if (!image || !json) {
        printf("SKIP built-in model on test.jpg: ../shared absent (the model loaded)\n");
        detector_free(&det);
        return;
    }
    /* the faces the public model finds at score >= 0.5, found by ours at score >= 0.5 and IoU >= 0.5 */
    static RefDet ref[1000];
    int n_ref = read_reference(json, ref, 1000);
    Image img;
    ck_assert_int_eq(image_load_jpeg(image, &img, &err), ERR_OK);
    PostprocessOptions opt = postprocess_defaults();
    Detection *d;
    int n;
    ck_assert_int_eq(detector_detect(&det, &img, 1.0f, &opt, &d, &n, NULL, &err), ERR_OK);
    int strong = 0, found = 0, extra = 0;
    for (int r = 0; r < n_ref; r++) {
        if (ref[r].score < 0.5f) continue;
        strong++;
        bool hit = false;
        for (int k = 0; k < n && !hit; k++) hit = d[k].score >= 0.5f && iou(ref[r].box, d[k].box) >= 0.5f;
        found += hit;
    }
    for (int k = 0; k < n; k++) {
        if (d[k].score < 0.5f) continue;
        bool known = false;
        for (int r = 0; r < n_ref && !known; r++) known = ref[r].score >= 0.5f && iou(ref[r].box, d[k].box) >= 0.5f;
        extra += !known;
    }
    printf("  built-in model on test.jpg: %d of the reference's %d faces (score >= 0.5, IoU >= 0.5); %d detections "
           ">= 0.5 the reference does not have\n", found, strong, extra);
    ck_assert_int_eq(strong, 27);
    /* the built-in model (models/weights/README.md) finds 23; issue 17 asks for 24 of the 27, which
     * this training did not reach at any of its last ten epochs: a regression guard, not the target */
    ck_assert_int_ge(found, 23);
    free(d);
    image_free(&img);
    detector_free(&det);
}
END_TEST

START_TEST(detect_app_reports_bad_input_and_goes_on)
{
    char wb[512], ib[512];
    const char *weights = shared_path("weights/mobilenet0.25_Final.pth", wb, sizeof wb);
    const char *image = shared_path("reference/retinaface_mnet025/test.jpg", ib, sizeof ib);
    if (!weights || !image) {
        printf("SKIP detect app: ../shared absent\n");
        return;
    }
    /* A truncated JPEG and a text file named .jpg, between two good images. */
    char trunc[] = "/tmp/retina_truncXXXXXX.jpg", text[] = "/tmp/retina_textXXXXXX.jpg";
    int fd = mkstemps(trunc, 4);
    FILE *in = fopen(image, "rb");
    static char data[1 << 20];
    size_t n = fread(data, 1, sizeof data, in);
    fclose(in);
    ck_assert_int_eq(write(fd, data, n / 2), (ssize_t)(n / 2));
    close(fd);
    fd = mkstemps(text, 4);
    ck_assert_int_eq(write(fd, "not an image\n", 13), 13);
    close(fd);
    static char out[1 << 20], errs[8192];
    char args[4096];
    snprintf(args, sizeof args, "--weights %s --json - %s %s %s %s", weights, image, trunc, text, image);
    int rc = run_app(args, out, sizeof out, errs, sizeof errs);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(errs, trunc) && strstr(errs, text), "stderr: %s", errs);
    /* Both good images were processed. */
    char quoted[600];
    snprintf(quoted, sizeof quoted, "\"image\": \"%s\"", image);
    char *first = strstr(out, quoted);
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(strstr(first + 1, quoted));
    /* One line of error per bad file, and the summary of the two images detected. */
    int lines = 0;
    for (char *p = errs; *p; p++) lines += *p == '\n';
    ck_assert_int_eq(lines, 3);
    ck_assert_msg(strstr(errs, "detect: 2 images in ") && strstr(errs, "images/s"), "stderr: %s", errs);
    /* batched (the two good images have one size): the same output */
    static char out_batched[1 << 20];
    snprintf(args, sizeof args, "--weights %s --batch 3 --json - %s %s %s %s", weights, image, trunc, text, image);
    ck_assert_int_eq(run_app(args, out_batched, sizeof out_batched, errs, sizeof errs), 1);
    ck_assert_str_eq(out_batched, out);
    ck_assert_msg(strstr(errs, "batches of up to 3"), "stderr: %s", errs);
    unlink(trunc);
    unlink(text);

    snprintf(args, sizeof args, "--weights /nonexistent/w.pth %s", image);
    ck_assert_int_eq(run_app(args, out, sizeof out, errs, sizeof errs), 1);
    ck_assert_ptr_nonnull(strstr(errs, "/nonexistent/w.pth"));
    ck_assert_int_eq(run_app("--help", out, sizeof out, errs, sizeof errs), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage"));
    ck_assert_int_eq(run_app("--conf abc x.jpg", out, sizeof out, errs, sizeof errs), 2);
}
END_TEST

static int count_of(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

START_TEST(detect_app_inputs_and_defaults)
{
    char wb[512], ib[512];
    const char *weights = shared_path("weights/mobilenet0.25_Final.pth", wb, sizeof wb);
    const char *image = shared_path("reference/retinaface_mnet025/test.jpg", ib, sizeof ib);
    if (!weights || !image) {
        printf("SKIP detect app inputs: ../shared absent\n");
        return;
    }
    char dir[] = "/tmp/retina_inputsXXXXXX", cmd[4096], args[10000];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "mkdir -p %s/a %s/b/c %s/empty && cp %s %s/a/photo.jpg && echo x > %s/a/notes.txt", dir, dir,
             dir, image, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    Image img;
    Error err = {0};
    ck_assert_int_eq(image_load_jpeg(image, &img, &err), ERR_OK);
    snprintf(cmd, sizeof cmd, "%s/b/c/photo.png", dir);
    write_png(cmd, &img);
    /* the PNG decodes to the JPEG's pixels */
    Image back;
    ck_assert_int_eq(image_load(cmd, &back, &err), ERR_OK);
    ck_assert_int_eq(back.width, img.width);
    ck_assert(!memcmp(back.bgr, img.bgr, (size_t)img.width * img.height * 3));
    image_free(&back);
    image_free(&img);
    static char out[1 << 20], errs[8192];
    /* a folder is walked in name order; the JSON names each image by its path; default conf 0.5 */
    snprintf(args, sizeof args, "--weights %s --json - %s", weights, dir);
    ck_assert_int_eq(run_app(args, out, sizeof out, errs, sizeof errs), 0);
    char *jpg = strstr(out, "/a/photo.jpg\""), *png = strstr(out, "/b/c/photo.png\"");
    ck_assert_ptr_nonnull(jpg);
    ck_assert_ptr_nonnull(png);
    ck_assert(jpg < png);
    char *nl = strchr(out, '\n');
    ck_assert_ptr_nonnull(nl);
    *nl = 0;
    /* the public model's 27 faces at >= 0.5 (the reference's count), the same in both files */
    ck_assert_int_eq(count_of(out, "\"score\""), 27);
    char *nl2 = strchr(nl + 1, '\n');
    if (nl2) *nl2 = 0;
    const char *dj = strstr(out, "\"detections\""), *dp = strstr(nl + 1, "\"detections\"");
    ck_assert_msg(dj && dp && !strcmp(dj, dp), "the PNG's detections differ from the JPEG's:\n%.300s\n%.300s", dj, dp);
    /* annotated images under the inputs' relative paths: no collision between the two photo.* */
    snprintf(args, sizeof args, "--weights %s --out-dir %s/out %s/a %s/b", weights, dir, dir, dir);
    ck_assert_int_eq(run_app(args, out, sizeof out, errs, sizeof errs), 0);
    snprintf(cmd, sizeof cmd, "test -s %s/out%s/a/photo.jpg && test -s %s/out%s/b/c/photo.png.jpg", dir, dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    /* aligned crops, one per face at >= 0.5, named after the input */
    snprintf(args, sizeof args, "--weights %s --crops %s/crops %s/a/photo.jpg", weights, dir, dir);
    ck_assert_int_eq(run_app(args, out, sizeof out, errs, sizeof errs), 0);
    snprintf(cmd, sizeof cmd, "test $(find %s/crops -name 'photo_face*.jpg' | wc -l) -eq 27 && test -s %s/crops%s/a/photo_face26.jpg",
             dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    /* an empty folder is an error that names it; the others still run */
    snprintf(args, sizeof args, "--weights %s %s/empty %s/a", weights, dir, dir);
    ck_assert_int_eq(run_app(args, out, sizeof out, errs, sizeof errs), 1);
    ck_assert_msg(strstr(errs, "/empty") != NULL, "%s", errs);
    ck_assert_msg(strstr(out, "27 faces (score >= 0.50)") != NULL, "%s", out);
    /* raw BGR frames on standard input (as ffmpeg -f rawvideo -pix_fmt bgr24 writes them): two whole
     * frames, then a cut one that is reported */
    ck_assert_int_eq(image_load_jpeg(image, &img, &err), ERR_OK);
    snprintf(cmd, sizeof cmd, "%s/frames.bgr", dir);
    FILE *raw = fopen(cmd, "wb");
    size_t frame_bytes = (size_t)img.width * img.height * 3;
    for (int k = 0; k < 2; k++) ck_assert_uint_eq(fwrite(img.bgr, 1, frame_bytes, raw), frame_bytes);
    ck_assert_uint_eq(fwrite(img.bgr, 1, 1000, raw), 1000);
    fclose(raw);
    snprintf(args, sizeof args, "--weights %s --raw %dx%d - < %s", weights, img.width, img.height, cmd);
    image_free(&img);
    ck_assert_int_eq(run_app(args, out, sizeof out, errs, sizeof errs), 1);
    ck_assert_msg(strstr(out, "stdin#0: 27 faces") && strstr(out, "stdin#1: 27 faces") && !strstr(out, "stdin#2"), "%s", out);
    ck_assert_msg(strstr(errs, "frame 2: cut frame") != NULL, "%s", errs);
    ck_assert_int_eq(run_app("--raw 0x5 -", out, sizeof out, errs, sizeof errs), 2);
    /* values out of range are refused with the range */
    ck_assert_int_eq(run_app("--conf 1.5 x.jpg", out, sizeof out, errs, sizeof errs), 2);
    ck_assert_msg(strstr(errs, "0 to 1") != NULL, "%s", errs);
    ck_assert_int_eq(run_app("--nms -0.1 x.jpg", out, sizeof out, errs, sizeof errs), 2);
    ck_assert_int_eq(run_app("--long-side 8 x.jpg", out, sizeof out, errs, sizeof errs), 2);
    ck_assert_int_eq(run_app("--threads 0 x.jpg", out, sizeof out, errs, sizeof errs), 2);
    /* a file that is neither JPEG nor PNG is named with its first bytes */
    snprintf(args, sizeof args, "--weights %s %s/a/notes.txt", weights, dir);
    ck_assert_int_eq(run_app(args, out, sizeof out, errs, sizeof errs), 1);
    ck_assert_msg(strstr(errs, "not a JPEG, PNG or WebP") != NULL, "%s", errs);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(aligned_crops_put_landmarks_on_the_template)
{
    /* landmarks = the template under a known similarity (scale 2.5, 25 degrees, shift): the fit
     * recovers its inverse */
    const float *tpl = face_align_template;
    double scale = 2.5, th = 25 * M_PI / 180, ca = scale * cos(th), sa = scale * sin(th), tx = 150, ty = 80;
    float lm[10];
    for (int i = 0; i < 5; i++) {
        lm[2 * i] = (float)(ca * tpl[2 * i] - sa * tpl[2 * i + 1] + tx);
        lm[2 * i + 1] = (float)(sa * tpl[2 * i] + ca * tpl[2 * i + 1] + ty);
    }
    double m[6];
    Error err = {0};
    ck_assert_int_eq(face_similarity(lm, tpl, m, &err), ERR_OK);
    for (int i = 0; i < 5; i++) {
        double u = m[0] * lm[2 * i] + m[1] * lm[2 * i + 1] + m[2], v = m[3] * lm[2 * i] + m[4] * lm[2 * i + 1] + m[5];
        ck_assert_double_eq_tol(u, tpl[2 * i], 1e-3);
        ck_assert_double_eq_tol(v, tpl[2 * i + 1], 1e-3);
    }
    /* the warp: bright discs at the landmarks of a black image come out on the template's points */
    Image img, crop;
    ck_assert_int_eq(image_alloc(&img, 480, 420, &err), ERR_OK);
    memset(img.bgr, 0, (size_t)img.width * img.height * 3);
    static const uint8_t white[3] = {255, 255, 255};
    for (int i = 0; i < 5; i++) image_draw_disc(&img, (int)lrintf(lm[2 * i]), (int)lrintf(lm[2 * i + 1]), 4, white);
    ck_assert_int_eq(face_align_crop(&img, lm, &crop, &err), ERR_OK);
    ck_assert_int_eq(crop.width, FACE_ALIGN_SIZE);
    for (int i = 0; i < 5; i++) {
        double sw = 0, su = 0, sv = 0;
        int cu = (int)lrintf(tpl[2 * i]), cv = (int)lrintf(tpl[2 * i + 1]);
        for (int v = cv - 5; v <= cv + 5; v++)
            for (int u = cu - 5; u <= cu + 5; u++) {
                double w = crop.bgr[((size_t)v * crop.width + u) * 3];
                sw += w, su += w * u, sv += w * v;
            }
        ck_assert_double_gt(sw, 0);
        ck_assert_msg(fabs(su / sw - tpl[2 * i]) < 1.0 && fabs(sv / sw - tpl[2 * i + 1]) < 1.0,
                      "point %d lands at (%.2f, %.2f), template (%.2f, %.2f)", i, su / sw, sv / sw, tpl[2 * i],
                      tpl[2 * i + 1]);
    }
    image_free(&crop);
    image_free(&img);
    float same[10] = {5, 5, 5, 5, 5, 5, 5, 5, 5, 5};
    ck_assert_int_eq(face_similarity(same, tpl, m, &err), ERR_ARG);
}
END_TEST

/* The public library as an application uses it: make install into a temporary prefix, the example
 * built with pkg-config against that copy, and the Python binding over libretina.so; both find what
 * the C API finds in-process. */
START_TEST(public_library_installs_links_and_binds)
{
#if defined(__SANITIZE_ADDRESS__)
    printf("SKIP install test: sanitizer build (the installed library would need the sanitizer runtime)\n");
    return;
#endif
    char ib[512];
    const char *image = shared_path("reference/retinaface_mnet025/test.jpg", ib, sizeof ib);
    const char *build = getenv("RETINA_BUILD");
    if (!image || !build || access("apps/example/detect_faces.c", R_OK) || system("pkg-config --version >/dev/null 2>&1")) {
        printf("SKIP install test: needs ../shared, RETINA_BUILD, the repository root and pkg-config\n");
        return;
    }
    /* in-process, through the public API */
    Image img;
    Error err = {0};
    ck_assert_int_eq(image_load_jpeg(image, &img, &err), ERR_OK);
    char msg[256];
    retina_detector *d = retina_create(NULL, NULL, NULL, msg, sizeof msg);
    ck_assert_msg(d != NULL, "%s", msg);
    retina_face *faces;
    int n;
    ck_assert_int_eq(retina_detect(d, img.bgr, img.width, img.height, 3 * img.width, RETINA_BGR, &faces, &n, msg, sizeof msg), 0);
    ck_assert_int_gt(n, 0);
    char expect[8192] = "";
    for (int i = 0; i < n; i++) {
        char line[128];
        snprintf(line, sizeof line, "%.4f %.1f %.1f %.1f %.1f\n", faces[i].score, faces[i].box[0], faces[i].box[1],
                 faces[i].box[2], faces[i].box[3]);
        strncat(expect, line, sizeof expect - strlen(expect) - 1);
    }
    /* bad arguments are refused with a message, not a crash */
    retina_face *none;
    int zero;
    ck_assert_int_ne(retina_detect(d, img.bgr, img.width, img.height, img.width, RETINA_BGR, &none, &zero, msg, sizeof msg), 0);
    ck_assert(none == NULL && zero == 0);
    ck_assert_msg(strstr(msg, "stride") != NULL, "%s", msg);
    /* a batch of two: each image's faces, the same as one at a time */
    const uint8_t *batch_px[2] = {img.bgr, img.bgr};
    int widths[2] = {img.width, img.width}, heights[2] = {img.height, img.height}, strides[2] = {3 * img.width, 3 * img.width};
    retina_face *batch_faces[2];
    int counts[2];
    ck_assert_int_eq(retina_detect_batch(d, 2, batch_px, widths, heights, strides, RETINA_BGR, batch_faces, counts, msg,
                                         sizeof msg), 0);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(counts[k], n);
        ck_assert(!memcmp(batch_faces[k], faces, sizeof *faces * (size_t)n));
        retina_free_faces(batch_faces[k]);
    }
    retina_options bad = retina_default_options();
    bad.conf_threshold = 2;
    ck_assert_ptr_null(retina_create(NULL, NULL, &bad, msg, sizeof msg));
    retina_destroy(d);
    /* installed, and linked by pkg-config */
    char dir[] = "/tmp/retina_installXXXXXX", cmd[8192];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof cmd,
             "make -s install BUILD=%s PREFIX=%s >/dev/null && cc -o %s/ex apps/example/detect_faces.c "
             "$(PKG_CONFIG_PATH=%s/lib/pkgconfig pkg-config --cflags --libs retina) -ljpeg && %s/ex %s > %s/ex.txt",
             build, dir, dir, dir, dir, image, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/ex.txt", dir);
    static char got[1 << 16];
    FILE *f = fopen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t len = fread(got, 1, sizeof got - 1, f);
    got[len] = 0;
    fclose(f);
    char *body = strchr(got, '\n');
    ck_assert_ptr_nonnull(body);
    ck_assert_str_eq(body + 1, expect);
    /* the Python binding, where Python 3 with numpy is installed */
    if (system("python3 -c 'import numpy' >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "%s/pixels.bgr", dir);
        f = fopen(cmd, "wb");
        ck_assert_uint_eq(fwrite(img.bgr, 3, (size_t)img.width * img.height, f), (size_t)img.width * img.height);
        fclose(f);
        snprintf(cmd, sizeof cmd,
                 "RETINA_LIB=%s/lib/libretina.so PYTHONPATH=apps/python python3 tests/check_binding.py %s/pixels.bgr %d %d "
                 "> %s/py.txt",
                 dir, dir, img.width, img.height, dir);
        ck_assert_int_eq(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "%s/py.txt", dir);
        f = fopen(cmd, "r");
        len = fread(got, 1, sizeof got - 1, f);
        got[len] = 0;
        fclose(f);
        ck_assert_int_eq(strncmp(got, expect, strlen(expect)), 0);
        ck_assert_ptr_nonnull(strstr(got, "crop "));
    } else {
        printf("SKIP Python binding: python3 with numpy not installed\n");
    }
    retina_free_faces(faces);
    image_free(&img);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A JPEG carrying an EXIF orientation tag (APP1 written by libexif, pixels by libjpeg). */
static void write_jpeg_with_orientation(const char *path, const Image *img, int orientation)
{
    ExifData *ed = exif_data_new();
    exif_data_set_byte_order(ed, EXIF_BYTE_ORDER_INTEL);
    ExifEntry *e = exif_entry_new();
    exif_content_add_entry(ed->ifd[EXIF_IFD_0], e);
    exif_entry_initialize(e, EXIF_TAG_ORIENTATION);
    exif_set_short(e->data, EXIF_BYTE_ORDER_INTEL, (ExifShort)orientation);
    unsigned char *exif = NULL;
    unsigned int exif_len = 0;
    exif_data_save_data(ed, &exif, &exif_len);
    ck_assert_ptr_nonnull(exif);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)img->width, c.image_height = (JDIMENSION)img->height;
    c.input_components = 3, c.in_color_space = JCS_EXT_BGR;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    jpeg_write_marker(&c, JPEG_APP0 + 1, exif, exif_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = img->bgr + (size_t)c.next_scanline * img->width * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
    free(exif);
    exif_entry_unref(e);
    exif_data_unref(ed);
}

START_TEST(orientation_and_webp)
{
    /* where each orientation puts the stored image's top-left and top-right pixels (EXIF's
     * definitions: 6 is shown turned 90 degrees clockwise), for a 4x2 image */
    static const int W = 4, H = 2;
    static const int where[9][4] = {{0}, {0, 0, 3, 0}, {3, 0, 0, 0}, {3, 1, 0, 1}, {0, 1, 3, 1},
                                    {0, 0, 0, 3}, {1, 0, 1, 3}, {1, 3, 1, 0}, {0, 3, 0, 0}};
    Error err = {0};
    for (int o = 1; o <= 8; o++) {
        Image img;
        ck_assert_int_eq(image_alloc(&img, W, H, &err), ERR_OK);
        memset(img.bgr, 0, (size_t)W * H * 3);
        img.bgr[0] = 10;                   /* top-left */
        img.bgr[(size_t)(W - 1) * 3] = 20; /* top-right */
        ck_assert_int_eq(image_orient(&img, o, &err), ERR_OK);
        ck_assert_int_eq(img.width, o >= 5 ? H : W);
        ck_assert_int_eq(img.bgr[((size_t)where[o][1] * img.width + where[o][0]) * 3], 10);
        ck_assert_int_eq(img.bgr[((size_t)where[o][3] * img.width + where[o][2]) * 3], 20);
        image_free(&img);
    }
    char ib[512];
    const char *image = shared_path("reference/retinaface_mnet025/test.jpg", ib, sizeof ib);
    if (!image) {
        printf("SKIP EXIF and WebP files: ../shared absent\n");
        return;
    }
    Image img, got;
    ck_assert_int_eq(image_load_jpeg(image, &img, &err), ERR_OK);
    char dir[] = "/tmp/retina_orientXXXXXX", path[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    /* a phone's portrait photo: stored sideways, tagged 6; loaded as shown */
    snprintf(path, sizeof path, "%s/sideways.jpg", dir);
    write_jpeg_with_orientation(path, &img, 6);
    ck_assert_int_eq(image_exif_orientation(path), 6);
    ck_assert_int_eq(image_load(path, &got, &err), ERR_OK);
    ck_assert_int_eq(got.width, img.height);
    ck_assert_int_eq(got.height, img.width);
    image_free(&got);
    ck_assert_int_eq(image_load_jpeg(path, &got, &err), ERR_OK); /* the stored pixels, for labels */
    ck_assert_int_eq(got.width, img.width);
    image_free(&got);
    ck_assert_int_eq(image_exif_orientation(image), 1);
    /* lossless WebP decodes to the same pixels */
    uint8_t *webp = NULL;
    size_t len = WebPEncodeLosslessBGR(img.bgr, img.width, img.height, img.width * 3, &webp);
    ck_assert_uint_gt(len, 0);
    snprintf(path, sizeof path, "%s/photo.webp", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(webp, 1, len, f), len);
    fclose(f);
    WebPFree(webp);
    ck_assert_int_eq(image_load(path, &got, &err), ERR_OK);
    ck_assert_int_eq(got.width, img.width);
    ck_assert(!memcmp(got.bgr, img.bgr, (size_t)img.width * img.height * 3));
    image_free(&got);
    /* a cut WebP is an error naming the file */
    f = fopen(path, "r+b");
    ck_assert_int_eq(ftruncate(fileno(f), 40), 0);
    fclose(f);
    ck_assert_int_ne(image_load(path, &got, &err), ERR_OK);
    ck_assert_msg(strstr(err.msg, path) != NULL, "%s", err.msg);
    image_free(&img);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    ck_assert_int_eq(system(path), 0);
}
END_TEST

START_TEST(pyramid_and_flip_merge_by_nms)
{
    Detection d = {.box = {10, 20, 30, 40}, .score = 0.9f, .landmarks = {12, 25, 28, 25, 20, 30, 14, 35, 26, 35}};
    Detection m = d;
    detections_unmirror(&m, 1, 100);
    ck_assert_float_eq(m.box[0], 69);
    ck_assert_float_eq(m.box[2], 89);
    ck_assert_float_eq(m.box[1], 20);
    /* the left eye of the mirrored face is the mirror of the right eye */
    ck_assert_float_eq(m.landmarks[0], 99 - 28);
    ck_assert_float_eq(m.landmarks[2], 99 - 12);
    ck_assert_float_eq(m.landmarks[6], 99 - 26);
    ck_assert_float_eq(m.landmarks[8], 99 - 14);
    detections_unmirror(&m, 1, 100);
    ck_assert(!memcmp(&m, &d, sizeof d));
    char wb[512], ib[512], jb[512];
    const char *weights = shared_path("weights/mobilenet0.25_Final.pth", wb, sizeof wb);
    const char *image = shared_path("reference/retinaface_mnet025/test.jpg", ib, sizeof ib);
    const char *json = shared_path("reference/retinaface_mnet025/infer_detections.json", jb, sizeof jb);
    if (!weights || !image || !json) {
        printf("SKIP pyramid: ../shared absent\n");
        return;
    }
    Detector det;
    Error err = {0};
    ck_assert_int_eq(detector_init(&det, "mobilenet0.25", weights, 2, false, &err), ERR_OK);
    Image img;
    ck_assert_int_eq(image_load_jpeg(image, &img, &err), ERR_OK);
    PostprocessOptions opt = postprocess_defaults();
    opt.conf_threshold = 0.5f;
    Detection *plain, *one, *both;
    int n_plain, n_one, n_both;
    ck_assert_int_eq(detector_detect(&det, &img, 1.0f, &opt, &plain, &n_plain, NULL, &err), ERR_OK);
    const float unit = 1.0f, three[3] = {0.75f, 1.0f, 1.5f};
    ck_assert_int_eq(detector_detect_pyramid(&det, &img, &unit, 1, false, &opt, &one, &n_one, &err), ERR_OK);
    ck_assert_int_eq(n_one, n_plain);
    ck_assert(!memcmp(one, plain, sizeof *one * (size_t)n_one)); /* one scale, no flip: the plain detector */
    ck_assert_int_eq(detector_detect_pyramid(&det, &img, three, 3, true, &opt, &both, &n_both, &err), ERR_OK);
    static RefDet ref[1000];
    int n_ref = read_reference(json, ref, 1000), found = 0, strong = 0;
    for (int r = 0; r < n_ref; r++) {
        if (ref[r].score < 0.5f) continue;
        strong++;
        bool hit = false;
        for (int k = 0; k < n_both && !hit; k++) hit = iou(ref[r].box, both[k].box) >= 0.5f;
        found += hit;
    }
    printf("  pyramid 0.75,1,1.5 + flip: %d detections >= 0.5 (plain %d); %d of the %d reference faces\n", n_both, n_plain,
           found, strong);
    ck_assert_int_eq(found, strong);
    for (int k = 1; k < n_both; k++) ck_assert(both[k - 1].score >= both[k].score);
    ck_assert_int_ne(detector_detect_pyramid(&det, &img, three, 0, false, &opt, &both, &n_both, &err), ERR_OK);
    free(plain), free(one), free(both);
    image_free(&img);
    detector_free(&det);
}
END_TEST

Suite *detect_suite(void)
{
    Suite *s = suite_create("detect");
    TCase *tc = tcase_create("pipeline");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, priors_match_reference);
    tcase_add_test(tc, priors_with_aspect_ratios);
    tcase_add_test(tc, nms_suppresses_overlaps_only);
    tcase_add_test(tc, detections_match_reference);
    tcase_add_test(tc, batch_detection_equals_single);
    tcase_add_test(tc, builtin_model_finds_the_reference_faces);
    tcase_add_test(tc, detect_app_reports_bad_input_and_goes_on);
    tcase_add_test(tc, detect_app_inputs_and_defaults);
    tcase_add_test(tc, aligned_crops_put_landmarks_on_the_template);
    tcase_add_test(tc, public_library_installs_links_and_binds);
    tcase_add_test(tc, orientation_and_webp);
    tcase_add_test(tc, pyramid_and_flip_merge_by_nms);
    suite_add_tcase(s, tc);
    return s;
}
