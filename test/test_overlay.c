/* Overlays: pixel checks on known inputs. A square label at a known place: its border pixels have the
 * label's colour exactly, its inside the documented blend (g (255 - A) + c A + 127) / 255 with
 * A = round(255 alpha), outside untouched grey; outline mode leaves the inside grey; the windows
 * (CT W400/L40, 0..255, explicit); the legend's swatch and text; the 3D mosaic's geometry (panel
 * places, slice choice, crop, radiological flips, coronal view and its aspect ratio); bad input. */
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
#include "lib/report/report.h"
#include "testutil.h"

static char g_dir[128];
static sarco_context *g_ctx;

static int setup(void **state) {
    (void)state;
    return tu_dir_and_ctx("overlay", g_dir, sizeof g_dir, &g_ctx);
}

static int teardown(void **state) {
    (void)state;
    tu_dir_and_ctx_free(g_dir, g_ctx);
    return 0;
}

static const uint8_t *px(const uint8_t *rgb, int64_t w, int x, int y) { return rgb + 3 * ((size_t)y * w + x); }

static void assert_px(const uint8_t *rgb, int64_t w, int x, int y, int r, int g, int b) {
    const uint8_t *p = px(rgb, w, x, y);
    if (p[0] != r || p[1] != g || p[2] != b)
        fail_msg("pixel (%d, %d) is (%d, %d, %d), expected (%d, %d, %d)", x, y, p[0], p[1], p[2], r, g, b);
}

static void assert_color(const uint8_t *rgb, int64_t w, int x, int y, int label) {
    uint8_t c[3];
    sarco_overlay_color(label, c);
    assert_px(rgb, w, x, y, c[0], c[1], c[2]);
}

static int blend(int g, int c, double alpha) {
    int A = (int)lround(alpha * 255);
    return (g * (255 - A) + c * A + 127) / 255;
}

/* A 40 x 30 2D image of constant value v, label 3 on x 10..19, y 5..14. */
static sarco_image *square_image(float v, uint16_t **labels) {
    const int64_t dims[3] = {40, 30, 1};
    const double sp[2] = {1, 1};
    sarco_image *img;
    assert_int_equal(sarco_image_create(g_ctx, 2, dims, sp, &img), SARCO_OK);
    *labels = calloc(40 * 30, sizeof **labels);
    for (int i = 0; i < 40 * 30; i++) img->data[i] = v;
    for (int y = 5; y <= 14; y++)
        for (int x = 10; x <= 19; x++) (*labels)[x + 40 * y] = 3;
    return img;
}

static void test_square_fill_and_outline(void **state) {
    (void)state;
    uint16_t *lab;
    sarco_image *img = square_image(100.0f, &lab);
    sarco_overlay_options o;
    sarco_overlay_options_init(&o);
    o.pixel_mm = 1.0;
    uint8_t *rgb;
    int64_t w, h;
    sarco_overlay_layout lay;
    assert_int_equal(sarco_overlay_render_ex(g_ctx, img, lab, &o, &rgb, &w, &h, &lay), SARCO_OK);
    /* values in 0..255: the 8-bit window, so grey = the value */
    assert_true(lay.window_lo == 0 && lay.window_width == 255);
    assert_int_equal(lay.npanels, 1);
    assert_int_equal(lay.panels[0].w, 40);
    assert_int_equal(lay.panels[0].h, 30);
    uint8_t c[3];
    sarco_overlay_color(3, c);
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 40; x++) {
            int in = x >= 10 && x <= 19 && y >= 5 && y <= 14;
            int edge = in && (x == 10 || x == 19 || y == 5 || y == 14);
            if (!in) assert_px(rgb, w, x, y, 100, 100, 100);
            else if (edge) assert_color(rgb, w, x, y, 3);
            else assert_px(rgb, w, x, y, blend(100, c[0], 0.4), blend(100, c[1], 0.4), blend(100, c[2], 0.4));
        }
    /* the legend: one entry, its swatch in the label's colour, white text after it */
    assert_int_equal(lay.nlegend, 1);
    assert_int_equal(lay.legend_y, 30);
    assert_true(lay.legend_h > 0 && h == 30 + lay.legend_h);
    int s = lay.text_scale, m = 6 * s;
    for (int dy = 0; dy < 7 * s; dy++)
        for (int dx = 0; dx < 7 * s; dx++) assert_color(rgb, w, m + dx, 30 + m + dy, 3);
    int white = 0;
    for (int y = 30; y < h; y++)
        for (int x = m + 7 * s; x < w; x++) white += px(rgb, w, x, y)[0] == 255 && px(rgb, w, x, y)[2] == 255;
    assert_true(white > 20);
    sarco_overlay_free(rgb);

    /* outline only: the inside stays grey */
    o.style = SARCO_OVERLAY_OUTLINE;
    assert_int_equal(sarco_overlay_render(g_ctx, img, lab, &o, &rgb, &w, &h), SARCO_OK);
    assert_color(rgb, w, 10, 5, 3);
    assert_color(rgb, w, 19, 14, 3);
    assert_color(rgb, w, 15, 14, 3);
    assert_px(rgb, w, 15, 10, 100, 100, 100);
    assert_px(rgb, w, 11, 6, 100, 100, 100);
    assert_px(rgb, w, 9, 10, 100, 100, 100);
    sarco_overlay_free(rgb);

    /* no legend: the picture alone */
    o.legend = 0;
    assert_int_equal(sarco_overlay_render(g_ctx, img, lab, &o, &rgb, &w, &h), SARCO_OK);
    assert_int_equal(w, 40);
    assert_int_equal(h, 30);
    sarco_overlay_free(rgb);
    free(lab);
    sarco_image_free(img);
}

