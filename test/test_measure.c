/* Volume integration, segmentation metrics and cohort statistics (lib/measure/):
 *   - analytic cases: boxes and balls at anisotropic spacing (volumes, areas), a one-voxel shift,
 *     concentric boxes and balls, empty masks on either side, masks touching the border, 2D and 3D;
 *   - brute-force surface distances (every surface voxel against every other) on random shapes;
 *   - agreement with scipy and MONAI on seeded random blobs (test/gen_measure_reference.py);
 *   - HU statistics against direct two-pass sums; thread-count independence; argument checks;
 *   - Pearson, ICC (Shrout & Fleiss 1979's worked example), AUC against pair counting, binary metrics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/measure/measure.h"
#include "measure_testutil.h"

static int close_rel(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(1.0, fabs(b)); }

#define ASSERT_CLOSE(a, b, tol)                                                                              \
    do {                                                                                                     \
        double a_ = (a), b_ = (b);                                                                           \
        if (!close_rel(a_, b_, tol)) fail_msg("%s = %.10g, expected %s = %.10g (tol %g)", #a, a_, #b, b_, tol); \
    } while (0)

static void assert_no_nan(const sarco_seg_metrics *m) {
    const double v[] = {m->dice, m->jaccard, m->hd_mm, m->hd95_mm, m->assd_mm, m->ravd_percent,
                        m->volume_pred_ml, m->volume_ref_ml, m->area_pred_cm2, m->area_ref_cm2};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        if (!isfinite(v[i])) fail_msg("label %d: field %zu is %g", m->label, i, v[i]);
}

/* Evaluates one label; returns the metrics by value. */
static sarco_seg_metrics eval_one(sarco_context *ctx, int nd, const int64_t *dims, const double *sp, const uint16_t *p,
                                  const uint16_t *g, int32_t label) {
    sarco_seg_metrics *r = NULL;
    size_t n = 0;
    sarco_status s = sarco_evaluate_labels(ctx, nd, dims, sp, p, g, &label, 1, &r, &n);
    if (s != SARCO_OK) fail_msg("evaluate: %s %s", sarco_status_string(s), ctx ? ctx->err : "");
    assert_int_equal(n, 1);
    sarco_seg_metrics m = r[0];
    sarco_seg_metrics_free(r);
    assert_int_equal(m.label, label);
    assert_no_nan(&m);
    return m;
}

/* 3D-promoted dims and spacing of an nd-array */
static void promote(int nd, const int64_t *dims, const double *sp, int64_t d3[3], double s3[3]) {
    d3[0] = d3[1] = 1;
    s3[0] = s3[1] = 1.0;
    for (int a = 0; a < nd; a++) {
        d3[3 - nd + a] = dims[a];
        s3[3 - nd + a] = sp[a];
    }
}

/* Checks HD, HD95, ASSD and the surface counts against the brute-force search. */
static void check_bruteforce(const sarco_seg_metrics *m, int nd, const int64_t *dims, const double *sp, const uint16_t *p,
                             const uint16_t *g) {
    int64_t d3[3];
    double s3[3];
    promote(nd, dims, sp, d3, s3);
    ref_surf_metrics b = ref_surface_metrics(p, g, (uint16_t)m->label, d3, nd, s3);
    assert_int_equal(m->surface_pred, b.sp);
    assert_int_equal(m->surface_ref, b.sg);
    ASSERT_CLOSE(m->hd_mm, b.hd, 1e-6);
    ASSERT_CLOSE(m->hd95_mm, b.hd95, 1e-6);
    ASSERT_CLOSE(m->assd_mm, b.assd, 1e-6);
}

/* Fills label v into the box [lo, lo + len) of a 3D-promoted array. */
static void fill_box(uint16_t *a, const int64_t d3[3], const int64_t lo[3], const int64_t len[3], uint16_t v) {
    for (int64_t z = lo[0]; z < lo[0] + len[0]; z++)
        for (int64_t y = lo[1]; y < lo[1] + len[1]; y++)
            for (int64_t x = lo[2]; x < lo[2] + len[2]; x++) a[(z * d3[1] + y) * d3[2] + x] = v;
}

/* Fills label v into the ellipsoid sum ((c - ctr) / r)^2 <= 1 (voxel units); returns the count. */
static int64_t fill_ellipsoid(uint16_t *a, const int64_t d3[3], const double ctr[3], const double r[3], uint16_t v) {
    int64_t n = 0;
    for (int64_t z = 0; z < d3[0]; z++)
        for (int64_t y = 0; y < d3[1]; y++)
            for (int64_t x = 0; x < d3[2]; x++) {
                double q = 0.0, c[3] = {(double)z, (double)y, (double)x};
                for (int k = 0; k < 3; k++) q += ((c[k] - ctr[k]) / r[k]) * ((c[k] - ctr[k]) / r[k]);
                if (q <= 1.0) {
                    a[(z * d3[1] + y) * d3[2] + x] = v;
                    n++;
                }
            }
    return n;
}

/* ---- volume integration ------------------------------------------------------------------- */

