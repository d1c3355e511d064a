/* sarco_picture_read: PNG of every colour type and depth (test/gen_bad_png.py's pictures.tsv), JPEG
 * (test/gen_bad_jpeg.py, PIL's decode as the reference) and 2D NIfTI, channels as stored and planar;
 * spacing (row, col) from pHYs / JFIF density / pixdim; bad files refused with the image reader's
 * statuses. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static int check_table(sarco_context *ctx, const char *dir, double tol) {
    char tpath[256];
    snprintf(tpath, sizeof tpath, "%spictures.tsv", dir);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(tpath, &n, &keep);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        tu_row *r = &rows[i];
        char path[512], dpath[512];
        snprintf(path, sizeof path, "%s%s", dir, r->f[0]);
        snprintf(dpath, sizeof dpath, "%s%s", dir, r->f[5]);
        sarco_picture *pic = NULL;
        if (sarco_picture_read(ctx, path, &pic) != SARCO_OK) fail_msg("%s: %s", r->f[0], sarco_last_error(ctx));
        if (pic->channels != atoi(r->f[1])) fail_msg("%s: %d channels, expected %s", r->f[0], pic->channels, r->f[1]);
        if (pic->bit_depth != atoi(r->f[2])) fail_msg("%s: bit depth %d, expected %s", r->f[0], pic->bit_depth, r->f[2]);
        if (pic->flags != (uint32_t)atoi(r->f[3])) fail_msg("%s: flags 0x%x, expected %s", r->f[0], pic->flags, r->f[3]);
        char *c = r->f[4];
        for (int a = 0; a < 2; a++) {
            double sp = strtod(c, &c);
            if (*c == ',') c++;
            if (fabs(pic->spacing[a] - sp) > 1e-12)
                fail_msg("%s: spacing[%d] %.17g, expected %.17g", r->f[0], a, pic->spacing[a], sp);
        }
        size_t size;
        uint8_t *want = tu_slurp(dpath, &size);
        const int64_t count = pic->width * pic->height * pic->channels;
        if (size != (size_t)count * 4) fail_msg("%s: %lld samples, the table has %zu", r->f[0], (long long)count, size / 4);
        for (int64_t k = 0; k < count; k++) {
            double d = fabs((double)pic->data[k] - tu_le_f32(want + 4 * k));
            if (d > worst) worst = d;
            if (d > tol) fail_msg("%s: sample %lld is %.9g, expected %.9g", r->f[0], (long long)k, pic->data[k],
                                  tu_le_f32(want + 4 * k));
        }
        free(want);
        sarco_picture_free(pic);
    }
    print_message("%s: %zu pictures, largest difference %g\n", dir, n, worst);
    free(rows);
    free(keep);
    return (int)n;
}

static void test_png_pictures(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    assert_true(check_table(ctx, "test/data/png/", 0.0) >= 35);
    /* all five colour types are in the table */
    const char *files[] = {"good_ct0_8bit.png", "good_ct4_8bit.png", "good_ct2_8bit.png", "good_ct6_16bit.png",
                           "good_ct3_8bit.png", "good_palette_trns.png"};
    const int channels[] = {1, 2, 3, 4, 3, 4};
    for (int i = 0; i < 6; i++) {
        char p[256];
        snprintf(p, sizeof p, "test/data/png/%s", files[i]);
        sarco_picture *pic;
        assert_int_equal(sarco_picture_read(ctx, p, &pic), SARCO_OK);
        assert_int_equal(pic->channels, channels[i]);
        assert_int_equal(pic->format, SARCO_PICTURE_FORMAT_PNG);
        sarco_picture_free(pic);
    }
    sarco_context_free(ctx);
}

static void test_jpeg_pictures(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *t = (char *)tu_slurp("test/data/jpeg/tolerance.txt", &n);
    double tol = atof(t);
    free(t);
    assert_true(check_table(ctx, "test/data/jpeg/", tol) >= 15);
    sarco_picture *pic;
    assert_int_equal(sarco_picture_read(ctx, "test/data/jpeg/good_us_frame.jpg", &pic), SARCO_OK);
    assert_int_equal(pic->format, SARCO_PICTURE_FORMAT_JPEG);
    assert_int_equal(pic->width, 96);
    assert_int_equal(pic->height, 64);
    sarco_picture_free(pic);
    sarco_context_free(ctx);
}

