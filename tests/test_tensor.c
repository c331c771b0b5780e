#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/arena.h"
#include "tensor/device.h"
#include "tensor/step_heap.h"
#include "tensor/rng.h"
#include "tensor/threadpool.h"
#include "tensor/tensor.h"
#include "tests/suites.h"

START_TEST(tensor_create_reshape_and_permute)
{
    Error err = {0};
    Tensor t;
    int64_t shape[4] = {2, 3, 4, 5};
    ck_assert_int_eq(tensor_new(&t, DEVICE_CPU, 4, shape, &err), ERR_OK);
    ck_assert_int_eq(tensor_numel(&t), 120);
    ck_assert(tensor_is_contiguous(&t));
    for (int i = 0; i < 120; i++) ck_assert_float_eq(t.data[i], 0.0f);
    for (int i = 0; i < 120; i++) t.data[i] = (float)i;

    Tensor v;
    int64_t flat[2] = {6, -1};
    ck_assert_int_eq(tensor_reshape_view(&v, &t, 2, flat, &err), ERR_OK);
    ck_assert_int_eq(v.shape[1], 20);
    ck_assert_ptr_eq(v.data, t.data);
    int64_t bad[2] = {7, 17};
    ck_assert_int_eq(tensor_reshape_view(&v, &t, 2, bad, &err), ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "120"));

    /* NCHW -> NHWC */
    int perm[4] = {0, 2, 3, 1};
    Tensor pv, pc;
    error_clear(&err);
    ck_assert_int_eq(tensor_permute_view(&pv, &t, perm, &err), ERR_OK);
    ck_assert(!tensor_is_contiguous(&pv));
    ck_assert_int_eq(tensor_new(&pc, DEVICE_CPU, 4, pv.shape, &err), ERR_OK);
    ck_assert_int_eq(tensor_contiguous_copy(&pc, &pv, &err), ERR_OK);
    for (int n = 0; n < 2; n++)
        for (int h = 0; h < 4; h++)
            for (int w = 0; w < 5; w++)
                for (int c = 0; c < 3; c++)
                    ck_assert_float_eq(pc.data[((n * 4 + h) * 5 + w) * 3 + c],
                                       t.data[((n * 3 + c) * 4 + h) * 5 + w]);
    int bad_perm[4] = {0, 0, 1, 2};
    ck_assert_int_eq(tensor_permute_view(&pv, &t, bad_perm, &err), ERR_ARG);
    tensor_free(&pc);
    tensor_free(&t);
    ck_assert_ptr_null(t.data);
}
END_TEST

START_TEST(tensor_raw_round_trip_and_size_check)
{
    Error err = {0};
    char path[] = "/tmp/retina_test_rawXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    Rng r;
    rng_seed(&r, 1, 1);
    int64_t shape[2] = {3, 7};
    Tensor t, u;
    tensor_new(&t, DEVICE_CPU, 2, shape, &err);
    tensor_fill_normal(&t, &r, 0, 1);
    ck_assert_int_eq(tensor_save_raw(&t, path, &err), ERR_OK);
    ck_assert_int_eq(tensor_load_raw(&u, path, 2, shape, &err), ERR_OK);
    for (int i = 0; i < 21; i++) ck_assert_float_eq(t.data[i], u.data[i]);
    int64_t wrong[2] = {3, 8};
    Tensor w;
    ck_assert_int_eq(tensor_load_raw(&w, path, 2, wrong, &err), ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, path));
    error_clear(&err);
    ck_assert_int_eq(tensor_load_raw(&w, "/nonexistent/x.f32", 2, wrong, &err), ERR_IO);
    tensor_free(&t);
    tensor_free(&u);
    unlink(path);
}
END_TEST

START_TEST(rng_is_reproducible_and_sane)
{
    Rng a, b;
    rng_seed(&a, 42, 1);
    rng_seed(&b, 42, 1);
    for (int i = 0; i < 100; i++) ck_assert_uint_eq(rng_u32(&a), rng_u32(&b));
    rng_seed(&b, 43, 1);
    int same = 0;
    for (int i = 0; i < 100; i++) same += rng_u32(&a) == rng_u32(&b);
    ck_assert_int_lt(same, 3);
    double sum = 0, sq = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = rng_normal(&a);
        sum += x, sq += x * x;
    }
    ck_assert_double_lt(fabs(sum / n), 0.01);
    ck_assert_double_lt(fabs(sq / n - 1.0), 0.02);
    for (int i = 0; i < 1000; i++) ck_assert_uint_lt(rng_below(&a, 7), 7);
}
END_TEST

