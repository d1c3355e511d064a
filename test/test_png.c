/* PNG reading against the hand-encoded corpus (test/gen_bad_png.py): every colour type and bit depth,
 * interlacing, pHYs spacing (or its absence), chunk-level damage, size caps and decompression bombs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/io/imageio.h"
#include "testutil.h"

#define PDIR "test/data/png/"

static char g_tmp[64];

static int setup(void **state) {
    (void)state;
    return tu_tmpdir(g_tmp, sizeof g_tmp, "png");
}

static int teardown(void **state) {
    (void)state;
    tu_remove_tree(g_tmp);
    return 0;
}

/* Runs first: a 16 MiB zTXt bomb is skipped unread (no warning, no memory growth). */
static void test_text_bomb_skipped(void **state) {
    (void)state;
    tu_logbuf lb = {{0}};
    sarco_context *ctx = tu_new_logged_ctx(&lb);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    sarco_image *img;
    assert_int_equal(sarco_image_read(ctx, PDIR "good_text_bomb.png", &img), SARCO_OK);
    getrusage(RUSAGE_SELF, &after);
    print_message("peak RSS grew by %ld KiB reading a 16 MiB zTXt bomb\n", after.ru_maxrss - before.ru_maxrss);
    assert_true(after.ru_maxrss - before.ru_maxrss < 8 * 1024);
    assert_string_equal(lb.text, "");
    sarco_image_free(img);
    sarco_context_free(ctx);
}

static void test_manifest(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(PDIR "manifest.tsv", &n, &keep);
    assert_true(n > 70);
    int bad = tu_image_manifest_errors(ctx, PDIR, rows, n);
    free(rows);
    free(keep);
    sarco_context_free(ctx);
    assert_int_equal(bad, 0);
}

static void test_expected(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(PDIR "expected.tsv", &n, &keep);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        tu_row *r = &rows[i];
        char path[512], dpath[512];
        snprintf(path, sizeof path, PDIR "%s", r->f[0]);
        snprintf(dpath, sizeof dpath, PDIR "%s", r->f[6]);
        int is_labels = strcmp(r->f[1], "labels") == 0;
        sarco_image *img = NULL;
        uint16_t *labels = NULL;
        sarco_status s = is_labels ? sarco_labels_read(ctx, path, &labels, &img) : sarco_image_read(ctx, path, &img);
        if (s != SARCO_OK) fail_msg("%s: %s", r->f[0], sarco_last_error(ctx));
        int64_t w = atoll(r->f[2]), h = atoll(r->f[3]);
        assert_int_equal(img->ndim, 2);
        assert_int_equal(img->dims[0], w);
        assert_int_equal(img->dims[1], h);
        assert_int_equal(img->dims[2], 1);
        if (img->flags != (uint32_t)atoi(r->f[4]))
            fail_msg("%s: flags 0x%x, expected %s", r->f[0], img->flags, r->f[4]);
        assert_int_equal(img->nifti.version, 0);
        double sp[3];
        char *c = r->f[5];
        for (int a = 0; a < 3; a++) {
            sp[a] = strtod(c, &c);
            if (*c == ',') c++;
        }
        for (int a = 0; a < 3; a++) {
            if (img->spacing[a] != sp[a])
                fail_msg("%s: spacing[%d] %.17g, expected %.17g", r->f[0], a, img->spacing[a], sp[a]);
            assert_true(img->affine[a][a] == sp[a]);
            assert_true(img->affine[a][3] == 0);
        }
        size_t size;
        uint8_t *want = tu_slurp(dpath, &size);
        if (is_labels) {
            assert_null(img->data);
            assert_int_equal(size, (size_t)(w * h * 2));
            for (int64_t k = 0; k < w * h; k++) {
                uint16_t v = tu_le_u16(want + 2 * k);
                if (labels[k] != v) fail_msg("%s: label at (%lld, %lld) is %u, expected %u", r->f[0],
                                             (long long)(k % w), (long long)(k / w), labels[k], v);
            }
        } else {
            assert_int_equal(size, (size_t)(w * h * 4));
            for (int64_t k = 0; k < w * h; k++) {
                float v = tu_le_f32(want + 4 * k);
                if (img->data[k] != v)
                    fail_msg("%s: pixel (%lld, %lld) is %.9g, expected %.9g", r->f[0], (long long)(k % w),
                             (long long)(k / w), img->data[k], v);
            }
        }
        free(want);
        sarco_image_free(img);
        sarco_labels_free(labels);
        checked++;
    }
    print_message("checked %d good PNGs\n", checked);
    assert_true(checked >= 35);
    free(rows);
    free(keep);
    sarco_context_free(ctx);
}

