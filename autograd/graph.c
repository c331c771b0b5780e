#include "autograd/graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/backward_release.h"
#include "autograd/graph_trace.h"
#include "autograd/memory_plan.h"
#include "autograd/room.h"
#include "tensor/clock.h"
#include "tensor/device.h"
#include "cuda_kernels/cuda_ops.h"

enum { PROFILE_MAX_OPS = 320 };

/* One row per (op, kind): time, calls and the work the ops reported (graph_profile_note). */
typedef struct {
    double ms, flops, bytes;
} ProfileWork;

/* Which layer a row is in per-layer mode: the first input's channels, and the output's channels,
 * height and width (NCHW outputs; 0 where the output has fewer dimensions). */
typedef struct {
    int64_t in_c, c, h, w;
} ProfileLayer;

struct GraphProfile {
    const char *name[PROFILE_MAX_OPS], *kind[PROFILE_MAX_OPS];
    bool by_layer;
    ProfileLayer layer[PROFILE_MAX_OPS];
    ProfileWork fwd[PROFILE_MAX_OPS], bwd[PROFILE_MAX_OPS];
    long calls[PROFILE_MAX_OPS];
    int n;
    bool in_backward;
    const char *open_op; /* forward op running since open.ms (its kind and work as noted so far) */
    const Var *open_var; /* its output, once made */
    const char *open_kind;
    ProfileWork open;
    const char *bwd_kind; /* noted by the backward running now */
    ProfileWork bwd_note;
};

static double profile_now_ms(Graph *g)
{
    if (g->heap.device == DEVICE_CUDA) cuda_sync(g->ctx, NULL);
    return clock_seconds() * 1e3;
}

static ProfileLayer layer_of(const struct GraphProfile *p, const Var *v)
{
    ProfileLayer l = {0, 0, 0, 0};
    if (!p->by_layer || !v || v->value.ndim != 4) return l;
    l.c = v->value.shape[1], l.h = v->value.shape[2], l.w = v->value.shape[3];
    if (v->n_inputs > 0 && v->inputs[0]->value.ndim == 4) l.in_c = v->inputs[0]->value.shape[1];
    return l;
}

static int profile_slot(struct GraphProfile *p, const char *op, const char *kind, const Var *v)
{
    ProfileLayer l = layer_of(p, v);
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->name[i], op) && (p->kind[i] == kind || (p->kind[i] && kind && !strcmp(p->kind[i], kind))) &&
            !memcmp(&p->layer[i], &l, sizeof l))
            return i;
    if (p->n == PROFILE_MAX_OPS) return -1;
    p->name[p->n] = op, p->kind[p->n] = kind, p->layer[p->n] = l;
    return p->n++;
}

static void profile_add(ProfileWork *w, double ms, const ProfileWork *note)
{
    w->ms += ms, w->flops += note->flops, w->bytes += note->bytes;
}

/* Closes the forward op in flight (its kernels end before the next op starts). */
static void profile_close_forward(Graph *g)
{
    struct GraphProfile *p = g->profile;
    if (!p || !p->open_op) return;
    int i = profile_slot(p, p->open_op, p->open_kind, p->open_var);
    double now = profile_now_ms(g);
    if (p->open.flops == 0 && p->open.bytes == 0 && p->open_var) { /* un-noted: its tensors read and written once */
        const Var *v = p->open_var;
        p->open.bytes = (double)tensor_bytes(&v->value);
        for (int k = 0; k < v->n_inputs; k++) p->open.bytes += (double)tensor_bytes(&v->inputs[k]->value);
    }
    if (i >= 0) profile_add(&p->fwd[i], now - p->open.ms, &p->open), p->calls[i]++;
    p->open_op = NULL;
    p->open_var = NULL;
}

void graph_profile_end_forward(Graph *g) { profile_close_forward(g); }

