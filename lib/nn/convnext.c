/* torchvision ConvNeXt-T (torchvision/models/convnext.py, convnext_tiny), eval mode.
 *
 *   features.0   stem: Conv2d(3, 96, k 4, s 4, bias) -> LayerNorm2d(96, eps 1e-6)
 *   features.1   3 x CNBlock(96)          features.2  LayerNorm2d(96) -> Conv2d(96, 192, k 2, s 2)
 *   features.3   3 x CNBlock(192)         features.4  LayerNorm2d(192) -> Conv2d(192, 384, k 2, s 2)
 *   features.5   9 x CNBlock(384)         features.6  LayerNorm2d(384) -> Conv2d(384, 768, k 2, s 2)
 *   features.7   3 x CNBlock(768)
 *   avgpool (AdaptiveAvgPool2d(1)) -> classifier: LayerNorm2d(768) (.0), Flatten, Linear(768, classes) (.2)
 *
 * CNBlock(dim): block.0 depthwise Conv2d(dim, dim, k 7, pad 3, groups dim, bias) -> Permute to channels-last
 * -> block.2 LayerNorm(dim, eps 1e-6) -> block.3 Linear(dim, 4 dim) -> GELU (exact) -> block.5 Linear(4 dim,
 * dim) -> Permute back; result = layer_scale (dim, 1, 1) x block(x) + x. Stochastic depth is the identity in
 * eval mode. Channels-last here throughout, so the permutes vanish and LayerNorm2d is a row LayerNorm; the
 * layer_scale is folded into block.5's weights and bias at load, which then also adds the residual.
 *
 * The classifier split (lib/nn/classifier.h): A = the output of features.7 (model.features[-1], the layer
 * pytorch-grad-cam users target for ConvNeXt), (N, h, w, 768) channels-last; the head is data: global
 * average pool -> LayerNorm(768, eps 1e-6) "classifier.0" -> Linear "classifier.2".
 *
 * Any input size with H, W >= 32 (every stage keeps >= 1 pixel; the stride-2 convs floor odd sizes, as
 * PyTorch does); in_channels 3; num_classes from the head's weight shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tvnet.h"

#define CNX_STAGES 4
#define CNX_MAX_DEPTH 9
#define CNX_EPS 1e-6f
static const int64_t cnx_dims[CNX_STAGES] = {96, 192, 384, 768};
static const int64_t cnx_depths[CNX_STAGES] = {3, 3, 9, 3};

#define TRY TV_TRY
#define ARCH "torchvision.convnext_tiny"

typedef struct cnx_block {
    sarco_conv *dw;       /* block.0: depthwise 7x7 */
    float *ln_g, *ln_b;   /* block.2 */
    sarco_linear *fc1;    /* block.3 with the GELU */
    sarco_linear *fc2;    /* block.5 x layer_scale, + residual */
} cnx_block;

/* Backend buffers for one input shape, allocated on the first forward and reused. */
typedef struct cnx_ws {
    int64_t n, h, w;  /* 0: not allocated */
    float *x;         /* (N, H, W, 3) */
    float *cur, *t;   /* (N, h, w, C) the residual stream and the depthwise/norm output, largest stage */
    float *mlp;       /* (N, h, w, 4C) */
} cnx_ws;

typedef struct convnext {
    int64_t classes;
    sarco_conv *stem;
    float *stem_g, *stem_b;
    float *ds_g[CNX_STAGES - 1], *ds_b[CNX_STAGES - 1];
    sarco_conv *ds[CNX_STAGES - 1];
    cnx_block blk[CNX_STAGES][CNX_MAX_DEPTH];
    sarco_head head; /* avgpool -> classifier.0 -> classifier.2 */
    cnx_ws ws;
} convnext;

/* the spatial size after the stem (k = s = 4) and after s stride-2 convs */
static void stage_size(int64_t h, int64_t w, int s, int64_t *oh, int64_t *ow) {
    h /= 4;
    w /= 4;
    for (int i = 0; i < s; i++) {
        h /= 2;
        w /= 2;
    }
    *oh = h;
    *ow = w;
}

/* ================================================================================================
 * forward
 * ================================================================================================ */

static sarco_status workspace(sarco_context *ctx, convnext *m, int64_t n, int64_t h, int64_t w);

