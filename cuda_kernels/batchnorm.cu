// batchnorm2d on the GPU: one block per channel, statistics in double (as the CPU op), so the
// two agree to rounding. Running statistics are updated by the block that computed them.
#include "cuda_kernels/cuda_common.h"

template <typename T> __device__ T block_sum(T v, T *shared)
{
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    T r = shared[0];
    __syncthreads();
    return r;
}

__global__ void k_bn_fwd(int N, int C, int64_t HW, const float *x, const float *gamma, const float *beta, float *rm,
                         float *rv, bool training, float momentum, float eps, float *stats, float *y)
{
    __shared__ double sh[256];
    int c = blockIdx.x;
    int64_t m = (int64_t)N * HW;
    float mean, invstd;
    if (training) {
        double acc = 0;
        for (int64_t i = threadIdx.x; i < m; i += blockDim.x) acc += x[((i / HW) * C + c) * HW + i % HW];
        double mu = block_sum(acc, sh) / (double)m;
        acc = 0;
        for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
            double d = x[((i / HW) * C + c) * HW + i % HW] - mu;
            acc += d * d;
        }
        double sq = block_sum(acc, sh);
        double var = sq / (double)m;
        mean = (float)mu;
        invstd = (float)(1.0 / sqrt(var + eps));
        if (threadIdx.x == 0) {
            double unbiased = m > 1 ? sq / (double)(m - 1) : var;
            rm[c] = (float)((1.0 - momentum) * rm[c] + momentum * mu);
            rv[c] = (float)((1.0 - momentum) * rv[c] + momentum * unbiased);
        }
    } else {
        mean = rm[c];
        invstd = (float)(1.0 / sqrt((double)rv[c] + eps));
    }
    if (threadIdx.x == 0) stats[c] = mean, stats[C + c] = invstd;
    float scale = gamma[c] * invstd, shift = beta[c] - mean * scale;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
        int64_t idx = ((i / HW) * C + c) * HW + i % HW;
        y[idx] = x[idx] * scale + shift;
    }
}

__global__ void k_bn_bwd(int N, int C, int64_t HW, bool training, const float *x, const float *gamma,
                         const float *stats, const float *dy, float *dx, float *dgamma, float *dbeta)
{
    __shared__ double sh[256];
    int c = blockIdx.x;
    int64_t m = (int64_t)N * HW;
    float mean = stats[c], invstd = stats[C + c];
    double a = 0, b = 0;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
        int64_t idx = ((i / HW) * C + c) * HW + i % HW;
        a += dy[idx];
        b += (double)dy[idx] * ((x[idx] - mean) * invstd);
    }
    double sum_dy = block_sum(a, sh), sum_dy_xhat = block_sum(b, sh);
    if (threadIdx.x == 0) {
        if (dgamma) dgamma[c] += (float)sum_dy_xhat;
        if (dbeta) dbeta[c] += (float)sum_dy;
    }
    if (!dx) return;
    float k = gamma[c] * invstd;
    float mdy = (float)(sum_dy / (double)m), mdyx = (float)(sum_dy_xhat / (double)m);
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
        int64_t idx = ((i / HW) * C + c) * HW + i % HW;
        dx[idx] += training ? k * (dy[idx] - mdy - (x[idx] - mean) * invstd * mdyx) : k * dy[idx];
    }
}

extern "C" void cuda_batchnorm_forward(Context *ctx, int N, int C, int HW, const float *x, const float *gamma,
                                       const float *beta, float *running_mean, float *running_var, bool training,
                                       float momentum, float eps, float *stats, float *y)
{
    k_bn_fwd<<<C, 256, 0, stream_of(ctx)>>>(N, C, HW, x, gamma, beta, running_mean, running_var, training, momentum, eps,
                                            stats, y);
}

extern "C" void cuda_batchnorm_backward(Context *ctx, int N, int C, int HW, bool training, const float *x,
                                        const float *gamma, const float *stats, const float *dy, float *dx,
                                        float *dgamma, float *dbeta)
{
    k_bn_bwd<<<C, 256, 0, stream_of(ctx)>>>(N, C, HW, training, x, gamma, stats, dy, dx, dgamma, dbeta);
}
