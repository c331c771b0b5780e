/* The leaky ReLU of the CPU kernels' fused epilogues (GEMM tiles, depthwise, Winograd output, the stem),
 * on 8 floats: v where v is not negative, slope * v where it is (slope >= 0; slope 1 is how the kernels
 * say "no activation"). One multiply and a blend on v's sign, where max(v, 0) + slope * min(v, 0) took
 * three operations; the same floats for every v but -0, which now stays -0. x86-64 only, for functions
 * compiled with target("avx2,fma"). */
#ifndef TENSOR_LEAKY_AVX2_H
#define TENSOR_LEAKY_AVX2_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx2,fma"), always_inline)) static inline __m256 leaky_avx2(__m256 v, __m256 slope)
{
    return _mm256_blendv_ps(v, _mm256_mul_ps(v, slope), v);
}
#endif

#endif
