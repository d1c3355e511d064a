/* The public API's contract: version, status text, context options and backends, NULL frees,
 * the memory limit. Backend checks hold on machines with and without a GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <libgen.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/core/core.h"

static void test_version(void **state) {
    (void)state;
    assert_int_equal(sarco_version_number(), SARCO_VERSION_NUMBER);
    assert_int_equal(SARCO_VERSION_NUMBER,
                     SARCO_VERSION_MAJOR * 10000 + SARCO_VERSION_MINOR * 100 + SARCO_VERSION_PATCH);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", SARCO_VERSION_MAJOR, SARCO_VERSION_MINOR, SARCO_VERSION_PATCH);
    assert_string_equal(sarco_version_string(), want);
}

static void test_status_strings(void **state) {
    (void)state;
    const char *seen[SARCO_ERR_INTERNAL + 1];
    for (int s = SARCO_OK; s <= SARCO_ERR_INTERNAL; s++) {
        const char *t = sarco_status_string((sarco_status)s);
        assert_non_null(t);
        assert_true(t[0] != '\0');
        assert_string_not_equal(t, "unknown status");
        for (int p = 0; p < s; p++)
            if (strcmp(seen[p], t) == 0) fail_msg("statuses %d and %d share the text \"%s\"", p, s, t);
        seen[s] = t;
    }
    assert_string_equal(sarco_status_string(SARCO_OK), "ok");
    assert_string_equal(sarco_status_string(SARCO_ERR_BAD_FORMAT), "bad format");
    assert_non_null(sarco_status_string((sarco_status)99));
    assert_true(sarco_status_string((sarco_status)99)[0] != '\0');
}

static void test_options_init(void **state) {
    (void)state;
    sarco_context_options o;
    memset(&o, 0xab, sizeof o);
    sarco_context_options_init(&o);
    assert_int_equal(o.struct_size, sizeof o);
    assert_int_equal(o.backend, SARCO_BACKEND_AUTO);
    assert_int_equal(o.device, 0);
    assert_int_equal(o.threads, 0);
    assert_int_equal(o.precision, SARCO_PRECISION_FP32);
    assert_int_equal(o.memory_limit, 0);
    assert_null(o.log);
    assert_int_equal(o.log_level, SARCO_LOG_WARN);
    sarco_context_options_init(NULL); /* no-op */
}

static sarco_status create(const sarco_context_options *o, sarco_context **ctx, char *msg, size_t n) {
    *ctx = (sarco_context *)0x1;
    return sarco_context_create_ex(o, ctx, msg, n);
}

static void test_bad_options(void **state) {
    (void)state;
    sarco_context *ctx;
    char msg[512];
    sarco_context_options o;

    sarco_context_options_init(&o);
    o.struct_size = 0;
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
    assert_non_null(strstr(msg, "struct_size"));

    sarco_context_options_init(&o);
    o.struct_size = sizeof o + 8; /* a newer caller than this library */
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
    assert_true(msg[0] != '\0');

    const struct {
        const char *what;
        int backend, device, threads, precision;
    } bad[] = {{"backend 3", 3, 0, 0, 0},     {"backend -1", -1, 0, 0, 0},  {"device -1", 1, -1, 0, 0},
               {"threads -2", 1, 0, -2, 0},   {"precision 4", 1, 0, 0, 4}, {"precision -1", 1, 0, 0, -1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sarco_context_options_init(&o);
        o.backend = (sarco_backend_kind)bad[i].backend;
        o.device = bad[i].device;
        o.threads = bad[i].threads;
        o.precision = (sarco_precision)bad[i].precision;
        msg[0] = '\0';
        sarco_status s = create(&o, &ctx, msg, sizeof msg);
        if (s != SARCO_ERR_INVALID_ARGUMENT) fail_msg("%s: got %s", bad[i].what, sarco_status_string(s));
        assert_null(ctx);
        if (!strstr(msg, "out of range")) fail_msg("%s: message \"%s\"", bad[i].what, msg);
    }

    /* no out pointer; a message buffer of 1 byte or none at all must also be safe */
    assert_int_equal(sarco_context_create_ex(NULL, NULL, msg, sizeof msg), SARCO_ERR_INVALID_ARGUMENT);
    assert_true(msg[0] != '\0');
    assert_int_equal(sarco_context_create(NULL, NULL), SARCO_ERR_INVALID_ARGUMENT);
    sarco_context_options_init(&o);
    o.struct_size = 0;
    char one[1] = {'x'};
    assert_int_equal(create(&o, &ctx, one, 1), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(one[0], '\0');
    assert_int_equal(create(&o, &ctx, NULL, 100), SARCO_ERR_INVALID_ARGUMENT);
}

static void test_old_struct_size(void **state) {
    (void)state;
    /* a caller built against a header whose options ended before memory_limit keeps the defaults */
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.struct_size = offsetof(sarco_context_options, memory_limit);
    o.memory_limit = 1; /* beyond struct_size: must be ignored */
    sarco_context *ctx;
    char msg[256];
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_OK);
    assert_non_null(ctx);
    assert_int_equal(ctx->opts.memory_limit, 0);
    assert_int_equal(ctx->opts.struct_size, sizeof o);
    void *p = sarco_ctx_malloc(ctx, 1024, "test");
    assert_non_null(p);
    sarco_ctx_free(ctx, p, 1024);
    sarco_context_free(ctx);
}

static void test_cpu_backend(void **state) {
    (void)state;
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.threads = 1;
    sarco_context *ctx;
    char msg[256];
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_OK);
    assert_non_null(ctx);
    assert_int_equal(sarco_context_backend(ctx), SARCO_BACKEND_CPU);
    assert_non_null(sarco_last_error(ctx));
    sarco_context_free(ctx);
    /* NULL options: defaults (AUTO) */
    assert_int_equal(sarco_context_create(NULL, &ctx), SARCO_OK);
    assert_true(sarco_context_backend(ctx) == SARCO_BACKEND_CPU || sarco_context_backend(ctx) == SARCO_BACKEND_CUDA);
    sarco_context_free(ctx);
    assert_non_null(sarco_last_error(NULL));
}

