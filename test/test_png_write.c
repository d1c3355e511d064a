/* The PNG writer: every channel count round-trips byte for byte (decoded by libpng's own reader, and
 * grey through sarco_image_read), pHYs carries the spacing, bad arguments fail with no file, and a
 * write that fails anywhere (after 0, 1, half, all but one byte; at fsync; at rename) leaves no
 * temporary file and the old file intact. */
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/io/imageio.h"
#include "testutil.h"

static char g_dir[128];
static sarco_context *g_ctx;

static int setup(void **state) {
    (void)state;
    return tu_dir_and_ctx("pngw", g_dir, sizeof g_dir, &g_ctx);
}

static int teardown(void **state) {
    (void)state;
    tu_dir_and_ctx_free(g_dir, g_ctx);
    return 0;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* A deterministic test pattern: every byte value appears, neighbours differ. */
static uint8_t *pattern(int w, int h, int ch) {
    uint8_t *p = malloc((size_t)w * h * ch);
    for (int i = 0; i < w * h * ch; i++) p[i] = (uint8_t)(i * 37 + (i / (w * ch)) * 11);
    return p;
}

/* Decodes path with libpng's simplified API into the file's own format; checks the header. */
static uint8_t *decode(const char *path, int w, int h, int ch) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    assert_true(png_image_begin_read_from_file(&im, path));
    assert_int_equal(im.width, w);
    assert_int_equal(im.height, h);
    static const png_uint_32 fmt[5] = {0, PNG_FORMAT_GRAY, PNG_FORMAT_GA, PNG_FORMAT_RGB, PNG_FORMAT_RGBA};
    assert_int_equal(PNG_IMAGE_PIXEL_CHANNELS(im.format), ch);
    im.format = fmt[ch];
    uint8_t *out = malloc(PNG_IMAGE_SIZE(im));
    assert_true(png_image_finish_read(&im, NULL, out, 0, NULL));
    return out;
}

static void test_roundtrip_every_channel_count(void **state) {
    (void)state;
    char path[256];
    for (int ch = 1; ch <= 4; ch++) {
        int w = 37, h = 23; /* odd sizes: no row padding assumptions */
        uint8_t *p = pattern(w, h, ch);
        snprintf(path, sizeof path, "%s/c%d.png", g_dir, ch);
        assert_int_equal(sarco_png_write(g_ctx, path, p, w, h, ch, NULL), SARCO_OK);
        uint8_t *back = decode(path, w, h, ch);
        assert_memory_equal(back, p, (size_t)w * h * ch);
        free(back);
        free(p);
    }
}

static void test_grey_through_image_read_with_phys(void **state) {
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/grey.png", g_dir);
    int w = 16, h = 9;
    uint8_t *p = pattern(w, h, 1);
    const double sp[2] = {0.7, 2.5};
    assert_int_equal(sarco_png_write(g_ctx, path, p, w, h, 1, sp), SARCO_OK);
    sarco_image *img;
    assert_int_equal(sarco_image_read(g_ctx, path, &img), SARCO_OK);
    assert_int_equal(img->dims[0], w);
    assert_int_equal(img->dims[1], h);
    for (int i = 0; i < w * h; i++) assert_true(img->data[i] == (float)p[i]); /* x fastest, top row first */
    /* pHYs holds whole pixels per metre: 1000/0.7 -> 1429, 1000/2.5 -> 400 */
    assert_true(fabs(img->spacing[0] - 1000.0 / 1429.0) < 1e-12);
    assert_true(fabs(img->spacing[1] - 2.5) < 1e-12);
    assert_false(img->flags & SARCO_IMAGE_NO_SPACING);
    sarco_image_free(img);
    /* without spacing: the reader says so */
    assert_int_equal(sarco_png_write(g_ctx, path, p, w, h, 1, NULL), SARCO_OK);
    assert_int_equal(sarco_image_read(g_ctx, path, &img), SARCO_OK);
    assert_true(img->flags & SARCO_IMAGE_NO_SPACING);
    sarco_image_free(img);
    free(p);
}

