/* Element types of checkpoint files, by safetensors name (F32, F64, F16, BF16, I64, I32, I16, I8,
 * U8, BOOL), and their conversion to float32. */
#ifndef NN_DTYPE_H
#define NN_DTYPE_H

#include <stddef.h>
#include <stdint.h>

/* Bytes per element, 0 for an unknown dtype. */
size_t dtype_size(const char *dtype);
/* Converts n little-endian elements of dtype at src to float. */
void dtype_to_float(const char *dtype, const void *src, float *dst, int64_t n);

#endif
