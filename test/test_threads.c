/* The threading contract (include/sarco/sarco.h, docs/reliability.md), tested: threads that each have their own
 * context and model segment at once and get the labels one thread gets; a model (tied to its context) used by
 * a second call while one runs is refused with INVALID_ARGUMENT, from another thread or from the progress
 * callback. `make test-tsan` runs this under ThreadSanitizer. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sarco/sarco.h"

#define MODEL "test/data/unetr/e_plain_blocks.safetensors"
#define NTHREADS 4
#define ROUNDS 2

static sarco_context *new_ctx(void) {
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.threads = 1;
    o.log_level = SARCO_LOG_ERROR;
    sarco_context *ctx = NULL;
    if (sarco_context_create(&o, &ctx) != SARCO_OK) return NULL;
    return ctx;
}

/* 24 x 20 x 40 CT with a textured box; image data is only read by the calls, so all threads share it */
static sarco_image *make_ct(sarco_context *ctx) {
    int64_t dims[3] = {24, 20, 40};
    double sp[3] = {1.5, 1.5, 1.5};
    sarco_image *img = NULL;
    assert_int_equal(sarco_image_create(ctx, 3, dims, sp, &img), SARCO_OK);
    for (int64_t z = 0; z < dims[2]; z++)
        for (int64_t y = 0; y < dims[1]; y++)
            for (int64_t x = 0; x < dims[0]; x++)
                img->data[(z * dims[1] + y) * dims[0] + x] =
                    (x > 3 && x < 20 && y > 2 && y < 17 && z > 4 && z < 34) ? (float)((x * 37 + y * 11 + z * 5) % 200) - 50.0f
                                                                             : -1000.0f;
    return img;
}

typedef struct job {
    const sarco_image *ct;
    uint16_t *labels;
    size_t n;
    int mismatches;
    const uint16_t *want;
    sarco_status st;
} job;

static void *worker(void *arg) {
    job *j = arg;
    sarco_context *ctx = new_ctx();
    sarco_model *m = NULL;
    j->st = ctx ? sarco_model_load(ctx, MODEL, &m) : SARCO_ERR_INTERNAL;
    for (int r = 0; r < ROUNDS && j->st == SARCO_OK; r++) {
        memset(j->labels, 0xff, j->n * sizeof *j->labels);
        j->st = sarco_segment(ctx, m, j->ct, NULL, j->labels, j->n, NULL);
        if (j->st == SARCO_OK && memcmp(j->labels, j->want, j->n * sizeof *j->labels) != 0) j->mismatches++;
    }
    sarco_model_free(m);
    sarco_context_free(ctx);
    return NULL;
}

static void test_threads_own_contexts(void **state) {
    (void)state;
    sarco_context *ctx = new_ctx();
    sarco_model *m = NULL;
    assert_int_equal(sarco_model_load(ctx, MODEL, &m), SARCO_OK);
    sarco_image *ct = make_ct(ctx);
    size_t n = (size_t)(ct->dims[0] * ct->dims[1] * ct->dims[2]);
    uint16_t *want = calloc(n, sizeof *want);
    assert_int_equal(sarco_segment(ctx, m, ct, NULL, want, n, NULL), SARCO_OK);
    int fg = 0;
    for (size_t i = 0; i < n; i++) fg += want[i] != 0;
    pthread_t t[NTHREADS];
    job jobs[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        jobs[i] = (job){.ct = ct, .labels = calloc(n, sizeof(uint16_t)), .n = n, .want = want};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].st, SARCO_OK);
        assert_int_equal(jobs[i].mismatches, 0);
        free(jobs[i].labels);
    }
    printf("threads: %d threads x %d segmentations, own contexts: labels identical to one thread (%d foreground voxels of %zu)\n",
           NTHREADS, ROUNDS, fg, n);
    free(want);
    sarco_image_free(ct);
    sarco_model_free(m);
    sarco_context_free(ctx);
}

/* ---- a second call on a busy model is refused ---- */
typedef struct shared {
    sarco_context *ctx;
    sarco_model *m;
    const sarco_image *ct;
    atomic_int phase; /* 0 start, 1 the first call is inside (holding the model), 2 the intruder is done */
    sarco_status intruder_st;
    char intruder_msg[256];
    int reentrant_tried;
    sarco_status reentrant_st;
} shared;

