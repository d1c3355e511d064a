/* torchvision ResNet-50 (torchvision/models/resnet.py, Bottleneck, layers [3, 4, 6, 3]), eval mode.
 *
 * stem: conv1 7x7/2 + bn1 + ReLU -> maxpool 3x3/2 pad 1; layer1..4 of Bottlenecks (ResNet v1.5: the
 * stride sits on the 3x3 conv2); the first block of a layer projects the input through
 * downsample = conv 1x1/stride + BatchNorm. Every BatchNorm folds into its conv at load; conv3 carries
 * the residual add and the ReLU.
 *
 * Grad-CAM target (A): the output of layer4 (= layer4[-1], what pytorch-grad-cam users pick), (N, h, w, 2048).
 * Head: avgpool (global) -> flatten -> fc.
 */
#include <stdlib.h>
#include <string.h>

#include "tvnet.h"

#define ARCH "torchvision.resnet50"

typedef struct bottleneck {
    int64_t cin, width, cout, stride;
    sarco_conv *c1, *c2, *c3, *down; /* down: NULL when the input adds as it is */
} bottleneck;

enum { RESNET_BLOCKS = 3 + 4 + 6 + 3 };
static const int stage_blocks[4] = {3, 4, 6, 3};

typedef struct resnet {
    int64_t in_ch, classes;
    sarco_conv *conv1;
    bottleneck blk[RESNET_BLOCKS];
    sarco_head head;
    tv_ws ws;
} resnet;

/* ================================================================================================
 * shapes: every map's size for an input, and the largest (the workspace's buffer size)
 * ================================================================================================ */

static sarco_status resnet_shapes(sarco_context *ctx, const resnet *r, const int64_t *in, int64_t *a, int64_t *maxel) {
    TV_TRY(tv_check_input(ctx, ARCH, in, r->in_ch));
    const int64_t n = in[0];
    int64_t h = in[2], w = in[3], m = n * h * w * r->in_ch;
    h = tv_out(h, 7, 2, 3), w = tv_out(w, 7, 2, 3); /* conv1 */
    if (n * h * w * 64 > m) m = n * h * w * 64;
    h = tv_out(h, 3, 2, 1), w = tv_out(w, 3, 2, 1); /* maxpool */
    for (int i = 0; i < RESNET_BLOCKS; i++) {
        const bottleneck *b = &r->blk[i];
        if (n * h * w * b->width > m) m = n * h * w * b->width;
        h = tv_out(h, 3, b->stride, 1), w = tv_out(w, 3, b->stride, 1);
        if (n * h * w * b->cout > m) m = n * h * w * b->cout;
    }
    a[0] = n, a[1] = h, a[2] = w, a[3] = 2048;
    if (maxel) *maxel = m;
    return SARCO_OK;
}

static sarco_status resnet_features_shape(sarco_context *ctx, const void *state, const int64_t *in, int64_t *a) {
    return resnet_shapes(ctx, state, in, a, NULL);
}

/* ================================================================================================
 * forward
 * ================================================================================================ */

/* x (N, C, H, W) PyTorch layout -> A (N, h, w, 2048) channels-last, in the workspace */
static sarco_status resnet_features(sarco_context *ctx, void *state, const int64_t *in, const float *x,
                                    const float **A, int64_t *a) {
    resnet *r = state;
    sarco_backend *be = ctx->be;
    const sarco_backend_ops *op = be->ops;
    int64_t maxel = 0;
    TV_TRY(resnet_shapes(ctx, r, in, a, &maxel));
    TV_TRY(tv_ws_ensure(ctx, &r->ws, 5, maxel));
    float **B = r->ws.b;
    const int64_t n = in[0];
    int64_t sp[2] = {in[2], in[3]};

    TV_TRY(op->to_cl(be, n, r->in_ch, sp[0] * sp[1], x, B[0])); /* (N, H, W, C) */
    TV_TRY(op->conv_run(be, r->conv1, n, sp, B[0], NULL, B[1])); /* relu(bn1(conv1 x)) */
    sp[0] = tv_out(sp[0], 7, 2, 3), sp[1] = tv_out(sp[1], 7, 2, 3);
    const sarco_pool_desc mp = {.nsp = 2, .kind = SARCO_POOL_MAX, .k = {3, 3, 1}, .stride = {2, 2, 1},
                                .pad = {1, 1, 0}};
    TV_TRY(op->pool(be, &mp, n, 64, sp, B[1], B[0])); /* maxpool */
    sp[0] = tv_out(sp[0], 3, 2, 1), sp[1] = tv_out(sp[1], 3, 2, 1);

    /* each block: cur -> t1 -> t2 (-> down) -> out; cur and out swap between B[0] and B[1] */
    int cur = 0;
    for (int i = 0; i < RESNET_BLOCKS; i++) {
        const bottleneck *b = &r->blk[i];
        const int out = 1 - cur;
        int64_t so[2] = {tv_out(sp[0], 3, b->stride, 1), tv_out(sp[1], 3, b->stride, 1)};
        TV_TRY(op->conv_run(be, b->c1, n, sp, B[cur], NULL, B[2])); /* relu(bn1(conv1 x)), 1x1 */
        TV_TRY(op->conv_run(be, b->c2, n, sp, B[2], NULL, B[3]));   /* relu(bn2(conv2 .)), 3x3/stride */
        const float *res = B[cur];
        if (b->down) {
            TV_TRY(op->conv_run(be, b->down, n, sp, B[cur], NULL, B[4])); /* bn(conv 1x1/stride x) */
            res = B[4];
        }
        TV_TRY(op->conv_run(be, b->c3, n, so, B[3], res, B[out])); /* relu(bn3(conv3 .) + identity) */
        sp[0] = so[0], sp[1] = so[1];
        cur = out;
    }
    *A = B[cur]; /* layer4 output */
    return SARCO_OK;
}

