/* Cascade variants (as a published Julia RetinaFace has): the MobileNet-0.25 and ResNet-50 models with
 * a second stage of class/box/landmark heads on the same SSH features. The second stage's priors are
 * the first stage's regressed boxes, matched to the ground truth at IoU 0.7 (the first stage keeps the
 * reference's 0.35); both stages train jointly and detection reads the second. */
#include "models/retinaface.h"

#include <pthread.h>

/* base with a cascade stage, named `name` */
static RetinaConfig with_cascade(const RetinaConfig *base, const char *name, const char *description)
{
    RetinaConfig c = *base;
    c.name = name, c.description = description;
    c.cascade_overlap = 0.7f;
    return c;
}

static RetinaConfig mnet025_cascade, r50_cascade; /* constants, computed once from their bases */
static pthread_once_t made = PTHREAD_ONCE_INIT;

static void make_configs(void)
{
    mnet025_cascade = with_cascade(retinaface_mnet025_config(), "mobilenet0.25_cascade",
                                   "MobileNet-0.25 RetinaFace with a cascade stage of heads refining the first stage's boxes");
    r50_cascade = with_cascade(retinaface_r50_config(), "resnet50_cascade",
                               "RetinaFace ResNet-50 with a cascade stage of heads refining the first stage's boxes");
}

const RetinaConfig *retinaface_mnet025_cascade_config(void)
{
    pthread_once(&made, make_configs);
    return &mnet025_cascade;
}

const RetinaConfig *retinaface_r50_cascade_config(void)
{
    pthread_once(&made, make_configs);
    return &r50_cascade;
}
