#include "detection/wider_data.h"
#include "detection/output_file.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detection/matfile.h"
#include "detection/text_parse.h"

static char *strip_jpg(const char *s)
{
    const char *base = strrchr(s, '/');
    base = base ? base + 1 : s;
    size_t n = strlen(base);
    if (n > 4 && !strcmp(base + n - 4, ".jpg")) n -= 4;
    char *out = malloc(n + 1);
    if (out) memcpy(out, base, n), out[n] = 0;
    return out;
}

ErrorCode wider_gt_load(const char *dir, WiderGt *gt, Error *err)
{
    memset(gt, 0, sizeof *gt);
    static const char *subset_files[WIDER_SUBSETS] = {"wider_easy_val.mat", "wider_medium_val.mat",
                                                       "wider_hard_val.mat"};
    MatFile main_mf, sub[WIDER_SUBSETS];
    memset(sub, 0, sizeof sub);
    char path[4096];
    snprintf(path, sizeof path, "%s/wider_face_val.mat", dir);
    if (matfile_read(path, &main_mf, err)) return err->code;
    ErrorCode rc = ERR_OK;
    for (int s = 0; s < WIDER_SUBSETS && !rc; s++) {
        snprintf(path, sizeof path, "%s/%s", dir, subset_files[s]);
        rc = matfile_read(path, &sub[s], err);
    }
    const MatValue *events = matfile_get(&main_mf, "event_list"), *files = matfile_get(&main_mf, "file_list"),
                   *boxes = matfile_get(&main_mf, "face_bbx_list");
    if (!rc && (!events || !files || !boxes || events->kind != MAT_CELL))
        rc = error_set(err, ERR_FORMAT, "%s/wider_face_val.mat: event_list, file_list or face_bbx_list missing", dir);
    for (int s = 0; s < WIDER_SUBSETS && !rc; s++)
        if (!matfile_get(&sub[s], "gt_list"))
            rc = error_set(err, ERR_FORMAT, "%s/%s: gt_list missing", dir, subset_files[s]);
    if (!rc) {
        gt->n_events = (int)events->numel;
        gt->events = calloc((size_t)gt->n_events + 1, sizeof *gt->events);
        if (!gt->events) rc = error_set(err, ERR_OOM, "out of memory");
    }
    for (int e = 0; e < gt->n_events && !rc; e++) {
        WiderGtEvent *ev = &gt->events[e];
        const MatValue *name = mat_cell(events, e, 0), *fl = mat_cell(files, e, 0), *bl = mat_cell(boxes, e, 0);
        if (!name || name->kind != MAT_CHAR || !fl || !bl || fl->numel != bl->numel) {
            rc = error_set(err, ERR_FORMAT, "%s/wider_face_val.mat: event %d is malformed", dir, e);
            break;
        }
        ev->name = strdup(name->str);
        ev->n_images = (int)fl->numel;
        ev->images = calloc((size_t)ev->n_images + 1, sizeof *ev->images);
        if (!ev->name || !ev->images) {
            rc = error_set(err, ERR_OOM, "out of memory");
            break;
        }
        for (int i = 0; i < ev->n_images && !rc; i++) {
            WiderGtImage *im = &ev->images[i];
            const MatValue *fn = mat_cell(fl, i, 0), *bb = mat_cell(bl, i, 0);
            if (!fn || fn->kind != MAT_CHAR || !bb || (bb->numel && (bb->kind != MAT_NUMERIC || bb->dims[1] != 4))) {
                rc = error_set(err, ERR_FORMAT, "%s/wider_face_val.mat: image %d of %s is malformed", dir, i, ev->name);
                break;
            }
            im->name = strip_jpg(fn->str);
            im->n_gt = bb->numel ? (int)bb->dims[0] : 0;
            im->gt = malloc(sizeof(double) * 4 * ((size_t)im->n_gt + 1));
            if (!im->name || !im->gt) {
                rc = error_set(err, ERR_OOM, "out of memory");
                break;
            }
            for (int k = 0; k < im->n_gt; k++)
                for (int c = 0; c < 4; c++) im->gt[4 * k + c] = bb->re[c * im->n_gt + k]; /* column-major */
            for (int s = 0; s < WIDER_SUBSETS && !rc; s++) {
                const MatValue *kl = mat_cell(mat_cell(matfile_get(&sub[s], "gt_list"), e, 0), i, 0);
                if (!kl || (kl->numel && kl->kind != MAT_NUMERIC)) {
                    rc = error_set(err, ERR_FORMAT, "%s/%s: gt_list entry %s/%s is malformed", dir, subset_files[s],
                                   ev->name, im->name);
                    break;
                }
                im->n_keep[s] = (int)kl->numel;
                im->keep[s] = malloc(sizeof(int) * ((size_t)kl->numel + 1));
                if (!im->keep[s]) {
                    rc = error_set(err, ERR_OOM, "out of memory");
                    break;
                }
                for (int k = 0; k < im->n_keep[s]; k++) {
                    im->keep[s][k] = (int)kl->re[k];
                    if (im->keep[s][k] < 1 || im->keep[s][k] > im->n_gt) {
                        rc = error_set(err, ERR_FORMAT, "%s/%s: %s/%s lists face %d of %d", dir, subset_files[s],
                                       ev->name, im->name, im->keep[s][k], im->n_gt);
                        break;
                    }
                }
            }
        }
    }
    matfile_free(&main_mf);
    for (int s = 0; s < WIDER_SUBSETS; s++) matfile_free(&sub[s]);
    if (rc) wider_gt_free(gt);
    return rc;
}

