#include "detection/augment.h"
#include "detection/photometric.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "detection/image.h"

AugmentOptions augment_defaults(int size)
{
    AugmentOptions o = {size, {104, 117, 123}, 0.0f, true, 1.0f};
    return o;
}

/* Python's random.randrange(n) for n > 0. */
static int randrange(Rng *r, int n) { return n > 0 ? (int)rng_below(r, (uint32_t)n) : 0; }
static float uniform(Rng *r, float a, float b) { return a + (b - a) * rng_uniform(r); }

typedef struct {
    int l, t, w, h;
    bool pad;            /* no crop found, or zoomed out: the whole image on a square canvas */
    int side, ox, oy;    /* with pad: the canvas side and where the image sits on it, original pixels */
} Crop;

/* The whole image on a square canvas of `side` >= its long side, at (ox, oy). */
static Crop whole_image(int W, int H, int side, int ox, int oy) { return (Crop){0, 0, W, H, true, side, ox, oy}; }

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
        return (Crop){l, t, w, h, false, 0, 0, 0};
    }
    for (int i = 0; i < s->n; i++) kept[i] = true;
    return whole_image(W, H, W > H ? W : H, 0, 0);
}

/* Zoom-out: the whole image at a random place on a canvas 1..zoom_out times its long side. Faces that
 * come out 2 pixels or less (or not above min_face) are dropped: no anchor can match them, and forcing
 * each its best prior would teach noise. Returns false (nothing chosen) when no face is left. */