static void test_measure_boxes(void **state) {
    (void)state;
    int64_t dims[3] = {20, 30, 25}, n = 20 * 30 * 25;
    double sp[3] = {2.5, 0.7, 0.9}, cell = 2.5 * 0.7 * 0.9;
    uint16_t *lab = calloc((size_t)n, 2);
    int64_t lo1[3] = {3, 4, 5}, l1[3] = {5, 7, 9}, lo2[3] = {12, 20, 1}, l2[3] = {3, 4, 2};
    fill_box(lab, dims, lo1, l1, 2);
    fill_box(lab, dims, lo2, l2, 5);
    sarco_label_measure *m;
    size_t cnt;
    assert_int_equal(sarco_measure_labels(NULL, 3, dims, sp, lab, NULL, NULL, 0, &m, &cnt), SARCO_OK);
    assert_int_equal(cnt, 2);
    assert_int_equal(m[0].label, 2);
    assert_int_equal(m[1].label, 5);
    assert_int_equal(m[0].voxels, 5 * 7 * 9);
    assert_int_equal(m[1].voxels, 3 * 4 * 2);
    ASSERT_CLOSE(m[0].volume_ml, 5 * 7 * 9 * cell / 1000.0, 1e-12);
    ASSERT_CLOSE(m[1].volume_ml, 3 * 4 * 2 * cell / 1000.0, 1e-12);
    assert_true(m[0].area_cm2 == 0.0 && m[0].flags == 0 && m[0].mean == 0.0);
    sarco_label_measures_free(m);
    /* asked-for labels come back in the asked order, absent ones with zero counts, 0 = background */
    int32_t which[4] = {5, 7, 0, 2};
    assert_int_equal(sarco_measure_labels(NULL, 3, dims, sp, lab, NULL, which, 4, &m, &cnt), SARCO_OK);
    assert_int_equal(cnt, 4);
    assert_int_equal(m[0].label, 5);
    assert_int_equal(m[1].label, 7);
    assert_int_equal(m[1].voxels, 0);
    assert_true(m[1].volume_ml == 0.0);
    assert_int_equal(m[2].voxels, n - 5 * 7 * 9 - 3 * 4 * 2);
    assert_int_equal(m[3].voxels, 5 * 7 * 9);
    sarco_label_measures_free(m);
    free(lab);
}

static void test_measure_area_2d(void **state) {
    (void)state;
    int64_t dims[2] = {40, 50}, d3[3] = {1, 40, 50};
    double sp[2] = {0.35, 0.6};
    uint16_t *lab = calloc(2000, 2);
    int64_t lo[3] = {0, 10, 0}, len[3] = {1, 11, 50}; /* touches the border */
    fill_box(lab, d3, lo, len, 1);
    sarco_label_measure *m;
    size_t cnt;
    assert_int_equal(sarco_measure_labels(NULL, 2, dims, sp, lab, NULL, NULL, 0, &m, &cnt), SARCO_OK);
    assert_int_equal(cnt, 1);
    assert_int_equal(m[0].voxels, 550);
    ASSERT_CLOSE(m[0].area_cm2, 550 * 0.35 * 0.6 / 100.0, 1e-12);
    assert_true(m[0].volume_ml == 0.0);
    sarco_label_measures_free(m);
    free(lab);
}

/* A digital ball's volume approaches 4/3 pi r^3; its count must match an independent count. */
static void test_measure_ball(void **state) {
    (void)state;
    int64_t dims[3] = {40, 44, 48};
    double sp[3] = {1.2, 0.8, 0.8};
    uint16_t *lab = calloc(40 * 44 * 48, 2);
    /* an ellipsoid in voxels that is a ball of radius 15 mm in space */
    double ctr[3] = {19.3, 21.7, 23.2}, r[3] = {15.0 / 1.2, 15.0 / 0.8, 15.0 / 0.8};
    int64_t cnt_ref = fill_ellipsoid(lab, dims, ctr, r, 3);
    sarco_label_measure *m;
    size_t cnt;
    assert_int_equal(sarco_measure_labels(NULL, 3, dims, sp, lab, NULL, NULL, 0, &m, &cnt), SARCO_OK);
    assert_int_equal(cnt, 1);
    assert_int_equal(m[0].voxels, cnt_ref);
    double v = 4.0 / 3.0 * M_PI * 15.0 * 15.0 * 15.0 / 1000.0;
    print_message("ball of radius 15 mm: %.4f mL measured, %.4f mL analytic\n", m[0].volume_ml, v);
    assert_true(fabs(m[0].volume_ml - v) / v < 0.01);
    sarco_label_measures_free(m);
    free(lab);
}

