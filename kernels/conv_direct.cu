/* Direct convolution / transposed convolution, one thread per output element (sarco_hd_conv1), with
 * bias, residual and activation: the fallback for shapes where cuDNN offers no algorithm. Correct,
 * not fast. */
#include "../lib/cuda/cuda_internal.h"
#include "act_hd.h"
#include "conv_hd.h"

typedef struct direct_shape {
    int64_t in[3], out[3];
} direct_shape;

__global__ void k_conv_direct(int64_t total, sarco_conv_desc d, int transposed, direct_shape sh, const float *x,
                              const float *w, const float *bias, const float *res, float *y) {
    int64_t in_sample = d.cin, out_c = d.cout;
    for (int j = 0; j < d.nsp; j++) in_sample *= sh.in[j];
    SARCO_CU_FOR(i, total) {
        int64_t o[3], t = i / out_c, co = i % out_c;
        for (int j = d.nsp - 1; j >= 0; j--) {
            o[j] = t % sh.out[j];
            t /= sh.out[j];
        }
        float v = sarco_hd_conv1(&d, transposed, sh.in, x + t * in_sample, w, o, co);
        if (bias) v += bias[co];
        if (res) v += res[i];
        y[i] = sarco_hd_act(d.act, d.alpha, v);
    }
}

sarco_status sarco_cu_conv_direct(sarco_backend *be, const sarco_conv_desc *d, int transposed, int64_t n,
                                  const int64_t *in, const int64_t *out, const float *x, const float *w,
                                  const float *bias, const float *res, float *y) {
    direct_shape sh = {{1, 1, 1}, {1, 1, 1}};
    int64_t total = n * d->cout;
    for (int j = 0; j < d->nsp; j++) {
        sh.in[j] = in[j];
        sh.out[j] = out[j];
        total *= out[j];
    }
    if (total == 0) return SARCO_OK;
    k_conv_direct<<<sarco_cu_blocks(total, 128), 128, 0, sarco_cu_of(be)->stream>>>(total, *d, transposed, sh, x, w,
                                                                                    bias, res, y);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}
