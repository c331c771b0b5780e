#include "detection/trainer.h"

#include "detection/cascade.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "detection/detector.h"
#include "detection/wider_val.h"
#include "detection/train_log.h"
#include "nn/grad_sync.h"
#include "nn/formats/safetensors.h"
#include "tensor/clock.h"
#include "tensor/device.h"

TrainOptions train_defaults(void)
{
    TrainOptions o;
    memset(&o, 0, sizeof o);
    o.model = "mobilenet0.25";
    o.epochs = 250, o.batch = 32, o.size = 0, o.workers = 4, o.save_every = 10;
    o.lr = 1e-3f, o.momentum = 0.9f, o.weight_decay = 5e-4f, o.gamma = 0.1f;
    o.decay_epochs[0] = 190, o.decay_epochs[1] = 220, o.n_decay = 2;
    o.schedule = LR_STEP;
    o.seed = 1;
    o.augment = true;
    o.comm_timeout = 1800;
    return o;
}

float train_learning_rate(const TrainOptions *o, int epoch, int step, int steps_per_epoch)
{
    double t = epoch + (double)step / (steps_per_epoch > 0 ? steps_per_epoch : 1);
    if (o->warmup_epochs > 0 && t < o->warmup_epochs) return (float)(1e-6 + (o->lr - 1e-6) * t / o->warmup_epochs);
    if (o->schedule == LR_COSINE) return (float)(o->lr * 0.5 * (1 + cos(M_PI * t / o->epochs)));
    double lr = o->lr;
    for (int k = 0; k < o->n_decay; k++)
        if (epoch >= o->decay_epochs[k]) lr *= o->gamma;
    return (float)lr;
}

void train_schedule_string(const TrainOptions *o, char *buf, size_t n)
{
    int k = snprintf(buf, n, "%s lr %g warmup %d epochs %d", o->schedule == LR_COSINE ? "cosine" : "step", o->lr,
                     o->warmup_epochs, o->epochs);
    for (int d = 0; o->schedule == LR_STEP && d < o->n_decay && k > 0 && (size_t)k < n; d++)
        k += snprintf(buf + k, n - (size_t)k, "%s%d", d ? "," : " decay ", o->decay_epochs[d]);
}

ErrorCode train_checkpoint_save(const char *path, const RetinaFace *m, const Sgd *sgd, const TrainPosition *pos,
                                Error *err)
{
    TensorDict d;
    ErrorCode rc = params_to_dict(&m->params, &d, err);
    if (!rc) rc = sgd_state_to_dict(sgd, &m->params, &d, err);
    char epoch_s[32], step_s[32], batch_s[32], seed_s[32], world_s[32];
    snprintf(epoch_s, sizeof epoch_s, "%d", pos->next_epoch);
    snprintf(step_s, sizeof step_s, "%d", pos->step_in_epoch);
    snprintf(batch_s, sizeof batch_s, "%d", pos->batch);
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)pos->seed);
    snprintf(world_s, sizeof world_s, "%d", pos->world > 0 ? pos->world : 1);
    const char *keys[8] = {"format", "model", "next_epoch", "step_in_epoch", "batch", "seed", "schedule", "world"};
    const char *values[8] = {"pt", m->cfg.name, epoch_s, step_s, batch_s, seed_s, pos->schedule, world_s};
    if (!rc) rc = safetensors_write(path, &d, keys, values, 8, err);
    tensor_dict_free(&d);
    return rc;
}

ErrorCode train_checkpoint_load(const char *path, RetinaFace *m, Sgd *sgd, TrainPosition *pos, Error *err)
{
    static const char *const keys[7] = {"model", "next_epoch", "seed", "step_in_epoch", "batch", "schedule", "world"};
    char *v[7] = {NULL};
    ErrorCode rc = ERR_OK;
    for (int k = 0; k < 7 && !rc; k++) rc = safetensors_read_metadata(path, keys[k], &v[k], err);
    memset(pos, 0, sizeof *pos);
    if (!rc && (!v[0] || !v[1] || !v[2]))
        rc = error_set(err, ERR_FORMAT, "%s: not a training checkpoint (no model/next_epoch/seed metadata)", path);
    else if (!rc && strcmp(v[0], m->cfg.name))
        rc = error_set(err, ERR_ARG, "%s: checkpoint of model %s, training %s", path, v[0], m->cfg.name);
    if (!rc) {
        /* checkpoints older than the position fields start at an epoch boundary, batch unknown (0) */
        pos->next_epoch = atoi(v[1]);
        pos->seed = strtoull(v[2], NULL, 10);
        pos->step_in_epoch = v[3] ? atoi(v[3]) : 0;
        pos->batch = v[4] ? atoi(v[4]) : 0;
        snprintf(pos->schedule, sizeof pos->schedule, "%s", v[5] ? v[5] : "");
        pos->world = v[6] ? atoi(v[6]) : 1;
        if (pos->next_epoch < 0 || pos->step_in_epoch < 0 || pos->batch < 0 || pos->world < 1)
            rc = error_set(err, ERR_FORMAT, "%s: negative epoch, step or batch, or no rank, in the metadata", path);
    }
    for (int k = 0; k < 7; k++) free(v[k]);
    if (rc) return rc;
    TensorDict d;
    if (safetensors_read(path, &d, err)) return err->code;
    rc = params_load_dict(&m->params, &d, path, false, true, err);
    if (!rc) rc = sgd_state_from_dict(sgd, &m->params, &d, path, err);
    tensor_dict_free(&d);
    return rc;
}


