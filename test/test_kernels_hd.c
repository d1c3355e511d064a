/* The SARCO_HD kernel functions (the kernels/ HD headers) alone, on the edge cases the CUDA kernels will also
 * meet: single-element and odd-length rows (not multiples of 32 or 128), huge logits, activations
 * at +-large and +-inf, constant rows, instance norm over one voxel, index maps as bijections.
 * References are written here in double. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/act_hd.h"
#include "kernels/layout_hd.h"
#include "kernels/norm_hd.h"
#include "kernels/pool_hd.h"
#include "kernels/softmax_hd.h"

static const int64_t odd_sizes[] = {1, 2, 31, 32, 33, 127, 128, 129, 1000};
#define N_ODD (sizeof odd_sizes / sizeof *odd_sizes)

static double urand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ull) >> 11) / 4503599627370496.0 - 1.0;
}

/* |got - want| <= rel |want| + abs_tol */
static void near(const char *what, double x, double got, double want, double rel, double abs_tol) {
    if (isnan(want) ? !isnan(got) : !(fabs(got - want) <= rel * fabs(want) + abs_tol))
        fail_msg("%s(%g): got %.9g, want %.9g", what, x, got, want);
}

static void test_activations(void **state) {
    (void)state;
    /* sigmoid never overflows and keeps the tiny tail */
    assert_true(sarco_hd_sigmoid(100.0f) == 1.0f);
    near("sigmoid", -100, sarco_hd_sigmoid(-100.0f), exp(-100.0), 0, 1.5e-45); /* 3.7e-44: a denormal, 1.4e-45 steps */
    assert_true(sarco_hd_sigmoid(-1000.0f) == 0.0f);
    assert_true(sarco_hd_sigmoid(1000.0f) == 1.0f);
    assert_true(sarco_hd_sigmoid(-INFINITY) == 0.0f && sarco_hd_sigmoid(INFINITY) == 1.0f);
    near("sigmoid", 0, sarco_hd_sigmoid(0.0f), 0.5, 0, 0);
    /* exact GELU: identity far right, zero far left, the left tail accurate through erfc */
    assert_true(sarco_hd_gelu(1e4f) == 1e4f);
    assert_true(sarco_hd_gelu(1e30f) == 1e30f);
    assert_true(sarco_hd_gelu(-1e4f) == 0.0f);
    assert_true(sarco_hd_gelu(-1e30f) == 0.0f);
    for (double x = -12; x <= -3; x += 0.5) /* 0.5 x (1 + erf) would give exactly 0 or lose every digit here */
        near("gelu", x, sarco_hd_gelu((float)x), 0.5 * x * erfc(-x / sqrt(2.0)), 1e-5, 0);
    assert_true(isinf(sarco_hd_gelu(INFINITY)));
    /* tanh GELU: x^3 overflowing to inf still gives +-1 from tanh, never NaN for finite x */
    assert_true(sarco_hd_gelu_tanh(1e4f) == 1e4f);
    assert_true(sarco_hd_gelu_tanh(3e13f) == 3e13f);
    assert_true(sarco_hd_gelu_tanh(-3e13f) == 0.0f);
    assert_true(sarco_hd_gelu_tanh(-1e4f) == 0.0f);
    /* SiLU, hardswish at the extremes */
    assert_true(sarco_hd_silu(100.0f) == 100.0f);
    near("silu", -100, sarco_hd_silu(-100.0f), -100 * exp(-100.0), 0.03, 0); /* 100 x a denormal sigmoid */
    assert_true(sarco_hd_silu(-1e30f) == 0.0f);
    assert_true(sarco_hd_hardswish(-3.0f) == 0.0f && sarco_hd_hardswish(3.0f) == 3.0f);
    assert_true(sarco_hd_hardswish(-1e30f) == 0.0f);
    near("hardswish", 1e30, sarco_hd_hardswish(1e30f), 1e30, 1e-7, 0);
    near("hardswish", 1, sarco_hd_hardswish(1.0f), 4.0 / 6.0, 1e-7, 0);
    /* dispatcher against double formulas on a grid */
    for (int a = 0; a < SARCO_ACT_COUNT; a++)
        for (double x = -9; x <= 9; x += 0.125) {
            double want;
            switch (a) {
            case SARCO_ACT_RELU: want = x > 0 ? x : 0; break;
            case SARCO_ACT_LEAKY_RELU: want = x >= 0 ? x : 0.01 * x; break;
            case SARCO_ACT_GELU: want = 0.5 * x * erfc(-x / sqrt(2.0)); break;
            case SARCO_ACT_GELU_TANH: want = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); break;
            case SARCO_ACT_SILU: want = x / (1 + exp(-x)); break;
            case SARCO_ACT_SIGMOID: want = 1 / (1 + exp(-x)); break;
            case SARCO_ACT_TANH: want = tanh(x); break;
            case SARCO_ACT_HARDSWISH: want = x * fmin(fmax(x + 3, 0), 6) / 6; break;
            default: want = x;
            }
            char what[32];
            snprintf(what, sizeof what, "act %d", a);
            near(what, x, sarco_hd_act(a, 0.01f, (float)x), want, 2e-6, 1e-7);
        }
    /* NaN propagates through relu and leaky (as torch.relu does) */
    assert_true(isnan(sarco_hd_act(SARCO_ACT_RELU, 0, NAN)));
    assert_true(isnan(sarco_hd_act(SARCO_ACT_LEAKY_RELU, 0.01f, NAN)));
    assert_true(sarco_hd_act(SARCO_ACT_NONE, 0, -2.5f) == -2.5f);
}

