/* The measurement ops of the backend op table (edt_axis, label_stats) and lib/measure's use of them,
 * once per backend: the CPU always, CUDA when a CUDA context can be created (else "SKIP cuda: <reason>").
 *   - the SARCO_HD helpers the GPU kernels are made of, on the CPU: line starts and scratch layout, the
 *     label_stats voxel order and per-thread run merging emulated thread by thread, the line functions on
 *     lines of length 1, without sites, all sites, and longer than a GPU block;
 *   - edt_axis passes (sarco_edt_sq_on) against brute force, and bit for bit against lib/measure's CPU
 *     transform (sarco_edt_sq) on shapes with unit axes, long lines, many short lines (more than one
 *     per GPU thread), empty and full site sets, with the query skip and the fused square root;
 *   - label_stats against direct sums: counts, min, max and window counts exact; sums exact for
 *     integer-valued images and within 1e-12 x sum |x| (resp. sum x^2) of a long-double sum otherwise
 *     (atomics add in any order: the rounding of n additions differs, typically by ~sqrt(n) eps);
 *     shared-table (<= 256 labels) and global paths, labels past nlabels left out, NaN/inf, n = 0;
 *   - sarco_edt, sarco_measure_labels and sarco_evaluate_labels on a context of this backend against
 *     ctx = NULL (the CPU loops): identical bits (measure: integer image; else the tolerance above);
 *   - argument errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/edt_hd.h"
#include "kernels/measure_hd.h"
#include "lib/measure/measure.h"
#include "lib/ops/ops.h"

/* xorshift64*, seeded */
typedef struct trng {
    uint64_t s;
} trng;
static uint64_t trng_next(trng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}
static double trng_uniform(trng *r) { return (double)(trng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static int64_t trng_int(trng *r, int64_t n) { return (int64_t)(trng_uniform(r) * (double)n); }

typedef struct B {
    sarco_context *ctx;
    sarco_backend *be;
} B;

static void *dput(B *b, const void *host, size_t bytes) {
    void *p = NULL;
    assert_int_equal(b->be->ops->alloc(b->be, bytes, &p), SARCO_OK);
    if (host) assert_int_equal(b->be->ops->upload(b->be, p, host, bytes), SARCO_OK);
    return p;
}

static void dget(B *b, void *host, const void *dev, size_t bytes) {
    assert_int_equal(b->be->ops->download(b->be, host, dev, bytes), SARCO_OK);
}

/* ---- the SARCO_HD helpers (CPU) ------------------------------------------------------------------ */

static void test_hd_line_start(void **state) {
    (void)state;
    const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {1, 9, 1}, {4, 1, 6}, {2, 3, 1}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        const int64_t *d = shapes[k], total = d[0] * d[1] * d[2];
        for (int axis = 0; axis < 3; axis++) {
            int64_t S = 1;
            for (int a = axis + 1; a < 3; a++) S *= d[a];
            const int64_t n = d[axis], lines = total / n;
            int *seen = calloc((size_t)total, sizeof *seen);
            for (int64_t l = 0; l < lines; l++) {
                int64_t b = sarco_edt_line_start(l, n, S);
                /* the line's voxels differ only in the coordinate along `axis`, which runs 0..n-1 */
                int64_t c[3] = {b / (d[1] * d[2]), b / d[2] % d[1], b % d[2]};
                assert_int_equal(c[axis], 0);
                for (int64_t q = 0; q < n; q++) seen[b + q * S]++;
            }
            for (int64_t i = 0; i < total; i++)
                if (seen[i] != 1) fail_msg("shape %zu axis %d: voxel %lld seen %d times", k, axis, (long long)i, seen[i]);
            free(seen);
        }
    }
}

static void test_hd_scratch(void **state) {
    (void)state;
    static double buf[4096];
    const int64_t ns[] = {1, 2, 3, 7, 128, 300};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        const int64_t n = ns[k];
        const size_t bytes = sarco_edt_scratch_bytes(n);
        assert_int_equal(bytes % 16, 0);
        int32_t *v;
        double *fv, *z;
        sarco_edt_scratch_split(buf, n, &v, &fv, &z);
        char *lo = (char *)buf, *hi = lo + bytes;
        assert_true((char *)fv >= lo && (char *)(fv + n) <= (char *)z);
        assert_true((char *)(z + n + 1) <= (char *)v && (char *)(v + n) <= hi);
        assert_int_equal((uintptr_t)z % 8, 0);
        /* a second thread's block starts where this one ends, aligned like the first */
        assert_int_equal((uintptr_t)(lo + bytes) % 8, 0);
    }
}

