/* Reading members of a zip archive held in memory (the container of torch >= 1.6 checkpoints):
 * the central directory is parsed once; members stored (method 0) or deflated (method 8, via
 * zlib) can be extracted. ZIP64 archives (> 4 GiB) are refused with a clear error. */
#ifndef NN_ZIP_READER_H
#define NN_ZIP_READER_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

typedef struct {
    char *name;
    uint16_t method;
    uint64_t comp_size, size, local_offset;
} ZipMember;

typedef struct {
    const unsigned char *buf;
    size_t len;
    ZipMember *members;
    int n;
    const char *path;
} ZipArchive;

ErrorCode zip_open(ZipArchive *z, const unsigned char *buf, size_t len, const char *path, Error *err);
void zip_close(ZipArchive *z);
const ZipMember *zip_find(const ZipArchive *z, const char *name);
/* Extracts into a malloc'd buffer of m->size bytes. */
ErrorCode zip_extract(const ZipArchive *z, const ZipMember *m, unsigned char **out, Error *err);

#endif
