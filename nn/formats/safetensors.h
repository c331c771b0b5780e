/* safetensors (https://github.com/huggingface/safetensors): u64 little-endian header size N, an
 * N-byte JSON header {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
 * "__metadata__": {...}}, then the raw little-endian data. Our native checkpoint format.
 * The writer emits F32 tensors in dict order with optional string metadata, into PATH.tmp, fsyncs
 * and renames, so a crash never leaves a half-written checkpoint under the final name. */
#ifndef NN_SAFETENSORS_H
#define NN_SAFETENSORS_H

#include "nn/formats/tensor_dict.h"

ErrorCode safetensors_read(const char *path, TensorDict *d, Error *err);
/* The same from a buffer of `size` bytes (e.g. weights built into the binary); name is for errors. */
ErrorCode safetensors_read_memory(const void *data, size_t size, const char *name, TensorDict *d, Error *err);
/* metadata: n_meta pairs of key/value strings (may be 0). */
ErrorCode safetensors_write(const char *path, const TensorDict *d, const char *const *meta_keys,
                            const char *const *meta_values, int n_meta, Error *err);
/* Reads one metadata value (malloc'd copy into *value, NULL when absent). */
ErrorCode safetensors_read_metadata(const char *path, const char *key, char **value, Error *err);

#endif
