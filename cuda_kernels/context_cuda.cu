// CUDA side of the Context: one stream and one cuBLAS handle, created once per process.
#include <cstdlib>

#include "cuda_kernels/cuda_common.h"

extern "C" ErrorCode cuda_context_init(Context *ctx, bool allow_tf32, Error *err)
{
    if (ctx->cuda) return ERR_OK;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        return error_set(err, ERR_DEVICE, "no CUDA device available");
    }
    CudaState *s = (CudaState *)calloc(1, sizeof *s);
    if (!s) return error_set(err, ERR_OOM, "out of host memory");
    // A blocking stream: cudaMemcpy/cudaMemset on the legacy default stream (tensor/device.h) stay
    // ordered with the kernels, so host copies of results never race them.
    cudaError_t e = cudaStreamCreate(&s->stream);
    if (e != cudaSuccess) {
        free(s);
        return error_set(err, ERR_DEVICE, "cudaStreamCreate failed at %s:%d: %s", __FILE__, __LINE__, cudaGetErrorString(e));
    }
    cublasStatus_t b = cublasCreate(&s->blas);
    if (b != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(s->stream);
        free(s);
        return error_set(err, ERR_DEVICE, "cublasCreate failed at %s:%d: status %d", __FILE__, __LINE__, (int)b);
    }
    cublasSetStream(s->blas, s->stream);
    cublasSetMathMode(s->blas, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH);
    ctx->cuda = s;
    return ERR_OK;
}

extern "C" void cuda_context_destroy(Context *ctx)
{
    CudaState *s = (CudaState *)ctx->cuda;
    if (!s) return;
    cublasDestroy(s->blas);
    cudaStreamDestroy(s->stream);
    free(s);
    ctx->cuda = nullptr;
}

extern "C" ErrorCode cuda_sync(Context *ctx, Error *err)
{
    cudaError_t e = cudaStreamSynchronize(stream_of(ctx));
    if (e != cudaSuccess)
        return error_set(err, ERR_DEVICE, "CUDA stream failed at %s:%d: %s", __FILE__, __LINE__, cudaGetErrorString(e));
    return ERR_OK;
}

extern "C" ErrorCode cuda_check_launch(const char *what, Error *err)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return error_set(err, ERR_DEVICE, "%s: kernel launch failed: %s", what, cudaGetErrorString(e));
    return ERR_OK;
}

extern "C" ErrorCode cuda_sgemm(Context *ctx, bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
                                int lda, const float *B, int ldb, float beta, float *C, int ldc, Error *err)
{
    if (M <= 0 || N <= 0) return ERR_OK;
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
    cublasStatus_t s = cublasSgemm(blas_of(ctx), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M,
                                   K, &alpha, B, ldb, A, lda, &beta, C, ldc);
    if (s != CUBLAS_STATUS_SUCCESS)
        return error_set(err, ERR_DEVICE, "cublasSgemm(%d,%d,%d) failed at %s:%d: status %d", M, N, K, __FILE__, __LINE__,
                         (int)s);
    return ERR_OK;
}

extern "C" ErrorCode cuda_sgemm_strided_batched(Context *ctx, bool ta, bool tb, int M, int N, int K, float alpha,
                                                const float *A, int lda, long long strideA, const float *B, int ldb,
                                                long long strideB, float beta, float *C, int ldc, long long strideC,
                                                int batch, Error *err)
{
    if (M <= 0 || N <= 0 || batch <= 0) return ERR_OK;
    cublasStatus_t s = cublasSgemmStridedBatched(blas_of(ctx), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                 N, M, K, &alpha, B, ldb, strideB, A, lda, strideA, &beta, C, ldc,
                                                 strideC, batch);
    if (s != CUBLAS_STATUS_SUCCESS)
        return error_set(err, ERR_DEVICE, "cublasSgemmStridedBatched(%d,%d,%d,x%d) failed at %s:%d: status %d", M, N, K,
                         batch, __FILE__, __LINE__, (int)s);
    return ERR_OK;
}