/* HU statistics against direct two-pass sums, with window edges and NaN voxels. */
static void test_measure_hu(void **state) {
    (void)state;
    int64_t dims[3] = {13, 17, 19}, n = 13 * 17 * 19;
    double sp[3] = {1, 1, 1};
    uint16_t *lab = malloc((size_t)n * 2);
    float *img = malloc((size_t)n * 4);
    trng rg = {99};
    static const float edges[] = {-29.0f, 150.0f, -190.0f, -30.0f, -29.5f, 150.5f, -190.5f, -29.99f};
    for (int64_t i = 0; i < n; i++) {
        lab[i] = (uint16_t)trng_int(&rg, 4);
        double u = trng_uniform(&rg);
        img[i] = u < 0.03 ? NAN : u < 0.1 ? edges[trng_int(&rg, 8)] : (float)(trng_int(&rg, 1400) - 400) + (u < 0.5 ? 0.25f : 0.0f);
    }
    for (int pass = 0; pass < 2; pass++) {
        sarco_label_measure *m;
        size_t cnt;
        int32_t which[3] = {1, 2, 3};
        assert_int_equal(sarco_measure_labels(NULL, 3, dims, sp, lab, pass ? img : NULL, which, 3, &m, &cnt), SARCO_OK);
        for (int k = 0; k < 3; k++) {
            int64_t c = 0, fin = 0, mus = 0, imat = 0;
            double s = 0.0, mn = INFINITY, mx = -INFINITY;
            for (int64_t i = 0; i < n; i++) {
                if (lab[i] != which[k]) continue;
                c++;
                if (isnan(img[i])) continue;
                fin++;
                s += img[i];
                mn = fmin(mn, img[i]);
                mx = fmax(mx, img[i]);
                mus += img[i] >= -29.0f && img[i] <= 150.0f;
                imat += img[i] >= -190.0f && img[i] <= -30.0f;
            }
            double mean = s / (double)fin, ss = 0.0;
            for (int64_t i = 0; i < n; i++)
                if (lab[i] == which[k] && !isnan(img[i])) ss += (img[i] - mean) * (img[i] - mean);
            assert_int_equal(m[k].voxels, c);
            if (!pass) {
                assert_int_equal(m[k].flags, 0);
                assert_int_equal(m[k].finite_voxels, 0);
                continue;
            }
            assert_int_equal(m[k].flags, SARCO_MEASURE_HAS_IMAGE);
            assert_int_equal(m[k].finite_voxels, fin);
            ASSERT_CLOSE(m[k].mean, mean, 1e-12);
            ASSERT_CLOSE(m[k].sd, sqrt(ss / (double)fin), 1e-9);
            ASSERT_CLOSE(m[k].min, mn, 0);
            ASSERT_CLOSE(m[k].max, mx, 0);
            ASSERT_CLOSE(m[k].fraction_muscle, (double)mus / (double)fin, 1e-15);
            ASSERT_CLOSE(m[k].fraction_imat, (double)imat / (double)fin, 1e-15);
        }
        sarco_label_measures_free(m);
    }
    /* integer-valued images: identical results for any number of threads */
    for (int64_t i = 0; i < n; i++)
        if (isfinite(img[i])) img[i] = floorf(img[i]);
    sarco_label_measure *a, *b;
    size_t ca, cb;
    sarco_context c1 = {0}, c4 = {0};
    c1.opts.threads = 1;
    c4.opts.threads = 4;
    assert_int_equal(sarco_measure_labels(&c1, 3, dims, sp, lab, img, NULL, 0, &a, &ca), SARCO_OK);
    assert_int_equal(sarco_measure_labels(&c4, 3, dims, sp, lab, img, NULL, 0, &b, &cb), SARCO_OK);
    assert_int_equal(ca, cb);
    assert_memory_equal(a, b, ca * sizeof *a);
    sarco_label_measures_free(a);
    sarco_label_measures_free(b);
    free(lab);
    free(img);
}

static void test_measure_bad_args(void **state) {
    (void)state;
    sarco_context c = {0};
    int64_t dims[3] = {2, 3, 4};
    double sp[3] = {1, 1, 1};
    uint16_t lab[24] = {0};
    sarco_label_measure *m = (sarco_label_measure *)&c; /* must be reset to NULL on failure */
    size_t cnt = 7;
    assert_int_equal(sarco_measure_labels(&c, 3, dims, sp, NULL, NULL, NULL, 0, &m, &cnt), SARCO_ERR_INVALID_ARGUMENT);
    assert_null(m);
    assert_int_equal(cnt, 0);
    int32_t bad = 70000;
    assert_int_equal(sarco_measure_labels(&c, 3, dims, sp, lab, NULL, &bad, 1, &m, &cnt), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(c.err, "70000"));
    bad = -1;
    assert_int_equal(sarco_measure_labels(&c, 3, dims, sp, lab, NULL, &bad, 1, &m, &cnt), SARCO_ERR_INVALID_ARGUMENT);
    double bsp[3] = {1, 0, 1};
    assert_int_equal(sarco_measure_labels(&c, 3, dims, bsp, lab, NULL, NULL, 0, &m, &cnt), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_measure_labels(&c, 5, dims, sp, lab, NULL, NULL, 0, &m, &cnt), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_measure_labels(&c, 3, dims, sp, lab, NULL, NULL, 0, NULL, &cnt), SARCO_ERR_INVALID_ARGUMENT);
    /* no labels at all: an empty list, not an error */
    assert_int_equal(sarco_measure_labels(&c, 3, dims, sp, lab, NULL, NULL, 0, &m, &cnt), SARCO_OK);
    assert_int_equal(cnt, 0);
    sarco_label_measures_free(m);
    sarco_label_measures_free(NULL);
}

/* ---- segmentation metrics: analytic cases ------------------------------------------------- */

/* A box shifted by one voxel along axis a: HD = spacing[a] exactly, Dice = (L-1)/L, RAVD = 0. */
static void test_eval_shift(void **state) {
    (void)state;
    for (int nd = 2; nd <= 3; nd++) {
        int64_t dims[3] = {14, 16, 18};
        double sp[3] = {2.0, 0.7, 1.3};
        int64_t d3[3];
        double s3[3];
        promote(nd, dims, sp, d3, s3);
        int64_t n = d3[0] * d3[1] * d3[2];
        for (int a = 0; a < nd; a++) {
            uint16_t *p = calloc((size_t)n, 2), *g = calloc((size_t)n, 2);
            int64_t lo[3] = {nd == 3 ? 2 : 0, 3, 4}, len[3] = {nd == 3 ? 10 : 1, 10, 10};
            fill_box(g, d3, lo, len, 4);
            lo[3 - nd + a] += 1;
            fill_box(p, d3, lo, len, 4);
            sarco_seg_metrics m = eval_one(NULL, nd, dims, sp, p, g, 4);
            ASSERT_CLOSE(m.hd_mm, sp[a], 1e-7);
            ASSERT_CLOSE(m.dice, 0.9, 1e-12);
            ASSERT_CLOSE(m.jaccard, 9.0 / 11.0, 1e-12);
            ASSERT_CLOSE(m.ravd_percent, 0.0, 1e-12);
            assert_int_equal(m.flags, 0);
            check_bruteforce(&m, nd, dims, sp, p, g);
            free(p);
            free(g);
        }
    }
}

