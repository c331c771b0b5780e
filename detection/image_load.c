/* image_load: the decoder chosen by the file's first bytes, not its name. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "detection/image.h"

ErrorCode image_load(const char *path, Image *img, Error *err)
{
    memset(img, 0, sizeof *img);
    struct stat st;
    if (stat(path, &st) != 0) return error_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return error_set(err, ERR_ARG, "%s: is a directory, not an image", path);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char magic[8] = {0};
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 2 && magic[0] == 0xFF && magic[1] == 0xD8) {
        if (image_load_jpeg(path, img, err) || image_orient(img, image_exif_orientation(path), err)) {
            image_free(img);
            return err->code;
        }
        return ERR_OK;
    }
    if (n == 8 && !memcmp(magic, png, 8)) return image_load_png(path, img, err);
    if (n == 8 && !memcmp(magic, "RIFF", 4)) return image_load_webp(path, img, err); /* RIFF....WEBP */
    if (n == 0) return error_set(err, ERR_FORMAT, "%s: empty file", path);
    return error_set(err, ERR_FORMAT, "%s: not a JPEG, PNG or WebP image (starts with 0x%02x 0x%02x)", path, magic[0],
                     n > 1 ? magic[1] : 0);
}
