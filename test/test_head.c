/* The classifier head (lib/nn/head.c) on its own: heads shaped like each torchvision family's
 * (VGG: adaptive pooling to 7x7 from smaller, larger and non-square maps + ReLU MLP; ResNet/DenseNet:
 * [ReLU] global pooling + linear; ConvNeXt: pooling + LayerNorm + linear; a GELU MLP; a LayerNorm on the
 * map), random weights in an in-memory safetensors file, checked three ways:
 *   - the backend forward (op-table calls, fp32) against the host double forward: max |diff| <= 1e-5
 *     x max(1, max |logit|);
 *   - the host backward d logit[t] / dA against central finite differences of the host double forward
 *     (step 1e-4 rounded to float, the exact float step used as divisor): max |diff| <= 1e-6 x max |grad|
 *     (+ 1e-9);
 *   - the pooled features: the final linear applied by hand to sarco_head_pooled gives the logits.
 * Then bad heads (a linear on a map, no linear) and a missing tensor are refused with the name.
 * The torchvision check of the same code runs through every arch in test_classifier.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/io/safetensors.h"
#include "lib/nn/classifier.h"
#include "testutil.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) / 4503599627370496.0 - 1.0;
}

/* an in-memory safetensors file holding random values for every tensor the head lists */
typedef struct stbuf {
    char header[8192];
    float *data;
    size_t nfloats;
} stbuf;

static sarco_st_file *make_file(sarco_context *ctx, const sarco_head *h, const char *skip) {
    sarco_wlist l = {0};
    sarco_head_list(h, &l);
    stbuf b = {.header = "{"};
    size_t off = 0;
    for (size_t i = 0; i < l.count; i++) b.nfloats += (size_t)(l.items[i].ndim == 2 ? l.items[i].shape[0] * l.items[i].shape[1]
                                                                                     : l.items[i].shape[0]);
    b.data = malloc((b.nfloats ? b.nfloats : 1) * sizeof(float));
    assert_non_null(b.data);
    int first = 1;
    for (size_t i = 0; i < l.count; i++) {
        const sarco_wspec *w = &l.items[i];
        const size_t cnt = (size_t)(w->ndim == 2 ? w->shape[0] * w->shape[1] : w->shape[0]);
        if (skip && strcmp(w->name, skip) == 0) continue;
        /* LayerNorm weights around 1, everything else around 0 with a fan-in scale */
        const int ln_w = strstr(w->name, "norm") && strstr(w->name, ".weight");
        const double scale = w->ndim == 2 ? 2.0 / sqrt((double)w->shape[1]) : 0.5;
        for (size_t k = 0; k < cnt; k++) b.data[off + k] = (float)((ln_w ? 1.0 : 0.0) + scale * urand());
        char item[512];
        if (w->ndim == 2)
            snprintf(item, sizeof item, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                     first ? "" : ",", w->name, (long long)w->shape[0], (long long)w->shape[1], off * 4, (off + cnt) * 4);
        else
            snprintf(item, sizeof item, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                     first ? "" : ",", w->name, (long long)w->shape[0], off * 4, (off + cnt) * 4);
        strcat(b.header, item);
        first = 0;
        off += cnt;
    }
    strcat(b.header, "}");
    size_t size = 0;
    uint8_t *bytes = tu_st_bytes(b.header, b.data, off * sizeof(float), &size);
    sarco_st_file *st = NULL;
    sarco_status s = sarco_st_parse(ctx, bytes, size, "head.safetensors", &st);
    if (s != SARCO_OK) fail_msg("parse: %s", sarco_last_error(ctx));
    if (!skip) {
        s = sarco_weights_check(ctx, st, &l, NULL);
        if (s != SARCO_OK) fail_msg("check: %s", sarco_last_error(ctx));
    }
    free(bytes);
    free(b.data);
    sarco_wlist_free(&l);
    return st;
}

typedef void (*builder)(sarco_head *h);

