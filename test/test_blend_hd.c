/* The shared (SARCO_HD) bodies of the CUDA blend and argmax kernels, run on the CPU: the element map
 * of kernels/blend_hd.h against plain nested loops over odd sizes and offsets, whole blends built
 * from it with kernels/window_hd.h's arithmetic (weights sum: a constant prediction blends back to
 * itself; every voxel is covered; Gaussian maps are symmetric and peak at the centre), and the
 * argmax edge cases (ties -> lowest index as torch.argmax, NaN wins at its first index, channel
 * strides, uint8/uint16 label stores). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/blend_hd.h"
#include "kernels/window_hd.h"

static sarco_blend_geom geom(int64_t c, const int64_t *roi, const int64_t *padded, const int64_t *st) {
    sarco_blend_geom g;
    g.c = c;
    for (int a = 0; a < 3; a++) {
        g.roi[a] = roi[a];
        g.padded[a] = padded[a];
        g.st[a] = st[a];
    }
    return g;
}

/* The map visits exactly the nested-loop positions, in the same order as y's memory. */
static void test_index_map(void **state) {
    (void)state;
    const int64_t cases[][10] = {
        /* c, roi[3], padded[3], st[3] */
        {3, 5, 3, 7, 9, 4, 11, 2, 1, 4},
        {1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
        {2, 7, 5, 1, 7, 9, 1, 0, 3, 0}, /* 2-D: a trailing axis of 1 */
        {5, 3, 3, 3, 3, 3, 3, 0, 0, 0}, /* the window is the whole grid */
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        const int64_t *q = cases[t];
        sarco_blend_geom g = geom(q[0], q + 1, q + 4, q + 7);
        int64_t i = 0, P = g.padded[0] * g.padded[1] * g.padded[2];
        for (int64_t ch = 0; ch < g.c; ch++)
            for (int64_t r = 0; r < g.roi[0]; r++)
                for (int64_t j = 0; j < g.roi[1]; j++)
                    for (int64_t k = 0; k < g.roi[2]; k++, i++) {
                        int64_t vox, tile;
                        int64_t a = sarco_blend_index(&g, i, &vox, &tile);
                        int64_t want_vox = ((g.st[0] + r) * g.padded[1] + g.st[1] + j) * g.padded[2] + g.st[2] + k;
                        assert_int_equal(vox, want_vox);
                        assert_int_equal(tile, (r * g.roi[1] + j) * g.roi[2] + k);
                        assert_int_equal(a, ch * P + want_vox);
                        assert_true(vox >= 0 && vox < P);
                    }
    }
}

/* MONAI's 3-D importance map, as lib/pipeline/window.c builds it: ((g0 g1) g2), clamped at max(min, 1e-3). */
static void gauss_map(const int64_t *roi, double sigma_scale, float *w) {
    float *g[3];
    for (int a = 0; a < 3; a++) {
        g[a] = malloc((size_t)roi[a] * sizeof(float));
        double sigma = (double)roi[a] * sigma_scale;
        for (int64_t i = 0; i < roi[a]; i++) g[a][i] = sarco_gauss_1d(i, roi[a], (float)(-2.0 * sigma * sigma));
    }
    int64_t n = roi[0] * roi[1] * roi[2];
    float mn = INFINITY;
    for (int64_t i = 0; i < roi[0]; i++)
        for (int64_t j = 0; j < roi[1]; j++)
            for (int64_t k = 0; k < roi[2]; k++) {
                float v = g[0][i] * g[1][j] * g[2][k];
                w[(i * roi[1] + j) * roi[2] + k] = v;
                mn = v < mn ? v : mn;
            }
    float fl = mn > 1e-3f ? mn : 1e-3f;
    for (int64_t i = 0; i < n; i++) w[i] = sarco_gauss_clamp(w[i], fl);
    for (int a = 0; a < 3; a++) free(g[a]);
}

static void test_gauss_map(void **state) {
    (void)state;
    const int64_t roi[3] = {7, 6, 5}; /* odd and even sizes */
    float w[7 * 6 * 5];
    gauss_map(roi, 0.125, w);
    /* symmetric on every axis; the odd axes peak exactly at the centre */
    for (int64_t i = 0; i < 7; i++)
        for (int64_t j = 0; j < 6; j++)
            for (int64_t k = 0; k < 5; k++) {
                float v = w[(i * 6 + j) * 5 + k];
                assert_true(v > 0.0f && v <= 1.0f);
                assert_true(v == w[((6 - i) * 6 + j) * 5 + k]);
                assert_true(v == w[(i * 6 + (5 - j)) * 5 + k]);
                assert_true(v == w[(i * 6 + j) * 5 + (4 - k)]);
            }
    assert_true(sarco_gauss_1d(3, 7, -2.0f) == 1.0f);
    assert_true(sarco_gauss_1d(2, 6, -2.0f) == sarco_gauss_1d(3, 6, -2.0f));
    assert_true(sarco_gauss_1d(2, 6, -2.0f) < 1.0f);
    /* sigma 0.125 roi: the corner is exp(-(3^2/(2*0.875^2)) ...) far below 1e-3 -> clamped to the floor */
    float mn = INFINITY;
    for (size_t i = 0; i < sizeof w / sizeof *w; i++) mn = w[i] < mn ? w[i] : mn;
    assert_true(mn == 1e-3f);
    assert_true(sarco_gauss_clamp(0.5f, 1e-3f) == 0.5f);
    assert_true(sarco_gauss_clamp(1e-9f, 1e-3f) == 1e-3f);
}

/* Blend every window of an overlapping scan of a constant prediction: acc / cnt must give it back
 * (the weights sum to cnt), every voxel must be covered, for constant and Gaussian maps. */
static void blend_constant(int gaussian) {
    const int64_t c = 3, P[3] = {11, 9, 7}, R[3] = {5, 4, 3}, step[3] = {3, 2, 2};
    int64_t nv = P[0] * P[1] * P[2];
    float *acc = calloc((size_t)(c * nv), sizeof(float)), *cnt = calloc((size_t)nv, sizeof(float));
    float *w = malloc((size_t)(R[0] * R[1] * R[2]) * sizeof(float));
    float *y = malloc((size_t)(c * R[0] * R[1] * R[2]) * sizeof(float));
    if (gaussian)
        gauss_map(R, 0.125, w);
    else
        for (int64_t i = 0; i < R[0] * R[1] * R[2]; i++) w[i] = 1.0f;
    const float value[3] = {0.25f, -3.0f, 7.5f};
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t i = 0; i < R[0] * R[1] * R[2]; i++) y[ch * R[0] * R[1] * R[2] + i] = value[ch];
    int windows = 0;
    for (int64_t s0 = 0;; s0 += step[0]) {
        if (s0 + R[0] > P[0]) s0 = P[0] - R[0]; /* the last window ends at the border, as MONAI's */
        for (int64_t s1 = 0;; s1 += step[1]) {
            if (s1 + R[1] > P[1]) s1 = P[1] - R[1];
            for (int64_t s2 = 0;; s2 += step[2]) {
                if (s2 + R[2] > P[2]) s2 = P[2] - R[2];
                const int64_t st[3] = {s0, s1, s2};
                sarco_blend_geom g = geom(c, R, P, st);
                int64_t total = c * R[0] * R[1] * R[2];
                for (int64_t i = 0; i < total; i++) { /* what each CUDA thread does */
                    int64_t vox, tile;
                    int64_t a = sarco_blend_index(&g, i, &vox, &tile);
                    sarco_window_accumulate(&acc[a], y[i], w[tile]);
                    if (i < total / c) cnt[vox] += w[tile];
                }
                windows++;
                if (s2 + R[2] >= P[2]) break;
            }
            if (s1 + R[1] >= P[1]) break;
        }
        if (s0 + R[0] >= P[0]) break;
    }
    assert_true(windows > 8);
    for (int64_t v = 0; v < nv; v++) {
        assert_true(cnt[v] > 0.0f); /* covered */
        for (int64_t ch = 0; ch < c; ch++) {
            float got = acc[ch * nv + v] / cnt[v];
            if (fabsf(got - value[ch]) > 4e-6f * fabsf(value[ch]))
                fail_msg("%s map: voxel %lld channel %lld blends to %.9g, want %.9g", gaussian ? "gaussian" : "constant",
                         (long long)v, (long long)ch, got, value[ch]);
        }
        /* and the labels: channel 2 holds the largest constant everywhere */
        assert_int_equal(sarco_argmax_div(acc + v, c, nv, cnt[v]), 2);
    }
    free(acc);
    free(cnt);
    free(w);
    free(y);
}

