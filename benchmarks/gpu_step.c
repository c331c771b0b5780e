/* GPU end-to-end figures: a RetinaFace training step (forward, MultiBox loss with matching,
 * backward, SGD) and batch-1 inference (network + postprocess), medians over timed runs after
 * warm-up, each run ended by a device synchronisation. Also the data pipeline's images/s.
 * Usage: build/bench_gpu_step [mnet_batch] [r50_batch] [label.txt for the loader benchmark] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarks/bench_common.h"
#include "detection/detector.h"
#include "detection/loader.h"
#include "detection/multibox_loss.h"
#include "nn/sgd.h"
#include "tensor/device.h"
#include "tensor/rng.h"
#ifdef HAVE_CUDA
#include "cuda_kernels/cuda_ops.h"
#endif

#ifdef HAVE_CUDA
static double train_step_ms(const char *model, int batch, int size, bool tf32, int reps)
{
    Error err = {0};
    Context *ctx = context_create(0);
    if (context_enable_cuda(ctx, tf32, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    RetinaFace *m = retinaface_create(retinaface_config(model), DEVICE_CPU, 1, &err);
    params_to_device(&m->params, DEVICE_CUDA, &err);
    Sgd sgd;
    sgd_init(&sgd, &m->params, 0.9f, 5e-4f, &err);
    Graph g;
    graph_init(&g, ctx, DEVICE_CUDA, &err);
    int64_t xs[4] = {batch, 3, size, size};
    /* the input as the trainer's loader provides it: page-locked host memory */
    Tensor host = tensor_wrap(host_alloc_pinned((size_t)shape_numel(4, xs) * sizeof(float)), DEVICE_CPU, 4, xs);
    Rng r;
    rng_seed(&r, 1, 1);
    tensor_fill_normal(&host, &r, 0, 50);
    int64_t P;
    float *priors = priors_for(&m->cfg.anchors, size, size, &P, NULL);
    /* a few faces per image */
    enum { FACES = 6 };
    ImageTargets *t = calloc((size_t)batch, sizeof *t);
    float *boxes = malloc(sizeof(float) * 4 * FACES * (size_t)batch), *lms = malloc(sizeof(float) * 10 * FACES * (size_t)batch);
    int32_t *labels = malloc(sizeof(int32_t) * FACES * (size_t)batch);
    uint8_t *has = malloc(FACES * (size_t)batch);
    for (int b = 0; b < batch; b++) {
        for (int k = 0; k < FACES; k++) {
            float *bx = boxes + 4 * (b * FACES + k), s = 0.05f + 0.05f * k, x = 0.1f * k, y = 0.08f * k;
            bx[0] = x, bx[1] = y, bx[2] = x + s, bx[3] = y + s;
            for (int p = 0; p < 5; p++) lms[10 * (b * FACES + k) + 2 * p] = x + s / 2, lms[10 * (b * FACES + k) + 2 * p + 1] = y + s / 2;
            labels[b * FACES + k] = 1, has[b * FACES + k] = 1;
        }
        t[b] = (ImageTargets){FACES, boxes + 4 * b * FACES, lms + 10 * b * FACES, labels + b * FACES, has + b * FACES};
    }
    MultiBoxOptions opt = multibox_defaults();
    /* Pass 0: whole steps, no synchronisation inside. Pass 1: a synchronisation after each phase
     * (input copy, forward, loss with matching, backward, SGD), for the breakdown. */
    double *times = malloc(sizeof(double) * (size_t)reps), *phase[5];
    for (int k = 0; k < 5; k++) phase[k] = malloc(sizeof(double) * (size_t)reps);
    for (int pass = 0; pass < 2; pass++)
        for (int rep = -3; rep < reps; rep++) {
            cuda_sync(ctx, &err);
            double tp[6];
            tp[0] = bench_now();
            graph_reset(&g);
            Var *x = var_new(&g, 4, xs);
            tensor_copy(&x->value, &host, &err);
            if (pass) cuda_sync(ctx, &err);
            tp[1] = bench_now();
            RetinaOutputs out;
            MultiBoxLosses L;
            bool ok = retinaface_forward(&g, m, x, true, &out);
            if (pass) cuda_sync(ctx, &err);
            tp[2] = bench_now();
            ok = ok && multibox_loss(&g, out.loc, out.conf, out.landms, priors, t, &opt, &L);
            if (pass) cuda_sync(ctx, &err);
            tp[3] = bench_now();
            ok = ok && graph_backward(&g, L.total) == ERR_OK;
            if (pass) cuda_sync(ctx, &err);
            tp[4] = bench_now();
            if (!ok) {
                fprintf(stderr, "step failed: %s\n", g.err.msg);
                exit(1);
            }
            sgd_step(&sgd, &m->params, 1e-3f, ctx, &err);
            params_zero_grad(&m->params);
            cuda_sync(ctx, &err);
            tp[5] = bench_now();
            if (rep < 0) continue;
            if (!pass) times[rep] = (tp[5] - tp[0]) * 1e3;
            else
                for (int k = 0; k < 5; k++) phase[k][rep] = (tp[k + 1] - tp[k]) * 1e3;
        }
    /* Pass 2: per-op times (synchronising around every op). */
    graph_enable_profile(&g, false);
    int prof_steps = 3;
    for (int rep = 0; rep < prof_steps; rep++) {
        graph_reset(&g);
        Var *x = var_new(&g, 4, xs);
        tensor_copy(&x->value, &host, &err);
        RetinaOutputs out;
        MultiBoxLosses L;
        if (!retinaface_forward(&g, m, x, true, &out) || !multibox_loss(&g, out.loc, out.conf, out.landms, priors, t, &opt, &L) ||
            graph_backward(&g, L.total)) {
            fprintf(stderr, "step failed: %s\n", g.err.msg);
            exit(1);
        }
        params_zero_grad(&m->params);
    }
    double med = bench_median(times, reps);
    static const char *names[5] = {"input copy", "forward", "loss + matching", "backward", "sgd + zero grad"};
    printf("  %s batch %d at %d: step %.1f ms; with a sync after each phase:", model, batch, size, med);
    for (int k = 0; k < 5; k++) printf(" %s %.1f", names[k], bench_median(phase[k], reps));
    printf(" ms\n");
    for (int k = 0; k < 5; k++) free(phase[k]);
    printf("  per op (one step, synchronised around each op):\n");
    graph_print_profile(&g, stdout, prof_steps);
    free(times), free(t), free(boxes), free(lms), free(labels), free(has), free(priors);
    host_free_pinned(host.data);
    graph_destroy(&g);
    sgd_free(&sgd);
    retinaface_free(m);
    context_destroy(ctx);
    return med;
}

