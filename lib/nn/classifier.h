/* The image-classifier split every classifier arch provides (torchvision CNNs, ConvNeXt, Swin, and
 * what builds on them: multimodal fusion, fold ensembles, Grad-CAM):
 *
 *   x (N, C, H, W) --features--> A (N, h, w, K) --head--> logits (N, classes)
 *
 * A is the Grad-CAM target activation: the output of the module pytorch-grad-cam users target
 * (docs/classifiers.md names it per arch), channels-last in backend memory. The head is data: an
 * ordered list of layers from A to the logits, run on the backend with op-table calls
 * (sarco_head_forward) and differentiated on the host in double (sarco_head_backward_host), so
 * Grad-CAM needs no autograd: the gradient only ever crosses the head.
 */
#ifndef SARCO_CLASSIFIER_H
#define SARCO_CLASSIFIER_H

#include "arch.h"

typedef enum sarco_head_kind {
    SARCO_HEAD_RELU = 0,          /* elementwise, on a map or a vector */
    SARCO_HEAD_GLOBAL_AVG_POOL,   /* map (N, h, w, C) -> vector (N, C) */
    SARCO_HEAD_ADAPTIVE_AVG_POOL, /* map (N, h, w, C) -> vector (N, C oh ow), PyTorch's flatten order
                                   * c*oh*ow + i*ow + j (adaptive_avg_pool2d then torch.flatten(x, 1)) */
    SARCO_HEAD_LAYERNORM,         /* over the channels (last axis) of a map or vector, with eps */
    SARCO_HEAD_LINEAR,            /* vector (N, in) -> (N, out), then act (NONE, RELU or GELU) */
    SARCO_HEAD_DROPOUT,           /* identity at inference; kept so the list mirrors the module list */
    SARCO_HEAD_KIND_COUNT
} sarco_head_kind;

#define SARCO_HEAD_MAX_LAYERS 12
#define SARCO_HEAD_NAME_LEN 96

typedef struct sarco_head_layer {
    sarco_head_kind kind;
    char name[SARCO_HEAD_NAME_LEN]; /* PyTorch module name ("fc", "classifier.6"); "" for parameter-free */
    int64_t oh, ow;                 /* ADAPTIVE_AVG_POOL output size */
    int64_t in, out;                /* LINEAR features; LAYERNORM: in = out = channels */
    sarco_act act;                  /* LINEAR: fused activation (NONE, RELU, GELU) */
    float eps;                      /* LAYERNORM */
    /* parameters on the host (float32, PyTorch layout) -- for the host backward -- and on the backend */
    float *w_host, *b_host;         /* LINEAR (out, in), (out); LAYERNORM gamma, beta (in) */
    sarco_linear *lin;              /* LINEAR, prepared (bias and act fused) */
    float *w_be, *b_be;             /* LAYERNORM gamma, beta */
} sarco_head_layer;

typedef struct sarco_head {
    int64_t channels; /* K of A */
    int count;
    sarco_head_layer layers[SARCO_HEAD_MAX_LAYERS];
    int bad;          /* a builder call failed (sarco_head_check names it) */
    char why[160];
    /* backend workspace, grown on demand: two ping-pong buffers of ws_count floats each */
    float *ws[2];
    int64_t ws_count;
} sarco_head;

/* ---- building (arch load): describe the layers, then list/load their tensors ---- */
SARCO_INTERNAL void sarco_head_init(sarco_head *h, int64_t channels);
SARCO_INTERNAL void sarco_head_add_relu(sarco_head *h);
SARCO_INTERNAL void sarco_head_add_dropout(sarco_head *h);
SARCO_INTERNAL void sarco_head_add_global_avg_pool(sarco_head *h);
SARCO_INTERNAL void sarco_head_add_adaptive_avg_pool(sarco_head *h, int64_t oh, int64_t ow);
SARCO_INTERNAL void sarco_head_add_layernorm(sarco_head *h, const char *name, float eps);
/* in_features follow from the layers before; "<name>.weight" (out, in) and "<name>.bias" (out) */
SARCO_INTERNAL void sarco_head_add_linear(sarco_head *h, const char *name, int64_t out, sarco_act act);
/* SARCO_OK, or BAD_FORMAT naming the first invalid builder call (e.g. a LINEAR on a map) */
SARCO_INTERNAL sarco_status sarco_head_check(sarco_context *ctx, const sarco_head *h, const char *arch);
/* adds the head's tensors to a weight list (for sarco_weights_check) */
SARCO_INTERNAL void sarco_head_list(const sarco_head *h, sarco_wlist *l);
/* copies the parameters to the host and prepares them on ctx->be; call after sarco_weights_check.
 * On failure the head keeps what it got: sarco_head_free releases it. */
