#include "detection/detector.h"
#include "detection/cascade.h"
#include "tensor/clock.h"
#include "tensor/device.h"
#include "nn/formats/tensor_dict.h"
#include "models/builtin_weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double now_ms(void) { return clock_seconds() * 1e3; }

/* Weights in place (or none): fold, move to the device, make the graph. */
static ErrorCode detector_finish(Detector *d, bool gpu, Error *err)
{
    Device dev = gpu ? DEVICE_CUDA : DEVICE_CPU;
    if (retinaface_fold_batchnorm(d->model, err) ||
        (gpu && (context_enable_cuda(d->ctx, false, err) || params_to_device(&d->model->params, dev, err) ||
                 params_to_device(&d->model->folded, dev, err))) ||
        graph_init(&d->graph, d->ctx, dev, err)) {
        detector_free(d);
        return err->code;
    }
    graph_set_grad_enabled(&d->graph, false);
    return ERR_OK;
}

static ErrorCode detector_create(Detector *d, const char *model_name, int threads, Error *err)
{
    memset(d, 0, sizeof *d);
    const RetinaConfig *cfg = retinaface_config(model_name);
    if (!cfg) return error_set(err, ERR_ARG, "unknown model '%s'", model_name);
    d->ctx = context_create(threads);
    if (!d->ctx) return error_set(err, ERR_OOM, "cannot create the thread pool");
    d->model = retinaface_create(cfg, DEVICE_CPU, 0, err);
    if (!d->model) {
        detector_free(d);
        return err->code ? err->code : error_set(err, ERR_OOM, "out of memory");
    }
    return ERR_OK;
}

ErrorCode detector_init(Detector *d, const char *model_name, const char *weights, int threads, bool gpu, Error *err)
{
    if (detector_create(d, model_name, threads, err)) return err->code;
    ErrorCode rc = ERR_OK;
    if (weights)
        rc = retinaface_load(d->model, weights, err);
    else if (retinaface_builtin_weights(model_name, &(size_t){0}))
        rc = retinaface_load_builtin(d->model, err);
    if (rc) {
        detector_free(d);
        return err->code;
    }
    return detector_finish(d, gpu, err);
}

ErrorCode detector_init_from_params(Detector *d, const RetinaFace *src, int threads, bool gpu, Error *err)
{
    if (detector_create(d, src->cfg.name, threads, err)) return err->code;
    TensorDict w;
    ErrorCode rc = params_to_dict(&src->params, &w, err);
    if (!rc) rc = params_load_dict(&d->model->params, &w, "the training model", false, false, err);
    tensor_dict_free(&w); /* params_to_dict initialises it first, so it is freed on every path */
    if (rc) {
        detector_free(d);
        return rc;
    }
    return detector_finish(d, gpu, err);
}

void detector_free(Detector *d)
{
    graph_destroy(&d->graph);
    retinaface_free(d->model);
    context_destroy(d->ctx);
    memset(d, 0, sizeof *d);
}

float detector_resize_for_long_side(const Image *img, int long_side)
{
    if (long_side <= 0) return 1.0f;
    return (float)long_side / (float)(img->width > img->height ? img->width : img->height);
}

static int by_score(const void *a, const void *b)
{
    float x = ((const Detection *)a)->score, y = ((const Detection *)b)->score;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Every object class's detections (each class decoded, thresholded and suppressed on its own, as the
 * reference does for faces), strongest first. One class (faces): exactly detections_from_outputs. */
static ErrorCode detections_all_classes(const RetinaConfig *cfg, const float *loc, const float *conf, const float *lms,
                                        const float *priors, int64_t P, float scale_x, float scale_y,
                                        const PostprocessOptions *opt, Detection **out, int *n_out, Error *err)
{
    *out = NULL, *n_out = 0;
    for (int label = 1; label < cfg->num_classes; label++) {
        Detection *part = NULL;
        int n = 0;
        if (detections_from_outputs(loc, conf, cfg->num_classes, lms, priors, P, cfg->variance, scale_x, scale_y, label,
                                    opt, &part, &n, err)) {
            free(*out);
            *out = NULL, *n_out = 0;
            return err->code;
        }
        if (label == 1) {
            *out = part, *n_out = n;
            continue;
        }
        Detection *all = realloc(*out, sizeof *all * (size_t)(*n_out + n + 1));
        if (!all) {
            free(part);
            return error_set(err, ERR_OOM, "out of memory");
        }
        memcpy(all + *n_out, part, sizeof *all * (size_t)n);
        free(part);
        *out = all, *n_out += n;
    }
    if (cfg->num_classes > 2 && *n_out > 1) qsort(*out, (size_t)*n_out, sizeof **out, by_score);
    return ERR_OK;
}

