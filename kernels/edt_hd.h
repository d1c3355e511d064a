/* Exact Euclidean distance transform, one line at a time, shared by the CPU loops and the CUDA
 * kernels (one line per thread). Separable: a first pass finds, along one axis, the distance to
 * the nearest site on the same line; every further pass takes the lower envelope of parabolas
 * (Felzenszwalb & Huttenlocher 2012, "Distance transforms of sampled functions"), which is exact
 * for any per-axis spacing. Values are squared distances in mm^2; +inf means "no site". */
#ifndef SARCO_KERNELS_EDT_HD_H
#define SARCO_KERNELS_EDT_HD_H

#include <stddef.h>

#include "hd.h"

#define SARCO_EDT_INF INFINITY

/* x * y rounded on its own: nvcc fuses `x * y + z` into one FMA (one rounding) where C11 on the CPU
 * rounds twice, and the CPU and the GPU must give the same bits. */
SARCO_HD double sarco_edt_mul_rn(double x, double y) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(x, y);
#else
    return x * y;
#endif
}

/* Line l of the lines along an axis of n voxels with element stride S (the product of the faster
 * axes' sizes) in a C-order volume: its first voxel. Lines l and l + 1 start at neighbouring voxels
 * unless l + 1 crosses into the next slab, so one thread per line reads coalesced when S > 1. */
SARCO_HD int64_t sarco_edt_line_start(int64_t l, int64_t n, int64_t S) { return l / S * n * S + l % S; }

/* Whether the line of n voxels at m (stride S) holds a voxel with (m & bit) != 0. */
SARCO_HD int sarco_edt_line_any(const uint8_t *m, int64_t n, int64_t S, uint8_t bit) {
    for (int64_t q = 0; q < n; q++)
        if (m[q * S] & bit) return 1;
    return 0;
}

/* The GPU's fastest-axis pass stages a tile of consecutive lines (each n contiguous floats) in shared
 * memory transposed: element e of the tile's memory (line e / n, voxel e % n) lands at
 * (e % n) * pitch + e / n, so a thread runs its line with stride `pitch` while the block loads and
 * stores the tile in memory order (coalesced). pitch = lines per tile + 1 keeps banks apart. */
SARCO_HD int64_t sarco_edt_tile_index(int64_t e, int64_t n, int64_t pitch) { return (e % n) * pitch + e / n; }

/* Envelope scratch of one line of n voxels (sarco_edt_line's fv, z and v), in one block of
 * sarco_edt_scratch_bytes(n) bytes (a multiple of 16) starting at an 8-byte aligned p. */
SARCO_HD size_t sarco_edt_scratch_bytes(int64_t n) {
    return ((size_t)(2 * n + 1) * sizeof(double) + (size_t)n * sizeof(int32_t) + 15) & ~(size_t)15;
}
SARCO_HD void sarco_edt_scratch_split(void *p, int64_t n, int32_t **v, double **fv, double **z) {
    *fv = (double *)p;
    *z = *fv + n;
    *v = (int32_t *)(*z + n + 1);
}

/* First pass: d[i * ds] = (s * |i - j|)^2 for the nearest j with (site[j * ss] & bit) != 0, or +inf
 * when the line holds no site. s2 = s * s, the squared spacing along the line. */
SARCO_HD void sarco_edt_line_binary(int64_t n, double s2, const uint8_t *site, int64_t ss, uint8_t bit, float *d,
                                    int64_t ds) {
    /* forward sweep: distance to the nearest site at or before i (in voxels), -1 = none yet */
    int64_t last = -1;
    for (int64_t i = 0; i < n; i++) {
        if (site[i * ss] & bit) last = i;
        d[i * ds] = last < 0 ? SARCO_EDT_INF : (float)(s2 * (double)(i - last) * (double)(i - last));
    }
    if (last < 0) return;
    /* backward sweep: the nearest site at or after i may be closer */
    last = -1;
    for (int64_t i = n - 1; i >= 0; i--) {
        if (site[i * ss] & bit) last = i;
        if (last >= 0) {
            float b = (float)(s2 * (double)(last - i) * (double)(last - i));
            if (b < d[i * ds]) d[i * ds] = b;
        }
    }
}

/* Lower envelope pass: d[i * ds] = min_j f[j * fs] + s2 (i - j)^2 over the finite f[j]; +inf when
 * none is finite. d may be f (in place, same stride). Scratch: v and fv hold n entries, z n + 1.
 * Intersections are computed in double in the form (f_q - f_v) / (2 s2 (q - v)) + (q + v) / 2,
 * which avoids the cancellation of the textbook (f_q + q^2) - (f_v + v^2). */
SARCO_HD void sarco_edt_line(int64_t n, double s2, const float *f, int64_t fs, float *d, int64_t ds, int32_t *v,
                             double *fv, double *z) {
    int64_t k = -1;
    for (int64_t q = 0; q < n; q++) {
        double fq = (double)f[q * fs];
        if (!(fq < (double)SARCO_EDT_INF)) continue; /* +inf (or NaN): not a site */
        if (k < 0) {
            k = 0;
            v[0] = (int32_t)q;
            fv[0] = fq;
            z[0] = -(double)SARCO_EDT_INF;
            continue;
        }
        /* z[0] = -inf stops the pops at k = 0 */
        double s = (fq - fv[k]) / (2.0 * s2 * (double)(q - v[k])) + 0.5 * (double)(q + v[k]);
        while (s <= z[k]) {
            k--;
            s = (fq - fv[k]) / (2.0 * s2 * (double)(q - v[k])) + 0.5 * (double)(q + v[k]);
        }
        k++;
        v[k] = (int32_t)q;
        fv[k] = fq;
        z[k] = s;
    }
    if (k < 0) {
        for (int64_t q = 0; q < n; q++) d[q * ds] = SARCO_EDT_INF;
        return;
    }
    z[k + 1] = (double)SARCO_EDT_INF;
    int64_t j = 0;
    for (int64_t q = 0; q < n; q++) {
        while (z[j + 1] < (double)q) j++;
        double dq = (double)(q - v[j]);
        d[q * ds] = (float)(sarco_edt_mul_rn(s2 * dq, dq) + fv[j]);
    }
}

#endif
