/* build/convert: PyTorch .pth/.tar (legacy or zip) or safetensors -> safetensors; or a RetinaFace
 * variant -> ONNX (--onnx). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detection/output_file.h"
#include "models/builtin_weights.h"
#include "models/retinaface_export.h"
#include "nn/formats/checkpoint.h"
#include "nn/formats/safetensors.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: build/convert [--model NAME] IN.pth OUT.safetensors\n"
               "       build/convert --onnx OUT.onnx [--model NAME] [--random-init] [WEIGHTS]\n"
               "Converts a PyTorch checkpoint (legacy pickle or zip format, optionally wrapped in a\n"
               "'state_dict' with 'module.' prefixes) into safetensors, keys = state_dict names.\n"
               "With --model, the tensors are loaded into that RetinaFace variant first (strict names and\n"
               "shapes; num_batches_tracked dropped), so the output is exactly what the model loads.\n"
               "Without it, every tensor of the input is written as float32.\n"
               "\n"
               "--onnx OUT.onnx writes the variant (default mobilenet0.25) as an ONNX model (opset 13) with a\n"
               "dynamic input: \"input\" [batch, 3, height, width], BGR minus the means (104, 117, 123);\n"
               "outputs \"loc\" [batch, P, 4], \"conf\" [batch, P, classes] softmax scores, \"landms\"\n"
               "[batch, P, 10]; BatchNorm is folded into the convolutions. Weights: WEIGHTS (.pth, .tar or\n"
               ".safetensors), else the built-in model of the variant, or with --random-init the variant's\n"
               "initialisation (seed 0: for checking an export).\n"
               "  --check IN.f32 --size WxH --check-out PREFIX\n"
               "       also runs our forward on IN.f32 (float32 [1, 3, H, W], the input above) and writes\n"
               "       PREFIX.loc.f32, PREFIX.conf.f32, PREFIX.landms.f32: what the export must reproduce\n"
               "  -h, --help   this help\n");
}

static int fail(const char *msg)
{
    fprintf(stderr, "convert: %s\n", msg);
    return 1;
}

static ErrorCode write_bytes(const char *path, const void *data, size_t len, Error *err)
{
    OutputFile o;
    if (output_open(&o, path, err)) return err->code;
    if (len && fwrite(data, 1, len, o.f) != len) {
        output_abandon(&o);
        return error_set(err, ERR_IO, "%s: write failed", path);
    }
    return output_commit(&o, err);
}

/* The float32 [1, 3, H, W] input of --check (read before exporting, so a bad one fails first); NULL after
 * printing why. */
static float *read_check_input(const char *in, const char *size, int *w, int *h, int *status)
{
    *status = 2;
    if (sscanf(size, "%dx%d", w, h) != 2 || *w < 8 || *h < 8 || *w > 8192 || *h > 8192) {
        fprintf(stderr, "convert: --size %s: expected WxH from 8x8 to 8192x8192\n", size);
        return NULL;
    }
    *status = 1;
    size_t n = (size_t)3 * *w * *h;
    float *x = malloc(n * sizeof(float));
    FILE *f = fopen(in, "rb");
    size_t got = f && x ? fread(x, sizeof(float), n, f) : 0;
    int extra = f ? fgetc(f) : EOF;
    if (f) fclose(f);
    if (!x || got != n || extra != EOF) {
        fprintf(stderr, "convert: %s: expected %zu float32 values (1x3x%dx%d)%s\n", in, n, *h, *w,
                f ? "" : ", cannot open it");
        free(x);
        return NULL;
    }
    return x;
}

/* Our forward on the check input, written beside the export for checking it. */
static int check_forward(RetinaFace *m, Context *ctx, const float *x, int w, int h, const char *prefix)
{
    Error err = {0};
    float *out[3];
    int priors;
    if (retinaface_forward_outputs(m, ctx, x, h, w, &out[0], &out[1], &out[2], &priors, &err)) return fail(err.msg);
    static const char *names[3] = {"loc", "conf", "landms"};
    int widths[3] = {4, m->cfg.num_classes, 10}, rc = 0;
    for (int k = 0; k < 3 && !rc; k++) {
        if (!out[k]) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s.%s.f32", prefix, names[k]);
        if (write_bytes(path, out[k], sizeof(float) * (size_t)priors * widths[k], &err)) rc = fail(err.msg);
    }
    if (!rc) printf("our forward at %dx%d: %d priors -> %s.{loc,conf%s}.f32\n", w, h, priors, prefix,
                    out[2] ? ",landms" : "");
    free(out[0]), free(out[1]), free(out[2]);
    return rc;
}

static int export_onnx(const char *model, const char *weights, bool random_init, const char *out, const char *check_in,
                       const char *check_size, const char *check_out)
{
    const RetinaConfig *cfg = retinaface_config(model);
    if (!cfg) return fprintf(stderr, "convert: unknown model '%s'\n", model), 2;
    int w = 0, h = 0, rc = 0;
    float *x = check_in ? read_check_input(check_in, check_size, &w, &h, &rc) : NULL;
    if (check_in && !x) return rc;
    rc = 0;
    Error err = {0};
    Context *ctx = context_create(0);
    RetinaFace *m = ctx ? retinaface_create(cfg, DEVICE_CPU, 0, &err) : NULL;
    if (!ctx) rc = fail("cannot start the thread pool");
    else if (!m) rc = fail(err.msg);
    else if (weights ? retinaface_load(m, weights, &err) : !random_init && retinaface_load_builtin(m, &err))
        rc = fail(err.msg);
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (!rc && (retinaface_export_onnx(m, ctx, &bytes, &len, &err) || write_bytes(out, bytes, len, &err)))
        rc = fail(err.msg);
    if (!rc)
        printf("%s (%s) -> %s: %zu bytes, ONNX opset 13, input [batch, 3, height, width]\n",
               weights ? weights : random_init ? "random initialisation" : "built-in weights", cfg->name, out, len);
    free(bytes);
    if (!rc && x) rc = check_forward(m, ctx, x, w, h, check_out);
    free(x);
    retinaface_free(m);
    if (ctx) context_destroy(ctx);
    return rc;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *onnx = NULL, *check_in = NULL, *check_size = NULL, *check_out = NULL;
    bool random_init = false;
    enum { O_ONNX = 256, O_RANDOM, O_CHECK, O_SIZE, O_CHECK_OUT };
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                             {"onnx", required_argument, 0, O_ONNX},
                                             {"random-init", no_argument, 0, O_RANDOM},
                                             {"check", required_argument, 0, O_CHECK},
                                             {"size", required_argument, 0, O_SIZE},
                                             {"check-out", required_argument, 0, O_CHECK_OUT},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "hm:", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case O_ONNX: onnx = optarg; break;
        case O_RANDOM: random_init = true; break;
        case O_CHECK: check_in = optarg; break;
        case O_SIZE: check_size = optarg; break;
        case O_CHECK_OUT: check_out = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (onnx) {
        if (argc - optind > 1 || (check_in && (!check_size || !check_out)) || (random_init && argc - optind == 1)) {
            usage(stderr);
            return 2;
        }
        return export_onnx(model ? model : "mobilenet0.25", argc - optind == 1 ? argv[optind] : NULL, random_init,
                           onnx, check_in, check_size, check_out);
    }
    if (argc - optind != 2 || check_in || random_init) {
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
