/* Layer norm and instance norm arithmetic, shared by the CPU loops and the CUDA kernels.
 * Variances are biased (divide by the count), as PyTorch's LayerNorm and InstanceNorm use. */
#ifndef SARCO_KERNELS_NORM_HD_H
#define SARCO_KERNELS_NORM_HD_H

#include "hd.h"
#include "act_hd.h"

/* Running moments (Welford/Chan); mergeable, so GPU threads can reduce partial results. */
typedef struct sarco_hd_moments {
    float n, mean, m2;
} sarco_hd_moments;

/* Empty moments. */
SARCO_HD void sarco_hd_moments_init(sarco_hd_moments *m) {
    m->n = 0.0f;
    m->mean = 0.0f;
    m->m2 = 0.0f;
}

/* Adds one value. */
SARCO_HD void sarco_hd_moments_push(sarco_hd_moments *m, float x) {
    m->n += 1.0f;
    float dx = x - m->mean;
    m->mean += dx / m->n;
    m->m2 += dx * (x - m->mean);
}

/* a += b (Chan's parallel combination). */
SARCO_HD void sarco_hd_moments_merge(sarco_hd_moments *a, const sarco_hd_moments *b) {
    if (b->n == 0.0f) return;
    if (a->n == 0.0f) {
        *a = *b;
        return;
    }
    float n = a->n + b->n;
    float dx = b->mean - a->mean;
    float fb = b->n / n;
    a->mean += dx * fb;
    a->m2 += b->m2 + dx * dx * a->n * fb;
    a->n = n;
}

/* Biased variance of merged moments (0 when empty). */
SARCO_HD float sarco_hd_moments_var(const sarco_hd_moments *m) { return m->n > 0.0f ? m->m2 / m->n : 0.0f; }

/* 1 / sqrt(var + eps), var clamped at 0 against rounding. */
SARCO_HD float sarco_hd_rstd(float var, float eps) { return 1.0f / sqrtf((var > 0.0f ? var : 0.0f) + eps); }

/* Mean and biased variance of x[0], x[stride], ..., x[(n-1) stride]: two passes in double. */
SARCO_HD void sarco_hd_mean_var(const float *x, int64_t n, int64_t stride, double *mean, double *var) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += x[i * stride];
    double m = n > 0 ? s / (double)n : 0.0;
    double q = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i * stride] - m;
        q += d * d;
    }
    *mean = m;
    *var = n > 0 ? q / (double)n : 0.0;
}

/* (x - mean) rstd gamma + beta for one element; g = 1, b = 0 without affine. */
SARCO_HD float sarco_hd_norm1(float x, float mean, float rstd, float g, float b) { return (x - mean) * rstd * g + b; }

/* LayerNorm of one row of c values; gamma/beta may be NULL; y may alias x. */
SARCO_HD void sarco_hd_layernorm_row(const float *x, int64_t c, const float *gamma, const float *beta, float eps,
                                     float *y) {
    double mean, var;
    sarco_hd_mean_var(x, c, 1, &mean, &var);
    float m = (float)mean, r = sarco_hd_rstd((float)var, eps);
    for (int64_t i = 0; i < c; i++)
        y[i] = sarco_hd_norm1(x[i], m, r, gamma ? gamma[i] : 1.0f, beta ? beta[i] : 0.0f);
}

/* Instance-norm statistics of channel ch of one sample x (S, C): mean and rstd over S. */
SARCO_HD void sarco_hd_instnorm_stats(const float *x, int64_t s, int64_t c, int64_t ch, float eps, float *mean,
                                      float *rstd) {
    double m, v;
    sarco_hd_mean_var(x + ch, s, c, &m, &v);
    *mean = (float)m;
    *rstd = sarco_hd_rstd((float)v, eps);
}

/* acc[ch] += sum over `rows` rows of x (rows, C) of x[., ch]: pass 1 of channels-last stats. */
SARCO_HD void sarco_hd_instnorm_sum_rows(const float *x, int64_t rows, int64_t c, double *acc) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t ch = 0; ch < c; ch++) acc[ch] += x[r * c + ch];
}

