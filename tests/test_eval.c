/* WIDER FACE evaluation: the .mat reader, the protocol on hand-made cases, the official numbers on
 * the shared prediction set, and end to end from images with the imported model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "detection/detector.h"
#include "detection/matfile.h"
#include "detection/train_data.h"
#include "detection/wider_eval.h"
#include "detection/wider_val.h"
#include "tests/suites.h"

/* ---- crafted MAT-files: a writer just big enough for the reader's corner cases ---- */
typedef struct {
    unsigned char b[1 << 16];
    size_t n;
} MatBuf;

static void mb_put(MatBuf *m, const void *p, size_t n)
{
    ck_assert_uint_le(m->n + n, sizeof m->b);
    memcpy(m->b + m->n, p, n);
    m->n += n;
}
static void mb_u32(MatBuf *m, uint32_t v) { mb_put(m, &v, 4); }
static void mb_pad(MatBuf *m)
{
    while (m->n % 8) m->b[m->n++] = 0;
}
/* A data element: tag, bytes, padding. */
static void mb_elem(MatBuf *m, uint32_t type, const void *p, uint32_t n)
{
    mb_u32(m, type), mb_u32(m, n), mb_put(m, p, n), mb_pad(m);
}
/* Opens an miMATRIX element (class, dims, name: "" inside a cell); returns where its size goes. */
static size_t mb_var(MatBuf *m, const char *name, int cls, int ndim, const int32_t *dims)
{
    mb_u32(m, 14);
    size_t at = m->n;
    mb_u32(m, 0);
    uint32_t flags[2] = {(uint32_t)cls, 0};
    mb_elem(m, 6, flags, 8);
    mb_elem(m, 5, dims, (uint32_t)(4 * ndim));
    mb_elem(m, 1, name, (uint32_t)strlen(name));
    return at;
}
static size_t mb_matrix(MatBuf *m, int cls, int ndim, const int32_t *dims) { return mb_var(m, "", cls, ndim, dims); }
static void mb_close(MatBuf *m, size_t at)
{
    uint32_t size = (uint32_t)(m->n - at - 4);
    memcpy(m->b + at, &size, 4);
}
static void mb_string(MatBuf *m, const char *s)
{
    int32_t dims[2] = {1, (int32_t)strlen(s)};
    size_t at = mb_matrix(m, 4, 2, dims);
    uint16_t u[256];
    for (size_t i = 0; i < strlen(s); i++) u[i] = (uint16_t)s[i];
    mb_elem(m, 4, u, (uint32_t)(2 * strlen(s)));
    mb_close(m, at);
}
static void mb_write(const MatBuf *m, const char *path)
{
    unsigned char head[128];
    memset(head, ' ', sizeof head);
    memcpy(head, "MATLAB 5.0 MAT-file, crafted by a test", 38);
    memset(head + 116, 0, 8);
    head[124] = 0, head[125] = 1, head[126] = 'I', head[127] = 'M';
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(head, 1, 128, f), 128);
    ck_assert_uint_eq(fwrite(m->b, 1, m->n, f), m->n);
    fclose(f);
}

