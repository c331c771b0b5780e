#include "tensor/rng.h"

#include <math.h>

void rng_seed(Rng *r, uint64_t seed, uint64_t stream)
{
    r->state = 0;
    r->inc = (stream << 1u) | 1u;
    rng_u32(r);
    r->state += seed;
    rng_u32(r);
}

uint32_t rng_u32(Rng *r)
{
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

float rng_uniform(Rng *r) { return (float)(rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

double rng_uniform_double(Rng *r)
{
    uint64_t hi = rng_u32(r) >> 5, lo = rng_u32(r) >> 6;
    return ((double)hi * 67108864.0 + (double)lo) * (1.0 / 9007199254740992.0);
}

float rng_normal(Rng *r)
{
    double u1 = rng_uniform_double(r), u2 = rng_uniform_double(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t rng_below(Rng *r, uint32_t n)
{
    if (n == 0) return 0;
    uint32_t threshold = (-n) % n;
    for (;;) {
        uint32_t x = rng_u32(r);
        if (x >= threshold) return x % n;
    }
}

void tensor_fill_uniform(Tensor *t, Rng *r, float lo, float hi)
{
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = lo + (hi - lo) * rng_uniform(r);
}

void tensor_fill_normal(Tensor *t, Rng *r, float mean, float std)
{
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = mean + std * rng_normal(r);
}