/* Host buffers from a huge page up start on a 2 MiB boundary (tensor/device.c), so that their whole huge
 * pages can be advised; smaller ones keep the 64-byte alignment, and both hold what is written to them. */
START_TEST(host_buffers_are_aligned_for_their_pages)
{
    size_t sizes[] = {1, 100, (2u << 20) - 64, 2u << 20, (5u << 20) + 12};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        Error err = {0};
        unsigned char *p = NULL;
        ck_assert_int_eq(device_alloc((void **)&p, DEVICE_CPU, sizes[i], &err), ERR_OK);
        ck_assert_int_eq((uintptr_t)p % (sizes[i] >= (2u << 20) ? (2u << 20) : 64), 0);
        memset(p, 0xA5, sizes[i]);
        ck_assert_int_eq(p[0], 0xA5);
        ck_assert_int_eq(p[sizes[i] - 1], 0xA5);
        device_free(p, DEVICE_CPU);
    }
}
END_TEST

START_TEST(arena_reaches_steady_state)
{
    Arena a;
    arena_init(&a, DEVICE_CPU, 1024); /* far too small: the first step must chain blocks */
    Error err = {0};
    void *steady_block = NULL;
    for (int step = 0; step < 5; step++) {
        for (int i = 0; i < 50; i++) {
            char *p = arena_alloc(&a, 1000 + (size_t)i, &err);
            ck_assert_ptr_nonnull(p);
            ck_assert_int_eq((uintptr_t)p % 64, 0);
            p[0] = 1, p[999] = 2;
        }
        if (step == 0) ck_assert_ptr_ne(a.head, NULL);
        if (step >= 2) ck_assert_ptr_eq(a.head, steady_block); /* no new block once sized */
        arena_reset(&a);
        if (step == 1) steady_block = a.head;
    }
    arena_destroy(&a);
}
END_TEST

START_TEST(step_heap_frees_reuses_and_reaches_steady_state)
{
    StepHeap h;
    step_heap_init(&h, DEVICE_CPU, 4096); /* too small for a step: the first one chains blocks */
    Error err = {0};
    /* Freed memory is reused; neighbours merge, so a freed pair takes an allocation of both sizes. */
    char *a = step_heap_alloc(&h, 1000, &err), *b = step_heap_alloc(&h, 1000, &err), *c = step_heap_alloc(&h, 64, &err);
    ck_assert(a && b && c);
    ck_assert_int_eq((uintptr_t)b % 64, 0);
    ck_assert_uint_eq(h.live, 1024 + 1024 + 64);
    step_heap_free(&h, a);
    step_heap_free(&h, b);
    ck_assert(!step_heap_owns(&h, a) && step_heap_owns(&h, c));
    char *d = step_heap_alloc(&h, 2048, &err);
    ck_assert_ptr_eq(d, a); /* a and b merged back into one segment */
    ck_assert_uint_eq(h.peak, 1024 + 1024 + 64 + 0 * 1);
    step_heap_reset(&h);
    ck_assert_uint_eq(h.live, 0);
    /* Steps of the same sequence: after the first, one block that never grows. */
    const char *base = NULL;
    for (int step = 0; step < 4; step++) {
        char *p[40];
        for (int i = 0; i < 40; i++) {
            p[i] = step_heap_alloc(&h, 500 + 37 * (size_t)i, &err);
            ck_assert_ptr_nonnull(p[i]);
            p[i][0] = 1;
            if (i % 3 == 2) step_heap_free(&h, p[i - 1]);
        }
        if (step >= 1) {
            ck_assert_int_eq(h.n_blocks, 1);
            if (step == 1) base = h.blocks[0].base;
            ck_assert_ptr_eq(h.blocks[0].base, base);
        }
        step_heap_reset(&h);
    }
    step_heap_destroy(&h);
}
END_TEST

typedef struct {
    ThreadPool *pool;
    atomic_int *hits; /* per task */
    atomic_int nested_hits;
    int work;
} PoolJob;

static void count_nested(void *arg, int task)
{
    PoolJob *j = arg;
    (void)task;
    atomic_fetch_add(&j->nested_hits, 1);
}

