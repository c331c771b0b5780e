#include "tensor/sgemm_nt.h"

#include <stdbool.h>

enum { TILE_BIG = 3, TILE_SMALL = 4, CHUNK_MIN = 256, CHUNK_MAX = 1024, SMALL_SIDE_BYTES = 512 << 10 };

typedef struct {
    int K, batch, n_big, n_small;
    SgemmNtOperand big, small;  /* big: rows split over tasks, taken TILE_BIG at a time */
    double *c;
    size_t c_big, c_small;      /* strides of C along the big and the small operand's rows */
    int chunk, rows_per_task;
    bool avx2;
} NtJob;

/* sums[i][j] = dot(big row i, small row j) over len floats, for mr <= TILE_BIG, nr <= TILE_SMALL. */
static void tile_c(const float *a, size_t lda, const float *b, size_t ldb, int len, int mr, int nr,
                   float sums[TILE_BIG][TILE_SMALL])
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float s = 0;
            const float *x = a + (size_t)i * lda, *y = b + (size_t)j * ldb;
            for (int k = 0; k < len; k++) s += x[k] * y[k];
            sums[i][j] = s;
        }
}

#if defined(__x86_64__)
#include <immintrin.h>

#include "tensor/hsum_avx2.h"
#define AVX2 __attribute__((target("avx2,fma")))

