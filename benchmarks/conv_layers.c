/* Times every convolution of RetinaFace-MobileNet-0.25 at an image size (640x640 unless given), batch 1, as the
 * inference forward runs it: BN-folded weights packed once (conv2d_pack_weights), bias and leaky ReLU in the
 * epilogue, and convolutions that share an input (SSH's pairs, each level's three heads) as one
 * ag_conv2d_shared_input op. Prints the kernel each takes, median and best time, GFLOP/s and the
 * fraction of this machine's measured FMA peak. FLOPs count 2 per multiply-add of the direct
 * convolution (so Winograd layers, which do fewer, can show more than 100%); bytes are input +
 * weight + output once (the least traffic the layer needs), reported also as a fraction of the
 * measured copy bandwidth of a 16 MB working set (the size class of the inference activations, which
 * live in last-level cache). Usage: build/bench_conv_layers [threads] [WIDTHxHEIGHT] [train BATCH]
 * With `train BATCH`: the training step's op instead (ag_conv_bn_act_train, batch statistics), each
 * convolution on its own at that batch, forward and backward (input gradient except for the stem, whose
 * input is the image; weight gradient), median times and the backward's GFLOP/s (twice the forward's
 * FLOPs, once without the input gradient). */
#include <stdio.h>
#include <stdlib.h>

#include "autograd/conv2d_cpu.h"
#include "autograd/ops.h"
#include "benchmarks/bench_common.h"
#include "tensor/rng.h"
#include "tensor/sgemm.h"

enum { MAX_BRANCHES = 3 };

typedef struct {
    const char *name;
    int cin, k, stride, groups, div, count; /* div: input size = image size / div; count: occurrences */
    int cout[MAX_BRANCHES];                 /* output channels of each convolution of the input (0: none) */
} Layer;

static const Layer layers[] = {
    {"stage1 conv 3x3/2", 3, 3, 2, 1, 1, 1, {8}},
    {"dw 8 3x3", 8, 3, 1, 8, 2, 1, {8}},
    {"pw 8->16", 8, 1, 1, 1, 2, 1, {16}},
    {"dw 16 3x3/2", 16, 3, 2, 16, 2, 1, {16}},
    {"pw 16->32", 16, 1, 1, 1, 4, 1, {32}},
    {"dw 32 3x3", 32, 3, 1, 32, 4, 1, {32}},
    {"pw 32->32", 32, 1, 1, 1, 4, 1, {32}},
    {"dw 32 3x3/2", 32, 3, 2, 32, 4, 1, {32}},
    {"pw 32->64", 32, 1, 1, 1, 8, 1, {64}},
    {"dw 64 3x3", 64, 3, 1, 64, 8, 1, {64}},
    {"pw 64->64", 64, 1, 1, 1, 8, 1, {64}},
    {"dw 64 3x3/2", 64, 3, 2, 64, 8, 1, {64}},
    {"pw 64->128", 64, 1, 1, 1, 16, 1, {128}},
    {"dw 128 3x3", 128, 3, 1, 128, 16, 5, {128}},
    {"pw 128->128", 128, 1, 1, 1, 16, 5, {128}},
    {"dw 128 3x3/2", 128, 3, 2, 128, 16, 1, {128}},
    {"pw 128->256", 128, 1, 1, 1, 32, 1, {256}},
    {"dw 256 3x3", 256, 3, 1, 256, 32, 1, {256}},
    {"pw 256->256", 256, 1, 1, 1, 32, 1, {256}},
    {"fpn out1 1x1 64->64", 64, 1, 1, 1, 8, 1, {64}},
    {"fpn out2 1x1 128->64", 128, 1, 1, 1, 16, 1, {64}},
    {"fpn out3 1x1 256->64", 256, 1, 1, 1, 32, 1, {64}},
    {"fpn merge 3x3 64->64 @8", 64, 3, 1, 1, 8, 1, {64}},
    {"fpn merge 3x3 64->64 @16", 64, 3, 1, 1, 16, 1, {64}},
    {"ssh 3x3 64->32+16 @8", 64, 3, 1, 1, 8, 1, {32, 16}},
    {"ssh 3x3 16->16+16 @8", 16, 3, 1, 1, 8, 1, {16, 16}},
    {"ssh 3x3 16->16 @8", 16, 3, 1, 1, 8, 1, {16}},
    {"ssh 3x3 64->32+16 @16", 64, 3, 1, 1, 16, 1, {32, 16}},
    {"ssh 3x3 16->16+16 @16", 16, 3, 1, 1, 16, 1, {16, 16}},
    {"ssh 3x3 16->16 @16", 16, 3, 1, 1, 16, 1, {16}},
    {"ssh 3x3 64->32+16 @32", 64, 3, 1, 1, 32, 1, {32, 16}},
    {"ssh 3x3 16->16+16 @32", 16, 3, 1, 1, 32, 1, {16, 16}},
    {"ssh 3x3 16->16 @32", 16, 3, 1, 1, 32, 1, {16}},
    {"heads 1x1 64->4+8+20 @8", 64, 1, 1, 1, 8, 1, {4, 8, 20}},
    {"heads 1x1 64->4+8+20 @16", 64, 1, 1, 1, 16, 1, {4, 8, 20}},
    {"heads 1x1 64->4+8+20 @32", 64, 1, 1, 1, 32, 1, {4, 8, 20}},
};

