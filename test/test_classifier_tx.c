/* torchvision convnext_tiny and swin_t against torchvision itself. test/gen_classifier_tx_reference.py ran
 * torchvision (float64) on weights and inputs it generated from a seed with a counter-based PRNG; this test
 * generates the same weights and inputs bit for bit (synth below mirrors the script's), writes them as a
 * model file, loads it with sarco_model_load and compares sarco_model_forward's logits (CPU backend, FP32)
 * with the committed ones (test/data/classifier_tx/manifest.json): relative L2 < 1e-5 per case.
 *
 * The cases cover 224 (batch 1 and 3), 112, 84, 96x160 and, for Swin, 90x130: padding to window
 * multiples, a stage smaller than the window, the per-axis shift rule and a size the patch conv floors.
 * Each case also checks the classifier split (A = the Grad-CAM target, the host double head gives the
 * forward's logits) and Grad-CAM's channel weights of sample 0 (spatial mean of d logit / dA from
 * sarco_head_backward_host) against torchvision's autograd in float64: relative L2 < 1e-5.
 * Then the failures: a bad input shape, a mis-shaped, missing or unknown tensor, a wrong
 * relative_position_index, a num_classes kwarg that contradicts the head, a truncated file. */
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

#define MANIFEST "test/data/classifier_tx/manifest.json"
#define REL_L2_MAX 1e-5

typedef struct fixture {
    char dir[64];
    sarco_context *ctx;
    json_t *manifest;
    uint64_t seed;
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || tu_dir_and_ctx("classifier_tx", fx->dir, sizeof fx->dir, &fx->ctx) != 0) return -1;
    json_error_t e;
    fx->manifest = json_load_file(MANIFEST, 0, &e);
    if (!fx->manifest) {
        fprintf(stderr, "%s: %s\n", MANIFEST, e.text);
        return -1;
    }
    fx->seed = (uint64_t)json_integer_value(json_object_get(fx->manifest, "seed"));
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

/* ---- the generator's PRNG, bit for bit ---- */

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

/* value i of stream `key`: splitmix64(key + (i + 1) golden), top 24 bits -> [-1, 1), exact in float */
static float uni(uint64_t key, uint64_t i) {
    uint64_t z = key + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) / 8388608.0f - 1.0f;
}

static void synth(uint64_t seed, const char *name, const int64_t *shape, int ndim, float *out) {
    int64_t n = 1, fan_in = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    for (int i = 1; i < ndim; i++) fan_in *= shape[i];
    const uint64_t key = fnv1a64(name) ^ seed;
    const size_t len = strlen(name);
    const int gamma = len > 7 && strcmp(name + len - 7, ".weight") == 0;
    const float scale = (float)(1.0 / sqrt((double)fan_in));
    for (int64_t i = 0; i < n; i++) {
        const float u = uni(key, (uint64_t)i);
        out[i] = ndim >= 2 ? scale * u : gamma ? 1.0f + 0.2f * u : 0.1f * u;
    }
}

/* ---- model files ---- */

/* torchvision's relative_position_index for a w x w window, built as torchvision builds it */
static void rel_index(int64_t w, int64_t *idx) {
    const int64_t L = w * w;
    for (int64_t i = 0; i < L; i++)
        for (int64_t j = 0; j < L; j++) idx[i * L + j] = (i / w - j / w + w - 1) * (2 * w - 1) + (i % w - j % w + w - 1);
}

typedef enum { MUT_NONE, MUT_SHAPE, MUT_DROP, MUT_EXTRA, MUT_INDEX, MUT_CLASSES, MUT_TRUNCATE } mutation;