ErrorCode trainer_init(Trainer *t, const TrainOptions *o, Error *err)
{
    memset(t, 0, sizeof *t);
    const RetinaConfig *cfg = retinaface_config(o->model);
    if (!cfg) return error_set(err, ERR_ARG, "unknown model '%s'", o->model);
    t->size = o->size ? o->size : cfg->train_size;
    t->device = o->gpu ? DEVICE_CUDA : DEVICE_CPU;
    ErrorCode rc = ERR_OK;
    if (!(t->ctx = context_create(o->threads)) || !(t->model = retinaface_create(cfg, DEVICE_CPU, o->seed, err))) {
        rc = err->code ? err->code : error_set(err, ERR_OOM, "out of memory");
        goto fail;
    }
    if (o->pretrained && (rc = retinaface_load_pretrained_backbone(t->model, o->pretrained, err))) goto fail;
    if (o->init && (rc = retinaface_load(t->model, o->init, err))) goto fail;
    if (o->cascade_iou > 0) {
        if (!(cfg->cascade_overlap > 0)) {
            rc = error_set(err, ERR_ARG, "--cascade-iou: %s has no cascade stage", cfg->name);
            goto fail;
        }
        t->model->cfg.cascade_overlap = o->cascade_iou;
    }
    if ((rc = comm_init(&t->comm, o->distributed, o->comm_timeout, err))) goto fail;
    bool several = comm_size(t->comm) > 1;
    /* one GPU per rank, chosen before the context's stream is made on it */
    if (o->gpu && several && (rc = nccl_comm_select_device(comm_rank(t->comm), err))) goto fail;
    if (o->gpu && ((rc = context_enable_cuda(t->ctx, o->tf32, err)) ||
                   (rc = params_to_device(&t->model->params, t->device, err))))
        goto fail;
    if ((rc = sgd_init(&t->sgd, &t->model->params, o->momentum, o->weight_decay, err))) goto fail;
    if ((rc = graph_init(&t->graph, t->ctx, t->device, err))) goto fail;
    t->graph_ready = true;
    int64_t n_priors;
    if (!(t->priors = priors_for(&cfg->anchors, t->size, t->size, &n_priors, err))) {
        rc = err->code;
        goto fail;
    }
    t->mb = multibox_defaults();
    memcpy(t->mb.variance, cfg->variance, sizeof t->mb.variance);
    if (several) {
        if (o->gpu && o->sync_bn) {
            /* the GPU's conv -> BN -> activation is three ops whose BatchNorm does not sum over ranks */
            rc = error_set(err, ERR_UNSUPPORTED, "--sync-bn runs on the CPU only");
            goto fail;
        }
        if (o->gpu && (rc = nccl_comm_create(&t->nccl, t->comm, err))) goto fail;
        t->ctx->comm = t->comm, t->ctx->sync_bn = o->sync_bn;
        t->mb.comm = t->comm;
        /* every rank starts from rank 0's parameters and buffers (as DistributedDataParallel does) */
        if ((rc = trainer_broadcast_state(t, err))) goto fail;
        /* about 8 buckets (at least 256 KB each, at most 25 MB as DistributedDataParallel's): the first
         * sums start while most of the backward is still to run */
        size_t total = 0;
        for (int i = 0; i < t->model->params.n; i++)
            if (t->model->params.entries[i].kind == ENTRY_PARAM) total += tensor_bytes(&t->model->params.entries[i].param->value);
        size_t bucket = total / 8 < ((size_t)256 << 10) ? (size_t)256 << 10 : total / 8 > ((size_t)25 << 20) ? (size_t)25 << 20 : total / 8;
        if ((rc = grad_sync_create(&t->gsync, &t->model->params, t->comm, t->nccl, t->ctx, bucket, err))) goto fail;
    }
    return ERR_OK;
fail:
    trainer_free(t);
    return rc;
}

