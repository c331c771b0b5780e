/* RetinaFace: backbone -> FPN -> SSH per level (or one shared SSH) -> class/box/landmark heads.
 * A variant is a RetinaConfig (models/retinaface_<variant>.c); retinaface_create builds its
 * parameters (PyTorch state_dict names, registration order = the reference's) with PyTorch's
 * default initialisation from `seed`.
 * Outputs for an input [N,3,H,W] (BGR minus mean): loc [N,P,4], conf [N,P,num_classes] logits
 * (softmax is the caller's: detection applies it, training uses cross-entropy on logits),
 * landms [N,P,10] or NULL, with P = sum over levels of ceil(H/step)*ceil(W/step)*anchors.
 * Cascade variants (cascade_overlap > 0) add a second stage: heads of the same shapes on the same SSH
 * features ("ClassHead_cascade", "BboxHead_cascade", "LandmarkHead_cascade"), whose loc2/conf2/landms2
 * are read against the first stage's regressed boxes instead of the anchors (detection/cascade.h). */
#ifndef MODELS_RETINAFACE_H
#define MODELS_RETINAFACE_H

#include "nn/anchors.h"
#include "nn/backbone.h"
#include "nn/fpn.h"
#include "nn/heads.h"
#include "nn/ssh.h"
#include "nn/formats/tensor_dict.h"

enum { RETINA_MAX_CLASSES = 8 };

typedef struct {
    const char *name;         /* "mobilenet0.25" ... */
    const char *description;
    BackboneKind backbone;
    float width;              /* MobileNetV1 width multiplier */
    int depth;                /* ResNet depth */
    AnchorLayout anchors;     /* the detection levels and their anchors */
    int backbone_outputs[PYRAMID_MAX_LEVELS]; /* backbone output index feeding FPN level i */
    int n_fpn_inputs;         /* levels fed by the backbone; the rest are FPN extra levels */
    int out_channels;
    bool shared_ssh;          /* one SSH module for all levels ("ssh"), else ssh1..sshN */
    float variance[2];
    int num_classes;          /* including background */
    const char *class_names[RETINA_MAX_CLASSES]; /* by class id, 0 the background; unset: "face" for 1 */
    bool landmarks;
    int train_size;           /* square training crop */
    const char *pretrained_prefix; /* where an ImageNet backbone checkpoint's keys go ("body.") */
    float cascade_overlap;    /* > 0: a second stage of heads refines the first stage's boxes; its priors are
                               * those boxes, matched to the ground truth at this IoU (0.7); 0: one stage */
} RetinaConfig;

typedef struct {
    RetinaConfig cfg;
    ParamStore params;
    ParamStore folded;  /* BN-folded inference weights (retinaface_fold_batchnorm), else empty */
    Backbone body;
    Fpn fpn;
    Ssh ssh[PYRAMID_MAX_LEVELS];
    int n_ssh;
    DenseHead cls, box, ldm;
    DenseHead cls2, box2, ldm2; /* the cascade stage (cfg.cascade_overlap > 0), else unused */
} RetinaFace;

typedef struct {
    Var *loc, *conf, *landms;
    Var *loc2, *conf2, *landms2; /* the cascade stage's outputs (same shapes), NULL without one */
    Var *backbone[BACKBONE_MAX_OUTPUTS]; /* for parity tests */
    int n_backbone;
} RetinaOutputs;

/* Variants: "mobilenet0.25" (alias "mnet025"), "resnet50" ("r50"), "resnet18_p2p6",
 * "mobilenet0.25_2cls", "mobilenet0.25_cascade", "resnet50_cascade". NULL when unknown. */
const RetinaConfig *retinaface_config(const char *name);
/* The name of class id `label` of a variant ("face", "person", ...; "class N" when the variant names none). */
const char *retinaface_class_name(const RetinaConfig *cfg, int label, char *buf, size_t len);
/* Names of all variants (each config's own name, not the aliases), NULL-terminated. */
const char *const *retinaface_variant_names(void);
/* The same names as one line, "a, b, c" (for --help), cut to fit buf; returns buf. */
const char *retinaface_variant_list(char *buf, size_t len);

RetinaFace *retinaface_create(const RetinaConfig *cfg, Device dev, uint64_t seed, Error *err);
void retinaface_free(RetinaFace *m);
bool retinaface_forward(Graph *g, const RetinaFace *m, Var *x, bool training, RetinaOutputs *out);

/* Loads weights from a .safetensors or PyTorch .pth/.tar checkpoint (strict names and shapes;
 * a "module." prefix is stripped). */
ErrorCode retinaface_load(RetinaFace *m, const char *path, Error *err);
/* The same from a dict already read (its names are edited in place); source names it in errors. */
ErrorCode retinaface_load_dict(RetinaFace *m, TensorDict *d, const char *source, Error *err);
/* Loads an ImageNet backbone checkpoint into the backbone only (its classifier is ignored). */
ErrorCode retinaface_load_pretrained_backbone(RetinaFace *m, const char *path, Error *err);
ErrorCode retinaface_save(const RetinaFace *m, const char *path, Error *err);
/* Folds every BatchNorm into its convolution for inference (eval mode, no gradients), on the CPU
 * parameters; loading weights again drops the folded copies. */
ErrorCode retinaface_fold_batchnorm(RetinaFace *m, Error *err);
void retinaface_unfold(RetinaFace *m);

/* Per-variant configs (models/retinaface_<variant>.c). */
const RetinaConfig *retinaface_mnet025_config(void);
const RetinaConfig *retinaface_r50_config(void);
const RetinaConfig *retinaface_r18_p2p6_config(void);
const RetinaConfig *retinaface_2cls_config(void);
const RetinaConfig *retinaface_mnet025_cascade_config(void);
const RetinaConfig *retinaface_r50_cascade_config(void);

#endif
