/* Model files are mapped, not read (lib/io/safetensors.c). What that must not break:
 *  - a file truncated anywhere is refused at load with BAD_FORMAT (sizes are checked against the
 *    header before any tensor byte is touched), never a crash;
 *  - a file rewritten while loads run (the writer replacing it by rename, as sarco.convert does)
 *    gives every load one whole version: its outputs equal one version's exactly;
 *  - after sarco_model_load returns, the model holds nothing of the file: truncating or deleting it
 *    does not change the next forward. */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define MODEL "test/data/unetr/a_conv_instance_res.safetensors"

static const int64_t in_shape[5] = {1, 1, 32, 32, 32};
#define NIN (32 * 32 * 32)

typedef struct fixture {
    char dir[64];
    sarco_context *ctx;
    float x[NIN];
    uint8_t *a, *b; /* MODEL's bytes, and a second version with one weight changed */
    size_t na;
    float *ya, *yb; /* their outputs */
    size_t nout;
} fixture;

static float *run(sarco_context *ctx, const char *path, const float *x, size_t *nout) {
    sarco_model *m = NULL;
    if (sarco_model_load(ctx, path, &m) != SARCO_OK) fail_msg("%s: %s", path, sarco_last_error(ctx));
    int64_t out[5];
    assert_int_equal(sarco_model_output_shape(ctx, m, 5, in_shape, out), SARCO_OK);
    *nout = (size_t)(out[0] * out[1] * out[2] * out[3] * out[4]);
    float *y = malloc(*nout * sizeof *y);
    assert_int_equal(sarco_model_forward(ctx, m, 5, in_shape, x, y, *nout), SARCO_OK);
    sarco_model_free(m);
    return y;
}

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || tu_dir_and_ctx("mapped", fx->dir, sizeof fx->dir, &fx->ctx) != 0) return -1;
    for (int i = 0; i < NIN; i++) fx->x[i] = (float)((i * 7919) % 101) / 101.0f;
    size_t nb = 0;
    fx->a = tu_slurp(MODEL, &fx->na);
    fx->b = malloc(fx->na);
    memcpy(fx->b, fx->a, fx->na);
    /* the data section's last 2 bytes: half of the last (F16) weight, set to 1.0 or 2.0 */
    uint16_t h = fx->b[fx->na - 2] | fx->b[fx->na - 1] << 8, one = h == 0x3c00 ? 0x4000 : 0x3c00;
    fx->b[fx->na - 2] = (uint8_t)one;
    fx->b[fx->na - 1] = (uint8_t)(one >> 8);
    char path[128];
    snprintf(path, sizeof path, "%s/b.safetensors", fx->dir);
    tu_spit(path, fx->b, fx->na);
    fx->ya = run(fx->ctx, MODEL, fx->x, &fx->nout);
    fx->yb = run(fx->ctx, path, fx->x, &nb);
    if (nb != fx->nout || memcmp(fx->ya, fx->yb, nb * sizeof(float)) == 0) return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    free(fx->a);
    free(fx->b);
    free(fx->ya);
    free(fx->yb);
    tu_dir_and_ctx_free(fx->dir, fx->ctx);
    free(fx);
    return 0;
}

static void test_truncated_everywhere(void **state) {
    fixture *fx = *state;
    size_t size = 0;
    uint8_t *b = tu_slurp(MODEL, &size);
    char path[128];
    snprintf(path, sizeof path, "%s/t.safetensors", fx->dir);
    int tried = 0;
    /* every byte of the first 64 KiB (the header and the first tensors), then strides to the end */
    for (size_t cut = 0; cut < size; cut += cut < 65536 ? 97 : size / 50 + 1, tried++) {
        tu_spit(path, b, cut);
        sarco_model *m = NULL;
        sarco_status s = sarco_model_load(fx->ctx, path, &m);
        if (s == SARCO_OK) fail_msg("a file cut at byte %zu of %zu loaded", cut, size);
        assert_null(m);
        assert_true(s == SARCO_ERR_BAD_FORMAT);
        assert_true(strlen(sarco_last_error(fx->ctx)) > 0);
    }
    printf("  %d truncations refused with BAD_FORMAT\n", tried);
    free(b);
}

typedef struct writer {
    const char *dir;
    const uint8_t *a, *b;
    size_t na, nb;
    volatile int stop;
    int rounds;
} writer;

/* Replaces dir/m.safetensors by rename, alternating two models, until told to stop. */
static void *write_loop(void *arg) {
    writer *w = arg;
    char tmp[128], dst[128];
    snprintf(dst, sizeof dst, "%s/m.safetensors", w->dir);
    for (int i = 0; !w->stop; i++) {
        snprintf(tmp, sizeof tmp, "%s/m.tmp%d", w->dir, i % 4);
        tu_spit(tmp, i % 2 ? w->b : w->a, i % 2 ? w->nb : w->na);
        if (rename(tmp, dst) != 0) break;
        w->rounds++;
        usleep(3000); /* a rewrite every few ms: several per load, without starving the loads */
    }
    return NULL;
}

static void test_rewritten_by_rename_while_loading(void **state) {
    fixture *fx = *state;
    writer w = {.dir = fx->dir, .a = fx->a, .b = fx->b, .na = fx->na, .nb = fx->na};
    char path[128];
    snprintf(path, sizeof path, "%s/m.safetensors", fx->dir);
    tu_spit(path, w.a, w.na);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, write_loop, &w), 0);
    int as = 0, bs = 0;
    for (int i = 0; i < 20; i++) {
        size_t n = 0;
        float *y = run(fx->ctx, path, fx->x, &n);
        assert_int_equal(n, fx->nout);
        if (memcmp(y, fx->ya, n * sizeof *y) == 0)
            as++;
        else if (memcmp(y, fx->yb, n * sizeof *y) == 0)
            bs++;
        else
            fail_msg("load %d while rewriting gave neither version's output", i);
        free(y);
    }
    w.stop = 1;
    pthread_join(th, NULL);
    printf("  20 loads during %d rewrites: %d of version A, %d of version B, none mixed\n", w.rounds, as, bs);
}

static void test_file_gone_after_load(void **state) {
    fixture *fx = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/g.safetensors", fx->dir);
    size_t size = 0;
    uint8_t *b = tu_slurp(MODEL, &size);
    tu_spit(path, b, size);
    free(b);
    sarco_model *m = NULL;
    assert_int_equal(sarco_model_load(fx->ctx, path, &m), SARCO_OK);
    assert_int_equal(truncate(path, 16), 0); /* in place: a mapping still held would now fault */
    float *y = malloc(fx->nout * sizeof *y);
    assert_int_equal(sarco_model_forward(fx->ctx, m, 5, in_shape, fx->x, y, fx->nout), SARCO_OK);
    assert_memory_equal(y, fx->ya, fx->nout * sizeof *y);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(sarco_model_forward(fx->ctx, m, 5, in_shape, fx->x, y, fx->nout), SARCO_OK);
    assert_memory_equal(y, fx->ya, fx->nout * sizeof *y);
    free(y);
    sarco_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_rewritten_by_rename_while_loading),
        cmocka_unit_test(test_file_gone_after_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
