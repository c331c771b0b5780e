/* Fuzz targets: one function per parser of untrusted bytes, taking the bytes as a file would hold
 * them. tests/fuzz/libfuzzer_main.c turns one into a libFuzzer binary (make fuzz); the Check suite
 * replays tests/fuzz/regressions/<target>/ and the seed files through the same functions. A target
 * returns 0 whatever the input: a crash, a sanitizer report or a leak is the finding. */
#ifndef TESTS_FUZZ_FUZZ_TARGETS_H
#define TESTS_FUZZ_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

typedef int (*FuzzTarget)(const uint8_t *data, size_t size);

int fuzz_matfile(const uint8_t *data, size_t size);      /* MAT v5 (ground truth, training .mat) */
int fuzz_safetensors(const uint8_t *data, size_t size);  /* safetensors */
int fuzz_checkpoint(const uint8_t *data, size_t size);   /* PyTorch .pth: zip or legacy pickle */
int fuzz_labels(const uint8_t *data, size_t size);       /* label.txt / wider_face_train_bbx_gt.txt */
int fuzz_predictions(const uint8_t *data, size_t size);  /* WIDER prediction file */
int fuzz_image(const uint8_t *data, size_t size);        /* JPEG, PNG, WebP (+ EXIF) */

typedef struct {
    const char *name;
    FuzzTarget fn;
} FuzzTargetEntry;

extern const FuzzTargetEntry fuzz_targets[];
extern const int fuzz_target_count;

#endif
