/* build/train: train a RetinaFace variant on WIDER FACE style labels. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detection/train_log.h"
#include "detection/trainer.h"
#include "tensor/comm.h"

static void usage(FILE *f)
{
    char variants[256];
    fprintf(f,
            "usage: build/train --data LABELS [options]\n"
            "Trains RetinaFace with the reference recipe (crop/distort/mirror augmentation, matching at IoU 0.35,\n"
            "MultiBox loss with 7:1 hard negatives, SGD momentum 0.9, weight decay 5e-4).\n\n"
            "  --data FILE          label.txt (RetinaFace format), wider_face_train_bbx_gt.txt or wider_face_train.mat\n"
            "  --images DIR         image root (default: 'images' beside the label file)\n"
            "  --model NAME         variant, default mobilenet0.25; one of\n"
            "                       %s\n"
            "                       (the _cascade ones: a second stage of heads refining the first's boxes,\n"
            "                       matched at IoU 0.7; progress lines show its losses as 'stage 2')\n"
            "  --cascade-iou X      the cascade stage's matching IoU (default: the variant's, 0.7)\n"
            "  --epochs N           default 250\n"
            "  --batch B            default 32\n"
            "  --lr X               initial learning rate, default 1e-3\n"
            "  --decay-epochs A,B   step decay by --gamma (0.1) at these epochs, default 190,220\n"
            "  --cosine             cosine schedule instead of steps\n"
            "  --warmup-epochs N    linear warmup from 1e-6 (default 0)\n"
            "  --momentum X, --weight-decay X\n"
            "  --size N             training resolution (default: the model's, 640 or 840)\n"
            "  --workers N          data loading threads (default 4)\n"
            "  --threads N          compute threads (default: all cores)\n"
            "  --save-dir DIR       checkpoints (weights + optimiser + epoch), written atomically; also\n"
            "                       train_log.csv (a row per step and per validation) and train_curves.svg\n"
            "  --save-every N       epochs between checkpoints (default 10; the last epoch is always saved)\n"
            "  --resume FILE        continue a run from its checkpoint\n"
            "  --pretrained FILE    ImageNet backbone (e.g. mobilenetV1X0.25_pretrain.tar)\n"
            "  --init FILE          start from a whole model's weights (fine-tuning: e.g. the built-in model's\n"
            "                       safetensors); the optimiser starts fresh, unlike --resume\n"
            "  --seed N             data order and augmentation seed (default 1)\n"
            "  --val-images DIR     validate on this WIDER FACE val tree (<event>/<name>.jpg) at original size with the\n"
            "                       official protocol; prints Easy/Medium/Hard AP and keeps the best checkpoint\n"
            "                       (<save-dir>/<model>_best.safetensors, best mean AP)\n"
            "  --val-gt DIR         wider_face_val.mat and wider_{easy,medium,hard}_val.mat (with --val-images)\n"
            "  --val-list FILE      the images to validate on (wider_val.txt; default: every image under --val-images)\n"
            "  --val-every N        epochs between validations (default 1; the last epoch is always validated)\n"
            "  --no-augment         whole images, resized (for debugging and overfitting tests)\n"
            "  --zoom-out X         half the samples: the whole image on a mean-colour canvas up to X times its\n"
            "                       long side, so faces come out smaller than the crops make them (default 1: off)\n"
            "  --max-steps N        stop after N steps\n"
            "  --cpu | --gpu        device (default cpu)\n"
            "  --tf32               allow TF32 tensor cores on the GPU (the PyTorch reference's default)\n"
            "  --distributed        data-parallel over the ranks of an MPI job (automatic when mpirun starts more\n"
            "                       than one): mpirun -np N build/train ... --batch B trains on B images per rank\n"
            "                       and B x N per step; gradients summed over the ranks (overlapped with the\n"
            "                       backward), rank 0 alone writes checkpoints, logs and validates; --resume works\n"
            "                       with any N (mid-epoch: where the images done are whole steps of the new run)\n"
            "  --sync-bn            BatchNorm statistics over every rank's batch (default: per rank)\n"
            "  --verify-replicas N  every N steps, check that all ranks hold the same weights and momentum\n"
            "  --collective-timeout S  end the whole job when a collective waits S seconds (a rank hung or died;\n"
            "                       default 1800, which covers rank 0 validating)\n"
            "  --plot-log DIR       only redraw DIR/train_curves.svg from DIR/train_log.csv (e.g. after merging logs)\n"
            "  -h, --help\n",
            retinaface_variant_list(variants, sizeof variants));
}

int main(int argc, char **argv)
{
    TrainOptions o = train_defaults();
    o.log = stdout;
    bool gpu = false;
    enum { O_DATA = 256, O_IMAGES, O_MODEL, O_EPOCHS, O_BATCH, O_LR, O_DECAY, O_COSINE, O_WARMUP, O_MOMENTUM, O_WD,
           O_SIZE, O_WORKERS, O_THREADS, O_SAVEDIR, O_SAVEEVERY, O_RESUME, O_PRETRAINED, O_SEED, O_NOAUG, O_INIT, O_ZOOM, O_CASCADE_IOU, O_MAXSTEPS,
           O_CPU, O_GPU, O_GAMMA, O_TF32, O_VAL_IMAGES, O_VAL_GT, O_VAL_LIST, O_VAL_EVERY, O_PLOT_LOG, O_DIST, O_SYNCBN,
           O_TIMEOUT, O_VERIFY };
    static const struct option longopts[] = {
        {"data", 1, 0, O_DATA}, {"images", 1, 0, O_IMAGES}, {"model", 1, 0, O_MODEL}, {"epochs", 1, 0, O_EPOCHS},
        {"batch", 1, 0, O_BATCH}, {"lr", 1, 0, O_LR}, {"decay-epochs", 1, 0, O_DECAY}, {"cosine", 0, 0, O_COSINE},
        {"warmup-epochs", 1, 0, O_WARMUP}, {"momentum", 1, 0, O_MOMENTUM}, {"weight-decay", 1, 0, O_WD},
        {"size", 1, 0, O_SIZE}, {"workers", 1, 0, O_WORKERS}, {"threads", 1, 0, O_THREADS},
        {"save-dir", 1, 0, O_SAVEDIR}, {"save-every", 1, 0, O_SAVEEVERY}, {"resume", 1, 0, O_RESUME},
        {"pretrained", 1, 0, O_PRETRAINED}, {"seed", 1, 0, O_SEED}, {"no-augment", 0, 0, O_NOAUG},
        {"init", 1, 0, O_INIT}, {"zoom-out", 1, 0, O_ZOOM}, {"cascade-iou", 1, 0, O_CASCADE_IOU},
        {"max-steps", 1, 0, O_MAXSTEPS}, {"cpu", 0, 0, O_CPU}, {"gpu", 0, 0, O_GPU}, {"gamma", 1, 0, O_GAMMA}, {"tf32", 0, 0, O_TF32},
        {"val-images", 1, 0, O_VAL_IMAGES}, {"val-gt", 1, 0, O_VAL_GT}, {"val-list", 1, 0, O_VAL_LIST},
        {"val-every", 1, 0, O_VAL_EVERY}, {"plot-log", 1, 0, O_PLOT_LOG}, {"distributed", 0, 0, O_DIST},
        {"sync-bn", 0, 0, O_SYNCBN}, {"collective-timeout", 1, 0, O_TIMEOUT},
        {"verify-replicas", 1, 0, O_VERIFY},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = "";
        switch (c) {
        case O_DATA: o.data = optarg; break;
        case O_IMAGES: o.images = optarg; break;
        case O_MODEL: o.model = optarg; break;
        case O_EPOCHS: o.epochs = (int)strtol(optarg, &end, 10); break;
        case O_BATCH: o.batch = (int)strtol(optarg, &end, 10); break;
        case O_LR: o.lr = strtof(optarg, &end); break;
        case O_DECAY: {
            o.n_decay = 0;
            char *p = optarg;
            while (*p && o.n_decay < 4) {
                o.decay_epochs[o.n_decay++] = (int)strtol(p, &end, 10);
                if (*end == ',') end++;
                else if (*end) break;
                p = end;
            }
            break;
        }
        case O_COSINE: o.schedule = LR_COSINE; break;
        case O_WARMUP: o.warmup_epochs = (int)strtol(optarg, &end, 10); break;
        case O_MOMENTUM: o.momentum = strtof(optarg, &end); break;
        case O_WD: o.weight_decay = strtof(optarg, &end); break;
        case O_GAMMA: o.gamma = strtof(optarg, &end); break;
        case O_SIZE: o.size = (int)strtol(optarg, &end, 10); break;
        case O_WORKERS: o.workers = (int)strtol(optarg, &end, 10); break;
        case O_THREADS: o.threads = (int)strtol(optarg, &end, 10); break;
        case O_SAVEDIR: o.save_dir = optarg; break;
        case O_SAVEEVERY: o.save_every = (int)strtol(optarg, &end, 10); break;
        case O_RESUME: o.resume = optarg; break;
        case O_PRETRAINED: o.pretrained = optarg; break;
        case O_SEED: o.seed = strtoull(optarg, &end, 10); break;
        case O_NOAUG: o.augment = false; break;
        case O_INIT: o.init = optarg; break;
        case O_CASCADE_IOU:
            o.cascade_iou = strtof(optarg, &end);
            if (!*end && !(o.cascade_iou > 0 && o.cascade_iou < 1)) end = "<"; /* (0, 1) */
            break;
        case O_ZOOM:
            o.zoom_out = strtof(optarg, &end);
            if (!*end && !(o.zoom_out >= 1 && o.zoom_out <= 16)) end = "<"; /* 1..16 */
            break;
        case O_MAXSTEPS: o.max_steps = (int)strtol(optarg, &end, 10); break;
        case O_CPU: gpu = false; break;
        case O_GPU: gpu = true; break;
        case O_TF32: o.tf32 = true; break;
        case O_VAL_IMAGES: o.val_images = optarg; break;
        case O_VAL_GT: o.val_gt = optarg; break;
        case O_VAL_LIST: o.val_list = optarg; break;
        case O_VAL_EVERY: o.val_every = (int)strtol(optarg, &end, 10); break;
        case O_DIST: o.distributed = true; break;
        case O_SYNCBN: o.sync_bn = true; break;
        case O_VERIFY: o.verify_every = (int)strtol(optarg, &end, 10); break;
        case O_TIMEOUT:
            o.comm_timeout = strtod(optarg, &end);
            if (!*end && !(o.comm_timeout >= 1)) end = "<";
            break;
        case O_PLOT_LOG: {
            char csv[4200], svg[4200];
            snprintf(csv, sizeof csv, "%s/train_log.csv", optarg);
            snprintf(svg, sizeof svg, "%s/train_curves.svg", optarg);
            Error perr = {0};
            if (train_log_plot(csv, svg, &perr)) {
                fprintf(stderr, "train: %s\n", perr.msg);
                return 1;
            }
            printf("%s\n", svg);
            return 0;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (*end) {
            fprintf(stderr, "train: invalid value '%s' for --%s\n", optarg, longopts[c - O_DATA].name);
            return 2;
        }
    }
    if (!o.data) {
        usage(stderr);
        return 2;
    }
    o.gpu = gpu;
    /* started by mpirun with several processes: they are one job (a binary without MPI would train N
     * copies side by side, so it refuses) */
    if (comm_launched_ranks() > 1) o.distributed = true;
    if (o.distributed && !comm_available()) {
        fprintf(stderr, "train: this binary was built without MPI and cannot train distributed: install libopenmpi-dev "
                        "and openmpi-bin (make deps) and rebuild\n");
        return 2;
    }
    if (o.init && o.resume) {
        fprintf(stderr, "train: --init and --resume both set the weights: give one\n");
        return 2;
    }
    if (o.sync_bn && !o.distributed) fprintf(stderr, "train: warning: --sync-bn without several ranks does nothing\n");
    Error err = {0};
    TrainReport rep;
    ErrorCode rc = train_run(&o, NULL, &rep, &err);
    if (rc) {
        fprintf(stderr, "train: rank %d: %s\n", rep.rank, err.msg);
        return 1;
    }
    if (rep.rank > 0) return 0;
    printf("done: %d steps, loss %.4f -> %.4f (loc %.4f cls %.4f landm %.4f); %d images unreadable, %d missing; "
           "checkpoint %s\n",
           rep.steps, rep.first_loss, rep.last_loss, rep.last_l, rep.last_c, rep.last_landm, rep.failed_images,
           rep.missing_images, rep.last_checkpoint[0] ? rep.last_checkpoint : "(none)");
    if (rep.best_val >= 0)
        printf("best validation: mean AP %.4f after epoch %d%s%s\n", rep.best_val, rep.best_epoch,
               rep.best_checkpoint[0] ? ", " : "", rep.best_checkpoint);
    return 0;
}