static void test_hd_line_edges(void **state) {
    (void)state;
    enum { N = 1000 }; /* longer than a GPU block of lines */
    static uint8_t site[N];
    static float f[N], d[N];
    static int32_t v[N];
    static double fv[N], z[N + 1];
    const double s = 0.7, s2 = s * s;
    /* length 1: a site is 0, none is +inf; the envelope keeps a finite value and +inf */
    site[0] = 1;
    sarco_edt_line_binary(1, s2, site, 1, 1, d, 1);
    assert_true(d[0] == 0.0f);
    site[0] = 0;
    sarco_edt_line_binary(1, s2, site, 1, 1, d, 1);
    assert_true(isinf(d[0]));
    f[0] = 2.5f;
    sarco_edt_line(1, s2, f, 1, d, 1, v, fv, z);
    assert_true(d[0] == 2.5f);
    f[0] = INFINITY;
    sarco_edt_line(1, s2, f, 1, d, 1, v, fv, z);
    assert_true(isinf(d[0]));
    assert_false(sarco_edt_line_any(site, 1, 1, 1));
    /* a long line without sites, then all sites */
    memset(site, 0, sizeof site);
    sarco_edt_line_binary(N, s2, site, 1, 1, d, 1);
    for (int i = 0; i < N; i++) assert_true(isinf(d[i]));
    for (int i = 0; i < N; i++) f[i] = INFINITY;
    sarco_edt_line(N, s2, f, 1, d, 1, v, fv, z);
    for (int i = 0; i < N; i++) assert_true(isinf(d[i]));
    assert_false(sarco_edt_line_any(site, N, 1, 1));
    memset(site, 3, sizeof site);
    sarco_edt_line_binary(N, s2, site, 1, 2, d, 1);
    for (int i = 0; i < N; i++) assert_true(d[i] == 0.0f);
    for (int i = 0; i < N; i++) f[i] = 0.0f;
    sarco_edt_line(N, s2, f, 1, f, 1, v, fv, z);
    for (int i = 0; i < N; i++) assert_true(f[i] == 0.0f);
    /* one site at each end of the long line, and only the last voxel found by line_any */
    memset(site, 0, sizeof site);
    site[0] = site[N - 1] = 4;
    sarco_edt_line_binary(N, s2, site, 1, 4, d, 1);
    for (int i = 0; i < N; i++) {
        double j = i < N - 1 - i ? i : N - 1 - i;
        assert_true(d[i] == (float)(s2 * j * j));
    }
    site[0] = 0;
    assert_true(sarco_edt_line_any(site, N, 1, 4));
    assert_false(sarco_edt_line_any(site, N - 1, 1, 4));
    assert_false(sarco_edt_line_any(site, N, 1, 3));
}

/* label_stats' GPU traversal emulated warp by warp: every voxel visited once, the index past n stays
 * past n, and per-thread runs merged on label changes give the direct sums. */
