/* Written branch-free over blocks of deinterleaved floats, which the compiler vectorises (AVX2 when
 * the CPU has it, chosen at run time; it takes the build's -fno-trapping-math, without which floorf
 * and the selects are not vectorised). Bit for bit the per-pixel integer/float definition
 * (checked over all 2^24 colours for several alpha/shift pairs, and by a test on a sample). */
#include "detection/photometric.h"

#include <math.h>

enum { HSV_BLOCK = 256 };

/* Plain selects (fminf/fmaxf are library calls with NaN rules that keep the loop from vectorising). */
static inline float max_f(float a, float b) { return a > b ? a : b; }
static inline float min_f(float a, float b) { return a < b ? a : b; }

__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
static void hsv_round_trip(float *restrict B, float *restrict G, float *restrict R, int n, float alpha, int shift)
{
    /* every value is computed unconditionally and then selected: a division or floor inside a
     * conditional arm keeps the loop from being vectorised */
    for (int i = 0; i < n; i++) {
        float b = B[i], g = G[i], r = R[i];
        float v = max_f(b, max_f(g, r)), mn = min_f(b, min_f(g, r)), d = v - mn;
        /* s = (d * 255 + v / 2) / v in integers: exact in float (the quotient is never within an
         * ulp of an integer it is not equal to) */
        float q = floorf((d * 255.0f + floorf(v * 0.5f)) / max_f(v, 1.0f));
        float s = v > 0.0f ? q : 0.0f;
        float dd = d > 0.0f ? d : 1.0f;
        float h_r = 60.0f * (g - b) / dd, h_g = 120.0f + 60.0f * (b - r) / dd, h_b = 240.0f + 60.0f * (r - g) / dd;
        float h = v == r ? h_r : v == g ? h_g : h_b;
        h = d > 0.0f ? h : 0.0f;
        h = h < 0.0f ? h + 360.0f : h;
        float hh = floorf(h / 2 + 0.5f); /* (int)(x + 0.5) for x >= 0 */
        hh = hh >= 180.0f ? hh - 180.0f : hh;
        /* scale 1 (no saturation change) leaves the integer s as it is */
        s = min_f(max_f(floorf(s * alpha), 0.0f), 255.0f); /* uint8 conversion truncates */
        hh += (float)shift;
        hh = hh < 0.0f ? hh + 180.0f : hh >= 180.0f ? hh - 180.0f : hh;
        /* back: sector and position inside it, then each channel is c, x or 0 above m */
        float hs = hh * (2.0f / 60.0f), sf = s * (1.0f / 255.0f);
        int sec = (int)hs;
        float f = hs - (float)sec;
        float c = v * sf, x_up = c * f, x_down = c * (1.0f - f), m = v - c;
        /* each channel is exactly c, x or 0: picked by 0/1 factors (exact, as c and x are finite),
         * because selects nested this deep stop the compiler's if-conversion */
        float odd = (float)(sec & 1), x = x_down * odd + x_up * (1.0f - odd);
        float rr = c * (float)((sec == 0) | (sec == 5)) + x * (float)((sec == 1) | (sec == 4));
        float gg = c * (float)((sec == 1) | (sec == 2)) + x * (float)((sec == 0) | (sec == 3));
        float bb = c * (float)((sec == 3) | (sec == 4)) + x * (float)((sec == 2) | (sec == 5));
        B[i] = min_f(max_f(floorf(bb + m + 0.5f), 0.0f), 255.0f);
        G[i] = min_f(max_f(floorf(gg + m + 0.5f), 0.0f), 255.0f);
        R[i] = min_f(max_f(floorf(rr + m + 0.5f), 0.0f), 255.0f);
    }
}

/* static: the resolver of an exported target_clones function is exported from the .so whatever its
 * visibility says */
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
static void convert_bytes(uint8_t *bytes, size_t n, float alpha, float beta)
{
    for (size_t i = 0; i < n; i++) {
        float v = bytes[i] * alpha + beta;
        v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
        bytes[i] = (uint8_t)v; /* truncates, as the uint8 conversion of the per-byte table did */
    }
}

void photometric_convert(uint8_t *bytes, size_t n, float alpha, float beta) { convert_bytes(bytes, n, alpha, beta); }

/* The 3-byte pixels to and from planes of floats, apart from the arithmetic and with restrict arguments so
 * that GCC vectorises them with shuffles (AVX2 where the CPU has it): written inline in hsv_adjust, they were
 * scalar and took 40% as long as hsv_round_trip itself. */
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
static void pixels_to_planes(const uint8_t *restrict p, int n, float *restrict B, float *restrict G, float *restrict R)
{
    for (int i = 0; i < n; i++) B[i] = p[3 * i], G[i] = p[3 * i + 1], R[i] = p[3 * i + 2];
}

/* The planes hold whole numbers 0..255 (hsv_round_trip clamps them): the conversion is exact. */
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
static void planes_to_pixels(const float *restrict B, const float *restrict G, const float *restrict R, int n,
                             uint8_t *restrict p)
{
    for (int i = 0; i < n; i++)
        p[3 * i] = (uint8_t)(int)B[i], p[3 * i + 1] = (uint8_t)(int)G[i], p[3 * i + 2] = (uint8_t)(int)R[i];
}

void hsv_adjust(uint8_t *bgr, size_t pixels, float alpha, int shift)
{
    float B[HSV_BLOCK], G[HSV_BLOCK], R[HSV_BLOCK];
    for (size_t i0 = 0; i0 < pixels; i0 += HSV_BLOCK) {
        int len = pixels - i0 < HSV_BLOCK ? (int)(pixels - i0) : HSV_BLOCK;
        uint8_t *p = bgr + 3 * i0;
        pixels_to_planes(p, len, B, G, R);
        hsv_round_trip(B, G, R, len, alpha, shift);
        planes_to_pixels(B, G, R, len, p);
    }
}
