/* CPU (or GPU) training-step figures of a RetinaFace variant, data pipeline included: images/s over
 * timed steps, the step's phases (data wait, forward, loss with matching, backward, SGD update), the
 * per-op forward and backward times of profiled steps with GFLOP/s and GB/s against this machine's
 * measured FMA peak and copy bandwidth, and the step's memory: peak RSS and its breakdown.
 * benchmarks/train_side_by_side.py runs it beside the PyTorch step; it also runs alone:
 *   build/bench_train_step --data ../shared/widerface/WIDER_train/label.txt [--model resnet50] [--batch 2]
 *       [--threads 2] [--workers 2] [--steps 10] [--warmup 2] [--profile-steps 2] [--gpu] [--alternate NAME]
 * --alternate NAME: A/B of a change inside one run (bench_common.h): NAME=0 and NAME=1 on alternate timed
 * steps, then the median ratio of the paired step times.
 * --machine: only this machine's FMA peak and copy bandwidth on the compute threads, then exit (the
 * side-by-side benchmark takes them before every round: this machine's bandwidth drifts by 2x). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "benchmarks/bench_common.h"
#include "detection/trainer.h"

static long peak_rss_kb(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

/* Page faults so far (a steady step should take few: its memory is reused, not mapped anew). */
static long minor_faults(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

/* Resident memory now, from /proc (0 where there is none). */
static long rss_now_kb(void)
{
    long kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: build/bench_train_step --data LABELS [--model NAME] [--batch B] [--size N] [--threads T]\n"
               "       [--workers W] [--steps N] [--warmup N] [--profile-steps N] [--by-layer] [--gpu]\n"
               "       [--alternate NAME] | --machine [--threads T]\n"
               "--by-layer: the per-op table gets a row per op and layer shape (input->output channels, HxW)\n"
               "--alternate NAME: set environment variable NAME to 0 and 1 on alternate timed steps (code under test\n"
               "    reads it) and print the median ratio of the paired step times, NAME=1 over NAME=0\n"
               "--machine: print the measured FMA peak and copy bandwidth on T threads, and exit\n");
}

