/* Allocation-failure sweeps (docs/reliability.md): for each public call, the k-th of libsarco's own
 * allocations fails, for k = 1..N (N: what the call makes when nothing fails). Every such run must return
 * an error with a message (SARCO_ERR_OUT_OF_MEMORY, or the caller's status where a helper reports its own),
 * leave no output file, and give back all context-counted memory; LeakSanitizer (make test-asan) checks
 * the rest. Linked with --wrap (Makefile; test/alloc_hook.h). Also here: cancellation from the progress
 * callback at every progress point of sarco_segment, and memory_limit. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>
#include <unistd.h>

#include "alloc_hook.h"
#include "lib/core/core.h"

#define DATA "test/data/"
#define SEG_MODEL DATA "unetr/e_plain_blocks.safetensors" /* UNETR 3-D, img_size 16x16x32, 2 classes */

static char g_dir[64];

static sarco_context *new_ctx(size_t memory_limit) {
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.threads = 1;
    o.memory_limit = memory_limit;
    o.log_level = SARCO_LOG_ERROR;
    sarco_context *ctx = NULL;
    assert_int_equal(sarco_context_create(&o, &ctx), SARCO_OK);
    return ctx;
}

static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void clear_dir(const char *dir) {
    DIR *d = opendir(dir);
    char p[512];
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
}

/* a small CT: a bright box (muscle-like HU) in air, 20 x 18 x 36, 1.5 mm */
static sarco_image *make_ct(sarco_context *ctx) {
    int64_t dims[3] = {20, 18, 36};
    double sp[3] = {1.5, 1.5, 1.5};
    sarco_image *img = NULL;
    assert_int_equal(sarco_image_create(ctx, 3, dims, sp, &img), SARCO_OK);
    for (int64_t z = 0; z < dims[2]; z++)
        for (int64_t y = 0; y < dims[1]; y++)
            for (int64_t x = 0; x < dims[0]; x++)
                img->data[(z * dims[1] + y) * dims[0] + x] =
                    (x > 3 && x < 16 && y > 2 && y < 15 && z > 4 && z < 30) ? 40.0f + (float)((x * 7 + y * 3 + z) % 50)
                                                                             : -1000.0f;
    return img;
}

typedef struct op_env {
    sarco_context *ctx;
    sarco_model *model;
    sarco_image *ct;
    uint16_t *labels;
    const uint16_t *expect; /* op_segment: the labels a run that succeeds must give */
    const char *path;
} op_env;

typedef sarco_status (*op_fn)(op_env *e);

static sarco_status op_model_load(op_env *e) {
    sarco_model *m = NULL;
    sarco_status s = sarco_model_load(e->ctx, e->path, &m);
    if ((s == SARCO_OK) != (m != NULL)) fail_msg("model_load: status and result disagree");
    sarco_model_free(m);
    return s;
}

static sarco_status op_image_read(op_env *e) {
    sarco_image *img = NULL;
    sarco_status s = sarco_image_read(e->ctx, e->path, &img);
    if ((s == SARCO_OK) != (img != NULL)) fail_msg("image_read: status and result disagree");
    sarco_image_free(img);
    return s;
}

static sarco_status op_picture_read(op_env *e) {
    sarco_picture *p = NULL;
    sarco_status s = sarco_picture_read(e->ctx, e->path, &p);
    if ((s == SARCO_OK) != (p != NULL)) fail_msg("picture_read: status and result disagree");
    sarco_picture_free(p);
    return s;
}

static sarco_status op_labels_read(op_env *e) {
    uint16_t *l = NULL;
    sarco_image *g = NULL;
    sarco_status s = sarco_labels_read(e->ctx, e->path, &l, &g);
    if ((s == SARCO_OK) != (l != NULL)) fail_msg("labels_read: status and result disagree");
    sarco_labels_free(l);
    sarco_image_free(g);
    return s;
}

static sarco_status op_image_write(op_env *e) { return sarco_image_write(e->ctx, e->ct, e->path); }

static sarco_status op_labels_write(op_env *e) { return sarco_labels_write(e->ctx, e->ct, e->labels, 3, e->path); }

