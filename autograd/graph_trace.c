#include "autograd/graph_trace.h"

#include <stdlib.h>
#include <string.h>

ErrorCode graph_trace_begin(Graph *g)
{
    if (!g->trace) g->trace = calloc(1, sizeof *g->trace);
    if (!g->trace) return error_set(&g->err, ERR_OOM, "graph: out of memory starting a trace");
    g->trace->n = 0;
    return ERR_OK;
}

const GraphTrace *graph_trace(const Graph *g) { return g->trace; }

void graph_trace_end(Graph *g)
{
    if (!g->trace) return;
    free(g->trace->entries);
    free(g->trace);
    g->trace = NULL;
}

void graph_trace_record(Graph *g, const char *op, Var *const *inputs, int n_inputs, const Var *out)
{
    GraphTrace *t = g->trace;
    if (!t || !graph_ok(g)) return;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 256;
        TraceEntry *e = realloc(t->entries, (size_t)cap * sizeof *e);
        if (!e) {
            graph_fail(g, ERR_OOM, "graph: out of memory tracing %s", op);
            return;
        }
        t->entries = e, t->cap = cap;
    }
    const Var **in = arena_alloc(&g->meta, (size_t)(n_inputs ? n_inputs : 1) * sizeof *in, &g->err);
    if (!in) return;
    for (int i = 0; i < n_inputs; i++) in[i] = inputs[i];
    t->entries[t->n++] = (TraceEntry){op, out, in, n_inputs, {0}, 0, 0.0f};
}

void graph_trace_attrs(Graph *g, const Var *y, const int64_t *ints, int n_ints, float f)
{
    GraphTrace *t = g->trace;
    if (!t || !y) return;
    /* the op's entry: normally the last one (an op states its attributes right after making y) */
    for (int i = t->n - 1; i >= 0; i--)
        if (t->entries[i].out == y) {
            TraceEntry *e = &t->entries[i];
            e->n_ints = n_ints < TRACE_MAX_INTS ? n_ints : TRACE_MAX_INTS;
            for (int k = 0; k < e->n_ints; k++) e->ints[k] = ints[k];
            e->f = f;
            return;
        }
}