static void test_hd_stats_order(void **state) {
    (void)state;
    const int64_t ns[] = {0, 1, 31, 32, 511, 512, 513, 5000, 70001};
    const int64_t nws[] = {1, 3, 8, 64, 1000};
    trng r = {5};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++) {
        const int64_t n = ns[a];
        uint16_t *lab = malloc((size_t)(n ? n : 1) * 2);
        float *img = malloc((size_t)(n ? n : 1) * 4);
        /* runs of labels 0..9, integer intensities: sums are exact in any order */
        uint16_t cur = 0;
        for (int64_t i = 0; i < n; i++) {
            if (trng_uniform(&r) < 0.02) cur = (uint16_t)trng_int(&r, 10);
            lab[i] = cur;
            img[i] = (float)(trng_int(&r, 2000) - 1000);
        }
        sarco_hu_acc ref[10], got[10];
        for (int l = 0; l < 10; l++) sarco_hu_acc_init(&ref[l]);
        for (int64_t i = 0; i < n; i++) sarco_hu_acc_add(&ref[lab[i]], 1, img[i]);
        for (size_t b = 0; b < sizeof nws / sizeof *nws; b++) {
            const int64_t nw = nws[b];
            uint8_t *seen = calloc((size_t)(n ? n : 1), 1);
            for (int l = 0; l < 10; l++) sarco_hu_acc_init(&got[l]);
            for (int64_t w = 0; w < nw; w++)
                for (int lane = 0; lane < 32; lane++) {
                    sarco_hu_acc run;
                    sarco_hu_acc_init(&run);
                    int64_t c = -1, prev = -1, step;
                    for (step = 0;; step++) {
                        int64_t i = sarco_stats_voxel(n, w, nw, lane, step);
                        if (i < 0) break;
                        assert_true(i > prev);
                        prev = i;
                        if (seen[i]++) fail_msg("n %lld nw %lld: voxel %lld visited twice", (long long)n, (long long)nw, (long long)i);
                        if (lab[i] != c) {
                            if (c >= 0) sarco_hu_acc_merge(&got[c], &run);
                            sarco_hu_acc_init(&run);
                            c = lab[i];
                        }
                        sarco_hu_acc_add(&run, 1, img[i]);
                    }
                    for (int k = 1; k < 40; k++) assert_int_equal(sarco_stats_voxel(n, w, nw, lane, step + k), -1);
                    if (c >= 0) sarco_hu_acc_merge(&got[c], &run);
                }
            for (int64_t i = 0; i < n; i++)
                if (seen[i] != 1) fail_msg("n %lld nw %lld: voxel %lld visited %d times", (long long)n, (long long)nw, (long long)i, seen[i]);
            assert_memory_equal(got, ref, sizeof ref);
            free(seen);
        }
        free(lab);
        free(img);
    }
}

/* ---- edt_axis ------------------------------------------------------------------------------------ */

/* Random sites with whole lines empty or full along each axis, so every pass sees both. */
static uint8_t *make_sites(const int64_t d3[3], double density, uint64_t seed) {
    trng r = {seed};
    const int64_t n = d3[0] * d3[1] * d3[2];
    uint8_t *s = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
        s[i] = (uint8_t)((trng_uniform(&r) < density ? 4 : 0) | (trng_uniform(&r) < 0.05 ? 8 : 0));
    if (density > 0.0 && density < 1.0 && d3[2] > 2) {
        const int64_t rows = d3[0] * d3[1];
        for (int64_t k = 0; k < rows; k += 5) memset(s + k * d3[2], 4, (size_t)d3[2]);             /* full rows */
        for (int64_t k = 2; k < rows; k += 7)
            for (int64_t x = 0; x < d3[2]; x++) s[k * d3[2] + x] &= 8; /* empty rows */
    }
    return s;
}

/* The op's passes against sarco_edt_sq: the same bits (at the query voxels with a query), and the fused
 * square root equal to sqrtf of the squared result. */
