/* Swin Transformer index arithmetic (torchvision swin_transformer.py, v1), shared by the CPU loops and
 * the CUDA kernels: window partition with padding and cyclic shift, its inverse, the relative position
 * index, the shifted-window mask regions and the patch-merging gather. See sarco_swin_desc in ops.h. */
#ifndef SARCO_KERNELS_SWIN_HD_H
#define SARCO_KERNELS_SWIN_HD_H

#include "hd.h"
#include "softmax_hd.h"
#include "../lib/ops/ops.h"

/* the padded size of one axis: the next multiple of the window */
SARCO_HD int64_t sarco_hd_swin_pad(int64_t size, int64_t win) { return (size + win - 1) / win * win; }

/* Token t (row-major in the (N nW, L) window matrix) -> its pixel in x (N, H, W) as (n H + r) W + c, or
 * -1 for a padding pixel. torch.roll(x, -s) reads x[(i + s) mod P] at rolled position i. */
SARCO_HD int64_t sarco_hd_swin_token_pixel(const sarco_swin_desc *d, int64_t t) {
    const int64_t ph = sarco_hd_swin_pad(d->h, d->win[0]), pw = sarco_hd_swin_pad(d->w, d->win[1]);
    const int64_t nwh = ph / d->win[0], nww = pw / d->win[1], L = d->win[0] * d->win[1];
    const int64_t l = t % L, wi = t / L;
    const int64_t b = wi / (nwh * nww), w = wi % (nwh * nww);
    const int64_t r = (w / nww * d->win[0] + l / d->win[1] + d->shift[0]) % ph;
    const int64_t c = (w % nww * d->win[1] + l % d->win[1] + d->shift[1]) % pw;
    if (r >= d->h || c >= d->w) return -1;
    return (b * d->h + r) * d->w + c;
}

/* Pixel p = (n H + r) W + c of the map -> its token in the window matrix (the inverse of the above:
 * torch.roll(+s) of the reassembled windows, cropped). */
SARCO_HD int64_t sarco_hd_swin_pixel_token(const sarco_swin_desc *d, int64_t p) {
    const int64_t ph = sarco_hd_swin_pad(d->h, d->win[0]), pw = sarco_hd_swin_pad(d->w, d->win[1]);
    const int64_t nwh = ph / d->win[0], nww = pw / d->win[1], L = d->win[0] * d->win[1];
    const int64_t c = p % d->w, r = p / d->w % d->h, b = p / (d->w * d->h);
    const int64_t rr = (r - d->shift[0] % ph + ph) % ph, cc = (c - d->shift[1] % pw + pw) % pw;
    const int64_t wi = b * nwh * nww + rr / d->win[0] * nww + cc / d->win[1];
    return wi * L + rr % d->win[0] * d->win[1] + cc % d->win[1];
}

/* torchvision's relative_position_index[i L + j] for tokens i, j of a window */
SARCO_HD int64_t sarco_hd_swin_rel_index(const sarco_swin_desc *d, int64_t i, int64_t j) {
    const int64_t dr = i / d->win[1] - j / d->win[1] + d->win[0] - 1;
    const int64_t dc = i % d->win[1] - j % d->win[1] + d->win[1] - 1;
    return dr * (2 * d->win[1] - 1) + dc;
}

/* The shifted-window mask's region of rolled coordinate x on an axis of padded size P: torchvision labels
 * slices [0, P - win), [P - win, P - shift), [P - shift, P); with shift 0 the last slice covers the axis. */
SARCO_HD int sarco_hd_swin_region(int64_t x, int64_t P, int64_t win, int64_t shift) {
    if (shift == 0) return 2;
    return x < P - win ? 0 : x < P - shift ? 1 : 2;
}

/* Region label of token l of window w (within one image): 3 region_h + region_w */
SARCO_HD int sarco_hd_swin_label(const sarco_swin_desc *d, int64_t w, int64_t l) {
    const int64_t ph = sarco_hd_swin_pad(d->h, d->win[0]), pw = sarco_hd_swin_pad(d->w, d->win[1]);
    const int64_t nww = pw / d->win[1];
    const int64_t r = w / nww * d->win[0] + l / d->win[1], c = w % nww * d->win[1] + l % d->win[1];
    return 3 * sarco_hd_swin_region(r, ph, d->win[0], d->shift[0]) +
           sarco_hd_swin_region(c, pw, d->win[1], d->shift[1]);
}

/* One score row in place: row = (window wi of the whole batch, head h, query i), x[0..L) its scores.
 * x[j] = (x[j] + bias) + mask, in torchvision's order, then softmax. */