/* The training op of each convolution at batch `batch`: forward and backward medians. */
static int train_table(Context *ctx, int img_w, int img_h, int batch, double peak)
{
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    Rng r;
    rng_seed(&r, 1, 1);
    printf("%-26s %-11s %5s %10s %10s %11s %7s\n", "layer (one branch)", "kernel", "count", "fwd ms", "bwd ms",
           "bwd GFLOP/s", "%peak");
    double total_f = 0, total_b = 0;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        const Layer *L = &layers[i];
        int h = img_h, w = img_w;
        for (int d = 1; d < L->div; d *= 2) h = (h + 1) / 2, w = (w + 1) / 2;
        for (int br = 0; br < MAX_BRANCHES && L->cout[br]; br++) {
            int co = L->cout[br];
            int64_t xs[4] = {batch, L->cin, h, w}, ws[4] = {co, L->cin / L->groups, L->k, L->k}, cs[1] = {co};
            Tensor t[4], rm, rv;
            if (tensor_new(&t[0], DEVICE_CPU, 4, xs, NULL) || tensor_new(&t[1], DEVICE_CPU, 4, ws, NULL) ||
                tensor_new(&t[2], DEVICE_CPU, 1, cs, NULL) || tensor_new(&t[3], DEVICE_CPU, 1, cs, NULL) ||
                tensor_new(&rm, DEVICE_CPU, 1, cs, NULL) || tensor_new(&rv, DEVICE_CPU, 1, cs, NULL))
                return 1;
            tensor_fill_normal(&t[0], &r, 0, 1), tensor_fill_normal(&t[1], &r, 0, 0.1f);
            tensor_fill(&t[2], 1.0f), tensor_fill(&t[3], 0.0f), tensor_fill(&rv, 1.0f);
            Conv2dParams p = conv2d_params(L->stride, L->k / 2, 1, L->groups);
            enum { REPS = 7 };
            double tf[REPS], tb[REPS];
            float *seed = NULL;
            Conv2dShape shape = {0};
            for (int rep = -2; rep < REPS; rep++) {
                graph_reset(&g);
                Var *v[4];
                for (int k = 0; k < 4; k++) v[k] = var_from_tensor(&g, &t[k], k > 0 || i > 0);
                double t0 = bench_now();
                Var *y = ag_conv_bn_act_train(&g, v[0], v[1], v[2], v[3], &rm, &rv, p, 0.1f, 1e-5f, 0.1f);
                double t1 = bench_now();
                if (!y) {
                    fprintf(stderr, "%s: %s\n", L->name, g.err.msg);
                    return 1;
                }
                if (!seed) {
                    seed = malloc(tensor_bytes(&y->value));
                    for (int64_t e = 0; e < tensor_numel(&y->value); e++) seed[e] = (float)(e % 7) - 3.0f;
                    char msg[128];
                    conv2d_shape(&shape, &t[0], &t[1], NULL, p, msg, sizeof msg);
                }
                double t2 = bench_now();
                if (graph_backward_with_grad(&g, y, seed)) {
                    fprintf(stderr, "%s: %s\n", L->name, g.err.msg);
                    return 1;
                }
                double t3 = bench_now();
                if (rep >= 0) tf[rep] = t1 - t0, tb[rep] = t3 - t2;
            }
            double f = bench_median(tf, REPS) * 1e3, b = bench_median(tb, REPS) * 1e3;
            double gflops = conv2d_flops(&shape) * (i > 0 ? 2 : 1) / (b * 1e-3) / 1e9;
            char name[64];
            snprintf(name, sizeof name, L->cout[1] ? "%s [%d]" : "%s", L->name, co);
            printf("%-26s %-11s %5d %10.3f %10.3f %11.2f %6.1f%%\n", name, conv2d_cpu_kind(&shape), L->count, f, b, gflops,
                   peak > 0 ? 100 * gflops / peak : 0);
            total_f += f * L->count, total_b += b * L->count;
            free(seed);
            for (int k = 0; k < 4; k++) tensor_free(&t[k]);
            tensor_free(&rm), tensor_free(&rv);
        }
    }
    printf("\n%-26s %-11s %5s %10.3f %10.3f\n", "all convolutions", "", "", total_f, total_b);
    graph_destroy(&g);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0, img_w = 640, img_h = 640, batch = 0;
    if ((argc > 2 && (sscanf(argv[2], "%dx%d", &img_w, &img_h) != 2 || img_w < 32 || img_h < 32)) ||
        (argc > 3 && (strcmp(argv[3], "train") || argc < 5 || (batch = atoi(argv[4])) < 1))) {
        fprintf(stderr, "usage: %s [threads] [WIDTHxHEIGHT, at least 32x32] [train BATCH]\n", argv[0]);
        return 2;
    }
    Context *ctx = context_create(threads);
    if (!ctx) return 1;
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    graph_set_grad_enabled(&g, false);
    char cpu[256];
    bench_cpu_name(cpu, sizeof cpu);
    double peak = bench_fma_peak_gflops(ctx->pool);
    double cache_gbs = bench_copy_gbs(ctx->pool, (size_t)16 << 20), memory_gbs = bench_copy_gbs(ctx->pool, (size_t)512 << 20);
    if (batch) {
        printf("training conv -> BN -> leaky ReLU, RetinaFace-MobileNet-0.25 layers at %dx%d, batch %d\n", img_w, img_h,
               batch);
        printf("machine: %s, %d threads, sgemm kernel %s, measured FMA peak %.1f GFLOP/s\n\n", cpu, ctx->nthreads,
               sgemm_kernel_name(), peak);
        int rc = train_table(ctx, img_w, img_h, batch, peak);
        graph_destroy(&g);
        context_destroy(ctx);
        return rc;
    }
    printf("conv2d forward, RetinaFace-MobileNet-0.25 layers at %dx%d, batch 1\n", img_w, img_h);
    printf("machine: %s, %d threads, sgemm kernel %s, measured FMA peak %.1f GFLOP/s,\n", cpu, ctx->nthreads,
           sgemm_kernel_name(), peak);
    printf("measured copy bandwidth (read + write) %.1f GB/s at 16 MB, %.1f GB/s at 512 MB\n\n", cache_gbs,
           memory_gbs);
    printf("%-26s %-11s %5s %9s %9s %9s %9s %7s %6s\n", "layer", "kernel", "count", "ms", "best ms", "GFLOP/s", "GB/s",
           "%peak", "%bw");
    Rng r;
    rng_seed(&r, 1, 1);
    double total_ms = 0, total_best_ms = 0, total_flops = 0;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        const Layer *L = &layers[i];
        /* the network's sizes: each stride-2 step rounds up, as (n + 2 - 3) / 2 + 1 does */
        int h = img_h, w = img_w;
        for (int d = 1; d < L->div; d *= 2) h = (h + 1) / 2, w = (w + 1) / 2;
        int64_t xs[4] = {1, L->cin, h, w};
        Tensor xt, wt[MAX_BRANCHES], bt[MAX_BRANCHES];
        Conv2dPacked packed[MAX_BRANCHES];
        Conv2dParams p = conv2d_params(L->stride, L->k / 2, 1, L->groups);
        int n = 0, cout_total = 0;
        if (tensor_new(&xt, DEVICE_CPU, 4, xs, NULL)) return 1;
        tensor_fill_normal(&xt, &r, 0, 1);
        for (; n < MAX_BRANCHES && L->cout[n]; n++) {
            int64_t ws[4] = {L->cout[n], L->cin / L->groups, L->k, L->k}, bs[1] = {L->cout[n]};
            if (tensor_new(&wt[n], DEVICE_CPU, 4, ws, NULL) || tensor_new(&bt[n], DEVICE_CPU, 1, bs, NULL)) return 1;
            tensor_fill_normal(&wt[n], &r, 0, 0.1f);
            tensor_fill_normal(&bt[n], &r, 0, 0.1f);
            if (conv2d_pack_weights(&packed[n], &wt[n], p, NULL)) return 1;
            cout_total += L->cout[n];
        }
        double times[25];
        int reps = 25;
        for (int rep = -3; rep < reps; rep++) {
            graph_reset(&g); /* steady state: the arena is reused, as in a real forward pass */
            Var *x = var_from_tensor(&g, &xt, false), *y[MAX_BRANCHES];
            Conv2dBranch br[MAX_BRANCHES];
            for (int i = 0; i < n; i++)
                br[i] = (Conv2dBranch){var_from_tensor(&g, &wt[i], false), var_from_tensor(&g, &bt[i], false), 0.1f,
                                       &packed[i]};
            double t0 = bench_now();
            bool ok = ag_conv2d_shared_input(&g, x, p, n, br, y);
            double dt = bench_now() - t0;
            if (!ok) {
                fprintf(stderr, "%s: %s\n", L->name, g.err.msg);
                return 1;
            }
            if (rep >= 0) times[rep] = dt;
        }
        double best = times[0];
        for (int i = 1; i < reps; i++) best = times[i] < best ? times[i] : best;
        double ms = bench_median(times, reps) * 1e3;
        int ho = (h + 2 * (L->k / 2) - L->k) / L->stride + 1, wo = (w + 2 * (L->k / 2) - L->k) / L->stride + 1;
        double flops = 2.0 * ho * wo * cout_total * (L->cin / L->groups) * L->k * L->k;
        double bytes = 4.0 * ((double)L->cin * h * w + (double)cout_total * (L->cin / L->groups) * L->k * L->k +
                              (double)cout_total * ho * wo);
        double gflops = flops / (ms * 1e-3) / 1e9;
        Conv2dShape shape;
        char msg[128];
        int64_t ws_total[4] = {cout_total, L->cin / L->groups, L->k, L->k};
        Tensor w_total = tensor_wrap(NULL, DEVICE_CPU, 4, ws_total);
        const char *kernel = conv2d_shape(&shape, &xt, &w_total, NULL, p, msg, sizeof msg)
                                 ? conv2d_cpu_algorithm_name(conv2d_cpu_algorithm(&shape))
                                 : "?";
        tensor_free(&xt);
        for (int i = 0; i < n; i++) tensor_free(&wt[i]), tensor_free(&bt[i]), conv2d_packed_free(&packed[i]);
        double gbs = bytes / (ms * 1e-3) / 1e9;
        printf("%-26s %-11s %5d %9.3f %9.3f %9.2f %9.2f %6.1f%% %5.1f%%\n", L->name, kernel, L->count, ms, best * 1e3,
               gflops, gbs, peak > 0 ? 100 * gflops / peak : 0, cache_gbs > 0 ? 100 * gbs / cache_gbs : 0);
        total_ms += ms * L->count;
        total_best_ms += best * 1e3 * L->count;
        total_flops += flops * L->count;
    }
    printf("\n%-26s %-11s %5s %9.3f %9.3f %9.2f %9s %6.1f%%\n", "all convolutions", "", "", total_ms, total_best_ms,
           total_flops / (total_ms * 1e-3) / 1e9, "", peak > 0 ? 100 * total_flops / (total_ms * 1e-3) / 1e9 / peak : 0);
    graph_destroy(&g);
    context_destroy(ctx);
    return 0;
}
