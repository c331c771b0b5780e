/* Backbones return feature maps of increasing stride; a detector picks which ones it uses.
 * MobileNetV1 (the RetinaFace variant, LeakyReLU 0.1, width multiplier) returns its three stages
 * at strides 8, 16, 32; ResNet-18/34/50 (torchvision layout) returns layer1..layer4 at strides
 * 4, 8, 16, 32. Names are prefixed by `prefix` ("body." in RetinaFace). */
#ifndef NN_BACKBONE_H
#define NN_BACKBONE_H

#include "nn/conv_bn.h"

enum { BACKBONE_MAX_LAYERS = 64, BACKBONE_MAX_OUTPUTS = 4 };

typedef enum { BACKBONE_MOBILENET_V1, BACKBONE_RESNET } BackboneKind;

/* One residual block: conv1..conv3 (conv3 only for bottlenecks), optional downsample. */
typedef struct {
    ConvBnAct conv[3];
    int n_conv;
    ConvBnAct downsample;
    bool has_downsample;
} ResBlock;

typedef struct {
    BackboneKind kind;
    int n_outputs;
    int out_channels[BACKBONE_MAX_OUTPUTS];
    int out_stride[BACKBONE_MAX_OUTPUTS];
    /* MobileNetV1: a flat list of ConvBnAct; stage_end[i] = index one past the last layer of
     * output i. ResNet: stem conv + blocks; stage_end in blocks. */
    ConvBnAct layers[BACKBONE_MAX_LAYERS];
    int n_layers;
    ResBlock *blocks;
    int n_blocks;
    int stage_end[BACKBONE_MAX_OUTPUTS];
} Backbone;

/* width: 0.25 for MobileNet-0.25 (channels 8..256). */
ErrorCode mobilenet_v1_init(Backbone *b, ParamStore *ps, const char *prefix, float width, Rng *rng,
                            Error *err);
/* depth: 18, 34 or 50. */
ErrorCode resnet_init(Backbone *b, ParamStore *ps, const char *prefix, int depth, Rng *rng, Error *err);
void backbone_free(Backbone *b);
/* Fills outs[0..n_outputs). */
bool backbone_forward(Graph *g, const Backbone *b, Var *x, bool training, Var **outs);

#endif