/* features: x (N, 3, H, W) PyTorch layout -> *A = features.7's output (N, h, w, 768) channels-last, in ws.cur */
static sarco_status convnext_features(sarco_context *ctx, void *state, const int64_t *in, const float *x,
                                      const float **A, int64_t *a_shape) {
    convnext *m = state;
    sarco_backend *be = ctx->be;
    const sarco_backend_ops *op = be->ops;
    const int64_t n = in[0], H = in[2], W = in[3];
    TRY(workspace(ctx, m, n, H, W));
    cnx_ws *w = &m->ws;
    TRY(op->to_cl(be, n, 3, H * W, x, w->x)); /* (N, H, W, 3) */
    int64_t sp[3] = {H, W, 1};
    TRY(op->conv_run(be, m->stem, n, sp, w->x, NULL, w->cur)); /* (N, H/4, W/4, 96) */
    stage_size(H, W, 0, &sp[0], &sp[1]);
    TRY(op->layernorm(be, n * sp[0] * sp[1], cnx_dims[0], w->cur, m->stem_g, m->stem_b, CNX_EPS, w->cur));
    for (int s = 0; s < CNX_STAGES; s++) {
        const int64_t C = cnx_dims[s];
        if (s > 0) { /* downsample: LayerNorm2d -> Conv2d(k 2, s 2) */
            TRY(op->layernorm(be, n * sp[0] * sp[1], cnx_dims[s - 1], w->cur, m->ds_g[s - 1], m->ds_b[s - 1], CNX_EPS,
                              w->t));
            TRY(op->conv_run(be, m->ds[s - 1], n, sp, w->t, NULL, w->cur));
            stage_size(H, W, s, &sp[0], &sp[1]);
        }
        const int64_t r = n * sp[0] * sp[1];
        for (int b = 0; b < cnx_depths[s]; b++) {
            const cnx_block *k = &m->blk[s][b];
            TRY(op->conv_run(be, k->dw, n, sp, w->cur, NULL, w->t));             /* dwconv 7x7 */
            TRY(op->layernorm(be, r, C, w->t, k->ln_g, k->ln_b, CNX_EPS, w->t)); /* norm */
            TRY(op->linear_run(be, k->fc1, r, w->t, NULL, w->mlp));              /* gelu(fc1) */
            TRY(op->linear_run(be, k->fc2, r, w->mlp, w->cur, w->cur));          /* x + layer_scale fc2 */
        }
    }
    *A = w->cur;
    a_shape[0] = n;
    a_shape[1] = sp[0];
    a_shape[2] = sp[1];
    a_shape[3] = cnx_dims[3];
    return SARCO_OK;
}

static sarco_status convnext_features_shape(sarco_context *ctx, const void *state, const int64_t *in,
                                            int64_t *a_shape) {
    (void)state;
    TRY(tv_check_input(ctx, ARCH, in, 3));
    if (in[2] < 32 || in[3] < 32) /* the stem and three stride-2 convs each need >= 1 pixel */
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, ARCH ": the input must be at least 32x32, got %lldx%lld",
                          (long long)in[2], (long long)in[3]);
    a_shape[0] = in[0];
    stage_size(in[2], in[3], 3, &a_shape[1], &a_shape[2]);
    a_shape[3] = cnx_dims[3];
    return SARCO_OK;
}

static sarco_head *convnext_head(void *state) { return &((convnext *)state)->head; }

static const sarco_classifier convnext_classifier = {
    .target_layer = "features.7",
    .features_shape = convnext_features_shape,
    .features = convnext_features,
    .head = convnext_head,
};

/* x (N, 3, H, W) -> y (N, classes), backend memory */
static sarco_status convnext_forward(sarco_context *ctx, void *state, int ndim, const int64_t *in, const float *x,
                                     float *y) {
    (void)ndim; /* checked by output_shape */
    return sarco_classifier_forward(ctx, &convnext_classifier, state, in, x, y);
}

/* ================================================================================================
 * workspace
 * ================================================================================================ */

static void ws_free(sarco_backend *be, cnx_ws *w) {
    float **all[] = {&w->x, &w->cur, &w->t, &w->mlp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (*all[i] && be) be->ops->free(be, *all[i]);
        *all[i] = NULL;
    }
    w->n = w->h = w->w = 0;
}

static void ws_buf(sarco_context *ctx, int64_t count, float **p, sarco_status *s) {
    if (*s != SARCO_OK) return;
    void *q = NULL;
    *s = ctx->be->ops->alloc(ctx->be, (size_t)(count ? count : 1) * sizeof(float), &q);
    *p = q;
}

static sarco_status workspace(sarco_context *ctx, convnext *m, int64_t n, int64_t h, int64_t w) {
    cnx_ws *ws = &m->ws;
    if (ws->n == n && ws->h == h && ws->w == w) return SARCO_OK;
    ws_free(ctx->be, ws);
    /* the largest stage map (sizes are capped by output_shape, so nothing overflows) */
    int64_t big = 0, fh, fw;
    for (int s = 0; s < CNX_STAGES; s++) {
        stage_size(h, w, s, &fh, &fw);
        if (fh * fw * cnx_dims[s] > big) big = fh * fw * cnx_dims[s];
    }
    sarco_status s = SARCO_OK;
    ws_buf(ctx, n * h * w * 3, &ws->x, &s);
    ws_buf(ctx, n * big, &ws->cur, &s);
    ws_buf(ctx, n * big, &ws->t, &s);
    ws_buf(ctx, 4 * n * big, &ws->mlp, &s);
    if (s != SARCO_OK) {
        ws_free(ctx->be, ws);
        return s;
    }
    ws->n = n;
    ws->h = h;
    ws->w = w;
    return SARCO_OK;
}

