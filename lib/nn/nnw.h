/* One walk over a model's module tree, run three times: to list every expected tensor (checked by name
 * and shape before anything is prepared), to prepare the tensors on the backend, and to free them, so
 * the three can never disagree (the pattern of lib/nn/unetr.c, shared by the torchvision transformers-era
 * classifiers convnext.c and swin.c). Names are printf formats. */
#ifndef SARCO_NN_NNW_H
#define SARCO_NN_NNW_H

#include "arch.h"

typedef enum { NNW_LIST, NNW_LOAD, NNW_FREE } nnw_pass;

typedef struct nnw {
    nnw_pass pass;
    sarco_context *ctx;
    const char *arch;        /* for messages */
    const sarco_st_file *st; /* NNW_LOAD */
    sarco_wlist *list;       /* NNW_LIST */
    sarco_status s;          /* first failure of NNW_LOAD */
} nnw;

#define NNW_NAME 192 /* sarco_wspec.name */

/* A tensor's values as float32 host memory (a copy: sarco_ctx_free with numel floats); NULL and w->s set
 * on failure. */
SARCO_INTERNAL float *sarco_nnw_host(nnw *w, const char *name, int64_t *numel);
/* A parameter kept as a backend buffer (norm affines, tables). */
SARCO_INTERNAL void sarco_nnw_param(nnw *w, float **dst, const int64_t *shape, int ndim, const char *fmt, ...)
    SARCO_PRINTF(5, 6);
/* "<prefix>.weight" and "<prefix>.bias" of a LayerNorm over c channels, as backend buffers */
SARCO_INTERNAL void sarco_nnw_norm(nnw *w, float **g, float **b, int64_t c, const char *fmt, ...) SARCO_PRINTF(5, 6);
/* nn.Linear at prefix, prepared with the activation fused. row_scale (a tensor name, NULL = none) of shape
 * (out, 1, 1) multiplies the output rows, folded into the weights and bias at load (ConvNeXt's layer_scale). */
SARCO_INTERNAL void sarco_nnw_linear(nnw *w, sarco_linear **dst, int64_t in, int64_t out, int bias, sarco_act act,
                                     const char *row_scale, const char *fmt, ...) SARCO_PRINTF(8, 9);
/* nn.Conv2d at prefix: square kernel k, stride, padding, groups */
SARCO_INTERNAL void sarco_nnw_conv2d(nnw *w, sarco_conv **dst, int64_t cin, int64_t cout, int64_t k, int64_t stride,
                                     int64_t pad, int64_t groups, int bias, const char *fmt, ...) SARCO_PRINTF(10, 11);

#endif
