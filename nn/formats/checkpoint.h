/* Reading a checkpoint of any supported format, chosen by the file's first bytes: safetensors, PyTorch zip
 * (torch.save since 1.6) or PyTorch legacy pickle. The formats (nn/formats/) depend on TensorDict only;
 * this dispatcher is the one file that knows them all. */
#ifndef NN_FORMATS_CHECKPOINT_H
#define NN_FORMATS_CHECKPOINT_H

#include "nn/formats/tensor_dict.h"

ErrorCode checkpoint_read(const char *path, TensorDict *d, Error *err);

#endif
