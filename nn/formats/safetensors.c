#include "nn/formats/safetensors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/formats/dtype.h"

/* ---- a small JSON reader, just enough for the header ---------------------------------------- */

typedef struct {
    const char *p, *end;
    const char *path;
    Error *err;
    const char *start; /* the header's first byte (byte 8 of the file), for error offsets */
} Json;

static void skip_ws(Json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static bool expect(Json *j, char c)
{
    skip_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    error_set(j->err, ERR_FORMAT, "%s: malformed safetensors header (expected '%c' at byte %ld of the file)", j->path,
              c, (long)(j->p - j->start) + 8);
    return false;
}

/* Reads a JSON string into buf (escapes other than \" and \\ are kept verbatim). */
static bool read_string(Json *j, char *buf, size_t len)
{
    if (!expect(j, '"')) return false;
    size_t n = 0;
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if (c == '\\' && j->p < j->end) c = *j->p++;
        if (n + 1 < len) buf[n++] = c;
    }
    buf[n] = 0;
    if (j->p >= j->end) {
        error_set(j->err, ERR_FORMAT, "%s: unterminated string in safetensors header", j->path);
        return false;
    }
    j->p++;
    return true;
}

static bool read_int(Json *j, int64_t *v)
{
    skip_ws(j);
    char *e;
    long long x = strtoll(j->p, &e, 10);
    if (e == j->p || e > j->end) {
        error_set(j->err, ERR_FORMAT, "%s: expected an integer in safetensors header", j->path);
        return false;
    }
    j->p = e;
    *v = x;
    return true;
}

/* Skips any JSON value (used for __metadata__ and unknown keys). */
static bool skip_value(Json *j)
{
    skip_ws(j);
    if (j->p >= j->end) return false;
    if (*j->p == '"') {
        char tmp[8];
        return read_string(j, tmp, sizeof tmp);
    }
    if (*j->p == '{' || *j->p == '[') {
        int depth = 0;
        bool in_str = false;
        while (j->p < j->end) {
            char c = *j->p++;
            if (in_str) {
                if (c == '\\') j->p++;
                else if (c == '"') in_str = false;
            } else if (c == '"') in_str = true;
            else if (c == '{' || c == '[') depth++;
            else if ((c == '}' || c == ']') && --depth == 0) return true;
        }
        return false;
    }
    while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']') j->p++;
    return true;
}

static bool at(Json *j, char c)
{
    skip_ws(j);
    return j->p < j->end && *j->p == c;
}

typedef struct {
    char dtype[16];
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t begin, end;
} Entry;

static bool parse_entry(Json *j, Entry *e)
{
    memset(e, 0, sizeof *e);
    e->begin = e->end = -1;
    if (!expect(j, '{')) return false;
    while (!at(j, '}')) {
        char key[64];
        if (!read_string(j, key, sizeof key) || !expect(j, ':')) return false;
        if (!strcmp(key, "dtype")) {
            if (!read_string(j, e->dtype, sizeof e->dtype)) return false;
        } else if (!strcmp(key, "shape")) {
            if (!expect(j, '[')) return false;
            while (!at(j, ']')) {
                int64_t v;
                if (e->ndim == TENSOR_MAX_DIMS || !read_int(j, &v)) return false;
                e->shape[e->ndim++] = v;
                if (at(j, ',')) j->p++;
            }
            j->p++;
        } else if (!strcmp(key, "data_offsets")) {
            if (!expect(j, '[') || !read_int(j, &e->begin) || !expect(j, ',') || !read_int(j, &e->end) ||
                !expect(j, ']'))
                return false;
        } else if (!skip_value(j)) {
            return false;
        }
        if (at(j, ',')) j->p++;
    }
    j->p++;
    return true;
}