/* Rank 0's values of v on every rank (through the host for GPU tensors). */
static ErrorCode broadcast_tensor(Comm *c, Tensor *v, const char *what, Error *err)
{
    size_t n = (size_t)tensor_numel(v);
    if (v->device == DEVICE_CPU) return comm_broadcast_f32(c, v->data, n, 0, what, err);
    float *host = malloc(n * sizeof(float) + 1);
    ErrorCode rc = host ? ERR_OK : error_set(err, ERR_OOM, "out of memory");
    if (!rc) rc = device_memcpy(host, DEVICE_CPU, v->data, v->device, n * sizeof(float), err);
    if (!rc) rc = comm_broadcast_f32(c, host, n, 0, what, err);
    if (!rc) rc = device_memcpy(v->data, v->device, host, DEVICE_CPU, n * sizeof(float), err);
    free(host);
    return rc;
}

/* Rank 0's values of the store's entries (buffers only: the BatchNorm statistics) on every rank. */
static ErrorCode broadcast_entries(Trainer *t, bool buffers_only, const char *what, Error *err)
{
    ParamStore *ps = &t->model->params;
    for (int i = 0; i < ps->n; i++)
        if ((!buffers_only || ps->entries[i].kind == ENTRY_BUFFER) &&
            broadcast_tensor(t->comm, param_entry_tensor(&ps->entries[i]), what, err))
            return err->code;
    return ERR_OK;
}

ErrorCode trainer_broadcast_state(Trainer *t, Error *err)
{
    if (comm_size(t->comm) == 1) return ERR_OK;
    return broadcast_entries(t, false, "the model's state from rank 0", err);
}

void trainer_free(Trainer *t)
{
    grad_sync_free(t->gsync);
    nccl_comm_free(t->nccl);
    comm_finalize(t->comm);
    free(t->priors);
    if (t->graph_ready) graph_destroy(&t->graph);
    sgd_free(&t->sgd);
    retinaface_free(t->model);
    context_destroy(t->ctx);
    memset(t, 0, sizeof *t);
}

/* The loader's fixed FACE_FIELDS-float rows of image i as the loss's arrays (host scratch of the step). */
static bool split_targets(Graph *g, const Batch *b, int i, ImageTargets *out)
{
    int n = b->n_faces[i];
    const float *rows = b->targets + (size_t)LOADER_MAX_FACES * FACE_FIELDS * i;
    float *boxes = graph_host_scratch(g, sizeof(float) * 4 * (size_t)(n + 1));
    float *lms = graph_host_scratch(g, sizeof(float) * 10 * (size_t)(n + 1));
    int32_t *labels = graph_host_scratch(g, sizeof(int32_t) * (size_t)(n + 1));
    uint8_t *has = graph_host_scratch(g, (size_t)(n + 1));
    if (!boxes || !lms || !labels || !has) return false;
    for (int k = 0; k < n; k++) {
        memcpy(boxes + 4 * k, rows + FACE_FIELDS * k, 4 * sizeof(float));
        memcpy(lms + 10 * k, rows + FACE_FIELDS * k + 4, 10 * sizeof(float));
        labels[k] = (int32_t)rows[FACE_FIELDS * k + FACE_CLASS];
        has[k] = rows[FACE_FIELDS * k + 14] > 0;
    }
    *out = (ImageTargets){n, boxes, lms, labels, has};
    return true;
}

