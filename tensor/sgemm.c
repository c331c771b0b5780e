#include "tensor/sgemm.h"

#include <stdlib.h>
#include <string.h>

#include "tensor/sgemm_kernel.h"

/* Cache blocking: a B micro-panel (KC x NR = 16 KiB) stays in L1 while the MR-row panels of A stream
 * past it from L2; NC bounds the packed block of B (KC x NC = 1 MiB) that all row panels reuse. */
enum { KC = SGEMM_KC, MC = 48 * SGEMM_MR, NC = 1024, IN_PLACE_MIN_K = 32, IN_PLACE_MAX_M = 128,
       IN_PLACE_MAX_B_FLOATS = 1 << 18, TASKS_PER_THREAD = 4, PREFETCH_PANELS = 8 };

static int round_up(int v, int unit) { return (v + unit - 1) / unit * unit; }

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

/* Whether kc rows of B, ldb floats apart, can all sit in a 32 KiB 8-way L1 (64 sets of 64-byte lines)
 * when read in place: rows whose stride is a multiple of 64 bytes fall in 64 / gcd(64, stride / 64)
 * sets only. A 160x160 pointwise convolution (ldb 25600, every row in one set) read its B in place at
 * half the speed of packed copies; 80x80 (4 sets) and the Winograd GEMMs' strides are fine. */
static bool b_rows_cacheable(int ldb, int kc)
{
    if (ldb % 16) return true; /* rows start at different offsets in their lines: spread over the sets */
    int sets = 64 / gcd(64, (ldb / 16) % 64 ? (ldb / 16) % 64 : 64);
    return sets * 8 >= kc;
}

typedef struct {
    int N, K;
    float alpha;
    SgemmRight right;
    const SgemmProduct *prods;
    int n_prods;
    int split_n;   /* 1: tasks split N, 0: tasks split M (one product only) */
    int overwrite; /* beta == 0: the first K block stores instead of accumulating */
    int chunk;     /* rows or columns per task */
    SgemmKernelFn kernel;
    ThreadPool *pool; /* where the packing buffers come from (NULL: allocated per call) */
    bool b_in_place;  /* the kernel reads B's whole panels where they are instead of packed copies */
} SgemmJob;

/* Whether the packing takes the register-transposing AVX2 panels: wherever a vector kernel was chosen (the
 * AVX2 and AVX-512 kernels both need AVX2). */
static bool vector_packing(SgemmKernelFn kernel) { return kernel != sgemm_kernel_generic; }

/* Packs op(A)[i0:i0+mc, p0:p0+kc] (A of M rows) as consecutive MR-row panels, each kc columns of MR
 * values; rows past M are zero. */
static void pack_a(const float *A, int lda, bool trans_a, int M, int i0, int mc, int p0, int kc, float *dst,
                   bool vector)
{
    for (int ir = 0; ir < mc; ir += SGEMM_MR) {
        int mr = M - (i0 + ir) < SGEMM_MR ? M - (i0 + ir) : SGEMM_MR;
        if (!trans_a && vector) {
            const float *rows[SGEMM_MR];
            for (int i = 0; i < SGEMM_MR; i++) rows[i] = i < mr ? A + (size_t)(i0 + ir + i) * lda + p0 : NULL;
            sgemm_pack_a_panel_avx2(rows, kc, dst);
        } else if (!trans_a) {
            for (int i = 0; i < SGEMM_MR; i++) {
                const float *src = A + (size_t)(i0 + ir + i) * lda + p0;
                for (int p = 0; p < kc; p++) dst[p * SGEMM_MR + i] = i < mr ? src[p] : 0.0f;
            }
        } else {
            for (int p = 0; p < kc; p++) {
                const float *src = A + (size_t)(p0 + p) * lda + i0 + ir;
                for (int i = 0; i < SGEMM_MR; i++) dst[p * SGEMM_MR + i] = i < mr ? src[i] : 0.0f;
            }
        }
        dst += (size_t)kc * SGEMM_MR;
    }
}