static int hold_cb(void *user, const char *stage, int64_t done, int64_t total) {
    (void)stage, (void)done, (void)total;
    shared *s = user;
    if (atomic_load(&s->phase) == 0) {
        atomic_store(&s->phase, 1);
        while (atomic_load(&s->phase) != 2) {} /* the intruder runs now, while this call holds the model */
    }
    return 0;
}

static void *intruder(void *arg) {
    shared *s = arg;
    while (atomic_load(&s->phase) != 1) {}
    size_t n = (size_t)(s->ct->dims[0] * s->ct->dims[1] * s->ct->dims[2]);
    uint16_t *l = calloc(n, sizeof *l);
    s->intruder_st = sarco_segment(s->ctx, s->m, s->ct, NULL, l, n, NULL);
    snprintf(s->intruder_msg, sizeof s->intruder_msg, "%s", sarco_last_error(s->ctx));
    free(l);
    atomic_store(&s->phase, 2);
    return NULL;
}

static int reenter_cb(void *user, const char *stage, int64_t done, int64_t total) {
    (void)stage, (void)done, (void)total;
    shared *s = user;
    if (!s->reentrant_tried) {
        s->reentrant_tried = 1;
        int64_t in[5] = {1, 1, 16, 16, 32}, out[5];
        assert_int_equal(sarco_model_output_shape(s->ctx, s->m, 5, in, out), SARCO_OK);
        size_t nin = 16 * 16 * 32, nout = (size_t)(out[0] * out[1] * out[2] * out[3] * out[4]);
        float *x = calloc(nin, sizeof *x), *y = calloc(nout, sizeof *y);
        s->reentrant_st = sarco_model_forward(s->ctx, s->m, 5, in, x, y, nout);
        free(x);
        free(y);
    }
    return 0;
}

static void test_busy_model_refused(void **state) {
    (void)state;
    shared s = {.ctx = new_ctx()};
    assert_int_equal(sarco_model_load(s.ctx, MODEL, &s.m), SARCO_OK);
    sarco_image *ct = make_ct(s.ctx);
    s.ct = ct;
    size_t n = (size_t)(ct->dims[0] * ct->dims[1] * ct->dims[2]);
    uint16_t *want = calloc(n, sizeof *want), *got = calloc(n, sizeof *got);
    assert_int_equal(sarco_segment(s.ctx, s.m, ct, NULL, want, n, NULL), SARCO_OK);
    /* another thread while the first call holds the model */
    pthread_t t;
    sarco_context_set_progress(s.ctx, hold_cb, &s);
    assert_int_equal(pthread_create(&t, NULL, intruder, &s), 0);
    assert_int_equal(sarco_segment(s.ctx, s.m, ct, NULL, got, n, NULL), SARCO_OK);
    pthread_join(t, NULL);
    assert_int_equal(s.intruder_st, SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(s.intruder_msg, "already running"));
    assert_memory_equal(got, want, n * sizeof *got); /* the first call was not disturbed */
    /* the progress callback calling back into the model */
    sarco_context_set_progress(s.ctx, reenter_cb, &s);
    assert_int_equal(sarco_segment(s.ctx, s.m, ct, NULL, got, n, NULL), SARCO_OK);
    assert_true(s.reentrant_tried);
    assert_int_equal(s.reentrant_st, SARCO_ERR_INVALID_ARGUMENT);
    assert_memory_equal(got, want, n * sizeof *got);
    /* released afterwards: the model serves the next call */
    sarco_context_set_progress(s.ctx, NULL, NULL);
    assert_int_equal(sarco_segment(s.ctx, s.m, ct, NULL, got, n, NULL), SARCO_OK);
    /* a model is tied to the context it was loaded on */
    sarco_context *other = new_ctx();
    assert_int_equal(sarco_segment(other, s.m, ct, NULL, got, n, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(other), "another context"));
    sarco_context_free(other);
    free(want);
    free(got);
    sarco_image_free(ct);
    sarco_model_free(s.m);
    sarco_context_free(s.ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_own_contexts),
        cmocka_unit_test(test_busy_model_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
