#include "detection/wider_val.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tensor/clock.h"

static ErrorCode list_add(WiderImageList *l, int *cap, const char *name, Error *err)
{
    if (l->n == *cap) {
        int grown = *cap ? 2 * *cap : 256;
        char **p = realloc(l->names, sizeof *p * (size_t)grown);
        if (!p) return error_set(err, ERR_OOM, "out of memory listing images");
        l->names = p, *cap = grown;
    }
    if (!(l->names[l->n] = strdup(name))) return error_set(err, ERR_OOM, "out of memory listing images");
    l->n++;
    return ERR_OK;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ends_with_jpg(const char *s)
{
    size_t n = strlen(s);
    return n > 4 && (!strcmp(s + n - 4, ".jpg") || !strcmp(s + n - 4, ".JPG"));
}

static ErrorCode scan_tree(const char *images, WiderImageList *l, int *cap, Error *err)
{
    DIR *root = opendir(images);
    if (!root) return error_set(err, ERR_IO, "%s: cannot open: %s", images, strerror(errno));
    ErrorCode rc = ERR_OK;
    struct dirent *e;
    while (!rc && (e = readdir(root))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", images, e->d_name);
        DIR *event = opendir(path);
        if (!event) continue; /* not a directory */
        struct dirent *f;
        while (!rc && (f = readdir(event))) {
            if (!ends_with_jpg(f->d_name)) continue;
            snprintf(path, sizeof path, "%s/%s", e->d_name, f->d_name);
            rc = list_add(l, cap, path, err);
        }
        closedir(event);
    }
    closedir(root);
    if (!rc) qsort(l->names, (size_t)l->n, sizeof *l->names, compare_names);
    return rc;
}

static ErrorCode read_list(const char *list, WiderImageList *l, int *cap, Error *err)
{
    FILE *f = fopen(list, "r");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", list, strerror(errno));
    char line[4096];
    ErrorCode rc = ERR_OK;
    while (!rc && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *p = line;
        while (*p == '/') p++;
        if (*p) rc = list_add(l, cap, p, err);
    }
    fclose(f);
    return rc;
}

/* "event/name.jpg" -> event length (0 when the name has no directory). */
static int event_length(const char *name)
{
    const char *slash = strchr(name, '/');
    return slash ? (int)(slash - name) : 0;
}

ErrorCode wider_image_list(const char *images, const char *list, WiderImageList *l, Error *err)
{
    memset(l, 0, sizeof *l);
    int cap = 0;
    ErrorCode rc = list ? read_list(list, l, &cap, err) : scan_tree(images, l, &cap, err);
    if (!rc && l->n == 0)
        rc = error_set(err, ERR_ARG, "%s: no images listed", list ? list : images);
    if (!rc && !(l->events = calloc((size_t)l->n, sizeof *l->events))) rc = error_set(err, ERR_OOM, "out of memory");
    for (int i = 0; i < l->n && !rc; i++) {
        int len = event_length(l->names[i]);
        bool seen = false;
        for (int k = 0; k < l->n_events && !seen; k++)
            seen = (int)strlen(l->events[k]) == len && !strncmp(l->events[k], l->names[i], (size_t)len);
        if (!seen && !(l->events[l->n_events++] = strndup(l->names[i], (size_t)len)))
            rc = error_set(err, ERR_OOM, "out of memory");
    }
    if (rc) wider_image_list_free(l);
    return rc;
}

void wider_image_list_free(WiderImageList *l)
{
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    for (int k = 0; k < l->n_events; k++) free(l->events[k]);
    free(l->names);
    free(l->events);
    memset(l, 0, sizeof *l);
}

static ErrorCode make_dir(const char *path, Error *err)
{
    if (mkdir(path, 0777) && errno != EEXIST) return error_set(err, ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return ERR_OK;
}

/* Detects on one image and writes its prediction file; errors are the image's. */
static ErrorCode predict_one(Detector *d, const char *path, const char *out_path, const char *stem, int long_side,
                             const PostprocessOptions *opt, Error *err)
{
    Image img;
    if (image_load(path, &img, err)) return err->code;
    Detection *dets = NULL;
    int nd = 0;
    ErrorCode rc = detector_detect(d, &img, detector_resize_for_long_side(&img, long_side), opt, &dets, &nd, NULL, err);
    image_free(&img);
    float *boxes = rc ? NULL : malloc(sizeof(float) * 4 * ((size_t)nd + 1));
    float *scores = rc ? NULL : malloc(sizeof(float) * ((size_t)nd + 1));
    if (!rc && (!boxes || !scores)) rc = error_set(err, ERR_OOM, "out of memory");
    for (int k = 0; k < nd && !rc; k++) memcpy(boxes + 4 * k, dets[k].box, sizeof dets[k].box), scores[k] = dets[k].score;
    if (!rc) rc = wider_pred_file_write(out_path, stem, boxes, scores, nd, err);
    free(boxes), free(scores), free(dets);
    return rc;
}

ErrorCode wider_predict(Detector *d, const char *images, const WiderImageList *l, const char *out_dir, int long_side,
                        const PostprocessOptions *opt, FILE *progress, int *failures, Error *err)
{
    *failures = 0;
    if (make_dir(out_dir, err)) return err->code;
    for (int k = 0; k < l->n_events; k++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", out_dir, l->events[k]);
        if (make_dir(path, err)) return err->code;
    }
    double t0 = clock_seconds();
    for (int i = 0; i < l->n; i++) {
        const char *name = l->names[i];
        int elen = event_length(name);
        const char *base = elen ? name + elen + 1 : name;
        char stem[1024], path[8192], out_path[8192];
        snprintf(stem, sizeof stem, "%s", base);
        char *dot = strrchr(stem, '.');
        if (dot) *dot = 0;
        snprintf(path, sizeof path, "%s/%s", images, name);
        snprintf(out_path, sizeof out_path, "%s/%.*s/%s.txt", out_dir, elen, name, stem);
        Error e = {0};
        if (predict_one(d, path, out_path, stem, long_side, opt, &e)) {
            /* a file we cannot write fails them all: stop on it rather than report every image */
            if (e.code == ERR_IO && strstr(e.msg, out_path)) return error_set(err, e.code, "%s", e.msg);
            (*failures)++;
            if (progress) fprintf(progress, "\nwarning: %s\n", e.msg);
        }
        if (progress) {
            double el = clock_seconds() - t0, rate = (i + 1) / (el > 0 ? el : 1e-9);
            fprintf(progress, "\r[%4d/%d] %5.1f%%  %.2f img/s  ETA %.0fs   ", i + 1, l->n, 100.0 * (i + 1) / l->n, rate,
                    (l->n - i - 1) / rate);
            fflush(progress);
        }
    }
    if (progress) fprintf(progress, "\n");
    return ERR_OK;
}

ErrorCode wider_evaluate_dir(const WiderGt *gt, const char *pred_dir, const WiderImageList *l, double iou,
                             WiderResult *res, Error *err)
{
    WiderPreds preds;
    if (wider_preds_load(pred_dir, (const char *const *)l->events, l->n_events, &preds, err)) return err->code;
    wider_normalise_scores(&preds);
    ErrorCode rc = wider_evaluate(gt, &preds, (const char *const *)l->events, l->n_events, iou, res, err);
    wider_preds_free(&preds);
    return rc;
}