static void test_windows(void **state) {
    (void)state;
    uint16_t *lab;
    sarco_image *img = square_image(40.0f, &lab);
    img->data[0] = -1000.0f; /* air: a CT, so the soft-tissue window */
    img->data[1] = 240.0f;   /* level + width / 2: white */
    img->data[2] = NAN;      /* black */
    img->data[3] = -60.0f;   /* 255 * 100 / 400 = 63.75 -> 64 */
    sarco_overlay_options o;
    sarco_overlay_options_init(&o);
    o.pixel_mm = 1.0;
    o.legend = 0;
    uint8_t *rgb;
    int64_t w, h;
    assert_int_equal(sarco_overlay_render(g_ctx, img, NULL, &o, &rgb, &w, &h), SARCO_OK);
    assert_px(rgb, w, 0, 0, 0, 0, 0);
    assert_px(rgb, w, 1, 0, 255, 255, 255);
    assert_px(rgb, w, 2, 0, 0, 0, 0);
    assert_px(rgb, w, 3, 0, 64, 64, 64);
    assert_px(rgb, w, 5, 5, 128, 128, 128); /* 40 HU: 127.5 -> 128 */
    sarco_overlay_free(rgb);
    o.window_width = 100; /* explicit: -10..90 */
    o.window_level = 40;
    assert_int_equal(sarco_overlay_render(g_ctx, img, NULL, &o, &rgb, &w, &h), SARCO_OK);
    assert_px(rgb, w, 5, 5, 128, 128, 128);
    assert_px(rgb, w, 3, 0, 0, 0, 0);
    assert_px(rgb, w, 1, 0, 255, 255, 255);
    sarco_overlay_free(rgb);
    free(lab);
    sarco_image_free(img);
}

/* 20 x 16 x 30 voxels of 1 x 1 x 2 mm, value 40 (inside 0..255: the 8-bit window, grey 40); label 1 on x 5..14, y 4..11, z 5..24, label 2 on its
 * (x 5..6, y 4..5) corner. */
