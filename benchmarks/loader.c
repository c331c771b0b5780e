/* The training loader's work per sample on one thread: decode, crop, colour distortion, flip, resize and the
 * CHW conversion of augment_sample, over the first N samples of a label file in order, with the trainer's
 * defaults (augmentation on, 640x640). Prints the milliseconds per sample of each round and their median,
 * and a CRC-32 of every sample's input and targets: a change that should keep the samples bit for bit
 * (a faster decode or resize) must keep the CRC. The loader threads share the cores with the training
 * step, so this time comes off the step: about half of it per image on 2 cores.
 *   build/bench_loader --data ../shared/widerface/WIDER_train/label.txt [--samples N] [--rounds R]
 *       [--size S] [--seed S] */
#include <getopt.h>
#include <zlib.h>

#include "benchmarks/bench_common.h"
#include "detection/augment.h"
#include "detection/train_data.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: build/bench_loader --data LABELS [--samples N] [--rounds R] [--size S] [--seed S]\n"
               "--samples: the first N samples of the label file (default all), the same every round\n");
}

int main(int argc, char **argv)
{
    const char *data = NULL;
    int samples = 0, rounds = 3, size = 640;
    long seed = 7;
    static const struct option longopts[] = {{"data", 1, 0, 'd'},  {"samples", 1, 0, 'n'}, {"rounds", 1, 0, 'r'},
                                             {"size", 1, 0, 's'},  {"seed", 1, 0, 'e'},    {"help", 0, 0, 'h'},
                                             {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) switch (c) {
        case 'd': data = optarg; break;
        case 'n': samples = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 's': size = atoi(optarg); break;
        case 'e': seed = atol(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    if (!data || samples < 0 || rounds < 1 || rounds > 100 || size < 32) {
        usage(stderr);
        return 2;
    }
    TrainSet set;
    Error err = {0};
    if (trainset_load(data, NULL, &set, &err)) {
        fprintf(stderr, "bench_loader: %s\n", err.msg);
        return 1;
    }
    if (set.n == 0) {
        fprintf(stderr, "bench_loader: %s: no sample to load\n", data);
        return 1;
    }
    if (!samples || samples > set.n) samples = set.n;
    enum { MAX_FACES = 1000 };
    AugmentOptions opt = augment_defaults(size);
    float *chw = malloc(sizeof(float) * 3 * (size_t)size * size), *targets = malloc(sizeof(float) * MAX_FACES * FACE_FIELDS);
    double ms[100];
    if (!chw || !targets) {
        fprintf(stderr, "bench_loader: out of memory\n");
        return 1;
    }
    char cpu[128];
    bench_cpu_name(cpu, sizeof cpu);
    printf("loader, one thread: %d samples of %s at %d, seed %ld; %s\n", samples, data, size, seed, cpu);
    unsigned long crc = 0;
    for (int r = 0; r < rounds; r++) {
        Rng rng;
        rng_seed(&rng, (uint64_t)seed, 0);
        double busy = 0;
        crc = crc32(0L, Z_NULL, 0);
        for (int i = 0; i < samples; i++) {
            int n = 0;
            double t0 = bench_now();
            if (augment_sample(&set.samples[i], &opt, &rng, chw, targets, MAX_FACES, &n, &err)) {
                fprintf(stderr, "bench_loader: %s\n", err.msg);
                return 1;
            }
            busy += bench_now() - t0;
            crc = crc32(crc, (const Bytef *)chw, (uInt)(sizeof(float) * 3 * (size_t)size * size));
            crc = crc32(crc, (const Bytef *)targets, (uInt)(sizeof(float) * (size_t)n * FACE_FIELDS));
        }
        ms[r] = 1e3 * busy / samples;
        printf("round %d: %.3f ms per sample\n", r + 1, ms[r]);
    }
    printf("median %.3f ms per sample over %d rounds; CRC-32 of the inputs and targets %08lx\n", bench_median(ms, rounds),
           rounds, crc);
    free(chw), free(targets);
    trainset_free(&set);
    return 0;
}
