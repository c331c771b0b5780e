/* Line charts as SVG, for the reports the tools write (precision-recall curves, training curves).
 * A document holds panels side by side; each panel has axes with ticks, a title and a legend.
 * Series are borrowed for the call; NaN points break a line. */
#ifndef DETECTION_SVG_CHART_H
#define DETECTION_SVG_CHART_H

#include <stdbool.h>
#include <stdio.h>

typedef struct {
    const char *label;  /* legend text */
    const char *color;  /* "#2a9d8f" */
    const double *x, *y;
    int n;
    bool markers;       /* a dot at every point (sparse series such as validation results) */
} SvgSeries;

typedef enum { SVG_LEGEND_BOTTOM_LEFT, SVG_LEGEND_BOTTOM_RIGHT, SVG_LEGEND_TOP_RIGHT } SvgLegendCorner;

typedef struct {
    const char *title, *x_label, *y_label;
    SvgLegendCorner legend; /* the corner the curves leave free */
    double x_min, x_max, y_min, y_max; /* a range with min >= max is taken from the data */
} SvgAxes;

enum { SVG_PANEL_WIDTH = 520, SVG_PANEL_HEIGHT = 420 };

/* Starts a document of n_panels panels in a row. */
void svg_begin(FILE *f, int n_panels);
/* Panel index `panel` (0-based) of the document. */
void svg_line_chart(FILE *f, int panel, const SvgAxes *axes, const SvgSeries *series, int n_series);
void svg_end(FILE *f);

#endif