static void test_mosaic_geometry(void **state) {
    (void)state;
    const int64_t dims[3] = {20, 16, 30};
    const double sp[3] = {1, 1, 2};
    sarco_image *img;
    assert_int_equal(sarco_image_create(g_ctx, 3, dims, sp, &img), SARCO_OK);
    uint16_t *lab = calloc(20 * 16 * 30, sizeof *lab);
    for (int i = 0; i < 20 * 16 * 30; i++) img->data[i] = 40.0f;
    for (int z = 5; z <= 24; z++)
        for (int y = 4; y <= 11; y++)
            for (int x = 5; x <= 14; x++) lab[x + 20 * (y + 16 * z)] = (x <= 6 && y <= 5) ? 2 : 1;
    sarco_overlay_options o;
    sarco_overlay_options_init(&o);
    o.pixel_mm = 1.0;
    uint8_t *rgb;
    int64_t w, h;
    sarco_overlay_layout lay;
    assert_int_equal(sarco_overlay_render_ex(g_ctx, img, lab, &o, &rgb, &w, &h, &lay), SARCO_OK);
    /* 8 axial panels through z 5..24: z = 5 + floor((k + 0.5) * 20 / 8) */
    static const int zs[8] = {6, 8, 11, 13, 16, 18, 21, 23};
    assert_int_equal(lay.npanels, 9);
    /* the crop: the label box grown by 10 % + 4 voxels, clamped: x 0..19 (20), y 0..15 (16) */
    for (int k = 0; k < 8; k++) {
        assert_int_equal(lay.panels[k].view, SARCO_VIEW_AXIAL);
        assert_int_equal(lay.panels[k].slice, zs[k]);
        assert_int_equal(lay.panels[k].x, (k % 4) * (20 + 4));
        assert_int_equal(lay.panels[k].y, (k / 4) * (16 + 4 + 12) + 12); /* a 12-pixel caption above each */
        assert_int_equal(lay.panels[k].w, 20);
        assert_int_equal(lay.panels[k].h, 16);
    }
    const sarco_overlay_panel *cp = &lay.panels[8];
    assert_int_equal(cp->view, SARCO_VIEW_CORONAL);
    assert_int_equal(cp->x, 4 * 20 + 3 * 4 + 4);
    assert_int_equal(cp->y, 12);
    assert_int_equal(cp->w, 20);
    assert_int_equal(cp->h, 60); /* 30 slices of 2 mm on 1 mm pixels: the aspect ratio kept */
    assert_int_equal(cp->slice, 8); /* the labels' centroid row, y = 7.5 rounded */
    assert_int_equal(w, cp->x + cp->w);
    assert_int_equal(h, 12 + 60 + lay.legend_h);
    assert_int_equal(lay.nlegend, 2);
    /* radiological: the affine's diagonal is positive, so x, y and z are flipped for display */
    assert_true(lay.flip[0] && lay.flip[1] && lay.flip[2]);
    for (int k = 0; k < 8; k++) {
        const sarco_overlay_panel *p = &lay.panels[k];
        /* label 2 at x 5..6, y 4..5 -> columns 13..14, rows 10..11 */
        for (int r = 10; r <= 11; r++)
            for (int q = 13; q <= 14; q++) assert_color(rgb, w, p->x + q, p->y + r, 2);
        /* label 1's far corner x 14, y 11 -> column 5, row 4; outside it column 4 is grey */
        assert_color(rgb, w, p->x + 5, p->y + 4, 1);
        assert_px(rgb, w, p->x + 4, p->y + 8, 40, 40, 40);
        /* the caption "z N" in white above the panel */
        int white = 0;
        for (int y = p->y - 12; y < p->y; y++)
            for (int x = p->x; x < p->x + 20; x++) white += px(rgb, w, x, y)[0] == 255;
        assert_true(white > 10);
    }
    /* coronal at y 8: z 24..5 on rows (29 - z) * 2 -> rows 10..49, columns 5..14 */
    assert_color(rgb, w, cp->x + 5, cp->y + 10, 1);
    assert_color(rgb, w, cp->x + 14, cp->y + 49, 1);
    assert_px(rgb, w, cp->x + 8, cp->y + 9, 40, 40, 40);
    assert_px(rgb, w, cp->x + 8, cp->y + 50, 40, 40, 40);
    sarco_overlay_free(rgb);

    /* as stored: no flips; label 2 at columns 5..6, rows 4..5 */
    o.orientation = SARCO_OVERLAY_AS_STORED;
    o.axial_slices = 3;
    assert_int_equal(sarco_overlay_render_ex(g_ctx, img, lab, &o, &rgb, &w, &h, &lay), SARCO_OK);
    assert_int_equal(lay.npanels, 4);
    assert_int_equal(lay.panels[3].x, 3 * 20 + 2 * 4 + 4);
    assert_false(lay.flip[0] || lay.flip[1] || lay.flip[2]);
    assert_color(rgb, w, lay.panels[1].x + 5, lay.panels[1].y + 4, 2);
    assert_color(rgb, w, lay.panels[1].x + 14, lay.panels[1].y + 11, 1);
    sarco_overlay_free(rgb);

    /* written as PNG: the same pixels, with pHYs of the pixel size */
    char path[256];
    snprintf(path, sizeof path, "%s/mosaic.png", g_dir);
    assert_int_equal(sarco_overlay_write(g_ctx, img, lab, &o, path), SARCO_OK);
    assert_int_equal(sarco_overlay_render(g_ctx, img, lab, &o, &rgb, &w, &h), SARCO_OK);
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    assert_true(png_image_begin_read_from_file(&pi, path));
    assert_int_equal(pi.width, w);
    assert_int_equal(pi.height, h);
    pi.format = PNG_FORMAT_RGB;
    uint8_t *back = malloc(PNG_IMAGE_SIZE(pi));
    assert_true(png_image_finish_read(&pi, NULL, back, 0, NULL));
    assert_memory_equal(back, rgb, (size_t)w * h * 3);
    free(back);
    sarco_overlay_free(rgb);
    sarco_image *rd;
    assert_int_equal(sarco_image_read(g_ctx, path, &rd), SARCO_OK);
    assert_true(fabs(rd->spacing[0] - 1.0) < 1e-12 && fabs(rd->spacing[1] - 1.0) < 1e-12);
    sarco_image_free(rd);
    free(lab);
    sarco_image_free(img);
}

