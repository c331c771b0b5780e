/* Rng: PCG32 (O'Neill 2014, "PCG XSH RR 64/32"): 64-bit LCG state, 32-bit output by xorshift-high
 * and random rotation. Chosen because it is tiny, fast, statistically solid and its state (two
 * uint64) is trivially saved in checkpoints. Normals use Box-Muller on two uniforms.
 * Not thread-safe: one Rng per thread or per purpose, owned by the caller. */
#ifndef TENSOR_RNG_H
#define TENSOR_RNG_H

#include <stdint.h>

#include "tensor/tensor.h"

typedef struct {
    uint64_t state;
    uint64_t inc; /* odd; selects the stream */
} Rng;

void rng_seed(Rng *r, uint64_t seed, uint64_t stream);
uint32_t rng_u32(Rng *r);
float rng_uniform(Rng *r);              /* [0, 1) with 24 random bits */
double rng_uniform_double(Rng *r);      /* [0, 1) with 53 random bits */
float rng_normal(Rng *r);               /* mean 0, std 1 */
uint32_t rng_below(Rng *r, uint32_t n); /* uniform integer in [0, n), unbiased */

/* Fill a CPU tensor. */
void tensor_fill_uniform(Tensor *t, Rng *r, float lo, float hi);
void tensor_fill_normal(Tensor *t, Rng *r, float mean, float std);

#endif
