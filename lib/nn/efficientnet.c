/* torchvision EfficientNet-B0 (torchvision/models/efficientnet.py, width and depth multipliers 1.0),
 * eval mode: stochastic depth and dropout are identities.
 *
 * features.0: conv 3x3/2 + BN + SiLU (32 channels); features.1..7: MBConv stages
 *   (expand ratio, kernel, stride, in, out, layers) = (1,3,1,32,16,1) (6,3,2,16,24,2) (6,5,2,24,40,2)
 *   (6,3,2,40,80,3) (6,5,1,80,112,3) (6,5,2,112,192,4) (6,3,1,192,320,1);
 * features.8: conv 1x1 320 -> 1280 + BN + SiLU.
 * MBConv ("features.<s>.<j>.block.<i>"): [expand 1x1 + BN + SiLU, when the ratio is not 1] -> depthwise
 * kxk/stride + BN + SiLU -> squeeze-excitation (global avg pool -> fc1 1x1 conv -> SiLU -> fc2 1x1 conv
 * -> sigmoid -> channel scale; squeeze channels = max(1, block input channels // 4)) -> project 1x1 + BN
 * (+ the block input when stride 1 and in == out). Every BN folds into its conv; the SE convs run as
 * linears on the pooled vector and the scale is a broadcasting multiply (binary MUL).
 *
 * Grad-CAM target (A): features[-1] = features.8's output (after its SiLU), (N, h, w, 1280).
 * Head: avgpool (global) -> flatten -> classifier = Dropout, Linear(1280, num_classes).
 */
#include <stdlib.h>
#include <string.h>

#include "tvnet.h"

#define ARCH "torchvision.efficientnet_b0"
#define STAGES 7
#define BLOCKS 16

static const struct {
    int expand, k, stride, cin, cout, layers;
} stage_cfg[STAGES] = {{1, 3, 1, 32, 16, 1},   {6, 3, 2, 16, 24, 2},   {6, 5, 2, 24, 40, 2}, {6, 3, 2, 40, 80, 3},
                       {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4}, {6, 3, 1, 192, 320, 1}};

typedef struct mbconv {
    int64_t cin, exp, cout, sq, k, stride;
    int residual;
    sarco_conv *expand; /* NULL when the ratio is 1 */
    sarco_conv *dw, *project;
    sarco_linear *fc1, *fc2; /* SE: SiLU and sigmoid fused */
} mbconv;

typedef struct effnet {
    int64_t in_ch, classes;
    sarco_conv *stem, *top;
    mbconv blk[BLOCKS];
    sarco_head head;
    tv_ws ws;  /* maps */
    tv_ws vec; /* SE vectors */
} effnet;

/* ================================================================================================
 * shapes
 * ================================================================================================ */

static sarco_status eff_shapes(sarco_context *ctx, const effnet *e, const int64_t *in, int64_t *a, int64_t *maxel) {
    TV_TRY(tv_check_input(ctx, ARCH, in, e->in_ch));
    const int64_t n = in[0];
    int64_t h = tv_out(in[2], 3, 2, 1), w = tv_out(in[3], 3, 2, 1), m = n * in[2] * in[3] * e->in_ch;
    if (n * h * w * 32 > m) m = n * h * w * 32;
    for (int i = 0; i < BLOCKS; i++) {
        const mbconv *b = &e->blk[i];
        if (n * h * w * b->exp > m) m = n * h * w * b->exp;
        h = tv_out(h, b->k, b->stride, (b->k - 1) / 2), w = tv_out(w, b->k, b->stride, (b->k - 1) / 2);
    }
    if (n * h * w * 1280 > m) m = n * h * w * 1280;
    a[0] = n, a[1] = h, a[2] = w, a[3] = 1280;
    if (maxel) *maxel = m;
    return SARCO_OK;
}

static sarco_status eff_features_shape(sarco_context *ctx, const void *state, const int64_t *in, int64_t *a) {
    return eff_shapes(ctx, state, in, a, NULL);
}

/* ================================================================================================
 * forward
 * ================================================================================================ */