void graph_profile_note(Graph *g, const char *kind, double flops, double bytes)
{
    struct GraphProfile *p = g->profile;
    if (!p) return;
    if (p->in_backward) {
        p->bwd_kind = kind, p->bwd_note.flops += flops, p->bwd_note.bytes += bytes;
    } else if (p->open_op) {
        p->open_kind = kind, p->open.flops += flops, p->open.bytes += bytes;
    }
}

void graph_enable_profile(Graph *g, bool by_layer)
{
    if (!g->profile) g->profile = calloc(1, sizeof *g->profile);
    if (g->profile) g->profile->by_layer = by_layer;
}

static int by_total(const void *a, const void *b, void *ctx)
{
    const struct GraphProfile *p = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    double tx = p->fwd[x].ms + p->bwd[x].ms, ty = p->fwd[y].ms + p->bwd[y].ms;
    return tx < ty ? 1 : tx > ty ? -1 : 0;
}

/* "GFLOP/s" of the work where the op counted FLOPs, else GB/s where it counted bytes; nothing for ops
 * that take no measurable time per call (views; the branches of a shared-input op after the first,
 * whose work the last one's time holds). */
static void rate_str(char *buf, size_t len, const ProfileWork *w, long calls)
{
    if (w->ms <= 0.005 * (double)(calls > 0 ? calls : 1) || (w->flops <= 0 && w->bytes <= 0))
        snprintf(buf, len, "%s", "");
    else if (w->flops > 0)
        snprintf(buf, len, "%.1f GFLOP/s", w->flops / w->ms / 1e6);
    else
        snprintf(buf, len, "%.1f GB/s", w->bytes / w->ms / 1e6);
}

void graph_print_profile(const Graph *g, FILE *out, int steps)
{
    const struct GraphProfile *p = g->profile;
    if (!p) return;
    int order[PROFILE_MAX_OPS];
    for (int i = 0; i < p->n; i++) order[i] = i;
    qsort_r(order, (size_t)p->n, sizeof *order, by_total, (void *)p);
    double tf = 0, tb = 0, d = steps ? steps : 1;
    int width = p->by_layer ? 48 : 28;
    fprintf(out, "  %-*s %6s %11s %15s %12s %15s\n", width, "op", "calls", "forward ms", "", "backward ms", "");
    for (int k = 0; k < p->n; k++) {
        int i = order[k];
        char name[96], rf[32], rb[32];
        int len = snprintf(name, sizeof name, p->kind[i] ? "%s %s" : "%s", p->name[i], p->kind[i]);
        const ProfileLayer *l = &p->layer[i];
        if (l->c && len > 0 && (size_t)len < sizeof name) {
            char in[24] = ""; /* input channels, known where the op was recorded (inference records no inputs) */
            if (l->in_c) snprintf(in, sizeof in, "%lld", (long long)l->in_c);
            snprintf(name + len, sizeof name - (size_t)len, " %s->%lld %lldx%lld", in, (long long)l->c, (long long)l->h,
                     (long long)l->w);
        }
        rate_str(rf, sizeof rf, &p->fwd[i], p->calls[i]);
        rate_str(rb, sizeof rb, &p->bwd[i], p->calls[i]);
        fprintf(out, "  %-*s %6ld %11.2f %15s %12.2f %15s\n", width, name, (long)(p->calls[i] / d), p->fwd[i].ms / d, rf,
                p->bwd[i].ms / d, rb);
        tf += p->fwd[i].ms, tb += p->bwd[i].ms;
    }
    fprintf(out, "  %-*s %6s %11.2f %15s %12.2f\n", width, "total", "", tf / d, "", tb / d);
}

GraphMemory graph_memory(const Graph *g)
{
    GraphMemory m = {g->heap.peak, g->saved_peak, g->backward_peak, g->workspace_bytes};
    return m;
}

ErrorCode graph_init(Graph *g, Context *ctx, Device dev, Error *err)
{
    memset(g, 0, sizeof *g);
    g->ctx = ctx;
    g->grad_enabled = true;
    step_heap_init(&g->heap, dev, (size_t)16 << 20);
    arena_init(&g->meta, DEVICE_CPU, (size_t)1 << 20);
    g->release = calloc(1, sizeof *g->release);
    if (!g->meta.head || !g->release) {
        graph_destroy(g);
        return error_set(err, ERR_OOM, "graph: cannot allocate the step arena");
    }
    return ERR_OK;
}

