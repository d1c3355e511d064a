/* nnunet.PlainConvUNet and nnunet.ResidualEncoderUNet against dynamic-network-architectures itself: every
 * variant of test/data/nnunet/manifest.json (written by test/gen_nnunet_reference.py from the real networks,
 * in float64) is loaded with sarco_model_load, run with sarco_model_forward on the CPU backend and compared:
 * relative L2 error < 1e-5 and max abs error < 1e-5 x max(1, max |reference|). A changed negative slope, eps
 * or nonlin (same tensors) must move the result far past those bounds, so the bounds can fail. Then the
 * multi-fold file of the fake nnU-Net results folder: each fold against its own reference, fold 0 as the
 * default, the folds' bookkeeping errors; and broken files and kwargs, refused whole with the problem named. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/nn/arch.h"
#include "testutil.h"

#define DATA "test/data/nnunet/"
#define REL_L2_MAX 1e-5
#define MAX_ABS_FRAC 1e-5 /* of max(1, max |reference|) */

typedef struct fixture {
    char dir[64];
    sarco_context *ctx;
    json_t *manifest;
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || tu_dir_and_ctx("nnunet", fx->dir, sizeof fx->dir, &fx->ctx) != 0) return -1;
    json_error_t e;
    fx->manifest = json_load_file(DATA "manifest.json", 0, &e);
    if (!fx->manifest) {
        fprintf(stderr, "%s: %s\n", DATA "manifest.json", e.text);
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

static float *read_floats(const char *name, size_t count) {
    char path[256];
    snprintf(path, sizeof path, DATA "%s", name);
    size_t size = 0;
    uint8_t *b = tu_slurp(path, &size);
    assert_int_equal(size, count * sizeof(float));
    return (float *)b;
}

static int shape_of(const json_t *arr, int64_t *shape, int64_t *count) {
    int n = (int)json_array_size(arr);
    *count = 1;
    for (int i = 0; i < n; i++) {
        shape[i] = json_integer_value(json_array_get(arr, (size_t)i));
        *count *= shape[i];
    }
    return n;
}

static const json_t *variant(const fixture *fx, const char *prefix) {
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(fx->manifest, "variants"), i, v)
        if (strncmp(json_string_value(json_object_get(v, "name")), prefix, strlen(prefix)) == 0) return v;
    fail_msg("no variant %s in the manifest", prefix);
    return NULL;
}

static sarco_model *load_path(sarco_context *ctx, const char *path) {
    sarco_model *m = NULL;
    sarco_status s = sarco_model_load(ctx, path, &m);
    if (s != SARCO_OK) fail_msg("%s: %s: %s", path, sarco_status_string(s), sarco_last_error(ctx));
    return m;
}

static void model_path(char *dst, size_t n, const json_t *v) {
    snprintf(dst, n, DATA "%s", json_string_value(json_object_get(v, "model")));
}

/* max |a - b|, ||a - b|| / ||b||, max |b| */
static void compare(const float *got, const float *ref, size_t n, double *max_abs, double *rel, double *ref_max) {
    double d2 = 0, r2 = 0, mx = 0, rm = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)got[i] - (double)ref[i];
        if (!(fabs(d) <= mx)) mx = fabs(d); /* NaN sticks */
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
        if (fabs(ref[i]) > rm) rm = fabs(ref[i]);
    }
    *max_abs = mx;
    *rel = sqrt(d2 / r2);
    *ref_max = rm;
}

/* Runs fold `fold` of the model at path on input/output files; returns the relative L2 error (and checks
 * both bounds when `check`). */
