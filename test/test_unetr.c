/* monai.UNETR against MONAI itself: every variant of test/data/unetr/manifest.json (written by
 * test/gen_unetr_reference.py from MONAI's own forward, in float64) is loaded with sarco_model_load,
 * run with sarco_model_forward on the CPU backend and compared: relative L2 error < 1e-4 (FP32) and
 * max abs error < 1e-4 x max(1, max |reference|). Then the failures: a wrong input shape names the
 * expected and the given shape; missing, mis-shaped, unknown and truncated tensors and bad kwargs
 * fail the load whole with the tensor or keyword named. */
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

#define DATA "test/data/unetr/"
#define REL_L2_MAX 1e-4
#define MAX_ABS_FRAC 1e-4 /* of max(1, max |reference|) */

typedef struct fixture {
    char dir[64];
    sarco_context *ctx;
    json_t *manifest;
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || tu_dir_and_ctx("unetr", fx->dir, sizeof fx->dir, &fx->ctx) != 0) return -1;
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
    return (float *)b; /* malloc'd: suitably aligned */
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

static sarco_model *load_on(sarco_context *ctx, const json_t *v) {
    char path[256];
    snprintf(path, sizeof path, DATA "%s", json_string_value(json_object_get(v, "model")));
    sarco_model *m = NULL;
    sarco_status s = sarco_model_load(ctx, path, &m);
    if (s != SARCO_OK) fail_msg("%s: %s: %s", path, sarco_status_string(s), sarco_last_error(ctx));
    assert_string_equal(sarco_model_arch(m), "monai.UNETR");
    return m;
}

static sarco_model *load_variant(fixture *fx, const json_t *v) { return load_on(fx->ctx, v); }

/* max |a - b| and ||a - b|| / ||b|| */
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

static void check_variant_on(fixture *fx, sarco_context *ctx, const char *prefix) {
    const json_t *v = variant(fx, prefix);
    const char *name = json_string_value(json_object_get(v, "name"));
    int64_t in_shape[5], out_shape[5], got_shape[5], nin, nout;
    const int nd = shape_of(json_object_get(v, "input_shape"), in_shape, &nin);
    shape_of(json_object_get(v, "output_shape"), out_shape, &nout);
    sarco_model *m = load_on(ctx, v);
    assert_int_equal(sarco_model_output_shape(ctx, m, nd, in_shape, got_shape), SARCO_OK);
    for (int i = 0; i < nd; i++) assert_int_equal(got_shape[i], out_shape[i]);

    float *x = read_floats(json_string_value(json_object_get(v, "input")), (size_t)nin);
    float *ref = read_floats(json_string_value(json_object_get(v, "output")), (size_t)nout);
    float *y = malloc((size_t)nout * sizeof(float));
    float *y2 = malloc((size_t)nout * sizeof(float));
    assert_non_null(y);
    assert_non_null(y2);
    sarco_status s = sarco_model_forward(ctx, m, nd, in_shape, x, y, (size_t)nout);
    if (s != SARCO_OK) fail_msg("%s: forward: %s: %s", name, sarco_status_string(s), sarco_last_error(ctx));
    double max_abs, rel, ref_max;
    compare(y, ref, (size_t)nout, &max_abs, &rel, &ref_max);
    const double bound = MAX_ABS_FRAC * (ref_max > 1 ? ref_max : 1);
    const json_t *mon = json_object_get(v, "monai_fp32_vs_fp64");
    printf("  %-4s %-28s max abs %.2e (bound %.1e)  rel L2 %.2e   [MONAI fp32 itself: max %.2e rel %.2e]\n",
           sarco_context_backend(ctx) == SARCO_BACKEND_CUDA ? "cuda" : "cpu", name,
           max_abs, bound, rel, json_real_value(json_object_get(mon, "max_abs")),
           json_real_value(json_object_get(mon, "rel_l2")));
    assert_true(rel < REL_L2_MAX);
    assert_true(max_abs < bound);

    /* the second run reuses the workspace and must give the same numbers */
    assert_int_equal(sarco_model_forward(ctx, m, nd, in_shape, x, y2, (size_t)nout), SARCO_OK);
    assert_memory_equal(y, y2, (size_t)nout * sizeof(float));
    free(x);
    free(ref);
    free(y);
    free(y2);
    sarco_model_free(m);
}

