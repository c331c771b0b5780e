#include "tensor/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* Per-thread scratch: kept across jobs so that steady-state kernels allocate nothing. */
typedef struct {
    float *data;
    size_t floats;
} ThreadScratch;

/* One thread's share of the current job's tasks: next is claimed by fetch-add, by its owner and by
 * threads that are done with their own share. A cache line each, so owners do not contend. */
typedef struct {
    _Alignas(64) atomic_int next;
    int end;
} TaskRange;

typedef struct {
    struct ThreadPool *pool;
    int index;
} WorkerArg;

struct ThreadPool {
    int nthreads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    atomic_ulong generation;  /* bumped for every job */
    atomic_int sleepers;      /* workers waiting on work_cv */
    atomic_int caller_sleeping; /* the caller waits on done_cv */
    atomic_int shutdown;
    atomic_int busy;          /* set while a job runs: nested calls go serial */
    /* current job */
    ThreadTaskFn fn;
    void *arg;
    TaskRange *ranges;        /* [nthreads] */
    WorkerArg *worker_args;   /* [nthreads] */
    atomic_int workers_done;
    int spin; /* pauses a worker spins for the next job before sleeping */
    ThreadScratch *scratch; /* [nthreads]: 0 for the calling thread, i for worker i */
};

/* Thread `self` starts on its own contiguous share of the tasks and then takes what is left of the
 * others'. Two gains over one counter that every thread takes tasks from: the counter's cache line no
 * longer moves between cores for every task (the 30x40 and 15x20 depthwise layers, 128-256 tasks of a
 * fraction of a microsecond, ran 20-35% slower that way on 2 threads: per-op minimums over 200
 * forwards), and ops that number their tasks in image order (rows, GEMM columns that are pixels) keep a
 * thread on the rows it wrote in the op before, still in its core's L2. Taking the others' leftovers
 * keeps the balance when a thread starts late or runs slow. */
static void run_tasks(ThreadPool *p, int self)
{
    for (int k = 0; k < p->nthreads; k++) {
        TaskRange *r = &p->ranges[(self + k) % p->nthreads];
        for (;;) {
            int t = atomic_fetch_add(&r->next, 1);
            if (t >= r->end) break;
            p->fn(p->arg, t);
        }
    }
}

/* Jobs come in bursts (one per op, a few hundred per forward pass): a worker that just finished
 * spins briefly for the next one before sleeping, which saves a futex wake-up per job. Not when the
 * pool has more threads than the machine has cores: a spinning worker then holds the core that the
 * thread it waits for needs (3 threads on 2 cores: a 640x480 forward went from 10 to 42 ms). */
enum { WORKER_SPIN = 20000 };

