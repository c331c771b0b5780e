/* build/detect: face detection on JPEG images with a RetinaFace model. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "detection/detector.h"
#include "detection/detect_pyramid.h"
#include "detection/face_align.h"
#include "detection/output_file.h"
#include "models/builtin_weights.h"
#include "models/summary.h"
#include "autograd/conv2d_avx2.h"
#include "tensor/clock.h"
#include "tensor/sgemm.h"

static void usage(FILE *f)
{
    char variants[256];
    fprintf(f,
            "usage: build/detect [options] IMAGE|DIR...\n"
            "Detects faces (boxes, scores, 5 landmarks) with RetinaFace; one process, model loaded once.\n"
            "IMAGE is a JPEG (EXIF orientation applied), PNG or WebP; a DIR is walked recursively for .jpg,\n"
            ".jpeg, .png and .webp files. Without\n"
            "--json or --out-dir, prints each image's faces (score, box x1 y1 x2 y2).\n\n"
            "  --model NAME       variant, default mobilenet0.25; one of\n"
            "                     %s\n"
            "  --weights FILE     .safetensors or PyTorch .pth/.tar weights (default: the built-in\n"
            "                     MobileNet-0.25 model trained by this project, models/weights/README.md)\n"
            "  --conf X           report detections scoring at least X, 0 to 1 (default 0.5; the WIDER\n"
            "                     protocol's 0.02 is build/eval's default)\n"
            "  --nms X            NMS IoU threshold, 0 to 1 (default 0.4)\n"
            "  --top-k N          candidates before NMS (default 5000)\n"
            "  --keep-top-k N     detections kept after NMS (default 750)\n"
            "  --vis-thres X      score from which detections are drawn, 0 to 1 (default: --conf)\n"
            "  --long-side N      resize so the long side is N pixels (16 or more); 0 keeps the original\n"
            "                     size. Default: images longer than 1280 pixels are shrunk to 1280 (a face\n"
            "                     much larger than the largest anchors, 512 pixels, is found in pieces)\n"
            "  --json FILE        write detections as JSON, one object per image per line ('-' = stdout)\n"
            "  --out-dir DIR      write annotated JPEGs (boxes, scores, landmarks) into DIR, under the\n"
            "                     input's relative path (a/photo.jpg -> DIR/a/photo.jpg)\n"
            "  --crops DIR        write each face (score >= --vis-thres) aligned by its five landmarks to the\n"
            "                     112x112 five-point template of face recognisers, as\n"
            "                     DIR/<input path without extension>_face<k>.jpg\n"
            "  --raw WxH          inputs are streams of raw frames, W x H pixels of 3 bytes (BGR), one\n"
            "                     after the other; '-' reads standard input. Video:\n"
            "                     ffmpeg -i in.mp4 -f rawvideo -pix_fmt bgr24 - | build/detect --raw 1280x720 -\n"
            "                     (frames are named INPUT#N, N from 0)\n"
            "  --scales A,B,...   test-time image pyramid: detect at each factor times the size chosen by\n"
            "                     --long-side (e.g. 0.5,1,1.5; up to 8) and merge by NMS\n"
            "  --flip             also detect on the mirror image, merged the same way\n"
            "  --batch N          images whose network input has one size go through the network N at a\n"
            "                     time (default 1 on the CPU, where batching measured no faster; 8 with\n"
            "                     --gpu; 1 with --raw, where each frame is reported at once); every image\n"
            "                     gets the detections it gets alone. With more than one image, a summary\n"
            "                     line with images/s goes to standard error\n"
            "  --threads N        CPU threads (default: all cores)\n"
            "  --cpu | --gpu      device for the network (default cpu)\n"
            "  --benchmark N      run the network N times on the first image after warm-up and print\n"
            "                     'forward median X ms', 'postprocess median Y ms', the input size and\n"
            "                     the forward's min and 90th percentile\n"
            "                     (RETINA_PROFILE=1 adds a per-op time table, RETINA_PROFILE=layer one\n"
            "                     row per op and layer shape)\n"
            "  --summary WxH      print the model's layers, output shapes, parameters and FLOPs at WxH\n"
            "  -h, --help         this help\n",
            retinaface_variant_list(variants, sizeof variants));
}

static void json_float_array(FILE *f, const float *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ", %.9g" : "%.9g", v[i]);
    fputc(']', f);
}

/* cfg: the model, whose class names go into each detection when it has more than one object class. */
static void write_json(FILE *f, const char *image, const Image *img, const Detection *d, int n, const RetinaConfig *cfg)
{
    bool landmarks = cfg->landmarks;
    fprintf(f, "{\"image\": \"");
    for (const char *p = image; *p; p++) {
        if ((unsigned char)*p < 0x20) {
            fprintf(f, "\\u%04x", (unsigned char)*p);
            continue;
        }
        if (*p == '"' || *p == '\\') fputc('\\', f);
        fputc(*p, f);
    }
    fprintf(f, "\", \"width\": %d, \"height\": %d, \"detections\": [", img->width, img->height);
    for (int i = 0; i < n; i++) {
        fprintf(f, i ? ", {\"box\": " : "{\"box\": ");
        json_float_array(f, d[i].box, 4);
        fprintf(f, ", \"score\": %.9g", d[i].score);
        if (cfg->num_classes > 2) {
            char buf[32];
            fprintf(f, ", \"class\": \"%s\"", retinaface_class_name(cfg, d[i].label, buf, sizeof buf));
        }
        if (landmarks) {
            fprintf(f, ", \"landmarks\": ");
            json_float_array(f, d[i].landmarks, 10);
        }
        fputc('}', f);
    }
    fprintf(f, "]}\n");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_string(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* DIR/<the input's path, made relative>, with .jpg appended unless it ends so; parent folders are
 * created. Inputs of the same name in different folders stay apart. */
static ErrorCode output_path(char *out, size_t size, const char *dir, const char *input, const char *suffix,
                             Error *err)
{
    const char *p = input;
    for (;;) {
        if (*p == '/') p++;
        else if (!strncmp(p, "./", 2)) p += 2;
        else if (!strncmp(p, "../", 3)) p += 3;
        else break;
    }
    int n = (int)strlen(p);
    bool jpg = !suffix && ((n > 4 && !strcasecmp(p + n - 4, ".jpg")) || (n > 5 && !strcasecmp(p + n - 5, ".jpeg")));
    if (suffix) { /* photo.png -> photo_face0.jpg */
        const char *dot = strrchr(p, '.'), *slash = strrchr(p, '/');
        if (dot && (!slash || dot > slash)) n = (int)(dot - p);
    }
    if ((size_t)snprintf(out, size, "%s/%.*s%s%s", dir, n, p, suffix ? suffix : "", jpg ? "" : ".jpg") >= size)
        return error_set(err, ERR_ARG, "%s: output path too long", input);
    for (char *s = out + strlen(dir) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        int rc = mkdir(out, 0777);
        *s = '/';
        if (rc != 0 && errno != EEXIST) return error_set(err, ERR_IO, "cannot create the folder of %s: %s", out, strerror(errno));
    }
    return ERR_OK;
}

typedef struct {
    char **paths;
    int n, cap;
} PathList;

static bool add_path(PathList *l, const char *path)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->paths, sizeof *p * (size_t)cap);
        if (!p) return false;
        l->paths = p, l->cap = cap;
    }
    return (l->paths[l->n] = strdup(path)) && ++l->n;
}