static void b_vgg(sarco_head *h) {
    sarco_head_init(h, 8);
    sarco_head_add_adaptive_avg_pool(h, 7, 7);
    sarco_head_add_linear(h, "classifier.0", 16, SARCO_ACT_RELU);
    sarco_head_add_dropout(h);
    sarco_head_add_linear(h, "classifier.3", 16, SARCO_ACT_RELU);
    sarco_head_add_dropout(h);
    sarco_head_add_linear(h, "classifier.6", 3, SARCO_ACT_NONE);
}
static void b_densenet(sarco_head *h) {
    sarco_head_init(h, 12);
    sarco_head_add_relu(h);
    sarco_head_add_global_avg_pool(h);
    sarco_head_add_linear(h, "classifier", 1, SARCO_ACT_NONE);
}
static void b_resnet(sarco_head *h) {
    sarco_head_init(h, 16);
    sarco_head_add_global_avg_pool(h);
    sarco_head_add_linear(h, "fc", 3, SARCO_ACT_NONE);
}
static void b_convnext(sarco_head *h) {
    sarco_head_init(h, 16);
    sarco_head_add_global_avg_pool(h);
    sarco_head_add_layernorm(h, "classifier.0", 1e-6f);
    sarco_head_add_linear(h, "classifier.2", 3, SARCO_ACT_NONE);
}
static void b_gelu_mlp(sarco_head *h) {
    sarco_head_init(h, 10);
    sarco_head_add_global_avg_pool(h);
    sarco_head_add_linear(h, "fuse.0", 12, SARCO_ACT_GELU);
    sarco_head_add_dropout(h);
    sarco_head_add_linear(h, "fuse.3", 2, SARCO_ACT_NONE);
}
static void b_map_norm(sarco_head *h) {
    sarco_head_init(h, 6);
    sarco_head_add_layernorm(h, "norm", 1e-5f);
    sarco_head_add_relu(h);
    sarco_head_add_global_avg_pool(h);
    sarco_head_add_linear(h, "head", 4, SARCO_ACT_NONE);
}

static void check_head(builder build, const char *label, int64_t n, int64_t ah, int64_t aw) {
    sarco_context *ctx = tu_new_ctx(0);
    sarco_head h;
    build(&h);
    assert_int_equal(sarco_head_check(ctx, &h, label), SARCO_OK);
    sarco_st_file *st = make_file(ctx, &h, NULL);
    if (sarco_head_load(ctx, &h, st) != SARCO_OK) fail_msg("%s: load: %s", label, sarco_last_error(ctx));
    sarco_st_close(st);

    const int64_t K = h.channels, classes = sarco_head_classes(&h), per = ah * aw * K;
    const int64_t pd = sarco_head_pooled_dim(&h, ah, aw);
    float *A = malloc((size_t)(n * per) * sizeof(float));
    float *logits = malloc((size_t)(n * classes) * sizeof(float));
    float *pooled = malloc((size_t)(n * pd) * sizeof(float));
    double *ref = malloc((size_t)classes * sizeof(double)), *dA = malloc((size_t)per * sizeof(double));
    double *lp = malloc((size_t)classes * sizeof(double)), *lm = malloc((size_t)classes * sizeof(double));
    double *scratch = malloc((size_t)per * sizeof(double));
    assert_true(A && logits && pooled && ref && dA && lp && lm && scratch);
    for (int64_t i = 0; i < n * per; i++) A[i] = (float)urand();

    /* backend forward (CPU memory is host memory) */
    if (sarco_head_forward(ctx, &h, n, ah, aw, A, logits) != SARCO_OK)
        fail_msg("%s: forward: %s", label, sarco_last_error(ctx));
    if (sarco_head_pooled(ctx, &h, n, ah, aw, A, pooled) != SARCO_OK)
        fail_msg("%s: pooled: %s", label, sarco_last_error(ctx));
    const sarco_head_layer *fin = &h.layers[sarco_head_final_linear(&h)];
    assert_int_equal(fin->in, pd);

    double worst_fwd = 0, worst_bwd = 0, worst_pool = 0;
    for (int64_t b = 0; b < n; b++) {
        float *Ab = A + b * per;
        for (int64_t t = 0; t < classes; t++) {
            assert_int_equal(sarco_head_backward_host(ctx, &h, ah, aw, Ab, t, ref, dA), SARCO_OK);
            if (t == 0) {
                double mx = 1;
                for (int64_t k = 0; k < classes; k++) mx = fmax(mx, fabs(ref[k]));
                for (int64_t k = 0; k < classes; k++) {
                    worst_fwd = fmax(worst_fwd, fabs(logits[b * classes + k] - ref[k]) / mx);
                    double z = fin->b_host[k];
                    for (int64_t j = 0; j < pd; j++) z += (double)fin->w_host[k * pd + j] * pooled[b * pd + j];
                    worst_pool = fmax(worst_pool, fabs(z - ref[k]) / mx);
                }
            }
            double gmax = 0;
            for (int64_t k = 0; k < per; k++) gmax = fmax(gmax, fabs(dA[k]));
            for (int64_t k = 0; k < per; k++) {
                const float a0 = Ab[k];
                const float ap = a0 + 1e-4f, am = a0 - 1e-4f;
                Ab[k] = ap;
                sarco_head_backward_host(ctx, &h, ah, aw, Ab, t, lp, scratch);
                Ab[k] = am;
                sarco_head_backward_host(ctx, &h, ah, aw, Ab, t, lm, scratch);
                Ab[k] = a0;
                const double fd = (lp[t] - lm[t]) / ((double)ap - (double)am);
                worst_bwd = fmax(worst_bwd, fabs(fd - dA[k]) / (gmax + 1e-9));
            }
        }
    }
    printf("  %-40s N %lld A %lldx%lldx%lld: forward %.2e, pooled %.2e, backward vs FD %.2e\n", label, (long long)n,
           (long long)ah, (long long)aw, (long long)K, worst_fwd, worst_pool, worst_bwd);
    assert_true(worst_fwd <= 1e-5);
    assert_true(worst_pool <= 1e-5);
    assert_true(worst_bwd <= 1e-6);
    free(A);
    free(logits);
    free(pooled);
    free(ref);
    free(dA);
    free(lp);
    free(lm);
    free(scratch);
    sarco_head_free(ctx->be, &h);
    sarco_context_free(ctx);
}

