/* Trainer: the training loop of a RetinaFace variant — batches from the Loader, forward in train
 * mode, MultiBox loss, backward, SGD — with the learning-rate schedule, progress lines, atomic
 * checkpoints (weights + optimiser momentum + epoch + seed, one safetensors file) and exact
 * resumption (the data order and augmentation are functions of (seed, epoch, position)). */
#ifndef MODELS_TRAINER_H
#define MODELS_TRAINER_H

#include <stdio.h>

#include "detection/loader.h"
#include "detection/multibox_loss.h"
#include "models/retinaface.h"
#include "nn/sgd.h"
#include "tensor/comm.h"

typedef enum { LR_STEP, LR_COSINE } LrSchedule;

typedef struct {
    const char *model;           /* variant name */
    const char *data;            /* label file */
    const char *images;          /* NULL: beside the label file */
    const char *pretrained;      /* backbone checkpoint or NULL */
    const char *resume;          /* training checkpoint or NULL */
    const char *init;            /* whole-model weights to start from (fine-tuning), or NULL */
    const char *save_dir;        /* NULL: no checkpoints */
    int epochs, batch, size, workers, threads, save_every;
    float lr, momentum, weight_decay, gamma;
    int decay_epochs[4], n_decay;
    LrSchedule schedule;
    int warmup_epochs;
    uint64_t seed;
    bool augment;
    float zoom_out;              /* AugmentOptions.zoom_out (1 or 0: off) */
    float cascade_iou;           /* > 0: the cascade stage's matching IoU instead of the variant's */
    bool gpu;                    /* train on the CUDA device */
    bool tf32;                   /* allow TF32 tensor cores in cuBLAS (GPU only) */
    int max_steps;               /* stop after this many steps in total (0: no limit), for tests */
    /* data-parallel training over the ranks of an MPI job (tensor/comm.h): each rank reads its share of
     * every batch (batch = images per rank), gradients are summed over the ranks, rank 0 alone writes
     * checkpoints, logs and progress and validates */
    bool distributed;
    bool sync_bn;                /* BatchNorm statistics over every rank's batch (else per rank) */
    double comm_timeout;         /* seconds any collective may wait before the job is ended (default 1800) */
    int verify_every;            /* steps between checks that every rank holds the same parameters and momentum
                                  * (0: never); a difference ends the run with an error */
    /* validation while training (all NULL: none): the official protocol on a val tree, at original
     * size, every val_every epochs and after the last; needs save_dir (predictions, best checkpoint) */
    const char *val_images;      /* image root holding <event>/<name>.jpg */
    const char *val_list;        /* wider_val.txt style list, or NULL: every image under val_images */
    const char *val_gt;          /* directory of wider_face_val.mat and wider_{easy,medium,hard}_val.mat */
    int val_every;
    FILE *log;                   /* progress lines (NULL: silent) */
} TrainOptions;

typedef struct {
    int steps;
    double first_loss, last_loss;      /* total loss of the first / last step */
    double last_l, last_c, last_landm;
    int failed_images, missing_images;
    long images_seen;
    char last_checkpoint[4096];
    double last_val[3];                /* Easy/Medium/Hard AP of the last validation (-1 when none ran) */
    double best_val;                   /* best mean AP so far, including earlier sittings of a resumed run */
    int best_epoch;
    char best_checkpoint[4096];
    int rank, world;                   /* this process in the job (0 and 1 without --distributed) */
} TrainReport;

/* The state of one training run, for a caller that drives the steps itself (train_run, benchmarks):
 * the compute context, the model (on the device), its optimiser, the step graph and the priors of
 * the training size. Owns all of them. */
typedef struct {
    Context *ctx;
    RetinaFace *model;
    Sgd sgd;
    Graph graph;
    bool graph_ready;
    Device device;
    int size;
    float *priors; /* 4 x priors_count floats, host */
    MultiBoxOptions mb;
    Comm *comm;          /* the job's ranks (one without --distributed) */
    struct GradSync *gsync; /* gradient sums over the ranks; NULL with one rank */
    struct NcclComm *nccl;  /* GPU training on several ranks */
} Trainer;

/* Seconds of one step's phases: forward, loss with matching, backward, SGD update. */
typedef struct {
    double forward, loss, backward, update;
} TrainStepTimes;

typedef struct {
    double total, loc, cls, landm; /* losses of the step: total over every stage, the parts of the first */
    double loc2, cls2, landm2;     /* the cascade stage's parts (0 without one) */
    TrainStepTimes t;
} TrainStepResult;

TrainOptions train_defaults(void);
/* Creates the context (opt->threads), the model (opt->model, opt->pretrained, on the GPU when
 * opt->gpu), the optimiser, the step graph and, with opt->distributed, joins the MPI job (the model's
 * parameters then come from rank 0); nothing else of opt is used. */
ErrorCode trainer_init(Trainer *t, const TrainOptions *opt, Error *err);
void trainer_free(Trainer *t);
/* Whether every rank holds the same parameters, buffers and momentum (a hash compared over the ranks);
 * ERR_ARG when they differ. */
ErrorCode trainer_verify_replicas(Trainer *t, Error *err);
/* Every rank takes rank 0's parameters and buffers (a no-op with one rank). */
ErrorCode trainer_broadcast_state(Trainer *t, Error *err);
/* One step on batch b (b->n > 0): forward in train mode, loss, backward, SGD at learning rate lr,
 * gradients zeroed for the next step. A non-finite loss is an ERR_ARG error before the update. */
ErrorCode trainer_step(Trainer *t, const Batch *b, float lr, TrainStepResult *r, Error *err);
/* Trains; the model is created inside and returned in *model_out when not NULL. */
ErrorCode train_run(const TrainOptions *opt, RetinaFace **model_out, TrainReport *report, Error *err);
float train_learning_rate(const TrainOptions *opt, int epoch, int step_in_epoch, int steps_per_epoch);

/* Where a checkpoint stands: the epoch to continue (0-based) and the batches of it already done,
 * the batch size and seed that fix the data order, and the schedule (a description; a resume with
 * a different one is warned about, not refused). */
typedef struct {
    int next_epoch, step_in_epoch, batch;
    uint64_t seed;
    char schedule[128];
    int world;   /* ranks of the run that wrote it (1 for older checkpoints): a step is batch x world images */
} TrainPosition;

void train_schedule_string(const TrainOptions *o, char *buf, size_t n);
ErrorCode train_checkpoint_save(const char *path, const RetinaFace *m, const Sgd *sgd, const TrainPosition *pos,
                                Error *err);
/* Restores weights and momentum and reads the position (older checkpoints: step 0, batch 0 = unknown). */
ErrorCode train_checkpoint_load(const char *path, RetinaFace *m, Sgd *sgd, TrainPosition *pos, Error *err);

#endif
