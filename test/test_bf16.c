/* The BF16 fast mode (SARCO_PRECISION_BF16) of the CPU backend.
 *
 * On a CPU with AVX512-BF16 or AMX: every UNETR variant of test/data/unetr (MONAI's float64 outputs)
 * runs in BF16 and must stay within BF16_REL_L2 of MONAI (BF16 keeps 8 mantissa bits: each conv/linear
 * input and weight is rounded to 2^-9 relative, accumulation stays FP32) and pick the same class as
 * the FP32 path on at least BF16_ARGMAX_MIN of the voxels. Elsewhere that part prints a SKIP line.
 * Everywhere: BF16 is refused with UNSUPPORTED and a message on CUDA, and on a CPU without BF16,
 * which this test reaches on any machine by running itself again with ONEDNN_MAX_CPU_ISA=AVX2. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "testutil.h"

#define DATA "test/data/unetr/"
#define BF16_REL_L2 2e-2
#define BF16_ARGMAX_MIN 0.99

static const char *self_path;

static sarco_status bf16_context(sarco_backend_kind backend, sarco_context **ctx, char *msg, size_t n) {
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = backend;
    o.precision = SARCO_PRECISION_BF16;
    return sarco_context_create_ex(&o, ctx, msg, n);
}

static float *read_floats(const char *name, size_t count) {
    char path[256];
    snprintf(path, sizeof path, DATA "%s", name);
    size_t size = 0;
    uint8_t *b = tu_slurp(path, &size);
    assert_int_equal(size, count * sizeof(float));
    return (float *)b;
}

static int64_t shape_of(const json_t *arr, int64_t *shape) {
    int64_t count = 1;
    for (size_t i = 0; i < json_array_size(arr); i++) count *= shape[i] = json_integer_value(json_array_get(arr, i));
    return count;
}

static float *forward(sarco_context *ctx, const char *model, int nd, const int64_t *in, const float *x, size_t nout) {
    char path[256];
    snprintf(path, sizeof path, DATA "%s", model);
    sarco_model *m = NULL;
    sarco_status s = sarco_model_load(ctx, path, &m);
    if (s != SARCO_OK) fail_msg("%s: %s", path, sarco_last_error(ctx));
    float *y = malloc(nout * sizeof *y);
    assert_non_null(y);
    s = sarco_model_forward(ctx, m, nd, in, x, y, nout);
    if (s != SARCO_OK) fail_msg("%s: forward: %s", path, sarco_last_error(ctx));
    sarco_model_free(m);
    return y;
}

static void test_variants_bf16(void **state) {
    (void)state;
    sarco_context *bf = NULL, *fp = NULL;
    char msg[512];
    if (bf16_context(SARCO_BACKEND_CPU, &bf, msg, sizeof msg) != SARCO_OK) {
        printf("SKIP bf16: %s\n", msg);
        skip();
    }
    fp = tu_new_ctx(0);
    json_error_t e;
    json_t *man = json_load_file(DATA "manifest.json", 0, &e);
    assert_non_null(man);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(man, "variants"), i, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        int64_t in[5], out[5];
        int nd = (int)json_array_size(json_object_get(v, "input_shape"));
        int64_t nin = shape_of(json_object_get(v, "input_shape"), in);
        int64_t nout = shape_of(json_object_get(v, "output_shape"), out);
        float *x = read_floats(json_string_value(json_object_get(v, "input")), (size_t)nin);
        float *ref = read_floats(json_string_value(json_object_get(v, "output")), (size_t)nout);
        const char *model = json_string_value(json_object_get(v, "model"));
        float *yb = forward(bf, model, nd, in, x, (size_t)nout);
        float *yf = forward(fp, model, nd, in, x, (size_t)nout);
        double d2 = 0, r2 = 0;
        for (int64_t k = 0; k < nout; k++) {
            double d = (double)yb[k] - ref[k];
            d2 += d * d;
            r2 += (double)ref[k] * ref[k];
        }
        /* argmax over classes per voxel, (N, C, S) layout */
        int64_t nc = out[1], sp = nout / (out[0] * nc), same = 0, vox = out[0] * sp;
        for (int64_t b = 0; b < out[0]; b++)
            for (int64_t s = 0; s < sp; s++) {
                int64_t ab = 0, af = 0;
                for (int64_t c = 1; c < nc; c++) {
                    if (yb[(b * nc + c) * sp + s] > yb[(b * nc + ab) * sp + s]) ab = c;
                    if (yf[(b * nc + c) * sp + s] > yf[(b * nc + af) * sp + s]) af = c;
                }
                same += ab == af;
            }
        double rel = sqrt(d2 / r2), agree = (double)same / (double)vox;
        printf("  bf16 %-28s rel L2 vs MONAI %.2e (bound %.0e)  argmax = FP32 on %.3f%% of %lld voxels\n", name, rel,
               BF16_REL_L2, 100 * agree, (long long)vox);
        assert_true(rel < BF16_REL_L2);
        assert_true(rel > 1e-6); /* it really ran in BF16: FP32 is ~1e-6 from MONAI */
        assert_true(agree >= BF16_ARGMAX_MIN);
        free(x);
        free(ref);
        free(yb);
        free(yf);
    }
    json_decref(man);
    sarco_context_free(bf);
    sarco_context_free(fp);
}

static void test_refused_on_cuda(void **state) {
    (void)state;
    sarco_context *ctx = NULL;
    char msg[512];
    assert_int_equal(bf16_context(SARCO_BACKEND_CUDA, &ctx, msg, sizeof msg), SARCO_ERR_UNSUPPORTED);
    assert_null(ctx);
    assert_non_null(strstr(msg, "BF16 is a CPU mode"));
    /* AUTO with BF16 runs on the CPU and says why */
    if (bf16_context(SARCO_BACKEND_AUTO, &ctx, msg, sizeof msg) == SARCO_OK) {
        assert_int_equal(sarco_context_backend(ctx), SARCO_BACKEND_CPU);
        assert_non_null(strstr(sarco_last_error(ctx), "BF16 is a CPU mode"));
        sarco_context_free(ctx);
    }
}

/* The child half of test_refused_without_bf16: oneDNN capped at AVX2 must make BF16 fail. */
static int child_expect_refusal(void) {
    sarco_context *ctx = NULL;
    char msg[512];
    sarco_status s = bf16_context(SARCO_BACKEND_CPU, &ctx, msg, sizeof msg);
    if (s != SARCO_ERR_UNSUPPORTED || ctx || !strstr(msg, "AVX512-BF16")) {
        fprintf(stderr, "expected UNSUPPORTED naming AVX512-BF16, got %s: %s\n", sarco_status_string(s), msg);
        return 1;
    }
    printf("  refused under ONEDNN_MAX_CPU_ISA=AVX2: %s\n", msg);
    return 0;
}

static void test_refused_without_bf16(void **state) {
    (void)state;
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
        setenv("DNNL_MAX_CPU_ISA", "AVX2", 1);
        execl(self_path, self_path, "--expect-refusal", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(int argc, char **argv) {
    self_path = argv[0];
    if (argc > 1 && strcmp(argv[1], "--expect-refusal") == 0) return child_expect_refusal();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variants_bf16),
        cmocka_unit_test(test_refused_on_cuda),
        cmocka_unit_test(test_refused_without_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