static void test_binary_maps(void **state) {
    (void)state;
    assert_true(sarco_hd_binop(SARCO_BIN_ADD, 3, 2) == 5 && sarco_hd_binop(SARCO_BIN_SUB, 3, 2) == 1);
    assert_true(sarco_hd_binop(SARCO_BIN_MUL, 3, 2) == 6 && sarco_hd_binop(SARCO_BIN_DIV, 3, 2) == 1.5f);
    /* (2, 3, 4) op (1, 3, 1): b's offsets depend on the middle index only */
    sarco_bcast_desc d = {3, {2, 3, 4}, {12, 4, 1}, {0, 1, 0}};
    for (int64_t i = 0; i < 24; i++) {
        int64_t oa, ob;
        sarco_hd_bcast_offsets(&d, i, &oa, &ob);
        assert_int_equal(oa, i);
        assert_int_equal(ob, (i / 4) % 3);
    }
}

static void test_softmax_lines(void **state) {
    (void)state;
    uint64_t rng = 7;
    for (size_t t = 0; t < N_ODD; t++) {
        int64_t n = odd_sizes[t];
        for (int64_t stride = 1; stride <= 3; stride += 2) {
            float *x = malloc((size_t)(n * stride) * sizeof *x), *y = malloc((size_t)(n * stride) * sizeof *y);
            for (int64_t i = 0; i < n * stride; i++) x[i] = y[i] = (float)(1e4 * urand(&rng)); /* logits ~ 1e4 */
            double m = -INFINITY, s = 0, total = 0;
            for (int64_t i = 0; i < n; i++) m = fmax(m, x[i * stride]);
            for (int64_t i = 0; i < n; i++) s += exp(x[i * stride] - m);
            sarco_hd_softmax_line(x, n, stride, y);
            for (int64_t i = 0; i < n; i++) {
                double want = exp(x[i * stride] - m) / s;
                assert_true(isfinite(y[i * stride]));
                near("softmax", x[i * stride], y[i * stride], want, 1e-5, 1e-30);
                total += y[i * stride];
            }
            near("softmax sum", (double)n, total, 1.0, 1e-5, 0);
            for (int64_t i = 0; i < n * stride; i++) /* entries between the line's stride stay as they were */
                if (i % stride) assert_true(y[i] == x[i]);
            /* in place gives the same */
            float *z = malloc((size_t)(n * stride) * sizeof *z);
            memcpy(z, x, (size_t)(n * stride) * sizeof *z);
            sarco_hd_softmax_line(z, n, stride, z);
            assert_memory_equal(z, y, (size_t)(n * stride) * sizeof *z);
            free(x);
            free(y);
            free(z);
        }
    }
    float one[1] = {1e30f}, out[1];
    sarco_hd_softmax_line(one, 1, 1, out);
    assert_true(out[0] == 1.0f);
    float big[3] = {1e4f, 1e4f, -INFINITY}, ob[3];
    sarco_hd_softmax_line(big, 3, 1, ob);
    assert_true(ob[0] == 0.5f && ob[1] == 0.5f && ob[2] == 0.0f);
    float bad[3] = {0.0f, NAN, 1.0f}, obad[3];
    sarco_hd_softmax_line(bad, 3, 1, obad);
    assert_true(isnan(obad[0]) && isnan(obad[1]) && isnan(obad[2])); /* as torch.softmax */
}