/* Squeeze-excitation in place on x (N, h, w, C): x *= sigmoid(fc2(silu(fc1(mean_hw x)))) per (n, c). */
static sarco_status squeeze_excite(sarco_backend *be, effnet *e, const mbconv *b, int64_t n, const int64_t *sp,
                                   float *x) {
    const sarco_backend_ops *op = be->ops;
    float *pooled = e->vec.b[0], *hidden = e->vec.b[1], *scale = e->vec.b[2];
    const sarco_pool_desc gp = {.nsp = 2, .kind = SARCO_POOL_AVG, .k = {sp[0], sp[1], 1}, .stride = {1, 1, 1},
                                .count_include_pad = 1};
    TV_TRY(op->pool(be, &gp, n, b->exp, sp, x, pooled));              /* (N, C) */
    TV_TRY(op->linear_run(be, b->fc1, n, pooled, NULL, hidden));      /* silu(fc1): (N, sq) */
    TV_TRY(op->linear_run(be, b->fc2, n, hidden, NULL, scale));       /* sigmoid(fc2): (N, C) */
    const int64_t hw = sp[0] * sp[1];
    const sarco_bcast_desc d = {.ndim = 3, .shape = {n, hw, b->exp}, .sa = {hw * b->exp, b->exp, 1},
                                .sb = {b->exp, 0, 1}};
    return op->binary(be, SARCO_BIN_MUL, &d, x, scale, x);
}

/* x (N, C, H, W) -> A (N, h, w, 1280), features.8's output */
static sarco_status eff_features(sarco_context *ctx, void *state, const int64_t *in, const float *x, const float **A,
                                 int64_t *a) {
    effnet *e = state;
    sarco_backend *be = ctx->be;
    const sarco_backend_ops *op = be->ops;
    int64_t maxel = 0;
    TV_TRY(eff_shapes(ctx, e, in, a, &maxel));
    TV_TRY(tv_ws_ensure(ctx, &e->ws, 4, maxel));
    TV_TRY(tv_ws_ensure(ctx, &e->vec, 3, in[0] * 1152)); /* the widest expansion */
    float **B = e->ws.b;
    const int64_t n = in[0];
    int64_t sp[2] = {in[2], in[3]};

    TV_TRY(op->to_cl(be, n, e->in_ch, sp[0] * sp[1], x, B[2]));
    TV_TRY(op->conv_run(be, e->stem, n, sp, B[2], NULL, B[0])); /* features.0: silu(bn(conv)) */
    sp[0] = tv_out(sp[0], 3, 2, 1), sp[1] = tv_out(sp[1], 3, 2, 1);

    int cur = 0;
    for (int i = 0; i < BLOCKS; i++) {
        const mbconv *b = &e->blk[i];
        const int out = 1 - cur;
        const float *xin = B[cur];
        if (b->expand) {
            TV_TRY(op->conv_run(be, b->expand, n, sp, B[cur], NULL, B[2])); /* silu(bn(expand 1x1)) */
            xin = B[2];
        }
        TV_TRY(op->conv_run(be, b->dw, n, sp, xin, NULL, B[3])); /* silu(bn(depthwise kxk/stride)) */
        const int64_t so[2] = {tv_out(sp[0], b->k, b->stride, (b->k - 1) / 2),
                               tv_out(sp[1], b->k, b->stride, (b->k - 1) / 2)};
        TV_TRY(squeeze_excite(be, e, b, n, so, B[3]));
        TV_TRY(op->conv_run(be, b->project, n, so, B[3], b->residual ? B[cur] : NULL, B[out])); /* bn(project) [+ x] */
        sp[0] = so[0], sp[1] = so[1];
        cur = out;
    }
    TV_TRY(op->conv_run(be, e->top, n, sp, B[cur], NULL, B[1 - cur])); /* features.8: silu(bn(conv 1x1)) */
    *A = B[1 - cur];
    return SARCO_OK;
}

static sarco_head *eff_head(void *state) { return &((effnet *)state)->head; }

static const sarco_classifier eff_classifier = {
    .target_layer = "features.8",
    .features_shape = eff_features_shape,
    .features = eff_features,
    .head = eff_head,
};

/* ================================================================================================
 * weights
 * ================================================================================================ */

