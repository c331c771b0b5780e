/* Tests' PNG files: an image's pixels written through libpng's simplified writer (the check fails on error). */
#ifndef TESTS_PNG_WRITER_H
#define TESTS_PNG_WRITER_H

#include "detection/image.h"

void write_png(const char *path, const Image *img);

#endif
