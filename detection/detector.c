#include "detection/detector.h"
#include "tensor/clock.h"
#include "tensor/device.h"
#include "nn/tensor_dict.h"
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

ErrorCode detector_detect(Detector *d, const Image *img, float resize, const PostprocessOptions *opt,
                          Detection **dets, int *n, DetectTiming *timing, Error *err)
{
    *dets = NULL;
    *n = 0;
    const RetinaConfig *cfg = &d->model->cfg;
    Image scaled = {0};
    const Image *in = img;
    if (resize != 1.0f) {
        /* cv2.resize(fx=fy=resize): output size rounded to nearest. */
        int w = (int)lrint(img->width * (double)resize), h = (int)lrint(img->height * (double)resize);
        if (w < 1 || h < 1) return error_set(err, ERR_ARG, "resize factor %g leaves no pixels", resize);
        if (image_resize(img, w, h, &scaled, err)) return err->code;
        in = &scaled;
    }
    Graph *g = &d->graph;
    graph_reset(g);
    /* the same model at the same input size allocates the same values in the same order: one memory
     * plan per size keeps the live activations in a few MB instead of a fresh slot for each (on the
     * CPU, where that is what keeps them in cache; the GPU path has not been run with a plan yet) */
    if (g->heap.device == DEVICE_CPU) graph_plan_memory(g, (uint64_t)in->height << 32 | (uint32_t)in->width);
    int64_t shape[4] = {1, 3, in->height, in->width};
    Var *x = var_new(g, 4, shape);
    if (!x) {
        image_free(&scaled);
        return error_set(err, g->err.code, "%s", g->err.msg);
    }
    static const float mean[3] = {104.0f, 117.0f, 123.0f};
    bool on_gpu = var_on_cuda(x);
    float *chw = on_gpu ? graph_host_scratch(g, tensor_bytes(&x->value)) : x->value.data;
    if (!chw) {
        image_free(&scaled);
        return error_set(err, ERR_OOM, "out of memory");
    }
    image_to_chw(in, mean, chw);
    if (on_gpu && device_memcpy(x->value.data, DEVICE_CUDA, chw, DEVICE_CPU, tensor_bytes(&x->value), err)) {
        image_free(&scaled);
        return err->code;
    }
    double t0 = now_ms();
    RetinaOutputs out;
    bool ok = retinaface_forward(g, d->model, x, false, &out);
    Var *probs = ok ? ag_softmax(g, out.conf) : NULL;
    graph_profile_end_forward(g); /* postprocessing is not the softmax's time */
    if (!probs) {
        image_free(&scaled);
        return error_set(err, g->err.code ? g->err.code : ERR_ARG, "forward: %s", g->err.msg);
    }
    /* Network outputs on the host for postprocessing (a copy when they live on the GPU; the copy
     * waits for the kernels, so the forward time includes them). */
    const float *loc = out.loc->value.data, *conf = probs->value.data, *lms = out.landms ? out.landms->value.data : NULL;
    if (on_gpu) {
        float *h[3] = {NULL, NULL, NULL};
        Var *src[3] = {out.loc, probs, out.landms};
        for (int k = 0; k < 3; k++) {
            if (!src[k]) continue;
            h[k] = graph_host_scratch(g, tensor_bytes(&src[k]->value));
            if (!h[k] || device_memcpy(h[k], DEVICE_CPU, src[k]->value.data, DEVICE_CUDA, tensor_bytes(&src[k]->value), err)) {
                image_free(&scaled);
                return err->code ? err->code : error_set(err, ERR_OOM, "out of memory");
            }
        }
        loc = h[0], conf = h[1], lms = h[2];
    }
    double t1 = now_ms();
    int64_t P = priors_count(&cfg->anchors, in->height, in->width);
    float *priors = graph_host_scratch(g, (size_t)P * 4 * sizeof(float));
    ErrorCode rc = ERR_OK;
    if (!priors || P != probs->value.shape[1]) {
        rc = error_set(err, ERR_SHAPE, "%lld priors for %lld outputs", (long long)P,
                       (long long)probs->value.shape[1]);
    } else {
        priors_generate(&cfg->anchors, in->height, in->width, priors);
        rc = detections_from_outputs(loc, conf, cfg->num_classes, lms, priors, P, cfg->variance,
                                     (float)in->width / resize, (float)in->height / resize, 1, opt, dets, n, err);
    }
    double t2 = now_ms();
    if (timing) {
        timing->forward_ms = t1 - t0;
        timing->postprocess_ms = t2 - t1;
        timing->input_width = in->width;
        timing->input_height = in->height;
    }
    image_free(&scaled);
    return rc;
}