static void test_bad_arguments(void **state) {
    (void)state;
    tu_clear_dir(g_dir);
    char path[256];
    snprintf(path, sizeof path, "%s/bad.png", g_dir);
    uint8_t px[12] = {0};
    const double nan_sp[2] = {NAN, 1}, neg_sp[2] = {1, -1}, zero_sp[2] = {0, 1};
    assert_int_equal(sarco_png_write(g_ctx, path, px, 2, 2, 0, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(g_ctx), "0 channels"));
    assert_int_equal(sarco_png_write(g_ctx, path, px, 2, 2, 5, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_png_write(g_ctx, path, px, 0, 2, 1, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_png_write(g_ctx, path, px, 2, -1, 1, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_png_write(g_ctx, path, NULL, 2, 2, 1, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_png_write(g_ctx, NULL, px, 2, 2, 1, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_png_write(g_ctx, path, px, 2, 2, 1, nan_sp), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(g_ctx), "spacing"));
    assert_int_equal(sarco_png_write(g_ctx, path, px, 2, 2, 1, neg_sp), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_png_write(g_ctx, path, px, 2, 2, 1, zero_sp), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_png_write(g_ctx, path, px, 40000, 1, 1, NULL), SARCO_ERR_LIMIT);
    assert_int_equal(count_entries(g_dir), 0);
    /* a directory that does not exist, and a target that is a directory */
    char nodir[300];
    snprintf(nodir, sizeof nodir, "%s/missing/x.png", g_dir);
    assert_int_equal(sarco_png_write(g_ctx, nodir, px, 2, 2, 1, NULL), SARCO_ERR_IO);
    assert_non_null(strstr(sarco_last_error(g_ctx), "missing/x.png"));
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sub.png", g_dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(sarco_png_write(g_ctx, sub, px, 2, 2, 1, NULL), SARCO_ERR_IO);
    assert_int_equal(count_entries(g_dir), 1); /* only the directory itself */
    rmdir(sub);
}

static void test_faults_leave_old_file(void **state) {
    (void)state;
    tu_clear_dir(g_dir);
    char path[256];
    snprintf(path, sizeof path, "%s/old.png", g_dir);
    static const char old[] = "the old file";
    tu_spit(path, old, sizeof old);
    int w = 64, h = 64;
    uint8_t *p = pattern(w, h, 3);
    uint8_t *enc;
    size_t n;
    assert_int_equal(sarco_png_encode(g_ctx, p, w, h, 3, NULL, &enc, &n), SARCO_OK);
    free(enc);
    const int64_t cuts[4] = {0, 1, (int64_t)n / 2, (int64_t)n - 1};
    for (int k = 0; k < 6; k++) {
        sarco_write_fault f = {-1, 0, 0};
        if (k < 4) f.fail_after_bytes = cuts[k];
        else if (k == 4) f.fail_fsync = 1;
        else f.fail_rename = 1;
        assert_int_equal(sarco_png_write_ex(g_ctx, path, p, w, h, 3, NULL, &f), SARCO_ERR_IO);
        assert_non_null(strstr(sarco_last_error(g_ctx), "old.png"));
        assert_int_equal(count_entries(g_dir), 1);
        size_t sz;
        uint8_t *b = tu_slurp(path, &sz);
        assert_int_equal(sz, sizeof old);
        assert_memory_equal(b, old, sizeof old);
        free(b);
    }
    assert_int_equal(sarco_png_write_ex(g_ctx, path, p, w, h, 3, NULL, NULL), SARCO_OK);
    uint8_t *back = decode(path, w, h, 3);
    assert_memory_equal(back, p, (size_t)w * h * 3);
    assert_int_equal(count_entries(g_dir), 1);
    free(back);
    free(p);
}

static void test_grey8_labels(void **state) {
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/lab8.png", g_dir);
    uint16_t v[35];
    for (int i = 0; i < 35; i++) v[i] = (uint16_t)((i * 37) % 256);
    assert_int_equal(sarco_png_write_grey8(g_ctx, path, 7, 5, v), SARCO_OK);
    uint16_t *back;
    sarco_image *g;
    assert_int_equal(sarco_labels_read(g_ctx, path, &back, &g), SARCO_OK);
    assert_int_equal(g->dims[0], 7);
    assert_int_equal(g->dims[1], 5);
    assert_memory_equal(back, v, sizeof v);
    sarco_labels_free(back);
    sarco_image_free(g);
    v[3] = 256;
    snprintf(path, sizeof path, "%s/lab9.png", g_dir);
    assert_int_equal(sarco_png_write_grey8(g_ctx, path, 7, 5, v), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(g_ctx), "value 256 at pixel 3 does not fit 8 bits"));
    assert_int_equal(sarco_png_write_grey8(g_ctx, path, 0, 5, v), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(access(path, F_OK), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_channel_count),
        cmocka_unit_test(test_grey_through_image_read_with_phys),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_faults_leave_old_file),
        cmocka_unit_test(test_grey8_labels),
    };
    return cmocka_run_group_tests_name("png_write", tests, setup, teardown);
}
