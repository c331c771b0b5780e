/* MemoryPlan: activation memory of a repeated inference step, reused between values whose lifetimes
 * do not overlap, instead of one fresh arena slot per value (at 640x480 the MobileNet forward
 * produces 47 MB of values, which no cache holds; only a fraction is live at any time).
 *
 * A step under a plan is first recorded: allocations come from the graph's arena as usual while
 * the plan notes each allocation's size and the last allocation made while an op that reads it was
 * running. Values no op reads (the step's outputs) stay live to the end. At the next graph_reset
 * the plan lays the allocations out (largest first, lowest offset free for the lifetime) in one
 * buffer; later steps with the same key replay that layout: allocation k gets offset k, checked
 * against the recorded size. The key names what decides the allocation sequence (the model and its
 * input shape); a step with another key records a new plan.
 *
 * A concatenation along a leading axis (one block per part) can be noted as well: when each part is
 * a whole allocation that nothing reads after the concatenation, the layout places the parts inside
 * the concatenation's own block, so a replayed step finds them already concatenated (the op then
 * copies nothing).
 *
 * The rule it relies on: once a later op has run, a value some op read is dead. Read a planned
 * step's intermediate values before the ops after them run; its outputs stay valid until reset.
 * Owned by the Graph (graph_plan_memory); internal to autograd/. */
#ifndef AUTOGRAD_MEMORY_PLAN_H
#define AUTOGRAD_MEMORY_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

enum { PLAN_CONCAT_MAX = 8 };

typedef struct {
    size_t bytes, offset;
    size_t last;   /* index of the last allocation made while a reader of this one ran */
    bool consumed; /* some op read it */
    void *recorded; /* its address in the recording step (to map op inputs to allocations) */
    size_t birth;  /* first allocation index it is live at: its own, or a placed-inside part's */
    size_t host;   /* the concatenation output it is placed inside (its own index if none) */
    size_t host_offset;
} PlannedAlloc;

typedef struct {
    size_t out;                     /* allocation index of the concatenation's output */
    int n;
    const void *part[PLAN_CONCAT_MAX]; /* recorded addresses of the parts */
    size_t bytes[PLAN_CONCAT_MAX];
} PlannedConcat;

typedef struct MemoryPlan {
    uint64_t key;
    Device device;
    bool ready;     /* laid out: steps with this key replay */
    bool active;    /* the current step runs under this plan (recording or replaying) */
    PlannedAlloc *allocs;
    size_t n, cap;
    size_t next;    /* replay cursor */
    void *base;     /* the replay buffer, `total` bytes on `device` */
    size_t total;
    const void **pending; /* data pointers read by the op running now (recording) */
    size_t n_pending, cap_pending;
    PlannedConcat *concats;
    size_t n_concats, cap_concats;
} MemoryPlan;

void memory_plan_free(MemoryPlan *p);
/* Recording: an allocation at `ptr`; a new op starting (closing the reads of the previous one); one
 * of its inputs' data. False when out of memory. */
bool memory_plan_record_alloc(MemoryPlan *p, void *ptr, size_t bytes);
void memory_plan_record_op(MemoryPlan *p);
bool memory_plan_record_read(MemoryPlan *p, const void *data);
/* A concatenation just allocated at `out` whose parts, in order, start at parts[i] with bytes[i]
 * bytes each and make up its block end to end. False when out of memory. */
bool memory_plan_record_concat(MemoryPlan *p, const void *out, int n, const void *const *parts, const size_t *bytes);
/* Ends the recording: lays the allocations out and allocates the replay buffer. */
ErrorCode memory_plan_finish(MemoryPlan *p, Error *err);
/* Replay: the next allocation, NULL (with err) if it is not the recorded one. */
void *memory_plan_next(MemoryPlan *p, size_t bytes, Error *err);

#endif
