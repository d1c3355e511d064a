/* Measurements room, internal: distance transforms, volume integration, segmentation metrics,
 * cohort statistics. Arrays are C order (the last axis fastest), as in the public header. */
#ifndef SARCO_MEASURE_H
#define SARCO_MEASURE_H

#include <stdint.h>

#include "../core/core.h"

#define SARCO_MEASURE_MAX_DIMS 3

/* Threads the measurement loops use: the context's count, or every core. */
SARCO_INTERNAL int sarco_measure_threads(const sarco_context *ctx);

/* Checks ndim (2 or 3), dims (> 0) and spacing (finite, > 0) for `fn` and returns the element
 * count in *n. */
SARCO_INTERNAL sarco_status sarco_measure_check_grid(sarco_context *ctx, const char *fn, int ndim,
                                                     const int64_t *dims, const double *spacing, int64_t *n);

/* Squared EDT in mm^2: out[i] = squared distance from voxel i to the nearest voxel with
 * (sites[i] & site_bit) != 0, +inf when there is none. ndim 1..3, C order.
 * query (optional, with query_bit): values are only needed where (query[i] & query_bit) != 0; the
 * last pass then skips lines without such a voxel, leaving other values unspecified. */
SARCO_INTERNAL sarco_status sarco_edt_sq(sarco_context *ctx, int ndim, const int64_t *dims, const double *spacing,
                                         const uint8_t *sites, uint8_t site_bit, const uint8_t *query,
                                         uint8_t query_bit, float *out);

/* The k-th smallest (0-based) of x[0..n) by quickselect; reorders x. */
SARCO_INTERNAL float sarco_select_kth(float *x, int64_t n, int64_t k);

/* The q-quantile (linear interpolation, numpy/torch default) of x[0..n), n > 0; reorders x. */
SARCO_INTERNAL double sarco_quantile(float *x, int64_t n, double q);

#endif