static double run_and_compare(sarco_context *ctx, const char *path, int fold, const json_t *in_shape_j,
                              const char *input, const json_t *out_shape_j, const char *output, const char *label,
                              int check) {
    int64_t in_shape[5], out_shape[5], got_shape[5], nin, nout;
    const int nd = shape_of(in_shape_j, in_shape, &nin);
    shape_of(out_shape_j, out_shape, &nout);
    sarco_model *m = load_path(ctx, path);
    assert_int_equal(sarco_model_output_shape(ctx, m, nd, in_shape, got_shape), SARCO_OK);
    for (int i = 0; i < nd; i++) assert_int_equal(got_shape[i], out_shape[i]);
    float *x = read_floats(input, (size_t)nin);
    float *ref = read_floats(output, (size_t)nout);
    float *y = malloc((size_t)nout * sizeof(float));
    float *y2 = malloc((size_t)nout * sizeof(float));
    assert_non_null(y);
    assert_non_null(y2);
    sarco_status s = sarco_model_forward_fold(ctx, m, fold, nd, in_shape, x, y, (size_t)nout);
    if (s != SARCO_OK) fail_msg("%s: forward: %s: %s", label, sarco_status_string(s), sarco_last_error(ctx));
    double max_abs, rel, ref_max;
    compare(y, ref, (size_t)nout, &max_abs, &rel, &ref_max);
    const double bound = MAX_ABS_FRAC * (ref_max > 1 ? ref_max : 1);
    if (check) {
        printf("  %-4s %-30s max abs %.2e (bound %.1e)  rel L2 %.2e\n",
               sarco_context_backend(ctx) == SARCO_BACKEND_CUDA ? "cuda" : "cpu", label, max_abs, bound, rel);
        assert_true(rel < REL_L2_MAX);
        assert_true(max_abs < bound);
        /* a second run reuses the workspace and gives the same numbers */
        assert_int_equal(sarco_model_forward_fold(ctx, m, fold, nd, in_shape, x, y2, (size_t)nout), SARCO_OK);
        assert_memory_equal(y, y2, (size_t)nout * sizeof(float));
    }
    free(x);
    free(ref);
    free(y);
    free(y2);
    sarco_model_free(m);
    return rel;
}

static void check_variant_on(fixture *fx, sarco_context *ctx, const char *prefix) {
    const json_t *v = variant(fx, prefix);
    char path[256];
    model_path(path, sizeof path, v);
    run_and_compare(ctx, path, 0, json_object_get(v, "input_shape"), json_string_value(json_object_get(v, "input")),
                    json_object_get(v, "output_shape"), json_string_value(json_object_get(v, "output")),
                    json_string_value(json_object_get(v, "name")), 1);
}

static void check_variant(fixture *fx, const char *prefix) { check_variant_on(fx, fx->ctx, prefix); }

static void test_a_plain2d_5stages(void **state) { check_variant(*state, "a_"); }
static void test_b_plain3d_aniso(void **state) { check_variant(*state, "b_"); }
static void test_c_resenc2d_m(void **state) { check_variant(*state, "c_"); }
static void test_d_resenc3d_aniso(void **state) { check_variant(*state, "d_"); }
static void test_e_plain2d_bn_relu_nobias(void **state) { check_variant(*state, "e_"); }
static void test_f_resenc2d_bn_relu(void **state) { check_variant(*state, "f_"); }

/* ---- model files edited: a copy of a reference model with its header changed ---- */

typedef void (*edit_fn)(json_t *header, const void *arg);

/* Rewrites src into <dir>/<name> after edit(header); tensors keep the bytes of their original span and are
 * laid out again back to back, so dropped, renamed, re-shaped (same size) and added tensors make a
 * well-formed file. */
