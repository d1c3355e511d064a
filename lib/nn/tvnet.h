/* What the torchvision classifier files (vgg.c, resnet.c, densenet.c, efficientnet.c, convnext.c, swin.c) share: one walk
 * over a network's module tree run three times (list every tensor for the check, load, free), conv +
 * eval-mode BatchNorm folding, BatchNorm kept as a channel affine, keyword parsing, a workspace of
 * ping-pong buffers, and the sarco_arch glue around a sarco_classifier split. */
#ifndef SARCO_TVNET_H
#define SARCO_TVNET_H

#include "classifier.h"

#define TV_TRY(expr)                          \
    do {                                      \
        sarco_status try_s_ = (expr);         \
        if (try_s_ != SARCO_OK) return try_s_; \
    } while (0)

#define TV_NAME_LEN 160

typedef enum { TV_LIST, TV_LOAD, TV_FREE } tv_pass;

typedef struct tv_walker {
    tv_pass pass;
    sarco_context *ctx;
    const sarco_st_file *st; /* TV_LOAD */
    sarco_wlist *list;       /* TV_LIST */
    sarco_status s;          /* first failure of TV_LOAD */
    float bn_eps;            /* BatchNorm eps (1e-5 in every torchvision net here) */
} tv_walker;

/* Conv2d "<conv>.weight" (cout, cin/groups, k, k) [+ "<conv>.bias"], square kernel, stride, padding;
 * with bn != NULL the BatchNorm2d "<bn>.*" that follows is folded in (w' = w s, b' = beta - mean s,
 * s = gamma / sqrt(var + eps)); act runs fused after it. */
SARCO_INTERNAL void tv_conv(tv_walker *wk, sarco_conv **dst, int64_t cin, int64_t cout, int64_t k, int64_t stride,
                            int64_t pad, int64_t groups, int bias, const char *conv, const char *bn, sarco_act act);
/* BatchNorm2d "<bn>.*" that cannot fold into a conv (it precedes one): scale/shift backend buffers for
 * channel_affine (scale = gamma / sqrt(var + eps), shift = beta - mean scale) */
SARCO_INTERNAL void tv_bn_affine(tv_walker *wk, float **scale, float **shift, int64_t c, const char *bn);
/* A 1x1 Conv2d with bias used on a pooled vector ("<name>.weight" (out, in, 1, 1)), run as a linear */
SARCO_INTERNAL void tv_conv1x1_linear(tv_walker *wk, sarco_linear **dst, int64_t in, int64_t out, sarco_act act,
                                      const char *name);
SARCO_INTERNAL void SARCO_PRINTF(2, 3) tv_name(char *dst, const char *fmt, ...);
/* nn.Linear "<name>.weight" (out, in) [+ "<name>.bias"], act fused. row_scale (a tensor name, NULL = none)
 * of shape (out, 1, 1) multiplies the output rows and is folded into weight and bias at load (ConvNeXt's
 * layer_scale: s (W x + b) = (s W) x + s b). */
SARCO_INTERNAL void tv_linear(tv_walker *wk, sarco_linear **dst, int64_t in, int64_t out, int bias, sarco_act act,
                              const char *row_scale, const char *name);
/* a parameter kept as a backend buffer of its own shape (LayerNorm affines, Swin's bias tables) */
SARCO_INTERNAL void tv_param(tv_walker *wk, float **dst, const int64_t *shape, int ndim, const char *name);
/* LayerNorm "<name>.weight" and "<name>.bias" over c channels, as backend buffers */
SARCO_INTERNAL void tv_layernorm(tv_walker *wk, float **gamma, float **beta, int64_t c, const char *name);

/* ---- keywords ---- */
/* fails naming a key of kw not in known (NULL-terminated) */
SARCO_INTERNAL sarco_status tv_kw_known(sarco_context *ctx, const char *arch, const json_t *kw,
                                        const char *const *known);
SARCO_INTERNAL sarco_status tv_kw_int(sarco_context *ctx, const char *arch, const json_t *kw, const char *key,
                                      int64_t def, int64_t lo, int64_t hi, int64_t *out);
/* num_classes: the kwarg when given, else the rows of the head's final weight in the file, else 1000 */
SARCO_INTERNAL sarco_status tv_num_classes(sarco_context *ctx, const char *arch, const json_t *kw,
                                           const sarco_st_file *st, const char *final_weight, int64_t *out);
/* in_channels: the second dim of the first conv's weight in the file (3 for torchvision's own nets) */
SARCO_INTERNAL int64_t tv_in_channels(const sarco_st_file *st, const char *first_weight);

/* ---- loading: list + check, load, or free everything on failure ---- */
typedef void (*tv_walk_fn)(tv_walker *wk, void *net);
SARCO_INTERNAL sarco_status tv_load_weights(sarco_context *ctx, const char *arch, const sarco_st_file *st,
                                            tv_walk_fn walk, void *net, sarco_head *head,
                                            const char *const *ignore);
SARCO_INTERNAL void tv_free_weights(sarco_context *ctx, tv_walk_fn walk, void *net, sarco_head *head);

/* ---- workspace: nbuf backend buffers of `count` floats each, grown on demand ---- */
#define TV_WS_MAX 6
typedef struct tv_ws {
    int64_t count;
    float *b[TV_WS_MAX];
} tv_ws;
SARCO_INTERNAL sarco_status tv_ws_ensure(sarco_context *ctx, tv_ws *w, int nbuf, int64_t count);
SARCO_INTERNAL void tv_ws_free(sarco_backend *be, tv_ws *w);

/* conv/pool output size along one axis (PyTorch floor mode) */
static inline int64_t tv_out(int64_t in, int64_t k, int64_t s, int64_t p) {
    return in + 2 * p < k ? 0 : (in + 2 * p - k) / s + 1;
}

/* ---- sarco_arch glue for classifiers: output (N, classes, 1, 1), forward = features + head ---- */
SARCO_INTERNAL sarco_status tv_output_shape(sarco_context *ctx, const sarco_classifier *c, const void *state,
                                            int ndim, const int64_t *in, int64_t *out);
/* checks (N, C, H, W) with C = channels; names the arch */
SARCO_INTERNAL sarco_status tv_check_input(sarco_context *ctx, const char *arch, const int64_t *in, int64_t channels);

#endif
