#include "detection/box_coding.h"

#include <math.h>

void boxes_decode(const float *loc, const float *priors, int64_t n, const float v[2], float *boxes)
{
    for (int64_t i = 0; i < n; i++) {
        float r[4];
        priors_refine(loc + 4 * i, priors + 4 * i, 1, v, r);
        float *b = boxes + 4 * i;
        b[0] = r[0] - r[2] / 2, b[1] = r[1] - r[3] / 2;
        b[2] = b[0] + r[2], b[3] = b[1] + r[3]; /* as the reference: x2 = x1 + w */
    }
}

void priors_refine(const float *loc, const float *priors, int64_t n, const float v[2], float *refined)
{
    for (int64_t i = 0; i < n; i++) {
        const float *l = loc + 4 * i, *p = priors + 4 * i;
        float *r = refined + 4 * i;
        r[0] = p[0] + l[0] * v[0] * p[2], r[1] = p[1] + l[1] * v[0] * p[3];
        r[2] = p[2] * expf(l[2] * v[1]), r[3] = p[3] * expf(l[3] * v[1]);
    }
}

void landmarks_decode(const float *pre, const float *priors, int64_t n, const float v[2], float *landms)
{
    for (int64_t i = 0; i < n; i++) {
        const float *p = priors + 4 * i;
        for (int k = 0; k < 5; k++) {
            landms[10 * i + 2 * k] = p[0] + pre[10 * i + 2 * k] * v[0] * p[2];
            landms[10 * i + 2 * k + 1] = p[1] + pre[10 * i + 2 * k + 1] * v[0] * p[3];
        }
    }
}

void box_encode(const float g[4], const float p[4], const float v[2], float out[4])
{
    float gcx = (g[0] + g[2]) / 2, gcy = (g[1] + g[3]) / 2;
    out[0] = (gcx - p[0]) / (v[0] * p[2]);
    out[1] = (gcy - p[1]) / (v[0] * p[3]);
    out[2] = logf((g[2] - g[0]) / p[2]) / v[1];
    out[3] = logf((g[3] - g[1]) / p[3]) / v[1];
}

void landmarks_encode(const float g[10], const float p[4], const float v[2], float out[10])
{
    for (int k = 0; k < 5; k++) {
        out[2 * k] = (g[2 * k] - p[0]) / (v[0] * p[2]);
        out[2 * k + 1] = (g[2 * k + 1] - p[1]) / (v[0] * p[3]);
    }
}
