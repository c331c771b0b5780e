#include "tensor/context.h"

#include <stdlib.h>
#include <unistd.h>

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

void context_destroy(Context *ctx)
{
    if (!ctx) return;
    threadpool_destroy(ctx->pool);
    free(ctx);
}
