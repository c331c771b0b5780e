/* Helpers shared by the benchmarks: wall clock, median, the machine's name, its measured
 * single-precision FMA peak and its measured copy bandwidth (so tables can report a fraction of what
 * this CPU can do). */
#ifndef BENCHMARKS_BENCH_COMMON_H
#define BENCHMARKS_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tensor/threadpool.h"

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A/B inside one process (the machines drift by tens of percent within minutes; alternate runs see the same
 * drift): the benchmark sets environment variable `name` to "0" and "1" on alternate runs, code under test
 * reads it (a temporary getenv while a change is judged, never committed), and pairs (t[2i], t[2i+1]) give
 * the median of t[2i+1] / t[2i] over the n / 2 pairs, with the smallest and largest in *lo, *hi. */
static inline void bench_alternate(const char *name, int run)
{
    if (name) setenv(name, run % 2 ? "1" : "0", 1);
}

static inline double bench_paired_ratio(const double *t, int n, double *lo, double *hi)
{
    int pairs = n / 2;
    double *r = malloc(sizeof(double) * (size_t)(pairs > 0 ? pairs : 1));
    if (!r || pairs < 1) {
        free(r);
        *lo = *hi = 0;
        return 0;
    }
    for (int i = 0; i < pairs; i++) r[i] = t[2 * i + 1] / t[2 * i];
    double m = bench_median(r, pairs);
    *lo = r[0], *hi = r[pairs - 1]; /* sorted by bench_median */
    free(r);
    return m;
}

static inline void bench_cpu_name(char *buf, size_t len)
{
    snprintf(buf, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p += 2;
                p[strcspn(p, "\n")] = 0;
                snprintf(buf, len, "%s", p);
            }
            break;
        }
    fclose(f);
}

#if defined(__x86_64__)
#include <immintrin.h>
/* 12 independent accumulator chains hide the FMA latency; returns GFLOP/s of one thread. */
__attribute__((target("avx2,fma"))) static void bench_fma_loop(void *arg, int task)
{
    (void)task;
    double *out = arg;
    __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2), a3 = _mm256_set1_ps(3);
    __m256 a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5), a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7);
    __m256 a8 = _mm256_set1_ps(8), a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
    long iters = 20000000;
    double t0 = bench_now();
    for (long it = 0; it < iters; it++) {
        a0 = _mm256_fmadd_ps(a0, m, c), a1 = _mm256_fmadd_ps(a1, m, c), a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c), a4 = _mm256_fmadd_ps(a4, m, c), a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c), a7 = _mm256_fmadd_ps(a7, m, c), a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c), a10 = _mm256_fmadd_ps(a10, m, c), a11 = _mm256_fmadd_ps(a11, m, c);
    }
    double dt = bench_now() - t0;
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    out[task] = iters * 12.0 * 16.0 / dt / 1e9 + (_mm256_cvtss_f32(s) == 12345.f ? 1e-9 : 0);
}

/* Measured AVX2 FMA peak over the pool's threads, GFLOP/s. */
static inline double bench_fma_peak_gflops(ThreadPool *pool)
{
    int n = threadpool_size(pool);
    double per[64] = {0};
    threadpool_run(pool, n, bench_fma_loop, per);
    double total = 0;
    for (int i = 0; i < n && i < 64; i++) total += per[i];
    return total;
}
#else
static inline double bench_fma_peak_gflops(ThreadPool *pool)
{
    (void)pool;
    return 0;
}
#endif

typedef struct {
    float *src, *dst;
    size_t floats_per_task;
} BenchCopy;

static void bench_copy_task(void *arg, int task)
{
    const BenchCopy *c = arg;
    size_t off = (size_t)task * c->floats_per_task;
    memcpy(c->dst + off, c->src + off, c->floats_per_task * sizeof(float));
}

/* Copy bandwidth over the pool's threads, GB/s counting bytes read plus bytes written, for a working
 * set of `bytes` (source and destination together): a cache-sized set measures the cache, a large
 * one memory. Median of 9 copies after a warm-up one; 0 if the buffers cannot be allocated. */
static inline double bench_copy_gbs(ThreadPool *pool, size_t bytes)
{
    int n = threadpool_size(pool);
    size_t floats = bytes / 2 / sizeof(float) / (size_t)n * (size_t)n;
    BenchCopy c = {malloc(floats * sizeof(float)), malloc(floats * sizeof(float)), floats / (size_t)n};
    if (!c.src || !c.dst) {
        free(c.src), free(c.dst);
        return 0;
    }
    memset(c.src, 1, floats * sizeof(float));
    memset(c.dst, 0, floats * sizeof(float));
    double t[9];
    for (int r = -1; r < 9; r++) {
        double t0 = bench_now();
        threadpool_run(pool, n, bench_copy_task, &c);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    free(c.src), free(c.dst);
    return 2.0 * floats * sizeof(float) / bench_median(t, 9) / 1e9;
}

#endif