static bool is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png") ||
                   !strcasecmp(dot, ".webp"));
}

/* The images under dir (recursively, hidden entries skipped), appended in name order. */
static bool walk(const char *dir, PathList *l, int depth)
{
    DIR *d = opendir(dir);
    if (!d) return true; /* reported when the image fails to load */
    int first = l->n;
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[8192];
        snprintf(path, sizeof path, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode) && depth < 32) ok = walk(path, l, depth + 1);
        else if (S_ISREG(st.st_mode) && is_image_name(e->d_name)) ok = add_path(l, path);
    }
    closedir(d);
    if (ok && l->n > first) qsort(l->paths + first, (size_t)(l->n - first), sizeof *l->paths, cmp_string);
    return ok;
}

/* The next raw frame of f into img; img->bgr NULL at the end of the stream, an error for a cut
 * frame. */
static ErrorCode read_frame(FILE *f, int w, int h, Image *img, Error *err)
{
    memset(img, 0, sizeof *img);
    int c = fgetc(f);
    if (c == EOF) return ferror(f) ? error_set(err, ERR_IO, "read failed: %s", strerror(errno)) : ERR_OK;
    ungetc(c, f);
    if (image_alloc(img, w, h, err)) return err->code;
    size_t want = (size_t)w * h * 3, got = fread(img->bgr, 1, want, f);
    if (got != want) {
        image_free(img);
        return error_set(err, ERR_FORMAT, "cut frame: %zu of %zu bytes (is --raw the stream's size?)", got, want);
    }
    return ERR_OK;
}

