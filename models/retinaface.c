#include "models/retinaface.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/formats/checkpoint.h"
#include "nn/formats/safetensors.h"

/* Every name a variant answers to: its own (the config's name) and its aliases. */
static const struct {
    const char *alias;
    const RetinaConfig *(*get)(void);
} variant_table[] = {
    {"mobilenet0.25", retinaface_mnet025_config}, {"mnet025", retinaface_mnet025_config},
    {"retinaface_mnet025", retinaface_mnet025_config}, {"resnet50", retinaface_r50_config},
    {"r50", retinaface_r50_config}, {"retinaface_r50", retinaface_r50_config},
    {"resnet18_p2p6", retinaface_r18_p2p6_config}, {"retinaface_r18_p2p6", retinaface_r18_p2p6_config},
    {"mobilenet0.25_2cls", retinaface_2cls_config}, {"retinaface_2cls", retinaface_2cls_config},
    {"mobilenet0.25_cascade", retinaface_mnet025_cascade_config}, {"resnet50_cascade", retinaface_r50_cascade_config},
};
enum { N_VARIANT_NAMES = sizeof variant_table / sizeof variant_table[0] };

const RetinaConfig *retinaface_config(const char *name)
{
    for (size_t i = 0; i < N_VARIANT_NAMES; i++)
        if (!strcmp(name, variant_table[i].alias)) return variant_table[i].get();
    return NULL;
}

const char *retinaface_class_name(const RetinaConfig *cfg, int label, char *buf, size_t len)
{
    if (label >= 0 && label < RETINA_MAX_CLASSES && cfg->class_names[label]) return cfg->class_names[label];
    if (label == 1) return "face";
    snprintf(buf, len, "class %d", label);
    return buf;
}

/* The table's rows whose alias is the config's own name, in table order (made once, then constant). */
static const char *variant_names[N_VARIANT_NAMES + 1];
static pthread_once_t variant_names_made = PTHREAD_ONCE_INIT;

static void make_variant_names(void)
{
    int n = 0;
    for (size_t i = 0; i < N_VARIANT_NAMES; i++)
        if (!strcmp(variant_table[i].alias, variant_table[i].get()->name)) variant_names[n++] = variant_table[i].alias;
    variant_names[n] = NULL;
}

const char *const *retinaface_variant_names(void)
{
    pthread_once(&variant_names_made, make_variant_names);
    return variant_names;
}

const char *retinaface_variant_list(char *buf, size_t len)
{
    size_t used = 0;
    if (len) buf[0] = '\0';
    for (const char *const *name = retinaface_variant_names(); *name && used < len; name++) {
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", *name);
        if (n < 0) break;
        used += (size_t)n;
    }
    return buf;
}

/* One stage's class, box and (with landmarks) landmark heads, named <Head><suffix>. */
static ErrorCode heads_init(RetinaFace *m, const char *suffix, DenseHead *cls, DenseHead *box, DenseHead *ldm, Rng *rng,
                            Error *err)
{
    const RetinaConfig *cfg = &m->cfg;
    int A = cfg->anchors.per_location, L = cfg->anchors.n_levels, C = cfg->out_channels;
    char name[64];
    snprintf(name, sizeof name, "ClassHead%s", suffix);
    if (dense_head_init(cls, &m->params, name, L, C, A, cfg->num_classes, rng, err)) return err->code;
    snprintf(name, sizeof name, "BboxHead%s", suffix);
    if (dense_head_init(box, &m->params, name, L, C, A, 4, rng, err)) return err->code;
    snprintf(name, sizeof name, "LandmarkHead%s", suffix);
    if (cfg->landmarks && dense_head_init(ldm, &m->params, name, L, C, A, 10, rng, err)) return err->code;
    return ERR_OK;
}

