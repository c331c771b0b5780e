/* ParamStore: a model's named tensors in state_dict order, the names being PyTorch's state_dict
 * keys ("body.stage1.0.0.weight"). Two kinds: parameters (trainable Vars with gradients) and
 * buffers (BatchNorm running statistics). The store owns every Var and tensor it lists.
 * num_batches_tracked counters are not kept (nothing here reads them); loaders skip them. */
#ifndef NN_PARAMS_H
#define NN_PARAMS_H

#include "autograd/graph.h"

typedef enum { ENTRY_PARAM, ENTRY_BUFFER } EntryKind;

typedef struct {
    char name[128];
    EntryKind kind;
    Var *param;     /* ENTRY_PARAM */
    Tensor *buffer; /* ENTRY_BUFFER; heap-allocated so pointers to it survive the array growing */
} ParamEntry;

struct ConvBnAct;

typedef struct {
    ParamEntry *entries;
    int n, cap;
    Device device;
    /* The conv -> BN -> activation units whose tensors are here, in the order conv_bn_act_init made them
     * (borrowed: they live in the model's structs): for passes over every unit, such as folding BN for
     * inference, without walking each block's insides. */
    struct ConvBnAct **units;
    int n_units, cap_units;
} ParamStore;

void params_init(ParamStore *ps, Device dev);
/* Records unit u (see ParamStore.units). */
ErrorCode params_add_unit(ParamStore *ps, struct ConvBnAct *u, Error *err);
void params_free(ParamStore *ps);
/* Adds a zero-filled parameter / buffer named prefix + suffix ("fpn.output1.0" + ".weight"). */
Var *params_add(ParamStore *ps, const char *prefix, const char *suffix, int ndim,
                const int64_t *shape, Error *err);
Tensor *params_add_buffer(ParamStore *ps, const char *prefix, const char *suffix, int ndim,
                          const int64_t *shape, Error *err);
ParamEntry *params_find(ParamStore *ps, const char *name);
/* The entry's tensor (value of a parameter, or the buffer). */
Tensor *param_entry_tensor(ParamEntry *e);
/* Number of trainable scalars (what sum(p.numel() for p in model.parameters()) gives). */
int64_t params_count(const ParamStore *ps);
void params_zero_grad(ParamStore *ps);
/* Moves every parameter (value and grad) and buffer to dev, in place: the Var and Tensor structs
 * stay where they are, so blocks keep pointing at them. */
ErrorCode params_to_device(ParamStore *ps, Device dev, Error *err);

#endif
