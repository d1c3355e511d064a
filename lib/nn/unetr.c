/* MONAI UNETR (monai/networks/nets/unetr.py): a 12-block ViT encoder on 16^d patches, skips from
 * blocks 3, 6 and 9 and the final norm, lifted by transposed convs into a U-Net decoder.
 *
 * Semantics checked against MONAI 1.6's source (nets/unetr.py, nets/vit.py, blocks/unetr_block.py,
 * blocks/dynunet_block.py, blocks/transformerblock.py, blocks/selfattention.py,
 * blocks/patchembedding.py, blocks/mlp.py); docs/unetr.md lists the details and choices.
 *
 * Activations are channels-last throughout, so MONAI's proj_feat (view + permute of the tokens to
 * (B, hidden, f1, f2, f3)) is the identity here: token t of the row-major patch grid already is voxel
 * t of the (N, f1, f2, f3, hidden) map. Eval-mode BatchNorm is folded into the preceding bias-free
 * conv at load, which then also carries the LeakyReLU and the residual add.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arch.h"

#define UNETR_LAYERS 12  /* fixed in MONAI, not a keyword */
#define UNETR_PATCH 16   /* fixed in MONAI, not a keyword */
#define UNETR_SLOPE 0.01f /* LeakyReLU negative slope of UnetResBlock / UnetBasicBlock */
#define UNETR_LN_EPS 1e-5f

#define TRY(expr)                             \
    do {                                      \
        sarco_status try_s_ = (expr);         \
        if (try_s_ != SARCO_OK) return try_s_; \
    } while (0)

/* UnetResBlock (res) or UnetBasicBlock: conv k3 -> norm -> LeakyReLU -> conv k3 -> norm
 * (+ residual, through conv3 k1 + norm3 when cin != cout) -> LeakyReLU. */
typedef struct unet_block {
    int64_t cin, cout;
    int res;
    sarco_conv *conv1, *conv2, *conv3;
    float *g1, *b1, *g2, *b2, *g3, *b3; /* InstanceNorm affine; NULL when affine=False or for BatchNorm */
} unet_block;

/* UnetrPrUpBlock: transp_conv_init, then nlayer x (transposed conv [+ block when conv_block]) */
typedef struct prup_block {
    int nlayer;
    int64_t cout;
    sarco_conv *init;
    sarco_conv *up[2];
    unet_block blk[2];
} prup_block;

/* UnetrUpBlock: transposed conv, concat [up, skip] on channels, block (2 cout -> cout) */
typedef struct up_block {
    int64_t cout;
    sarco_conv *up;
    unet_block blk;
} up_block;

typedef struct vit_layer {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    sarco_linear *qkv, *out_proj, *fc1, *fc2; /* fc1 carries the exact GELU */
} vit_layer;

/* Backend buffers for one batch size, allocated on the first forward and reused. Floats. */
typedef struct unetr_ws {
    int64_t n; /* 0: not allocated */
    float *x;          /* (N, S, Cin) input, channels-last */
    float *patches;    /* (N, L, 16^d Cin) perceptron only */
    float *tok, *tok2; /* (N, L, hidden) residual stream, ping-pong */
    float *h;          /* (N, L, hidden) normed tokens; after the loop the vit.norm output */
    float *qkv;        /* (N, L, 3 hidden) */
    float *att, *prob; /* (heads, L, L) one batch item at a time */
    float *heads;      /* (N, L, hidden) attention output before out_proj */
    float *mlp;        /* (N, L, mlp_dim) */
    float *skip[3];    /* hidden_states_out[3], [6], [9] */
    float *enc1, *enc2, *enc3, *enc4, *dec;
    float *cat, *a, *b; /* decoder scratch; cat also takes the encoders' upsampled maps and, at the end,
                         * the (N, S, out) logits */
} unetr_ws;

typedef struct unetr {
    /* keywords */
    int nsp;
    int64_t in_ch, out_ch, img[3], fs, hidden, mlp, heads;
    int proj_conv, batch_norm, norm_affine, conv_block, res_block, qkv_bias;
    float eps;
    /* derived */
    int64_t feat[3], tokens, voxels, head_dim, patch_dim;
    /* weights */
    sarco_conv *patch_conv;
    sarco_linear *patch_lin;
    float *pos; /* (1, L, hidden) */
    vit_layer vit[UNETR_LAYERS];
    float *norm_w, *norm_b;
    unet_block enc1;
    prup_block enc2, enc3, enc4;
    up_block dec5, dec4, dec3, dec2;
    sarco_conv *out;
    unetr_ws ws;
} unetr;

static int64_t prod(const int64_t *v, int n) {
    int64_t p = 1;
    for (int i = 0; i < n; i++) p *= v[i];
    return p;
}

/* ================================================================================================
 * forward
 * ================================================================================================ */

/* Multi-head self-attention of one batch item: qkv (L, 3 hidden) holds Q, K, V one after the other,
 * each head-major (MONAI's "b h (qkv l d) -> qkv b l h d"); out (L, hidden) has the heads concatenated. */
static sarco_status attention_forward(sarco_backend *be, const unetr *u, const float *qkv, float *att, float *prob,
                                      float *out) {
    const int64_t L = u->tokens, H = u->hidden, nh = u->heads, dh = u->head_dim;
    /* att[h] (L, L) = Q[h] K[h]^T dh^-0.5 with Q[h](i, p) = qkv[i 3H + h dh + p],
     * K[h]^T(p, j) = qkv[H + j 3H + h dh + p] */
    const sarco_gemm_desc qk = {.batch = nh, .m = L, .n = L, .k = dh,
                                .a_bs = dh, .a_rs = 3 * H, .a_cs = 1,
                                .b_bs = dh, .b_rs = 1, .b_cs = 3 * H,
                                .c_bs = L * L, .c_rs = L,
                                .alpha = (float)(1.0 / sqrt((double)dh)), .beta = 0.0f};
    TRY(be->ops->gemm(be, &qk, qkv, qkv + H, att));
    TRY(be->ops->softmax(be, nh * L, L, 1, att, prob)); /* over keys */
    /* out(i, h dh + j) = sum_p prob[h](i, p) V[h](p, j), with V[h](p, j) = qkv[2H + p 3H + h dh + j] */
    const sarco_gemm_desc pv = {.batch = nh, .m = L, .n = dh, .k = L,
                                .a_bs = L * L, .a_rs = L, .a_cs = 1,
                                .b_bs = dh, .b_rs = 3 * H, .b_cs = 1,
                                .c_bs = dh, .c_rs = H,
                                .alpha = 1.0f, .beta = 0.0f};
    return be->ops->gemm(be, &pv, prob, qkv + 2 * H, out);
}