RetinaFace *retinaface_create(const RetinaConfig *cfg, Device dev, uint64_t seed, Error *err)
{
    RetinaFace *m = calloc(1, sizeof *m);
    if (!m) {
        error_set(err, ERR_OOM, "out of memory creating %s", cfg->name);
        return NULL;
    }
    m->cfg = *cfg;
    params_init(&m->params, dev);
    params_init(&m->folded, dev);
    Rng rng;
    rng_seed(&rng, seed, 0x5eed);
    ErrorCode rc = cfg->backbone == BACKBONE_MOBILENET_V1
                       ? mobilenet_v1_init(&m->body, &m->params, "body.", cfg->width, &rng, err)
                       : resnet_init(&m->body, &m->params, "body.", cfg->depth, &rng, err);
    int in_channels[PYRAMID_MAX_LEVELS];
    for (int i = 0; !rc && i < cfg->n_fpn_inputs; i++) {
        int idx = cfg->backbone_outputs[i];
        if (idx < 0 || idx >= m->body.n_outputs)
            rc = error_set(err, ERR_ARG, "%s: backbone output %d does not exist", cfg->name, idx);
        else
            in_channels[i] = m->body.out_channels[idx];
    }
    if (!rc)
        rc = fpn_init(&m->fpn, &m->params, "fpn.", in_channels, cfg->n_fpn_inputs,
                      cfg->anchors.n_levels - cfg->n_fpn_inputs, cfg->out_channels, &rng, err);
    m->n_ssh = cfg->shared_ssh ? 1 : cfg->anchors.n_levels;
    for (int i = 0; !rc && i < m->n_ssh; i++) {
        char prefix[32];
        if (cfg->shared_ssh)
            snprintf(prefix, sizeof prefix, "ssh.");
        else
            snprintf(prefix, sizeof prefix, "ssh%d.", i + 1);
        rc = ssh_init(&m->ssh[i], &m->params, prefix, cfg->out_channels, cfg->out_channels, &rng, err);
    }
    if (!rc) rc = heads_init(m, "", &m->cls, &m->box, &m->ldm, &rng, err);
    if (!rc && cfg->cascade_overlap > 0) rc = heads_init(m, "_cascade", &m->cls2, &m->box2, &m->ldm2, &rng, err);
    if (rc) {
        retinaface_free(m);
        return NULL;
    }
    return m;
}

/* Calls fn on every ConvBnAct of the model (the units its store recorded, in creation order), with its index. */
static ErrorCode for_each_conv(RetinaFace *m, ErrorCode (*fn)(ConvBnAct *, int, void *), void *arg)
{
    ErrorCode rc = ERR_OK;
    for (int i = 0; i < m->params.n_units && !rc; i++) rc = fn(m->params.units[i], i, arg);
    return rc;
}

static ErrorCode fold_one(ConvBnAct *c, int idx, void *arg)
{
    void **a = arg;
    char name[32];
    snprintf(name, sizeof name, "folded.%d", idx);
    return conv_bn_act_fold(c, a[0], name, a[1]);
}

static ErrorCode unfold_one(ConvBnAct *c, int idx, void *arg)
{
    (void)idx, (void)arg;
    conv_bn_act_unfold(c);
    return ERR_OK;
}

void retinaface_unfold(RetinaFace *m)
{
    for_each_conv(m, unfold_one, NULL);
    params_free(&m->folded);
    params_init(&m->folded, m->params.device);
}

ErrorCode retinaface_fold_batchnorm(RetinaFace *m, Error *err)
{
    retinaface_unfold(m);
    params_init(&m->folded, DEVICE_CPU);
    void *arg[2] = {&m->folded, err};
    ErrorCode rc = for_each_conv(m, fold_one, arg);
    if (rc) retinaface_unfold(m);
    return rc;
}

void retinaface_free(RetinaFace *m)
{
    if (!m) return;
    retinaface_unfold(m);
    params_free(&m->folded);
    backbone_free(&m->body);
    params_free(&m->params);
    free(m);
}

