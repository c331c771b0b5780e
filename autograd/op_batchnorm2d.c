/* batchnorm2d. Training: statistics over (N, H, W) per channel, accumulated in double; the saved
 * mean and inverse std let backward recompute x_hat from x instead of storing it. */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "cuda_kernels/cuda_ops.h"

typedef struct {
    int N, C, HW;
    bool training;
    float eps;
    const float *gamma, *beta;
    float *mean, *invstd;       /* [C], saved for backward */
    const float *x;
    float *y;
    const float *dy;
    float *dx, *dgamma, *dbeta;
    Tensor *running_mean, *running_var;
    float momentum;
} BatchNormJob;

static void bn_forward_channel(void *arg, int c)
{
    BatchNormJob *j = arg;
    size_t hw = (size_t)j->HW;
    float mean, invstd;
    if (j->training) {
        double sum = 0, sq = 0;
        for (int n = 0; n < j->N; n++) {
            const float *x = j->x + ((size_t)n * j->C + c) * hw;
            for (size_t i = 0; i < hw; i++) sum += x[i];
        }
        double m = (double)j->N * hw;
        double mu = sum / m;
        for (int n = 0; n < j->N; n++) {
            const float *x = j->x + ((size_t)n * j->C + c) * hw;
            for (size_t i = 0; i < hw; i++) {
                double d = x[i] - mu;
                sq += d * d;
            }
        }
        double var = sq / m;
        mean = (float)mu;
        invstd = (float)(1.0 / sqrt(var + j->eps));
        float *rm = j->running_mean->data, *rv = j->running_var->data;
        double unbiased = m > 1 ? sq / (m - 1) : var;
        rm[c] = (float)((1.0 - j->momentum) * rm[c] + j->momentum * mu);
        rv[c] = (float)((1.0 - j->momentum) * rv[c] + j->momentum * unbiased);
    } else {
        mean = j->running_mean->data[c];
        invstd = (float)(1.0 / sqrt((double)j->running_var->data[c] + j->eps));
    }
    j->mean[c] = mean;
    j->invstd[c] = invstd;
    float scale = j->gamma[c] * invstd, shift = j->beta[c] - mean * scale;
    for (int n = 0; n < j->N; n++) {
        const float *x = j->x + ((size_t)n * j->C + c) * hw;
        float *y = j->y + ((size_t)n * j->C + c) * hw;
        for (size_t i = 0; i < hw; i++) y[i] = x[i] * scale + shift;
    }
}

static void bn_backward_channel(void *arg, int c)
{
    BatchNormJob *j = arg;
    size_t hw = (size_t)j->HW;
    float mean = j->mean[c], invstd = j->invstd[c];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int n = 0; n < j->N; n++) {
        const float *x = j->x + ((size_t)n * j->C + c) * hw;
        const float *dy = j->dy + ((size_t)n * j->C + c) * hw;
        for (size_t i = 0; i < hw; i++) {
            sum_dy += dy[i];
            sum_dy_xhat += (double)dy[i] * ((x[i] - mean) * invstd);
        }
    }
    if (j->dgamma) j->dgamma[c] += (float)sum_dy_xhat;
    if (j->dbeta) j->dbeta[c] += (float)sum_dy;
    if (!j->dx) return;
    float g = j->gamma[c];
    if (j->training) {
        /* dx = g*invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat)) */
        double m = (double)j->N * hw;
        float mdy = (float)(sum_dy / m), mdyx = (float)(sum_dy_xhat / m), k = g * invstd;
        for (int n = 0; n < j->N; n++) {
            const float *x = j->x + ((size_t)n * j->C + c) * hw;
            const float *dy = j->dy + ((size_t)n * j->C + c) * hw;
            float *dx = j->dx + ((size_t)n * j->C + c) * hw;
            for (size_t i = 0; i < hw; i++)
                dx[i] += k * (dy[i] - mdy - (x[i] - mean) * invstd * mdyx);
        }
    } else {
        float k = g * invstd;
        for (int n = 0; n < j->N; n++) {
            const float *dy = j->dy + ((size_t)n * j->C + c) * hw;
            float *dx = j->dx + ((size_t)n * j->C + c) * hw;
            for (size_t i = 0; i < hw; i++) dx[i] += k * dy[i];
        }
    }
}

