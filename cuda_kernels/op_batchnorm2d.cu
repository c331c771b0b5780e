// batchnorm2d on the GPU. Per-channel statistics are reduced in two stages (many blocks per channel
// write double partial sums, one small kernel finishes them in a fixed order), so every SM is busy
// even for 8-channel layers at 320x320 and results are deterministic; the elementwise parts are
// plain grid-stride kernels.
#include "cuda_kernels/cuda_common.h"

enum { BN_MAX_CHUNKS = 64, BN_THREADS = 256 };

static int bn_chunks(int64_t m)
{
    int64_t c = (m + 16383) / 16384;
    return (int)(c < 1 ? 1 : c > BN_MAX_CHUNKS ? BN_MAX_CHUNKS : c);
}

extern "C" size_t cuda_batchnorm_scratch_bytes(int C) { return (size_t)C * (BN_MAX_CHUNKS * 2 + 4) * sizeof(double); }

__device__ void block_sum2(double &a, double &b)
{
    __shared__ double sa[BN_THREADS], sb[BN_THREADS];
    sa[threadIdx.x] = a, sb[threadIdx.x] = b;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sa[threadIdx.x] += sa[threadIdx.x + s], sb[threadIdx.x] += sb[threadIdx.x + s];
        __syncthreads();
    }
    a = sa[0], b = sb[0];
}

// grid (chunks, C): partial[c][chunk] = (sum x, sum x^2) over the chunk's share of N*HW.
__global__ void k_bn_partial_moments(const float *x, int C, int64_t HW, int64_t m, int chunks, double *partial)
{
    int c = blockIdx.y, chunk = blockIdx.x;
    int64_t lo = m * chunk / chunks, hi = m * (chunk + 1) / chunks;
    double s = 0, q = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        double v = x[((i / HW) * C + c) * HW + i % HW];
        s += v, q += v * v;
    }
    block_sum2(s, q);
    if (threadIdx.x == 0) partial[((int64_t)c * chunks + chunk) * 2] = s, partial[((int64_t)c * chunks + chunk) * 2 + 1] = q;
}

__global__ void k_bn_finish_stats(const double *partial, int C, int chunks, int64_t m, float *rm, float *rv,
                                  bool training, float momentum, float eps, float *stats)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float mean, invstd;
    if (training) {
        double s = 0, q = 0;
        for (int k = 0; k < chunks; k++) s += partial[((int64_t)c * chunks + k) * 2], q += partial[((int64_t)c * chunks + k) * 2 + 1];
        double mu = s / (double)m, var = q / (double)m - mu * mu;
        if (var < 0) var = 0;
        mean = (float)mu;
        invstd = (float)(1.0 / sqrt(var + eps));
        double unbiased = m > 1 ? var * (double)m / (double)(m - 1) : var;
        rm[c] = (float)((1.0 - momentum) * rm[c] + momentum * mu);
        rv[c] = (float)((1.0 - momentum) * rv[c] + momentum * unbiased);
    } else {
        mean = rm[c];
        invstd = (float)(1.0 / sqrt((double)rv[c] + eps));
    }
    stats[c] = mean, stats[C + c] = invstd;
}

__global__ void k_bn_apply(const float *x, const float *gamma, const float *beta, const float *stats, int C, int64_t HW,
                           int64_t n, float *y)
{
    GRID_STRIDE(i, n)
    {
        int c = (int)((i / HW) % C);
        float scale = gamma[c] * stats[C + c];
        y[i] = (x[i] - stats[c]) * scale + beta[c];
    }
}

// grid (chunks, C): partial[c][chunk] = (sum dy, sum dy * x_hat).
__global__ void k_bn_partial_grads(const float *x, const float *dy, const float *stats, int C, int64_t HW, int64_t m,
                                   int chunks, double *partial)
{
    int c = blockIdx.y, chunk = blockIdx.x;
    int64_t lo = m * chunk / chunks, hi = m * (chunk + 1) / chunks;
    float mean = stats[c], invstd = stats[C + c];
    double a = 0, b = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        int64_t idx = ((i / HW) * C + c) * HW + i % HW;
        a += dy[idx];
        b += (double)dy[idx] * ((x[idx] - mean) * invstd);
    }
    block_sum2(a, b);
    if (threadIdx.x == 0) partial[((int64_t)c * chunks + chunk) * 2] = a, partial[((int64_t)c * chunks + chunk) * 2 + 1] = b;
}

// Finishes the sums; writes dgamma/dbeta and (mean dy, mean dy*x_hat) for the dx kernel.
__global__ void k_bn_finish_grads(const double *partial, int C, int chunks, int64_t m, float *dgamma, float *dbeta,
                                  float *means)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double a = 0, b = 0;
    for (int k = 0; k < chunks; k++) a += partial[((int64_t)c * chunks + k) * 2], b += partial[((int64_t)c * chunks + k) * 2 + 1];
    if (dgamma) dgamma[c] += (float)b;
    if (dbeta) dbeta[c] += (float)a;
    means[c] = (float)(a / (double)m), means[C + c] = (float)(b / (double)m);
}

__global__ void k_bn_dx(const float *x, const float *dy, const float *gamma, const float *stats, const float *means,
                        int C, int64_t HW, int64_t n, bool training, float *dx)
{
    GRID_STRIDE(i, n)
    {
        int c = (int)((i / HW) % C);
        float invstd = stats[C + c], k = gamma[c] * invstd;
        dx[i] += training ? k * (dy[i] - means[c] - (x[i] - stats[c]) * invstd * means[C + c]) : k * dy[i];
    }
}

extern "C" void cuda_batchnorm_forward(Context *ctx, int N, int C, int HW, const float *x, const float *gamma,
                                       const float *beta, float *running_mean, float *running_var, bool training,
                                       float momentum, float eps, float *stats, float *y, void *scratch)
{
    cudaStream_t st = stream_of(ctx);
    int64_t m = (int64_t)N * HW;
    int chunks = bn_chunks(m);
    double *partial = (double *)scratch;
    if (training) k_bn_partial_moments<<<dim3(chunks, C), BN_THREADS, 0, st>>>(x, C, HW, m, chunks, partial);
    k_bn_finish_stats<<<(C + 127) / 128, 128, 0, st>>>(partial, C, chunks, m, running_mean, running_var, training, momentum,
                                                      eps, stats);
    k_bn_apply<<<blocks_for(m * C), 256, 0, st>>>(x, gamma, beta, stats, C, HW, m * C, y);
}

extern "C" void cuda_batchnorm_backward(Context *ctx, int N, int C, int HW, bool training, const float *x,
                                        const float *gamma, const float *stats, const float *dy, float *dx,
                                        float *dgamma, float *dbeta, void *scratch)
{
    cudaStream_t st = stream_of(ctx);
    int64_t m = (int64_t)N * HW;
    int chunks = bn_chunks(m);
    double *partial = (double *)scratch;
    float *means = (float *)(partial + (size_t)C * BN_MAX_CHUNKS * 2);
    k_bn_partial_grads<<<dim3(chunks, C), BN_THREADS, 0, st>>>(x, dy, stats, C, HW, m, chunks, partial);
    k_bn_finish_grads<<<(C + 127) / 128, 128, 0, st>>>(partial, C, chunks, m, dgamma, dbeta, means);
    if (dx) k_bn_dx<<<blocks_for(m * C), 256, 0, st>>>(x, dy, gamma, stats, means, C, HW, m * C, training, dx);
}
