/* Growing arrays of autograd's bookkeeping (the memory plan's records, the step's allocation log). */
#ifndef AUTOGRAD_ROOM_H
#define AUTOGRAD_ROOM_H

#include <stdlib.h>

/* items with room for one more (n of *cap used, each elem bytes), doubling from `first`: the array
 * to keep, or NULL when out of memory (items and *cap then unchanged). */
static inline void *room_for_one_more(void *items, size_t *cap, size_t n, size_t elem, size_t first)
{
    if (n < *cap) return items;
    size_t grown = *cap ? 2 * *cap : first;
    void *q = realloc(items, grown * elem);
    if (q) *cap = grown;
    return q;
}

#endif
