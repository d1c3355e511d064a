/* The exact Euclidean distance transform: the line functions of kernels/edt_hd.h against a
 * brute-force nearest-point search on random lines, the separable 2D/3D transform against brute
 * force with anisotropic spacing, the public sarco_edt against scipy's distance_transform_edt
 * (test/gen_measure_reference.py), thread-count independence, and argument checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kernels/edt_hd.h"
#include "lib/measure/measure.h"
#include "measure_testutil.h"

/* |a - b| <= tol * max(1, |b|), with inf == inf */
static int close_rel(double a, double b, double tol) {
    if (isinf(b)) return isinf(a) && a > 0;
    return fabs(a - b) <= tol * fmax(1.0, fabs(b));
}

static void test_line_binary_bruteforce(void **state) {
    (void)state;
    trng r = {0x1234567u};
    uint8_t site[70];
    float d[3 * 70];
    for (int it = 0; it < 2000; it++) {
        int64_t n = 1 + trng_int(&r, 64);
        double s = 0.1 + 3.0 * trng_uniform(&r), dens = trng_uniform(&r) * 0.4;
        for (int64_t i = 0; i < n; i++) site[i] = (uint8_t)((trng_uniform(&r) < dens) ? 1 + trng_int(&r, 3) : 0);
        uint8_t bit = (uint8_t)(1 + trng_int(&r, 2)); /* 1 or 2 */
        sarco_edt_line_binary(n, s * s, site, 1, bit, d, 3); /* strided output */
        for (int64_t i = 0; i < n; i++) {
            double best = INFINITY;
            for (int64_t j = 0; j < n; j++)
                if (site[j] & bit) best = fmin(best, (s * (double)(i - j)) * (s * (double)(i - j)));
            if (!close_rel(d[3 * i], best, 1e-6)) fail_msg("n %lld i %lld: %g vs %g", (long long)n, (long long)i, d[3 * i], best);
        }
    }
}

static void test_line_envelope_bruteforce(void **state) {
    (void)state;
    trng r = {0xabcdefu};
    enum { N = 80 };
    float f[N], d[2 * N];
    int32_t v[N];
    double fv[N], z[N + 1];
    for (int it = 0; it < 4000; it++) {
        int64_t n = 1 + trng_int(&r, N);
        double s = 0.05 + 4.0 * trng_uniform(&r), inf_share = trng_uniform(&r);
        for (int64_t i = 0; i < n; i++) {
            /* mixes exact ties (small integers), large values and no-site voxels */
            double u = trng_uniform(&r);
            f[i] = u < inf_share ? INFINITY : (it % 3 == 0 ? (float)trng_int(&r, 5) : (float)(2000.0 * trng_uniform(&r)));
        }
        int inplace = it & 1;
        float *out = inplace ? f : d;
        float orig[N];
        memcpy(orig, f, sizeof orig);
        sarco_edt_line(n, s * s, f, 1, out, inplace ? 1 : 2, v, fv, z);
        for (int64_t i = 0; i < n; i++) {
            double best = INFINITY;
            for (int64_t j = 0; j < n; j++)
                if (isfinite(orig[j])) best = fmin(best, (double)orig[j] + s * s * (double)(i - j) * (double)(i - j));
            float got = out[inplace ? i : 2 * i];
            if (!close_rel(got, best, 2e-7)) fail_msg("it %d n %lld i %lld: %.9g vs %.9g", it, (long long)n, (long long)i, got, best);
        }
    }
}