static void test_aspect_ratio_2d(void **state) {
    (void)state;
    /* 2D pixels of 0.5 x 1.5 mm on 0.5 mm output pixels: each row shows three times */
    const int64_t dims[3] = {8, 4, 1};
    const double sp[2] = {0.5, 1.5};
    sarco_image *img;
    assert_int_equal(sarco_image_create(g_ctx, 2, dims, sp, &img), SARCO_OK);
    for (int i = 0; i < 32; i++) img->data[i] = (float)(10 * (i / 8)); /* row y has value 10 y */
    sarco_overlay_options o;
    sarco_overlay_options_init(&o);
    o.pixel_mm = 0.5;
    uint8_t *rgb;
    int64_t w, h;
    assert_int_equal(sarco_overlay_render(g_ctx, img, NULL, &o, &rgb, &w, &h), SARCO_OK);
    assert_int_equal(w, 8);
    assert_int_equal(h, 12);
    for (int r = 0; r < 12; r++) assert_px(rgb, w, 3, r, 10 * (r / 3), 10 * (r / 3), 10 * (r / 3));
    sarco_overlay_free(rgb);
    /* auto size of a small image: an integer zoom to about 384 pixels on the long side */
    o.pixel_mm = 0;
    sarco_overlay_layout lay;
    assert_int_equal(sarco_overlay_render_ex(g_ctx, img, NULL, &o, &rgb, &w, &h, &lay), SARCO_OK);
    assert_true(fabs(lay.pixel_mm - 0.5 / 32) < 1e-12); /* native 8 x 12 (0.5 mm) -> zoom floor(384 / 12) = 32 */
    assert_int_equal(w, 8 * 32);
    assert_int_equal(h, 12 * 32);
    sarco_overlay_free(rgb);
    sarco_image_free(img);
}

static void test_bad_input(void **state) {
    (void)state;
    uint16_t *lab;
    sarco_image *img = square_image(100.0f, &lab);
    sarco_overlay_options o;
    uint8_t *rgb = (uint8_t *)1;
    int64_t w = 7, h = 7;
    assert_int_equal(sarco_overlay_render(g_ctx, NULL, lab, NULL, &rgb, &w, &h), SARCO_ERR_INVALID_ARGUMENT);
    assert_null(rgb);
    assert_int_equal(w, 0);
    sarco_overlay_options_init(&o);
    o.alpha = 1.5;
    assert_int_equal(sarco_overlay_render(g_ctx, img, lab, &o, &rgb, &w, &h), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(g_ctx), "alpha"));
    sarco_overlay_options_init(&o);
    o.axial_slices = 0;
    assert_int_equal(sarco_overlay_render(g_ctx, img, lab, &o, &rgb, &w, &h), SARCO_ERR_INVALID_ARGUMENT);
    sarco_overlay_options_init(&o);
    o.struct_size = 0;
    assert_int_equal(sarco_overlay_render(g_ctx, img, lab, &o, &rgb, &w, &h), SARCO_ERR_INVALID_ARGUMENT);
    sarco_overlay_options_init(&o);
    o.pixel_mm = 1e-4; /* a 400000-pixel canvas */
    assert_int_equal(sarco_overlay_render(g_ctx, img, lab, &o, &rgb, &w, &h), SARCO_ERR_LIMIT);
    o.pixel_mm = 1e-300; /* past every int: still a clean LIMIT */
    assert_int_equal(sarco_overlay_render(g_ctx, img, lab, &o, &rgb, &w, &h), SARCO_ERR_LIMIT);
    assert_non_null(strstr(sarco_last_error(g_ctx), "cap"));
    sarco_overlay_options_init(&o);
    img->spacing[0] = NAN;
    assert_int_equal(sarco_overlay_render(g_ctx, img, lab, &o, &rgb, &w, &h), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(g_ctx), "spacing"));
    img->spacing[0] = 1;
    char path[256];
    snprintf(path, sizeof path, "%s/nodir/x.png", g_dir);
    assert_int_equal(sarco_overlay_write(g_ctx, img, lab, NULL, path), SARCO_ERR_IO);
    free(lab);
    sarco_image_free(img);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_square_fill_and_outline), cmocka_unit_test(test_windows),
        cmocka_unit_test(test_mosaic_geometry),         cmocka_unit_test(test_aspect_ratio_2d),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests_name("overlay", tests, setup, teardown);
}
