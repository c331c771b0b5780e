#include "tensor/error.h"

#include <stdarg.h>
#include <stdio.h>

ErrorCode error_set(Error *err, ErrorCode code, const char *fmt, ...)
{
    if (err && err->code == ERR_OK) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void error_clear(Error *err)
{
    if (err) {
        err->code = ERR_OK;
        err->msg[0] = '\0';
    }
}

const char *error_code_name(ErrorCode code)
{
    switch (code) {
    case ERR_OK: return "ok";
    case ERR_OOM: return "out of memory";
    case ERR_SHAPE: return "shape mismatch";
    case ERR_IO: return "I/O error";
    case ERR_FORMAT: return "bad format";
    case ERR_ARG: return "invalid argument";
    case ERR_DEVICE: return "device error";
    case ERR_MISSING: return "missing";
    case ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown error";
}