static ErrorCode write_annotated(const char *dir, const char *image, Image *img, const Detection *d, int n,
                                 float vis_thres, bool landmarks, Error *err)
{
    static const uint8_t box_color[3] = {0, 0, 255}, text_color[3] = {255, 255, 255};
    static const uint8_t point_colors[5][3] = {{0, 0, 255}, {255, 255, 0}, {255, 0, 255}, {0, 255, 0}, {255, 0, 0}};
    for (int i = 0; i < n; i++) {
        if (d[i].score < vis_thres) continue;
        int x1 = (int)d[i].box[0], y1 = (int)d[i].box[1], x2 = (int)d[i].box[2], y2 = (int)d[i].box[3];
        image_draw_rect(img, x1, y1, x2, y2, box_color, 2);
        char s[16];
        snprintf(s, sizeof s, "%.4f", d[i].score);
        image_draw_text(img, x1, y1 - 10, s, text_color);
        if (landmarks)
            for (int p = 0; p < 5; p++)
                image_draw_disc(img, (int)d[i].landmarks[2 * p], (int)d[i].landmarks[2 * p + 1], 2, point_colors[p]);
    }
    char path[8192];
    if (output_path(path, sizeof path, dir, image, NULL, err)) return err->code;
    return image_save_jpeg(path, img, 90, err);
}

/* DIR/<input path>_face<k>.jpg: each face scoring at least min_score aligned by its landmarks. */
static ErrorCode write_crops(const char *dir, const char *image, const Image *img, const Detection *d, int n,
                             float min_score, Error *err)
{
    for (int i = 0, k = 0; i < n; i++) {
        if (d[i].score < min_score) continue;
        Image crop;
        char suffix[32], path[8192];
        snprintf(suffix, sizeof suffix, "_face%d", k++);
        if (face_align_crop(img, d[i].landmarks, &crop, err)) {
            if (err->code != ERR_ARG) return err->code;
            error_clear(err); /* degenerate landmarks: no crop for that face */
            continue;
        }
        ErrorCode rc = output_path(path, sizeof path, dir, image, suffix, err);
        if (!rc) rc = image_save_jpeg(path, &crop, 95, err);
        image_free(&crop);
        if (rc) return rc;
    }
    return ERR_OK;
}


/* The inputs in order: image files, or (--raw) streams of frames. */
typedef struct {
    const PathList *inputs;
    int raw_w, raw_h;
    FILE *stream; /* --raw: the open input of frames */
    long frame;
    int i;        /* the input being read */
} InputCursor;

/* An image read and waiting for its batch. */
typedef struct {
    Image img;
    char name[8300];
    const char *path; /* name, or the input's path */
    float resize;
    bool failed;
    char error[512];
} Pending;

