/* torchvision VGG-19 and VGG-19-BN (torchvision/models/vgg.py, cfg "E"), eval mode.
 *
 * features: 16 conv 3x3 pad 1 (+ BatchNorm for _bn, folded at load) + ReLU, with a 2x2/2 max pool after
 * convs 2, 4, 8, 12 and 16 -- "features.<i>" numbered as nn.Sequential numbers them (conv, [bn,] relu, and
 * pool each take an index). The input may be any size >= 32 (five halvings).
 *
 * Grad-CAM target (A): features[-1], the last max pool ("features.36"; "features.52" with BatchNorm),
 * (N, H/32, W/32, 512).
 * Head: avgpool = AdaptiveAvgPool2d((7, 7)) -- from a smaller map (112: 3x3, 84: 2x2) the windows repeat
 * input cells, as in PyTorch -- then flatten (c*49 + i*7 + j) and classifier = Linear(25088, 4096), ReLU,
 * Dropout, Linear(4096, 4096), ReLU, Dropout, Linear(4096, num_classes).
 */
#include <stdlib.h>
#include <string.h>

#include "tvnet.h"

#define VGG_CONVS 16
#define POOL (-1)
static const int cfg_e[] = {64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL,
                            512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL};
#define CFG_LEN ((int)(sizeof cfg_e / sizeof cfg_e[0]))

typedef struct vgg {
    const char *arch;
    int bn;
    int64_t in_ch, classes;
    sarco_conv *conv[VGG_CONVS];
    sarco_head head;
    tv_ws ws;
} vgg;

/* ================================================================================================
 * shapes
 * ================================================================================================ */

static sarco_status vgg_shapes(sarco_context *ctx, const vgg *v, const int64_t *in, int64_t *a, int64_t *maxel) {
    TV_TRY(tv_check_input(ctx, v->arch, in, v->in_ch));
    int64_t h = in[2], w = in[3], c = v->in_ch, m = in[0] * h * w * c;
    for (int i = 0; i < CFG_LEN; i++) {
        if (cfg_e[i] == POOL) {
            h /= 2, w /= 2; /* 2x2/2, floor */
            if (h < 1 || w < 1)
                return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: the input %lldx%lld is too small (at least 32x32)",
                                  v->arch, (long long)in[2], (long long)in[3]);
        } else {
            c = cfg_e[i];
        }
        if (in[0] * h * w * c > m) m = in[0] * h * w * c;
    }
    a[0] = in[0], a[1] = h, a[2] = w, a[3] = 512;
    if (maxel) *maxel = m;
    return SARCO_OK;
}

static sarco_status vgg_features_shape(sarco_context *ctx, const void *state, const int64_t *in, int64_t *a) {
    return vgg_shapes(ctx, state, in, a, NULL);
}

/* ================================================================================================
 * forward
 * ================================================================================================ */

/* x (N, C, H, W) -> A (N, h, w, 512), the last max pool's output */
static sarco_status vgg_features(sarco_context *ctx, void *state, const int64_t *in, const float *x, const float **A,
                                 int64_t *a) {
    vgg *v = state;
    sarco_backend *be = ctx->be;
    const sarco_backend_ops *op = be->ops;
    int64_t maxel = 0;
    TV_TRY(vgg_shapes(ctx, v, in, a, &maxel));
    TV_TRY(tv_ws_ensure(ctx, &v->ws, 2, maxel));
    float **B = v->ws.b;
    const int64_t n = in[0];
    int64_t sp[2] = {in[2], in[3]}, c = v->in_ch;
    TV_TRY(op->to_cl(be, n, c, sp[0] * sp[1], x, B[0])); /* (N, H, W, C) */
    int cur = 0, k = 0;
    const sarco_pool_desc mp = {.nsp = 2, .kind = SARCO_POOL_MAX, .k = {2, 2, 1}, .stride = {2, 2, 1}};
    for (int i = 0; i < CFG_LEN; i++) {
        if (cfg_e[i] == POOL) {
            TV_TRY(op->pool(be, &mp, n, c, sp, B[cur], B[1 - cur]));
            sp[0] /= 2, sp[1] /= 2;
        } else {
            TV_TRY(op->conv_run(be, v->conv[k++], n, sp, B[cur], NULL, B[1 - cur])); /* relu([bn](conv x)) */
            c = cfg_e[i];
        }
        cur = 1 - cur;
    }
    *A = B[cur];
    return SARCO_OK;
}

static sarco_head *vgg_head(void *state) { return &((vgg *)state)->head; }

