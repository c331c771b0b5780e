/* build/convert: PyTorch .pth/.tar (legacy or zip) or safetensors -> safetensors. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "models/retinaface.h"
#include "nn/safetensors.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: build/convert [--model NAME] IN.pth OUT.safetensors\n"
               "Converts a PyTorch checkpoint (legacy pickle or zip format, optionally wrapped in a\n"
               "'state_dict' with 'module.' prefixes) into safetensors, keys = state_dict names.\n"
               "With --model, the tensors are loaded into that RetinaFace variant first (strict names and\n"
               "shapes; num_batches_tracked dropped), so the output is exactly what the model loads.\n"
               "Without it, every tensor of the input is written as float32.\n"
               "  -h, --help   this help\n");
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'}, {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "hm:", longopts, NULL)) != -1) {
        if (c == 'm') model = optarg;
        else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    const char *in = argv[optind], *out = argv[optind + 1];
    Error err = {0};
    if (model) {
        const RetinaConfig *cfg = retinaface_config(model);
        if (!cfg) {
            fprintf(stderr, "convert: unknown model '%s'\n", model);
            return 2;
        }
        RetinaFace *m = retinaface_create(cfg, DEVICE_CPU, 0, &err);
        if (!m || retinaface_load(m, in, &err) || retinaface_save(m, out, &err)) {
            fprintf(stderr, "convert: %s\n", err.msg);
            retinaface_free(m);
            return 1;
        }
        printf("%s -> %s: %d tensors, %lld parameters (%s)\n", in, out, m->params.n,
               (long long)params_count(&m->params), cfg->name);
        retinaface_free(m);
        return 0;
    }
    TensorDict d;
    if (checkpoint_read(in, &d, &err)) {
        fprintf(stderr, "convert: %s\n", err.msg);
        return 1;
    }
    tensor_dict_strip_prefix(&d, "module.");
    const char *k[1] = {"format"}, *v[1] = {"pt"};
    if (safetensors_write(out, &d, k, v, 1, &err)) {
        fprintf(stderr, "convert: %s\n", err.msg);
        tensor_dict_free(&d);
        return 1;
    }
    long long total = 0;
    for (int i = 0; i < d.n; i++) total += shape_numel(d.items[i].ndim, d.items[i].shape);
    printf("%s -> %s: %d tensors, %lld values\n", in, out, d.n, total);
    tensor_dict_free(&d);
    return 0;
}