static const char *rewrite(const fixture *fx, const char *src, const char *name, edit_fn edit, const void *arg) {
    static char path[256];
    size_t size = 0;
    uint8_t *b = tu_slurp(src, &size);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)b[i] << (8 * i);
    json_error_t e;
    json_t *h = json_loadb((const char *)b + 8, (size_t)n, 0, &e);
    assert_non_null(h);
    edit(h, arg);
    const uint8_t *data = b + 8 + n;
    uint8_t *out = malloc(2 * size + 4096);
    assert_non_null(out);
    size_t used = 0;
    const char *key;
    json_t *t;
    json_object_foreach(h, key, t) {
        if (strcmp(key, "__metadata__") == 0) continue;
        json_t *off = json_object_get(t, "data_offsets");
        const json_int_t b0 = json_integer_value(json_array_get(off, 0));
        const size_t len = (size_t)(json_integer_value(json_array_get(off, 1)) - b0);
        assert_true(used + len <= 2 * size + 4096);
        memcpy(out + used, data + b0, len);
        json_object_set_new(t, "data_offsets", json_pack("[I, I]", (json_int_t)used, (json_int_t)(used + len)));
        used += len;
    }
    char *text = json_dumps(h, JSON_COMPACT);
    assert_non_null(text);
    snprintf(path, sizeof path, "%s/%s", fx->dir, name);
    size_t fsize;
    uint8_t *file = tu_st_bytes(text, out, used, &fsize);
    tu_spit(path, file, fsize);
    free(file);
    free(text);
    free(out);
    json_decref(h);
    free(b);
    return path;
}

static void expect_load_fail(fixture *fx, const char *path, sarco_status want, const char *sub) {
    sarco_model *m = (sarco_model *)(uintptr_t)1;
    const sarco_status s = sarco_model_load(fx->ctx, path, &m);
    const char *msg = sarco_last_error(fx->ctx);
    if (s != want) fail_msg("%s: want %s, got %s (%s)", path, sarco_status_string(want), sarco_status_string(s), msg);
    assert_null(m);
    if (!strstr(msg, sub)) fail_msg("%s: message \"%s\" does not name \"%s\"", path, msg, sub);
}

static void drop_tensor(json_t *h, const void *name) { assert_int_equal(json_object_del(h, name), 0); }

/* swaps the first two dims of a tensor's shape (same size, wrong shape) */
static void swap_dims(json_t *h, const void *name) {
    json_t *shape = json_object_get(json_object_get(h, name), "shape");
    assert_non_null(shape);
    const json_int_t a = json_integer_value(json_array_get(shape, 0)), b = json_integer_value(json_array_get(shape, 1));
    assert_int_not_equal(a, b);
    json_array_set_new(shape, 0, json_integer(b));
    json_array_set_new(shape, 1, json_integer(a));
}

/* arg = "new=old": adds tensor `new` as a copy of `old` */
static void add_tensor(json_t *h, const void *arg) {
    char name[192];
    const char *eq = strchr((const char *)arg, '=');
    snprintf(name, sizeof name, "%.*s", (int)(eq - (const char *)arg), (const char *)arg);
    json_t *src = json_object_get(h, eq + 1);
    assert_non_null(src);
    json_object_set_new(h, name, json_deep_copy(src));
}

/* sets sarco.config[path] where arg = "key=json" (key "kwargs.x" goes into kwargs; "config.x" top level) */
static void set_config(json_t *h, const void *arg) {
    char key[64];
    const char *eq = strchr((const char *)arg, '=');
    snprintf(key, sizeof key, "%.*s", (int)(eq - (const char *)arg), (const char *)arg);
    json_t *meta = json_object_get(h, "__metadata__");
    json_t *cfg = json_loads(json_string_value(json_object_get(meta, "sarco.config")), 0, NULL);
    assert_non_null(cfg);
    json_t *val = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    assert_non_null(val);
    if (strncmp(key, "kwargs.", 7) == 0)
        json_object_set_new(json_object_get(cfg, "kwargs"), key + 7, val);
    else
        json_object_set_new(cfg, key + 7, val); /* "config." */
    char *text = json_dumps(cfg, JSON_COMPACT);
    json_object_set_new(meta, "sarco.config", json_string(text));
    free(text);
    json_decref(cfg);
}

