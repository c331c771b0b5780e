/* Model assembly: parameter counts of every variant, forward + backward of each on a small input,
 * checkpoint round trips, PyTorch import, and forward parity with the reference PyTorch outputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/ops.h"
#include "models/retinaface.h"
#include "models/summary.h"
#include "nn/formats/checkpoint.h"
#include "nn/formats/safetensors.h"
#include "tensor/rng.h"
#include "tests/suites.h"

/* The layer rule (tests/check_layers.sh) holds for the tree, and the check sees a violation. */
START_TEST(includes_never_go_up_a_layer)
{
    if (access("tests/check_layers.sh", X_OK) != 0) {
        printf("SKIP layer check: not run from the repository root\n");
        return;
    }
    ck_assert_int_eq(system("tests/check_layers.sh . >/dev/null"), 0);
    char dir[] = "/tmp/retina_layersXXXXXX", cmd[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "mkdir -p %s/models && printf '#include \"nn/params.h\"\\n#include \"detection/priors.h\"\\n' "
                              "> %s/models/up.c", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "tests/check_layers.sh %s | grep -q 'models/up.c:2:'", dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "tests/check_layers.sh %s >/dev/null", dir);
    ck_assert_int_ne(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(parameter_counts)
{
    static const struct {
        const char *name;
        int64_t count;
    } expected[] = {
        {"mobilenet0.25", 426608},       /* the public model */
        {"resnet50", 27293600},          /* the public model */
        {"resnet18_p2p6", 11436784},     /* ours: ResNet-18 11,176,512 + FPN 209,920 + SSH 34,752 + heads 15,600 */
        {"mobilenet0.25_2cls", 424463},  /* ours: 426,608 - 6,240 (heads) + 4,095 (3 anchors x 3 classes, boxes) */
        {"mobilenet0.25_cascade", 432848}, /* ours: 426,608 + a second set of heads, 6,240 */
        {"resnet50_cascade", 27318272},  /* ours: 27,293,600 + a second set of heads, 24,672 */
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        Error err = {0};
        RetinaFace *m = retinaface_create(retinaface_config(expected[i].name), DEVICE_CPU, 1, &err);
        ck_assert_msg(m != NULL, "%s: %s", expected[i].name, err.msg);
        ck_assert_msg(params_count(&m->params) == expected[i].count, "%s: %lld parameters, expected %lld",
                      expected[i].name, (long long)params_count(&m->params), (long long)expected[i].count);
        retinaface_free(m);
    }
}
END_TEST

START_TEST(every_variant_runs_forward_and_backward)
{
    Context *ctx = context_create(2);
    for (const char *const *name = retinaface_variant_names(); *name; name++) {
        Error err = {0};
        RetinaFace *m = retinaface_create(retinaface_config(*name), DEVICE_CPU, 2, &err);
        ck_assert_msg(m != NULL, "%s: %s", *name, err.msg);
        Graph g;
        graph_init(&g, ctx, DEVICE_CPU, NULL);
        int64_t xs[4] = {2, 3, 64, 96};
        Var *x = var_new(&g, 4, xs);
        Rng r;
        rng_seed(&r, 3, 3);
        tensor_fill_normal(&x->value, &r, 0, 50);
        RetinaOutputs out;
        ck_assert_msg(retinaface_forward(&g, m, x, true, &out), "%s: %s", *name, g.err.msg);
        const RetinaConfig *c = &m->cfg;
        int64_t P = 0;
        const AnchorLayout *a = &c->anchors;
        for (int l = 0; l < a->n_levels; l++)
            P += (int64_t)((64 + a->steps[l] - 1) / a->steps[l]) * ((96 + a->steps[l] - 1) / a->steps[l]) * a->per_location;
        ck_assert_int_eq(out.loc->value.shape[1], P);
        ck_assert_int_eq(out.conf->value.shape[2], c->num_classes);
        ck_assert(c->landmarks == (out.landms != NULL));
        Var *loss = ag_add(&g, ag_sum(&g, out.loc), ag_sum(&g, out.conf));
        if (out.landms) loss = ag_add(&g, loss, ag_sum(&g, out.landms));
        ck_assert((c->cascade_overlap > 0) == (out.loc2 != NULL));
        if (out.loc2) { /* the cascade stage: the same shapes, every head reached by the backward */
            ck_assert(out.loc2->value.shape[1] == P && out.conf2->value.shape[2] == c->num_classes);
            ck_assert(c->landmarks == (out.landms2 != NULL));
            loss = ag_add(&g, loss, ag_add(&g, ag_sum(&g, out.loc2), ag_sum(&g, out.conf2)));
            if (out.landms2) loss = ag_add(&g, loss, ag_sum(&g, out.landms2));
        }
        ck_assert_int_eq(graph_backward(&g, loss), ERR_OK);
        /* Every parameter received a gradient (the first conv's is a full chain away). */
        Var *first = m->params.entries[0].param;
        double s = 0;
        for (int64_t i = 0; i < tensor_numel(&first->grad); i++) s += fabs(first->grad.data[i]);
        ck_assert_msg(s > 0, "%s: no gradient reached %s", *name, m->params.entries[0].name);
        graph_destroy(&g);
        retinaface_free(m);
    }
    context_destroy(ctx);
}
END_TEST

/* A safetensors file from a header string and `data_len` zero bytes of data. */
static void write_safetensors(const char *path, const char *header, size_t data_len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    uint64_t n = strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(n >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_len; i++) fputc(0, f);
    fclose(f);
}

START_TEST(crafted_safetensors_are_refused)
{
    char path[] = "/tmp/retina_stXXXXXX.safetensors";
    int fd = mkstemps(path, 12);
    close(fd);
    TensorDict d;
    Error err = {0};
    static const struct {
        const char *header;
        size_t data;
        const char *says;
    } cases[] = {
        /* sound: two tensors tiling 24 bytes */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[4],"
         "\"data_offsets\":[8,24]}}", 24, NULL},
        /* two names for the same bytes (was accepted, exit 0) */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[0,8]}}", 8, "overlaps"},
        /* the same key twice (was accepted) */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[8,16]}}", 16, "twice"},
        /* a gap between tensors */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[8,12]}}", 12, "gap"},
        /* a shape whose byte count overflows int64 and wraps to the data's size */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,16]}}", 16, "shape"},
        /* a negative dimension */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-4,-1],\"data_offsets\":[0,16]}}", 16, "shape"},
        /* a malformed header: the error offset is a byte of the file (was "at byte -24560") */
        {"{\"a\" \"dtype\"}", 0, "at byte 13 of the file"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        write_safetensors(path, cases[k].header, cases[k].data);
        error_clear(&err);
        ErrorCode rc = safetensors_read(path, &d, &err);
        if (!cases[k].says) {
            ck_assert_msg(rc == ERR_OK, "case %zu: %s", k, err.msg);
            ck_assert_int_eq(d.n, 2);
            tensor_dict_free(&d);
            continue;
        }
        ck_assert_msg(rc == ERR_FORMAT, "case %zu accepted", k);
        ck_assert_msg(strstr(err.msg, cases[k].says) && strstr(err.msg, path), "case %zu: %s", k, err.msg);
    }
    /* a PyTorch checkpoint where a training checkpoint is expected (--resume) says what it is */
    char pb[512];
    const char *pth = shared_path("weights/mobilenet0.25_Final.pth", pb, sizeof pb);
    if (pth) {
        char *value = NULL;
        error_clear(&err);
        ck_assert_int_eq(safetensors_read_metadata(pth, "model", &value, &err), ERR_FORMAT);
        ck_assert_msg(strstr(err.msg, "build/convert") != NULL, "%s", err.msg);
    }
    unlink(path);
}
END_TEST