/* Concentric boxes k voxels apart on every side: HD = k |spacing| (outer corner to inner corner),
 * and the Dice and RAVD of the volumes. */
static void test_eval_concentric_boxes(void **state) {
    (void)state;
    for (int nd = 2; nd <= 3; nd++) {
        int64_t dims[3] = {26, 24, 30};
        double sp[3] = {1.5, 0.6, 0.9};
        int64_t d3[3];
        double s3[3];
        promote(nd, dims, sp, d3, s3);
        int64_t n = d3[0] * d3[1] * d3[2];
        uint16_t *p = calloc((size_t)n, 2), *g = calloc((size_t)n, 2);
        const int64_t k = 3;
        int64_t lo[3] = {nd == 3 ? 8 : 0, 8, 8}, len[3] = {nd == 3 ? 7 : 1, 6, 9};
        fill_box(p, d3, lo, len, 1);
        double vin = (double)(len[0] * len[1] * len[2]), norm = 0.0;
        for (int a = 3 - nd; a < 3; a++) {
            lo[a] -= k;
            len[a] += 2 * k;
            norm += s3[a] * s3[a];
        }
        fill_box(g, d3, lo, len, 1);
        double vout = (double)(len[0] * len[1] * len[2]);
        sarco_seg_metrics m = eval_one(NULL, nd, dims, sp, p, g, 1);
        ASSERT_CLOSE(m.hd_mm, (double)k * sqrt(norm), 1e-7);
        ASSERT_CLOSE(m.dice, 2.0 * vin / (vin + vout), 1e-12);
        ASSERT_CLOSE(m.jaccard, vin / vout, 1e-12);
        ASSERT_CLOSE(m.ravd_percent, (vin - vout) / vout * 100.0, 1e-12);
        double cell = nd == 3 ? sp[0] * sp[1] * sp[2] : sp[0] * sp[1];
        if (nd == 3) {
            ASSERT_CLOSE(m.volume_pred_ml, vin * cell / 1000.0, 1e-12);
            ASSERT_CLOSE(m.volume_ref_ml, vout * cell / 1000.0, 1e-12);
        } else {
            ASSERT_CLOSE(m.area_pred_cm2, vin * cell / 100.0, 1e-12);
            ASSERT_CLOSE(m.area_ref_cm2, vout * cell / 100.0, 1e-12);
        }
        check_bruteforce(&m, nd, dims, sp, p, g);
        free(p);
        free(g);
    }
}

/* Concentric balls of radii 6 and 10 mm: every surface distance is within a voxel diagonal of 4 mm. */
static void test_eval_concentric_balls(void **state) {
    (void)state;
    int64_t dims[3] = {36, 36, 36};
    double sp[3] = {0.75, 0.75, 0.75};
    uint16_t *p = calloc(36 * 36 * 36, 2), *g = calloc(36 * 36 * 36, 2);
    double ctr[3] = {17.5, 17.2, 17.9}, r1[3] = {8, 8, 8}, r2[3] = {40.0 / 3, 40.0 / 3, 40.0 / 3};
    fill_ellipsoid(p, dims, ctr, r1, 2);
    fill_ellipsoid(g, dims, ctr, r2, 2);
    sarco_seg_metrics m = eval_one(NULL, 3, dims, sp, p, g, 2);
    double diag = 0.75 * sqrt(3.0);
    print_message("concentric balls 6/10 mm: HD %.4f HD95 %.4f ASSD %.4f mm (analytic 4)\n", m.hd_mm, m.hd95_mm, m.assd_mm);
    assert_true(fabs(m.hd_mm - 4.0) <= diag);
    assert_true(fabs(m.assd_mm - 4.0) <= diag);
    assert_true(m.hd95_mm <= m.hd_mm && m.assd_mm <= m.hd95_mm);
    check_bruteforce(&m, 3, dims, sp, p, g);
    free(p);
    free(g);
}

