#include "detection/multibox_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/comm.h"
#include "tensor/device.h"

MultiBoxOptions multibox_defaults(void)
{
    MultiBoxOptions o = {0.35f, 7, {0.1f, 0.2f}, 2.0f, NULL, false};
    return o;
}

/* Per-image work of the loss (matching, negative ranking), run for all images in parallel. */
typedef struct {
    const ImageTargets *targets;
    const float *priors, *logits;
    int64_t P, C;
    float gmax;
    const MultiBoxOptions *opt;
    float *loc_t, *landm_t;
    int32_t *conf_t;
    uint8_t *landm_valid, *pos, *selected;
    int *num_pos, *num_pos_landm; /* per image */
    float **work;                 /* per image: P floats of scratch */
} LossJob;

static float kth_largest(float *v, int64_t n, int64_t k)
{
    /* Quickselect (Hoare partition) for the value of rank k (0-based) in descending order. */
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) i++;
            while (v[j] < pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j], v[j] = t;
                i++, j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

static void loss_image(void *arg, int b)
{
    LossJob *j = arg;
    int64_t P = j->P, C = j->C, off = (int64_t)b * P;
    const float *priors = j->opt->per_image_priors ? j->priors + 4 * off : j->priors;
    int np = match_priors(&j->targets[b], priors, P, j->opt->overlap_threshold, j->opt->variance, j->loc_t + 4 * off,
                          j->landm_t + 10 * off, j->conf_t + off, j->landm_valid + off);
    j->num_pos[b] = np;
    if (np < 0) return;
    /* Background cross-entropy of every negative (positives 0), as the reference ranks them. */
    float *loss = j->work[b], *copy = loss + P;
    int landm = 0;
    for (int64_t i = 0; i < P; i++) {
        int64_t r = off + i;
        j->pos[r] = j->conf_t[r] != 0;
        landm += j->landm_valid[r];
        const float *z = j->logits + r * C;
        float s = 0;
        for (int64_t c = 0; c < C; c++) s += expf(z[c] - j->gmax);
        loss[i] = j->pos[r] ? 0.0f : logf(s) + j->gmax - z[0];
    }
    j->num_pos_landm[b] = landm;
    int64_t num_neg = (int64_t)j->opt->negpos_ratio * np;
    if (num_neg > P - 1) num_neg = P - 1;
    for (int64_t i = 0; i < P; i++) j->selected[off + i] = j->pos[off + i];
    if (num_neg <= 0) return;
    /* The num_neg largest losses, ties broken by lower prior index (a stable descending sort's
     * first num_neg): everything above the k-th value, then equal values in index order. */
    memcpy(copy, loss, sizeof(float) * (size_t)P);
    float v = kth_largest(copy, P, num_neg - 1);
    int64_t taken = 0;
    for (int64_t i = 0; i < P; i++)
        if (loss[i] > v) j->selected[off + i] = 1, taken++;
    for (int64_t i = 0; i < P && taken < num_neg; i++)
        if (loss[i] == v) j->selected[off + i] = 1, taken++;
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
    int *counts = graph_host_scratch(g, sizeof(int) * 2 * (size_t)B);
    float **work = graph_host_scratch(g, sizeof(float *) * (size_t)B);
    float *work_all = graph_host_scratch(g, sizeof(float) * 2 * (size_t)(B * P));
    if (!loc_t || !landm_t || !conf_t || !landm_valid || !pos || !selected || !counts || !work || !work_all) {
        graph_fail(g, ERR_OOM, "multibox_loss: out of memory");
        return false;
    }
    for (int64_t b = 0; b < B; b++) work[b] = work_all + 2 * b * P;
    /* Hard-negative ranking runs on the host: on the GPU the logits are copied over once. */
    const float *logits = conf->value.data;
    if (var_on_cuda(conf)) {
        float *host = graph_host_scratch(g, tensor_bytes(&conf->value));
        if (!host || device_memcpy(host, DEVICE_CPU, conf->value.data, DEVICE_CUDA, tensor_bytes(&conf->value), &g->err))
            return false;
        logits = host;
    }
    /* The reference ranks negatives by log_sum_exp(x) - x[0] with one global max for stability. */
    float gmax = -INFINITY;
    for (int64_t i = 0; i < B * P * C; i++) gmax = logits[i] > gmax ? logits[i] : gmax;
    Error cerr = {0};
    if (opt->comm && comm_allreduce_max_f32(opt->comm, &gmax, 1, "the loss's largest logit", &cerr)) {
        graph_fail(g, cerr.code, "multibox_loss: %s", cerr.msg);
        return false;
    }
    LossJob job = {targets, priors, logits, P, C, gmax, opt, loc_t, landm_t, conf_t, landm_valid, pos, selected,
                   counts, counts + B, work};
    threadpool_run(g->ctx->pool, (int)B, loss_image, &job);
    for (int64_t b = 0; b < B; b++) {
        if (counts[b] < 0) {
            graph_fail(g, ERR_OOM, "multibox_loss: out of memory matching");
            return false;
        }
        out->num_pos += counts[b];
        out->num_pos_landm += counts[B + b];
    }
    double positives[2] = {out->num_pos, out->num_pos_landm};
    if (opt->comm && comm_allreduce_sum_f64(opt->comm, positives, 2, "the loss's positive count", &cerr)) {
        graph_fail(g, cerr.code, "multibox_loss: %s", cerr.msg);
        return false;
    }
    out->num_pos = (int)positives[0], out->num_pos_landm = (int)positives[1];
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
