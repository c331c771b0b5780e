/* Detector: a RetinaFace model with its weights, a thread pool and a reusable step graph, turning
 * BGR images into detections (network in eval mode, softmax, priors, postprocess). One detector
 * serves many images; the step arena is reset between them, so steady state allocates nothing
 * in the network. */
#ifndef DETECTION_DETECTOR_H
#define DETECTION_DETECTOR_H

#include "detection/image.h"
#include "detection/postprocess.h"
#include "detection/priors.h"
#include "models/retinaface.h"

typedef struct {
    RetinaFace *model;
    Context *ctx;
    Graph graph;
} Detector;

typedef struct {
    double forward_ms, postprocess_ms;
    int input_width, input_height;
} DetectTiming;

/* weights: .safetensors or PyTorch .pth; NULL: the variant's built-in weights (models/builtin_weights.h)
 * when it has them, else the random initialisation (benchmarks). gpu: run the
 * network on the CUDA device (postprocessing stays on the host). */
ErrorCode detector_init(Detector *d, const char *model_name, const char *weights, int threads, bool gpu, Error *err);
/* A detector holding a copy of src's current weights (e.g. the model being trained, for validation);
 * src is only read. */
ErrorCode detector_init_from_params(Detector *d, const RetinaFace *src, int threads, bool gpu, Error *err);
void detector_free(Detector *d);
/* The resize factor that brings the long side to long_side pixels (1 when long_side <= 0). */
float detector_resize_for_long_side(const Image *img, int long_side);
/* resize: scale applied to the image before the network (1 = original size); boxes are mapped back
 * to the original image. */
ErrorCode detector_detect(Detector *d, const Image *img, float resize, const PostprocessOptions *opt,
                          Detection **dets, int *n, DetectTiming *timing, Error *err);
/* n images of any sizes (imgs[i] scaled by resize[i]): those whose network input has one size go through
 * one forward together, max_batch at most at a time; image i's detections (malloc'd, the caller frees
 * each) in dets[i], counts[i]. Each image gets what detector_detect gives it. timing: forward and
 * postprocess summed over the batches, the first image's input size. On error nothing is returned. */
/* The batch that suits the detector's device: 8 on the GPU; 1 on the CPU, where the kernels already use
 * every core on one image and batching same-size images measured slower (2-core Zen 4, 320x240 and the
 * WIDER val images: 166-184 against 189-215 and 17-20 against 20-24 images/s). */
int detector_default_batch(const Detector *d);
ErrorCode detector_detect_batch(Detector *d, int n, const Image *const *imgs, const float *resize, int max_batch,
                                const PostprocessOptions *opt, Detection **dets, int *counts, DetectTiming *timing,
                                Error *err);

#endif
