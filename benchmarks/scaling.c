/* Data-parallel scaling model: the gradient bytes each step sums over the ranks, the all-reduce time
 * measured here (tensor/comm.h, under mpirun), and the step time and efficiency predicted at 2 to 64
 * GPUs on NVLink and on 100 Gb/s Ethernet from published NCCL bandwidths.
 *   mpirun -np 2 build/bench_scaling [--reps 10]      (alone: one rank, the model only)
 * Assumptions (printed with the table):
 *   - ring all-reduce: time = 2 (N-1)/N x bytes / bus bandwidth + 2 (N-1) x per-hop latency;
 *   - NVLink (8 GPUs of a node, NVSwitch): NCCL all-reduce bus bandwidth 450 GB/s, 10 us per hop
 *     (nccl-tests on DGX H100-class nodes report 450-480 GB/s for large messages);
 *   - 100 Gb/s Ethernet (RoCE), one NIC per node: 11 GB/s bus bandwidth (about 90% of the 12.5 GB/s line
 *     rate), 40 us per hop; beyond 8 GPUs the job spans nodes and the NIC is the ring's slowest link;
 *   - per-GPU step compute from the step's FLOPs (3 x the forward's: forward, input and weight gradients)
 *     at an assumed 25 TFLOP/s achieved (TF32 convolutions), plus 15 ms of per-step overhead (launches,
 *     loss, optimiser) — an assumption until a GPU run measures it;
 *   - buckets overlap the backward (2/3 of the compute): all but the exposed part of the all-reduce
 *     hides, and the exposed part is max(last bucket's time, all-reduce - backward). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarks/bench_common.h"
#include "models/retinaface.h"
#include "tensor/comm.h"

typedef struct {
    const char *variant;
    int size, batch; /* per GPU */
    double params, forward_gflop_per_image;
} Workload;

static double ring_seconds(double bytes, int n, double bus_gbs, double hop_s)
{
    if (n < 2) return 0;
    return 2.0 * (n - 1) / n * bytes / (bus_gbs * 1e9) + 2.0 * (n - 1) * hop_s;
}

int main(int argc, char **argv)
{
    int reps = 10;
    static const struct option longopts[] = {{"reps", 1, 0, 'r'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'r') reps = atoi(optarg);
        else {
            printf("usage: mpirun -np 2 build/bench_scaling [--reps N]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    Error err = {0};
    Comm *comm;
    if (comm_init(&comm, comm_launched_ranks() > 0 && comm_available(), 600, &err)) {
        fprintf(stderr, "bench_scaling: %s\n", err.msg);
        return 1;
    }
    int rank = comm_rank(comm), world = comm_size(comm);
    /* the variants' gradients (one float per parameter) and forward FLOPs (models/summary's count) */
    Workload w[2] = {{"mobilenet0.25", 640, 32, 0, 1.962}, {"resnet50", 840, 24, 0, 154.681}};
    for (int v = 0; v < 2; v++) {
        RetinaFace *m = retinaface_create(retinaface_config(w[v].variant), DEVICE_CPU, 0, &err);
        if (!m) {
            fprintf(stderr, "bench_scaling: %s\n", err.msg);
            return 1;
        }
        w[v].params = (double)params_count(&m->params);
        retinaface_free(m);
    }
    char cpu[128];
    bench_cpu_name(cpu, sizeof cpu);
    if (rank == 0) printf("machine: %s; %d rank%s on it\n", cpu, world, world == 1 ? "" : "s");
    /* measured: in-place float sums of the gradient sizes, and a sweep */
    double sizes[8] = {0, 0, 64e3, 1e6, 4e6, 16e6, 64e6, 0};
    sizes[0] = w[0].params * 4, sizes[1] = w[1].params * 4;
    if (world > 1) {
        if (rank == 0)
            printf("\nall-reduce (sum of floats) between %d local ranks, median of %d:\n%14s %12s %14s\n", world, reps,
                   "bytes", "ms", "bus GB/s");
        for (int s = 0; s < 7; s++) {
            size_t n = (size_t)(sizes[s] / 4);
            float *buf = malloc(n * sizeof(float));
            double *t = malloc(sizeof(double) * (size_t)reps);
            for (size_t i = 0; i < n; i++) buf[i] = (float)(i % 7);
            for (int r = -2; r < reps; r++) {
                comm_barrier(comm, "bench", &err);
                double t0 = bench_now();
                comm_allreduce_sum_f32(comm, buf, n, "bench", &err);
                if (r >= 0) t[r] = bench_now() - t0;
            }
            double med = bench_median(t, reps);
            if (rank == 0)
                printf("%14.0f %12.3f %14.2f%s\n", sizes[s], med * 1e3, 2.0 * (world - 1) / world * sizes[s] / med / 1e9,
                       s == 0 ? "  (MobileNet-0.25 gradients)" : s == 1 ? "  (ResNet-50 gradients)" : "");
            free(buf), free(t);
        }
    } else if (rank == 0) {
        printf("(one rank: run under mpirun -np 2 for the measured all-reduce)\n");
    }
    if (rank == 0) {
        printf("\nassumptions: ring all-reduce 2(N-1)/N x bytes / busBW + 2(N-1) hops; NVLink busBW 450 GB/s, 10 us/hop;\n"
               "100 Gb/s Ethernet busBW 11 GB/s, 40 us/hop, nodes of 8 GPUs (within a node NVLink); compute 3 x forward\n"
               "FLOPs at 25 TFLOP/s + 15 ms per step; the all-reduce overlaps the backward (2/3 of compute) but for\n"
               "its last bucket (1/8 of it).\n");
        for (int v = 0; v < 2; v++) {
            double bytes = w[v].params * 4;
            double compute = 3 * w[v].forward_gflop_per_image * 1e9 * w[v].batch / 25e12 + 0.015;
            printf("\n%s, %d x %d, batch %d per GPU: %.1f MB of gradients, compute %.1f ms per step\n", w[v].variant,
                   w[v].size, w[v].size, w[v].batch, bytes / 1e6, compute * 1e3);
            printf("%6s | %-34s | %-34s\n", "GPUs", "NVLink: all-reduce, step, efficiency", "100 GbE: all-reduce, step, efficiency");
            for (int n = 2; n <= 64; n *= 2) {
                double t[2];
                t[0] = ring_seconds(bytes, n, 450, 10e-6);
                /* across nodes the ring's slowest link is the NIC; inside a node NVLink */
                t[1] = n <= 8 ? t[0] : ring_seconds(bytes, n, 11, 40e-6);
                printf("%6d |", n);
                for (int k = 0; k < 2; k++) {
                    double exposed = fmax(t[k] / 8, t[k] - compute * 2 / 3), step = compute + exposed;
                    printf(" %8.2f ms %8.1f ms %7.1f%%      |", t[k] * 1e3, step * 1e3, 100 * compute / step);
                }
                printf("\n");
            }
        }
    }
    comm_finalize(comm);
    return 0;
}
