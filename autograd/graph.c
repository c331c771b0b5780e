#include "autograd/graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/memory_plan.h"
#include "tensor/clock.h"
#include "tensor/device.h"
#ifdef HAVE_CUDA
#include "cuda_kernels/cuda_ops.h"
#endif

enum { PROFILE_MAX_OPS = 64 };

struct GraphProfile {
    const char *name[PROFILE_MAX_OPS];
    double forward_ms[PROFILE_MAX_OPS], backward_ms[PROFILE_MAX_OPS];
    long calls[PROFILE_MAX_OPS];
    int n;
    const char *open_op; /* forward op running since open_t */
    double open_t;
};

static double profile_now_ms(Graph *g)
{
#ifdef HAVE_CUDA
    if (g->arena.device == DEVICE_CUDA) cuda_sync(g->ctx, NULL);
#endif
    return clock_seconds() * 1e3;
}

static int profile_slot(struct GraphProfile *p, const char *op)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->name[i], op)) return i;
    if (p->n == PROFILE_MAX_OPS) return -1;
    p->name[p->n] = op;
    return p->n++;
}

/* Closes the forward op in flight (its kernels end before the next op starts). */
static void profile_close_forward(Graph *g)
{
    struct GraphProfile *p = g->profile;
    if (!p || !p->open_op) return;
    int i = profile_slot(p, p->open_op);
    double now = profile_now_ms(g);
    if (i >= 0) p->forward_ms[i] += now - p->open_t, p->calls[i]++;
    p->open_op = NULL;
}

void graph_profile_end_forward(Graph *g) { profile_close_forward(g); }

void graph_enable_profile(Graph *g)
{
    if (!g->profile) g->profile = calloc(1, sizeof *g->profile);
}

static int by_total(const void *a, const void *b, void *ctx)
{
    const struct GraphProfile *p = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    double tx = p->forward_ms[x] + p->backward_ms[x], ty = p->forward_ms[y] + p->backward_ms[y];
    return tx < ty ? 1 : tx > ty ? -1 : 0;
}

void graph_print_profile(const Graph *g, FILE *out, int steps)
{
    const struct GraphProfile *p = g->profile;
    if (!p) return;
    int order[PROFILE_MAX_OPS];
    for (int i = 0; i < p->n; i++) order[i] = i;
    qsort_r(order, (size_t)p->n, sizeof *order, by_total, (void *)p);
    double tf = 0, tb = 0;
    fprintf(out, "  %-18s %8s %12s %12s\n", "op", "calls", "forward ms", "backward ms");
    for (int k = 0; k < p->n; k++) {
        int i = order[k];
        fprintf(out, "  %-18s %8ld %12.2f %12.2f\n", p->name[i], p->calls[i] / (steps ? steps : 1),
                p->forward_ms[i] / (steps ? steps : 1), p->backward_ms[i] / (steps ? steps : 1));
        tf += p->forward_ms[i], tb += p->backward_ms[i];
    }
    fprintf(out, "  %-18s %8s %12.2f %12.2f\n", "total", "", tf / (steps ? steps : 1), tb / (steps ? steps : 1));
}

ErrorCode graph_init(Graph *g, Context *ctx, Device dev, Error *err)
{
    memset(g, 0, sizeof *g);
    g->ctx = ctx;
    g->grad_enabled = true;
    arena_init(&g->arena, dev, (size_t)16 << 20);
    arena_init(&g->meta, DEVICE_CPU, (size_t)1 << 20);
    if (!g->arena.head || !g->meta.head) return error_set(err, ERR_OOM, "graph: cannot allocate the step arena");
    return ERR_OK;
}

