/* Softmax over the middle axis of (outer, n, inner).
 * inner = 1 (attention rows, channels-last class scores): a warp per row; lanes read 32 neighbouring
 * floats at a time, the row's max and sum are merged by xor shuffles (every lane ends with the same
 * bits), with sarco_hd_softmax_part_* from softmax_hd.h, the arithmetic the CPU runs as one lane.
 * inner > 1: a thread per line, neighbouring threads on neighbouring addresses (already coalesced). */
#include "../lib/cuda/cuda_internal.h"
#include "softmax_hd.h"

__global__ void k_softmax(int64_t lines, int64_t n, int64_t inner, const float *x, float *y) {
    SARCO_CU_FOR(l, lines) {
        int64_t base = (l / inner) * n * inner + l % inner;
        sarco_hd_softmax_line(x + base, n, inner, y + base);
    }
}

/* Rows are taken warp by warp, so every lane of a warp runs the same iterations (full-mask shuffles). */
__global__ void k_softmax_warp(int64_t rows, int64_t n, const float *x, float *y) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
        const float *xr = x + r * n;
        float m = sarco_hd_softmax_part_max(xr, n, 1, lane, 32);
        for (int o = 16; o; o >>= 1) m = sarco_hd_softmax_max2(m, __shfl_xor_sync(0xffffffffu, m, o));
        float s = sarco_hd_softmax_part_sum(xr, n, 1, lane, 32, m);
        for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        sarco_hd_softmax_part_write(xr, n, 1, lane, 32, m, 1.0f / s, y + r * n);
    }
}

sarco_status sarco_cu_softmax(sarco_backend *be, int64_t outer, int64_t n, int64_t inner, const float *x, float *y) {
    if (!x || !y || outer < 0 || n < 1 || inner < 1)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda softmax: shape (%lld, %lld, %lld)",
                          (long long)outer, (long long)n, (long long)inner);
    int64_t lines = outer * inner;
    if (lines == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    if (inner == 1) { /* 8 warps (rows) per block */
        k_softmax_warp<<<sarco_cu_blocks(lines * 32, 256), 256, 0, sarco_cu_of(be)->stream>>>(lines, n, x, y);
    } else {
        /* 128 threads per block: lines are few, so spread them over more SMs */
        k_softmax<<<sarco_cu_blocks(lines, 128), 128, 0, sarco_cu_of(be)->stream>>>(lines, n, inner, x, y);
    }
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}