SARCO_HD void sarco_hd_swin_attn_row(const sarco_swin_desc *d, int64_t heads, const float *table, int64_t row,
                                     float *x) {
    const int64_t ph = sarco_hd_swin_pad(d->h, d->win[0]), pw = sarco_hd_swin_pad(d->w, d->win[1]);
    const int64_t nw = (ph / d->win[0]) * (pw / d->win[1]), L = d->win[0] * d->win[1];
    const int64_t i = row % L, h = row / L % heads, w = row / (L * heads) % nw;
    const int masked = d->shift[0] > 0 || d->shift[1] > 0;
    const int li = masked ? sarco_hd_swin_label(d, w, i) : 0;
    for (int64_t j = 0; j < L; j++) {
        float v = x[j] + table[sarco_hd_swin_rel_index(d, i, j) * heads + h];
        if (masked) v += sarco_hd_swin_label(d, w, j) != li ? -100.0f : 0.0f;
        x[j] = v;
    }
    sarco_hd_softmax_line(x, L, 1, x);
}

/* Window attention of one (window, head) block: blk = window wi of the whole batch x heads + head h; qkv
 * (N nW, L, 3C) as the qkv Linear writes it, each token (3, heads, dh); out (N nW, L, C) heads concatenated.
 * torchvision: q = q dh^-0.5; softmax(q K^T + bias + mask) V. scratch: sarco_hd_swin_attention_scratch
 * floats (K^T of the block, then one score row), so the score loop runs along contiguous memory. */
#define SARCO_SWIN_MAX_L 256   /* tokens per window (16 x 16) */
#define SARCO_SWIN_MAX_DH 128  /* channels per head */
SARCO_HD int64_t sarco_hd_swin_attention_scratch(int64_t L, int64_t dh) { return (dh + 1) * L; }

SARCO_HD void sarco_hd_swin_attention_block(const sarco_swin_desc *d, int64_t heads, const float *table,
                                            const float *qkv, int64_t blk, float *scratch, float *out) {
    const int64_t L = d->win[0] * d->win[1], C = d->c, dh = C / heads;
    const int64_t h = blk % heads, wi = blk / heads;
    const float scale = 1.0f / sqrtf((float)dh);
    const float *base = qkv + wi * L * 3 * C;
    float *kt = scratch, *s = scratch + dh * L; /* K^T (dh, L), one score row (L) */
    for (int64_t j = 0; j < L; j++)
        for (int64_t p = 0; p < dh; p++) kt[p * L + j] = base[j * 3 * C + C + h * dh + p];
    for (int64_t i = 0; i < L; i++) {
        const float *q = base + i * 3 * C + h * dh;
        for (int64_t j = 0; j < L; j++) s[j] = 0.0f;
        for (int64_t p = 0; p < dh; p++) {
            const float qp = q[p] * scale;
            const float *kr = kt + p * L;
            SARCO_HD_SIMD
            for (int64_t j = 0; j < L; j++) s[j] += qp * kr[j];
        }
        sarco_hd_swin_attn_row(d, heads, table, (wi * heads + h) * L + i, s); /* + bias + mask, softmax */
        float *o = out + (wi * L + i) * C + h * dh;
        for (int64_t p = 0; p < dh; p++) o[p] = 0.0f;
        for (int64_t j = 0; j < L; j++) {
            const float *v = base + j * 3 * C + 2 * C + h * dh;
            const float pj = s[j];
            SARCO_HD_SIMD
            for (int64_t p = 0; p < dh; p++) o[p] += pj * v[p];
        }
    }
}

/* Patch merging: element e of y (N, H2, W2, 4C) comes from x (N, H, W, C) at the returned index, or -1
 * for the zero padding. Quarter k = 0..3 takes offset (k & 1, k >> 1) (rows, cols): x0, x1, x2, x3. */
SARCO_HD int64_t sarco_hd_patch_merge_src(int64_t h, int64_t w, int64_t c, int64_t e) {
    const int64_t h2 = (h + 1) / 2, w2 = (w + 1) / 2;
    const int64_t ch = e % c, k = e / c % 4, p = e / (4 * c);
    const int64_t oc = p % w2, orow = p / w2 % h2, b = p / (w2 * h2);
    const int64_t r = 2 * orow + (k & 1), col = 2 * oc + (k >> 1);
    if (r >= h || col >= w) return -1;
    return ((b * h + r) * w + col) * c + ch;
}

#endif
