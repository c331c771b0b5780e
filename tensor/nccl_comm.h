/* GPU gradient sums over the ranks of a job on NCCL (cuda_kernels/nccl_comm.cu, built when the build has
 * CUDA, MPI and NCCL; tensor/nccl_comm_none.c otherwise, which answers ERR_UNSUPPORTED). One rank per GPU:
 * rank r drives device r mod (devices of its machine). The MPI job (tensor/comm.h) hands NCCL its id. */
#ifndef TENSOR_NCCL_COMM_H
#define TENSOR_NCCL_COMM_H

#include "tensor/comm.h"
#include "tensor/context.h"

typedef struct NcclComm NcclComm;

bool nccl_comm_available(void);
/* Makes rank's device the current one: before the Context's CUDA stream is created. */
ErrorCode nccl_comm_select_device(int rank, Error *err);
/* Joins the ranks of c in one NCCL communicator (rank 0 makes the id and broadcasts it). */
ErrorCode nccl_comm_create(NcclComm **nc, Comm *c, Error *err);
/* In-place sum of n floats of device memory over the ranks, queued on ctx's stream (kernels before it
 * are finished first, kernels after it wait for it). */
ErrorCode nccl_comm_allreduce_sum_f32(NcclComm *nc, float *dev, size_t n, Context *ctx, Error *err);
void nccl_comm_free(NcclComm *nc);

#endif
