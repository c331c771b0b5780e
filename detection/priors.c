#include "detection/priors.h"

#include <math.h>
#include <stdlib.h>

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

int64_t priors_count(const AnchorLayout *a, int height, int width)
{
    int64_t n = 0;
    for (int k = 0; k < a->n_levels; k++)
        n += (int64_t)ceil_div(height, a->steps[k]) * ceil_div(width, a->steps[k]) * a->per_location;
    return n;
}

static double clip01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

void priors_generate(const AnchorLayout *a, int height, int width, float *out)
{
    for (int k = 0; k < a->n_levels; k++) {
        int step = a->steps[k], fh = ceil_div(height, step), fw = ceil_div(width, step);
        for (int i = 0; i < fh; i++)
            for (int j = 0; j < fw; j++)
                for (int s = 0; s < a->per_location; s++) {
                    double cx = (j + 0.5) * step / width, cy = (i + 0.5) * step / height;
                    double side = a->sizes[k][s], r = a->ratios[k][s];
                    /* squares are computed as they always were, so their priors keep every bit */
                    double bw = r > 0 && r != 1 ? side * sqrt(r) : side, bh = r > 0 && r != 1 ? side / sqrt(r) : side;
                    double w = bw / width, h = bh / height;
                    if (a->clip) cx = clip01(cx), cy = clip01(cy), w = clip01(w), h = clip01(h);
                    *out++ = (float)cx, *out++ = (float)cy, *out++ = (float)w, *out++ = (float)h;
                }
    }
}

float *priors_for(const AnchorLayout *a, int height, int width, int64_t *count, Error *err)
{
    *count = 0;
    if (height < 1 || width < 1) {
        error_set(err, ERR_ARG, "priors of a %dx%d input", width, height);
        return NULL;
    }
    int64_t n = priors_count(a, height, width);
    float *p = malloc(sizeof(float) * 4 * (size_t)(n > 0 ? n : 1));
    if (!p) {
        error_set(err, ERR_OOM, "out of memory for %lld priors", (long long)n);
        return NULL;
    }
    priors_generate(a, height, width, p);
    *count = n;
    return p;
}