static void batchnorm2d_backward(Graph *g, Var *y)
{
    BatchNormJob *j = y->saved;
    Var *x = y->inputs[0], *gamma = y->inputs[1], *beta = y->inputs[2];
    j->dy = y->grad.data;
    j->dx = x->requires_grad ? var_grad(g, x) : NULL;
    j->dgamma = gamma->requires_grad ? var_grad(g, gamma) : NULL;
    j->dbeta = beta->requires_grad ? var_grad(g, beta) : NULL;
    if (!graph_ok(g)) return;
    if (var_on_cuda(y)) {
        void *scratch = graph_workspace(g, cuda_batchnorm_scratch_bytes(j->C));
        if (!scratch) return;
        cuda_batchnorm_backward(g->ctx, j->N, j->C, j->HW, j->training, j->x, j->gamma, j->mean, j->dy, j->dx,
                                j->dgamma, j->dbeta, scratch);
        graph_check_cuda(g, "batchnorm2d backward");
        return;
    }
    threadpool_run(g->ctx->pool, j->C, bn_backward_channel, j);
}

Var *ag_batchnorm2d(Graph *g, Var *x, Var *gamma, Var *beta, Tensor *running_mean,
                    Tensor *running_var, bool training, float momentum, float eps)
{
    if (!graph_ok(g)) return NULL;
    if (!x || !gamma || !beta || !running_mean || !running_var)
        return graph_fail(g, ERR_ARG, "batchnorm2d: NULL input");
    if (x->value.ndim != 4) return graph_fail(g, ERR_SHAPE, "batchnorm2d: input must be 4-d");
    int64_t C = x->value.shape[1];
    if (tensor_numel(&gamma->value) != C || tensor_numel(&beta->value) != C ||
        tensor_numel(running_mean) != C || tensor_numel(running_var) != C)
        return graph_fail(g, ERR_SHAPE, "batchnorm2d: %lld channels but parameters of another size",
                          (long long)C);
    Var *inputs[3] = {x, gamma, beta};
    Var *y = graph_op_output(g, "batchnorm2d", inputs, 3, 4, x->value.shape, batchnorm2d_backward);
    if (!y) return NULL;
    BatchNormJob *j = graph_host_scratch(g, sizeof *j);
    /* mean and inverse std per channel, where the kernels run */
    float *stats = var_on_cuda(x) ? graph_scratch(g, 2 * (size_t)C * sizeof(float))
                                  : graph_host_scratch(g, 2 * (size_t)C * sizeof(float));
    if (!j || !stats) return NULL;
    memset(j, 0, sizeof *j);
    j->N = (int)x->value.shape[0], j->C = (int)C;
    j->HW = (int)(x->value.shape[2] * x->value.shape[3]);
    j->training = training, j->eps = eps, j->momentum = momentum;
    j->gamma = gamma->value.data, j->beta = beta->value.data;
    j->mean = stats, j->invstd = stats + C;
    j->x = x->value.data, j->y = y->value.data;
    j->running_mean = running_mean, j->running_var = running_var;
    y->saved = j;
    if (var_on_cuda(x)) {
        void *scratch = graph_workspace(g, cuda_batchnorm_scratch_bytes(j->C));
        if (!scratch) return NULL;
        cuda_batchnorm_forward(g->ctx, j->N, j->C, j->HW, j->x, j->gamma, j->beta, running_mean->data, running_var->data,
                               training, momentum, eps, stats, j->y, scratch);
        return graph_check_cuda(g, "batchnorm2d") ? y : NULL;
    }
    threadpool_run(g->ctx->pool, (int)C, bn_forward_channel, j);
    return y;
}