void graph_destroy(Graph *g)
{
    device_free(g->workspace, g->heap.device);
    step_heap_destroy(&g->heap);
    arena_destroy(&g->meta);
    backward_release_destroy(g->release);
    free(g->release);
    g->release = NULL;
    free(g->allocs);
    g->allocs = NULL;
    g->n_allocs = g->cap_allocs = 0;
    g->workspace = NULL;
    g->workspace_bytes = 0;
    free(g->profile);
    g->profile = NULL;
    graph_trace_end(g);
    free(g->tape);
    g->tape = NULL;
    g->n_tape = g->cap_tape = 0;
    if (g->plan) memory_plan_free(g->plan);
    free(g->plan);
    g->plan = NULL;
}

void graph_reset(Graph *g)
{
    profile_close_forward(g);
    MemoryPlan *p = g->plan;
    if (p && p->active) {
        /* a recorded step lays its plan out; one that failed leaves nothing to replay */
        if (!p->ready && (!graph_ok(g) || memory_plan_finish(p, &g->err))) memory_plan_free(p);
        p->active = false;
    }
    step_heap_reset(&g->heap);
    arena_reset(&g->meta);
    if (g->trace) g->trace->n = 0; /* its entries pointed at the step's Vars */
    g->n_tape = 0;
    g->n_allocs = 0;
    g->current_op = NULL;
    g->backward_done = false;
    error_clear(&g->err);
}

bool graph_set_grad_enabled(Graph *g, bool enabled)
{
    bool prev = g->grad_enabled;
    g->grad_enabled = enabled;
    return prev;
}

bool graph_ok(const Graph *g) { return g->err.code == ERR_OK; }