/* UnetResBlock / UnetBasicBlock: x (N, sp, cin) -> y (N, sp, cout); a, b are scratch maps. */
static sarco_status block_forward(sarco_backend *be, const unetr *u, const unet_block *k, int64_t n,
                                  const int64_t *sp, const float *x, float *a, float *b, float *y) {
    const sarco_backend_ops *op = be->ops;
    if (u->batch_norm) {
        /* the convs hold the folded BatchNorm, the LeakyReLU, and (conv2) the residual add */
        TRY(op->conv_run(be, k->conv1, n, sp, x, NULL, a)); /* lrelu(norm1(conv1 x)) */
        const float *res = NULL;
        if (k->res) {
            res = x;
            if (k->conv3) {
                TRY(op->conv_run(be, k->conv3, n, sp, x, NULL, b)); /* norm3(conv3 x) */
                res = b;
            }
        }
        return op->conv_run(be, k->conv2, n, sp, a, res, y); /* lrelu(norm2(conv2 a) [+ res]) */
    }
    const int64_t s = prod(sp, u->nsp);
    TRY(op->conv_run(be, k->conv1, n, sp, x, NULL, a));
    TRY(op->instnorm(be, n, s, k->cout, a, k->g1, k->b1, u->eps, NULL, SARCO_ACT_LEAKY_RELU, UNETR_SLOPE, b));
    TRY(op->conv_run(be, k->conv2, n, sp, b, NULL, a));
    const float *res = NULL;
    if (k->res) {
        res = x;
        if (k->conv3) {
            TRY(op->conv_run(be, k->conv3, n, sp, x, NULL, b));
            TRY(op->instnorm(be, n, s, k->cout, b, k->g3, k->b3, u->eps, NULL, SARCO_ACT_NONE, 0.0f, b)); /* in place */
            res = b;
        }
    }
    /* lrelu(norm2(a) [+ res]) */
    return op->instnorm(be, n, s, k->cout, a, k->g2, k->b2, u->eps, res, SARCO_ACT_LEAKY_RELU, UNETR_SLOPE, y);
}

/* UnetrPrUpBlock: z (N, feat, hidden) -> y (N, feat 2^(1 + nlayer), cout). The upsampled map goes to
 * cat, which the decoder only needs later (and the block reads it to the end, as its residual). */
static sarco_status prup_forward(sarco_backend *be, const unetr *u, const prup_block *p, int64_t n, const float *z,
                                 float *y) {
    const unetr_ws *w = &u->ws;
    int64_t sp[3] = {u->feat[0], u->feat[1], u->feat[2]};
    TRY(be->ops->conv_run(be, p->init, n, sp, z, NULL, y));
    for (int i = 0; i < u->nsp; i++) sp[i] *= 2;
    for (int l = 0; l < p->nlayer; l++) {
        TRY(be->ops->conv_run(be, p->up[l], n, sp, y, NULL, w->cat));
        for (int i = 0; i < u->nsp; i++) sp[i] *= 2;
        if (u->conv_block)
            TRY(block_forward(be, u, &p->blk[l], n, sp, w->cat, w->a, w->b, y));
        else
            TRY(be->ops->copy(be, y, w->cat, (size_t)(n * prod(sp, u->nsp) * p->cout) * sizeof(float)));
    }
    return SARCO_OK;
}

/* UnetrUpBlock: x (N, sp, cin) -> transposed conv (N, 2 sp, cout) into a, cat [a, skip], block -> y.
 * y may be x: x is consumed by the transposed conv before the block writes y; a is free again once
 * the concat has copied it. */
static sarco_status up_forward(sarco_backend *be, const unetr *u, const up_block *b, int64_t n, const int64_t *sp_in,
                               const float *x, const float *skip, float *y) {
    const unetr_ws *w = &u->ws;
    int64_t sp[3] = {1, 1, 1};
    for (int i = 0; i < u->nsp; i++) sp[i] = 2 * sp_in[i];
    TRY(be->ops->conv_run(be, b->up, n, sp_in, x, NULL, w->a));
    const float *parts[2] = {w->a, skip};
    const int64_t sizes[2] = {b->cout, b->cout};
    TRY(be->ops->concat(be, 2, parts, sizes, n * prod(sp, u->nsp), 1, w->cat));
    return block_forward(be, u, &b->blk, n, sp, w->cat, w->a, w->b, y);
}

static sarco_status workspace(sarco_context *ctx, unetr *u, int64_t n);

/* x (N, Cin, [D,] H, W) -> y (N, out_channels, [D,] H, W), both PyTorch layout, backend memory.
 * MONAI: x, hs = vit(x_in); enc1 = encoder1(x_in); enc2..4 = encoder2..4(proj_feat(hs[3, 6, 9]));
 * dec = decoder5(proj_feat(x), enc4) -> decoder4(., enc3) -> decoder3(., enc2) -> decoder2(., enc1); out. */