/* Full transform of random sparse sites against the nearest site by exhaustive search. */
static void check_edt_bruteforce(int ndim, const int64_t *dims, const double *sp, double density, uint64_t seed,
                                 int use_query) {
    trng r = {seed};
    int64_t d3[3] = {1, 1, 1};
    double s3[3] = {1, 1, 1};
    for (int a = 0; a < ndim; a++) {
        d3[3 - ndim + a] = dims[a];
        s3[3 - ndim + a] = sp[a];
    }
    int64_t n = d3[0] * d3[1] * d3[2];
    uint8_t *sites = calloc((size_t)n, 1), *query = calloc((size_t)n, 1);
    float *out = malloc((size_t)n * sizeof *out);
    for (int64_t i = 0; i < n; i++) {
        sites[i] = (uint8_t)(trng_uniform(&r) < density ? 4 : 0) | (uint8_t)(trng_uniform(&r) < 0.5 ? 1 : 0);
        query[i] = trng_uniform(&r) < 0.1 ? 8 : 0;
    }
    assert_int_equal(sarco_edt_sq(NULL, ndim, dims, sp, sites, 4, use_query ? query : NULL, 8, out), SARCO_OK);
    for (int64_t i = 0; i < n; i++) {
        if (use_query && !query[i]) continue;
        int64_t z = i / (d3[1] * d3[2]), y = i / d3[2] % d3[1], x = i % d3[2];
        double best = INFINITY;
        for (int64_t j = 0; j < n; j++) {
            if (!(sites[j] & 4)) continue;
            int64_t zj = j / (d3[1] * d3[2]), yj = j / d3[2] % d3[1], xj = j % d3[2];
            double dz = (double)(z - zj) * s3[0], dy = (double)(y - yj) * s3[1], dx = (double)(x - xj) * s3[2];
            best = fmin(best, dz * dz + dy * dy + dx * dx);
        }
        if (!close_rel(out[i], best, 1e-6))
            fail_msg("ndim %d voxel %lld: %.9g vs brute force %.9g", ndim, (long long)i, out[i], best);
    }
    free(sites);
    free(query);
    free(out);
}

static void test_edt_2d_bruteforce(void **state) {
    (void)state;
    int64_t d1[2] = {23, 31}, d2[2] = {1, 40}, d3[2] = {37, 1};
    double s1[2] = {0.7, 1.9}, s2[2] = {2.0, 0.3}, s3[2] = {0.45, 5.0};
    check_edt_bruteforce(2, d1, s1, 0.02, 11, 0);
    check_edt_bruteforce(2, d1, s1, 0.3, 12, 1);
    check_edt_bruteforce(2, d2, s2, 0.05, 13, 0);
    check_edt_bruteforce(2, d3, s3, 0.05, 14, 0);
    check_edt_bruteforce(2, d1, s1, 0.0005, 15, 0); /* likely one site or none */
}

static void test_edt_3d_bruteforce(void **state) {
    (void)state;
    int64_t d1[3] = {9, 14, 19}, d2[3] = {5, 33, 3};
    double s1[3] = {3.0, 0.8, 1.1}, s2[3] = {0.5, 0.5, 2.5};
    check_edt_bruteforce(3, d1, s1, 0.01, 21, 0);
    check_edt_bruteforce(3, d1, s1, 0.2, 22, 1);
    check_edt_bruteforce(3, d2, s2, 0.03, 23, 0);
    check_edt_bruteforce(3, d2, s2, 0.03, 24, 1);
}

/* The public transform against scipy.ndimage.distance_transform_edt(pred == 1, sampling). */
static void test_edt_vs_scipy(void **state) {
    (void)state;
    static const struct {
        const char *name;
        double sp[3];
    } cases[] = {{"blobs2d", {0.7, 1.3, 0}}, {"blobs3d", {2.5, 0.8, 1.1}}, {"thin3d", {5.0, 0.6, 0.75}}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char p1[256], p2[256];
        snprintf(p1, sizeof p1, MDATA "%s_pred.npy", cases[c].name);
        snprintf(p2, sizeof p2, MDATA "%s_edt.npy", cases[c].name);
        int nd, nd2;
        int64_t dims[3], dims2[3];
        uint8_t *lab = npy_load(p1, "|u1", &nd, dims);
        float *ref = npy_load(p2, "<f4", &nd2, dims2);
        assert_non_null(lab);
        assert_non_null(ref);
        assert_int_equal(nd, nd2);
        int64_t n = 1;
        for (int a = 0; a < nd; a++) n *= dims[a];
        uint8_t *mask = malloc((size_t)n);
        float *out = malloc((size_t)n * sizeof *out);
        for (int64_t i = 0; i < n; i++) mask[i] = lab[i] == 1;
        assert_int_equal(sarco_edt(NULL, nd, dims, cases[c].sp, mask, out), SARCO_OK);
        double worst = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double e = fabs((double)out[i] - (double)ref[i]) / fmax(1.0, (double)ref[i]);
            if (e > worst) worst = e;
            if (mask[i] == 0 && out[i] != 0.0f) fail_msg("%s: background voxel %lld has distance %g", cases[c].name, (long long)i, out[i]);
        }
        print_message("edt vs scipy %s: max relative difference %.3g\n", cases[c].name, worst);
        assert_true(worst < 1e-6);
        free(lab);
        free(ref);
        free(mask);
        free(out);
    }
}

