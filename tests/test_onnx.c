/* ONNX export (nn/onnx_export.h, models/retinaface_export.h, build/convert --onnx): the exported model read
 * back with protobuf-c is a well-formed graph of the expected operators; ops without an ONNX form are
 * refused by name; and, where an interpreter with numpy and onnxruntime is at hand, ONNX Runtime running
 * the export gives our forward's outputs (tests/check_onnx_export.py). Builds without protobuf-c check that
 * the export says so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/ops.h"
#include "models/builtin_weights.h"
#include "models/retinaface_export.h"
#include "nn/formats/onnx_export.h"
#include "tensor/rng.h"
#include "tests/suites.h"
#ifdef HAVE_ONNX
#include "onnx.pb-c.h"
#endif

#ifdef HAVE_ONNX
static bool defined_in(char **names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return true;
    return false;
}

static const Onnx__AttributeProto *attribute(const Onnx__NodeProto *nd, const char *name)
{
    for (size_t i = 0; i < nd->n_attribute; i++)
        if (!strcmp(nd->attribute[i]->name, name)) return nd->attribute[i];
    return NULL;
}
#endif

START_TEST(export_is_a_wellformed_graph)
{
    Error err = {0};
    Context *ctx = context_create(2);
    RetinaFace *m = retinaface_create(retinaface_config("mobilenet0.25"), DEVICE_CPU, 0, &err);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(retinaface_load_builtin(m, &err), ERR_OK);
    uint8_t *bytes = NULL;
    size_t len = 0;
    ErrorCode rc = retinaface_export_onnx(m, ctx, &bytes, &len, &err);
    if (!onnx_export_available()) {
        ck_assert_int_eq(rc, ERR_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(err.msg, "no ONNX export"));
        printf("SKIP ONNX export: built without protobuf-c or the ONNX schema\n");
    } else {
        ck_assert_msg(rc == ERR_OK, "%s", err.msg);
#ifdef HAVE_ONNX
        Onnx__ModelProto *model = onnx__model_proto__unpack(NULL, len, bytes);
        ck_assert_ptr_nonnull(model);
        ck_assert_int_eq(model->n_opset_import, 1);
        ck_assert_int_eq(model->opset_import[0]->version, 13);
        const Onnx__GraphProto *g = model->graph;
        ck_assert_int_eq(g->n_input, 1);
        ck_assert_str_eq(g->input[0]->name, "input");
        const Onnx__TensorShapeProto *sh = g->input[0]->type->tensor_type->shape;
        ck_assert_int_eq(sh->n_dim, 4);
        ck_assert_str_eq(sh->dim[0]->dim_param, "batch");
        ck_assert_int_eq(sh->dim[1]->dim_value, 3);
        ck_assert_str_eq(sh->dim[2]->dim_param, "height");
        ck_assert_str_eq(sh->dim[3]->dim_param, "width");
        ck_assert_int_eq(g->n_output, 3);
        ck_assert_str_eq(g->output[0]->name, "loc");
        ck_assert_str_eq(g->output[1]->name, "conf");
        ck_assert_str_eq(g->output[2]->name, "landms");
        /* every node reads only what exists before it (the input, initializers, earlier outputs) */
        size_t cap = 1 + g->n_initializer + g->n_node, n_names = 0;
        char **names = malloc(cap * sizeof *names);
        names[n_names++] = g->input[0]->name;
        size_t weight_floats = 0;
        for (size_t i = 0; i < g->n_initializer; i++) {
            names[n_names++] = g->initializer[i]->name;
            if (g->initializer[i]->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
                weight_floats += g->initializer[i]->raw_data.len / sizeof(float);
        }
        static const char *const allowed[] = {"Conv", "Relu", "LeakyRelu", "Add", "Concat", "Transpose", "Reshape",
                                              "Softmax", "Resize", "Shape"};
        int convs = 0, resizes = 0, softmax_to_conf = 0;
        for (size_t i = 0; i < g->n_node; i++) {
            const Onnx__NodeProto *nd = g->node[i];
            bool known = false;
            for (size_t k = 0; k < sizeof allowed / sizeof allowed[0]; k++) known |= !strcmp(nd->op_type, allowed[k]);
            ck_assert_msg(known, "unexpected operator %s", nd->op_type);
            for (size_t k = 0; k < nd->n_input; k++)
                ck_assert_msg(!nd->input[k][0] || defined_in(names, n_names, nd->input[k]), "node %s reads %s before it exists",
                              nd->name, nd->input[k]);
            ck_assert_int_eq(nd->n_output, 1);
            ck_assert_msg(!defined_in(names, n_names, nd->output[0]), "%s written twice", nd->output[0]);
            names[n_names++] = nd->output[0];
            if (!strcmp(nd->op_type, "Conv")) {
                convs++;
                const Onnx__AttributeProto *k = attribute(nd, "kernel_shape"), *pads = attribute(nd, "pads");
                ck_assert_ptr_nonnull(k);
                ck_assert_ptr_nonnull(pads);
                ck_assert_int_eq(pads->n_ints, 4);
                /* the kernel attribute agrees with the weight initializer's shape */
                for (size_t w = 0; w < g->n_initializer; w++)
                    if (!strcmp(g->initializer[w]->name, nd->input[1])) {
                        ck_assert_int_eq(g->initializer[w]->n_dims, 4);
                        ck_assert_int_eq(g->initializer[w]->dims[2], k->ints[0]);
                        ck_assert_int_eq(g->initializer[w]->dims[3], k->ints[1]);
                    }
            }
            resizes += !strcmp(nd->op_type, "Resize");
            softmax_to_conf += !strcmp(nd->op_type, "Softmax") && !strcmp(nd->output[0], "conf");
        }
        /* MobileNet-0.25 RetinaFace: 27 backbone, 3 lateral + 2 merge FPN, 3 x 5 SSH, 3 x 3 head convolutions */
        ck_assert_int_eq(convs, 27 + 5 + 15 + 9);
        ck_assert_int_eq(resizes, 2);
        ck_assert_int_eq(softmax_to_conf, 1);
        /* the folded weights: every trainable value but BN's (folded away) is there once */
        ck_assert_uint_gt(weight_floats, 400000);
        ck_assert_uint_lt(weight_floats, 430000);
        for (size_t o = 0; o < g->n_output; o++) ck_assert(defined_in(names, n_names, g->output[o]->name));
        free(names);
        onnx__model_proto__free_unpacked(model, NULL);
#endif
    }
    free(bytes);
    retinaface_free(m);
    context_destroy(ctx);
}
END_TEST

