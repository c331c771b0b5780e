/* GradSync: data-parallel gradients. Every rank runs the backward on its own batch; GradSync sums the
 * parameter gradients over the ranks (tensor/comm.h) in buckets of about bucket_bytes, each bucket's sum
 * started as soon as the backward has finished every parameter in it (graph_on_param_grad_ready), so the
 * sums run while the rest of the backward computes, as PyTorch's DistributedDataParallel does. Buckets
 * hold parameters in reverse registration order (the order the backward finishes them: heads first).
 * The sum, not the mean: the loss is normalised over the whole job's batch (the caller's part), so the
 * summed gradient is the gradient of the job's loss. Parameters a step did not use contribute zeros.
 * Parameters on the GPU: the buckets are device memory summed by NCCL (nccl non-NULL) on ctx's stream,
 * queued in the backward's order (one stream: no overlap there); this path compiles but has not run on a
 * GPU here. Owns its bucket buffers; borrows the store, the communicators and the context. */
#ifndef NN_GRAD_SYNC_H
#define NN_GRAD_SYNC_H

#include "nn/params.h"
#include "tensor/comm.h"
#include "tensor/nccl_comm.h"

typedef struct GradSync GradSync;

ErrorCode grad_sync_create(GradSync **gs, ParamStore *ps, Comm *comm, NcclComm *nccl, Context *ctx, size_t bucket_bytes,
                           Error *err);
void grad_sync_free(GradSync *gs);
/* Hooks gs into g's backward; call before each step's backward (it resets the buckets). */
void grad_sync_begin_step(GradSync *gs, Graph *g);
/* After the backward: starts what is left, waits for every bucket and writes the sums into the
 * parameters' gradients. */
ErrorCode grad_sync_finish_step(GradSync *gs, Error *err);
/* Buckets and gradient bytes, for progress lines and benchmarks. */
int grad_sync_buckets(const GradSync *gs);
size_t grad_sync_bytes(const GradSync *gs);

#endif
