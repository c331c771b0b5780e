#include "detection/train_log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "detection/output_file.h"
#include "detection/svg_chart.h"

static const char HEADER[] = "epoch,step,global_step,loss_loc,loss_cls,loss_landm,loss_total,lr,images_per_s,val_easy,"
                             "val_medium,val_hard,loss2_loc,loss2_cls,loss2_landm\n";
/* Logs written before the cascade's stage-2 columns end after val_hard: their rows are read too. */
enum { COLUMNS = 15, FIRST_COLUMNS = 12 };

/* One CSV row as numbers (empty fields, and the stage-2 ones of an older log's rows, NaN); false for the
 * header or a malformed line. */
static bool parse_row(const char *line, double v[COLUMNS])
{
    const char *p = line;
    for (int k = 0; k < COLUMNS; k++) {
        if (*p == ',' || *p == '\n' || *p == '\r' || *p == 0) {
            v[k] = NAN;
        } else {
            char *end;
            v[k] = strtod(p, &end);
            if (end == p) return false;
            p = end;
        }
        if (k == FIRST_COLUMNS - 1 && *p != ',') { /* an older log's row */
            for (int j = k + 1; j < COLUMNS; j++) v[j] = NAN;
            return *p == '\n' || *p == '\r' || *p == 0;
        }
        if (k < COLUMNS - 1) {
            if (*p != ',') return false;
            p++;
        }
    }
    return true;
}

static double mean_ap(const double ap[3]) { return (ap[0] + ap[1] + ap[2]) / 3; }

ErrorCode train_log_open(TrainLog *log, const char *path, int first_epoch, int first_step, Error *err)
{
    memset(log, 0, sizeof *log);
    log->best_val = -1;
    snprintf(log->path, sizeof log->path, "%s", path);
    OutputFile out; /* the kept rows are rewritten whole, then renamed over the old log */
    if (output_open(&out, path, err)) return err->code;
    FILE *old = fopen(path, "r");
    fputs(HEADER, out.f);
    char line[1024];
    while (old && fgets(line, sizeof line, old)) {
        double v[COLUMNS];
        if (!parse_row(line, v) || v[0] > first_epoch || (v[0] == first_epoch && v[1] > first_step)) continue;
        fputs(line, out.f);
        if (!isnan(v[9]) && mean_ap(v + 9) > log->best_val) log->best_val = mean_ap(v + 9), log->best_epoch = (int)v[0];
    }
    if (old) fclose(old);
    if (output_commit(&out, err)) return err->code;
    if (!(log->f = fopen(path, "a"))) return error_set(err, ERR_IO, "%s: cannot append: %s", path, strerror(errno));
    return ERR_OK;
}

void train_log_close(TrainLog *log)
{
    if (log->f) fclose(log->f);
    log->f = NULL;
}

static ErrorCode flushed(TrainLog *log, Error *err)
{
    if (fflush(log->f) != 0 || ferror(log->f))
        return error_set(err, ERR_IO, "%s: write failed: %s", log->path, strerror(errno));
    return ERR_OK;
}

ErrorCode train_log_step(TrainLog *log, int epoch, int step, long global_step, double loc, double cls, double landm,
                         double total, const double stage2[3], double lr, double images_per_s, Error *err)
{
    fprintf(log->f, "%d,%d,%ld,%.6g,%.6g,%.6g,%.6g,%.6g,%.4g,,,,", epoch, step, global_step, loc, cls, landm, total, lr,
            images_per_s);
    if (stage2)
        fprintf(log->f, "%.6g,%.6g,%.6g\n", stage2[0], stage2[1], stage2[2]);
    else
        fputs(",,\n", log->f);
    return flushed(log, err);
}

ErrorCode train_log_val(TrainLog *log, int epoch, int step, long global_step, const double ap[3], bool *improved,
                        Error *err)
{
    fprintf(log->f, "%d,%d,%ld,,,,,,,%.6f,%.6f,%.6f,,,\n", epoch, step, global_step, ap[0], ap[1], ap[2]);
    *improved = mean_ap(ap) > log->best_val;
    if (*improved) log->best_val = mean_ap(ap), log->best_epoch = epoch;
    return flushed(log, err);
}

