/* Reading PyTorch checkpoints without Python.
 * - Legacy format (torch.save before 1.6, e.g. mobilenet0.25_Final.pth): consecutive pickles —
 *   magic number, protocol version, sys info, the object, the list of storage keys — then each
 *   storage as a little-endian u64 element count followed by its raw bytes.
 * - Zip format (torch >= 1.6): a zip archive <dir>/data.pkl plus <dir>/data/<key> per storage.
 * The object pickle is run on a small pickle machine that understands what state_dicts use
 * (dicts, OrderedDict, tuples, tensors rebuilt by torch._utils._rebuild_tensor_v2 /
 * _rebuild_parameter over persistent-id storages) and treats any other class as an opaque object.
 * The tensors found are those of the top-level dict, or of its "state_dict" / "model" /
 * "model_state_dict" entry when that is a dict (training checkpoints). Strided views are
 * gathered into contiguous arrays; integer and half types are converted to float. */
#ifndef NN_PYTORCH_IMPORT_H
#define NN_PYTORCH_IMPORT_H

#include "nn/formats/tensor_dict.h"

ErrorCode pytorch_read_legacy(const char *path, TensorDict *d, Error *err);
ErrorCode pytorch_read_zip(const char *path, TensorDict *d, Error *err);

#endif
