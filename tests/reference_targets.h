/* The reference training batch's targets, shared by the CPU and GPU training-step tests. */
#ifndef TESTS_REFERENCE_TARGETS_H
#define TESTS_REFERENCE_TARGETS_H

#include "detection/matching.h"

enum { REF_MAX_IMAGES = 4, REF_MAX_FACES = 8 };

typedef struct {
    int n_images;
    int counts[REF_MAX_IMAGES];
    float boxes[REF_MAX_IMAGES][REF_MAX_FACES][4], landmarks[REF_MAX_IMAGES][REF_MAX_FACES][10];
    int32_t labels[REF_MAX_IMAGES][REF_MAX_FACES];
    uint8_t has_landmarks[REF_MAX_IMAGES][REF_MAX_FACES];
    ImageTargets targets[REF_MAX_IMAGES];
} ReferenceTargets;

/* Reads manifest.json's train_targets (rows: x1 y1 x2 y2, 10 landmarks, label 1 / -1). */
void reference_targets_read(const char *manifest, ReferenceTargets *t);

#endif