static void test_layernorm_rows(void **state) {
    (void)state;
    uint64_t rng = 11;
    for (size_t t = 0; t < N_ODD; t++) {
        int64_t c = odd_sizes[t];
        float *x = malloc((size_t)c * sizeof *x), *y = malloc((size_t)c * sizeof *y);
        float *g = malloc((size_t)c * sizeof *g), *b = malloc((size_t)c * sizeof *b);
        for (int64_t i = 0; i < c; i++) {
            x[i] = (float)(3 + 2 * urand(&rng));
            g[i] = (float)(1 + 0.5 * urand(&rng));
            b[i] = (float)(0.5 * urand(&rng));
        }
        double m = 0, v = 0;
        for (int64_t i = 0; i < c; i++) m += x[i];
        m /= (double)c;
        for (int64_t i = 0; i < c; i++) v += (x[i] - m) * (x[i] - m);
        v /= (double)c;
        sarco_hd_layernorm_row(x, c, g, b, 1e-5f, y);
        for (int64_t i = 0; i < c; i++)
            near("layernorm", (double)c, y[i], (x[i] - m) / sqrt(v + 1e-5) * g[i] + b[i], 1e-5, 1e-5);
        /* a constant row (single elements included) normalises to beta exactly */
        for (int64_t i = 0; i < c; i++) x[i] = 1234.5f;
        sarco_hd_layernorm_row(x, c, g, b, 1e-5f, y);
        for (int64_t i = 0; i < c; i++) assert_true(y[i] == b[i]);
        sarco_hd_layernorm_row(x, c, NULL, NULL, 1e-5f, x); /* in place, no affine */
        for (int64_t i = 0; i < c; i++) assert_true(x[i] == 0.0f);
        free(x);
        free(y);
        free(g);
        free(b);
    }
    float big[4] = {1e30f, 1e30f, 1e30f, 1e30f}, out[4];
    sarco_hd_layernorm_row(big, 4, NULL, NULL, 1e-5f, out);
    for (int i = 0; i < 4; i++) assert_true(out[i] == 0.0f);
}

static void test_moments(void **state) {
    (void)state;
    uint64_t rng = 5;
    for (size_t t = 0; t < N_ODD; t++) {
        int64_t n = odd_sizes[t];
        float *x = malloc((size_t)n * sizeof *x);
        for (int64_t i = 0; i < n; i++) x[i] = (float)(10 + urand(&rng));
        double m, v;
        sarco_hd_mean_var(x, n, 1, &m, &v);
        /* Welford over chunks of 7 (as GPU threads would), merged, agrees with the two-pass values */
        sarco_hd_moments all, part;
        sarco_hd_moments_init(&all);
        for (int64_t i0 = 0; i0 < n; i0 += 7) {
            sarco_hd_moments_init(&part);
            for (int64_t i = i0; i < n && i < i0 + 7; i++) sarco_hd_moments_push(&part, x[i]);
            sarco_hd_moments_merge(&all, &part);
        }
        sarco_hd_moments empty;
        sarco_hd_moments_init(&empty);
        sarco_hd_moments_merge(&all, &empty);
        assert_true(all.n == (float)n);
        near("welford mean", (double)n, all.mean, m, 1e-6, 0);
        near("welford var", (double)n, sarco_hd_moments_var(&all), v, 1e-3, 1e-9);
        free(x);
    }
    assert_true(sarco_hd_rstd(-1e-9f, 1e-5f) == 1.0f / sqrtf(1e-5f)); /* rounding below zero clamps */
}

