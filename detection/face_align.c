#include "detection/face_align.h"

#include <math.h>

const float face_align_template[10] = {38.2946f, 51.6963f, 73.5318f, 51.5014f, 56.0252f,
                                       71.7366f, 41.5493f, 92.3655f, 70.7299f, 92.2041f};

/* In 2D a similarity is multiplication by a complex number plus a shift: with centred points p and
 * q, the least-squares factor is sum(conj(p) q) / sum(|p|^2) (Umeyama's solution without reflection). */
ErrorCode face_similarity(const float src[10], const float dst[10], double m[6], Error *err)
{
    double sx = 0, sy = 0, dx = 0, dy = 0;
    for (int i = 0; i < 5; i++) sx += src[2 * i], sy += src[2 * i + 1], dx += dst[2 * i], dy += dst[2 * i + 1];
    sx /= 5, sy /= 5, dx /= 5, dy /= 5;
    double num_re = 0, num_im = 0, den = 0;
    for (int i = 0; i < 5; i++) {
        double px = src[2 * i] - sx, py = src[2 * i + 1] - sy, qx = dst[2 * i] - dx, qy = dst[2 * i + 1] - dy;
        num_re += px * qx + py * qy;
        num_im += px * qy - py * qx;
        den += px * px + py * py;
    }
    if (!(den > 1e-9) || !isfinite(den)) return error_set(err, ERR_ARG, "landmarks too close together to align");
    double a = num_re / den, b = num_im / den;
    m[0] = a, m[1] = -b, m[2] = dx - (a * sx - b * sy);
    m[3] = b, m[4] = a, m[5] = dy - (b * sx + a * sy);
    return ERR_OK;
}

/* Bilinear sample of channel c at (x, y) with pixel centres at integers; black outside. */
static float sample(const Image *img, double x, double y, int c)
{
    int x0 = (int)floor(x), y0 = (int)floor(y);
    double fx = x - x0, fy = y - y0, v = 0;
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < 2; i++) {
            int xi = x0 + i, yj = y0 + j;
            if (xi < 0 || yj < 0 || xi >= img->width || yj >= img->height) continue;
            double w = (i ? fx : 1 - fx) * (j ? fy : 1 - fy);
            v += w * img->bgr[((size_t)yj * img->width + xi) * 3 + c];
        }
    return (float)v;
}

ErrorCode face_align_crop(const Image *img, const float landmarks[10], Image *out, Error *err)
{
    double m[6];
    if (face_similarity(landmarks, face_align_template, m, err)) return err->code;
    /* the inverse of [a -b; b a] is [a b; -b a] / (a^2 + b^2) */
    double a = m[0], b = m[3], s = a * a + b * b;
    if (image_alloc(out, FACE_ALIGN_SIZE, FACE_ALIGN_SIZE, err)) return err->code;
    for (int v = 0; v < FACE_ALIGN_SIZE; v++)
        for (int u = 0; u < FACE_ALIGN_SIZE; u++) {
            double qx = u - m[2], qy = v - m[5];
            double x = (a * qx + b * qy) / s, y = (-b * qx + a * qy) / s;
            for (int c = 0; c < 3; c++) {
                float p = sample(img, x, y, c);
                out->bgr[((size_t)v * FACE_ALIGN_SIZE + u) * 3 + c] = (uint8_t)(p < 0 ? 0 : p > 255 ? 255 : lrintf(p));
            }
        }
    return ERR_OK;
}
