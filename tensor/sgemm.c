#include "tensor/sgemm.h"

#include <stdlib.h>
#include <string.h>

#include "tensor/sgemm_kernel.h"

/* Cache blocking: an A panel (MC x KC = 48 KiB) stays in L2, a B micro-panel (KC x NR = 16 KiB)
 * in L1; NC bounds the packed B (KC x NC = 1 MiB, about an L2) so the kernel re-reads it from L2. */
enum { KC = 256, MC = 48 * SGEMM_MR, NC = 1024 };

typedef struct {
    bool trans_a, trans_b;
    int M, N, K;
    float alpha;
    const float *A, *B;
    int lda, ldb;
    float *C;
    int ldc;
    int split_n;   /* 1: tasks split N, 0: tasks split M */
    int overwrite; /* beta == 0: the first K block stores instead of accumulating */
    int chunk;     /* rows or columns per task */
    SgemmKernelFn kernel;
    ThreadPool *pool; /* where the packing buffers come from (NULL: allocated per call) */
    bool epilogue;    /* apply bias + activation to each finished tile */
    const float *row_bias;
    float slope;
} SgemmJob;

static inline float a_at(const SgemmJob *j, int i, int p)
{
    return j->trans_a ? j->A[(size_t)p * j->lda + i] : j->A[(size_t)i * j->lda + p];
}

/* Packs op(A)[i0:i0+mc, p0:p0+kc] as consecutive MR-row panels, each kc columns of MR values. */
static void pack_a(const SgemmJob *j, int i0, int mc, int p0, int kc, float *dst)
{
    for (int ir = 0; ir < mc; ir += SGEMM_MR) {
        int mr = mc - ir < SGEMM_MR ? mc - ir : SGEMM_MR;
        if (!j->trans_a) {
            for (int i = 0; i < SGEMM_MR; i++) {
                const float *src = j->A + (size_t)(i0 + ir + i) * j->lda + p0;
                for (int p = 0; p < kc; p++) dst[p * SGEMM_MR + i] = i < mr ? src[p] : 0.0f;
            }
        } else {
            for (int p = 0; p < kc; p++) {
                const float *src = j->A + (size_t)(p0 + p) * j->lda + i0 + ir;
                for (int i = 0; i < SGEMM_MR; i++) dst[p * SGEMM_MR + i] = i < mr ? src[i] : 0.0f;
            }
        }
        dst += (size_t)kc * SGEMM_MR;
    }
}

/* Packs op(B)[p0:p0+kc, j0:j0+nc] as consecutive NR-column panels, each kc rows of NR values.
 * Non-transposed B is read row by row (each row of the block once, sequentially, which the hardware
 * prefetches), writing NR values into every panel; reading panel by panel would stride through
 * memory one cache line per row. */
static void pack_b(const SgemmJob *j, int p0, int kc, int j0, int nc, float *dst)
{
    if (!j->trans_b) {
        int full = nc / SGEMM_NR, rest = nc - full * SGEMM_NR;
        for (int p = 0; p < kc; p++) {
            const float *src = j->B + (size_t)(p0 + p) * j->ldb + j0;
            float *d = dst + p * SGEMM_NR;
            for (int q = 0; q < full; q++) memcpy(d + (size_t)q * kc * SGEMM_NR, src + q * SGEMM_NR, SGEMM_NR * sizeof(float));
            if (rest) {
                float *dr = d + (size_t)full * kc * SGEMM_NR;
                for (int c = 0; c < SGEMM_NR; c++) dr[c] = c < rest ? src[full * SGEMM_NR + c] : 0.0f;
            }
        }
        return;
    }
    for (int jr = 0; jr < nc; jr += SGEMM_NR) {
        int nr = nc - jr < SGEMM_NR ? nc - jr : SGEMM_NR;
        for (int c = 0; c < SGEMM_NR; c++) {
            if (c < nr) {
                const float *src = j->B + (size_t)(j0 + jr + c) * j->ldb + p0;
                for (int p = 0; p < kc; p++) dst[p * SGEMM_NR + c] = src[p];
            } else {
                for (int p = 0; p < kc; p++) dst[p * SGEMM_NR + c] = 0.0f;
            }
        }
        dst += (size_t)kc * SGEMM_NR;
    }
}

/* C[i0:i0+m, j0:j0+n] += alpha * op(A) op(B) over that block, serially. A's rows of one K block are
 * packed once (pa holds all m of them) and reused for every NC panel of B. */
static void gemm_block(const SgemmJob *j, int i0, int m, int j0, int n, float *pa, float *pb)
{
    for (int pc = 0; pc < j->K; pc += KC) {
        int kc = j->K - pc < KC ? j->K - pc : KC;
        for (int ic = 0; ic < m; ic += MC) pack_a(j, i0 + ic, m - ic < MC ? m - ic : MC, pc, kc, pa + (size_t)ic * kc);
        for (int jc = 0; jc < n; jc += NC) {
            int nc = n - jc < NC ? n - jc : NC;
            pack_b(j, pc, kc, j0 + jc, nc, pb);
            for (int ic = 0; ic < m; ic += MC) {
                int mc = m - ic < MC ? m - ic : MC;
                const float *pa_block = pa + (size_t)ic * kc;
                for (int jr = 0; jr < nc; jr += SGEMM_NR) {
                    int nr = nc - jr < SGEMM_NR ? nc - jr : SGEMM_NR;
                    for (int ir = 0; ir < mc; ir += SGEMM_MR) {
                        int mr = mc - ir < SGEMM_MR ? mc - ir : SGEMM_MR;
                        int row = i0 + ic + ir;
                        float *c = j->C + (size_t)row * j->ldc + j0 + jc + jr;
                        SgemmTileEpilogue ep = {j->row_bias ? j->row_bias + row : NULL, j->slope};
                        bool last_k = pc + kc == j->K;
                        j->kernel(kc, pa_block + (size_t)ir * kc, pb + (size_t)jr * kc, c, j->ldc, j->alpha, mr, nr,
                                  j->overwrite && pc == 0, j->epilogue && last_k ? &ep : NULL);
                    }
                }
            }
        }
    }
}

