/* The derivative of the CPU ops' leaky ReLU (act >= 0: the slope, 0 = ReLU) taken from its output's sign,
 * which is the input's for every slope >= 0, so the input need not be kept. Internal to autograd/. */
#ifndef AUTOGRAD_ACTIVATION_CPU_H
#define AUTOGRAD_ACTIVATION_CPU_H

#include <stdint.h>

#include "tensor/threadpool.h"

/* dst[i] = y[i] > 0 ? dy[i] : act * dy[i] for i < n, over the pool (dst == dy allowed; a NULL pool: on the
 * calling thread, e.g. inside a pool task). */
void act_grad_from_output(ThreadPool *pool, const float *y, float act, const float *dy, float *dst, int64_t n);

#endif
