/* MATLAB level-5 MAT-file reader (the format of the official WIDER FACE ground truth): top-level
 * variables, zlib-compressed elements (miCOMPRESSED), numeric arrays of any stored type (converted
 * to double, column-major as MATLAB keeps them), char arrays (UTF-16/UTF-8, to UTF-8), and cell
 * arrays, recursively. Structs, sparse and object arrays are read as MAT_UNSUPPORTED and skipped.
 * All values are owned by their MatFile. */
#ifndef DETECTION_MATFILE_H
#define DETECTION_MATFILE_H

#include <stdint.h>

#include "tensor/error.h"

typedef enum { MAT_NUMERIC, MAT_CHAR, MAT_CELL, MAT_UNSUPPORTED } MatKind;

typedef struct MatValue MatValue;
struct MatValue {
    MatKind kind;
    char name[64];        /* variable name (top level) */
    int ndim;
    int64_t dims[8];
    int64_t numel;
    double *re;           /* MAT_NUMERIC, column-major */
    char *str;            /* MAT_CHAR, UTF-8, NUL-terminated */
    MatValue **cells;     /* MAT_CELL, column-major */
};

typedef struct {
    MatValue **vars;
    int n;
} MatFile;

ErrorCode matfile_read(const char *path, MatFile *mf, Error *err);
void matfile_free(MatFile *mf);
const MatValue *matfile_get(const MatFile *mf, const char *name);
/* Element (row, col) of a 2-d cell array; NULL when out of range or not a cell. */
const MatValue *mat_cell(const MatValue *v, int64_t row, int64_t col);

#endif