void graph_destroy(Graph *g)
{
    arena_destroy(&g->arena);
    arena_destroy(&g->meta);
    device_free(g->workspace, g->arena.device);
    g->workspace = NULL;
    g->workspace_bytes = 0;
    free(g->profile);
    g->profile = NULL;
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
    arena_reset(&g->arena);
    arena_reset(&g->meta);
    g->n_tape = 0;
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
        p->device = g->arena.device;
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

/* Memory of a step value: the arena, or the plan's slot when replaying (recorded when recording). */
static void *step_alloc(Graph *g, size_t bytes)
{
    MemoryPlan *p = g->plan;
    if (!graph_ok(g)) return NULL;
    if (p && p->active && p->ready) return memory_plan_next(p, bytes, &g->err);
    void *m = arena_alloc(&g->arena, bytes, &g->err);
    if (m && p && p->active && !memory_plan_record_alloc(p, m, bytes)) {
        error_set(&g->err, ERR_OOM, "graph: out of memory recording the memory plan");
        return NULL;
    }
    return m;
}

void *graph_scratch(Graph *g, size_t bytes) { return step_alloc(g, bytes); }

bool graph_check_cuda(Graph *g, const char *op)
{
#ifdef HAVE_CUDA
    /* Only GPU graphs launch kernels; on a machine without a driver the query itself would fail. */
    if (graph_ok(g) && g->arena.device == DEVICE_CUDA) cuda_check_launch(op, &g->err);
#else
    (void)op;
#endif
    return graph_ok(g);
}

void *graph_workspace(Graph *g, size_t bytes)
{
    if (bytes <= g->workspace_bytes) return g->workspace;
    /* Freeing device memory waits for the kernels that may still use it. */
    device_free(g->workspace, g->arena.device);
    g->workspace = NULL;
    g->workspace_bytes = 0;
    if (device_alloc(&g->workspace, g->arena.device, bytes, &g->err)) return NULL;
    g->workspace_bytes = bytes;
    return g->workspace;
}

void *graph_host_scratch(Graph *g, size_t bytes) { return arena_alloc(&g->meta, bytes, &g->err); }

static Var *var_alloc_step(Graph *g)
{
    Var *v = arena_alloc(&g->meta, sizeof *v, &g->err);
    if (v) memset(v, 0, sizeof *v);
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

Var *var_new(Graph *g, int ndim, const int64_t *shape)
{
    Var *v = var_alloc_step(g);
    if (!v) return NULL;
    v->value = tensor_wrap(NULL, g->arena.device, ndim, shape);
    if (!(v->value.data = step_alloc(g, tensor_bytes(&v->value)))) return NULL;
    v->op = "value";
    return v;
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
        g->profile->open_t = profile_now_ms(g);
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
    Var *v = var_new(g, ndim, shape);
    if (!v) return NULL;
    v->op = op;
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

float *var_grad(Graph *g, Var *v)
{
    if (v->grad.data) return v->grad.data;
    v->grad = tensor_wrap(NULL, v->value.device, v->value.ndim, v->value.shape);
    v->grad.data = step_alloc(g, tensor_bytes(&v->value));
    if (v->grad.data && device_memset_zero(v->grad.data, v->value.device, tensor_bytes(&v->value), &g->err))
        v->grad.data = NULL;
    return v->grad.data;
}

static ErrorCode run_tape(Graph *g)
{
    profile_close_forward(g);
    for (size_t i = g->n_tape; i-- > 0;) {
        Var *v = g->tape[i];
        if (g->profile && v->grad.data && v->backward) {
            double t0 = profile_now_ms(g);
            v->backward(g, v);
            int k = profile_slot(g->profile, v->op);
            if (k >= 0) g->profile->backward_ms[k] += profile_now_ms(g) - t0;
            if (!graph_ok(g)) return g->err.code;
            continue;
        }
        if (v->grad.data && v->backward) v->backward(g, v);
        if (!graph_ok(g)) return g->err.code;
    }
    return ERR_OK;
}

ErrorCode graph_backward_with_grad(Graph *g, Var *y, const float *dy)
{
    if (!graph_ok(g)) return g->err.code;
    if (!y) return graph_fail(g, ERR_ARG, "backward: NULL output"), g->err.code;
    if (!y->requires_grad)
        return graph_fail(g, ERR_ARG, "backward: output does not depend on anything requiring grad"),
               g->err.code;
    float *seed = var_grad(g, y);
    if (!seed) return g->err.code;
    if (device_memcpy(seed, y->value.device, dy, DEVICE_CPU, tensor_bytes(&y->value), &g->err))
        return g->err.code;
    return run_tape(g);
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
