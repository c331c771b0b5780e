/* The CUDA twins of cuda_kernels/cuda_ops.h in builds without CUDA (make CUDA=0, or no nvcc): the ops
 * call their twin only for tensors on the GPU, which such a build never has, so these are never reached;
 * they exist so that the ops dispatch with `if (var_on_cuda(...))` and no #ifdef. The ones that report
 * errors say the build has no CUDA; the others do nothing. Generated from cuda_ops.h's declarations. */
#include "cuda_kernels/cuda_ops.h"

ErrorCode cuda_sync(Context *ctx, Error *err)
{
    (void)ctx, (void)err;
    return error_set(err, ERR_DEVICE, "this build has no CUDA");
}

ErrorCode cuda_check_launch(const char *what, Error *err)
{
    (void)what, (void)err;
    return error_set(err, ERR_DEVICE, "this build has no CUDA");
}

ErrorCode cuda_sgemm(Context *ctx, bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc, Error *err)
{
    (void)ctx, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb,
        (void)beta, (void)C, (void)ldc, (void)err;
    return error_set(err, ERR_DEVICE, "this build has no CUDA");
}

ErrorCode cuda_sgemm_strided_batched(Context *ctx, bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
                                     int lda, long long strideA, const float *B, int ldb, long long strideB,
                                     float beta, float *C, int ldc, long long strideC, int batch, Error *err)
{
    (void)ctx, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)strideA, (void)B,
        (void)ldb, (void)strideB, (void)beta, (void)C, (void)ldc, (void)strideC, (void)batch, (void)err;
    return error_set(err, ERR_DEVICE, "this build has no CUDA");
}

size_t cuda_conv2d_workspace_floats(const Conv2dShape *s)
{
    (void)s;
    return 0;
}

void cuda_fill(Context *ctx, float *x, float v, int64_t n)
{
    (void)ctx, (void)x, (void)v, (void)n;
}

void cuda_axpy(Context *ctx, float *y, const float *x, float a, int64_t n)
{
    (void)ctx, (void)y, (void)x, (void)a, (void)n;
}

void cuda_add(Context *ctx, const float *a, const float *b, float *y, int64_t n)
{
    (void)ctx, (void)a, (void)b, (void)y, (void)n;
}

void cuda_scale(Context *ctx, const float *x, float *y, float s, int64_t n)
{
    (void)ctx, (void)x, (void)y, (void)s, (void)n;
}

void cuda_sum(Context *ctx, const float *x, float *y, int64_t n)
{
    (void)ctx, (void)x, (void)y, (void)n;
}

void cuda_add_scalar_grad(Context *ctx, float *dx, const float *dy, int64_t n)
{
    (void)ctx, (void)dx, (void)dy, (void)n;
}

void cuda_leaky_relu_forward(Context *ctx, const float *x, float *y, float slope, int64_t n)
{
    (void)ctx, (void)x, (void)y, (void)slope, (void)n;
}

void cuda_leaky_relu_backward(Context *ctx, const float *y, const float *dy, float *dx, float slope, int64_t n)
{
    (void)ctx, (void)y, (void)dy, (void)dx, (void)slope, (void)n;
}

ErrorCode cuda_conv2d_forward(Context *ctx, const Conv2dShape *s, const float *x, const float *w, const float *b,
                              float act, float *y, float *scratch, Error *err)
{
    (void)ctx, (void)s, (void)x, (void)w, (void)b, (void)act, (void)y, (void)scratch, (void)err;
    return error_set(err, ERR_DEVICE, "this build has no CUDA");
}

ErrorCode cuda_conv2d_backward(Context *ctx, const Conv2dShape *s, const float *x, const float *w, const float *dy,
                               float *dx, float *dw, float *db, float *scratch, Error *err)
{
    (void)ctx, (void)s, (void)x, (void)w, (void)dy, (void)dx, (void)dw, (void)db, (void)scratch, (void)err;
    return error_set(err, ERR_DEVICE, "this build has no CUDA");
}

size_t cuda_batchnorm_scratch_bytes(int C)
{
    (void)C;
    return 0;
}

void cuda_batchnorm_forward(Context *ctx, int N, int C, int HW, const float *x, const float *gamma, const float *beta,
                            float *running_mean, float *running_var, bool training, float momentum, float eps,
                            float *stats, float *y, void *scratch)
{
    (void)ctx, (void)N, (void)C, (void)HW, (void)x, (void)gamma, (void)beta, (void)running_mean, (void)running_var,
        (void)training, (void)momentum, (void)eps, (void)stats, (void)y, (void)scratch;
}