void wider_gt_free(WiderGt *gt)
{
    for (int e = 0; e < gt->n_events; e++) {
        WiderGtEvent *ev = &gt->events[e];
        for (int i = 0; i < ev->n_images && ev->images; i++) {
            free(ev->images[i].name);
            free(ev->images[i].gt);
            for (int s = 0; s < WIDER_SUBSETS; s++) free(ev->images[i].keep[s]);
        }
        free(ev->images);
        free(ev->name);
    }
    free(gt->events);
    memset(gt, 0, sizeof *gt);
}

ErrorCode wider_pred_file_read(const char *path, WiderPredImage *img, Error *err)
{
    memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char line[4096];
    int lineno = 0, cap = 0;
    ErrorCode rc = ERR_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (lineno == 1) {
            img->name = strip_jpg(line);
            if (!img->name) rc = error_set(err, ERR_OOM, "out of memory");
            continue;
        }
        if (lineno == 2 || line[0] == 0 || line[0] == ' ') continue; /* the count is not trusted, as the official script */
        double v[5];
        const char *rest;
        if (parse_numbers(line, v, 5, &rest) < 5 || *rest) {
            rc = error_set(err, ERR_FORMAT, "%s:%d: expected 'x y w h score', got '%.60s'", path, lineno, line);
            break;
        }
        /* one inf score would normalise every other score of the evaluation to 0 */
        if (!isfinite(v[0]) || !isfinite(v[1]) || !isfinite(v[2]) || !isfinite(v[3]) || !isfinite(v[4])) {
            rc = error_set(err, ERR_FORMAT, "%s:%d: '%.60s' holds a value that is not a finite number", path, lineno, line);
            break;
        }
        if (img->n == cap) {
            cap = cap ? cap * 2 : 64;
            double *b = realloc(img->boxes, sizeof(double) * 5 * (size_t)cap);
            if (!b) {
                rc = error_set(err, ERR_OOM, "out of memory");
                break;
            }
            img->boxes = b;
        }
        memcpy(img->boxes + 5 * img->n, v, sizeof v);
        img->n++;
    }
    fclose(f);
    if (!rc && lineno == 0) rc = error_set(err, ERR_FORMAT, "%s: empty prediction file", path);
    if (rc) {
        free(img->name);
        free(img->boxes);
        memset(img, 0, sizeof *img);
    }
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of the entries of dir that are directories (want_dirs) or .txt files. */
static ErrorCode list_dir(const char *dir, bool want_dirs, char ***names, int *n, Error *err)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return error_set(err, ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    struct dirent *de;
    int cap = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        size_t len = strlen(de->d_name);
        bool is_txt = len > 4 && !strcmp(de->d_name + len - 4, ".txt");
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path) continue; /* too long */
        DIR *sub = opendir(path);
        bool is_dir = sub != NULL;
        if (sub) closedir(sub);
        if (want_dirs ? !is_dir : (is_dir || !is_txt)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(*names, sizeof *nn * (size_t)cap);
            if (!nn) break;
            *names = nn;
        }
        (*names)[(*n)++] = strdup(de->d_name);
    }
    closedir(d);
    if (*n) qsort(*names, (size_t)*n, sizeof **names, cmp_str);
    return ERR_OK;
}

