/* RetinaFace with a ResNet-18 backbone and a five-level FPN P2..P6 (strides 4..64; P6 by a 3x3
 * stride-2 conv on P5), ONE SSH module shared by all levels, three anchors per location at
 * sizes s, s*2^(1/3), s*2^(2/3) with s = 8, 16, 32, 64, 128 (the RetinaFace paper's anchor
 * design), out channels 64. */
#include "models/retinaface.h"

#define A3(s) {(s), (s) * 1.25992105f, (s) * 1.58740105f}

const RetinaConfig *retinaface_r18_p2p6_config(void)
{
    static const RetinaConfig cfg = {
        .name = "resnet18_p2p6",
        .description = "RetinaFace, ResNet-18 backbone, 5-level FPN P2-P6, one shared SSH",
        .backbone = BACKBONE_RESNET,
        .depth = 18,
        .backbone_outputs = {0, 1, 2, 3},
        .n_fpn_inputs = 4,
        .out_channels = 64,
        .shared_ssh = true,
        .anchors = {.n_levels = 5,
                    .steps = {4, 8, 16, 32, 64},
                    .per_location = 3,
                    .sizes = {A3(8), A3(16), A3(32), A3(64), A3(128)}},
        .variance = {0.1f, 0.2f},
        .num_classes = 2,
        .landmarks = true,
        .train_size = 640,
        .pretrained_prefix = "body.",
    };
    return &cfg;
}
