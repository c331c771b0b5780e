/* Context: the explicit home of everything process-wide an op may need (thread pool, later the
 * CUDA stream/cuBLAS handle and device allocator). Created once by an app or test and passed
 * down; there is no global mutable state. */
#ifndef TENSOR_CONTEXT_H
#define TENSOR_CONTEXT_H

#include "tensor/threadpool.h"

typedef struct Context {
    ThreadPool *pool;
    int nthreads;
    void *cuda; /* CudaState * when a GPU is in use, else NULL */
} Context;

/* nthreads <= 0: use all online CPUs. Returns NULL on failure. */
Context *context_create(int nthreads);
void context_destroy(Context *ctx);

#endif
