#include "tests/fuzz/fuzz_targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "detection/image.h"
#include "detection/matfile.h"
#include "detection/train_data.h"
#include "detection/wider_data.h"
#include "nn/formats/checkpoint.h"
#include "nn/formats/safetensors.h"
#include "nn/formats/tensor_dict.h"

/* The parsers read paths: the bytes go to a per-process file under /dev/shm (or /tmp) whose name
 * ends as the parser expects (".mat" selects the MAT reader of trainset_load). */
static const char *as_file(const uint8_t *data, size_t size, const char *suffix)
{
    static char path[256];
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/retina_fuzz_%d%s", dir, (int)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    if (size && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return NULL;
    }
    return fclose(f) == 0 ? path : NULL;
}

int fuzz_matfile(const uint8_t *data, size_t size)
{
    const char *path = as_file(data, size, ".mat");
    if (!path) return 0;
    Error err = {0};
    MatFile mf;
    if (matfile_read(path, &mf, &err) == ERR_OK) matfile_free(&mf);
    TrainSet set; /* the training reader's walk over event_list / file_list / face_bbx_list */
    error_clear(&err);
    if (trainset_load(path, "/nonexistent", &set, &err) == ERR_OK) trainset_free(&set);
    unlink(path);
    return 0;
}

int fuzz_safetensors(const uint8_t *data, size_t size)
{
    Error err = {0};
    TensorDict d;
    if (safetensors_read_memory(data, size, "fuzz input", &d, &err) == ERR_OK) tensor_dict_free(&d);
    return 0;
}

int fuzz_checkpoint(const uint8_t *data, size_t size)
{
    const char *path = as_file(data, size, ".pth");
    if (!path) return 0;
    Error err = {0};
    TensorDict d;
    if (checkpoint_read(path, &d, &err) == ERR_OK) tensor_dict_free(&d);
    unlink(path);
    return 0;
}

int fuzz_labels(const uint8_t *data, size_t size)
{
    const char *path = as_file(data, size, ".txt");
    if (!path) return 0;
    Error err = {0};
    TrainSet set;
    if (trainset_load(path, "/nonexistent", &set, &err) == ERR_OK) trainset_free(&set);
    unlink(path);
    return 0;
}

int fuzz_predictions(const uint8_t *data, size_t size)
{
    const char *path = as_file(data, size, ".txt");
    if (!path) return 0;
    Error err = {0};
    WiderPredImage im;
    wider_pred_file_read(path, &im, &err);
    free(im.name);
    free(im.boxes);
    unlink(path);
    return 0;
}

/* The middle third of the image each way (at least a pixel), as a training crop asks for a region. */
static void pick_middle(void *ctx, int W, int H, int *x0, int *y0, int *w, int *h)
{
    (void)ctx;
    *x0 = W / 3, *y0 = H / 3, *w = W - 2 * (W / 3), *h = H - 2 * (H / 3);
}

int fuzz_image(const uint8_t *data, size_t size)
{
    const char *path = as_file(data, size, ".img");
    if (!path) return 0;
    Error err = {0};
    Image img;
    if (image_load(path, &img, &err) == ERR_OK) image_free(&img);
    /* the training loader's cropped decoding, at full scale and at the smallest DCT scale */
    ImageRegion middle = {pick_middle, NULL};
    for (int scaled = 0; scaled < 2; scaled++)
        if (image_load_jpeg_region(path, scaled, scaled, &middle, &img, &err) == ERR_OK) image_free(&img);
    unlink(path);
    return 0;
}

const FuzzTargetEntry fuzz_targets[] = {{"matfile", fuzz_matfile},     {"safetensors", fuzz_safetensors},
                                        {"checkpoint", fuzz_checkpoint}, {"labels", fuzz_labels},
                                        {"predictions", fuzz_predictions}, {"image", fuzz_image}};
const int fuzz_target_count = sizeof fuzz_targets / sizeof fuzz_targets[0];
