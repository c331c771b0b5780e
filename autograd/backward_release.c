#include "autograd/backward_release.h"

#include <stdlib.h>
#include <string.h>

static bool grow(void **items, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    void *q = realloc(*items, need * elem);
    if (!q) return false;
    *items = q, *cap = need;
    return true;
}

static int by_address(const void *a, const void *b, void *ctx)
{
    const StepAlloc *s = ctx;
    const char *x = s[*(const size_t *)a].ptr, *y = s[*(const size_t *)b].ptr;
    return x < y ? -1 : x > y;
}

/* The allocation holding address p (a value may be a view into another's memory), or -1; order holds
 * the n live allocations by address. */
static long lookup(const Graph *g, const size_t *order, size_t n, const void *p)
{
    const char *q = p;
    size_t lo = 0, hi = n;
    while (lo < hi) { /* the last allocation starting at or before q */
        size_t mid = (lo + hi) / 2;
        if (g->allocs[order[mid]].ptr <= q) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return -1;
    const StepAlloc *a = &g->allocs[order[lo - 1]];
    return q < a->ptr + (a->bytes ? a->bytes : 1) ? (long)order[lo - 1] : -1;
}

enum { NO_READER = -1, KEPT = -2 };

/* die[i]: the point where allocation i dies (tape index of its last reader, NO_READER, or KEPT). */
static void read_at(int32_t *die, long i, size_t t)
{
    if (i < 0 || die[i] == KEPT) return;
    if (die[i] == NO_READER || (size_t)die[i] > t) die[i] = (int32_t)t;
}

ErrorCode backward_release_build(Graph *g, const Var *root)
{
    BackwardRelease *r = g->release;
    size_t n = g->n_allocs, points = g->n_tape + 1;
    if (!grow((void **)&r->first, &r->cap_points, points, sizeof *r->first) ||
        !grow((void **)&r->next, &r->cap_allocs, n + 1, sizeof *r->next) ||
        !grow((void **)&r->order, &r->cap_order, n + 1, sizeof *r->order))
        return graph_fail(g, ERR_OOM, "backward: out of memory planning the frees"), g->err.code;
    size_t *order = r->order, live = 0;
    int32_t *die = r->next; /* the death points first; turned into the lists below */
    for (size_t i = 0; i < n; i++) {
        const Var *o = g->allocs[i].owner;
        bool freed = !g->allocs[i].ptr; /* by graph_done_with */
        bool kept = freed || !o || !o->backward;
        die[i] = kept ? KEPT : NO_READER;
        if (!freed) order[live++] = i;
    }
    qsort_r(order, live, sizeof *order, by_address, g->allocs);
    for (size_t t = 0; t < g->n_tape; t++) {
        const Var *u = g->tape[t];
        for (int k = 0; k < u->n_inputs; k++)
            if (var_backward_reads_input(u, k)) read_at(die, lookup(g, order, live, u->inputs[k]->value.data), t);
        if (u->saves & GRAPH_SAVES_OUTPUT) read_at(die, lookup(g, order, live, u->value.data), t);
    }
    for (size_t i = 0; i < n; i++) { /* scratch made with an op: read by that op's backward */
        const Var *o = g->allocs[i].owner;
        if (o && o->backward && g->allocs[i].ptr != (char *)o->value.data) read_at(die, (long)i, (size_t)o->tape_index);
    }
    long root_alloc = root ? lookup(g, order, live, root->value.data) : -1;
    if (root_alloc >= 0) die[root_alloc] = KEPT;
    for (size_t t = 0; t < g->n_tape; t++) { /* graph_keep: the memory holding the value, a view's too */
        long a = g->tape[t]->keep ? lookup(g, order, live, g->tape[t]->value.data) : -1;
        if (a >= 0) die[a] = KEPT;
    }
    for (size_t p = 0; p < points; p++) r->first[p] = -1;
    for (size_t i = n; i-- > 0;) {
        int32_t d = die[i];
        if (d == KEPT) {
            die[i] = -1;
            continue;
        }
        size_t p = d == NO_READER ? g->n_tape : (size_t)d;
        die[i] = r->first[p]; /* die[] becomes next[] entry by entry: i is done with its death point */
        r->first[p] = (int32_t)i;
    }
    return ERR_OK;
}

void backward_release_at(Graph *g, size_t point)
{
    BackwardRelease *r = g->release;
    for (int32_t i = r->first[point]; i >= 0; i = r->next[i]) step_heap_free(&g->heap, g->allocs[i].ptr);
    r->first[point] = -1;
}

void backward_release_destroy(BackwardRelease *r)
{
    if (!r) return;
    free(r->first), free(r->next), free(r->order), free(r->temps);
    memset(r, 0, sizeof *r);
}
