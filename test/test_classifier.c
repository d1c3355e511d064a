/* torchvision classifiers (resnet50, vgg19, vgg19_bn, densenet121, efficientnet_b0) against torchvision.
 *
 * test/data/classifier/manifest.json (test/gen_classifier_reference.py) lists every model's tensors with
 * a fill rule, and torchvision's float64 logits for seeded inputs. The weights are never stored: this test
 * fills them from the seed exactly as test/classifier_seed.py does (float32 bit for bit), writes the model
 * file (torchvision's state_dict names, sarco.config), loads it with sarco_model_load and checks, per model
 * and input size:
 *   - sarco_model_forward's logits: relative L2 against torchvision < 1e-5 (FP32 against float64);
 *   - the classifier split: features + sarco_head_forward equal the forward; the host double head
 *     (sarco_head_backward_host, the Grad-CAM path) on the downloaded A gives the torchvision logits
 *     (relative L2 < 1e-5) and the pooled features have the final linear's width;
 *   - Grad-CAM's channel weights (spatial mean of d logit / dA, first case, sample 0) against
 *     torchvision's autograd through its own head modules in float64: relative L2 < 1e-5.
 * Then refusals: a missing tensor, a mis-shaped one, an unknown kwarg and a wrong input channel count
 * fail with the name in the message. The CUDA group reruns the models in FP32 or prints "SKIP cuda: ...".
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/nn/classifier.h"
#include "testutil.h"

#define MANIFEST "test/data/classifier/manifest.json"
#define REL_L2_MAX 1e-5
#define CAM_REL_L2_MAX 1e-5 /* Grad-CAM channel weights: our double backward on FP32 A vs torch float64 */

/* ---- the seeded fill (test/classifier_seed.py) ---- */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001B3ull;
    return h;
}

static void seeded_fill(uint64_t seed, const char *name, int64_t n, float scale, float offset, float *out) {
    const uint64_t key = splitmix64(seed ^ fnv1a64(name));
    for (int64_t i = 0; i < n; i++) {
        const float u = (float)(splitmix64(key + (uint64_t)i) >> 40) * 0x1p-23f - 1.0f;
        const float su = scale * u;
        out[i] = offset + su;
    }
}

/* ---- model files ---- */

typedef struct fixture {
    char dir[64];
    sarco_context *ctx;
    json_t *manifest;
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || tu_dir_and_ctx("classifier", fx->dir, sizeof fx->dir, &fx->ctx) != 0) return -1;
    json_error_t e;
    fx->manifest = json_load_file(MANIFEST, 0, &e);
    if (!fx->manifest) {
        fprintf(stderr, "%s: %s\n", MANIFEST, e.text);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    json_decref(fx->manifest);
    tu_dir_and_ctx_free(fx->dir, fx->ctx);
    free(fx);
    return 0;
}

typedef struct mutation {
    const char *drop;    /* leave this tensor out */
    const char *reshape; /* store this 2+-D tensor with its first two dims swapped */
    const char *kwarg;   /* an extra kwarg (JSON object text) merged into the kwargs */
} mutation;

static int64_t numel(const json_t *shape) {
    int64_t n = 1;
    size_t i;
    json_t *d;
    json_array_foreach(shape, i, d) n *= json_integer_value(d);
    return n;
}