static void test_instnorm_edges(void **state) {
    (void)state;
    /* S = 1: every (n, c) has one value, variance 0: the output is act(beta + residual) */
    float x[3] = {5.0f, -7.0f, 1e6f}, g[3] = {2, 3, 4}, b[3] = {0.5f, -0.25f, -2.0f}, r[3] = {1, 1, 1};
    float mean[3], rstd[3], y[3];
    for (int ch = 0; ch < 3; ch++) {
        sarco_hd_instnorm_stats(x, 1, 3, ch, 1e-5f, &mean[ch], &rstd[ch]);
        assert_true(mean[ch] == x[ch]);
    }
    sarco_hd_instnorm_apply_row(x, r, 3, mean, rstd, g, b, SARCO_ACT_LEAKY_RELU, 0.01f, y);
    assert_true(y[0] == 1.5f && y[1] == 0.75f && y[2] == -0.01f);
    /* channels-last partial sums over row ranges equal the strided stats */
    uint64_t rng = 3;
    int64_t S = 129, C = 33;
    float *v = malloc((size_t)(S * C) * sizeof *v);
    for (int64_t i = 0; i < S * C; i++) v[i] = (float)(2 + urand(&rng));
    double *sum = calloc((size_t)C, sizeof *sum), *sq = calloc((size_t)C, sizeof *sq), *mu = calloc((size_t)C, sizeof *mu);
    sarco_hd_instnorm_sum_rows(v, 50, C, sum); /* two ranges, as two threads would */
    sarco_hd_instnorm_sum_rows(v + 50 * C, S - 50, C, sum);
    for (int64_t ch = 0; ch < C; ch++) mu[ch] = sum[ch] / (double)S;
    sarco_hd_instnorm_sqdev_rows(v, 100, C, mu, sq);
    sarco_hd_instnorm_sqdev_rows(v + 100 * C, S - 100, C, mu, sq);
    for (int64_t ch = 0; ch < C; ch++) {
        float m1, r1;
        sarco_hd_instnorm_stats(v, S, C, ch, 1e-5f, &m1, &r1);
        near("instnorm mean", (double)ch, m1, mu[ch], 1e-7, 0);
        near("instnorm rstd", (double)ch, r1, 1 / sqrt(sq[ch] / (double)S + 1e-5), 1e-6, 0);
    }
    free(v);
    free(sum);
    free(sq);
    free(mu);
    /* affine with activation */
    near("affine", 2, sarco_hd_affine1(2.0f, 3.0f, -7.0f, SARCO_ACT_RELU, 0), 0, 0, 0);
    near("affine", 2, sarco_hd_affine1(2.0f, 3.0f, 1.0f, SARCO_ACT_NONE, 0), 7, 0, 0);
}

/* The CPU's one-pass shifted statistics agree with the two-pass double ones, even at mean/std ~ 1e5
 * (where an unshifted E[x^2] - E[x]^2 has no digits left) and with row ranges split as threads do. */
