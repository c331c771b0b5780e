/* PNG decoding through libpng's simplified API: any bit depth, palette, grey or alpha; alpha is
 * composited onto black (what a photo tool shows as the background the network never sees). */
#include <errno.h>
#include <png.h>
#include <string.h>

#include "detection/image.h"

ErrorCode image_load_png(const char *path, Image *img, Error *err)
{
    memset(img, 0, sizeof *img);
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&png, path))
        return error_set(err, ERR_FORMAT, "%s: not a readable PNG: %s", path, png.message);
    png.format = PNG_FORMAT_BGR;
    if (png.width < 1 || png.height < 1 || png.width > 65535 || png.height > 65535 ||
        (uint64_t)png.width * png.height > ((uint64_t)1 << 28)) {
        png_image_free(&png);
        return error_set(err, ERR_FORMAT, "%s: PNG of %ux%u pixels (1 to 65535 per side, 2^28 in all)", path, png.width,
                         png.height);
    }
    if (image_alloc(img, (int)png.width, (int)png.height, err)) {
        png_image_free(&png);
        return err->code;
    }
    if (!png_image_finish_read(&png, NULL, img->bgr, 0, NULL)) {
        image_free(img);
        ErrorCode rc = error_set(err, ERR_FORMAT, "%s: corrupt PNG: %s", path, png.message);
        png_image_free(&png);
        return rc;
    }
    png_image_free(&png);
    return ERR_OK;
}