void cuda_batchnorm_backward(Context *ctx, int N, int C, int HW, bool training, const float *x, const float *gamma,
                             const float *stats, const float *dy, float *dx, float *dgamma, float *dbeta,
                             void *scratch)
{
    (void)ctx, (void)N, (void)C, (void)HW, (void)training, (void)x, (void)gamma, (void)stats, (void)dy, (void)dx,
        (void)dgamma, (void)dbeta, (void)scratch;
}

void cuda_concat_copy(Context *ctx, const float *src, float *dst, int64_t outer, int64_t row, int64_t out_row,
                      int64_t offset, bool accumulate_backward)
{
    (void)ctx, (void)src, (void)dst, (void)outer, (void)row, (void)out_row, (void)offset, (void)accumulate_backward;
}

void cuda_upsample_nearest(Context *ctx, const float *x, float *y, int NC, int H, int W, int Ho, int Wo,
                           bool backward)
{
    (void)ctx, (void)x, (void)y, (void)NC, (void)H, (void)W, (void)Ho, (void)Wo, (void)backward;
}

void cuda_permute(Context *ctx, const float *src, float *dst, int ndim, const int64_t *out_shape,
                  const int64_t *src_strides_permuted, bool accumulate)
{
    (void)ctx, (void)src, (void)dst, (void)ndim, (void)out_shape, (void)src_strides_permuted, (void)accumulate;
}

void cuda_softmax_forward(Context *ctx, const float *x, float *y, int64_t rows, int64_t C)
{
    (void)ctx, (void)x, (void)y, (void)rows, (void)C;
}

void cuda_softmax_backward(Context *ctx, const float *y, const float *dy, float *dx, int64_t rows, int64_t C)
{
    (void)ctx, (void)y, (void)dy, (void)dx, (void)rows, (void)C;
}

void cuda_cross_entropy_forward(Context *ctx, const float *z, const int32_t *labels, const uint8_t *select,
                                int64_t rows, int64_t C, float *out)
{
    (void)ctx, (void)z, (void)labels, (void)select, (void)rows, (void)C, (void)out;
}

void cuda_cross_entropy_backward(Context *ctx, const float *z, const int32_t *labels, const uint8_t *select,
                                 int64_t rows, int64_t C, const float *dl, float *dz)
{
    (void)ctx, (void)z, (void)labels, (void)select, (void)rows, (void)C, (void)dl, (void)dz;
}

void cuda_smooth_l1_forward(Context *ctx, const float *x, const float *t, const uint8_t *select, int64_t rows,
                            int64_t k, float *out)
{
    (void)ctx, (void)x, (void)t, (void)select, (void)rows, (void)k, (void)out;
}

void cuda_smooth_l1_backward(Context *ctx, const float *x, const float *t, const uint8_t *select, int64_t rows,
                             int64_t k, const float *dl, float *dx)
{
    (void)ctx, (void)x, (void)t, (void)select, (void)rows, (void)k, (void)dl, (void)dx;
}

void cuda_global_avg_pool(Context *ctx, const float *x, float *y, int64_t planes, int64_t hw, bool backward)
{
    (void)ctx, (void)x, (void)y, (void)planes, (void)hw, (void)backward;
}

void cuda_max_pool2d_forward(Context *ctx, const float *x, float *y, int32_t *argmax, int planes, int H, int W,
                             int Ho, int Wo, int k, int stride, int pad)
{
    (void)ctx, (void)x, (void)y, (void)argmax, (void)planes, (void)H, (void)W, (void)Ho, (void)Wo, (void)k,
        (void)stride, (void)pad;
}

void cuda_max_pool2d_backward_full(Context *ctx, const float *dy, const int32_t *argmax, float *dx, int planes, int H,
                                   int W, int Ho, int Wo, int k, int stride, int pad)
{
    (void)ctx, (void)dy, (void)argmax, (void)dx, (void)planes, (void)H, (void)W, (void)Ho, (void)Wo, (void)k,
        (void)stride, (void)pad;
}

void cuda_bias_add_rows(Context *ctx, float *y, const float *b, int64_t rows, int64_t cols)
{
    (void)ctx, (void)y, (void)b, (void)rows, (void)cols;
}

void cuda_bias_grad_rows(Context *ctx, const float *dy, float *db, int64_t rows, int64_t cols)
{
    (void)ctx, (void)dy, (void)db, (void)rows, (void)cols;
}

void cuda_sgd_update_all(Context *ctx, float *const *w, float *const *g, float *const *v, const int64_t *offsets,
                         int n_params, float lr, float momentum, float wd)
{
    (void)ctx, (void)w, (void)g, (void)v, (void)offsets, (void)n_params, (void)lr, (void)momentum, (void)wd;
}
