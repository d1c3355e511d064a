/* Index maps for layout changes (gathers: output index -> input index), shared by CPU and CUDA. */
#ifndef SARCO_KERNELS_LAYOUT_HD_H
#define SARCO_KERNELS_LAYOUT_HD_H

#include "hd.h"
#include "../lib/ops/ops.h"

/* to_cl: element i of y (N, S, C) comes from x (N, C, S) at the returned index. */
SARCO_HD int64_t sarco_hd_to_cl_src(int64_t i, int64_t c, int64_t s) {
    int64_t ch = i % c, t = i / c;
    int64_t sp = t % s, n = t / s;
    return (n * c + ch) * s + sp;
}

/* from_cl: element i of y (N, C, S) comes from x (N, S, C) at the returned index. */
SARCO_HD int64_t sarco_hd_from_cl_src(int64_t i, int64_t c, int64_t s) {
    int64_t sp = i % s, t = i / s;
    int64_t ch = t % c, n = t / c;
    return (n * s + sp) * c + ch;
}

/* Patchify: element i of tokens (N, L, P), P ordered (p1, p2, p3, c), comes from the volume
 * (N, in..., C) at the returned index. Unpatchify uses sarco_hd_patch_tok_index. */
SARCO_HD int64_t sarco_hd_patch_vol_index(const sarco_patch_desc *d, int64_t i) {
    int64_t in[3] = {1, 1, 1}, p[3] = {1, 1, 1}, g[3], q[3];
    for (int j = 0; j < d->nsp; j++) {
        in[3 - d->nsp + j] = d->in[j];
        p[3 - d->nsp + j] = d->p[j];
    }
    int64_t ch = i % d->c;
    i /= d->c;
    for (int j = 2; j >= 0; j--) { /* (p1, p2, p3) within the patch */
        q[j] = i % p[j];
        i /= p[j];
    }
    for (int j = 2; j >= 0; j--) { /* patch grid position, row-major */
        int64_t nb = in[j] / p[j];
        g[j] = i % nb;
        i /= nb;
    }
    int64_t n = i, v = n;
    for (int j = 0; j < 3; j++) v = v * in[j] + g[j] * p[j] + q[j];
    return v * d->c + ch;
}

/* Unpatchify: element i of the volume (N, in..., C) comes from tokens (N, L, P) at the returned index. */
SARCO_HD int64_t sarco_hd_patch_tok_index(const sarco_patch_desc *d, int64_t i) {
    int64_t in[3] = {1, 1, 1}, p[3] = {1, 1, 1}, x[3];
    for (int j = 0; j < d->nsp; j++) {
        in[3 - d->nsp + j] = d->in[j];
        p[3 - d->nsp + j] = d->p[j];
    }
    int64_t ch = i % d->c;
    i /= d->c;
    for (int j = 2; j >= 0; j--) {
        x[j] = i % in[j];
        i /= in[j];
    }
    int64_t n = i, tok = n, feat = 0;
    for (int j = 0; j < 3; j++) {
        tok = tok * (in[j] / p[j]) + x[j] / p[j];
        feat = feat * p[j] + x[j] % p[j];
    }
    return (tok * (p[0] * p[1] * p[2]) + feat) * d->c + ch;
}

/* Concat along the middle axis: element i of y (outer, total, inner) comes from input *k at the
 * returned offset (inputs are (outer, sizes[k], inner)). */
SARCO_HD int64_t sarco_hd_concat_src(int count, const int64_t *sizes, int64_t total, int64_t inner, int64_t i,
                                     int *k) {
    int64_t in_ = i % inner, t = i / inner;
    int64_t mid = t % total, outer = t / total;
    int j = 0;
    while (j < count - 1 && mid >= sizes[j]) {
        mid -= sizes[j];
        j++;
    }
    *k = j;
    return (outer * sizes[j] + mid) * inner + in_;
}

#endif