ErrorCode trainer_step(Trainer *t, const Batch *b, float lr, TrainStepResult *r, Error *err)
{
    memset(r, 0, sizeof *r);
    Graph *g = &t->graph;
    double t0 = clock_seconds();
    graph_reset(g);
    int64_t xs[4] = {b->n, 3, t->size, t->size};
    Tensor xt = tensor_wrap(b->images, DEVICE_CPU, 4, xs);
    Var *xv = var_from_tensor(g, &xt, false);
    if (t->device == DEVICE_CUDA) { /* the batch goes to the device once per step */
        xv = var_new(g, 4, xs);
        if (xv) tensor_copy(&xv->value, &xt, &g->err);
    }
    ImageTargets targets[b->n];
    for (int i = 0; i < b->n && graph_ok(g); i++) split_targets(g, b, i, &targets[i]);
    RetinaOutputs out;
    MultiBoxLosses L;
    bool ok = graph_ok(g) && retinaface_forward(g, t->model, xv, true, &out);
    graph_profile_end_forward(g); /* the matching that follows is not the last layer's time */
    double t1 = clock_seconds();
    ok = ok && multibox_loss(g, out.loc, out.conf, out.landms, t->priors, targets, &t->mb, &L);
    MultiBoxLosses L2 = {0};
    Var *total = ok ? L.total : NULL;
    if (ok && out.loc2) { /* the cascade stage trains jointly: one backward through both losses */
        ok = cascade_loss(g, &t->model->cfg, &out, t->priors, targets, &t->mb, &L2);
        total = ok ? ag_add(g, L.total, L2.total) : NULL;
        ok = ok && total;
    }
    /* the losses are read before the backward: it may reuse their memory */
    float host[7] = {0};
    Var *parts[7] = {total, L.loss_l, L.loss_c, L.loss_landm, L2.loss_l, L2.loss_c, L2.loss_landm};
    for (int k = 0; k < 7 && ok; k++)
        if (parts[k]) device_memcpy(&host[k], DEVICE_CPU, parts[k]->value.data, parts[k]->value.device, sizeof(float), &g->err);
    double t2 = clock_seconds();
    if (t->gsync) grad_sync_begin_step(t->gsync, g);
    ok = ok && graph_ok(g) && graph_backward(g, total) == ERR_OK;
    if (!ok) return error_set(err, g->err.code ? g->err.code : ERR_ARG, "%s", g->err.msg);
    /* the job's gradient and losses: each rank's part is normalised by the job's positives (the loss) */
    if (t->gsync && (grad_sync_finish_step(t->gsync, err) ||
                     comm_allreduce_sum_f32(t->comm, host, 7, "the step's losses", err)))
        return err->code;
    double t3 = clock_seconds();
    r->total = host[0], r->loc = host[1], r->cls = host[2], r->landm = host[3];
    r->loc2 = host[4], r->cls2 = host[5], r->landm2 = host[6];
    if (!isfinite(r->total)) return error_set(err, ERR_ARG, "loss became %s", isnan(r->total) ? "NaN" : "inf");
    ErrorCode rc = sgd_step(&t->sgd, &t->model->params, lr, t->ctx, err);
    params_zero_grad(&t->model->params);
    /* BatchNorm's running statistics follow each rank's own batch; rank 0's are the model's */
    if (!rc && t->gsync && !t->ctx->sync_bn) rc = broadcast_entries(t, true, "BatchNorm statistics from rank 0", err);
    double t4 = clock_seconds();
    r->t = (TrainStepTimes){t1 - t0, t2 - t1, t3 - t2, t4 - t3};
    return rc;
}

/* What validation needs across epochs: the ground truth and the image list, read once. */
typedef struct {
    bool on;
    WiderGt gt;
    WiderImageList images;
} Validation;

static ErrorCode validation_open(const TrainOptions *o, Validation *v, Error *err)
{
    memset(v, 0, sizeof *v);
    if (!o->val_images && !o->val_list && !o->val_gt) return ERR_OK;
    if (!o->val_images || !o->val_gt)
        return error_set(err, ERR_ARG, "validation needs both --val-images and --val-gt (--val-list is optional)");
    if (!o->save_dir) return error_set(err, ERR_ARG, "validation needs --save-dir (predictions and the best checkpoint go there)");
    if (wider_gt_load(o->val_gt, &v->gt, err)) return err->code;
    if (wider_image_list(o->val_images, o->val_list, &v->images, err)) {
        wider_gt_free(&v->gt);
        return err->code;
    }
    v->on = true;
    return ERR_OK;
}

static void validation_close(Validation *v)
{
    if (!v->on) return;
    wider_gt_free(&v->gt);
    wider_image_list_free(&v->images);
    v->on = false;
}

/* The official protocol on the val tree with the model's current weights, at original size. */
static ErrorCode validate(const TrainOptions *o, const Trainer *tr, const Validation *v, double ap[3], int *failures,
                          Error *err)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/val_predictions", o->save_dir);
    Detector det;
    if (detector_init_from_params(&det, tr->model, o->threads, o->gpu, err)) return err->code;
    PostprocessOptions pp = postprocess_defaults();
    ErrorCode rc = wider_predict(&det, o->val_images, &v->images, dir, 0, detector_default_batch(&det), NULL, &pp, NULL, failures,
                                 err);
    detector_free(&det);
    WiderResult *res = rc ? NULL : malloc(sizeof *res);
    if (!rc && !res) rc = error_set(err, ERR_OOM, "out of memory");
    if (!rc) rc = wider_evaluate_dir(&v->gt, dir, &v->images, 0.5, res, err);
    for (int k = 0; k < 3 && !rc; k++) ap[k] = res->ap[k];
    free(res);
    return rc;
}

