/* WebP decoding through libwebp (lossy, lossless, alpha dropped). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>

#include "detection/image.h"

enum { WEBP_MAX_FILE = 256 << 20 };

ErrorCode image_load_webp(const char *path, Image *img, Error *err)
{
    memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size <= 0 || size > WEBP_MAX_FILE) {
        fclose(f);
        return error_set(err, ERR_FORMAT, "%s: WebP file of %ld bytes (1 to %d)", path, size, WEBP_MAX_FILE);
    }
    uint8_t *data = malloc((size_t)size);
    bool read = data && fseek(f, 0, SEEK_SET) == 0 && fread(data, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!read) {
        free(data);
        return data ? error_set(err, ERR_IO, "%s: read failed", path) : error_set(err, ERR_OOM, "%s: out of memory", path);
    }
    int w = 0, h = 0;
    ErrorCode rc = ERR_OK;
    if (!WebPGetInfo(data, (size_t)size, &w, &h) || w < 1 || h < 1)
        rc = error_set(err, ERR_FORMAT, "%s: not a readable WebP image", path);
    else if (!image_alloc(img, w, h, err) &&
             !WebPDecodeBGRInto(data, (size_t)size, img->bgr, (size_t)w * h * 3, w * 3)) {
        image_free(img);
        rc = error_set(err, ERR_FORMAT, "%s: corrupt WebP data", path);
    }
    if (!rc && err->code) rc = err->code;
    free(data);
    return rc;
}