static sarco_status unetr_forward(sarco_context *ctx, void *state, int ndim, const int64_t *in, const float *x_in,
                                  float *y) {
    unetr *u = state;
    sarco_backend *be = ctx->be;
    const sarco_backend_ops *op = be->ops;
    (void)ndim; /* checked by output_shape */
    const int64_t n = in[0], L = u->tokens, H = u->hidden, S = u->voxels;
    TRY(workspace(ctx, u, n));
    unetr_ws *w = &u->ws;

    TRY(op->to_cl(be, n, u->in_ch, S, x_in, w->x)); /* (N, S, Cin) */

    /* ---- ViT: patch embedding + learnable position embedding -> tok (N, L, H) ---- */
    if (u->proj_conv) {
        TRY(op->conv_run(be, u->patch_conv, n, u->img, w->x, NULL, w->tok)); /* k = stride = 16 */
    } else {
        const sarco_patch_desc pd = {.nsp = u->nsp, .n = n, .c = u->in_ch,
                                     .in = {u->img[0], u->img[1], u->img[2]},
                                     .p = {UNETR_PATCH, UNETR_PATCH, UNETR_PATCH}};
        TRY(op->patchify(be, &pd, w->x, w->patches)); /* "b c (h p1) (w p2) (d p3) -> b (h w d) (p1 p2 p3 c)" */
        TRY(op->linear_run(be, u->patch_lin, n * L, w->patches, NULL, w->tok));
    }
    const sarco_bcast_desc pos_add = {.ndim = 2, .shape = {n, L * H}, .sa = {L * H, 1}, .sb = {0, 1}};
    TRY(op->binary(be, SARCO_BIN_ADD, &pos_add, w->tok, u->pos, w->tok));

    /* ---- 12 pre-norm transformer blocks ---- */
    for (int l = 0; l < UNETR_LAYERS; l++) {
        const vit_layer *b = &u->vit[l];
        /* x = x + out_proj(attn(norm1 x)) */
        TRY(op->layernorm(be, n * L, H, w->tok, b->ln1_w, b->ln1_b, UNETR_LN_EPS, w->h));
        TRY(op->linear_run(be, b->qkv, n * L, w->h, NULL, w->qkv));
        for (int64_t i = 0; i < n; i++)
            TRY(attention_forward(be, u, w->qkv + i * L * 3 * H, w->att, w->prob, w->heads + i * L * H));
        TRY(op->linear_run(be, b->out_proj, n * L, w->heads, w->tok, w->tok2));
        /* x = x + linear2(gelu(linear1(norm2 x))) */
        TRY(op->layernorm(be, n * L, H, w->tok2, b->ln2_w, b->ln2_b, UNETR_LN_EPS, w->h));
        TRY(op->linear_run(be, b->fc1, n * L, w->h, NULL, w->mlp));
        TRY(op->linear_run(be, b->fc2, n * L, w->mlp, w->tok2, w->tok));
        if (l == 3 || l == 6 || l == 9) /* hidden_states_out[3, 6, 9], before the final norm */
            TRY(op->copy(be, w->skip[l / 3 - 1], w->tok, (size_t)(n * L * H) * sizeof(float)));
    }
    TRY(op->layernorm(be, n * L, H, w->tok, u->norm_w, u->norm_b, UNETR_LN_EPS, w->h)); /* vit.norm */

    /* ---- CNN encoders: on the input, and on the hidden states seen as (N, feat, H) maps ---- */
    TRY(block_forward(be, u, &u->enc1, n, u->img, w->x, w->a, w->b, w->enc1)); /* (N, S, fs) */
    TRY(prup_forward(be, u, &u->enc2, n, w->skip[0], w->enc2)); /* (N, 8 feat, 2 fs) */
    TRY(prup_forward(be, u, &u->enc3, n, w->skip[1], w->enc3)); /* (N, 4 feat, 4 fs) */
    TRY(prup_forward(be, u, &u->enc4, n, w->skip[2], w->enc4)); /* (N, 2 feat, 8 fs) */

    /* ---- decoder: each stage doubles the size and halves the channels ---- */
    int64_t sp[3] = {u->feat[0], u->feat[1], u->feat[2]};
    TRY(up_forward(be, u, &u->dec5, n, sp, w->h, w->enc4, w->dec)); /* (N, 2 feat, 8 fs) */
    for (int i = 0; i < u->nsp; i++) sp[i] *= 2;
    TRY(up_forward(be, u, &u->dec4, n, sp, w->dec, w->enc3, w->dec)); /* (N, 4 feat, 4 fs) */
    for (int i = 0; i < u->nsp; i++) sp[i] *= 2;
    TRY(up_forward(be, u, &u->dec3, n, sp, w->dec, w->enc2, w->dec)); /* (N, 8 feat, 2 fs) */
    for (int i = 0; i < u->nsp; i++) sp[i] *= 2;
    TRY(up_forward(be, u, &u->dec2, n, sp, w->dec, w->enc1, w->dec)); /* (N, S, fs) */

    TRY(op->conv_run(be, u->out, n, u->img, w->dec, NULL, w->cat)); /* 1x1 with bias: (N, S, out) */
    return op->from_cl(be, n, u->out_ch, S, w->cat, y);
}

/* ================================================================================================
 * workspace
 * ================================================================================================ */

static void ws_free(sarco_backend *be, unetr_ws *w) {
    float **all[] = {&w->x, &w->patches, &w->tok, &w->tok2, &w->h, &w->qkv, &w->att, &w->prob, &w->heads,
                     &w->mlp, &w->skip[0], &w->skip[1], &w->skip[2], &w->enc1, &w->enc2, &w->enc3, &w->enc4,
                     &w->dec, &w->cat, &w->a, &w->b};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (*all[i] && be) be->ops->free(be, *all[i]);
        *all[i] = NULL;
    }
    w->n = 0;
}

/* a * b * c, or -1 on overflow */
static int64_t mul3(int64_t a, int64_t b, int64_t c) {
    int64_t ab, abc;
    if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc)) return -1;
    return abc;
}

static sarco_status ws_buf(sarco_context *ctx, int64_t count, float **p, sarco_status *s) {
    if (*s != SARCO_OK) return *s;
    if (count < 0 || (uint64_t)count > SIZE_MAX / sizeof(float))
        return *s = sarco_fail(ctx, SARCO_ERR_LIMIT, "UNETR: a workspace buffer would pass the address space");
    void *q = NULL;
    *s = ctx->be->ops->alloc(ctx->be, (size_t)(count ? count : 1) * sizeof(float), &q);
    *p = q;
    return *s;
}

