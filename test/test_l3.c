/* L3 measures on constructed inputs with known answers: every HU window's boundary, the averaged
 * report, slice selection from a vertebra map, and bad input. The phantom comparisons (areas within
 * the stated discretisation bound) are in test/python/test_l3.py. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "testutil.h"

/* One row of muscle pixels with HU on each window's edges, plus fat pixels outside the compartment. */
static void test_windows(void **state) {
    (void)state;
    const float hu[] = {-191, -190, -30, -29.5f, -29, 0, 29, 29.5f, 30, 150, 150.5f, NAN, -100, 40};
    const uint16_t lab[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2};
    const int64_t dims[2] = {2, 7};
    const double sp[2] = {0.5, 0.8};
    const int32_t muscle[] = {1};
    sarco_context *ctx = tu_new_ctx(0);
    sarco_l3_options o;
    sarco_l3_options_init(&o);
    o.height_m = 1.5;
    sarco_l3_measures m;
    assert_int_equal(sarco_l3_measure(ctx, dims, sp, lab, hu, muscle, 1, &o, &m), SARCO_OK);
    assert_int_equal(m.compartment_pixels, 12);
    assert_int_equal(m.nonfinite_pixels, 1);
    assert_int_equal(m.imat_pixels, 2);           /* -190, -30 */
    assert_int_equal(m.sma_pixels, 6);            /* -29, 0, 29, 29.5, 30, 150 */
    assert_int_equal(m.low_attenuation_pixels, 3); /* -29, 0, 29 */
    const double v[] = {-29, 0, 29, 29.5, 30, 150};
    double mean = 0, var = 0;
    for (int i = 0; i < 6; i++) mean += v[i] / 6;
    for (int i = 0; i < 6; i++) var += (v[i] - mean) * (v[i] - mean) / 6;
    assert_true(fabs(m.muscle_attenuation_hu - mean) < 1e-12);
    assert_true(fabs(m.muscle_attenuation_sd_hu - sqrt(var)) < 1e-12);
    assert_true(fabs(m.pixel_area_mm2 - 0.4) < 1e-15);
    assert_true(fabs(m.compartment_area_cm2 - 12 * 0.4 / 100) < 1e-15);
    assert_true(fabs(m.sma_cm2 - 6 * 0.4 / 100) < 1e-15);
    assert_true(fabs(m.smi_cm2_m2 - 0.024 / 2.25) < 1e-15);
    assert_true(fabs(m.low_attenuation_fraction - 0.5) < 1e-15);
    assert_true(fabs(m.imat_area_cm2 - 2 * 0.4 / 100) < 1e-15);
    /* windows from the caller; both labels in the compartment */
    o.muscle_hu[0] = -50, o.muscle_hu[1] = 100;
    o.imat_hu[0] = -200, o.imat_hu[1] = -100;
    const int32_t both[] = {1, 2};
    assert_int_equal(sarco_l3_measure(ctx, dims, sp, lab, hu, both, 2, &o, &m), SARCO_OK);
    assert_int_equal(m.compartment_pixels, 14);
    assert_int_equal(m.sma_pixels, 8);  /* -30, -29.5, -29, 0, 29, 29.5, 30, 40 */
    assert_int_equal(m.imat_pixels, 3); /* -191, -190, -100 */
    /* no muscle pixels: zeros, no NaN */
    const uint16_t none[14] = {0};
    assert_int_equal(sarco_l3_measure(ctx, dims, sp, none, hu, muscle, 1, NULL, &m), SARCO_OK);
    assert_int_equal(m.sma_pixels, 0);
    assert_true(m.muscle_attenuation_hu == 0 && m.low_attenuation_fraction == 0);
    sarco_context_free(ctx);
}