static ErrorCode save_checkpoint(const TrainOptions *o, const Trainer *tr, const char *name, const TrainPosition *pos,
                                 char *path, size_t path_size, Error *err)
{
    snprintf(path, path_size, "%s/%s_%s.safetensors", o->save_dir, tr->model->cfg.name, name);
    if (train_checkpoint_save(path, tr->model, &tr->sgd, pos, err)) return err->code;
    if (o->log) fprintf(o->log, "saved %s\n", path);
    return ERR_OK;
}

/* After epoch `epoch` (0-based), steps_in_epoch of its per_epoch batches done (fewer when --max-steps
 * stopped it): validation, its log row and the best checkpoint, the periodic checkpoint, and the
 * curves. A checkpoint of a partial epoch records where in it the run stopped. */
static ErrorCode end_of_epoch(const TrainOptions *o, Trainer *tr, const Validation *v, TrainLog *log, int epoch,
                              int steps_in_epoch, int per_epoch, long steps_done, bool last, uint64_t seed,
                              TrainReport *rep, Error *err)
{
    bool complete = steps_in_epoch >= per_epoch;
    TrainPosition pos = {complete ? epoch + 1 : epoch, complete ? 0 : steps_in_epoch, o->batch, seed, "",
                         comm_size(tr->comm)};
    train_schedule_string(o, pos.schedule, sizeof pos.schedule);
    int every = o->val_every > 0 ? o->val_every : 1;
    if (v->on && ((epoch + 1) % every == 0 || last)) {
        double t0 = clock_seconds(), ap[3];
        int failures = 0;
        if (validate(o, tr, v, ap, &failures, err)) return err->code;
        memcpy(rep->last_val, ap, sizeof ap);
        bool improved = false;
        if (log->f && train_log_val(log, epoch + 1, steps_in_epoch, steps_done, ap, &improved, err)) return err->code;
        if (o->log)
            fprintf(o->log, "validation after epoch %d: Easy %.4f Medium %.4f Hard %.4f (%d images%s, %.1f s)%s\n",
                    epoch + 1, ap[0], ap[1], ap[2], v->images.n, failures ? ", some unreadable" : "",
                    clock_seconds() - t0, improved ? " best so far" : "");
        if (improved &&
            save_checkpoint(o, tr, "best", &pos, rep->best_checkpoint, sizeof rep->best_checkpoint, err))
            return err->code;
        rep->best_val = log->best_val, rep->best_epoch = log->best_epoch;
    }
    if (o->save_dir && ((epoch + 1) % (o->save_every > 0 ? o->save_every : 1) == 0 || last)) {
        char name[48];
        if (complete)
            snprintf(name, sizeof name, "epoch%d", epoch + 1);
        else
            snprintf(name, sizeof name, "epoch%d_step%d", epoch + 1, steps_in_epoch);
        if (save_checkpoint(o, tr, name, &pos, rep->last_checkpoint, sizeof rep->last_checkpoint, err))
            return err->code;
    }
    if (log->f) {
        char svg[4200];
        snprintf(svg, sizeof svg, "%s/train_curves.svg", o->save_dir);
        if (train_log_plot(log->path, svg, err)) return err->code;
    }
    return ERR_OK;
}

/* ips: this epoch's training rate (validation and start-up excluded); the ETA extrapolates the whole
 * run's time so far, validations included. */
static void print_progress(FILE *f, const TrainOptions *o, bool cascade, int epoch, int step, int per_epoch,
                           const TrainStepResult *r, float lr, double ips, double elapsed, int steps_done, int total_steps)
{
    double eta = (total_steps - steps_done) * elapsed / steps_done;
    char rate[32];
    /* slow models (ResNet-50 on a CPU) take seconds per step: "0.3 img/s" says little */
    if (ips >= 1.0)
        snprintf(rate, sizeof rate, "%.1f img/s", ips);
    else
        snprintf(rate, sizeof rate, "%.1f s/step", ips > 0 ? o->batch / ips : 0.0);
    char second[96] = "";
    if (cascade) snprintf(second, sizeof second, " | stage 2 loc %.4f cls %.4f landm %.4f", r->loc2, r->cls2, r->landm2);
    fprintf(f, "epoch %d/%d step %d/%d | loc %.4f cls %.4f landm %.4f%s total %.4f | lr %.2e | %s | ETA %dh%02dm%02ds\n",
            epoch + 1, o->epochs, step, per_epoch, r->loc, r->cls, r->landm, second, r->total, lr, rate,
            (int)(eta / 3600), (int)(eta / 60) % 60, (int)eta % 60);
    fflush(f);
}