/* Empty masks: flags, the diagonal, never NaN; 2D and 3D. */
static void test_eval_empty(void **state) {
    (void)state;
    for (int nd = 2; nd <= 3; nd++) {
        int64_t dims[3] = {9, 11, 13};
        double sp[3] = {1.1, 0.4, 2.2};
        int64_t d3[3];
        double s3[3];
        promote(nd, dims, sp, d3, s3);
        int64_t n = d3[0] * d3[1] * d3[2];
        double diag = 0.0;
        for (int a = 0; a < nd; a++) diag += (double)dims[a] * sp[a] * (double)dims[a] * sp[a];
        diag = sqrt(diag);
        uint16_t *p = calloc((size_t)n, 2), *g = calloc((size_t)n, 2);
        int64_t lo[3] = {nd == 3 ? 2 : 0, 2, 3}, len[3] = {nd == 3 ? 4 : 1, 5, 6};
        fill_box(g, d3, lo, len, 1); /* label 1 only in ref */
        lo[2] = 0;
        fill_box(p, d3, lo, len, 2); /* label 2 only in pred */
        sarco_seg_metrics m = eval_one(NULL, nd, dims, sp, p, g, 1);
        assert_int_equal(m.flags, SARCO_METRIC_PRED_EMPTY);
        assert_true(m.dice == 0.0 && m.jaccard == 0.0);
        ASSERT_CLOSE(m.hd_mm, diag, 1e-12);
        ASSERT_CLOSE(m.hd95_mm, diag, 1e-12);
        ASSERT_CLOSE(m.assd_mm, diag, 1e-12);
        ASSERT_CLOSE(m.ravd_percent, -100.0, 1e-12);
        assert_int_equal(m.surface_pred, 0);
        assert_true(m.surface_ref > 0);
        m = eval_one(NULL, nd, dims, sp, p, g, 2);
        assert_int_equal(m.flags, SARCO_METRIC_REF_EMPTY | SARCO_METRIC_RAVD_UNDEFINED);
        assert_true(m.dice == 0.0 && m.ravd_percent == 0.0);
        ASSERT_CLOSE(m.hd95_mm, diag, 1e-12);
        m = eval_one(NULL, nd, dims, sp, p, g, 9); /* in neither */
        assert_int_equal(m.flags, SARCO_METRIC_PRED_EMPTY | SARCO_METRIC_REF_EMPTY | SARCO_METRIC_RAVD_UNDEFINED);
        assert_true(m.dice == 1.0 && m.jaccard == 1.0);
        assert_true(m.hd_mm == 0.0 && m.hd95_mm == 0.0 && m.assd_mm == 0.0 && m.ravd_percent == 0.0);
        /* the automatic label list holds exactly the labels present in either image */
        sarco_seg_metrics *r;
        size_t cnt;
        assert_int_equal(sarco_evaluate_labels(NULL, nd, dims, sp, p, g, NULL, 0, &r, &cnt), SARCO_OK);
        assert_int_equal(cnt, 2);
        assert_int_equal(r[0].label, 1);
        assert_int_equal(r[1].label, 2);
        assert_int_equal(r[0].flags, SARCO_METRIC_PRED_EMPTY);
        sarco_seg_metrics_free(r);
        free(p);
        free(g);
    }
}

/* Masks touching the border: the border voxels are surface (the outside is background). */
static void test_eval_border(void **state) {
    (void)state;
    for (int nd = 2; nd <= 3; nd++) {
        int64_t dims[3] = {7, 9, 12};
        double sp[3] = {3.0, 0.5, 0.8};
        int64_t d3[3];
        double s3[3];
        promote(nd, dims, sp, d3, s3);
        int64_t n = d3[0] * d3[1] * d3[2];
        uint16_t *p = malloc((size_t)n * 2), *g = malloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) p[i] = g[i] = 1;
        sarco_seg_metrics m = eval_one(NULL, nd, dims, sp, p, g, 1);
        int64_t inner = 1;
        for (int a = 0; a < nd; a++) inner *= dims[a] - 2;
        assert_int_equal(m.surface_pred, n - inner);
        assert_int_equal(m.surface_ref, n - inner);
        assert_true(m.dice == 1.0 && m.hd_mm == 0.0 && m.hd95_mm == 0.0 && m.assd_mm == 0.0);
        /* drop the last slab along the fastest axis from the reference */
        for (int64_t i = 0; i < n; i++)
            if (i % d3[2] == d3[2] - 1) g[i] = 0;
        m = eval_one(NULL, nd, dims, sp, p, g, 1);
        ASSERT_CLOSE(m.hd_mm, sp[nd - 1], 1e-7);
        ASSERT_CLOSE(m.ravd_percent, 100.0 / (double)(d3[2] - 1), 1e-12);
        check_bruteforce(&m, nd, dims, sp, p, g);
        free(p);
        free(g);
    }
}

/* ---- segmentation metrics: random shapes --------------------------------------------------- */

static void random_pair(int nd, const int64_t *dims, uint64_t seed, uint16_t **pp, uint16_t **gg) {
    int64_t d3[3];
    double s3[3], one[3] = {1, 1, 1};
    promote(nd, dims, one, d3, s3);
    int64_t n = d3[0] * d3[1] * d3[2];
    uint16_t *p = calloc((size_t)n, 2), *g = calloc((size_t)n, 2);
    trng r = {seed};
    for (uint16_t l = 1; l <= 4; l++)
        for (int b = 0; b < 2; b++) {
            double c[3], rad[3];
            for (int a = 0; a < 3; a++) {
                c[a] = d3[a] == 1 ? 0.0 : trng_uniform(&r) * (double)d3[a];
                rad[a] = d3[a] == 1 ? 1.0 : 1.0 + trng_uniform(&r) * 0.3 * (double)d3[a];
            }
            fill_ellipsoid(g, d3, c, rad, l);
            for (int a = 3 - nd; a < 3; a++) {
                c[a] += (trng_uniform(&r) - 0.5) * 3.0;
                rad[a] *= 0.8 + 0.4 * trng_uniform(&r);
            }
            fill_ellipsoid(p, d3, c, rad, l);
        }
    *pp = p;
    *gg = g;
}