static sarco_status workspace(sarco_context *ctx, unetr *u, int64_t n) {
    unetr_ws *w = &u->ws;
    if (w->n == n) return SARCO_OK;
    ws_free(ctx->be, w);
    const int64_t L = u->tokens, H = u->hidden, S = u->voxels, fs = u->fs;
    /* voxels of the maps at feat 2^k per axis, k = 0..4 (k = 4: the input size) */
    int64_t v[5];
    for (int k = 0; k <= 4; k++) v[k] = u->tokens << (k * u->nsp);
    /* largest map a block or transposed conv writes (channels c at level k), and the largest concat */
    const int64_t maps[][2] = {{4, fs}, {1, 2 * fs}, {2, 2 * fs}, {3, 2 * fs}, {1, 4 * fs}, {2, 4 * fs}, {1, 8 * fs}};
    int64_t fmax = 0, catmax = 0;
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) {
        const int64_t m = mul3(n, v[maps[i][0]], maps[i][1]);
        if (m < 0) return sarco_fail(ctx, SARCO_ERR_LIMIT, "UNETR: workspace size overflows");
        if (m > fmax) fmax = m;
    }
    catmax = mul3(2, fmax, 1);
    const int64_t logits = mul3(n, S, u->out_ch);
    if (logits < 0 || catmax < 0) return sarco_fail(ctx, SARCO_ERR_LIMIT, "UNETR: workspace size overflows");
    if (logits > catmax) catmax = logits;
    sarco_status s = SARCO_OK;
    ws_buf(ctx, mul3(n, S, u->in_ch), &w->x, &s);
    if (!u->proj_conv) ws_buf(ctx, mul3(n, S, u->in_ch), &w->patches, &s);
    ws_buf(ctx, mul3(n, L, H), &w->tok, &s);
    ws_buf(ctx, mul3(n, L, H), &w->tok2, &s);
    ws_buf(ctx, mul3(n, L, H), &w->h, &s);
    ws_buf(ctx, mul3(n, L, 3 * H), &w->qkv, &s);
    ws_buf(ctx, mul3(u->heads, L, L), &w->att, &s);
    ws_buf(ctx, mul3(u->heads, L, L), &w->prob, &s);
    ws_buf(ctx, mul3(n, L, H), &w->heads, &s);
    ws_buf(ctx, mul3(n, L, u->mlp), &w->mlp, &s);
    for (int i = 0; i < 3; i++) ws_buf(ctx, mul3(n, L, H), &w->skip[i], &s);
    ws_buf(ctx, mul3(n, v[4], fs), &w->enc1, &s);
    ws_buf(ctx, mul3(n, v[3], 2 * fs), &w->enc2, &s);
    ws_buf(ctx, mul3(n, v[2], 4 * fs), &w->enc3, &s);
    ws_buf(ctx, mul3(n, v[1], 8 * fs), &w->enc4, &s);
    ws_buf(ctx, fmax, &w->dec, &s);
    ws_buf(ctx, catmax, &w->cat, &s);
    ws_buf(ctx, fmax, &w->a, &s);
    ws_buf(ctx, fmax, &w->b, &s);
    if (s != SARCO_OK) {
        ws_free(ctx->be, w);
        return s;
    }
    w->n = n;
    return SARCO_OK;
}

/* ================================================================================================
 * weights: one walk over MONAI's module tree, run three times -- to list every expected tensor
 * (checked by name and shape before anything is prepared), to prepare them on the backend, and to
 * free them -- so the three can never disagree.
 * ================================================================================================ */

typedef enum { PASS_LIST, PASS_LOAD, PASS_FREE } walk_pass;

#define NAME_MAX_LEN 192 /* sarco_wspec.name */

/* formats a tensor or module name (names past the length fail the weight check, never overflow) */
static void SARCO_PRINTF(2, 3) tname(char *dst, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, NAME_MAX_LEN, fmt, ap);
    va_end(ap);
}

typedef struct walker {
    walk_pass pass;
    sarco_context *ctx;
    unetr *u;
    const sarco_st_file *st; /* PASS_LOAD */
    sarco_wlist *list;       /* PASS_LIST */
    sarco_status s;          /* first failure of PASS_LOAD */
} walker;

/* a tensor's values as float32 on the host; NULL (and wk->s set) on failure. Unless `writable`, the
 * values may be the file's own bytes (then *bytes = 0: nothing to free), which saves a copy of the
 * whole model at load. */