/* A training graph's conv -> BN -> activation has no ONNX form: the export names it. */
START_TEST(export_refuses_ops_without_onnx_form)
{
    Context *ctx = context_create(1);
    Graph g;
    graph_init(&g, ctx, DEVICE_CPU, NULL);
    ck_assert_int_eq(graph_trace_begin(&g), ERR_OK);
    int64_t xs[4] = {1, 3, 8, 8}, ws[4] = {4, 3, 3, 3}, cs[1] = {4};
    Var *w = var_param_new(DEVICE_CPU, 4, ws, NULL), *gm = var_param_new(DEVICE_CPU, 1, cs, NULL);
    Var *bt = var_param_new(DEVICE_CPU, 1, cs, NULL);
    tensor_fill(&gm->value, 1.0f);
    Tensor rm, rv;
    tensor_new(&rm, DEVICE_CPU, 1, cs, NULL), tensor_new(&rv, DEVICE_CPU, 1, cs, NULL);
    Var *x = var_new(&g, 4, xs);
    memset(x->value.data, 0, tensor_bytes(&x->value));
    Var *y = ag_conv_bn_act_train(&g, x, w, gm, bt, &rm, &rv, conv2d_params(1, 1, 1, 1), 0.1f, 1e-5f, 0.1f);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(graph_trace(&g)->n, 1);
    OnnxExportSpec spec = {x, "input", {y}, {"y"}, 1, NULL, NULL, NULL, NULL, NULL};
    uint8_t *bytes = NULL;
    size_t len = 0;
    Error err = {0};
    ErrorCode rc = onnx_export(&g, &spec, &bytes, &len, &err);
    ck_assert_int_ne(rc, ERR_OK);
    if (onnx_export_available()) {
        ck_assert_msg(strstr(err.msg, "conv_bn_act") && strstr(err.msg, "fold"), "%s", err.msg);
    }
    ck_assert_ptr_null(bytes);
    /* a graph that was not traced is an error, not an empty model */
    graph_trace_end(&g);
    error_clear(&err);
    ck_assert_int_ne(onnx_export(&g, &spec, &bytes, &len, &err), ERR_OK);
    graph_destroy(&g);
    tensor_free(&rm), tensor_free(&rv);
    var_param_free(w), var_param_free(gm), var_param_free(bt);
    context_destroy(ctx);
}
END_TEST

