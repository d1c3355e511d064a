/* torchvision DenseNet-121 (torchvision/models/densenet.py: growth 32, blocks (6, 12, 24, 16), 64 initial
 * features, bn_size 4), eval mode.
 *
 * features: conv0 7x7/2 + norm0 + relu0 (folded into conv0) -> pool0 max 3x3/2 pad 1 -> denseblock1,
 * transition1, ..., denseblock4 -> norm5. A dense layer is pre-activation: norm1 + relu1 (a channel
 * affine with the ReLU fused: it precedes its conv, so it cannot fold) -> conv1 1x1 -> norm2 + relu2
 * (folded into conv1) -> conv2 3x3 pad 1; its 32 new channels are appended to the block's input
 * (torch.cat along channels, here a concat into the other of two buffers). A transition is
 * norm + relu (affine) -> conv 1x1 halving the channels -> avg pool 2x2/2.
 *
 * Grad-CAM target (A): features.norm5's output, i.e. BEFORE the ReLU that DenseNet.forward applies
 * (F.relu(features)) -- the module pytorch-grad-cam users pick as model.features[-1]; (N, h, w, 1024).
 * Head: ReLU -> adaptive avg pool (1, 1) -> flatten -> classifier (Linear(1024, num_classes)).
 */
#include <stdlib.h>
#include <string.h>

#include "tvnet.h"

#define ARCH "torchvision.densenet121"
#define GROWTH 32
#define LAYERS (6 + 12 + 24 + 16)
static const int block_layers[4] = {6, 12, 24, 16};

typedef struct dense_layer {
    int64_t cin;
    float *n1_scale, *n1_shift; /* norm1 as an affine, ReLU fused */
    sarco_conv *c1;             /* conv1 1x1 with norm2 folded, ReLU */
    sarco_conv *c2;             /* conv2 3x3 */
} dense_layer;

typedef struct transition {
    int64_t cin, cout;
    float *scale, *shift;
    sarco_conv *conv;
} transition;

typedef struct densenet {
    int64_t in_ch, classes, bottleneck; /* bottleneck = bn_size * growth */
    sarco_conv *conv0;
    dense_layer layer[LAYERS];
    transition tr[3];
    float *n5_scale, *n5_shift;
    sarco_head head;
    tv_ws ws;
} densenet;

/* ================================================================================================
 * shapes
 * ================================================================================================ */

static sarco_status densenet_shapes(sarco_context *ctx, const densenet *d, const int64_t *in, int64_t *a,
                                    int64_t *maxel) {
    TV_TRY(tv_check_input(ctx, ARCH, in, d->in_ch));
    const int64_t n = in[0];
    int64_t h = in[2], w = in[3], m = n * h * w * d->in_ch;
    h = tv_out(h, 7, 2, 3), w = tv_out(w, 7, 2, 3);
    if (n * h * w * 64 > m) m = n * h * w * 64;
    h = tv_out(h, 3, 2, 1), w = tv_out(w, 3, 2, 1);
    int64_t c = 64;
    for (int b = 0; b < 4; b++) {
        if (n * h * w * d->bottleneck > m) m = n * h * w * d->bottleneck;
        c += block_layers[b] * GROWTH;
        if (n * h * w * c > m) m = n * h * w * c;
        if (b < 3) {
            c /= 2;
            h /= 2, w /= 2; /* avg pool 2x2/2 */
            if (h < 1 || w < 1)
                return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, ARCH ": the input %lldx%lld is too small (at least 32x32)",
                                  (long long)in[2], (long long)in[3]);
        }
    }
    a[0] = n, a[1] = h, a[2] = w, a[3] = c;
    if (maxel) *maxel = m;
    return SARCO_OK;
}

static sarco_status densenet_features_shape(sarco_context *ctx, const void *state, const int64_t *in, int64_t *a) {
    return densenet_shapes(ctx, state, in, a, NULL);
}

/* ================================================================================================
 * forward
 * ================================================================================================ */