static void test_instnorm_one_pass(void **state) {
    (void)state;
    uint64_t rng = 11;
    const int64_t S = 3001, C = 5;
    const double offsets[3] = {0.0, 10.0, 1e4}, spreads[3] = {1.0, 1.0, 0.1};
    float *v = malloc((size_t)(S * C) * sizeof *v);
    for (int k = 0; k < 3; k++) {
        for (int64_t i = 0; i < S * C; i++) v[i] = (float)(offsets[k] + spreads[k] * (urand(&rng) - 0.5));
        v[3] = (float)(offsets[k] + 50 * spreads[k]); /* an outlier among the rows the shift is taken from */
        double shift[5], sum[5] = {0}, sq[5] = {0};
        sarco_hd_instnorm_shift(v, S, C, shift);
        for (int64_t r = 0; r < 1000; r++) sarco_hd_instnorm_moments_row(v + r * C, C, shift, sum, sq);
        for (int64_t r = 1000; r < S; r++) sarco_hd_instnorm_moments_row(v + r * C, C, shift, sum, sq);
        for (int64_t ch = 0; ch < C; ch++) {
            float m1, r1, m2, r2;
            sarco_hd_instnorm_stats(v, S, C, ch, 1e-5f, &m1, &r1);
            sarco_hd_instnorm_finish(sum[ch], sq[ch], shift[ch], S, 1e-5f, &m2, &r2);
            near("one-pass mean", offsets[k], m2, m1, 1e-7, 0);
            near("one-pass rstd", offsets[k], r2, r1, 2e-6, 0);
        }
    }
    free(v);
    /* S = 1: variance 0, the mean is the value */
    double shift1, s1 = 0, q1 = 0;
    float one = -3.5f, m, r;
    sarco_hd_instnorm_shift(&one, 1, 1, &shift1);
    sarco_hd_instnorm_moments_row(&one, 1, &shift1, &s1, &q1);
    sarco_hd_instnorm_finish(s1, q1, shift1, 1, 1e-5f, &m, &r);
    assert_true(m == -3.5f && r == 1.0f / sqrtf(1e-5f));
    /* the select-form leaky ReLU is exact on both sides and passes NaN and infinities */
    assert_true(sarco_hd_leaky(3.0f, 0.01f) == 3.0f && sarco_hd_leaky(-2.0f, 0.01f) == -2.0f * 0.01f);
    assert_true(sarco_hd_leaky(0.0f, 0.01f) == 0.0f && sarco_hd_leaky(-0.0f, 0.01f) == 0.0f);
    assert_true(isnan(sarco_hd_leaky(NAN, 0.01f)));
    assert_true(sarco_hd_leaky(INFINITY, 0.01f) == INFINITY && sarco_hd_leaky(-INFINITY, 0.01f) == -INFINITY);
}

static void test_pool_edges(void **state) {
    (void)state;
    /* 1D-like 2D pool: input (1, 5), C = 2, values x = 1..5 in channel 0 and -x in channel 1 */
    float x[10];
    for (int i = 0; i < 5; i++) {
        x[2 * i] = (float)(i + 1);
        x[2 * i + 1] = -(float)(i + 1);
    }
    int64_t in[2] = {1, 5};
    sarco_pool_desc d = {2, SARCO_POOL_AVG, {1, 2, 0}, {1, 2, 0}, {0, 1, 0}, 1, 1};
    /* windows [-1,1), [1,3), [3,5) (ceil mode's 4th would start at 5 >= in + pad - 1: PyTorch drops it) */
    int64_t o[2] = {0, 0}, out[2];
    assert_true(sarco_pool_out_shape(&d, in, out) && out[1] == 3);
    assert_true(sarco_hd_pool1(&d, in, 2, x, o, 0) == 0.5f); /* (pad + 1) / 2 with count_include_pad */
    d.count_include_pad = 0;
    assert_true(sarco_hd_pool1(&d, in, 2, x, o, 0) == 1.0f);
    o[1] = 2;
    assert_true(sarco_hd_pool1(&d, in, 2, x, o, 1) == -4.5f);
    d.k[1] = 3; /* [3, 6) reaches past the input into the right padding: the divisor stops at in + pad */
    d.count_include_pad = 1;
    assert_true(sarco_hd_pool1(&d, in, 2, x, o, 0) == 3.0f);
    d.k[1] = 4; /* [3, 7): past in + pad too; PyTorch still divides by 3 = 6 - 3 */
    assert_true(sarco_hd_pool1(&d, in, 2, x, o, 0) == 3.0f);
    d.k[1] = 2;
    d.kind = SARCO_POOL_MAX;
    o[1] = 0;
    assert_true(sarco_hd_pool1(&d, in, 2, x, o, 1) == -1.0f); /* padding is -inf, not 0 */
    x[2] = NAN;
    o[1] = 1;
    assert_true(isnan(sarco_hd_pool1(&d, in, 2, x, o, 0))); /* NaN propagates, as in PyTorch */
}