/* The next image into p: 1, 0 at the end, -1 after an input that failed (said on stderr). */
static int next_input(InputCursor *c, Pending *p, Error *err)
{
    p->path = p->name;
    p->failed = false;
    for (;;) {
        if (!c->raw_w) {
            if (c->i >= c->inputs->n) return 0;
            p->path = c->inputs->paths[c->i++];
            if (image_load(p->path, &p->img, err)) {
                fprintf(stderr, "detect: %s\n", err->msg);
                return -1;
            }
            return 1;
        }
        if (!c->stream) {
            if (c->i >= c->inputs->n) return 0;
            const char *in = c->inputs->paths[c->i];
            if (!(c->stream = strcmp(in, "-") ? fopen(in, "rb") : stdin)) {
                fprintf(stderr, "detect: %s: %s\n", in, strerror(errno));
                c->i++;
                return -1;
            }
            c->frame = 0;
        }
        const char *in = c->inputs->paths[c->i];
        ErrorCode rc = read_frame(c->stream, c->raw_w, c->raw_h, &p->img, err);
        if (!rc && p->img.bgr) {
            snprintf(p->name, sizeof p->name, "%s#%ld", strcmp(in, "-") ? in : "stdin", c->frame++);
            return 1;
        }
        /* the end of this input */
        if (c->stream != stdin) fclose(c->stream);
        c->stream = NULL, c->i++;
        if (rc) {
            fprintf(stderr, "detect: %s, frame %ld: %s\n", in, c->frame, err->msg);
            return -1;
        }
    }
}

/* --benchmark: the network run many times on one image; medians on stdout. */
static void run_benchmark(Detector *det, const Image *img, float resize, const PostprocessOptions *opt, int runs,
                          Error *err)
{
    Detection *dets = NULL;
    int n = 0;
    DetectTiming t;
    double *fw = malloc(sizeof(double) * (size_t)runs), *pp = malloc(sizeof(double) * (size_t)runs);
    for (int r = -3; r < runs && fw && pp; r++) {
        free(dets);
        dets = NULL;
        if (detector_detect(det, img, resize, opt, &dets, &n, &t, err)) break;
        if (r >= 0) fw[r] = t.forward_ms, pp[r] = t.postprocess_ms;
    }
    if (!err->code && getenv("RETINA_PROFILE")) {
        /* per-op times of a few extra runs (synchronised per op on the GPU) */
        graph_enable_profile(&det->graph, strcmp(getenv("RETINA_PROFILE"), "layer") == 0);
        for (int r = 0; r < 5 && !err->code; r++) {
            free(dets);
            dets = NULL;
            detector_detect(det, img, resize, opt, &dets, &n, &t, err);
        }
        graph_print_profile(&det->graph, stdout, 5);
    }
    if (!err->code && fw && pp) {
        qsort(fw, (size_t)runs, sizeof *fw, cmp_double);
        qsort(pp, (size_t)runs, sizeof *pp, cmp_double);
        printf("input %dx%d, %d threads, %d runs\nforward median %.2f ms\npostprocess median %.2f ms\n"
               "forward min %.2f ms, 90th percentile %.2f ms\nkernels: sgemm %s, convolutions %s\n",
               t.input_width, t.input_height, det->ctx->nthreads, runs, fw[runs / 2], pp[runs / 2], fw[0],
               fw[runs * 9 / 10], sgemm_kernel_name(),
               !conv2d_avx2_available()                                          ? "portable"
               : depthwise3x3_plane_kernel() == depthwise3x3_plane_avx512 ? "avx2-fma, depthwise avx512"
                                                                                 : "avx2-fma");
    }
    free(fw), free(pp), free(dets);
}