/* The bounds can fail: the same tensors with a semantic kwarg changed move the logits far past them. */
static void test_breakage_is_detected(void **state) {
    fixture *fx = *state;
    static const struct {
        const char *prefix, *edit;
    } cases[] = {
        {"a_", "kwargs.nonlin_kwargs={\"negative_slope\": 0.02}"},
        {"b_", "kwargs.norm_op_kwargs={\"eps\": 0.1, \"affine\": true}"}, /* the reference used eps 1e-3 */
        {"c_", "kwargs.nonlin=\"torch.nn.ReLU\""},
        {"e_", "kwargs.norm_op_kwargs={\"eps\": 1e-3, \"affine\": true}"},
        {"f_", "kwargs.nonlin=\"torch.nn.LeakyReLU\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const json_t *v = variant(fx, cases[i].prefix);
        char src[256];
        model_path(src, sizeof src, v);
        const char *p = rewrite(fx, src, "broken.safetensors", set_config, cases[i].edit);
        const double rel =
            run_and_compare(fx->ctx, p, 0, json_object_get(v, "input_shape"), json_string_value(json_object_get(v, "input")),
                            json_object_get(v, "output_shape"), json_string_value(json_object_get(v, "output")),
                            cases[i].edit, 0);
        printf("  %s with %s: rel L2 %.2e (bound %.0e)\n", cases[i].prefix, cases[i].edit, rel, REL_L2_MAX);
        assert_true(rel > 100 * REL_L2_MAX);
    }
}

/* A batch, then one item of it, then another spatial size (the workspace follows), on one model. */
static void test_shapes_and_batches(void **state) {
    fixture *fx = *state;
    const json_t *v = variant(fx, "a_");
    char path[256];
    model_path(path, sizeof path, v);
    sarco_model *m = load_path(fx->ctx, path);
    int64_t in[4], out[4], nin, nout;
    shape_of(json_object_get(v, "input_shape"), in, &nin);
    shape_of(json_object_get(v, "output_shape"), out, &nout);
    assert_int_equal(in[0], 2);
    float *x = read_floats(json_string_value(json_object_get(v, "input")), (size_t)nin);
    float *y2 = malloc((size_t)nout * sizeof(float)), *y1 = malloc((size_t)nout / 2 * sizeof(float));
    assert_int_equal(sarco_model_forward(fx->ctx, m, 4, in, x, y2, (size_t)nout), SARCO_OK);
    const int64_t one[4] = {1, in[1], in[2], in[3]};
    assert_int_equal(sarco_model_forward(fx->ctx, m, 4, one, x + nin / 2, y1, (size_t)nout / 2), SARCO_OK);
    double max_abs, rel, ref_max;
    compare(y1, y2 + nout / 2, (size_t)nout / 2, &max_abs, &rel, &ref_max);
    assert_true(rel < 1e-6); /* the second item alone = the second item of the batch */
    /* a larger input (32 x 96: a multiple of 16 on both axes) runs and has the right size */
    const int64_t big[4] = {1, 1, 32, 96};
    int64_t bo[4];
    assert_int_equal(sarco_model_output_shape(fx->ctx, m, 4, big, bo), SARCO_OK);
    assert_true(bo[1] == 3 && bo[2] == 32 && bo[3] == 96);
    float *xb = calloc(32 * 96, sizeof(float)), *yb = malloc(3 * 32 * 96 * sizeof(float));
    for (int i = 0; i < 32 * 96; i++) xb[i] = (float)sin(0.1 * i);
    assert_int_equal(sarco_model_forward(fx->ctx, m, 4, big, xb, yb, 3 * 32 * 96), SARCO_OK);
    for (int i = 0; i < 3 * 32 * 96; i++) assert_true(isfinite(yb[i]));
    /* sizes the strides do not divide, and wrong channels, are refused with the reason */
    const int64_t odd[4] = {1, 1, 40, 48}, chans[4] = {1, 2, 32, 48};
    assert_int_equal(sarco_model_output_shape(fx->ctx, m, 4, odd, bo), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(fx->ctx), "not a multiple of the strides' product 16"));
    assert_int_equal(sarco_model_output_shape(fx->ctx, m, 4, chans, bo), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(fx->ctx), "(N, 1, H, W)"));
    const int64_t five[5] = {1, 1, 8, 32, 48};
    assert_int_equal(sarco_model_output_shape(fx->ctx, m, 5, five, bo), SARCO_ERR_INVALID_ARGUMENT);
    free(x);
    free(y1);
    free(y2);
    free(xb);
    free(yb);
    sarco_model_free(m);
}

