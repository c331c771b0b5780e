// Losses with row selection: cross-entropy and smooth L1 (autograd/op_losses.c).
#include "cuda_kernels/cuda_common.h"

__device__ double block_reduce(double v)
{
    __shared__ double part[1024];
    part[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    return part[0];
}

// max and sum of exp(z - max) of one row of logits (the sum in double), as the CPU op.
__device__ void row_softmax_terms(const float *z, int64_t C, float *max, double *sum)
{
    float m = z[0];
    for (int64_t c = 1; c < C; c++) m = fmaxf(m, z[c]);
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += exp((double)z[c] - m);
    *max = m, *sum = s;
}

// Single block, double accumulation: deterministic, exact enough to match the CPU op.
__global__ void k_ce_fwd(const float *z, const int32_t *labels, const uint8_t *sel, int64_t rows, int64_t C, float *out)
{
    double acc = 0;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
        if (sel && !sel[r]) continue;
        const float *zr = z + r * C;
        float m;
        double s;
        row_softmax_terms(zr, C, &m, &s);
        acc += log(s) + m - zr[labels[r]];
    }
    double total = block_reduce(acc);
    if (threadIdx.x == 0) out[0] = (float)total;
}

__global__ void k_ce_bwd(const float *z, const int32_t *labels, const uint8_t *sel, int64_t rows, int64_t C,
                         const float *dl, float *dz)
{
    float d = dl[0];
    GRID_STRIDE(r, rows)
    {
        if (sel && !sel[r]) continue;
        const float *zr = z + r * C;
        float m;
        double s;
        row_softmax_terms(zr, C, &m, &s);
        for (int64_t c = 0; c < C; c++) {
            double p = exp((double)zr[c] - m) / s;
            dz[r * C + c] += d * (float)(p - (c == labels[r] ? 1.0 : 0.0));
        }
    }
}

__global__ void k_sl1_fwd(const float *x, const float *t, const uint8_t *sel, int64_t rows, int64_t k, float *out)
{
    double acc = 0;
    int64_t n = rows * k;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        if (sel && !sel[i / k]) continue;
        double d = fabs((double)x[i] - t[i]);
        acc += d < 1.0 ? 0.5 * d * d : d - 0.5;
    }
    double total = block_reduce(acc);
    if (threadIdx.x == 0) out[0] = (float)total;
}

__global__ void k_sl1_bwd(const float *x, const float *t, const uint8_t *sel, int64_t rows, int64_t k, const float *dl,
                          float *dx)
{
    float g = dl[0];
    GRID_STRIDE(i, rows * k)
    {
        if (sel && !sel[i / k]) continue;
        float d = x[i] - t[i];
        dx[i] += g * (d < -1.0f ? -1.0f : d > 1.0f ? 1.0f : d);
    }
}

extern "C" {
void cuda_cross_entropy_forward(Context *ctx, const float *z, const int32_t *labels, const uint8_t *select,
                                int64_t rows, int64_t C, float *out)
{
    k_ce_fwd<<<1, 1024, 0, stream_of(ctx)>>>(z, labels, select, rows, C, out);
}
void cuda_cross_entropy_backward(Context *ctx, const float *z, const int32_t *labels, const uint8_t *select,
                                 int64_t rows, int64_t C, const float *dl, float *dz)
{
    k_ce_bwd<<<blocks_for(rows), 256, 0, stream_of(ctx)>>>(z, labels, select, rows, C, dl, dz);
}
void cuda_smooth_l1_forward(Context *ctx, const float *x, const float *t, const uint8_t *select, int64_t rows,
                            int64_t k, float *out)
{
    k_sl1_fwd<<<1, 1024, 0, stream_of(ctx)>>>(x, t, select, rows, k, out);
}
void cuda_smooth_l1_backward(Context *ctx, const float *x, const float *t, const uint8_t *select, int64_t rows,
                             int64_t k, const float *dl, float *dx)
{
    k_sl1_bwd<<<blocks_for(rows * k), 256, 0, stream_of(ctx)>>>(x, t, select, rows, k, dl, dx);
}
}
