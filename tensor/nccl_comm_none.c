/* nccl_comm in builds without CUDA, MPI or NCCL (tensor/nccl_comm.h). */
#include "tensor/nccl_comm.h"

static ErrorCode unsupported(Error *err)
{
    return error_set(err, ERR_UNSUPPORTED,
                     "this build has no NCCL (it needs CUDA, MPI and NCCL's nccl.h at build time) to train on several GPUs");
}

bool nccl_comm_available(void) { return false; }

ErrorCode nccl_comm_select_device(int rank, Error *err)
{
    (void)rank;
    return unsupported(err);
}

ErrorCode nccl_comm_create(NcclComm **nc, Comm *c, Error *err)
{
    (void)c;
    *nc = NULL;
    return unsupported(err);
}

ErrorCode nccl_comm_allreduce_sum_f32(NcclComm *nc, float *dev, size_t n, Context *ctx, Error *err)
{
    (void)nc, (void)dev, (void)n, (void)ctx;
    return unsupported(err);
}

void nccl_comm_free(NcclComm *nc) { (void)nc; }
