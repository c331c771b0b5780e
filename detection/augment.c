#include "detection/augment.h"
#include "detection/photometric.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "detection/image.h"

AugmentOptions augment_defaults(int size)
{
    AugmentOptions o = {size, {104, 117, 123}, 0.0f, true};
    return o;
}

/* Python's random.randrange(n) for n > 0. */
static int randrange(Rng *r, int n) { return n > 0 ? (int)rng_below(r, (uint32_t)n) : 0; }
static float uniform(Rng *r, float a, float b) { return a + (b - a) * rng_uniform(r); }

typedef struct {
    int l, t, w, h;
    bool pad;            /* no crop found: the whole image, padded to square */
} Crop;

/* Chooses the crop and the faces it keeps (kept[i]); boxes in original pixels. */
static Crop choose_crop(const TrainSample *s, int W, int H, int size, float min_face, Rng *r, bool *kept)
{
    static const float scales[5] = {0.3f, 0.45f, 0.6f, 0.8f, 1.0f};
    int short_side = W < H ? W : H;
    for (int attempt = 0; attempt < 250; attempt++) {
        float scale = scales[randrange(r, 5)];
        int w = (int)(scale * short_side), h = w;
        int l = W == w ? 0 : randrange(r, W - w), t = H == h ? 0 : randrange(r, H - h);
        /* at least one face entirely inside the crop (iof >= 1) */
        bool any_inside = false;
        for (int i = 0; i < s->n && !any_inside; i++) {
            const float *f = s->faces + FACE_FIELDS * i;
            any_inside = f[0] >= l && f[1] >= t && f[2] <= l + w && f[3] <= t + h;
        }
        if (!any_inside) continue;
        int n_kept = 0;
        for (int i = 0; i < s->n; i++) {
            const float *f = s->faces + FACE_FIELDS * i;
            float cx = (f[0] + f[2]) / 2, cy = (f[1] + f[3]) / 2;
            kept[i] = l < cx && cx < l + w && t < cy && cy < t + h;
            if (kept[i]) {
                float x1 = fmaxf(f[0], (float)l), y1 = fmaxf(f[1], (float)t);
                float x2 = fminf(f[2], (float)(l + w)), y2 = fminf(f[3], (float)(t + h));
                float bw = (x2 - x1 + 1) / w * size, bh = (y2 - y1 + 1) / h * size;
                kept[i] = fminf(bw, bh) > min_face;
            }
            n_kept += kept[i];
        }
        if (n_kept == 0) continue;
        return (Crop){l, t, w, h, false};
    }
    for (int i = 0; i < s->n; i++) kept[i] = true;
    return (Crop){0, 0, W, H, true};
}

static void convert(Image *img, float alpha, float beta)
{
    photometric_convert(img->bgr, (size_t)img->width * img->height * 3, alpha, beta);
}

static void saturation_hue(Image *img, Rng *r)
{
    bool sat = randrange(r, 2), hue_on;
    float alpha = sat ? uniform(r, 0.5f, 1.5f) : 1.0f;
    hue_on = randrange(r, 2);
    int shift = hue_on ? randrange(r, 37) - 18 : 0;
    if (!sat && !hue_on) return; /* nothing to change: skip the HSV round trip */
    hsv_adjust(img->bgr, (size_t)img->width * img->height, alpha, shift);
}

static void distort(Image *img, Rng *r)
{
    if (randrange(r, 2)) {
        if (randrange(r, 2)) convert(img, 1, uniform(r, -32, 32));
        if (randrange(r, 2)) convert(img, uniform(r, 0.5f, 1.5f), 0);
        saturation_hue(img, r);
    } else {
        if (randrange(r, 2)) convert(img, 1, uniform(r, -32, 32));
        saturation_hue(img, r);
        if (randrange(r, 2)) convert(img, uniform(r, 0.5f, 1.5f), 0);
    }
}

