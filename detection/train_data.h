/* Training sets: images with face annotations, from the RetinaFace label format
 * ("# <path>" then per face "x y w h" + 5 x "lx ly flag" + score; landmarks all -1 when absent), the
 * official wider_face_train_bbx_gt.txt (name, count, then "x y w h blur expression illumination
 * invalid occlusion pose"), or the official wider_face_train.mat. Faces marked invalid and boxes
 * with no area are dropped; images that do not exist are skipped and counted.
 * RetinaFace label lines may end with a class id after the score (21 numbers: "x y w h" + 5 x "lx ly flag"
 * + score + class, landmarks -1 where absent): the object's class, 1 (face, the default) and up, 0 being
 * the background. Each object is stored as 16 floats: x1 y1 x2 y2 (pixels), 5 landmark points (x, y), 1
 * (with landmarks) or -1 (without), as the reference's annotation rows, then the class id. */
#ifndef DETECTION_TRAIN_DATA_H
#define DETECTION_TRAIN_DATA_H

#include "tensor/error.h"

enum { FACE_FIELDS = 16, FACE_CLASS = 15 };

typedef struct {
    char *path;     /* full path of the image */
    int n;
    float *faces;   /* n x FACE_FIELDS */
} TrainSample;

typedef struct {
    TrainSample *samples;
    int n;
    int missing_images;   /* listed but not found: skipped */
    int dropped_faces;    /* invalid or empty boxes */
    int max_class;        /* the largest class id of any object (1 for faces alone) */
} TrainSet;

/* images_dir NULL: the "images" directory beside the label file. The format is chosen by the
 * file name: *.mat (official), *bbx_gt*.txt (official text), anything else RetinaFace labels. */
ErrorCode trainset_load(const char *label_path, const char *images_dir, TrainSet *set, Error *err);
void trainset_free(TrainSet *set);

#endif