static void check_variant(fixture *fx, const char *prefix) { check_variant_on(fx, fx->ctx, prefix); }

/* The same variants on the CUDA backend in FP32 (exact mode), with the same bounds, when a GPU and
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
    sarco_context_free(ctx);
}

static void test_a_conv_instance_res(void **state) { check_variant(*state, "a_"); }
static void test_b_perceptron_batch_qkvbias(void **state) { check_variant(*state, "b_"); }
static void test_c_2d_instance_affine_batch2(void **state) { check_variant(*state, "c_"); }
static void test_d_noncubic(void **state) { check_variant(*state, "d_"); }
static void test_e_plain_blocks(void **state) { check_variant(*state, "e_"); }
static void test_f_2d_perceptron_batch_basic(void **state) { check_variant(*state, "f_"); }

/* A batch of 3 (the reference input, its negation, the reference again) after a batch of 1: the
 * workspace is re-sized, every item goes through its own attention, and items 0 and 2 must equal
 * the N = 1 reference. */
static void test_batch_resize(void **state) {
    fixture *fx = *state;
    const json_t *v = variant(fx, "d_");
    int64_t in_shape[5], out_shape[5], nin, nout;
    const int nd = shape_of(json_object_get(v, "input_shape"), in_shape, &nin);
    shape_of(json_object_get(v, "output_shape"), out_shape, &nout);
    assert_int_equal(in_shape[0], 1);
    sarco_model *m = load_variant(fx, v);
    float *x = read_floats(json_string_value(json_object_get(v, "input")), (size_t)nin);
    float *ref = read_floats(json_string_value(json_object_get(v, "output")), (size_t)nout);
    float *y1 = malloc((size_t)nout * sizeof(float));
    float *x3 = malloc(3 * (size_t)nin * sizeof(float));
    float *y3 = malloc(3 * (size_t)nout * sizeof(float));
    assert_non_null(y1);
    assert_non_null(x3);
    assert_non_null(y3);
    for (int64_t i = 0; i < nin; i++) {
        x3[i] = x3[2 * nin + i] = x[i];
        x3[nin + i] = -x[i];
    }
    assert_int_equal(sarco_model_forward(fx->ctx, m, nd, in_shape, x, y1, (size_t)nout), SARCO_OK);
    in_shape[0] = 3;
    assert_int_equal(sarco_model_forward(fx->ctx, m, nd, in_shape, x3, y3, 3 * (size_t)nout), SARCO_OK);
    double max_abs, rel, ref_max;
    for (int item = 0; item < 3; item += 2) {
        compare(y3 + item * nout, ref, (size_t)nout, &max_abs, &rel, &ref_max);
        assert_true(rel < REL_L2_MAX);
    }
    compare(y3 + nout, ref, (size_t)nout, &max_abs, &rel, &ref_max);
    assert_true(rel > 0.05); /* the negated input is a different image, not a copy of item 0 */
    /* back to one item: the same numbers as before */
    in_shape[0] = 1;
    assert_int_equal(sarco_model_forward(fx->ctx, m, nd, in_shape, x, y3, (size_t)nout), SARCO_OK);
    assert_memory_equal(y1, y3, (size_t)nout * sizeof(float));
    free(x);
    free(ref);
    free(y1);
    free(x3);
    free(y3);
    sarco_model_free(m);
}

static void expect_shape_error(fixture *fx, sarco_model *m, int nd, const int64_t *shape, const char *want,
                               const char *got) {
    int64_t out[5];
    assert_int_equal(sarco_model_output_shape(fx->ctx, m, nd, shape, out), SARCO_ERR_INVALID_ARGUMENT);
    const char *msg = sarco_last_error(fx->ctx);
    if (!strstr(msg, want) || !strstr(msg, got)) fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", msg, want, got);
    float x[4] = {0}, y[4];
    assert_int_equal(sarco_model_forward(fx->ctx, m, nd, shape, x, y, 4), SARCO_ERR_INVALID_ARGUMENT);
}