static const sarco_classifier vgg19_classifier = {
    .target_layer = "features.36",
    .features_shape = vgg_features_shape,
    .features = vgg_features,
    .head = vgg_head,
};

static const sarco_classifier vgg19_bn_classifier = {
    .target_layer = "features.52",
    .features_shape = vgg_features_shape,
    .features = vgg_features,
    .head = vgg_head,
};

/* ================================================================================================
 * weights
 * ================================================================================================ */

static void vgg_walk(tv_walker *wk, void *net) {
    vgg *v = net;
    char c[TV_NAME_LEN], bn[TV_NAME_LEN];
    int idx = 0, k = 0;
    int64_t cin = v->in_ch;
    for (int i = 0; i < CFG_LEN; i++) {
        if (cfg_e[i] == POOL) {
            idx++;
            continue;
        }
        tv_name(c, "features.%d", idx);
        tv_name(bn, "features.%d", idx + 1);
        tv_conv(wk, &v->conv[k++], cin, cfg_e[i], 3, 1, 1, 1, 1, c, v->bn ? bn : NULL, SARCO_ACT_RELU);
        cin = cfg_e[i];
        idx += v->bn ? 3 : 2;
    }
}

static void vgg_free(sarco_context *ctx, void *state) {
    vgg *v = state;
    if (!v) return;
    tv_free_weights(ctx, vgg_walk, v, &v->head);
    tv_ws_free(ctx->be, &v->ws);
    free(v);
}

static sarco_status vgg_load_common(sarco_context *ctx, const char *arch, int bn, const json_t *kw,
                                    const sarco_st_file *st, void **state) {
    *state = NULL;
    static const char *const known[] = {"num_classes", "init_weights", "dropout", NULL};
    TV_TRY(tv_kw_known(ctx, arch, kw, known));
    int64_t classes;
    TV_TRY(tv_num_classes(ctx, arch, kw, st, "classifier.6.weight", &classes));
    vgg *v = calloc(1, sizeof *v);
    if (!v) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", arch);
    v->arch = arch;
    v->bn = bn;
    v->in_ch = tv_in_channels(st, "features.0.weight");
    v->classes = classes;
    sarco_head_init(&v->head, 512);
    sarco_head_add_adaptive_avg_pool(&v->head, 7, 7);
    sarco_head_add_linear(&v->head, "classifier.0", 4096, SARCO_ACT_RELU);
    sarco_head_add_dropout(&v->head);
    sarco_head_add_linear(&v->head, "classifier.3", 4096, SARCO_ACT_RELU);
    sarco_head_add_dropout(&v->head);
    sarco_head_add_linear(&v->head, "classifier.6", classes, SARCO_ACT_NONE);
    sarco_status s = tv_load_weights(ctx, arch, st, vgg_walk, v, &v->head, NULL);
    if (s != SARCO_OK) {
        free(v);
        return s;
    }
    *state = v;
    return SARCO_OK;
}

static sarco_status vgg19_load(sarco_context *ctx, const json_t *kw, const sarco_st_file *st, void **state) {
    return vgg_load_common(ctx, "torchvision.vgg19", 0, kw, st, state);
}

static sarco_status vgg19_bn_load(sarco_context *ctx, const json_t *kw, const sarco_st_file *st, void **state) {
    return vgg_load_common(ctx, "torchvision.vgg19_bn", 1, kw, st, state);
}

static sarco_status vgg_output_shape(sarco_context *ctx, const void *state, int ndim, const int64_t *in, int64_t *out) {
    return tv_output_shape(ctx, &vgg19_classifier, state, ndim, in, out);
}

static sarco_status vgg_forward(sarco_context *ctx, void *state, int ndim, const int64_t *in, const float *x, float *y) {
    (void)ndim;
    return sarco_classifier_forward(ctx, &vgg19_classifier, state, in, x, y);
}

SARCO_INTERNAL const sarco_arch sarco_arch_vgg19 = {
    .name = "torchvision.vgg19",
    .load = vgg19_load,
    .output_shape = vgg_output_shape,
    .forward = vgg_forward,
    .free = vgg_free,
    .classifier = &vgg19_classifier,
};

SARCO_INTERNAL const sarco_arch sarco_arch_vgg19_bn = {
    .name = "torchvision.vgg19_bn",
    .load = vgg19_bn_load,
    .output_shape = vgg_output_shape,
    .forward = vgg_forward,
    .free = vgg_free,
    .classifier = &vgg19_bn_classifier,
};
