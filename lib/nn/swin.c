/* torchvision Swin-T (torchvision/models/swin_transformer.py, swin_t: v1 blocks), eval mode.
 *
 *   features.0   Conv2d(3, 96, k 4, s 4, bias) (.0) -> Permute to (N, H, W, C) -> LayerNorm(96) (.2)
 *   features.1   2 x SwinTransformerBlock(96, heads 3)     features.2  PatchMerging(96)
 *   features.3   2 x SwinTransformerBlock(192, heads 6)    features.4  PatchMerging(192)
 *   features.5   6 x SwinTransformerBlock(384, heads 12)   features.6  PatchMerging(384)
 *   features.7   2 x SwinTransformerBlock(768, heads 24)
 *   norm LayerNorm(768) -> permute -> AdaptiveAvgPool2d(1) -> flatten -> head Linear(768, classes)
 * Every LayerNorm has eps 1e-5; window 7x7; block i of a stage shifts by 3 when i is odd.
 *
 * SwinTransformerBlock: x = x + attn(norm1 x); x = x + mlp(norm2 x), mlp = Linear(C, 4C) (mlp.0) -> GELU
 * (exact) -> Linear(4C, C) (mlp.3); dropout and stochastic depth are identities. The attention
 * (shifted_window_attention): pad the normed map with zeros on the right/bottom to window multiples; set an
 * axis's shift to 0 when the window covers its padded size; roll by -shift; cut into windows; qkv =
 * Linear(C, 3C) laid out (3, heads, dh) per token; q scaled by dh^-0.5; scores + relative_position_bias_table
 * [relative_position_index] + (with a shift) the -100 mask between roll regions; softmax; x V (one fused
 * op, swin_attention); proj
 * Linear(C, C); windows back, roll by +shift, crop. The zero padding tokens take part as keys and values
 * (their k and v are the qkv bias), exactly as in torchvision. PatchMerging: zero-pad to even H, W, concat
 * x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2] -> LayerNorm(4C) (.norm) -> Linear(4C, 2C, no
 * bias) (.reduction). The window ops are kernels/swin_hd.h (ops.h: sarco_swin_desc).
 *
 * The classifier split (lib/nn/classifier.h): A = the output of the final `norm`, (N, h, w, 768)
 * channels-last (ws.feat); the head is data: global average pool (permute + avgpool + flatten) -> Linear
 * "head". A logit's gradient then crosses only the pool and the Linear, the CNNs' head machinery. timm-style
 * recipes hook layers[-1].blocks[-1].norm1 instead; in torchvision's module tree that LayerNorm's output
 * feeds the last block's attention and the block adds it to its residual, so its gradient would have to
 * cross a whole attention + MLP block (not a head op); the final norm is the last map-shaped activation
 * whose gradient needs only head ops.
 *
 * Any input size with H, W >= 4 (the patch conv floors; later stages pad). in_channels 3; num_classes from
 * the head's weight shape. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/swin_hd.h"
#include "tvnet.h"

#define SWIN_STAGES 4
#define SWIN_MAX_DEPTH 6
#define SWIN_WIN 7
#define SWIN_SHIFT 3 /* window // 2 */
#define SWIN_EPS 1e-5f
#define SWIN_TABLE ((2 * SWIN_WIN - 1) * (2 * SWIN_WIN - 1))
static const int64_t swin_dims[SWIN_STAGES] = {96, 192, 384, 768};
static const int64_t swin_depths[SWIN_STAGES] = {2, 2, 6, 2};
static const int64_t swin_heads[SWIN_STAGES] = {3, 6, 12, 24};

#define TRY TV_TRY
#define ARCH "torchvision.swin_t"

typedef struct swin_block {
    float *n1_g, *n1_b, *n2_g, *n2_b;
    sarco_linear *qkv, *proj, *fc1, *fc2; /* fc1 carries the GELU */
    float *table;                         /* (169, heads) relative position bias */
} swin_block;

