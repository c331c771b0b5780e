/* Comm on MPI (tensor/comm.h). Every collective is MPI's non-blocking form, finished by polling
 * MPI_Test until it completes or the timeout passes: the bound on every wait that a blocking call could
 * not give. Only the calling thread uses MPI (MPI_THREAD_FUNNELED): the compute pool never does. */
#include "tensor/comm.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct Comm {
    int rank, size;
    bool mpi;       /* joined MPI (else a single-rank stand-in) */
    double timeout; /* seconds */
};

struct CommRequest {
    MPI_Request r;
};

bool comm_available(void) { return true; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

ErrorCode comm_init(Comm **c, bool distributed, double timeout_s, Error *err)
{
    *c = calloc(1, sizeof **c);
    if (!*c) return error_set(err, ERR_OOM, "out of memory");
    (*c)->size = 1;
    (*c)->timeout = timeout_s > 0 ? timeout_s : 600;
    if (!distributed) return ERR_OK;
    int provided = 0, inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        free(*c);
        *c = NULL;
        return error_set(err, ERR_DEVICE, "MPI_Init failed");
    }
    /* errors come back as codes (then this rank aborts the job with a message) instead of MPI's own abort */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &(*c)->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &(*c)->size);
    (*c)->mpi = true;
    return ERR_OK;
}

void comm_finalize(Comm *c)
{
    if (!c) return;
    if (c->mpi) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
    }
    free(c);
}

int comm_rank(const Comm *c) { return c ? c->rank : 0; }
int comm_size(const Comm *c) { return c ? c->size : 1; }

void comm_abort(Comm *c, const char *msg)
{
    fprintf(stderr, "rank %d: %s\n", comm_rank(c), msg);
    fflush(stderr);
    if (c && c->mpi) MPI_Abort(MPI_COMM_WORLD, 3);
    exit(3);
}

/* Polls r until it completes; past the timeout the job ends (see tensor/comm.h). */
static ErrorCode finish(Comm *c, MPI_Request *r, const char *what, Error *err)
{
    double t0 = now();
    long spins = 0;
    for (;;) {
        int done = 0;
        int rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            char msg[MPI_MAX_ERROR_STRING + 128], text[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, text, &len);
            snprintf(msg, sizeof msg, "%s failed: %s", what, text);
            error_set(err, ERR_DEVICE, "rank %d: %s", c->rank, msg);
            comm_abort(c, msg);
        }
        if (done) return ERR_OK;
        /* spin a little (collectives of a step take microseconds to milliseconds), then yield the core */
        if (++spins > 1000) {
            struct timespec ts = {0, spins > 100000 ? 1000000 : 20000};
            nanosleep(&ts, NULL);
        }
        if ((spins & 255) == 0 && now() - t0 > c->timeout) {
            char msg[512];
            snprintf(msg, sizeof msg,
                     "%s did not complete in %.0f s: another rank hung or died; ending the job (the last checkpoint "
                     "written stays)",
                     what, c->timeout);
            error_set(err, ERR_DEVICE, "rank %d: %s", c->rank, msg);
            comm_abort(c, msg);
        }
    }
}

static ErrorCode allreduce(Comm *c, void *buf, size_t n, MPI_Datatype type, MPI_Op op, const char *what, Error *err)
{
    if (!c || !c->mpi || c->size == 1 || n == 0) return ERR_OK;
    if (n > (size_t)1 << 30) return error_set(err, ERR_ARG, "%s: %zu values in one collective", what, n);
    MPI_Request r;
    if (MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, type, op, MPI_COMM_WORLD, &r) != MPI_SUCCESS)
        return error_set(err, ERR_DEVICE, "rank %d: %s: MPI_Iallreduce failed", c->rank, what);
    return finish(c, &r, what, err);
}

ErrorCode comm_allreduce_sum_f32(Comm *c, float *buf, size_t n, const char *what, Error *err)
{
    return allreduce(c, buf, n, MPI_FLOAT, MPI_SUM, what, err);
}

ErrorCode comm_allreduce_max_f32(Comm *c, float *buf, size_t n, const char *what, Error *err)
{
    return allreduce(c, buf, n, MPI_FLOAT, MPI_MAX, what, err);
}

ErrorCode comm_allreduce_sum_f64(Comm *c, double *buf, size_t n, const char *what, Error *err)
{
    return allreduce(c, buf, n, MPI_DOUBLE, MPI_SUM, what, err);
}

ErrorCode comm_broadcast_bytes(Comm *c, void *buf, size_t n, int root, const char *what, Error *err)
{
    if (!c || !c->mpi || c->size == 1 || n == 0) return ERR_OK;
    if (n > (size_t)1 << 30) return error_set(err, ERR_ARG, "%s: %zu bytes in one broadcast", what, n);
    MPI_Request r;
    if (MPI_Ibcast(buf, (int)n, MPI_BYTE, root, MPI_COMM_WORLD, &r) != MPI_SUCCESS)
        return error_set(err, ERR_DEVICE, "rank %d: %s: MPI_Ibcast failed", c->rank, what);
    return finish(c, &r, what, err);
}

ErrorCode comm_broadcast_f32(Comm *c, float *buf, size_t n, int root, const char *what, Error *err)
{
    return comm_broadcast_bytes(c, buf, n * sizeof(float), root, what, err);
}

ErrorCode comm_barrier(Comm *c, const char *what, Error *err)
{
    if (!c || !c->mpi || c->size == 1) return ERR_OK;
    MPI_Request r;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &r) != MPI_SUCCESS)
        return error_set(err, ERR_DEVICE, "rank %d: %s: MPI_Ibarrier failed", c->rank, what);
    return finish(c, &r, what, err);
}

ErrorCode comm_allreduce_sum_f32_start(Comm *c, float *buf, size_t n, CommRequest **req, Error *err)
{
    *req = NULL;
    if (!c || !c->mpi || c->size == 1 || n == 0) return ERR_OK;
    CommRequest *q = malloc(sizeof *q);
    if (!q) return error_set(err, ERR_OOM, "out of memory");
    if (MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &q->r) != MPI_SUCCESS) {
        free(q);
        return error_set(err, ERR_DEVICE, "rank %d: MPI_Iallreduce of %zu gradients failed", c->rank, n);
    }
    *req = q;
    return ERR_OK;
}

void comm_progress(Comm *c)
{
    if (!c || !c->mpi || c->size == 1) return;
    int flag;
    /* any MPI call moves the library's non-blocking collectives along */
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
}

ErrorCode comm_wait(Comm *c, CommRequest *req, const char *what, Error *err)
{
    if (!req) return ERR_OK;
    ErrorCode rc = finish(c, &req->r, what, err);
    free(req);
    return rc;
}
