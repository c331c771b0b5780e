/* Losses with per-row selection: the detector picks positives and mined negatives per prior and
 * these ops reduce over exactly those rows (sum reduction; the caller normalises). Labels, targets
 * and selections come from the host; on the GPU they are copied next to the logits once per step. */
#include <math.h>

#include "autograd/ops.h"
#include "tensor/device.h"
#include "cuda_kernels/cuda_ops.h"

typedef struct {
    const int32_t *labels;
    const float *target;
    const uint8_t *select;
    int64_t rows, width;
} LossSaved;

/* Copies a host array to the graph's device when it runs on the GPU (else returns it as is). */
static const void *on_device(Graph *g, const Var *x, const void *host, size_t bytes)
{
    if (!host || !var_on_cuda(x)) return host;
    void *d = graph_scratch(g, bytes);
    if (d && device_memcpy(d, DEVICE_CUDA, host, DEVICE_CPU, bytes, &g->err)) return NULL;
    return d;
}

static LossSaved *save_loss(Graph *g, const Var *x, const int32_t *labels, const float *target,
                            const uint8_t *select)
{
    LossSaved *s = graph_host_scratch(g, sizeof *s);
    if (!s) return NULL;
    s->width = x->value.shape[x->value.ndim - 1];
    s->rows = tensor_numel(&x->value) / s->width;
    s->labels = on_device(g, x, labels, sizeof(int32_t) * (size_t)s->rows);
    s->target = on_device(g, x, target, sizeof(float) * (size_t)(s->rows * s->width));
    s->select = on_device(g, x, select, (size_t)s->rows);
    return graph_ok(g) ? s : NULL;
}

/* max and sum of exp(z - max) of one row of logits (the sum in double). */
static void row_softmax_terms(const float *z, int64_t C, float *max, double *sum)
{
    float m = z[0];
    for (int64_t c = 1; c < C; c++) m = z[c] > m ? z[c] : m;
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += exp((double)z[c] - m);
    *max = m, *sum = s;
}

static void cross_entropy_backward(Graph *g, Var *y)
{
    const LossSaved *s = y->saved;
    Var *x = y->inputs[0];
    float *dx = var_grad(g, x);
    if (!dx) return;
    int64_t C = s->width;
    if (var_on_cuda(y)) {
        cuda_cross_entropy_backward(g->ctx, x->value.data, s->labels, s->select, s->rows, C, y->grad.data, dx);
        graph_check_cuda(g, "cross_entropy backward");
        return;
    }
    float dl = y->grad.data[0];
    for (int64_t r = 0; r < s->rows; r++) {
        if (s->select && !s->select[r]) continue;
        const float *z = x->value.data + r * C;
        float m;
        double sum;
        row_softmax_terms(z, C, &m, &sum);
        for (int64_t c = 0; c < C; c++) {
            double p = exp((double)z[c] - m) / sum;
            dx[r * C + c] += dl * (float)(p - (c == s->labels[r] ? 1.0 : 0.0));
        }
    }
}

Var *ag_cross_entropy(Graph *g, Var *logits, const int32_t *labels, const uint8_t *select)
{
    if (!graph_ok(g)) return NULL;
    if (!logits || !labels) return graph_fail(g, ERR_ARG, "cross_entropy: NULL input");
    int64_t C = logits->value.shape[logits->value.ndim - 1], rows = tensor_numel(&logits->value) / C;
    for (int64_t r = 0; r < rows; r++)
        if ((!select || select[r]) && (labels[r] < 0 || labels[r] >= C))
            return graph_fail(g, ERR_ARG, "cross_entropy: label %d of row %lld outside [0, %lld)", labels[r],
                              (long long)r, (long long)C);
    int64_t one = 1;
    Var *y = graph_op_output(g, "cross_entropy", &logits, 1, 1, &one, cross_entropy_backward);
    if (y) graph_op_saves(y, GRAPH_SAVES_INPUT(0));
    if (!y) return NULL;
    LossSaved *s = save_loss(g, logits, labels, NULL, select);
    if (!s) return NULL;
    y->saved = s;
    if (var_on_cuda(logits)) {
        cuda_cross_entropy_forward(g->ctx, logits->value.data, s->labels, s->select, rows, C, y->value.data);
        return graph_check_cuda(g, "cross_entropy") ? y : NULL;
    }
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (select && !select[r]) continue;
        const float *z = logits->value.data + r * C;
        float m;
        double sum;
        row_softmax_terms(z, C, &m, &sum);
        total += log(sum) + m - z[labels[r]];
    }
    y->value.data[0] = (float)total;
    return y;
}

static void smooth_l1_backward(Graph *g, Var *y)
{
    const LossSaved *s = y->saved;
    Var *x = y->inputs[0];
    float *dx = var_grad(g, x);
    if (!dx) return;
    if (var_on_cuda(y)) {
        cuda_smooth_l1_backward(g->ctx, x->value.data, s->target, s->select, s->rows, s->width, y->grad.data, dx);
        graph_check_cuda(g, "smooth_l1 backward");
        return;
    }
    float dl = y->grad.data[0];
    for (int64_t r = 0; r < s->rows; r++) { /* by rows: the selected ones are few (the positives) */
        if (s->select && !s->select[r]) continue;
        for (int64_t i = r * s->width; i < (r + 1) * s->width; i++) {
            float d = x->value.data[i] - s->target[i];
            float grad = d < -1.0f ? -1.0f : d > 1.0f ? 1.0f : d;
            dx[i] += dl * grad;
        }
    }
}

Var *ag_smooth_l1(Graph *g, Var *pred, const float *target, const uint8_t *select)
{
    if (!graph_ok(g)) return NULL;
    if (!pred || !target) return graph_fail(g, ERR_ARG, "smooth_l1: NULL input");
    int64_t one = 1;
    Var *y = graph_op_output(g, "smooth_l1", &pred, 1, 1, &one, smooth_l1_backward);
    if (y) graph_op_saves(y, GRAPH_SAVES_INPUT(0));
    if (!y) return NULL;
    LossSaved *s = save_loss(g, pred, NULL, target, select);
    if (!s) return NULL;
    y->saved = s;
    if (var_on_cuda(pred)) {
        cuda_smooth_l1_forward(g->ctx, pred->value.data, s->target, s->select, s->rows, s->width, y->value.data);
        return graph_check_cuda(g, "smooth_l1") ? y : NULL;
    }
    double total = 0;
    for (int64_t r = 0; r < s->rows; r++) {
        if (select && !select[r]) continue;
        for (int64_t i = r * s->width; i < (r + 1) * s->width; i++) {
            double d = fabs((double)pred->value.data[i] - target[i]);
            total += d < 1.0 ? 0.5 * d * d : d - 0.5;
        }
    }
    y->value.data[0] = (float)total;
    return y;
}