/* writes the model's file into path, tensors filled from the seed */
static void write_model(const json_t *model, const char *path, const mutation *mu) {
    const json_t *tensors = json_object_get(model, "tensors");
    const uint64_t seed = (uint64_t)json_integer_value(json_object_get(model, "seed"));
    json_t *hdr = json_object();
    json_t *kwargs = json_deep_copy(json_object_get(model, "kwargs"));
    if (mu && mu->kwarg) {
        json_t *extra = json_loads(mu->kwarg, 0, NULL);
        json_object_update(kwargs, extra);
        json_decref(extra);
    }
    json_t *cfg = json_pack("{s:O, s:o}", "arch", json_object_get(model, "arch"), "kwargs", kwargs);
    char *cfg_text = json_dumps(cfg, JSON_COMPACT);
    json_object_set_new(hdr, "__metadata__", json_pack("{s:s, s:s}", "sarco.config", cfg_text, "format", "pt"));
    free(cfg_text);
    json_decref(cfg);
    uint64_t off = 0;
    size_t i;
    json_t *t;
    json_array_foreach(tensors, i, t) {
        const char *name = json_string_value(json_array_get(t, 0));
        if (mu && mu->drop && strcmp(name, mu->drop) == 0) continue;
        json_t *shape = json_deep_copy(json_array_get(t, 1));
        if (mu && mu->reshape && strcmp(name, mu->reshape) == 0) {
            json_t *a = json_incref(json_array_get(shape, 0)), *b = json_incref(json_array_get(shape, 1));
            json_array_set_new(shape, 0, b);
            json_array_set_new(shape, 1, a);
        }
        const uint64_t bytes = (uint64_t)numel(shape) * 4;
        json_object_set_new(hdr, name, json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
                                                 "data_offsets", (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    size_t hl = strlen(text), padded = (hl + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t len[8];
    for (int k = 0; k < 8; k++) len[k] = (uint8_t)((uint64_t)padded >> (8 * k));
    assert_int_equal(fwrite(len, 1, 8, f), 8);
    assert_int_equal(fwrite(text, 1, hl, f), hl);
    for (size_t k = hl; k < padded; k++) fputc(' ', f);
    free(text);
    float *buf = NULL;
    int64_t cap = 0;
    json_array_foreach(tensors, i, t) {
        const char *name = json_string_value(json_array_get(t, 0));
        if (mu && mu->drop && strcmp(name, mu->drop) == 0) continue;
        const int64_t n = numel(json_array_get(t, 1));
        if (n > cap) {
            free(buf);
            buf = malloc((size_t)n * sizeof *buf);
            assert_non_null(buf);
            cap = n;
        }
        seeded_fill(seed, name, n, (float)json_real_value(json_array_get(t, 2)),
                    (float)json_real_value(json_array_get(t, 3)), buf);
        assert_int_equal(fwrite(buf, sizeof(float), (size_t)n, f), (size_t)n);
    }
    free(buf);
    assert_int_equal(fclose(f), 0);
}

/* ---- checks ---- */

static double rel_l2(const float *got, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-300));
}

static double rel_l2_dd(const double *got, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-300));
}

