#include "autograd/memory_plan.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/room.h"
#include "tensor/device.h"

enum { PLAN_ALIGN = 64 };

void memory_plan_free(MemoryPlan *p)
{
    device_free(p->base, p->device);
    free(p->allocs);
    free(p->pending);
    free(p->concats);
    memset(p, 0, sizeof *p);
}

/* Every allocation made so far outlives the reads of the op that was running. */
static void close_pending(MemoryPlan *p)
{
    if (!p->n) {
        p->n_pending = 0;
        return;
    }
    for (size_t i = 0; i < p->n_pending; i++) {
        const char *q = p->pending[i];
        for (size_t k = 0; k < p->n; k++) {
            const char *start = p->allocs[k].recorded;
            if (q >= start && q < start + p->allocs[k].bytes) {
                p->allocs[k].consumed = true;
                if (p->allocs[k].last < p->n - 1) p->allocs[k].last = p->n - 1;
            }
        }
    }
    p->n_pending = 0;
}

bool memory_plan_record_alloc(MemoryPlan *p, void *ptr, size_t bytes)
{
    PlannedAlloc *a = room_for_one_more(p->allocs, &p->cap, p->n, sizeof *a, 256);
    if (!a) return false;
    p->allocs = a;
    p->allocs[p->n] = (PlannedAlloc){bytes, 0, p->n, false, ptr, p->n, p->n, 0};
    p->n++;
    return true;
}

void memory_plan_record_op(MemoryPlan *p) { close_pending(p); }

bool memory_plan_record_read(MemoryPlan *p, const void *data)
{
    const void **q = room_for_one_more(p->pending, &p->cap_pending, p->n_pending, sizeof *q, 16);
    if (!q) return false;
    p->pending = q;
    p->pending[p->n_pending++] = data;
    return true;
}

bool memory_plan_record_concat(MemoryPlan *p, const void *out, int n, const void *const *parts, const size_t *bytes)
{
    if (n < 1 || n > PLAN_CONCAT_MAX || !p->n || p->allocs[p->n - 1].recorded != out) return true; /* not placeable */
    PlannedConcat *grown = room_for_one_more(p->concats, &p->cap_concats, p->n_concats, sizeof *grown, 16);
    if (!grown) return false;
    p->concats = grown;
    PlannedConcat *c = &p->concats[p->n_concats++];
    c->out = p->n - 1, c->n = n;
    for (int i = 0; i < n; i++) c->part[i] = parts[i], c->bytes[i] = bytes[i];
    return true;
}

/* Places the parts of the noted concatenations inside their outputs where that is safe: each part a
 * whole allocation of its own, read by nothing after the concatenation, inside no other output, and
 * not itself an output that holds parts. */
static void place_concat_parts(MemoryPlan *p)
{
    for (size_t c = 0; c < p->n_concats; c++) {
        const PlannedConcat *pc = &p->concats[c];
        PlannedAlloc *out = &p->allocs[pc->out];
        size_t idx[PLAN_CONCAT_MAX], offset = 0;
        bool ok = out->host == pc->out && out->birth == pc->out;
        for (int i = 0; ok && i < pc->n; i++) {
            size_t k = pc->out;
            while (k-- > 0)
                if (p->allocs[k].recorded == pc->part[i]) break;
            ok = k < pc->out && p->allocs[k].bytes == pc->bytes[i] && p->allocs[k].last <= pc->out &&
                 p->allocs[k].host == k && p->allocs[k].birth == k;
            for (int j = 0; ok && j < i; j++) ok = idx[j] != k;
            idx[i] = k;
        }
        if (!ok) continue;
        for (int i = 0; i < pc->n; i++) {
            PlannedAlloc *a = &p->allocs[idx[i]];
            a->host = pc->out, a->host_offset = offset;
            offset += pc->bytes[i];
            if (a->birth < out->birth) out->birth = a->birth;
        }
    }
}

static int by_size_desc(const void *a, const void *b, void *ctx)
{
    const PlannedAlloc *v = ctx;
    size_t x = v[*(const size_t *)a].bytes, y = v[*(const size_t *)b].bytes;
    return x < y ? 1 : x > y ? -1 : 0;
}

ErrorCode memory_plan_finish(MemoryPlan *p, Error *err)
{
    close_pending(p);
    size_t n = p->n;
    for (size_t k = 0; k < n; k++)
        if (!p->allocs[k].consumed) p->allocs[k].last = n ? n - 1 : 0; /* outputs: live to the end */
    size_t *order = malloc((n + 1) * sizeof *order), *placed = malloc((n + 1) * sizeof *placed);
    if (!order || !placed) {
        free(order), free(placed);
        return error_set(err, ERR_OOM, "memory plan: out of memory");
    }
    for (size_t k = 0; k < n; k++) order[k] = k;
    place_concat_parts(p);
    qsort_r(order, n, sizeof *order, by_size_desc, p->allocs);
    /* Largest first, each at the lowest offset where it overlaps no placed allocation that is live
     * at the same time: candidates are 0 and the ends of the conflicting ones. */
    size_t n_placed = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        PlannedAlloc *a = &p->allocs[order[i]];
        if (a->host != order[i]) continue; /* inside a concatenation: placed with it below */
        size_t first = a->birth, size = (a->bytes + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN, best = 0;
        for (;;) {
            bool moved = false;
            for (size_t j = 0; j < n_placed; j++) {
                const PlannedAlloc *b = &p->allocs[placed[j]];
                size_t b_size = (b->bytes + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
                bool live_together = b->birth <= a->last && first <= b->last;
                bool overlap = best < b->offset + b_size && b->offset < best + size;
                if (live_together && overlap) best = b->offset + b_size, moved = true;
            }
            if (!moved) break;
        }
        a->offset = best;
        if (best + size > total) total = best + size;
        placed[n_placed++] = order[i];
    }
    for (size_t k = 0; k < n; k++)
        if (p->allocs[k].host != k) p->allocs[k].offset = p->allocs[p->allocs[k].host].offset + p->allocs[k].host_offset;
    free(order), free(placed);
    device_free(p->base, p->device);
    p->base = NULL;
    p->total = total;
    if (device_alloc(&p->base, p->device, total ? total : PLAN_ALIGN, err)) return err->code;
    p->ready = true;
    return ERR_OK;
}

void *memory_plan_next(MemoryPlan *p, size_t bytes, Error *err)
{
    if (p->next >= p->n || p->allocs[p->next].bytes != bytes) {
        error_set(err, ERR_ARG,
                  "memory plan: allocation %zu of this step (%zu bytes) is not the recorded one; the step "
                  "is not the one its key was recorded for",
                  p->next, bytes);
        return NULL;
    }
    return (char *)p->base + p->allocs[p->next++].offset;
}