static void test_auto_and_cuda(void **state) {
    (void)state;
    sarco_context_options o;
    sarco_context_options_init(&o);
    sarco_context *ctx;
    char msg[1024];

    /* as this machine is */
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_OK);
    if (sarco_context_backend(ctx) == SARCO_BACKEND_CPU) {
        const char *why = sarco_last_error(ctx);
        if (!strstr(why, "using the CPU") || !strstr(why, "CUDA unavailable"))
            fail_msg("AUTO chose the CPU without saying why: \"%s\"", why);
        print_message("AUTO -> CPU: %s\n", why);
    } else {
        print_message("AUTO -> CUDA (a GPU and libsarco_cuda.so are present)\n");
    }
    sarco_context_free(ctx);

    o.backend = SARCO_BACKEND_CUDA;
    sarco_status s = create(&o, &ctx, msg, sizeof msg);
    if (s == SARCO_OK) {
        assert_int_equal(sarco_context_backend(ctx), SARCO_BACKEND_CUDA);
        sarco_context_free(ctx);
        print_message("CUDA: available\n");
    } else {
        assert_int_equal(s, SARCO_ERR_BACKEND_UNAVAILABLE);
        assert_null(ctx);
        assert_true(strlen(msg) > 10);
        print_message("CUDA -> %s: %s\n", sarco_status_string(s), msg);
    }

    /* deterministic everywhere: a plugin path that does not exist, and a library that is no plugin */
    const char *old = getenv("SARCO_CUDA_LIBRARY");
    char *saved = old ? strdup(old) : NULL;
    setenv("SARCO_CUDA_LIBRARY", "/nonexistent/libsarco_cuda.so", 1);
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_ERR_BACKEND_UNAVAILABLE);
    assert_null(ctx);
    assert_non_null(strstr(msg, "/nonexistent/libsarco_cuda.so"));

    setenv("SARCO_CUDA_LIBRARY", "libm.so.6", 1);
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_ERR_BACKEND_UNAVAILABLE);
    assert_null(ctx);
    assert_non_null(strstr(msg, "does not match"));

    o.backend = SARCO_BACKEND_AUTO;
    setenv("SARCO_CUDA_LIBRARY", "/nonexistent/libsarco_cuda.so", 1);
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_OK);
    assert_int_equal(sarco_context_backend(ctx), SARCO_BACKEND_CPU);
    assert_non_null(strstr(sarco_last_error(ctx), "using the CPU"));
    assert_non_null(strstr(sarco_last_error(ctx), "/nonexistent/libsarco_cuda.so"));
    sarco_context_free(ctx);

    if (saved) {
        setenv("SARCO_CUDA_LIBRARY", saved, 1);
        free(saved);
    } else {
        unsetenv("SARCO_CUDA_LIBRARY");
    }
}

/* The shared library this test's build made: <build>/libsarco.so.X.Y.Z beside the test directory,
 * or lib/libsarco.so.X.Y.Z for the default build. NULL when neither exists. */
