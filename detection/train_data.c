#include "detection/train_data.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "detection/matfile.h"
#include "detection/text_parse.h"

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

typedef struct {
    TrainSet *set;
    int cap;
    TrainSample cur;
    int cur_cap;
    bool open;
} Builder;

static ErrorCode begin_sample(Builder *b, const char *images_dir, const char *rel, Error *err)
{
    while (*rel == '/') rel++;
    size_t n = strlen(images_dir) + strlen(rel) + 2;
    b->cur = (TrainSample){malloc(n), 0, NULL};
    b->cur_cap = 0;
    if (!b->cur.path) return error_set(err, ERR_OOM, "out of memory");
    snprintf(b->cur.path, n, "%s/%s", images_dir, rel);
    b->open = true;
    return ERR_OK;
}

static ErrorCode add_face(Builder *b, const float *f, Error *err)
{
    if (!(f[2] > f[0] && f[3] > f[1])) {
        b->set->dropped_faces++;
        return ERR_OK;
    }
    if (b->cur.n == b->cur_cap) {
        b->cur_cap = b->cur_cap ? b->cur_cap * 2 : 8;
        float *faces = realloc(b->cur.faces, sizeof(float) * FACE_FIELDS * (size_t)b->cur_cap);
        if (!faces) return error_set(err, ERR_OOM, "out of memory");
        b->cur.faces = faces;
    }
    memcpy(b->cur.faces + FACE_FIELDS * b->cur.n++, f, sizeof(float) * FACE_FIELDS);
    if (f[FACE_CLASS] > b->set->max_class) b->set->max_class = (int)f[FACE_CLASS];
    return ERR_OK;
}

static ErrorCode end_sample(Builder *b, Error *err)
{
    if (!b->open) return ERR_OK;
    b->open = false;
    if (!exists(b->cur.path)) {
        b->set->missing_images++;
        free(b->cur.path);
        free(b->cur.faces);
        return ERR_OK;
    }
    if (b->set->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        TrainSample *s = realloc(b->set->samples, sizeof *s * (size_t)b->cap);
        if (!s) return error_set(err, ERR_OOM, "out of memory");
        b->set->samples = s;
    }
    b->set->samples[b->set->n++] = b->cur;
    return ERR_OK;
}

/* Face row from a box (x, y, w, h) without landmarks. */
static void box_only(float *f, double x, double y, double w, double h)
{
    f[0] = (float)x, f[1] = (float)y, f[2] = (float)(x + w), f[3] = (float)(y + h);
    for (int k = 4; k < 14; k++) f[k] = -1;
    f[14] = -1;
    f[FACE_CLASS] = 1; /* a face, unless the line says otherwise */
}

static ErrorCode load_retinaface(FILE *fp, const char *path, const char *images, Builder *b, Error *err)
{
    char line[8192];
    int lineno = 0;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] == '#') {
            if (end_sample(b, err)) return err->code;
            char *p = line + 1;
            while (*p == ' ') p++;
            if (!*p) return error_set(err, ERR_FORMAT, "%s:%d: '#' without an image path", path, lineno);
            if (begin_sample(b, images, p, err)) return err->code;
            continue;
        }
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) continue;
        if (!b->open) return error_set(err, ERR_FORMAT, "%s:%d: face line before any '# <image>' line", path, lineno);
        double v[21];
        const char *rest;
        int n = parse_numbers(p, v, 21, &rest);
        if (*rest || (n != 4 && n < 19)) {
            return error_set(err, ERR_FORMAT,
                             "%s:%d: expected 'x y w h' and 5 landmarks 'lx ly flag' (then a score and a class id), "
                             "got '%.80s'",
                             path, lineno, line);
        }
        if (n == 21 && !(v[20] >= 1 && v[20] <= 255 && v[20] == (int)v[20]))
            return error_set(err, ERR_FORMAT, "%s:%d: class id %g: expected a whole number from 1 (face) to 255", path,
                             lineno, v[20]);
        float f[FACE_FIELDS];
        box_only(f, v[0], v[1], v[2], v[3]);
        if (n >= 19 && v[4] >= 0) {
            for (int k = 0; k < 5; k++) f[4 + 2 * k] = (float)v[4 + 3 * k], f[5 + 2 * k] = (float)v[5 + 3 * k];
            f[14] = 1;
        }
        if (n == 21) f[FACE_CLASS] = (float)v[20];
        if (add_face(b, f, err)) return err->code;
    }
    return end_sample(b, err);
}

