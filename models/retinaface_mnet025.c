/* The public RetinaFace MobileNet-0.25 (Pytorch_Retinaface cfg_mnet): in_channel 32 (stages of
 * 64/128/256 channels), out_channel 64, min_sizes [[16,32],[64,128],[256,512]], steps [8,16,32],
 * variance [0.1, 0.2], no prior clipping, trained at 640. 426,608 parameters. */
#include "models/retinaface.h"

const RetinaConfig *retinaface_mnet025_config(void)
{
    static const RetinaConfig cfg = {
        .name = "mobilenet0.25",
        .description = "RetinaFace, MobileNetV1-0.25 backbone, 3-level FPN, SSH per level",
        .backbone = BACKBONE_MOBILENET_V1,
        .width = 0.25f,
        .backbone_outputs = {0, 1, 2},
        .n_fpn_inputs = 3,
        .out_channels = 64,
        .anchors = {.n_levels = 3,
                    .steps = {8, 16, 32},
                    .per_location = 2,
                    .sizes = {{16, 32}, {64, 128}, {256, 512}}},
        .variance = {0.1f, 0.2f},
        .num_classes = 2,
        .landmarks = true,
        .train_size = 640,
        .pretrained_prefix = "body.",
    };
    return &cfg;
}
