/* build/eval: the official WIDER FACE val evaluation, and prediction over a val image tree. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tensor/clock.h"
#include "detection/class_eval.h"
#include "detection/detect_pyramid.h"
#include "detection/detector.h"
#include "detection/wider_eval.h"
#include "detection/wider_val.h"
#include "detection/output_file.h"
#include "detection/svg_chart.h"
#include "models/builtin_weights.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: build/eval --gt DIR --pred DIR [--iou 0.5] [--events LIST] [--map] [--json FILE] [--plot FILE.svg]\n"
            "       build/eval --predict --images DIR --out DIR [--weights FILE] [--model NAME] [--list FILE]\n"
            "       build/eval --labels FILE [--images DIR] [--iou 0.3,0.5] [--model NAME] [--weights FILE]\n"
            "                  [--long-side N] [--conf 0.02] [--nms 0.4] [--top-k 5000] [--keep-top-k 750]\n\n"
            "Evaluation (official WIDER FACE val protocol): --gt holds wider_face_val.mat and\n"
            "wider_{easy,medium,hard}_val.mat; --pred the official layout <event>/<image>.txt. Prints\n"
            "Easy/Medium/Hard AP. --events a,b,... restricts the protocol to those events (scores are\n"
            "normalised over their predictions); by default, when the folder holds only some events, those\n"
            "are evaluated, with a warning. --map adds the mean AP over IoU 0.50:0.05:0.95. --plot writes the\n"
            "precision-recall curves of the three subsets as SVG; --json the numbers.\n\n"
            "FDDB: build/eval --predict --fddb --folds DIR --images DIR --out DIR [--weights FILE] writes, for every\n"
            "FDDB-fold-NN.txt of --folds, fold-NN-out.txt (image path, count, 'x y w h score' per face) from\n"
            "the images <--images>/<path>.jpg, the format FDDB's evaluation program reads.\n\n"
            "Prediction: runs the detector over DIR/<event>/*.jpg (the images listed in --list, e.g.\n"
            "wider_val.txt, or every .jpg of every event directory) at original size (or --long-side) and\n"
            "writes OUT/<event>/<image>.txt.\n"
            "Without --weights, prediction uses the built-in MobileNet-0.25 model.\n"
            "Per-class AP: --labels FILE (RetinaFace label format, a class id after each line's score: 1 face,\n"
            "2 person, ...; or WIDER's own formats, all faces) runs the detector over its images (--images: the\n"
            "image root, default 'images' beside the file) at original size (or --long-side) and prints, per\n"
            "object class, AP at each --iou threshold (comma-separated, default 0.5), PASCAL VOC style.\n"
            "  --batch N     prediction: images of one size go through the network N at a time (default 1 on\n"
            "                the CPU, where batching measured no faster, 8 with --gpu); same detections\n"
            "  --scales A,B,...  prediction (WIDER FACE and FDDB): test-time image pyramid, the detector at each\n"
            "                factor times the size chosen (original or --long-side), detections merged by NMS\n"
            "                (up to 8 factors from 0.05 to 8, e.g. 0.5,1,1.5; images then go one at a time)\n"
            "  --flip        prediction: also detect on the mirror image, merged the same way\n"
            "  --threads N   CPU threads;  --gpu   run the network on the GPU;  -h, --help   this help\n");
}

static char **split_list(const char *s, int *n)
{
    *n = 0;
    char **out = calloc(strlen(s) + 2, sizeof *out);
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) out[(*n)++] = strdup(t);
    free(copy);
    return out;
}

static void write_svg(FILE *f, const WiderResult *r)
{
    static const char *names[3] = {"Easy", "Medium", "Hard"}, *colors[3] = {"#2a9d8f", "#e9c46a", "#e76f51"};
    char labels[3][64];
    SvgSeries s[3];
    for (int k = 0; k < 3; k++) {
        snprintf(labels[k], sizeof labels[k], "%s AP %.4f", names[k], r->ap[k]);
        s[k] = (SvgSeries){labels[k], colors[k], r->recall[k], r->precision[k], WIDER_THRESHOLDS, false};
    }
    SvgAxes axes = {"WIDER FACE precision-recall", "recall", "precision", SVG_LEGEND_BOTTOM_LEFT, 0, 1, 0, 1};
    svg_begin(f, 1);
    svg_line_chart(f, 0, &axes, s, 3);
    svg_end(f);
}

static int evaluate(const char *gt_dir, const char *pred_dir, double iou, const char *events_arg, bool map,
                    const char *json_path, const char *plot_path)
{
    Error err = {0};
    WiderGt gt;
    if (wider_gt_load(gt_dir, &gt, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        return 1;
    }
    int n_events = 0;
    char **events = NULL;
    if (events_arg) {
        events = split_list(events_arg, &n_events);
        for (int k = 0; k < n_events; k++) {
            bool known = false;
            for (int e = 0; e < gt.n_events && !known; e++) known = !strcmp(gt.events[e].name, events[k]);
            if (!known) {
                fprintf(stderr, "eval: --events: '%s' is not a WIDER FACE val event\n", events[k]);
                wider_gt_free(&gt);
                return 2;
            }
        }
    } else {
        /* The events of the ground truth that have a prediction directory. */
        events = calloc((size_t)gt.n_events + 1, sizeof *events);
        for (int e = 0; e < gt.n_events; e++) {
            char path[4096];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", pred_dir, gt.events[e].name);
            if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) events[n_events++] = strdup(gt.events[e].name);
        }
        if (n_events == 0) {
            fprintf(stderr, "eval: %s holds no prediction directory of any WIDER FACE val event\n", pred_dir);
            wider_gt_free(&gt);
            free(events);
            return 1;
        }
        if (n_events < gt.n_events)
            fprintf(stderr, "eval: warning: %s has predictions for %d of %d events (%d missing); evaluating those %d "
                            "only (choose with --events)\n",
                    pred_dir, n_events, gt.n_events, gt.n_events - n_events, n_events);
    }
    WiderPreds preds;
    if (wider_preds_load(pred_dir, (const char *const *)events, n_events, &preds, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        wider_gt_free(&gt);
        return 1;
    }
    wider_normalise_scores(&preds);
    WiderResult *res = malloc(sizeof *res);
    int rc = 0;
    if (wider_evaluate(&gt, &preds, (const char *const *)events, n_events, iou, res, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        rc = 1;
    } else {
        if (res->images_without_predictions)
            fprintf(stderr, "eval: warning: %d images of the evaluated events have no prediction file (counted as no "
                            "detections)\n", res->images_without_predictions);
        printf("==================== Results (IoU %.2f, %d event%s) ====================\n", iou, n_events,
               n_events > 1 ? "s" : "");
        printf("Easy   Val AP: %.6f\nMedium Val AP: %.6f\nHard   Val AP: %.6f\n", res->ap[0], res->ap[1], res->ap[2]);
        double map_ap[3] = {0, 0, 0};
        if (map) {
            WiderResult *r2 = malloc(sizeof *r2);
            for (int k = 0; k < 10; k++) {
                wider_evaluate(&gt, &preds, (const char *const *)events, n_events, 0.5 + 0.05 * k, r2, &err);
                for (int s = 0; s < 3; s++) map_ap[s] += r2->ap[s] / 10;
            }
            free(r2);
            printf("mAP@[.50:.95]  Easy %.6f  Medium %.6f  Hard %.6f\n", map_ap[0], map_ap[1], map_ap[2]);
        }
        OutputFile out;
        if (json_path) {
            error_clear(&err);
            if (!output_open(&out, json_path, &err)) {
                fprintf(out.f, "{\"iou\": %g, \"events\": %d, \"easy\": %.9f, \"medium\": %.9f, \"hard\": %.9f", iou,
                        n_events, res->ap[0], res->ap[1], res->ap[2]);
                if (map)
                    fprintf(out.f, ", \"map_easy\": %.9f, \"map_medium\": %.9f, \"map_hard\": %.9f", map_ap[0], map_ap[1],
                            map_ap[2]);
                fprintf(out.f, "}\n");
                output_commit(&out, &err);
            }
            if (err.code) fprintf(stderr, "eval: %s\n", err.msg), rc = 1;
        }
        if (plot_path) {
            error_clear(&err);
            if (!output_open(&out, plot_path, &err)) {
                write_svg(out.f, res);
                output_commit(&out, &err);
            }
            if (err.code) fprintf(stderr, "eval: %s\n", err.msg), rc = 1;
        }
    }
    free(res);
    for (int k = 0; k < n_events; k++) free(events[k]);
    free(events);
    wider_preds_free(&preds);
    wider_gt_free(&gt);
    return rc;
}

/* ---- prediction ---------------------------------------------------------------------------- */


/* FDDB: one output file per fold list, rectangles with scores. */
static int predict_fddb(const char *model, const char *weights, const char *images, const char *folds,
                        const char *out_dir, int long_side, const PyramidOptions *tta, const PostprocessOptions *opt,
                        int threads, bool gpu)
{
    Error err = {0};
    Detector det;
    if (detector_init(&det, model, weights, threads, gpu, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        return 1;
    }
    mkdir(out_dir, 0777);
    int failures = 0, done = 0, folds_found = 0;
    double t0 = clock_seconds();
    for (int fold = 1; fold <= 10; fold++) {
        char list[4096], out[4096], line[4096];
        snprintf(list, sizeof list, "%s/FDDB-fold-%02d.txt", folds, fold);
        FILE *in = fopen(list, "r");
        if (!in) continue;
        folds_found++;
        snprintf(out, sizeof out, "%s/fold-%02d-out.txt", out_dir, fold);
        FILE *o = fopen(out, "w");
        if (!o) {
            fprintf(stderr, "eval: cannot write %s: %s\n", out, strerror(errno));
            fclose(in);
            detector_free(&det);
            return 1;
        }
        while (fgets(line, sizeof line, in)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0]) continue;
            char path[8192];
            snprintf(path, sizeof path, "%s/%s.jpg", images, line);
            Image img;
            Detection *d = NULL;
            int nd = 0;
            error_clear(&err);
            if (image_load_jpeg(path, &img, &err) == ERR_OK) {
                float resize = detector_resize_for_long_side(&img, long_side);
                detector_detect_tta(&det, &img, resize, tta, opt, &d, &nd, &err);
                image_free(&img);
            }
            if (err.code) {
                fprintf(stderr, "\neval: %s\n", err.msg);
                failures++;
                nd = 0;
            }
            fprintf(o, "%s\n%d\n", line, nd);
            for (int k = 0; k < nd; k++)
                fprintf(o, "%.2f %.2f %.2f %.2f %.6f\n", d[k].box[0], d[k].box[1], d[k].box[2] - d[k].box[0],
                        d[k].box[3] - d[k].box[1], d[k].score);
            free(d);
            done++;
            fprintf(stderr, "\rfold %d: %d images, %.2f img/s   ", fold, done, done / (clock_seconds() - t0));
        }
        fclose(in);
        if (fclose(o) != 0) failures++;
    }
    fprintf(stderr, "\n%d images, %d failed, %d fold lists\n", done, failures, folds_found);
    detector_free(&det);
    if (!folds_found) fprintf(stderr, "eval: no FDDB-fold-NN.txt in %s\n", folds);
    return failures || !folds_found ? 1 : 0;
}

