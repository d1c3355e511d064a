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

#endif
