/* MobileNetV1 as RetinaFace defines it: a 3x3/2 conv-BN-LeakyReLU(0.1) stem and depthwise-
 * separable blocks (3x3 depthwise conv-BN-LeakyReLU, 1x1 conv-BN-LeakyReLU), in three stages
 * ending at strides 8, 16 and 32. The classifier (avg pool + fc) is not built: RetinaFace drops it. */
#include <stdio.h>
#include <stdlib.h>

#include "nn/backbone.h"

static ErrorCode add_layer(Backbone *b, ParamStore *ps, const char *conv, const char *bn,
                           ConvBnActSpec s, Rng *rng, Error *err)
{
    if (b->n_layers == BACKBONE_MAX_LAYERS) return error_set(err, ERR_ARG, "backbone: too many layers");
    return conv_bn_act_init(&b->layers[b->n_layers++], ps, conv, bn, s, rng, err);
}

ErrorCode mobilenet_v1_init(Backbone *b, ParamStore *ps, const char *prefix, float width, Rng *rng,
                            Error *err)
{
    *b = (Backbone){0};
    b->kind = BACKBONE_MOBILENET_V1;
    const float leaky = 0.1f;
    /* (output channels at width 1, stride) of each depthwise-separable block, per stage. */
    static const int blocks[3][6][2] = {
        {{64, 1}, {128, 2}, {128, 1}, {256, 2}, {256, 1}, {0, 0}},
        {{512, 2}, {512, 1}, {512, 1}, {512, 1}, {512, 1}, {512, 1}},
        {{1024, 2}, {1024, 1}, {0, 0}},
    };
    int cin = 3, stem = (int)(32 * width);
    char conv[128], bn[128];
    snprintf(conv, sizeof conv, "%sstage1.0.0", prefix);
    snprintf(bn, sizeof bn, "%sstage1.0.1", prefix);
    ConvBnActSpec s = {cin, stem, 3, 2, 1, 1, true, leaky};
    if (add_layer(b, ps, conv, bn, s, rng, err)) return err->code;
    cin = stem;
    int stride = 2;
    for (int stage = 0; stage < 3; stage++) {
        int first = stage == 0 ? 1 : 0;
        for (int i = 0; i < 6 && blocks[stage][i][0]; i++) {
            int idx = first + i, cout = (int)(blocks[stage][i][0] * width), st = blocks[stage][i][1];
            stride *= st;
            snprintf(conv, sizeof conv, "%sstage%d.%d.0", prefix, stage + 1, idx);
            snprintf(bn, sizeof bn, "%sstage%d.%d.1", prefix, stage + 1, idx);
            ConvBnActSpec dw = {cin, cin, 3, st, 1, cin, true, leaky};
            if (add_layer(b, ps, conv, bn, dw, rng, err)) return err->code;
            snprintf(conv, sizeof conv, "%sstage%d.%d.3", prefix, stage + 1, idx);
            snprintf(bn, sizeof bn, "%sstage%d.%d.4", prefix, stage + 1, idx);
            ConvBnActSpec pw = {cin, cout, 1, 1, 0, 1, true, leaky};
            if (add_layer(b, ps, conv, bn, pw, rng, err)) return err->code;
            cin = cout;
        }
        b->stage_end[stage] = b->n_layers;
        b->out_channels[stage] = cin;
        b->out_stride[stage] = stride;
    }
    b->n_outputs = 3;
    return ERR_OK;
}

void backbone_free(Backbone *b)
{
    free(b->blocks);
    b->blocks = NULL;
}

static Var *resblock_forward(Graph *g, const ResBlock *blk, Var *x, bool training)
{
    Var *out = x;
    for (int i = 0; i + 1 < blk->n_conv; i++) {
        Var *in = out;
        out = conv_bn_act_forward(g, &blk->conv[i], in, training);
        /* the block's inner activations are read by the next conv alone: where their op can make them
         * again (conv -> BN -> ReLU keeps z), that conv's backward does, and they need not wait for it */
        if (i > 0) graph_done_with(g, in);
    }
    /* the shortcut before the last layer, which takes the sum: relu(BN(conv(out)) + identity) */
    Var *identity = blk->has_downsample ? conv_bn_act_forward(g, &blk->downsample, x, training) : x;
    Var *y = conv_bn_act_forward_residual(g, &blk->conv[blk->n_conv - 1], out, identity, 0.0f, training);
    if (blk->n_conv > 1) graph_done_with(g, out);
    return y;
}

bool backbone_forward(Graph *g, const Backbone *b, Var *x, bool training, Var **outs)
{
    if (b->kind == BACKBONE_MOBILENET_V1) {
        int out = 0;
        /* the stem, then (depthwise, pointwise) pairs, a stage ending after a pointwise layer */
        x = conv_bn_act_forward(g, &b->layers[0], x, training);
        for (int i = 1; i + 1 < b->n_layers; i += 2) {
            x = conv_bn_act_forward_separable(g, &b->layers[i], &b->layers[i + 1], x, training);
            if (i + 2 == b->stage_end[out]) outs[out++] = x;
        }
        return graph_ok(g);
    }
    Var *stem = conv_bn_act_forward(g, &b->layers[0], x, training);
    x = ag_max_pool2d(g, stem, 3, 2, 1);
    graph_done_with(g, stem); /* the pooling's backward needs only its indices */
    int out = 0;
    for (int i = 0; i < b->n_blocks; i++) {
        x = resblock_forward(g, &b->blocks[i], x, training);
        if (i + 1 == b->stage_end[out]) outs[out++] = x;
    }
    return graph_ok(g);
}