typedef struct swin_ws {
    int64_t n, h, w; /* 0: not allocated */
    float *x;        /* (N, H, W, 3) */
    float *cur, *t;  /* (N, h, w, C) residual stream and normed map; t also holds the merged (N, h/2, w/2, 4C) */
    float *win;      /* (N nW, L, C) windows, later the proj output */
    float *qkv;      /* (N nW, L, 3C) */
    float *heads;    /* (N nW, L, C) attention output before proj */
    float *mlp;      /* (N, h, w, 4C) */
    float *feat;     /* (N, h4, w4, 768): the final norm's output, the Grad-CAM target A */
} swin_ws;

typedef struct swin {
    int64_t classes;
    sarco_conv *embed;
    float *embed_g, *embed_b;
    swin_block blk[SWIN_STAGES][SWIN_MAX_DEPTH];
    float *mg_g[SWIN_STAGES - 1], *mg_b[SWIN_STAGES - 1];
    sarco_linear *mg[SWIN_STAGES - 1];
    float *norm_g, *norm_b;
    sarco_head head; /* avgpool -> head */
    swin_ws ws;
} swin;

/* the map size of stage s: the patch conv floors, each merge pads to even and halves */
static void stage_size(int64_t H, int64_t W, int s, int64_t *h, int64_t *w) {
    *h = H / 4;
    *w = W / 4;
    for (int i = 0; i < s; i++) {
        *h = (*h + 1) / 2;
        *w = (*w + 1) / 2;
    }
}

static int64_t padded(int64_t x) { return (x + SWIN_WIN - 1) / SWIN_WIN * SWIN_WIN; }

/* ================================================================================================
 * forward
 * ================================================================================================ */

/* Window attention of one block on the normed map t (N, h, w, C), added onto cur (N, h, w, C). */
static sarco_status attention_forward(sarco_backend *be, swin *m, const swin_block *k, int64_t n, int64_t h,
                                      int64_t w, int64_t C, int64_t heads, int shifted) {
    const sarco_backend_ops *op = be->ops;
    swin_ws *ws = &m->ws;
    /* torchvision: no shift on an axis whose padded size the window already covers */
    const sarco_swin_desc d = {.n = n, .h = h, .w = w, .c = C, .win = {SWIN_WIN, SWIN_WIN},
                               .shift = {shifted && SWIN_WIN < padded(h) ? SWIN_SHIFT : 0,
                                         shifted && SWIN_WIN < padded(w) ? SWIN_SHIFT : 0}};
    const int64_t L = SWIN_WIN * SWIN_WIN, nb = n * (padded(h) / SWIN_WIN) * (padded(w) / SWIN_WIN);
    TRY(op->swin_partition(be, &d, ws->t, ws->win));                  /* pad, roll, windows */
    TRY(op->linear_run(be, k->qkv, nb * L, ws->win, NULL, ws->qkv)); /* (nb, L, 3C) = (3, heads, dh) per token */
    /* softmax(q dh^-0.5 K^T + bias + mask) V per window and head, in one op: each score row is 49 long,
     * too small for a batched gemm (oneDNN 2.6 ran the strided (window, 49, 32) batches at ~0.3 GFLOP/s) */
    TRY(op->swin_attention(be, &d, heads, k->table, ws->qkv, ws->heads));
    TRY(op->linear_run(be, k->proj, nb * L, ws->heads, NULL, ws->win));
    return op->swin_reverse(be, &d, ws->win, ws->cur, ws->cur); /* windows back, roll back, crop, + x */
}

static sarco_status workspace(sarco_context *ctx, swin *m, int64_t n, int64_t H, int64_t W);

