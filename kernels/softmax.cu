/* Softmax over the middle axis of (outer, n, inner): one thread per line, sarco_hd_softmax_line.
 * For inner > 1 neighbouring threads read neighbouring addresses; for inner = 1 (attention rows,
 * channels-last class scores) each thread walks its own contiguous row, which the L1 cache serves. */
#include "../lib/cuda/cuda_internal.h"
#include "softmax_hd.h"

__global__ void k_softmax(int64_t lines, int64_t n, int64_t inner, const float *x, float *y) {
    SARCO_CU_FOR(l, lines) {
        int64_t base = (l / inner) * n * inner + l % inner;
        sarco_hd_softmax_line(x + base, n, inner, y + base);
    }
}

sarco_status sarco_cu_softmax(sarco_backend *be, int64_t outer, int64_t n, int64_t inner, const float *x, float *y) {
    if (!x || !y || outer < 0 || n < 1 || inner < 1)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda softmax: shape (%lld, %lld, %lld)",
                          (long long)outer, (long long)n, (long long)inner);
    int64_t lines = outer * inner;
    if (lines == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    /* 128 threads per block: lines are few (attention: heads x tokens), so spread them over more SMs */
    k_softmax<<<sarco_cu_blocks(lines, 128), 128, 0, sarco_cu_of(be)->stream>>>(lines, n, inner, x, y);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}