static float *host_tensor_rw(walker *wk, const char *name, size_t *bytes, int writable) {
    const sarco_st_tensor *t = sarco_st_find(wk->st, name);
    *bytes = 0;
    if (!t) {
        wk->s = sarco_fail(wk->ctx, SARCO_ERR_INTERNAL, "UNETR: %s vanished after the check", name);
        return NULL;
    }
    const float *view = writable ? NULL : sarco_st_f32_view(wk->st, t);
    if (view) return (float *)view; /* never written: put_host leaves it alone */
    *bytes = (size_t)(t->numel ? t->numel : 1) * sizeof(float);
    float *p = sarco_ctx_malloc(wk->ctx, *bytes, name);
    if (!p) {
        wk->s = SARCO_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    sarco_st_to_f32(wk->st, t, p);
    return p;
}

static float *host_tensor(walker *wk, const char *name, size_t *bytes) { return host_tensor_rw(wk, name, bytes, 0); }

/* gives back a host_tensor (bytes = 0: a view of the file, not ours) */
static void put_host(walker *wk, float *p, size_t bytes) {
    if (bytes) sarco_ctx_free(wk->ctx, p, bytes);
}

/* A parameter kept as a backend buffer (LayerNorm/InstanceNorm affine, position embeddings). */
static void w_param(walker *wk, float **dst, const int64_t *shape, int ndim, const char *name) {
    if (wk->pass == PASS_LIST) {
        sarco_wlist_add(wk->list, shape, ndim, "%s", name);
        return;
    }
    if (wk->pass == PASS_FREE) {
        if (*dst) wk->ctx->be->ops->free(wk->ctx->be, *dst);
        *dst = NULL;
        return;
    }
    if (wk->s != SARCO_OK) return;
    size_t bytes = 0;
    float *h = host_tensor_rw(wk, name, &bytes, 1); /* a copy, so bytes is its size (params are small) */
    if (!h) return;
    sarco_backend *be = wk->ctx->be;
    void *d = NULL;
    wk->s = be->ops->alloc(be, bytes, &d);
    if (wk->s == SARCO_OK) {
        wk->s = be->ops->upload(be, d, h, bytes);
        *dst = d; /* freed by PASS_FREE even when the upload failed */
    }
    put_host(wk, h, bytes);
}

static void w_vec(walker *wk, float **dst, int64_t c, const char *prefix, const char *leaf) {
    char name[NAME_MAX_LEN];
    tname(name, "%s.%s", prefix, leaf);
    w_param(wk, dst, SARCO_SHAPE(c), name);
}

static void w_linear(walker *wk, sarco_linear **dst, int64_t in, int64_t out, int bias, sarco_act act,
                     const char *prefix) {
    char wn[NAME_MAX_LEN], bn[NAME_MAX_LEN];
    tname(wn, "%s.weight", prefix);
    tname(bn, "%s.bias", prefix);
    if (wk->pass == PASS_LIST) {
        sarco_wlist_add(wk->list, SARCO_SHAPE(out, in), "%s", wn);
        if (bias) sarco_wlist_add(wk->list, SARCO_SHAPE(out), "%s", bn);
        return;
    }
    sarco_backend *be = wk->ctx->be;
    if (wk->pass == PASS_FREE) {
        if (*dst) be->ops->linear_free(be, *dst);
        *dst = NULL;
        return;
    }
    if (wk->s != SARCO_OK) return;
    size_t wbytes = 0, bbytes = 0;
    float *w = host_tensor(wk, wn, &wbytes);
    float *b = w && bias ? host_tensor(wk, bn, &bbytes) : NULL;
    if (w && (b || !bias)) {
        const sarco_linear_desc d = {.in_features = in, .out_features = out, .has_bias = bias, .act = act};
        wk->s = be->ops->linear_prepare(be, &d, w, b, dst);
    }
    put_host(wk, w, wbytes);
    put_host(wk, b, bbytes);
}

/* The MONAI norm layer named `norm` after a conv: the tensors it stores. */
static void list_norm(walker *wk, int64_t c, const char *norm) {
    const unetr *u = wk->u;
    if (u->norm_affine) {
        sarco_wlist_add(wk->list, SARCO_SHAPE(c), "%s.weight", norm);
        sarco_wlist_add(wk->list, SARCO_SHAPE(c), "%s.bias", norm);
    }
    if (u->batch_norm) {
        sarco_wlist_add(wk->list, SARCO_SHAPE(c), "%s.running_mean", norm);
        sarco_wlist_add(wk->list, SARCO_SHAPE(c), "%s.running_var", norm);
    }
}

/* A MONAI conv ("<conv>.weight", k = stride = 2 when transposed, else stride `stride`; bias-free unless
 * `bias`), optionally followed by the norm
 * layer `norm` (NULL: none). BatchNorm is folded in: w' = w s, b' = beta - mean s with
 * s = gamma / sqrt(var + eps), and the conv then runs `act`; InstanceNorm stays a separate op and
 * only its affine parameters (if any) are loaded into *g, *b. */
static void w_conv(walker *wk, sarco_conv **dst, int transposed, int64_t cin, int64_t cout, int64_t k,
                   int64_t stride, int bias, const char *conv, const char *norm, sarco_act act, float **g,
                   float **beta) {
    unetr *u = wk->u;
    const int nsp = u->nsp;
    char wn[NAME_MAX_LEN], bn[NAME_MAX_LEN];
    tname(wn, "%s.weight", conv);
    tname(bn, "%s.bias", conv);
    int64_t shape[5] = {transposed ? cin : cout, transposed ? cout : cin, k, k, k};
    const int fold = norm && u->batch_norm; /* in UNETR a norm only ever follows a plain conv */
    if (wk->pass == PASS_LIST) {
        sarco_wlist_add(wk->list, shape, 2 + nsp, "%s", wn);
        if (bias) sarco_wlist_add(wk->list, SARCO_SHAPE(cout), "%s", bn);
        if (norm) list_norm(wk, cout, norm);
        return;
    }
    if (norm && !u->batch_norm && u->norm_affine) {
        w_vec(wk, g, cout, norm, "weight");
        w_vec(wk, beta, cout, norm, "bias");
    }
    sarco_backend *be = wk->ctx->be;
    if (wk->pass == PASS_FREE) {
        if (*dst) be->ops->conv_free(be, *dst);
        *dst = NULL;
        return;
    }
    if (wk->s != SARCO_OK) return;
    sarco_conv_desc d = {.nsp = nsp, .cin = cin, .cout = cout, .groups = 1, .has_bias = bias || fold,
                         .act = fold ? act : SARCO_ACT_NONE, .alpha = UNETR_SLOPE};
    for (int i = 0; i < 3; i++) {
        d.k[i] = i < nsp ? k : 1;
        d.stride[i] = i < nsp ? stride : 1;
        d.pad[i] = (d.k[i] - d.stride[i] + 1) / 2; /* MONAI get_padding; 0 for the patch conv too */
        d.dil[i] = 1;
        d.out_pad[i] = 0; /* get_output_padding: 2 pad + s - k, 0 for k = s = 2 */
    }
    size_t wbytes = 0, bbytes = 0;
    float *w = host_tensor_rw(wk, wn, &wbytes, fold); /* folding scales w in place */
    float *b = NULL;
    if (w && bias) b = host_tensor(wk, bn, &bbytes);
    if (w && fold) {
        bbytes = (size_t)cout * sizeof(float);
        b = sarco_ctx_malloc(wk->ctx, bbytes, bn);
        if (!b) wk->s = SARCO_ERR_OUT_OF_MEMORY;
    }
    if (b && fold) {
        char nm[NAME_MAX_LEN];
        float *ga = NULL, *be_ = NULL, *mean = NULL, *var = NULL;
        size_t cb[4] = {0, 0, 0, 0}; /* per tensor: each may be a view or a copy */
        if (u->norm_affine) {
            tname(nm, "%s.weight", norm);
            ga = host_tensor(wk, nm, &cb[0]);
            tname(nm, "%s.bias", norm);
            be_ = ga ? host_tensor(wk, nm, &cb[1]) : NULL;
        }
        tname(nm, "%s.running_mean", norm);
        mean = wk->s == SARCO_OK ? host_tensor(wk, nm, &cb[2]) : NULL;
        tname(nm, "%s.running_var", norm);
        var = mean ? host_tensor(wk, nm, &cb[3]) : NULL;
        if (var) {
            const int64_t per = prod(&shape[1], 1 + nsp); /* weights per output channel: (cout, cin, k...) */
            for (int64_t o = 0; o < cout; o++) {
                const double sc = (ga ? (double)ga[o] : 1.0) / sqrt((double)var[o] + (double)u->eps);
                b[o] = (float)((be_ ? (double)be_[o] : 0.0) - (double)mean[o] * sc);
                for (int64_t j = 0; j < per; j++) w[o * per + j] = (float)(w[o * per + j] * sc);
            }
        }
        put_host(wk, ga, cb[0]);
        put_host(wk, be_, cb[1]);
        put_host(wk, mean, cb[2]);
        put_host(wk, var, cb[3]);
    }
    if (w && wk->s == SARCO_OK) wk->s = be->ops->conv_prepare(be, &d, transposed, w, b, dst);
    put_host(wk, w, wbytes);
    put_host(wk, b, bbytes);
}

/* UnetResBlock / UnetBasicBlock at `prefix` */
static void w_block(walker *wk, unet_block *k, int64_t cin, int64_t cout, int res, const char *prefix) {
    char c[NAME_MAX_LEN], nm[NAME_MAX_LEN];
    k->cin = cin;
    k->cout = cout;
    k->res = res;
    tname(c, "%s.conv1.conv", prefix);
    tname(nm, "%s.norm1", prefix);
    w_conv(wk, &k->conv1, 0, cin, cout, 3, 1, 0, c, nm, SARCO_ACT_LEAKY_RELU, &k->g1, &k->b1);
    tname(c, "%s.conv2.conv", prefix);
    tname(nm, "%s.norm2", prefix);
    w_conv(wk, &k->conv2, 0, cout, cout, 3, 1, 0, c, nm, SARCO_ACT_LEAKY_RELU, &k->g2, &k->b2);
    if (res && cin != cout) { /* stride is 1 everywhere in UNETR, so only a channel change projects */
        tname(c, "%s.conv3.conv", prefix);
        tname(nm, "%s.norm3", prefix);
        w_conv(wk, &k->conv3, 0, cin, cout, 1, 1, 0, c, nm, SARCO_ACT_NONE, &k->g3, &k->b3);
    }
}

/* UnetrPrUpBlock at `prefix` */
static void w_prup(walker *wk, prup_block *p, int64_t cout, int nlayer, const char *prefix) {
    const unetr *u = wk->u;
    char c[NAME_MAX_LEN];
    p->cout = cout;
    p->nlayer = nlayer;
    tname(c, "%s.transp_conv_init.conv", prefix);
    w_conv(wk, &p->init, 1, u->hidden, cout, 2, 2, 0, c, NULL, SARCO_ACT_NONE, NULL, NULL);
    for (int l = 0; l < nlayer; l++) {
        if (u->conv_block) { /* blocks.l = Sequential(transposed conv, block) */
            tname(c, "%s.blocks.%d.0.conv", prefix, l);
            w_conv(wk, &p->up[l], 1, cout, cout, 2, 2, 0, c, NULL, SARCO_ACT_NONE, NULL, NULL);
            tname(c, "%s.blocks.%d.1", prefix, l);
            w_block(wk, &p->blk[l], cout, cout, u->res_block, c);
        } else { /* blocks.l = transposed conv */
            tname(c, "%s.blocks.%d.conv", prefix, l);
            w_conv(wk, &p->up[l], 1, cout, cout, 2, 2, 0, c, NULL, SARCO_ACT_NONE, NULL, NULL);
        }
    }
}

/* UnetrUpBlock at `prefix` */
static void w_up(walker *wk, up_block *b, int64_t cin, int64_t cout, const char *prefix) {
    char c[NAME_MAX_LEN];
    b->cout = cout;
    tname(c, "%s.transp_conv.conv", prefix);
    w_conv(wk, &b->up, 1, cin, cout, 2, 2, 0, c, NULL, SARCO_ACT_NONE, NULL, NULL);
    tname(c, "%s.conv_block", prefix);
    w_block(wk, &b->blk, 2 * cout, cout, wk->u->res_block, c);
}

static void walk(walker *wk) {
    unetr *u = wk->u;
    const int64_t H = u->hidden, fs = u->fs;
    char p[NAME_MAX_LEN];

    /* vit.patch_embedding */
    if (u->proj_conv) /* Conv(k = stride = 16) with bias */
        w_conv(wk, &u->patch_conv, 0, u->in_ch, H, UNETR_PATCH, UNETR_PATCH, 1,
               "vit.patch_embedding.patch_embeddings", NULL, SARCO_ACT_NONE, NULL, NULL);
    else /* Sequential(Rearrange, Linear) */
        w_linear(wk, &u->patch_lin, u->patch_dim, H, 1, SARCO_ACT_NONE, "vit.patch_embedding.patch_embeddings.1");
    w_param(wk, &u->pos, SARCO_SHAPE(1, u->tokens, H), "vit.patch_embedding.position_embeddings");
    /* vit.blocks.l: norm1, attn (qkv, out_proj), norm2, mlp (linear1, GELU, linear2) */
    for (int l = 0; l < UNETR_LAYERS; l++) {
        vit_layer *b = &u->vit[l];
        tname(p, "vit.blocks.%d.norm1", l);
        w_vec(wk, &b->ln1_w, H, p, "weight");
        w_vec(wk, &b->ln1_b, H, p, "bias");
        tname(p, "vit.blocks.%d.attn.qkv", l);
        w_linear(wk, &b->qkv, H, 3 * H, u->qkv_bias, SARCO_ACT_NONE, p);
        tname(p, "vit.blocks.%d.attn.out_proj", l);
        w_linear(wk, &b->out_proj, H, H, 1, SARCO_ACT_NONE, p);
        tname(p, "vit.blocks.%d.norm2", l);
        w_vec(wk, &b->ln2_w, H, p, "weight");
        w_vec(wk, &b->ln2_b, H, p, "bias");
        tname(p, "vit.blocks.%d.mlp.linear1", l);
        w_linear(wk, &b->fc1, H, u->mlp, 1, SARCO_ACT_GELU, p);
        tname(p, "vit.blocks.%d.mlp.linear2", l);
        w_linear(wk, &b->fc2, u->mlp, H, 1, SARCO_ACT_NONE, p);
    }
    w_vec(wk, &u->norm_w, H, "vit.norm", "weight");
    w_vec(wk, &u->norm_b, H, "vit.norm", "bias");

    w_block(wk, &u->enc1, u->in_ch, fs, u->res_block, "encoder1.layer");
    w_prup(wk, &u->enc2, 2 * fs, 2, "encoder2");
    w_prup(wk, &u->enc3, 4 * fs, 1, "encoder3");
    w_prup(wk, &u->enc4, 8 * fs, 0, "encoder4");
    w_up(wk, &u->dec5, H, 8 * fs, "decoder5");
    w_up(wk, &u->dec4, 8 * fs, 4 * fs, "decoder4");
    w_up(wk, &u->dec3, 4 * fs, 2 * fs, "decoder3");
    w_up(wk, &u->dec2, 2 * fs, fs, "decoder2");
    /* UnetOutBlock: 1x1 conv with bias */
    w_conv(wk, &u->out, 0, fs, u->out_ch, 1, 1, 1, "out.conv.conv", NULL, SARCO_ACT_NONE, NULL, NULL);
}

/* ================================================================================================
 * keywords (the MONAI constructor's own)
 * ================================================================================================ */

#define KW_REQUIRED INT64_MIN

static sarco_status kw_int(sarco_context *ctx, const json_t *kw, const char *key, int64_t def, int64_t lo,
                           int64_t hi, int64_t *out) {
    const json_t *v = json_object_get(kw, key);
    if (!v) {
        if (def == KW_REQUIRED)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: sarco.config kwargs has no \"%s\"", key);
        *out = def;
        return SARCO_OK;
    }
    if (!json_is_integer(v))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: kwarg %s must be an integer", key);
    const int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "UNETR: kwarg %s = %lld is outside [%lld, %lld]", key,
                          (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return SARCO_OK;
}

static sarco_status kw_bool(sarco_context *ctx, const json_t *obj, const char *key, const char *what, int def,
                            int *out) {
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return SARCO_OK;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return SARCO_OK;
    }
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *out = (int)json_integer_value(v);
        return SARCO_OK;
    }
    return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: %s%s must be true or false", what, key);
}