static void test_eval_random_bruteforce(void **state) {
    (void)state;
    static const struct {
        int nd;
        int64_t dims[3];
        double sp[3];
    } cases[] = {{2, {40, 33, 0}, {0.6, 1.7, 0}}, {2, {17, 60, 0}, {2.0, 0.3, 0}},
                 {3, {14, 22, 19}, {2.5, 0.7, 0.9}}, {3, {25, 9, 16}, {0.5, 3.0, 1.0}}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        uint16_t *p, *g;
        random_pair(cases[c].nd, cases[c].dims, 1000 + c, &p, &g);
        sarco_seg_metrics *r;
        size_t cnt;
        assert_int_equal(sarco_evaluate_labels(NULL, cases[c].nd, cases[c].dims, cases[c].sp, p, g, NULL, 0, &r, &cnt), SARCO_OK);
        assert_true(cnt >= 1);
        for (size_t k = 0; k < cnt; k++) {
            assert_no_nan(&r[k]);
            if (r[k].flags) continue;
            check_bruteforce(&r[k], cases[c].nd, cases[c].dims, cases[c].sp, p, g);
        }
        /* thread-count independence, bit for bit */
        sarco_context c1 = {0};
        c1.opts.threads = 1;
        sarco_seg_metrics *r1;
        size_t cnt1;
        assert_int_equal(sarco_evaluate_labels(&c1, cases[c].nd, cases[c].dims, cases[c].sp, p, g, NULL, 0, &r1, &cnt1), SARCO_OK);
        assert_int_equal(cnt, cnt1);
        assert_memory_equal(r, r1, cnt * sizeof *r);
        sarco_seg_metrics_free(r);
        sarco_seg_metrics_free(r1);
        free(p);
        free(g);
    }
}

/* Agreement with scipy (REFERENCE.md's definitions in float64) and MONAI 1.6 (float32). */
static void test_eval_reference(void **state) {
    (void)state;
    json_error_t err;
    json_t *root = json_load_file(MDATA "reference.json", 0, &err);
    if (!root) fail_msg("reference.json: %s (line %d)", err.text, err.line);
    size_t ci;
    json_t *cs;
    double worst_exact = 0.0, worst_monai = 0.0;
    json_array_foreach(json_object_get(root, "cases"), ci, cs) {
        const char *name = json_string_value(json_object_get(cs, "name"));
        char p1[256], p2[256];
        snprintf(p1, sizeof p1, MDATA "%s", json_string_value(json_object_get(cs, "pred")));
        snprintf(p2, sizeof p2, MDATA "%s", json_string_value(json_object_get(cs, "ref")));
        int nd, nd2;
        int64_t dims[3], dims2[3];
        uint8_t *p8 = npy_load(p1, "|u1", &nd, dims), *g8 = npy_load(p2, "|u1", &nd2, dims2);
        assert_non_null(p8);
        assert_non_null(g8);
        double sp[3];
        for (int a = 0; a < nd; a++) sp[a] = json_real_value(json_array_get(json_object_get(cs, "spacing"), (size_t)a));
        int64_t n = 1;
        for (int a = 0; a < nd; a++) n *= dims[a];
        uint16_t *p = malloc((size_t)n * 2), *g = malloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) {
            p[i] = p8[i];
            g[i] = g8[i];
        }
        size_t li;
        json_t *le;
        json_array_foreach(json_object_get(cs, "labels"), li, le) {
            int32_t label = (int32_t)json_integer_value(json_object_get(le, "label"));
            sarco_seg_metrics m = eval_one(NULL, nd, dims, sp, p, g, label);
            json_t *x = json_object_get(le, "exact"), *mo = json_object_get(le, "monai");
            assert_int_equal(m.voxels_pred, json_integer_value(json_object_get(x, "voxels_pred")));
            assert_int_equal(m.voxels_ref, json_integer_value(json_object_get(x, "voxels_ref")));
            assert_int_equal(m.voxels_both, json_integer_value(json_object_get(x, "voxels_both")));
            assert_int_equal(m.surface_pred, json_integer_value(json_object_get(x, "surface_pred")));
            assert_int_equal(m.surface_ref, json_integer_value(json_object_get(x, "surface_ref")));
            const char *keys[] = {"dice", "jaccard", "hd_mm", "hd95_mm", "assd_mm"};
            const double ours[] = {m.dice, m.jaccard, m.hd_mm, m.hd95_mm, m.assd_mm};
            for (int k = 0; k < 5; k++) {
                double e = json_number_value(json_object_get(x, keys[k]));
                double d = fabs(ours[k] - e) / fmax(1.0, fabs(e));
                if (d > worst_exact) worst_exact = d;
                if (d > 1e-6) fail_msg("%s label %d %s: %.9g vs scipy %.9g", name, label, keys[k], ours[k], e);
                json_t *mv = json_object_get(mo, keys[k]);
                if (!mv) continue;
                d = fabs(ours[k] - json_number_value(mv)) / fmax(1.0, fabs(json_number_value(mv)));
                if (d > worst_monai) worst_monai = d;
                if (d > 1e-5) fail_msg("%s label %d %s: %.9g vs MONAI %.9g", name, label, keys[k], ours[k], json_number_value(mv));
            }
        }
        free(p8);
        free(g8);
        free(p);
        free(g);
    }
    print_message("metrics vs scipy (float64): max relative difference %.3g; vs MONAI (float32): %.3g\n", worst_exact,
                  worst_monai);
    json_decref(root);
}