Var *graph_fail(Graph *g, ErrorCode code, const char *fmt, ...)
{
    if (g->err.code == ERR_OK) {
        g->err.code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->err.msg, sizeof g->err.msg, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

void graph_plan_memory(Graph *g, uint64_t key)
{
    if (!g->plan && !(g->plan = calloc(1, sizeof *g->plan))) return; /* no plan: plain arena */
    MemoryPlan *p = g->plan;
    if (!(p->ready && p->key == key)) {
        memory_plan_free(p);
        p->key = key;
        p->device = g->heap.device;
    }
    p->active = true;
    p->next = 0;
}

void graph_plan_concat(Graph *g, const Var *y, Var *const *parts, int n)
{
    MemoryPlan *p = g->plan;
    if (!p || !p->active || p->ready || !graph_ok(g) || n > PLAN_CONCAT_MAX) return;
    const void *ptrs[PLAN_CONCAT_MAX];
    size_t bytes[PLAN_CONCAT_MAX];
    for (int i = 0; i < n; i++) ptrs[i] = parts[i]->value.data, bytes[i] = tensor_bytes(&parts[i]->value);
    if (!memory_plan_record_concat(p, y->value.data, n, ptrs, bytes))
        error_set(&g->err, ERR_OOM, "graph: out of memory recording the memory plan");
}

/* Appends a to a StepAlloc array (the step's log, or the running backward's temporaries). */
static bool push_alloc(StepAlloc **items, size_t *n, size_t *cap, StepAlloc a)
{
    StepAlloc *q = room_for_one_more(*items, cap, *n, sizeof *q, 256);
    if (!q) return false;
    *items = q;
    q[(*n)++] = a;
    return true;
}

/* Counts backward memory (gradients and scratch) for graph_memory. */
static void backward_bytes(Graph *g, size_t bytes, bool allocated)
{
    if (allocated) {
        g->backward_live += bytes;
        if (g->backward_live > g->backward_peak) g->backward_peak = g->backward_live;
    } else {
        g->backward_live -= bytes < g->backward_live ? bytes : g->backward_live;
    }
}

/* Memory of the step: the heap, or the plan's slot when replaying (recorded when recording). `grad`:
 * a gradient (freed by its node's backward, not logged). Other allocations are logged outside the
 * backward and are temporaries of the running node's backward inside it. */
static void *step_alloc(Graph *g, size_t bytes, bool grad)
{
    MemoryPlan *p = g->plan;
    if (!graph_ok(g)) return NULL;
    if (p && p->active && p->ready) return memory_plan_next(p, bytes, &g->err);
    void *m = step_heap_alloc(&g->heap, bytes, &g->err);
    if (!m) return NULL;
    if (p && p->active && !memory_plan_record_alloc(p, m, bytes)) {
        error_set(&g->err, ERR_OOM, "graph: out of memory recording the memory plan");
        return NULL;
    }
    BackwardRelease *r = g->release;
    bool ok = true;
    if (g->in_backward) backward_bytes(g, bytes, true);
    if (g->in_backward && !grad)
        ok = push_alloc(&r->temps, &r->n_temps, &r->cap_temps, (StepAlloc){m, bytes, NULL});
    else if (!grad) /* outside the backward: the step's log, owned by the op being made */
        ok = push_alloc(&g->allocs, &g->n_allocs, &g->cap_allocs, (StepAlloc){m, bytes, g->current_op});
    if (!ok) {
        step_heap_free(&g->heap, m);
        error_set(&g->err, ERR_OOM, "graph: out of host memory for the step's bookkeeping");
        return NULL;
    }
    return m;
}

void *graph_scratch(Graph *g, size_t bytes) { return step_alloc(g, bytes, false); }

bool graph_check_cuda(Graph *g, const char *op)
{
    /* Only GPU graphs launch kernels; on a machine without a driver the query itself would fail. */
    if (graph_ok(g) && g->heap.device == DEVICE_CUDA) cuda_check_launch(op, &g->err);
    return graph_ok(g);
}

void *graph_workspace(Graph *g, size_t bytes)
{
    if (bytes <= g->workspace_bytes) return g->workspace;
    /* Freeing device memory waits for the kernels that may still use it. */
    device_free(g->workspace, g->heap.device);
    g->workspace = NULL;
    g->workspace_bytes = 0;
    if (device_alloc(&g->workspace, g->heap.device, bytes, &g->err)) return NULL;
    g->workspace_bytes = bytes;
    return g->workspace;
}

void *graph_host_scratch(Graph *g, size_t bytes) { return arena_alloc(&g->meta, bytes, &g->err); }

static Var *var_alloc_step(Graph *g)
{
    Var *v = arena_alloc(&g->meta, sizeof *v, &g->err);
    if (v) {
        memset(v, 0, sizeof *v);
        v->saves = GRAPH_SAVES_ALL;
        v->tape_index = -1;
    }
    return v;
}

Var *var_from_tensor(Graph *g, const Tensor *t, bool requires_grad)
{
    Var *v = var_alloc_step(g);
    if (!v) return NULL;
    v->value = *t;
    v->value.owns = false;
    v->requires_grad = requires_grad;
    v->op = "input";
    return v;
}

/* A step Var with fresh value memory, owned by `owner` (NULL: the caller's, never freed early). */
static Var *var_new_owned(Graph *g, int ndim, const int64_t *shape, bool own_op)
{
    Var *v = var_alloc_step(g);
    if (!v) return NULL;
    Var *prev = g->current_op;
    g->current_op = own_op ? v : NULL;
    v->value = tensor_wrap(NULL, g->heap.device, ndim, shape);
    v->value.data = step_alloc(g, tensor_bytes(&v->value), false);
    if (!own_op) g->current_op = prev; /* an op's scratch allocated after this still belongs to it */
    if (!v->value.data) return NULL;
    v->op = "value";
    return v;
}

Var *var_new(Graph *g, int ndim, const int64_t *shape) { return var_new_owned(g, ndim, shape, false); }

void graph_keep(Var *v)
{
    if (v) v->keep = true;
}

/* Whether a backward recorded so far reads memory in [p, p + bytes) other than through graph_saved_value
 * of v (which can make v's value again when v can be recomputed). */
static bool read_by_a_backward(const Graph *g, const Var *v, const char *p, size_t bytes)
{
    for (size_t t = 0; t < g->n_tape; t++) {
        const Var *u = g->tape[t];
        for (int k = 0; k < u->n_inputs; k++) {
            const char *q = (const char *)u->inputs[k]->value.data;
            bool remade = u->inputs[k] == v && v->recompute && u->reads_recomputed;
            if (var_backward_reads_input(u, k) && q >= p && q < p + bytes && !remade) return true;
        }
        const char *q = (const char *)u->value.data;
        if ((u->saves & GRAPH_SAVES_OUTPUT) && q >= p && q < p + bytes) return true;
    }
    return false;
}

void graph_done_with(Graph *g, Var *v)
{
    if (!v || v->keep || v->released || g->in_backward || g->backward_done || (g->plan && g->plan->active)) return;
    for (size_t i = g->n_allocs; i-- > 0;) {
        StepAlloc *a = &g->allocs[i];
        if (a->owner != v || a->ptr != (char *)v->value.data) continue;
        if (read_by_a_backward(g, v, a->ptr, a->bytes)) return;
        step_heap_free(&g->heap, a->ptr);
        a->ptr = NULL; /* gone from the log: the backward's plan skips it */
        a->bytes = 0;
        v->value.data = NULL; /* a read that is not through graph_saved_value faults instead of reading garbage */
        v->released = true;
        return;
    }
}

const float *graph_saved_value(Graph *g, Var *v)
{
    if (!v->released) return v->value.data;
    if (!v->recompute) return graph_fail(g, ERR_ARG, "backward: %s's value was released and cannot be made again", v->op), NULL;
    float *dst = graph_scratch(g, tensor_bytes(&v->value)); /* a temporary of the running backward */
    if (dst) v->recompute(g, v, dst);
    return dst;
}

static bool tape_push(Graph *g, Var *v)
{
    if (g->n_tape == g->cap_tape) {
        size_t cap = g->cap_tape ? g->cap_tape * 2 : 256;
        Var **t = realloc(g->tape, cap * sizeof *t);
        if (!t) {
            graph_fail(g, ERR_OOM, "graph: out of memory growing the tape");
            return false;
        }
        g->tape = t;
        g->cap_tape = cap;
    }
    v->tape_index = (int32_t)g->n_tape;
    g->tape[g->n_tape++] = v;
    return true;
}

Var *graph_op_output(Graph *g, const char *op, Var *const *inputs, int n_inputs, int ndim,
                     const int64_t *shape, VarBackwardFn backward)
{
    if (!graph_ok(g)) return NULL;
    if (g->profile) {
        profile_close_forward(g);
        g->profile->open_op = op;
        g->profile->open_kind = NULL;
        g->profile->open = (ProfileWork){profile_now_ms(g), 0, 0};
    }
    bool needs_grad = false;
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i]) return graph_fail(g, ERR_ARG, "%s: NULL input %d", op, i);
        needs_grad |= inputs[i]->requires_grad;
    }
    needs_grad &= g->grad_enabled;
    MemoryPlan *p = g->plan;
    if (p && p->active && !p->ready) {
        memory_plan_record_op(p);
        for (int i = 0; i < n_inputs; i++)
            if (!memory_plan_record_read(p, inputs[i]->value.data))
                return graph_fail(g, ERR_OOM, "graph: out of memory recording the memory plan");
    }
    Var *v = var_new_owned(g, ndim, shape, true);
    if (!v) return NULL;
    v->op = op;
    if (g->profile) g->profile->open_var = v;
    if (g->trace) graph_trace_record(g, op, inputs, n_inputs, v);
    if (needs_grad) {
        v->requires_grad = true;
        v->backward = backward;
        v->inputs = arena_alloc(&g->meta, (size_t)n_inputs * sizeof *v->inputs, &g->err);
        if (!v->inputs) return NULL;
        memcpy(v->inputs, inputs, (size_t)n_inputs * sizeof *v->inputs);
        v->n_inputs = n_inputs;
        if (!tape_push(g, v)) return NULL;
    }
    return v;
}

