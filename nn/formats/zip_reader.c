#include "nn/formats/zip_reader.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

ErrorCode zip_open(ZipArchive *z, const unsigned char *buf, size_t len, const char *path, Error *err)
{
    memset(z, 0, sizeof *z);
    z->buf = buf, z->len = len, z->path = path;
    /* End of central directory: 22 bytes plus up to 64 KiB of comment, searched from the end. */
    if (len < 22) return error_set(err, ERR_FORMAT, "%s: too short for a zip archive", path);
    size_t eocd = 0;
    bool found = false;
    for (size_t i = len - 22 + 1; i-- > 0 && len - i <= 22 + 65535;)
        if (le32(buf + i) == 0x06054b50) {
            eocd = i, found = true;
            break;
        }
    if (!found) return error_set(err, ERR_FORMAT, "%s: zip end record not found (truncated?)", path);
    uint16_t count = le16(buf + eocd + 10);
    uint32_t cd_size = le32(buf + eocd + 12), cd_off = le32(buf + eocd + 16);
    if (cd_off == 0xffffffffu || count == 0xffff)
        return error_set(err, ERR_FORMAT, "%s: ZIP64 archives are not supported", path);
    if ((uint64_t)cd_off + cd_size > len) return error_set(err, ERR_FORMAT, "%s: zip directory out of bounds", path);
    z->members = calloc(count ? count : 1, sizeof *z->members);
    if (!z->members) return error_set(err, ERR_OOM, "%s: out of memory", path);
    size_t p = cd_off;
    for (int i = 0; i < count; i++) {
        if (p + 46 > len || le32(buf + p) != 0x02014b50) {
            zip_close(z);
            return error_set(err, ERR_FORMAT, "%s: corrupt zip directory entry %d", path, i);
        }
        ZipMember *m = &z->members[i];
        m->method = le16(buf + p + 10);
        m->comp_size = le32(buf + p + 20);
        m->size = le32(buf + p + 24);
        uint16_t nlen = le16(buf + p + 28), xlen = le16(buf + p + 30), clen = le16(buf + p + 32);
        m->local_offset = le32(buf + p + 42);
        if (p + 46 + nlen > len) {
            zip_close(z);
            return error_set(err, ERR_FORMAT, "%s: corrupt zip directory entry %d", path, i);
        }
        m->name = malloc((size_t)nlen + 1);
        if (!m->name) {
            zip_close(z);
            return error_set(err, ERR_OOM, "%s: out of memory", path);
        }
        memcpy(m->name, buf + p + 46, nlen);
        m->name[nlen] = 0;
        z->n++;
        p += 46 + (size_t)nlen + xlen + clen;
    }
    return ERR_OK;
}

void zip_close(ZipArchive *z)
{
    for (int i = 0; i < z->n; i++) free(z->members[i].name);
    free(z->members);
    z->members = NULL;
    z->n = 0;
}

const ZipMember *zip_find(const ZipArchive *z, const char *name)
{
    for (int i = 0; i < z->n; i++)
        if (!strcmp(z->members[i].name, name)) return &z->members[i];
    return NULL;
}

ErrorCode zip_extract(const ZipArchive *z, const ZipMember *m, unsigned char **out, Error *err)
{
    *out = NULL;
    size_t lo = (size_t)m->local_offset;
    if (lo + 30 > z->len || le32(z->buf + lo) != 0x04034b50)
        return error_set(err, ERR_FORMAT, "%s: corrupt local header of %s", z->path, m->name);
    size_t data = lo + 30 + le16(z->buf + lo + 26) + le16(z->buf + lo + 28);
    if (data + m->comp_size > z->len)
        return error_set(err, ERR_FORMAT, "%s: member %s extends past the end (truncated?)", z->path, m->name);
    /* the declared size is believed only as far as the bytes can back it: stored data is its own
     * size, and deflate expands at most 1032 to 1 */
    if ((m->method == 0 && m->comp_size != m->size) || (m->method == 8 && m->size > (uint64_t)m->comp_size * 1032 + 64))
        return error_set(err, ERR_FORMAT, "%s: member %s declares %llu bytes from %llu compressed", z->path, m->name,
                         (unsigned long long)m->size, (unsigned long long)m->comp_size);
    unsigned char *dst = malloc(m->size ? (size_t)m->size : 1);
    if (!dst) return error_set(err, ERR_OOM, "%s: out of memory extracting %s", z->path, m->name);
    if (m->method == 0) {
        if (m->comp_size != m->size) {
            free(dst);
            return error_set(err, ERR_FORMAT, "%s: stored member %s has inconsistent sizes", z->path, m->name);
        }
        memcpy(dst, z->buf + data, (size_t)m->size);
    } else if (m->method == 8) {
        z_stream s;
        memset(&s, 0, sizeof s);
        if (inflateInit2(&s, -MAX_WBITS) != Z_OK) {
            free(dst);
            return error_set(err, ERR_OOM, "%s: zlib init failed", z->path);
        }
        s.next_in = (unsigned char *)z->buf + data;
        s.avail_in = (uInt)m->comp_size;
        s.next_out = dst;
        s.avail_out = (uInt)m->size;
        int rc = inflate(&s, Z_FINISH);
        inflateEnd(&s);
        if (rc != Z_STREAM_END || s.total_out != m->size) {
            free(dst);
            return error_set(err, ERR_FORMAT, "%s: member %s does not inflate", z->path, m->name);
        }
    } else {
        free(dst);
        return error_set(err, ERR_FORMAT, "%s: member %s uses unsupported compression %d", z->path, m->name,
                         m->method);
    }
    *out = dst;
    return ERR_OK;
}