/* norm_name: "instance" | "batch" | [name] | [name, {args}] (MONAI's split_args; names are case-blind) */
static sarco_status kw_norm(sarco_context *ctx, const json_t *kw, unetr *u) {
    const json_t *v = json_object_get(kw, "norm_name");
    const json_t *args = NULL;
    const char *name = "instance";
    if (v && json_is_array(v) && json_array_size(v) >= 1 && json_array_size(v) <= 2) {
        args = json_array_get(v, 1);
        v = json_array_get(v, 0);
        if (args && !json_is_object(args))
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: norm_name's arguments must be an object");
    }
    if (v) {
        if (!json_is_string(v))
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                              "UNETR: norm_name must be a string or a [name, {args}] pair");
        name = json_string_value(v);
    }
    int track = 0;
    if (strcasecmp(name, "instance") == 0) {
        u->batch_norm = 0;
        TRY(kw_bool(ctx, args, "affine", "norm_name ", 0, &u->norm_affine));
        TRY(kw_bool(ctx, args, "track_running_stats", "norm_name ", 0, &track));
        if (track) /* eval would then use running stats that MONAI's UNETR never has */
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "UNETR: instance norm with track_running_stats");
    } else if (strcasecmp(name, "batch") == 0) {
        u->batch_norm = 1;
        TRY(kw_bool(ctx, args, "affine", "norm_name ", 1, &u->norm_affine));
        TRY(kw_bool(ctx, args, "track_running_stats", "norm_name ", 1, &track));
        if (!track) /* eval mode would use the batch's own statistics */
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "UNETR: batch norm without track_running_stats");
    } else {
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "UNETR: norm_name \"%s\" (supported: instance, batch)", name);
    }
    u->eps = 1e-5f;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)args, key, val) {
        if (strcmp(key, "eps") == 0) {
            if (!json_is_number(val) || !(json_number_value(val) > 0) || json_number_value(val) > 1)
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: norm_name eps must be a number in (0, 1]");
            u->eps = (float)json_number_value(val);
        } else if (strcmp(key, "affine") && strcmp(key, "track_running_stats") && strcmp(key, "momentum") &&
                   strcmp(key, "num_features")) {
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "UNETR: norm_name argument \"%s\"", key);
        }
    }
    return SARCO_OK;
}