static void test_heads(void **state) {
    (void)state;
    check_head(b_vgg, "VGG: adaptive 7x7 from 3x3", 2, 3, 3);
    check_head(b_vgg, "VGG: adaptive 7x7 from 9x5", 1, 9, 5);
    check_head(b_vgg, "VGG: adaptive 7x7 from 7x7 (identity)", 2, 7, 7);
    check_head(b_densenet, "DenseNet: relu, pool, linear", 2, 4, 3);
    check_head(b_resnet, "ResNet: pool, linear", 3, 2, 2);
    check_head(b_convnext, "ConvNeXt: pool, layernorm, linear", 2, 3, 3);
    check_head(b_gelu_mlp, "GELU MLP", 2, 2, 3);
    check_head(b_map_norm, "layernorm on the map, relu, pool", 2, 3, 2);
}

static void test_bad_heads(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_head h;
    sarco_head_init(&h, 8);
    sarco_head_add_linear(&h, "fc", 3, SARCO_ACT_NONE);
    assert_int_equal(sarco_head_check(ctx, &h, "test"), SARCO_ERR_BAD_FORMAT);
    assert_non_null(strstr(sarco_last_error(ctx), "linear fc on a feature map"));

    sarco_head_init(&h, 8);
    sarco_head_add_global_avg_pool(&h);
    assert_int_equal(sarco_head_check(ctx, &h, "test"), SARCO_ERR_BAD_FORMAT);
    assert_non_null(strstr(sarco_last_error(ctx), "no linear"));

    sarco_head_init(&h, 8);
    sarco_head_add_global_avg_pool(&h);
    sarco_head_add_global_avg_pool(&h);
    sarco_head_add_linear(&h, "fc", 3, SARCO_ACT_NONE);
    assert_int_equal(sarco_head_check(ctx, &h, "test"), SARCO_ERR_BAD_FORMAT);
    assert_non_null(strstr(sarco_last_error(ctx), "pooling of a vector"));

    sarco_head_init(&h, 8);
    sarco_head_add_global_avg_pool(&h);
    sarco_head_add_linear(&h, "fc", 3, SARCO_ACT_NONE);
    assert_int_equal(sarco_head_check(ctx, &h, "test"), SARCO_OK);
    assert_int_equal(sarco_head_classes(&h), 3);
    assert_int_equal(sarco_head_pooled_dim(&h, 5, 5), 8);
    /* a file without fc.bias: the weight check names it */
    sarco_st_file *st = make_file(ctx, &h, "fc.bias");
    sarco_wlist l = {0};
    sarco_head_list(&h, &l);
    assert_int_equal(sarco_weights_check(ctx, st, &l, NULL), SARCO_ERR_BAD_FORMAT);
    assert_non_null(strstr(sarco_last_error(ctx), "fc.bias"));
    sarco_wlist_free(&l);
    sarco_st_close(st);
    /* a target out of range */
    float A[8] = {0};
    double dA[8];
    assert_int_equal(sarco_head_backward_host(ctx, &h, 1, 1, A, 3, NULL, dA), SARCO_ERR_INVALID_ARGUMENT);
    sarco_head_free(ctx->be, &h);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_heads), cmocka_unit_test(test_bad_heads)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
