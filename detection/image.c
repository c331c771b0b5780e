#include "detection/image.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <jpeglib.h>
#include <jerror.h>

ErrorCode image_alloc(Image *img, int width, int height, Error *err)
{
    img->width = width, img->height = height;
    img->bgr = malloc((size_t)width * height * 3 + 1);
    if (!img->bgr) return error_set(err, ERR_OOM, "out of memory for a %dx%d image", width, height);
    return ERR_OK;
}

void image_free(Image *img)
{
    free(img->bgr);
    img->bgr = NULL;
    img->width = img->height = 0;
}

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int fatal_warning; /* data was missing or corrupt: the pixels would be partly invented */
} JpegError;

static void on_error_exit(j_common_ptr cinfo)
{
    JpegError *e = (JpegError *)cinfo->err;
    cinfo->err->format_message(cinfo, e->message);
    longjmp(e->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level)
{
    JpegError *e = (JpegError *)cinfo->err;
    if (level >= 0) return; /* trace messages */
    int code = cinfo->err->msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC) {
        if (!e->fatal_warning) cinfo->err->format_message(cinfo, e->message);
        e->fatal_warning = 1;
    }
}

/* The error manager of one (de)compression: errors jump back to jerr->jump with the message kept;
 * with watch_warnings (decoding), corrupt-data warnings are noted as fatal_warning. */
static struct jpeg_error_mgr *jpeg_errors(JpegError *jerr, bool watch_warnings)
{
    memset(jerr, 0, sizeof *jerr);
    jpeg_std_error(&jerr->mgr);
    jerr->mgr.error_exit = on_error_exit;
    if (watch_warnings) jerr->mgr.emit_message = on_message;
    return &jerr->mgr;
}

ErrorCode image_load_jpeg_region(const char *path, int min_w, int min_h, const ImageRegion *region, Image *img,
                                 Error *err)
{
    memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct jpeg_decompress_struct cinfo;
    JpegError jerr;
    cinfo.err = jpeg_errors(&jerr, true);
    /* volatile: set after setjmp, read after longjmp (else the handler may see NULL and leak it) */
    unsigned char *volatile row = NULL;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        free(row);
        image_free(img);
        return error_set(err, ERR_FORMAT, "%s: not a valid JPEG: %s", path, jerr.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
#ifdef JCS_EXTENSIONS
    /* libjpeg-turbo writes BGR itself, straight into the image's rows (the byte swap of each row of RGB
     * cost 2% of a MobileNet training step, in the loader threads that share the cores with the step) */
    cinfo.out_color_space = JCS_EXT_BGR; /* grayscale and CMYK-free YCbCr come out as BGR */
#else
    cinfo.out_color_space = JCS_RGB; /* grayscale and CMYK-free YCbCr come out as RGB */
#endif
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return error_set(err, ERR_FORMAT, "%s: CMYK JPEGs are not supported", path);
    }
    if (min_w > 0 && min_h > 0) {
        /* Largest reduction 1/2^k that keeps the image at least min_w x min_h. */
        int denom = 1;
        while (denom < 8 && (int)(cinfo.image_width / (unsigned)(denom * 2)) >= min_w &&
               (int)(cinfo.image_height / (unsigned)(denom * 2)) >= min_h)
            denom *= 2;
        cinfo.scale_num = 1;
        cinfo.scale_denom = (unsigned)denom;
    }
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3) longjmp(jerr.jump, 1);
    int W = (int)cinfo.output_width, H = (int)cinfo.output_height;
    if (W <= 0 || H <= 0 || (long long)W * H > (1LL << 28)) {
        snprintf(jerr.message, sizeof jerr.message, "unreasonable size %dx%d", W, H);
        longjmp(jerr.jump, 1);
    }
    int x0 = 0, y0 = 0, w = W, h = H;
    if (region) region->pick(region->ctx, W, H, &x0, &y0, &w, &h);
    if (x0 < 0 || y0 < 0 || w < 1 || h < 1 || x0 + w > W || y0 + h > H) {
        snprintf(jerr.message, sizeof jerr.message, "region %dx%d at (%d, %d) outside the %dx%d image", w, h, x0, y0, W, H);
        longjmp(jerr.jump, 1);
    }
    if (image_alloc(img, w, h, err)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return err->code;
    }
    /* Columns: libjpeg-turbo widens the span to whole iMCUs and decodes only those; rows above are skipped
     * (entropy-decoded only), rows below never read. A span's edge columns come out unlike the whole image's
     * where the chroma is upsampled (its neighbour beyond the edge is taken as the edge's own), so the span
     * asks for CROP_MARGIN more columns on each side than the region (the right edge differed in 99 of
     * 240 random regions of WIDER images without it; with it every pixel equals the whole decoding's). */
    enum { CROP_MARGIN = 16 };
    int m0 = x0 < CROP_MARGIN ? 0 : x0 - CROP_MARGIN, m1 = W - (x0 + w) < CROP_MARGIN ? W : x0 + w + CROP_MARGIN;
    JDIMENSION span_x = (JDIMENSION)m0, span_w = (JDIMENSION)(m1 - m0);