/* ---- folds ---- */

static void test_folds(void **state) {
    fixture *fx = *state;
    const json_t *f = json_object_get(fx->manifest, "fake");
    char path[256];
    model_path(path, sizeof path, f);
    const json_t *outs = json_object_get(f, "outputs");
    assert_int_equal(json_array_size(outs), 2);
    for (int i = 0; i < 2; i++) {
        char label[32];
        snprintf(label, sizeof label, "fake fold %d", i);
        run_and_compare(fx->ctx, path, i, json_object_get(f, "input_shape"), json_string_value(json_object_get(f, "input")),
                        json_object_get(f, "output_shape"), json_string_value(json_array_get(outs, (size_t)i)), label, 1);
    }
    sarco_model *m = load_path(fx->ctx, path);
    assert_int_equal(sarco_model_fold_count(m), 2);
    assert_int_equal(sarco_model_fold_count(NULL), 0);
    int64_t in[4], nin, nout;
    shape_of(json_object_get(f, "input_shape"), in, &nin);
    nout = 3 * nin;
    float *x = read_floats(json_string_value(json_object_get(f, "input")), (size_t)nin);
    float *a = malloc((size_t)nout * sizeof(float)), *b = malloc((size_t)nout * sizeof(float));
    /* sarco_model_forward is fold 0; folds alternate (the other fold's workspace is dropped) */
    assert_int_equal(sarco_model_forward_fold(fx->ctx, m, 1, 4, in, x, b, (size_t)nout), SARCO_OK);
    assert_int_equal(sarco_model_forward(fx->ctx, m, 4, in, x, a, (size_t)nout), SARCO_OK);
    float *c = malloc((size_t)nout * sizeof(float));
    assert_int_equal(sarco_model_forward_fold(fx->ctx, m, 0, 4, in, x, c, (size_t)nout), SARCO_OK);
    assert_memory_equal(a, c, (size_t)nout * sizeof(float));
    assert_memory_not_equal(a, b, (size_t)nout * sizeof(float));
    assert_int_equal(sarco_model_forward_fold(fx->ctx, m, 2, 4, in, x, c, (size_t)nout), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(fx->ctx), "fold 2 does not exist (the model has 2)"));
    assert_int_equal(sarco_model_forward_fold(fx->ctx, m, -1, 4, in, x, c, (size_t)nout), SARCO_ERR_INVALID_ARGUMENT);
    free(x);
    free(a);
    free(b);
    free(c);
    sarco_model_free(m);

    /* a file without "folds" has one */
    const json_t *v = variant(fx, "e_");
    model_path(path, sizeof path, v);
    m = load_path(fx->ctx, path);
    assert_int_equal(sarco_model_fold_count(m), 1);
    sarco_model_free(m);
}

