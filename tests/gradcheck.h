/* Numerical gradient check shared by the op tests.
 * The checked function builds y = f(inputs) in a graph; the scalar L = sum_i r_i * y_i with a fixed
 * random r is differentiated analytically (backward seeded with r) and by central differences
 * (L(x+eps) - L(x-eps)) / 2eps, L accumulated in double. An element passes when
 * |analytic - numeric| <= atol + rtol * |numeric|. */
#ifndef TESTS_GRADCHECK_H
#define TESTS_GRADCHECK_H

#include "autograd/ops.h"
#include "tensor/rng.h"

typedef Var *(*GradcheckFn)(Graph *g, Var **inputs, void *arg);

typedef struct {
    double eps, atol, rtol;
    int max_elems;       /* elements checked per input (random subset when larger) */
} GradcheckOptions;

typedef struct {
    double max_abs_err;  /* over all checked elements */
    double max_grad;     /* largest |numeric| seen, for scale */
    int checked, failed;
    char first_failure[640];
} GradcheckResult;

GradcheckOptions gradcheck_defaults(void);
/* inputs[k] are CPU tensors (perturbed in place, restored); wrt[k] says which are checked. */
GradcheckResult gradcheck(Context *ctx, GradcheckFn fn, void *arg, Tensor *inputs, int n_inputs,
                          const bool *wrt, GradcheckOptions opt, uint64_t seed);

#endif
