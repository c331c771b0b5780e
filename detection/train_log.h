/* The training log a person reads afterwards: a CSV with one row per step (epoch, step, the losses,
 * learning rate, images/s) and one per validation (Easy/Medium/Hard AP), and an SVG of the
 * per-epoch mean losses and the validation AP, redrawn from the CSV after every epoch (so it covers
 * resumed runs too). Columns:
 *   epoch,step,global_step,loss_loc,loss_cls,loss_landm,loss_total,lr,images_per_s,val_easy,val_medium,val_hard,
 *   loss2_loc,loss2_cls,loss2_landm
 * (1-based epoch and step; a step row leaves the val columns empty, a validation row the loss ones; the
 * loss2 columns are a cascade's second stage, empty for other models; logs from before those columns are
 * read and continued as they are). */
#ifndef MODELS_TRAIN_LOG_H
#define MODELS_TRAIN_LOG_H

#include <stdbool.h>
#include <stdio.h>

#include "tensor/error.h"

typedef struct {
    FILE *f;
    char path[4096];
    double best_val;  /* best mean of Easy/Medium/Hard AP logged so far (-1: none) */
    int best_epoch;
} TrainLog;

/* Opens path for appending. A run that continues epoch first_epoch (1-based) after first_step of its
 * batches drops the rows after that point first: they belong to work the run repeats. best_val
 * comes from the validation rows that remain. */
ErrorCode train_log_open(TrainLog *log, const char *path, int first_epoch, int first_step, Error *err);
void train_log_close(TrainLog *log);
/* stage2: the cascade's second-stage loc, cls and landm losses, or NULL. */
ErrorCode train_log_step(TrainLog *log, int epoch, int step, long global_step, double loc, double cls, double landm,
                         double total, const double stage2[3], double lr, double images_per_s, Error *err);
/* Logs a validation; *improved tells whether its mean AP beats every earlier one. */
ErrorCode train_log_val(TrainLog *log, int epoch, int step, long global_step, const double ap[3], bool *improved,
                        Error *err);
/* Draws csv_path's curves into svg_path (written to a temporary and renamed). */
ErrorCode train_log_plot(const char *csv_path, const char *svg_path, Error *err);

#endif
