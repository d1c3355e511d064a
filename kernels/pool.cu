/* Max/avg pooling on channels-last maps: one thread per output element, sarco_hd_pool1. */
#include "../lib/cuda/cuda_internal.h"
#include "pool_hd.h"

typedef struct pool_shape {
    int64_t in[3], out[3];
} pool_shape;

__global__ void k_pool(int64_t total, sarco_pool_desc d, pool_shape sh, int64_t c, const float *x, float *y) {
    int64_t sample = c;
    for (int j = 0; j < d.nsp; j++) sample *= sh.in[j];
    SARCO_CU_FOR(i, total) {
        int64_t o[3], t = i / c, ch = i % c;
        for (int j = d.nsp - 1; j >= 0; j--) {
            o[j] = t % sh.out[j];
            t /= sh.out[j];
        }
        y[i] = sarco_hd_pool1(&d, sh.in, c, x + t * sample, o, ch);
    }
}

sarco_status sarco_cu_pool(sarco_backend *be, const sarco_pool_desc *d, int64_t n, int64_t c, const int64_t *in,
                           const float *x, float *y) {
    pool_shape sh = {{1, 1, 1}, {1, 1, 1}};
    int ok = d && in && x && y && x != y && n >= 0 && c >= 1 && (d->nsp == 2 || d->nsp == 3) &&
             (d->kind == SARCO_POOL_MAX || d->kind == SARCO_POOL_AVG);
    for (int j = 0; ok && j < d->nsp; j++) {
        sh.in[j] = in[j];
        ok = d->pad[j] >= 0 && 2 * d->pad[j] <= d->k[j]; /* PyTorch: pad at most half the kernel */
    }
    if (ok) ok = sarco_pool_out_shape(d, sh.in, sh.out); /* lib/ops/shape.c, as the CPU computes it */
    if (!ok)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "cuda pool: bad desc, an empty output or y aliasing x (N %lld, C %lld)", (long long)n,
                          (long long)c);
    int64_t total = n * c;
    for (int j = 0; j < d->nsp; j++) total *= sh.out[j];
    if (total == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    k_pool<<<sarco_cu_blocks(total, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(total, *d, sh, c,
                                                                                                       x, y);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

/* Adaptive average pooling, 2D channels-last: one thread per output element, sarco_hd_adaptive_avg1. */
__global__ void k_adaptive_avg(int64_t total, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t c,
                               const float *x, float *y) {
    SARCO_CU_FOR(i, total) {
        const int64_t ch = i % c, t = i / c, ox = t % ow, oy = (t / ow) % oh, b = t / (ow * oh);
        y[i] = sarco_hd_adaptive_avg1(x + b * ih * iw * c, ih, iw, c, oh, ow, oy, ox, ch);
    }
}

sarco_status sarco_cu_adaptive_avg_pool2d(sarco_backend *be, int64_t n, int64_t c, const int64_t *in,
                                          const int64_t *out, const float *x, float *y) {
    if (!in || !out || n < 0 || c < 1 || in[0] < 1 || in[1] < 1 || out[0] < 1 || out[1] < 1 ||
        (n && (!x || !y || x == y)))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "cuda adaptive_avg_pool2d: bad sizes or NULL/aliased buffers (N %lld, C %lld)",
                          (long long)n, (long long)c);
    const int64_t total = n * out[0] * out[1] * c;
    if (total == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    k_adaptive_avg<<<sarco_cu_blocks(total, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(
        total, in[0], in[1], out[0], out[1], c, x, y);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}
