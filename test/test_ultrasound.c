/* Ultrasound measures (sarco_measure_ultrasound) against analytic shapes on anisotropic pixels
 * (rows 0.12 mm, columns 0.08 mm). Pixel (r, c) has its centre at y = (r + 0.5) dy, x = (c + 0.5) dx
 * and belongs to a shape when its centre does. Discretisation bounds, derived in docs/measure.md:
 *   - a column's extent counts the pixel centres inside a vertical chord of length L: floor or ceil of
 *     L / dy of them, so it is within dy of L;
 *   - CSA: the columns' errors add up to at most (columns) x dx x dy, plus the chord's change across
 *     the end columns (midpoint rule), at most 2 x (max chord) x dx;
 *   - the inscribed diameter 2 max EDT: the EDT at a pixel centre lies between its distance to the
 *     boundary d and d + diag / 2 (diag = the pixel diagonal), and some centre lies within diag / 2 of
 *     the deepest point, so 2 max EDT is within diag of the true diameter. */
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

#define DY 0.12 /* row (depth) spacing, mm */
#define DX 0.08 /* column spacing, mm */
#define H 300
#define W 500

static const int64_t DIMS[2] = {H, W};
static const double SP[2] = {DY, DX};

static sarco_us_measure measure1(const uint16_t *lab, const float *img, int label) {
    sarco_us_measure *m;
    size_t n;
    int32_t which = label;
    if (sarco_measure_ultrasound(NULL, DIMS, SP, lab, img, &which, 1, &m, &n) != SARCO_OK) fail_msg("measure failed");
    assert_int_equal(n, 1);
    sarco_us_measure r = m[0];
    sarco_us_measures_free(m);
    return r;
}

static void test_ellipse(void **state) {
    (void)state;
    const double a = 15.0, b = 6.0, x0 = 20.3, y0 = 17.13; /* semi-axes: a across, b in depth */
    uint16_t *lab = calloc(H * W, sizeof *lab);
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            double x = (c + 0.5) * DX - x0, y = (r + 0.5) * DY - y0;
            if ((x / a) * (x / a) + (y / b) * (y / b) <= 1.0) lab[r * W + c] = 3;
        }
    sarco_us_measure m = measure1(lab, NULL, 3);
    const double area = M_PI * a * b, diag = sqrt(DX * DX + DY * DY);
    const double area_bound = (2 * a / DX + 2) * DX * DY + 2 * (2 * b) * DX;
    /* MT: the median chord over the central third |x| <= a/3 is the chord at |x| = a/6 */
    const double mt = 2 * b * sqrt(1 - 1.0 / 36), slope = 2 * b * (1.0 / 6) / (a * sqrt(35.0 / 36));
    const double mt_bound = DY + slope * 2 * DX;
    const double max_bound = DY + 2 * b * (1 - sqrt(1 - (DX / (2 * a)) * (DX / (2 * a))));
    print_message("ellipse: CSA %.3f mm2 (true %.3f, error %+.3f, bound %.3f); MT %.4f mm (true %.4f, bound %.3f); "
                  "max %.4f (true %.1f); inscribed %.4f (true %.1f, bound %.3f)\n",
                  m.csa_mm2, area, m.csa_mm2 - area, area_bound, m.mt_mm, mt, mt_bound, m.mt_max_mm, 2 * b,
                  m.inscribed_diameter_mm, 2 * b, diag);
    assert_true(fabs(m.csa_mm2 - area) <= area_bound);
    assert_true(fabs(m.csa_cm2 - m.csa_mm2 / 100) < 1e-12);
    assert_true(fabs(m.mt_mm - mt) <= mt_bound);
    assert_true(fabs(m.mt_max_mm - 2 * b) <= max_bound);
    assert_true(fabs(m.inscribed_diameter_mm - 2 * b) <= diag);
    assert_int_equal(m.components, 1);
    assert_true(m.largest_component_share == 1.0);
    assert_int_equal(m.flags, 0);
    /* bounding box: the extreme pixel centres inside x0 +- a, y0 +- b */
    assert_int_equal(m.col_min, (int64_t)ceil((x0 - a) / DX - 0.5));
    assert_int_equal(m.col_max, (int64_t)floor((x0 + a) / DX - 0.5));
    assert_int_equal(m.row_min, (int64_t)ceil((y0 - b) / DY - 0.5));
    assert_int_equal(m.row_max, (int64_t)floor((y0 + b) / DY - 0.5));
    assert_true(fabs(m.width_mm - (m.col_max - m.col_min + 1) * DX) < 1e-12);
    /* the central third: about a third of the ~375 columns */
    assert_true(m.mt_columns >= 123 && m.mt_columns <= 127);
    free(lab);
}

/* A band between y = top(x) and top(x) + T (a vertical shift): every column's extent is T, the area is
 * T x its width exactly, whatever the curve. */
