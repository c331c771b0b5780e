// The linear layer's bias rows (autograd/op_linear.c; its products are cuBLAS's).
#include "cuda_kernels/cuda_common.h"

__global__ void k_bias_rows(float *y, const float *b, int64_t rows, int64_t cols)
{
    GRID_STRIDE(i, rows * cols) y[i] += b[i % cols];
}

__global__ void k_bias_grad_rows(const float *dy, float *db, int64_t rows, int64_t cols)
{
    GRID_STRIDE(c, cols)
    {
        double acc = 0;
        for (int64_t r = 0; r < rows; r++) acc += dy[r * cols + c];
        db[c] += (float)acc;
    }
}

extern "C" {
void cuda_bias_add_rows(Context *ctx, float *y, const float *b, int64_t rows, int64_t cols)
{
    k_bias_rows<<<blocks_for(rows * cols), 256, 0, stream_of(ctx)>>>(y, b, rows, cols);
}
void cuda_bias_grad_rows(Context *ctx, const float *dy, float *db, int64_t rows, int64_t cols)
{
    k_bias_grad_rows<<<blocks_for(cols), 256, 0, stream_of(ctx)>>>(dy, db, rows, cols);
}
}