/* The network on B images of one size (in[0..B)): their detections into dets[k], counts[k]; forward and
 * postprocess milliseconds added to *fwd_ms, *post_ms. resize[k] maps image k's boxes back. */
static ErrorCode detect_same_size(Detector *d, const Image *const *in, const float *resize, int B,
                                  const PostprocessOptions *opt, Detection **dets, int *counts, double *fwd_ms,
                                  double *post_ms, Error *err)
{
    const RetinaConfig *cfg = &d->model->cfg;
    int height = in[0]->height, width = in[0]->width;
    Graph *g = &d->graph;
    graph_reset(g);
    /* the same model at the same input size and batch allocates the same values in the same order: one
     * memory plan per (size, batch) keeps the live activations in a few MB instead of a fresh slot for
     * each (on the CPU, where that is what keeps them in cache; the GPU path has not been run with a
     * plan yet) */
    if (g->heap.device == DEVICE_CPU)
        graph_plan_memory(g, (uint64_t)B << 48 | (uint64_t)height << 24 | (uint32_t)width);
    int64_t shape[4] = {B, 3, height, width};
    Var *x = var_new(g, 4, shape);
    if (!x) return error_set(err, g->err.code, "%s", g->err.msg);
    static const float mean[3] = {104.0f, 117.0f, 123.0f};
    bool on_gpu = var_on_cuda(x);
    float *chw = on_gpu ? graph_host_scratch(g, tensor_bytes(&x->value)) : x->value.data;
    if (!chw) return error_set(err, ERR_OOM, "out of memory");
    size_t plane = (size_t)3 * height * width;
    for (int k = 0; k < B; k++) image_to_chw(in[k], mean, chw + k * plane);
    if (on_gpu && device_memcpy(x->value.data, DEVICE_CUDA, chw, DEVICE_CPU, tensor_bytes(&x->value), err))
        return err->code;
    double t0 = now_ms();
    RetinaOutputs out;
    bool ok = retinaface_forward(g, d->model, x, false, &out);
    /* a cascade's answer is its second stage, read against the first stage's regressed boxes */
    bool cascade = ok && out.loc2;
    Var *probs = ok ? ag_softmax(g, cascade ? out.conf2 : out.conf) : NULL;
    graph_profile_end_forward(g); /* postprocessing is not the softmax's time */
    if (!probs) return error_set(err, g->err.code ? g->err.code : ERR_ARG, "forward: %s", g->err.msg);
    /* Network outputs on the host for postprocessing (a copy when they live on the GPU; the copy
     * waits for the kernels, so the forward time includes them). */
    Var *src[3] = {cascade ? out.loc2 : out.loc, probs, cascade ? out.landms2 : out.landms};
    const float *h[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        if (!src[k]) continue;
        h[k] = src[k]->value.data;
        if (!on_gpu) continue;
        float *copy = graph_host_scratch(g, tensor_bytes(&src[k]->value));
        if (!copy || device_memcpy(copy, DEVICE_CPU, src[k]->value.data, DEVICE_CUDA, tensor_bytes(&src[k]->value), err))
            return err->code ? err->code : error_set(err, ERR_OOM, "out of memory");
        h[k] = copy;
    }
    const float *loc = h[0], *conf = h[1], *lms = h[2];
    double t1 = now_ms();
    int64_t P = priors_count(&cfg->anchors, height, width);
    float *priors = graph_host_scratch(g, (size_t)P * 4 * sizeof(float));
    ErrorCode rc = ERR_OK;
    if (!priors || P != probs->value.shape[1]) {
        rc = error_set(err, ERR_SHAPE, "%lld priors for %lld outputs", (long long)P, (long long)probs->value.shape[1]);
    } else {
        priors_generate(&cfg->anchors, height, width, priors);
        const float *refined = cascade ? cascade_priors(g, out.loc, priors, cfg->variance) : NULL;
        if (cascade && !refined) rc = error_set(err, g->err.code, "%s", g->err.msg);
        for (int k = 0; k < B && !rc; k++)
            rc = detections_all_classes(cfg, loc + k * P * 4, conf + k * P * cfg->num_classes,
                                        lms ? lms + k * P * 10 : NULL, refined ? refined + k * P * 4 : priors, P,
                                        (float)width / resize[k], (float)height / resize[k], opt, &dets[k], &counts[k],
                                        err);
    }
    *fwd_ms += t1 - t0;
    *post_ms += now_ms() - t1;
    return rc;
}