/* features + final norm: x (N, 3, H, W) PyTorch layout -> *A = ws.feat (N, h, w, 768) channels-last */
static sarco_status swin_features(sarco_context *ctx, void *state, const int64_t *in, const float *x, const float **A,
                                  int64_t *a_shape) {
    swin *m = state;
    sarco_backend *be = ctx->be;
    const sarco_backend_ops *op = be->ops;
    const int64_t n = in[0], H = in[2], W = in[3];
    TRY(workspace(ctx, m, n, H, W));
    swin_ws *ws = &m->ws;
    TRY(op->to_cl(be, n, 3, H * W, x, ws->x));
    int64_t sp[3] = {H, W, 1}, h, w;
    TRY(op->conv_run(be, m->embed, n, sp, ws->x, NULL, ws->t)); /* (N, H/4, W/4, 96) */
    stage_size(H, W, 0, &h, &w);
    TRY(op->layernorm(be, n * h * w, swin_dims[0], ws->t, m->embed_g, m->embed_b, SWIN_EPS, ws->cur));
    for (int s = 0; s < SWIN_STAGES; s++) {
        const int64_t C = swin_dims[s], rows = n * h * w;
        for (int b = 0; b < swin_depths[s]; b++) {
            const swin_block *k = &m->blk[s][b];
            TRY(op->layernorm(be, rows, C, ws->cur, k->n1_g, k->n1_b, SWIN_EPS, ws->t)); /* norm1 */
            TRY(attention_forward(be, m, k, n, h, w, C, swin_heads[s], b % 2 == 1));  /* x + attn */
            TRY(op->layernorm(be, rows, C, ws->cur, k->n2_g, k->n2_b, SWIN_EPS, ws->t)); /* norm2 */
            TRY(op->linear_run(be, k->fc1, rows, ws->t, NULL, ws->mlp));              /* gelu(mlp.0) */
            TRY(op->linear_run(be, k->fc2, rows, ws->mlp, ws->cur, ws->cur));         /* x + mlp.3 */
        }
        if (s + 1 < SWIN_STAGES) { /* PatchMerging: gather (pad to even) -> LayerNorm(4C) -> Linear(4C, 2C) */
            TRY(op->patch_merge(be, n, h, w, C, ws->cur, ws->t));
            h = (h + 1) / 2;
            w = (w + 1) / 2;
            TRY(op->layernorm(be, n * h * w, 4 * C, ws->t, m->mg_g[s], m->mg_b[s], SWIN_EPS, ws->t));
            TRY(op->linear_run(be, m->mg[s], n * h * w, ws->t, NULL, ws->cur));
        }
    }
    TRY(op->layernorm(be, n * h * w, swin_dims[3], ws->cur, m->norm_g, m->norm_b, SWIN_EPS, ws->feat)); /* norm */
    *A = ws->feat;
    a_shape[0] = n;
    a_shape[1] = h;
    a_shape[2] = w;
    a_shape[3] = swin_dims[3];
    return SARCO_OK;
}

static sarco_status swin_features_shape(sarco_context *ctx, const void *state, const int64_t *in, int64_t *a_shape) {
    (void)state;
    TRY(tv_check_input(ctx, ARCH, in, 3));
    if (in[2] < 4 || in[3] < 4) /* the 4x4 patch embedding needs one patch */
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, ARCH ": the input must be at least 4x4, got %lldx%lld",
                          (long long)in[2], (long long)in[3]);
    a_shape[0] = in[0];
    stage_size(in[2], in[3], 3, &a_shape[1], &a_shape[2]);
    a_shape[3] = swin_dims[3];
    return SARCO_OK;
}

static sarco_head *swin_head(void *state) { return &((swin *)state)->head; }

static const sarco_classifier swin_classifier = {
    .target_layer = "norm",
    .features_shape = swin_features_shape,
    .features = swin_features,
    .head = swin_head,
};

/* x (N, 3, H, W) -> y (N, classes), backend memory */
static sarco_status swin_forward(sarco_context *ctx, void *state, int ndim, const int64_t *in, const float *x,
                                 float *y) {
    (void)ndim; /* checked by output_shape */
    return sarco_classifier_forward(ctx, &swin_classifier, state, in, x, y);
}

/* ================================================================================================
 * workspace
 * ================================================================================================ */