/* The same answer with 1, 2 and 5 threads, bit for bit. */
static void test_edt_threads(void **state) {
    (void)state;
    int64_t dims[3] = {17, 29, 23};
    double sp[3] = {1.7, 0.9, 0.6};
    int64_t n = dims[0] * dims[1] * dims[2];
    trng r = {77};
    uint8_t *mask = malloc((size_t)n);
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) mask[i] = trng_uniform(&r) < 0.97;
    sarco_context c1 = {0}, c;
    c1.opts.threads = 1;
    assert_int_equal(sarco_edt(&c1, 3, dims, sp, mask, a), SARCO_OK);
    for (int t = 2; t <= 5; t += 3) {
        c = c1;
        c.opts.threads = t;
        assert_int_equal(sarco_edt(&c, 3, dims, sp, mask, b), SARCO_OK);
        assert_memory_equal(a, b, (size_t)n * 4);
    }
    free(mask);
    free(a);
    free(b);
}

/* No zero voxel: +inf everywhere (scipy returns distances to a virtual point here; we refuse to). */
static void test_edt_no_background(void **state) {
    (void)state;
    int64_t dims[2] = {4, 5};
    double sp[2] = {1, 1};
    uint8_t mask[20];
    float out[20];
    memset(mask, 1, sizeof mask);
    assert_int_equal(sarco_edt(NULL, 2, dims, sp, mask, out), SARCO_OK);
    for (int i = 0; i < 20; i++) assert_true(isinf(out[i]) && out[i] > 0);
    /* a single zero voxel in a corner: distance = Euclidean norm of the offset */
    mask[0] = 0;
    double sp2[2] = {2.0, 0.5};
    assert_int_equal(sarco_edt(NULL, 2, dims, sp2, mask, out), SARCO_OK);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 5; x++) assert_true(close_rel(out[y * 5 + x], hypot(2.0 * y, 0.5 * x), 1e-6));
}

static void test_edt_bad_args(void **state) {
    (void)state;
    sarco_context c = {0};
    int64_t dims[3] = {3, 4, 5};
    double sp[3] = {1, 1, 1};
    uint8_t mask[60] = {0};
    float out[60];
    assert_int_equal(sarco_edt(&c, 4, dims, sp, mask, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(c.err, "ndim"));
    assert_int_equal(sarco_edt(&c, 1, dims, sp, mask, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_edt(&c, 3, dims, sp, NULL, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_edt(&c, 3, dims, sp, mask, NULL), SARCO_ERR_INVALID_ARGUMENT);
    int64_t bad[3] = {3, 0, 5};
    assert_int_equal(sarco_edt(&c, 3, bad, sp, mask, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(c.err, "dims[1]"));
    double bsp[3] = {1, NAN, 1};
    assert_int_equal(sarco_edt(&c, 3, dims, bsp, mask, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(c.err, "spacing[1]"));
    bsp[1] = -1.0;
    assert_int_equal(sarco_edt(&c, 3, dims, bsp, mask, out), SARCO_ERR_INVALID_ARGUMENT);
    int64_t huge[3] = {INT64_MAX / 2, 4, 4};
    assert_int_equal(sarco_edt(&c, 3, huge, sp, mask, out), SARCO_ERR_LIMIT);
    /* a memory limit below what the transform needs fails cleanly */
    c.opts.memory_limit = 8;
    assert_int_equal(sarco_edt(&c, 3, dims, sp, mask, out), SARCO_ERR_OUT_OF_MEMORY);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_binary_bruteforce), cmocka_unit_test(test_line_envelope_bruteforce),
        cmocka_unit_test(test_edt_2d_bruteforce),      cmocka_unit_test(test_edt_3d_bruteforce),
        cmocka_unit_test(test_edt_vs_scipy),           cmocka_unit_test(test_edt_threads),
        cmocka_unit_test(test_edt_no_background),      cmocka_unit_test(test_edt_bad_args),
    };
    return cmocka_run_group_tests_name("edt", tests, NULL, NULL);
}