#ifdef JCS_EXTENSIONS
    if (m1 - m0 < W) jpeg_crop_scanline(&cinfo, &span_x, &span_w);
    if (y0 > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)y0);
#else
    span_x = 0, span_w = (JDIMENSION)W;
#endif
    if (span_x > (JDIMENSION)x0 || span_x + span_w < (JDIMENSION)(x0 + w)) { /* not what libjpeg-turbo promises */
        snprintf(jerr.message, sizeof jerr.message, "cropped decoding lost the region's columns");
        longjmp(jerr.jump, 1);
    }
    bool direct = span_x == (JDIMENSION)x0 && span_w == (JDIMENSION)w;
#ifndef JCS_EXTENSIONS
    direct = false;
#endif
    if (!direct && !(row = malloc((size_t)span_w * 3))) longjmp(jerr.jump, 1);
    size_t skip = ((size_t)x0 - span_x) * 3;
    while ((int)cinfo.output_scanline < y0 + h) {
        int y = (int)cinfo.output_scanline;
        uint8_t *dst = y >= y0 ? img->bgr + (size_t)(y - y0) * w * 3 : NULL;
        JSAMPROW rows[1] = {direct ? dst : row};
        jpeg_read_scanlines(&cinfo, rows, 1);
        if (!dst || direct) continue; /* without libjpeg-turbo's skip, rows above are read and dropped */
#ifdef JCS_EXTENSIONS
        memcpy(dst, row + skip, (size_t)w * 3);
#else
        for (int x = 0; x < w; x++) {
            const unsigned char *src = row + skip + 3 * (size_t)x;
            dst[3 * x + 0] = src[2], dst[3 * x + 1] = src[1], dst[3 * x + 2] = src[0];
        }
#endif
    }
    if ((int)cinfo.output_scanline < H)
        jpeg_abort_decompress(&cinfo);
    else
        jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    free(row);
    if (jerr.fatal_warning) {
        image_free(img);
        return error_set(err, ERR_FORMAT, "%s: corrupt or truncated JPEG: %s", path, jerr.message);
    }
    return ERR_OK;
}

ErrorCode image_load_jpeg_scaled(const char *path, int min_w, int min_h, Image *img, Error *err)
{
    return image_load_jpeg_region(path, min_w, min_h, NULL, img, err);
}

