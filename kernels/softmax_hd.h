/* Softmax arithmetic, shared by the CPU loops and the CUDA kernels. */
#ifndef SARCO_KERNELS_SOFTMAX_HD_H
#define SARCO_KERNELS_SOFTMAX_HD_H

#include "hd.h"

/* Softmax of one line x[0], x[stride], ..., x[(n-1) stride] into y (same stride), max-subtracted so
 * no exponent is positive (logits of 1e4 cannot overflow). y may alias x. NaN in -> NaN out. */
SARCO_HD void sarco_hd_softmax_line(const float *x, int64_t n, int64_t stride, float *y) {
    float m = -INFINITY;
    int nan = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i * stride];
        if (v != v) nan = 1;
        m = v > m ? v : m;
    }
    if (nan) m = NAN;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float e = expf(x[i * stride] - m);
        y[i * stride] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int64_t i = 0; i < n; i++) y[i * stride] *= inv;
}

#endif