/* Writes the model `key` ("arch:classes") of the manifest to path, with one deliberate fault. */
static void write_model(fixture *fx, const char *key, const char *path, mutation mut, const char *target) {
    const json_t *list = json_object_get(json_object_get(fx->manifest, "tensors"), key);
    assert_non_null(list);
    char arch[64];
    int classes = 0;
    assert_int_equal(sscanf(key, "%63[^:]:%d", arch, &classes), 2);
    json_t *hdr = json_object(), *meta = json_object();
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{\"arch\":\"%s\",\"kwargs\":{\"num_classes\":%d}}", arch,
             mut == MUT_CLASSES ? classes + 1 : classes);
    json_object_set_new(meta, "sarco.config", json_string(cfg));
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(hdr, "__metadata__", meta);
    size_t total = 0, i;
    const json_t *t;
    /* pass 1: sizes and header entries */
    json_array_foreach(list, i, t) {
        const char *name = json_string_value(json_array_get(t, 0));
        const json_t *shp = json_array_get(t, 1);
        const int is_index = strcmp(json_string_value(json_array_get(t, 2)), "int64") == 0;
        if (mut == MUT_DROP && strcmp(name, target) == 0) continue;
        json_t *shape = json_array();
        size_t k;
        const json_t *d;
        int64_t n = 1;
        json_array_foreach(shp, k, d) {
            int64_t v = json_integer_value(d);
            if (mut == MUT_SHAPE && strcmp(name, target) == 0 && k == 0) v += 1;
            json_array_append_new(shape, json_integer(v));
            n *= v;
        }
        const size_t bytes = (size_t)n * (is_index ? 8 : 4);
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string(is_index ? "I64" : "F32"));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)total, (json_int_t)(total + bytes)));
        json_object_set_new(hdr, name, e);
        total += bytes;
    }
    if (mut == MUT_EXTRA) {
        json_object_set_new(hdr, target, json_pack("{s:s,s:[i],s:[II]}", "dtype", "F32", "shape", 1, "data_offsets",
                                                   (json_int_t)total, (json_int_t)(total + 4)));
        total += 4;
    }
    uint8_t *data = calloc(total ? total : 1, 1);
    assert_non_null(data);
    /* pass 2: values */
    const char *name;
    json_t *e;
    json_object_foreach(hdr, name, e) {
        if (strcmp(name, "__metadata__") == 0) continue;
        const json_t *shp = json_object_get(e, "shape");
        int64_t shape[8], n = 1;
        int ndim = (int)json_array_size(shp);
        for (int k = 0; k < ndim; k++) n *= shape[k] = json_integer_value(json_array_get(shp, (size_t)k));
        const size_t off = (size_t)json_integer_value(json_array_get(json_object_get(e, "data_offsets"), 0));
        if (strcmp(json_string_value(json_object_get(e, "dtype")), "I64") == 0) {
            int64_t *idx = malloc((size_t)n * sizeof *idx);
            assert_non_null(idx);
            rel_index(7, idx);
            if (mut == MUT_INDEX && strcmp(name, target) == 0) idx[100] += 1;
            memcpy(data + off, idx, (size_t)n * sizeof *idx);
            free(idx);
        } else {
            float *v = malloc((size_t)n * sizeof *v);
            assert_non_null(v);
            synth(fx->seed, name, shape, ndim, v);
            memcpy(data + off, v, (size_t)n * sizeof *v);
            free(v);
        }
    }
    char *h = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    size_t size;
    uint8_t *file = tu_st_bytes(h, data, total, &size);
    if (mut == MUT_TRUNCATE) size -= 1000;
    tu_spit(path, file, size);
    free(h);
    free(data);
    free(file);
}

/* ---- fidelity ---- */

