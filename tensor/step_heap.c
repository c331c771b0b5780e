#include "tensor/step_heap.h"

#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"

enum { HEAP_ALIGN = 64 };

/* Under AddressSanitizer, free segments of CPU blocks are poisoned: a read of a freed step value
 * (a backward that reads what its op did not declare, graph.h) is reported where it happens. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
static void poison(const StepHeap *h, void *p, size_t bytes, bool on)
{
    if (h->device != DEVICE_CPU) return;
    if (on) ASAN_POISON_MEMORY_REGION(p, bytes);
    else ASAN_UNPOISON_MEMORY_REGION(p, bytes);
}
#else
static void poison(const StepHeap *h, void *p, size_t bytes, bool on) { (void)h, (void)p, (void)bytes, (void)on; }
#endif

static bool block_open(const StepHeap *h, HeapBlock *b, Device dev, size_t cap, Error *err)
{
    memset(b, 0, sizeof *b);
    b->segs = malloc(16 * sizeof *b->segs);
    if (!b->segs) return error_set(err, ERR_OOM, "step heap: out of host memory"), false;
    if (device_alloc((void **)&b->base, dev, cap, err)) {
        free(b->segs);
        b->segs = NULL;
        return false;
    }
    b->cap = cap, b->cap_segs = 16, b->n_segs = 1;
    b->segs[0] = (HeapSegment){0, cap, false};
    poison(h, b->base, cap, true);
    return true;
}

static void block_close(const StepHeap *h, HeapBlock *b, Device dev)
{
    if (b->base) poison(h, b->base, b->cap, false);
    device_free(b->base, dev);
    free(b->segs);
    memset(b, 0, sizeof *b);
}

void step_heap_init(StepHeap *h, Device dev, size_t first_block_bytes)
{
    memset(h, 0, sizeof *h);
    h->device = dev;
    h->first_block = first_block_bytes ? first_block_bytes : ((size_t)1 << 20);
}

void step_heap_destroy(StepHeap *h)
{
    for (int i = 0; i < h->n_blocks; i++) block_close(h, &h->blocks[i], h->device);
    free(h->blocks);
    h->blocks = NULL;
    h->n_blocks = 0;
    h->live = 0;
}

void step_heap_reset(StepHeap *h)
{
    if (h->n_blocks > 1) {
        size_t total = 0;
        for (int i = 0; i < h->n_blocks; i++) total += h->blocks[i].high;
        step_heap_destroy(h);
        /* the next step opens its first block at this size (the old blocks are gone first, so the
         * process never holds both) */
        h->first_block = total + total / 16;
        return;
    }
    for (int i = 0; i < h->n_blocks; i++) {
        HeapBlock *b = &h->blocks[i];
        b->n_segs = 1, b->high = 0;
        b->segs[0] = (HeapSegment){0, b->cap, false};
        poison(h, b->base, b->cap, true);
    }
    h->live = 0;
}

/* Splits free segment k of b so that its first `need` bytes are used. */
static bool take(HeapBlock *b, size_t k, size_t need)
{
    HeapSegment *s = &b->segs[k];
    if (s->bytes > need) {
        if (b->n_segs == b->cap_segs) {
            HeapSegment *grown = realloc(b->segs, 2 * b->cap_segs * sizeof *grown);
            if (!grown) return false;
            b->segs = grown, b->cap_segs *= 2;
            s = &b->segs[k];
        }
        memmove(&b->segs[k + 2], &b->segs[k + 1], (b->n_segs - k - 1) * sizeof *b->segs);
        b->segs[k + 1] = (HeapSegment){s->offset + need, s->bytes - need, false};
        b->n_segs++;
        s->bytes = need;
    }
    s->used = true;
    if (s->offset + need > b->high) b->high = s->offset + need;
    return true;
}

void *step_heap_alloc(StepHeap *h, size_t bytes, Error *err)
{
    size_t need = (bytes + HEAP_ALIGN - 1) / HEAP_ALIGN * HEAP_ALIGN;
    if (need == 0) need = HEAP_ALIGN;
    for (int i = 0; i < h->n_blocks; i++) {
        HeapBlock *b = &h->blocks[i];
        for (size_t k = 0; k < b->n_segs; k++)
            if (!b->segs[k].used && b->segs[k].bytes >= need) {
                if (!take(b, k, need)) return error_set(err, ERR_OOM, "step heap: out of host memory"), NULL;
                h->live += need;
                if (h->live > h->peak) h->peak = h->live;
                poison(h, b->base + b->segs[k].offset, need, false);
                return b->base + b->segs[k].offset;
            }
    }
    /* Nothing fits: a new block, at least as large as all the others together (so few are chained). */
    size_t cap = h->first_block;
    for (int i = 0; i < h->n_blocks; i++) cap += h->blocks[i].cap;
    if (h->n_blocks == 0) cap = h->first_block;
    if (cap < need) cap = need;
    HeapBlock *grown = realloc(h->blocks, (size_t)(h->n_blocks + 1) * sizeof *grown);
    if (!grown) return error_set(err, ERR_OOM, "step heap: out of host memory"), NULL;
    h->blocks = grown;
    HeapBlock *b = &h->blocks[h->n_blocks];
    if (!block_open(h, b, h->device, cap, err)) return NULL;
    h->n_blocks++;
    if (!take(b, 0, need)) return error_set(err, ERR_OOM, "step heap: out of host memory"), NULL;
    h->live += need;
    if (h->live > h->peak) h->peak = h->live;
    poison(h, b->base, need, false);
    return b->base;
}

/* The block and segment index of the allocation starting at p, or false. */
static bool find(const StepHeap *h, const void *p, int *bi, size_t *si)
{
    const char *q = p;
    for (int i = 0; i < h->n_blocks; i++) {
        const HeapBlock *b = &h->blocks[i];
        if (q < b->base || q >= b->base + b->cap) continue;
        size_t off = (size_t)(q - b->base), lo = 0, hi = b->n_segs;
        while (lo < hi) { /* segments are ordered by offset */
            size_t mid = (lo + hi) / 2;
            if (b->segs[mid].offset < off) lo = mid + 1;
            else hi = mid;
        }
        if (lo < b->n_segs && b->segs[lo].offset == off && b->segs[lo].used) {
            *bi = i, *si = lo;
            return true;
        }
        return false;
    }
    return false;
}

bool step_heap_owns(const StepHeap *h, const void *p)
{
    int bi;
    size_t si;
    return p && find(h, p, &bi, &si);
}

void step_heap_free(StepHeap *h, void *p)
{
    int bi;
    size_t k;
    if (!p || !find(h, p, &bi, &k)) return;
    HeapBlock *b = &h->blocks[bi];
    h->live -= b->segs[k].bytes;
    b->segs[k].used = false;
    poison(h, b->base + b->segs[k].offset, b->segs[k].bytes, true);
    /* merge with the free neighbours */
    if (k + 1 < b->n_segs && !b->segs[k + 1].used) {
        b->segs[k].bytes += b->segs[k + 1].bytes;
        memmove(&b->segs[k + 1], &b->segs[k + 2], (b->n_segs - k - 2) * sizeof *b->segs);
        b->n_segs--;
    }
    if (k > 0 && !b->segs[k - 1].used) {
        b->segs[k - 1].bytes += b->segs[k].bytes;
        memmove(&b->segs[k], &b->segs[k + 1], (b->n_segs - k - 1) * sizeof *b->segs);
        b->n_segs--;
    }
}