/* The picture of a grey file holds the same values as sarco_image_read; of a colour one, luma of its channels. */
static void test_picture_vs_image(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    const char *files[] = {"test/data/png/good_ct2_8bit.png", "test/data/png/good_ct0_16bit.png",
                           "test/data/jpeg/good_rgb_422.jpg", "test/data/jpeg/good_grey_300dpi.jpg",
                           "test/data/png/good_phys_metre.png"};
    for (int f = 0; f < 5; f++) {
        sarco_picture *pic;
        sarco_image *img;
        assert_int_equal(sarco_picture_read(ctx, files[f], &pic), SARCO_OK);
        assert_int_equal(sarco_image_read(ctx, files[f], &img), SARCO_OK);
        assert_int_equal(pic->width, img->dims[0]);
        assert_int_equal(pic->height, img->dims[1]);
        assert_true(pic->spacing[0] == img->spacing[1] && pic->spacing[1] == img->spacing[0]);
        const size_t plane = (size_t)(pic->width * pic->height);
        const double div = pic->bit_depth == 16 ? 257.0 : 1.0;
        for (size_t k = 0; k < plane; k++) {
            double v;
            if (pic->channels == 1) {
                v = pic->data[k] / div;
            } else {
                double R = pic->data[k], G = pic->data[plane + k], B = pic->data[2 * plane + k];
                v = (R == G && G == B ? R : 0.299 * R + 0.587 * G + 0.114 * B) / div;
            }
            if ((float)v != img->data[k]) fail_msg("%s: pixel %zu: image %.9g, luma of the picture %.9g", files[f], k,
                                                   img->data[k], v);
        }
        sarco_picture_free(pic);
        sarco_image_free(img);
    }
    sarco_context_free(ctx);
}

static void test_nifti_picture(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    char dir[128];
    assert_int_equal(tu_tmpdir(dir, sizeof dir, "picture"), 0);
    int64_t dims[2] = {5, 3}; /* nx (columns) 5, ny (rows) 3 */
    double sp[2] = {0.1, 0.25};
    sarco_image *img;
    assert_int_equal(sarco_image_create(ctx, 2, dims, sp, &img), SARCO_OK);
    for (int k = 0; k < 15; k++) img->data[k] = (float)k * 1.5f - 3.0f;
    char p[256];
    snprintf(p, sizeof p, "%s/p.nii.gz", dir);
    assert_int_equal(sarco_image_write(ctx, img, p), SARCO_OK);
    sarco_picture *pic;
    assert_int_equal(sarco_picture_read(ctx, p, &pic), SARCO_OK);
    assert_int_equal(pic->width, 5);
    assert_int_equal(pic->height, 3);
    assert_int_equal(pic->channels, 1);
    assert_int_equal(pic->bit_depth, 0);
    assert_int_equal(pic->format, SARCO_PICTURE_FORMAT_NIFTI);
    assert_int_equal(pic->flags, 0);
    assert_true(fabs(pic->spacing[0] - 0.25) < 1e-6 && fabs(pic->spacing[1] - 0.1) < 1e-6);
    assert_memory_equal(pic->data, img->data, 15 * sizeof(float)); /* row y, column x: the same bytes */
    sarco_picture_free(pic);
    sarco_image_free(img);
    /* a 3D volume is not a picture */
    int64_t d3[3] = {4, 3, 2};
    double s3[3] = {1, 1, 1};
    assert_int_equal(sarco_image_create(ctx, 3, d3, s3, &img), SARCO_OK);
    snprintf(p, sizeof p, "%s/v.nii", dir);
    assert_int_equal(sarco_image_write(ctx, img, p), SARCO_OK);
    sarco_image_free(img);
    pic = (sarco_picture *)1;
    assert_int_equal(sarco_picture_read(ctx, p, &pic), SARCO_ERR_INVALID_ARGUMENT);
    assert_null(pic);
    assert_non_null(strstr(sarco_last_error(ctx), "not a 2D picture"));
    tu_remove_tree(dir);
    sarco_context_free(ctx);
}