static ErrorCode read_header(FILE *f, const char *path, char **header, uint64_t *len, Error *err)
{
    unsigned char b[8];
    if (fread(b, 1, 8, f) != 8) return error_set(err, ERR_FORMAT, "%s: truncated (no safetensors header)", path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    if (b[0] == 'P' && b[1] == 'K')
        return error_set(err, ERR_FORMAT, "%s: a zip archive (a PyTorch .pth?), not safetensors: convert it with build/convert",
                         path);
    if (b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        return error_set(err, ERR_FORMAT, "%s: a Python pickle (a legacy PyTorch .pth?), not safetensors: convert it with "
                                          "build/convert", path);
    if (n == 0 || n > (uint64_t)size - 8 || n > (1u << 30))
        return error_set(err, ERR_FORMAT, "%s: bad safetensors header length %llu (file is %ld bytes)", path,
                         (unsigned long long)n, size);
    fseek(f, 8, SEEK_SET);
    *header = malloc(n + 1);
    if (!*header) return error_set(err, ERR_OOM, "%s: out of memory", path);
    if (fread(*header, 1, n, f) != n) {
        free(*header);
        return error_set(err, ERR_FORMAT, "%s: truncated header", path);
    }
    (*header)[n] = 0;
    *len = n;
    return ERR_OK;
}

static int compare_spans(const void *a, const void *b)
{
    int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return x < y ? -1 : x > y;
}

/* Reads the whole stream f (a file or a buffer); path names it in errors. Closes f. */
static ErrorCode read_stream(FILE *f, const char *path, TensorDict *d, Error *err)
{
    char *header = NULL;
    uint64_t hlen = 0;
    if (read_header(f, path, &header, &hlen, err)) {
        fclose(f);
        return err->code;
    }
    fseek(f, 0, SEEK_END);
    long file_size = ftell(f);
    uint64_t data_start = 8 + hlen, data_len = (uint64_t)file_size - data_start;
    Json j = {header, header + hlen, path, err, header};
    ErrorCode rc = ERR_OK;
    /* every tensor's [begin, end), to check that they tile the data exactly once parsed */
    int64_t(*spans)[2] = NULL;
    int n_spans = 0, cap_spans = 0;
    if (!expect(&j, '{')) rc = err->code;
    while (!rc && !at(&j, '}')) {
        char name[256];
        Entry e;
        if (!read_string(&j, name, sizeof name) || !expect(&j, ':')) {
            rc = err->code;
            break;
        }
        if (!strcmp(name, "__metadata__")) {
            if (!skip_value(&j)) rc = error_set(err, ERR_FORMAT, "%s: bad __metadata__", path);
        } else if (!parse_entry(&j, &e)) {
            rc = err->code ? err->code : error_set(err, ERR_FORMAT, "%s: bad entry %s", path, name);
        } else {
            size_t esize = dtype_size(e.dtype);
            /* the element count, checked as it grows: no dimension negative, the product never past
             * what the data section could hold */
            int64_t numel = 1;
            bool shape_ok = true;
            for (int k = 0; k < e.ndim && shape_ok; k++) {
                shape_ok = e.shape[k] >= 0 && (e.shape[k] == 0 || numel <= (int64_t)(data_len / (esize ? esize : 1)) / e.shape[k]);
                numel *= shape_ok ? e.shape[k] : 1;
            }
            if (tensor_dict_find(d, name))
                rc = error_set(err, ERR_FORMAT, "%s: tensor %s appears twice in the header", path, name);
            else if (!esize)
                rc = error_set(err, ERR_FORMAT, "%s: tensor %s has unsupported dtype %s", path, name, e.dtype);
            else if (!shape_ok)
                rc = error_set(err, ERR_FORMAT, "%s: tensor %s: shape larger than the file's %llu data bytes", path, name,
                               (unsigned long long)data_len);
            else if (e.begin < 0 || e.end < e.begin || (uint64_t)e.end > data_len ||
                     (uint64_t)(e.end - e.begin) != (uint64_t)numel * esize)
                rc = error_set(err, ERR_FORMAT,
                               "%s: tensor %s: data_offsets [%lld, %lld] do not fit its shape or the file "
                               "(truncated?)",
                               path, name, (long long)e.begin, (long long)e.end);
            else {
                void *raw = malloc((size_t)(e.end - e.begin) + 1);
                float *data = malloc((size_t)numel * sizeof(float) + 1);
                if (!raw || !data) rc = error_set(err, ERR_OOM, "%s: out of memory", path);
                fseek(f, (long)(data_start + (uint64_t)e.begin), SEEK_SET);
                if (!rc && fread(raw, 1, (size_t)(e.end - e.begin), f) != (size_t)(e.end - e.begin))
                    rc = error_set(err, ERR_FORMAT, "%s: tensor %s: short read", path, name);
                if (!rc) dtype_to_float(e.dtype, raw, data, numel);
                free(raw);
                if (!rc)
                    rc = tensor_dict_add(d, name, e.dtype, e.ndim, e.shape, data, err);
                else
                    free(data);
                if (!rc && n_spans == cap_spans) {
                    void *grown = realloc(spans, sizeof *spans * (size_t)(cap_spans = cap_spans ? 2 * cap_spans : 64));
                    if (!grown) rc = error_set(err, ERR_OOM, "%s: out of memory", path);
                    else spans = grown;
                }
                if (!rc) spans[n_spans][0] = e.begin, spans[n_spans++][1] = e.end;
            }
        }
        if (!rc && at(&j, ',')) j.p++;
    }
    /* the tensors must tile the data section: no overlap (two names for the same bytes), no gap */
    if (!rc && n_spans) qsort(spans, (size_t)n_spans, sizeof *spans, compare_spans);
    int64_t covered = 0;
    for (int k = 0; k < n_spans && !rc; k++) {
        if (spans[k][0] != covered)
            rc = error_set(err, ERR_FORMAT, "%s: tensor data %s at byte %lld of the data section (offsets must tile it)",
                           path, spans[k][0] < covered ? "overlaps" : "leaves a gap", (long long)spans[k][0]);
        covered = spans[k][1];
    }
    if (!rc && (uint64_t)covered != data_len && n_spans)
        rc = error_set(err, ERR_FORMAT, "%s: %llu bytes after the last tensor's data", path,
                       (unsigned long long)(data_len - (uint64_t)covered));
    free(spans);
    free(header);
    fclose(f);
    if (rc) tensor_dict_free(d);
    return rc;
}

ErrorCode safetensors_read(const char *path, TensorDict *d, Error *err)
{
    tensor_dict_init(d);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return read_stream(f, path, d, err);
}

ErrorCode safetensors_read_memory(const void *data, size_t size, const char *name, TensorDict *d, Error *err)
{
    tensor_dict_init(d);
    FILE *f = size ? fmemopen((void *)data, size, "rb") : NULL;
    if (!f) return error_set(err, ERR_FORMAT, "%s: empty or unreadable buffer of %zu bytes", name, size);
    return read_stream(f, name, d, err);
}

ErrorCode safetensors_read_metadata(const char *path, const char *key, char **value, Error *err)
{
    *value = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *header = NULL;
    uint64_t hlen = 0;
    ErrorCode rc = read_header(f, path, &header, &hlen, err);
    fclose(f);
    if (rc) return rc;
    Json j = {header, header + hlen, path, err, header};
    if (expect(&j, '{')) {
        while (!at(&j, '}')) {
            char name[256];
            if (!read_string(&j, name, sizeof name) || !expect(&j, ':')) break;
            if (strcmp(name, "__metadata__")) {
                if (!skip_value(&j)) break;
            } else {
                if (!expect(&j, '{')) break;
                while (!at(&j, '}')) {
                    char k[256];
                    char *v = malloc(hlen + 1);
                    if (!v || !read_string(&j, k, sizeof k) || !expect(&j, ':') || !read_string(&j, v, hlen + 1)) {
                        free(v);
                        break;
                    }
                    if (!strcmp(k, key)) {
                        *value = v;
                        free(header);
                        return ERR_OK;
                    }
                    free(v);
                    if (at(&j, ',')) j.p++;
                }
                break;
            }
            if (at(&j, ',')) j.p++;
        }
    }
    free(header);
    return err && err->code ? err->code : ERR_OK;
}

/* ---- writer --------------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} Str;

static void put(Str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Str *s, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (s->buf && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = (s->cap + (size_t)n + 1) * 2;
        char *b = realloc(s->buf, cap);
        if (!b) {
            s->oom = true;
            return;
        }
        s->buf = b, s->cap = cap;
    }
}

static void put_json_string(Str *s, const char *v)
{
    put(s, "\"");
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            put(s, "\\%c", *v);
        else if ((unsigned char)*v < 0x20)
            put(s, "\\u%04x", (unsigned char)*v);
        else
            put(s, "%c", *v);
    }
    put(s, "\"");
}

ErrorCode safetensors_write(const char *path, const TensorDict *d, const char *const *meta_keys,
                            const char *const *meta_values, int n_meta, Error *err)
{
    Str h = {0};
    put(&h, "{");
    if (n_meta > 0) {
        put(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            put(&h, i ? "," : "");
            put_json_string(&h, meta_keys[i]);
            put(&h, ":");
            put_json_string(&h, meta_values[i]);
        }
        put(&h, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < d->n; i++) {
        const NamedTensor *t = &d->items[i];
        uint64_t bytes = (uint64_t)shape_numel(t->ndim, t->shape) * 4;
        put(&h, (i || n_meta > 0) ? "," : "");
        put_json_string(&h, t->name);
        put(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int k = 0; k < t->ndim; k++) put(&h, k ? ",%lld" : "%lld", (long long)t->shape[k]);
        put(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
            (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    put(&h, "}");
    /* The spec allows trailing spaces; pad so the data starts 8-byte aligned. */
    while (!h.oom && (h.len % 8)) put(&h, " ");
    if (h.oom) {
        free(h.buf);
        return error_set(err, ERR_OOM, "%s: out of memory building header", path);
    }

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(h.buf);
        return error_set(err, ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.buf, 1, h.len, f) == h.len;
    for (int i = 0; ok && i < d->n; i++) {
        size_t n = (size_t)shape_numel(d->items[i].ndim, d->items[i].shape);
        ok = fwrite(d->items[i].data, sizeof(float), n, f) == n; /* host is little-endian */
    }
    free(h.buf);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        unlink(tmp);
        return error_set(err, ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return error_set(err, ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    }
    return ERR_OK;
}
