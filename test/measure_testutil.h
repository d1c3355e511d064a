/* Helpers of the measurement tests: a .npy reader for u1/f4 up to 3-D (testutil.h's), a seeded
 * random generator, an independent surface definition and brute-force surface distances. */
#ifndef SARCO_TEST_MEASURE_TESTUTIL_H
#define SARCO_TEST_MEASURE_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MDATA "test/data/measure/"

/* xorshift64*: reproducible across platforms */
typedef struct trng {
    uint64_t s;
} trng;
static inline uint64_t trng_next(trng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}
static inline double trng_uniform(trng *r) { return (double)(trng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static inline int64_t trng_int(trng *r, int64_t n) { return (int64_t)(trng_uniform(r) * (double)n); }

/* Loads an .npy file of dtype descr ("|u1" or "<f4"); returns malloc'ed data, shape in dims. */
static inline void *npy_load(const char *path, const char *descr, int *ndim, int64_t dims[3]) {
    return tu_npy_read(path, descr, 3, ndim, dims);
}

/* Surface of (m[i] == v), written independently of the library: a voxel of the mask with a
 * face-neighbour outside it or outside the array. 3D-promoted dims d (2D: d[0] = 1, nd = 2). */
static inline int ref_is_surface(const uint16_t *m, uint16_t v, const int64_t d[3], int nd, int64_t z, int64_t y,
                                 int64_t x) {
    if (m[(z * d[1] + y) * d[2] + x] != v) return 0;
    int64_t c[3] = {z, y, x};
    for (int a = 3 - nd; a < 3; a++)
        for (int s = -1; s <= 1; s += 2) {
            int64_t cc[3] = {c[0], c[1], c[2]};
            cc[a] += s;
            if (cc[a] < 0 || cc[a] >= d[a]) return 1;
            if (m[(cc[0] * d[1] + cc[1]) * d[2] + cc[2]] != v) return 1;
        }
    return 0;
}

/* Coordinates (in mm) of the surface voxels of label v; returns the count, *pts malloc'ed (3 per). */
static inline int64_t ref_surface_points(const uint16_t *m, uint16_t v, const int64_t d[3], int nd, const double sp3[3],
                                         double **pts) {
    int64_t n = 0, cap = 1024;
    double *p = malloc((size_t)cap * 3 * sizeof *p);
    for (int64_t z = 0; z < d[0]; z++)
        for (int64_t y = 0; y < d[1]; y++)
            for (int64_t x = 0; x < d[2]; x++)
                if (ref_is_surface(m, v, d, nd, z, y, x)) {
                    if (n == cap) {
                        cap *= 2;
                        p = realloc(p, (size_t)cap * 3 * sizeof *p);
                    }
                    p[3 * n] = (double)z * sp3[0];
                    p[3 * n + 1] = (double)y * sp3[1];
                    p[3 * n + 2] = (double)x * sp3[2];
                    n++;
                }
    *pts = p;
    return n;
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Directed distances from each point of a to the nearest of b, by exhaustive search. */
static inline double *ref_directed(const double *a, int64_t na, const double *b, int64_t nb) {
    double *d = malloc((size_t)(na ? na : 1) * sizeof *d);
    for (int64_t i = 0; i < na; i++) {
        double best = INFINITY;
        for (int64_t j = 0; j < nb; j++) {
            double dz = a[3 * i] - b[3 * j], dy = a[3 * i + 1] - b[3 * j + 1], dx = a[3 * i + 2] - b[3 * j + 2];
            double q = dz * dz + dy * dy + dx * dx;
            if (q < best) best = q;
        }
        d[i] = sqrt(best);
    }
    return d;
}

/* Linear-interpolation quantile of n values (sorts them). */
static inline double ref_quantile(double *v, int64_t n, double q) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double pos = q * (double)(n - 1);
    int64_t k = (int64_t)floor(pos);
    if (k + 1 >= n) return v[n - 1];
    return v[k] + (v[k + 1] - v[k]) * (pos - (double)k);
}

typedef struct ref_surf_metrics {
    int64_t sp, sg;
    double hd, hd95, assd;
} ref_surf_metrics;

/* Brute-force HD, HD95 and pooled ASSD of label v between two label images (both non-empty). */
static inline ref_surf_metrics ref_surface_metrics(const uint16_t *p, const uint16_t *g, uint16_t v, const int64_t d[3],
                                                   int nd, const double sp3[3]) {
    ref_surf_metrics r;
    double *a, *b;
    r.sp = ref_surface_points(p, v, d, nd, sp3, &a);
    r.sg = ref_surface_points(g, v, d, nd, sp3, &b);
    double *dab = ref_directed(a, r.sp, b, r.sg), *dba = ref_directed(b, r.sg, a, r.sp);
    double sum = 0.0, m1 = 0.0, m2 = 0.0;
    for (int64_t i = 0; i < r.sp; i++) {
        sum += dab[i];
        if (dab[i] > m1) m1 = dab[i];
    }
    for (int64_t i = 0; i < r.sg; i++) {
        sum += dba[i];
        if (dba[i] > m2) m2 = dba[i];
    }
    r.hd = m1 > m2 ? m1 : m2;
    r.assd = sum / (double)(r.sp + r.sg);
    double q1 = ref_quantile(dab, r.sp, 0.95), q2 = ref_quantile(dba, r.sg, 0.95);
    r.hd95 = q1 > q2 ? q1 : q2;
    free(a);
    free(b);
    free(dab);
    free(dba);
    return r;
}

#endif