static void test_wrong_input_shape(void **state) {
    fixture *fx = *state;
    sarco_model *m = load_variant(fx, variant(fx, "d_")); /* (N, 1, 32, 48, 16) */
    expect_shape_error(fx, m, 5, (const int64_t[]){1, 1, 32, 48, 32}, "(N, 1, 32, 48, 16)", "(1, 1, 32, 48, 32)");
    expect_shape_error(fx, m, 5, (const int64_t[]){2, 3, 32, 48, 16}, "(N, 1, 32, 48, 16)", "(2, 3, 32, 48, 16)");
    expect_shape_error(fx, m, 5, (const int64_t[]){1, 1, 48, 32, 16}, "(N, 1, 32, 48, 16)", "(1, 1, 48, 32, 16)");
    expect_shape_error(fx, m, 4, (const int64_t[]){1, 1, 32, 48}, "(N, 1, 32, 48, 16)", "(1, 1, 32, 48)");
    sarco_model_free(m);
    m = load_variant(fx, variant(fx, "c_")); /* 2D: (N, 1, 32, 48) */
    expect_shape_error(fx, m, 5, (const int64_t[]){1, 1, 32, 48, 1}, "(N, 1, 32, 48)", "(1, 1, 32, 48, 1)");
    expect_shape_error(fx, m, 4, (const int64_t[]){1, 1, 48, 32}, "(N, 1, 32, 48)", "(1, 1, 48, 32)");
    sarco_model_free(m);
}

/* ---- broken model files: a copy of a reference model with its header edited ---- */

typedef void (*edit_fn)(json_t *header, const void *arg);

