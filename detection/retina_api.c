/* The public API (detection/retina.h) over the Detector: pixel buffers with any stride and either
 * channel order in, plain arrays out, errors as codes plus messages. */
#include "detection/retina.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detection/detector.h"
#include "detection/face_align.h"

struct retina_detector {
    Detector det;
    retina_options opt;
};

static int fail(char *errbuf, size_t errlen, ErrorCode code, const char *msg)
{
    if (errbuf && errlen) snprintf(errbuf, errlen, "%s", msg);
    return code ? (int)code : 1;
}

retina_options retina_default_options(void)
{
    return (retina_options){.conf_threshold = 0.5f, .nms_threshold = 0.4f, .long_side = -1, .threads = 0, .gpu = 0};
}

const char *retina_version(void) { return RETINA_VERSION; }

retina_detector *retina_create(const char *variant, const char *weights, const retina_options *opt, char *errbuf,
                               size_t errlen)
{
    retina_options o = opt ? *opt : retina_default_options();
    if (!(o.conf_threshold >= 0 && o.conf_threshold <= 1) || !(o.nms_threshold >= 0 && o.nms_threshold <= 1) ||
        o.long_side < -1 || (o.long_side > 0 && o.long_side < 16) || o.threads < 0) {
        fail(errbuf, errlen, ERR_ARG,
             "retina_options out of range: conf and nms in [0, 1], long_side -1, 0 or >= 16, threads >= 0");
        return NULL;
    }
    retina_detector *d = calloc(1, sizeof *d);
    if (!d) {
        fail(errbuf, errlen, ERR_OOM, "out of memory");
        return NULL;
    }
    Error err = {0};
    if (detector_init(&d->det, variant ? variant : "mobilenet0.25", weights, o.threads, o.gpu != 0, &err)) {
        fail(errbuf, errlen, err.code, err.msg);
        free(d);
        return NULL;
    }
    d->opt = o;
    return d;
}

void retina_destroy(retina_detector *d)
{
    if (!d) return;
    detector_free(&d->det);
    free(d);
}

void retina_free_faces(retina_face *faces) { free(faces); }

/* The caller's pixels as the detector's BGR image (a copy: stride and channel order vary). */
static ErrorCode to_image(const uint8_t *px, int width, int height, int stride, retina_pixel_format format, Image *img,
                          Error *err)
{
    if (!px || width < 1 || height < 1 || stride < 3 * width || (format != RETINA_BGR && format != RETINA_RGB))
        return error_set(err, ERR_ARG, "bad image: %dx%d, stride %d (needs >= %d), format %d", width, height, stride,
                         3 * width, (int)format);
    if (image_alloc(img, width, height, err)) return err->code;
    for (int y = 0; y < height; y++) {
        const uint8_t *src = px + (size_t)y * stride;
        uint8_t *dst = img->bgr + (size_t)y * width * 3;
        if (format == RETINA_BGR) {
            memcpy(dst, src, (size_t)width * 3);
        } else {
            for (int x = 0; x < width; x++)
                dst[3 * x] = src[3 * x + 2], dst[3 * x + 1] = src[3 * x + 1], dst[3 * x + 2] = src[3 * x];
        }
    }
    return ERR_OK;
}

/* Detection and retina_face hold the same fields; copied one by one so neither layout binds the other.
 * Takes dets (freed here). */