/* Grey samples read as labels are the image values before stretching. */
static void test_labels_vs_image(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    const char *files[] = {PDIR "good_ct0_8bit.png", PDIR "good_ct0_16bit.png", PDIR "good_ct0_2bit.png",
                           PDIR "good_ct0_1bit_interlaced.png"};
    const double scale[] = {1.0, 1.0 / 257.0, 85.0, 255.0};
    for (size_t f = 0; f < 4; f++) {
        sarco_image *img, *geo;
        uint16_t *lab;
        assert_int_equal(sarco_image_read(ctx, files[f], &img), SARCO_OK);
        assert_int_equal(sarco_labels_read(ctx, files[f], &lab, &geo), SARCO_OK);
        int64_t n = img->dims[0] * img->dims[1];
        int top = 0;
        for (int64_t k = 0; k < n; k++) {
            assert_true(img->data[k] == (float)(lab[k] * scale[f]));
            top = lab[k] > top ? lab[k] : top;
        }
        assert_true(top > 0);
        sarco_image_free(img);
        sarco_image_free(geo);
        sarco_labels_free(lab);
    }
    sarco_context_free(ctx);
}

static void test_spacing(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_image *img;
    assert_int_equal(sarco_image_read(ctx, PDIR "good_phys_metre.png", &img), SARCO_OK);
    assert_true(fabs(img->spacing[0] - 1000.0 / 3937) < 1e-12); /* 100 dpi */
    assert_true(fabs(img->spacing[1] - 0.2) < 1e-12);
    assert_int_equal(img->flags, 0);
    sarco_image_free(img);
    assert_int_equal(sarco_image_read(ctx, PDIR "good_phys_unknown_unit.png", &img), SARCO_OK);
    assert_int_equal(img->flags, SARCO_IMAGE_NO_SPACING);
    for (int a = 0; a < 3; a++) assert_true(img->spacing[a] == 0 && img->affine[a][a] == 0);
    /* the caller supplies it; then the image can be written as NIfTI */
    double sp[2] = {0.08, 0.08};
    assert_int_equal(sarco_image_set_spacing(ctx, img, sp), SARCO_OK);
    assert_int_equal(img->flags, 0);
    char out[256];
    snprintf(out, sizeof out, "%s/d.nii", g_tmp);
    assert_int_equal(sarco_image_write(ctx, img, out), SARCO_OK);
    sarco_image *back;
    assert_int_equal(sarco_image_read(ctx, out, &back), SARCO_OK);
    assert_int_equal(back->ndim, 2);
    assert_true(fabs(back->spacing[0] - 0.08) < 1e-7);
    assert_memory_equal(back->data, img->data, sizeof(float) * 48);
    sarco_image_free(back);
    sarco_image_free(img);
    sarco_context_free(ctx);
}

/* Content decides the format, not the name. */
static void test_sniffing(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char p[256];
    uint8_t *b = tu_slurp(PDIR "good_ct2_8bit.png", &n);
    snprintf(p, sizeof p, "%s/b.nii", g_tmp);
    tu_spit(p, b, n);
    free(b);
    sarco_image *img;
    assert_int_equal(sarco_image_read(ctx, p, &img), SARCO_OK);
    assert_int_equal(img->dims[0], 13);
    sarco_image_free(img);
    b = tu_slurp("test/data/nifti/good_n1_le_uint8.nii", &n);
    snprintf(p, sizeof p, "%s/c.png", g_tmp);
    tu_spit(p, b, n);
    free(b);
    assert_int_equal(sarco_image_read(ctx, p, &img), SARCO_OK);
    assert_int_equal(img->nifti.version, 1);
    sarco_image_free(img);
    sarco_context_free(ctx);
}

/* Every prefix is refused; byte flips are refused or read, never a crash (see the ASan run). */
static void test_truncation_and_flips(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    const char *files[] = {PDIR "good_ct3_4bit.png", PDIR "good_ct2_16bit_interlaced.png", PDIR "lab_grey16.png"};
    char p[256];
    snprintf(p, sizeof p, "%s/a.png", g_tmp);
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
        for (size_t pos = 0; pos < n; pos++) {
            for (int bit = 0; bit < 8; bit += 3) {
                b[pos] ^= (uint8_t)(1u << bit);
                tu_spit(p, b, n);
                b[pos] ^= (uint8_t)(1u << bit);
                sarco_image *img = NULL;
                uint16_t *l = NULL;
                sarco_status s = f == 2 ? sarco_labels_read(ctx, p, &l, &img) : sarco_image_read(ctx, p, &img);
                if (s == SARCO_OK) accepted++;
                else refused++;
                sarco_image_free(img);
                sarco_labels_free(l);
            }
        }
        free(b);
    }
    print_message("byte flips: %d refused, %d accepted (flips in ignored fields)\n", refused, accepted);
    assert_true(refused > 10 * accepted);
    sarco_context_free(ctx);
}

static void test_memory_limit(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(1000);
    sarco_image *img;
    /* 1000 x 1 floats = 4000 bytes > 1000 */
    assert_int_equal(sarco_image_read(ctx, PDIR "good_wide.png", &img), SARCO_ERR_OUT_OF_MEMORY);
    assert_null(img);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_bomb_skipped), cmocka_unit_test(test_manifest),
        cmocka_unit_test(test_expected),          cmocka_unit_test(test_labels_vs_image),
        cmocka_unit_test(test_spacing),           cmocka_unit_test(test_sniffing),
        cmocka_unit_test(test_truncation_and_flips), cmocka_unit_test(test_memory_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