static void check_edt_vs_cpu(B *b, int nd, const int64_t *dims, const double *sp, double density, uint64_t seed) {
    int64_t d3[3] = {1, 1, 1};
    for (int a = 0; a < nd; a++) d3[3 - nd + a] = dims[a];
    const int64_t n = d3[0] * d3[1] * d3[2];
    uint8_t *sites = make_sites(d3, density, seed);
    float *ref = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
    void *ds = dput(b, sites, (size_t)n), *df = dput(b, NULL, (size_t)n * 4);
    for (int mode = 0; mode < 3; mode++) { /* 0 plain, 1 query bit 8, 2 square root */
        const int q = mode == 1;
        assert_int_equal(sarco_edt_sq(NULL, nd, dims, sp, sites, 4, q ? sites : NULL, 8, ref), SARCO_OK);
        sarco_status s = sarco_edt_sq_on(b->be, nd, dims, sp, ds, 4, q ? ds : NULL, 8, mode == 2, df);
        if (s != SARCO_OK) fail_msg("edt_axis: %s", sarco_last_error(b->ctx));
        dget(b, got, df, (size_t)n * 4);
        for (int64_t i = 0; i < n; i++) {
            if (q && !(sites[i] & 8) && nd > 1) continue;
            float want = mode == 2 ? sqrtf(ref[i]) : ref[i];
            if (memcmp(&want, &got[i], 4) != 0)
                fail_msg("%s: dims %lld x %lld x %lld, density %g, mode %d: voxel %lld is %.9g, CPU %.9g",
                         b->be->ops->name, (long long)d3[0], (long long)d3[1], (long long)d3[2], density, mode,
                         (long long)i, got[i], want);
        }
    }
    b->be->ops->free(b->be, ds);
    b->be->ops->free(b->be, df);
    free(sites);
    free(ref);
    free(got);
}

static void test_edt_ops_vs_cpu(void **state) {
    B *b = *state;
    const struct {
        int nd;
        int64_t dims[3];
        double sp[3];
    } cases[] = {
        {1, {1, 0, 0}, {0.5, 0, 0}},           {1, {700, 0, 0}, {1.3, 0, 0}},         {2, {1, 1, 0}, {1, 2, 0}},
        {2, {37, 1, 0}, {0.45, 5.0, 0}},       {2, {1, 300, 0}, {2.0, 0.3, 0}},       {2, {61, 83, 0}, {0.7, 1.9, 0}},
        {3, {1, 1, 1}, {1, 1, 1}},             {3, {1, 40, 33}, {3, 0.8, 1.1}},       {3, {19, 1, 23}, {0.5, 2, 0.9}},
        {3, {9, 14, 1}, {3.0, 0.8, 1.1}},      {3, {17, 29, 23}, {1.7, 0.9, 0.6}},    {3, {3, 1000, 37}, {1.5, 0.78, 0.6}},
        {3, {300, 5, 4}, {0.9, 1.0, 2.2}},     {3, {2, 600, 600}, {2.5, 0.7, 0.7}},   {3, {6, 130, 257}, {1.5, 0.78, 0.78}},
    };
    const double dens[] = {0.0, 1.0, 0.002, 0.3};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (size_t k = 0; k < sizeof dens / sizeof *dens; k++) {
            const int64_t n = cases[c].dims[0] * (cases[c].nd > 1 ? cases[c].dims[1] : 1) *
                              (cases[c].nd > 2 ? cases[c].dims[2] : 1);
            if (n > 100000 && (k == 0 || k == 1)) continue; /* the big shapes: mixed sites only */
            check_edt_vs_cpu(b, cases[c].nd, cases[c].dims, cases[c].sp, dens[k], 100 * c + k);
        }
}

