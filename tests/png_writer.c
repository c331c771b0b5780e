#include "tests/png_writer.h"

#include <check.h>
#include <png.h>
#include <string.h>

void write_png(const char *path, const Image *img)
{
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    png.width = (png_uint_32)img->width, png.height = (png_uint_32)img->height;
    png.format = PNG_FORMAT_BGR;
    ck_assert_msg(png_image_write_to_file(&png, path, 0, img->bgr, 0, NULL), "%s", png.message);
}
