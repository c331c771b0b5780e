/* One training layer alone: conv -> BatchNorm (train mode) -> activation (ag_conv_bn_act_train) at a
 * given shape and batch, forward and backward timed separately over repeated steps (medians), with
 * GFLOP/s of the convolution's direct FLOPs against this machine's measured FMA peak. For working on one
 * kernel of the training step without the rest of it (bench_train_step --by-layer says which layers
 * matter):
 *   build/bench_train_layer --cin 64 --cout 64 --size 80 [--k 3] [--stride 1] [--groups 1] [--batch 8]
 *       [--act 0.1] [--threads 2] [--reps 10] [--no-input-grad] [--residual] [--alternate NAME]
 * --act: leaky slope (0: ReLU, negative: none). --groups equal to --cin: a depthwise layer.
 * --residual: act(BN(conv(x)) + r) with r an input of the output's shape (ag_conv_bn_act_train_residual: a
 * ResNet block's last layer and its sum; the residual's gradient is computed too).
 * --no-input-grad: the input needs no gradient (the stem: the image).
 * --alternate NAME: A/B of a change (bench_common.h): NAME=0 and NAME=1 on alternate repetitions, then the
 * median ratios of the paired forward and backward times. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd/ops.h"
#include "benchmarks/bench_common.h"
#include "tensor/context.h"
#include "tensor/rng.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: build/bench_train_layer --cin C --cout C --size HW [--k K] [--stride S] [--groups G]\n"
               "       [--batch N] [--act SLOPE] [--threads T] [--reps R] [--no-input-grad] [--residual]\n"
               "       [--alternate NAME]\n"
               "--residual: act(BN(conv(x)) + r), r an input of the output's shape (a ResNet block's last layer)\n"
               "--alternate NAME: set environment variable NAME to 0 and 1 on alternate repetitions (code under test\n"
               "    reads it) and print the median ratios of the paired times, NAME=1 over NAME=0\n");
}

static Var *param(int ndim, const int64_t *shape, Rng *r, float lo, float hi)
{
    Var *v = var_param_new(DEVICE_CPU, ndim, shape, NULL);
    if (v) tensor_fill_uniform(&v->value, r, lo, hi);
    return v;
}

int main(int argc, char **argv)
{
    int cin = 0, cout = 0, size = 0, k = 3, stride = 1, groups = 1, batch = 8, threads = 2, reps = 10;
    float act = 0.1f;
    bool input_grad = true, residual = false;
    const char *alternate = NULL;
    static const struct option longopts[] = {
        {"cin", 1, 0, 'i'},    {"cout", 1, 0, 'o'},  {"size", 1, 0, 's'},    {"k", 1, 0, 'k'},
        {"stride", 1, 0, 'S'}, {"groups", 1, 0, 'g'}, {"batch", 1, 0, 'b'},  {"act", 1, 0, 'a'},
        {"threads", 1, 0, 't'}, {"reps", 1, 0, 'r'}, {"no-input-grad", 0, 0, 'n'}, {"residual", 0, 0, 'R'},
        {"alternate", 1, 0, 'A'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) switch (c) {
        case 'i': cin = atoi(optarg); break;
        case 'o': cout = atoi(optarg); break;
        case 's': size = atoi(optarg); break;
        case 'k': k = atoi(optarg); break;
        case 'S': stride = atoi(optarg); break;
        case 'g': groups = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'a': act = (float)atof(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'n': input_grad = false; break;
        case 'R': residual = true; break;
        case 'A': alternate = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    if (cin < 1 || cout < 1 || size < 1 || k < 1 || stride < 1 || groups < 1 || cin % groups || cout % groups ||
        batch < 1 || reps < 1) {
        usage(stderr);
        return 2;
    }
    Context *ctx = context_create(threads);
    if (!ctx) {
        fprintf(stderr, "bench_train_layer: cannot start %d threads\n", threads);
        return 1;
    }
    Rng r;
    rng_seed(&r, 1, 0);
    int64_t ws[4] = {cout, cin / groups, k, k}, cs[1] = {cout}, xs[4] = {batch, cin, size, size};
    float bound = 1.0f / (float)(cin / groups * k * k);
    Var *w = param(4, ws, &r, -bound, bound), *gamma = param(1, cs, &r, 0.5f, 1.5f), *beta = param(1, cs, &r, -0.1f, 0.1f);
    int out = (size + 2 * (k / 2) - k) / stride + 1;
    int64_t rs[4] = {batch, cout, out, out};
    Tensor xt, rm, rv, rt = {0};
    if (!w || !gamma || !beta || tensor_new(&xt, DEVICE_CPU, 4, xs, NULL) || tensor_new(&rm, DEVICE_CPU, 1, cs, NULL) ||
        tensor_new(&rv, DEVICE_CPU, 1, cs, NULL) || (residual && tensor_new(&rt, DEVICE_CPU, 4, rs, NULL))) {
        fprintf(stderr, "bench_train_layer: out of memory\n");
        return 1;
    }
    tensor_fill_normal(&xt, &r, 0, 1);
    if (residual) tensor_fill_normal(&rt, &r, 0, 1);
    Conv2dParams p = conv2d_params(stride, k / 2, 1, groups);
    Graph g;
    Error err = {0};
    if (graph_init(&g, ctx, DEVICE_CPU, &err)) {
        fprintf(stderr, "bench_train_layer: %s\n", err.msg);
        return 1;
    }
    double *fwd = calloc((size_t)reps, sizeof *fwd), *bwd = calloc((size_t)reps, sizeof *bwd);
    Tensor seed = {0};
    int ho = 0;
    for (int rep = -2; rep < reps; rep++) { /* two untimed steps first */
        graph_reset(&g);
        bench_alternate(alternate, rep);
        var_zero_grad(w), var_zero_grad(gamma), var_zero_grad(beta);
        Var *x = var_from_tensor(&g, &xt, input_grad);
        double t0 = bench_now();
        Var *y = residual ? ag_conv_bn_act_train_residual(&g, x, w, gamma, beta, &rm, &rv, p, 0.1f, 1e-5f,
                                                          var_from_tensor(&g, &rt, true), act)
                          : ag_conv_bn_act_train(&g, x, w, gamma, beta, &rm, &rv, p, 0.1f, 1e-5f, act);
        double t1 = bench_now();
        if (!y) {
            fprintf(stderr, "bench_train_layer: %s\n", g.err.msg);
            return 1;
        }
        if (!seed.data) {
            ho = (int)y->value.shape[2];
            if (tensor_new(&seed, DEVICE_CPU, 4, y->value.shape, NULL)) return 1;
            tensor_fill_normal(&seed, &r, 0, 1);
        }
        if (graph_backward_with_grad(&g, y, seed.data)) {
            fprintf(stderr, "bench_train_layer: %s\n", g.err.msg);
            return 1;
        }
        double t2 = bench_now();
        if (rep >= 0) fwd[rep] = t1 - t0, bwd[rep] = t2 - t1;
    }
    double flops = 2.0 * batch * ho * ho * (double)cout * (cin / groups) * k * k;
    if (alternate) { /* before the medians below sort the times */
        double flo, fhi, blo, bhi;
        double fr = bench_paired_ratio(fwd, reps, &flo, &fhi), br = bench_paired_ratio(bwd, reps, &blo, &bhi);
        printf("alternating %s: %d pairs, %s=1 / %s=0 median forward %.4f (%.3f to %.3f), backward %.4f (%.3f to "
               "%.3f)\n",
               alternate, reps / 2, alternate, alternate, fr, flo, fhi, br, blo, bhi);
    }
    double f = bench_median(fwd, reps), b = bench_median(bwd, reps);
    double peak = bench_fma_peak_gflops(ctx->pool);
    printf("conv_bn_act%s %d->%d k%d s%d g%d at %dx%d, batch %d, %d threads (measured peak %.0f GFLOP/s)\n",
           residual ? " + residual" : "", cin, cout, k, stride, groups, size, size, batch, threads, peak);
    printf("forward  %8.2f ms %8.1f GFLOP/s %5.1f%%\n", f * 1e3, flops / f * 1e-9, 100 * flops / f * 1e-9 / peak);
    int grads = input_grad ? 2 : 1;
    printf("backward %8.2f ms %8.1f GFLOP/s %5.1f%% (%s)\n", b * 1e3, grads * flops / b * 1e-9,
           100 * grads * flops / b * 1e-9 / peak, input_grad ? "input and weight gradients" : "weight gradient");
    graph_destroy(&g);
    return 0;
}
