/* Layout changes as gathers (one thread per output element, index maps in kernels/layout_hd.h):
 * PyTorch layout <-> channels-last, patchify/unpatchify, and concat as one strided copy per input
 * straight into its slot of the output (no intermediate concat buffer). */
#include "../lib/cuda/cuda_internal.h"
#include "layout_hd.h"

__global__ void k_to_cl(int64_t total, int64_t c, int64_t s, const float *x, float *y) {
    SARCO_CU_FOR(i, total) y[i] = x[sarco_hd_to_cl_src(i, c, s)];
}

__global__ void k_from_cl(int64_t total, int64_t c, int64_t s, const float *x, float *y) {
    SARCO_CU_FOR(i, total) y[i] = x[sarco_hd_from_cl_src(i, c, s)];
}

__global__ void k_patchify(int64_t total, sarco_patch_desc d, const float *x, float *y) {
    SARCO_CU_FOR(i, total) y[i] = x[sarco_hd_patch_vol_index(&d, i)];
}

__global__ void k_unpatchify(int64_t total, sarco_patch_desc d, const float *x, float *y) {
    SARCO_CU_FOR(i, total) y[i] = x[sarco_hd_patch_tok_index(&d, i)];
}

/* input k (outer, w) -> y (outer, row) at column offset off; w = sizes[k] inner, row = total inner */
__global__ void k_copy_slot(int64_t count, int64_t w, int64_t row, int64_t off, const float *x, float *y) {
    SARCO_CU_FOR(i, count) y[(i / w) * row + off + i % w] = x[i];
}

static sarco_status launched(sarco_backend *be) {
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

static sarco_status permute(sarco_backend *be, int to, int64_t n, int64_t c, int64_t s, const float *x, float *y) {
    if (!x || !y || x == y || n < 0 || c < 1 || s < 1)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda %s: N %lld, C %lld, S %lld (y may not alias x)",
                          to ? "to_cl" : "from_cl", (long long)n, (long long)c, (long long)s);
    int64_t total = n * c * s;
    if (total == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    unsigned blocks = sarco_cu_blocks(total, SARCO_CU_THREADS);
    cudaStream_t st = sarco_cu_of(be)->stream;
    if (to)
        k_to_cl<<<blocks, SARCO_CU_THREADS, 0, st>>>(total, c, s, x, y);
    else
        k_from_cl<<<blocks, SARCO_CU_THREADS, 0, st>>>(total, c, s, x, y);
    return launched(be);
}

sarco_status sarco_cu_to_cl(sarco_backend *be, int64_t n, int64_t c, int64_t s, const float *x, float *y) {
    return permute(be, 1, n, c, s, x, y);
}

sarco_status sarco_cu_from_cl(sarco_backend *be, int64_t n, int64_t c, int64_t s, const float *x, float *y) {
    return permute(be, 0, n, c, s, x, y);
}

static sarco_status patch(sarco_backend *be, int fwd, const sarco_patch_desc *d, const float *x, float *y) {
    int ok = d && x && y && x != y && (d->nsp == 2 || d->nsp == 3) && d->n >= 0 && d->c >= 1;
    int64_t total = ok ? d->n * d->c : 0;
    for (int j = 0; ok && j < d->nsp; j++) {
        ok = d->p[j] >= 1 && d->in[j] >= 1 && d->in[j] % d->p[j] == 0;
        total *= d->in[j];
    }
    if (!ok)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "cuda %s: sizes must be divisible by the patch, y may not alias x", fwd ? "patchify" : "unpatchify");
    if (total == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    unsigned blocks = sarco_cu_blocks(total, SARCO_CU_THREADS);
    cudaStream_t st = sarco_cu_of(be)->stream;
    if (fwd)
        k_patchify<<<blocks, SARCO_CU_THREADS, 0, st>>>(total, *d, x, y);
    else
        k_unpatchify<<<blocks, SARCO_CU_THREADS, 0, st>>>(total, *d, x, y);
    return launched(be);
}

sarco_status sarco_cu_patchify(sarco_backend *be, const sarco_patch_desc *d, const float *x, float *y) {
    return patch(be, 1, d, x, y);
}

sarco_status sarco_cu_unpatchify(sarco_backend *be, const sarco_patch_desc *d, const float *x, float *y) {
    return patch(be, 0, d, x, y);
}

sarco_status sarco_cu_concat(sarco_backend *be, int count, const float *const *xs, const int64_t *sizes,
                             int64_t outer, int64_t inner, float *y) {
    int ok = count >= 1 && xs && sizes && y && outer >= 0 && inner >= 1;
    int64_t total = 0;
    for (int k = 0; ok && k < count; k++) {
        ok = xs[k] && xs[k] != y && sizes[k] >= 0;
        total += sizes[k];
    }
    if (!ok)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "cuda concat: %d inputs, outer %lld, inner %lld: a NULL or aliased buffer or a bad size", count,
                          (long long)outer, (long long)inner);
    SARCO_CU_ENTER(be);
    cudaStream_t st = sarco_cu_of(be)->stream;
    int64_t off = 0;
    for (int k = 0; k < count; k++) {
        int64_t w = sizes[k] * inner, n = outer * w;
        if (n > 0) {
            k_copy_slot<<<sarco_cu_blocks(n, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, st>>>(n, w, total * inner, off, xs[k],
                                                                                            y);
            SARCO_CU_LAUNCHED(be);
        }
        off += w;
    }
    return SARCO_OK;
}
