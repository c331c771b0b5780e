/* TensorDict: named float32 host tensors as read from a checkpoint file (safetensors or a PyTorch
 * .pth), in file order. Whatever the file's dtype (F32, F64, F16, BF16, I64, I32, U8...), values
 * are converted to float32; `dtype` keeps the original name ("F32", "I64"). The dict owns names
 * and data. params_load_dict moves values into a ParamStore with strict name/shape checking. */
#ifndef NN_TENSOR_DICT_H
#define NN_TENSOR_DICT_H

#include "nn/params.h"

typedef struct {
    char *name;
    char dtype[8];
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    float *data;
} NamedTensor;

typedef struct {
    NamedTensor *items;
    int n, cap;
} TensorDict;

void tensor_dict_init(TensorDict *d);
void tensor_dict_free(TensorDict *d);
/* Takes ownership of data (malloc'd). */
ErrorCode tensor_dict_add(TensorDict *d, const char *name, const char *dtype, int ndim,
                          const int64_t *shape, float *data, Error *err);
NamedTensor *tensor_dict_find(TensorDict *d, const char *name);
/* Removes every entry whose name starts with prefix (e.g. "optimizer." of training checkpoints). */
void tensor_dict_drop_prefix(TensorDict *d, const char *prefix);
/* Strips a leading prefix ("module.") from every name that has it. */
void tensor_dict_strip_prefix(TensorDict *d, const char *prefix);

/* Copies every entry of the store from the dict. Errors name the file (`source`) and the tensor:
 * a store entry missing from the dict, a dict entry the store lacks (unless allow_unexpected; the
 * num_batches_tracked counters are always skipped), or a shape mismatch. Nothing is modified
 * unless everything matches. */
ErrorCode params_load_dict(ParamStore *ps, TensorDict *d, const char *source, bool allow_missing,
                           bool allow_unexpected, Error *err);
/* Builds a dict holding copies of every entry of the store (F32). */
ErrorCode params_to_dict(const ParamStore *ps, TensorDict *d, Error *err);

#endif