static sarco_status op_segment(op_env *e) {
    size_t n = (size_t)(e->ct->dims[0] * e->ct->dims[1] * e->ct->dims[2]);
    memset(e->labels, 0xff, n * sizeof *e->labels);
    sarco_status s = sarco_segment(e->ctx, e->model, e->ct, NULL, e->labels, n, NULL);
    if (s == SARCO_OK && e->expect && memcmp(e->labels, e->expect, n * sizeof *e->labels) != 0)
        return sarco_fail(e->ctx, SARCO_ERR_INTERNAL, "segment: a run that survived an allocation failure differs");
    return s;
}

static sarco_status op_evaluate(op_env *e) {
    size_t n = (size_t)(e->ct->dims[0] * e->ct->dims[1] * e->ct->dims[2]);
    uint16_t *ref = __real_malloc(n * sizeof *ref); /* the test's own buffer: not counted */
    for (size_t i = 0; i < n; i++) ref[i] = (uint16_t)((e->labels[i] + (i % 7 == 0)) % 3);
    sarco_seg_metrics *m = NULL;
    size_t count = 0;
    sarco_status s = sarco_evaluate_labels(e->ctx, 3, e->ct->dims, e->ct->spacing, e->labels, ref, NULL, 0, &m, &count);
    sarco_seg_metrics_free(m);
    free(ref);
    return s;
}

static sarco_status op_measure(op_env *e) {
    sarco_label_measure *m = NULL;
    size_t count = 0;
    sarco_status s = sarco_measure_labels(e->ctx, 3, e->ct->dims, e->ct->spacing, e->labels, e->ct->data, NULL, 0,
                                          &m, &count);
    sarco_label_measures_free(m);
    return s;
}

/* Runs op once to count its allocations, then once per k with the k-th failing. */
static void sweep(const char *name, op_fn op, op_env *e, int writes) {
    /* a warm-up run first: a model keeps the workspace it grows on its first forward (counted, freed with it) */
    assert_int_equal(op(e), SARCO_OK);
    if (writes) clear_dir(g_dir);
    hook_arm(0);
    sarco_status s = op(e);
    hook_disarm();
    long n = g_hook.count;
    int sites = g_hook.nsites;
    if (s != SARCO_OK) fail_msg("%s: baseline failed: %s", name, sarco_last_error(e->ctx));
    if (writes) {
        assert_int_equal(dir_entries(g_dir), 1);
        clear_dir(g_dir);
    }
    assert_true(n > 0);
    size_t base_bytes = e->ctx->host_bytes;
    long oom = 0, other = 0, ok = 0, unreached = 0;
    for (long k = 1; k <= n; k++) {
        hook_arm(k);
        s = op(e);
        hook_disarm();
        if (!g_hook.failed && s != SARCO_OK) fail_msg("%s: k=%ld: failed with no allocation failing", name, k);
        if (s == SARCO_OK && !g_hook.failed) {
            unreached++; /* fewer allocations this time (a buffer the first failing runs left grown) */
            continue;
        }
        if (s == SARCO_OK) {
            ok++; /* a failure the call survived (a fallback); its output must then be complete */
            if (writes) clear_dir(g_dir);
            continue;
        }
        if (!sarco_last_error(e->ctx)[0]) fail_msg("%s: k=%ld: status %d without a message", name, k, (int)s);
        if (s == SARCO_ERR_OUT_OF_MEMORY) oom++;
        else {
            other++;
            if (s == SARCO_ERR_INTERNAL || s == SARCO_ERR_CANCELLED)
                fail_msg("%s: k=%ld: status %s: %s", name, k, sarco_status_string(s), sarco_last_error(e->ctx));
        }
        if (writes && dir_entries(g_dir) != 0) fail_msg("%s: k=%ld: a file was left behind", name, k);
        if (e->ctx->host_bytes != base_bytes)
            fail_msg("%s: k=%ld: %zu context bytes not given back", name, k, e->ctx->host_bytes - base_bytes);
    }
    printf("sweep %-24s %4ld allocations from %3d sites: %ld OUT_OF_MEMORY, %ld other error, %ld survived, %ld not reached\n",
           name, n, sites, oom, other, ok, unreached);
    /* the context still works */
    hook_arm(0);
    assert_int_equal(op(e), SARCO_OK);
    hook_disarm();
    if (writes) clear_dir(g_dir);
}