bool sgemm_pack_a(SgemmPackedA *pa, bool trans_a, int M, int K, const float *A, int lda)
{
    *pa = (SgemmPackedA){M, K, NULL};
    size_t floats = sgemm_packed_a_floats(M, K);
    pa->data = aligned_alloc(64, ((floats ? floats : 1) * sizeof(float) + 63) & ~(size_t)63);
    if (!pa->data) return false;
    for (int pc = 0; pc < K; pc += KC) {
        int kc = K - pc < KC ? K - pc : KC;
        pack_a(A, lda, trans_a, M, 0, M, pc, kc, pa->data + sgemm_packed_a_floats(M, pc),
               vector_packing(sgemm_select_kernel()));
    }
    return true;
}

void sgemm_packed_a_free(SgemmPackedA *pa)
{
    free(pa->data);
    pa->data = NULL;
}

/* Packs op(B)[p0:p0+kc, j0:j0+nc] as consecutive NR-column panels, each kc rows of NR values.
 * Non-transposed B is read row by row (each row of the block once, sequentially, which the hardware
 * prefetches), writing NR values into every panel; reading panel by panel would stride through
 * memory one cache line per row. */
static void pack_b(const SgemmRight *r, int p0, int kc, int j0, int nc, float *dst, bool vector)
{
    if (!r->trans_b) {
        int full = nc / SGEMM_NR, rest = nc - full * SGEMM_NR;
        for (int p = 0; p < kc; p++) {
            const float *src = r->B + (size_t)(p0 + p) * r->ldb + j0;
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
        if (vector && nr == SGEMM_NR) {
            sgemm_pack_b_trans_panel_avx2(r->B + (size_t)(j0 + jr) * r->ldb + p0, r->ldb, kc, dst);
            dst += (size_t)kc * SGEMM_NR;
            continue;
        }
        for (int c = 0; c < SGEMM_NR; c++) {
            if (c < nr) {
                const float *src = r->B + (size_t)(j0 + jr + c) * r->ldb + p0;
                for (int p = 0; p < kc; p++) dst[p * SGEMM_NR + c] = src[p];
            } else {
                for (int p = 0; p < kc; p++) dst[p * SGEMM_NR + c] = 0.0f;
            }
        }
        dst += (size_t)kc * SGEMM_NR;
    }
}

/* The rows of product q a task computes: all of them, or its share when tasks split M. */
static void task_rows(const SgemmJob *j, int q, int i0, int m, int *r0, int *rm)
{
    if (j->split_n) *r0 = 0, *rm = j->prods[q].M;
    else *r0 = i0, *rm = m;
}

/* C[rows, j0:j0+n] of every product, serially. Each product's rows of one K block are packed once
 * (or taken prepacked) and reused for every NC block of B; each block of B is packed once (or read in
 * place) and used by every product. */
static void gemm_block(const SgemmJob *j, int i0, int m, int j0, int n, float *pa, float *pb)
{
    const float *a_block[SGEMM_MAX_PRODUCTS];
    for (int pc = 0; pc < j->K; pc += KC) {
        int kc = j->K - pc < KC ? j->K - pc : KC;
        float *pa_next = pa;
        for (int q = 0; q < j->n_prods; q++) {
            const SgemmProduct *pr = &j->prods[q];
            int r0, rm;
            task_rows(j, q, i0, m, &r0, &rm);
            if (pr->packed) {
                a_block[q] = pr->packed->data + sgemm_packed_a_floats(pr->M, pc) + (size_t)r0 * kc;
                continue;
            }
            pack_a(pr->A, pr->lda, pr->trans_a, pr->M, r0, rm, pc, kc, pa_next, vector_packing(j->kernel));
            a_block[q] = pa_next;
            pa_next += (size_t)round_up(rm, SGEMM_MR) * kc;
        }
        bool last_k = pc + kc == j->K;
        for (int jc = 0; jc < n; jc += NC) {
            int nc = n - jc < NC ? n - jc : NC;
            const float *b_block = pb;
            int full_panels = 0; /* read in place */
            if (j->b_in_place) {
                /* whole panels straight from B; only a partial last panel is packed (reading 16 columns
                 * there would run past the row) */
                full_panels = nc / SGEMM_NR;
                if (nc % SGEMM_NR)
                    pack_b(&j->right, pc, kc, j0 + jc + full_panels * SGEMM_NR, nc % SGEMM_NR,
                           pb + (size_t)full_panels * SGEMM_NR * kc, vector_packing(j->kernel));
            } else {
                pack_b(&j->right, pc, kc, j0 + jc, nc, pb, vector_packing(j->kernel));
            }
            for (int q = 0; q < j->n_prods; q++) {
                const SgemmProduct *pr = &j->prods[q];
                int r0, rm;
                task_rows(j, q, i0, m, &r0, &rm);
                bool epilogue = last_k && (pr->row_bias || pr->leaky_slope >= 0.0f);
                for (int ic = 0; ic < rm; ic += MC) {
                    int mc = rm - ic < MC ? rm - ic : MC;
                    float *c_rows = pr->C + (size_t)(r0 + ic) * pr->ldc + j0 + jc;
                    SgemmTileEpilogue ep = {pr->row_bias ? pr->row_bias + r0 + ic : NULL, pr->leaky_slope};
                    for (int jr = 0; jr < nc; jr += SGEMM_NR) {
                        int nr = nc - jr < SGEMM_NR ? nc - jr : SGEMM_NR;
                        const float *b_panel = b_block + (size_t)jr * kc;
                        long ldb = SGEMM_NR, pf = 0;
                        if (jr / SGEMM_NR < full_panels) {
                            b_panel = j->right.B + (size_t)pc * j->right.ldb + j0 + jc + jr, ldb = j->right.ldb;
                            /* the first tile on a panel read in place fetches its rows' lines a few
                             * panels ahead (see sgemm_kernel.h) */
                            if (ic == 0 && q == 0) pf = PREFETCH_PANELS * SGEMM_NR;
                        }
                        j->kernel(kc, a_block[q] + (size_t)ic * kc, b_panel, ldb, pf, c_rows + jr, pr->ldc, j->alpha, mc,
                                  nr, j->overwrite && pc == 0, epilogue ? &ep : NULL,
                                  jr + SGEMM_NR < nc ? c_rows + jr + SGEMM_NR : NULL);
                    }
                }
            }
        }
    }
}

/* gemm_block's result when its packing buffers cannot be allocated: the same blocks, packed one MR-row panel
 * and FALLBACK_COLS columns at a time into buffers on the stack, through the same kernel and K blocking,
 * so the floats are the ones the normal path gives; slower, and only for that case. */
enum { FALLBACK_COLS = 4 * SGEMM_NR };

static void block_without_heap(const SgemmJob *j, int i0, int m, int j0, int n)
{
    float pa[KC * SGEMM_MR] __attribute__((aligned(64))), pb[KC * FALLBACK_COLS] __attribute__((aligned(64)));
    for (int q = 0; q < j->n_prods; q++) {
        SgemmJob one = *j;
        one.prods = &j->prods[q], one.n_prods = 1, one.split_n = 0; /* rows by argument, this product's */
        int r0, rm;
        task_rows(j, q, i0, m, &r0, &rm);
        for (int r = r0; r < r0 + rm; r += SGEMM_MR)
            for (int c = j0; c < j0 + n; c += FALLBACK_COLS)
                gemm_block(&one, r, r0 + rm - r < SGEMM_MR ? r0 + rm - r : SGEMM_MR, c,
                           j0 + n - c < FALLBACK_COLS ? j0 + n - c : FALLBACK_COLS, pa, pb);
    }
}

static void sgemm_task(void *arg, int task)
{
    const SgemmJob *j = arg;
    int lo = task * j->chunk;
    int total = j->split_n ? j->N : j->prods[0].M;
    if (lo >= total) return;
    int len = total - lo < j->chunk ? total - lo : j->chunk;
    int n = j->split_n ? len : j->N;
    int kc = j->K < KC ? j->K : KC;
    int nc = n < NC ? n : NC;
    /* packed A (the task's rows of every unpacked product, one K block), then packed B, 16-float aligned */
    size_t a_floats = 0;
    for (int q = 0; q < j->n_prods; q++)
        if (!j->prods[q].packed) a_floats += (size_t)kc * round_up(j->split_n ? j->prods[q].M : len, SGEMM_MR);
    a_floats = (a_floats + 15) & ~(size_t)15;
    size_t b_floats = (size_t)kc * round_up(nc, SGEMM_NR);
    float *owned = NULL, *pa = a_floats + b_floats ? threadpool_scratch(j->pool, a_floats + b_floats) : NULL;
    if (!pa && a_floats + b_floats) {
        pa = owned = aligned_alloc(64, ((a_floats + b_floats) * sizeof(float) + 63) & ~(size_t)63);
        if (!pa) { /* not even a few MiB of host memory */
            if (j->split_n)
                block_without_heap(j, 0, 0, lo, n);
            else
                block_without_heap(j, lo, len, 0, n);
            return;
        }
    }
    if (j->split_n)
        gemm_block(j, 0, 0, lo, n, pa, pa ? pa + a_floats : NULL);
    else
        gemm_block(j, lo, len, 0, n, pa, pa ? pa + a_floats : NULL);
    free(owned);
}

/* C = beta C ahead of the products (beta == 0 with a product to compute is left to the kernel's
 * overwrite), and the epilogue alone when there is no product (K == 0 or alpha == 0). */
static void prepare_output(const SgemmProduct *pr, int N, float beta, bool no_product)
{
    if (beta == 0.0f && no_product) {
        for (int i = 0; i < pr->M; i++) memset(pr->C + (size_t)i * pr->ldc, 0, (size_t)N * sizeof(float));
    } else if (beta != 1.0f && beta != 0.0f) {
        for (int i = 0; i < pr->M; i++)
            for (int jj = 0; jj < N; jj++) pr->C[(size_t)i * pr->ldc + jj] *= beta;
    }
    if (!no_product || !(pr->row_bias || pr->leaky_slope >= 0.0f)) return;
    /* C is beta C already: the epilogue alone is left, through the generic kernel's store */
    float zero[SGEMM_MR][SGEMM_NR] = {{0}};
    SgemmTileEpilogue ep = {pr->row_bias, pr->leaky_slope};
    for (int jj = 0; jj < N; jj += SGEMM_NR) /* kc = 0: every tile reads the same zeros */
        sgemm_kernel_generic(0, zero[0], zero[0], SGEMM_NR, 0, pr->C + jj, pr->ldc, 1.0f, pr->M,
                             N - jj < SGEMM_NR ? N - jj : SGEMM_NR, 0, &ep, NULL);
}

void sgemm_multi(ThreadPool *pool, int N, int K, float alpha, const SgemmRight *b, float beta,
                 const SgemmProduct *prods, int n_prods)
{
    if (N <= 0 || n_prods <= 0) return;
    if (n_prods > SGEMM_MAX_PRODUCTS) {
        /* more products than a task tracks: in groups (each packs B again) */
        for (int q = 0; q < n_prods; q += SGEMM_MAX_PRODUCTS)
            sgemm_multi(pool, N, K, alpha, b, beta, prods + q,
                        n_prods - q < SGEMM_MAX_PRODUCTS ? n_prods - q : SGEMM_MAX_PRODUCTS);
        return;
    }
    bool no_product = K <= 0 || alpha == 0.0f;
    double flops = 0, a_pack = 0, m_total = 0;
    for (int q = 0; q < n_prods; q++) {
        prepare_output(&prods[q], N, beta, no_product);
        flops += 2.0 * prods[q].M * N * K;
        m_total += prods[q].M;
        if (!prods[q].packed) a_pack += (double)prods[q].M * K;
    }
    if (no_product || m_total == 0) return;

    SgemmJob j = {N, K, alpha, *b, prods, n_prods, 0, beta == 0.0f, 0, sgemm_select_kernel(), pool, false};
    /* From K = 32 the kernel reads B's panels in place as fast as it reads packed copies (32x32 to
     * 128x128 pointwise convolutions and Winograd's GEMMs: 5-8% faster without the packing pass);
     * below, a panel's few rows arrive too late for the little work done on them (8->16: 35% slower).
     * Unless B's rows share too few L1 sets to stay cached: a panel's rows are reused by every row panel
     * of A (see b_rows_cacheable); nor where many row panels re-read a B too large for the cache: packed
     * panels are contiguous and stream, strided rows come one line per row from memory (ResNet-50's
     * pointwise layers, M 256-1024 and N 2809-44100, single thread best of 8: 62-85 -> 73-97 GFLOP/s). */
    j.b_in_place = !b->trans_b && K >= IN_PLACE_MIN_K && b_rows_cacheable(b->ldb, K < KC ? K : KC) &&
                   (m_total <= IN_PLACE_MAX_M || (double)K * N <= IN_PLACE_MAX_B_FLOATS);
    int nthreads = threadpool_size(pool);
    /* Small problems are not worth waking threads for. */
    if (flops < 2e6) nthreads = 1;
    if (n_prods > 1) {
        j.split_n = 1; /* the products share B: tasks split its columns */
    } else {
        /* Split where each task packs the least: every task packs all of the operand it does not
         * split. Packing A (a gather into MR-row panels) costs about three times packing B (row
         * copies); a prepacked A costs nothing. */
        int M = prods[0].M;
        double b_pack = (double)K * N; /* packed, or streamed in place: every row of it either way */
        double per_task_split_n = 3.0 * a_pack + b_pack / nthreads, per_task_split_m = 3.0 * a_pack / nthreads + b_pack;
        j.split_n = nthreads == 1 || per_task_split_n == per_task_split_m ? N >= M : per_task_split_n < per_task_split_m;
    }
    int total = j.split_n ? N : prods[0].M;
    int unit = j.split_n ? SGEMM_NR : SGEMM_MR;
    int units = (total + unit - 1) / unit;
    /* With every A prepacked, a task splitting N packs (or streams) only its own columns of B, so the
     * work can be cut finer than one task per thread at no extra cost: the pool hands the pieces out as
     * threads come free, which evens out a thread that starts late or runs slower (the caller's wait
     * for the workers over a 640x480 forward, 3 runs each: 0.95-1.5 -> 0.7-0.95 ms). */
    int wanted = j.split_n && a_pack == 0 && nthreads > 1 ? nthreads * TASKS_PER_THREAD : nthreads;
    int ntasks = wanted < units ? wanted : units;
    int units_per_task = (units + ntasks - 1) / ntasks;
    j.chunk = units_per_task * unit;
    ntasks = (total + j.chunk - 1) / j.chunk;
    threadpool_run(ntasks > 1 ? pool : NULL, ntasks, sgemm_task, &j);
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
    if (M <= 0) return;
    SgemmRight right = {B, ldb, trans_b};
    SgemmProduct prod = {M, A, lda, trans_a, NULL, C, ldc, row_bias, leaky_slope};
    sgemm_multi(pool, N, K, alpha, &right, beta, &prod, 1);
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
    SgemmKernelFn k = sgemm_select_kernel();
    return k == sgemm_kernel_generic ? "generic 6x16" : k == sgemm_kernel_avx2 ? "avx2-fma 6x16" : "avx512 6x16";
}