static void test_layout_maps(void **state) {
    (void)state;
    /* to_cl and from_cl are inverse permutations */
    int64_t n = 2, c = 5, s = 37, total = n * c * s;
    char *seen = calloc((size_t)total, 1);
    for (int64_t i = 0; i < total; i++) {
        int64_t j = sarco_hd_to_cl_src(i, c, s);
        assert_true(j >= 0 && j < total && !seen[j]);
        seen[j] = 1;
        /* y_cl[i] = x[j] and from_cl maps x position j back to i */
        assert_int_equal(sarco_hd_from_cl_src(j, c, s), i);
    }
    free(seen);
    /* patch maps: a bijection and each other's inverse, in 3D and 2D */
    sarco_patch_desc ds[2] = {{3, 2, 3, {8, 4, 6}, {4, 2, 3}}, {2, 1, 2, {6, 10, 0}, {3, 5, 0}}};
    for (int k = 0; k < 2; k++) {
        const sarco_patch_desc *d = &ds[k];
        int64_t vol = d->n * d->c * d->in[0] * d->in[1] * (d->nsp == 3 ? d->in[2] : 1);
        char *hit = calloc((size_t)vol, 1);
        for (int64_t i = 0; i < vol; i++) {
            int64_t v = sarco_hd_patch_vol_index(d, i);
            assert_true(v >= 0 && v < vol && !hit[v]);
            hit[v] = 1;
            assert_int_equal(sarco_hd_patch_tok_index(d, v), i);
        }
        free(hit);
    }
    /* token 1 of a (1, 4, 2, 2, 1) volume with 2^3 patches in a 2x1x1 grid starts at voxel (2, 0, 0) */
    sarco_patch_desc d1 = {3, 1, 1, {4, 2, 2}, {2, 2, 2}};
    assert_int_equal(sarco_hd_patch_vol_index(&d1, 8), 8);     /* (p1,p2,p3) = 0 of token 1 */
    assert_int_equal(sarco_hd_patch_vol_index(&d1, 8 + 1), 9); /* p3 = 1: next voxel along W */
    assert_int_equal(sarco_hd_patch_vol_index(&d1, 8 + 2), 10); /* p2 = 1: next row along H */
    /* concat: sizes {2, 0, 3}, inner 2 */
    int64_t sizes[3] = {2, 0, 3};
    int k;
    assert_int_equal(sarco_hd_concat_src(3, sizes, 5, 2, 3, &k), 3);
    assert_int_equal(k, 0);
    assert_int_equal(sarco_hd_concat_src(3, sizes, 5, 2, 4, &k), 0);
    assert_int_equal(k, 2);
    assert_int_equal(sarco_hd_concat_src(3, sizes, 5, 2, 10 + 5, &k), 6 + 1); /* outer 1, mid 2 -> input 2 row 0 */
    assert_int_equal(k, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activations),   cmocka_unit_test(test_binary_maps),
        cmocka_unit_test(test_softmax_lines), cmocka_unit_test(test_layernorm_rows),
        cmocka_unit_test(test_moments),       cmocka_unit_test(test_instnorm_edges),
        cmocka_unit_test(test_instnorm_one_pass),
        cmocka_unit_test(test_pool_edges),    cmocka_unit_test(test_layout_maps),
    };
    return cmocka_run_group_tests_name("kernels_hd", tests, NULL, NULL);
}