START_TEST(safetensors_round_trip_is_bit_exact)
{
    Error err = {0};
    RetinaFace *a = retinaface_create(retinaface_config("mobilenet0.25"), DEVICE_CPU, 11, &err);
    RetinaFace *b = retinaface_create(retinaface_config("mobilenet0.25"), DEVICE_CPU, 12, &err);
    char path[] = "/tmp/retina_ckptXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    ck_assert_int_eq(retinaface_save(a, path, &err), ERR_OK);
    ck_assert_int_eq(retinaface_load(b, path, &err), ERR_OK);
    for (int i = 0; i < a->params.n; i++) {
        Tensor *ta = param_entry_tensor(&a->params.entries[i]), *tb = param_entry_tensor(&b->params.entries[i]);
        ck_assert_int_eq(memcmp(ta->data, tb->data, tensor_bytes(ta)), 0);
    }
    char *model = NULL;
    ck_assert_int_eq(safetensors_read_metadata(path, "model", &model, &err), ERR_OK);
    ck_assert_str_eq(model, "mobilenet0.25");
    free(model);

    /* A checkpoint of another variant is refused, naming the file and a tensor. */
    RetinaFace *c = retinaface_create(retinaface_config("resnet18_p2p6"), DEVICE_CPU, 1, &err);
    error_clear(&err);
    ck_assert_int_ne(retinaface_load(c, path, &err), ERR_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, path));
    retinaface_free(c);

    /* Truncation is detected. */
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    ck_assert_int_eq(truncate(path, size - 100), 0);
    error_clear(&err);
    ck_assert_int_eq(retinaface_load(b, path, &err), ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    unlink(path);
    retinaface_free(a);
    retinaface_free(b);
}
END_TEST

