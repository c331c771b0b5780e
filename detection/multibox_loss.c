#include "detection/multibox_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"

MultiBoxOptions multibox_defaults(void)
{
    MultiBoxOptions o = {0.35f, 7, {0.1f, 0.2f}, 2.0f};
    return o;
}

typedef struct {
    float loss;
    int64_t index;
} Ranked;

static int by_loss_desc(const void *a, const void *b)
{
    const Ranked *x = a, *y = b;
    if (x->loss != y->loss) return x->loss < y->loss ? 1 : -1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

bool multibox_loss(Graph *g, Var *loc, Var *conf, Var *landms, const float *priors, const ImageTargets *targets,
                   const MultiBoxOptions *opt, MultiBoxLosses *out)
{
    memset(out, 0, sizeof *out);
    if (!graph_ok(g)) return false;
    if (!loc || !conf || loc->value.ndim != 3 || conf->value.ndim != 3) {
        graph_fail(g, ERR_ARG, "multibox_loss: loc and conf must be [B,P,k]");
        return false;
    }
    int64_t B = loc->value.shape[0], P = loc->value.shape[1], C = conf->value.shape[2];
    if (conf->value.shape[0] != B || conf->value.shape[1] != P ||
        (landms && (landms->value.shape[0] != B || landms->value.shape[1] != P))) {
        graph_fail(g, ERR_SHAPE, "multibox_loss: outputs disagree on batch or prior count");
        return false;
    }
    float *loc_t = graph_host_scratch(g, sizeof(float) * 4 * (size_t)(B * P));
    float *landm_t = graph_host_scratch(g, sizeof(float) * 10 * (size_t)(B * P));
    int32_t *conf_t = graph_host_scratch(g, sizeof(int32_t) * (size_t)(B * P));
    uint8_t *landm_valid = graph_host_scratch(g, (size_t)(B * P));
    uint8_t *pos = graph_host_scratch(g, (size_t)(B * P));
    uint8_t *selected = graph_host_scratch(g, (size_t)(B * P));
    Ranked *ranked = malloc(sizeof(Ranked) * (size_t)P);
    if (!loc_t || !landm_t || !conf_t || !landm_valid || !pos || !selected || !ranked) {
        free(ranked);
        graph_fail(g, ERR_OOM, "multibox_loss: out of memory");
        return false;
    }
    /* Hard-negative ranking runs on the host: on the GPU the logits are copied over once. */
    const float *logits = conf->value.data;
    if (var_on_cuda(conf)) {
        float *host = graph_host_scratch(g, tensor_bytes(&conf->value));
        if (!host || device_memcpy(host, DEVICE_CPU, conf->value.data, DEVICE_CUDA, tensor_bytes(&conf->value), &g->err)) {
            free(ranked);
            return false;
        }
        logits = host;
    }
    /* The reference ranks negatives by log_sum_exp(x) - x[0] with one global max for stability. */
    float gmax = -INFINITY;
    for (int64_t i = 0; i < B * P * C; i++) gmax = logits[i] > gmax ? logits[i] : gmax;
    for (int64_t b = 0; b < B; b++) {
        int np = match_priors(&targets[b], priors, P, opt->overlap_threshold, opt->variance, loc_t + 4 * b * P,
                              landm_t + 10 * b * P, conf_t + b * P, landm_valid + b * P);
        if (np < 0) {
            free(ranked);
            graph_fail(g, ERR_OOM, "multibox_loss: out of memory matching");
            return false;
        }
        out->num_pos += np;
        for (int64_t i = 0; i < P; i++) {
            int64_t r = b * P + i;
            pos[r] = conf_t[r] != 0;
            out->num_pos_landm += landm_valid[r];
            const float *z = logits + r * C;
            float s = 0;
            for (int64_t c = 0; c < C; c++) s += expf(z[c] - gmax);
            ranked[i].loss = pos[r] ? 0.0f : logf(s) + gmax - z[0];
            ranked[i].index = i;
        }
        qsort(ranked, (size_t)P, sizeof *ranked, by_loss_desc);
        int64_t num_neg = (int64_t)opt->negpos_ratio * np;
        if (num_neg > P - 1) num_neg = P - 1;
        for (int64_t i = 0; i < P; i++) selected[b * P + i] = pos[b * P + i];
        for (int64_t k = 0; k < num_neg; k++) selected[b * P + ranked[k].index] = 1;
    }
    free(ranked);
    float N = out->num_pos > 0 ? (float)out->num_pos : 1.0f;
    float N1 = out->num_pos_landm > 0 ? (float)out->num_pos_landm : 1.0f;
    out->loss_l = ag_scale(g, ag_smooth_l1(g, loc, loc_t, pos), 1.0f / N);
    out->loss_c = ag_scale(g, ag_cross_entropy(g, conf, conf_t, selected), 1.0f / N);
    Var *total = ag_add(g, ag_scale(g, out->loss_l, opt->loc_weight), out->loss_c);
    if (landms) {
        out->loss_landm = ag_scale(g, ag_smooth_l1(g, landms, landm_t, landm_valid), 1.0f / N1);
        total = ag_add(g, total, out->loss_landm);
    }
    out->total = total;
    return graph_ok(g);
}