static void test_curved_band(void **state) {
    (void)state;
    const double T = 4.5, A = 3.0, lambda = 25.0, ytop = 9.0;
    const int c0 = 40, c1 = 459; /* whole columns: the band spans [c0 dx, (c1 + 1) dx) */
    uint16_t *lab = calloc(H * W, sizeof *lab);
    for (int c = c0; c <= c1; c++) {
        double x = (c + 0.5) * DX, top = ytop + A * sin(2 * M_PI * x / lambda);
        for (int r = 0; r < H; r++) {
            double y = (r + 0.5) * DY;
            if (y >= top && y < top + T) lab[r * W + c] = 1;
        }
    }
    sarco_us_measure m = measure1(lab, NULL, 1);
    const double width = (c1 - c0 + 1) * DX, area = T * width;
    const double area_bound = (c1 - c0 + 1) * DX * DY; /* the chord is exact: no midpoint-rule term */
    const double maxslope = A * 2 * M_PI / lambda, perp = T / sqrt(1 + maxslope * maxslope);
    const double diag = sqrt(DX * DX + DY * DY);
    print_message("band: CSA %.3f mm2 (true %.3f, error %+.3f, bound %.3f); MT %.4f (true %.2f, bound %.2f); max %.4f; "
                  "inscribed %.3f (between %.3f and %.3f)\n", m.csa_mm2, area, m.csa_mm2 - area, area_bound, m.mt_mm,
                  T, DY, m.mt_max_mm, m.inscribed_diameter_mm, perp - diag, T + diag);
    assert_true(fabs(m.csa_mm2 - area) <= area_bound);
    assert_true(fabs(m.mt_mm - T) < DY);
    assert_true(m.mt_max_mm < T + DY);
    assert_true(m.inscribed_diameter_mm <= T + diag && m.inscribed_diameter_mm >= perp - diag);
    assert_true(fabs(m.width_mm - width) < 1e-9);
    assert_int_equal(m.col_min, c0);
    assert_int_equal(m.col_max, c1);
    assert_int_equal(m.components, 1);
    free(lab);
}

/* Echo intensity: a constant image gives its value and SD 0; a gradient I = g_r r + g_c c over a
 * rectangle of nr x nc pixels gives the mean at the centre and variance g_r^2 (nr^2 - 1)/12 +
 * g_c^2 (nc^2 - 1)/12 (two independent discrete uniforms). */
static void test_echo(void **state) {
    (void)state;
    uint16_t *lab = calloc(H * W, sizeof *lab);
    float *img = malloc(H * W * sizeof *img);
    const int r0 = 50, r1 = 129, c0 = 100, c1 = 339; /* 80 x 240 */
    for (int r = r0; r <= r1; r++)
        for (int c = c0; c <= c1; c++) lab[r * W + c] = 2;
    for (int i = 0; i < H * W; i++) img[i] = 87.25f;
    sarco_us_measure m = measure1(lab, img, 2);
    assert_true(m.flags & SARCO_US_HAS_IMAGE);
    assert_int_equal(m.finite_pixels, 80 * 240);
    assert_true(m.echo_mean == 87.25 && m.echo_sd == 0.0);
    const double gr = 0.5, gc = 0.25;
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) img[r * W + c] = (float)(gr * r + gc * c);
    m = measure1(lab, img, 2);
    const double nr = r1 - r0 + 1, nc = c1 - c0 + 1;
    const double mean = gr * (r0 + r1) / 2 + gc * (c0 + c1) / 2;
    const double sd = sqrt(gr * gr * (nr * nr - 1) / 12 + gc * gc * (nc * nc - 1) / 12);
    print_message("gradient: echo mean %.9g (true %.9g), SD %.9g (true %.9g)\n", m.echo_mean, mean, m.echo_sd, sd);
    assert_true(fabs(m.echo_mean - mean) < 1e-9 * mean);
    assert_true(fabs(m.echo_sd - sd) < 1e-9 * sd);
    /* the rectangle: MT = its height exactly, inscribed diameter 2 x the EDT to the outside pixel centres */
    assert_true(fabs(m.mt_mm - nr * DY) < 1e-12 && fabs(m.mt_max_mm - nr * DY) < 1e-12);
    assert_true(fabs(m.inscribed_diameter_mm - 2 * 40 * DY) < 1e-5); /* 40 rows to the nearest outside centre */
    /* NaN pixels are left out and counted */
    img[r0 * W + c0] = NAN;
    m = measure1(lab, img, 2);
    assert_int_equal(m.finite_pixels, 80 * 240 - 1);
    assert_true(isfinite(m.echo_mean));
    free(lab);
    free(img);
}