/* FNV-1a over the bytes of every parameter, buffer and momentum tensor. */
static uint64_t state_hash(const Trainer *t)
{
    uint64_t h = 1469598103934665603ULL;
    const ParamStore *ps = &t->model->params;
    for (int i = 0; i < ps->n; i++) {
        const Tensor *v = param_entry_tensor((ParamEntry *)&ps->entries[i]);
        const Tensor *m = ps->entries[i].kind == ENTRY_PARAM ? &t->sgd.velocity[i] : NULL;
        for (int k = 0; k < 2; k++) {
            const Tensor *x = k ? m : v;
            if (!x || !x->data) continue;
            const unsigned char *b = (const unsigned char *)x->data;
            for (size_t j = 0; j < tensor_bytes(x); j++) h = (h ^ b[j]) * 1099511628211ULL;
        }
    }
    return h;
}

ErrorCode trainer_verify_replicas(Trainer *t, Error *err)
{
    if (comm_size(t->comm) == 1) return ERR_OK;
    if (t->device != DEVICE_CPU) return error_set(err, ERR_UNSUPPORTED, "the replica check runs on CPU training only");
    /* three 21-bit pieces of the hash and their squares, summed over the ranks: every sum is exact in
     * double, and the ranks agree when N x sum of squares = sum^2 for each piece */
    uint64_t h = state_hash(t);
    double s[6];
    for (int k = 0; k < 3; k++) {
        double piece = (double)((h >> (21 * k)) & 0x1fffff);
        s[k] = piece, s[3 + k] = piece * piece;
    }
    if (comm_allreduce_sum_f64(t->comm, s, 6, "the replica check", err)) return err->code;
    double n = comm_size(t->comm);
    for (int k = 0; k < 3; k++)
        if (n * s[3 + k] != s[k] * s[k])
            return error_set(err, ERR_ARG, "the ranks' parameters or momentum differ (replica check)");
    return ERR_OK;
}

/* Fault injection for the tests of distributed training: RETINA_TEST_FAULT=RANK:STEP:kill|hang|drift makes
 * rank RANK, at its step STEP (counted from 1 in this sitting), die by SIGKILL, stop answering, or change
 * one of its weights (so that the replica check has something to find). */
typedef enum { FAULT_NONE, FAULT_KILL, FAULT_HANG, FAULT_DRIFT } Fault;

static Fault fault_for(int rank, int *step)
{
    const char *f = getenv("RETINA_TEST_FAULT");
    int r;
    char what[8];
    *step = 0;
    if (!f || sscanf(f, "%d:%d:%7s", &r, step, what) != 3 || r != rank) return FAULT_NONE;
    return !strcmp(what, "hang") ? FAULT_HANG : !strcmp(what, "drift") ? FAULT_DRIFT : FAULT_KILL;
}

static void inject(Fault fault, Trainer *tr)
{
    if (fault == FAULT_HANG)
        for (;;) pause();
    if (fault == FAULT_KILL) raise(SIGKILL);
    Tensor *w = &tr->model->params.entries[0].param->value; /* FAULT_DRIFT, on the CPU */
    if (w->device == DEVICE_CPU) w->data[0] += 1e-3f;
}