static bool choose_zoom_out(const TrainSample *s, int W, int H, int size, float min_face, float zoom_out, Rng *r,
                            bool *kept, Crop *out)
{
    int long_side = W > H ? W : H;
    int side = (int)(long_side * uniform(r, 1.0f, zoom_out));
    if (side < long_side) side = long_side;
    float smallest = min_face > 2.0f ? min_face : 2.0f;
    int n_kept = 0;
    for (int i = 0; i < s->n; i++) {
        const float *f = s->faces + FACE_FIELDS * i;
        kept[i] = fminf(f[2] - f[0] + 1, f[3] - f[1] + 1) / side * size > smallest;
        n_kept += kept[i];
    }
    *out = whole_image(W, H, side, randrange(r, side - W + 1), randrange(r, side - H + 1));
    return n_kept > 0;
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

/* The crop in decoded pixels, once the decoding's scale is known (an ImageRegion's pick): the crop's
 * original-pixel box scaled by decoded / original size, kept within the image. */
typedef struct {
    const Crop *c;
    int W, H;          /* original size */
    double sx, sy;     /* decoded over original */
    int l, t, w, h;    /* the crop in decoded pixels */
} DecodedCrop;

static void pick_crop(void *ctx, int fw, int fh, int *x0, int *y0, int *w, int *h)
{
    DecodedCrop *d = ctx;
    const Crop *c = d->c;
    d->sx = (double)fw / d->W, d->sy = (double)fh / d->H;
    int cl = (int)(c->l * d->sx), ct = (int)(c->t * d->sy);
    int cw = (int)lrint(c->w * d->sx), ch = (int)lrint(c->h * d->sy);
    if (cw < 1) cw = 1;
    if (ch < 1) ch = 1;
    if (cl + cw > fw) cw = fw - cl;
    if (ct + ch > fh) ch = fh - ct;
    *x0 = d->l = cl, *y0 = d->t = ct, *w = d->w = cw, *h = d->h = ch;
}

/* A training image's size. JPEGs are only sized here and decoded later at the scale the crop needs;
 * PNG and WebP are decoded whole now (*whole; stored pixels, no EXIF orientation: labels refer to them). */
static ErrorCode training_image_size(const char *path, int *W, int *H, Image *whole, Error *err)
{
    memset(whole, 0, sizeof *whole);
    if (!image_jpeg_size(path, W, H, err)) return ERR_OK;
    if (err->code != ERR_FORMAT) return err->code;
    Error other = {0};
    if (image_load(path, whole, &other)) { /* its message names the format it found, or none */
        error_clear(err);
        return error_set(err, other.code, "%s", other.msg);
    }
    error_clear(err);
    *W = whole->width, *H = whole->height;
    return ERR_OK;
}

ErrorCode augment_sample(const TrainSample *s, const AugmentOptions *opt, Rng *r, float *chw, float *targets,
                         int max_faces, int *n_faces, Error *err)
{
    *n_faces = 0;
    int W, H;
    Image whole;
    if (training_image_size(s->path, &W, &H, &whole, err)) return err->code;
    bool *kept = calloc((size_t)s->n + 1, sizeof *kept);
    if (!kept) {
        image_free(&whole);
        return error_set(err, ERR_OOM, "out of memory");
    }
    /* the zoom-out coin is drawn only when zoom-out is on: the reference recipe's random stream is unchanged */
    bool zoom = opt->augment && opt->zoom_out > 1.0f && randrange(r, 2);
    Crop c;
    if (!zoom || !choose_zoom_out(s, W, H, opt->size, opt->min_face, opt->zoom_out, r, kept, &c))
        c = opt->augment ? choose_crop(s, W, H, opt->size, opt->min_face, r, kept) : whole_image(W, H, W > H ? W : H, 0, 0);
    if (!opt->augment)
        for (int i = 0; i < s->n; i++) kept[i] = true;
    /* Decode at the smallest DCT scale that keeps the canvas at least `size` pixels, only the crop's part. */
    int span_w = c.pad ? c.side : c.w, span_h = c.pad ? c.side : c.h;
    int need_w = (int)((int64_t)W * opt->size / (span_w > 0 ? span_w : 1)), need_h = (int)((int64_t)H * opt->size / (span_h > 0 ? span_h : 1));
    DecodedCrop d = {&c, W, H, 0, 0, 0, 0, 0, 0};
    Image crop = {0};
    if (whole.bgr) { /* decoded whole already (PNG, WebP): the crop copied out */
        pick_crop(&d, whole.width, whole.height, &d.l, &d.t, &d.w, &d.h);
        if (image_alloc(&crop, d.w, d.h, err)) {
            image_free(&whole);
            free(kept);
            return err->code;
        }
        for (int y = 0; y < d.h; y++)
            memcpy(crop.bgr + (size_t)y * d.w * 3, whole.bgr + ((size_t)(d.t + y) * whole.width + d.l) * 3, (size_t)d.w * 3);
        image_free(&whole);
    } else {
        ImageRegion region = {pick_crop, &d};
        if (image_load_jpeg_region(s->path, need_w, need_h, &region, &crop, err)) {
            free(kept);
            return err->code;
        }
    }
    double sx = d.sx, sy = d.sy;
    int cw = d.w, ch = d.h;
    /* The square canvas: the crop, or the whole image on the mean colour (at ox, oy: decoded pixels). */
    int side_w = c.pad ? (cw > ch ? cw : ch) : cw, side_h = c.pad ? side_w : ch, ox = 0, oy = 0;
    bool zoomed = c.pad && c.side > (c.w > c.h ? c.w : c.h);
    if (zoomed) {
        side_w = side_h = (int)lrint(c.side * sx);
        if (side_w < (cw > ch ? cw : ch)) side_w = side_h = cw > ch ? cw : ch;
        ox = (int)lrint(c.ox * sx), oy = (int)lrint(c.oy * sy);
        if (ox + cw > side_w) ox = side_w - cw;
        if (oy + ch > side_h) oy = side_h - ch;
    }
    if (opt->augment) distort(&crop, r);
    Image canvas = crop; /* a crop that fills the canvas is the canvas */
    if (side_w != cw || side_h != ch) {
        if (image_alloc(&canvas, side_w, side_h, err)) {
            image_free(&crop);
            free(kept);
            return err->code;
        }
        /* only the padding shows the mean colour */
        for (int i = 0; i < side_w * side_h; i++)
            for (int k = 0; k < 3; k++) canvas.bgr[3 * i + k] = (uint8_t)opt->mean[k];
        for (int y = 0; y < ch; y++)
            memcpy(canvas.bgr + ((size_t)(oy + y) * side_w + ox) * 3, crop.bgr + (size_t)y * cw * 3, (size_t)cw * 3);
        image_free(&crop);
    }
    /* Targets in canvas pixels (original resolution), then the canvas size in the same units. */
    double canvas_w = zoomed ? side_w / sx : c.pad ? c.side : c.w, canvas_h = c.pad ? canvas_w : c.h;
    float shift_x = zoomed ? (float)(ox / sx) : 0, shift_y = zoomed ? (float)(oy / sy) : 0;
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
            o[4 + 2 * k] = lx + shift_x, o[5 + 2 * k] = ly + shift_y;
        }
        o[0] += shift_x, o[2] += shift_x, o[1] += shift_y, o[3] += shift_y;
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
