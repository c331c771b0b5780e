/* MobileNet-0.25 RetinaFace detecting two object classes (face, person) plus background, without
 * the landmark head, with three anchors per location sized for both faces and bodies. */
#include "models/retinaface.h"

const RetinaConfig *retinaface_2cls_config(void)
{
    static const RetinaConfig cfg = {
        .name = "mobilenet0.25_2cls",
        .description = "MobileNet-0.25 RetinaFace body, 2 classes (face, person) + background, no landmarks",
        .backbone = BACKBONE_MOBILENET_V1,
        .width = 0.25f,
        .backbone_outputs = {0, 1, 2},
        .n_fpn_inputs = 3,
        .out_channels = 64,
        .anchors = {.n_levels = 3,
                    .steps = {8, 16, 32},
                    .per_location = 3,
                    .sizes = {{16, 32, 48}, {64, 96, 128}, {192, 320, 448}}},
        .variance = {0.1f, 0.2f},
        .num_classes = 3,
        .class_names = {"background", "face", "person"},
        .landmarks = false,
        .train_size = 640,
        .pretrained_prefix = "body.",
    };
    return &cfg;
}
