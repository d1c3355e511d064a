/* The architecture interface: each model file in lib/nn/ fills one of these. */
#ifndef SARCO_ARCH_H
#define SARCO_ARCH_H

#include <jansson.h>

#include "../core/core.h"
#include "../io/safetensors.h"
#include "../ops/ops.h"

typedef struct sarco_arch {
    const char *name; /* the sarco.config "arch", e.g. "monai.UNETR" */
    /* Reads kwargs from cfg, checks every tensor of st by name and shape (sarco_weights_check)
     * and only then prepares the weights on ctx->be. Fails whole: nothing is left allocated. */
    sarco_status (*load)(sarco_context *ctx, const json_t *kwargs, const sarco_st_file *st, void **state);
    /* PyTorch-layout shapes: in (N, C, [D,] H, W) -> out */
    sarco_status (*output_shape)(sarco_context *ctx, const void *state, int ndim, const int64_t *in,
                                 int64_t *out);
    /* x and y are backend buffers in PyTorch layout */
    sarco_status (*forward)(sarco_context *ctx, void *state, int ndim, const int64_t *in, const float *x,
                            float *y);
    void (*free)(sarco_context *ctx, void *state);
    /* Optional: drops scratch buffers kept between forwards (the model calls it on a fold's state
     * when another fold runs, so only one fold's workspace is held). NULL: nothing to drop. */
    void (*trim)(sarco_context *ctx, void *state);
    /* image classifiers: the features/head split (lib/nn/classifier.h); NULL for other archs */
    const struct sarco_classifier *classifier;
} sarco_arch;

/* NULL when no architecture of that name is built in. lib/nn/registry.c lists them. */
SARCO_INTERNAL const sarco_arch *sarco_arch_find(const char *name);
SARCO_INTERNAL void sarco_arch_names(char *buf, size_t n); /* "a, b, c" for messages */

/* sarco_model_forward on buffers already on the model's backend (ctx->be): x (in) -> y (the output
 * shape), PyTorch layout, no upload or download (the sliding window keeps its tiles there). */
SARCO_INTERNAL sarco_status sarco_model_forward_be(sarco_context *ctx, sarco_model *m, int ndim, const int64_t *in,
                                                   const float *x, float *y);
/* The same with fold `fold` of a multi-fold file (sarco_model_fold_count in sarco.h); the call above is fold 0. */
/* sarco_model_forward_fold for a caller that already holds the model (sarco_model_enter): the
 * nnU-Net predictor inside sarco_segment. Host buffers, like the public function. */
SARCO_INTERNAL sarco_status sarco_model_forward_fold_held(sarco_context *ctx, sarco_model *m, int fold, int ndim,
                                                          const int64_t *in, const float *x, float *y, size_t y_count);
SARCO_INTERNAL sarco_status sarco_model_forward_be_fold(sarco_context *ctx, sarco_model *m, int fold, int ndim,
                                                        const int64_t *in, const float *x, float *y);

/* Marks the model busy for one public call (sarco_segment, sarco_sliding_window, sarco_model_forward*): a
 * second call while it runs (another thread, or the progress callback) fails with INVALID_ARGUMENT instead of
 * sharing the model's workspace. Every successful enter is paired with one leave. */
SARCO_INTERNAL sarco_status sarco_model_enter(sarco_context *ctx, sarco_model *m, const char *fn);
SARCO_INTERNAL void sarco_model_leave(sarco_model *m);

#endif
