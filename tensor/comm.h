/* Comm: the processes of one data-parallel job (ranks 0 .. size-1) and the collectives that training
 * needs, on MPI (Open MPI from Debian; tensor/comm_mpi.c). A build without MPI (make MPI=0, or no mpicc)
 * has the same API with one rank (tensor/comm_none.c), and says so when asked to run distributed.
 * Every rank calls the collectives in the same order. Sums are float sums in MPI's reduction order,
 * which is the same on every rank, so every rank gets the same bits.
 * Faults: every wait is bounded by the timeout given to comm_init; a collective that does not complete
 * in time (a rank hung or gone) ends the whole job with a message naming this rank and the operation
 * (MPI_Abort), so a job never hangs silently. A rank that dies is seen by mpirun, which ends the others. */
#ifndef TENSOR_COMM_H
#define TENSOR_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor/error.h"

typedef struct Comm Comm;
typedef struct CommRequest CommRequest;

/* Whether this build has MPI. */
bool comm_available(void);
/* The processes an MPI launcher started with this one (mpirun sets OMPI_COMM_WORLD_SIZE, other launchers
 * PMI_SIZE), or 0 when no launcher started it: training goes distributed without being asked when > 1. */
int comm_launched_ranks(void);
/* distributed: join the MPI job (MPI_Init; ERR_UNSUPPORTED in a build without MPI); else one rank.
 * timeout_s bounds every wait (> 0). */
ErrorCode comm_init(Comm **c, bool distributed, double timeout_s, Error *err);
/* Leaves the job (MPI_Finalize) and frees c. */
void comm_finalize(Comm *c);
int comm_rank(const Comm *c);
int comm_size(const Comm *c);

/* In-place sums over all ranks (blocking, bounded by the timeout). */
ErrorCode comm_allreduce_sum_f32(Comm *c, float *buf, size_t n, const char *what, Error *err);
ErrorCode comm_allreduce_sum_f64(Comm *c, double *buf, size_t n, const char *what, Error *err);
/* In-place maxima over all ranks. */
ErrorCode comm_allreduce_max_f32(Comm *c, float *buf, size_t n, const char *what, Error *err);
/* buf of root to every rank. */
ErrorCode comm_broadcast_f32(Comm *c, float *buf, size_t n, int root, const char *what, Error *err);
ErrorCode comm_broadcast_bytes(Comm *c, void *buf, size_t n, int root, const char *what, Error *err);
ErrorCode comm_barrier(Comm *c, const char *what, Error *err);

/* A sum started now and finished by comm_wait (buf must stay untouched until then), so that it runs
 * while the caller computes; comm_progress lets MPI move it along. With one rank it completes at once. */
ErrorCode comm_allreduce_sum_f32_start(Comm *c, float *buf, size_t n, CommRequest **req, Error *err);
void comm_progress(Comm *c);
/* Waits for req (bounded by the timeout) and frees it. */
ErrorCode comm_wait(Comm *c, CommRequest *req, const char *what, Error *err);

/* Ends every rank of the job now, after printing msg (with this rank's number) on standard error. */
void comm_abort(Comm *c, const char *msg);

#endif
