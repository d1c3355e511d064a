/* sarco_model_load on files that are valid safetensors but not usable models (and on paths that do
 * not exist): each fails with its own status and a message naming the file. The files are written
 * here, into a mkdtemp directory, by a tiny writer. */
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

typedef struct fixture {
    char dir[64];
    sarco_context *ctx;
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || tu_dir_and_ctx("model", fx->dir, sizeof fx->dir, &fx->ctx) != 0) return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    tu_dir_and_ctx_free(fx->dir, fx->ctx);
    free(fx);
    return 0;
}

/* Writes <dir>/<name>: one F32 tensor "w" (2,) and, when config is not NULL, __metadata__ with
 * "sarco.config" = config (a string, whatever it holds). Returns the path (static buffer). */
static const char *write_model(const fixture *fx, const char *name, const char *config) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", fx->dir, name);
    json_t *h = json_object();
    if (config) {
        json_t *meta = json_object();
        json_object_set_new(meta, "sarco.config", json_string(config));
        json_object_set_new(meta, "format", json_string("pt"));
        json_object_set_new(h, "__metadata__", meta);
    }
    json_object_set_new(h, "w", json_pack("{s:s, s:[i], s:[i, i]}", "dtype", "F32", "shape", 2, "data_offsets", 0, 8));
    char *text = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    assert_non_null(text);
    const float w[2] = {1.0f, -2.0f};
    size_t size;
    uint8_t *b = tu_st_bytes(text, w, sizeof w, &size);
    tu_spit(path, b, size);
    free(b);
    free(text);
    return path;
}

static void expect_fail(fixture *fx, const char *path, sarco_status want, const char *sub) {
    sarco_model *m = (sarco_model *)0x1;
    sarco_status s = sarco_model_load(fx->ctx, path, &m);
    const char *msg = sarco_last_error(fx->ctx);
    if (s != want)
        fail_msg("%s: got %s (%s), expected %s", path, sarco_status_string(s), msg, sarco_status_string(want));
    assert_null(m);
    if (!strstr(msg, path)) fail_msg("message \"%s\" does not name the file %s", msg, path);
    if (sub && !strstr(msg, sub)) fail_msg("message \"%s\" lacks \"%s\"", msg, sub);
}

static void test_no_config(void **state) {
    fixture *fx = *state;
    expect_fail(fx, write_model(fx, "no_metadata.safetensors", NULL), SARCO_ERR_BAD_FORMAT,
                "no \"sarco.config\" in __metadata__");
}

static void test_config_not_json(void **state) {
    fixture *fx = *state;
    expect_fail(fx, write_model(fx, "not_json.safetensors", "{arch: unet"), SARCO_ERR_BAD_FORMAT,
                "sarco.config is not a JSON object");
    expect_fail(fx, write_model(fx, "array.safetensors", "[\"monai.UNETR\"]"), SARCO_ERR_BAD_FORMAT,
                "sarco.config is not a JSON object");
    expect_fail(fx, write_model(fx, "empty.safetensors", ""), SARCO_ERR_BAD_FORMAT,
                "sarco.config is not a JSON object");
    expect_fail(fx, write_model(fx, "dup.safetensors", "{\"arch\": \"a\", \"arch\": \"b\"}"), SARCO_ERR_BAD_FORMAT,
                "sarco.config is not a JSON object");
}

static void test_no_arch(void **state) {
    fixture *fx = *state;
    expect_fail(fx, write_model(fx, "no_arch.safetensors", "{\"kwargs\": {}}"), SARCO_ERR_BAD_FORMAT,
                "sarco.config has no string \"arch\"");
    expect_fail(fx, write_model(fx, "arch_number.safetensors", "{\"arch\": 3}"), SARCO_ERR_BAD_FORMAT,
                "sarco.config has no string \"arch\"");
}

static void test_unknown_arch(void **state) {
    fixture *fx = *state;
    const char *path = write_model(fx, "unknown.safetensors", "{\"arch\": \"acme.NoSuchNet\", \"kwargs\": {}}");
    expect_fail(fx, path, SARCO_ERR_UNSUPPORTED, "architecture \"acme.NoSuchNet\" is not built in (known: ");
    /* the message lists every built-in architecture */
    char names[256];
    sarco_arch_names(names, sizeof names);
    char *save = names, *tok;
    int listed = 0;
    while ((tok = strsep(&save, ",")) != NULL) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        assert_non_null(sarco_arch_find(tok));
        if (!strstr(sarco_last_error(fx->ctx), tok))
            fail_msg("message \"%s\" does not list \"%s\"", sarco_last_error(fx->ctx), tok);
        listed++;
    }
    print_message("built-in architectures listed: %d\n", listed);
    assert_null(sarco_arch_find("acme.NoSuchNet"));
}

static void test_kwargs_not_object(void **state) {
    fixture *fx = *state;
    char names[256];
    sarco_arch_names(names, sizeof names);
    char *comma = strchr(names, ',');
    if (comma) *comma = '\0';
    if (!names[0]) {
        print_message("SKIP kwargs check: no architecture is built in yet\n");
        return;
    }
    char cfg[320];
    snprintf(cfg, sizeof cfg, "{\"arch\": \"%s\", \"kwargs\": [1, 2]}", names);
    expect_fail(fx, write_model(fx, "kwargs.safetensors", cfg), SARCO_ERR_BAD_FORMAT,
                "sarco.config \"kwargs\" is not an object");
}

static void test_missing_and_bad_files(void **state) {
    fixture *fx = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/does_not_exist.safetensors", fx->dir);
    expect_fail(fx, path, SARCO_ERR_IO, "cannot open");
    expect_fail(fx, fx->dir, SARCO_ERR_IO, "not a regular file");
    /* a file that is not safetensors at all: the reader's message, still naming the file */
    snprintf(path, sizeof path, "%s/garbage.safetensors", fx->dir);
    tu_spit(path, "this is not a model", strlen("this is not a model"));
    expect_fail(fx, path, SARCO_ERR_LIMIT, "100 MB");
    expect_fail(fx, "test/data/safetensors/duplicate_key.safetensors", SARCO_ERR_BAD_FORMAT, "duplicate object key");
}

static void test_arguments(void **state) {
    fixture *fx = *state;
    sarco_model *m = (sarco_model *)0x1;
    assert_int_equal(sarco_model_load(fx->ctx, NULL, &m), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_model_load(NULL, "x", &m), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_model_load(fx->ctx, "x", NULL), SARCO_ERR_INVALID_ARGUMENT);
    sarco_model_free(NULL);
    assert_null(sarco_model_config_json(NULL));
    assert_null(sarco_model_arch(NULL));
    int64_t in[4] = {1, 1, 8, 8}, out[4];
    assert_int_equal(sarco_model_output_shape(fx->ctx, NULL, 4, in, out), SARCO_ERR_INVALID_ARGUMENT);
    float x = 0, y = 0;
    assert_int_equal(sarco_model_forward(fx->ctx, NULL, 4, in, &x, &y, 1), SARCO_ERR_INVALID_ARGUMENT);
    assert_true(sarco_last_error(fx->ctx)[0] != '\0');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_config),         cmocka_unit_test(test_config_not_json),
        cmocka_unit_test(test_no_arch),           cmocka_unit_test(test_unknown_arch),
        cmocka_unit_test(test_kwargs_not_object), cmocka_unit_test(test_missing_and_bad_files),
        cmocka_unit_test(test_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
