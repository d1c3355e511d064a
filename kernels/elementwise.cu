/* Elementwise kernels: activations, broadcast binary ops, per-channel affine and the bias/residual/
 * activation epilogue of conv, deconv and linear. Arithmetic: kernels/act_hd.h, norm_hd.h. */
#include "../lib/cuda/cuda_internal.h"
#include "act_hd.h"
#include "norm_hd.h"

/* y (rows, C) = act(y + bias[c] + res) */
__global__ void k_bias_act(int64_t total, int64_t c, float *y, const float *bias, const float *res, int act,
                           float alpha) {
    SARCO_CU_FOR(i, total) {
        float v = y[i];
        if (bias) v += bias[i % c];
        if (res) v += res[i];
        y[i] = sarco_hd_act(act, alpha, v);
    }
}

__global__ void k_act(int64_t n, const float *x, float *y, int act, float alpha) {
    SARCO_CU_FOR(i, n) y[i] = sarco_hd_act(act, alpha, x[i]);
}

/* contiguous operands of the same shape: the common case needs no index arithmetic */
__global__ void k_binary_flat(int64_t n, int op, const float *a, const float *b, float *y) {
    SARCO_CU_FOR(i, n) y[i] = sarco_hd_binop(op, a[i], b[i]);
}

__global__ void k_binary(int64_t n, int op, sarco_bcast_desc d, const float *a, const float *b, float *y) {
    SARCO_CU_FOR(i, n) {
        int64_t oa, ob;
        sarco_hd_bcast_offsets(&d, i, &oa, &ob);
        y[i] = sarco_hd_binop(op, a[oa], b[ob]);
    }
}

__global__ void k_affine(int64_t total, int64_t c, const float *x, const float *scale, const float *shift, int act,
                         float alpha, float *y) {
    SARCO_CU_FOR(i, total) {
        int64_t ch = i % c;
        y[i] = sarco_hd_affine1(x[i], scale ? scale[ch] : 1.0f, shift ? shift[ch] : 0.0f, act, alpha);
    }
}

static sarco_status bad(sarco_backend *be, const char *op) {
    return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda %s: NULL buffer, negative size or unknown mode", op);
}

/* as the CPU backend: a known activation and a finite slope (the branch-free LeakyReLU needs one) */
static int act_ok(sarco_act act, float alpha) {
    return act >= SARCO_ACT_NONE && act < SARCO_ACT_COUNT && isfinite(alpha);
}

sarco_status sarco_cu_bias_act(sarco_backend *be, int64_t rows, int64_t c, float *y, const float *bias,
                               const float *res, sarco_act act, float alpha) {
    if (!y || rows < 0 || c < 1 || !act_ok(act, alpha)) return bad(be, "bias_act");
    int64_t total = rows * c;
    if (total == 0) return SARCO_OK;
    k_bias_act<<<sarco_cu_blocks(total, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(
        total, c, y, bias, res, (int)act, alpha);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

sarco_status sarco_cu_act(sarco_backend *be, sarco_act act, float alpha, int64_t n, const float *x, float *y) {
    if (!x || !y || n < 0 || !act_ok(act, alpha)) return bad(be, "act");
    if (n == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    k_act<<<sarco_cu_blocks(n, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(n, x, y, (int)act,
                                                                                                  alpha);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

/* 1 when the operand with strides s is the contiguous row-major layout of d->shape */
static int contiguous(const sarco_bcast_desc *d, const int64_t *s) {
    int64_t want = 1;
    for (int k = d->ndim - 1; k >= 0; k--) {
        if (d->shape[k] != 1 && s[k] != want) return 0;
        want *= d->shape[k];
    }
    return 1;
}

sarco_status sarco_cu_binary(sarco_backend *be, sarco_binop op, const sarco_bcast_desc *d, const float *a,
                             const float *b, float *y) {
    if (!d || !a || !b || !y || d->ndim < 0 || d->ndim > SARCO_MAX_DIMS || op < SARCO_BIN_ADD || op > SARCO_BIN_DIV)
        return bad(be, "binary");
    int64_t n = 1;
    for (int k = 0; k < d->ndim; k++) {
        if (d->shape[k] < 0) return bad(be, "binary");
        n *= d->shape[k];
    }
    if (n == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    unsigned blocks = sarco_cu_blocks(n, SARCO_CU_THREADS);
    cudaStream_t st = sarco_cu_of(be)->stream;
    if (contiguous(d, d->sa) && contiguous(d, d->sb))
        k_binary_flat<<<blocks, SARCO_CU_THREADS, 0, st>>>(n, (int)op, a, b, y);
    else
        k_binary<<<blocks, SARCO_CU_THREADS, 0, st>>>(n, (int)op, *d, a, b, y);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

sarco_status sarco_cu_channel_affine(sarco_backend *be, int64_t rows, int64_t c, const float *x, const float *scale,
                                     const float *shift, sarco_act act, float alpha, float *y) {
    if (!x || !y || rows < 0 || c < 1 || !act_ok(act, alpha)) return bad(be, "channel_affine");
    int64_t total = rows * c;
    if (total == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    k_affine<<<sarco_cu_blocks(total, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(
        total, c, x, scale, shift, (int)act, alpha, y);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}