ErrorCode detector_detect_batch(Detector *d, int n, const Image *const *imgs, const float *resize, int max_batch,
                                const PostprocessOptions *opt, Detection **dets, int *counts, DetectTiming *timing,
                                Error *err)
{
    for (int i = 0; i < n; i++) dets[i] = NULL, counts[i] = 0;
    if (timing) memset(timing, 0, sizeof *timing);
    if (n <= 0) return ERR_OK;
    if (max_batch < 1) max_batch = 1;
    /* the network's inputs: the images resized (cv2.resize(fx=fy=resize): sizes rounded to nearest) */
    Image *scaled = calloc((size_t)n, sizeof *scaled);
    const Image **in = calloc((size_t)n, sizeof *in);
    const Image **group = calloc((size_t)max_batch, sizeof *group);
    int *members = calloc((size_t)max_batch, sizeof *members);
    float *group_resize = calloc((size_t)max_batch, sizeof *group_resize);
    bool *done = calloc((size_t)n, sizeof *done);
    ErrorCode rc = !scaled || !in || !group || !members || !group_resize || !done
                       ? error_set(err, ERR_OOM, "out of memory batching %d images", n)
                       : ERR_OK;
    for (int i = 0; i < n && !rc; i++) {
        in[i] = imgs[i];
        if (resize[i] == 1.0f) continue;
        int w = (int)lrint(imgs[i]->width * (double)resize[i]), h = (int)lrint(imgs[i]->height * (double)resize[i]);
        if (w < 1 || h < 1) rc = error_set(err, ERR_ARG, "resize factor %g leaves no pixels", resize[i]);
        else if (!(rc = image_resize(imgs[i], w, h, &scaled[i], err))) in[i] = &scaled[i];
    }
    /* images of one size share a forward, up to max_batch at a time, in order of first appearance */
    double fwd = 0, post = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (done[i]) continue;
        int B = 0;
        for (int j = i; j < n && B < max_batch; j++)
            if (!done[j] && in[j]->width == in[i]->width && in[j]->height == in[i]->height) {
                group[B] = in[j], group_resize[B] = resize[j], members[B++] = j;
                done[j] = true;
            }
        Detection *part[B];
        int part_n[B];
        for (int k = 0; k < B; k++) part[k] = NULL, part_n[k] = 0;
        rc = detect_same_size(d, group, group_resize, B, opt, part, part_n, &fwd, &post, err);
        for (int k = 0; k < B; k++) dets[members[k]] = part[k], counts[members[k]] = part_n[k];
    }
    if (timing) {
        timing->forward_ms = fwd, timing->postprocess_ms = post;
        timing->input_width = in && in[0] ? in[0]->width : 0, timing->input_height = in && in[0] ? in[0]->height : 0;
    }
    if (rc)
        for (int i = 0; i < n; i++) free(dets[i]), dets[i] = NULL, counts[i] = 0;
    for (int i = 0; scaled && i < n; i++) image_free(&scaled[i]);
    free(scaled), free(in), free(group), free(members), free(group_resize), free(done);
    return rc;
}

int detector_default_batch(const Detector *d) { return d->graph.heap.device == DEVICE_CUDA ? 8 : 1; }

ErrorCode detector_detect(Detector *d, const Image *img, float resize, const PostprocessOptions *opt,
                          Detection **dets, int *n, DetectTiming *timing, Error *err)
{
    const Image *imgs[1] = {img};
    return detector_detect_batch(d, 1, imgs, &resize, 1, opt, dets, n, timing, err);
}