ErrorCode augment_sample(const TrainSample *s, const AugmentOptions *opt, Rng *r, float *chw, float *targets,
                         int max_faces, int *n_faces, Error *err)
{
    *n_faces = 0;
    int W, H;
    if (image_jpeg_size(s->path, &W, &H, err)) return err->code;
    bool *kept = calloc((size_t)s->n + 1, sizeof *kept);
    if (!kept) return error_set(err, ERR_OOM, "out of memory");
    Crop c = opt->augment ? choose_crop(s, W, H, opt->size, opt->min_face, r, kept) : (Crop){0, 0, W, H, true};
    if (!opt->augment)
        for (int i = 0; i < s->n; i++) kept[i] = true;
    /* Decode at the smallest DCT scale that keeps the crop at least `size` pixels. */
    int need_w = (int)((int64_t)W * opt->size / (c.w > 0 ? c.w : 1)), need_h = (int)((int64_t)H * opt->size / (c.h > 0 ? c.h : 1));
    Image full;
    if (image_load_jpeg_scaled(s->path, need_w, need_h, &full, err)) {
        free(kept);
        return err->code;
    }
    double sx = (double)full.width / W, sy = (double)full.height / H;
    int cl = (int)(c.l * sx), ct = (int)(c.t * sy);
    int cw = (int)lrint(c.w * sx), ch = (int)lrint(c.h * sy);
    if (cw < 1) cw = 1;
    if (ch < 1) ch = 1;
    if (cl + cw > full.width) cw = full.width - cl;
    if (ct + ch > full.height) ch = full.height - ct;
    /* The square canvas: the crop, or the whole image padded with the mean colour. */
    int side_w = c.pad ? (cw > ch ? cw : ch) : cw, side_h = c.pad ? side_w : ch;
    Image canvas;
    if (image_alloc(&canvas, side_w, side_h, err)) {
        image_free(&full);
        free(kept);
        return err->code;
    }
    Image crop = {cw, ch, NULL};
    if (image_alloc(&crop, cw, ch, err)) {
        image_free(&full), image_free(&canvas);
        free(kept);
        return err->code;
    }
    for (int y = 0; y < ch; y++)
        memcpy(crop.bgr + (size_t)y * cw * 3, full.bgr + ((size_t)(ct + y) * full.width + cl) * 3, (size_t)cw * 3);
    image_free(&full);
    if (opt->augment) distort(&crop, r);
    if (c.pad) /* only the padding shows the mean colour; a crop covers the whole canvas */
        for (int i = 0; i < side_w * side_h; i++)
            for (int k = 0; k < 3; k++) canvas.bgr[3 * i + k] = (uint8_t)opt->mean[k];
    for (int y = 0; y < ch; y++) memcpy(canvas.bgr + (size_t)y * side_w * 3, crop.bgr + (size_t)y * cw * 3, (size_t)cw * 3);
    image_free(&crop);
    /* Targets in crop pixels (original resolution), then the canvas size in the same units. */
    double canvas_w = c.pad ? (c.w > c.h ? c.w : c.h) : c.w, canvas_h = c.pad ? canvas_w : c.h;
    int n = 0;
    for (int i = 0; i < s->n && n < max_faces; i++) {
        if (!kept[i]) continue;
        const float *f = s->faces + FACE_FIELDS * i;
        float *o = targets + FACE_FIELDS * n++;
        o[0] = fmaxf(f[0], (float)c.l) - c.l, o[1] = fmaxf(f[1], (float)c.t) - c.t;
        o[2] = fminf(f[2], (float)(c.l + c.w)) - c.l, o[3] = fminf(f[3], (float)(c.t + c.h)) - c.t;
        for (int k = 0; k < 5; k++) {
            float lx = f[4 + 2 * k] - c.l, ly = f[5 + 2 * k] - c.t;
            lx = fminf(fmaxf(lx, 0), (float)c.w), ly = fminf(fmaxf(ly, 0), (float)c.h);
            o[4 + 2 * k] = lx, o[5 + 2 * k] = ly;
        }
        o[14] = f[14];
        o[FACE_CLASS] = f[FACE_CLASS];
    }
    free(kept);
    bool mirror = opt->augment && randrange(r, 2);
    if (mirror) {
        for (int y = 0; y < side_h; y++) {
            uint8_t *row = canvas.bgr + (size_t)y * side_w * 3;
            for (int x = 0; x < side_w / 2; x++)
                for (int k = 0; k < 3; k++) {
                    uint8_t t = row[3 * x + k];
                    row[3 * x + k] = row[3 * (side_w - 1 - x) + k];
                    row[3 * (side_w - 1 - x) + k] = t;
                }
        }
        for (int i = 0; i < n; i++) {
            float *o = targets + FACE_FIELDS * i;
            float x1 = (float)canvas_w - o[2], x2 = (float)canvas_w - o[0];
            o[0] = x1, o[2] = x2;
            for (int k = 0; k < 5; k++) o[4 + 2 * k] = (float)canvas_w - o[4 + 2 * k];
            /* left/right eye (points 0, 1) and mouth corners (3, 4) swap */
            for (int a = 0; a < 2; a++) {
                int p = a == 0 ? 0 : 3, q = p + 1;
                float tx = o[4 + 2 * p], ty = o[5 + 2 * p];
                o[4 + 2 * p] = o[4 + 2 * q], o[5 + 2 * p] = o[5 + 2 * q];
                o[4 + 2 * q] = tx, o[5 + 2 * q] = ty;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        float *o = targets + FACE_FIELDS * i;
        for (int k = 0; k < 14; k += 2) o[k] /= (float)canvas_w, o[k + 1] /= (float)canvas_h;
    }
    Image out;
    int method = opt->augment ? randrange(r, 5) : 0; /* linear, cubic, area, nearest, lanczos */
    ErrorCode rc = method == 3   ? image_resize_nearest(&canvas, opt->size, opt->size, &out, err)
                   : method == 2 ? image_resize_area(&canvas, opt->size, opt->size, &out, err)
                                 : image_resize(&canvas, opt->size, opt->size, &out, err);
    image_free(&canvas);
    if (rc) return rc;
    image_to_chw(&out, opt->mean, chw);
    image_free(&out);
    *n_faces = n;
    return ERR_OK;
}
