/* Context: the explicit home of everything process-wide an op may need (thread pool, later the
 * CUDA stream/cuBLAS handle and device allocator). Created once by an app or test and passed
 * down; there is no global mutable state. */
#ifndef TENSOR_CONTEXT_H
#define TENSOR_CONTEXT_H

#include <stdbool.h>

#include "tensor/error.h"
#include "tensor/threadpool.h"

struct Comm;

typedef struct Context {
    ThreadPool *pool;
    int nthreads;
    void *cuda; /* CudaState * when a GPU is in use, else NULL */
    /* Data-parallel training (tensor/comm.h): the job's processes, or NULL for one; with sync_bn, train-mode
     * BatchNorm takes its statistics over every rank's batch (the caller owns comm). */
    struct Comm *comm;
    bool sync_bn;
} Context;

/* nthreads <= 0: use all online CPUs. Returns NULL on failure. */
Context *context_create(int nthreads);
/* Adds the GPU (stream, cuBLAS handle); TF32 tensor cores only when allow_tf32. Fails with
 * ERR_DEVICE when the build has no CUDA or no device is present. */
ErrorCode context_enable_cuda(Context *ctx, bool allow_tf32, Error *err);
void context_destroy(Context *ctx);

/* The CUDA half of a Context, defined in cuda_kernels/context_cuda.cu; in builds without CUDA,
 * context.c's stand-ins fail with ERR_DEVICE (init) and do nothing (destroy). */
#ifdef __cplusplus
extern "C" {
#endif
ErrorCode cuda_context_init(Context *ctx, bool allow_tf32, Error *err);
void cuda_context_destroy(Context *ctx);
#ifdef __cplusplus
}
#endif

#endif
