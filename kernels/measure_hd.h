/* Per-voxel arithmetic of volume integration and surface extraction, shared by the CPU loops and
 * the CUDA kernels. Sums are double: for integer-valued images (CT in HU) every partial sum is an
 * exact integer below 2^53, so the result does not depend on the order of accumulation and the
 * CPU and GPU agree bit for bit; for other images they agree to double rounding. */
#ifndef SARCO_KERNELS_MEASURE_HD_H
#define SARCO_KERNELS_MEASURE_HD_H

#include "hd.h"

/* CT tissue windows (HU, inclusive), REFERENCE.md: muscle -29..150, IMAT -190..-30. */
#define SARCO_HU_MUSCLE_LO (-29.0f)
#define SARCO_HU_MUSCLE_HI 150.0f
#define SARCO_HU_IMAT_LO (-190.0f)
#define SARCO_HU_IMAT_HI (-30.0f)

/* Intensity statistics of one label, mergeable (per thread, per block, then together). */
typedef struct sarco_hu_acc {
    int64_t count;  /* voxels of the label */
    int64_t finite; /* of those, with a finite intensity (NaN/inf are left out of the statistics) */
    int64_t muscle; /* finite and inside the muscle window */
    int64_t imat;   /* finite and inside the IMAT window */
    double sum, sumsq, min, max;
} sarco_hu_acc;

SARCO_HD void sarco_hu_acc_init(sarco_hu_acc *a) {
    a->count = a->finite = a->muscle = a->imat = 0;
    a->sum = a->sumsq = 0.0;
    a->min = INFINITY;
    a->max = -INFINITY;
}

/* 1 inside the muscle window, 2 inside the IMAT window, 0 otherwise (also for NaN). */
SARCO_HD int sarco_hu_window(float v) {
    if (v >= SARCO_HU_MUSCLE_LO && v <= SARCO_HU_MUSCLE_HI) return 1;
    if (v >= SARCO_HU_IMAT_LO && v <= SARCO_HU_IMAT_HI) return 2;
    return 0;
}

/* Adds one voxel of the label; v is its intensity (ignored when has_image is 0). The square is
 * rounded before the add on the device too (nvcc would fuse them into one FMA). */
SARCO_HD void sarco_hu_acc_add(sarco_hu_acc *a, int has_image, float v) {
    a->count++;
    if (!has_image || !isfinite(v)) return;
    double x = (double)v;
    a->finite++;
    a->sum += x;
#if defined(__CUDA_ARCH__)
    a->sumsq += __dmul_rn(x, x);
#else
    a->sumsq += x * x;
#endif
    if (x < a->min) a->min = x;
    if (x > a->max) a->max = x;
    int w = sarco_hu_window(v);
    a->muscle += w == 1;
    a->imat += w == 2;
}

/* a += b */
SARCO_HD void sarco_hu_acc_merge(sarco_hu_acc *a, const sarco_hu_acc *b) {
    a->count += b->count;
    a->finite += b->finite;
    a->muscle += b->muscle;
    a->imat += b->imat;
    a->sum += b->sum;
    a->sumsq += b->sumsq;
    if (b->min < a->min) a->min = b->min;
    if (b->max > a->max) a->max = b->max;
}

/* Mean and population standard deviation (divide by n, as numpy.std); 0 and 0 when empty. */
SARCO_HD void sarco_hu_acc_moments(const sarco_hu_acc *a, double *mean, double *sd) {
    if (a->finite == 0) {
        *mean = 0.0;
        *sd = 0.0;
        return;
    }
    double n = (double)a->finite;
    double m = a->sum / n;
    double var = a->sumsq / n - m * m;
    *mean = m;
    *sd = var > 0.0 ? sqrt(var) : 0.0;
}

/* The voxels one GPU thread visits in label_stats: warp w of nw takes the chunks w, w + nw, ... of
 * SARCO_STATS_CHUNK voxels, and its lane j visits the SARCO_STATS_CHUNK / 32 consecutive voxels from
 * chunk * SARCO_STATS_CHUNK + j * SARCO_STATS_CHUNK / 32. A thread's run of one label is then long (it
 * merges its private sums once per label change, not per voxel), and the warp as a whole reads each
 * sector of its chunk once (the lanes' later loads hit L1). The index of the thread's step-th voxel, or
 * -1 once past n (every later step is past n too). */
#define SARCO_STATS_CHUNK 512
SARCO_HD int64_t sarco_stats_voxel(int64_t n, int64_t w, int64_t nw, int lane, int64_t step) {
    const int64_t per = SARCO_STATS_CHUNK / 32;
    int64_t i = (w + step / per * nw) * SARCO_STATS_CHUNK + lane * per + step % per;
    return i < n ? i : -1;
}

/* Surface voxel test for the mask (m[.] & bit): voxel i is in the mask and at least one of its
 * 2 ndim face-neighbours is not, or lies outside the array; i.e. mask XOR erosion(mask) with the
 * cross element and the outside taken as background (scipy.ndimage.binary_erosion's default
 * border_value=0, as MONAI uses it). c holds i's coordinates, dims/strides the array's (C order). */
SARCO_HD int sarco_is_surface(const uint8_t *m, uint8_t bit, int ndim, const int64_t *dims, const int64_t *strides,
                              const int64_t *c, int64_t i) {
    if (!(m[i] & bit)) return 0;
    for (int a = 0; a < ndim; a++) {
        if (c[a] == 0 || c[a] == dims[a] - 1) return 1;
        if (!(m[i - strides[a]] & bit) || !(m[i + strides[a]] & bit)) return 1;
    }
    return 0;
}

#endif