float *var_grad_for_write(Graph *g, Var *v, bool *accumulate)
{
    *accumulate = v->grad.data != NULL;
    if (v->grad.data) return v->grad.data;
    v->grad = tensor_wrap(NULL, v->value.device, v->value.ndim, v->value.shape);
    v->grad.data = step_alloc(g, tensor_bytes(&v->value), true);
    return v->grad.data;
}

bool var_grad_add_host(Graph *g, Var *v, const float *src)
{
    bool accumulate;
    float *d = var_grad_for_write(g, v, &accumulate);
    if (!d) return false;
    int64_t n = tensor_numel(&v->value);
    if (!accumulate)
        memcpy(d, src, sizeof(float) * (size_t)n);
    else
        for (int64_t i = 0; i < n; i++) d[i] += src[i];
    return true;
}

bool var_grad_pass_host(Graph *g, Var *v, Var *y)
{
    if (v->grad.data || !y->grad.data || !step_heap_owns(&g->heap, y->grad.data) ||
        tensor_numel(&v->value) != tensor_numel(&y->value))
        return var_grad_add_host(g, v, y->grad.data);
    v->grad = tensor_wrap(y->grad.data, v->value.device, v->value.ndim, v->value.shape);
    y->grad.data = NULL; /* v's now: freed after v's backward, not after y's */
    return true;
}