ErrorCode image_jpeg_size(const char *path, int *width, int *height, Error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct jpeg_decompress_struct cinfo;
    JpegError jerr;
    cinfo.err = jpeg_errors(&jerr, true);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return error_set(err, ERR_FORMAT, "%s: not a valid JPEG: %s", path, jerr.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    *width = (int)cinfo.image_width, *height = (int)cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    return ERR_OK;
}

ErrorCode image_load_jpeg(const char *path, Image *img, Error *err)
{
    return image_load_jpeg_scaled(path, 0, 0, img, err);
}

ErrorCode image_save_jpeg(const char *path, const Image *img, int quality, Error *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return error_set(err, ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    struct jpeg_compress_struct cinfo;
    JpegError jerr;
    cinfo.err = jpeg_errors(&jerr, false);
    unsigned char *row = malloc((size_t)img->width * 3);
    if (!row) {
        fclose(f);
        remove(tmp);
        return error_set(err, ERR_OOM, "%s: out of memory", path);
    }
    if (setjmp(jerr.jump)) {
        jpeg_destroy_compress(&cinfo);
        fclose(f);
        free(row);
        remove(tmp);
        return error_set(err, ERR_IO, "%s: JPEG encoding failed: %s", path, jerr.message);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        const uint8_t *src = img->bgr + (size_t)cinfo.next_scanline * img->width * 3;
        for (int x = 0; x < img->width; x++) {
            row[3 * x] = src[3 * x + 2], row[3 * x + 1] = src[3 * x + 1], row[3 * x + 2] = src[3 * x];
        }
        JSAMPROW rows[1] = {row};
        jpeg_write_scanlines(&cinfo, rows, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(row);
    if (fclose(f) != 0) {
        remove(tmp);
        return error_set(err, ERR_IO, "%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) return error_set(err, ERR_IO, "%s: cannot rename: %s", path, strerror(errno));
    return ERR_OK;
}

/* out = top + b (bot - top), rounded and clamped to bytes; AVX2 where the CPU has it (chosen at run time). */
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
static void blend_rows(const float *restrict top, const float *restrict bot, float b, size_t n, uint8_t *restrict out)
{
    for (size_t i = 0; i < n; i++) {
        float v = top[i] + b * (bot[i] - top[i]);
        float rounded = v + 0.5f; /* (int)(v + 0.5) for v in [0, 255] */
        out[i] = (uint8_t)(v < 0 ? 0.0f : v > 255 ? 255.0f : rounded);
    }
}

/* One source row resampled horizontally: out[3 x + c] = r[i0 + c] + a (r[i1 + c] - r[i0 + c]). */
__attribute__((target_clones("avx2", "default"))) static void resample_row(const uint8_t *r, int src_w,
                                                                          const int *x0, const float *wx, int width,
                                                                          float *out)
{
    for (int x = 0; x < width; x++) {
        int i0 = x0[x] * 3, i1 = (x0[x] + (x0[x] < src_w - 1)) * 3;
        float a = wx[x];
        for (int c = 0; c < 3; c++) out[3 * x + c] = r[i0 + c] + a * (r[i1 + c] - r[i0 + c]);
    }
}

#if defined(__x86_64__)
/* resample_row's AVX2 body, 8 output pixels at a time: a source pixel's three bytes come in one 32-bit
 * gather (B, G, R and a fourth byte that is dropped), then the same float operations in the same order.
 * It serves the columns whose gathers stay inside the row (x0 ascending: while x0 <= src_w - 3, so that
 * the right neighbour x0 + 1 is read up to byte 3 (x0 + 1) + 3 < 3 src_w); returns where it stopped. The
 * scalar loop it replaces converted each byte on its own: a sixth of the loader's time. */
__attribute__((target("avx2"))) static int resample_row_avx2(const uint8_t *r, int src_w, const int *x0,
                                                              const float *wx, int width, float *out)
{
    const __m256i three = _mm256_set1_epi32(3), low = _mm256_set1_epi32(255);
    int x = 0;
    for (; x + 8 <= width && x0[x + 7] <= src_w - 3; x += 8) {
        __m256i at0 = _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(x0 + x)), three);
        __m256i g0 = _mm256_i32gather_epi32((const int *)r, at0, 1);
        __m256i g1 = _mm256_i32gather_epi32((const int *)r, _mm256_add_epi32(at0, three), 1);
        __m256 a = _mm256_loadu_ps(wx + x);
        float o[3][8];
        __m256 v0 = _mm256_cvtepi32_ps(_mm256_and_si256(g0, low)), v1 = _mm256_cvtepi32_ps(_mm256_and_si256(g1, low));
        _mm256_storeu_ps(o[0], _mm256_add_ps(v0, _mm256_mul_ps(a, _mm256_sub_ps(v1, v0))));
        v0 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(g0, 8), low));
        v1 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(g1, 8), low));
        _mm256_storeu_ps(o[1], _mm256_add_ps(v0, _mm256_mul_ps(a, _mm256_sub_ps(v1, v0))));
        v0 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(g0, 16), low));
        v1 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(g1, 16), low));
        _mm256_storeu_ps(o[2], _mm256_add_ps(v0, _mm256_mul_ps(a, _mm256_sub_ps(v1, v0))));
        for (int k = 0; k < 8; k++)
            out[3 * (x + k)] = o[0][k], out[3 * (x + k) + 1] = o[1][k], out[3 * (x + k) + 2] = o[2][k];
    }
    return x;
}
#endif

