/* Sliding-window blending on the device: one window's weighted accumulation (Gaussian or constant
 * weights) and the final divide + argmax to uint8/uint16 labels. Arithmetic: kernels/window_hd.h
 * (shared with lib/pipeline/window.c), element maps: kernels/blend_hd.h. Each window is one launch
 * on the context's stream, so every accumulator element sees its windows in MONAI's order and the
 * sums match the CPU's bit for bit. Not in the op table yet (docs/cuda.md: proposed entries). */
#include "../lib/cuda/cuda_internal.h"
#include "blend_hd.h"
#include "window_hd.h"

/* acc += y w, cnt += w (once per voxel: the threads of channel 0); w NULL is the constant map */
__global__ void k_window_accumulate(int64_t total, sarco_blend_geom g, const float *y, const float *w, float *acc,
                                    float *cnt) {
    SARCO_CU_FOR(i, total) {
        int64_t vox, tile;
        int64_t a = sarco_blend_index(&g, i, &vox, &tile);
        float wt = w ? w[tile] : 1.0f;
        sarco_window_accumulate(&acc[a], y[i], wt);
        if (i < total / g.c) cnt[vox] += wt;
    }
}

__global__ void k_argmax_labels(int64_t count, int64_t c, int64_t chan, const float *acc, const float *cnt, int bits,
                                void *labels) {
    SARCO_CU_FOR(i, count) sarco_label_store(labels, bits, i, sarco_argmax_div(acc + i, c, chan, cnt[i]));
}

SARCO_INTERNAL sarco_status sarco_cu_window_accumulate(sarco_backend *be, int64_t c, const int64_t *padded,
                                                       const int64_t *roi, const int64_t *st, const float *y,
                                                       const float *w, float *acc, float *cnt);
SARCO_INTERNAL sarco_status sarco_cu_argmax_labels(sarco_backend *be, int64_t c, int64_t count, int64_t chan,
                                                   const float *acc, const float *cnt, int bits, void *labels);

sarco_status sarco_cu_window_accumulate(sarco_backend *be, int64_t c, const int64_t *padded, const int64_t *roi,
                                        const int64_t *st, const float *y, const float *w, float *acc, float *cnt) {
    sarco_blend_geom g;
    int ok = c >= 1 && padded && roi && st && y && acc && cnt;
    g.c = c;
    for (int a = 0; ok && a < 3; a++) {
        g.roi[a] = roi[a];
        g.padded[a] = padded[a];
        g.st[a] = st[a];
        ok = roi[a] >= 1 && st[a] >= 0 && st[a] + roi[a] <= padded[a];
    }
    if (!ok)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda window_accumulate: a window outside the grid");
    SARCO_CU_ENTER(be);
    int64_t total = c * roi[0] * roi[1] * roi[2];
    k_window_accumulate<<<sarco_cu_blocks(total, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(
        total, g, y, w, acc, cnt);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

sarco_status sarco_cu_argmax_labels(sarco_backend *be, int64_t c, int64_t count, int64_t chan, const float *acc,
                                    const float *cnt, int bits, void *labels) {
    if (c < 1 || count < 0 || chan < count || !acc || !cnt || !labels || (bits != 8 && bits != 16) ||
        c > (bits == 8 ? 256 : 65536))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda argmax_labels: %lld classes into %d-bit labels",
                          (long long)c, bits);
    if (count == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    k_argmax_labels<<<sarco_cu_blocks(count, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(
        count, c, chan, acc, cnt, bits, labels);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}
