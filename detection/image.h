/* Image: 8-bit interleaved BGR pixels (OpenCV's order, which the reference model was trained
 * on), row-major, owned by the struct. JPEG decoding/encoding uses libjpeg(-turbo), PNG decoding
 * libpng, WebP libwebp, EXIF libexif; decoding errors and truncated/corrupt data are reported, never returned as silently grey
 * pixels. */
#ifndef DETECTION_IMAGE_H
#define DETECTION_IMAGE_H

#include <stdint.h>

#include "tensor/tensor.h"

typedef struct {
    int width, height;
    uint8_t *bgr; /* width * height * 3 */
} Image;

/* JPEG, PNG or WebP, told apart by the first bytes (detection/image_load.c); a JPEG's EXIF
 * orientation is applied, so the pixels are the image as it is shown. */
ErrorCode image_load(const char *path, Image *img, Error *err);
/* The stored pixels, EXIF orientation not applied (training and evaluation labels refer to them). */
ErrorCode image_load_jpeg(const char *path, Image *img, Error *err);
ErrorCode image_load_png(const char *path, Image *img, Error *err);
ErrorCode image_load_webp(const char *path, Image *img, Error *err);
/* The EXIF orientation tag of a file (1-8; 1 when absent or unreadable). */
int image_exif_orientation(const char *path);
/* Moves the pixels as EXIF orientation 1-8 says (2: mirrored, 3: 180 degrees, 6: turned 90 degrees
 * clockwise to be shown, 8: anticlockwise, 5 and 7: the transposes); img is replaced. */
ErrorCode image_orient(Image *img, int orientation, Error *err);
/* Like image_load_jpeg, but lets libjpeg decode at a reduced scale (1/2, 1/4, 1/8) when the image
 * will be downsampled anyway: the result is at least min_w x min_h where possible. */
ErrorCode image_load_jpeg_scaled(const char *path, int min_w, int min_h, Image *img, Error *err);
/* The part of the (scaled) image a caller wants, picked once the scaled size W x H is known: columns
 * [*x0, *x0 + *w) and rows [*y0, *y0 + *h), which come in as the whole image. */
typedef struct {
    void (*pick)(void *ctx, int W, int H, int *x0, int *y0, int *w, int *h);
    void *ctx;
} ImageRegion;
/* image_load_jpeg_scaled decoding only that part (region NULL: all of it): with libjpeg-turbo, only the
 * part's columns (widened to whole blocks) are transformed and colour-converted, rows above it are
 * entropy-decoded only and rows below never read, and its pixels are those of the whole decoding.
 * Corrupt data within the rows read is an error. */
ErrorCode image_load_jpeg_region(const char *path, int min_w, int min_h, const ImageRegion *region, Image *img,
                                 Error *err);
/* Reads only the header: the full-resolution size. */
ErrorCode image_jpeg_size(const char *path, int *width, int *height, Error *err);
ErrorCode image_save_jpeg(const char *path, const Image *img, int quality, Error *err);
ErrorCode image_alloc(Image *img, int width, int height, Error *err);
void image_free(Image *img);

/* Bilinear resize with OpenCV's INTER_LINEAR pixel-centre convention (what the reference uses). */
ErrorCode image_resize(const Image *src, int width, int height, Image *dst, Error *err);

/* Nearest-neighbour and area (box-average, for shrinking) resizes, used by augmentation. */
ErrorCode image_resize_nearest(const Image *src, int width, int height, Image *dst, Error *err);
ErrorCode image_resize_area(const Image *src, int width, int height, Image *dst, Error *err);

/* Writes the network input: CHW float, channel c = B,G,R minus mean[c] (104, 117, 123). */
void image_to_chw(const Image *img, const float mean[3], float *chw);

/* Drawing for annotated outputs. */
void image_draw_rect(Image *img, int x1, int y1, int x2, int y2, const uint8_t bgr[3], int thickness);
void image_draw_disc(Image *img, int cx, int cy, int radius, const uint8_t bgr[3]);
/* Small 5x7 bitmap digits and '.', for scores. */
void image_draw_text(Image *img, int x, int y, const char *text, const uint8_t bgr[3]);

#endif