/* x (N, C, H, W) -> A (N, h, w, 1024) = norm5(features), before the final ReLU */
static sarco_status densenet_features(sarco_context *ctx, void *state, const int64_t *in, const float *x,
                                      const float **A, int64_t *a) {
    densenet *d = state;
    sarco_backend *be = ctx->be;
    const sarco_backend_ops *op = be->ops;
    int64_t maxel = 0;
    TV_TRY(densenet_shapes(ctx, d, in, a, &maxel));
    TV_TRY(tv_ws_ensure(ctx, &d->ws, 5, maxel));
    float **B = d->ws.b; /* B[0], B[1]: the growing block map (ping-pong); B[2..4]: scratch */
    const int64_t n = in[0];
    int64_t sp[2] = {in[2], in[3]};

    TV_TRY(op->to_cl(be, n, d->in_ch, sp[0] * sp[1], x, B[0]));
    TV_TRY(op->conv_run(be, d->conv0, n, sp, B[0], NULL, B[1])); /* relu0(norm0(conv0 x)) */
    sp[0] = tv_out(sp[0], 7, 2, 3), sp[1] = tv_out(sp[1], 7, 2, 3);
    const sarco_pool_desc mp = {.nsp = 2, .kind = SARCO_POOL_MAX, .k = {3, 3, 1}, .stride = {2, 2, 1},
                                .pad = {1, 1, 0}};
    TV_TRY(op->pool(be, &mp, n, 64, sp, B[1], B[0])); /* pool0 */
    sp[0] = tv_out(sp[0], 3, 2, 1), sp[1] = tv_out(sp[1], 3, 2, 1);

    int cat = 0, l = 0;
    int64_t c = 64;
    for (int b = 0; b < 4; b++) {
        for (int j = 0; j < block_layers[b]; j++, l++) {
            const dense_layer *L = &d->layer[l];
            const int64_t rows = n * sp[0] * sp[1];
            TV_TRY(op->channel_affine(be, rows, c, B[cat], L->n1_scale, L->n1_shift, SARCO_ACT_RELU, 0.0f,
                                      B[2]));                             /* relu1(norm1(cat)) */
            TV_TRY(op->conv_run(be, L->c1, n, sp, B[2], NULL, B[3]));     /* relu2(norm2(conv1 .)) */
            TV_TRY(op->conv_run(be, L->c2, n, sp, B[3], NULL, B[4]));     /* conv2: (N, h, w, 32) */
            const float *parts[2] = {B[cat], B[4]};
            const int64_t sizes[2] = {c, GROWTH};
            TV_TRY(op->concat(be, 2, parts, sizes, rows, 1, B[1 - cat])); /* torch.cat([x, new], 1) */
            cat = 1 - cat;
            c += GROWTH;
        }
        if (b < 3) {
            const transition *t = &d->tr[b];
            TV_TRY(op->channel_affine(be, n * sp[0] * sp[1], c, B[cat], t->scale, t->shift, SARCO_ACT_RELU, 0.0f,
                                      B[2]));
            TV_TRY(op->conv_run(be, t->conv, n, sp, B[2], NULL, B[3])); /* conv 1x1: c -> c / 2 */
            c = t->cout;
            const sarco_pool_desc ap = {.nsp = 2, .kind = SARCO_POOL_AVG, .k = {2, 2, 1}, .stride = {2, 2, 1},
                                        .count_include_pad = 1};
            TV_TRY(op->pool(be, &ap, n, c, sp, B[3], B[cat]));
            sp[0] /= 2, sp[1] /= 2;
        }
    }
    TV_TRY(op->channel_affine(be, n * sp[0] * sp[1], c, B[cat], d->n5_scale, d->n5_shift, SARCO_ACT_NONE, 0.0f,
                              B[2])); /* norm5 */
    *A = B[2];
    return SARCO_OK;
}

static sarco_head *densenet_head(void *state) { return &((densenet *)state)->head; }

static const sarco_classifier densenet_classifier = {
    .target_layer = "features.norm5",
    .features_shape = densenet_features_shape,
    .features = densenet_features,
    .head = densenet_head,
};

/* ================================================================================================
 * weights
 * ================================================================================================ */