/* One model of the manifest on ctx: every case through the forward, the split and the host head. */
static void check_model(fixture *fx, sarco_context *ctx, const json_t *model) {
    const char *arch = json_string_value(json_object_get(model, "arch"));
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", fx->dir);
    write_model(model, path, NULL);
    sarco_model *m = NULL;
    if (sarco_model_load(ctx, path, &m) != SARCO_OK) fail_msg("%s: load: %s", arch, sarco_last_error(ctx));
    remove(path);
    void *st = NULL;
    const sarco_classifier *cl = sarco_model_classifier(m, &st);
    assert_non_null(cl);
    sarco_head *head = cl->head(st);
    const int64_t classes = sarco_head_classes(head);
    sarco_backend *be = ctx->be;
    size_t ci;
    json_t *c;
    json_array_foreach(json_object_get(model, "cases"), ci, c) {
        int64_t in[4];
        for (int k = 0; k < 4; k++) in[k] = json_integer_value(json_array_get(json_object_get(c, "input"), (size_t)k));
        const int64_t nx = in[0] * in[1] * in[2] * in[3], ny = in[0] * classes;
        const json_t *lj = json_object_get(c, "logits");
        assert_int_equal((int64_t)json_array_size(lj), ny);
        double *ref = malloc((size_t)ny * sizeof *ref);
        for (int64_t k = 0; k < ny; k++) ref[k] = json_real_value(json_array_get(lj, (size_t)k));
        float *x = malloc((size_t)nx * sizeof *x), *y = malloc((size_t)ny * sizeof *y);
        assert_true(ref && x && y);
        seeded_fill((uint64_t)json_integer_value(json_object_get(c, "seed")), "input", nx, 1.0f, 0.0f, x);

        int64_t oshape[4];
        assert_int_equal(sarco_model_output_shape(ctx, m, 4, in, oshape), SARCO_OK);
        assert_int_equal(oshape[1], classes);
        if (sarco_model_forward(ctx, m, 4, in, x, y, (size_t)ny) != SARCO_OK)
            fail_msg("%s: forward: %s", arch, sarco_last_error(ctx));
        const double err = rel_l2(y, ref, ny);

        /* the split, on backend buffers: features, then the head, then the host head on A */
        void *dx = NULL, *dy = NULL;
        assert_int_equal(be->ops->alloc(be, (size_t)nx * sizeof(float), &dx), SARCO_OK);
        assert_int_equal(be->ops->alloc(be, (size_t)ny * sizeof(float), &dy), SARCO_OK);
        assert_int_equal(be->ops->upload(be, dx, x, (size_t)nx * sizeof(float)), SARCO_OK);
        const float *A = NULL;
        int64_t a[4], a2[4];
        assert_int_equal(cl->features_shape(ctx, st, in, a2), SARCO_OK);
        if (cl->features(ctx, st, in, dx, &A, a) != SARCO_OK) fail_msg("%s: features: %s", arch, sarco_last_error(ctx));
        for (int k = 0; k < 4; k++) assert_int_equal(a[k], a2[k]);
        assert_int_equal(a[3], head->channels);
        const int64_t per = a[1] * a[2] * a[3];
        float *Ah = malloc((size_t)(a[0] * per) * sizeof *Ah), *y2 = malloc((size_t)ny * sizeof *y2);
        double *lh = malloc((size_t)ny * sizeof *lh), *dA = malloc((size_t)per * sizeof *dA);
        assert_true(Ah && y2 && lh && dA);
        assert_int_equal(be->ops->download(be, Ah, A, (size_t)(a[0] * per) * sizeof(float)), SARCO_OK);
        assert_int_equal(sarco_head_forward(ctx, head, a[0], a[1], a[2], A, dy), SARCO_OK);
        assert_int_equal(be->ops->download(be, y2, dy, (size_t)ny * sizeof(float)), SARCO_OK);
        double split = 0;
        for (int64_t k = 0; k < ny; k++) split = fmax(split, fabs((double)y2[k] - y[k]));
        /* the host head per sample; sample 0 with the manifest's Grad-CAM target, whose channel weights
         * (spatial means of d logit / dA) torchvision's autograd gave */
        const json_t *gw = json_object_get(c, "gradcam_weights");
        const int64_t target = gw ? json_integer_value(json_object_get(c, "gradcam_target")) : 0;
        double cam_err = -1;
        for (int64_t b = 0; b < a[0]; b++) {
            assert_int_equal(sarco_head_backward_host(ctx, head, a[1], a[2], Ah + b * per, b ? 0 : target,
                                                      lh + b * classes, dA),
                             SARCO_OK);
            if (b == 0 && gw) {
                assert_int_equal((int64_t)json_array_size(gw), a[3]);
                double *alpha = calloc((size_t)a[3], sizeof *alpha), *aref = malloc((size_t)a[3] * sizeof *aref);
                assert_true(alpha && aref);
                for (int64_t p = 0; p < a[1] * a[2]; p++)
                    for (int64_t k = 0; k < a[3]; k++) alpha[k] += dA[p * a[3] + k] / (double)(a[1] * a[2]);
                for (int64_t k = 0; k < a[3]; k++) aref[k] = json_real_value(json_array_get(gw, (size_t)k));
                cam_err = rel_l2_dd(alpha, aref, a[3]);
                free(alpha);
                free(aref);
            }
        }
        const double host_err = rel_l2_dd(lh, ref, ny);
        char cam_text[32] = "-";
        if (cam_err >= 0) snprintf(cam_text, sizeof cam_text, "%.2e", cam_err);
        const int64_t pd = sarco_head_pooled_dim(head, a[1], a[2]);
        assert_int_equal(pd, head->layers[sarco_head_final_linear(head)].in);

        printf("  %-5s %-28s classes %lld  %lldx%lldx%lldx%lld -> A %lldx%lldx%lld (%s): rel L2 %.2e "
               "(torch fp32 %.2e), host head %.2e, Grad-CAM weights %s\n",
               sarco_context_backend(ctx) == SARCO_BACKEND_CUDA ? "cuda" : "cpu", arch, (long long)classes,
               (long long)in[0], (long long)in[1], (long long)in[2], (long long)in[3], (long long)a[1],
               (long long)a[2], (long long)a[3], cl->target_layer, err,
               json_real_value(json_object_get(c, "torch_fp32_rel_l2")), host_err, cam_text);
        fflush(stdout);
        assert_true(err < REL_L2_MAX);
        assert_true(host_err < REL_L2_MAX);
        assert_true(cam_err < CAM_REL_L2_MAX); /* -1 when the case has no Grad-CAM reference */
        assert_true(split == 0.0); /* the forward is exactly features + head */
        be->ops->free(be, dx);
        be->ops->free(be, dy);
        free(Ah);
        free(y2);
        free(lh);
        free(dA);
        free(ref);
        free(x);
        free(y);
    }
    sarco_model_free(m);
}