static sarco_status parse_kwargs(sarco_context *ctx, const json_t *kw, unetr *u) {
    static const char *const known[] = {"in_channels", "out_channels", "img_size", "feature_size", "hidden_size",
                                        "mlp_dim", "num_heads", "proj_type", "pos_embed", "norm_name",
                                        "conv_block", "res_block", "dropout_rate", "spatial_dims", "qkv_bias",
                                        "save_attn", NULL};
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)kw, key, val) {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++) ok = strcmp(key, known[i]) == 0;
        if (!ok) return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "UNETR: unknown kwarg \"%s\"", key);
    }
    int64_t nsp = 0;
    TRY(kw_int(ctx, kw, "spatial_dims", 3, 2, 3, &nsp));
    u->nsp = (int)nsp;
    TRY(kw_int(ctx, kw, "in_channels", KW_REQUIRED, 1, 4096, &u->in_ch));
    TRY(kw_int(ctx, kw, "out_channels", KW_REQUIRED, 1, 4096, &u->out_ch));
    TRY(kw_int(ctx, kw, "feature_size", 16, 1, 4096, &u->fs));
    TRY(kw_int(ctx, kw, "hidden_size", 768, 1, 16384, &u->hidden));
    TRY(kw_int(ctx, kw, "mlp_dim", 3072, 0, 65536, &u->mlp));
    if (u->mlp == 0) u->mlp = u->hidden; /* MLPBlock: mlp_dim or hidden_size */
    TRY(kw_int(ctx, kw, "num_heads", 12, 1, 16384, &u->heads));
    if (u->hidden % u->heads)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: hidden_size %lld is not divisible by num_heads %lld",
                          (long long)u->hidden, (long long)u->heads);
    u->head_dim = u->hidden / u->heads;

    const json_t *img = json_object_get(kw, "img_size");
    if (!img) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: sarco.config kwargs has no \"img_size\"");
    if (json_is_array(img) && json_array_size(img) != (size_t)u->nsp)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: img_size has %zu entries for spatial_dims %d",
                          json_array_size(img), u->nsp);
    u->img[0] = u->img[1] = u->img[2] = 1;
    u->feat[0] = u->feat[1] = u->feat[2] = 1;
    for (int i = 0; i < u->nsp; i++) {
        const json_t *e = json_is_array(img) ? json_array_get(img, (size_t)i) : img;
        if (!json_is_integer(e))
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: img_size must be an integer or a list of them");
        const int64_t s = json_integer_value(e);
        if (s < UNETR_PATCH || s > 4096 || s % UNETR_PATCH)
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                              "UNETR: img_size %lld is not a multiple of the patch size 16 in [16, 4096]",
                              (long long)s);
        u->img[i] = s;
        u->feat[i] = s / UNETR_PATCH;
    }
    u->tokens = prod(u->feat, u->nsp);
    u->voxels = prod(u->img, u->nsp);
    u->patch_dim = u->in_ch << (4 * u->nsp); /* 16^d Cin */

    const json_t *pt = json_object_get(kw, "proj_type");
    const json_t *old = json_object_get(kw, "pos_embed"); /* the keyword's name before MONAI 1.3 */
    if (pt && old && !json_equal((json_t *)pt, (json_t *)old))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: proj_type and pos_embed disagree");
    if (!pt) pt = old;
    const char *proj = pt ? json_string_value(pt) : "conv";
    if (!proj) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: proj_type must be a string");
    if (strcmp(proj, "conv") == 0)
        u->proj_conv = 1;
    else if (strcmp(proj, "perceptron") == 0)
        u->proj_conv = 0;
    else
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "UNETR: proj_type \"%s\" (supported: conv, perceptron)", proj);

    TRY(kw_norm(ctx, kw, u));
    TRY(kw_bool(ctx, kw, "conv_block", "kwarg ", 1, &u->conv_block));
    TRY(kw_bool(ctx, kw, "res_block", "kwarg ", 1, &u->res_block));
    TRY(kw_bool(ctx, kw, "qkv_bias", "kwarg ", 0, &u->qkv_bias));
    int save_attn = 0; /* only keeps the attention matrix for inspection */
    TRY(kw_bool(ctx, kw, "save_attn", "kwarg ", 0, &save_attn));
    const json_t *dr = json_object_get(kw, "dropout_rate"); /* a no-op at inference */
    if (dr && (!json_is_number(dr) || json_number_value(dr) < 0 || json_number_value(dr) > 1))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "UNETR: dropout_rate must be a number in [0, 1]");
    return SARCO_OK;
}