/* Rewrites src into <dir>/<name> after edit(header): tensors keep the bytes of their (original)
 * data_offsets and are laid out again back to back, so dropped, renamed, re-shaped (same size) and
 * added (pointing at an existing span) tensors all make a well-formed file. */
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
    uint8_t *out = malloc(size + 4096);
    assert_non_null(out);
    size_t used = 0;
    const char *key;
    json_t *t;
    json_object_foreach(h, key, t) {
        if (strcmp(key, "__metadata__") == 0) continue;
        json_t *off = json_object_get(t, "data_offsets");
        const json_int_t b0 = json_integer_value(json_array_get(off, 0));
        const size_t len = (size_t)(json_integer_value(json_array_get(off, 1)) - b0);
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

static void expect_load_ok(fixture *fx, const char *path) {
    sarco_model *m = NULL;
    const sarco_status s = sarco_model_load(fx->ctx, path, &m);
    if (s != SARCO_OK) fail_msg("%s: %s: %s", path, sarco_status_string(s), sarco_last_error(fx->ctx));
    sarco_model_free(m);
}

static void drop_tensor(json_t *h, const void *name) { assert_int_equal(json_object_del(h, name), 0); }

static void transpose_2d(json_t *h, const void *name) {
    json_t *shape = json_object_get(json_object_get(h, name), "shape");
    const json_int_t a = json_integer_value(json_array_get(shape, 0)), b = json_integer_value(json_array_get(shape, 1));
    assert_int_not_equal(a, b);
    json_array_set_new(shape, 0, json_integer(b));
    json_array_set_new(shape, 1, json_integer(a));
}

/* adds tensor `name` as a copy of vit.blocks.0.norm1.weight's span and shape */
static void add_tensor(json_t *h, const void *name) {
    json_object_set_new(h, name, json_deep_copy(json_object_get(h, "vit.blocks.0.norm1.weight")));
}

/* sets one kwarg of sarco.config: arg = "key=json value" */
static void set_kwarg(json_t *h, const void *arg) {
    char key[64];
    const char *eq = strchr((const char *)arg, '=');
    snprintf(key, sizeof key, "%.*s", (int)(eq - (const char *)arg), (const char *)arg);
    json_t *meta = json_object_get(h, "__metadata__");
    json_t *cfg = json_loads(json_string_value(json_object_get(meta, "sarco.config")), 0, NULL);
    assert_non_null(cfg);
    json_t *val = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    assert_non_null(val);
    json_object_set_new(json_object_get(cfg, "kwargs"), key, val);
    char *text = json_dumps(cfg, JSON_COMPACT);
    json_object_set_new(meta, "sarco.config", json_string(text));
    free(text);
    json_decref(cfg);
}

static void test_bad_tensors(void **state) {
    fixture *fx = *state;
    const char *e = DATA "e_plain_blocks.safetensors";   /* instance norm, MONAI >= 1.4 keys */
    const char *b = DATA "b_perceptron_batch_qkvbias.safetensors"; /* batch norm, qkv bias */

    expect_load_fail(fx, rewrite(fx, e, "missing.st", drop_tensor, "vit.blocks.5.mlp.linear1.weight"),
                     SARCO_ERR_BAD_FORMAT, "vit.blocks.5.mlp.linear1.weight");
    expect_load_fail(fx, rewrite(fx, e, "missing_out.st", drop_tensor, "out.conv.conv.bias"), SARCO_ERR_BAD_FORMAT,
                     "out.conv.conv.bias");
    expect_load_fail(fx, rewrite(fx, b, "missing_bn.st", drop_tensor, "decoder3.conv_block.norm2.running_var"),
                     SARCO_ERR_BAD_FORMAT, "decoder3.conv_block.norm2.running_var");
    expect_load_fail(fx, rewrite(fx, b, "missing_qkvb.st", drop_tensor, "vit.blocks.11.attn.qkv.bias"),
                     SARCO_ERR_BAD_FORMAT, "vit.blocks.11.attn.qkv.bias");
    expect_load_fail(fx, rewrite(fx, e, "misshaped.st", transpose_2d, "vit.blocks.2.attn.qkv.weight"),
                     SARCO_ERR_BAD_FORMAT, "vit.blocks.2.attn.qkv.weight");
    expect_load_fail(fx,
                     rewrite(fx, b, "misshaped_lin.st", transpose_2d, "vit.patch_embedding.patch_embeddings.1.weight"),
                     SARCO_ERR_BAD_FORMAT, "vit.patch_embedding.patch_embeddings.1.weight");
    expect_load_fail(fx, rewrite(fx, e, "unknown.st", add_tensor, "vit.blocks.0.attn.extra.weight"),
                     SARCO_ERR_BAD_FORMAT, "vit.blocks.0.attn.extra.weight");
    /* a conv block's weights in a conv_block=False model are unexpected, not ignored */
    expect_load_fail(fx, rewrite(fx, e, "unexpected.st", add_tensor, "encoder2.blocks.0.1.conv1.conv.weight"),
                     SARCO_ERR_BAD_FORMAT, "encoder2.blocks.0.1.conv1.conv.weight");

    /* the unused cross-attention weights of MONAI >= 1.4 are ignored, present or not */
    expect_load_ok(fx, rewrite(fx, e, "cross.st", add_tensor, "vit.blocks.3.cross_attn.out_proj.weight"));
    expect_load_ok(fx, rewrite(fx, e, "no_cross.st", drop_tensor, "vit.blocks.7.norm_cross_attn.weight"));
    expect_load_ok(fx, rewrite(fx, b, "no_counter.st", drop_tensor, "encoder1.layer.norm1.num_batches_tracked"));

    /* kwargs that contradict the tensors, or that are not UNETR's */
    expect_load_fail(fx, rewrite(fx, e, "kw_qkv.st", set_kwarg, "qkv_bias=true"), SARCO_ERR_BAD_FORMAT,
                     "vit.blocks.0.attn.qkv.bias");
    expect_load_fail(fx, rewrite(fx, e, "kw_fs.st", set_kwarg, "feature_size=4"), SARCO_ERR_BAD_FORMAT,
                     "encoder1.layer.conv1.conv.weight");
    expect_load_fail(fx, rewrite(fx, e, "kw_img.st", set_kwarg, "img_size=[16, 16, 40]"), SARCO_ERR_UNSUPPORTED,
                     "img_size 40");
    expect_load_fail(fx, rewrite(fx, e, "kw_norm.st", set_kwarg, "norm_name=\"group\""), SARCO_ERR_UNSUPPORTED,
                     "group");
    expect_load_fail(fx, rewrite(fx, e, "kw_heads.st", set_kwarg, "num_heads=3"), SARCO_ERR_BAD_FORMAT,
                     "num_heads");
    expect_load_fail(fx, rewrite(fx, e, "kw_unknown.st", set_kwarg, "dim_head=8"), SARCO_ERR_UNSUPPORTED, "dim_head");
    expect_load_fail(fx, rewrite(fx, e, "kw_proj.st", set_kwarg, "proj_type=\"linear\""), SARCO_ERR_UNSUPPORTED,
                     "linear");
    /* the pre-1.3 name of proj_type is still understood */
    expect_load_ok(fx, rewrite(fx, e, "kw_pos_embed.st", set_kwarg, "pos_embed=\"conv\""));

    /* a truncated file */
    size_t size = 0;
    uint8_t *buf = tu_slurp(e, &size);
    char path[256];
    snprintf(path, sizeof path, "%s/truncated.st", fx->dir);
    tu_spit(path, buf, size - 1000);
    free(buf);
    expect_load_fail(fx, path, SARCO_ERR_BAD_FORMAT, "truncated.st");
}

/* Under a growing memory limit every load and forward either works or fails with OUT_OF_MEMORY, in
 * the weight preparation and in the workspace alike, and nothing stays allocated after the free. */
static void test_memory_limit(void **state) {
    fixture *fx = *state;
    const json_t *v = variant(fx, "e_");
    int64_t in_shape[5], nin, nout, out_shape[5];
    const int nd = shape_of(json_object_get(v, "input_shape"), in_shape, &nin);
    shape_of(json_object_get(v, "output_shape"), out_shape, &nout);
    float *x = read_floats(json_string_value(json_object_get(v, "input")), (size_t)nin);
    float *y = malloc((size_t)nout * sizeof(float));
    assert_non_null(y);
    char path[256];
    snprintf(path, sizeof path, DATA "%s", json_string_value(json_object_get(v, "model")));
    int load_oom = 0, fwd_oom = 0, ok = 0;
    for (size_t limit = 16 << 10; limit < (64u << 20) && !ok; limit = limit * 5 / 4) {
        sarco_context_options o;
        sarco_context_options_init(&o);
        o.backend = SARCO_BACKEND_CPU;
        o.memory_limit = limit;
        sarco_context *ctx = NULL;
        assert_int_equal(sarco_context_create(&o, &ctx), SARCO_OK);
        const size_t base = ctx->host_bytes;
        sarco_model *m = NULL;
        sarco_status s = sarco_model_load(ctx, path, &m);
        if (s == SARCO_OK) {
            s = sarco_model_forward(ctx, m, nd, in_shape, x, y, (size_t)nout);
            if (s == SARCO_OK)
                ok = 1;
            else
                fwd_oom++;
            sarco_model_free(m);
        } else {
            assert_null(m);
            load_oom++;
        }
        if (s != SARCO_OK) assert_int_equal(s, SARCO_ERR_OUT_OF_MEMORY);
        assert_int_equal(ctx->host_bytes, base);
        sarco_context_free(ctx);
    }
    printf("  memory limit: %d loads and %d forwards ran out, then it ran\n", load_oom, fwd_oom);
    assert_true(ok);
    assert_true(load_oom > 1);
    assert_true(fwd_oom > 0);
    free(x);
    free(y);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_conv_instance_res),
        cmocka_unit_test(test_b_perceptron_batch_qkvbias),
        cmocka_unit_test(test_c_2d_instance_affine_batch2),
        cmocka_unit_test(test_d_noncubic),
        cmocka_unit_test(test_e_plain_blocks),
        cmocka_unit_test(test_f_2d_perceptron_batch_basic),
        cmocka_unit_test(test_batch_resize),
        cmocka_unit_test(test_wrong_input_shape),
        cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_cuda_variants),
    };
    return cmocka_run_group_tests_name("unetr", tests, setup, teardown);
}