/* 8-connectivity: pieces touching at a corner are one component; separate ones are counted. */
static void test_fragments(void **state) {
    (void)state;
    uint16_t *lab = calloc(H * W, sizeof *lab);
    for (int r = 10; r < 20; r++)
        for (int c = 10; c < 20; c++) lab[r * W + c] = 1; /* 100 */
    for (int r = 20; r < 25; r++)
        for (int c = 20; c < 30; c++) lab[r * W + c] = 1; /* 50, touching the first at a corner */
    for (int r = 100; r < 102; r++)
        for (int c = 200; c < 205; c++) lab[r * W + c] = 1; /* 10, apart */
    lab[200 * W + 400] = 1;                                 /* 1, apart */
    sarco_us_measure m = measure1(lab, NULL, 1);
    assert_int_equal(m.pixels, 161);
    assert_int_equal(m.components, 3);
    assert_true(fabs(m.largest_component_share - 150.0 / 161) < 1e-12);
    assert_true(m.flags & SARCO_US_FRAGMENTED);
    assert_int_equal(m.row_min, 10);
    assert_int_equal(m.row_max, 200);
    assert_int_equal(m.col_max, 400);
    /* a label on the image border is flagged */
    lab[0] = 5;
    m = measure1(lab, NULL, 5);
    assert_true(m.flags & SARCO_US_TOUCHES_EDGE);
    assert_true(fabs(m.inscribed_diameter_mm - 2 * DX) < 1e-6); /* outside the image counts as outside */
    assert_true(fabs(m.mt_mm - DY) < 1e-12);
    /* every label present, ascending; an absent one asked for is flagged empty */
    sarco_us_measure *all;
    size_t n;
    assert_int_equal(sarco_measure_ultrasound(NULL, DIMS, SP, lab, NULL, NULL, 0, &all, &n), SARCO_OK);
    assert_int_equal(n, 2);
    assert_int_equal(all[0].label, 1);
    assert_int_equal(all[1].label, 5);
    sarco_us_measures_free(all);
    int32_t which[2] = {7, 1};
    assert_int_equal(sarco_measure_ultrasound(NULL, DIMS, SP, lab, NULL, which, 2, &all, &n), SARCO_OK);
    assert_int_equal(n, 2);
    assert_true(all[0].flags & SARCO_US_EMPTY);
    assert_int_equal(all[0].pixels, 0);
    assert_true(all[0].csa_mm2 == 0 && all[0].mt_mm == 0);
    assert_int_equal(all[1].pixels, 161);
    sarco_us_measures_free(all);
    free(lab);
}

/* No spacing, no measure: never 1 mm by default. */
static void test_refusals(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    uint16_t lab[6] = {0, 1, 1, 0, 1, 0};
    const int64_t d[2] = {2, 3};
    sarco_us_measure *m = (sarco_us_measure *)1;
    size_t n = 7;
    assert_int_equal(sarco_measure_ultrasound(ctx, d, NULL, lab, NULL, NULL, 0, &m, &n), SARCO_ERR_INVALID_ARGUMENT);
    assert_null(m);
    assert_int_equal(n, 0);
    assert_non_null(strstr(sarco_last_error(ctx), "--pixel-spacing-mm"));
    assert_non_null(strstr(sarco_last_error(ctx), "never assumed"));
    const double zero[2] = {0.0, 0.1}, nan_[2] = {NAN, 0.1};
    assert_int_equal(sarco_measure_ultrasound(ctx, d, zero, lab, NULL, NULL, 0, &m, &n), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_measure_ultrasound(ctx, d, nan_, lab, NULL, NULL, 0, &m, &n), SARCO_ERR_INVALID_ARGUMENT);
    const int64_t bad[2] = {0, 3};
    assert_int_equal(sarco_measure_ultrasound(ctx, bad, SP, lab, NULL, NULL, 0, &m, &n), SARCO_ERR_INVALID_ARGUMENT);
    int32_t w = 70000;
    assert_int_equal(sarco_measure_ultrasound(ctx, d, SP, lab, NULL, &w, 1, &m, &n), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_measure_ultrasound(ctx, d, SP, NULL, NULL, NULL, 0, &m, &n), SARCO_ERR_INVALID_ARGUMENT);
    /* an empty label map: nothing to report */
    uint16_t zeros[6] = {0};
    assert_int_equal(sarco_measure_ultrasound(ctx, d, SP, zeros, NULL, NULL, 0, &m, &n), SARCO_OK);
    assert_int_equal(n, 0);
    sarco_us_measures_free(m);
    /* a memory limit too small for the crops is a clean failure */
    sarco_context *tiny = tu_new_ctx(64);
    uint16_t *big = calloc(H * W, sizeof *big);
    for (int i = 0; i < H * W; i++) big[i] = 1;
    assert_int_equal(sarco_measure_ultrasound(tiny, DIMS, SP, big, NULL, NULL, 0, &m, &n), SARCO_ERR_OUT_OF_MEMORY);
    assert_null(m);
    free(big);
    sarco_context_free(tiny);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ellipse), cmocka_unit_test(test_curved_band), cmocka_unit_test(test_echo),
        cmocka_unit_test(test_fragments), cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
