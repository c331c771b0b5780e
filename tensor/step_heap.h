/* StepHeap: the memory of one step's tensors on one device, with free (the autograd graph frees a
 * value as soon as the last op that reads it is done, so a training step holds what is live, not
 * everything it ever made). Blocks of device memory are cut into segments; the bookkeeping lives on
 * the host, so CUDA memory works the same (kernels of one stream run in order: memory freed here may be
 * handed out again at once). An allocation takes the lowest free segment that fits (first fit); a free
 * segment merges with free neighbours. step_heap_reset frees everything at once; a step that needed
 * several blocks is given, from the next step on, one block as large as their high-water marks
 * together, so a repeated step finds room in it and allocates no device memory.
 * Ownership: the heap owns its blocks; memory it returns is valid until freed, reset or destroy. */
#ifndef TENSOR_STEP_HEAP_H
#define TENSOR_STEP_HEAP_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor/tensor.h"

typedef struct {
    size_t offset, bytes;
    bool used;
} HeapSegment;

typedef struct {
    char *base;
    size_t cap, high; /* high: the largest end offset handed out since the last reset */
    HeapSegment *segs; /* ordered by offset, covering [0, cap) */
    size_t n_segs, cap_segs;
} HeapBlock;

typedef struct {
    Device device;
    HeapBlock *blocks;
    int n_blocks;
    size_t first_block; /* bytes of the first block */
    size_t live, peak;  /* bytes handed out and not freed now; the most at once since init */
} StepHeap;

void step_heap_init(StepHeap *h, Device dev, size_t first_block_bytes);
void step_heap_destroy(StepHeap *h);
/* Frees every allocation (and merges the blocks, see above). */
void step_heap_reset(StepHeap *h);
/* 64-byte aligned, uninitialised; NULL (and err set) when out of memory. */
void *step_heap_alloc(StepHeap *h, size_t bytes, Error *err);
/* Frees an allocation of this heap (p as returned, not a pointer inside it); NULL is ignored. */
void step_heap_free(StepHeap *h, void *p);
/* True when p is the start of an allocation of this heap made since the last reset and not freed. */
bool step_heap_owns(const StepHeap *h, const void *p);

#endif