/* ================================================================================================
 * weights: torchvision's state_dict names
 * ================================================================================================ */

static void walk(tv_walker *w, void *net) {
    convnext *m = net;
    char p[TV_NAME_LEN], ls[TV_NAME_LEN];
    tv_conv(w, &m->stem, 3, cnx_dims[0], 4, 4, 0, 1, 1, "features.0.0", NULL, SARCO_ACT_NONE);
    tv_layernorm(w, &m->stem_g, &m->stem_b, cnx_dims[0], "features.0.1");
    for (int s = 0; s < CNX_STAGES; s++) {
        const int64_t C = cnx_dims[s];
        const int f = 1 + 2 * s; /* features index of the stage; the downsample before it is f - 1 */
        if (s > 0) {
            tv_name(p, "features.%d.0", f - 1);
            tv_layernorm(w, &m->ds_g[s - 1], &m->ds_b[s - 1], cnx_dims[s - 1], p);
            tv_name(p, "features.%d.1", f - 1);
            tv_conv(w, &m->ds[s - 1], cnx_dims[s - 1], C, 2, 2, 0, 1, 1, p, NULL, SARCO_ACT_NONE);
        }
        for (int b = 0; b < cnx_depths[s]; b++) {
            cnx_block *k = &m->blk[s][b];
            tv_name(p, "features.%d.%d.block.0", f, b);
            tv_conv(w, &k->dw, C, C, 7, 1, 3, C, 1, p, NULL, SARCO_ACT_NONE); /* depthwise */
            tv_name(p, "features.%d.%d.block.2", f, b);
            tv_layernorm(w, &k->ln_g, &k->ln_b, C, p);
            tv_name(p, "features.%d.%d.block.3", f, b);
            tv_linear(w, &k->fc1, C, 4 * C, 1, SARCO_ACT_GELU, NULL, p);
            tv_name(p, "features.%d.%d.block.5", f, b);
            tv_name(ls, "features.%d.%d.layer_scale", f, b);
            tv_linear(w, &k->fc2, 4 * C, C, 1, SARCO_ACT_NONE, ls, p);
        }
    }
}

/* ================================================================================================
 * the sarco_arch interface
 * ================================================================================================ */

static void convnext_free(sarco_context *ctx, void *state) {
    convnext *m = state;
    if (!m) return;
    tv_free_weights(ctx, walk, m, &m->head);
    ws_free(ctx->be, &m->ws);
    free(m);
}

/* torchvision.models.convnext_tiny(weights=None, progress=True, num_classes=1000, stochastic_depth_prob=0.1,
 * layer_scale=1e-6): only num_classes changes the tensors (without the kwarg: the head's rows). */
static sarco_status convnext_load(sarco_context *ctx, const json_t *kwargs, const sarco_st_file *st, void **state) {
    static const char *const known[] = {"num_classes", "stochastic_depth_prob", "layer_scale", "weights",
                                        "progress", NULL};
    *state = NULL;
    TRY(tv_kw_known(ctx, ARCH, kwargs, known));
    const json_t *wt = json_object_get(kwargs, "weights");
    if (wt && !json_is_null(wt))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, ARCH ": kwarg weights must be null (the file holds them)");
    convnext *m = calloc(1, sizeof *m);
    if (!m) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, ARCH ": out of memory");
    sarco_status s = tv_num_classes(ctx, ARCH, kwargs, st, "classifier.2.weight", &m->classes);
    if (s == SARCO_OK) {
        sarco_head_init(&m->head, cnx_dims[3]);
        sarco_head_add_global_avg_pool(&m->head);
        sarco_head_add_layernorm(&m->head, "classifier.0", CNX_EPS);
        sarco_head_add_linear(&m->head, "classifier.2", m->classes, SARCO_ACT_NONE);
        s = tv_load_weights(ctx, ARCH, st, walk, m, &m->head, NULL);
    }
    if (s != SARCO_OK) {
        free(m); /* tv_load_weights freed what it had prepared */
        return s;
    }
    *state = m;
    return SARCO_OK;
}

static sarco_status convnext_output_shape(sarco_context *ctx, const void *state, int ndim, const int64_t *in,
                                          int64_t *out) {
    return tv_output_shape(ctx, &convnext_classifier, state, ndim, in, out);
}

SARCO_INTERNAL const sarco_arch sarco_arch_convnext_tiny = {
    .name = ARCH,
    .load = convnext_load,
    .output_shape = convnext_output_shape,
    .forward = convnext_forward,
    .free = convnext_free,
    .classifier = &convnext_classifier,
};