static void spin_for_work(ThreadPool *p, unsigned long seen)
{
    for (int i = 0; i < p->spin; i++) {
        if (atomic_load_explicit(&p->generation, memory_order_acquire) != seen) return;
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
}

/* The hand-over is lock-free while the threads are awake: the caller publishes a job by bumping
 * `generation`, the workers count themselves done in `workers_done`, and the mutex and condition
 * variables are only used by a side that found nothing after spinning and goes to sleep. Each side
 * announces its sleep (sleepers, caller_sleeping) before its last check, and the other side looks at
 * the announcement after its own store, so one of the two always sees the other (sequentially
 * consistent atomics) and no wake-up is lost. A mutex hand-over per job had cost 3-4 us, and a
 * forward pass runs about 150 jobs. */
static void *worker_main(void *arg)
{
    ThreadPool *p = ((WorkerArg *)arg)->pool;
    int self = ((WorkerArg *)arg)->index;
    unsigned long seen = 0;
    for (;;) {
        spin_for_work(p, seen);
        if (atomic_load(&p->generation) == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (!atomic_load(&p->shutdown) && atomic_load(&p->generation) == seen)
                pthread_cond_wait(&p->work_cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->shutdown)) break;
        seen = atomic_load(&p->generation);
        run_tasks(p, self);
        atomic_fetch_add(&p->workers_done, 1);
        if (atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

ThreadPool *threadpool_create(int nthreads)
{
    if (nthreads < 1) nthreads = 1;
    ThreadPool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nthreads = nthreads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    p->spin = cores > 0 && nthreads > cores ? 0 : WORKER_SPIN;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = calloc((size_t)nthreads, sizeof *p->threads);
    p->scratch = calloc((size_t)nthreads, sizeof *p->scratch);
    p->ranges = aligned_alloc(_Alignof(TaskRange), sizeof(TaskRange) * (size_t)nthreads);
    p->worker_args = calloc((size_t)nthreads, sizeof *p->worker_args);
    if (!p->threads || !p->scratch || !p->ranges || !p->worker_args) {
        free(p->threads);
        free(p->scratch);
        free(p->ranges);
        free(p->worker_args);
        free(p);
        return NULL;
    }
    for (int i = 1; i < nthreads; i++) {
        p->worker_args[i] = (WorkerArg){p, i};
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->worker_args[i]) != 0) {
            p->nthreads = i; /* keep the ones that started */
            break;
        }
    }
    return p;
}

void threadpool_destroy(ThreadPool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->shutdown, 1);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    for (int i = 0; i < p->nthreads; i++) free(p->scratch[i].data);
    free(p->scratch);
    free(p->threads);
    free(p->ranges);
    free(p->worker_args);
    free(p);
}

float *threadpool_scratch(ThreadPool *p, size_t floats)
{
    if (!p) return NULL;
    int slot = 0;
    pthread_t self = pthread_self();
    for (int i = 1; i < p->nthreads; i++)
        if (pthread_equal(self, p->threads[i])) slot = i;
    ThreadScratch *s = &p->scratch[slot];
    if (s->floats < floats) {
        free(s->data);
        size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
        s->data = aligned_alloc(64, bytes);
        s->floats = s->data ? floats : 0;
    }
    return s->data;
}

int threadpool_size(const ThreadPool *p) { return p ? p->nthreads : 1; }

typedef struct {
    ThreadRangeFn fn;
    void *arg;
    int64_t n, chunk;
} RangeJob;

static void run_range(void *arg, int task)
{
    const RangeJob *j = arg;
    int64_t lo = (int64_t)task * j->chunk, hi = lo + j->chunk < j->n ? lo + j->chunk : j->n;
    j->fn(j->arg, lo, hi);
}

void threadpool_run_ranges(ThreadPool *p, int64_t n, int64_t chunk, ThreadRangeFn fn, void *arg)
{
    if (n <= 0) return;
    if (chunk < 1) chunk = 1;
    RangeJob j = {fn, arg, n, chunk};
    threadpool_run(p, (int)((n + chunk - 1) / chunk), run_range, &j);
}

void threadpool_run(ThreadPool *p, int ntasks, ThreadTaskFn fn, void *arg)
{
    if (ntasks <= 0) return;
    if (!p || p->nthreads == 1 || ntasks == 1 || p->busy) {
        for (int t = 0; t < ntasks; t++) fn(arg, t);
        return;
    }
    p->busy = 1;
    p->fn = fn;
    p->arg = arg;
    for (int t = 0; t < p->nthreads; t++) {
        atomic_store(&p->ranges[t].next, (int)((long)ntasks * t / p->nthreads));
        p->ranges[t].end = (int)((long)ntasks * (t + 1) / p->nthreads);
    }
    atomic_store(&p->workers_done, 0);
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
    }

    run_tasks(p, 0);

    int workers = p->nthreads - 1;
    for (int i = 0; i < p->spin && atomic_load_explicit(&p->workers_done, memory_order_acquire) < workers; i++) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
    if (atomic_load(&p->workers_done) < workers) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, 1);
        while (atomic_load(&p->workers_done) < workers) pthread_cond_wait(&p->done_cv, &p->mu);
        atomic_store(&p->caller_sleeping, 0);
        pthread_mutex_unlock(&p->mu);
    }
    p->busy = 0;
}
