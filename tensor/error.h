/* Error: how failures travel. Every fallible function takes an Error * (may be NULL) and returns
 * an ErrorCode (0 on success); the message names the file/op and the problem. Apps print it. */
#ifndef TENSOR_ERROR_H
#define TENSOR_ERROR_H

typedef enum {
    ERR_OK = 0,
    ERR_OOM,      /* host or device allocation failed */
    ERR_SHAPE,    /* shapes of operands do not fit together */
    ERR_IO,       /* file could not be opened, read or written */
    ERR_FORMAT,   /* file content is malformed or unsupported */
    ERR_ARG,      /* invalid argument */
    ERR_DEVICE,   /* CUDA / cuBLAS failure or no device */
    ERR_MISSING,  /* a required item (tensor, key) is absent */
    ERR_UNSUPPORTED /* this build or this function cannot do it (a feature built without its library) */
} ErrorCode;

typedef struct {
    ErrorCode code;
    char msg[512];
} Error;

/* Records the first error only (later ones keep the original cause); returns code. */
ErrorCode error_set(Error *err, ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void error_clear(Error *err);
const char *error_code_name(ErrorCode code);

#endif