static void test_sweep_readers(void **state) {
    (void)state;
    op_env e = {.ctx = new_ctx(0)};
    static const struct { const char *name, *path; op_fn op; } cases[] = {
        {"model_load unetr", SEG_MODEL, op_model_load},
        {"model_load nnunet", DATA "nnunet/e_plain2d_bn_relu_nobias.safetensors", op_model_load},
        {"model_load nnunet folds", DATA "nnunet/fake_2folds.safetensors", op_model_load},
        {"image_read nii", DATA "nifti/good_extension.nii", op_image_read},
        {"image_read nii.gz", DATA "nifti/good_extension_be.nii.gz", op_image_read},
        {"image_read png", DATA "png/good_interlaced_3x2.png", op_image_read},
        {"image_read jpeg", DATA "jpeg/good_72dpi.jpg", op_image_read},
        {"picture_read png", DATA "png/good_interlaced_3x2.png", op_picture_read},
        {"picture_read jpeg", DATA "jpeg/good_1x1_rgb.jpg", op_picture_read},
        {"labels_read nii.gz", DATA "nifti/lab_n1_uint8.nii.gz", op_labels_read},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        e.path = cases[i].path;
        sweep(cases[i].name, cases[i].op, &e, 0);
    }
    sarco_context_free(e.ctx);
}

static void test_sweep_writers_and_pipeline(void **state) {
    (void)state;
    op_env e = {.ctx = new_ctx(0)};
    assert_int_equal(sarco_model_load(e.ctx, SEG_MODEL, &e.model), SARCO_OK);
    e.ct = make_ct(e.ctx);
    size_t n = (size_t)(e.ct->dims[0] * e.ct->dims[1] * e.ct->dims[2]);
    e.labels = calloc(n, sizeof *e.labels);
    char path[128];
    snprintf(path, sizeof path, "%s/out.nii", g_dir);
    e.path = path;
    sweep("image_write nii", op_image_write, &e, 1);
    snprintf(path, sizeof path, "%s/out.nii.gz", g_dir);
    sweep("image_write nii.gz", op_image_write, &e, 1);
    uint16_t *want = calloc(n, sizeof *want);
    assert_int_equal(sarco_segment(e.ctx, e.model, e.ct, NULL, want, n, NULL), SARCO_OK);
    e.expect = want;
    sweep("segment unetr", op_segment, &e, 0);
    free(want);
    sweep("labels_write nii.gz", op_labels_write, &e, 1);
    sweep("evaluate", op_evaluate, &e, 0);
    sweep("measure", op_measure, &e, 0);
    free(e.labels);
    sarco_image_free(e.ct);
    sarco_model_free(e.model);
    sarco_context_free(e.ctx);
}

/* ---- cancellation: stop at the j-th progress call, for every j ---- */
typedef struct cancel_state {
    int calls, cancel_at;
    char stage[64];
} cancel_state;

static int cancel_cb(void *user, const char *stage, int64_t done, int64_t total) {
    (void)done, (void)total;
    cancel_state *c = user;
    if (++c->calls == c->cancel_at) {
        snprintf(c->stage, sizeof c->stage, "%s", stage);
        return 1;
    }
    return 0;
}

static void test_cancel_every_point(void **state) {
    (void)state;
    sarco_context *ctx = new_ctx(0);
    sarco_model *m = NULL;
    assert_int_equal(sarco_model_load(ctx, SEG_MODEL, &m), SARCO_OK);
    sarco_image *ct = make_ct(ctx);
    size_t n = (size_t)(ct->dims[0] * ct->dims[1] * ct->dims[2]);
    uint16_t *want = calloc(n, sizeof *want), *got = calloc(n, sizeof *got);
    cancel_state c = {0};
    sarco_context_set_progress(ctx, cancel_cb, &c);
    assert_int_equal(sarco_segment(ctx, m, ct, NULL, want, n, NULL), SARCO_OK);
    int points = c.calls;
    assert_true(points >= 2);
    size_t base = ctx->host_bytes;
    for (int j = 1; j <= points; j++) {
        c = (cancel_state){.cancel_at = j};
        assert_int_equal(sarco_segment(ctx, m, ct, NULL, got, n, NULL), SARCO_ERR_CANCELLED);
        assert_non_null(strstr(sarco_last_error(ctx), "cancelled"));
        assert_int_equal(c.calls, j); /* no progress call after the one that cancelled */
        assert_int_equal(ctx->host_bytes, base);
    }
    /* the context and model are reusable: the next run gives the same labels */
    c = (cancel_state){0};
    memset(got, 0xff, n * sizeof *got);
    assert_int_equal(sarco_segment(ctx, m, ct, NULL, got, n, NULL), SARCO_OK);
    assert_memory_equal(got, want, n * sizeof *got);
    printf("cancel: sarco_segment cancelled cleanly at each of its %d progress points (stage %s)\n", points,
           "windows");
    free(want);
    free(got);
    sarco_image_free(ct);
    sarco_model_free(m);
    sarco_context_free(ctx);
}

