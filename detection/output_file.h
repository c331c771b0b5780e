/* Output files that are whole or absent: written under PATH.tmp and renamed to PATH once every
 * write, the flush and the close succeeded, so a crash or a full disk never leaves a partial file
 * (or half of the previous one) under the final name. "-" writes standard output directly. */
#ifndef DETECTION_OUTPUT_FILE_H
#define DETECTION_OUTPUT_FILE_H

#include <stdbool.h>
#include <stdio.h>

#include "tensor/error.h"

typedef struct {
    FILE *f;
    char path[4096], tmp[4200];
    bool is_stdout;
} OutputFile;

ErrorCode output_open(OutputFile *o, const char *path, Error *err);
/* Flushes, checks every earlier write, closes and renames into place; on failure removes the
 * temporary and says why (ENOSPC: "No space left on device"). */
ErrorCode output_commit(OutputFile *o, Error *err);
/* Closes and removes the temporary (after a failure elsewhere). */
void output_abandon(OutputFile *o);

#endif