/* One source row resampled: the vector body where the CPU has AVX2, the rest by resample_row. */
static void resample_source_row(const uint8_t *r, int src_w, const int *x0, const float *wx, int width, float *out,
                                bool avx2)
{
    int done = 0;
#if defined(__x86_64__)
    if (avx2) done = resample_row_avx2(r, src_w, x0, wx, width, out);
#else
    (void)avx2;
#endif
    resample_row(r, src_w, x0 + done, wx + done, width - done, out + 3 * (size_t)done);
}

/* Separable: each source row is resampled horizontally once (kept for the output rows that share
 * it), then output rows blend two such rows, a contiguous loop the compiler vectorises. The same
 * arithmetic, in the same order, as blending the four neighbours per pixel. */
ErrorCode image_resize(const Image *src, int width, int height, Image *dst, Error *err)
{
    if (width < 1 || height < 1) return error_set(err, ERR_ARG, "resize to %dx%d", width, height);
    if (image_alloc(dst, width, height, err)) return err->code;
    double sx = (double)src->width / width, sy = (double)src->height / height;
    /* Per output column: left source index and weight (OpenCV: fx = (x+0.5)*scale - 0.5, clamped). */
    int *x0 = malloc(sizeof(int) * (size_t)width);
    float *wx = malloc(sizeof(float) * (size_t)width);
    float *rows = malloc(sizeof(float) * (size_t)width * 3 * 2); /* two resampled source rows */
    if (!x0 || !wx || !rows) {
        free(x0), free(wx), free(rows);
        image_free(dst);
        return error_set(err, ERR_OOM, "out of memory resizing");
    }
    for (int x = 0; x < width; x++) {
        double fx = (x + 0.5) * sx - 0.5;
        int ix = (int)floor(fx);
        float a = (float)(fx - ix);
        if (ix < 0) ix = 0, a = 0;
        if (ix >= src->width - 1) ix = src->width - 1, a = 0;
        x0[x] = ix, wx[x] = a;
    }
    int held[2] = {-1, -1}; /* source row in each of the two buffers */
    bool avx2 = false;
#if defined(__x86_64__)
    avx2 = __builtin_cpu_supports("avx2");
#endif
    size_t n = (size_t)width * 3;
    for (int y = 0; y < height; y++) {
        double fy = (y + 0.5) * sy - 0.5;
        int iy = (int)floor(fy);
        float b = (float)(fy - iy);
        if (iy < 0) iy = 0, b = 0;
        if (iy >= src->height - 1) iy = src->height - 1, b = 0;
        int need[2] = {iy, iy + (iy < src->height - 1)};
        const float *rr[2];
        for (int k = 0; k < 2; k++) {
            int slot = need[k] & 1; /* rows iy and iy + 1 never share a slot */
            if (held[slot] != need[k]) {
                resample_source_row(src->bgr + (size_t)need[k] * src->width * 3, src->width, x0, wx, width,
                                    rows + slot * n, avx2);
                held[slot] = need[k];
            }
            rr[k] = rows + slot * n;
        }
        blend_rows(rr[0], rr[1], b, n, dst->bgr + (size_t)y * n);
    }
    free(x0), free(wx), free(rows);
    return ERR_OK;
}

