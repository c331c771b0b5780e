/* The differentiable ops. Each returns a new step Var (contiguous, in the graph's step heap), or NULL
 * with the error recorded in the graph (see graph.h). Shapes are NCHW for images.
 * Every op lives in its own autograd/op_<name>.c with its forward and backward together; the CPU
 * kernels are named <op>_forward_cpu / <op>_backward_<wrt>_cpu so that a CUDA twin in
 * cuda_kernels/ can mirror them one to one. */
#ifndef AUTOGRAD_OPS_H
#define AUTOGRAD_OPS_H

#include <stdint.h>

#include "autograd/graph.h"
#include "autograd/graph_trace.h"

/* conv2d: x [N,Cin,H,W], w [Cout,Cin/groups,KH,KW], b [Cout] or NULL -> [N,Cout,Ho,Wo] with
 * Ho = (H + 2*pad_h - dil_h*(KH-1) - 1) / stride_h + 1 (PyTorch's convention). */
typedef struct {
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} Conv2dParams;
Conv2dParams conv2d_params(int stride, int padding, int dilation, int groups);
Var *ag_conv2d(Graph *g, Var *x, Var *w, Var *b, Conv2dParams p);
/* conv2d with its activation fused into the output pass: act < 0 none, else leaky ReLU slope (0 =
 * ReLU). Same result as ag_leaky_relu(ag_conv2d(...)), one op and one pass fewer. */
Var *ag_conv2d_act(Graph *g, Var *x, Var *w, Var *b, Conv2dParams p, float act);
/* One branch of ag_conv2d_shared_input: weight, bias (or NULL), activation as in ag_conv2d_act, and
 * optionally the weight packed for the CPU forward (conv2d_pack_weights; it must be w's, as it is now). */
typedef struct Conv2dPacked Conv2dPacked;
typedef struct {
    Var *w, *b;
    float act;
    const Conv2dPacked *packed;
} Conv2dBranch;
/* n convolutions of one input with the same params (out[i] as ag_conv2d_act of branch i, each its own
 * op with its own backward), computed together: the input is read and transformed once for all. */
bool ag_conv2d_shared_input(Graph *g, Var *x, Conv2dParams p, int n, const Conv2dBranch *branches, Var **out);

/* A depthwise-separable block as one op: h = the 3x3 depthwise convolution of x (padding 1, stride 1 or 2,
 * dw's weight [C,1,3,3], bias, activation), then y = the 1x1 convolution of h by pw's (weight [Cout,C,1,1],
 * bias, activation, packed weight): the values of the two ag_conv2d_shared_input ops, one op whose CPU
 * forward never writes h out (it goes by bands of rows, each made and multiplied in cache); the backward
 * makes h again. A GPU graph, a CPU without AVX2 or an export trace gets the two ops instead. */
Var *ag_conv2d_separable(Graph *g, Var *x, const Conv2dBranch *dw, int stride, const Conv2dBranch *pw);

/* batchnorm2d over channel axis 1 of x [N,C,H,W]; gamma, beta [C]. training: normalise with the
 * batch statistics and update running_mean/var (CPU/ device tensors of [C]) with
 * r = (1-momentum) r + momentum * stat (unbiased variance); else use the running statistics. */
Var *ag_batchnorm2d(Graph *g, Var *x, Var *gamma, Var *beta, Tensor *running_mean,
                    Tensor *running_var, bool training, float momentum, float eps);

/* Training mode's conv2d (no bias) -> batchnorm2d (batch statistics, running statistics updated as
 * ag_batchnorm2d does) -> activation (act as in ag_conv2d_act) as one op: the values of
 * ag_leaky_relu(ag_batchnorm2d(ag_conv2d(x, w, NULL, p), gamma, beta, ..., true, momentum, eps), act)
 * up to rounding, with no intermediate Var. Its backward keeps only the convolution's output (BN's
 * input) besides x and w: BN's output and the activation's mask are recomputed from it. On a CUDA
 * graph it is those three ops. */
Var *ag_conv_bn_act_train(Graph *g, Var *x, Var *w, Var *gamma, Var *beta, Tensor *running_mean, Tensor *running_var,
                          Conv2dParams p, float momentum, float eps, float act);