static void test_bad_args(void **state) {
    (void)state;
    const float hu[4] = {0};
    const uint16_t lab[4] = {1, 1, 1, 1};
    const int64_t dims[2] = {2, 2};
    const int32_t muscle[] = {1}, zero[] = {0};
    sarco_context *ctx = tu_new_ctx(0);
    sarco_l3_measures m;
    const double tiny[2] = {0.05, 0.7}, huge[2] = {0.7, 12.0}, nan_[2] = {NAN, 0.7}, ok[2] = {0.7, 0.7};
    assert_int_equal(sarco_l3_measure(ctx, dims, tiny, lab, hu, muscle, 1, NULL, &m), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(ctx), "not a CT pixel"));
    assert_int_equal(sarco_l3_measure(ctx, dims, huge, lab, hu, muscle, 1, NULL, &m), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_l3_measure(ctx, dims, nan_, lab, hu, muscle, 1, NULL, &m), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_l3_measure(ctx, dims, ok, lab, hu, zero, 1, NULL, &m), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_l3_measure(ctx, dims, ok, lab, NULL, muscle, 1, NULL, &m), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_l3_measure(ctx, dims, ok, lab, hu, muscle, 0, NULL, &m), SARCO_ERR_INVALID_ARGUMENT);
    sarco_l3_options o;
    sarco_l3_options_init(&o);
    o.muscle_hu[0] = 200;
    assert_int_equal(sarco_l3_measure(ctx, dims, ok, lab, hu, muscle, 1, &o, &m), SARCO_ERR_INVALID_ARGUMENT);
    sarco_l3_options_init(&o);
    o.height_m = 17;
    assert_int_equal(sarco_l3_measure(ctx, dims, ok, lab, hu, muscle, 1, &o, &m), SARCO_ERR_INVALID_ARGUMENT);
    sarco_context_free(ctx);
}

static sarco_image *volume(sarco_context *ctx, int64_t nx, int64_t ny, int64_t nz, double s) {
    const int64_t d[3] = {nx, ny, nz};
    const double sp[3] = {s, s, 3.0};
    sarco_image *img;
    assert_int_equal(sarco_image_create(ctx, 3, d, sp, &img), SARCO_OK);
    return img;
}

static void test_slice_from_vertebrae(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_image *g = volume(ctx, 4, 4, 10, 0.8);
    uint16_t lab[160] = {0};
    for (int z = 2; z <= 5; z++)
        for (int i = 0; i < 16; i++) lab[z * 16 + i] = 3; /* centroid 3.5 -> 4 (halves round up) */
    for (int i = 0; i < 16; i++) lab[7 * 16 + i] = 2;
    int64_t k = -1;
    double c = 0;
    assert_int_equal(sarco_l3_slice_from_labels(ctx, g, lab, 160, 3, &k, &c), SARCO_OK);
    assert_int_equal(k, 4);
    assert_true(c == 3.5);
    lab[6 * 16] = 3; /* one more voxel at z = 6 pulls the centroid up */
    assert_int_equal(sarco_l3_slice_from_labels(ctx, g, lab, 160, 3, &k, &c), SARCO_OK);
    assert_true(fabs(c - (16 * (2 + 3 + 4 + 5) + 6) / 65.0) < 1e-12);
    assert_int_equal(sarco_l3_slice_from_labels(ctx, g, lab, 160, 2, &k, NULL), SARCO_OK);
    assert_int_equal(k, 7);
    assert_int_equal(sarco_l3_slice_from_labels(ctx, g, lab, 160, 9, &k, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(ctx), "not in the vertebra map"));
    assert_int_equal(sarco_l3_slice_from_labels(ctx, g, lab, 100, 3, &k, NULL), SARCO_ERR_INVALID_ARGUMENT);
    /* a volume whose third axis runs anterior-posterior: its slices are coronal */
    for (int r = 0; r < 3; r++) {
        double t = g->affine[r][1];
        g->affine[r][1] = g->affine[r][2];
        g->affine[r][2] = t;
    }
    assert_int_equal(sarco_l3_slice_from_labels(ctx, g, lab, 160, 3, &k, NULL), SARCO_ERR_UNSUPPORTED);
    sarco_image_free(g);
    sarco_context_free(ctx);
}

/* sarco_l3_report on a 10x10x5 volume of 4 mm pixels: slice k has 10 (k+1) muscle pixels (40 HU) and
 * 3 SAT pixels. */
