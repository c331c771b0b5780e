/* ResNet-18/34 (basic blocks) and ResNet-50 (bottlenecks, stride on the 3x3 as torchvision v1.5),
 * parameter names as torchvision's: conv1, bn1, layerL.B.convI / bnI / downsample.{0,1}. The
 * classifier is not built. */
#include <stdio.h>
#include <stdlib.h>

#include "nn/backbone.h"

ErrorCode resnet_init(Backbone *b, ParamStore *ps, const char *prefix, int depth, Rng *rng, Error *err)
{
    *b = (Backbone){0};
    b->kind = BACKBONE_RESNET;
    static const int counts18[4] = {2, 2, 2, 2}, counts34[4] = {3, 4, 6, 3};
    const int *counts;
    bool bottleneck = false;
    if (depth == 18)
        counts = counts18;
    else if (depth == 34)
        counts = counts34;
    else if (depth == 50)
        counts = counts34, bottleneck = true;
    else
        return error_set(err, ERR_ARG, "resnet: depth %d not supported (18, 34, 50)", depth);
    int expansion = bottleneck ? 4 : 1;
    char conv[128], bn[128];
    snprintf(conv, sizeof conv, "%sconv1", prefix);
    snprintf(bn, sizeof bn, "%sbn1", prefix);
    ConvBnActSpec stem = {3, 64, 7, 2, 3, 1, true, 0.0f};
    if (conv_bn_act_init(&b->layers[0], ps, conv, bn, stem, rng, err)) return err->code;
    b->n_layers = 1;
    b->n_blocks = counts[0] + counts[1] + counts[2] + counts[3];
    b->blocks = calloc((size_t)b->n_blocks, sizeof *b->blocks);
    if (!b->blocks) return error_set(err, ERR_OOM, "resnet: out of memory");
    int inplanes = 64, bi = 0, stride_total = 4;
    for (int L = 0; L < 4; L++) {
        int planes = 64 << L;
        for (int k = 0; k < counts[L]; k++, bi++) {
            ResBlock *blk = &b->blocks[bi];
            int stride = (k == 0 && L > 0) ? 2 : 1;
            char base[96];
            snprintf(base, sizeof base, "%slayer%d.%d.", prefix, L + 1, k);
            ConvBnActSpec specs[3];
            if (bottleneck) {
                specs[0] = (ConvBnActSpec){inplanes, planes, 1, 1, 0, 1, true, 0.0f};
                specs[1] = (ConvBnActSpec){planes, planes, 3, stride, 1, 1, true, 0.0f};
                specs[2] = (ConvBnActSpec){planes, planes * 4, 1, 1, 0, 1, true, ACT_NONE};
                blk->n_conv = 3;
            } else {
                specs[0] = (ConvBnActSpec){inplanes, planes, 3, stride, 1, 1, true, 0.0f};
                specs[1] = (ConvBnActSpec){planes, planes, 3, 1, 1, 1, true, ACT_NONE};
                blk->n_conv = 2;
            }
            for (int c = 0; c < blk->n_conv; c++) {
                snprintf(conv, sizeof conv, "%sconv%d", base, c + 1);
                snprintf(bn, sizeof bn, "%sbn%d", base, c + 1);
                if (conv_bn_act_init(&blk->conv[c], ps, conv, bn, specs[c], rng, err)) return err->code;
            }
            if (stride != 1 || inplanes != planes * expansion) {
                snprintf(conv, sizeof conv, "%sdownsample.0", base);
                snprintf(bn, sizeof bn, "%sdownsample.1", base);
                ConvBnActSpec ds = {inplanes, planes * expansion, 1, stride, 0, 1, true, ACT_NONE};
                if (conv_bn_act_init(&blk->downsample, ps, conv, bn, ds, rng, err)) return err->code;
                blk->has_downsample = true;
            }
            inplanes = planes * expansion;
        }
        if (L > 0) stride_total *= 2;
        b->stage_end[L] = bi;
        b->out_channels[L] = inplanes;
        b->out_stride[L] = stride_total;
    }
    b->n_outputs = 4;
    return ERR_OK;
}
