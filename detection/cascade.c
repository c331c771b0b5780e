#include "detection/cascade.h"

#include "detection/box_coding.h"
#include "tensor/device.h"

float *cascade_priors(Graph *g, const Var *loc1, const float *priors, const float variance[2])
{
    if (!graph_ok(g)) return NULL;
    int64_t B = loc1->value.shape[0], P = loc1->value.shape[1];
    size_t bytes = tensor_bytes(&loc1->value);
    float *refined = graph_host_scratch(g, bytes);
    if (!refined) {
        graph_fail(g, ERR_OOM, "cascade: out of memory for %lld refined priors", (long long)(B * P));
        return NULL;
    }
    const float *loc = loc1->value.data;
    if (var_on_cuda(loc1)) { /* the regressions come to the host once */
        float *host = graph_host_scratch(g, bytes);
        if (!host || device_memcpy(host, DEVICE_CPU, loc1->value.data, DEVICE_CUDA, bytes, &g->err)) return NULL;
        loc = host;
    }
    for (int64_t b = 0; b < B; b++) priors_refine(loc + 4 * b * P, priors, P, variance, refined + 4 * b * P);
    return refined;
}

bool cascade_loss(Graph *g, const RetinaConfig *cfg, const RetinaOutputs *out, const float *priors,
                  const ImageTargets *targets, const MultiBoxOptions *opt, MultiBoxLosses *losses)
{
    if (!out->loc2 || !out->conf2) {
        graph_fail(g, ERR_ARG, "cascade loss: %s has no cascade stage", cfg->name);
        return false;
    }
    float *refined = cascade_priors(g, out->loc, priors, opt->variance);
    if (!refined) return false;
    MultiBoxOptions second = *opt;
    second.overlap_threshold = cfg->cascade_overlap;
    second.per_image_priors = true;
    return multibox_loss(g, out->loc2, out->conf2, out->landms2, refined, targets, &second, losses);
}