static void run_arch(fixture *fx, const char *arch) {
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", fx->dir);
    const json_t *cases = json_object_get(fx->manifest, "cases");
    for (int classes = 1; classes <= 3; classes += 2) {
        char key[96];
        snprintf(key, sizeof key, "%s:%d", arch, classes);
        write_model(fx, key, path, MUT_NONE, NULL);
        sarco_model *m = NULL;
        if (sarco_model_load(fx->ctx, path, &m) != SARCO_OK) fail_msg("%s: %s", key, sarco_last_error(fx->ctx));
        size_t i;
        const json_t *c;
        json_array_foreach(cases, i, c) {
            if (strcmp(json_string_value(json_object_get(c, "arch")), arch) != 0 ||
                json_integer_value(json_object_get(c, "classes")) != classes)
                continue;
            const int64_t b = json_integer_value(json_object_get(c, "batch"));
            const int64_t h = json_integer_value(json_object_get(c, "h")), w = json_integer_value(json_object_get(c, "w"));
            const int64_t in[4] = {b, 3, h, w};
            int64_t out[4];
            assert_int_equal(sarco_model_output_shape(fx->ctx, m, 4, in, out), SARCO_OK);
            assert_int_equal(out[0], b);
            assert_int_equal(out[1], classes);
            const json_t *ref = json_object_get(c, "logits");
            const size_t ny = json_array_size(ref), nx = (size_t)(b * 3 * h * w);
            assert_int_equal(ny, (size_t)(b * classes));
            char ikey[160];
            snprintf(ikey, sizeof ikey, "input:%s:%d:%lld:%lldx%lld", arch, classes, (long long)b, (long long)h,
                     (long long)w);
            const uint64_t k = fnv1a64(ikey) ^ fx->seed;
            float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y);
            assert_non_null(x);
            assert_non_null(y);
            for (size_t q = 0; q < nx; q++) x[q] = 0.5f + 0.5f * uni(k, q);
            if (sarco_model_forward(fx->ctx, m, 4, in, x, y, ny) != SARCO_OK)
                fail_msg("%s %lldx%lld: %s", key, (long long)h, (long long)w, sarco_last_error(fx->ctx));
            double num = 0, den = 0;
            for (size_t q = 0; q < ny; q++) {
                const double r = json_real_value(json_array_get(ref, q));
                num += (y[q] - r) * (y[q] - r);
                den += r * r;
            }
            const double rel = sqrt(num / den);
            printf("  %-26s classes %d batch %lld %3lldx%-3lld logits rel L2 %.2e (torch fp32: %.2e)\n", arch, classes,
                   (long long)b, (long long)h, (long long)w, rel,
                   json_real_value(json_object_get(c, "torch_fp32_rel_l2")));
            if (!(rel < REL_L2_MAX))
                fail_msg("%s batch %lld %lldx%lld: logits rel L2 %.3e >= %.0e (first: got %.7g, want %.7g)", key,
                         (long long)b, (long long)h, (long long)w, rel, REL_L2_MAX, (double)y[0],
                         json_real_value(json_array_get(ref, 0)));
            /* the classifier split: A (the Grad-CAM target) left by this forward, and the head's host pass
             * over sample 0's A gives the same logits (CPU backend: backend memory is host memory) */
            void *st = NULL;
            const sarco_classifier *cl = sarco_model_classifier(m, &st);
            assert_non_null(cl);
            assert_string_equal(cl->target_layer, strstr(arch, "swin") ? "norm" : "features.7");
            int64_t a[4];
            const float *A = NULL;
            assert_int_equal(cl->features(fx->ctx, st, in, x, &A, a), SARCO_OK);
            int64_t a2[4];
            assert_int_equal(cl->features_shape(fx->ctx, st, in, a2), SARCO_OK);
            assert_memory_equal(a, a2, sizeof a);
            assert_int_equal(a[3], 768);
            const int64_t target = json_integer_value(json_object_get(c, "gradcam_target"));
            const json_t *gw = json_object_get(c, "gradcam_weights");
            double *lg = calloc((size_t)classes, sizeof *lg), *dA = calloc((size_t)(a[1] * a[2] * a[3]), sizeof *dA);
            assert_int_equal(sarco_head_backward_host(fx->ctx, cl->head(st), a[1], a[2], A, target, lg, dA), SARCO_OK);
            for (int q = 0; q < classes; q++)
                if (fabs(lg[q] - y[q]) > 1e-5 * (1 + fabs(y[q])))
                    fail_msg("%s: host head logit %d %.7g vs forward %.7g", key, q, lg[q], (double)y[q]);
            /* Grad-CAM's channel weights (spatial mean of d logit[target] / dA) against torchvision's autograd */
            assert_int_equal((int64_t)json_array_size(gw), a[3]);
            double cn = 0, cd = 0;
            for (int64_t k = 0; k < a[3]; k++) {
                double al = 0;
                for (int64_t p = 0; p < a[1] * a[2]; p++) al += dA[p * a[3] + k];
                al /= (double)(a[1] * a[2]);
                const double r = json_real_value(json_array_get(gw, (size_t)k));
                cn += (al - r) * (al - r);
                cd += r * r;
            }
            const double cam = sqrt(cn / cd);
            printf("  %-26s %36s Grad-CAM weights (%s, class %lld) rel L2 %.2e\n", "", "", cl->target_layer,
                   (long long)target, cam);
            if (!(cam < REL_L2_MAX)) fail_msg("%s: Grad-CAM channel weights rel L2 %.3e", key, cam);
            free(lg);
            free(dA);
            free(x);
            free(y);
        }
        /* inputs the arch cannot take name the rule */
        float dummy[8];
        const int64_t tiny[4] = {1, 3, 3, 200}, grey[4] = {1, 1, 224, 224};
        assert_int_equal(sarco_model_forward(fx->ctx, m, 4, tiny, dummy, dummy, 8), SARCO_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(sarco_last_error(fx->ctx), "at least"));
        assert_int_equal(sarco_model_forward(fx->ctx, m, 4, grey, dummy, dummy, 8), SARCO_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(sarco_last_error(fx->ctx), "3 channels"));
        sarco_model_free(m);
    }
}

