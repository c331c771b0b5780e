/* Eight consecutive floats of an input row (and lane masks for rows' ends), for the CPU kernels that read their input rows
 * in place instead of through zero-padded copies (the depthwise stencil, Winograd's input transform).
 * Internal to autograd/; x86-64 only, for functions compiled with target("avx2,fma"). */
#ifndef AUTOGRAD_ROW_LOAD_AVX2_H
#define AUTOGRAD_ROW_LOAD_AVX2_H

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdbool.h>

/* row[col .. col + 7], zero for the columns outside [0, W) (edge) or all inside (!edge). The borders
 * go through masked loads: masked-off lanes are not read, so they cannot fault. On the 20- to 40-wide
 * planes of the deep layers, zero-padded copies of every row had cost as much as the stencil itself. */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 load_cols(const float *row, int col, int W,
                                                                                  const bool edge)
{
    if (!edge) return _mm256_loadu_ps(row + col);
    __m256i c = _mm256_add_epi32(_mm256_set1_epi32(col), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256i inside = _mm256_and_si256(_mm256_cmpgt_epi32(c, _mm256_set1_epi32(-1)),
                                      _mm256_cmpgt_epi32(_mm256_set1_epi32(W), c));
    return _mm256_maskload_ps(row + col, inside);
}

/* The mask of the first n lanes (n <= 0: none, n >= 8: all), for the masked loads and stores of a row's
 * last n % 8 elements. */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256i first_lanes(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

#endif