static void ws_free(sarco_backend *be, swin_ws *w) {
    float **all[] = {&w->x, &w->cur, &w->t, &w->win, &w->qkv, &w->heads, &w->mlp, &w->feat};
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

static sarco_status workspace(sarco_context *ctx, swin *m, int64_t n, int64_t H, int64_t W) {
    swin_ws *ws = &m->ws;
    if (ws->n == n && ws->h == H && ws->w == W) return SARCO_OK;
    ws_free(ctx->be, ws);
    /* per image: the largest map (a stage's, or a merge's 4C gather) and padded window matrix
     * (sizes are capped by output_shape, so nothing overflows) */
    int64_t map = 0, win = 0, h, w;
    for (int s = 0; s < SWIN_STAGES; s++) {
        stage_size(H, W, s, &h, &w);
        const int64_t C = swin_dims[s];
        if (h * w * C > map) map = h * w * C;
        if (s + 1 < SWIN_STAGES && (h + 1) / 2 * ((w + 1) / 2) * 4 * C > map) map = (h + 1) / 2 * ((w + 1) / 2) * 4 * C;
        if (padded(h) * padded(w) * C > win) win = padded(h) * padded(w) * C;
    }
    stage_size(H, W, 3, &h, &w);
    sarco_status s = SARCO_OK;
    ws_buf(ctx, n * H * W * 3, &ws->x, &s);
    ws_buf(ctx, n * map, &ws->cur, &s);
    ws_buf(ctx, n * map, &ws->t, &s);
    ws_buf(ctx, n * win, &ws->win, &s);
    ws_buf(ctx, 3 * n * win, &ws->qkv, &s);
    ws_buf(ctx, n * win, &ws->heads, &s);
    ws_buf(ctx, 4 * n * map, &ws->mlp, &s);
    ws_buf(ctx, n * h * w * swin_dims[3], &ws->feat, &s);
    if (s != SARCO_OK) {
        ws_free(ctx->be, ws);
        return s;
    }
    ws->n = n;
    ws->h = H;
    ws->w = W;
    return SARCO_OK;
}

/* ================================================================================================
 * weights: torchvision's state_dict names
 * ================================================================================================ */

static void walk(tv_walker *w, void *net) {
    swin *m = net;
    char p[TV_NAME_LEN];
    tv_conv(w, &m->embed, 3, swin_dims[0], 4, 4, 0, 1, 1, "features.0.0", NULL, SARCO_ACT_NONE);
    tv_layernorm(w, &m->embed_g, &m->embed_b, swin_dims[0], "features.0.2");
    for (int s = 0; s < SWIN_STAGES; s++) {
        const int64_t C = swin_dims[s];
        const int f = 1 + 2 * s;
        for (int b = 0; b < swin_depths[s]; b++) {
            swin_block *k = &m->blk[s][b];
            tv_name(p, "features.%d.%d.norm1", f, b);
            tv_layernorm(w, &k->n1_g, &k->n1_b, C, p);
            tv_name(p, "features.%d.%d.attn.qkv", f, b);
            tv_linear(w, &k->qkv, C, 3 * C, 1, SARCO_ACT_NONE, NULL, p);
            tv_name(p, "features.%d.%d.attn.proj", f, b);
            tv_linear(w, &k->proj, C, C, 1, SARCO_ACT_NONE, NULL, p);
            tv_name(p, "features.%d.%d.attn.relative_position_bias_table", f, b);
            tv_param(w, &k->table, SARCO_SHAPE(SWIN_TABLE, swin_heads[s]), p);
            tv_name(p, "features.%d.%d.norm2", f, b);
            tv_layernorm(w, &k->n2_g, &k->n2_b, C, p);
            tv_name(p, "features.%d.%d.mlp.0", f, b);
            tv_linear(w, &k->fc1, C, 4 * C, 1, SARCO_ACT_GELU, NULL, p);
            tv_name(p, "features.%d.%d.mlp.3", f, b);
            tv_linear(w, &k->fc2, 4 * C, C, 1, SARCO_ACT_NONE, NULL, p);
        }
        if (s + 1 < SWIN_STAGES) {
            tv_name(p, "features.%d.norm", f + 1);
            tv_layernorm(w, &m->mg_g[s], &m->mg_b[s], 4 * C, p);
            tv_name(p, "features.%d.reduction", f + 1);
            tv_linear(w, &m->mg[s], 4 * C, 2 * C, 0, SARCO_ACT_NONE, NULL, p);
        }
    }
    tv_layernorm(w, &m->norm_g, &m->norm_b, swin_dims[3], "norm");
}

/* The relative_position_index buffers torchvision stores are fixed by the window size: where a file has
 * them they must hold torchvision's index (the one kernels/swin_hd.h computes), else the file is refused. */
static sarco_status check_rel_index(sarco_context *ctx, const sarco_st_file *st) {
    const int64_t L = SWIN_WIN * SWIN_WIN;
    const sarco_swin_desc d = {.n = 1, .h = SWIN_WIN, .w = SWIN_WIN, .c = 1, .win = {SWIN_WIN, SWIN_WIN}};
    for (size_t i = 0; i < st->count; i++) {
        const sarco_st_tensor *t = &st->tensors[i];
        const char *suffix = ".attn.relative_position_index";
        const size_t ln = strlen(t->name), ls = strlen(suffix);
        if (ln < ls || strcmp(t->name + ln - ls, suffix) != 0) continue;
        if (t->ndim != 1 || t->shape[0] != L * L)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, ARCH ": %s must have shape (%lld), the 7x7 window's index",
                              t->name, (long long)(L * L));
        float *v = sarco_ctx_malloc(ctx, (size_t)(L * L) * sizeof(float), t->name);
        if (!v) return SARCO_ERR_OUT_OF_MEMORY;
        sarco_st_to_f32(st, t, v);
        int64_t bad = -1;
        for (int64_t q = 0; q < L * L && bad < 0; q++)
            if (v[q] != (float)sarco_hd_swin_rel_index(&d, q / L, q % L)) bad = q;
        sarco_ctx_free(ctx, v, (size_t)(L * L) * sizeof(float));
        if (bad >= 0)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                              ARCH ": %s differs from torchvision's relative position index at entry %lld", t->name,
                              (long long)bad);
    }
    return SARCO_OK;
}

