/* Cohort statistics: Pearson r, intraclass correlation (Shrout & Fleiss 1979), ROC AUC
 * (Mann-Whitney) and a classifier's confusion metrics at a threshold. Sums are double, two-pass. */
#include <math.h>
#include <stdlib.h>

#include "measure.h"

static sarco_status check_finite(sarco_context *ctx, const char *fn, const char *what, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: %s[%zu] is %g, expected a finite value", fn, what,
                              i, x[i]);
    return SARCO_OK;
}

sarco_status sarco_stats_pearson(sarco_context *ctx, const double *x, const double *y, size_t n, double *r) {
    static const char fn[] = "sarco_stats_pearson";
    if (!x || !y || !r) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: x, y or r is NULL", fn);
    if (n < 2) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: %zu values, expected at least 2", fn, n);
    sarco_status s = check_finite(ctx, fn, "x", x, n);
    if (s == SARCO_OK) s = check_finite(ctx, fn, "y", y, n);
    if (s != SARCO_OK) return s;
    double mx = 0.0, my = 0.0;
    for (size_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxx = 0.0, syy = 0.0, sxy = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double dx = x[i] - mx, dy = y[i] - my;
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    if (!(sxx > 0.0) || !(syy > 0.0))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: %s is constant, the correlation is undefined", fn,
                          sxx > 0.0 ? "y" : "x");
    double v = sxy / sqrt(sxx * syy);
    *r = v > 1.0 ? 1.0 : v < -1.0 ? -1.0 : v;
    return SARCO_OK;
}

sarco_status sarco_stats_icc(sarco_context *ctx, const double *x, size_t n, size_t k, sarco_icc_form form,
                             double *icc) {
    static const char fn[] = "sarco_stats_icc";
    if (!x || !icc) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: ratings or icc is NULL", fn);
    if (form < SARCO_ICC_1_1 || form > SARCO_ICC_3_1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: unknown form %d", fn, (int)form);
    if (n < 2 || k < 2)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: %zu subjects x %zu raters, expected at least 2 x 2", fn,
                          n, k);
    size_t nk;
    if (!sarco_mul_size(n, k, &nk) || nk > SIZE_MAX / sizeof(double))
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: %zu x %zu ratings overflow", fn, n, k);
    sarco_status s = check_finite(ctx, fn, "ratings", x, nk);
    if (s != SARCO_OK) return s;
    double *col = sarco_ctx_malloc(ctx, k * sizeof(double), "icc column means");
    if (!col) return SARCO_ERR_OUT_OF_MEMORY;
    double gm = 0.0;
    for (size_t i = 0; i < nk; i++) gm += x[i];
    gm /= (double)nk;
    double ssr = 0.0, sst = 0.0, ssc = 0.0;
    for (size_t i = 0; i < n; i++) {
        double rm = 0.0;
        for (size_t j = 0; j < k; j++) {
            rm += x[i * k + j];
            col[j] += x[i * k + j];
            sst += (x[i * k + j] - gm) * (x[i * k + j] - gm);
        }
        rm = rm / (double)k - gm;
        ssr += rm * rm;
    }
    for (size_t j = 0; j < k; j++) {
        const double cm = col[j] / (double)n - gm;
        ssc += cm * cm;
    }
    sarco_ctx_free(ctx, col, k * sizeof(double));
    ssr *= (double)k;
    ssc *= (double)n;
    const double dn = (double)n, dk = (double)k;
    const double msr = ssr / (dn - 1.0);
    const double msc = ssc / (dk - 1.0);
    double sse = sst - ssr - ssc;
    if (sse < 0.0) sse = 0.0; /* rounding */
    const double mse = sse / ((dn - 1.0) * (dk - 1.0));
    double ssw = sst - ssr;
    if (ssw < 0.0) ssw = 0.0;
    const double msw = ssw / (dn * (dk - 1.0));
    double num, den;
    switch (form) {
    case SARCO_ICC_1_1:
        num = msr - msw;
        den = msr + (dk - 1.0) * msw;
        break;
    case SARCO_ICC_2_1:
        num = msr - mse;
        den = msr + (dk - 1.0) * mse + dk * (msc - mse) / dn;
        break;
    default:
        num = msr - mse;
        den = msr + (dk - 1.0) * mse;
        break;
    }
    if (!(fabs(den) > 0.0) || !isfinite(num / den))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: the ratings have no variance, the ICC is undefined",
                          fn);
    *icc = num / den;
    return SARCO_OK;
}