/* The tile with mr, nr compile-time constants (the switch below), so the accumulators stay in registers. */
AVX2 __attribute__((always_inline)) static inline void tile_avx2(const float *a, size_t lda, const float *b, size_t ldb,
                                                                  int len, const int mr, const int nr,
                                                                  float sums[TILE_BIG][TILE_SMALL])
{
    __m256 acc[TILE_BIG][TILE_SMALL];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) acc[i][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= len; k += 8) {
        __m256 av[TILE_BIG];
        for (int i = 0; i < mr; i++) av[i] = _mm256_loadu_ps(a + (size_t)i * lda + k);
        for (int j = 0; j < nr; j++) {
            __m256 bv = _mm256_loadu_ps(b + (size_t)j * ldb + k);
            for (int i = 0; i < mr; i++) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
        }
    }
    if (k < len) { /* the last len - k floats: masked-off lanes are neither read nor counted */
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(len - k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 av[TILE_BIG];
        for (int i = 0; i < mr; i++) av[i] = _mm256_maskload_ps(a + (size_t)i * lda + k, m);
        for (int j = 0; j < nr; j++) {
            __m256 bv = _mm256_maskload_ps(b + (size_t)j * ldb + k, m);
            for (int i = 0; i < mr; i++) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) sums[i][j] = hsum_avx2(acc[i][j]);
}

/* The full 3 x 4 tile with its twelve accumulators as named locals: as an array GCC kept some of them
 * on the stack (the conv_block note in autograd/conv2d_avx2.c says the same). */
#define TILE34_STEP(LD)                                                                                                \
    do {                                                                                                               \
        __m256 x0 = LD(a0), x1 = LD(a1), x2 = LD(a2), y;                                                               \
        y = LD(b0), c00 = _mm256_fmadd_ps(x0, y, c00), c10 = _mm256_fmadd_ps(x1, y, c10), c20 = _mm256_fmadd_ps(x2, y, c20); \
        y = LD(b1), c01 = _mm256_fmadd_ps(x0, y, c01), c11 = _mm256_fmadd_ps(x1, y, c11), c21 = _mm256_fmadd_ps(x2, y, c21); \
        y = LD(b2), c02 = _mm256_fmadd_ps(x0, y, c02), c12 = _mm256_fmadd_ps(x1, y, c12), c22 = _mm256_fmadd_ps(x2, y, c22); \
        y = LD(b3), c03 = _mm256_fmadd_ps(x0, y, c03), c13 = _mm256_fmadd_ps(x1, y, c13), c23 = _mm256_fmadd_ps(x2, y, c23); \
    } while (0)

AVX2 static void tile34_avx2(const float *a, size_t lda, const float *b, size_t ldb, int len,
                             float sums[TILE_BIG][TILE_SMALL])
{
    __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z, c20 = z, c21 = z, c22 = z, c23 = z;
    const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda;
    const float *b0 = b, *b1 = b + ldb, *b2 = b + 2 * ldb, *b3 = b + 3 * ldb;
    int k = 0;
#define LOAD(p) _mm256_loadu_ps((p) + k)
    for (; k + 8 <= len; k += 8) TILE34_STEP(LOAD);
#undef LOAD
    if (k < len) {
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(len - k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#define LOAD(p) _mm256_maskload_ps((p) + k, m)
        TILE34_STEP(LOAD);
#undef LOAD
    }
    sums[0][0] = hsum_avx2(c00), sums[0][1] = hsum_avx2(c01), sums[0][2] = hsum_avx2(c02), sums[0][3] = hsum_avx2(c03);
    sums[1][0] = hsum_avx2(c10), sums[1][1] = hsum_avx2(c11), sums[1][2] = hsum_avx2(c12), sums[1][3] = hsum_avx2(c13);
    sums[2][0] = hsum_avx2(c20), sums[2][1] = hsum_avx2(c21), sums[2][2] = hsum_avx2(c22), sums[2][3] = hsum_avx2(c23);
}
#undef TILE34_STEP

AVX2 static void tile_any_avx2(const float *a, size_t lda, const float *b, size_t ldb, int len, int mr, int nr,
                               float sums[TILE_BIG][TILE_SMALL])
{
    if (mr == TILE_BIG && nr == TILE_SMALL) {
        tile34_avx2(a, lda, b, ldb, len, sums);
        return;
    }
#define TILE_CASE(R, C)                                                                                                \
    case (R) * 8 + (C): tile_avx2(a, lda, b, ldb, len, R, C, sums); return;
    switch (mr * 8 + nr) {
        TILE_CASE(3, 3) TILE_CASE(3, 2) TILE_CASE(3, 1)
        TILE_CASE(2, 4) TILE_CASE(2, 3) TILE_CASE(2, 2) TILE_CASE(2, 1)
        TILE_CASE(1, 4) TILE_CASE(1, 3) TILE_CASE(1, 2) TILE_CASE(1, 1)
    }
#undef TILE_CASE
}

static bool have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static void tile_any_avx2(const float *a, size_t lda, const float *b, size_t ldb, int len, int mr, int nr,
                          float sums[TILE_BIG][TILE_SMALL])
{
    tile_c(a, lda, b, ldb, len, mr, nr, sums);
}
static bool have_avx2(void) { return false; }
#endif

static void nt_task(void *arg, int task)
{
    const NtJob *j = arg;
    int r0 = task * j->rows_per_task, r1 = r0 + j->rows_per_task < j->n_big ? r0 + j->rows_per_task : j->n_big;
    float sums[TILE_BIG][TILE_SMALL];
    for (int bt = 0; bt < j->batch; bt++) {
        const float *big = j->big.p + (size_t)bt * j->big.batch_ld, *small = j->small.p + (size_t)bt * j->small.batch_ld;
        for (int k0 = 0; k0 < j->K; k0 += j->chunk) {
            int len = j->K - k0 < j->chunk ? j->K - k0 : j->chunk;
            for (int i = r0; i < r1; i += TILE_BIG) {
                int mr = r1 - i < TILE_BIG ? r1 - i : TILE_BIG;
                for (int q = 0; q < j->n_small; q += TILE_SMALL) {
                    int nr = j->n_small - q < TILE_SMALL ? j->n_small - q : TILE_SMALL;
                    const float *a = big + (size_t)i * j->big.ld + k0, *b = small + (size_t)q * j->small.ld + k0;
                    if (j->avx2)
                        tile_any_avx2(a, j->big.ld, b, j->small.ld, len, mr, nr, sums);
                    else
                        tile_c(a, j->big.ld, b, j->small.ld, len, mr, nr, sums);
                    for (int x = 0; x < mr; x++)
                        for (int y = 0; y < nr; y++) j->c[(size_t)(i + x) * j->c_big + (size_t)(q + y) * j->c_small] += sums[x][y];
                }
            }
        }
    }
}

void sgemm_nt_accumulate(ThreadPool *pool, int M, int N, int K, int batch, SgemmNtOperand a, SgemmNtOperand b,
                         double *c, size_t ldc)
{
    if (M <= 0 || N <= 0 || K <= 0 || batch <= 0) return;
    NtJob j = {K, batch, M, N, a, b, c, ldc, 1, 0, 0, have_avx2()};
    if (N > M) { /* the operand with more rows streams once; the other is re-read from cache */
        j.n_big = N, j.n_small = M, j.big = b, j.small = a, j.c_big = 1, j.c_small = ldc;
    }
    long chunk = SMALL_SIDE_BYTES / ((long)j.n_small * (long)sizeof(float)) / 8 * 8;
    j.chunk = chunk < CHUNK_MIN ? CHUNK_MIN : chunk > CHUNK_MAX ? CHUNK_MAX : (int)chunk;
    int threads = threadpool_size(pool), tiles = (j.n_big + TILE_BIG - 1) / TILE_BIG;
    double flops = 2.0 * M * N * (double)K * batch;
    int ntasks = flops < 2e6 ? 1 : threads < tiles ? threads : tiles;
    j.rows_per_task = (tiles + ntasks - 1) / ntasks * TILE_BIG;
    ntasks = (j.n_big + j.rows_per_task - 1) / j.rows_per_task;
    threadpool_run(ntasks > 1 ? pool : NULL, ntasks, nt_task, &j);
}
