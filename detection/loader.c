#include "detection/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"
#include "tensor/threadpool.h"

enum { LOADER_NICE = 10 };

struct Loader {
    const TrainSet *set;
    AugmentOptions opt;
    int batch_size;
    int rank, world;        /* the shard this process reads (loader_set_shard) */
    uint64_t seed;
    ThreadPool *pool;
    int *order;
    Batch slots[2];
    int slot_batch[2];      /* batch index held by the slot, -1 when free */
    int epoch, next_to_make, next_to_take, n_batches;
    bool stop, running;
    bool pinned;
    pthread_t producer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct {
    Loader *l;
    Batch *b;
    int first; /* epoch position of the batch's first image */
    int *status;
    char (*errors)[512];
} FillJob;

/* The loader's threads run at a lower priority than the trainer's: on a machine with as many compute
 * threads as cores they share the cores with the step, and a compute thread that the scheduler takes
 * away in the middle of an op holds up its partner at the op's end. Nice 10 gives them about a tenth
 * of a core while the step runs and whatever the step leaves idle (its waits at op ends, the loss);
 * a prefetch of two batches hides the rest. Once per thread (Linux's nice value is per thread). */
static void lower_priority_once(void)
{
    static _Thread_local bool done;
    if (done) return;
    done = true;
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), LOADER_NICE);
}

static void fill_one(void *arg, int i)
{
    FillJob *j = arg;
    lower_priority_once();
    Loader *l = j->l;
    int pos = j->first + i;
    const TrainSample *s = &l->set->samples[l->order[pos % l->set->n]];
    Rng r;
    rng_seed(&r, l->seed, ((uint64_t)l->epoch << 32) | (uint64_t)pos);
    size_t img = (size_t)3 * l->opt.size * l->opt.size;
    Error err = {0};
    j->status[i] = augment_sample(s, &l->opt, &r, j->b->images + img * i, j->b->targets + (size_t)LOADER_MAX_FACES * FACE_FIELDS * i,
                                  LOADER_MAX_FACES, &j->b->n_faces[i], &err) == ERR_OK;
    if (!j->status[i]) snprintf(j->errors[i], 512, "%s", err.msg);
}

int loader_shard(int n_images, int batch, int rank, int world, int k, int *first)
{
    int padded = (n_images + world - 1) / world * world;
    long start = (long)k * batch * world, end = start + (long)batch * world;
    if (end > padded) end = padded;
    int n = start < end ? (int)((end - start) / world) : 0;
    *first = (int)start + rank * n;
    return n;
}

static void make_batch(Loader *l, Batch *b, int k)
{
    int first, n = loader_shard(l->set->n, l->batch_size, l->rank, l->world, k, &first);
    int status[n > 0 ? n : 1];
    char (*errors)[512] = calloc((size_t)(n > 0 ? n : 1), 512);
    FillJob j = {l, b, first, status, errors};
    threadpool_run(l->pool, n, fill_one, &j);
    /* Compact: failed samples leave the batch. */
    size_t img = (size_t)3 * l->opt.size * l->opt.size, tgt = (size_t)LOADER_MAX_FACES * FACE_FIELDS;
    b->n = 0, b->failed = 0, b->error[0] = 0;
    for (int i = 0; i < n; i++) {
        if (!status[i]) {
            if (!b->failed++) snprintf(b->error, sizeof b->error, "%s", errors[i]);
            continue;
        }
        if (b->n != i) {
            memmove(b->images + img * b->n, b->images + img * i, img * sizeof(float));
            memmove(b->targets + tgt * b->n, b->targets + tgt * i, tgt * sizeof(float));
            b->n_faces[b->n] = b->n_faces[i];
        }
        b->n++;
    }
    free(errors);
}

static void free_images(const Loader *l, float *p)
{
    if (l->pinned)
        host_free_pinned(p);
    else
        free(p);
}

static void *producer_main(void *arg)
{
    Loader *l = arg;
    lower_priority_once();
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && (!l->running || l->next_to_make >= l->n_batches || l->slot_batch[l->next_to_make % 2] != -1))
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop) break;
        int k = l->next_to_make++;
        Batch *b = &l->slots[k % 2];
        l->slot_batch[k % 2] = -2; /* being made */
        pthread_mutex_unlock(&l->mu);
        make_batch(l, b, k);
        pthread_mutex_lock(&l->mu);
        l->slot_batch[k % 2] = k;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