typedef struct scored {
    double score;
    int pos;
} scored;

static int cmp_scored(const void *a, const void *b) {
    const double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return (x > y) - (x < y);
}

sarco_status sarco_stats_auc(sarco_context *ctx, const double *scores, const uint8_t *truth, size_t n, double *auc) {
    static const char fn[] = "sarco_stats_auc";
    if (!scores || !truth || !auc)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: scores, truth or auc is NULL", fn);
    sarco_status s = check_finite(ctx, fn, "scores", scores, n);
    if (s != SARCO_OK) return s;
    size_t npos = 0;
    for (size_t i = 0; i < n; i++) npos += truth[i] != 0;
    if (npos == 0 || npos == n)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: %zu positives of %zu, expected both classes", fn, npos,
                          n);
    if (n > SIZE_MAX / sizeof(scored)) return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: %zu scores overflow", fn, n);
    scored *v = sarco_ctx_malloc(ctx, n * sizeof *v, "auc ranks");
    if (!v) return SARCO_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) {
        v[i].score = scores[i];
        v[i].pos = truth[i] != 0;
    }
    qsort(v, n, sizeof *v, cmp_scored);
    /* sum of the positives' ranks (1-based), ties sharing their mean rank */
    double rsum = 0.0;
    for (size_t i = 0; i < n;) {
        size_t j = i, p = 0;
        while (j < n && v[j].score == v[i].score) p += (size_t)v[j++].pos;
        rsum += (double)p * 0.5 * (double)(i + 1 + j); /* mean of ranks i+1 .. j */
        i = j;
    }
    sarco_ctx_free(ctx, v, n * sizeof *v);
    const double np = (double)npos, nn = (double)(n - npos);
    *auc = (rsum - np * (np + 1.0) * 0.5) / (np * nn);
    return SARCO_OK;
}

sarco_status sarco_stats_binary(sarco_context *ctx, const double *scores, const uint8_t *truth, size_t n,
                                double threshold, sarco_binary_metrics *out) {
    static const char fn[] = "sarco_stats_binary";
    if (!scores || !truth || !out)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: scores, truth or out is NULL", fn);
    if (n == 0) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: no scores", fn);
    if (isnan(threshold)) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: threshold is NaN", fn);
    sarco_status s = check_finite(ctx, fn, "scores", scores, n);
    if (s != SARCO_OK) return s;
    sarco_binary_metrics r = {0};
    for (size_t i = 0; i < n; i++) {
        const int pred = scores[i] >= threshold, pos = truth[i] != 0;
        r.tp += pred && pos;
        r.fp += pred && !pos;
        r.tn += !pred && !pos;
        r.fn += !pred && pos;
    }
    if (r.tp + r.fn > 0)
        r.sensitivity = (double)r.tp / (double)(r.tp + r.fn);
    else
        r.flags |= SARCO_BINARY_NO_POSITIVES;
    if (r.tn + r.fp > 0)
        r.specificity = (double)r.tn / (double)(r.tn + r.fp);
    else
        r.flags |= SARCO_BINARY_NO_NEGATIVES;
    r.accuracy = (double)(r.tp + r.tn) / (double)n;
    if (r.tp + r.fp + r.fn > 0)
        r.f1 = 2.0 * (double)r.tp / (double)(2 * r.tp + r.fp + r.fn);
    else
        r.flags |= SARCO_BINARY_F1_UNDEFINED;
    *out = r;
    return SARCO_OK;
}