/* ONNX Runtime on the export of every variant gives our forward's outputs (tests/check_onnx_export.py),
 * with an interpreter that has numpy and onnxruntime: $RETINA_ORT_PYTHON, else .venv-bench/bin/python. */
START_TEST(export_runs_in_onnx_runtime)
{
    const char *build = getenv("RETINA_BUILD");
    if (!onnx_export_available() || !build || access("tests/check_onnx_export.py", R_OK) != 0) {
        printf("SKIP ONNX Runtime check: needs an ONNX-enabled build, RETINA_BUILD and the repository root\n");
        return;
    }
    const char *py = getenv("RETINA_ORT_PYTHON");
    if (!py) py = ".venv-bench/bin/python";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy, onnxruntime' >/dev/null 2>&1", py);
    if (system(cmd) != 0) {
        printf("SKIP ONNX Runtime check: no python with numpy and onnxruntime (%s; see README: .venv-bench)\n", py);
        return;
    }
    char dir[] = "/tmp/retina_onnxXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "%s tests/check_onnx_export.py %s %s > %s/log.txt 2>&1", py, build, dir, dir);
    int status = system(cmd);
    if (status != 0) {
        snprintf(cmd, sizeof cmd, "cat %s/log.txt", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    ck_assert_int_eq(status, 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* build/convert --onnx: writes the model, refuses an unknown variant (status 2) and a cut check input. */
START_TEST(convert_app_writes_onnx)
{
    const char *build = getenv("RETINA_BUILD");
    if (!build) {
        printf("SKIP convert --onnx: RETINA_BUILD not set\n");
        return;
    }
    char dir[] = "/tmp/retina_convXXXXXX", cmd[1024];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "%s/convert --onnx %s/m.onnx > %s/out.txt 2>&1", build, dir, dir);
    int status = system(cmd);
    if (onnx_export_available()) {
        ck_assert_int_eq(status, 0);
        snprintf(cmd, sizeof cmd, "test -s %s/m.onnx", dir);
        ck_assert_int_eq(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "%s/convert --onnx %s/x.onnx --model nosuch > /dev/null 2>&1", build, dir);
        ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
        snprintf(cmd, sizeof cmd,
                 "head -c 100 /dev/zero > %s/cut.f32 && %s/convert --onnx %s/y.onnx --check %s/cut.f32 --size 64x64 "
                 "--check-out %s/o 2> %s/err.txt; test $? -eq 1 && grep -q 'cut.f32: expected 12288 float32' %s/err.txt",
                 dir, build, dir, dir, dir, dir, dir);
        ck_assert_int_eq(system(cmd), 0);
    } else {
        ck_assert_int_ne(status, 0);
        snprintf(cmd, sizeof cmd, "grep -q 'no ONNX export' %s/out.txt", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *onnx_suite(void)
{
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("onnx");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, export_is_a_wellformed_graph);
    tcase_add_test(tc, export_refuses_ops_without_onnx_form);
    tcase_add_test(tc, export_runs_in_onnx_runtime);
    tcase_add_test(tc, convert_app_writes_onnx);
    suite_add_tcase(s, tc);
    return s;
}
