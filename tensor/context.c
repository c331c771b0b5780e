#include "tensor/context.h"

#include <stdlib.h>
#include <unistd.h>

#ifndef HAVE_CUDA
ErrorCode cuda_context_init(Context *ctx, bool allow_tf32, Error *err)
{
    (void)ctx, (void)allow_tf32;
    return error_set(err, ERR_DEVICE, "this build has no CUDA support (rebuild with nvcc, CUDA=1)");
}
void cuda_context_destroy(Context *ctx) { (void)ctx; }
#endif

Context *context_create(int nthreads)
{
    if (nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }
    Context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->pool = threadpool_create(nthreads);
    if (!ctx->pool) {
        free(ctx);
        return NULL;
    }
    ctx->nthreads = threadpool_size(ctx->pool);
    return ctx;
}

ErrorCode context_enable_cuda(Context *ctx, bool allow_tf32, Error *err)
{
    return cuda_context_init(ctx, allow_tf32, err);
}

void context_destroy(Context *ctx)
{
    if (!ctx) return;
    cuda_context_destroy(ctx);
    threadpool_destroy(ctx->pool);
    free(ctx);
}
