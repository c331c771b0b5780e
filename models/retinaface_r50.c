/* The public RetinaFace ResNet-50 (Pytorch_Retinaface cfg_re50): layers 2-4 of a torchvision
 * ResNet-50 (512/1024/2048 channels), out_channel 256, the MobileNet variant's anchors, trained
 * at 840. 27,293,600 parameters. */
#include "models/retinaface.h"

const RetinaConfig *retinaface_r50_config(void)
{
    static const RetinaConfig cfg = {
        .name = "resnet50",
        .description = "RetinaFace, ResNet-50 backbone (layers 2-4), 3-level FPN, SSH per level",
        .backbone = BACKBONE_RESNET,
        .depth = 50,
        .backbone_outputs = {1, 2, 3},
        .n_fpn_inputs = 3,
        .out_channels = 256,
        .anchors = {.n_levels = 3,
                    .steps = {8, 16, 32},
                    .per_location = 2,
                    .sizes = {{16, 32}, {64, 128}, {256, 512}}},
        .variance = {0.1f, 0.2f},
        .num_classes = 2,
        .landmarks = true,
        .train_size = 840,
        .pretrained_prefix = "body.",
    };
    return &cfg;
}
