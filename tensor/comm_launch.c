/* comm_launched_ranks (tensor/comm.h), the same with or without MPI in the build. */
#include <stdlib.h>

#include "tensor/comm.h"

int comm_launched_ranks(void)
{
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    return n ? atoi(n) : 0;
}
