/* Aligned face crops: the similarity transform (rotation, uniform scale, translation; no
 * reflection) that takes a face's five landmarks (left eye, right eye, nose, left and right mouth
 * corners, as the detector outputs them) onto the five-point 112x112 template that face
 * recognisers are trained on (the ArcFace / InsightFace template), fitted by least squares, and
 * the crop warped with it (bilinear; outside the image is black). */
#ifndef DETECTION_FACE_ALIGN_H
#define DETECTION_FACE_ALIGN_H

#include "detection/image.h"

enum { FACE_ALIGN_SIZE = 112 };

/* The template's five points in a 112x112 crop, x then y. */
extern const float face_align_template[10];

/* m (2x3, row-major): crop = m * (x, y, 1) for image points; the least-squares similarity from
 * landmarks[10] (x0 y0 ... x4 y4) to dst[10]. ERR_ARG when the landmarks are degenerate (all one
 * point). */
ErrorCode face_similarity(const float landmarks[10], const float dst[10], double m[6], Error *err);
/* The aligned FACE_ALIGN_SIZE crop of img for one face's landmarks (out is allocated). */
ErrorCode face_align_crop(const Image *img, const float landmarks[10], Image *out, Error *err);

#endif
