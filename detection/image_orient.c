/* EXIF orientation (libexif) and the eight orientations as pixel moves: photos from cameras and
 * phones are stored sideways with a tag saying how to show them; detections are reported in the
 * image as it is shown (what OpenCV's imread and every viewer give). */
#include <libexif/exif-data.h>
#include <string.h>

#include "detection/image.h"

int image_exif_orientation(const char *path)
{
    ExifData *ed = exif_data_new_from_file(path);
    if (!ed) return 1;
    int value = 1;
    ExifEntry *e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
    if (e && e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->data)
        value = exif_get_short(e->data, exif_data_get_byte_order(ed));
    exif_data_unref(ed);
    return value >= 1 && value <= 8 ? value : 1;
}

ErrorCode image_orient(Image *img, int orientation, Error *err)
{
    if (orientation <= 1 || orientation > 8) return ERR_OK;
    int W = img->width, H = img->height;
    bool swap = orientation >= 5; /* 5-8 turn the image on its side */
    Image out;
    if (image_alloc(&out, swap ? H : W, swap ? W : H, err)) return err->code;
    for (int y = 0; y < out.height; y++)
        for (int x = 0; x < out.width; x++) {
            int sx, sy; /* the source pixel of output (x, y) */
            switch (orientation) {
            case 2: sx = W - 1 - x, sy = y; break;          /* mirrored left-right */
            case 3: sx = W - 1 - x, sy = H - 1 - y; break;  /* upside down */
            case 4: sx = x, sy = H - 1 - y; break;          /* mirrored top-bottom */
            case 5: sx = y, sy = x; break;                  /* transposed */
            case 6: sx = y, sy = H - 1 - x; break;          /* shown turned 90 degrees clockwise */
            case 7: sx = W - 1 - y, sy = H - 1 - x; break;  /* transverse */
            default: sx = W - 1 - y, sy = x; break;         /* 8: shown turned 90 degrees anticlockwise */
            }
            memcpy(out.bgr + ((size_t)y * out.width + x) * 3, img->bgr + ((size_t)sy * W + sx) * 3, 3);
        }
    image_free(img);
    *img = out;
    return ERR_OK;
}