START_TEST(pytorch_zip_format_imports)
{
    /* tests/data/zip_state_dict.pt: torch.save (torch 2.x, zip format) of an OrderedDict with a
     * float32 [2,3] tensor, a transposed (non-contiguous) float32 view, a float64 vector and an
     * int64 scalar; see tests/data/README.md. */
    Error err = {0};
    TensorDict d;
    ck_assert_msg(checkpoint_read("tests/data/zip_state_dict.pt", &d, &err) == ERR_OK, "%s", err.msg);
    NamedTensor *a = tensor_dict_find(&d, "a"), *t = tensor_dict_find(&d, "t"), *dbl = tensor_dict_find(&d, "d"),
                *n = tensor_dict_find(&d, "n");
    ck_assert(a && t && dbl && n);
    ck_assert_int_eq(a->ndim, 2);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(a->data[i], (float)i * 0.5f - 1.0f);
    /* t = a.t(): [3,2] with t[i][j] = a[j][i] */
    ck_assert_int_eq(t->shape[0], 3);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) ck_assert_float_eq(t->data[i * 2 + j], a->data[j * 3 + i]);
    ck_assert_str_eq(dbl->dtype, "F64");
    ck_assert_float_eq(dbl->data[2], 0.25f);
    ck_assert_float_eq(n->data[0], 42.0f);
    tensor_dict_free(&d);
}
END_TEST

/* Crafted checkpoints (tests/data/make_bad_checkpoints.py): each is refused with a message naming
 * the file and the problem, quickly and without large allocations. */
START_TEST(crafted_pth_files_are_refused)
{
    static const struct {
        const char *file, *says;
    } cases[] = {{"tests/data/bad_neg_stride.pt", "negative"},
                 {"tests/data/bad_zero_stride.pt", "elements from a storage of 1"},
                 {"tests/data/bad_wrap_stride.pt", "overflowing"},
                 {"tests/data/bad_global.pt", "os.system"},
                 {"tests/data/bad_memo.pt", "memo index out of range"},
                 {"tests/data/bad_zip_size.pt", "declares 4294967280 bytes"}};
    if (access("tests/data/ok_crafted.pt", R_OK)) {
        printf("SKIP crafted checkpoints: not run from the repository root\n");
        return;
    }
    TensorDict d;
    Error err = {0};
    ck_assert_msg(checkpoint_read("tests/data/ok_crafted.pt", &d, &err) == ERR_OK, "%s", err.msg);
    ck_assert_int_eq(d.n, 1);
    ck_assert_float_eq(d.items[0].data[0], 2.0f); /* offset 1, stride 2: elements 1 and 3 */
    ck_assert_float_eq(d.items[0].data[1], 4.0f);
    tensor_dict_free(&d);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        error_clear(&err);
        ck_assert_msg(checkpoint_read(cases[k].file, &d, &err) == ERR_FORMAT, "%s accepted", cases[k].file);
        ck_assert_msg(strstr(err.msg, cases[k].file) && strstr(err.msg, cases[k].says), "%s: %s", cases[k].file, err.msg);
    }
}
END_TEST

START_TEST(pth_import_errors_are_clear)
{
    Error err = {0};
    TensorDict d;
    char path[] = "/tmp/retina_badXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_eq(write(fd, "hello world, not a checkpoint", 29), 29);
    close(fd);
    ck_assert_int_ne(checkpoint_read(path, &d, &err), ERR_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, path));
    unlink(path);
    error_clear(&err);
    ck_assert_int_eq(checkpoint_read("/nonexistent.pth", &d, &err), ERR_IO);

    char buf[512];
    const char *pth = shared_path("weights/mobilenet0.25_Final.pth", buf, sizeof buf);
    if (!pth) return;
    /* A truncated copy of the real file. */
    char tpath[] = "/tmp/retina_truncXXXXXX";
    fd = mkstemp(tpath);
    FILE *in = fopen(pth, "rb");
    static char data[1 << 20];
    size_t n = fread(data, 1, sizeof data, in);
    fclose(in);
    ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
    close(fd);
    error_clear(&err);
    ck_assert_int_eq(checkpoint_read(tpath, &d, &err), ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    unlink(tpath);
}
END_TEST

