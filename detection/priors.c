#include "detection/priors.h"

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

int64_t priors_count(const PriorSpec *s, int height, int width)
{
    int64_t n = 0;
    for (int k = 0; k < s->n_levels; k++)
        n += (int64_t)ceil_div(height, s->steps[k]) * ceil_div(width, s->steps[k]) * s->n_sizes;
    return n;
}

static double clip01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

void priors_generate(const PriorSpec *s, int height, int width, float *out)
{
    for (int k = 0; k < s->n_levels; k++) {
        int step = s->steps[k], fh = ceil_div(height, step), fw = ceil_div(width, step);
        for (int i = 0; i < fh; i++)
            for (int j = 0; j < fw; j++)
                for (int a = 0; a < s->n_sizes; a++) {
                    double cx = (j + 0.5) * step / width, cy = (i + 0.5) * step / height;
                    double w = (double)s->sizes[k][a] / width, h = (double)s->sizes[k][a] / height;
                    if (s->clip) cx = clip01(cx), cy = clip01(cy), w = clip01(w), h = clip01(h);
                    *out++ = (float)cx, *out++ = (float)cy, *out++ = (float)w, *out++ = (float)h;
                }
    }
}
