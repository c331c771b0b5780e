/* Loader: batches of augmented training images, prepared in the background. A producer thread
 * builds batch k+1 (its samples spread over `workers` threads) while the trainer uses batch k.
 * Reproducible: the epoch's order is a shuffle seeded by (seed, epoch) and every sample's
 * augmentation RNG by (seed, epoch, position), so results do not depend on the worker count.
 * Images that cannot be read are left out of their batch and counted (Batch.failed, with the
 * first message in Batch.error). */
#ifndef DETECTION_LOADER_H
#define DETECTION_LOADER_H

#include "detection/augment.h"

enum { LOADER_MAX_FACES = 1024 };

typedef struct {
    int n;              /* images in this batch */
    int size;
    float *images;      /* n x 3 x size x size */
    float *targets;     /* per image LOADER_MAX_FACES x FACE_FIELDS */
    int *n_faces;
    int failed;
    char error[512];
} Batch;

typedef struct Loader Loader;

/* pinned: batch buffers in page-locked memory (training on the GPU copies them faster). */
Loader *loader_create(const TrainSet *set, const AugmentOptions *opt, int batch_size, int workers, uint64_t seed,
                      bool pinned, Error *err);
void loader_destroy(Loader *l);
int loader_batches_per_epoch(const Loader *l);
/* Data-parallel training: this process is rank `rank` of `world` and reads its share of each batch.
 * Global batch k is positions [k B world, (k+1) B world) of the epoch's order (B = batch_size), rank r
 * taking the r-th of world equal parts; the order is padded to a multiple of world with its first
 * images (as PyTorch's DistributedSampler does), so that every rank gets as many images as the others
 * and the ranks together read the epoch (plus fewer than world repeats). The order and each image's
 * augmentation depend on (seed, epoch, position) only: the same for any world size. Call before
 * loader_begin_epoch. */
void loader_set_shard(Loader *l, int rank, int world);
/* The rule above: rank's share of global batch k of an epoch of n_images, as epoch positions
 * [*first, *first + count) (positions past n_images - 1 stand for position - n_images); returns count. */
int loader_shard(int n_images, int batch, int rank, int world, int k, int *first);
/* Starts an epoch at batch first_batch (resume). */
void loader_begin_epoch(Loader *l, int epoch, int first_batch);
/* The next batch of the epoch, NULL when the epoch is over. Valid until the next call. */
const Batch *loader_next(Loader *l);

#endif