static void test_report(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_image *ct = volume(ctx, 10, 10, 5, 4.0);
    uint16_t lab[500] = {0};
    for (int z = 0; z < 5; z++)
        for (int i = 0; i < 100; i++) {
            float *v = &ct->data[z * 100 + i];
            *v = -1000;
            if (i < 10 * (z + 1)) lab[z * 100 + i] = 1, *v = 40;
            else if (i >= 97) lab[z * 100 + i] = 2, *v = -100;
        }
    char *out = NULL;
    uint16_t sl[100];
    assert_int_equal(sarco_l3_report(ctx, ct, lab, 500, NULL,
                                     "{\"slice\": 2, \"slices\": 3, \"height_m\": 0.5, \"sex\": \"F\", "
                                     "\"table\": \"prado2008\"}",
                                     &out, sl),
                     SARCO_OK);
    json_t *r = json_loads(out, 0, NULL);
    sarco_json_free(out);
    const json_t *m = json_object_get(r, "measures");
    /* slices 1, 2, 3: 20, 30, 40 muscle pixels of 16 mm^2 -> mean 480 mm^2 = 4.8 cm^2; SMI 4.8 / 0.25 */
    assert_true(fabs(json_number_value(json_object_get(m, "sma_cm2")) - 4.8) < 1e-12);
    assert_true(fabs(json_number_value(json_object_get(m, "smi_cm2_m2")) - 19.2) < 1e-12);
    assert_true(fabs(json_number_value(json_object_get(m, "sat_cm2")) - 0.48) < 1e-12);
    assert_true(fabs(json_number_value(json_object_get(m, "vat_cm2"))) < 1e-12); /* a class without pixels */
    assert_true(fabs(json_number_value(json_object_get(m, "muscle_attenuation_hu")) - 40) < 1e-12);
    assert_int_equal(json_array_size(json_object_get(r, "per_slice")), 3);
    const json_t *j = json_object_get(r, "judgement");
    assert_string_equal(json_string_value(json_object_get(j, "verdict")), "low_smi");
    assert_true(json_is_true(json_object_get(json_object_get(r, "windows_hu"), "defaults")));
    for (int i = 0; i < 100; i++) assert_int_equal(sl[i], lab[2 * 100 + i]);
    json_decref(r);

    /* bad input */
    assert_int_equal(sarco_l3_report(ctx, ct, NULL, 0, NULL, "{\"slice\": 2}", &out, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_l3_report(ctx, ct, lab, 500, NULL, "{}", &out, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(ctx), "needs the L3 slice"));
    assert_int_equal(sarco_l3_report(ctx, ct, lab, 500, NULL, "{\"slice\": 4, \"slices\": 3}", &out, NULL),
                     SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_l3_report(ctx, ct, lab, 500, NULL, "{\"slice\": 2, \"slices\": 2}", &out, NULL),
                     SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_l3_report(ctx, ct, lab, 500, NULL, "{\"slice\": 2, \"classes\": [\"bg\", \"fat\"]}", &out, NULL),
                     SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_l3_report(ctx, ct, lab, 500, NULL, "{\"slice\": 2, \"table\": \"prado2008\"}", &out, NULL),
                     SARCO_ERR_INVALID_ARGUMENT); /* no sex */
    assert_int_equal(sarco_l3_report(ctx, ct, lab, 500, NULL,
                                     "{\"slice\": 2, \"table\": \"prado2008\", \"sex\": \"M\"}", &out, NULL),
                     SARCO_ERR_INVALID_ARGUMENT); /* no height */
    assert_int_equal(sarco_l3_report(ctx, ct, lab, 500, NULL,
                                     "{\"slice\": 2, \"table\": \"awgs2019\", \"sex\": \"M\", \"height_m\": 1.7}", &out,
                                     NULL),
                     SARCO_ERR_INVALID_ARGUMENT); /* not an L3 table */
    assert_int_equal(sarco_l3_report(ctx, ct, lab, 500, NULL, "{\"slice\": 2, \"muscle_hu\": [100, 0]}", &out, NULL),
                     SARCO_ERR_INVALID_ARGUMENT);
    ct->flags |= SARCO_IMAGE_NO_SPACING;
    assert_int_equal(sarco_l3_report(ctx, ct, lab, 500, NULL, "{\"slice\": 2}", &out, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(ctx), "no pixel spacing"));
    assert_null(out);
    sarco_image_free(ct);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_slice_from_vertebrae),
        cmocka_unit_test(test_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
