/* Sliding-window arithmetic shared by the CPU loops (lib/pipeline/) and CUDA kernels: MONAI's
 * Gaussian importance map, the weighted accumulation and the fused divide + argmax.
 * Every step is float32 in the order MONAI's sliding_window_inference runs it, so a CPU or GPU
 * blend reproduces MONAI's output to the rounding of exp(). */
#ifndef SARCO_KERNELS_WINDOW_HD_H
#define SARCO_KERNELS_WINDOW_HD_H

#include "hd.h"

/* MONAI compute_importance_map, one axis: exp(x^2 / (-2 sigma^2)) with x = i - (n - 1) / 2 and
 * sigma = sigma_scale * n; neg2sig2 = (float)(-2 sigma^2) computed in double by the caller, as
 * torch turns the Python scalar into the tensor's dtype. */
SARCO_HD float sarco_gauss_1d(int64_t i, int64_t n, float neg2sig2) {
    float x = (float)(-(double)(n - 1) / 2.0) + (float)i; /* torch.arange(-(n-1)/2, ...) is exact */
    float x2 = x * x;
    return expf(x2 / neg2sig2);
}

/* MONAI: importance_map = ((g0[i] * g1[j]) * g2[k]), then clamp below at max(min, 1e-3). */
SARCO_HD float sarco_gauss_clamp(float v, float floor_v) { return v < floor_v ? floor_v : v; }

/* out += pred * w, with the product rounded to float first (MONAI multiplies the window by the
 * map, then adds it into the output). nvcc would contract the two into one FMA (one rounding),
 * so the device multiplies with __fmul_rn, which is never fused; C11 mode does not contract. */
SARCO_HD void sarco_window_accumulate(float *acc, float pred, float w) {
#if defined(__CUDA_ARCH__)
    float t = __fmul_rn(pred, w);
#else
    float t = pred * w;
#endif
    *acc += t;
}

/* The argmax over C channels of acc[c * stride] / cnt, as torch.argmax(output / count): the
 * first index wins ties and a NaN counts as the largest value (its first occurrence wins). */
SARCO_HD uint16_t sarco_argmax_div(const float *acc, int64_t c, int64_t stride, float cnt) {
    uint16_t best = 0;
    float bv = acc[0] / cnt;
    if (bv != bv) return 0;
    for (int64_t k = 1; k < c; k++) {
        float v = acc[k * stride] / cnt;
        if (v != v) return (uint16_t)k;
        if (v > bv) {
            bv = v;
            best = (uint16_t)k;
        }
    }
    return best;
}

#endif
