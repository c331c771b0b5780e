/* Export trace of a forward pass: with tracing on (graph_trace_begin), every op output made is recorded
 * in order with its op name (Var.op), its inputs and the attributes the op states (graph_trace_attrs),
 * so that a writer (nn/onnx_export.h) can serialise the computation as standard operators. Inputs that
 * no traced op made are the caller's inputs or parameters. Entries point at the step's Vars: valid until
 * graph_reset. Attributes per op (ints, then the one float):
 *   conv2d, conv2d_act: stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups; act (< 0 none, else
 *     leaky slope, 0 = ReLU)
 *   add, add_act: act as above;  relu, leaky_relu: slope;  scale: the factor
 *   concat: axis;  permute: the permutation;  max_pool2d: kernel, stride, padding
 *   batchnorm2d: training (0/1); eps
 *   reshape, upsample_nearest, add_upsampled, softmax (last axis), global_avg_pool, linear: none (the
 *     output's shape says the rest). */
#ifndef AUTOGRAD_GRAPH_TRACE_H
#define AUTOGRAD_GRAPH_TRACE_H

#include "autograd/graph.h"

enum { TRACE_MAX_INTS = 8 };

typedef struct {
    const char *op;
    const Var *out;
    const Var **inputs; /* n_inputs, in the op's order */
    int n_inputs;
    int64_t ints[TRACE_MAX_INTS];
    int n_ints;
    float f;
} TraceEntry;

typedef struct GraphTrace {
    TraceEntry *entries;
    int n, cap;
} GraphTrace;

/* Starts (or restarts) recording the ops made from now on. */
ErrorCode graph_trace_begin(Graph *g);
/* What was recorded (NULL when tracing is off). */
const GraphTrace *graph_trace(const Graph *g);
/* Stops recording and frees the trace (graph_destroy does too). */
void graph_trace_end(Graph *g);
/* Called by ops right after making y: its attributes (see the top of the file). A no-op without tracing. */
void graph_trace_attrs(Graph *g, const Var *y, const int64_t *ints, int n_ints, float f);

/* For graph_op_output: records a new op output. */
void graph_trace_record(Graph *g, const char *op, Var *const *inputs, int n_inputs, const Var *out);

#endif
