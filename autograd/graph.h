/* Reverse-mode autograd.
 *
 * Var: a tensor value plus (optionally) its gradient and the op that made it. Two kinds:
 *  - parameters (var_param_new): value and grad owned by the Var, on the heap, alive across steps;
 *    gradients accumulate into grad until var_zero_grad;
 *  - step values (inputs and op outputs): Var in the Graph's host arena, value and grad in its step
 *    heap; all die at graph_reset, and the backward frees each value and gradient of an op's output as
 *    soon as no backward still to run reads it (what an op's backward reads: graph_op_saves). The
 *    caller may read, after the backward, the loss it started from, the values it made itself
 *    (var_new, var_from_tensor), values marked with graph_keep, and the gradients of values that
 *    are not op outputs (inputs requiring grad); the rest of the step is gone.
 * Graph: the explicit per-step context. Ops append the Vars they create to its tape when some input
 * requires a gradient and grad mode is on; graph_backward walks the tape in reverse, each node
 * adding its contribution into its inputs' grads (so a value used twice receives both).
 * Errors are sticky: the first failing op records the error in the graph and returns NULL; every op
 * given a NULL input returns NULL, so a forward pass is written straight-line and checked once. */
#ifndef AUTOGRAD_GRAPH_H
#define AUTOGRAD_GRAPH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/arena.h"
#include "tensor/context.h"
#include "tensor/step_heap.h"
#include "tensor/tensor.h"

typedef struct Var Var;
typedef struct Graph Graph;

/* Adds d(loss)/d(inputs) given d(loss)/d(self) = self->grad. */
typedef void (*VarBackwardFn)(Graph *g, Var *self);
/* Writes v's value again, into dst (v's shape), from what its op keeps; the same floats it first made. */
typedef void (*VarRecomputeFn)(Graph *g, const Var *v, float *dst);

struct Var {
    Tensor value;
    Tensor grad;          /* data == NULL until a gradient exists */
    bool requires_grad;
    bool is_param;
    Var **inputs;         /* arena array of n_inputs */
    int n_inputs;
    VarBackwardFn backward;
    void *saved;          /* op-specific state for backward, in the arena */
    const char *op;       /* op name, for messages */
    uint32_t saves;       /* what the backward reads (graph_op_saves) */
    bool keep;            /* graph_keep: the value outlives the backward */
    int32_t tape_index;   /* position on the tape, -1 when not on it */
    VarRecomputeFn recompute; /* NULL, or how its op makes the value again (graph_saved_value) */
    bool reads_recomputed;    /* this op's backward reads its inputs through graph_saved_value */
    bool released;            /* graph_done_with freed the value (value.data is NULL) */
    int32_t pending_uses;     /* during a backward: nodes of the tape still to run (the running one included) that read it */
};

/* One allocation of step memory made outside the backward, and the op it belongs to: the op whose
 * output it is, or that was being made when it was allocated (its scratch); NULL: made by the caller. */
typedef struct {
    char *ptr;
    size_t bytes;
    Var *owner;
} StepAlloc;

struct Graph {
    Context *ctx;
    StepHeap heap; /* tensor data of the step, on the graph's device */
    Arena meta;    /* Var structs and other host-side bookkeeping of the step */
    StepAlloc *allocs; /* the step's allocations made before its backward, in order */
    size_t n_allocs, cap_allocs;
    Var *current_op;   /* the op output made last (owner of the scratch allocated now) */
    struct BackwardRelease *release; /* during the backward: what to free after each node */
    bool in_backward, backward_done;
    size_t saved_peak, backward_peak, backward_live; /* graph_memory */
    Var **tape;
    size_t n_tape, cap_tape;
    bool grad_enabled;
    Error err;
    void *workspace;        /* one op's temporary buffer (im2col), reused by every op */
    size_t workspace_bytes;
    struct GraphProfile *profile; /* NULL unless graph_enable_profile */
    struct MemoryPlan *plan;      /* NULL unless graph_plan_memory */
    struct GraphTrace *trace;     /* NULL unless graph_trace_begin (autograd/graph_trace.h) */
    /* graph_on_param_grad_ready */
    void (*param_grad_ready)(void *ctx, Var *param);
    void *param_grad_ctx;
};