/* The op's passes against the nearest site by exhaustive search, anisotropic spacing. */
static void test_edt_ops_bruteforce(void **state) {
    B *b = *state;
    const int64_t dims[3] = {7, 12, 9}, n = 7 * 12 * 9;
    const double sp[3] = {2.5, 0.6, 1.1};
    for (uint64_t seed = 1; seed <= 3; seed++) {
        uint8_t *sites = make_sites(dims, 0.03 * (double)seed, seed);
        float *got = malloc((size_t)n * 4);
        void *ds = dput(b, sites, (size_t)n), *df = dput(b, NULL, (size_t)n * 4);
        assert_int_equal(sarco_edt_sq_on(b->be, 3, dims, sp, ds, 4, NULL, 0, 1, df), SARCO_OK);
        dget(b, got, df, (size_t)n * 4);
        for (int64_t i = 0; i < n; i++) {
            double best = INFINITY;
            for (int64_t j = 0; j < n; j++) {
                if (!(sites[j] & 4)) continue;
                double dz = (double)(i / 108 - j / 108) * sp[0], dy = (double)(i / 9 % 12 - j / 9 % 12) * sp[1],
                       dx = (double)(i % 9 - j % 9) * sp[2];
                best = fmin(best, dz * dz + dy * dy + dx * dx);
            }
            best = sqrt(best);
            if (!(isinf(best) ? isinf(got[i]) : fabs(got[i] - best) <= 1e-6 * fmax(1.0, best)))
                fail_msg("%s: voxel %lld: %.9g vs brute force %.9g", b->be->ops->name, (long long)i, got[i], best);
        }
        b->be->ops->free(b->be, ds);
        b->be->ops->free(b->be, df);
        free(sites);
        free(got);
    }
}

/* ---- label_stats ----------------------------------------------------------------------------------- */

typedef struct ref_stats {
    int64_t count, finite, muscle, imat;
    long double sum, sumsq, abssum;
    double min, max;
} ref_stats;

/* labels in coherent runs (or uniformly random), values integer or not, with NaN/inf sprinkled in */
static void make_labels(int64_t n, int maxlab, int runs, int integer, uint64_t seed, uint16_t *lab, float *img) {
    trng r = {seed};
    uint16_t cur = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!runs || trng_uniform(&r) < 0.01) cur = (uint16_t)trng_int(&r, maxlab + 1);
        lab[i] = cur;
        double u = trng_uniform(&r);
        float v = integer ? (float)(trng_int(&r, 1600) - 400) : (float)(1600.0 * trng_uniform(&r) - 400.0);
        img[i] = u < 0.01 ? NAN : u < 0.012 ? (u < 0.011 ? INFINITY : -INFINITY) : v;
    }
}

static void check_stats(B *b, int64_t n, int maxlab, int64_t nlabels, int runs, int integer, int with_image,
                        uint64_t seed) {
    uint16_t *lab = calloc((size_t)(n ? n : 1), 2);
    float *img = calloc((size_t)(n ? n : 1), 4);
    make_labels(n, maxlab, runs, integer, seed, lab, img);
    ref_stats *ref = calloc((size_t)nlabels, sizeof *ref);
    for (int64_t l = 0; l < nlabels; l++) {
        ref[l].min = INFINITY;
        ref[l].max = -INFINITY;
    }
    for (int64_t i = 0; i < n; i++) {
        if (lab[i] >= nlabels) continue;
        ref_stats *e = &ref[lab[i]];
        e->count++;
        if (!with_image || !isfinite(img[i])) continue;
        double x = img[i];
        e->finite++;
        e->sum += x;
        e->sumsq += (long double)x * x;
        e->abssum += fabs(x);
        e->min = fmin(e->min, x);
        e->max = fmax(e->max, x);
        e->muscle += x >= -29.0 && x <= 150.0;
        e->imat += x >= -190.0 && x <= -30.0;
    }
    void *dl = dput(b, lab, (size_t)(n ? n : 1) * 2), *di = with_image ? dput(b, img, (size_t)(n ? n : 1) * 4) : NULL;
    void *da = dput(b, NULL, (size_t)nlabels * sizeof(sarco_hu_acc));
    sarco_status s = b->be->ops->label_stats(b->be, n, dl, di, nlabels, da);
    if (s != SARCO_OK) fail_msg("label_stats: %s", sarco_last_error(b->ctx));
    sarco_hu_acc *got = malloc((size_t)nlabels * sizeof *got);
    dget(b, got, da, (size_t)nlabels * sizeof *got);
    for (int64_t l = 0; l < nlabels; l++) {
        const sarco_hu_acc *g = &got[l];
        const ref_stats *e = &ref[l];
        if (g->count != e->count || g->finite != e->finite || g->muscle != e->muscle || g->imat != e->imat ||
            g->min != e->min || g->max != e->max)
            fail_msg("%s n %lld label %lld: counts %lld/%lld/%lld/%lld min %g max %g, expected %lld/%lld/%lld/%lld %g %g",
                     b->be->ops->name, (long long)n, (long long)l, (long long)g->count, (long long)g->finite,
                     (long long)g->muscle, (long long)g->imat, g->min, g->max, (long long)e->count,
                     (long long)e->finite, (long long)e->muscle, (long long)e->imat, e->min, e->max);
        /* integer values: every partial sum is exact, so any order gives the exact sum */
        const double tol = integer ? 0.0 : 1e-12;
        if (fabsl((long double)g->sum - e->sum) > tol * e->abssum || fabsl((long double)g->sumsq - e->sumsq) > tol * e->sumsq)
            fail_msg("%s n %lld label %lld: sums %.17g %.17g, expected %.17Lg %.17Lg", b->be->ops->name, (long long)n,
                     (long long)l, g->sum, g->sumsq, e->sum, e->sumsq);
    }
    b->be->ops->free(b->be, dl);
    b->be->ops->free(b->be, di);
    b->be->ops->free(b->be, da);
    free(lab);
    free(img);
    free(ref);
    free(got);
}