int main(int argc, char **argv)
{
    const char *model = "mobilenet0.25", *weights = NULL, *json_path = NULL, *out_dir = NULL, *summary = NULL;
    const char *crops_dir = NULL;
    int raw_w = 0, raw_h = 0;
    PyramidOptions tta = {{0}, 0, false};
    Error arg_err = {0};
    PostprocessOptions opt = postprocess_defaults();
    opt.conf_threshold = 0.5f; /* photos: the faces, not the protocol's long tail down to 0.02 */
    float vis_thres = -1;      /* unset: --conf */
    int long_side = -1, threads = 0, benchmark = 0, batch = 0;
    bool gpu = false;
    enum { O_MODEL = 256, O_WEIGHTS, O_CONF, O_NMS, O_TOPK, O_KEEP, O_VIS, O_LONG, O_JSON, O_OUT, O_THREADS,
           O_CPU, O_GPU, O_BENCH, O_SUMMARY, O_CROPS, O_RAW, O_SCALES, O_FLIP, O_BATCH };
    static const struct option longopts[] = {
        {"model", required_argument, 0, O_MODEL}, {"weights", required_argument, 0, O_WEIGHTS},
        {"conf", required_argument, 0, O_CONF}, {"nms", required_argument, 0, O_NMS},
        {"top-k", required_argument, 0, O_TOPK}, {"keep-top-k", required_argument, 0, O_KEEP},
        {"vis-thres", required_argument, 0, O_VIS}, {"long-side", required_argument, 0, O_LONG},
        {"json", required_argument, 0, O_JSON}, {"out-dir", required_argument, 0, O_OUT},
        {"threads", required_argument, 0, O_THREADS}, {"cpu", no_argument, 0, O_CPU},
        {"gpu", no_argument, 0, O_GPU}, {"benchmark", required_argument, 0, O_BENCH},
        {"summary", required_argument, 0, O_SUMMARY}, {"crops", required_argument, 0, O_CROPS}, {"raw", required_argument, 0, O_RAW},
        {"scales", required_argument, 0, O_SCALES}, {"flip", no_argument, 0, O_FLIP},
        {"batch", required_argument, 0, O_BATCH}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    char *end;
#define NUM(dst, conv, lo, hi)                                                                     \
    do {                                                                                           \
        errno = 0;                                                                                 \
        dst = conv;                                                                                \
        if (*end || end == optarg || errno || !(dst >= (lo) && dst <= (hi))) {                     \
            fprintf(stderr, "detect: invalid value '%s' for --%s (%g to %g)\n", optarg,             \
                    longopts[c - O_MODEL].name, (double)(lo), (double)(hi));                       \
            return 2;                                                                              \
        }                                                                                          \
    } while (0)
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model = optarg; break;
        case O_WEIGHTS: weights = optarg; break;
        case O_CONF: NUM(opt.conf_threshold, strtof(optarg, &end), 0, 1); break;
        case O_NMS: NUM(opt.nms_threshold, strtof(optarg, &end), 0, 1); break;
        case O_TOPK: NUM(opt.top_k, (int)strtol(optarg, &end, 10), 1, INT_MAX); break;
        case O_KEEP: NUM(opt.keep_top_k, (int)strtol(optarg, &end, 10), 1, INT_MAX); break;
        case O_VIS: NUM(vis_thres, strtof(optarg, &end), 0, 1); break;
        case O_LONG:
            NUM(long_side, (int)strtol(optarg, &end, 10), 0, 65535);
            if (long_side > 0 && long_side < 16) {
                fprintf(stderr, "detect: --long-side must be 0 (original size) or at least 16\n");
                return 2;
            }
            break;
        case O_JSON: json_path = optarg; break;
        case O_OUT: out_dir = optarg; break;
        case O_THREADS: NUM(threads, (int)strtol(optarg, &end, 10), 1, 4096); break;
        case O_CPU: gpu = false; break;
        case O_GPU: gpu = true; break;
        case O_BENCH: NUM(benchmark, (int)strtol(optarg, &end, 10), 1, 1000000); break;
        case O_SUMMARY: summary = optarg; break;
        case O_CROPS: crops_dir = optarg; break;
        case O_FLIP: tta.flip = true; break;
        case O_BATCH: NUM(batch, (int)strtol(optarg, &end, 10), 1, 256); break;
        case O_SCALES:
            if (pyramid_parse_scales(&tta, optarg, &arg_err)) {
                fprintf(stderr, "detect: %s\n", arg_err.msg);
                return 2;
            }
            break;
        case O_RAW:
            if (sscanf(optarg, "%dx%d", &raw_w, &raw_h) != 2 || raw_w < 1 || raw_h < 1 || raw_w > 65535 || raw_h > 65535) {
                fprintf(stderr, "detect: --raw expects WxH (1 to 65535 each), e.g. 1280x720\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!retinaface_config(model)) {
        fprintf(stderr, "detect: unknown model '%s' (try --help)\n", model);
        return 2;
    }
    Error err = {0};
    if (summary) {
        int w, h;
        if (sscanf(summary, "%dx%d", &w, &h) != 2 || w < 32 || h < 32) {
            fprintf(stderr, "detect: --summary expects WxH, e.g. 640x640\n");
            return 2;
        }
        Detector d;
        if (detector_init(&d, model, weights, threads, gpu, &err)) {
            fprintf(stderr, "detect: %s\n", err.msg);
            return 1;
        }
        ErrorCode rc = retinaface_print_summary(stdout, d.model, d.ctx, h, w, &err);
        if (rc) fprintf(stderr, "detect: %s\n", err.msg);
        detector_free(&d);
        return rc ? 1 : 0;
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (!weights && !retinaface_builtin_weights(model, &(size_t){0})) {
        fprintf(stderr, "detect: model %s has no built-in weights: give --weights FILE\n", model);
        return 2;
    }
    const char *dirs[2] = {out_dir, crops_dir};
    for (int k = 0; k < 2; k++)
        if (dirs[k] && mkdir(dirs[k], 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "detect: cannot create %s: %s\n", dirs[k], strerror(errno));
            return 1;
        }
    if (crops_dir && !retinaface_config(model)->landmarks) {
        fprintf(stderr, "detect: --crops needs landmarks, which model %s does not predict\n", model);
        return 2;
    }
    /* JSON lines go to FILE.tmp, renamed when all are written: never a partial file under FILE */
    FILE *json = NULL;
    OutputFile json_out;
    if (json_path) {
        if (output_open(&json_out, json_path, &err)) {
            fprintf(stderr, "detect: %s\n", err.msg);
            return 1;
        }
        json = json_out.f;
    }
    Detector det;
    if (detector_init(&det, model, weights, threads, gpu, &err)) {
        if (json) output_abandon(&json_out);
        fprintf(stderr, "detect: %s\n", err.msg);
        return 1;
    }
    if (vis_thres < 0) vis_thres = opt.conf_threshold;
    /* the inputs: files as given, folders walked */
    PathList inputs = {0};
    int empty_folders = 0;
    for (int i = optind; i < argc; i++) {
        struct stat st;
        bool folder = !raw_w && stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode);
        int before = inputs.n;
        if (!(folder ? walk(argv[i], &inputs, 0) : add_path(&inputs, argv[i]))) {
            fprintf(stderr, "detect: out of memory listing the inputs\n");
            return 1;
        }
        if (folder && inputs.n == before) {
            fprintf(stderr, "detect: %s: no .jpg, .jpeg, .png or .webp file in this folder or below\n", argv[i]);
            empty_folders++;
        }
    }
    int failures = empty_folders;
    /* a pyramid or a benchmark runs image by image; streams report each frame as it comes */
    if (!batch) batch = raw_w ? 1 : detector_default_batch(&det);
    if (pyramid_options_active(&tta) || benchmark) batch = 1;
    InputCursor cur = {&inputs, raw_w, raw_h, NULL, 0, 0};
    Pending *pend = calloc((size_t)batch, sizeof *pend);
    const Image **imgs = calloc((size_t)batch, sizeof *imgs);
    float *resizes = calloc((size_t)batch, sizeof *resizes);
    Detection **dets = calloc((size_t)batch, sizeof *dets);
    int *counts = calloc((size_t)batch, sizeof *counts);
    if (!pend || !imgs || !resizes || !dets || !counts) {
        fprintf(stderr, "detect: out of memory for a batch of %d\n", batch);
        return 1;
    }
    long n_images = 0;
    double t_start = clock_seconds(), network_ms = 0;
    for (;;) {
        int np = 0;
        while (np < batch) {
            error_clear(&err);
            int got = next_input(&cur, &pend[np], &err);
            if (got == 0) break;
            if (got < 0) {
                failures++;
                continue;
            }
            /* default: shrink only what is longer than 1280 pixels; 0: original size; N: long side N */
            Image *img = &pend[np].img;
            int side = long_side < 0 ? (img->width > 1280 || img->height > 1280 ? 1280 : 0) : long_side;
            pend[np].resize = detector_resize_for_long_side(img, side);
            imgs[np] = img, resizes[np] = pend[np].resize;
            np++;
        }
        if (np == 0) break;
        error_clear(&err);
        DetectTiming t;
        if (benchmark && pend[0].path == inputs.paths[0]) run_benchmark(&det, &pend[0].img, pend[0].resize, &opt, benchmark, &err);
        if (!err.code && !pyramid_options_active(&tta) &&
            detector_detect_batch(&det, np, imgs, resizes, batch, &opt, dets, counts, &t, &err) == ERR_OK) {
            network_ms += t.forward_ms;
        } else if (!err.code || np > 1) {
            /* a pyramid, or a batch that failed: image by image, so that an error names its image */
            for (int k = 0; k < np; k++) {
                error_clear(&err);
                dets[k] = NULL, counts[k] = 0;
                pend[k].failed = pyramid_options_active(&tta)
                                     ? detector_detect_tta(&det, &pend[k].img, pend[k].resize, &tta, &opt, &dets[k],
                                                           &counts[k], &err) != ERR_OK
                                     : detector_detect(&det, &pend[k].img, pend[k].resize, &opt, &dets[k], &counts[k], &t,
                                                       &err) != ERR_OK;
                if (pend[k].failed) snprintf(pend[k].error, sizeof pend[k].error, "%s", err.msg);
                else network_ms += t.forward_ms;
            }
        } else {
            pend[0].failed = true;
            snprintf(pend[0].error, sizeof pend[0].error, "%s", err.msg);
        }
        for (int k = 0; k < np; k++) {
            Pending *p = &pend[k];
            const char *path = p->path;
            Image *img = &p->img;
            Detection *d = dets[k];
            int n = counts[k];
            n_images++;
            error_clear(&err);
            if (p->failed) {
                fprintf(stderr, "detect: %s: %s\n", path, p->error);
                failures++;
            } else {
                if (json) write_json(json, path, img, d, n, &det.model->cfg);
                /* crops first: the annotated copy draws on img */
                if (crops_dir && write_crops(crops_dir, path, img, d, n, vis_thres, &err)) {
                    fprintf(stderr, "detect: %s\n", err.msg);
                    failures++;
                    error_clear(&err);
                }
                if (!json && !out_dir && !crops_dir && !benchmark) {
                    printf("%s: %d face%s (score >= %.2f)%s\n", path, n, n == 1 ? "" : "s", opt.conf_threshold,
                           p->resize != 1.0f ? " (detected at a reduced size; --long-side 0 keeps the original)" : "");
                    for (int j = 0; j < n; j++) {
                        char buf[32];
                        printf("  %.4f  %7.1f %7.1f %7.1f %7.1f%s%s\n", d[j].score, d[j].box[0], d[j].box[1], d[j].box[2],
                               d[j].box[3], det.model->cfg.num_classes > 2 ? "  " : "",
                               det.model->cfg.num_classes > 2 ? retinaface_class_name(&det.model->cfg, d[j].label, buf, sizeof buf) : "");
                    }
                }
                if (out_dir && write_annotated(out_dir, path, img, d, n, vis_thres, det.model->cfg.landmarks, &err)) {
                    fprintf(stderr, "detect: %s\n", err.msg);
                    failures++;
                }
            }
            free(d);
            dets[k] = NULL, counts[k] = 0;
            image_free(img);
            p->failed = false;
        }
    }
    if (n_images > 1) {
        double s = clock_seconds() - t_start;
        fprintf(stderr, "detect: %ld images in %.2f s, %.2f images/s (network %.1f ms per image, batches of up to %d)\n",
                n_images, s, n_images / s, network_ms / n_images, batch);
    }
    free(pend), free(imgs), free(resizes), free(dets), free(counts);
    error_clear(&err);
    if (json && output_commit(&json_out, &err)) {
        fprintf(stderr, "detect: %s\n", err.msg);
        failures++;
    }
    detector_free(&det);
    for (int i = 0; i < inputs.n; i++) free(inputs.paths[i]);
    free(inputs.paths);
    return failures ? 1 : 0;
}
