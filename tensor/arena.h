/* Arena: bump allocator for everything a training/inference step creates (activations, their
 * gradients, scratch). Allocation is a pointer bump; arena_reset frees the whole step at once.
 * When a step outgrows the current block a new block is chained (pointers stay valid); on reset
 * the chain is replaced by one block of the peak size, so steady-state steps allocate nothing.
 * Ownership: the arena owns its blocks; memory it returns is valid until reset/destroy. */
#ifndef TENSOR_ARENA_H
#define TENSOR_ARENA_H

#include <stddef.h>

#include "tensor/tensor.h"

typedef struct ArenaBlock ArenaBlock;

typedef struct {
    Device device;
    ArenaBlock *head;    /* current block (newest) */
    size_t used_total;   /* bytes handed out since the last reset, over all blocks */
    size_t peak;         /* largest used_total seen */
} Arena;

void arena_init(Arena *a, Device dev, size_t initial_bytes);
void arena_destroy(Arena *a);
void arena_reset(Arena *a);
/* 64-byte aligned, uninitialised; NULL (and err set) on out of memory. */
void *arena_alloc(Arena *a, size_t bytes, Error *err);
/* Host-side convenience (CPU arenas): zero-filled. */
void *arena_calloc(Arena *a, size_t bytes, Error *err);
/* A contiguous tensor whose storage lives in the arena (not zeroed). */
ErrorCode arena_tensor(Arena *a, Tensor *t, int ndim, const int64_t *shape, Error *err);

#endif