static void test_label_stats(void **state) {
    B *b = *state;
    check_stats(b, 0, 3, 4, 1, 1, 1, 1);               /* nothing: initial values */
    check_stats(b, 1, 3, 4, 1, 1, 1, 2);
    check_stats(b, 200003, 9, 10, 1, 1, 1, 3);         /* runs, integer HU: exact */
    check_stats(b, 200003, 9, 10, 0, 1, 1, 4);         /* random labels */
    check_stats(b, 200003, 9, 10, 1, 0, 1, 5);         /* non-integer values */
    check_stats(b, 100000, 255, 256, 0, 0, 1, 6);      /* largest shared table */
    check_stats(b, 100000, 3000, 3001, 1, 1, 1, 7);    /* global path */
    check_stats(b, 100000, 3000, 257, 0, 0, 1, 8);     /* labels past nlabels left out */
    check_stats(b, 65537, 65535, 65536, 0, 1, 1, 9);   /* every label value */
    check_stats(b, 50000, 20, 21, 1, 1, 0, 10);        /* no image */
}

/* ---- lib/measure on a context of this backend -------------------------------------------------------- */

static void test_public_on_backend(void **state) {
    B *b = *state;
    /* sarco_edt: the same bits as the CPU loops */
    {
        const int64_t dims[3] = {23, 150, 131}, n = 23 * 150 * 131;
        const double sp[3] = {2.0, 0.7, 0.8};
        uint8_t *s = make_sites(dims, 0.01, 77), *mask = malloc((size_t)n);
        for (int64_t i = 0; i < n; i++) mask[i] = !(s[i] & 4);
        float *a = malloc((size_t)n * 4), *c = malloc((size_t)n * 4);
        assert_int_equal(sarco_edt(NULL, 3, dims, sp, mask, a), SARCO_OK);
        assert_int_equal(sarco_edt(b->ctx, 3, dims, sp, mask, c), SARCO_OK);
        assert_memory_equal(a, c, (size_t)n * 4);
        assert_int_equal(sarco_edt(NULL, 2, dims + 1, sp + 1, mask, a), SARCO_OK);
        assert_int_equal(sarco_edt(b->ctx, 2, dims + 1, sp + 1, mask, c), SARCO_OK);
        assert_memory_equal(a, c, (size_t)(150 * 131) * 4);
        free(s);
        free(mask);
        free(a);
        free(c);
    }
    /* sarco_measure_labels: integer HU -> identical; otherwise counts identical, statistics to 1e-12 */
    for (int integer = 1; integer >= 0; integer--) {
        const int64_t dims[3] = {31, 64, 70}, n = 31 * 64 * 70;
        const double sp[3] = {1.5, 0.8, 0.8};
        uint16_t *lab = malloc((size_t)n * 2);
        float *img = malloc((size_t)n * 4);
        make_labels(n, 12, 1, integer, 40 + integer, lab, img);
        sarco_label_measure *x, *y;
        size_t cx, cy;
        assert_int_equal(sarco_measure_labels(NULL, 3, dims, sp, lab, img, NULL, 0, &x, &cx), SARCO_OK);
        assert_int_equal(sarco_measure_labels(b->ctx, 3, dims, sp, lab, img, NULL, 0, &y, &cy), SARCO_OK);
        assert_int_equal(cx, cy);
        for (size_t k = 0; k < cx; k++) {
            if (integer) {
                assert_memory_equal(&x[k], &y[k], sizeof *x);
                continue;
            }
            assert_int_equal(x[k].voxels, y[k].voxels);
            assert_int_equal(x[k].finite_voxels, y[k].finite_voxels);
            assert_true(x[k].min == y[k].min && x[k].max == y[k].max && x[k].volume_ml == y[k].volume_ml);
            assert_true(x[k].fraction_muscle == y[k].fraction_muscle && x[k].fraction_imat == y[k].fraction_imat);
            assert_true(fabs(x[k].mean - y[k].mean) <= 1e-12 * fmax(1.0, fabs(x[k].mean)));
            assert_true(fabs(x[k].sd - y[k].sd) <= 1e-10 * x[k].sd);
        }
        sarco_label_measures_free(x);
        sarco_label_measures_free(y);
        free(lab);
        free(img);
    }
    /* sarco_evaluate_labels: identical (the distances are the same bits, the rest runs on the host) */
    {
        const int64_t dims[3] = {20, 48, 44}, d3[3] = {20, 48, 44}, n = 20 * 48 * 44;
        const double sp[3] = {2.5, 0.8, 1.1};
        uint16_t *p = calloc((size_t)n, 2), *g = calloc((size_t)n, 2);
        trng r = {3};
        for (int lab = 1; lab <= 3; lab++)
            for (int k = 0; k < 4; k++) { /* overlapping random boxes per label */
                int64_t lo[3], len[3];
                for (int a = 0; a < 3; a++) {
                    len[a] = 2 + trng_int(&r, d3[a] / 2);
                    lo[a] = trng_int(&r, d3[a] - len[a] + 1);
                }
                uint16_t *t = k & 1 ? g : p;
                for (int64_t z = lo[0]; z < lo[0] + len[0]; z++)
                    for (int64_t y = lo[1]; y < lo[1] + len[1]; y++)
                        for (int64_t x = lo[2]; x < lo[2] + len[2]; x++) t[(z * d3[1] + y) * d3[2] + x] = (uint16_t)lab;
            }
        sarco_seg_metrics *x, *y;
        size_t cx, cy;
        assert_int_equal(sarco_evaluate_labels(NULL, 3, dims, sp, p, g, NULL, 0, &x, &cx), SARCO_OK);
        assert_int_equal(sarco_evaluate_labels(b->ctx, 3, dims, sp, p, g, NULL, 0, &y, &cy), SARCO_OK);
        assert_int_equal(cx, cy);
        assert_true(cx >= 2);
        assert_memory_equal(x, y, cx * sizeof *x);
        sarco_seg_metrics_free(x);
        sarco_seg_metrics_free(y);
        free(p);
        free(g);
    }
}

