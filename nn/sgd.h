/* SGD with momentum and weight decay, PyTorch's formulation: d = grad + wd * p; v = m * v + d;
 * p -= lr * v (v starts at zero, which equals PyTorch's first-step v = d). Weight decay applies to
 * every parameter, as the reference trainer does. One momentum buffer per parameter, owned here;
 * saved in checkpoints as "optimizer.momentum.<parameter name>". */
#ifndef NN_SGD_H
#define NN_SGD_H

#include "nn/formats/tensor_dict.h"
#include "tensor/context.h"

typedef struct {
    float momentum, weight_decay;
    Tensor *velocity; /* per ParamStore entry; data NULL for buffers */
    int n;
    /* GPU: device tables of (weight, grad, velocity) pointers and size prefix sums of the trainable
     * parameters, built on the first step, for the single fused update launch. */
    void *device_tables;
    int n_trainable;
} Sgd;

ErrorCode sgd_init(Sgd *s, const ParamStore *ps, float momentum, float weight_decay, Error *err);
void sgd_free(Sgd *s);
/* On the parameters' device (ctx supplies the CUDA stream when they are on the GPU). */
ErrorCode sgd_step(Sgd *s, ParamStore *ps, float lr, Context *ctx, Error *err);
/* Adds / restores the momentum buffers in a checkpoint dict. */
ErrorCode sgd_state_to_dict(const Sgd *s, const ParamStore *ps, TensorDict *d, Error *err);
ErrorCode sgd_state_from_dict(Sgd *s, const ParamStore *ps, TensorDict *d, const char *source, Error *err);

#endif