static int predict(const char *model, const char *weights, const char *images, const char *list, const char *out_dir,
                   int long_side, const PyramidOptions *tta, const PostprocessOptions *opt, int threads, bool gpu,
                   int batch)
{
    Error err = {0};
    WiderImageList l;
    if (wider_image_list(images, list, &l, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        return 1;
    }
    Detector det;
    if (detector_init(&det, model, weights, threads, gpu, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        wider_image_list_free(&l);
        return 1;
    }
    double t0 = clock_seconds();
    int failures = 0;
    ErrorCode rc = wider_predict(&det, images, &l, out_dir, long_side, batch ? batch : detector_default_batch(&det), tta,
                                 opt, stderr, &failures, &err);
    if (rc)
        fprintf(stderr, "eval: %s\n", err.msg);
    else
        fprintf(stderr, "%d images in %.1fs, %d failed; predictions in %s\n", l.n, clock_seconds() - t0, failures, out_dir);
    detector_free(&det);
    wider_image_list_free(&l);
    return rc || failures ? 1 : 0;
}

/* --labels: per-class AP of the detector on a labelled set. */
static int class_ap(const char *model, const char *weights, const char *labels, const char *images, const double *ious,
                    int n_ious, int long_side, const PostprocessOptions *opt, int threads, bool gpu)
{
    Error err = {0};
    TrainSet set;
    if (trainset_load(labels, images, &set, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        return 1;
    }
    Detector det;
    if (detector_init(&det, model, weights, threads, gpu, &err)) {
        fprintf(stderr, "eval: %s\n", err.msg);
        trainset_free(&set);
        return 1;
    }
    const RetinaConfig *cfg = &det.model->cfg;
    if (set.max_class >= cfg->num_classes)
        fprintf(stderr, "eval: warning: %s has class ids up to %d; %s detects %d class%s: the others score 0\n", labels,
                set.max_class, cfg->name, cfg->num_classes - 1, cfg->num_classes == 2 ? "" : "es");
    ClassApResult res;
    ErrorCode rc = class_ap_evaluate(&det, &set, ious, n_ious, long_side, opt, stderr, &res, &err);
    if (rc) {
        fprintf(stderr, "eval: %s\n", err.msg);
    } else {
        printf("%s on %s: %d images (%d unreadable), conf %.2f, NMS %.2f\n%-12s %8s %11s", cfg->name, labels,
               res.images, res.failed_images, opt->conf_threshold, opt->nms_threshold, "class", "objects", "detections");
        for (int t = 0; t < n_ious; t++) printf("   AP@%.2f", ious[t]);
        printf("\n");
        int top = res.n_classes > set.max_class ? res.n_classes : set.max_class;
        for (int c = 1; c <= top && c < RETINA_MAX_CLASSES; c++) {
            char buf[32];
            printf("%-12s %8d %11d", retinaface_class_name(cfg, c, buf, sizeof buf), res.objects[c], res.detections[c]);
            for (int t = 0; t < n_ious; t++) printf(" %8.4f", res.ap[c][t]);
            printf("\n");
        }
    }
    detector_free(&det);
    trainset_free(&set);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *gt = NULL, *pred = NULL, *events = NULL, *json = NULL, *plot = NULL;
    const char *model = "mobilenet0.25", *weights = NULL, *images = NULL, *list = NULL, *out = NULL;
    double iou = 0.5, ious[CLASS_EVAL_MAX_IOUS] = {0.5};
    int n_ious = 1;
    const char *labels = NULL;
    bool map = false, do_predict = false, fddb = false, gpu = false;
    const char *folds = NULL;
    int long_side = 0, threads = 0, batch = 0;
    PostprocessOptions opt = postprocess_defaults();
    PyramidOptions tta = {{0}, 0, false};
    Error arg_err = {0};
    enum { O_GT = 256, O_PRED, O_IOU, O_EVENTS, O_MAP, O_JSON, O_PLOT, O_PREDICT, O_MODEL, O_WEIGHTS, O_IMAGES,
           O_LIST, O_OUT, O_LONG, O_CONF, O_NMS, O_TOPK, O_KEEP, O_THREADS, O_FDDB, O_FOLDS, O_GPU, O_CPU, O_BATCH,
           O_LABELS, O_SCALES, O_FLIP };
    static const struct option longopts[] = {
        {"gt", required_argument, 0, O_GT}, {"pred", required_argument, 0, O_PRED},
        {"iou", required_argument, 0, O_IOU}, {"events", required_argument, 0, O_EVENTS},
        {"map", no_argument, 0, O_MAP}, {"json", required_argument, 0, O_JSON},
        {"plot", required_argument, 0, O_PLOT}, {"predict", no_argument, 0, O_PREDICT},
        {"model", required_argument, 0, O_MODEL}, {"weights", required_argument, 0, O_WEIGHTS},
        {"images", required_argument, 0, O_IMAGES}, {"list", required_argument, 0, O_LIST},
        {"out", required_argument, 0, O_OUT}, {"long-side", required_argument, 0, O_LONG},
        {"conf", required_argument, 0, O_CONF}, {"nms", required_argument, 0, O_NMS},
        {"top-k", required_argument, 0, O_TOPK}, {"keep-top-k", required_argument, 0, O_KEEP},
        {"threads", required_argument, 0, O_THREADS}, {"fddb", no_argument, 0, O_FDDB},
        {"folds", required_argument, 0, O_FOLDS}, {"gpu", no_argument, 0, O_GPU}, {"cpu", no_argument, 0, O_CPU},
        {"batch", required_argument, 0, O_BATCH}, {"labels", required_argument, 0, O_LABELS},
        {"scales", required_argument, 0, O_SCALES}, {"flip", no_argument, 0, O_FLIP},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    char *end = "";
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_GT: gt = optarg; break;
        case O_PRED: pred = optarg; break;
        case O_IOU:
            n_ious = 0;
            for (char *q = optarg;; q = end + 1) {
                double v = strtod(q, &end);
                if (end == q || !(v > 0 && v <= 1) || n_ious == CLASS_EVAL_MAX_IOUS) {
                    fprintf(stderr, "eval: --iou expects 1 to %d thresholds in (0, 1], comma-separated\n", CLASS_EVAL_MAX_IOUS);
                    return 2;
                }
                ious[n_ious++] = v;
                if (*end != ',') break;
            }
            iou = ious[0];
            break;
        case O_LABELS: labels = optarg; break;
        case O_EVENTS: events = optarg; break;
        case O_MAP: map = true; break;
        case O_JSON: json = optarg; break;
        case O_PLOT: plot = optarg; break;
        case O_PREDICT: do_predict = true; break;
        case O_MODEL: model = optarg; break;
        case O_WEIGHTS: weights = optarg; break;
        case O_IMAGES: images = optarg; break;
        case O_LIST: list = optarg; break;
        case O_OUT: out = optarg; break;
        case O_LONG: long_side = (int)strtol(optarg, &end, 10); break;
        case O_CONF: opt.conf_threshold = strtof(optarg, &end); break;
        case O_NMS: opt.nms_threshold = strtof(optarg, &end); break;
        case O_TOPK: opt.top_k = (int)strtol(optarg, &end, 10); break;
        case O_KEEP: opt.keep_top_k = (int)strtol(optarg, &end, 10); break;
        case O_THREADS: threads = (int)strtol(optarg, &end, 10); break;
        case O_FDDB: fddb = true; break;
        case O_FOLDS: folds = optarg; break;
        case O_GPU: gpu = true; break;
        case O_CPU: gpu = false; break;
        case O_BATCH:
            batch = (int)strtol(optarg, &end, 10);
            if (*end || batch < 1 || batch > 256) {
                fprintf(stderr, "eval: --batch expects 1 to 256, got '%s'\n", optarg);
                return 2;
            }
            break;
        case O_SCALES:
            if (pyramid_parse_scales(&tta, optarg, &arg_err)) {
                fprintf(stderr, "eval: %s\n", arg_err.msg);
                return 2;
            }
            break;
        case O_FLIP: tta.flip = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (*end) {
            fprintf(stderr, "eval: invalid value '%s' for --%s\n", optarg, longopts[c - O_GT].name);
            return 2;
        }
    }
    if (do_predict) {
        if (!weights && !retinaface_builtin_weights(model, &(size_t){0})) {
            fprintf(stderr, "eval: model %s has no built-in weights: give --weights FILE\n", model);
            return 2;
        }
        if (fddb) {
            if (!images || !out || !folds) {
                fprintf(stderr, "eval: --predict --fddb needs --images, --folds and --out\n");
                return 2;
            }
            return predict_fddb(model, weights, images, folds, out, long_side, &tta, &opt, threads, gpu);
        }
        if (!images || !out) {
            fprintf(stderr, "eval: --predict needs --images and --out (see --help)\n");
            return 2;
        }
        return predict(model, weights, images, list, out, long_side, &tta, &opt, threads, gpu, batch);
    }
    if (pyramid_options_active(&tta)) {
        fprintf(stderr, "eval: --scales and --flip apply to --predict\n");
        return 2;
    }
    if (labels) return class_ap(model, weights, labels, images, ious, n_ious, long_side, &opt, threads, gpu);
    if (!gt || !pred) {
        usage(stderr);
        return 2;
    }
    if (n_ious != 1) {
        fprintf(stderr, "eval: the WIDER FACE protocol takes one --iou\n");
        return 2;
    }
    if (!(iou > 0 && iou <= 1)) {
        fprintf(stderr, "eval: --iou must be in (0, 1]\n");
        return 2;
    }
    return evaluate(gt, pred, iou, events, map, json, plot);
}
