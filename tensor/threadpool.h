/* ThreadPool: persistent worker threads for data-parallel loops, created once per Context so no
 * op creates threads per call. threadpool_run(pool, n, fn, arg) calls fn(arg, i) for i in [0, n)
 * spread over the workers and the calling thread, and returns when all are done: thread t (0 is the
 * caller) starts on tasks [n t / T, n (t + 1) / T) and then helps with what is left of the others', so
 * ops that number their tasks in image order keep each thread on the rows it wrote before. Not reentrant:
 * fn must not call threadpool_run on the same pool (nested calls run serially instead). */
#ifndef TENSOR_THREADPOOL_H
#define TENSOR_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct ThreadPool ThreadPool;
typedef void (*ThreadTaskFn)(void *arg, int task);

/* nthreads counts the caller; 1 means no worker threads. Returns NULL on failure. */
ThreadPool *threadpool_create(int nthreads);
void threadpool_destroy(ThreadPool *pool);
int threadpool_size(const ThreadPool *pool);
void threadpool_run(ThreadPool *pool, int ntasks, ThreadTaskFn fn, void *arg);

/* fn(arg, lo, hi) over [0, n) cut into ranges of `chunk` (the last one shorter), each range a task. */
typedef void (*ThreadRangeFn)(void *arg, int64_t lo, int64_t hi);
void threadpool_run_ranges(ThreadPool *pool, int64_t n, int64_t chunk, ThreadRangeFn fn, void *arg);

/* The calling thread's scratch buffer, at least `floats` long (64-byte aligned), owned by the pool and
 * kept between calls: kernels take their per-task buffers from here instead of allocating. Valid until
 * the same thread asks again; NULL for a NULL pool or when memory runs out. Any thread that is not one
 * of the pool's workers shares the caller's slot, so one caller thread per pool at a time. */
float *threadpool_scratch(ThreadPool *pool, size_t floats);

#endif
