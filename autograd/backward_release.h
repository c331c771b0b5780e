/* BackwardRelease: when the backward may free each of the step's allocations (graph.h). Built as the
 * backward starts, from the tape, the step's allocation log and what each op's backward reads
 * (graph_op_saves): an allocation is dead once the last backward that reads it has run (the reader
 * lowest on the tape), or at once when no backward reads it. Never freed: the caller's allocations
 * (no owner), values of ops that are not on the tape, the root's value and the memory holding values
 * marked with graph_keep (a view's: the allocation it lies in). A gradient of a node on the tape dies with its node's backward (graph.c frees it).
 * Internal to autograd/. */
#ifndef AUTOGRAD_BACKWARD_RELEASE_H
#define AUTOGRAD_BACKWARD_RELEASE_H

#include "autograd/graph.h"

typedef struct BackwardRelease {
    int32_t *first;  /* per point (tape index, or n_tape: before the backward): first allocation to free */
    int32_t *next;   /* per allocation: the next one freed at the same point, -1 ends the list */
    size_t *order;   /* scratch: allocations by address */
    size_t cap_points, cap_allocs, cap_order;
    StepAlloc *temps; /* scratch allocated by the backward running now, freed when it returns */
    size_t n_temps, cap_temps;
} BackwardRelease;

/* Plans the frees of g's step for a backward from root. */
ErrorCode backward_release_build(Graph *g, const Var *root);
/* Frees what dies at point (a tape index, or g->n_tape for the start of the backward). */
void backward_release_at(Graph *g, size_t point);
void backward_release_destroy(BackwardRelease *r);

#endif