static void count_task(void *arg, int task)
{
    PoolJob *j = arg;
    volatile double x = 0; /* uneven task lengths, so workers finish at different times */
    for (int i = 0; i < (task % 7) * j->work; i++) x += i;
    atomic_fetch_add(&j->hits[task], 1);
    if (task % 5 == 0) threadpool_run(j->pool, 3, count_nested, j); /* nested: runs serially here */
    float *s = threadpool_scratch(j->pool, 64 + (size_t)task);
    ck_assert_ptr_nonnull(s);
    s[0] = (float)task; /* the thread's own buffer: no other task writes it meanwhile */
    ck_assert(s[0] == (float)task);
}

START_TEST(thread_pool_runs_every_task_once)
{
    /* Thousands of short jobs of varying size, with nested calls and per-thread scratch: every task
     * runs exactly once per job, and every job has finished when threadpool_run returns. */
    for (int threads = 1; threads <= 4; threads++) { /* 3 and 4: more shares than this machine may have cores */
        ThreadPool *pool = threadpool_create(threads);
        ck_assert_ptr_nonnull(pool);
        atomic_int hits[64];
        for (int job = 0; job < 2000; job++) {
            int n = 1 + job % 64;
            PoolJob j = {pool, hits, 0, job % 3 ? 5 : 200};
            for (int t = 0; t < n; t++) atomic_store(&hits[t], 0);
            threadpool_run(pool, n, count_task, &j);
            for (int t = 0; t < n; t++) ck_assert_int_eq(atomic_load(&hits[t]), 1);
            ck_assert_int_eq(atomic_load(&j.nested_hits), 3 * ((n + 4) / 5));
        }
        threadpool_destroy(pool);
    }
}
END_TEST

typedef struct {
    atomic_int done;
    int ntasks;
    atomic_int gave_up;
} BlockedShareJob;

/* Task 0 (the start of the caller's share) waits until every other task has run: only another thread
 * taking over the rest of that share lets it finish. */
static void wait_for_the_others(void *arg, int task)
{
    BlockedShareJob *j = arg;
    if (task == 0) {
        for (int i = 0; i < 5000 && atomic_load(&j->done) < j->ntasks - 1; i++) usleep(1000);
        if (atomic_load(&j->done) < j->ntasks - 1) atomic_store(&j->gave_up, 1);
    }
    atomic_fetch_add(&j->done, 1);
}

START_TEST(thread_pool_idle_thread_takes_over_a_blocked_share)
{
    /* each thread starts on its own contiguous share of the tasks: one that is done takes over what is
     * left of a share whose thread is held up (here the caller's, blocked in its first task) */
    ThreadPool *pool = threadpool_create(2);
    ck_assert_ptr_nonnull(pool);
    BlockedShareJob j = {0, 40, 0};
    threadpool_run(pool, j.ntasks, wait_for_the_others, &j);
    ck_assert_int_eq(atomic_load(&j.gave_up), 0);
    ck_assert_int_eq(atomic_load(&j.done), j.ntasks);
    threadpool_destroy(pool);
}
END_TEST

static void mark_range(void *arg, int64_t lo, int64_t hi)
{
    atomic_int *seen = arg;
    for (int64_t i = lo; i < hi; i++) atomic_fetch_add(&seen[i], 1);
}

START_TEST(thread_pool_ranges_cover_each_index_once)
{
    /* ranges of `chunk` indices, the last shorter or exact, one index, none */
    ThreadPool *pool = threadpool_create(2);
    static const int64_t cases[][2] = {{1000, 64}, {1024, 64}, {1, 64}, {7, 1}, {0, 8}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        atomic_int seen[1024];
        for (int i = 0; i < 1024; i++) atomic_store(&seen[i], 0);
        threadpool_run_ranges(pool, cases[c][0], cases[c][1], mark_range, seen);
        for (int64_t i = 0; i < 1024; i++)
            ck_assert_int_eq(atomic_load(&seen[i]), i < cases[c][0] ? 1 : 0);
    }
    threadpool_destroy(pool);
}
END_TEST

Suite *tensor_suite(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, tensor_create_reshape_and_permute);
    tcase_add_test(tc, tensor_raw_round_trip_and_size_check);
    tcase_add_test(tc, rng_is_reproducible_and_sane);
    tcase_add_test(tc, host_buffers_are_aligned_for_their_pages);
    tcase_add_test(tc, arena_reaches_steady_state);
    tcase_add_test(tc, step_heap_frees_reuses_and_reaches_steady_state);
    tcase_add_test(tc, thread_pool_runs_every_task_once);
    tcase_add_test(tc, thread_pool_ranges_cover_each_index_once);
    tcase_add_test(tc, thread_pool_idle_thread_takes_over_a_blocked_share);
    suite_add_tcase(s, tc);
    return s;
}