/* ================================================================================================
 * the sarco_arch interface
 * ================================================================================================ */

static void unetr_free(sarco_context *ctx, void *state) {
    unetr *u = state;
    if (!u) return;
    walker wk = {.pass = PASS_FREE, .ctx = ctx, .u = u};
    walk(&wk);
    ws_free(ctx->be, &u->ws);
    free(u);
}

static sarco_status unetr_load(sarco_context *ctx, const json_t *kwargs, const sarco_st_file *st, void **state) {
    *state = NULL;
    unetr *u = calloc(1, sizeof *u);
    if (!u) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "UNETR: out of memory");
    sarco_status s = parse_kwargs(ctx, kwargs, u);
    if (s != SARCO_OK) {
        free(u);
        return s;
    }
    sarco_wlist list = {0};
    walker wk = {.pass = PASS_LIST, .ctx = ctx, .u = u, .list = &list};
    walk(&wk);
    /* MONAI >= 1.4 stores an unused LayerNorm (and, with cross attention, its block) per layer */
    static const char *const ignore_in[] = {"vit.blocks.*.norm_cross_attn.*", "vit.blocks.*.cross_attn.*", NULL};
    static const char *const ignore_bn[] = {"vit.blocks.*.norm_cross_attn.*", "vit.blocks.*.cross_attn.*",
                                            "*.num_batches_tracked", NULL};
    if (list.oom)
        s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "UNETR: out of memory listing the weights");
    else
        s = sarco_weights_check(ctx, st, &list, u->batch_norm ? ignore_bn : ignore_in);
    sarco_wlist_free(&list);
    if (s != SARCO_OK) {
        free(u);
        return s;
    }
    wk = (walker){.pass = PASS_LOAD, .ctx = ctx, .u = u, .st = st, .s = SARCO_OK};
    walk(&wk);
    if (wk.s != SARCO_OK) {
        unetr_free(ctx, u);
        return wk.s;
    }
    *state = u;
    return SARCO_OK;
}

/* "(N, 1, 96, 96, 96)"; -1 prints as N. dst holds 160 chars, ndim <= 5. */
static void shape_str(char *dst, const int64_t *v, int ndim) {
    size_t used = 0;
    dst[0] = '\0';
    for (int i = 0; i < ndim && i < 5; i++) {
        char item[24];
        if (v[i] < 0)
            strcpy(item, "N");
        else
            snprintf(item, sizeof item, "%lld", (long long)v[i]);
        used += (size_t)sprintf(dst + used, "%s%s", i ? ", " : "(", item);
    }
    strcpy(dst + used, ")");
}

static sarco_status unetr_output_shape(sarco_context *ctx, const void *state, int ndim, const int64_t *in,
                                       int64_t *out) {
    const unetr *u = state;
    int ok = ndim == u->nsp + 2 && in[1] == u->in_ch;
    for (int i = 0; ok && i < u->nsp; i++) ok = in[2 + i] == u->img[i];
    if (!ok) {
        /* the position embeddings fix the size: name what was expected and what came */
        int64_t want[5] = {-1, u->in_ch, u->img[0], u->img[1], u->img[2]};
        char ws[160], gs[160];
        shape_str(ws, want, u->nsp + 2);
        shape_str(gs, in, ndim);
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "UNETR: the input must be %s (img_size is fixed by the position embeddings), got %s", ws,
                          gs);
    }
    out[0] = in[0];
    out[1] = u->out_ch;
    for (int i = 0; i < u->nsp; i++) out[2 + i] = u->img[i];
    return SARCO_OK;
}

SARCO_INTERNAL const sarco_arch sarco_arch_unetr = {
    .name = "monai.UNETR",
    .load = unetr_load,
    .output_shape = unetr_output_shape,
    .forward = unetr_forward,
    .free = unetr_free,
};
