/* The classifier resampling (lib/pipeline/resize_aa.c) and the Grad-CAM overlay on analytic cases
 * (torchvision/PIL/pytorch-grad-cam agreement is in test/python/test_classify.py):
 *   - antialias resize: same size = identity; a constant stays constant (weights sum to 1); the
 *     downscale weights (a triangle widened by the scale, edge taps renormalised) worked by hand;
 *     a 2x upscale of a row = half-pixel bilinear with clamped edges;
 *   - cv2 INTER_LINEAR: corners kept, midpoints of a 2x upscale;
 *   - sarco_cam_overlay: alpha 0 = grey, alpha 1 = viridis ends; refusals. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/pipeline/pipeline.h"
#include "sarco/sarco.h"

static void test_identity_and_constant(void **state) {
    (void)state;
    float in[2 * 5 * 7], out[2 * 5 * 7], small[2 * 3 * 2];
    for (int i = 0; i < 70; i++) in[i] = (float)((i * 37) % 11) - 3.0f;
    assert_int_equal(sarco_resize_aa(NULL, in, 2, 5, 7, 5, 7, out), SARCO_OK);
    for (int i = 0; i < 70; i++) assert_true(fabsf(out[i] - in[i]) < 1e-6f);
    for (int i = 0; i < 70; i++) in[i] = 0.75f;
    assert_int_equal(sarco_resize_aa(NULL, in, 2, 5, 7, 3, 2, small), SARCO_OK);
    for (int i = 0; i < 12; i++) assert_true(fabsf(small[i] - 0.75f) < 1e-6f);
    assert_int_not_equal(sarco_resize_aa(NULL, in, 1, 0, 7, 3, 2, small), SARCO_OK);
}

static void test_downscale_weights(void **state) {
    (void)state;
    /* one row of 8 -> 4 (scale 2): centre c = 2 (i + 0.5), support 2, taps j in [trunc(c - 1.5), trunc(c + 2.5)),
     * weight 1 - |j - c + 0.5| / 2: for i = 1 taps 1..4 with weights 1/4, 3/4, 3/4, 1/4 (sum 2 -> /2) */
    float in[8], out[4];
    for (int j = 0; j < 8; j++) in[j] = (float)(j * j);
    assert_int_equal(sarco_resize_aa(NULL, in, 1, 1, 8, 1, 4, out), SARCO_OK);
    const double want1 = (0.25 * 1 + 0.75 * 4 + 0.75 * 9 + 0.25 * 16) / 2.0;
    assert_true(fabs(out[1] - want1) < 1e-5);
    /* i = 0: taps 0..2 (c - 1.5 < 0 clamps to 0): weights 3/4, 3/4, 1/4 over their sum 7/4 */
    const double want0 = (0.75 * 0 + 0.75 * 1 + 0.25 * 4) / 1.75;
    assert_true(fabs(out[0] - want0) < 1e-5);
}

static void test_upscale_bilinear(void **state) {
    (void)state;
    /* 1x3 -> 1x6: half-pixel bilinear (x_src = (i + 0.5) / 2 - 0.5), edges clamped */
    const float in[3] = {0.0f, 4.0f, 8.0f};
    float out[6], cv[6];
    assert_int_equal(sarco_resize_aa(NULL, in, 1, 1, 3, 1, 6, out), SARCO_OK);
    sarco_resize_linear_cv(in, 1, 3, 1, 6, cv);
    const float want[6] = {0.0f, 1.0f, 3.0f, 5.0f, 7.0f, 8.0f};
    for (int i = 0; i < 6; i++) {
        assert_true(fabsf(out[i] - want[i]) < 1e-5f);
        assert_true(fabsf(cv[i] - want[i]) < 1e-5f);
    }
}

static void test_cam_overlay(void **state) {
    (void)state;
    float data[2 * 2] = {0.0f, 100.0f, 200.0f, 50.0f};
    sarco_picture pic = {.width = 2, .height = 2, .channels = 1, .bit_depth = 8, .data = data};
    const float cam[4] = {0.0f, 1.0f, 0.5f, 2.0f};
    uint8_t rgb[12];
    assert_int_equal(sarco_cam_overlay(NULL, &pic, cam, 4, 0.0, rgb), SARCO_OK);
    assert_int_equal(rgb[0], 0);     /* grey stretched by the picture's range: 0 -> 0, 200 -> 255 */
    assert_int_equal(rgb[2 * 3], 255);
    assert_int_equal(sarco_cam_overlay(NULL, &pic, cam, 4, 1.0, rgb), SARCO_OK);
    assert_int_equal(rgb[0], 68);    /* viridis(0) */
    assert_int_equal(rgb[2], 84);
    assert_int_equal(rgb[3], 253);   /* viridis(1) */
    assert_int_equal(rgb[9 + 1], 231); /* 2.0 is clamped to 1 */
    assert_int_equal(sarco_cam_overlay(NULL, &pic, cam, 3, 0.5, rgb), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_cam_overlay(NULL, &pic, cam, 4, 1.5, rgb), SARCO_ERR_INVALID_ARGUMENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_and_constant),
        cmocka_unit_test(test_downscale_weights),
        cmocka_unit_test(test_upscale_bilinear),
        cmocka_unit_test(test_cam_overlay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
