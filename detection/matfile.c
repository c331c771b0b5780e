#include "detection/matfile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum {
    miINT8 = 1, miUINT8, miINT16, miUINT16, miINT32, miUINT32, miSINGLE, miDOUBLE = 9, miINT64 = 12,
    miUINT64, miMATRIX, miCOMPRESSED, miUTF8, miUTF16, miUTF32
};
enum { mxCELL = 1, mxSTRUCT, mxOBJECT, mxCHAR, mxSPARSE, mxDOUBLE, mxSINGLE, mxINT8, mxUINT8, mxINT16,
       mxUINT16, mxINT32, mxUINT32, mxINT64, mxUINT64 };

typedef struct {
    const char *path;
    Error *err;
    int depth;
} Ctx;

static uint32_t u32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static void *fail(Ctx *c, const char *what)
{
    error_set(c->err, ERR_FORMAT, "%s: malformed MAT-file (%s)", c->path, what);
    return NULL;
}

static void value_free(MatValue *v)
{
    if (!v) return;
    if (v->cells)
        for (int64_t i = 0; i < v->numel; i++) value_free(v->cells[i]);
    free(v->cells);
    free(v->re);
    free(v->str);
    free(v);
}

/* Reads one element tag at p (len bytes left): type, size, data pointer and total bytes used. */
static bool read_tag(const unsigned char *p, size_t len, uint32_t *type, uint32_t *size, const unsigned char **data,
                     size_t *used)
{
    if (len < 8) return false;
    uint32_t t = u32(p);
    if (t >> 16) { /* small data element: size in the high half, data in the next 4 bytes */
        *type = t & 0xffff, *size = t >> 16, *data = p + 4, *used = 8;
        return *size <= 4;
    }
    *type = t, *size = u32(p + 4), *data = p + 8;
    if (*size > len - 8) return false;
    size_t padded = *type == miCOMPRESSED ? *size : (*size + 7u) & ~7u;
    *used = 8 + (padded <= len - 8 ? padded : *size);
    return true;
}

static int type_size(uint32_t t)
{
    switch (t) {
    case miINT8: case miUINT8: case miUTF8: return 1;
    case miINT16: case miUINT16: case miUTF16: return 2;
    case miINT32: case miUINT32: case miSINGLE: case miUTF32: return 4;
    case miDOUBLE: case miINT64: case miUINT64: return 8;
    }
    return 0;
}

static double element(uint32_t t, const unsigned char *p)
{
    switch (t) {
    case miINT8: return (int8_t)p[0];
    case miUINT8: case miUTF8: return p[0];
    case miINT16: return (int16_t)(p[0] | p[1] << 8);
    case miUINT16: case miUTF16: return (uint16_t)(p[0] | p[1] << 8);
    case miINT32: return (int32_t)u32(p);
    case miUINT32: case miUTF32: return u32(p);
    case miSINGLE: { float f; memcpy(&f, p, 4); return f; }
    case miDOUBLE: { double d; memcpy(&d, p, 8); return d; }
    case miINT64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case miUINT64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    }
    return 0;
}

static MatValue *parse_matrix(Ctx *c, const unsigned char *p, size_t len);

/* Appends code point cp as UTF-8. */
static size_t put_utf8(char *dst, uint32_t cp)
{
    if (cp < 0x80) return dst[0] = (char)cp, 1;
    if (cp < 0x800) return dst[0] = (char)(0xc0 | cp >> 6), dst[1] = (char)(0x80 | (cp & 63)), 2;
    dst[0] = (char)(0xe0 | cp >> 12), dst[1] = (char)(0x80 | ((cp >> 6) & 63)), dst[2] = (char)(0x80 | (cp & 63));
    return 3;
}