static void densenet_walk(tv_walker *wk, void *net) {
    densenet *d = net;
    char p[TV_NAME_LEN], c[TV_NAME_LEN], bn[TV_NAME_LEN];
    tv_conv(wk, &d->conv0, d->in_ch, 64, 7, 2, 3, 1, 0, "features.conv0", "features.norm0", SARCO_ACT_RELU);
    int l = 0;
    for (int b = 0; b < 4; b++) {
        for (int j = 0; j < block_layers[b]; j++, l++) {
            dense_layer *L = &d->layer[l];
            tv_name(p, "features.denseblock%d.denselayer%d", b + 1, j + 1);
            tv_name(bn, "%s.norm1", p);
            tv_bn_affine(wk, &L->n1_scale, &L->n1_shift, L->cin, bn);
            tv_name(c, "%s.conv1", p);
            tv_name(bn, "%s.norm2", p);
            tv_conv(wk, &L->c1, L->cin, d->bottleneck, 1, 1, 0, 1, 0, c, bn, SARCO_ACT_RELU);
            tv_name(c, "%s.conv2", p);
            tv_conv(wk, &L->c2, d->bottleneck, GROWTH, 3, 1, 1, 1, 0, c, NULL, SARCO_ACT_NONE);
        }
        if (b < 3) {
            transition *t = &d->tr[b];
            tv_name(bn, "features.transition%d.norm", b + 1);
            tv_bn_affine(wk, &t->scale, &t->shift, t->cin, bn);
            tv_name(c, "features.transition%d.conv", b + 1);
            tv_conv(wk, &t->conv, t->cin, t->cout, 1, 1, 0, 1, 0, c, NULL, SARCO_ACT_NONE);
        }
    }
    tv_bn_affine(wk, &d->n5_scale, &d->n5_shift, 1024, "features.norm5");
}

static void densenet_free(sarco_context *ctx, void *state) {
    densenet *d = state;
    if (!d) return;
    tv_free_weights(ctx, densenet_walk, d, &d->head);
    tv_ws_free(ctx->be, &d->ws);
    free(d);
}

static sarco_status densenet_load(sarco_context *ctx, const json_t *kw, const sarco_st_file *st, void **state) {
    *state = NULL;
    static const char *const known[] = {"num_classes", "bn_size", "drop_rate", "memory_efficient", NULL};
    TV_TRY(tv_kw_known(ctx, ARCH, kw, known));
    int64_t classes, bn_size;
    TV_TRY(tv_kw_int(ctx, ARCH, kw, "bn_size", 4, 1, 64, &bn_size));
    TV_TRY(tv_num_classes(ctx, ARCH, kw, st, "classifier.weight", &classes));
    densenet *d = calloc(1, sizeof *d);
    if (!d) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, ARCH ": out of memory");
    d->in_ch = tv_in_channels(st, "features.conv0.weight");
    d->classes = classes;
    d->bottleneck = bn_size * GROWTH;
    int64_t c = 64;
    int l = 0;
    for (int b = 0; b < 4; b++) {
        for (int j = 0; j < block_layers[b]; j++, l++) {
            d->layer[l].cin = c;
            c += GROWTH;
        }
        if (b < 3) {
            d->tr[b].cin = c;
            d->tr[b].cout = c / 2;
            c /= 2;
        }
    }
    sarco_head_init(&d->head, c);
    sarco_head_add_relu(&d->head);
    sarco_head_add_global_avg_pool(&d->head);
    sarco_head_add_linear(&d->head, "classifier", classes, SARCO_ACT_NONE);
    sarco_status s = tv_load_weights(ctx, ARCH, st, densenet_walk, d, &d->head, NULL);
    if (s != SARCO_OK) {
        free(d);
        return s;
    }
    *state = d;
    return SARCO_OK;
}

static sarco_status densenet_output_shape(sarco_context *ctx, const void *state, int ndim, const int64_t *in,
                                          int64_t *out) {
    return tv_output_shape(ctx, &densenet_classifier, state, ndim, in, out);
}

static sarco_status densenet_forward(sarco_context *ctx, void *state, int ndim, const int64_t *in, const float *x,
                                     float *y) {
    (void)ndim;
    return sarco_classifier_forward(ctx, &densenet_classifier, state, in, x, y);
}

SARCO_INTERNAL const sarco_arch sarco_arch_densenet121 = {
    .name = ARCH,
    .load = densenet_load,
    .output_shape = densenet_output_shape,
    .forward = densenet_forward,
    .free = densenet_free,
    .classifier = &densenet_classifier,
};
