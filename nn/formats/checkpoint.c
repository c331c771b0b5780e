#include "nn/formats/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "nn/formats/pytorch_import.h"
#include "nn/formats/safetensors.h"

ErrorCode checkpoint_read(const char *path, TensorDict *d, Error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got >= 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4)
        return pytorch_read_zip(path, d, err);
    if (got >= 2 && magic[0] == 0x80 && magic[1] <= 5) return pytorch_read_legacy(path, d, err);
    if (got == 8) return safetensors_read(path, d, err);
    return error_set(err, ERR_FORMAT, "%s: not a checkpoint (safetensors or PyTorch .pth)", path);
}