static void test_eval_bad_args(void **state) {
    (void)state;
    sarco_context c = {0};
    int64_t dims[2] = {3, 4};
    double sp[2] = {1, 1};
    uint16_t a[12] = {0}, b[12] = {0};
    sarco_seg_metrics *r = (sarco_seg_metrics *)&c;
    size_t cnt = 3;
    assert_int_equal(sarco_evaluate_labels(&c, 2, dims, sp, a, NULL, NULL, 0, &r, &cnt), SARCO_ERR_INVALID_ARGUMENT);
    assert_null(r);
    assert_int_equal(cnt, 0);
    int32_t bad = 65536;
    assert_int_equal(sarco_evaluate_labels(&c, 2, dims, sp, a, b, &bad, 1, &r, &cnt), SARCO_ERR_INVALID_ARGUMENT);
    double bsp[2] = {INFINITY, 1};
    assert_int_equal(sarco_evaluate_labels(&c, 2, dims, bsp, a, b, NULL, 0, &r, &cnt), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_evaluate_labels(&c, 0, dims, sp, a, b, NULL, 0, &r, &cnt), SARCO_ERR_INVALID_ARGUMENT);
    c.opts.memory_limit = 16; /* too small for the label tables */
    a[5] = 1;
    assert_int_equal(sarco_evaluate_labels(&c, 2, dims, sp, a, b, NULL, 0, &r, &cnt), SARCO_ERR_OUT_OF_MEMORY);
    assert_null(r);
    sarco_seg_metrics_free(NULL);
}

static int cancel_cb(void *user, const char *stage, int64_t done, int64_t total) {
    (void)stage;
    (void)total;
    return done >= *(int64_t *)user;
}

static void test_eval_cancel(void **state) {
    (void)state;
    int64_t dims[3] = {10, 12, 14};
    double sp[3] = {1, 1, 1};
    uint16_t *p, *g;
    random_pair(3, dims, 5, &p, &g);
    sarco_context c = {0};
    int64_t after = 1;
    c.progress = cancel_cb;
    c.progress_user = &after;
    sarco_seg_metrics *r;
    size_t cnt;
    assert_int_equal(sarco_evaluate_labels(&c, 3, dims, sp, p, g, NULL, 0, &r, &cnt), SARCO_ERR_CANCELLED);
    assert_null(r);
    free(p);
    free(g);
}

/* ---- cohort statistics ----------------------------------------------------------------------- */

static void test_pearson(void **state) {
    (void)state;
    trng r = {3};
    double x[200], y[200];
    for (int i = 0; i < 200; i++) {
        x[i] = 100.0 + 10.0 * trng_uniform(&r);
        y[i] = 0.5 * x[i] + 3.0 * trng_uniform(&r);
    }
    long double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    for (int i = 0; i < 200; i++) {
        sx += x[i];
        sy += y[i];
        sxx += (long double)x[i] * x[i];
        syy += (long double)y[i] * y[i];
        sxy += (long double)x[i] * y[i];
    }
    double want = (double)((200 * sxy - sx * sy) / sqrtl((200 * sxx - sx * sx) * (200 * syy - sy * sy)));
    double got;
    assert_int_equal(sarco_stats_pearson(NULL, x, y, 200, &got), SARCO_OK);
    ASSERT_CLOSE(got, want, 1e-9);
    for (int i = 0; i < 200; i++) y[i] = 7.0 - 2.0 * x[i];
    assert_int_equal(sarco_stats_pearson(NULL, x, y, 200, &got), SARCO_OK);
    ASSERT_CLOSE(got, -1.0, 1e-12);
    sarco_context c = {0};
    for (int i = 0; i < 200; i++) y[i] = 5.0;
    assert_int_equal(sarco_stats_pearson(&c, x, y, 200, &got), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(c.err, "constant"));
    assert_int_equal(sarco_stats_pearson(&c, x, y, 1, &got), SARCO_ERR_INVALID_ARGUMENT);
    y[3] = NAN;
    assert_int_equal(sarco_stats_pearson(&c, x, y, 200, &got), SARCO_ERR_INVALID_ARGUMENT);
}

/* Shrout & Fleiss (1979), Table 2: six targets, four judges; ICC(1,1) .17, ICC(2,1) .29, ICC(3,1) .71. */
static void test_icc(void **state) {
    (void)state;
    const double sf[24] = {9, 2, 5, 8, 6, 1, 3, 2, 8, 4, 6, 8, 7, 1, 2, 6, 10, 5, 6, 9, 6, 2, 4, 7};
    double v;
    assert_int_equal(sarco_stats_icc(NULL, sf, 6, 4, SARCO_ICC_1_1, &v), SARCO_OK);
    assert_true(fabs(v - 0.17) < 0.005);
    assert_int_equal(sarco_stats_icc(NULL, sf, 6, 4, SARCO_ICC_2_1, &v), SARCO_OK);
    assert_true(fabs(v - 0.29) < 0.005);
    assert_int_equal(sarco_stats_icc(NULL, sf, 6, 4, SARCO_ICC_3_1, &v), SARCO_OK);
    assert_true(fabs(v - 0.71) < 0.005);
    /* a rater offset by a constant: perfect consistency, imperfect absolute agreement */
    double two[20];
    for (int i = 0; i < 10; i++) {
        two[2 * i] = 50.0 + 3.0 * i;
        two[2 * i + 1] = two[2 * i] + 4.0;
    }
    assert_int_equal(sarco_stats_icc(NULL, two, 10, 2, SARCO_ICC_3_1, &v), SARCO_OK);
    ASSERT_CLOSE(v, 1.0, 1e-12);
    assert_int_equal(sarco_stats_icc(NULL, two, 10, 2, SARCO_ICC_2_1, &v), SARCO_OK);
    assert_true(v < 0.95 && v > 0.5);
    sarco_context c = {0};
    assert_int_equal(sarco_stats_icc(&c, two, 1, 2, SARCO_ICC_2_1, &v), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_stats_icc(&c, two, 10, 2, (sarco_icc_form)7, &v), SARCO_ERR_INVALID_ARGUMENT);
    for (int i = 0; i < 20; i++) two[i] = 1.0;
    assert_int_equal(sarco_stats_icc(&c, two, 10, 2, SARCO_ICC_3_1, &v), SARCO_ERR_INVALID_ARGUMENT);
}

