/* JPEG reading against the corpus of test/gen_bad_jpeg.py: PIL-encoded files of every kind we read
 * (baseline, progressive, restart markers, 4:4:4 / 4:2:2 / 4:2:0 chroma, 1x1, JFIF densities) decoded
 * to the values PIL's libjpeg-turbo gives (tolerance in tolerance.txt), bad files with their statuses,
 * every prefix of a file refused and byte flips never crashing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/io/imageio.h"
#include "testutil.h"

#define JDIR "test/data/jpeg/"

static char g_tmp[64];

static int setup(void **state) {
    (void)state;
    return tu_tmpdir(g_tmp, sizeof g_tmp, "jpeg");
}

static int teardown(void **state) {
    (void)state;
    tu_remove_tree(g_tmp);
    return 0;
}

static double tolerance(void) {
    size_t n;
    char *t = (char *)tu_slurp(JDIR "tolerance.txt", &n);
    double v = atof(t);
    free(t);
    return v;
}

static void test_manifest(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(JDIR "manifest.tsv", &n, &keep);
    assert_true(n >= 35);
    int bad = tu_image_manifest_errors(ctx, JDIR, rows, n);
    free(rows);
    free(keep);
    sarco_context_free(ctx);
    assert_int_equal(bad, 0);
}

/* sarco_image_read: grey, or BT.601 luma of the RGB decode; spacing from the JFIF density. */
static void test_expected(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(JDIR "expected.tsv", &n, &keep);
    const double tol = tolerance();
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        tu_row *r = &rows[i];
        char path[512], dpath[512];
        snprintf(path, sizeof path, JDIR "%s", r->f[0]);
        snprintf(dpath, sizeof dpath, JDIR "%s", r->f[6]);
        sarco_image *img = NULL;
        if (sarco_image_read(ctx, path, &img) != SARCO_OK) fail_msg("%s: %s", r->f[0], sarco_last_error(ctx));
        int64_t w = atoll(r->f[2]), h = atoll(r->f[3]);
        assert_int_equal(img->ndim, 2);
        assert_int_equal(img->dims[0], w);
        assert_int_equal(img->dims[1], h);
        if (img->flags != (uint32_t)atoi(r->f[4])) fail_msg("%s: flags 0x%x, expected %s", r->f[0], img->flags, r->f[4]);
        char *c = r->f[5];
        for (int a = 0; a < 3; a++) {
            double sp = strtod(c, &c);
            if (*c == ',') c++;
            if (fabs(img->spacing[a] - sp) > 1e-12 || img->affine[a][a] != img->spacing[a])
                fail_msg("%s: spacing[%d] %.17g, expected %.17g", r->f[0], a, img->spacing[a], sp);
        }
        size_t size;
        uint8_t *want = tu_slurp(dpath, &size);
        assert_int_equal(size, (size_t)(w * h * 4));
        for (int64_t k = 0; k < w * h; k++) {
            double d = fabs((double)img->data[k] - tu_le_f32(want + 4 * k));
            if (d > worst) worst = d;
            if (d > tol)
                fail_msg("%s: pixel (%lld, %lld) is %.9g, PIL %.9g", r->f[0], (long long)(k % w), (long long)(k / w),
                         img->data[k], tu_le_f32(want + 4 * k));
        }
        free(want);
        sarco_image_free(img);
    }
    print_message("%zu JPEGs: largest |ours - PIL| = %g grey levels (tolerance %g)\n", n, worst, tol);
    assert_true(n >= 15);
    free(rows);
    free(keep);
    sarco_context_free(ctx);
}

/* Every prefix is refused; byte flips are refused or read, never a crash (see the ASan run). */
static void test_truncation_and_flips(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    const char *files[] = {JDIR "good_rgb_420.jpg", JDIR "good_grey_progressive.jpg", JDIR "good_restart.jpg"};
    char p[256];
    snprintf(p, sizeof p, "%s/a.jpg", g_tmp);
    int accepted = 0, refused = 0;
    for (size_t f = 0; f < 3; f++) {
        size_t n;
        uint8_t *b = tu_slurp(files[f], &n);
        for (size_t cut = 0; cut < n; cut++) {
            tu_spit(p, b, cut);
            sarco_image *img = NULL;
            if (sarco_image_read(ctx, p, &img) == SARCO_OK) fail_msg("%s cut at %zu was accepted", files[f], cut);
            assert_null(img);
        }
        for (size_t pos = 0; pos < n; pos += 1 + f) {
            b[pos] ^= 0x10;
            tu_spit(p, b, n);
            b[pos] ^= 0x10;
            sarco_image *img = NULL;
            sarco_status s = sarco_image_read(ctx, p, &img);
            if (s == SARCO_OK) accepted++;
            else refused++;
            if (s != SARCO_OK) assert_null(img);
            sarco_image_free(img);
        }
        free(b);
    }
    /* a flip inside the entropy-coded data usually still decodes (to other pixels): JPEG has no checksum */
    print_message("byte flips: %d refused, %d decoded\n", refused, accepted);
    assert_true(refused > 0);
    sarco_context_free(ctx);
}

static void test_memory_limit(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(2000);
    sarco_image *img;
    /* 37 x 23 floats = 3404 bytes > 2000 */
    assert_int_equal(sarco_image_read(ctx, JDIR "good_grey_300dpi.jpg", &img), SARCO_ERR_OUT_OF_MEMORY);
    assert_null(img);
    sarco_context_free(ctx);
}

/* Content decides: a JPEG named .nii reads as a JPEG. */
static void test_sniffing(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char p[256];
    uint8_t *b = tu_slurp(JDIR "good_rgb_420.jpg", &n);
    snprintf(p, sizeof p, "%s/b.nii", g_tmp);
    tu_spit(p, b, n);
    free(b);
    sarco_image *img;
    assert_int_equal(sarco_image_read(ctx, p, &img), SARCO_OK);
    assert_int_equal(img->dims[0], 37);
    sarco_image_free(img);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest),     cmocka_unit_test(test_expected),
        cmocka_unit_test(test_truncation_and_flips), cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_sniffing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
