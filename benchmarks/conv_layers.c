/* Times every convolution shape of RetinaFace-MobileNet-0.25 at an image size (640x640 unless given), batch 1, through
 * ag_conv2d (forward, inference mode), and prints the kernel it takes, time, GFLOP/s and the
 * fraction of this machine's measured FMA peak. FLOPs count 2 per multiply-add of the direct
 * convolution (so Winograd layers, which do fewer, can show more than 100%); bytes are input +
 * weight + output once (the least traffic the layer needs), reported also as a fraction of the
 * measured copy bandwidth of a 16 MB working set (the size class of the inference activations, which
 * live in last-level cache). Usage: build/bench_conv_layers [threads] [WIDTHxHEIGHT] */
#include <stdio.h>
#include <stdlib.h>

#include "autograd/conv2d_cpu.h"
#include "autograd/ops.h"
#include "benchmarks/bench_common.h"
#include "tensor/rng.h"
#include "tensor/sgemm.h"

typedef struct {
    const char *name;
    int cin, cout, k, stride, groups, div, count; /* div: input size = image size / div; count: occurrences */
} Layer;

static const Layer layers[] = {
    {"stage1 conv 3x3/2", 3, 8, 3, 2, 1, 1, 1},
    {"dw 8 3x3", 8, 8, 3, 1, 8, 2, 1},
    {"pw 8->16", 8, 16, 1, 1, 1, 2, 1},
    {"dw 16 3x3/2", 16, 16, 3, 2, 16, 2, 1},
    {"pw 16->32", 16, 32, 1, 1, 1, 4, 1},
    {"dw 32 3x3", 32, 32, 3, 1, 32, 4, 1},
    {"pw 32->32", 32, 32, 1, 1, 1, 4, 1},
    {"dw 32 3x3/2", 32, 32, 3, 2, 32, 4, 1},
    {"pw 32->64", 32, 64, 1, 1, 1, 8, 1},
    {"dw 64 3x3", 64, 64, 3, 1, 64, 8, 1},
    {"pw 64->64", 64, 64, 1, 1, 1, 8, 1},
    {"dw 64 3x3/2", 64, 64, 3, 2, 64, 8, 1},
    {"pw 64->128", 64, 128, 1, 1, 1, 16, 1},
    {"dw 128 3x3", 128, 128, 3, 1, 128, 16, 5},
    {"pw 128->128", 128, 128, 1, 1, 1, 16, 5},
    {"dw 128 3x3/2", 128, 128, 3, 2, 128, 16, 1},
    {"pw 128->256", 128, 256, 1, 1, 1, 32, 1},
    {"dw 256 3x3", 256, 256, 3, 1, 256, 32, 1},
    {"pw 256->256", 256, 256, 1, 1, 1, 32, 1},
    {"fpn out1 1x1 64->64", 64, 64, 1, 1, 1, 8, 1},
    {"fpn out2 1x1 128->64", 128, 64, 1, 1, 1, 16, 1},
    {"fpn out3 1x1 256->64", 256, 64, 1, 1, 1, 32, 1},
    {"fpn merge 3x3 64->64 @80", 64, 64, 3, 1, 1, 8, 1},
    {"fpn merge 3x3 64->64 @40", 64, 64, 3, 1, 1, 16, 1},
    {"ssh 3x3 64->32 @80", 64, 32, 3, 1, 1, 8, 1},
    {"ssh 3x3 64->16 @80", 64, 16, 3, 1, 1, 8, 1},
    {"ssh 3x3 16->16 @80", 16, 16, 3, 1, 1, 8, 3},
    {"ssh 3x3 64->32 @40", 64, 32, 3, 1, 1, 16, 1},
    {"ssh 3x3 64->16 @40", 64, 16, 3, 1, 1, 16, 1},
    {"ssh 3x3 16->16 @40", 16, 16, 3, 1, 1, 16, 3},
    {"ssh 3x3 64->32 @20", 64, 32, 3, 1, 1, 32, 1},
    {"ssh 3x3 64->16 @20", 64, 16, 3, 1, 1, 32, 1},
    {"ssh 3x3 16->16 @20", 16, 16, 3, 1, 1, 32, 3},
    {"heads 1x1 64->32 @80", 64, 32, 1, 1, 1, 8, 1},
    {"heads 1x1 64->32 @40", 64, 32, 1, 1, 1, 16, 1},
    {"heads 1x1 64->32 @20", 64, 32, 1, 1, 1, 32, 1},
};

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0, img_w = 640, img_h = 640;
    if (argc > 2 && (sscanf(argv[2], "%dx%d", &img_w, &img_h) != 2 || img_w < 32 || img_h < 32)) {
        fprintf(stderr, "usage: %s [threads] [WIDTHxHEIGHT, at least 32x32]\n", argv[0]);
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
    printf("conv2d forward, RetinaFace-MobileNet-0.25 layers at %dx%d, batch 1\n", img_w, img_h);
    printf("machine: %s, %d threads, sgemm kernel %s, measured FMA peak %.1f GFLOP/s,\n", cpu, ctx->nthreads,
           sgemm_kernel_name(), peak);
    printf("measured copy bandwidth (read + write) %.1f GB/s at 16 MB, %.1f GB/s at 512 MB\n\n", cache_gbs,
           memory_gbs);
    printf("%-26s %-11s %5s %9s %9s %9s %7s %6s\n", "layer", "kernel", "count", "ms", "GFLOP/s", "GB/s", "%peak",
           "%bw");
    Rng r;
    rng_seed(&r, 1, 1);
    double total_ms = 0, total_flops = 0;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        const Layer *L = &layers[i];
        /* the network's sizes: each stride-2 step rounds up, as (n + 2 - 3) / 2 + 1 does */
        int h = img_h, w = img_w;
        for (int d = 1; d < L->div; d *= 2) h = (h + 1) / 2, w = (w + 1) / 2;
        int64_t xs[4] = {1, L->cin, h, w}, ws[4] = {L->cout, L->cin / L->groups, L->k, L->k};
        Tensor xt, wt;
        if (tensor_new(&xt, DEVICE_CPU, 4, xs, NULL) || tensor_new(&wt, DEVICE_CPU, 4, ws, NULL)) return 1;
        tensor_fill_normal(&xt, &r, 0, 1);
        tensor_fill_normal(&wt, &r, 0, 0.1f);
        Conv2dParams p = conv2d_params(L->stride, L->k / 2, 1, L->groups);
        double times[25];
        int reps = 25;
        for (int rep = -3; rep < reps; rep++) {
            graph_reset(&g); /* steady state: the arena is reused, as in a real forward pass */
            Var *x = var_from_tensor(&g, &xt, false), *w = var_from_tensor(&g, &wt, false);
            double t0 = bench_now();
            Var *y = ag_conv2d(&g, x, w, NULL, p);
            double dt = bench_now() - t0;
            if (!y) {
                fprintf(stderr, "%s: %s\n", L->name, g.err.msg);
                return 1;
            }
            if (rep >= 0) times[rep] = dt;
        }
        double ms = bench_median(times, reps) * 1e3;
        int ho = (h + 2 * (L->k / 2) - L->k) / L->stride + 1, wo = (w + 2 * (L->k / 2) - L->k) / L->stride + 1;
        double flops = 2.0 * ho * wo * L->cout * (L->cin / L->groups) * L->k * L->k;
        double bytes = 4.0 * ((double)L->cin * h * w + (double)L->cout * (L->cin / L->groups) * L->k * L->k +
                              (double)L->cout * ho * wo);
        double gflops = flops / (ms * 1e-3) / 1e9;
        Conv2dShape shape;
        char msg[128];
        const char *kernel = conv2d_shape(&shape, &xt, &wt, NULL, p, msg, sizeof msg)
                                 ? conv2d_cpu_algorithm_name(conv2d_cpu_algorithm(&shape))
                                 : "?";
        tensor_free(&xt), tensor_free(&wt);
        double gbs = bytes / (ms * 1e-3) / 1e9;
        printf("%-26s %-11s %5d %9.3f %9.2f %9.2f %6.1f%% %5.1f%%\n", L->name, kernel, L->count, ms, gflops, gbs,
               peak > 0 ? 100 * gflops / peak : 0, cache_gbs > 0 ? 100 * gbs / cache_gbs : 0);
        total_ms += ms * L->count;
        total_flops += flops * L->count;
    }
    printf("\n%-26s %-11s %5s %9.3f %9.2f %9s %6.1f%%\n", "all convolutions", "", "", total_ms,
           total_flops / (total_ms * 1e-3) / 1e9, "", peak > 0 ? 100 * total_flops / (total_ms * 1e-3) / 1e9 / peak : 0);
    graph_destroy(&g);
    context_destroy(ctx);
    return 0;
}