static void test_bad_fold_files(void **state) {
    fixture *fx = *state;
    char src[256];
    model_path(src, sizeof src, json_object_get(fx->manifest, "fake"));
    /* one fold's tensor missing or mis-shaped: the fold and the tensor are named */
    expect_load_fail(fx, rewrite(fx, src, "f1.safetensors", drop_tensor, "fold.1.decoder.seg_layers.1.weight"),
                     SARCO_ERR_BAD_FORMAT, "fold 1 (fold_1)");
    assert_non_null(strstr(sarco_last_error(fx->ctx), "decoder.seg_layers.1.weight"));
    expect_load_fail(fx, rewrite(fx, src, "f2.safetensors", swap_dims, "fold.0.encoder.stages.1.0.convs.0.conv.weight"),
                     SARCO_ERR_BAD_FORMAT, "fold 0 (fold_0)");
    assert_non_null(strstr(sarco_last_error(fx->ctx), "encoder.stages.1.0.convs.0.conv.weight"));
    /* folds and tensors disagree */
    expect_load_fail(fx, rewrite(fx, src, "f3.safetensors", set_config, "config.folds=[\"fold_0\", \"fold_1\", \"fold_2\"]"),
                     SARCO_ERR_BAD_FORMAT, "no tensor is named fold.2.*");
    expect_load_fail(fx, rewrite(fx, src, "f4.safetensors", set_config, "config.folds=[\"fold_0\"]"),
                     SARCO_ERR_BAD_FORMAT, "belongs to none of the 1 folds");
    assert_non_null(strstr(sarco_last_error(fx->ctx), "fold.1."));
    expect_load_fail(fx, rewrite(fx, src, "f5.safetensors", add_tensor, "decoder.extra=fold.0.decoder.seg_layers.1.bias"),
                     SARCO_ERR_BAD_FORMAT, "tensor decoder.extra belongs to none");
    expect_load_fail(fx, rewrite(fx, src, "f9.safetensors", add_tensor, "fold.01.x=fold.0.decoder.seg_layers.1.bias"),
                     SARCO_ERR_BAD_FORMAT, "tensor fold.01.x belongs to none of the 2 folds");
    expect_load_fail(fx, rewrite(fx, src, "f6.safetensors", set_config, "config.folds=\"fold_0\""),
                     SARCO_ERR_BAD_FORMAT, "\"folds\" must be a list");
    expect_load_fail(fx, rewrite(fx, src, "f7.safetensors", set_config, "config.folds=[0, 1]"),
                     SARCO_ERR_BAD_FORMAT, "\"folds\"[0] is not a string");
    /* without "folds" the prefixed names are unknown tensors */
    expect_load_fail(fx, rewrite(fx, src, "f8.safetensors", set_config, "config.folds=null"), SARCO_ERR_BAD_FORMAT,
                     "80 unexpected");
}

