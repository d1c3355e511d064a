/* DICOM input (docs/io.md "DICOM") on test/data/dicom (test/gen_dicom_reference.py): series affines
 * against SimpleITK's (expected.tsv), the bad inputs of manifest.tsv with their status and message,
 * every prefix and random byte flips of real files (a status, never a crash), folder loops, pictures,
 * the memory limit. Voxel values against SimpleITK/pydicom are checked by test/python/test_dicom.py. */
#include <math.h>

#include "testutil.h"

#define D "test/data/dicom/"

static void test_series_affines(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(D "expected.tsv", &n, &keep);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(rows[i].f[0], "series/", 7) != 0) continue;
        char path[512];
        snprintf(path, sizeof path, D "%s", rows[i].f[0]);
        const char *uid = strcmp(rows[i].f[1], "-") ? rows[i].f[1] : NULL;
        sarco_image *img = NULL;
        sarco_status s = sarco_image_read_series(ctx, path, uid, &img);
        if (s != SARCO_OK) fail_msg("%s: %s", path, sarco_last_error(ctx));
        for (int a = 0; a < 3; a++) assert_int_equal(img->dims[a], atoll(rows[i].f[2 + a]));
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) {
                double want = atof(rows[i].f[6 + 4 * r + c]);
                if (fabs(img->affine[r][c] - want) > 1e-6)
                    fail_msg("%s: affine[%d][%d] = %.9g, SimpleITK %.9g", path, r, c, img->affine[r][c], want);
            }
        assert_non_null(img->dicom);
        assert_int_equal(img->dicom->files, img->dims[2]);
        assert_true(img->dicom->series_uid[0] != '\0');
        assert_int_equal(img->dicom->spacing_source, SARCO_DICOM_SPACING_PIXEL_SPACING);
        assert_true(img->dicom->largest_gap - img->dicom->slice_spacing <= img->dicom->gap_tolerance);
        /* sarco_image_read takes the same folder (when it holds one series) */
        if (!uid) {
            sarco_image *b = NULL;
            assert_int_equal(sarco_image_read(ctx, path, &b), SARCO_OK);
            assert_memory_equal(b->data, img->data, (size_t)(img->dims[0] * img->dims[1] * img->dims[2]) * 4);
            sarco_image_free(b);
        }
        sarco_image_free(img);
        seen++;
    }
    assert_int_equal(seen, 8);
    free(rows);
    free(keep);
    sarco_context_free(ctx);
}

static void test_bad_inputs(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(D "manifest.tsv", &n, &keep);
    assert_true(n >= 13);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, D "%s", rows[i].f[0]);
        sarco_image *img = NULL;
        sarco_status s = sarco_image_read(ctx, path, &img), want = (sarco_status)atoi(rows[i].f[1]);
        if (s != want || img || !strstr(sarco_last_error(ctx), rows[i].f[2])) {
            print_error("%s: %s \"%s\", want %s \"%s\"\n", rows[i].f[0], sarco_status_string(s), sarco_last_error(ctx),
                        sarco_status_string(want), rows[i].f[2]);
            bad++;
        }
        const char *base = strrchr(rows[i].f[0], '/') + 1;
        if (s != SARCO_OK && strstr(rows[i].f[0], ".dcm") && !strstr(sarco_last_error(ctx), base)) {
            print_error("%s: the message does not name the file: %s\n", rows[i].f[0], sarco_last_error(ctx));
            bad++;
        }
        sarco_image_free(img);
    }
    assert_int_equal(bad, 0);
    free(rows);
    free(keep);
    sarco_context_free(ctx);
}

/* Every prefix (stride step) and, with a fixed seed, random byte flips of a file: each read either
 * fails with a status and a message, or succeeds with the file's own dims. Never a crash. */
static void hammer(sarco_context *ctx, const char *src, const char *dir, size_t step, int flips) {
    size_t size;
    uint8_t *b = tu_slurp(src, &size);
    char path[512];
    snprintf(path, sizeof path, "%s/x.dcm", dir);
    sarco_image *ref = NULL;
    assert_int_equal(sarco_image_read(ctx, src, &ref), SARCO_OK);
    for (size_t k = 0; k < size; k += step) {
        tu_spit(path, b, k);
        sarco_image *img = NULL;
        sarco_status s = sarco_image_read(ctx, path, &img);
        if (s == SARCO_OK) fail_msg("%s: the %zu-byte prefix of %zu was read", src, k, size);
        assert_true(sarco_last_error(ctx)[0] != '\0');
    }
    unsigned seed = 15;
    uint8_t *c = malloc(size);
    for (int t = 0; t < flips; t++) {
        memcpy(c, b, size);
        for (int j = 0; j < 1 + t % 4; j++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % size;
            seed = seed * 1103515245u + 12345u;
            c[at] ^= (uint8_t)(1u << ((seed >> 16) % 8));
        }
        tu_spit(path, c, size);
        sarco_image *img = NULL;
        sarco_status s = sarco_image_read(ctx, path, &img);
        if (s == SARCO_OK) {
            assert_non_null(img->data);
            assert_true(img->dims[0] * img->dims[1] * img->dims[2] > 0);
        } else {
            assert_null(img);
            assert_true(sarco_last_error(ctx)[0] != '\0');
        }
        sarco_image_free(img);
    }
    free(c);
    sarco_image_free(ref);
    free(b);
}

