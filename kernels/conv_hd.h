/* One output element of a convolution or transposed convolution (PyTorch semantics) on channels-last
 * data: the CUDA backend's fallback when cuDNN offers no algorithm for a shape, and a check of the
 * weight layout the CUDA backend hands to cuDNN. Tested on the CPU against the CPU backend.
 *
 * x is one sample (in..., Cin); w is in cuDNN's NHWC filter order (K, k..., C/groups) with K = Cout
 * for a conv and K = Cin for a transposed conv (PyTorch's weights with the channel axis moved last);
 * o[] is the output position (nsp entries), co the output channel. Returns the sum without bias. */
#ifndef SARCO_KERNELS_CONV_HD_H
#define SARCO_KERNELS_CONV_HD_H

#include "hd.h"
#include "../lib/ops/ops.h"

/* (K, Cg, k...) PyTorch weight index of element (kk, cg, s) in the reordered (K, k..., Cg) layout. */
SARCO_HD int64_t sarco_hd_conv_w_index(int64_t kk, int64_t cg, int64_t s, int64_t ks, int64_t ncg) {
    return (kk * ks + s) * ncg + cg;
}

/* PyTorch (K, Cg, k...) -> (K, k..., Cg): the one reorder at prepare time. */
SARCO_HD void sarco_hd_conv_reorder(const float *w, int64_t nk, int64_t ncg, int64_t ks, float *out) {
    for (int64_t kk = 0; kk < nk; kk++)
        for (int64_t cg = 0; cg < ncg; cg++)
            for (int64_t s = 0; s < ks; s++) out[sarco_hd_conv_w_index(kk, cg, s, ks, ncg)] = w[(kk * ncg + cg) * ks + s];
}

SARCO_HD float sarco_hd_conv1(const sarco_conv_desc *d, int transposed, const int64_t *in, const float *x,
                              const float *w, const int64_t *o, int64_t co) {
    int64_t k[3] = {1, 1, 1}, st[3] = {1, 1, 1}, pad[3] = {0, 0, 0}, dil[3] = {1, 1, 1}, sz[3] = {1, 1, 1},
            op[3] = {0, 0, 0};
    for (int j = 0; j < d->nsp; j++) { /* a 2-D conv is a 3-D one with a leading axis of 1 */
        int a = 3 - d->nsp + j;
        k[a] = d->k[j];
        st[a] = d->stride[j];
        pad[a] = d->pad[j];
        dil[a] = d->dil[j];
        sz[a] = in[j];
        op[a] = o[j];
    }
    int64_t ks = k[0] * k[1] * k[2];
    int64_t cin_g = d->cin / d->groups, cout_g = d->cout / d->groups, g = co / cout_g;
    float acc = 0.0f;
    for (int64_t a = 0; a < k[0]; a++)
        for (int64_t b = 0; b < k[1]; b++)
            for (int64_t c = 0; c < k[2]; c++) {
                int64_t kq[3] = {a, b, c}, ip[3];
                int inside = 1;
                for (int j = 0; j < 3; j++) {
                    if (!transposed) {
                        ip[j] = op[j] * st[j] - pad[j] + kq[j] * dil[j];
                    } else { /* o = i stride - pad + k dil, for an integer i */
                        int64_t t = op[j] + pad[j] - kq[j] * dil[j];
                        if (t < 0 || t % st[j]) inside = 0;
                        ip[j] = t / st[j];
                    }
                    if (ip[j] < 0 || ip[j] >= sz[j]) inside = 0;
                }
                if (!inside) continue;
                int64_t s = (a * k[1] + b) * k[2] + c;
                const float *xp = x + ((ip[0] * sz[1] + ip[1]) * sz[2] + ip[2]) * d->cin;
                if (!transposed) {
                    for (int64_t ci = 0; ci < cin_g; ci++)
                        acc += xp[g * cin_g + ci] * w[sarco_hd_conv_w_index(co, ci, s, ks, cin_g)];
                } else {
                    for (int64_t ci = 0; ci < cin_g; ci++)
                        acc += xp[g * cin_g + ci] * w[sarco_hd_conv_w_index(g * cin_g + ci, co % cout_g, s, ks, cout_g)];
                }
            }
    return acc;
}

#endif
