#include "nn/formats/pytorch_import.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/formats/dtype.h"
#include "nn/formats/pickle.h"
#include "nn/formats/zip_reader.h"

static ErrorCode read_file(const char *path, unsigned char **buf, size_t *len, Error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!*buf) {
        fclose(f);
        return error_set(err, ERR_OOM, "%s: out of memory", path);
    }
    size_t got = fread(*buf, 1, (size_t)n, f);
    fclose(f);
    if ((long)got != n) {
        free(*buf);
        return error_set(err, ERR_IO, "%s: short read", path);
    }
    *len = (size_t)n;
    return ERR_OK;
}

/* The dict that holds the tensors: the root, or a wrapped state dict. */
static const PkValue *find_state_dict(const PkValue *root)
{
    static const char *wrappers[] = {"state_dict", "model_state_dict", "model", "net"};
    for (size_t i = 0; i < sizeof wrappers / sizeof wrappers[0]; i++) {
        const PkValue *v = pk_dict_get(root, wrappers[i]);
        if (v && v->kind == PK_DICT) return v;
    }
    return root && root->kind == PK_DICT ? root : NULL;
}

/* Storage bytes by key; supplied by the container format. */
typedef const unsigned char *(*StorageLookup)(void *ctx, const PkValue *storage, size_t *bytes,
                                              Error *err);

static ErrorCode collect_tensors(const PkValue *root, const char *path, StorageLookup lookup, void *ctx,
                                 TensorDict *d, Error *err)
{
    const PkValue *sd = find_state_dict(root);
    if (!sd) return error_set(err, ERR_FORMAT, "%s: the pickle holds no dict of tensors", path);
    for (int i = 0; i + 1 < sd->n; i += 2) {
        const PkValue *k = sd->items[i], *t = sd->items[i + 1];
        if (k->kind != PK_STR || t->kind != PK_TENSOR) continue;
        size_t bytes = 0;
        const unsigned char *raw = lookup(ctx, t->storage, &bytes, err);
        if (!raw) return err->code;
        size_t es = dtype_size(t->storage->dtype);
        /* The view checked as torch.as_strided checks it, with every product overflow-checked: sizes
         * and strides not negative, offset not negative, the last element it touches inside the
         * storage; and its element count at most 2^28 (1 GB of floats) and at most 16 times the
         * storage's, so a zero stride with a huge size cannot ask for gigabytes. */
        int64_t storage_elems = es ? (int64_t)(bytes / es) : 0, numel = 1, last = t->offset;
        bool ok = es && t->offset >= 0;
        for (int dd = 0; dd < t->ndim && ok; dd++) {
            int64_t reach;
            ok = t->shape[dd] >= 0 && t->stride[dd] >= 0 && !__builtin_mul_overflow(numel, t->shape[dd], &numel);
            if (ok && t->shape[dd] > 0)
                ok = !__builtin_mul_overflow(t->shape[dd] - 1, t->stride[dd], &reach) &&
                     !__builtin_add_overflow(last, reach, &last);
        }
        if (!ok)
            return error_set(err, ERR_FORMAT, "%s: tensor %s: negative or overflowing size, stride or offset", path, k->s);
        if (numel > ((int64_t)1 << 28) || numel > 16 * (storage_elems > 0 ? storage_elems : 1))
            return error_set(err, ERR_FORMAT, "%s: tensor %s: %lld elements from a storage of %lld", path, k->s,
                             (long long)numel, (long long)storage_elems);
        if (numel > 0 && last >= storage_elems)
            return error_set(err, ERR_FORMAT, "%s: tensor %s reaches past its storage (truncated file?)", path,
                             k->s);
        float *data = malloc((size_t)(numel ? numel : 1) * sizeof(float));
        if (!data) return error_set(err, ERR_OOM, "%s: out of memory", path);
        int64_t idx[TENSOR_MAX_DIMS] = {0};
        int64_t off = t->offset;
        for (int64_t e = 0; e < numel; e++) {
            dtype_to_float(t->storage->dtype, raw + (size_t)off * es, &data[e], 1);
            for (int dd = t->ndim - 1; dd >= 0; dd--) {
                idx[dd]++;
                off += t->stride[dd];
                if (idx[dd] < t->shape[dd]) break;
                off -= t->stride[dd] * t->shape[dd];
                idx[dd] = 0;
            }
        }
        if (tensor_dict_add(d, k->s, t->storage->dtype, t->ndim, t->shape, data, err)) return err->code;
    }
    if (d->n == 0) return error_set(err, ERR_FORMAT, "%s: no tensors found", path);
    return ERR_OK;
}

