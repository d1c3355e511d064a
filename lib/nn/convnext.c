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

#include "classifier.h"
#include "nnw.h"

#define CNX_STAGES 4
#define CNX_MAX_DEPTH 9
#define CNX_EPS 1e-6f
static const int64_t cnx_dims[CNX_STAGES] = {96, 192, 384, 768};
static const int64_t cnx_depths[CNX_STAGES] = {3, 3, 9, 3};

#define TRY(expr)                              \
    do {                                       \
        sarco_status try_s_ = (expr);          \
        if (try_s_ != SARCO_OK) return try_s_; \
    } while (0)

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
    if (in[1] != 3 || in[2] < 32 || in[3] < 32 || in[2] > 16384 || in[3] > 16384)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "ConvNeXt: the input must be (N, 3, H, W) with 32 <= H, W <= 16384 (got %lld channels, "
                          "%lld x %lld)",
                          (long long)in[1], (long long)in[2], (long long)in[3]);
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

static void walk(nnw *w, convnext *m) {
    sarco_nnw_conv2d(w, &m->stem, 3, cnx_dims[0], 4, 4, 0, 1, 1, "features.0.0");
    sarco_nnw_norm(w, &m->stem_g, &m->stem_b, cnx_dims[0], "features.0.1");
    for (int s = 0; s < CNX_STAGES; s++) {
        const int64_t C = cnx_dims[s];
        const int f = 1 + 2 * s; /* features index of the stage; the downsample before it is f - 1 */
        if (s > 0) {
            sarco_nnw_norm(w, &m->ds_g[s - 1], &m->ds_b[s - 1], cnx_dims[s - 1], "features.%d.0", f - 1);
            sarco_nnw_conv2d(w, &m->ds[s - 1], cnx_dims[s - 1], C, 2, 2, 0, 1, 1, "features.%d.1", f - 1);
        }
        for (int b = 0; b < cnx_depths[s]; b++) {
            cnx_block *k = &m->blk[s][b];
            char ls[NNW_NAME];
            snprintf(ls, sizeof ls, "features.%d.%d.layer_scale", f, b);
            sarco_nnw_conv2d(w, &k->dw, C, C, 7, 1, 3, C, 1, "features.%d.%d.block.0", f, b);
            sarco_nnw_norm(w, &k->ln_g, &k->ln_b, C, "features.%d.%d.block.2", f, b);
            sarco_nnw_linear(w, &k->fc1, C, 4 * C, 1, SARCO_ACT_GELU, NULL, "features.%d.%d.block.3", f, b);
            sarco_nnw_linear(w, &k->fc2, 4 * C, C, 1, SARCO_ACT_NONE, ls, "features.%d.%d.block.5", f, b);
        }
    }
}

/* ================================================================================================
 * the sarco_arch interface
 * ================================================================================================ */

static void convnext_free(sarco_context *ctx, void *state) {
    convnext *m = state;
    if (!m) return;
    nnw w = {.pass = NNW_FREE, .ctx = ctx, .arch = "ConvNeXt"};
    walk(&w, m);
    sarco_head_free(ctx->be, &m->head);
    ws_free(ctx->be, &m->ws);
    free(m);
}

/* torchvision.models.convnext_tiny(weights=None, progress=True, num_classes=1000, stochastic_depth_prob=0.1,
 * layer_scale=1e-6): only num_classes changes the tensors, and it is read from the head's shape. */
static sarco_status parse_kwargs(sarco_context *ctx, const json_t *kw, const sarco_st_file *st, convnext *m) {
    static const char *const known[] = {"num_classes", "stochastic_depth_prob", "layer_scale", "weights",
                                        "progress", NULL};
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)kw, key, val) {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++) ok = strcmp(key, known[i]) == 0;
        if (!ok) return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "ConvNeXt: unknown kwarg \"%s\"", key);
    }
    const json_t *wt = json_object_get(kw, "weights");
    if (wt && !json_is_null(wt))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "ConvNeXt: kwarg weights must be null (the file holds them)");
    const sarco_st_tensor *head = sarco_st_find(st, "classifier.2.weight");
    if (!head || head->ndim != 2 || head->shape[0] < 1 || head->shape[0] > (1 << 20))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "ConvNeXt: the head classifier.2.weight is missing or not a (classes, 768) matrix");
    m->classes = head->shape[0];
    sarco_head_init(&m->head, cnx_dims[3]);
    sarco_head_add_global_avg_pool(&m->head);
    sarco_head_add_layernorm(&m->head, "classifier.0", CNX_EPS);
    sarco_head_add_linear(&m->head, "classifier.2", m->classes, SARCO_ACT_NONE);
    TRY(sarco_head_check(ctx, &m->head, "ConvNeXt"));
    const json_t *nc = json_object_get(kw, "num_classes");
    if (nc && (!json_is_integer(nc) || json_integer_value(nc) != m->classes))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "ConvNeXt: kwarg num_classes does not match the head classifier.2.weight (%lld rows)",
                          (long long)m->classes);
    return SARCO_OK;
}

static sarco_status convnext_load(sarco_context *ctx, const json_t *kwargs, const sarco_st_file *st, void **state) {
    *state = NULL;
    convnext *m = calloc(1, sizeof *m);
    if (!m) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "ConvNeXt: out of memory");
    sarco_status s = parse_kwargs(ctx, kwargs, st, m);
    if (s != SARCO_OK) {
        free(m);
        return s;
    }
    sarco_wlist list = {0};
    nnw w = {.pass = NNW_LIST, .ctx = ctx, .arch = "ConvNeXt", .list = &list};
    walk(&w, m);
    sarco_head_list(&m->head, &list);
    s = list.oom ? sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "ConvNeXt: out of memory listing the weights")
                 : sarco_weights_check(ctx, st, &list, NULL);
    sarco_wlist_free(&list);
    if (s != SARCO_OK) {
        free(m);
        return s;
    }
    w = (nnw){.pass = NNW_LOAD, .ctx = ctx, .arch = "ConvNeXt", .st = st, .s = SARCO_OK};
    walk(&w, m);
    if (w.s == SARCO_OK) w.s = sarco_head_load(ctx, &m->head, st);
    if (w.s != SARCO_OK) {
        convnext_free(ctx, m);
        return w.s;
    }
    *state = m;
    return SARCO_OK;
}

static sarco_status convnext_output_shape(sarco_context *ctx, const void *state, int ndim, const int64_t *in,
                                          int64_t *out) {
    const convnext *m = state;
    int64_t a[4];
    if (ndim != 4)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "ConvNeXt: the input must be (N, 3, H, W), got %d-D", ndim);
    TRY(convnext_features_shape(ctx, state, in, a));
    out[0] = in[0];
    out[1] = m->classes;
    out[2] = out[3] = 1; /* (N, classes) as a 4-D shape */
    return SARCO_OK;
}

SARCO_INTERNAL const sarco_arch sarco_arch_convnext_tiny = {
    .name = "torchvision.convnext_tiny",
    .load = convnext_load,
    .output_shape = convnext_output_shape,
    .forward = convnext_forward,
    .free = convnext_free,
    .classifier = &convnext_classifier,
};