static void inference(const char *model, const char *weights, int w, int h, int reps, double *net_ms, double *post_ms)
{
    Error err = {0};
    Detector d;
    if (detector_init(&d, model, weights, 0, true, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    Image img, full;
    char ib[512];
    const char *photo = getenv("RETINA_BENCH_IMAGE");
    if (photo && image_load_jpeg(photo, &full, &err) == ERR_OK) {
        /* a real photo (faces): a random-weight network or noise would make NMS the benchmark */
        image_resize(&full, w, h, &img, &err);
        image_free(&full);
    } else {
        image_alloc(&img, w, h, &err);
        Rng r;
        rng_seed(&r, 2, 2);
        for (int i = 0; i < w * h * 3; i++) img.bgr[i] = (uint8_t)rng_below(&r, 256);
    }
    (void)ib;
    PostprocessOptions opt = postprocess_defaults();
    double *a = malloc(sizeof(double) * (size_t)reps), *b = malloc(sizeof(double) * (size_t)reps);
    for (int rep = -5; rep < reps; rep++) {
        Detection *dets;
        int n;
        DetectTiming t;
        detector_detect(&d, &img, 1.0f, &opt, &dets, &n, &t, &err);
        free(dets);
        if (rep >= 0) a[rep] = t.forward_ms, b[rep] = t.postprocess_ms;
    }
    *net_ms = bench_median(a, reps), *post_ms = bench_median(b, reps);
    free(a), free(b);
    image_free(&img);
    detector_free(&d);
}
#endif

static double loader_images_per_s(const char *labels, int workers, int batch)
{
    Error err = {0};
    TrainSet set;
    if (trainset_load(labels, NULL, &set, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 0;
    }
    AugmentOptions opt = augment_defaults(640);
    Loader *l = loader_create(&set, &opt, batch, workers, 1, false, &err);
    double t0 = bench_now();
    int images = 0;
    for (int epoch = 0; epoch < 2; epoch++) {
        loader_begin_epoch(l, epoch, 0);
        const Batch *b;
        while ((b = loader_next(l))) images += b->n;
    }
    double rate = images / (bench_now() - t0);
    loader_destroy(l);
    trainset_free(&set);
    return rate;
}

int main(int argc, char **argv)
{
    int mnet_batch = argc > 1 ? atoi(argv[1]) : 32, r50_batch = argc > 2 ? atoi(argv[2]) : 24;
    const char *labels = argc > 3 ? argv[3] : NULL;
    char cpu[256];
    bench_cpu_name(cpu, sizeof cpu);
    printf("machine: %s, %ld CPU threads\n", cpu, sysconf(_SC_NPROCESSORS_ONLN));
    if (labels) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        printf("data pipeline (augmented 640x640, %ld workers): %.0f images/s\n", n, loader_images_per_s(labels, (int)n, 32));
    }
#ifdef HAVE_CUDA
    if (device_cuda_count() == 0) {
        printf("no CUDA device: GPU figures skipped\n");
        return 0;
    }
    printf("%-52s %10s\n", "GPU end to end (median of timed runs)", "ms");
    printf("%-52s %10.1f\n", "MobileNet-0.25 train step, 640x640, FP32 (no TF32)", train_step_ms("mobilenet0.25", mnet_batch, 640, false, 10));
    printf("  (batch %d)\n", mnet_batch);
    printf("%-52s %10.1f\n", "ResNet-50 train step, 840x840, TF32", train_step_ms("resnet50", r50_batch, 840, true, 5));
    printf("  (batch %d)\n", r50_batch);
    double net, post;
    const char *mnet_weights = getenv("RETINA_BENCH_WEIGHTS");
    inference("mobilenet0.25", mnet_weights, 640, 480, 50, &net, &post);
    printf("%-52s %10.2f  (+ postprocess %.2f on the host)\n", "MobileNet-0.25 inference b1 640x480, network", net, post);
    inference("resnet50", NULL, 640, 480, 50, &net, &post);
    printf("%-52s %10.2f  (random weights: postprocess not representative)\n", "ResNet-50 inference b1 640x480, network", net);
#else
    printf("built without CUDA: GPU figures skipped\n");
#endif
    return 0;
}