/* Bad files give the same statuses through the picture reader (labels-only rows aside). */
static void test_bad_files(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    const char *dirs[] = {"test/data/png/", "test/data/jpeg/"};
    int checked = 0;
    for (int d = 0; d < 2; d++) {
        char tpath[256];
        snprintf(tpath, sizeof tpath, "%smanifest.tsv", dirs[d]);
        size_t n;
        char *keep;
        tu_row *rows = tu_read_tsv(tpath, &n, &keep);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(rows[i].f[1], "image") != 0 || strcmp(rows[i].f[2], "SARCO_OK") == 0) continue;
            char path[512];
            snprintf(path, sizeof path, "%s%s", dirs[d], rows[i].f[0]);
            sarco_picture *pic = NULL;
            sarco_status s = sarco_picture_read(ctx, path, &pic);
            if (s != tu_status_named(rows[i].f[2]) || !strstr(sarco_last_error(ctx), rows[i].f[3]))
                fail_msg("%s: %s (%s), expected %s with \"%s\"", rows[i].f[0], sarco_status_string(s),
                         sarco_last_error(ctx), rows[i].f[2], rows[i].f[3]);
            assert_null(pic);
            checked++;
        }
        free(rows);
        free(keep);
    }
    print_message("%d bad files refused by sarco_picture_read\n", checked);
    assert_true(checked > 50);
    sarco_picture_free(NULL);
    sarco_context_free(ctx);
}

/* Picture mode has its own conversion path: every prefix refused, byte flips never crash (ASan run). */
static void test_truncation_flips_and_limits(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    char dir[128], p[256];
    assert_int_equal(tu_tmpdir(dir, sizeof dir, "picture"), 0);
    snprintf(p, sizeof p, "%s/x", dir);
    const char *files[] = {"test/data/png/good_palette_trns.png", "test/data/png/good_ct6_16bit.png",
                           "test/data/jpeg/good_rgb_progressive.jpg"};
    int ok = 0, refused = 0;
    for (int f = 0; f < 3; f++) {
        size_t n;
        uint8_t *b = tu_slurp(files[f], &n);
        for (size_t cut = 0; cut < n; cut++) {
            tu_spit(p, b, cut);
            sarco_picture *pic = NULL;
            if (sarco_picture_read(ctx, p, &pic) == SARCO_OK) fail_msg("%s cut at %zu was accepted", files[f], cut);
            assert_null(pic);
        }
        for (size_t pos = 0; pos < n; pos++) {
            b[pos] ^= 0x04;
            tu_spit(p, b, n);
            b[pos] ^= 0x04;
            sarco_picture *pic = NULL;
            if (sarco_picture_read(ctx, p, &pic) == SARCO_OK) ok++;
            else refused++;
            sarco_picture_free(pic);
        }
        free(b);
    }
    print_message("picture byte flips: %d refused, %d read\n", refused, ok);
    sarco_context_free(ctx);
    /* the context's memory limit covers the planes: 96 x 64 x 3 floats = 73728 bytes */
    ctx = tu_new_ctx(60000);
    sarco_picture *pic = NULL;
    assert_int_equal(sarco_picture_read(ctx, "test/data/jpeg/good_us_frame.jpg", &pic), SARCO_ERR_OUT_OF_MEMORY);
    assert_null(pic);
    assert_int_equal(sarco_picture_read(ctx, "test/data/png/good_ct6_8bit_interlaced.png", &pic), SARCO_OK);
    sarco_picture_free(pic);
    assert_int_equal(sarco_picture_read(ctx, NULL, &pic), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_picture_read(ctx, "test/data/png/no_such_file.png", &pic), SARCO_ERR_IO);
    sarco_context_free(ctx);
    tu_remove_tree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_pictures),  cmocka_unit_test(test_jpeg_pictures),
        cmocka_unit_test(test_picture_vs_image), cmocka_unit_test(test_nifti_picture),
        cmocka_unit_test(test_bad_files),     cmocka_unit_test(test_truncation_flips_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