/* Per-op timing (benchmarks): with profiling on, the device is synchronised around every op, and
 * time is summed per op name, separately for forward and backward; by_layer sums per op name and
 * layer shape (input channels, output channels, height, width) instead. Slows the step down. */
void graph_enable_profile(Graph *g, bool by_layer);
/* Ends the profiled time of the forward op still running (each op's time otherwise runs until the next
 * op starts, a backward runs or the graph is reset): call it where a forward's last op is done. */
void graph_profile_end_forward(Graph *g);
/* With profiling on, what the op running now (forward, or the backward running now) did: its kind
 * (the kernel family, e.g. "depthwise", shown beside the op name; NULL keeps the name alone) and its
 * work in FLOPs and bytes moved (either may be 0), for the rates in the table. A no-op otherwise. */
void graph_profile_note(Graph *g, const char *kind, double flops, double bytes);
/* Prints per (op, kind): calls, forward and backward ms with the noted GFLOP/s (or GB/s), sorted by
 * total, per profiled step (divides by steps). An op that notes nothing is counted as moving its
 * tensors once (forward: inputs and output; backward: the output's gradient, and each input's gradient
 * read and written), the least traffic it can have. */
void graph_print_profile(const Graph *g, FILE *out, int steps);

/* Runs the step that follows (call it after graph_reset) under the memory plan of `key`: the first
 * step with a key records which values are live when, later ones reuse memory between values that
 * are never live together (autograd/memory_plan.h). For repeated inference steps whose allocations
 * depend only on the key (the model and the input shape); intermediate values die as soon as a
 * later op has read them, so read only the step's outputs afterwards. */
void graph_plan_memory(Graph *g, uint64_t key);
/* Notes, while a plan records, that y (just made) concatenates `parts` end to end in its memory, so
 * the plan may place them inside y (autograd/memory_plan.h); a no-op otherwise. */
void graph_plan_concat(Graph *g, const Var *y, Var *const *parts, int n);

/* Bytes of step memory: the most live at once, the part of it live when the backward started (the
 * values the backward reads: saved activations), the most that the backward's gradients and scratch
 * held at once, and the op workspace. Peaks over the graph's life. */
typedef struct {
    size_t step_peak, saved_peak, backward_peak, workspace;
} GraphMemory;
GraphMemory graph_memory(const Graph *g);

ErrorCode graph_init(Graph *g, Context *ctx, Device dev, Error *err);
void graph_destroy(Graph *g);
/* Frees every step value (activations, their grads, the tape); parameters are untouched. */
void graph_reset(Graph *g);
/* Turns recording off (inference) or on; returns the previous setting. */
bool graph_set_grad_enabled(Graph *g, bool enabled);
bool graph_ok(const Graph *g);

/* During every backward from now on, fn(ctx, p) is called for each parameter p as soon as its gradient
 * for this step is complete (the last node reading p has run), in the order the backward finishes them,
 * so a caller can start sending gradients while the rest of the backward runs (data-parallel training).
 * Parameters this step did not use are not reported. fn NULL: no calls. */
void graph_on_param_grad_ready(Graph *g, void (*fn)(void *ctx, Var *param), void *ctx);
/* Seeds d(loss)/d(loss) = 1 (loss must have one element) and runs the tape backwards. */
ErrorCode graph_backward(Graph *g, Var *loss);
/* Same from any output y with a given seed gradient dy (host array of y's numel, copied). */
ErrorCode graph_backward_with_grad(Graph *g, Var *y, const float *dy);

/* Declares that no op made from now on reads v (an op's output) in the forward. If no backward recorded so
 * far reads v either, or v can be recomputed (v->recompute) and every backward that reads it reads it
 * through graph_saved_value, its memory is freed now, instead of when the backward starts: a value only
 * the forward needed (a pooling's input, the parts of a concatenation), or one its op can make again
 * from what it keeps anyway (conv_bn_act's ReLU output, from its input z), whose lifetime the graph
 * cannot know until the forward ends. Otherwise (and for the caller's own values, or under a memory
 * plan) it does nothing. */
