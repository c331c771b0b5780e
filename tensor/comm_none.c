/* Comm in builds without MPI: one rank, every collective a no-op (tensor/comm.h). */
#include "tensor/comm.h"

#include <stdio.h>
#include <stdlib.h>

struct Comm {
    int unused;
};

bool comm_available(void) { return false; }

ErrorCode comm_init(Comm **c, bool distributed, double timeout_s, Error *err)
{
    (void)timeout_s;
    *c = NULL;
    if (distributed)
        return error_set(err, ERR_UNSUPPORTED,
                         "this build has no MPI: install libopenmpi-dev and openmpi-bin (make deps) and rebuild to "
                         "train distributed");
    *c = calloc(1, sizeof **c);
    return *c ? ERR_OK : error_set(err, ERR_OOM, "out of memory");
}

void comm_finalize(Comm *c) { free(c); }
int comm_rank(const Comm *c) { (void)c; return 0; }
int comm_size(const Comm *c) { (void)c; return 1; }

ErrorCode comm_allreduce_sum_f32(Comm *c, float *buf, size_t n, const char *what, Error *err)
{
    (void)c, (void)buf, (void)n, (void)what, (void)err;
    return ERR_OK;
}

ErrorCode comm_allreduce_sum_f64(Comm *c, double *buf, size_t n, const char *what, Error *err)
{
    (void)c, (void)buf, (void)n, (void)what, (void)err;
    return ERR_OK;
}

ErrorCode comm_allreduce_max_f32(Comm *c, float *buf, size_t n, const char *what, Error *err)
{
    (void)c, (void)buf, (void)n, (void)what, (void)err;
    return ERR_OK;
}

ErrorCode comm_broadcast_f32(Comm *c, float *buf, size_t n, int root, const char *what, Error *err)
{
    (void)c, (void)buf, (void)n, (void)root, (void)what, (void)err;
    return ERR_OK;
}

ErrorCode comm_broadcast_bytes(Comm *c, void *buf, size_t n, int root, const char *what, Error *err)
{
    (void)c, (void)buf, (void)n, (void)root, (void)what, (void)err;
    return ERR_OK;
}

ErrorCode comm_barrier(Comm *c, const char *what, Error *err)
{
    (void)c, (void)what, (void)err;
    return ERR_OK;
}

ErrorCode comm_allreduce_sum_f32_start(Comm *c, float *buf, size_t n, CommRequest **req, Error *err)
{
    (void)c, (void)buf, (void)n, (void)err;
    *req = NULL;
    return ERR_OK;
}

void comm_progress(Comm *c) { (void)c; }

ErrorCode comm_wait(Comm *c, CommRequest *req, const char *what, Error *err)
{
    (void)c, (void)req, (void)what, (void)err;
    return ERR_OK;
}

void comm_abort(Comm *c, const char *msg)
{
    (void)c;
    fprintf(stderr, "rank 0: %s\n", msg);
    exit(1);
}