typedef struct {
    double *v; /* n x COLUMNS */
    int n, cap;
} Rows;

static ErrorCode read_rows(const char *path, Rows *r, Error *err)
{
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        double v[COLUMNS];
        if (!parse_row(line, v)) continue;
        if (r->n == r->cap) {
            int cap = r->cap ? 2 * r->cap : 1024;
            double *p = realloc(r->v, sizeof(double) * COLUMNS * (size_t)cap);
            if (!p) {
                fclose(f);
                free(r->v);
                return error_set(err, ERR_OOM, "out of memory reading %s", path);
            }
            r->v = p, r->cap = cap;
        }
        memcpy(r->v + (size_t)COLUMNS * r->n++, v, sizeof v);
    }
    fclose(f);
    return ERR_OK;
}

ErrorCode train_log_plot(const char *csv_path, const char *svg_path, Error *err)
{
    Rows r;
    if (read_rows(csv_path, &r, err)) return err->code;
    int epochs = 0;
    for (int i = 0; i < r.n; i++)
        if (r.v[COLUMNS * i] > epochs) epochs = (int)r.v[COLUMNS * i];
    /* per epoch: mean of each loss over its step rows; per validation: the AP triple */
    int m = epochs > 0 ? epochs : 1;
    double *buf = calloc((size_t)(m * 9 + r.n * 4 + 1), sizeof(double));
    int *count = calloc((size_t)m, sizeof(int));
    if (!buf || !count) {
        free(buf), free(count), free(r.v);
        return error_set(err, ERR_OOM, "out of memory");
    }
    double *ex = buf, *loss[4] = {buf + m, buf + 2 * m, buf + 3 * m, buf + 4 * m};
    double *vx = buf + 9 * m, *ap[3] = {vx + r.n, vx + 2 * r.n, vx + 3 * r.n};
    int nv = 0;
    for (int i = 0; i < r.n; i++) {
        const double *v = r.v + (size_t)COLUMNS * i;
        int e = (int)v[0] - 1;
        if (e < 0) continue;
        if (!isnan(v[9])) {
            vx[nv] = v[0];
            for (int k = 0; k < 3; k++) ap[k][nv] = v[9 + k];
            nv++;
        } else if (!isnan(v[6])) {
            for (int k = 0; k < 4; k++) loss[k][e] += v[3 + (k + 3) % 4]; /* total first, then loc, cls, landm */
            count[e]++;
        }
    }
    for (int e = 0; e < m; e++) {
        ex[e] = e + 1;
        for (int k = 0; k < 4; k++) loss[k][e] = count[e] ? loss[k][e] / count[e] : NAN;
    }
    static const char *colors[4] = {"#264653", "#2a9d8f", "#e9c46a", "#e76f51"};
    SvgSeries ls[4] = {{"total", colors[0], ex, loss[0], m, false},
                       {"loc (smooth L1)", colors[1], ex, loss[1], m, false},
                       {"cls (cross-entropy)", colors[2], ex, loss[2], m, false},
                       {"landm (smooth L1)", colors[3], ex, loss[3], m, false}};
    SvgSeries vs[3] = {{"Easy", colors[1], vx, ap[0], nv, true},
                       {"Medium", colors[2], vx, ap[1], nv, true},
                       {"Hard", colors[3], vx, ap[2], nv, true}};
    SvgAxes la = {"training loss (mean per epoch)", "epoch", "loss", SVG_LEGEND_TOP_RIGHT, 0, 0, 0, 0};
    SvgAxes va = {"validation AP (official protocol)", "epoch", "AP", SVG_LEGEND_BOTTOM_RIGHT, 0, 0, 0, 1};
    OutputFile o;
    ErrorCode rc = output_open(&o, svg_path, err);
    if (!rc) {
        svg_begin(o.f, 2);
        svg_line_chart(o.f, 0, &la, ls, 4);
        svg_line_chart(o.f, 1, &va, vs, 3);
        svg_end(o.f);
        rc = output_commit(&o, err);
    }
    free(buf), free(count), free(r.v);
    return rc;
}
