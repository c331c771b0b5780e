/* A pickle machine for the subset of Python pickles that PyTorch checkpoints use (protocols 2-5):
 * containers, numbers, strings, globals, REDUCE/NEWOBJ/BUILD, persistent ids. It never executes
 * anything: torch tensor rebuilds become PK_TENSOR, persistent storages PK_STORAGE, OrderedDict a
 * PK_DICT, and every other class an opaque PK_OBJECT. All values are owned by a PkHeap. */
#ifndef NN_PICKLE_H
#define NN_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

typedef enum {
    PK_NONE, PK_BOOL, PK_INT, PK_FLOAT, PK_STR, PK_BYTES, PK_TUPLE, PK_LIST, PK_DICT,
    PK_GLOBAL, PK_OBJECT, PK_STORAGE, PK_TENSOR
} PkKind;

typedef struct PkValue PkValue;
struct PkValue {
    PkKind kind;
    int64_t i;          /* INT, BOOL; STORAGE: element count */
    double f;
    char *s;            /* STR/BYTES (NUL-terminated copy); GLOBAL "module.name"; STORAGE key */
    size_t slen;
    char dtype[8];      /* STORAGE */
    PkValue **items;    /* TUPLE/LIST items; DICT keys and values interleaved */
    int n, cap;
    PkValue *storage;   /* TENSOR */
    int64_t offset;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
};

typedef struct {
    PkValue **all;
    int n, cap;
} PkHeap;

void pk_heap_free(PkHeap *h);
/* Runs one pickle starting at buf; *consumed gets its length. NULL on error (err names `what`). */
PkValue *pickle_load(const unsigned char *buf, size_t len, size_t *consumed, PkHeap *heap,
                     const char *what, Error *err);
/* DICT lookup by string key; NULL when absent. */
PkValue *pk_dict_get(const PkValue *dict, const char *key);

#endif