Loader *loader_create(const TrainSet *set, const AugmentOptions *opt, int batch_size, int workers, uint64_t seed,
                      bool pinned, Error *err)
{
    Loader *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->set = set, l->opt = *opt, l->batch_size = batch_size, l->seed = seed;
    l->rank = 0, l->world = 1;
    l->n_batches = (set->n + batch_size - 1) / batch_size;
    l->order = malloc(sizeof(int) * (size_t)set->n);
    l->pool = threadpool_create(workers);
    size_t img = (size_t)3 * opt->size * opt->size;
    for (int s = 0; s < 2; s++) {
        l->slots[s].size = opt->size;
        l->slots[s].images = pinned ? host_alloc_pinned(sizeof(float) * img * (size_t)batch_size)
                                    : malloc(sizeof(float) * img * (size_t)batch_size);
        l->pinned = pinned;
        l->slots[s].targets = malloc(sizeof(float) * LOADER_MAX_FACES * FACE_FIELDS * (size_t)batch_size);
        l->slots[s].n_faces = malloc(sizeof(int) * (size_t)batch_size);
        l->slot_batch[s] = -1;
        if (!l->slots[s].images || !l->slots[s].targets || !l->slots[s].n_faces) {
            error_set(err, ERR_OOM, "loader: out of memory for batches of %d at %d px", batch_size, opt->size);
            for (int k = 0; k < 2; k++) free_images(l, l->slots[k].images), free(l->slots[k].targets), free(l->slots[k].n_faces);
            threadpool_destroy(l->pool);
            free(l->order);
            free(l);
            return NULL;
        }
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (!l->order || !l->pool || pthread_create(&l->producer, NULL, producer_main, l) != 0) {
        error_set(err, ERR_OOM, "loader: cannot start worker threads");
        free(l->order);
        threadpool_destroy(l->pool);
        for (int s = 0; s < 2; s++) free_images(l, l->slots[s].images), free(l->slots[s].targets), free(l->slots[s].n_faces);
        free(l);
        return NULL;
    }
    return l;
}

void loader_destroy(Loader *l)
{
    if (!l) return;
    if (l->order) { /* fully constructed */
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->producer, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
    }
    threadpool_destroy(l->pool);
    for (int s = 0; s < 2; s++) free_images(l, l->slots[s].images), free(l->slots[s].targets), free(l->slots[s].n_faces);
    free(l->order);
    free(l);
}

int loader_batches_per_epoch(const Loader *l) { return l->n_batches; }

void loader_set_shard(Loader *l, int rank, int world)
{
    pthread_mutex_lock(&l->mu);
    while (l->slot_batch[0] == -2 || l->slot_batch[1] == -2) pthread_cond_wait(&l->cv, &l->mu);
    l->rank = rank, l->world = world;
    int padded = (l->set->n + world - 1) / world * world;
    l->n_batches = (padded + l->batch_size * world - 1) / (l->batch_size * world);
    l->running = false;
    pthread_mutex_unlock(&l->mu);
}

void loader_begin_epoch(Loader *l, int epoch, int first_batch)
{
    pthread_mutex_lock(&l->mu);
    /* Wait for any batch in the making, then reset. */
    while (l->slot_batch[0] == -2 || l->slot_batch[1] == -2) pthread_cond_wait(&l->cv, &l->mu);
    l->epoch = epoch;
    Rng r;
    rng_seed(&r, l->seed ^ 0x9e3779b97f4a7c15ULL, (uint64_t)epoch);
    for (int i = 0; i < l->set->n; i++) l->order[i] = i;
    for (int i = l->set->n - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint32_t)(i + 1));
        int t = l->order[i];
        l->order[i] = l->order[j], l->order[j] = t;
    }
    l->next_to_make = l->next_to_take = first_batch;
    l->slot_batch[0] = l->slot_batch[1] = -1;
    l->running = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

const Batch *loader_next(Loader *l)
{
    pthread_mutex_lock(&l->mu);
    /* Release the slot handed out last time. */
    int prev = l->next_to_take - 1;
    if (prev >= 0 && l->slot_batch[prev % 2] == prev) l->slot_batch[prev % 2] = -1;
    pthread_cond_broadcast(&l->cv);
    if (l->next_to_take >= l->n_batches) {
        l->running = false;
        pthread_mutex_unlock(&l->mu);
        return NULL;
    }
    int k = l->next_to_take;
    while (l->slot_batch[k % 2] != k) pthread_cond_wait(&l->cv, &l->mu);
    l->next_to_take++;
    pthread_mutex_unlock(&l->mu);
    return &l->slots[k % 2];
}