static ErrorCode to_faces(Detection *dets, int n, retina_face **faces, int *count, Error *err)
{
    retina_face *out = n ? malloc(sizeof *out * (size_t)n) : NULL;
    if (n && !out) {
        free(dets);
        return error_set(err, ERR_OOM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        memcpy(out[i].box, dets[i].box, sizeof out[i].box);
        out[i].score = dets[i].score;
        memcpy(out[i].landmarks, dets[i].landmarks, sizeof out[i].landmarks);
        out[i].label = dets[i].label;
    }
    free(dets);
    *faces = out, *count = n;
    return ERR_OK;
}

/* Images that go into one forward together at most (the memory of a batch grows with it). */
enum { BATCH_MAX = 8 };

int retina_detect_batch(retina_detector *d, int n, const uint8_t *const *pixels, const int *widths, const int *heights,
                        const int *strides, retina_pixel_format format, retina_face **faces, int *counts,
                        char *errbuf, size_t errlen)
{
    if (n < 0 || (n && (!pixels || !widths || !heights || !strides || !faces || !counts)))
        return fail(errbuf, errlen, ERR_ARG, "retina_detect_batch: NULL arrays or negative count");
    for (int i = 0; i < n; i++) faces[i] = NULL, counts[i] = 0;
    if (!d) return fail(errbuf, errlen, ERR_ARG, "no detector");
    if (n == 0) return 0;
    Error err = {0};
    Image *imgs = calloc((size_t)n, sizeof *imgs);
    const Image **ptrs = calloc((size_t)n, sizeof *ptrs);
    float *resize = calloc((size_t)n, sizeof *resize);
    Detection **dets = calloc((size_t)n, sizeof *dets);
    ErrorCode rc = imgs && ptrs && resize && dets ? ERR_OK : error_set(&err, ERR_OOM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        if ((rc = to_image(pixels[i], widths[i], heights[i], strides[i], format, &imgs[i], &err))) {
            char msg[sizeof err.msg];
            snprintf(msg, sizeof msg, "%s", err.msg);
            error_clear(&err);
            error_set(&err, rc, "image %d: %s", i, msg);
            break;
        }
        ptrs[i] = &imgs[i];
        int side = d->opt.long_side < 0 ? (widths[i] > 1280 || heights[i] > 1280 ? 1280 : 0) : d->opt.long_side;
        resize[i] = detector_resize_for_long_side(&imgs[i], side);
    }
    PostprocessOptions pp = postprocess_defaults();
    pp.conf_threshold = d->opt.conf_threshold, pp.nms_threshold = d->opt.nms_threshold;
    if (!rc) rc = detector_detect_batch(&d->det, n, ptrs, resize, BATCH_MAX, &pp, dets, counts, NULL, &err);
    for (int i = 0; i < n && !rc; i++) {
        rc = to_faces(dets[i], counts[i], &faces[i], &counts[i], &err);
        dets[i] = NULL;
    }
    if (rc)
        for (int i = 0; i < n; i++) {
            free(dets ? dets[i] : NULL);
            retina_free_faces(faces[i]);
            faces[i] = NULL, counts[i] = 0;
        }
    for (int i = 0; imgs && i < n; i++) image_free(&imgs[i]);
    free(imgs), free(ptrs), free(resize), free(dets);
    return rc ? fail(errbuf, errlen, rc, err.msg) : 0;
}

int retina_detect(retina_detector *d, const uint8_t *pixels, int width, int height, int stride,
                  retina_pixel_format format, retina_face **faces, int *count, char *errbuf, size_t errlen)
{
    if (!faces || !count) return fail(errbuf, errlen, ERR_ARG, "faces and count must not be NULL");
    *faces = NULL, *count = 0;
    const uint8_t *px[1] = {pixels};
    return retina_detect_batch(d, 1, px, &width, &height, &stride, format, faces, count, errbuf, errlen);
}

int retina_align_face(const uint8_t *pixels, int width, int height, int stride, const float landmarks[10], uint8_t *out,
                      char *errbuf, size_t errlen)
{
    if (!landmarks || !out) return fail(errbuf, errlen, ERR_ARG, "landmarks and out must not be NULL");
    Error err = {0};
    Image img, crop;
    /* the warp is per channel: the input's order comes out as it went in */
    if (to_image(pixels, width, height, stride, RETINA_BGR, &img, &err)) return fail(errbuf, errlen, err.code, err.msg);
    ErrorCode rc = face_align_crop(&img, landmarks, &crop, &err);
    image_free(&img);
    if (rc) return fail(errbuf, errlen, rc, err.msg);
    memcpy(out, crop.bgr, (size_t)FACE_ALIGN_SIZE * FACE_ALIGN_SIZE * 3);
    image_free(&crop);
    return 0;
}