ErrorCode train_run(const TrainOptions *opt, RetinaFace **model_out, TrainReport *rep, Error *err)
{
    memset(rep, 0, sizeof *rep);
    /* with several ranks, rank 0 alone logs, validates and writes; the others only train (their options
     * are these, once the job has started: see below) */
    TrainOptions follower = *opt;
    const TrainOptions *o = opt;
    rep->last_val[0] = rep->last_val[1] = rep->last_val[2] = rep->best_val = -1;
    if (model_out) *model_out = NULL;
    const RetinaConfig *cfg = retinaface_config(o->model);
    if (!cfg) return error_set(err, ERR_ARG, "unknown model '%s'", o->model);
    int size = o->size ? o->size : cfg->train_size;
    if (o->batch < 1 || o->epochs < 1 || size < 32) return error_set(err, ERR_ARG, "batch, epochs and size must be positive");
    Validation val;
    memset(&val, 0, sizeof val);
    Trainer tr;
    ErrorCode rc = trainer_init(&tr, o, err);
    if (rc) return rc;
    int rank = comm_rank(tr.comm), world = comm_size(tr.comm);
    rep->rank = rank, rep->world = world;
    int fault_step;
    Fault fault = fault_for(rank, &fault_step);
    if (rank > 0) {
        follower.log = NULL, follower.save_dir = NULL;
        follower.val_images = follower.val_list = follower.val_gt = NULL;
        o = &follower;
    }
    if (opt->log && world > 1 && rank == 0)
        fprintf(opt->log, "distributed: %d ranks, %d images per rank per step (%d per step), %s BatchNorm, %d gradient "
                          "buckets (%.1f MB)\n",
                world, o->batch, o->batch * world, o->sync_bn ? "synchronised" : "per-rank", grad_sync_buckets(tr.gsync),
                grad_sync_bytes(tr.gsync) / 1048576.0);
    if (validation_open(o, &val, err)) {
        trainer_free(&tr);
        return err->code;
    }
    TrainSet set;
    if (trainset_load(o->data, o->images, &set, err)) {
        validation_close(&val);
        trainer_free(&tr);
        return err->code;
    }
    rep->missing_images = set.missing_images;
    if (set.max_class >= cfg->num_classes) {
        rc = error_set(err, ERR_ARG, "%s has objects of class %d, but %s knows %d class%s (ids 1 to %d; 0 is the background)",
                       o->data, set.max_class, cfg->name, cfg->num_classes - 1, cfg->num_classes == 2 ? "" : "es",
                       cfg->num_classes - 1);
        trainset_free(&set);
        validation_close(&val);
        trainer_free(&tr);
        return rc;
    }
    if (set.missing_images && o->log)
        fprintf(o->log, "warning: %d images listed in %s were not found and are skipped\n", set.missing_images, o->data);
    Loader *loader = NULL;
    TrainLog log = {0};
    int start_epoch = 0, start_step = 0;
    uint64_t seed = o->seed;
    if (o->resume) {
        TrainPosition pos;
        if ((rc = train_checkpoint_load(o->resume, tr.model, &tr.sgd, &pos, err))) goto out;
        start_epoch = pos.next_epoch, start_step = pos.step_in_epoch, seed = pos.seed;
        /* mid-epoch, the run goes on from the image it stopped at: a whole number of this run's steps
         * (batch x ranks images) into the epoch */
        long done_images = (long)start_step * (pos.batch ? pos.batch : o->batch) * pos.world;
        if (start_step && done_images % ((long)o->batch * world)) {
            rc = error_set(err, ERR_ARG,
                           "%s stopped %ld images into epoch %d (batches of %d on %d rank%s), not a whole number of steps "
                           "of %d images per rank on %d rank%s: resume with a batch that divides it",
                           o->resume, done_images, start_epoch + 1, pos.batch, pos.world, pos.world == 1 ? "" : "s",
                           o->batch, world, world == 1 ? "" : "s");
            goto out;
        }
        start_step = (int)(done_images / ((long)o->batch * world));
        /* the weights are the same file on every rank; the model's state from rank 0 all the same */
        if ((rc = trainer_broadcast_state(&tr, err))) goto out;
        char now[128];
        train_schedule_string(o, now, sizeof now);
        if (o->log && pos.schedule[0] && strcmp(pos.schedule, now))
            fprintf(o->log, "warning: %s was trained with the schedule '%s'; continuing with '%s'\n", o->resume,
                    pos.schedule, now);
    }
    if (o->save_dir && mkdir(o->save_dir, 0777) && errno != EEXIST) {
        rc = error_set(err, ERR_IO, "%s: cannot create: %s", o->save_dir, strerror(errno));
        goto out;
    }
    if (o->save_dir) {
        /* an unwritable folder is found now, not at the first save an epoch later */
        char path[4200];
        snprintf(path, sizeof path, "%s/.write_test", o->save_dir);
        FILE *probe = fopen(path, "w");
        if (!probe || fclose(probe) != 0) {
            rc = error_set(err, ERR_IO, "%s: cannot write checkpoints there: %s", o->save_dir, strerror(errno));
            goto out;
        }
        remove(path);
        snprintf(path, sizeof path, "%s/train_log.csv", o->save_dir);
        if ((rc = train_log_open(&log, path, start_epoch + 1, start_step, err))) goto out;
        rep->best_val = log.best_val, rep->best_epoch = log.best_epoch;
        if (log.best_val >= 0) /* an earlier sitting of this run kept it */
            snprintf(rep->best_checkpoint, sizeof rep->best_checkpoint, "%s/%s_best.safetensors", o->save_dir, cfg->name);
    }
    AugmentOptions aug = augment_defaults(size);
    aug.augment = o->augment;
    if (o->zoom_out > 1.0f) aug.zoom_out = o->zoom_out;
    loader = loader_create(&set, &aug, o->batch, o->workers, seed, o->gpu, err);
    if (!loader) {
        rc = err->code ? err->code : ERR_OOM;
        goto out;
    }
    loader_set_shard(loader, rank, world);
    int per_epoch = loader_batches_per_epoch(loader);
    if (start_step > per_epoch) {
        rc = error_set(err, ERR_ARG, "%s: batch %d of an epoch of %d batches", o->resume, start_step, per_epoch);
        goto out;
    }
    int total_steps = per_epoch * (o->epochs - start_epoch) - start_step;
    double t0 = clock_seconds();
    int steps_done = 0;
    long global_step = (long)per_epoch * start_epoch + start_step;
    if (o->log)
        fprintf(o->log,
                "training %s on %d images (%d faces dropped), %d batches of %d%s per epoch, epochs %d..%d (from batch %d), "
                "size %d\n",
                cfg->name, set.n, set.dropped_faces, per_epoch, o->batch, world > 1 ? " per rank" : "", start_epoch + 1,
                o->epochs, start_step + 1, size);
    for (int epoch = start_epoch; epoch < o->epochs && !rc; epoch++) {
        int first_step = epoch == start_epoch ? start_step : 0;
        loader_begin_epoch(loader, epoch, first_step);
        const Batch *b;
        int step = first_step;
        double epoch_t0 = clock_seconds();
        long epoch_images = 0;
        while (!rc && (b = loader_next(loader))) {
            rep->failed_images += b->failed;
            if (b->failed && o->log) fprintf(o->log, "warning: %d image(s) skipped: %s\n", b->failed, b->error);
            global_step++;
            if (b->n == 0) {
                step++;
                continue;
            }
            if (fault && steps_done + 1 == fault_step) inject(fault, &tr);
            float lr = train_learning_rate(o, epoch, step, per_epoch);
            TrainStepResult r;
            if ((rc = trainer_step(&tr, b, lr, &r, err))) {
                char msg[sizeof err->msg];
                snprintf(msg, sizeof msg, "%s", err->msg);
                error_clear(err); /* error_set keeps the first error: the cause goes inside the new message */
                error_set(err, rc, "epoch %d step %d (global step %d): %s; stopped, last good checkpoint: %s", epoch + 1,
                          step + 1, steps_done + 1, msg, rep->last_checkpoint[0] ? rep->last_checkpoint : "none");
                break;
            }
            if (o->verify_every > 0 && (steps_done + 1) % o->verify_every == 0 &&
                (rc = trainer_verify_replicas(&tr, err))) {
                char msg[sizeof err->msg];
                snprintf(msg, sizeof msg, "%s", err->msg);
                error_clear(err);
                error_set(err, rc, "after step %d: %s", steps_done + 1, msg);
                break;
            }
            if (steps_done == 0) rep->first_loss = r.total;
            rep->last_loss = r.total, rep->last_l = r.loc, rep->last_c = r.cls, rep->last_landm = r.landm;
            steps_done++;
            step++;
            rep->images_seen += (long)b->n * world;
            epoch_images += (long)b->n * world; /* every rank reads as many */
            double now = clock_seconds(), ips = epoch_images / (now - epoch_t0);
            double stage2[3] = {r.loc2, r.cls2, r.landm2};
            if (log.f && (rc = train_log_step(&log, epoch + 1, step, global_step, r.loc, r.cls, r.landm, r.total,
                                              cfg->cascade_overlap > 0 ? stage2 : NULL, lr, ips, err)))
                break;
            if (o->log) print_progress(o->log, o, cfg->cascade_overlap > 0, epoch, step, per_epoch, &r, lr, ips, now - t0,
                                       steps_done, total_steps);
            if (o->max_steps && steps_done >= o->max_steps) break;
        }
        rep->steps = steps_done;
        if (rc) break;
        if (epoch_images == 0 && step > first_step) {
            rc = error_set(err, ERR_IO, "epoch %d: no image of %s could be read (%d unreadable): nothing to train on",
                           epoch + 1, o->data, rep->failed_images);
            break;
        }
        bool last = epoch + 1 == o->epochs || (o->max_steps && steps_done >= o->max_steps);
        if ((rc = end_of_epoch(o, &tr, &val, &log, epoch, step, per_epoch, global_step, last, seed, rep, err))) break;
        /* the others wait while rank 0 validates and writes */
        if (world > 1 && (rc = comm_barrier(tr.comm, "the end of an epoch (rank 0 validating and saving)", err))) break;
        if (last) break;
    }
out:
    loader_destroy(loader);
    train_log_close(&log);
    if (model_out && !rc) {
        *model_out = tr.model;
        tr.model = NULL;
    }
    trainer_free(&tr);
    trainset_free(&set);
    validation_close(&val);
    return rc;
}
