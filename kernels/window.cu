/* Sliding-window blending on the device (the op table's window_accumulate and argmax_labels): one
 * window's weighted accumulation (Gaussian or constant weights) and the final divide + argmax to
 * uint8/uint16 labels. Arithmetic: kernels/window_hd.h (shared with the CPU backend), element maps:
 * kernels/blend_hd.h. Each window is one launch on the context's stream, so every accumulator element
 * sees its windows in MONAI's order and the sums match the CPU's bit for bit. */
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

sarco_status sarco_cu_window_accumulate(sarco_backend *be, const sarco_window_desc *d, const float *y, const float *w,
                                        float *acc, float *cnt) {
    sarco_status s = sarco_window_desc_check(be->ctx, d);
    if (s != SARCO_OK) return s;
    if (!y || !acc || !cnt) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "window_accumulate: NULL buffer");
    sarco_blend_geom g;
    g.c = d->c;
    for (int a = 0; a < 3; a++) {
        g.roi[a] = d->roi[a];
        g.padded[a] = d->slab[a];
        g.st[a] = d->st[a];
    }
    SARCO_CU_ENTER(be);
    int64_t total = d->c * d->roi[0] * d->roi[1] * d->roi[2];
    k_window_accumulate<<<sarco_cu_blocks(total, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(
        total, g, y, w, acc, cnt);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

sarco_status sarco_cu_argmax_labels(sarco_backend *be, int64_t c, int64_t count, int64_t chan, const float *acc,
                                    const float *cnt, int bits, void *labels) {
    sarco_status s = sarco_argmax_check(be->ctx, c, count, chan, bits);
    if (s != SARCO_OK) return s;
    if (count == 0) return SARCO_OK;
    if (!acc || !cnt || !labels) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "argmax_labels: NULL buffer");
    SARCO_CU_ENTER(be);
    k_argmax_labels<<<sarco_cu_blocks(count, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, sarco_cu_of(be)->stream>>>(
        count, c, chan, acc, cnt, bits, labels);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}