/* ---- legacy ------------------------------------------------------------------------------- */

typedef struct {
    const char **keys;
    const unsigned char **data;
    size_t *bytes;
    int n;
    const char *path;
} LegacyStorages;

static const unsigned char *legacy_lookup(void *ctx, const PkValue *storage, size_t *bytes, Error *err)
{
    LegacyStorages *ls = ctx;
    for (int i = 0; i < ls->n; i++)
        if (!strcmp(ls->keys[i], storage->s)) {
            *bytes = ls->bytes[i];
            return ls->data[i];
        }
    error_set(err, ERR_FORMAT, "%s: storage %s missing", ls->path, storage->s);
    return NULL;
}

static const PkValue *storage_by_key(const PkHeap *h, const char *key)
{
    for (int i = 0; i < h->n; i++)
        if (h->all[i]->kind == PK_STORAGE && !strcmp(h->all[i]->s, key)) return h->all[i];
    return NULL;
}

ErrorCode pytorch_read_legacy(const char *path, TensorDict *d, Error *err)
{
    tensor_dict_init(d);
    unsigned char *buf;
    size_t len;
    if (read_file(path, &buf, &len, err)) return err->code;
    PkHeap heap = {0};
    LegacyStorages ls = {0};
    ls.path = path;
    ErrorCode rc = ERR_OK;
    size_t pos = 0, used;
    PkValue *parts[5];
    for (int i = 0; i < 5; i++) {
        parts[i] = pickle_load(buf + pos, len - pos, &used, &heap, path, err);
        if (!parts[i]) {
            rc = err->code ? err->code : error_set(err, ERR_FORMAT, "%s: bad pickle", path);
            goto out;
        }
        pos += used;
    }
    /* The magic number 0x1950a86a20f9469cfc6c is 80 bits wide; its low 64 bits are compared. */
    if (parts[0]->kind != PK_INT || (uint64_t)parts[0]->i != 0xa86a20f9469cfc6cULL || parts[1]->kind != PK_INT ||
        parts[1]->i != 1001) {
        rc = error_set(err, ERR_FORMAT, "%s: not a legacy PyTorch file (bad magic number or protocol)", path);
        goto out;
    }
    PkValue *keys = parts[4];
    if (keys->kind != PK_LIST) {
        rc = error_set(err, ERR_FORMAT, "%s: storage key list missing", path);
        goto out;
    }
    ls.n = keys->n;
    ls.keys = calloc((size_t)ls.n + 1, sizeof *ls.keys);
    ls.data = calloc((size_t)ls.n + 1, sizeof *ls.data);
    ls.bytes = calloc((size_t)ls.n + 1, sizeof *ls.bytes);
    if (!ls.keys || !ls.data || !ls.bytes) {
        rc = error_set(err, ERR_OOM, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < ls.n; i++) {
        if (keys->items[i]->kind != PK_STR) {
            rc = error_set(err, ERR_FORMAT, "%s: bad storage key", path);
            goto out;
        }
        const PkValue *st = storage_by_key(&heap, keys->items[i]->s);
        if (!st) {
            rc = error_set(err, ERR_FORMAT, "%s: storage %s not referenced", path, keys->items[i]->s);
            goto out;
        }
        if (pos + 8 > len) {
            rc = error_set(err, ERR_FORMAT, "%s: truncated in storage %s", path, st->s);
            goto out;
        }
        uint64_t count = 0;
        for (int b = 7; b >= 0; b--) count = count << 8 | buf[pos + (size_t)b];
        pos += 8;
        uint64_t bytes = count * dtype_size(st->dtype);
        if (bytes > len - pos) {
            rc = error_set(err, ERR_FORMAT, "%s: truncated: storage %s needs %llu bytes, %zu left", path, st->s,
                           (unsigned long long)bytes, len - pos);
            goto out;
        }
        ls.keys[i] = st->s;
        ls.data[i] = buf + pos;
        ls.bytes[i] = (size_t)bytes;
        pos += (size_t)bytes;
    }
    rc = collect_tensors(parts[3], path, legacy_lookup, &ls, d, err);
out:
    free(ls.keys), free(ls.data), free(ls.bytes);
    pk_heap_free(&heap);
    free(buf);
    if (rc) tensor_dict_free(d);
    return rc;
}

/* ---- zip ---------------------------------------------------------------------------------- */

typedef struct {
    ZipArchive *zip;
    char prefix[256];
    unsigned char **extracted; /* kept until the end, one per storage */
    int n_extracted, cap;
} ZipStorages;

static const unsigned char *zip_lookup(void *ctx, const PkValue *storage, size_t *bytes, Error *err)
{
    ZipStorages *zs = ctx;
    char name[512];
    snprintf(name, sizeof name, "%sdata/%s", zs->prefix, storage->s);
    const ZipMember *m = zip_find(zs->zip, name);
    if (!m) {
        error_set(err, ERR_FORMAT, "%s: archive member %s missing", zs->zip->path, name);
        return NULL;
    }
    if (zs->n_extracted == zs->cap) {
        int cap = zs->cap ? zs->cap * 2 : 64;
        unsigned char **e = realloc(zs->extracted, (size_t)cap * sizeof *e);
        if (!e) {
            error_set(err, ERR_OOM, "out of memory");
            return NULL;
        }
        zs->extracted = e, zs->cap = cap;
    }
    unsigned char *data;
    if (zip_extract(zs->zip, m, &data, err)) return NULL;
    zs->extracted[zs->n_extracted++] = data;
    *bytes = (size_t)m->size;
    return data;
}

ErrorCode pytorch_read_zip(const char *path, TensorDict *d, Error *err)
{
    tensor_dict_init(d);
    unsigned char *buf;
    size_t len;
    if (read_file(path, &buf, &len, err)) return err->code;
    ZipArchive zip;
    if (zip_open(&zip, buf, len, path, err)) {
        free(buf);
        return err->code;
    }
    ZipStorages zs = {&zip, "", NULL, 0, 0};
    PkHeap heap = {0};
    ErrorCode rc = ERR_OK;
    const ZipMember *pkl = NULL;
    for (int i = 0; i < zip.n; i++) {
        const char *n = zip.members[i].name;
        size_t l = strlen(n);
        if (l >= 8 && !strcmp(n + l - 8, "data.pkl") && (l == 8 || n[l - 9] == '/') && l - 8 < sizeof zs.prefix) {
            pkl = &zip.members[i];
            memcpy(zs.prefix, n, l - 8);
            zs.prefix[l - 8] = 0;
            break;
        }
    }
    unsigned char *pbuf = NULL;
    if (!pkl) {
        rc = error_set(err, ERR_FORMAT, "%s: zip archive without data.pkl (not a PyTorch checkpoint)", path);
    } else if (!(rc = zip_extract(&zip, pkl, &pbuf, err))) {
        PkValue *root = pickle_load(pbuf, (size_t)pkl->size, NULL, &heap, path, err);
        if (!root)
            rc = err->code ? err->code : error_set(err, ERR_FORMAT, "%s: bad pickle", path);
        else
            rc = collect_tensors(root, path, zip_lookup, &zs, d, err);
    }
    for (int i = 0; i < zs.n_extracted; i++) free(zs.extracted[i]);
    free(zs.extracted);
    free(pbuf);
    pk_heap_free(&heap);
    zip_close(&zip);
    free(buf);
    if (rc) tensor_dict_free(d);
    return rc;
}