/* ---- errors ---------------------------------------------------------------------------------------------- */

static void test_errors(void **state) {
    B *b = *state;
    sarco_backend *be = b->be;
    void *f = dput(b, NULL, 64 * 4), *sites = dput(b, NULL, 64), *acc = dput(b, NULL, 4 * sizeof(sarco_hu_acc));
    sarco_edt_desc d = {{4, 4, 4}, 1, 1.0, 1, 0, 0};
    d.axis = 3;
    assert_int_equal(be->ops->edt_axis(be, &d, NULL, NULL, f), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(b->ctx), "axis"));
    d.axis = 1;
    d.dims[2] = 0;
    assert_int_equal(be->ops->edt_axis(be, &d, NULL, NULL, f), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(b->ctx), "dims[2]"));
    d.dims[2] = 4;
    d.spacing = NAN;
    assert_int_equal(be->ops->edt_axis(be, &d, NULL, NULL, f), SARCO_ERR_INVALID_ARGUMENT);
    d.spacing = 1.0;
    d.site_bit = 0;
    assert_int_equal(be->ops->edt_axis(be, &d, sites, NULL, f), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(b->ctx), "site_bit"));
    assert_int_equal(be->ops->edt_axis(be, NULL, NULL, NULL, f), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(be->ops->edt_axis(be, &d, NULL, NULL, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(be->ops->label_stats(be, 4, sites, NULL, 0, acc), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(be->ops->label_stats(be, 4, sites, NULL, 65537, acc), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(be->ops->label_stats(be, -1, sites, NULL, 4, acc), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(be->ops->label_stats(be, 4, NULL, NULL, 4, acc), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(be->ops->label_stats(be, 4, sites, NULL, 4, NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_edt_sq_on(be, 4, d.dims, &d.spacing, sites, 1, NULL, 0, 0, f), SARCO_ERR_INVALID_ARGUMENT);
    be->ops->free(be, f);
    be->ops->free(be, sites);
    be->ops->free(be, acc);
}

/* ---- groups ---------------------------------------------------------------------------------------------- */

static char skip_reason[1024];

static int setup(void **state, sarco_backend_kind kind) {
    B *b = calloc(1, sizeof *b);
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = kind;
    if (sarco_context_create_ex(&o, &b->ctx, skip_reason, sizeof skip_reason) != SARCO_OK) {
        free(b);
        return -1;
    }
    b->be = b->ctx->be;
    if (sarco_context_backend(b->ctx) != kind) { /* never AUTO here: a context of the asked kind or none */
        snprintf(skip_reason, sizeof skip_reason, "the context runs on another backend");
        sarco_context_free(b->ctx);
        free(b);
        return -1;
    }
    *state = b;
    return 0;
}
static int setup_cpu(void **state) { return setup(state, SARCO_BACKEND_CPU); }
static int setup_cuda(void **state) { return setup(state, SARCO_BACKEND_CUDA); }

static int teardown(void **state) {
    B *b = *state;
    sarco_context_free(b->ctx);
    free(b);
    return 0;
}

#define BACKEND_TESTS                                                                                          \
    cmocka_unit_test(test_edt_ops_vs_cpu), cmocka_unit_test(test_edt_ops_bruteforce),                         \
        cmocka_unit_test(test_label_stats), cmocka_unit_test(test_public_on_backend), cmocka_unit_test(test_errors)

int main(void) {
    const struct CMUnitTest hd[] = {
        cmocka_unit_test(test_hd_line_start),
        cmocka_unit_test(test_hd_scratch),
        cmocka_unit_test(test_hd_line_edges),
        cmocka_unit_test(test_hd_stats_order),
    };
    int fails = cmocka_run_group_tests_name("measure_ops/hd", hd, NULL, NULL);
    const struct CMUnitTest cpu[] = {BACKEND_TESTS};
    fails += cmocka_run_group_tests_name("measure_ops/cpu", cpu, setup_cpu, teardown);
    /* CUDA: only where libsarco_cuda.so and a device are present */
    void *probe = NULL;
    if (setup_cuda(&probe) != 0) {
        printf("SKIP cuda: %s\n", skip_reason);
        fflush(stdout);
    } else {
        teardown(&probe);
        const struct CMUnitTest cuda[] = {BACKEND_TESTS};
        fails += cmocka_run_group_tests_name("measure_ops/cuda", cuda, setup_cuda, teardown);
    }
    return fails ? 1 : 0;
}