static void test_convnext_tiny(void **state) { run_arch(*state, "torchvision.convnext_tiny"); }
static void test_swin_t(void **state) { run_arch(*state, "torchvision.swin_t"); }

/* ---- bad files ---- */

static void expect_refused(fixture *fx, const char *key, mutation mut, const char *target, sarco_status want,
                           const char *part) {
    char path[128];
    snprintf(path, sizeof path, "%s/bad.safetensors", fx->dir);
    write_model(fx, key, path, mut, target);
    sarco_model *m = (sarco_model *)path; /* must come back NULL */
    const sarco_status s = sarco_model_load(fx->ctx, path, &m);
    if (s != want || m || !strstr(sarco_last_error(fx->ctx), part))
        fail_msg("%s with fault %d on %s: status %s, message \"%s\" (want %s with \"%s\")", key, (int)mut,
                 target ? target : "-", sarco_status_string(s), sarco_last_error(fx->ctx), sarco_status_string(want),
                 part);
}

static void test_bad_files(void **state) {
    fixture *fx = *state;
    const char *sw = "torchvision.swin_t:1", *cn = "torchvision.convnext_tiny:1";
    expect_refused(fx, sw, MUT_SHAPE, "features.5.3.attn.relative_position_bias_table", SARCO_ERR_BAD_FORMAT,
                   "features.5.3.attn.relative_position_bias_table");
    expect_refused(fx, sw, MUT_DROP, "features.6.reduction.weight", SARCO_ERR_BAD_FORMAT,
                   "features.6.reduction.weight");
    expect_refused(fx, sw, MUT_INDEX, "features.3.1.attn.relative_position_index", SARCO_ERR_BAD_FORMAT,
                   "relative position index");
    expect_refused(fx, sw, MUT_CLASSES, NULL, SARCO_ERR_BAD_FORMAT, "head.weight"); /* kwargs num_classes 2 */
    expect_refused(fx, cn, MUT_EXTRA, "features.1.0.gamma", SARCO_ERR_BAD_FORMAT, "features.1.0.gamma");
    expect_refused(fx, cn, MUT_SHAPE, "features.5.8.layer_scale", SARCO_ERR_BAD_FORMAT, "features.5.8.layer_scale");
    expect_refused(fx, cn, MUT_DROP, "classifier.2.weight", SARCO_ERR_BAD_FORMAT, "classifier.2.weight");
    expect_refused(fx, cn, MUT_TRUNCATE, NULL, SARCO_ERR_BAD_FORMAT, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convnext_tiny),
        cmocka_unit_test(test_swin_t),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests_name("classifier_tx", tests, setup, teardown);
}
