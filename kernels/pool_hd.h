/* Pooling arithmetic (one output element), shared by the CPU loops and the CUDA kernels. */
#ifndef SARCO_KERNELS_POOL_HD_H
#define SARCO_KERNELS_POOL_HD_H

#include "hd.h"
#include "../lib/ops/ops.h"

/* One output of max/avg pooling, PyTorch rules: avg windows are clipped to in + pad for the
 * count_include_pad divisor and to the input otherwise; max ignores padding (-inf) and propagates NaN.
 * x is one sample (in..., C) channels-last, in[] its spatial size, o[] the output position (nsp entries),
 * ch the channel. */
SARCO_HD float sarco_hd_pool1(const sarco_pool_desc *d, const int64_t *in, int64_t c, const float *x,
                              const int64_t *o, int64_t ch) {
    int64_t lo[3], hi[3], size[3];
    int64_t padded = 1, valid = 1;
    for (int j = 0; j < 3; j++) {
        int i = j - (3 - d->nsp); /* leading dims of a 2D pool are size 1 */
        if (i < 0) {
            lo[j] = 0;
            hi[j] = 1;
            size[j] = 1;
            continue;
        }
        int64_t start = o[i] * d->stride[i] - d->pad[i];
        int64_t end = start + d->k[i];
        int64_t pend = end < in[i] + d->pad[i] ? end : in[i] + d->pad[i];
        padded *= pend - start;
        lo[j] = start > 0 ? start : 0;
        hi[j] = end < in[i] ? end : in[i];
        size[j] = in[i];
        valid *= hi[j] > lo[j] ? hi[j] - lo[j] : 0;
    }
    if (d->kind == SARCO_POOL_MAX) {
        float m = -INFINITY;
        for (int64_t a = lo[0]; a < hi[0]; a++)
            for (int64_t b = lo[1]; b < hi[1]; b++)
                for (int64_t e = lo[2]; e < hi[2]; e++) {
                    float v = x[((a * size[1] + b) * size[2] + e) * c + ch];
                    if (v > m || v != v) m = v;
                    if (m != m) return m;
                }
        return m;
    }
    float sum = 0.0f;
    for (int64_t a = lo[0]; a < hi[0]; a++)
        for (int64_t b = lo[1]; b < hi[1]; b++)
            for (int64_t e = lo[2]; e < hi[2]; e++) sum += x[((a * size[1] + b) * size[2] + e) * c + ch];
    int64_t div = d->count_include_pad ? padded : valid;
    return div > 0 ? sum / (float)div : 0.0f;
}

/* Adaptive average pooling (PyTorch adaptive_avg_pool2d): output o of `out` along an axis of `in`
 * averages the input window [floor(o in / out), ceil((o + 1) in / out)). Windows overlap when in is not
 * a multiple of out, and repeat inputs when out > in (VGG's 7x7 from a smaller map). */
SARCO_HD void sarco_hd_adaptive_window(int64_t o, int64_t in, int64_t out, int64_t *lo, int64_t *hi) {
    *lo = (o * in) / out;
    *hi = ((o + 1) * in + out - 1) / out;
}

/* One output (oy, ox, ch) of an (ih, iw, C) channels-last sample x pooled to (oh, ow). */
SARCO_HD float sarco_hd_adaptive_avg1(const float *x, int64_t ih, int64_t iw, int64_t c, int64_t oh, int64_t ow,
                                      int64_t oy, int64_t ox, int64_t ch) {
    int64_t y0, y1, x0, x1;
    sarco_hd_adaptive_window(oy, ih, oh, &y0, &y1);
    sarco_hd_adaptive_window(ox, iw, ow, &x0, &x1);
    float sum = 0.0f;
    for (int64_t a = y0; a < y1; a++)
        for (int64_t b = x0; b < x1; b++) sum += x[(a * iw + b) * c + ch];
    return sum / (float)((y1 - y0) * (x1 - x0));
}

#endif
