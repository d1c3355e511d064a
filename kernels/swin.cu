/* Swin Transformer ops as gathers (one thread per output element, index maps in kernels/swin_hd.h) and the
 * fused window attention (one thread per (window, head): scores, bias + mask + softmax, x V). */
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

/* one thread per (window, head) block, each with its own slice of the scratch arena */
__global__ void k_swin_attention(int64_t blocks, sarco_swin_desc d, int64_t heads, const float *table, const float *qkv,
                                 float *scratch, int64_t per, float *out) {
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    SARCO_CU_FOR(b, blocks) sarco_hd_swin_attention_block(&d, heads, table, qkv, b, scratch + t * per, out);
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

sarco_status sarco_cu_swin_attention(sarco_backend *be, const sarco_swin_desc *d, int64_t heads, const float *table,
                                     const float *qkv, float *out) {
    sarco_status s = sarco_swin_desc_check(be->ctx, d, heads);
    if (s != SARCO_OK) return s;
    const int64_t L = d->win[0] * d->win[1];
    if (heads < 1 || d->c % heads || L > SARCO_SWIN_MAX_L || d->c / heads > SARCO_SWIN_MAX_DH || !table || !qkv ||
        !out || qkv == out)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "cuda swin_attention: %lld heads for %lld channels, %lld tokens per window (at most %d tokens "
                          "and %d channels per head), or NULL/aliased buffers",
                          (long long)heads, (long long)d->c, (long long)L, SARCO_SWIN_MAX_L, SARCO_SWIN_MAX_DH);
    const int64_t blocks = padded_tokens(d) / L * heads;
    if (blocks == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    const int64_t per = sarco_hd_swin_attention_scratch(L, d->c / heads);
    const int threads = 64;
    unsigned grid = sarco_cu_blocks(blocks, threads);
    if (grid > 1024) grid = 1024; /* <= 65536 threads: the scratch stays <= 65536 x per floats */
    void *scratch = NULL;
    s = sarco_cu_scratch(be, (size_t)grid * threads * (size_t)per * sizeof(float), &scratch);
    if (s != SARCO_OK) return s;
    k_swin_attention<<<grid, threads, 0, sarco_cu_of(be)->stream>>>(blocks, *d, heads, table, qkv, (float *)scratch, per,
                                                                    out);
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