static void sgemm_task(void *arg, int task)
{
    const SgemmJob *j = arg;
    int lo = task * j->chunk;
    int total = j->split_n ? j->N : j->M;
    if (lo >= total) return;
    int len = total - lo < j->chunk ? total - lo : j->chunk;
    int m = j->split_n ? j->M : len, n = j->split_n ? len : j->N;
    int kc = j->K < KC ? j->K : KC;
    int nc = n < NC ? n : NC;
    /* packed A (all m rows of a K block), then packed B, 16-float aligned */
    size_t a_floats = ((size_t)kc * ((m + SGEMM_MR - 1) / SGEMM_MR) * SGEMM_MR + 15) & ~(size_t)15;
    size_t b_floats = (size_t)kc * ((nc + SGEMM_NR - 1) / SGEMM_NR) * SGEMM_NR;
    float *owned = NULL, *pa = threadpool_scratch(j->pool, a_floats + b_floats);
    if (!pa) pa = owned = aligned_alloc(64, ((a_floats + b_floats) * sizeof(float) + 63) & ~(size_t)63);
    if (!pa) abort(); /* a few MiB of host memory is not available: nothing sensible to return into */
    if (j->split_n)
        gemm_block(j, 0, m, lo, n, pa, pa + a_floats);
    else
        gemm_block(j, lo, m, 0, n, pa, pa + a_floats);
    free(owned);
}

void sgemm(ThreadPool *pool, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc)
{
    sgemm_bias_act(pool, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, -1.0f);
}

void sgemm_bias_act(ThreadPool *pool, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc, const float *row_bias,
                    float leaky_slope)
{
    bool epilogue = row_bias || leaky_slope >= 0.0f;
    if (M <= 0 || N <= 0) return;
    bool overwrite = beta == 0.0f && K > 0 && alpha != 0.0f;
    if (beta == 0.0f && !overwrite) {
        for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
    } else if (beta != 1.0f && beta != 0.0f) {
        for (int i = 0; i < M; i++)
            for (int jj = 0; jj < N; jj++) C[(size_t)i * ldc + jj] *= beta;
    }
    if (K <= 0 || alpha == 0.0f) {
        SgemmTileEpilogue ep = {row_bias, leaky_slope};
        float zero[SGEMM_MR][SGEMM_NR] = {{0}};
        if (epilogue) /* C is beta C already: the epilogue alone is left, through the generic kernel's store */
            for (int i = 0; i < M; i += SGEMM_MR)
                for (int jj = 0; jj < N; jj += SGEMM_NR) {
                    ep.bias = row_bias ? row_bias + i : NULL;
                    sgemm_kernel_generic(0, zero[0], zero[0], C + (size_t)i * ldc + jj, ldc, 1.0f,
                                         M - i < SGEMM_MR ? M - i : SGEMM_MR, N - jj < SGEMM_NR ? N - jj : SGEMM_NR, 0,
                                         &ep);
                }
        return;
    }

    SgemmJob j = {trans_a, trans_b, M, N, K, alpha, A, B, lda, ldb, C, ldc, 0, overwrite, 0,
                  sgemm_select_kernel(), pool, epilogue, row_bias, leaky_slope};
    int nthreads = threadpool_size(pool);
    /* Small problems are not worth waking threads for. */
    double flops = 2.0 * M * N * K;
    if (flops < 2e6) nthreads = 1;
    /* Split where each task packs the least: every task packs all of the operand it does not split.
     * Packing A (a gather into MR-row panels) costs about three times packing B (row copies). */
    double per_task_split_n = 3.0 * M * K + (double)K * N / nthreads, per_task_split_m = 3.0 * M * K / nthreads + (double)K * N;
    j.split_n = nthreads == 1 ? N >= M : per_task_split_n <= per_task_split_m;
    int total = j.split_n ? N : M;
    int unit = j.split_n ? SGEMM_NR : SGEMM_MR;
    int units = (total + unit - 1) / unit;
    int ntasks = nthreads < units ? nthreads : units;
    int units_per_task = (units + ntasks - 1) / ntasks;
    j.chunk = units_per_task * unit;
    ntasks = (total + j.chunk - 1) / j.chunk;
    threadpool_run(ntasks > 1 ? pool : NULL, ntasks, sgemm_task, &j);
}

void sgemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int jj = 0; jj < N; jj++) {
            double acc = 0;
            for (int p = 0; p < K; p++) {
                double a = trans_a ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
                double b = trans_b ? B[(size_t)jj * ldb + p] : B[(size_t)p * ldb + jj];
                acc += a * b;
            }
            float *c = &C[(size_t)i * ldc + jj];
            *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

const char *sgemm_kernel_name(void)
{
    return sgemm_select_kernel() == sgemm_kernel_generic ? "generic 6x16" : "avx2-fma 6x16";
}
