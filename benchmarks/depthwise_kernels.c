/* The depthwise 3x3 forward plane kernels side by side: AVX2 and its AVX-512 twin (where this CPU has
 * AVX-512F) on one cache-resident plane of MobileNet-0.25's sizes, single thread, alternated in rounds;
 * the best time of each over the rounds (the machines drift: only the ratio within one run counts), with
 * GFLOP/s of the direct sum. Says which kernel depthwise3x3_plane_kernel picks here.
 *   build/bench_depthwise_kernels [--rounds R] */
#include <getopt.h>

#include "autograd/conv2d_avx2.h"
#include "benchmarks/bench_common.h"

int main(int argc, char **argv)
{
    int rounds = 20;
    static const struct option longopts[] = {{"rounds", 1, 0, 'r'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        if (o == 'r' && atoi(optarg) > 0) {
            rounds = atoi(optarg);
        } else {
            fprintf(o == 'h' ? stdout : stderr, "usage: build/bench_depthwise_kernels [--rounds R]\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (!conv2d_avx2_available()) {
        printf("this CPU lacks AVX2/FMA: the depthwise kernels are the portable loops; nothing to compare\n");
        return 0;
    }
    bool avx512 = conv2d_avx512_available();
    char cpu[128];
    bench_cpu_name(cpu, sizeof cpu);
    printf("depthwise 3x3 forward of one plane, leaky 0.1, single thread, best of %d rounds; %s\n", rounds, cpu);
    printf("picked here: %s\n", depthwise3x3_plane_kernel() == depthwise3x3_plane_avx512 ? "avx512" : "avx2");
    printf("  plane  stride   avx2 us  GFLOP/s   avx512 us  GFLOP/s   avx2/avx512\n");
    static const int sizes[] = {20, 40, 80, 160, 320};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int stride = 1; stride <= 2; stride++) {
            int H = sizes[si], W = sizes[si], Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
            float *x = malloc(sizeof(float) * H * W), *y = malloc(sizeof(float) * Ho * Wo), w[9];
            if (!x || !y) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            for (int i = 0; i < H * W; i++) x[i] = (float)(i % 17) * 0.1f - 0.8f;
            for (int i = 0; i < 9; i++) w[i] = (float)i * 0.1f - 0.4f;
            DepthwisePlaneFn fn[2] = {depthwise3x3_plane_avx2, depthwise3x3_plane_avx512};
            double best[2] = {1e30, 1e30};
            int reps = 2000000 / (H * W) + 10;
            for (int r = 0; r < rounds; r++)
                for (int k = 0; k < 1 + avx512; k++) {
                    double t0 = bench_now();
                    for (int i = 0; i < reps; i++) fn[k](x, H, W, w, 0.1f, 0.1f, y, stride, Wo, 0, Ho);
                    double t = (bench_now() - t0) / reps;
                    if (t < best[k]) best[k] = t;
                }
            double flops = 18.0 * Ho * Wo;
            printf("%4dx%-4d %4d  %9.2f %8.1f", H, W, stride, best[0] * 1e6, flops / best[0] * 1e-9);
            if (avx512)
                printf("   %9.2f %8.1f   %11.2f\n", best[1] * 1e6, flops / best[1] * 1e-9, best[0] / best[1]);
            else
                printf("   (this CPU lacks AVX-512F)\n");
            free(x), free(y);
        }
    return 0;
}