static void eff_walk(tv_walker *wk, void *net) {
    effnet *e = net;
    char p[TV_NAME_LEN], c[TV_NAME_LEN], bn[TV_NAME_LEN];
    tv_conv(wk, &e->stem, e->in_ch, 32, 3, 2, 1, 1, 0, "features.0.0", "features.0.1", SARCO_ACT_SILU);
    int i = 0;
    for (int s = 0; s < STAGES; s++)
        for (int j = 0; j < stage_cfg[s].layers; j++, i++) {
            mbconv *b = &e->blk[i];
            int m = 0; /* index inside block */
            tv_name(p, "features.%d.%d.block", s + 1, j);
            if (b->exp != b->cin) {
                tv_name(c, "%s.%d.0", p, m);
                tv_name(bn, "%s.%d.1", p, m);
                tv_conv(wk, &b->expand, b->cin, b->exp, 1, 1, 0, 1, 0, c, bn, SARCO_ACT_SILU);
                m++;
            }
            tv_name(c, "%s.%d.0", p, m);
            tv_name(bn, "%s.%d.1", p, m);
            tv_conv(wk, &b->dw, b->exp, b->exp, b->k, b->stride, (b->k - 1) / 2, b->exp, 0, c, bn, SARCO_ACT_SILU);
            m++;
            tv_name(c, "%s.%d.fc1", p, m);
            tv_conv1x1_linear(wk, &b->fc1, b->exp, b->sq, SARCO_ACT_SILU, c);
            tv_name(c, "%s.%d.fc2", p, m);
            tv_conv1x1_linear(wk, &b->fc2, b->sq, b->exp, SARCO_ACT_SIGMOID, c);
            m++;
            tv_name(c, "%s.%d.0", p, m);
            tv_name(bn, "%s.%d.1", p, m);
            tv_conv(wk, &b->project, b->exp, b->cout, 1, 1, 0, 1, 0, c, bn, SARCO_ACT_NONE);
        }
    tv_conv(wk, &e->top, 320, 1280, 1, 1, 0, 1, 0, "features.8.0", "features.8.1", SARCO_ACT_SILU);
}

static void eff_free(sarco_context *ctx, void *state) {
    effnet *e = state;
    if (!e) return;
    tv_free_weights(ctx, eff_walk, e, &e->head);
    tv_ws_free(ctx->be, &e->ws);
    tv_ws_free(ctx->be, &e->vec);
    free(e);
}

static sarco_status eff_load(sarco_context *ctx, const json_t *kw, const sarco_st_file *st, void **state) {
    *state = NULL;
    static const char *const known[] = {"num_classes", "dropout", "stochastic_depth_prob", NULL};
    TV_TRY(tv_kw_known(ctx, ARCH, kw, known));
    int64_t classes;
    TV_TRY(tv_num_classes(ctx, ARCH, kw, st, "classifier.1.weight", &classes));
    effnet *e = calloc(1, sizeof *e);
    if (!e) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, ARCH ": out of memory");
    e->in_ch = tv_in_channels(st, "features.0.0.weight");
    e->classes = classes;
    int i = 0;
    for (int s = 0; s < STAGES; s++)
        for (int j = 0; j < stage_cfg[s].layers; j++, i++) {
            mbconv *b = &e->blk[i];
            b->cin = j ? stage_cfg[s].cout : stage_cfg[s].cin; /* later blocks of a stage: in = out, stride 1 */
            b->cout = stage_cfg[s].cout;
            b->exp = b->cin * stage_cfg[s].expand;
            b->sq = b->cin / 4 > 1 ? b->cin / 4 : 1;
            b->k = stage_cfg[s].k;
            b->stride = j ? 1 : stage_cfg[s].stride;
            b->residual = b->stride == 1 && b->cin == b->cout;
        }
    sarco_head_init(&e->head, 1280);
    sarco_head_add_global_avg_pool(&e->head);
    sarco_head_add_dropout(&e->head);
    sarco_head_add_linear(&e->head, "classifier.1", classes, SARCO_ACT_NONE);
    sarco_status s = tv_load_weights(ctx, ARCH, st, eff_walk, e, &e->head, NULL);
    if (s != SARCO_OK) {
        free(e);
        return s;
    }
    *state = e;
    return SARCO_OK;
}

static sarco_status eff_output_shape(sarco_context *ctx, const void *state, int ndim, const int64_t *in, int64_t *out) {
    return tv_output_shape(ctx, &eff_classifier, state, ndim, in, out);
}

static sarco_status eff_forward(sarco_context *ctx, void *state, int ndim, const int64_t *in, const float *x, float *y) {
    (void)ndim;
    return sarco_classifier_forward(ctx, &eff_classifier, state, in, x, y);
}

SARCO_INTERNAL const sarco_arch sarco_arch_efficientnet_b0 = {
    .name = ARCH,
    .load = eff_load,
    .output_shape = eff_output_shape,
    .forward = eff_forward,
    .free = eff_free,
    .classifier = &eff_classifier,
};
