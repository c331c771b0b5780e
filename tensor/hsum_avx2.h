/* The sum of the 8 floats of a register, for kernels that keep vector partial sums (the weight
 * gradients' dot products) and add each finished one to a scalar. x86-64 only, for functions compiled
 * with target("avx2,fma"). */
#ifndef TENSOR_HSUM_AVX2_H
#define TENSOR_HSUM_AVX2_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx2,fma"), always_inline)) static inline float hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
#endif

#endif