void graph_done_with(Graph *g, Var *v);
/* The value of v (an input of the backward running now) as that backward reads it: v->value.data, or
 * when graph_done_with freed it, the value made again into scratch of this backward. NULL on failure.
 * Ops that read their inputs through it set reads_recomputed on their output. */
const float *graph_saved_value(Graph *g, Var *v);

/* Marks v's value as read after the backward (e.g. a loss part the caller prints): it is not freed
 * before graph_reset. */
void graph_keep(Var *v);

/* Parameters. */
Var *var_param_new(Device dev, int ndim, const int64_t *shape, Error *err);
void var_param_free(Var *v);
void var_zero_grad(Var *v);

/* A step value wrapping t (borrowed: the caller keeps t alive for the step). */
Var *var_from_tensor(Graph *g, const Tensor *t, bool requires_grad);
/* A new step value of the given shape, uninitialised, requiring no grad. */
Var *var_new(Graph *g, int ndim, const int64_t *shape);

/* For op implementations. */
/* Creates the output Var of an op over inputs[0..n), recording it when a grad is needed. */
Var *graph_op_output(Graph *g, const char *op, Var *const *inputs, int n_inputs, int ndim,
                     const int64_t *shape, VarBackwardFn backward);
/* What the backward of op output v reads besides gradients: GRAPH_SAVES_INPUT(i) for input i's value,
 * GRAPH_SAVES_OUTPUT for v's own value. graph_op_output assumes everything (always right); an op
 * whose backward reads less says so after creating v, and those values are freed earlier. Scratch
 * allocated while an op is made (graph_scratch) is assumed read by its backward. */
#define GRAPH_SAVES_INPUT(i) (1u << (i))
#define GRAPH_SAVES_OUTPUT (1u << 31)
#define GRAPH_SAVES_ALL 0xffffffffu
static inline void graph_op_saves(Var *v, uint32_t what) { v->saves = what; }
/* Whether op output u's backward reads the value of its input k (past 31 inputs: assumed). */
static inline bool var_backward_reads_input(const Var *u, int k) { return k >= 31 || (u->saves & GRAPH_SAVES_INPUT(k)); }
/* During a backward: whether the node running now is the last one on the tape that reads x (reading it
 * once), so that x's gradient is complete when this node's backward has added its part. */
bool graph_last_reader(const Var *x);
/* Gradient buffer of v, zero-filled on first use (step heap for step values). NULL on failure. */
float *var_grad(Graph *g, Var *v);
/* Gradient buffer of v for a kernel that can write it whole: *accumulate false when nothing has been added
 * to it yet (a fresh buffer, not zero-filled: the caller must write every element), true when the
 * caller must add to what it holds. NULL on failure. */
float *var_grad_for_write(Graph *g, Var *v, bool *accumulate);
/* Adds src (host memory, v's element count) into v's gradient on the CPU: a gradient nothing has been
 * added to yet is a copy of src, without the zero-fill and the pass adding to it. False on failure. */
bool var_grad_add_host(Graph *g, Var *v, const float *src);
/* From the backward of node y: adds y's gradient (host, v's element count) into v's, as var_grad_add_host,
 * except that where v has none yet and y's came from the step's memory, y's buffer itself becomes v's (y's
 * gradient is dead once its backward returns), so nothing is copied. y's gradient must not be read after. */
bool var_grad_pass_host(Graph *g, Var *v, Var *y);
/* Scratch memory for the step: on the graph's device (while an op is made: until that op's backward
 * is done; during a backward: until the running node's backward returns), and on the host. */
void *graph_scratch(Graph *g, size_t bytes);
void *graph_host_scratch(Graph *g, size_t bytes);
/* Temporary memory for the duration of one op call (kernels of one stream run in order, so the
 * next op may reuse it): grows to the largest request and is kept across steps. */
void *graph_workspace(Graph *g, size_t bytes);
/* True when v's data lives on the GPU (ops then run their CUDA twin). */
static inline bool var_on_cuda(const Var *v) { return v->value.device == DEVICE_CUDA; }
/* After CUDA launches: turns a launch error into the graph's error; returns graph_ok. */
bool graph_check_cuda(Graph *g, const char *op);
/* Records an error in g (first one wins) and returns NULL, for `return graph_fail(...)`. */
Var *graph_fail(Graph *g, ErrorCode code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