bool retinaface_forward(Graph *g, const RetinaFace *m, Var *x, bool training, RetinaOutputs *out)
{
    memset(out, 0, sizeof *out);
    if (x && (x->value.ndim != 4 || x->value.shape[1] != 3)) {
        char buf[96];
        graph_fail(g, ERR_SHAPE, "%s: input must be [N,3,H,W], got %s", m->cfg.name,
                   tensor_shape_str(&x->value, buf, sizeof buf));
        return false;
    }
    Var *feats[BACKBONE_MAX_OUTPUTS];
    if (!backbone_forward(g, &m->body, x, training, feats)) return false;
    out->n_backbone = m->body.n_outputs;
    for (int i = 0; i < m->body.n_outputs; i++) out->backbone[i] = feats[i];
    Var *ins[PYRAMID_MAX_LEVELS], *levels[PYRAMID_MAX_LEVELS];
    for (int i = 0; i < m->cfg.n_fpn_inputs; i++) ins[i] = feats[m->cfg.backbone_outputs[i]];
    if (!fpn_forward(g, &m->fpn, ins, training, levels)) return false;
    for (int i = 0; i < m->cfg.anchors.n_levels; i++)
        levels[i] = ssh_forward(g, &m->ssh[m->cfg.shared_ssh ? 0 : i], levels[i], training);
    /* the heads of one level share their input: in eval mode one op reads it once for all */
    bool cascade = m->cfg.cascade_overlap > 0;
    const DenseHead *heads[6] = {&m->box, &m->cls, &m->ldm};
    int n = m->cfg.landmarks ? 3 : 2;
    if (cascade) heads[n] = &m->box2, heads[n + 1] = &m->cls2, heads[n + 2] = &m->ldm2;
    Var *outs[6] = {NULL};
    if (!dense_heads_forward(g, heads, cascade ? 2 * n : n, levels, outs)) return false;
    out->loc = outs[0], out->conf = outs[1], out->landms = n == 3 ? outs[2] : NULL;
    if (cascade) out->loc2 = outs[n], out->conf2 = outs[n + 1], out->landms2 = n == 3 ? outs[n + 2] : NULL;
    return graph_ok(g);
}

ErrorCode retinaface_load_dict(RetinaFace *m, TensorDict *d, const char *source, Error *err)
{
    tensor_dict_strip_prefix(d, "module.");
    tensor_dict_drop_prefix(d, "optimizer."); /* training checkpoints load for inference too */
    retinaface_unfold(m);                     /* folded copies would be stale */
    return params_load_dict(&m->params, d, source, false, false, err);
}

ErrorCode retinaface_load(RetinaFace *m, const char *path, Error *err)
{
    TensorDict d;
    if (checkpoint_read(path, &d, err)) return err->code;
    ErrorCode rc = retinaface_load_dict(m, &d, path, err);
    tensor_dict_free(&d);
    return rc;
}

ErrorCode retinaface_load_pretrained_backbone(RetinaFace *m, const char *path, Error *err)
{
    TensorDict d;
    if (checkpoint_read(path, &d, err)) return err->code;
    tensor_dict_strip_prefix(&d, "module.");
    /* Rename into the model's namespace ("stage1.0.0.weight" -> "body.stage1.0.0.weight") and
     * keep only what the backbone has: the classifier (fc) is dropped. */
    TensorDict mine;
    tensor_dict_init(&mine);
    ErrorCode rc = ERR_OK;
    int matched = 0;
    for (int i = 0; i < d.n && !rc; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s%s", m->cfg.pretrained_prefix, d.items[i].name);
        if (!params_find(&m->params, name)) continue;
        rc = tensor_dict_add(&mine, name, d.items[i].dtype, d.items[i].ndim, d.items[i].shape, d.items[i].data, err);
        d.items[i].data = NULL;
        matched++;
    }
    if (!rc && matched == 0)
        rc = error_set(err, ERR_MISSING, "%s: no tensor matches the %s backbone", path, m->cfg.name);
    /* Every backbone tensor must be present; the rest of the model keeps its initialisation. */
    for (int i = 0; !rc && i < m->params.n; i++) {
        const char *n = m->params.entries[i].name;
        if (!strncmp(n, "body.", 5) && !tensor_dict_find(&mine, n))
            rc = error_set(err, ERR_MISSING, "%s: backbone tensor %s missing", path, n + 5);
    }
    if (!rc) rc = params_load_dict(&m->params, &mine, path, true, false, err);
    tensor_dict_free(&mine);
    tensor_dict_free(&d);
    return rc;
}

ErrorCode retinaface_save(const RetinaFace *m, const char *path, Error *err)
{
    TensorDict d;
    if (params_to_dict(&m->params, &d, err)) {
        tensor_dict_free(&d);
        return err->code;
    }
    const char *keys[2] = {"format", "model"};
    const char *values[2] = {"pt", m->cfg.name};
    ErrorCode rc = safetensors_write(path, &d, keys, values, 2, err);
    tensor_dict_free(&d);
    return rc;
}
