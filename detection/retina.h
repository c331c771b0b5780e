/* retina.h — the public C API of libretina: face detection with RetinaFace (boxes, scores, five
 * landmarks) and aligned face crops. This is the only header an application needs; everything it
 * declares starts with retina_ / RETINA_, and libretina.so exports nothing else.
 *
 *   retina_detector *d = retina_create(NULL, NULL, NULL, err, sizeof err);   // built-in model
 *   retina_face *faces; int n;
 *   retina_detect(d, pixels, width, height, stride, RETINA_BGR, &faces, &n, err, sizeof err);
 *   ... faces[i].box, .score, .landmarks ...
 *   retina_free_faces(faces);
 *   retina_destroy(d);
 *
 * Pixels are 8-bit, 3 channels interleaved, rows `stride` bytes apart (>= 3 * width). Functions
 * returning int give 0 on success and a nonzero code otherwise, with a message in errbuf (when
 * errbuf is not NULL). A detector is used by one thread at a time; several detectors may run in
 * parallel. Ownership: faces arrays are the caller's (retina_free_faces); the detector is the
 * caller's (retina_destroy). */
#ifndef RETINA_H
#define RETINA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RETINA_API __attribute__((visibility("default")))
#else
#define RETINA_API
#endif

#define RETINA_VERSION "0.1.0"

typedef struct retina_detector retina_detector;

typedef enum { RETINA_BGR = 0, RETINA_RGB = 1 } retina_pixel_format;

typedef struct {
    float box[4];        /* x1, y1, x2, y2, pixels of the input image */
    float score;         /* 0..1 */
    float landmarks[10]; /* left eye, right eye, nose, left and right mouth corners: x, y each */
    int label;           /* class index (1 = face) */
} retina_face;

typedef struct {
    float conf_threshold; /* report faces scoring at least this (default 0.5) */
    float nms_threshold;  /* IoU above which the weaker of two boxes is dropped (default 0.4) */
    int long_side;        /* > 0: resize so the long side has this many pixels; 0: original size;
                             -1 (default): shrink images longer than 1280 pixels to 1280 */
    int threads;          /* CPU threads (0, default: all cores) */
    int gpu;              /* run the network on the CUDA device (default 0) */
} retina_options;

/* The defaults above. */
RETINA_API retina_options retina_default_options(void);
/* A detector. variant: "mobilenet0.25" (NULL: the default), "resnet50", ...; weights: a
 * .safetensors or PyTorch .pth file, or NULL for the variant's built-in weights (the default
 * variant has them). opt NULL: the defaults. NULL on failure, with the reason in errbuf. */
RETINA_API retina_detector *retina_create(const char *variant, const char *weights, const retina_options *opt,
                                          char *errbuf, size_t errlen);
RETINA_API void retina_destroy(retina_detector *d);
/* Faces of one image, strongest first, in *faces (malloc'd; *count of them; NULL when none). */
RETINA_API int retina_detect(retina_detector *d, const uint8_t *pixels, int width, int height, int stride,
                             retina_pixel_format format, retina_face **faces, int *count, char *errbuf, size_t errlen);
/* The same for n images; faces[i] and counts[i] are image i's (each what retina_detect gives it). Images
 * whose network input has one size go through the network together, up to 8 at a time. On a failure
 * (e.g. a bad image, named by its index) every faces[i] is NULL and counts[i] 0. */
RETINA_API int retina_detect_batch(retina_detector *d, int n, const uint8_t *const *pixels, const int *widths,
                                   const int *heights, const int *strides, retina_pixel_format format,
                                   retina_face **faces, int *counts, char *errbuf, size_t errlen);
RETINA_API void retina_free_faces(retina_face *faces);
/* The face's 112x112 crop aligned by its landmarks onto the five-point template of face
 * recognisers, written to out (112 * 112 * 3 bytes, rows of 336, in the input's channel order). */
RETINA_API int retina_align_face(const uint8_t *pixels, int width, int height, int stride, const float landmarks[10],
                                 uint8_t *out, char *errbuf, size_t errlen);
/* RETINA_VERSION of the library the program runs with. */
RETINA_API const char *retina_version(void);

#ifdef __cplusplus
}
#endif

#endif
