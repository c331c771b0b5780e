#include "nn/formats/dtype.h"

#include <math.h>
#include <string.h>

size_t dtype_size(const char *t)
{
    if (!strcmp(t, "F32") || !strcmp(t, "I32")) return 4;
    if (!strcmp(t, "F64") || !strcmp(t, "I64")) return 8;
    if (!strcmp(t, "F16") || !strcmp(t, "BF16") || !strcmp(t, "I16")) return 2;
    if (!strcmp(t, "I8") || !strcmp(t, "U8") || !strcmp(t, "BOOL")) return 1;
    return 0;
}

static float half_to_float(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
    float v;
    if (exp == 0)
        v = ldexpf((float)mant, -24);
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexpf((float)(mant | 1024), exp - 25);
    return sign ? -v : v;
}

void dtype_to_float(const char *t, const void *src, float *dst, int64_t n)
{
    if (!strcmp(t, "F32")) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    const unsigned char *s = src;
    size_t es = dtype_size(t);
    for (int64_t i = 0; i < n; i++, s += es) {
        if (!strcmp(t, "F32")) {
            memcpy(&dst[i], s, 4);
        } else if (!strcmp(t, "F64")) {
            double v;
            memcpy(&v, s, 8);
            dst[i] = (float)v;
        } else if (!strcmp(t, "F16")) {
            uint16_t h;
            memcpy(&h, s, 2);
            dst[i] = half_to_float(h);
        } else if (!strcmp(t, "BF16")) {
            uint32_t u = (uint32_t)(s[0] | s[1] << 8) << 16;
            memcpy(&dst[i], &u, 4);
        } else if (!strcmp(t, "I64")) {
            int64_t v;
            memcpy(&v, s, 8);
            dst[i] = (float)v;
        } else if (!strcmp(t, "I32")) {
            int32_t v;
            memcpy(&v, s, 4);
            dst[i] = (float)v;
        } else if (!strcmp(t, "I16")) {
            int16_t v;
            memcpy(&v, s, 2);
            dst[i] = (float)v;
        } else if (!strcmp(t, "I8")) {
            dst[i] = (float)(int8_t)s[0];
        } else {
            dst[i] = (float)s[0];
        }
    }
}