static void test_auc(void **state) {
    (void)state;
    trng r = {17};
    enum { N = 301 };
    double s[N];
    uint8_t t[N];
    for (int it = 0; it < 20; it++) {
        for (int i = 0; i < N; i++) {
            t[i] = trng_uniform(&r) < 0.3;
            s[i] = (double)trng_int(&r, it % 2 ? 10 : 1000) + (t[i] ? (double)trng_int(&r, 4) : 0.0); /* ties */
        }
        double pairs = 0.0, np = 0.0, nn = 0.0;
        for (int i = 0; i < N; i++) {
            np += t[i];
            nn += !t[i];
            for (int j = 0; j < N; j++)
                if (t[i] && !t[j]) pairs += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
        }
        double auc;
        assert_int_equal(sarco_stats_auc(NULL, s, t, N, &auc), SARCO_OK);
        ASSERT_CLOSE(auc, pairs / (np * nn), 1e-12);
    }
    double s4[4] = {0.1, 0.2, 0.8, 0.9};
    uint8_t t4[4] = {0, 0, 1, 1};
    double auc;
    assert_int_equal(sarco_stats_auc(NULL, s4, t4, 4, &auc), SARCO_OK);
    assert_true(auc == 1.0);
    uint8_t r4[4] = {1, 1, 0, 0};
    assert_int_equal(sarco_stats_auc(NULL, s4, r4, 4, &auc), SARCO_OK);
    assert_true(auc == 0.0);
    uint8_t z4[4] = {0, 0, 0, 0};
    assert_int_equal(sarco_stats_auc(NULL, s4, z4, 4, &auc), SARCO_ERR_INVALID_ARGUMENT);
}

static void test_binary(void **state) {
    (void)state;
    trng r = {23};
    double s[500];
    uint8_t t[500];
    for (int i = 0; i < 500; i++) {
        t[i] = trng_uniform(&r) < 0.4;
        s[i] = trng_uniform(&r) * 0.6 + (t[i] ? 0.3 : 0.0);
    }
    s[7] = 0.5; /* exactly at the threshold: positive */
    t[7] = 1;
    sarco_binary_metrics b;
    assert_int_equal(sarco_stats_binary(NULL, s, t, 500, 0.5, &b), SARCO_OK);
    int64_t tp = 0, fp = 0, tn = 0, fn = 0;
    for (int i = 0; i < 500; i++) {
        int pr = !(s[i] < 0.5);
        tp += pr && t[i];
        fp += pr && !t[i];
        tn += !pr && !t[i];
        fn += !pr && t[i];
    }
    assert_true(b.tp == tp && b.fp == fp && b.tn == tn && b.fn == fn);
    ASSERT_CLOSE(b.sensitivity, (double)tp / (double)(tp + fn), 1e-15);
    ASSERT_CLOSE(b.specificity, (double)tn / (double)(tn + fp), 1e-15);
    ASSERT_CLOSE(b.accuracy, (double)(tp + tn) / 500.0, 1e-15);
    double prec = (double)tp / (double)(tp + fp), rec = (double)tp / (double)(tp + fn);
    ASSERT_CLOSE(b.f1, 2 * prec * rec / (prec + rec), 1e-12);
    assert_int_equal(b.flags, 0);
    uint8_t none[500] = {0};
    assert_int_equal(sarco_stats_binary(NULL, s, none, 500, 2.0, &b), SARCO_OK);
    assert_int_equal(b.flags, SARCO_BINARY_NO_POSITIVES | SARCO_BINARY_F1_UNDEFINED);
    assert_true(b.sensitivity == 0.0 && b.f1 == 0.0 && b.specificity == 1.0 && b.accuracy == 1.0);
    assert_int_equal(sarco_stats_binary(NULL, s, t, 0, 0.5, &b), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_stats_binary(NULL, s, t, 10, NAN, &b), SARCO_ERR_INVALID_ARGUMENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_measure_boxes),
        cmocka_unit_test(test_measure_area_2d),
        cmocka_unit_test(test_measure_ball),
        cmocka_unit_test(test_measure_hu),
        cmocka_unit_test(test_measure_bad_args),
        cmocka_unit_test(test_eval_shift),
        cmocka_unit_test(test_eval_concentric_boxes),
        cmocka_unit_test(test_eval_concentric_balls),
        cmocka_unit_test(test_eval_empty),
        cmocka_unit_test(test_eval_border),
        cmocka_unit_test(test_eval_random_bruteforce),
        cmocka_unit_test(test_eval_reference),
        cmocka_unit_test(test_eval_bad_args),
        cmocka_unit_test(test_eval_cancel),
        cmocka_unit_test(test_pearson),
        cmocka_unit_test(test_icc),
        cmocka_unit_test(test_auc),
        cmocka_unit_test(test_binary),
    };
    return cmocka_run_group_tests_name("measure", tests, NULL, NULL);
}
