#include "nn/grad_sync.h"

#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"

typedef struct {
    float *buf;       /* the bucket's gradients, end to end */
    size_t floats;
    int first, count; /* its parameters: order[first .. first + count) */
    int ready;        /* of them copied in this step */
    CommRequest *req; /* the sum in flight */
    bool started;
} Bucket;

struct GradSync {
    ParamStore *ps;
    Comm *comm;
    NcclComm *nccl; /* GPU parameters: NCCL sums on ctx's stream */
    Context *ctx;
    Device device;
    Var **order;      /* trainable parameters, reverse registration order */
    size_t *offset;   /* each one's place in its bucket */
    int *bucket_of;
    bool *done;       /* copied into its bucket this step */
    int n;
    Bucket *buckets;
    int n_buckets;
    int next_start;   /* buckets start in index order, the same on every rank */
    size_t bytes;
    ErrorCode error;  /* from a hook (the backward cannot return it) */
    Error err;
};

ErrorCode grad_sync_create(GradSync **out, ParamStore *ps, Comm *comm, NcclComm *nccl, Context *ctx, size_t bucket_bytes,
                           Error *err)
{
    *out = NULL;
    GradSync *gs = calloc(1, sizeof *gs);
    if (!gs) return error_set(err, ERR_OOM, "out of memory");
    gs->ps = ps, gs->comm = comm, gs->nccl = nccl, gs->ctx = ctx, gs->device = ps->device;
    if (gs->device == DEVICE_CUDA && !nccl) {
        free(gs);
        return error_set(err, ERR_ARG, "distributed gradients on the GPU need NCCL");
    }
    int n = 0;
    for (int i = 0; i < ps->n; i++) n += ps->entries[i].kind == ENTRY_PARAM;
    gs->order = calloc((size_t)n + 1, sizeof *gs->order);
    gs->offset = calloc((size_t)n + 1, sizeof *gs->offset);
    gs->bucket_of = calloc((size_t)n + 1, sizeof *gs->bucket_of);
    gs->done = calloc((size_t)n + 1, sizeof *gs->done);
    gs->buckets = calloc((size_t)n + 1, sizeof *gs->buckets);
    if (!gs->order || !gs->offset || !gs->bucket_of || !gs->done || !gs->buckets) {
        grad_sync_free(gs);
        return error_set(err, ERR_OOM, "out of memory");
    }
    for (int i = ps->n - 1; i >= 0; i--)
        if (ps->entries[i].kind == ENTRY_PARAM) {
            gs->order[gs->n++] = ps->entries[i].param;
        }
    /* cut the order into buckets of about bucket_bytes (a larger parameter is a bucket alone) */
    size_t limit = bucket_bytes / sizeof(float);
    for (int i = 0; i < gs->n;) {
        Bucket *b = &gs->buckets[gs->n_buckets];
        b->first = i;
        while (i < gs->n && (b->count == 0 || b->floats + (size_t)tensor_numel(&gs->order[i]->value) <= limit)) {
            gs->offset[i] = b->floats;
            gs->bucket_of[i] = gs->n_buckets;
            b->floats += (size_t)tensor_numel(&gs->order[i]->value);
            b->count++, i++;
        }
        if (gs->device == DEVICE_CUDA) device_alloc((void **)&b->buf, DEVICE_CUDA, sizeof(float) * (b->floats ? b->floats : 1), NULL);
        else b->buf = malloc(sizeof(float) * (b->floats ? b->floats : 1));
        if (!b->buf) {
            grad_sync_free(gs);
            return error_set(err, ERR_OOM, "out of memory for gradient buckets");
        }
        gs->bytes += sizeof(float) * b->floats;
        gs->n_buckets++;
    }
    *out = gs;
    return ERR_OK;
}

void grad_sync_free(GradSync *gs)
{
    if (!gs) return;
    for (int i = 0; gs->buckets && i < gs->n_buckets; i++) device_free(gs->buckets[i].buf, gs->device);
    free(gs->buckets), free(gs->order), free(gs->offset), free(gs->bucket_of), free(gs->done);
    free(gs);
}

int grad_sync_buckets(const GradSync *gs) { return gs->n_buckets; }
size_t grad_sync_bytes(const GradSync *gs) { return gs->bytes; }

static int index_of(const GradSync *gs, const Var *p)
{
    for (int i = 0; i < gs->n; i++)
        if (gs->order[i] == p) return i;
    return -1;
}

/* Copies parameter i's gradient (zeros when it has none) into its bucket; starts the bucket when full. */
static void take(GradSync *gs, int i)
{
    if (gs->done[i] || gs->error) return;
    gs->done[i] = true;
    Var *p = gs->order[i];
    Bucket *b = &gs->buckets[gs->bucket_of[i]];
    size_t n = (size_t)tensor_numel(&p->value);
    ErrorCode rc = p->grad.data ? device_memcpy(b->buf + gs->offset[i], gs->device, p->grad.data, gs->device,
                                                n * sizeof(float), &gs->err)
                                : device_memset_zero(b->buf + gs->offset[i], gs->device, n * sizeof(float), &gs->err);
    if (rc) {
        gs->error = rc;
        return;
    }
    b->ready++;
    /* MPI wants collectives started in one order on every rank; the backward's order of parameters can
     * differ between ranks (a batch without landmarks skips their loss), the bucket order cannot */
    while (!gs->error && gs->next_start < gs->n_buckets && gs->buckets[gs->next_start].ready == gs->buckets[gs->next_start].count) {
        Bucket *s = &gs->buckets[gs->next_start++];
        s->started = true;
        gs->error = gs->device == DEVICE_CUDA ? nccl_comm_allreduce_sum_f32(gs->nccl, s->buf, s->floats, gs->ctx, &gs->err)
                                              : comm_allreduce_sum_f32_start(gs->comm, s->buf, s->floats, &s->req, &gs->err);
    }
}

static void on_ready(void *ctx, Var *param)
{
    GradSync *gs = ctx;
    int i = index_of(gs, param);
    if (i >= 0) take(gs, i);
    comm_progress(gs->comm);
}

void grad_sync_begin_step(GradSync *gs, Graph *g)
{
    for (int i = 0; i < gs->n; i++) gs->done[i] = false;
    for (int k = 0; k < gs->n_buckets; k++) gs->buckets[k].ready = 0, gs->buckets[k].started = false, gs->buckets[k].req = NULL;
    gs->error = ERR_OK;
    gs->next_start = 0;
    error_clear(&gs->err);
    graph_on_param_grad_ready(g, on_ready, gs);
}

ErrorCode grad_sync_finish_step(GradSync *gs, Error *err)
{
    /* parameters the backward did not report (unused this step) go in as they are; every bucket then
     * starts, in bucket order, the same on every rank */
    for (int i = 0; i < gs->n; i++) take(gs, i);
    ErrorCode rc = gs->error;
    if (rc) error_set(err, rc, "%s", gs->err.msg);
    for (int k = 0; k < gs->n_buckets; k++) {
        Bucket *b = &gs->buckets[k];
        ErrorCode w = comm_wait(gs->comm, b->req, "the gradient sum", err);
        b->req = NULL;
        if (!rc) rc = w;
        /* on the GPU the copy is ordered after NCCL's sum on the stream (device.h's copies wait for it) */
        for (int j = b->first; !rc && j < b->first + b->count; j++) {
            Var *p = gs->order[j];
            if (p->grad.data)
                rc = device_memcpy(p->grad.data, gs->device, b->buf + gs->offset[j], gs->device,
                                   sizeof(float) * (size_t)tensor_numel(&p->value), err);
        }
    }
    return rc;
}