static void test_blend_weights_sum(void **state) {
    (void)state;
    blend_constant(0);
    blend_constant(1);
}

static void test_argmax_edges(void **state) {
    (void)state;
    const float nan = NAN;
    /* ties: the lowest index wins, as torch.argmax */
    const float tie[5] = {1.0f, 3.0f, 3.0f, -1.0f, 3.0f};
    assert_int_equal(sarco_argmax_div(tie, 5, 1, 1.0f), 1);
    const float all_eq[4] = {2.0f, 2.0f, 2.0f, 2.0f};
    assert_int_equal(sarco_argmax_div(all_eq, 4, 1, 3.0f), 0);
    /* -0 and +0 are equal: still the first */
    const float zeros[2] = {-0.0f, 0.0f};
    assert_int_equal(sarco_argmax_div(zeros, 2, 1, 1.0f), 0);
    /* NaN is the largest value and its first occurrence wins */
    const float n1[4] = {5.0f, nan, 9.0f, nan};
    assert_int_equal(sarco_argmax_div(n1, 4, 1, 1.0f), 1);
    const float n0[3] = {nan, 9.0f, 1.0f};
    assert_int_equal(sarco_argmax_div(n0, 3, 1, 1.0f), 0);
    /* -inf everywhere but one; a single class */
    const float inf[3] = {-INFINITY, -INFINITY, -1e30f};
    assert_int_equal(sarco_argmax_div(inf, 3, 1, 1.0f), 2);
    assert_int_equal(sarco_argmax_div(inf, 1, 1, 1.0f), 0);
    /* the divide keeps the order for a positive count; channel stride (channel-first layout) */
    float strided[3 * 7];
    for (int i = 0; i < 21; i++) strided[i] = -100.0f;
    strided[0 * 7 + 4] = 1.0f;
    strided[1 * 7 + 4] = 6.0f;
    strided[2 * 7 + 4] = 6.0f;
    assert_int_equal(sarco_argmax_div(strided + 4, 3, 7, 0.5f), 1);
    /* 300 classes: the winner above 255 needs uint16 labels */
    float many[300];
    for (int i = 0; i < 300; i++) many[i] = (float)(i % 17);
    many[299] = 100.0f;
    uint16_t best = sarco_argmax_div(many, 300, 1, 2.0f);
    assert_int_equal(best, 299);
    uint16_t l16[3] = {0};
    uint8_t l8[3] = {0};
    sarco_label_store(l16, 16, 1, best);
    assert_int_equal(l16[1], 299);
    assert_int_equal(l16[0], 0);
    assert_int_equal(l16[2], 0);
    sarco_label_store(l8, 8, 2, 29);
    sarco_label_store(l8, 8, 0, 255);
    assert_int_equal(l8[2], 29);
    assert_int_equal(l8[0], 255);
    assert_int_equal(l8[1], 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_map),
        cmocka_unit_test(test_gauss_map),
        cmocka_unit_test(test_blend_weights_sum),
        cmocka_unit_test(test_argmax_edges),
    };
    return cmocka_run_group_tests_name("blend_hd", tests, NULL, NULL);
}
