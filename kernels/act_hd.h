/* Activations and elementwise binary ops, shared by the CPU loops and the CUDA kernels. */
#ifndef SARCO_KERNELS_ACT_HD_H
#define SARCO_KERNELS_ACT_HD_H

#include "hd.h"
#include "../lib/ops/ops.h"

/* 1 / (1 + e^-x), never overflowing: the exponent is always <= 0. */
SARCO_HD float sarco_hd_sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* Exact GELU x Phi(x); the left tail uses erfc so small negative outputs keep their digits. */
SARCO_HD float sarco_hd_gelu(float x) {
    const float r = 0.70710678118654752440f; /* 1 / sqrt 2 */
    if (x < 0.0f) return 0.5f * x * erfcf(-x * r);
    return 0.5f * x * (1.0f + erff(x * r));
}

/* GELU, tanh approximation (PyTorch approximate="tanh"); x^3 overflowing to inf still gives tanh = +-1. */
SARCO_HD float sarco_hd_gelu_tanh(float x) {
    const float k = 0.79788456080286535588f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* SiLU / swish: x sigmoid(x). */
SARCO_HD float sarco_hd_silu(float x) { return x * sarco_hd_sigmoid(x); }

/* Hardswish: x relu6(x + 3) / 6. */
SARCO_HD float sarco_hd_hardswish(float x) {
    float t = x + 3.0f;
    t = t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t);
    return x * t / 6.0f;
}

/* Leaky ReLU with negative slope alpha (alpha = 0 is ReLU; alpha must be finite, as the ops check).
 * Written as pos + alpha neg with two selects of existing values: a product on one branch only may not
 * be speculated under -ftrapping-math, which kept CPU loops scalar. Exact: one side is always 0. */
SARCO_HD float sarco_hd_leaky(float x, float alpha) {
    const float pos = x > 0.0f ? x : 0.0f, neg = x > 0.0f ? 0.0f : x;
    return pos + alpha * neg;
}

/* Applies activation `act` (a sarco_act value); alpha is the leaky slope, ignored otherwise. */
SARCO_HD float sarco_hd_act(int act, float alpha, float x) {
    switch (act) {
    case SARCO_ACT_RELU: return x > 0.0f ? x : (x != x ? x : 0.0f);
    case SARCO_ACT_LEAKY_RELU: return sarco_hd_leaky(x, alpha);
    case SARCO_ACT_GELU: return sarco_hd_gelu(x);
    case SARCO_ACT_GELU_TANH: return sarco_hd_gelu_tanh(x);
    case SARCO_ACT_SILU: return sarco_hd_silu(x);
    case SARCO_ACT_SIGMOID: return sarco_hd_sigmoid(x);
    case SARCO_ACT_TANH: return tanhf(x);
    case SARCO_ACT_HARDSWISH: return sarco_hd_hardswish(x);
    default: return x;
    }
}

/* a op b for a sarco_binop value. */
SARCO_HD float sarco_hd_binop(int op, float a, float b) {
    switch (op) {
    case SARCO_BIN_MUL: return a * b;
    case SARCO_BIN_SUB: return a - b;
    case SARCO_BIN_DIV: return a / b;
    default: return a + b;
    }
}

/* Offsets into a and b of element i (row-major in d->shape) of a broadcast binary op. */
SARCO_HD void sarco_hd_bcast_offsets(const sarco_bcast_desc *d, int64_t i, int64_t *oa, int64_t *ob) {
    int64_t a = 0, b = 0;
    for (int k = d->ndim - 1; k >= 0; k--) {
        int64_t idx = i % d->shape[k];
        i /= d->shape[k];
        a += idx * d->sa[k];
        b += idx * d->sb[k];
    }
    *oa = a;
    *ob = b;
}

#endif
