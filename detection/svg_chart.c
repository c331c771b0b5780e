#include <math.h>
#include <stdbool.h>

#include "detection/svg_chart.h"

/* Plot area inside a panel, in pixels. */
enum { PLOT_X = 60, PLOT_Y = 30, PLOT_W = 420, PLOT_H = 330 };

void svg_begin(FILE *f, int n_panels)
{
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            SVG_PANEL_WIDTH * (n_panels > 0 ? n_panels : 1), SVG_PANEL_HEIGHT);
}

void svg_end(FILE *f) { fprintf(f, "</svg>\n"); }

static void data_range(const SvgSeries *s, int n, bool use_x, double *lo, double *hi)
{
    *lo = INFINITY, *hi = -INFINITY;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < s[k].n; i++) {
            double v = use_x ? s[k].x[i] : s[k].y[i];
            if (isnan(v) || (!use_x && isnan(s[k].x[i]))) continue;
            if (v < *lo) *lo = v;
            if (v > *hi) *hi = v;
        }
    if (!(*lo <= *hi)) *lo = 0, *hi = 1;
    if (*hi - *lo < 1e-12) *lo -= 0.5, *hi += 0.5;
}

/* Tick labels: short for round numbers, more digits when the range is narrow. */
static void tick_label(char *buf, size_t n, double v, double span)
{
    int digits = span >= 10 ? 0 : span >= 1 ? 1 : span >= 0.1 ? 2 : 3;
    snprintf(buf, n, "%.*f", digits, v);
}

void svg_line_chart(FILE *f, int panel, const SvgAxes *a, const SvgSeries *s, int n)
{
    double x0, x1, y0, y1;
    if (a->x_min < a->x_max) x0 = a->x_min, x1 = a->x_max;
    else data_range(s, n, true, &x0, &x1);
    if (a->y_min < a->y_max) y0 = a->y_min, y1 = a->y_max;
    else data_range(s, n, false, &y0, &y1);
    int ox = panel * SVG_PANEL_WIDTH + PLOT_X, oy = PLOT_Y;
    fprintf(f, "<g>\n<text x=\"%d\" y=\"18\" text-anchor=\"middle\" font-weight=\"bold\">%s</text>\n",
            ox + PLOT_W / 2, a->title ? a->title : "");
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", ox, oy, PLOT_W,
            PLOT_H);
    for (int i = 0; i <= 10; i++) {
        double t = i / 10.0;
        char lx[32], ly[32];
        tick_label(lx, sizeof lx, x0 + t * (x1 - x0), x1 - x0);
        tick_label(ly, sizeof ly, y0 + t * (y1 - y0), y1 - y0);
        double px = ox + t * PLOT_W, py = oy + PLOT_H - t * PLOT_H;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", px, oy, px, oy + PLOT_H);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", ox, py, ox + PLOT_W, py);
        if (i % 2 == 0) fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", px, oy + PLOT_H + 16, lx);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", ox - 6, py + 4, ly);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", ox + PLOT_W / 2, oy + PLOT_H + 34,
            a->x_label ? a->x_label : "");
    int cy = oy + PLOT_H / 2;
    fprintf(f, "<text x=\"%d\" y=\"%d\" transform=\"rotate(-90 %d %d)\" text-anchor=\"middle\">%s</text>\n",
            ox - 44, cy, ox - 44, cy, a->y_label ? a->y_label : "");
    for (int k = 0; k < n; k++) {
        const SvgSeries *q = &s[k];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", q->color);
        for (int i = 0; i < q->n; i++) {
            if (isnan(q->x[i]) || isnan(q->y[i])) continue;
            fprintf(f, "%.1f,%.1f ", ox + (q->x[i] - x0) / (x1 - x0) * PLOT_W, oy + PLOT_H - (q->y[i] - y0) / (y1 - y0) * PLOT_H);
        }
        fprintf(f, "\"/>\n");
        for (int i = 0; q->markers && i < q->n; i++) {
            if (isnan(q->x[i]) || isnan(q->y[i])) continue;
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", ox + (q->x[i] - x0) / (x1 - x0) * PLOT_W,
                    oy + PLOT_H - (q->y[i] - y0) / (y1 - y0) * PLOT_H, q->color);
        }
        bool right = a->legend != SVG_LEGEND_BOTTOM_LEFT, top = a->legend == SVG_LEGEND_TOP_RIGHT;
        fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"%s\" text-anchor=\"%s\">%s</text>\n",
                right ? ox + PLOT_W - 10 : ox + 10, top ? oy + 20 + 16 * k : oy + PLOT_H - 12 - 16 * (n - 1 - k), q->color,
                right ? "end" : "start", q->label ? q->label : "");
    }
    fprintf(f, "</g>\n");
}
