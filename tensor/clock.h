/* Monotonic wall clock for progress lines and timings. */
#ifndef TENSOR_CLOCK_H
#define TENSOR_CLOCK_H

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double clock_seconds(void);

#endif