START_TEST(crafted_matfiles_are_refused)
{
    static MatBuf m;
    char path[] = "/tmp/retina_matXXXXXX.mat";
    int fd = mkstemps(path, 4);
    close(fd);
    MatFile mf;
    Error err = {0};
    /* a char array claiming 1000 rows for 2 characters (wrote past its buffer) */
    m.n = 0;
    int32_t tall[2] = {1000, 1};
    size_t at = mb_var(&m, "s", 4, 2, tall);
    uint16_t two[2] = {'a', 'b'};
    mb_elem(&m, 4, two, 4);
    mb_close(&m, at);
    mb_write(&m, path);
    ck_assert_int_eq(matfile_read(path, &mf, &err), ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, path) != NULL, "%s", err.msg);
    /* dimensions whose product wraps */
    m.n = 0;
    int32_t huge[4] = {65536, 65536, 65536, 65536};
    at = mb_var(&m, "x", 6, 4, huge);
    mb_elem(&m, 9, "\0\0\0\0\0\0\0\0", 8);
    mb_close(&m, at);
    mb_write(&m, path);
    error_clear(&err);
    ck_assert_int_eq(matfile_read(path, &mf, &err), ERR_FORMAT);
    /* a 192-byte file declaring a cell of 2^31 entries (took 68 s and 16 GB) */
    m.n = 0;
    int32_t cells[2] = {46341, 46341};
    at = mb_var(&m, "c", 1, 2, cells);
    mb_close(&m, at);
    mb_write(&m, path);
    error_clear(&err);
    ck_assert_int_eq(matfile_read(path, &mf, &err), ERR_FORMAT);
    /* numeric data shorter than its dimensions */
    m.n = 0;
    int32_t three[2] = {3, 1};
    at = mb_var(&m, "v", 6, 2, three);
    mb_elem(&m, 9, "\0\0\0\0\0\0\0\0", 8);
    mb_close(&m, at);
    mb_write(&m, path);
    error_clear(&err);
    ck_assert_int_eq(matfile_read(path, &mf, &err), ERR_FORMAT);
    /* a well-formed training .mat whose face_bbx_list holds a string where the n x 4 boxes go
     * (read as numbers: SEGV) */
    m.n = 0;
    int32_t one[2] = {1, 1};
    at = mb_var(&m, "event_list", 1, 2, one);
    mb_string(&m, "0--Parade");
    mb_close(&m, at);
    at = mb_var(&m, "file_list", 1, 2, one);
    size_t inner = mb_matrix(&m, 1, 2, one);
    mb_string(&m, "0_Parade_marchingband_1_5");
    mb_close(&m, inner);
    mb_close(&m, at);
    at = mb_var(&m, "face_bbx_list", 1, 2, one);
    inner = mb_matrix(&m, 1, 2, one);
    mb_string(&m, "boxes");
    mb_close(&m, inner);
    mb_close(&m, at);
    mb_write(&m, path);
    error_clear(&err);
    ck_assert_int_eq(matfile_read(path, &mf, &err), ERR_OK); /* the file itself is sound */
    matfile_free(&mf);
    TrainSet set;
    ck_assert_int_eq(trainset_load(path, "/tmp", &set, &err), ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "malformed") != NULL, "%s", err.msg);
    unlink(path);
}
END_TEST

/* A full disk, as RLIMIT_FSIZE makes it (writes past the limit fail with EFBIG once SIGXFSZ is
 * ignored): outputs are whole or absent, and the tools say so and exit 1. */