/* act(BN(conv(x)) + residual) as one op (BN and conv as in ag_conv_bn_act_train, act after the sum, as
 * ag_add_act's): a residual block's last layer and its sum, whose BN output is never a value of its own.
 * residual is of the output's shape; its gradient is the masked output gradient, handed over. On a CUDA graph
 * it is the ops it stands for. */
Var *ag_conv_bn_act_train_residual(Graph *g, Var *x, Var *w, Var *gamma, Var *beta, Tensor *running_mean,
                                   Tensor *running_var, Conv2dParams p, float momentum, float eps, Var *residual,
                                   float act);
/* One branch of ag_conv_bn_act_train_shared: the arguments of ag_conv_bn_act_train that are its own. */
typedef struct {
    Var *w, *gamma, *beta;
    Tensor *running_mean, *running_var;
    float act;
} ConvBnActBranch;
/* n (1 to SGEMM_MAX_PRODUCTS) ag_conv_bn_act_train layers of one input x with the same convolution
 * parameters and kernel size: out[i] as ag_conv_bn_act_train of branch i would give, the convolutions run
 * as one (x read, and for Winograd transformed, once forward and once backward). False on error. */
bool ag_conv_bn_act_train_shared(Graph *g, Var *x, int n, const ConvBnActBranch *branches, Conv2dParams p,
                                 float momentum, float eps, Var **out);

Var *ag_relu(Graph *g, Var *x);
Var *ag_leaky_relu(Graph *g, Var *x, float negative_slope); /* slope 0 is relu */

/* Elementwise, same shapes. */
Var *ag_add(Graph *g, Var *a, Var *b);
/* act(a + b) in one op (act as in ag_conv2d_act; < 0: ag_add): a residual block's end, whose sum is
 * never a value of its own. */
Var *ag_add_act(Graph *g, Var *a, Var *b, float act);
Var *ag_scale(Graph *g, Var *x, float s);
/* Sum of all elements -> [1]. */
Var *ag_sum(Graph *g, Var *x);

/* Concatenation of n inputs along axis (all other dims equal). */
Var *ag_concat(Graph *g, Var *const *xs, int n, int axis);

/* Nearest upsampling of [N,C,H,W] to [N,C,out_h,out_w]: source index floor(o * H / out_h), as
 * F.interpolate(size=..., mode="nearest"). */
Var *ag_upsample_nearest(Graph *g, Var *x, int out_h, int out_w);
/* a + ag_upsample_nearest(x, to a's H and W) in one pass; a [N,C,H,W], x [N,C,h,w]. */
Var *ag_add_upsampled(Graph *g, Var *a, Var *x);

/* Permutation into a contiguous tensor: out.shape[i] = x.shape[perm[i]]. */
Var *ag_permute(Graph *g, Var *x, const int *perm);
/* Same data, new shape (one -1 allowed). */
Var *ag_reshape(Graph *g, Var *x, int ndim, const int64_t *shape);

/* Softmax over the last axis. */
Var *ag_softmax(Graph *g, Var *x);

/* Cross-entropy on logits [..., C] viewed as rows of C: sum over rows r with select[r] != 0
 * (select NULL: all rows) of -log softmax(logits[r])[labels[r]] -> [1]. labels and select are
 * host arrays of one entry per row (CPU graphs). */
Var *ag_cross_entropy(Graph *g, Var *logits, const int32_t *labels, const uint8_t *select);

/* Smooth L1 (beta 1), sum reduction: pred [..., k] viewed as rows of k, target of the same
 * numel (host array), over rows with select[r] != 0 (NULL: all) -> [1]. */
Var *ag_smooth_l1(Graph *g, Var *pred, const float *target, const uint8_t *select);

/* [N,C,H,W] -> [N,C,1,1] mean. */
Var *ag_global_avg_pool(Graph *g, Var *x);
/* Max pooling with padding treated as -inf (PyTorch's MaxPool2d). */
Var *ag_max_pool2d(Graph *g, Var *x, int kernel, int stride, int padding);
/* x [N,in], w [out,in], b [out] or NULL -> [N,out]. */
Var *ag_linear(Graph *g, Var *x, Var *w, Var *b);

#endif
