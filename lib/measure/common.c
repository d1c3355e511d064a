/* Shared helpers of the measurements room: argument checks, thread count, order statistics. */
#include <math.h>
#include <omp.h>

#include "measure.h"

int sarco_measure_threads(const sarco_context *ctx) {
    if (ctx && ctx->opts.threads > 0) return ctx->opts.threads;
    int n = omp_get_max_threads();
    return n > 0 ? n : 1;
}

sarco_status sarco_measure_check_grid(sarco_context *ctx, const char *fn, int ndim, const int64_t *dims,
                                      const double *spacing, int64_t *n) {
    if (ndim < 2 || ndim > 3)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: ndim is %d, expected 2 or 3", fn, ndim);
    if (!dims || !spacing) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: dims or spacing is NULL", fn);
    for (int a = 0; a < ndim; a++) {
        if (dims[a] <= 0)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: dims[%d] is %lld, expected > 0", fn, a,
                              (long long)dims[a]);
        if (!(spacing[a] > 0.0) || !isfinite(spacing[a]))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: spacing[%d] is %g mm, expected finite and > 0",
                              fn, a, spacing[a]);
    }
    /* keep byte counts of 8-byte buffers and int32 line positions representable */
    if (!sarco_dims_product(dims, ndim, INT64_MAX / 16, n))
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: dims product overflows", fn);
    for (int a = 0; a < ndim; a++)
        if (dims[a] > INT32_MAX)
            return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: dims[%d] = %lld is past 2^31 - 1", fn, a,
                              (long long)dims[a]);
    return SARCO_OK;
}

static void swapf(float *a, float *b) {
    float t = *a;
    *a = *b;
    *b = t;
}

float sarco_select_kth(float *x, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        /* median of three as pivot, moved to hi */
        int64_t mid = lo + (hi - lo) / 2;
        if (x[mid] < x[lo]) swapf(&x[mid], &x[lo]);
        if (x[hi] < x[lo]) swapf(&x[hi], &x[lo]);
        if (x[mid] < x[hi]) swapf(&x[mid], &x[hi]);
        float p = x[hi];
        /* three-way partition: [lo, lt) < p, [lt, i) == p, (gt, hi] > p */
        int64_t lt = lo, i = lo, gt = hi;
        while (i <= gt) {
            if (x[i] < p)
                swapf(&x[lt++], &x[i++]);
            else if (x[i] > p)
                swapf(&x[i], &x[gt--]);
            else
                i++;
        }
        if (k < lt)
            hi = lt - 1;
        else if (k > gt)
            lo = gt + 1;
        else
            return p;
    }
    return x[k];
}

double sarco_quantile(float *x, int64_t n, double q) {
    double pos = q * (double)(n - 1);
    int64_t k = (int64_t)floor(pos);
    if (k < 0) k = 0;
    if (k > n - 1) k = n - 1;
    double t = pos - (double)k;
    double a = sarco_select_kth(x, n, k);
    if (t <= 0.0 || k + 1 >= n) return a;
    /* after selection every element past k is >= x[k]: the next order statistic is their minimum */
    float b = x[k + 1];
    for (int64_t i = k + 2; i < n; i++)
        if (x[i] < b) b = x[i];
    return a + ((double)b - a) * t;
}