static void test_bad_tensors_and_kwargs(void **state) {
    fixture *fx = *state;
    char src[256];
    model_path(src, sizeof src, variant(fx, "d_")); /* ResEnc 3D with a stem projection and pool-only skips */
    expect_load_fail(fx, rewrite(fx, src, "b1.safetensors", drop_tensor, "encoder.stages.0.blocks.0.skip.0.conv.weight"),
                     SARCO_ERR_BAD_FORMAT, "encoder.stages.0.blocks.0.skip.0.conv.weight");
    expect_load_fail(fx, rewrite(fx, src, "b2.safetensors", swap_dims, "encoder.stages.2.blocks.0.conv1.conv.weight"),
                     SARCO_ERR_BAD_FORMAT, "encoder.stages.2.blocks.0.conv1.conv.weight");
    expect_load_fail(fx, rewrite(fx, src, "b3.safetensors", add_tensor,
                                 "encoder.stages.3.blocks.0.skip.1.conv.weight=encoder.stages.3.blocks.0.conv2.conv.weight"),
                     SARCO_ERR_BAD_FORMAT, "encoder.stages.3.blocks.0.skip.1.conv.weight");
    /* the duplicates nnU-Net's state_dicts carry are accepted and ignored */
    sarco_model *m = load_path(fx->ctx, rewrite(fx, src, "b4.safetensors", add_tensor,
                                                "decoder.encoder.stem.convs.0.all_modules.0.weight=encoder.stem.convs.0.conv.weight"));
    sarco_model_free(m);
    static const struct {
        const char *edit, *msg;
        sarco_status st;
    } kw[] = {
        {"kwargs.nonlin=\"torch.nn.GELU\"", "nonlin \"GELU\"", SARCO_ERR_UNSUPPORTED},
        {"kwargs.norm_op=\"torch.nn.GroupNorm\"", "norm_op \"GroupNorm\"", SARCO_ERR_UNSUPPORTED},
        {"kwargs.norm_op=\"InstanceNorm2d\"", "norm_op \"InstanceNorm2d\"", SARCO_ERR_UNSUPPORTED},
        {"kwargs.block=\"BottleneckD\"", "block \"BottleneckD\"", SARCO_ERR_UNSUPPORTED},
        {"kwargs.pool_type=\"max\"", "unknown kwarg \"pool_type\"", SARCO_ERR_UNSUPPORTED},
        {"kwargs.kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 2, 3]]", "even size 2", SARCO_ERR_UNSUPPORTED},
        {"kwargs.strides=[[1, 1], [2, 2], [2, 2], [2, 2]]", "strides[0] has 2 entries for a 3D network",
         SARCO_ERR_BAD_FORMAT},
        {"kwargs.n_blocks_per_stage=[1, 3, 4]", "n_blocks_per_stage has 3 entries, expected 4", SARCO_ERR_BAD_FORMAT},
        {"kwargs.n_stages=17", "n_stages = 17 is outside", SARCO_ERR_UNSUPPORTED},
        {"kwargs.stem_channels=4", "encoder.stem.convs.0.conv.weight", SARCO_ERR_BAD_FORMAT},
        {"kwargs.conv_bias=false", "conv.bias", SARCO_ERR_BAD_FORMAT},
        {"kwargs.norm_op_kwargs={\"eps\": 1e-5, \"affine\": false}", "unexpected tensor", SARCO_ERR_BAD_FORMAT},
        {"kwargs.conv_op=\"torch.nn.Conv1d\"", "conv_op must be Conv2d or Conv3d", SARCO_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        expect_load_fail(fx, rewrite(fx, src, "k.safetensors", set_config, kw[i].edit), kw[i].st, kw[i].msg);
    model_path(src, sizeof src, variant(fx, "e_")); /* plain, BatchNorm */
    expect_load_fail(fx, rewrite(fx, src, "b5.safetensors", drop_tensor, "encoder.stages.2.0.convs.1.norm.running_var"),
                     SARCO_ERR_BAD_FORMAT, "encoder.stages.2.0.convs.1.norm.running_var");
    expect_load_fail(fx, rewrite(fx, src, "k.safetensors", set_config, "kwargs.nonlin_first=true"),
                     SARCO_ERR_UNSUPPORTED, "nonlin_first");
    expect_load_fail(fx, rewrite(fx, src, "k.safetensors", set_config,
                                 "kwargs.norm_op_kwargs={\"track_running_stats\": false}"),
                     SARCO_ERR_UNSUPPORTED, "BatchNorm without track_running_stats");
}

/* The variants and the folds on the CUDA backend in FP32 with the same bounds when a GPU and
 * libsarco_cuda.so are there; otherwise an explicit SKIP line. */
static void test_cuda_variants(void **state) {
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
    const char *prefixes[] = {"a_", "b_", "c_", "d_", "e_", "f_"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) check_variant_on(fx, ctx, prefixes[i]);
    const json_t *f = json_object_get(fx->manifest, "fake");
    char path[256];
    model_path(path, sizeof path, f);
    for (int i = 0; i < 2; i++)
        run_and_compare(ctx, path, i, json_object_get(f, "input_shape"), json_string_value(json_object_get(f, "input")),
                        json_object_get(f, "output_shape"),
                        json_string_value(json_array_get(json_object_get(f, "outputs"), (size_t)i)), "fake fold", 1);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_plain2d_5stages),
        cmocka_unit_test(test_b_plain3d_aniso),
        cmocka_unit_test(test_c_resenc2d_m),
        cmocka_unit_test(test_d_resenc3d_aniso),
        cmocka_unit_test(test_e_plain2d_bn_relu_nobias),
        cmocka_unit_test(test_f_resenc2d_bn_relu),
        cmocka_unit_test(test_breakage_is_detected),
        cmocka_unit_test(test_shapes_and_batches),
        cmocka_unit_test(test_folds),
        cmocka_unit_test(test_bad_fold_files),
        cmocka_unit_test(test_bad_tensors_and_kwargs),
        cmocka_unit_test(test_cuda_variants),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