/* ---- memory_limit: refused before allocating, or streamed within it ---- */
static void test_memory_limit(void **state) {
    (void)state;
    sarco_context *big = new_ctx(0);
    sarco_model *m = NULL;
    assert_int_equal(sarco_model_load(big, SEG_MODEL, &m), SARCO_OK);
    sarco_image *ct = make_ct(big);
    size_t n = (size_t)(ct->dims[0] * ct->dims[1] * ct->dims[2]);
    uint16_t *want = calloc(n, sizeof *want), *got = calloc(n, sizeof *got);
    sarco_segment_info info = {.struct_size = sizeof info};
    assert_int_equal(sarco_segment(big, m, ct, NULL, want, n, &info), SARCO_OK);
    sarco_model_free(m);
    size_t model_bytes;
    {
        /* what the model alone holds on a fresh context */
        sarco_context *c = new_ctx(0);
        assert_int_equal(sarco_model_load(c, SEG_MODEL, &m), SARCO_OK);
        model_bytes = c->host_bytes;
        sarco_model_free(m);
        sarco_context_free(c);
    }
    /* 1) a limit below the model: the load fails with OUT_OF_MEMORY and holds nothing */
    sarco_context *c = new_ctx(model_bytes / 2);
    assert_int_equal(sarco_model_load(c, SEG_MODEL, &m), SARCO_ERR_OUT_OF_MEMORY);
    assert_null(m);
    assert_non_null(strstr(sarco_last_error(c), "memory limit"));
    assert_int_equal(c->host_bytes, 0);
    sarco_context_free(c);
    /* 2) find the smallest limit that runs, by halving from a generous one: every run either succeeds with the
     *    same labels or fails with OUT_OF_MEMORY holding nothing extra; the peak stays within the limit */
    size_t lo = model_bytes, hi = model_bytes + ((size_t)64 << 20);
    while (hi - lo > 4096) {
        size_t mid = lo + (hi - lo) / 2;
        c = new_ctx(mid);
        assert_int_equal(sarco_model_load(c, SEG_MODEL, &m), SARCO_OK);
        memset(got, 0xff, n * sizeof *got);
        sarco_status s = sarco_segment(c, m, ct, NULL, got, n, NULL);
        if (s == SARCO_OK) {
            assert_memory_equal(got, want, n * sizeof *got);
            hi = mid;
        } else {
            assert_int_equal(s, SARCO_ERR_OUT_OF_MEMORY);
            assert_non_null(strstr(sarco_last_error(c), "memory limit"));
            lo = mid;
        }
        assert_true(c->host_bytes <= mid);
        sarco_model_free(m);
        assert_int_equal(c->host_bytes, 0);
        sarco_context_free(c);
    }
    printf("memory_limit: model %zu B; segment runs from a limit of %zu B (slab %zu B), fails cleanly below\n",
           model_bytes, hi, info.slab_bytes);
    /* 3) an image read past the limit is refused before its voxels are allocated */
    c = new_ctx(4096);
    sarco_image *img = NULL;
    assert_int_equal(sarco_image_read(c, DATA "nifti/good_extension.nii", &img), SARCO_OK); /* small: fits */
    sarco_image_free(img);
    sarco_context_free(c);
    c = new_ctx(1024);
    char path[128];
    snprintf(path, sizeof path, "%s/ct.nii", g_dir);
    assert_int_equal(sarco_image_write(big, ct, path), SARCO_OK);
    assert_int_equal(sarco_image_read(c, path, &img), SARCO_ERR_OUT_OF_MEMORY);
    assert_null(img);
    clear_dir(g_dir);
    sarco_context_free(c);
    free(want);
    free(got);
    sarco_image_free(ct);
    sarco_context_free(big);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/sarco_allocfail_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}
static int teardown(void **state) {
    (void)state;
    clear_dir(g_dir);
    return rmdir(g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_readers),
        cmocka_unit_test(test_sweep_writers_and_pipeline),
        cmocka_unit_test(test_cancel_every_point),
        cmocka_unit_test(test_memory_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