/* ================================================================================================
 * the sarco_arch interface
 * ================================================================================================ */

static void swin_free(sarco_context *ctx, void *state) {
    swin *m = state;
    if (!m) return;
    tv_free_weights(ctx, walk, m, &m->head);
    ws_free(ctx->be, &m->ws);
    free(m);
}

/* torchvision.models.swin_t(weights=None, progress=True, num_classes=1000, dropout=0.0, attention_dropout=0.0,
 * stochastic_depth_prob=0.2): only num_classes changes the tensors (without the kwarg: the head's rows). */
static sarco_status swin_load(sarco_context *ctx, const json_t *kwargs, const sarco_st_file *st, void **state) {
    static const char *const known[] = {"num_classes", "stochastic_depth_prob", "dropout", "attention_dropout",
                                        "weights", "progress", NULL};
    *state = NULL;
    TRY(tv_kw_known(ctx, ARCH, kwargs, known));
    const json_t *wt = json_object_get(kwargs, "weights");
    if (wt && !json_is_null(wt))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, ARCH ": kwarg weights must be null (the file holds them)");
    TRY(check_rel_index(ctx, st));
    swin *m = calloc(1, sizeof *m);
    if (!m) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, ARCH ": out of memory");
    sarco_status s = tv_num_classes(ctx, ARCH, kwargs, st, "head.weight", &m->classes);
    if (s == SARCO_OK) {
        sarco_head_init(&m->head, swin_dims[3]);
        sarco_head_add_global_avg_pool(&m->head);
        sarco_head_add_linear(&m->head, "head", m->classes, SARCO_ACT_NONE);
        static const char *const ignore[] = {"features.*.attn.relative_position_index", NULL}; /* checked above */
        s = tv_load_weights(ctx, ARCH, st, walk, m, &m->head, ignore);
    }
    if (s != SARCO_OK) {
        free(m); /* tv_load_weights freed what it had prepared */
        return s;
    }
    *state = m;
    return SARCO_OK;
}

static sarco_status swin_output_shape(sarco_context *ctx, const void *state, int ndim, const int64_t *in,
                                      int64_t *out) {
    return tv_output_shape(ctx, &swin_classifier, state, ndim, in, out);
}

SARCO_INTERNAL const sarco_arch sarco_arch_swin_t = {
    .name = ARCH,
    .load = swin_load,
    .output_shape = swin_output_shape,
    .forward = swin_forward,
    .free = swin_free,
    .classifier = &swin_classifier,
};
