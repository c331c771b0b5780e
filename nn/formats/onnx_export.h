/* ONNX export of a traced forward pass (autograd/graph_trace.h): each traced op becomes standard ONNX
 * operators (opset 13), every input no traced op made other than the graph input becomes an initializer
 * (a parameter's value), and the model is serialised with protobuf-c from the ONNX schema that Debian's
 * libonnx-dev ships (onnx.proto, compiled by protoc-c at build time). Builds without protobuf-c or the
 * schema have the same API and answer ERR_UNSUPPORTED.
 * Input sizes: the graph input's batch, height and width are symbolic ("batch", "height", "width"), so the
 * model runs at any size as long as every traced op is size-independent in ONNX terms: convolutions,
 * pooling, activations, concatenation, transposes; nearest upsampling to another value's size (Shape +
 * Resize); reshapes written as [0, -1, traced dims from 2 on] (batch kept, dim 1 what is left: the
 * detection heads' [N, H*W*A, k]). Ops with no ONNX form here (training-mode BatchNorm, losses) are
 * errors naming the op. */
#ifndef NN_ONNX_EXPORT_H
#define NN_ONNX_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/graph_trace.h"

enum { ONNX_EXPORT_MAX_OUTPUTS = 8 };

typedef struct {
    const Var *input;        /* the traced forward's input [N, C, H, W] */
    const char *input_name;  /* "input" */
    const Var *outputs[ONNX_EXPORT_MAX_OUTPUTS];
    const char *output_names[ONNX_EXPORT_MAX_OUTPUTS];
    int n_outputs;
    const char *graph_name, *producer, *producer_version;
    /* An initializer's name for parameter v (NULL: "param<k>"), e.g. its state_dict key; ctx is passed
     * back. May be NULL. */
    const char *(*param_name)(const Var *v, void *ctx);
    void *param_ctx;
} OnnxExportSpec;

/* Whether this build can export (protobuf-c and the ONNX schema were found when it was built). */
int onnx_export_available(void);
/* Serialises the trace of g as an ONNX model into *bytes (malloc'd, *len bytes; the caller frees it). */
ErrorCode onnx_export(const Graph *g, const OnnxExportSpec *spec, uint8_t **bytes, size_t *len, Error *err);

#endif
