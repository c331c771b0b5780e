/* ThreadPool: persistent worker threads for data-parallel loops, created once per Context so no
 * op creates threads per call. threadpool_run(pool, n, fn, arg) calls fn(arg, i) for i in [0, n)
 * spread over the workers and the calling thread, and returns when all are done. Not reentrant:
 * fn must not call threadpool_run on the same pool (nested calls run serially instead). */
#ifndef TENSOR_THREADPOOL_H
#define TENSOR_THREADPOOL_H

typedef struct ThreadPool ThreadPool;
typedef void (*ThreadTaskFn)(void *arg, int task);

/* nthreads counts the caller; 1 means no worker threads. Returns NULL on failure. */
ThreadPool *threadpool_create(int nthreads);
void threadpool_destroy(ThreadPool *pool);
int threadpool_size(const ThreadPool *pool);
void threadpool_run(ThreadPool *pool, int ntasks, ThreadTaskFn fn, void *arg);

#endif