float *var_grad(Graph *g, Var *v)
{
    bool accumulate;
    float *d = var_grad_for_write(g, v, &accumulate);
    if (d && !accumulate && device_memset_zero(d, v->value.device, tensor_bytes(&v->value), &g->err))
        v->grad.data = NULL;
    return v->grad.data;
}

/* Frees what node v's backward leaves dead: its temporaries, its gradient, and the values it read last. */
static void release_after(Graph *g, Var *v)
{
    BackwardRelease *r = g->release;
    for (size_t k = 0; k < r->n_temps; k++) {
        step_heap_free(&g->heap, r->temps[k].ptr);
        backward_bytes(g, r->temps[k].bytes, false);
    }
    r->n_temps = 0;
    if (v->grad.data && step_heap_owns(&g->heap, v->grad.data)) {
        step_heap_free(&g->heap, v->grad.data);
        backward_bytes(g, tensor_bytes(&v->grad), false);
        v->grad.data = NULL;
    }
    backward_release_at(g, (size_t)v->tape_index);
}

static void run_node(Graph *g, Var *v)
{
    struct GraphProfile *p = g->profile;
    if (!p) {
        v->backward(g, v);
        return;
    }
    p->in_backward = true;
    p->bwd_kind = NULL;
    p->bwd_note = (ProfileWork){0, 0, 0};
    double t0 = profile_now_ms(g);
    v->backward(g, v);
    if (p->bwd_note.flops == 0 && p->bwd_note.bytes == 0) { /* un-noted: dy read, each input's gradient updated */
        p->bwd_note.bytes = (double)tensor_bytes(&v->value);
        for (int i = 0; i < v->n_inputs; i++)
            if (v->inputs[i]->requires_grad) p->bwd_note.bytes += 2.0 * (double)tensor_bytes(&v->inputs[i]->value);
    }
    int k = profile_slot(p, v->op, p->bwd_kind, v);
    if (k >= 0) profile_add(&p->bwd[k], profile_now_ms(g) - t0, &p->bwd_note);
    p->in_backward = false;
}

void graph_on_param_grad_ready(Graph *g, void (*fn)(void *ctx, Var *param), void *ctx)
{
    g->param_grad_ready = fn, g->param_grad_ctx = ctx;
}

