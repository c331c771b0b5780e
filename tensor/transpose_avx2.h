/* An 8x8 transpose of floats in registers, for kernels that turn rows into columns (the GEMM's packing,
 * the Winograd filter transform's packed output). x86-64 only, for functions compiled with target("avx2"). */
#ifndef TENSOR_TRANSPOSE_AVX2_H
#define TENSOR_TRANSPOSE_AVX2_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* 8 rows of 8 floats: on return r[q] holds element q of every input row, in row order. */
__attribute__((target("avx2"), always_inline)) static inline void transpose8_avx2(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* Stores lanes 0-5 of v at d (4 + 2 floats: nothing past them is written). */
__attribute__((target("avx2"), always_inline)) static inline void store6_avx2(float *d, __m256 v)
{
    _mm_storeu_ps(d, _mm256_castps256_ps128(v));
    _mm_storel_pi((__m64 *)(d + 4), _mm256_extractf128_ps(v, 1));
}
#endif

#endif