static void compare(const char *what, const Tensor *ours, const char *ref_path, double tol)
{
    Tensor ref;
    Error err = {0};
    ck_assert_msg(tensor_load_raw(&ref, ref_path, ours->ndim, ours->shape, &err) == ERR_OK, "%s", err.msg);
    TensorDiff d = tensor_diff(ours->data, ref.data, tensor_numel(&ref), 1e-3);
    printf("  parity %-22s max abs %.3e  max rel (to max|ref|) %.3e  max elementwise rel (|ref|>=1e-3) %.3e\n",
           what, d.max_abs, d.max_rel_to_max, d.max_rel);
    ck_assert_msg(d.max_rel_to_max <= tol, "%s: max rel %.3e > %.1e", what, d.max_rel_to_max, tol);
    tensor_free(&ref);
}

START_TEST(forward_matches_pytorch_reference)
{
    char wbuf[512], ibuf[512], rbuf[512];
    const char *weights = shared_path("weights/mobilenet0.25_Final.pth", wbuf, sizeof wbuf);
    const char *input = shared_path("reference/retinaface_mnet025/infer_input.f32", ibuf, sizeof ibuf);
    if (!weights || !input) {
        printf("SKIP forward parity: ../shared reference data absent\n");
        return;
    }
    Error err = {0};
    RetinaFace *m = retinaface_create(retinaface_config("mobilenet0.25"), DEVICE_CPU, 1, &err);
    ck_assert_msg(retinaface_load(m, weights, &err) == ERR_OK, "%s", err.msg);
    int64_t xs[4] = {1, 3, 624, 1024};
    Tensor x;
    ck_assert_int_eq(tensor_load_raw(&x, input, 4, xs, &err), ERR_OK);
    Context *ctx = context_create(2);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    graph_set_grad_enabled(&g, false);
    RetinaOutputs out;
    ck_assert_msg(retinaface_forward(&g, m, var_from_tensor(&g, &x, false), false, &out), "%s", g.err.msg);
    Var *conf = ag_softmax(&g, out.conf);
    const char *dir = "reference/retinaface_mnet025/";
    char p[600];
#define REF(name) (snprintf(p, sizeof p, "%s%s", dir, name), shared_path(p, rbuf, sizeof rbuf))
    compare("backbone stage1", &out.backbone[0]->value, REF("infer_backbone_stage1.f32"), 1e-4);
    compare("backbone stage2", &out.backbone[1]->value, REF("infer_backbone_stage2.f32"), 1e-4);
    compare("backbone stage3", &out.backbone[2]->value, REF("infer_backbone_stage3.f32"), 1e-4);
    compare("loc", &out.loc->value, REF("infer_loc.f32"), 1e-4);
    compare("conf (softmax)", &conf->value, REF("infer_conf.f32"), 1e-4);
    compare("landms", &out.landms->value, REF("infer_landms.f32"), 1e-4);
#undef REF
    graph_destroy(&g);
    context_destroy(ctx);
    tensor_free(&x);
    retinaface_free(m);
}
END_TEST

START_TEST(pretrained_backbone_loads)
{
    char buf[512];
    const char *path = shared_path("weights/mobilenetV1X0.25_pretrain.tar", buf, sizeof buf);
    if (!path) {
        printf("SKIP pretrained backbone: ../shared absent\n");
        return;
    }
    Error err = {0};
    RetinaFace *m = retinaface_create(retinaface_config("mobilenet0.25"), DEVICE_CPU, 1, &err);
    ck_assert_msg(retinaface_load_pretrained_backbone(m, path, &err) == ERR_OK, "%s", err.msg);
    TensorDict d;
    checkpoint_read(path, &d, &err);
    NamedTensor *w = tensor_dict_find(&d, "module.stage2.3.3.weight");
    ck_assert_ptr_nonnull(w);
    Tensor *mine = param_entry_tensor(params_find(&m->params, "body.stage2.3.3.weight"));
    ck_assert_int_eq(memcmp(mine->data, w->data, tensor_bytes(mine)), 0);
    tensor_dict_free(&d);
    retinaface_free(m);
}
END_TEST

