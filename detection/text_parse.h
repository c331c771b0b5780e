/* Reading whitespace-separated numbers from the lines of label and prediction files. */
#ifndef DETECTION_TEXT_PARSE_H
#define DETECTION_TEXT_PARSE_H

/* Parses up to max numbers from s into v; returns how many. *rest (may be NULL) points at what follows
 * the last number, leading blanks skipped: an empty string when the line held numbers only. */
int parse_numbers(const char *s, double *v, int max, const char **rest);

#endif
