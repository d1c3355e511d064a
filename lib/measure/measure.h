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

/* The context's CUDA backend when it runs on one (then lib/measure uploads its arrays once and runs
 * the op table's edt_axis / label_stats), else NULL: CPU contexts and ctx == NULL run the loops here. */
SARCO_INTERNAL sarco_backend *sarco_measure_device(const sarco_context *ctx);

/* sarco_edt_sq's passes, in its order, through be's edt_axis: sites, query and f are be's buffers
 * (ndim 1..3); take_sqrt: f gets the distances. The same bits as sarco_edt_sq on every backend. */
SARCO_INTERNAL sarco_status sarco_edt_sq_on(sarco_backend *be, int ndim, const int64_t *dims, const double *spacing,
                                            const uint8_t *sites, uint8_t site_bit, const uint8_t *query,
                                            uint8_t query_bit, int take_sqrt, float *f);

/* Squared EDTs of one site array for several (site_bit, query_bit) pairs, each with query = sites
 * (the metrics' two directions): sarco_edt_sq on the CPU; on a CUDA context the sites are uploaded
 * once and each result is downloaded into out. begin, run..., end (end also after a failure). */
typedef struct sarco_edt_job {
    sarco_context *ctx;
    sarco_backend *dev;
    int ndim;
    const int64_t *dims;
    const double *spacing;
    const uint8_t *sites;
    int64_t n;
    void *dsites, *df; /* device copies */
} sarco_edt_job;
SARCO_INTERNAL sarco_status sarco_edt_job_begin(sarco_edt_job *j, sarco_context *ctx, int ndim, const int64_t *dims,
                                                const double *spacing, const uint8_t *sites, int64_t n);
SARCO_INTERNAL sarco_status sarco_edt_job_run(sarco_edt_job *j, uint8_t site_bit, uint8_t query_bit, float *out);
SARCO_INTERNAL void sarco_edt_job_end(sarco_edt_job *j);

/* The k-th smallest (0-based) of x[0..n) by quickselect; reorders x. */
SARCO_INTERNAL float sarco_select_kth(float *x, int64_t n, int64_t k);

/* The q-quantile (linear interpolation, numpy/torch default) of x[0..n), n > 0; reorders x. */
SARCO_INTERNAL double sarco_quantile(float *x, int64_t n, double q);

#endif
