// NCCL side of data-parallel training (tensor/nccl_comm.h). Compiled when the build has CUDA, MPI and
// NCCL; it has not run on a GPU in this repository's tests (no device was lent when it was written).
#include <cstdlib>
#include <nccl.h>

#include "cuda_kernels/cuda_common.h"

extern "C" {
#include "tensor/nccl_comm.h"
}

struct NcclComm {
    ncclComm_t comm;
};

extern "C" bool nccl_comm_available(void) { return true; }

extern "C" ErrorCode nccl_comm_select_device(int rank, Error *err)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        return error_set(err, ERR_DEVICE, "rank %d: no CUDA device", rank);
    }
    cudaError_t e = cudaSetDevice(rank % n);
    if (e != cudaSuccess) return error_set(err, ERR_DEVICE, "rank %d: cudaSetDevice(%d): %s", rank, rank % n, cudaGetErrorString(e));
    return ERR_OK;
}

extern "C" ErrorCode nccl_comm_create(NcclComm **out, Comm *c, Error *err)
{
    *out = NULL;
    ncclUniqueId id;
    if (comm_rank(c) == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) return error_set(err, ERR_DEVICE, "ncclGetUniqueId: %s", ncclGetErrorString(r));
    }
    if (comm_broadcast_bytes(c, &id, sizeof id, 0, "NCCL's id from rank 0", err)) return err->code;
    NcclComm *nc = (NcclComm *)calloc(1, sizeof *nc);
    if (!nc) return error_set(err, ERR_OOM, "out of memory");
    ncclResult_t r = ncclCommInitRank(&nc->comm, comm_size(c), id, comm_rank(c));
    if (r != ncclSuccess) {
        free(nc);
        return error_set(err, ERR_DEVICE, "rank %d: ncclCommInitRank: %s", comm_rank(c), ncclGetErrorString(r));
    }
    *out = nc;
    return ERR_OK;
}

extern "C" ErrorCode nccl_comm_allreduce_sum_f32(NcclComm *nc, float *dev, size_t n, Context *ctx, Error *err)
{
    if (!nc || n == 0) return ERR_OK;
    ncclResult_t r = ncclAllReduce(dev, dev, n, ncclFloat, ncclSum, nc->comm, stream_of(ctx));
    if (r != ncclSuccess) return error_set(err, ERR_DEVICE, "ncclAllReduce of %zu floats: %s", n, ncclGetErrorString(r));
    return ERR_OK;
}

extern "C" void nccl_comm_free(NcclComm *nc)
{
    if (!nc) return;
    ncclCommDestroy(nc->comm);
    free(nc);
}