START_TEST(outputs_survive_a_full_disk)
{
    char gb[512], pb[512], ib[512];
    const char *gt = shared_path("widerface/ground_truth", gb, sizeof gb);
    const char *pred = shared_path("widerface/predictions_mnet025", pb, sizeof pb);
    const char *image = shared_path("reference/retinaface_mnet025/test.jpg", ib, sizeof ib);
    const char *build = getenv("RETINA_BUILD");
    if (!gt || !pred || !image) {
        printf("SKIP full disk: ../shared absent\n");
        return;
    }
    char dir[] = "/tmp/retina_fullXXXXXX", cmd[4096];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    /* the SVG (tens of kB) does not fit in 2 blocks; the JSON (a line) does */
    snprintf(cmd, sizeof cmd,
             "sh -c \"trap '' XFSZ; ulimit -f 2; %s/eval --gt %s --pred %s --events 19--Couple --plot %s/pr.svg "
             "--json %s/ap.json\" >/dev/null 2>%s/err.txt",
             build ? build : "build", gt, pred, dir, dir, dir);
    int rc = system(cmd);
    ck_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    snprintf(cmd, sizeof cmd, "grep -q 'pr.svg: write failed' %s/err.txt && test ! -e %s/pr.svg && test ! -e %s/pr.svg.tmp && "
                              "test -s %s/ap.json", dir, dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    /* build/detect --json: the previous results stay whole when the new ones cannot be written */
    snprintf(cmd, sizeof cmd, "echo previous > %s/dets.json && sh -c \"trap '' XFSZ; ulimit -f 2; %s/detect --json %s/dets.json "
             "--conf 0.02 %s\" >/dev/null 2>%s/err.txt", dir, build ? build : "build", dir, image, dir);
    rc = system(cmd);
    ck_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    snprintf(cmd, sizeof cmd, "grep -q 'dets.json: write failed' %s/err.txt && grep -qx previous %s/dets.json", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(matfile_reads_official_ground_truth)
{
    char buf[512];
    const char *path = shared_path("widerface/ground_truth/wider_face_val.mat", buf, sizeof buf);
    if (!path) {
        printf("SKIP .mat reader: ../shared absent\n");
        return;
    }
    MatFile mf;
    Error err = {0};
    ck_assert_msg(matfile_read(path, &mf, &err) == ERR_OK, "%s", err.msg);
    const MatValue *events = matfile_get(&mf, "event_list");
    ck_assert_ptr_nonnull(events);
    ck_assert_int_eq(events->numel, 61);
    ck_assert_str_eq(mat_cell(events, 0, 0)->str, "0--Parade");
    const MatValue *files = mat_cell(matfile_get(&mf, "file_list"), 0, 0);
    ck_assert_int_eq(files->numel, 115);
    ck_assert_str_eq(mat_cell(files, 0, 0)->str, "0_Parade_marchingband_1_465");
    const MatValue *boxes = mat_cell(mat_cell(matfile_get(&mf, "face_bbx_list"), 0, 0), 0, 0);
    ck_assert_int_eq(boxes->dims[0], 126);
    ck_assert_int_eq(boxes->dims[1], 4);
    /* first face: x y w h = 345 211 4 4, stored column-major */
    ck_assert_double_eq(boxes->re[0], 345);
    ck_assert_double_eq(boxes->re[126], 211);
    ck_assert_double_eq(boxes->re[252], 4);
    matfile_free(&mf);
    error_clear(&err);
    ck_assert_int_eq(matfile_read("tests/data/README.md", &mf, &err), ERR_FORMAT);
}
END_TEST

/* One event, one image: faces A at (0,0,10,10) and B at (50,50,10,10); predictions: A (0.9), a false
 * positive far away (0.8), B (0.7) -> normalised scores 1, 0.5, 0. */
static void hand_made(WiderGt *gt, WiderPreds *p, int *keep, int n_keep)
{
    static double gt_boxes[8] = {0, 0, 10, 10, 50, 50, 10, 10};
    static double boxes[15];
    double init[15] = {0, 0, 10, 10, 0.9, 200, 200, 10, 10, 0.8, 50, 50, 10, 10, 0.7};
    memcpy(boxes, init, sizeof init);
    static WiderGtImage gi;
    static WiderGtEvent ge;
    static WiderPredImage pi;
    static WiderPredEvent pe;
    gi = (WiderGtImage){"img", 2, gt_boxes, {n_keep, n_keep, n_keep}, {keep, keep, keep}};
    ge = (WiderGtEvent){"ev", &gi, 1};
    *gt = (WiderGt){&ge, 1};
    pi = (WiderPredImage){"img", 3, boxes};
    pe = (WiderPredEvent){"ev", &pi, 1};
    *p = (WiderPreds){&pe, 1};
    wider_normalise_scores(p);
}

START_TEST(protocol_hand_made_cases)
{
    WiderGt gt;
    WiderPreds p;
    WiderResult *r = malloc(sizeof *r);
    Error err = {0};
    /* Both faces count: recall 0.5 at precision 1 until the false positive enters (precision 0.5),
     * recall 1 at precision 2/3 at the last threshold: AP = 0.5 * 1 + 0.5 * 2/3. */
    int both[2] = {1, 2};
    hand_made(&gt, &p, both, 2);
    ck_assert_double_eq_tol(p.events[0].images[0].boxes[9], 0.5, 1e-12);
    ck_assert_int_eq(wider_evaluate(&gt, &p, NULL, 0, 0.5, r, &err), ERR_OK);
    ck_assert_double_eq_tol(r->ap[0], 0.5 + 0.5 * 2.0 / 3.0, 1e-12);
    /* B ignored: the detection on it is neither true nor false positive: AP 1. */
    int only_a[1] = {1};
    hand_made(&gt, &p, only_a, 1);
    wider_evaluate(&gt, &p, NULL, 0, 0.5, r, &err);
    ck_assert_double_eq_tol(r->ap[0], 1.0, 1e-12);
    /* The box on A shifted by one pixel has IoU 100/142 = 0.704 (+1 convention): a match at IoU 0.7,
     * a false positive at 0.75, where only B is found, at the last threshold, with precision 1/3. */
    hand_made(&gt, &p, both, 2);
    p.events[0].images[0].boxes[0] = 1, p.events[0].images[0].boxes[1] = 1;
    wider_evaluate(&gt, &p, NULL, 0, 0.7, r, &err);
    ck_assert_double_eq_tol(r->ap[0], 0.5 + 0.5 * 2.0 / 3.0, 1e-12);
    wider_evaluate(&gt, &p, NULL, 0, 0.75, r, &err);
    ck_assert_double_eq_tol(r->ap[0], 0.5 / 3.0, 1e-12);
    /* An image without predictions: its faces count, nothing is found. */
    hand_made(&gt, &p, both, 2);
    p.events[0].images[0].n = 0;
    wider_evaluate(&gt, &p, NULL, 0, 0.5, r, &err);
    ck_assert_double_eq(r->ap[0], 0.0);
    /* No ground-truth faces in the subset: recall is 0/0, AP NaN (as the official script). */
    hand_made(&gt, &p, both, 0);
    wider_evaluate(&gt, &p, NULL, 0, 0.5, r, &err);
    ck_assert(isnan(r->ap[0]) || r->ap[0] == 0.0);
    free(r);
}
END_TEST

START_TEST(ties_keep_file_order)
{
    /* Two predictions of equal score on the same face: the first matches, the second is then a
     * false positive at the same threshold; precision 1/2 at recall 1: AP 0.5. */
    static double gt_boxes[4] = {0, 0, 10, 10};
    double boxes[15] = {0, 0, 10, 10, 0.9, 0, 0, 10, 10, 0.9, 300, 300, 5, 5, 0.1};
    int keep[1] = {1};
    WiderGtImage gi = {"img", 1, gt_boxes, {1, 1, 1}, {keep, keep, keep}};
    WiderGtEvent ge = {"ev", &gi, 1};
    WiderGt gt = {&ge, 1};
    WiderPredImage pi = {"img", 3, boxes};
    WiderPredEvent pe = {"ev", &pi, 1};
    WiderPreds p = {&pe, 1};
    wider_normalise_scores(&p);
    WiderResult *r = malloc(sizeof *r);
    Error err = {0};
    wider_evaluate(&gt, &p, NULL, 0, 0.5, r, &err);
    /* The duplicate is not matched again (the face is already recalled): it stays a proposal. */
    ck_assert_double_eq_tol(r->ap[0], 0.5, 1e-12);
    free(r);
}
END_TEST

START_TEST(malformed_prediction_file_is_named)
{
    char path[] = "/tmp/retina_predXXXXXX.txt";
    int fd = mkstemps(path, 4);
    const char *text = "img\n2\n1 2 3 4 0.5 \n1 2 three 4 0.5\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    WiderPredImage im;
    Error err = {0};
    ck_assert_int_eq(wider_pred_file_read(path, &im, &err), ERR_FORMAT);
    char where[600];
    snprintf(where, sizeof where, "%s:4", path);
    ck_assert_msg(strstr(err.msg, where) != NULL, "%s", err.msg);
    /* an inf score (it silently zeroed the event's AP) */
    FILE *f = fopen(path, "w");
    fputs("img\n2\n1 2 3 4 0.5 \n5 6 7 8 inf \n", f);
    fclose(f);
    error_clear(&err);
    ck_assert_int_eq(wider_pred_file_read(path, &im, &err), ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, where) && strstr(err.msg, "finite"), "%s", err.msg);
    unlink(path);
}
END_TEST

START_TEST(official_numbers_on_shared_predictions)
{
    char gb[512], pb[512];
    const char *gt_dir = shared_path("widerface/ground_truth", gb, sizeof gb);
    const char *pred_dir = shared_path("widerface/predictions_mnet025", pb, sizeof pb);
    if (!gt_dir || !pred_dir) {
        printf("SKIP official evaluation: ../shared absent\n");
        return;
    }
    WiderGt gt;
    WiderPreds p;
    Error err = {0};
    ck_assert_msg(wider_gt_load(gt_dir, &gt, &err) == ERR_OK, "%s", err.msg);
    ck_assert_msg(wider_preds_load(pred_dir, NULL, 0, &p, &err) == ERR_OK, "%s", err.msg);
    wider_normalise_scores(&p);
    WiderResult *r = malloc(sizeof *r);
    ck_assert_int_eq(wider_evaluate(&gt, &p, NULL, 0, 0.5, r, &err), ERR_OK);
    printf("  official protocol: Easy %.6f Medium %.6f Hard %.6f\n", r->ap[0], r->ap[1], r->ap[2]);
    ck_assert_double_eq_tol(r->ap[0], 0.906958, 1e-6);
    ck_assert_double_eq_tol(r->ap[1], 0.881579, 1e-6);
    ck_assert_double_eq_tol(r->ap[2], 0.738286, 1e-6);
    wider_preds_free(&p);
    /* Restricted to one event, scores normalised over its predictions (../shared/README.md). */
    const char *ev[1] = {"19--Couple"};
    ck_assert_int_eq(wider_preds_load(pred_dir, ev, 1, &p, &err), ERR_OK);
    wider_normalise_scores(&p);
    wider_evaluate(&gt, &p, ev, 1, 0.5, r, &err);
    ck_assert_double_eq_tol(r->ap[0], 0.970804, 1e-6);
    ck_assert_double_eq_tol(r->ap[1], 0.930200, 1e-6);
    ck_assert_double_eq_tol(r->ap[2], 0.898121, 1e-6);
    free(r);
    wider_preds_free(&p);
    wider_gt_free(&gt);
}
END_TEST

START_TEST(image_list_from_file_or_tree)
{
    char ib[512], lb[512];
    const char *images = shared_path("widerface/WIDER_val/images", ib, sizeof ib);
    const char *list = shared_path("widerface/WIDER_val/wider_val.txt", lb, sizeof lb);
    if (!images || !list) {
        printf("SKIP image list: ../shared absent\n");
        return;
    }
    WiderImageList a, b;
    Error err = {0};
    ck_assert_int_eq(wider_image_list(images, list, &a, &err), ERR_OK);
    ck_assert_int_eq(wider_image_list(images, NULL, &b, &err), ERR_OK);
    ck_assert_int_eq(a.n, 36);
    ck_assert_int_eq(b.n, 36);
    ck_assert_int_eq(a.n_events, 1);
    ck_assert_str_eq(a.events[0], "19--Couple");
    ck_assert_str_eq(b.events[0], "19--Couple");
    for (int i = 0; i < b.n; i++) {
        bool listed = false;
        for (int k = 0; k < a.n && !listed; k++) listed = !strcmp(a.names[k], b.names[i]);
        ck_assert_msg(listed, "%s", b.names[i]);
        if (i) ck_assert_int_lt(strcmp(b.names[i - 1], b.names[i]), 0); /* the tree scan is sorted */
    }
    wider_image_list_free(&a);
    wider_image_list_free(&b);
    ck_assert_int_ne(wider_image_list("/nonexistent", NULL, &a, &err), ERR_OK);
    ck_assert_msg(strstr(err.msg, "/nonexistent"), "%s", err.msg);
    ck_assert_int_ne(wider_image_list(images, "/nonexistent.txt", &a, &err), ERR_OK);
}
END_TEST

START_TEST(end_to_end_on_real_val_images)
{
    char gb[512], ib[512], lb[512], wb[512];
    const char *gt_dir = shared_path("widerface/ground_truth", gb, sizeof gb);
    const char *images = shared_path("widerface/WIDER_val/images", ib, sizeof ib);
    const char *list = shared_path("widerface/WIDER_val/wider_val.txt", lb, sizeof lb);
    const char *weights = shared_path("weights/mobilenet0.25_Final.pth", wb, sizeof wb);
    if (!gt_dir || !images || !list || !weights) {
        printf("SKIP end-to-end evaluation: ../shared absent\n");
        return;
    }
    char out[] = "/tmp/retina_predsXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(out));
    const char *build = getenv("RETINA_BUILD");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/eval --predict --weights %s --images %s --list %s --out %s 2>/dev/null",
             build ? build : "build", weights, images, list, out);
    ck_assert_int_eq(system(cmd), 0);
    WiderGt gt;
    WiderPreds p;
    Error err = {0};
    const char *ev[1] = {"19--Couple"};
    ck_assert_int_eq(wider_gt_load(gt_dir, &gt, &err), ERR_OK);
    ck_assert_msg(wider_preds_load(out, ev, 1, &p, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_eq(p.events[0].n_images, 36);
    wider_normalise_scores(&p);
    WiderResult *r = malloc(sizeof *r);
    wider_evaluate(&gt, &p, ev, 1, 0.5, r, &err);
    printf("  end to end 19--Couple: Easy %.6f Medium %.6f Hard %.6f (reference 0.971850 0.939535 0.913169)\n",
           r->ap[0], r->ap[1], r->ap[2]);
    ck_assert_double_eq_tol(r->ap[0], 0.9719, 0.003);
    ck_assert_double_eq_tol(r->ap[1], 0.9395, 0.003);
    ck_assert_double_eq_tol(r->ap[2], 0.9132, 0.003);
    free(r);
    wider_preds_free(&p);
    wider_gt_free(&gt);
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* eval --predict --scales / --flip: one factor of 1 gives the plain prediction's files byte for byte; a
 * pyramid with the mirror image gives other detections, in files the loader reads; bad factors are refused. */
START_TEST(prediction_with_test_time_augmentation)
{
    char ib[512], lb[512];
    const char *images = shared_path("widerface/WIDER_val/images", ib, sizeof ib);
    const char *val_list = shared_path("widerface/WIDER_val/wider_val.txt", lb, sizeof lb);
    if (!images || !val_list) {
        printf("SKIP prediction with test-time augmentation: ../shared absent\n");
        return;
    }
    char dir[] = "/tmp/retina_ttaXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char list[600], line[1024];
    snprintf(list, sizeof list, "%s/list.txt", dir);
    FILE *in = fopen(val_list, "r"), *out = fopen(list, "w");
    ck_assert(in && out);
    for (int k = 0; k < 3 && fgets(line, sizeof line, in); k++) fputs(line, out);
    fclose(in), fclose(out);
    const char *build = getenv("RETINA_BUILD");
    static const char *variants[3] = {"", "--scales 1", "--scales 0.5,1 --flip"};
    char cmd[4096];
    for (int v = 0; v < 3; v++) {
        snprintf(cmd, sizeof cmd, "%s/eval --predict --images %s --list %s --out %s/p%d %s 2>/dev/null",
                 build ? build : "build", images, list, dir, v, variants[v]);
        ck_assert_msg(system(cmd) == 0, "%s", cmd);
    }
    snprintf(cmd, sizeof cmd, "diff -r %s/p0 %s/p1 >/dev/null", dir, dir);
    ck_assert_msg(system(cmd) == 0, "--scales 1 changed the predictions");
    const char *ev[1] = {"19--Couple"};
    WiderPreds plain, tta;
    Error err = {0};
    snprintf(cmd, sizeof cmd, "%s/p0", dir);
    ck_assert_msg(wider_preds_load(cmd, ev, 1, &plain, &err) == ERR_OK, "%s", err.msg);
    snprintf(cmd, sizeof cmd, "%s/p2", dir);
    ck_assert_msg(wider_preds_load(cmd, ev, 1, &tta, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_eq(plain.events[0].n_images, 3);
    ck_assert_int_eq(tta.events[0].n_images, 3);
    int n_plain = 0, n_tta = 0;
    for (int i = 0; i < 3; i++) n_plain += plain.events[0].images[i].n, n_tta += tta.events[0].images[i].n;
    ck_assert_msg(n_tta > n_plain, "the pyramid and the mirror image: %d detections, plain %d", n_tta, n_plain);
    wider_preds_free(&plain);
    wider_preds_free(&tta);
    snprintf(cmd, sizeof cmd, "%s/eval --predict --images %s --out %s/p3 --scales 0.5,9 2>/dev/null",
             build ? build : "build", images, dir);
    int rc = system(cmd);
    ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "--scales 0.5,9 was not refused");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(fddb_output_format)
{
    char wb[512], ib[512];
    const char *weights = shared_path("weights/mobilenet0.25_Final.pth", wb, sizeof wb);
    const char *image = shared_path("reference/retinaface_mnet025/test.jpg", ib, sizeof ib);
    if (!weights || !image) {
        printf("SKIP FDDB output: ../shared absent\n");
        return;
    }
    char dir[] = "/tmp/retina_fddbXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char cmd[4096];
    const char *build = getenv("RETINA_BUILD");
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/folds %s/img/2002/08 && cp %s %s/img/2002/08/img_1.jpg && "
             "printf '2002/08/img_1\\n2002/08/missing\\n' > %s/folds/FDDB-fold-01.txt && "
             "%s/eval --predict --fddb --folds %s/folds --images %s/img --weights %s --out %s/out 2>/dev/null",
             dir, dir, image, dir, dir, build ? build : "build", dir, dir, weights, dir);
    /* One image is missing: reported, exit status 1, the other image still written. */
    ck_assert_int_ne(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/out/fold-01-out.txt", dir);
    FILE *f = fopen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "2002/08/img_1\n");
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_int_eq(atoi(line), 150);
    float x, y, w, h, s;
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_int_eq(sscanf(line, "%f %f %f %f %f", &x, &y, &w, &h, &s), 5);
    ck_assert_float_eq_tol(x, 653.19f, 0.01f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* build/eval --labels: per-class AP of the built-in face model on the val subset's own WIDER text labels
 * (all 97 faces, no difficulty subsets) at IoU 0.3 and 0.5 (0.9046 and 0.8677 when written). */
START_TEST(per_class_ap_on_labels)
{
    char lb[512];
    const char *labels = shared_path("widerface/WIDER_val/val_bbx_gt_subset.txt", lb, sizeof lb);
    const char *build = getenv("RETINA_BUILD");
    if (!labels || !build) {
        printf("SKIP per-class AP: needs ../shared and RETINA_BUILD\n");
        return;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/eval --labels %s --iou 0.3,0.5 2>/dev/null", build, labels);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char line[512];
    double ap3 = -1, ap5 = -1;
    int objects = 0;
    while (fgets(line, sizeof line, p))
        if (!strncmp(line, "face ", 5)) sscanf(line + 5, "%d %*d %lf %lf", &objects, &ap3, &ap5);
    ck_assert_int_eq(pclose(p), 0);
    printf("  per-class AP: face, %d objects: %.4f at IoU 0.3, %.4f at 0.5\n", objects, ap3, ap5);
    ck_assert_int_eq(objects, 97);
    ck_assert(ap5 > 0.8 && ap3 >= ap5 && ap3 <= 1);
}
END_TEST

Suite *eval_suite(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("widerface");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, per_class_ap_on_labels);
    tcase_add_test(tc, matfile_reads_official_ground_truth);
    tcase_add_test(tc, crafted_matfiles_are_refused);
    tcase_add_test(tc, outputs_survive_a_full_disk);
    tcase_add_test(tc, protocol_hand_made_cases);
    tcase_add_test(tc, ties_keep_file_order);
    tcase_add_test(tc, image_list_from_file_or_tree);
    tcase_add_test(tc, malformed_prediction_file_is_named);
    tcase_add_test(tc, official_numbers_on_shared_predictions);
    tcase_add_test(tc, end_to_end_on_real_val_images);
    tcase_add_test(tc, fddb_output_format);
    tcase_add_test(tc, prediction_with_test_time_augmentation);
    suite_add_tcase(s, tc);
    return s;
}