static MatValue *parse_matrix(Ctx *c, const unsigned char *p, size_t len)
{
    if (++c->depth > 32) return fail(c, "nesting too deep");
    MatValue *v = calloc(1, sizeof *v);
    if (!v) {
        error_set(c->err, ERR_OOM, "%s: out of memory", c->path);
        return NULL;
    }
    uint32_t type, size;
    const unsigned char *data;
    size_t used;
    /* Array flags. */
    if (!read_tag(p, len, &type, &size, &data, &used) || type != miUINT32 || size < 8) goto bad;
    int cls = data[0];
    p += used, len -= used;
    /* Dimensions. */
    if (!read_tag(p, len, &type, &size, &data, &used) || type != miINT32 || size < 8 || size / 4 > 8) goto bad;
    v->ndim = (int)(size / 4);
    v->numel = 1;
    for (int i = 0; i < v->ndim; i++) {
        int32_t d = (int32_t)u32(data + 4 * i);
        if (d < 0) goto bad;
        v->dims[i] = d;
        /* checked before multiplying: the product of up to 8 dimensions must not wrap */
        if (d && v->numel > ((int64_t)1 << 31) / d) goto bad;
        v->numel *= d;
    }
    p += used, len -= used;
    /* Name. */
    if (!read_tag(p, len, &type, &size, &data, &used) || type != miINT8) goto bad;
    memcpy(v->name, data, size < sizeof v->name - 1 ? size : sizeof v->name - 1);
    p += used, len -= used;

    if (cls == mxCELL) {
        v->kind = MAT_CELL;
        /* every cell takes at least its 8-byte tag: more cells than that cannot be in the bytes left */
        if (v->numel > (int64_t)(len / 8)) goto bad;
        v->cells = calloc((size_t)v->numel + 1, sizeof *v->cells);
        if (!v->cells) goto bad;
        for (int64_t i = 0; i < v->numel; i++) {
            if (!read_tag(p, len, &type, &size, &data, &used) || type != miMATRIX) goto bad;
            v->cells[i] = size ? parse_matrix(c, data, size) : calloc(1, sizeof(MatValue));
            if (!v->cells[i]) {
                value_free(v);
                c->depth--;
                return NULL;
            }
            p += used, len -= used;
        }
    } else if (cls == mxCHAR) {
        v->kind = MAT_CHAR;
        if (!read_tag(p, len, &type, &size, &data, &used)) goto bad;
        int es = type_size(type);
        if (!es || size % (uint32_t)es) goto bad;
        size_t n = size / (uint32_t)es;
        /* the characters must be the array's: rows x cols of them (a 0x0 array has none) */
        if (type != miUTF8 && (int64_t)n != v->numel) goto bad; /* UTF-8 counts bytes, not characters */
        int64_t rows = v->ndim >= 1 ? v->dims[0] : 1, cols = rows ? (int64_t)n / rows : 0;
        if (n == 0) rows = 0;
        /* up to 3 UTF-8 bytes a character, a newline between rows */
        v->str = malloc(n * 3 + (size_t)rows + 1);
        if (!v->str) goto bad;
        size_t o = 0;
        /* Column-major characters: for a 1xN row that is just the string. Multi-row char arrays are
         * read row by row, rows joined by newlines. */
        if (type == miUTF8) {
            memcpy(v->str, data, n);
            o = n;
        } else {
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t col = 0; col < cols; col++)
                    o += put_utf8(v->str + o, (uint32_t)element(type, data + (size_t)(col * rows + r) * (size_t)es));
                if (r + 1 < rows) v->str[o++] = '\n';
            }
        }
        v->str[o] = 0;
    } else if (cls >= mxDOUBLE && cls <= mxUINT64) {
        v->kind = MAT_NUMERIC;
        /* the data's size is checked against the dimensions before anything is allocated for them */
        if (!read_tag(p, len, &type, &size, &data, &used)) goto bad;
        int es = type_size(type);
        if (!es || size % (uint32_t)es || (int64_t)(size / (uint32_t)es) != v->numel) goto bad;
        v->re = malloc(sizeof(double) * ((size_t)v->numel + 1));
        if (!v->re) goto bad;
        for (int64_t i = 0; i < v->numel; i++) v->re[i] = element(type, data + (size_t)i * (size_t)es);
    } else {
        v->kind = MAT_UNSUPPORTED;
    }
    c->depth--;
    return v;