static ErrorCode load_wider_txt(FILE *fp, const char *path, const char *images, Builder *b, Error *err)
{
    char line[8192];
    int lineno = 0;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (begin_sample(b, images, line, err)) return err->code;
        if (!fgets(line, sizeof line, fp)) return error_set(err, ERR_FORMAT, "%s:%d: face count missing", path, lineno + 1);
        lineno++;
        char *end;
        long count = strtol(line, &end, 10);
        if (end == line || count < 0) return error_set(err, ERR_FORMAT, "%s:%d: bad face count '%.40s'", path, lineno, line);
        /* An image without faces still has one all-zero line. */
        long rows = count ? count : 1;
        for (long k = 0; k < rows; k++) {
            if (!fgets(line, sizeof line, fp)) return error_set(err, ERR_FORMAT, "%s: truncated after line %d", path, lineno);
            lineno++;
            double v[10];
            int n = parse_numbers(line, v, 10, NULL);
            if (n < 4 || (n < 10 && count)) return error_set(err, ERR_FORMAT, "%s:%d: expected 10 numbers per face", path, lineno);
            if (!count) continue;
            if (n == 10 && v[7] != 0) { /* invalid */
                b->set->dropped_faces++;
                continue;
            }
            float f[FACE_FIELDS];
            box_only(f, v[0], v[1], v[2], v[3]);
            if (add_face(b, f, err)) return err->code;
        }
        if (end_sample(b, err)) return err->code;
    }
    return ERR_OK;
}

static ErrorCode load_wider_mat(const char *path, const char *images, Builder *b, Error *err)
{
    MatFile mf;
    if (matfile_read(path, &mf, err)) return err->code;
    const MatValue *events = matfile_get(&mf, "event_list"), *files = matfile_get(&mf, "file_list"),
                   *boxes = matfile_get(&mf, "face_bbx_list"), *invalid = matfile_get(&mf, "invalid_label_list");
    ErrorCode rc = ERR_OK;
    if (!events || !files || !boxes) rc = error_set(err, ERR_FORMAT, "%s: event_list, file_list or face_bbx_list missing", path);
    for (int64_t e = 0; !rc && e < events->numel; e++) {
        const MatValue *ev = mat_cell(events, e, 0), *fl = mat_cell(files, e, 0), *bl = mat_cell(boxes, e, 0);
        const MatValue *il = invalid ? mat_cell(invalid, e, 0) : NULL;
        if (!ev || ev->kind != MAT_CHAR || !fl || !bl || fl->kind != MAT_CELL || bl->kind != MAT_CELL) {
            rc = error_set(err, ERR_FORMAT, "%s: event %lld malformed", path, (long long)e);
            break;
        }
        for (int64_t i = 0; !rc && i < fl->numel; i++) {
            const MatValue *name = mat_cell(fl, i, 0), *bb = mat_cell(bl, i, 0), *inv = il ? mat_cell(il, i, 0) : NULL;
            /* boxes: an n x 4 numeric array (x, y, w, h per face), or empty */
            if (!name || name->kind != MAT_CHAR || !bb ||
                (bb->numel && (bb->kind != MAT_NUMERIC || bb->ndim != 2 || bb->dims[1] != 4))) {
                rc = error_set(err, ERR_FORMAT, "%s: image %lld of %s malformed", path, (long long)i, ev->str);
                break;
            }
            char rel[2048];
            snprintf(rel, sizeof rel, "%s/%s.jpg", ev->str, name->str);
            if ((rc = begin_sample(b, images, rel, err))) break;
            int64_t n = bb->numel ? bb->dims[0] : 0;
            for (int64_t k = 0; k < n && !rc; k++) {
                if (inv && inv->kind == MAT_NUMERIC && k < inv->numel && inv->re[k] != 0) {
                    b->set->dropped_faces++;
                    continue;
                }
                float f[FACE_FIELDS];
                box_only(f, bb->re[k], bb->re[n + k], bb->re[2 * n + k], bb->re[3 * n + k]);
                rc = add_face(b, f, err);
            }
            if (!rc) rc = end_sample(b, err);
        }
    }
    matfile_free(&mf);
    return rc;
}

ErrorCode trainset_load(const char *label_path, const char *images_dir, TrainSet *set, Error *err)
{
    memset(set, 0, sizeof *set);
    char images[4096];
    if (images_dir) {
        snprintf(images, sizeof images, "%s", images_dir);
    } else {
        const char *slash = strrchr(label_path, '/');
        snprintf(images, sizeof images, "%.*s%simages", slash ? (int)(slash - label_path) : 0, label_path, slash ? "/" : "");
    }
    Builder b = {set, 0, {0}, 0, false};
    ErrorCode rc;
    size_t len = strlen(label_path);
    if (len > 4 && !strcmp(label_path + len - 4, ".mat")) {
        rc = load_wider_mat(label_path, images, &b, err);
    } else {
        FILE *fp = fopen(label_path, "r");
        if (!fp) return error_set(err, ERR_IO, "%s: cannot open: %s", label_path, strerror(errno));
        rc = strstr(label_path, "bbx_gt") ? load_wider_txt(fp, label_path, images, &b, err)
                                          : load_retinaface(fp, label_path, images, &b, err);
        fclose(fp);
    }
    if (b.open) {
        free(b.cur.path);
        free(b.cur.faces);
    }
    if (!rc && set->n == 0) rc = error_set(err, ERR_FORMAT, "%s: no usable images (images looked up in %s)", label_path, images);
    if (rc) trainset_free(set);
    return rc;
}

void trainset_free(TrainSet *set)
{
    for (int i = 0; i < set->n; i++) {
        free(set->samples[i].path);
        free(set->samples[i].faces);
    }
    free(set->samples);
    memset(set, 0, sizeof *set);
}
