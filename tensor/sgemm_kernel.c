#include "tensor/sgemm_kernel.h"

static void store_tile(const float acc[SGEMM_MR][SGEMM_NR], float *c, int ldc, float alpha,
                       int mr, int nr, int overwrite)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *d = &c[(long)i * ldc + j];
            *d = overwrite ? alpha * acc[i][j] : *d + alpha * acc[i][j];
        }
}

void sgemm_kernel_generic(int kc, const float *a, const float *b, float *c, int ldc, float alpha,
                          int mr, int nr, int overwrite)
{
    float acc[SGEMM_MR][SGEMM_NR] = {{0}};
    for (int p = 0; p < kc; p++) {
        for (int i = 0; i < SGEMM_MR; i++) {
            float av = a[p * SGEMM_MR + i];
            for (int j = 0; j < SGEMM_NR; j++) acc[i][j] += av * b[p * SGEMM_NR + j];
        }
    }
    store_tile(acc, c, ldc, alpha, mr, nr, overwrite);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx2,fma"))) void sgemm_kernel_avx2(int kc, const float *a, const float *b,
                                                             float *c, int ldc, float alpha,
                                                             int mr, int nr, int overwrite)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        __m256 av;
        av = _mm256_broadcast_ss(a + 0);
        c00 = _mm256_fmadd_ps(av, b0, c00), c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(av, b0, c10), c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(av, b0, c20), c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(av, b0, c30), c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(av, b0, c40), c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(av, b0, c50), c51 = _mm256_fmadd_ps(av, b1, c51);
        a += SGEMM_MR;
        b += SGEMM_NR;
    }
    __m256 al = _mm256_set1_ps(alpha);
    if (mr == SGEMM_MR && nr == SGEMM_NR) {
        __m256 rows[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
        if (overwrite) {
            for (int i = 0; i < SGEMM_MR; i++) {
                float *ci = c + (long)i * ldc;
                _mm256_storeu_ps(ci, _mm256_mul_ps(al, rows[2 * i]));
                _mm256_storeu_ps(ci + 8, _mm256_mul_ps(al, rows[2 * i + 1]));
            }
            return;
        }
        for (int i = 0; i < SGEMM_MR; i++) {
            float *ci = c + (long)i * ldc;
            _mm256_storeu_ps(ci, _mm256_fmadd_ps(al, rows[2 * i], _mm256_loadu_ps(ci)));
            _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(al, rows[2 * i + 1], _mm256_loadu_ps(ci + 8)));
        }
        return;
    }
    float acc[SGEMM_MR][SGEMM_NR] __attribute__((aligned(32)));
    _mm256_store_ps(acc[0], c00), _mm256_store_ps(acc[0] + 8, c01);
    _mm256_store_ps(acc[1], c10), _mm256_store_ps(acc[1] + 8, c11);
    _mm256_store_ps(acc[2], c20), _mm256_store_ps(acc[2] + 8, c21);
    _mm256_store_ps(acc[3], c30), _mm256_store_ps(acc[3] + 8, c31);
    _mm256_store_ps(acc[4], c40), _mm256_store_ps(acc[4] + 8, c41);
    _mm256_store_ps(acc[5], c50), _mm256_store_ps(acc[5] + 8, c51);
    /* The edge store stays in AVX code: calling legacy-SSE code with live 256-bit state stalls. */
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *d = &c[(long)i * ldc + j];
            *d = overwrite ? alpha * acc[i][j] : *d + alpha * acc[i][j];
        }
}

SgemmKernelFn sgemm_select_kernel(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return sgemm_kernel_avx2;
    return sgemm_kernel_generic;
}
#else
void sgemm_kernel_avx2(int kc, const float *a, const float *b, float *c, int ldc, float alpha,
                       int mr, int nr, int overwrite)
{
    sgemm_kernel_generic(kc, a, b, c, ldc, alpha, mr, nr, overwrite);
}
SgemmKernelFn sgemm_select_kernel(void) { return sgemm_kernel_generic; }
#endif