static void *open_shared(char *path, size_t n) {
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *d = dirname(exe); /* <build>/test */
        snprintf(path, n, "%s/../libsarco.so.%s", d, sarco_version_string());
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    snprintf(path, n, "lib/libsarco.so.%s", sarco_version_string());
    return dlopen(path, RTLD_NOW | RTLD_LOCAL);
}

static void test_free_null(void **state) {
    (void)state;
    sarco_context_free(NULL);
    sarco_model_free(NULL);
    sarco_ctx_free(NULL, NULL, 0);

    /* every sarco_*_free the header declares takes NULL: found by reading the header, called
     * through the shared library so that one added later is covered too */
    FILE *fp = fopen("include/sarco/sarco.h", "r");
    assert_non_null(fp);
    char path[4200];
    void *h = open_shared(path, sizeof path);
    if (!h) print_message("SKIP calling through the shared library: %s not built\n", path);
    char line[1024];
    int found = 0;
    while (fgets(line, sizeof line, fp)) {
        char *p = strstr(line, "SARCO_API void sarco_");
        if (!p) continue;
        char *name = p + strlen("SARCO_API void ");
        char *paren = strchr(name, '(');
        if (!paren || paren - name < 6 || strncmp(paren - 5, "_free", 5) != 0) continue;
        *paren = '\0';
        found++;
        if (!h) continue;
        void (*fn)(void *);
        *(void **)&fn = dlsym(h, name);
        if (!fn) fail_msg("%s is declared in sarco.h but %s does not export it", name, path);
        fn(NULL);
    }
    fclose(fp);
    print_message("NULL passed to %d *_free functions%s\n", found, h ? " (through the shared library)" : "");
    assert_true(found >= 3);
    if (h) dlclose(h);
}

static void test_memory_limit(void **state) {
    (void)state;
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.memory_limit = 1 << 20;
    sarco_context *ctx;
    char msg[256];
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_OK);
    size_t base = ctx->host_bytes;

    sarco_clear_error(ctx);
    assert_null(sarco_ctx_malloc(ctx, (size_t)2 << 20, "big buffer"));
    assert_non_null(strstr(sarco_last_error(ctx), "big buffer"));
    assert_non_null(strstr(sarco_last_error(ctx), "memory limit of 1048576"));
    assert_null(sarco_ctx_malloc(ctx, SIZE_MAX, "huge")); /* no wrap-around in the check */

    size_t half = (((size_t)1 << 20) - base) / 2;
    void *a = sarco_ctx_malloc(ctx, half, "a");
    assert_non_null(a);
    void *b = sarco_ctx_malloc(ctx, half, "b");
    assert_non_null(b);
    assert_null(sarco_ctx_malloc(ctx, half, "c")); /* the limit counts what is held */
    sarco_ctx_free(ctx, b, half);
    void *c = sarco_ctx_malloc(ctx, half, "c"); /* and what is given back */
    assert_non_null(c);
    assert_int_equal(((unsigned char *)c)[half - 1], 0); /* zeroed */
    sarco_ctx_free(ctx, a, half);
    sarco_ctx_free(ctx, c, half);
    assert_int_equal(ctx->host_bytes, base);
    sarco_context_free(ctx);

    /* no limit: the same allocation goes through */
    o.memory_limit = 0;
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_OK);
    void *p = sarco_ctx_malloc(ctx, (size_t)2 << 20, "big buffer");
    assert_non_null(p);
    sarco_ctx_free(ctx, p, (size_t)2 << 20);
    sarco_context_free(ctx);
}

static int cancel_at(void *user, const char *stage, int64_t done, int64_t total) {
    (void)stage;
    (void)total;
    *(int *)user += 1;
    return done >= 3;
}

static void test_progress(void **state) {
    (void)state;
    sarco_context *ctx;
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    char msg[256];
    assert_int_equal(create(&o, &ctx, msg, sizeof msg), SARCO_OK);
    assert_int_equal(sarco_progress(ctx, "x", 5, 10), SARCO_OK); /* no callback */
    int calls = 0;
    sarco_context_set_progress(ctx, cancel_at, &calls);
    assert_int_equal(sarco_progress(ctx, "tiles", 1, 10), SARCO_OK);
    assert_int_equal(sarco_progress(ctx, "tiles", 3, 10), SARCO_ERR_CANCELLED);
    assert_non_null(strstr(sarco_last_error(ctx), "tiles"));
    assert_int_equal(calls, 2);
    sarco_context_set_progress(NULL, cancel_at, &calls);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),       cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_options_init),  cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_old_struct_size), cmocka_unit_test(test_cpu_backend),
        cmocka_unit_test(test_auto_and_cuda), cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_memory_limit),  cmocka_unit_test(test_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