/* AVX2 where the CPU has it (chosen at run time): GCC then vectorises the 3-byte pixels with shuffles
 * (0.59 -> 0.11 ms at 640x480 on Zen 4; it runs for every detection and every training sample). Separate
 * restrict arguments: the output may not alias the mean or the pixels, so the loop vectorises. */
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
static void bgr_to_planes(const uint8_t *restrict px, size_t plane, float m0, float m1, float m2, float *restrict b,
                          float *restrict g, float *restrict r)
{
    for (size_t i = 0; i < plane; i++)
        b[i] = (float)px[3 * i] - m0, g[i] = (float)px[3 * i + 1] - m1, r[i] = (float)px[3 * i + 2] - m2;
}

void image_to_chw(const Image *img, const float mean[3], float *chw)
{
    size_t plane = (size_t)img->width * img->height;
    bgr_to_planes(img->bgr, plane, mean[0], mean[1], mean[2], chw, chw + plane, chw + 2 * plane);
}

static void put_pixel(Image *img, int x, int y, const uint8_t bgr[3])
{
    if (x < 0 || y < 0 || x >= img->width || y >= img->height) return;
    memcpy(img->bgr + ((size_t)y * img->width + x) * 3, bgr, 3);
}

void image_draw_rect(Image *img, int x1, int y1, int x2, int y2, const uint8_t bgr[3], int thickness)
{
    for (int t = 0; t < thickness; t++) {
        for (int x = x1 - t; x <= x2 + t; x++) put_pixel(img, x, y1 - t, bgr), put_pixel(img, x, y2 + t, bgr);
        for (int y = y1 - t; y <= y2 + t; y++) put_pixel(img, x1 - t, y, bgr), put_pixel(img, x2 + t, y, bgr);
    }
}

void image_draw_disc(Image *img, int cx, int cy, int radius, const uint8_t bgr[3])
{
    for (int dy = -radius; dy <= radius; dy++)
        for (int dx = -radius; dx <= radius; dx++)
            if (dx * dx + dy * dy <= radius * radius) put_pixel(img, cx + dx, cy + dy, bgr);
}

void image_draw_text(Image *img, int x, int y, const char *text, const uint8_t bgr[3])
{
    /* 5x7 glyphs for 0-9 and '.', one byte per row (low 5 bits, MSB left). */
    static const uint8_t digits[11][7] = {
        {14, 17, 19, 21, 25, 17, 14}, {4, 12, 4, 4, 4, 4, 14},   {14, 17, 1, 2, 4, 8, 31},
        {31, 2, 4, 2, 1, 17, 14},     {2, 6, 10, 18, 31, 2, 2},  {31, 16, 30, 1, 1, 17, 14},
        {6, 8, 16, 30, 17, 17, 14},   {31, 1, 2, 4, 8, 8, 8},    {14, 17, 17, 14, 17, 17, 14},
        {14, 17, 17, 15, 1, 2, 12},   {0, 0, 0, 0, 0, 12, 12},
    };
    for (; *text; text++, x += 6) {
        int g = *text == '.' ? 10 : (*text >= '0' && *text <= '9') ? *text - '0' : -1;
        if (g < 0) continue;
        for (int r = 0; r < 7; r++)
            for (int c = 0; c < 5; c++)
                if (digits[g][r] >> (4 - c) & 1) put_pixel(img, x + c, y + r, bgr);
    }
}

/* The source columns of each output column (x * src_w / width, as OpenCV's nearest and area resizes take
 * them), worked out once per resize instead of a 64-bit division per pixel; [width + 1] entries. */
