/* CUDA twins of the CPU ops (built only with HAVE_CUDA; cuda_ops_none.c stands in otherwise). The rule:
 * the twin of autograd/op_<op>.c lives in cuda_kernels/op_<op>.cu and is named cuda_<op>[_<what>]
 * (cuda_conv2d_forward, cuda_softmax_backward); nn/sgd.c's is sgd.cu. Each function mirrors a CPU kernel one
 * to one, takes device pointers, runs on the Context's stream and reports failures through the graph
 * error of its caller (return value: 0 or ErrorCode).
 * Backward functions ACCUMULATE into their outputs, as on the CPU. */
#ifndef CUDA_KERNELS_CUDA_OPS_H
#define CUDA_KERNELS_CUDA_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/conv2d_cpu.h"
#include "tensor/context.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cuda_context_init / cuda_context_destroy (stream + cuBLAS handle; TF32 off unless allow_tf32)
 * are declared in tensor/context.h. */
ErrorCode cuda_sync(Context *ctx, Error *err);
/* Last kernel-launch error, as an ErrorCode with message. */
ErrorCode cuda_check_launch(const char *what, Error *err);

/* C[M,N] = alpha op(A) op(B) + beta C, row-major (as tensor/sgemm.h), through cuBLAS. */
ErrorCode cuda_sgemm(Context *ctx, bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc, Error *err);

/* The same for `batch` independent problems at the given element strides (0 = shared operand). */
ErrorCode cuda_sgemm_strided_batched(Context *ctx, bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
                                     int lda, long long strideA, const float *B, int ldb, long long strideB, float beta,
                                     float *C, int ldc, long long strideC, int batch, Error *err);
/* Workspace floats cuda_conv2d_forward / cuda_conv2d_backward need (all images at once). */
size_t cuda_conv2d_workspace_floats(const Conv2dShape *s);

void cuda_fill(Context *ctx, float *x, float v, int64_t n);
void cuda_axpy(Context *ctx, float *y, const float *x, float a, int64_t n);           /* y += a x */
void cuda_add(Context *ctx, const float *a, const float *b, float *y, int64_t n);      /* y = a + b */
void cuda_scale(Context *ctx, const float *x, float *y, float s, int64_t n);           /* y = s x */
void cuda_sum(Context *ctx, const float *x, float *y, int64_t n);                      /* y[0] = sum x */
void cuda_add_scalar_grad(Context *ctx, float *dx, const float *dy, int64_t n);        /* dx += dy[0] */
void cuda_leaky_relu_forward(Context *ctx, const float *x, float *y, float slope, int64_t n);
void cuda_leaky_relu_backward(Context *ctx, const float *y, const float *dy, float *dx, float slope, int64_t n);

ErrorCode cuda_conv2d_forward(Context *ctx, const Conv2dShape *s, const float *x, const float *w, const float *b,
                              float act, float *y, float *scratch, Error *err);
ErrorCode cuda_conv2d_backward(Context *ctx, const Conv2dShape *s, const float *x, const float *w, const float *dy,
                               float *dx, float *dw, float *db, float *scratch, Error *err);

/* BatchNorm: stats [2C] (mean, invstd) written in training, read in eval; scratch: device memory of
 * cuda_batchnorm_scratch_bytes(C) for the reductions. */
size_t cuda_batchnorm_scratch_bytes(int C);
void cuda_batchnorm_forward(Context *ctx, int N, int C, int HW, const float *x, const float *gamma,
                            const float *beta, float *running_mean, float *running_var, bool training,
                            float momentum, float eps, float *stats, float *y, void *scratch);
void cuda_batchnorm_backward(Context *ctx, int N, int C, int HW, bool training, const float *x, const float *gamma,
                             const float *stats, const float *dy, float *dx, float *dgamma, float *dbeta, void *scratch);

/* Copies [outer, row] blocks into/out of a wider [outer, out_row] tensor at column offset. */
void cuda_concat_copy(Context *ctx, const float *src, float *dst, int64_t outer, int64_t row, int64_t out_row,
                      int64_t offset, bool accumulate_backward);
void cuda_upsample_nearest(Context *ctx, const float *x, float *y, int NC, int H, int W, int Ho, int Wo,
                           bool backward);
/* Gathers a permuted copy: dst[i] = src[offset(i)] (or dst += for accumulate). */
void cuda_permute(Context *ctx, const float *src, float *dst, int ndim, const int64_t *out_shape,
                  const int64_t *src_strides_permuted, bool accumulate);
void cuda_softmax_forward(Context *ctx, const float *x, float *y, int64_t rows, int64_t C);
void cuda_softmax_backward(Context *ctx, const float *y, const float *dy, float *dx, int64_t rows, int64_t C);
/* Losses: labels/select/target are device arrays; the scalar loss goes to out[0]. */
void cuda_cross_entropy_forward(Context *ctx, const float *z, const int32_t *labels, const uint8_t *select,
                                int64_t rows, int64_t C, float *out);
void cuda_cross_entropy_backward(Context *ctx, const float *z, const int32_t *labels, const uint8_t *select,
                                 int64_t rows, int64_t C, const float *dl, float *dz);
void cuda_smooth_l1_forward(Context *ctx, const float *x, const float *t, const uint8_t *select, int64_t rows,
                            int64_t k, float *out);
void cuda_smooth_l1_backward(Context *ctx, const float *x, const float *t, const uint8_t *select, int64_t rows,
                             int64_t k, const float *dl, float *dx);
void cuda_global_avg_pool(Context *ctx, const float *x, float *y, int64_t planes, int64_t hw, bool backward);
void cuda_max_pool2d_forward(Context *ctx, const float *x, float *y, int32_t *argmax, int planes, int H, int W,
                             int Ho, int Wo, int k, int stride, int pad);
void cuda_max_pool2d_backward_full(Context *ctx, const float *dy, const int32_t *argmax, float *dx, int planes, int H,
                                   int W, int Ho, int Wo, int k, int stride, int pad);
void cuda_bias_add_rows(Context *ctx, float *y, const float *b, int64_t rows, int64_t cols);     /* y[r][c] += b[c] */
void cuda_bias_grad_rows(Context *ctx, const float *dy, float *db, int64_t rows, int64_t cols);  /* db[c] += sum_r */
/* One fused SGD update over all parameters in one launch: v = m v + (g + wd w); w -= lr v.
 * w, g, v: device arrays of n_params device pointers; offsets: device array of n_params + 1 prefix
 * sums of the parameter sizes. */
void cuda_sgd_update_all(Context *ctx, float *const *w, float *const *g, float *const *v, const int64_t *offsets,
                         int n_params, float lr, float momentum, float wd);

#ifdef __cplusplus
}
#endif

#endif
