/* Swin Transformer ops as gathers (one thread per output element, index maps in kernels/swin_hd.h) and the
 * biased, masked attention softmax (one thread per score row, as kernels/softmax.cu). */
#include "../lib/cuda/cuda_internal.h"
#include "swin_hd.h"

__global__ void k_swin_partition(int64_t total, sarco_swin_desc d, const float *x, float *y) {
    SARCO_CU_FOR(i, total) {
        const int64_t p = sarco_hd_swin_token_pixel(&d, i / d.c);
        y[i] = p < 0 ? 0.0f : x[p * d.c + i % d.c];
    }
}

__global__ void k_swin_reverse(int64_t total, sarco_swin_desc d, const float *x, const float *res, float *y) {
    SARCO_CU_FOR(i, total) {
        const float v = x[sarco_hd_swin_pixel_token(&d, i / d.c) * d.c + i % d.c];
        y[i] = res ? res[i] + v : v;
    }
}

__global__ void k_swin_attn(int64_t rows, sarco_swin_desc d, int64_t heads, const float *table, float *att) {
    const int64_t L = d.win[0] * d.win[1];
    SARCO_CU_FOR(r, rows) sarco_hd_swin_attn_row(&d, heads, table, r, att + r * L);
}

__global__ void k_patch_merge(int64_t total, int64_t h, int64_t w, int64_t c, const float *x, float *y) {
    SARCO_CU_FOR(i, total) {
        const int64_t s = sarco_hd_patch_merge_src(h, w, c, i);
        y[i] = s < 0 ? 0.0f : x[s];
    }
}

static sarco_status launched(sarco_backend *be) {
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

static int64_t padded_tokens(const sarco_swin_desc *d) {
    return d->n * sarco_hd_swin_pad(d->h, d->win[0]) * sarco_hd_swin_pad(d->w, d->win[1]);
}

sarco_status sarco_cu_swin_partition(sarco_backend *be, const sarco_swin_desc *d, const float *x, float *y) {
    sarco_status s = sarco_swin_desc_check(be->ctx, d, 0);
    if (s != SARCO_OK) return s;
    if (!x || !y || x == y)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda swin_partition: NULL or aliased buffers");
    const int64_t total = padded_tokens(d) * d->c;
    if (total == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    k_swin_partition<<<sarco_cu_blocks(total, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(
        total, *d, x, y);
    return launched(be);
}

sarco_status sarco_cu_swin_reverse(sarco_backend *be, const sarco_swin_desc *d, const float *x, const float *res,
                                   float *y) {
    sarco_status s = sarco_swin_desc_check(be->ctx, d, 0);
    if (s != SARCO_OK) return s;
    if (!x || !y || x == y || x == res)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda swin_reverse: NULL or aliased buffers");
    const int64_t total = d->n * d->h * d->w * d->c;
    if (total == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    k_swin_reverse<<<sarco_cu_blocks(total, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(
        total, *d, x, res, y);
    return launched(be);
}

sarco_status sarco_cu_swin_attn_softmax(sarco_backend *be, const sarco_swin_desc *d, int64_t heads, const float *table,
                                        float *att) {
    sarco_status s = sarco_swin_desc_check(be->ctx, d, heads);
    if (s != SARCO_OK) return s;
    if (heads < 1 || !table || !att)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda swin_attn_softmax: heads %lld, or a NULL buffer",
                          (long long)heads);
    const int64_t L = d->win[0] * d->win[1];
    const int64_t rows = padded_tokens(d) / L * heads * L;
    if (rows == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    k_swin_attn<<<sarco_cu_blocks(rows, 128), 128, 0, sarco_cu_of(be)->stream>>>(rows, *d, heads, table, att);
    return launched(be);
}

sarco_status sarco_cu_patch_merge(sarco_backend *be, int64_t n, int64_t h, int64_t w, int64_t c, const float *x,
                                  float *y) {
    if (n < 0 || h < 1 || w < 1 || c < 1 || !x || !y || x == y)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "cuda patch_merge: N %lld, H %lld, W %lld, C %lld, or NULL/aliased buffers", (long long)n,
                          (long long)h, (long long)w, (long long)c);
    const int64_t total = n * ((h + 1) / 2) * ((w + 1) / 2) * 4 * c;
    if (total == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    k_patch_merge<<<sarco_cu_blocks(total, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(
        total, h, w, c, x, y);
    return launched(be);
}