ErrorCode wider_preds_load(const char *dir, const char *const *events, int n_events, WiderPreds *p, Error *err)
{
    memset(p, 0, sizeof *p);
    char **listed = NULL;
    int n_listed = 0;
    if (!events) {
        if (list_dir(dir, true, &listed, &n_listed, err)) return err->code;
        events = (const char *const *)listed;
        n_events = n_listed;
    }
    ErrorCode rc = ERR_OK;
    p->events = calloc((size_t)n_events + 1, sizeof *p->events);
    if (!p->events) rc = error_set(err, ERR_OOM, "out of memory");
    for (int e = 0; e < n_events && !rc; e++) {
        WiderPredEvent *ev = &p->events[p->n_events++];
        ev->name = strdup(events[e]);
        char edir[4096];
        snprintf(edir, sizeof edir, "%s/%s", dir, events[e]);
        char **files;
        int n_files;
        if ((rc = list_dir(edir, false, &files, &n_files, err))) break;
        ev->images = calloc((size_t)n_files + 1, sizeof *ev->images);
        if (!ev->images) rc = error_set(err, ERR_OOM, "out of memory");
        for (int i = 0; i < n_files; i++) {
            if (!rc) {
                char path[8192];
                snprintf(path, sizeof path, "%s/%s", edir, files[i]);
                rc = wider_pred_file_read(path, &ev->images[ev->n_images], err);
                if (!rc) ev->n_images++;
            }
            free(files[i]);
        }
        free(files);
    }
    for (int i = 0; i < n_listed; i++) free(listed[i]);
    free(listed);
    if (rc) wider_preds_free(p);
    return rc;
}

void wider_preds_free(WiderPreds *p)
{
    for (int e = 0; e < p->n_events; e++) {
        for (int i = 0; i < p->events[e].n_images; i++) {
            free(p->events[e].images[i].name);
            free(p->events[e].images[i].boxes);
        }
        free(p->events[e].images);
        free(p->events[e].name);
    }
    free(p->events);
    memset(p, 0, sizeof *p);
}

const WiderPredEvent *wider_preds_event(const WiderPreds *p, const char *name)
{
    for (int e = 0; e < p->n_events; e++)
        if (!strcmp(p->events[e].name, name)) return &p->events[e];
    return NULL;
}

const WiderPredImage *wider_preds_image(const WiderPredEvent *e, const char *name)
{
    for (int i = 0; e && i < e->n_images; i++)
        if (!strcmp(e->images[i].name, name)) return &e->images[i];
    return NULL;
}

ErrorCode wider_pred_file_write(const char *path, const char *image_name, const float *b, const float *scores, int n,
                                Error *err)
{
    OutputFile o;
    if (output_open(&o, path, err)) return err->code;
    fprintf(o.f, "%s\n%d\n", image_name, n);
    for (int i = 0; i < n; i++) {
        int x1 = (int)b[4 * i], y1 = (int)b[4 * i + 1], x2 = (int)b[4 * i + 2], y2 = (int)b[4 * i + 3];
        fprintf(o.f, "%d %d %d %d %.9g \n", x1, y1, x2 - x1, y2 - y1, scores[i]);
    }
    return output_commit(&o, err);
}
