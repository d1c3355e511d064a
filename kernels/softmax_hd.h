/* Softmax arithmetic, shared by the CPU loops and the CUDA kernels. */
#ifndef SARCO_KERNELS_SOFTMAX_HD_H
#define SARCO_KERNELS_SOFTMAX_HD_H

#include "hd.h"

/* NaN-propagating max: a NaN on either side wins, so a line holding a NaN comes out NaN. */
SARCO_HD float sarco_hd_softmax_max2(float a, float b) { return (a != a || b != b) ? NAN : b > a ? b : a; }

/* One lane's share of a line x[0], x[stride], ..., x[(n-1) stride]: lane `lane` of `lanes` takes
 * i = lane, lane + lanes, ... (a warp per line on the GPU, lanes = 32, so a warp reads 32 neighbouring
 * floats at a time; the CPU is one lane of one). The partial max, then the partial sum of exp(x - m)
 * with the line's max m, then the lane's outputs y = exp(x - m) * inv with inv = 1 / the line's sum. */
SARCO_HD float sarco_hd_softmax_part_max(const float *x, int64_t n, int64_t stride, int lane, int lanes) {
    float m = -INFINITY;
    for (int64_t i = lane; i < n; i += lanes) m = sarco_hd_softmax_max2(m, x[i * stride]);
    return m;
}

SARCO_HD float sarco_hd_softmax_part_sum(const float *x, int64_t n, int64_t stride, int lane, int lanes, float m) {
    float s = 0.0f;
    for (int64_t i = lane; i < n; i += lanes) s += expf(x[i * stride] - m);
    return s;
}

SARCO_HD void sarco_hd_softmax_part_write(const float *x, int64_t n, int64_t stride, int lane, int lanes, float m,
                                          float inv, float *y) {
    for (int64_t i = lane; i < n; i += lanes) y[i * stride] = expf(x[i * stride] - m) * inv;
}

/* Softmax of one line x[0], x[stride], ..., x[(n-1) stride] into y (same stride), max-subtracted so
 * no exponent is positive (logits of 1e4 cannot overflow). y may alias x. NaN in -> NaN out. */
SARCO_HD void sarco_hd_softmax_line(const float *x, int64_t n, int64_t stride, float *y) {
    const float m = sarco_hd_softmax_part_max(x, n, stride, 0, 1);
    const float sum = sarco_hd_softmax_part_sum(x, n, stride, 0, 1, m);
    sarco_hd_softmax_part_write(x, n, stride, 0, 1, m, 1.0f / sum, y);
}

#endif
