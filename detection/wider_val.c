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

/* The prediction file of one image's detections. */
static ErrorCode write_prediction(const char *out_path, const char *stem, const Detection *dets, int nd, Error *err)
{
    float *boxes = malloc(sizeof(float) * 4 * ((size_t)nd + 1)), *scores = malloc(sizeof(float) * ((size_t)nd + 1));
    ErrorCode rc = boxes && scores ? ERR_OK : error_set(err, ERR_OOM, "out of memory");
    for (int k = 0; k < nd && !rc; k++) memcpy(boxes + 4 * k, dets[k].box, sizeof dets[k].box), scores[k] = dets[k].score;
    if (!rc) rc = wider_pred_file_write(out_path, stem, boxes, scores, nd, err);
    free(boxes), free(scores);
    return rc;
}

/* One image of the list: where it is read from and where its prediction goes. */
typedef struct {
    char stem[1024], path[8192], out_path[8192];
    Image img;
    float resize;
    bool loaded;
} PredictItem;

static void predict_item(const char *images, const char *out_dir, const char *name, PredictItem *it)
{
    int elen = event_length(name);
    const char *base = elen ? name + elen + 1 : name;
    snprintf(it->stem, sizeof it->stem, "%s", base);
    char *dot = strrchr(it->stem, '.');
    if (dot) *dot = 0;
    snprintf(it->path, sizeof it->path, "%s/%s", images, name);
    snprintf(it->out_path, sizeof it->out_path, "%s/%.*s/%s.txt", out_dir, elen, name, it->stem);
}

ErrorCode wider_predict(Detector *d, const char *images, const WiderImageList *l, const char *out_dir, int long_side,
                        int batch, const PyramidOptions *tta, const PostprocessOptions *opt, FILE *progress,
                        int *failures, Error *err)
{
    *failures = 0;
    if (batch < 1 || pyramid_options_active(tta)) batch = 1;
    if (make_dir(out_dir, err)) return err->code;
    for (int k = 0; k < l->n_events; k++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", out_dir, l->events[k]);
        if (make_dir(path, err)) return err->code;
    }
    PredictItem *items = calloc((size_t)batch, sizeof *items);
    const Image **imgs = calloc((size_t)batch, sizeof *imgs);
    float *resize = calloc((size_t)batch, sizeof *resize);
    Detection **dets = calloc((size_t)batch, sizeof *dets);
    int *counts = calloc((size_t)batch, sizeof *counts);
    ErrorCode rc = items && imgs && resize && dets && counts ? ERR_OK : error_set(err, ERR_OOM, "out of memory");
    double t0 = clock_seconds();
    for (int i0 = 0; i0 < l->n && !rc; i0 += batch) {
        int nb = l->n - i0 < batch ? l->n - i0 : batch, np = 0;
        /* load the batch; an image that cannot be read is that image's failure */
        for (int k = 0; k < nb; k++) {
            PredictItem *it = &items[k];
            predict_item(images, out_dir, l->names[i0 + k], it);
            Error e = {0};
            it->loaded = image_load(it->path, &it->img, &e) == ERR_OK;
            if (!it->loaded) {
                (*failures)++;
                if (progress) fprintf(progress, "\nwarning: %s\n", e.msg);
                continue;
            }
            it->resize = detector_resize_for_long_side(&it->img, long_side);
            imgs[np] = &it->img, resize[np] = it->resize, np++;
        }
        Error e = {0};
        bool batched = !pyramid_options_active(tta) &&
                       detector_detect_batch(d, np, imgs, resize, batch, opt, dets, counts, NULL, &e) == ERR_OK;
        for (int k = 0, j = 0; k < nb && !rc; k++) {
            PredictItem *it = &items[k];
            if (!it->loaded) continue;
            Detection *dk = batched ? dets[j] : NULL;
            int nk = batched ? counts[j] : 0;
            j++;
            error_clear(&e);
            /* a pyramid, or a batch that failed (again image by image, so that the error names its image) */
            ErrorCode r = batched ? ERR_OK : detector_detect_tta(d, &it->img, it->resize, tta, opt, &dk, &nk, &e);
            if (!r) r = write_prediction(it->out_path, it->stem, dk, nk, &e);
            free(dk);
            if (r) {
                /* a file we cannot write fails them all: stop on it rather than report every image */
                if (e.code == ERR_IO && strstr(e.msg, it->out_path)) rc = error_set(err, e.code, "%s", e.msg);
                (*failures)++;
                if (progress && !rc) fprintf(progress, "\nwarning: %s: %s\n", it->path, e.msg);
            }
        }
        for (int k = 0; k < nb; k++)
            if (items[k].loaded) image_free(&items[k].img), items[k].loaded = false;
        if (progress) {
            int done = i0 + nb;
            double el = clock_seconds() - t0, rate = done / (el > 0 ? el : 1e-9);
            fprintf(progress, "\r[%4d/%d] %5.1f%%  %.2f img/s  ETA %.0fs   ", done, l->n, 100.0 * done / l->n, rate,
                    (l->n - done) / rate);
            fflush(progress);
        }
    }
    if (progress) fprintf(progress, "\n");
    free(items), free(imgs), free(resize), free(dets), free(counts);
    return rc;
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