START_TEST(folded_inference_matches_training_graph)
{
    /* BN folded into the convs + fused activations against the op-by-op eval forward, for every
     * variant (random weights, randomised BN statistics so the folding matters). */
    Context *ctx = context_create(2);
    for (const char *const *name = retinaface_variant_names(); *name; name++) {
        Error err = {0};
        RetinaFace *m = retinaface_create(retinaface_config(*name), DEVICE_CPU, 5, &err);
        Rng r;
        rng_seed(&r, 6, 6);
        for (int i = 0; i < m->params.n; i++) {
            ParamEntry *e = &m->params.entries[i];
            if (e->kind != ENTRY_BUFFER) continue;
            bool var = strstr(e->name, "running_var") != NULL;
            tensor_fill_uniform(e->buffer, &r, var ? 0.5f : -0.5f, var ? 2.0f : 0.5f);
        }
        int64_t xs[4] = {1, 3, 96, 128};
        Tensor x;
        tensor_new(&x, DEVICE_CPU, 4, xs, NULL);
        tensor_fill_normal(&x, &r, 0, 50);
        float *outs[2][3];
        int64_t sizes[3] = {0, 0, 0};
        for (int folded = 0; folded < 2; folded++) {
            if (folded) ck_assert_int_eq(retinaface_fold_batchnorm(m, &err), ERR_OK);
            Graph g;
            graph_init(&g, ctx, DEVICE_CPU, NULL);
            graph_set_grad_enabled(&g, false);
            RetinaOutputs o;
            ck_assert_msg(retinaface_forward(&g, m, var_from_tensor(&g, &x, false), false, &o), "%s", g.err.msg);
            Var *v[3] = {o.loc, o.conf, o.landms};
            for (int k = 0; k < 3; k++) {
                outs[folded][k] = NULL;
                if (!v[k]) continue;
                sizes[k] = tensor_numel(&v[k]->value);
                outs[folded][k] = malloc(tensor_bytes(&v[k]->value));
                memcpy(outs[folded][k], v[k]->value.data, tensor_bytes(&v[k]->value));
            }
            graph_destroy(&g);
        }
        for (int k = 0; k < 3; k++) {
            if (!outs[0][k]) continue;
            TensorDiff d = tensor_diff(outs[1][k], outs[0][k], sizes[k], 1e-6);
            printf("  folded %-20s output %d: max abs %.2e, max|a-b|/max|b| %.2e\n", *name, k, d.max_abs, d.max_rel_to_max);
            ck_assert_double_le(d.max_rel_to_max, 1e-4);
            free(outs[0][k]), free(outs[1][k]);
        }
        ck_assert_int_gt(m->folded.n, 0);
        tensor_free(&x);
        retinaface_free(m);
    }
    context_destroy(ctx);
}
END_TEST

/* The layer table of build/detect --summary: every op of the forward with its output, parameter and FLOPs
 * (from the export trace), and the totals (MobileNet-0.25 at 640x640: 1.962 GFLOPs; the stem 44.24 MFLOPs). */
START_TEST(summary_lists_layers_and_flops)
{
    Error err = {0};
    Context *ctx = context_create(1);
    RetinaFace *m = retinaface_create(retinaface_config("mobilenet0.25"), DEVICE_CPU, 0, &err);
    ck_assert_ptr_nonnull(m);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_int_eq(retinaface_print_summary(f, m, ctx, 640, 640, &err), ERR_OK);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "parameters: 426608"));
    ck_assert_ptr_nonnull(strstr(text, "convolution FLOPs at 640x640: 1.962 GFLOPs"));
    char *stem = strstr(text, "body.stage1.0.0.weight");
    ck_assert_ptr_nonnull(stem);
    ck_assert_ptr_nonnull(strstr(stem, "44.24"));
    int rows = 0;
    for (char *p = text; (p = strstr(p, "conv2d")); p++) rows++;
    ck_assert_int_ge(rows, 56); /* every convolution of the model has its row */
    free(text);
    retinaface_free(m);
    context_destroy(ctx);
}
END_TEST

Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("retinaface");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, parameter_counts);
    tcase_add_test(tc, summary_lists_layers_and_flops);
    tcase_add_test(tc, includes_never_go_up_a_layer);
    tcase_add_test(tc, crafted_safetensors_are_refused);
    tcase_add_test(tc, crafted_pth_files_are_refused);
    tcase_add_test(tc, every_variant_runs_forward_and_backward);
    tcase_add_test(tc, safetensors_round_trip_is_bit_exact);
    tcase_add_test(tc, pytorch_zip_format_imports);
    tcase_add_test(tc, pth_import_errors_are_clear);
    tcase_add_test(tc, forward_matches_pytorch_reference);
    tcase_add_test(tc, folded_inference_matches_training_graph);
    tcase_add_test(tc, pretrained_backbone_loads);
    suite_add_tcase(s, tc);
    return s;
}