static sarco_head *resnet_head(void *state) { return &((resnet *)state)->head; }

static const sarco_classifier resnet_classifier = {
    .target_layer = "layer4",
    .features_shape = resnet_features_shape,
    .features = resnet_features,
    .head = resnet_head,
};

/* ================================================================================================
 * weights
 * ================================================================================================ */

static void resnet_walk(tv_walker *wk, void *net) {
    resnet *r = net;
    char c[TV_NAME_LEN], bn[TV_NAME_LEN];
    tv_conv(wk, &r->conv1, r->in_ch, 64, 7, 2, 3, 1, 0, "conv1", "bn1", SARCO_ACT_RELU);
    int i = 0;
    for (int l = 0; l < 4; l++)
        for (int j = 0; j < stage_blocks[l]; j++, i++) {
            bottleneck *b = &r->blk[i];
            const char *p = "layer";
#define BLK(leaf) (tv_name(c, "%s%d.%d.%s", p, l + 1, j, leaf), c)
#define BNN(leaf) (tv_name(bn, "%s%d.%d.%s", p, l + 1, j, leaf), bn)
            tv_conv(wk, &b->c1, b->cin, b->width, 1, 1, 0, 1, 0, BLK("conv1"), BNN("bn1"), SARCO_ACT_RELU);
            tv_conv(wk, &b->c2, b->width, b->width, 3, b->stride, 1, 1, 0, BLK("conv2"), BNN("bn2"), SARCO_ACT_RELU);
            tv_conv(wk, &b->c3, b->width, b->cout, 1, 1, 0, 1, 0, BLK("conv3"), BNN("bn3"), SARCO_ACT_RELU);
            if (j == 0) /* stride != 1 or inplanes != planes * 4: true for every layer's first block */
                tv_conv(wk, &b->down, b->cin, b->cout, 1, b->stride, 0, 1, 0, BLK("downsample.0"),
                        BNN("downsample.1"), SARCO_ACT_NONE);
#undef BLK
#undef BNN
        }
}

static void resnet_free(sarco_context *ctx, void *state) {
    resnet *r = state;
    if (!r) return;
    tv_free_weights(ctx, resnet_walk, r, &r->head);
    tv_ws_free(ctx->be, &r->ws);
    free(r);
}

static sarco_status resnet_load(sarco_context *ctx, const json_t *kw, const sarco_st_file *st, void **state) {
    *state = NULL;
    static const char *const known[] = {"num_classes", "zero_init_residual", "groups", "width_per_group", NULL};
    TV_TRY(tv_kw_known(ctx, ARCH, kw, known));
    int64_t groups, wpg, classes;
    TV_TRY(tv_kw_int(ctx, ARCH, kw, "groups", 1, 1, 1, &groups)); /* ResNeXt variants are not built in */
    TV_TRY(tv_kw_int(ctx, ARCH, kw, "width_per_group", 64, 64, 64, &wpg));
    TV_TRY(tv_num_classes(ctx, ARCH, kw, st, "fc.weight", &classes));
    resnet *r = calloc(1, sizeof *r);
    if (!r) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, ARCH ": out of memory");
    r->in_ch = tv_in_channels(st, "conv1.weight");
    r->classes = classes;
    int64_t cin = 64;
    int i = 0;
    for (int l = 0; l < 4; l++)
        for (int j = 0; j < stage_blocks[l]; j++, i++) {
            bottleneck *b = &r->blk[i];
            b->cin = cin;
            b->width = 64 << l;
            b->cout = 4 * b->width;
            b->stride = (j == 0 && l > 0) ? 2 : 1;
            cin = b->cout;
        }
    sarco_head_init(&r->head, 2048);
    sarco_head_add_global_avg_pool(&r->head);
    sarco_head_add_linear(&r->head, "fc", classes, SARCO_ACT_NONE);
    sarco_status s = tv_load_weights(ctx, ARCH, st, resnet_walk, r, &r->head, NULL);
    if (s != SARCO_OK) {
        free(r);
        return s;
    }
    *state = r;
    return SARCO_OK;
}

static sarco_status resnet_output_shape(sarco_context *ctx, const void *state, int ndim, const int64_t *in,
                                        int64_t *out) {
    return tv_output_shape(ctx, &resnet_classifier, state, ndim, in, out);
}

static sarco_status resnet_forward(sarco_context *ctx, void *state, int ndim, const int64_t *in, const float *x,
                                   float *y) {
    (void)ndim;
    return sarco_classifier_forward(ctx, &resnet_classifier, state, in, x, y);
}

SARCO_INTERNAL const sarco_arch sarco_arch_resnet50 = {
    .name = ARCH,
    .load = resnet_load,
    .output_shape = resnet_output_shape,
    .forward = resnet_forward,
    .free = resnet_free,
    .classifier = &resnet_classifier,
};