/* acc[ch] += sum of (x[., ch] - mean[ch])^2 over `rows` rows: pass 2 of channels-last stats. */
SARCO_HD void sarco_hd_instnorm_sqdev_rows(const float *x, int64_t rows, int64_t c, const double *mean,
                                           double *acc) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t ch = 0; ch < c; ch++) {
            double d = x[r * c + ch] - mean[ch];
            acc[ch] += d * d;
        }
}

/* Shift for sarco_hd_instnorm_moments_row: per channel, the mean of the first min(s, 64) rows of x (s, C).
 * Any value works; one near the channel mean keeps the one-pass variance free of cancellation. */
SARCO_HD void sarco_hd_instnorm_shift(const float *x, int64_t s, int64_t c, double *shift) {
    const int64_t k = s < 64 ? s : 64;
    for (int64_t ch = 0; ch < c; ch++) shift[ch] = 0.0;
    for (int64_t r = 0; r < k; r++)
        for (int64_t ch = 0; ch < c; ch++) shift[ch] += x[r * c + ch];
    for (int64_t ch = 0; ch < c; ch++) shift[ch] /= (double)(k > 0 ? k : 1);
}

/* One row of x (C values) into one-pass channels-last statistics: sum[ch] += d, sumsq[ch] += d^2 with
 * d = x - shift[ch], in double. var = sumsq/n - (sum/n)^2 then loses about (mean - shift)^2 / var times
 * the double rounding of the sums (n 1e-16 at worst), which for a shift from the same channel's data is
 * far below float resolution even at mean/std ~ 1e5; the per-channel adds are independent, so the loop
 * vectorises. */
SARCO_HD void sarco_hd_instnorm_moments_row(const float *x, int64_t c, const double *shift, double *sum,
                                            double *sumsq) {
    SARCO_HD_SIMD
    for (int64_t ch = 0; ch < c; ch++) {
        const double d = (double)x[ch] - shift[ch];
        sum[ch] += d;
        sumsq[ch] += d * d;
    }
}

/* Mean and 1/std of one channel from `n` rows of shifted sums (sarco_hd_instnorm_moments_row). */
SARCO_HD void sarco_hd_instnorm_finish(double sum, double sumsq, double shift, int64_t n, float eps, float *mean,
                                       float *rstd) {
    const double m = n > 0 ? sum / (double)n : 0.0;
    const double var = n > 0 ? sumsq / (double)n - m * m : 0.0;
    *mean = (float)(shift + m);
    *rstd = sarco_hd_rstd((float)var, eps);
}

/* act(norm(x) g + b + r): one instance-norm output (r = 0 without residual). */
SARCO_HD float sarco_hd_instnorm1(float x, float mean, float rstd, float g, float b, float r, int act, float alpha) {
    return sarco_hd_act(act, alpha, sarco_hd_norm1(x, mean, rstd, g, b) + r);
}

/* One spatial row (C values) of instance-norm output; res/gamma/beta may be NULL; y may alias x or res. */
SARCO_HD void sarco_hd_instnorm_apply_row(const float *x, const float *res, int64_t c, const float *mean,
                                          const float *rstd, const float *gamma, const float *beta, int act,
                                          float alpha, float *y) {
    for (int64_t ch = 0; ch < c; ch++)
        y[ch] = sarco_hd_instnorm1(x[ch], mean[ch], rstd[ch], gamma ? gamma[ch] : 1.0f, beta ? beta[ch] : 0.0f,
                                   res ? res[ch] : 0.0f, act, alpha);
}

/* act(x scale + shift) for one element: eval-mode batch norm and other per-channel affines. */
SARCO_HD float sarco_hd_affine1(float x, float scale, float shift, int act, float alpha) {
    return sarco_hd_act(act, alpha, x * scale + shift);
}

#endif