int main(int argc, char **argv)
{
    TrainOptions o = train_defaults();
    o.batch = 8, o.workers = 2, o.threads = 2;
    int steps = 10, warmup = 2, profile_steps = 2;
    bool by_layer = false, machine = false;
    const char *alternate = NULL;
    static const struct option longopts[] = {
        {"data", 1, 0, 'd'},    {"model", 1, 0, 'm'},         {"batch", 1, 0, 'b'}, {"size", 1, 0, 's'},
        {"threads", 1, 0, 't'}, {"workers", 1, 0, 'w'},       {"steps", 1, 0, 'n'}, {"warmup", 1, 0, 'u'},
        {"profile-steps", 1, 0, 'p'}, {"by-layer", 0, 0, 'l'}, {"gpu", 0, 0, 'g'},
        {"alternate", 1, 0, 'a'}, {"machine", 0, 0, 'M'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) switch (c) {
        case 'd': o.data = optarg; break;
        case 'm': o.model = optarg; break;
        case 'b': o.batch = atoi(optarg); break;
        case 's': o.size = atoi(optarg); break;
        case 't': o.threads = atoi(optarg); break;
        case 'w': o.workers = atoi(optarg); break;
        case 'n': steps = atoi(optarg); break;
        case 'u': warmup = atoi(optarg); break;
        case 'p': profile_steps = atoi(optarg); break;
        case 'l': by_layer = true; break;
        case 'g': o.gpu = true; break;
        case 'a': alternate = optarg; break;
        case 'M': machine = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    if (machine) {
        ThreadPool *pool = threadpool_create(o.threads > 0 ? o.threads : 1);
        if (!pool) {
            fprintf(stderr, "bench_train_step: cannot start %d threads\n", o.threads);
            return 1;
        }
        printf("measured peak %.0f GFLOP/s FMA, %.1f GB/s copy (%d threads)\n", bench_fma_peak_gflops(pool),
               bench_copy_gbs(pool, (size_t)256 << 20), threadpool_size(pool));
        threadpool_destroy(pool);
        return 0;
    }
    if (!o.data || o.batch < 1 || steps < 1 || warmup < 0 || profile_steps < 0) {
        usage(stderr);
        return 2;
    }
    Error err = {0};
    TrainSet set;
    Trainer tr;
    if (trainset_load(o.data, NULL, &set, &err) || trainer_init(&tr, &o, &err)) {
        fprintf(stderr, "bench_train_step: %s\n", err.msg);
        return 1;
    }
    AugmentOptions aug = augment_defaults(tr.size);
    Loader *loader = loader_create(&set, &aug, o.batch, o.workers, o.seed, o.gpu, &err);
    if (!loader) {
        fprintf(stderr, "bench_train_step: %s\n", err.msg);
        return 1;
    }
    char cpu[256];
    bench_cpu_name(cpu, sizeof cpu);
    printf("machine: %s; %s, batch %d at %d, %d compute threads, %d loader workers\n", cpu, tr.model->cfg.name, o.batch,
           tr.size, o.threads, o.workers);
    int epoch = 0, total = warmup + steps + profile_steps;
    loader_begin_epoch(loader, epoch, 0);
    double *phase[5];
    for (int k = 0; k < 5; k++) phase[k] = calloc((size_t)total, sizeof(double));
    double *step_s = calloc((size_t)total, sizeof(double));
    if (!step_s || !phase[0] || !phase[1] || !phase[2] || !phase[3] || !phase[4]) {
        fprintf(stderr, "bench_train_step: out of memory\n");
        return 1;
    }
    double t_timed = 0;
    long images = 0, rss_timed_kb = 0;
    for (int s = 0; s < total; s++) {
        if (s == warmup) t_timed = bench_now();
        if (s == warmup + steps) {
            t_timed = bench_now() - t_timed;
            rss_timed_kb = peak_rss_kb();
            graph_enable_profile(&tr.graph, by_layer);
        }
        long faults0 = minor_faults();
        double t0 = bench_now();
        const Batch *b;
        int empty_epochs = 0; /* an epoch whose every image failed to load: nothing to train on */
        while ((!(b = loader_next(loader)) || b->n == 0) && empty_epochs < 2)
            if (!b) loader_begin_epoch(loader, ++epoch, 0), empty_epochs++;
        if (!b || b->n == 0) {
            fprintf(stderr, "bench_train_step: no image of %s could be loaded\n", o.data);
            return 1;
        }
        double wait = bench_now() - t0;
        TrainStepResult r;
        bench_alternate(alternate, s - warmup);
        if (trainer_step(&tr, b, 1e-3f, &r, &err)) {
            fprintf(stderr, "bench_train_step: step %d: %s\n", s + 1, err.msg);
            return 1;
        }
        double ph[5] = {wait, r.t.forward, r.t.loss, r.t.backward, r.t.update};
        for (int k = 0; k < 5; k++) phase[k][s] = ph[k];
        if (s >= warmup && s < warmup + steps) images += b->n;
        step_s[s] = wait + r.t.forward + r.t.loss + r.t.backward + r.t.update;
        printf("step %d%s loss %.4f %.3f s, RSS %.0f MB (peak %.0f MB), %ld page faults\n", s + 1,
               alternate && s >= warmup && s < warmup + steps ? ((s - warmup) % 2 ? " (1)" : " (0)") : "", r.total,
               step_s[s], rss_now_kb() / 1024.0, peak_rss_kb() / 1024.0, minor_faults() - faults0);
        fflush(stdout);
    }
    if (!profile_steps) t_timed = bench_now() - t_timed, rss_timed_kb = peak_rss_kb();
    printf("images/s %.3f\n", images / t_timed);
    if (alternate) {
        double lo, hi, m = bench_paired_ratio(step_s + warmup, steps, &lo, &hi);
        printf("alternating %s: %d pairs of timed steps, step time %s=1 / %s=0 median %.4f (%.3f to %.3f)\n", alternate,
               steps / 2, alternate, alternate, m, lo, hi);
    }
    static const char *names[5] = {"data wait", "forward", "loss (matching)", "backward", "update"};
    double med[5], sum = 0;
    for (int k = 0; k < 5; k++) {
        med[k] = bench_median(phase[k] + warmup, steps);
        sum += med[k];
    }
    printf("phases (median of %d timed steps):\n", steps);
    for (int k = 0; k < 5; k++) printf("  %-16s %9.1f ms %5.1f%%\n", names[k], med[k] * 1e3, 100 * med[k] / sum);
    if (profile_steps) {
        double peak = o.gpu ? 0 : bench_fma_peak_gflops(tr.ctx->pool);
        double bw = o.gpu ? 0 : bench_copy_gbs(tr.ctx->pool, (size_t)256 << 20);
        printf("per op, mean of %d profiled steps (measured peak %.0f GFLOP/s FMA, %.1f GB/s copy):\n", profile_steps,
               peak, bw);
        graph_print_profile(&tr.graph, stdout, profile_steps);
    }
    GraphMemory gm = graph_memory(&tr.graph);
    size_t param_bytes = 0, sgd_bytes = 0;
    for (int i = 0; i < tr.model->params.n; i++) {
        const ParamEntry *e = &tr.model->params.entries[i];
        if (e->kind == ENTRY_PARAM) {
            param_bytes += 2 * tensor_bytes(&e->param->value); /* value and gradient */
            sgd_bytes += tensor_bytes(&tr.sgd.velocity[i]);
        }
    }
    /* the peak before the profiled steps: the bandwidth measurement's buffers are not the step's */
    printf("memory: peak RSS %.1f MB (process, up to the end of the timed steps)\n", rss_timed_kb / 1024.0);
    printf("  parameters and their gradients %8.1f MB\n", param_bytes / 1048576.0);
    printf("  optimiser state (momentum)     %8.1f MB\n", sgd_bytes / 1048576.0);
    printf("  step memory, peak              %8.1f MB\n", gm.step_peak / 1048576.0);
    printf("    of it saved activations      %8.1f MB (live when the backward starts)\n", gm.saved_peak / 1048576.0);
    printf("    gradients and scratch, peak  %8.1f MB (backward)\n", gm.backward_peak / 1048576.0);
    printf("  op workspace                   %8.1f MB\n", gm.workspace / 1048576.0);
    printf("  loader batch buffers           %8.1f MB (2 batches)\n",
           2.0 * o.batch * 3 * tr.size * tr.size * sizeof(float) / 1048576.0);
    for (int k = 0; k < 5; k++) free(phase[k]);
    free(step_s);
    loader_destroy(loader);
    trainer_free(&tr);
    trainset_free(&set);
    return 0;
}
