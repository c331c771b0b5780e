#include "detection/output_file.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

ErrorCode output_open(OutputFile *o, const char *path, Error *err)
{
    memset(o, 0, sizeof *o);
    if (!strcmp(path, "-")) {
        o->f = stdout, o->is_stdout = true;
        snprintf(o->path, sizeof o->path, "standard output");
        return ERR_OK;
    }
    if ((size_t)snprintf(o->path, sizeof o->path, "%s", path) >= sizeof o->path)
        return error_set(err, ERR_ARG, "%.64s...: path too long", path);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", path);
    if (!(o->f = fopen(o->tmp, "w"))) return error_set(err, ERR_IO, "%s: cannot create: %s", o->tmp, strerror(errno));
    return ERR_OK;
}

ErrorCode output_commit(OutputFile *o, Error *err)
{
    if (!o->f) return error_set(err, ERR_IO, "%s: not open", o->path);
    if (o->is_stdout) {
        bool bad = fflush(o->f) != 0 || ferror(o->f);
        o->f = NULL;
        return bad ? error_set(err, ERR_IO, "writing standard output failed: %s", strerror(errno)) : ERR_OK;
    }
    errno = 0;
    bool bad = fflush(o->f) != 0 || ferror(o->f);
    int saved = errno;
    bad |= fclose(o->f) != 0;
    if (!saved) saved = errno;
    o->f = NULL;
    if (bad || rename(o->tmp, o->path) != 0) {
        if (!saved) saved = errno;
        unlink(o->tmp);
        return error_set(err, ERR_IO, "%s: write failed: %s (nothing written under that name)", o->path,
                         saved ? strerror(saved) : "I/O error");
    }
    return ERR_OK;
}

void output_abandon(OutputFile *o)
{
    if (o->f && !o->is_stdout) {
        fclose(o->f);
        unlink(o->tmp);
    }
    o->f = NULL;
}