static const json_t *model_at(const fixture *fx, const char *arch, int nth) {
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(fx->manifest, "models"), i, v)
        if (strcmp(json_string_value(json_object_get(v, "arch")), arch) == 0 && nth-- == 0) return v;
    return NULL;
}

static void check_arch(void **state, const char *arch) {
    fixture *fx = *state;
    int found = 0;
    for (int k = 0;; k++) {
        const json_t *m = model_at(fx, arch, k);
        if (!m) break;
        check_model(fx, fx->ctx, m);
        found++;
    }
    if (!found) fail_msg("%s: not in %s", arch, MANIFEST);
}

static void test_resnet50(void **state) { check_arch(state, "torchvision.resnet50"); }
static void test_vgg19(void **state) { check_arch(state, "torchvision.vgg19"); }
static void test_vgg19_bn(void **state) { check_arch(state, "torchvision.vgg19_bn"); }
static void test_densenet121(void **state) { check_arch(state, "torchvision.densenet121"); }
static void test_efficientnet_b0(void **state) { check_arch(state, "torchvision.efficientnet_b0"); }

/* ---- refusals ---- */

static void expect_load_failure(fixture *fx, const json_t *model, mutation mu, const char *needle) {
    char path[128];
    snprintf(path, sizeof path, "%s/bad.safetensors", fx->dir);
    write_model(model, path, &mu);
    sarco_model *m = NULL;
    const sarco_status s = sarco_model_load(fx->ctx, path, &m);
    remove(path);
    if (s == SARCO_OK) {
        sarco_model_free(m);
        fail_msg("loaded a bad model (expected \"%s\")", needle);
    }
    assert_null(m);
    if (!strstr(sarco_last_error(fx->ctx), needle)) fail_msg("message \"%s\" lacks \"%s\"", sarco_last_error(fx->ctx), needle);
}

static void test_refusals(void **state) {
    fixture *fx = *state;
    const json_t *eff = model_at(fx, "torchvision.efficientnet_b0", 0);
    const json_t *res = model_at(fx, "torchvision.resnet50", 1);
    assert_non_null(eff);
    assert_non_null(res);
    expect_load_failure(fx, eff, (mutation){.drop = "features.3.1.block.2.fc1.bias"}, "features.3.1.block.2.fc1.bias");
    expect_load_failure(fx, eff, (mutation){.reshape = "features.2.0.block.0.0.weight"},
                        "features.2.0.block.0.0.weight");
    expect_load_failure(fx, res, (mutation){.drop = "layer3.2.bn2.running_var"}, "layer3.2.bn2.running_var");
    expect_load_failure(fx, res, (mutation){.reshape = "fc.weight"}, "fc.weight");
    expect_load_failure(fx, res, (mutation){.kwarg = "{\"replace_stride_with_dilation\": [false, true, true]}"},
                        "replace_stride_with_dilation");
    expect_load_failure(fx, res, (mutation){.kwarg = "{\"num_classes\": 5}"}, "fc.weight");

    /* a wrong channel count and a too small input are refused before anything runs */
    char path[128];
    snprintf(path, sizeof path, "%s/ok.safetensors", fx->dir);
    write_model(eff, path, NULL);
    sarco_model *m = NULL;
    assert_int_equal(sarco_model_load(fx->ctx, path, &m), SARCO_OK);
    remove(path);
    int64_t out[4];
    assert_int_equal(sarco_model_output_shape(fx->ctx, m, 4, (int64_t[]){1, 1, 64, 64}, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(fx->ctx), "3 channels"));
    assert_int_equal(sarco_model_output_shape(fx->ctx, m, 5, (int64_t[]){1, 3, 8, 64, 64}, out),
                     SARCO_ERR_INVALID_ARGUMENT);
    sarco_model_free(m);
}

/* ---- CUDA ---- */

static void test_cuda(void **state) {
    fixture *fx = *state;
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CUDA;
    o.precision = SARCO_PRECISION_FP32;
    sarco_context *ctx = NULL;
    char msg[512];
    if (sarco_context_create_ex(&o, &ctx, msg, sizeof msg) != SARCO_OK) {
        printf("SKIP cuda: %s\n", msg);
        skip();
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(fx->manifest, "models"), i, v) check_model(fx, ctx, v);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet50),    cmocka_unit_test(test_vgg19),           cmocka_unit_test(test_vgg19_bn),
        cmocka_unit_test(test_densenet121), cmocka_unit_test(test_efficientnet_b0), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_cuda),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