static void test_prefixes_and_flips(void **state) {
    (void)state;
    char dir[256];
    assert_int_equal(tu_tmpdir(dir, sizeof dir, "dicom"), 0);
    sarco_context *ctx = tu_new_ctx(0);
    hammer(ctx, D "us/palette.dcm", dir, 7, 300);
    hammer(ctx, D "pydicom/MR_small_RLE.dcm", dir, 13, 300);
    hammer(ctx, D "pydicom/SC_rgb_rle_2frame.dcm", dir, 5, 300);
    hammer(ctx, D "pydicom/JPEG2000.dcm", dir, 11, 200);
    hammer(ctx, D "series/axial_jpegls/IM0000", dir, 3, 200);
    sarco_context_free(ctx);
    assert_int_equal(tu_remove_tree(dir), 0);
}

static void test_folder_loop(void **state) {
    (void)state;
    char dir[256], link[512], cwd[512], target[1024];
    assert_int_equal(tu_tmpdir(dir, sizeof dir, "dicomloop"), 0);
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(target, sizeof target, "%s/" D "series/axial", cwd);
    snprintf(link, sizeof link, "%s/a", dir);
    assert_int_equal(symlink(target, link), 0);
    snprintf(link, sizeof link, "%s/back", dir);
    assert_int_equal(symlink(dir, link), 0);
    sarco_context *ctx = tu_new_ctx(0);
    sarco_image *img = NULL;
    assert_int_equal(sarco_image_read(ctx, dir, &img), SARCO_ERR_BAD_FORMAT);
    assert_non_null(strstr(sarco_last_error(ctx), "a folder loop"));
    assert_null(img);
    unlink(link); /* without the loop the series reads */
    assert_int_equal(sarco_image_read(ctx, dir, &img), SARCO_OK);
    assert_int_equal(img->dims[2], 6);
    sarco_image_free(img);
    sarco_context_free(ctx);
    assert_int_equal(tu_remove_tree(dir), 0);
}

static void test_pictures_and_us(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_picture *p = NULL;
    assert_int_equal(sarco_picture_read(ctx, D "us/rgb_regions.dcm", &p), SARCO_OK);
    assert_int_equal(p->channels, 3);
    assert_int_equal(p->format, SARCO_PICTURE_FORMAT_DICOM);
    assert_int_equal(p->width, 48);
    assert_int_equal(p->height, 40);
    assert_true(fabs(p->spacing[0] - 0.095) < 1e-12 && fabs(p->spacing[1] - 0.085) < 1e-12);
    assert_int_equal(p->dicom->spacing_source, SARCO_DICOM_SPACING_US_REGIONS);
    sarco_picture_free(p);
    p = NULL;
    assert_int_equal(sarco_picture_read(ctx, D "us/mono1_cine.dcm", &p), SARCO_ERR_INVALID_ARGUMENT);
    assert_null(p);
    sarco_image *img = NULL;
    assert_int_equal(sarco_image_read(ctx, D "us/no_spacing.dcm", &img), SARCO_OK);
    assert_true(img->flags & SARCO_IMAGE_NO_SPACING);
    assert_int_equal(img->dicom->spacing_source, SARCO_DICOM_SPACING_NONE);
    assert_int_equal(img->ndim, 2);
    /* a single-file path with a series UID that is not its own is refused */
    sarco_image *other = NULL;
    assert_int_equal(sarco_image_read_series(ctx, D "us/no_spacing.dcm", "1.2.3", &other), SARCO_ERR_INVALID_ARGUMENT);
    sarco_image_free(img);
    /* labels are not read from DICOM; folders are not pictures */
    uint16_t *lab = NULL;
    assert_int_equal(sarco_labels_read(ctx, D "us/no_spacing.dcm", &lab, &img), SARCO_ERR_UNSUPPORTED);
    assert_int_equal(sarco_picture_read(ctx, D "series/axial", &p), SARCO_ERR_IO);
    sarco_context_free(ctx);
}

static void test_memory_limit(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(4096);
    sarco_image *img = NULL;
    sarco_status s = sarco_image_read(ctx, D "pydicom/CT_small.dcm", &img);
    assert_int_equal(s, SARCO_ERR_OUT_OF_MEMORY);
    assert_null(img);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_series_affines),   cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_prefixes_and_flips), cmocka_unit_test(test_folder_loop),
        cmocka_unit_test(test_pictures_and_us),  cmocka_unit_test(test_memory_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