/* Counts, per value, the nodes of the tape that read it (sign: -1 counts down after node v has run; with a
 * grad-ready hook, reporting the parameters it was the last reader of). */
static void count_uses(Graph *g, Var *v, int sign)
{
    for (int k = 0; k < v->n_inputs; k++) {
        Var *p = v->inputs[k];
        if (sign > 0) {
            p->pending_uses++;
        } else if (--p->pending_uses == 0 && g->param_grad_ready && p->is_param && p->requires_grad) {
            g->param_grad_ready(g->param_grad_ctx, p);
        }
    }
}

bool graph_last_reader(const Var *x) { return x->pending_uses == 1; }

/* Runs the tape backwards from root, freeing what each node leaves dead (backward_release.h). */
static ErrorCode run_tape(Graph *g, Var *root)
{
    for (size_t i = 0; i < g->n_tape; i++)
        for (int k = 0; k < g->tape[i]->n_inputs; k++) g->tape[i]->inputs[k]->pending_uses = 0;
    for (size_t i = 0; i < g->n_tape; i++) count_uses(g, g->tape[i], 1);
    profile_close_forward(g);
    g->backward_done = true;
    if (backward_release_build(g, root)) return g->err.code;
    backward_release_at(g, g->n_tape); /* values no backward reads */
    if (g->heap.live > g->saved_peak) g->saved_peak = g->heap.live;
    g->in_backward = true;
    for (size_t i = g->n_tape; i-- > 0 && graph_ok(g);) {
        Var *v = g->tape[i];
        if (v->grad.data && v->backward) run_node(g, v);
        if (graph_ok(g)) count_uses(g, v, -1);
        if (graph_ok(g)) release_after(g, v);
    }
    g->in_backward = false;
    return g->err.code;
}

ErrorCode graph_backward_with_grad(Graph *g, Var *y, const float *dy)
{
    if (!graph_ok(g)) return g->err.code;
    if (!y) return graph_fail(g, ERR_ARG, "backward: NULL output"), g->err.code;
    if (g->backward_done)
        return graph_fail(g, ERR_ARG, "backward: already run in this step (it freed what it read); graph_reset first"),
               g->err.code;
    if (!y->requires_grad)
        return graph_fail(g, ERR_ARG, "backward: output does not depend on anything requiring grad"),
               g->err.code;
    g->backward_live = 0;
    g->in_backward = true; /* the seed is a gradient like the others */
    float *seed = var_grad(g, y);
    g->in_backward = false;
    if (!seed) return g->err.code;
    if (device_memcpy(seed, y->value.device, dy, DEVICE_CPU, tensor_bytes(&y->value), &g->err))
        return g->err.code;
    return run_tape(g, y);
}

ErrorCode graph_backward(Graph *g, Var *loss)
{
    if (!graph_ok(g)) return g->err.code;
    if (loss && tensor_numel(&loss->value) != 1)
        return graph_fail(g, ERR_SHAPE, "backward: loss must have one element"), g->err.code;
    float one = 1.0f;
    return graph_backward_with_grad(g, loss, &one);
}

Var *var_param_new(Device dev, int ndim, const int64_t *shape, Error *err)
{
    Var *v = calloc(1, sizeof *v);
    if (!v) {
        error_set(err, ERR_OOM, "out of memory allocating a parameter");
        return NULL;
    }
    if (tensor_new(&v->value, dev, ndim, shape, err) || tensor_new(&v->grad, dev, ndim, shape, err)) {
        var_param_free(v);
        return NULL;
    }
    v->requires_grad = true;
    v->is_param = true;
    v->op = "param";
    return v;
}

void var_param_free(Var *v)
{
    if (!v) return;
    tensor_free(&v->value);
    tensor_free(&v->grad);
    free(v);
}

void var_zero_grad(Var *v)
{
    if (v->grad.data) device_memset_zero(v->grad.data, v->grad.device, tensor_bytes(&v->grad), NULL);
}
