#include "tensor/arena.h"

#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"

struct ArenaBlock {
    ArenaBlock *prev;
    char *base;
    size_t cap, used;
};

static ArenaBlock *block_new(Device dev, size_t cap, Error *err)
{
    ArenaBlock *b = calloc(1, sizeof *b);
    if (!b) {
        error_set(err, ERR_OOM, "arena: out of host memory");
        return NULL;
    }
    if (device_alloc((void **)&b->base, dev, cap, err)) {
        free(b);
        return NULL;
    }
    b->cap = cap;
    return b;
}

static void free_chain(Device dev, ArenaBlock *b)
{
    while (b) {
        ArenaBlock *prev = b->prev;
        device_free(b->base, dev);
        free(b);
        b = prev;
    }
}

void arena_init(Arena *a, Device dev, size_t initial_bytes)
{
    memset(a, 0, sizeof *a);
    a->device = dev;
    if (initial_bytes) a->head = block_new(dev, initial_bytes, NULL);
}

void arena_destroy(Arena *a)
{
    free_chain(a->device, a->head);
    a->head = NULL;
    a->used_total = 0;
}

void arena_reset(Arena *a)
{
    if (a->head && a->head->prev) {
        /* The step needed several blocks: replace them with one that holds the peak. */
        size_t cap = a->peak + a->peak / 8;
        free_chain(a->device, a->head);
        a->head = block_new(a->device, cap, NULL);
    } else if (a->head) {
        a->head->used = 0;
    }
    a->used_total = 0;
}

void *arena_alloc(Arena *a, size_t bytes, Error *err)
{
    size_t need = (bytes + 63) & ~(size_t)63;
    if (need == 0) need = 64;
    ArenaBlock *b = a->head;
    if (!b || b->used + need > b->cap) {
        size_t cap = b ? b->cap * 2 : ((size_t)1 << 20);
        if (cap < need) cap = need;
        ArenaBlock *nb = block_new(a->device, cap, err);
        if (!nb) return NULL;
        nb->prev = b;
        a->head = b = nb;
    }
    void *p = b->base + b->used;
    b->used += need;
    a->used_total += need;
    if (a->used_total > a->peak) a->peak = a->used_total;
    return p;
}

void *arena_calloc(Arena *a, size_t bytes, Error *err)
{
    void *p = arena_alloc(a, bytes, err);
    if (p && device_memset_zero(p, a->device, bytes, err)) return NULL;
    return p;
}

ErrorCode arena_tensor(Arena *a, Tensor *t, int ndim, const int64_t *shape, Error *err)
{
    *t = tensor_wrap(NULL, a->device, ndim, shape);
    t->data = arena_alloc(a, tensor_bytes(t), err);
    return t->data ? ERR_OK : (err ? err->code : ERR_OOM);
}