SARCO_INTERNAL sarco_status sarco_head_load(sarco_context *ctx, sarco_head *h, const sarco_st_file *st);
SARCO_INTERNAL void sarco_head_free(sarco_backend *be, sarco_head *h);

/* ---- shapes ---- */
SARCO_INTERNAL int64_t sarco_head_classes(const sarco_head *h);   /* out of the final LINEAR */
/* the length of the vector that enters the final LINEAR ("pooled features"), for an A of h x w */
SARCO_INTERNAL int64_t sarco_head_pooled_dim(const sarco_head *h, int64_t ah, int64_t aw);
SARCO_INTERNAL int sarco_head_final_linear(const sarco_head *h); /* index of the last LINEAR, -1 if none */

/* ---- running (backend memory; A is never written) ---- */
/* A (N, ah, aw, K) -> logits (N, classes) */
SARCO_INTERNAL sarco_status sarco_head_forward(sarco_context *ctx, sarco_head *h, int64_t n, int64_t ah, int64_t aw,
                                               const float *A, float *logits);
/* A -> the final LINEAR's input (N, sarco_head_pooled_dim) */
SARCO_INTERNAL sarco_status sarco_head_pooled(sarco_context *ctx, sarco_head *h, int64_t n, int64_t ah, int64_t aw,
                                              const float *A, float *pooled);

/* Host, double precision, one sample: A (ah, aw, K) channels-last float -> logits[classes] (may be
 * NULL) and dA (ah, aw, K) = d logit[target] / dA. ReLU's derivative at 0 is 0 (PyTorch's). */
SARCO_INTERNAL sarco_status sarco_head_backward_host(sarco_context *ctx, const sarco_head *h, int64_t ah, int64_t aw,
                                                     const float *A, int64_t target, double *logits, double *dA);

/* ---- the classifier split of an arch ---- */
typedef struct sarco_classifier {
    /* the module whose output A is, in the state_dict's naming ("layer4", "features.norm5", ...) */
    const char *target_layer;
    /* in (N, C, H, W) -> a_shape (N, h, w, K) of A, or a failure naming why the input is refused */
    sarco_status (*features_shape)(sarco_context *ctx, const void *state, const int64_t *in, int64_t *a_shape);
    /* x (N, C, H, W) PyTorch layout, backend memory -> *A (N, h, w, K) channels-last backend memory owned
     * by the state, valid until the state's next call; a_shape as above */
    sarco_status (*features)(sarco_context *ctx, void *state, const int64_t *in, const float *x, const float **A,
                             int64_t *a_shape);
    sarco_head *(*head)(void *state);
} sarco_classifier;

/* The split of a loaded model, or NULL when its arch is not a classifier; *state gets the arch state
 * to pass to the functions above. */
SARCO_INTERNAL const sarco_classifier *sarco_model_classifier(const sarco_model *m, void **state);
/* The same for fold `fold` of a model file holding several (NULL when out of range). */
SARCO_INTERNAL const sarco_classifier *sarco_model_classifier_fold(const sarco_model *m, int fold, void **state);

/* The same, for running fold `fold`'s features now: the workspace of the fold that ran before is
 * dropped first (only one fold's is held, as sarco_model_forward_fold does). NULL as above. */
SARCO_INTERNAL const sarco_classifier *sarco_model_classifier_run(sarco_context *ctx, sarco_model *m, int fold,
                                                                  void **state);

/* An arch's forward from its split: features, then the head. y (N, classes) backend memory. */
SARCO_INTERNAL sarco_status sarco_classifier_forward(sarco_context *ctx, const sarco_classifier *c, void *state,
                                                     const int64_t *in, const float *x, float *y);

#endif