bad:
    value_free(v);
    c->depth--;
    if (c->err && c->err->code) return NULL;
    return fail(c, "bad array element");
}

ErrorCode matfile_read(const char *path, MatFile *mf, Error *err)
{
    memset(mf, 0, sizeof *mf);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return error_set(err, ERR_IO, "%s: cannot read", path);
    }
    fclose(f);
    Ctx c = {path, err, 0};
    if (n < 128 || buf[126] != 'I' || buf[127] != 'M' || buf[124] != 0 || buf[125] != 1) {
        free(buf);
        return error_set(err, ERR_FORMAT, "%s: not a little-endian MATLAB 5 MAT-file (v7.3/HDF5 files are not supported)",
                         path);
    }
    size_t pos = 128;
    ErrorCode rc = ERR_OK;
    while (pos + 8 <= (size_t)n && !rc) {
        uint32_t type, size;
        const unsigned char *data;
        size_t used;
        if (!read_tag(buf + pos, (size_t)n - pos, &type, &size, &data, &used)) {
            rc = error_set(err, ERR_FORMAT, "%s: truncated element at byte %zu", path, pos);
            break;
        }
        unsigned char *inflated = NULL;
        const unsigned char *elem = data;
        size_t elem_len = size;
        uint32_t etype = type;
        if (type == miCOMPRESSED) {
            /* The decompressed element carries its own tag; grow the buffer until it fits. */
            size_t cap = (size_t)size * 4 + 1024;
            for (;;) {
                inflated = realloc(inflated, cap);
                if (!inflated) break;
                uLongf out_len = (uLongf)cap;
                int z = uncompress(inflated, &out_len, data, size);
                if (z == Z_OK) {
                    elem_len = out_len;
                    break;
                }
                /* 1 GB inflated at most: far above any WIDER FACE .mat, far below a zip bomb's appetite */
                if (z != Z_BUF_ERROR || cap > ((size_t)1 << 30)) {
                    free(inflated);
                    inflated = NULL;
                    break;
                }
                cap *= 4;
            }
            if (!inflated) {
                rc = error_set(err, ERR_FORMAT, "%s: compressed element at byte %zu does not inflate", path, pos);
                break;
            }
            size_t inner_used;
            if (!read_tag(inflated, elem_len, &etype, &size, &elem, &inner_used)) {
                free(inflated);
                rc = error_set(err, ERR_FORMAT, "%s: bad compressed element at byte %zu", path, pos);
                break;
            }
            elem_len = size;
        }
        if (etype == miMATRIX && elem_len > 0) {
            MatValue *v = parse_matrix(&c, elem, elem_len);
            if (!v) {
                rc = err && err->code ? err->code : ERR_FORMAT;
            } else {
                MatValue **vars = realloc(mf->vars, sizeof *vars * (size_t)(mf->n + 1));
                if (!vars) {
                    value_free(v);
                    rc = error_set(err, ERR_OOM, "%s: out of memory", path);
                } else {
                    mf->vars = vars;
                    mf->vars[mf->n++] = v;
                }
            }
        }
        free(inflated);
        pos += used;
    }
    free(buf);
    if (rc) matfile_free(mf);
    return rc;
}

void matfile_free(MatFile *mf)
{
    for (int i = 0; i < mf->n; i++) value_free(mf->vars[i]);
    free(mf->vars);
    memset(mf, 0, sizeof *mf);
}

const MatValue *matfile_get(const MatFile *mf, const char *name)
{
    for (int i = 0; i < mf->n; i++)
        if (!strcmp(mf->vars[i]->name, name)) return mf->vars[i];
    return NULL;
}

const MatValue *mat_cell(const MatValue *v, int64_t row, int64_t col)
{
    if (!v || v->kind != MAT_CELL || v->ndim < 2 || row < 0 || col < 0 || row >= v->dims[0] || col >= v->dims[1])
        return NULL;
    return v->cells[col * v->dims[0] + row];
}
