#include "detection/text_parse.h"

#include <stdlib.h>

int parse_numbers(const char *s, double *v, int max, const char **rest)
{
    int n = 0;
    char *end;
    while (n < max) {
        double x = strtod(s, &end);
        if (end == s) break;
        v[n++] = x;
        s = end;
    }
    while (*s == ' ' || *s == '\t') s++;
    if (rest) *rest = s;
    return n;
}