static int *column_starts(int src_w, int width, Error *err)
{
    int *x0 = malloc(sizeof(int) * ((size_t)width + 1));
    if (!x0) {
        error_set(err, ERR_OOM, "out of memory for a resize to width %d", width);
        return NULL;
    }
    for (int x = 0; x <= width; x++) x0[x] = (int)((int64_t)x * src_w / width);
    return x0;
}

ErrorCode image_resize_nearest(const Image *src, int width, int height, Image *dst, Error *err)
{
    if (width < 1 || height < 1) return error_set(err, ERR_ARG, "resize to %dx%d", width, height);
    int *sx = column_starts(src->width, width, err);
    if (!sx) return err->code;
    if (image_alloc(dst, width, height, err)) {
        free(sx);
        return err->code;
    }
    size_t row_bytes = (size_t)width * 3;
    for (int y = 0, prev = -1; y < height; y++) {
        int sy = (int)((int64_t)y * src->height / height);
        uint8_t *out = dst->bgr + (size_t)y * row_bytes;
        if (sy == prev) { /* an enlarged row: the one above again */
            memcpy(out, out - row_bytes, row_bytes);
            continue;
        }
        const uint8_t *in = src->bgr + (size_t)sy * src->width * 3;
        for (int x = 0; x < width; x++) memcpy(out + 3 * (size_t)x, in + 3 * (size_t)sx[x], 3);
        prev = sy;
    }
    free(sx);
    return ERR_OK;
}

/* (v + n / 2) / n rounded down, as a multiplication by m = ceil(2^24 / n) and a shift: with s = v + n / 2
 * and m n = 2^24 + e, 0 <= e < n, s m / 2^24 = s / n + s e / (n 2^24), and s e < 2^24 (s < 2^16, e < n <= 2^8)
 * keeps the excess below 1/n, which no fraction s / n can be pushed over an integer by. So exact for every
 * window of at most 256 pixels (v <= 255 n), in place of a division for each channel of each output pixel. */
static inline uint64_t divisor_magic(unsigned n) { return ((1ull << 24) + n - 1) / n; }
static inline unsigned rounded_quotient(unsigned v, unsigned n, uint64_t magic)
{
    return (unsigned)(((uint64_t)(v + n / 2) * magic) >> 24);
}

ErrorCode image_resize_area(const Image *src, int width, int height, Image *dst, Error *err)
{
    if (width >= src->width || height >= src->height) return image_resize(src, width, height, dst, err);
    int *xs = column_starts(src->width, width, err);
    if (!xs) return err->code;
    if (image_alloc(dst, width, height, err)) {
        free(xs);
        return err->code;
    }
    for (int y = 0; y < height; y++) {
        int y0 = (int)((int64_t)y * src->height / height), y1 = (int)((int64_t)(y + 1) * src->height / height);
        if (y1 <= y0) y1 = y0 + 1;
        for (int x = 0; x < width; x++) {
            int x0 = xs[x], x1 = xs[x + 1];
            if (x1 <= x0) x1 = x0 + 1;
            unsigned sum[3] = {0, 0, 0};
            for (int yy = y0; yy < y1; yy++)
                for (int xx = x0; xx < x1; xx++)
                    for (int c = 0; c < 3; c++) sum[c] += src->bgr[((size_t)yy * src->width + xx) * 3 + c];
            unsigned n = (unsigned)((y1 - y0) * (x1 - x0));
            uint8_t *out = dst->bgr + ((size_t)y * width + x) * 3;
            if (n <= 256) { /* every shrink by up to 16 in each direction */
                uint64_t magic = divisor_magic(n);
                for (int c = 0; c < 3; c++) out[c] = (uint8_t)rounded_quotient(sum[c], n, magic);
            } else {
                for (int c = 0; c < 3; c++) out[c] = (uint8_t)((sum[c] + n / 2) / n);
            }
        }
    }
    free(xs);
    return ERR_OK;
}
