/* The ONNX writer (built when protobuf-c and onnx.proto are present; nn/onnx_export_none.c otherwise).
 * Every message, array and string of the model is taken from one list of allocations that is freed
 * once the model is packed, so no message needs freeing on its own. */
#include "nn/formats/onnx_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"

enum { OPSET = 13, IR_VERSION = 7 };

typedef struct Chunk {
    struct Chunk *next;
    max_align_t data[];
} Chunk;

/* A name per value: the graph input, the outputs, op outputs and initializers. */
typedef struct {
    const Var *v;
    const char *name;
} Named;

typedef struct {
    Chunk *chunks;
    bool oom;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    Named *names;
    size_t n_names, cap_names;
    int n_temps, n_params;
    const OnnxExportSpec *spec;
} Builder;

static void *take(Builder *b, size_t bytes)
{
    Chunk *c = calloc(1, sizeof *c + (bytes ? bytes : 1));
    if (!c) {
        b->oom = true;
        return NULL;
    }
    c->next = b->chunks;
    b->chunks = c;
    return c->data;
}

static char *text(Builder *b, const char *s)
{
    char *d = take(b, strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

/* Appends p to a growing array of pointers (the arrays themselves are plain heap memory). */
static void push(Builder *b, void ***arr, size_t *n, size_t *cap, void *p)
{
    if (!p) return;
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        void **a = realloc(*arr, c * sizeof *a);
        if (!a) {
            b->oom = true;
            return;
        }
        *arr = a, *cap = c;
    }
    (*arr)[(*n)++] = p;
}

static const char *name_of(const Builder *b, const Var *v)
{
    for (size_t i = b->n_names; i-- > 0;)
        if (b->names[i].v == v) return b->names[i].name;
    return NULL;
}

static const char *set_name(Builder *b, const Var *v, const char *name)
{
    if (b->n_names == b->cap_names) {
        size_t c = b->cap_names ? 2 * b->cap_names : 256;
        Named *a = realloc(b->names, c * sizeof *a);
        if (!a) {
            b->oom = true;
            return NULL;
        }
        b->names = a, b->cap_names = c;
    }
    char *n = text(b, name);
    if (n) b->names[b->n_names++] = (Named){v, n};
    return n;
}

/* A fresh name for an intermediate value. */
static const char *temp_name(Builder *b)
{
    char buf[32];
    snprintf(buf, sizeof buf, "t%d", b->n_temps++);
    return text(b, buf);
}

static Onnx__TensorProto *tensor_proto(Builder *b, const char *name, int32_t type, int ndim, const int64_t *dims,
                                       const void *data, size_t bytes)
{
    Onnx__TensorProto *t = take(b, sizeof *t);
    int64_t *d = take(b, sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
    uint8_t *raw = take(b, bytes);
    if (!t || !d || !raw) return NULL;
    onnx__tensor_proto__init(t);
    memcpy(d, dims, sizeof(int64_t) * (size_t)ndim);
    memcpy(raw, data, bytes); /* little-endian floats and int64s, as raw_data wants them (x86-64, AArch64) */
    t->n_dims = (size_t)ndim, t->dims = d;
    t->has_data_type = 1, t->data_type = type;
    t->name = text(b, name);
    t->has_raw_data = 1, t->raw_data.len = bytes, t->raw_data.data = raw;
    return t;
}

/* A constant input of int64 or float values, added as an initializer; returns its name. */
static const char *constant(Builder *b, int32_t type, int n, const void *values)
{
    char buf[32];
    snprintf(buf, sizeof buf, "const%zu", b->n_inits);
    int64_t dims[1] = {n};
    size_t bytes = (size_t)n * (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? sizeof(int64_t) : sizeof(float));
    Onnx__TensorProto *t = tensor_proto(b, buf, type, 1, dims, values, bytes);
    push(b, (void ***)&b->inits, &b->n_inits, &b->cap_inits, t);
    return t ? t->name : NULL;
}

/* The name of value v as an input: named already (made by a traced op, the graph input), or a parameter
 * that becomes an initializer now. */
static const char *input_name(Builder *b, const Var *v)
{
    const char *n = name_of(b, v);
    if (n) return n;
    char buf[160];
    const char *given = b->spec->param_name ? b->spec->param_name(v, b->spec->param_ctx) : NULL;
    if (given) snprintf(buf, sizeof buf, "%s", given);
    else snprintf(buf, sizeof buf, "param%d", b->n_params);
    b->n_params++;
    const Tensor *t = &v->value;
    Onnx__TensorProto *tp = tensor_proto(b, buf, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, t->ndim, t->shape, t->data,
                                         (size_t)tensor_numel(t) * sizeof(float));
    push(b, (void ***)&b->inits, &b->n_inits, &b->cap_inits, tp);
    return tp ? set_name(b, v, tp->name) : NULL;
}

/* A named attribute of the given type, its value still to set (NULL when out of memory). */
static Onnx__AttributeProto *attribute(Builder *b, const char *name, Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = take(b, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = text(b, name);
    a->has_type = 1, a->type = type;
    return a;
}

static Onnx__AttributeProto *attr_ints(Builder *b, const char *name, const int64_t *v, int n)
{
    Onnx__AttributeProto *a = attribute(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *d = take(b, sizeof(int64_t) * (size_t)n);
    if (!a || !d) return NULL;
    memcpy(d, v, sizeof(int64_t) * (size_t)n);
    a->n_ints = (size_t)n, a->ints = d;
    return a;
}

static Onnx__AttributeProto *attr_int(Builder *b, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attribute(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = v;
    return a;
}

static Onnx__AttributeProto *attr_float(Builder *b, const char *name, float v)
{
    Onnx__AttributeProto *a = attribute(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = v;
    return a;
}

static Onnx__AttributeProto *attr_string(Builder *b, const char *name, const char *v)
{
    Onnx__AttributeProto *a = attribute(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    char *s = text(b, v);
    if (!a || !s) return NULL;
    a->has_s = 1, a->s.len = strlen(s), a->s.data = (uint8_t *)s;
    return a;
}

/* Adds a node op_type(inputs) -> output with up to 6 attributes (NULL-terminated). */
static void node(Builder *b, const char *op_type, const char *const *inputs, int n_in, const char *output,
                 Onnx__AttributeProto *const *attrs)
{
    Onnx__NodeProto *nd = take(b, sizeof *nd);
    char **in = take(b, sizeof(char *) * (size_t)(n_in ? n_in : 1));
    char **out = take(b, sizeof(char *));
    Onnx__AttributeProto **at = take(b, sizeof(*at) * 6);
    if (!nd || !in || !out || !at) return;
    onnx__node_proto__init(nd);
    for (int i = 0; i < n_in; i++) in[i] = text(b, inputs[i] ? inputs[i] : "");
    out[0] = text(b, output);
    size_t n_at = 0;
    for (; attrs && n_at < 6 && attrs[n_at]; n_at++) at[n_at] = attrs[n_at];
    char name[48];
    snprintf(name, sizeof name, "%s_%zu", op_type, b->n_nodes);
    nd->name = text(b, name);
    nd->op_type = text(b, op_type);
    nd->n_input = (size_t)n_in, nd->input = in;
    nd->n_output = 1, nd->output = out;
    nd->n_attribute = n_at, nd->attribute = at;
    push(b, (void ***)&b->nodes, &b->n_nodes, &b->cap_nodes, nd);
}

/* Relu or LeakyRelu(slope) of `in` into `out`. */
static void activation(Builder *b, const char *in, const char *out, float slope)
{
    const char *ins[1] = {in};
    if (slope == 0.0f) {
        node(b, "Relu", ins, 1, out, NULL);
    } else {
        Onnx__AttributeProto *a[2] = {attr_float(b, "alpha", slope), NULL};
        node(b, "LeakyRelu", ins, 1, out, a);
    }
}

/* The ONNX form of one traced op; false (err set) when it has none. */
static bool emit(Builder *b, const TraceEntry *e, Error *err)
{
    const char *in[TENSOR_MAX_DIMS + 4];
    int n = e->n_inputs < (int)(sizeof in / sizeof in[0]) ? e->n_inputs : (int)(sizeof in / sizeof in[0]);
    if (!strcmp(e->op, "concat") && e->n_inputs > n) {
        error_set(err, ERR_UNSUPPORTED, "onnx export: concat of %d inputs (at most %d)", e->n_inputs, n);
        return false;
    }
    for (int i = 0; i < n; i++) in[i] = input_name(b, e->inputs[i]);
    /* the output's name: one of the model's outputs, or a fresh one */
    const char *out = NULL;
    for (int i = 0; i < b->spec->n_outputs; i++)
        if (b->spec->outputs[i] == e->out) out = b->spec->output_names[i];
    out = set_name(b, e->out, out ? out : temp_name(b));
    if (!out) return false;
    const char *op = e->op;
    if (!strcmp(op, "conv2d") || !strcmp(op, "conv2d_act")) {
        const Tensor *w = &e->inputs[1]->value;
        int64_t k[2] = {w->shape[2], w->shape[3]}, strides[2] = {e->ints[0], e->ints[1]};
        int64_t pads[4] = {e->ints[2], e->ints[3], e->ints[2], e->ints[3]}, dil[2] = {e->ints[4], e->ints[5]};
        Onnx__AttributeProto *a[6] = {attr_ints(b, "kernel_shape", k, 2), attr_ints(b, "strides", strides, 2),
                                      attr_ints(b, "pads", pads, 4), attr_ints(b, "dilations", dil, 2),
                                      attr_int(b, "group", e->ints[6]), NULL};
        const char *conv_out = e->f < 0.0f ? out : temp_name(b);
        node(b, "Conv", in, n, conv_out, a);
        if (e->f >= 0.0f) activation(b, conv_out, out, e->f);
    } else if (!strcmp(op, "relu") || !strcmp(op, "leaky_relu")) {
        activation(b, in[0], out, e->f);
    } else if (!strcmp(op, "add") || !strcmp(op, "add_act")) {
        const char *sum = e->f < 0.0f ? out : temp_name(b);
        node(b, "Add", in, 2, sum, NULL);
        if (e->f >= 0.0f) activation(b, sum, out, e->f);
    } else if (!strcmp(op, "scale")) {
        const char *ins[2] = {in[0], constant(b, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, &e->f)};
        node(b, "Mul", ins, 2, out, NULL);
    } else if (!strcmp(op, "concat")) {
        Onnx__AttributeProto *a[2] = {attr_int(b, "axis", e->ints[0]), NULL};
        node(b, "Concat", in, n, out, a);
    } else if (!strcmp(op, "permute")) {
        Onnx__AttributeProto *a[2] = {attr_ints(b, "perm", e->ints, e->n_ints), NULL};
        node(b, "Transpose", in, 1, out, a);
    } else if (!strcmp(op, "reshape")) {
        const Tensor *t = &e->out->value;
        int64_t shape[TENSOR_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) shape[d] = d == 0 ? 0 : d == 1 ? -1 : t->shape[d];
        if (t->ndim == 1) shape[0] = -1;
        const char *ins[2] = {in[0], constant(b, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, t->ndim, shape)};
        node(b, "Reshape", ins, 2, out, NULL);
    } else if (!strcmp(op, "softmax")) {
        Onnx__AttributeProto *a[2] = {attr_int(b, "axis", -1), NULL};
        node(b, "Softmax", in, 1, out, a);
    } else if (!strcmp(op, "add_upsampled") || !strcmp(op, "upsample_nearest")) {
        /* nearest, source index floor(o * in / out): Resize's asymmetric coordinates with floor */
        Onnx__AttributeProto *a[4] = {attr_string(b, "mode", "nearest"),
                                      attr_string(b, "coordinate_transformation_mode", "asymmetric"),
                                      attr_string(b, "nearest_mode", "floor"), NULL};
        bool add = !strcmp(op, "add_upsampled");
        const char *sizes;
        if (add) { /* to the other input's size, whatever the input size: its shape at run time */
            sizes = temp_name(b);
            node(b, "Shape", in, 1, sizes, NULL);
        } else {
            sizes = constant(b, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 4, e->out->value.shape);
        }
        const char *ins[4] = {add ? in[1] : in[0], "", "", sizes};
        const char *up = add ? temp_name(b) : out;
        node(b, "Resize", ins, 4, up, a);
        if (add) {
            const char *sum[2] = {in[0], up};
            node(b, "Add", sum, 2, out, NULL);
        }
    } else if (!strcmp(op, "max_pool2d")) {
        int64_t k[2] = {e->ints[0], e->ints[0]}, s[2] = {e->ints[1], e->ints[1]};
        int64_t pads[4] = {e->ints[2], e->ints[2], e->ints[2], e->ints[2]};
        Onnx__AttributeProto *a[4] = {attr_ints(b, "kernel_shape", k, 2), attr_ints(b, "strides", s, 2),
                                      attr_ints(b, "pads", pads, 4), NULL};
        node(b, "MaxPool", in, 1, out, a);
    } else if (!strcmp(op, "global_avg_pool")) {
        node(b, "GlobalAveragePool", in, 1, out, NULL);
    } else if (!strcmp(op, "linear")) {
        Onnx__AttributeProto *a[2] = {attr_int(b, "transB", 1), NULL};
        node(b, "Gemm", in, n, out, a);
    } else {
        error_set(err, ERR_UNSUPPORTED, "onnx export: op %s has no ONNX form here%s", op,
                  !strcmp(op, "batchnorm2d") || !strcmp(op, "conv_bn_act") ? " (fold BatchNorm for inference first)" : "");
        return false;
    }
    return true;
}

/* A float tensor's type with the given dims: dim_param where param[i] is set, else dim_value. */
static Onnx__ValueInfoProto *value_info(Builder *b, const char *name, int ndim, const int64_t *dims,
                                        const char *const *params)
{
    Onnx__ValueInfoProto *vi = take(b, sizeof *vi);
    Onnx__TypeProto *tp = take(b, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = take(b, sizeof *tt);
    Onnx__TensorShapeProto *sh = take(b, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **d = take(b, sizeof(*d) * (size_t)ndim);
    if (!vi || !tp || !tt || !sh || !d) return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < ndim; i++) {
        d[i] = take(b, sizeof **d);
        if (!d[i]) return NULL;
        onnx__tensor_shape_proto__dimension__init(d[i]);
        if (params[i]) {
            d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d[i]->dim_param = text(b, params[i]);
        } else {
            d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d[i]->dim_value = dims[i];
        }
    }
    sh->n_dim = (size_t)ndim, sh->dim = d;
    tt->has_elem_type = 1, tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, tp->tensor_type = tt;
    vi->name = text(b, name), vi->type = tp;
    return vi;
}

int onnx_export_available(void) { return 1; }

ErrorCode onnx_export(const Graph *g, const OnnxExportSpec *spec, uint8_t **bytes, size_t *len, Error *err)
{
    *bytes = NULL, *len = 0;
    const GraphTrace *t = graph_trace(g);
    if (!t) return error_set(err, ERR_ARG, "onnx export: the graph was not traced (graph_trace_begin)");
    if (!spec->input || spec->input->value.ndim != 4 || spec->n_outputs < 1 || spec->n_outputs > ONNX_EXPORT_MAX_OUTPUTS)
        return error_set(err, ERR_ARG, "onnx export: needs a 4-d input and 1 to %d outputs", ONNX_EXPORT_MAX_OUTPUTS);
    Builder b = {0};
    b.spec = spec;
    set_name(&b, spec->input, spec->input_name);
    ErrorCode rc = ERR_OK;
    for (int i = 0; i < t->n && !rc && !b.oom; i++)
        if (!emit(&b, &t->entries[i], err)) rc = err->code ? err->code : ERR_OOM;
    for (int i = 0; i < spec->n_outputs && !rc; i++)
        if (!name_of(&b, spec->outputs[i]))
            rc = error_set(err, ERR_ARG, "onnx export: output %s was not made by a traced op", spec->output_names[i]);
    Onnx__ValueInfoProto *inputs[1], *outputs[ONNX_EXPORT_MAX_OUTPUTS];
    if (!rc && !b.oom) {
        static const char *const in_dims[4] = {"batch", NULL, "height", "width"};
        inputs[0] = value_info(&b, spec->input_name, 4, spec->input->value.shape, in_dims);
        for (int i = 0; i < spec->n_outputs; i++) {
            /* batch first; the last dimension as traced (a box's 4, the classes); the others depend on the
             * input size: named per output */
            const Tensor *o = &spec->outputs[i]->value;
            char names[TENSOR_MAX_DIMS][64];
            const char *params[TENSOR_MAX_DIMS];
            for (int d = 0; d < o->ndim; d++) {
                snprintf(names[d], sizeof names[d], "%s_dim%d", spec->output_names[i], d);
                params[d] = d == 0 ? "batch" : d == o->ndim - 1 && d > 0 ? NULL : names[d];
            }
            outputs[i] = value_info(&b, spec->output_names[i], o->ndim, o->shape, params);
        }
    }
    if (!rc && !b.oom) {
        Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
        graph.name = (char *)(spec->graph_name ? spec->graph_name : "graph");
        graph.n_node = b.n_nodes, graph.node = b.nodes;
        graph.n_initializer = b.n_inits, graph.initializer = b.inits;
        graph.n_input = 1, graph.input = inputs;
        graph.n_output = (size_t)spec->n_outputs, graph.output = outputs;
        Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets[1] = {&opset};
        opset.domain = (char *)"";
        opset.has_version = 1, opset.version = OPSET;
        Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
        model.has_ir_version = 1, model.ir_version = IR_VERSION;
        model.n_opset_import = 1, model.opset_import = opsets;
        model.producer_name = (char *)(spec->producer ? spec->producer : "retinaface-c");
        model.producer_version = (char *)(spec->producer_version ? spec->producer_version : "");
        model.graph = &graph;
        *len = onnx__model_proto__get_packed_size(&model);
        *bytes = malloc(*len ? *len : 1);
        if (*bytes) onnx__model_proto__pack(&model, *bytes);
        else b.oom = true, *len = 0;
    }
    if (!rc && b.oom) rc = error_set(err, ERR_OOM, "onnx export: out of memory");
    while (b.chunks) {
        Chunk *next = b.chunks->next;
        free(b.chunks);
        b.chunks = next;
    }
    free(b.nodes), free(b.inits), free(b.names);
    return rc;
}
