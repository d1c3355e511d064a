/* nnU-Net v2's networks from dynamic-network-architectures (architectures/unet.py): PlainConvUNet and
 * ResidualEncoderUNet, 2D and 3D, with whatever stages, features, kernels and strides the plans give.
 *
 * Semantics checked against dynamic-network-architectures 0.4.4 (building_blocks/simple_conv_blocks.py,
 * plain_conv_encoder.py, residual_encoders.py, residual.py, unet_decoder.py); docs/nnunet.md lists them.
 *
 *   ConvDropoutNormReLU ("cna"): conv (pad (k-1)/2) -> [dropout: no-op] -> norm -> nonlin
 *   PlainConvUNet encoder:  stage s = n_conv_per_stage[s] cna, the first strided
 *   ResidualEncoderUNet:    stem cna (stride 1), then per stage n_blocks_per_stage[s] BasicBlockD:
 *                           nonlin(norm(conv2(cna1(x))) + skip(x)), skip = [AvgPool(stride)] [1x1 cna, no act]
 *   UNetDecoder (both):     per stage, lowest resolution first: transposed conv (k = stride), cat(up, skip),
 *                           n_conv_per_stage_decoder[s] cna; the last seg layer (1x1 conv) gives the logits.
 *
 * Activations are channels-last. InstanceNorm runs as the backend's instnorm with the activation (and the
 * residual add of a block) fused; eval-mode BatchNorm is folded into the conv at load, which then carries the
 * activation and the residual add.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"

#define NN_MAX_STAGES 16
#define NAME_LEN 192 /* sarco_wspec.name */

#define TRY(expr)                              \
    do {                                       \
        sarco_status try_s_ = (expr);          \
        if (try_s_ != SARCO_OK) return try_s_; \
    } while (0)

typedef enum { NORM_NONE = 0, NORM_INSTANCE, NORM_BATCH } norm_kind;

/* ConvDropoutNormReLU. With InstanceNorm the conv runs bare and instnorm carries the act; otherwise (BatchNorm
 * folded, or no norm) the conv carries it. `act` is applied after the residual of a block's conv2. */
typedef struct cna {
    int64_t cin, cout, k[3], stride[3];
    int bias;      /* the conv's own bias (conv_bias; the 1x1 skip projection never has one) */
    sarco_act act; /* NONE for a block's skip projection */
    sarco_conv *conv;
    float *gamma, *beta; /* InstanceNorm affine, NULL otherwise */
} cna;

/* BasicBlockD */
typedef struct res_block {
    cna c1, c2;
    int pool;       /* AvgPool(kernel = stride = the block's stride) on the skip */
    int proj;       /* skip 1x1 cna (channel change) */
    cna skip;
} res_block;

typedef struct nn_stage {
    int64_t count; /* convs (plain) or blocks (resenc) */
    cna *convs;
    res_block *blocks;
} nn_stage;

typedef struct dec_stage {
    sarco_conv *up; /* transposed conv, kernel = stride */
    int64_t count;
    cna *convs;
} dec_stage;

/* Backend buffers for one input shape, allocated on the first forward of that shape. Floats. */
typedef struct nn_ws {
    int64_t key[4]; /* n and the input's spatial size; key[0] = 0: not allocated */
    float *x;                    /* (N, S_in, Cin) channels-last input */
    float *skip[NN_MAX_STAGES];  /* encoder stage outputs (N, S_s, F_s) */
    float *t0, *t1;              /* scratch maps */
    float *t2, *t3;              /* ResEnc skip path: pooled input, projection */
    float *dec;                  /* decoder output (and the stem's, ResEnc) */
    float *cat;                  /* cat(up, skip) (and ResEnc's intermediate block outputs) */
} nn_ws;

typedef struct nnunet {
    /* keywords */
    const char *what; /* "PlainConvUNet" / "ResidualEncoderUNet" for messages */
    int resenc, nsp;
    int64_t in_ch, classes, n, stem_ch;
    int64_t feat[NN_MAX_STAGES], k[NN_MAX_STAGES][3], st[NN_MAX_STAGES][3];
    int64_t per_stage[NN_MAX_STAGES];  /* n_conv_per_stage or n_blocks_per_stage */
    int64_t per_dec[NN_MAX_STAGES];    /* n_conv_per_stage_decoder */
    int conv_bias, affine;
    norm_kind norm;
    float eps;
    sarco_act act;
    float alpha;
    /* weights */
    cna stem;
    nn_stage enc[NN_MAX_STAGES];
    dec_stage dec[NN_MAX_STAGES];
    sarco_conv *seg; /* decoder.seg_layers[n - 2] */
    nn_ws ws;
} nnunet;

static int64_t prod(const int64_t *v, int n) {
    int64_t p = 1;
    for (int i = 0; i < n; i++) p *= v[i];
    return p;
}

/* ================================================================================================
 * forward
 * ================================================================================================ */

/* cna: x (N, in..., cin) -> y (N, out..., cout), out = in / stride; residual (N, out..., cout) or NULL is added
 * before the activation. y must not be x; y may be residual only without InstanceNorm. */
static sarco_status cna_forward(sarco_backend *be, const nnunet *u, const cna *c, int64_t n, const int64_t *in,
                                const float *x, const float *residual, float *y) {
    if (u->norm != NORM_INSTANCE) return be->ops->conv_run(be, c->conv, n, in, x, residual, y);
    TRY(be->ops->conv_run(be, c->conv, n, in, x, NULL, y));
    int64_t s = 1;
    for (int i = 0; i < u->nsp; i++) s *= in[i] / c->stride[i];
    return be->ops->instnorm(be, n, s, c->cout, y, c->gamma, c->beta, u->eps, residual, c->act, u->alpha, y);
}

/* StackedConvBlocks: count cna, x at size `in` -> y; t0, t1 scratch (neither may be x or y). */
static sarco_status stack_forward(sarco_backend *be, const nnunet *u, const cna *convs, int64_t count, int64_t n,
                                  const int64_t *in, const float *x, float *y, float *t0, float *t1) {
    int64_t sp[3] = {in[0], in[1], in[2]};
    const float *src = x;
    for (int64_t i = 0; i < count; i++) {
        float *dst = i == count - 1 ? y : (i % 2 ? t1 : t0);
        TRY(cna_forward(be, u, &convs[i], n, sp, src, NULL, dst));
        for (int a = 0; a < u->nsp; a++) sp[a] /= convs[i].stride[a];
        src = dst;
    }
    return SARCO_OK;
}

/* BasicBlockD: x (N, in..., cin) -> y (N, in / stride..., cout) = act(norm2(conv2(cna1(x))) + skip(x)).
 * Scratch: t0 (conv1), t2 (pooled x), t3 (projection). */
static sarco_status block_forward(sarco_backend *be, const nnunet *u, const res_block *b, int64_t n,
                                  const int64_t *in, const float *x, float *y) {
    const nn_ws *w = &u->ws;
    int64_t out[3] = {1, 1, 1};
    for (int a = 0; a < u->nsp; a++) out[a] = in[a] / b->c1.stride[a];
    const float *res = x;
    if (b->pool) {
        sarco_pool_desc pd = {.nsp = u->nsp, .kind = SARCO_POOL_AVG, .ceil_mode = 0, .count_include_pad = 1};
        for (int a = 0; a < 3; a++) {
            pd.k[a] = pd.stride[a] = b->c1.stride[a];
            pd.pad[a] = 0;
        }
        TRY(be->ops->pool(be, &pd, n, b->c1.cin, in, x, w->t2));
        res = w->t2;
    }
    if (b->proj) {
        TRY(cna_forward(be, u, &b->skip, n, out, res, NULL, w->t3));
        res = w->t3;
    }
    TRY(cna_forward(be, u, &b->c1, n, in, x, NULL, w->t0));
    return cna_forward(be, u, &b->c2, n, out, w->t0, res, y);
}

static sarco_status workspace(sarco_context *ctx, nnunet *u, int64_t n, const int64_t *in);

/* x (N, Cin, [D,] H, W) -> y (N, classes, [D,] H, W) / strides[0], PyTorch layout, backend memory. */
static sarco_status nnunet_forward(sarco_context *ctx, void *state, int ndim, const int64_t *in, const float *x_in,
                                   float *y) {
    nnunet *u = state;
    sarco_backend *be = ctx->be;
    const sarco_backend_ops *op = be->ops;
    (void)ndim; /* checked by output_shape */
    const int64_t n = in[0], S_in = prod(in + 2, u->nsp);
    TRY(workspace(ctx, u, n, in + 2));
    nn_ws *w = &u->ws;
    /* spatial size after each encoder stage: sp[s] = in / prod(strides[0..s]) (output_shape checked) */
    int64_t sp[NN_MAX_STAGES][3] = {{0}}, cur_sp[3] = {1, 1, 1};
    for (int a = 0; a < u->nsp; a++) cur_sp[a] = in[2 + a];
    for (int64_t s = 0; s < u->n; s++)
        for (int a = 0; a < 3; a++) sp[s][a] = (a < u->nsp ? (s ? sp[s - 1][a] : cur_sp[a]) : 1) / u->st[s][a];

    TRY(op->to_cl(be, n, u->in_ch, S_in, x_in, w->x)); /* (N, S_in, Cin) */

    /* ---- encoder: skip[s] = stage s's output ---- */
    if (!u->resenc) {
        const float *cur = w->x;
        for (int64_t s = 0; s < u->n; s++) {
            TRY(stack_forward(be, u, u->enc[s].convs, u->enc[s].count, n, s ? sp[s - 1] : cur_sp, cur, w->skip[s],
                              w->t0, w->t1));
            cur = w->skip[s];
        }
    } else {
        TRY(cna_forward(be, u, &u->stem, n, cur_sp, w->x, NULL, w->dec)); /* stem, stride 1 */
        float *cur = w->dec;
        for (int64_t s = 0; s < u->n; s++) {
            const int64_t *sz = s ? sp[s - 1] : cur_sp;
            for (int64_t b = 0; b < u->enc[s].count; b++) { /* blocks ping-pong between dec and cat */
                float *dst = b == u->enc[s].count - 1 ? w->skip[s] : (cur == w->cat ? w->dec : w->cat);
                TRY(block_forward(be, u, &u->enc[s].blocks[b], n, b ? sp[s] : sz, cur, dst));
                cur = dst;
            }
        }
    }

    /* ---- decoder: from the bottleneck up; stage s lands on encoder level L - 1, L = n - 1 - s ---- */
    const float *lres = w->skip[u->n - 1];
    for (int64_t s = 0; s < u->n - 1; s++) {
        const int64_t L = u->n - 1 - s;
        const dec_stage *d = &u->dec[s];
        TRY(op->conv_run(be, d->up, n, sp[L], lres, NULL, w->t0)); /* (N, S_{L-1}, F_{L-1}) */
        const float *parts[2] = {w->t0, w->skip[L - 1]};
        const int64_t sizes[2] = {u->feat[L - 1], u->feat[L - 1]};
        TRY(op->concat(be, 2, parts, sizes, n * prod(sp[L - 1], u->nsp), 1, w->cat));
        TRY(stack_forward(be, u, d->convs, d->count, n, sp[L - 1], w->cat, w->dec, w->t0, w->t1));
        lres = w->dec;
    }

    TRY(op->conv_run(be, u->seg, n, sp[0], w->dec, NULL, w->t0)); /* 1x1 with bias: (N, S_0, classes) */
    return op->from_cl(be, n, u->classes, prod(sp[0], u->nsp), w->t0, y);
}

/* ================================================================================================
 * workspace
 * ================================================================================================ */

static void ws_free(sarco_backend *be, nn_ws *w) {
    float **all[4 + 4 + NN_MAX_STAGES] = {&w->x, &w->t0, &w->t1, &w->t2, &w->t3, &w->dec, &w->cat};
    for (int s = 0; s < NN_MAX_STAGES; s++) all[7 + s] = &w->skip[s];
    for (int i = 0; i < 7 + NN_MAX_STAGES; i++) {
        if (*all[i] && be) be->ops->free(be, *all[i]);
        *all[i] = NULL;
    }
    w->key[0] = 0;
}

/* a * b * c, or -1 on overflow */
static int64_t mul3(int64_t a, int64_t b, int64_t c) {
    int64_t ab, abc;
    if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc)) return -1;
    return abc;
}

static void ws_buf(sarco_context *ctx, int64_t count, float **p, sarco_status *s) {
    if (*s != SARCO_OK) return;
    if (count < 0 || (uint64_t)count > SIZE_MAX / sizeof(float)) {
        *s = sarco_fail(ctx, SARCO_ERR_LIMIT, "nnU-Net: a workspace buffer would pass the address space");
        return;
    }
    void *q = NULL;
    *s = ctx->be->ops->alloc(ctx->be, (size_t)(count ? count : 1) * sizeof(float), &q);
    *p = q;
}

static void grow(int64_t *m, int64_t v) {
    if (v < 0 || *m < 0)
        *m = -1;
    else if (v > *m)
        *m = v;
}

static sarco_status workspace(sarco_context *ctx, nnunet *u, int64_t n, const int64_t *in) {
    nn_ws *w = &u->ws;
    const int64_t key[4] = {n, in[0], u->nsp > 1 ? in[1] : 1, u->nsp > 2 ? in[2] : 1};
    if (memcmp(w->key, key, sizeof key) == 0) return SARCO_OK;
    ws_free(ctx->be, w);
    int64_t S[NN_MAX_STAGES + 1] = {0}; /* S[0]: input voxels, S[s + 1]: after stage s */
    int64_t dims[3] = {1, 1, 1};
    for (int a = 0; a < u->nsp; a++) dims[a] = in[a];
    S[0] = prod(dims, 3);
    for (int64_t s = 0; s < u->n; s++) {
        for (int a = 0; a < 3; a++) dims[a] /= u->st[s][a];
        S[s + 1] = prod(dims, 3);
    }
    /* fmax: every map t0/t1/dec hold; cmax: cat; pmax: ResEnc skip path */
    int64_t fmax = 0, cmax = 0, pmax = 0;
    grow(&fmax, mul3(n, S[1], u->classes));
    if (u->resenc) grow(&fmax, mul3(n, S[0], u->stem_ch));
    for (int64_t s = 0; s < u->n; s++) {
        grow(&fmax, mul3(n, S[s + 1], u->feat[s]));
        if (u->resenc) {
            grow(&pmax, mul3(n, S[s + 1], s ? u->feat[s - 1] : u->stem_ch)); /* pooled input */
            grow(&pmax, mul3(n, S[s + 1], u->feat[s]));                     /* projection */
        }
        if (s) grow(&cmax, mul3(2 * n, S[s], u->feat[s - 1]));
    }
    grow(&cmax, fmax);
    if (fmax < 0 || cmax < 0 || pmax < 0) return sarco_fail(ctx, SARCO_ERR_LIMIT, "nnU-Net: workspace size overflows");
    sarco_status s = SARCO_OK;
    ws_buf(ctx, mul3(n, S[0], u->in_ch), &w->x, &s);
    for (int64_t i = 0; i < u->n; i++) ws_buf(ctx, mul3(n, S[i + 1], u->feat[i]), &w->skip[i], &s);
    /* t1 only serves stacks of three or more convs (stack_forward's second scratch) */
    int need_t1 = 0;
    for (int64_t i = 0; i < u->n; i++)
        need_t1 |= (!u->resenc && u->per_stage[i] >= 3) || (i < u->n - 1 && u->per_dec[i] >= 3);
    ws_buf(ctx, fmax, &w->t0, &s);
    if (need_t1) ws_buf(ctx, fmax, &w->t1, &s);
    ws_buf(ctx, fmax, &w->dec, &s);
    ws_buf(ctx, cmax, &w->cat, &s);
    if (u->resenc) {
        ws_buf(ctx, pmax, &w->t2, &s);
        ws_buf(ctx, pmax, &w->t3, &s);
    }
    if (s != SARCO_OK) {
        ws_free(ctx->be, w);
        return s;
    }
    memcpy(w->key, key, sizeof key);
    return SARCO_OK;
}

/* ================================================================================================
 * weights: one walk over the module tree, run three times -- to list every expected tensor (checked by
 * name and shape before anything is prepared), to prepare them on the backend, and to free them.
 * ================================================================================================ */

typedef enum { PASS_LIST, PASS_LOAD, PASS_FREE } walk_pass;

typedef struct walker {
    walk_pass pass;
    sarco_context *ctx;
    nnunet *u;
    const sarco_st_file *st; /* PASS_LOAD */
    sarco_wlist *list;       /* PASS_LIST */
    sarco_status s;          /* first failure of PASS_LOAD */
} walker;

static void SARCO_PRINTF(2, 3) tname(char *dst, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, NAME_LEN, fmt, ap);
    va_end(ap);
}

/* A tensor as float32 on the host; NULL (and wk->s set) on failure. Unless `writable` it may be a view of the
 * file's bytes (*bytes = 0: nothing to free). */
static float *host_tensor(walker *wk, const char *name, int writable, size_t *bytes) {
    const sarco_st_tensor *t = sarco_st_find(wk->st, name);
    *bytes = 0;
    if (!t) {
        wk->s = sarco_fail(wk->ctx, SARCO_ERR_INTERNAL, "nnU-Net: %s vanished after the check", name);
        return NULL;
    }
    const float *view = writable ? NULL : sarco_st_f32_view(wk->st, t);
    if (view) return (float *)view;
    *bytes = (size_t)(t->numel ? t->numel : 1) * sizeof(float);
    float *p = sarco_ctx_malloc(wk->ctx, *bytes, name);
    if (!p) {
        wk->s = SARCO_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    sarco_st_to_f32(wk->st, t, p);
    return p;
}

static void put_host(walker *wk, float *p, size_t bytes) {
    if (bytes) sarco_ctx_free(wk->ctx, p, bytes);
}

/* an InstanceNorm affine vector kept as a backend buffer */
static void w_vec(walker *wk, float **dst, const char *name) {
    if (wk->pass == PASS_FREE) {
        if (*dst) wk->ctx->be->ops->free(wk->ctx->be, *dst);
        *dst = NULL;
        return;
    }
    if (wk->s != SARCO_OK) return;
    size_t bytes = 0;
    float *h = host_tensor(wk, name, 1, &bytes);
    if (!h) return;
    sarco_backend *be = wk->ctx->be;
    void *d = NULL;
    wk->s = be->ops->alloc(be, bytes, &d);
    if (wk->s == SARCO_OK) {
        *dst = d; /* freed by PASS_FREE even when the upload fails */
        wk->s = be->ops->upload(be, d, h, bytes);
    }
    put_host(wk, h, bytes);
}

/* A plain conv or transposed conv "<name>.weight" [+ ".bias"], PyTorch semantics, prepared bare. */
static void w_conv(walker *wk, sarco_conv **dst, int transposed, int64_t cin, int64_t cout, const int64_t *k,
                   const int64_t *stride, int bias, const char *prefix) {
    const int nsp = wk->u->nsp;
    char wn[NAME_LEN], bn[NAME_LEN];
    tname(wn, "%s.weight", prefix);
    tname(bn, "%s.bias", prefix);
    int64_t shape[5] = {transposed ? cin : cout, transposed ? cout : cin, k[0], k[1], k[2]};
    if (wk->pass == PASS_LIST) {
        sarco_wlist_add(wk->list, shape, 2 + nsp, "%s", wn);
        if (bias) sarco_wlist_add(wk->list, SARCO_SHAPE(cout), "%s", bn);
        return;
    }
    sarco_backend *be = wk->ctx->be;
    if (wk->pass == PASS_FREE) {
        if (*dst) be->ops->conv_free(be, *dst);
        *dst = NULL;
        return;
    }
    if (wk->s != SARCO_OK) return;
    sarco_conv_desc d = {.nsp = nsp, .cin = cin, .cout = cout, .groups = 1, .has_bias = bias, .act = SARCO_ACT_NONE};
    for (int i = 0; i < 3; i++) {
        d.k[i] = k[i];
        d.stride[i] = stride[i];
        d.pad[i] = transposed ? 0 : (k[i] - 1) / 2;
        d.dil[i] = 1;
    }
    size_t wb = 0, bb = 0;
    float *w = host_tensor(wk, wn, 0, &wb);
    float *b = w && bias ? host_tensor(wk, bn, 0, &bb) : NULL;
    if (w && (b || !bias)) wk->s = be->ops->conv_prepare(be, &d, transposed, w, b, dst);
    put_host(wk, w, wb);
    put_host(wk, b, bb);
}

/* ConvDropoutNormReLU at `prefix` (".conv", ".norm"). BatchNorm is folded into the conv:
 * w' = w s, b' = (b - mean) s + beta, s = gamma / sqrt(var + eps); the conv then runs the act. */
static void w_cna(walker *wk, cna *c, const char *prefix, int64_t cin, int64_t cout, const int64_t *k,
                  const int64_t *stride, int bias, sarco_act act) {
    nnunet *u = wk->u;
    const int nsp = u->nsp;
    char wn[NAME_LEN], bn[NAME_LEN], nm[NAME_LEN];
    tname(wn, "%s.conv.weight", prefix);
    tname(bn, "%s.conv.bias", prefix);
    if (wk->pass == PASS_LIST) {
        c->cin = cin;
        c->cout = cout;
        c->bias = bias;
        c->act = act;
        for (int i = 0; i < 3; i++) {
            c->k[i] = k[i];
            c->stride[i] = stride[i];
        }
        sarco_wlist_add(wk->list, (int64_t[]){cout, cin, k[0], k[1], k[2]}, 2 + nsp, "%s", wn);
        if (bias) sarco_wlist_add(wk->list, SARCO_SHAPE(cout), "%s", bn);
        if (u->norm != NORM_NONE && u->affine) {
            sarco_wlist_add(wk->list, SARCO_SHAPE(cout), "%s.norm.weight", prefix);
            sarco_wlist_add(wk->list, SARCO_SHAPE(cout), "%s.norm.bias", prefix);
        }
        if (u->norm == NORM_BATCH) {
            sarco_wlist_add(wk->list, SARCO_SHAPE(cout), "%s.norm.running_mean", prefix);
            sarco_wlist_add(wk->list, SARCO_SHAPE(cout), "%s.norm.running_var", prefix);
        }
        return;
    }
    if (u->norm == NORM_INSTANCE && u->affine) {
        tname(nm, "%s.norm.weight", prefix);
        w_vec(wk, &c->gamma, nm);
        tname(nm, "%s.norm.bias", prefix);
        w_vec(wk, &c->beta, nm);
    }
    sarco_backend *be = wk->ctx->be;
    if (wk->pass == PASS_FREE) {
        if (c->conv) be->ops->conv_free(be, c->conv);
        c->conv = NULL;
        return;
    }
    if (wk->s != SARCO_OK) return;
    const int fold = u->norm == NORM_BATCH;
    sarco_conv_desc d = {.nsp = nsp, .cin = cin, .cout = cout, .groups = 1, .has_bias = bias || fold,
                         .act = u->norm == NORM_INSTANCE ? SARCO_ACT_NONE : act, .alpha = u->alpha};
    for (int i = 0; i < 3; i++) {
        d.k[i] = k[i];
        d.stride[i] = stride[i];
        d.pad[i] = (k[i] - 1) / 2;
        d.dil[i] = 1;
    }
    size_t wb = 0, bb = 0, fb = 0;
    float *w = host_tensor(wk, wn, fold, &wb); /* folding scales w in place */
    float *b = w && bias ? host_tensor(wk, bn, 0, &bb) : NULL;
    float *folded = NULL;
    if (w && fold && (b || !bias)) {
        fb = (size_t)cout * sizeof(float);
        folded = sarco_ctx_malloc(wk->ctx, fb, bn);
        float *ga = NULL, *bt = NULL, *mean = NULL, *var = NULL;
        size_t cb[4] = {0, 0, 0, 0};
        if (!folded) wk->s = SARCO_ERR_OUT_OF_MEMORY;
        if (folded && u->affine) {
            tname(nm, "%s.norm.weight", prefix);
            ga = host_tensor(wk, nm, 0, &cb[0]);
            tname(nm, "%s.norm.bias", prefix);
            bt = ga ? host_tensor(wk, nm, 0, &cb[1]) : NULL;
        }
        if (wk->s == SARCO_OK) {
            tname(nm, "%s.norm.running_mean", prefix);
            mean = host_tensor(wk, nm, 0, &cb[2]);
            tname(nm, "%s.norm.running_var", prefix);
            var = mean ? host_tensor(wk, nm, 0, &cb[3]) : NULL;
        }
        if (var) {
            const int64_t per = cin * prod(k, 3); /* weights per output channel */
            for (int64_t o = 0; o < cout; o++) {
                const double sc = (ga ? (double)ga[o] : 1.0) / sqrt((double)var[o] + (double)u->eps);
                folded[o] = (float)(((b ? (double)b[o] : 0.0) - (double)mean[o]) * sc + (bt ? (double)bt[o] : 0.0));
                for (int64_t j = 0; j < per; j++) w[o * per + j] = (float)(w[o * per + j] * sc);
            }
        }
        put_host(wk, ga, cb[0]);
        put_host(wk, bt, cb[1]);
        put_host(wk, mean, cb[2]);
        put_host(wk, var, cb[3]);
    }
    if (w && wk->s == SARCO_OK) wk->s = be->ops->conv_prepare(be, &d, 0, w, fold ? folded : b, &c->conv);
    put_host(wk, w, wb);
    put_host(wk, b, bb);
    if (folded) sarco_ctx_free(wk->ctx, folded, fb);
}

/* (de)allocates a stage's cna/block array */
static int w_array(walker *wk, void **arr, int64_t count, size_t size) {
    if (wk->pass == PASS_LIST) {
        *arr = calloc((size_t)count, size);
        if (!*arr) wk->list->oom = 1;
        return *arr != NULL;
    }
    return *arr != NULL;
}

static void walk(walker *wk) {
    nnunet *u = wk->u;
    const int64_t one[3] = {1, 1, 1};
    char p[NAME_LEN];
    int64_t cin = u->in_ch;
    if (u->resenc) { /* encoder.stem: one cna, kernel_sizes[0], stride 1 */
        w_cna(wk, &u->stem, "encoder.stem.convs.0", u->in_ch, u->stem_ch, u->k[0], one, u->conv_bias, u->act);
        cin = u->stem_ch;
    }
    for (int64_t s = 0; s < u->n; s++) {
        nn_stage *e = &u->enc[s];
        e->count = u->per_stage[s];
        if (!u->resenc) { /* encoder.stages.{s}.0.convs.{i} */
            if (!w_array(wk, (void **)&e->convs, e->count, sizeof *e->convs)) return;
            for (int64_t i = 0; i < e->count; i++) {
                tname(p, "encoder.stages.%lld.0.convs.%lld", (long long)s, (long long)i);
                w_cna(wk, &e->convs[i], p, i ? u->feat[s] : cin, u->feat[s], u->k[s], i ? one : u->st[s],
                      u->conv_bias, u->act);
            }
        } else { /* encoder.stages.{s}.blocks.{b}.{conv1, conv2, skip} */
            if (!w_array(wk, (void **)&e->blocks, e->count, sizeof *e->blocks)) return;
            for (int64_t b = 0; b < e->count; b++) {
                res_block *r = &e->blocks[b];
                const int64_t bin = b ? u->feat[s] : cin;
                const int64_t *bst = b ? one : u->st[s];
                tname(p, "encoder.stages.%lld.blocks.%lld.conv1", (long long)s, (long long)b);
                w_cna(wk, &r->c1, p, bin, u->feat[s], u->k[s], bst, u->conv_bias, u->act);
                tname(p, "encoder.stages.%lld.blocks.%lld.conv2", (long long)s, (long long)b);
                w_cna(wk, &r->c2, p, u->feat[s], u->feat[s], u->k[s], one, u->conv_bias, u->act); /* act: nonlin2 */
                if (wk->pass == PASS_LIST) {
                    r->pool = bst[0] != 1 || bst[1] != 1 || bst[2] != 1;
                    r->proj = bin != u->feat[s];
                }
                if (r->proj) {
                    tname(p, "encoder.stages.%lld.blocks.%lld.skip.%d", (long long)s, (long long)b, r->pool ? 1 : 0);
                    w_cna(wk, &r->skip, p, bin, u->feat[s], one, one, 0, SARCO_ACT_NONE);
                }
            }
        }
        cin = u->feat[s];
    }
    for (int64_t s = 0; s < u->n - 1; s++) {
        const int64_t L = u->n - 1 - s; /* from level L up to L - 1 */
        dec_stage *d = &u->dec[s];
        d->count = u->per_dec[s];
        tname(p, "decoder.transpconvs.%lld", (long long)s);
        w_conv(wk, &d->up, 1, u->feat[L], u->feat[L - 1], u->st[L], u->st[L], u->conv_bias, p);
        if (!w_array(wk, (void **)&d->convs, d->count, sizeof *d->convs)) return;
        for (int64_t i = 0; i < d->count; i++) {
            tname(p, "decoder.stages.%lld.convs.%lld", (long long)s, (long long)i);
            w_cna(wk, &d->convs[i], p, i ? u->feat[L - 1] : 2 * u->feat[L - 1], u->feat[L - 1], u->k[L - 1], one,
                  u->conv_bias, u->act);
        }
        /* seg_layers: all built (deep supervision), only the last one runs; the others are shape-checked */
        tname(p, "decoder.seg_layers.%lld", (long long)s);
        if (s == u->n - 2)
            w_conv(wk, &u->seg, 0, u->feat[L - 1], u->classes, one, one, 1, p);
        else if (wk->pass == PASS_LIST) {
            const int64_t shape[5] = {u->classes, u->feat[L - 1], 1, 1, 1};
            sarco_wlist_add(wk->list, shape, 2 + u->nsp, "%s.weight", p);
            sarco_wlist_add(wk->list, SARCO_SHAPE(u->classes), "%s.bias", p);
        }
    }
}

/* PASS_FREE plus the arrays PASS_LIST made */
static void walk_free(sarco_context *ctx, nnunet *u) {
    walker wk = {.pass = PASS_FREE, .ctx = ctx, .u = u};
    walk(&wk);
    for (int64_t s = 0; s < NN_MAX_STAGES; s++) {
        free(u->enc[s].convs);
        free(u->enc[s].blocks);
        free(u->dec[s].convs);
        u->enc[s].convs = u->dec[s].convs = NULL;
        u->enc[s].blocks = NULL;
    }
}

/* ================================================================================================
 * keywords: the dynamic-network-architectures constructor's, as plans.json / sarco.convert give them
 * ================================================================================================ */


/* "torch.nn.modules.conv.Conv3d" -> "Conv3d"; NULL for JSON null or absent */
static const char *short_class(const json_t *v) {
    const char *s = json_string_value(v);
    if (!s) return NULL;
    const char *dot = strrchr(s, '.');
    return dot ? dot + 1 : s;
}

static sarco_status kw_int(sarco_context *ctx, const nnunet *u, const json_t *v, const char *key, int64_t lo,
                           int64_t hi, int64_t *out) {
    if (!json_is_integer(v))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: kwarg %s must be an integer", u->what, key);
    const int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: kwarg %s = %lld is outside [%lld, %lld]", u->what, key,
                          (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return SARCO_OK;
}

static sarco_status kw_bool(sarco_context *ctx, const nnunet *u, const json_t *obj, const char *key, int def,
                            int *out) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return SARCO_OK;
    }
    if (!json_is_boolean(v))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: %s must be true or false", u->what, key);
    *out = json_is_true(v);
    return SARCO_OK;
}

/* an int or a list of `count` ints (the constructor's "if isinstance(x, int): [x] * n") */
static sarco_status kw_ints(sarco_context *ctx, const nnunet *u, const json_t *kw, const char *key, int64_t count,
                            int64_t lo, int64_t *out) {
    const json_t *v = json_object_get(kw, key);
    if (!v) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: sarco.config kwargs has no \"%s\"", u->what, key);
    if (json_is_array(v) && json_array_size(v) != (size_t)count)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: %s has %zu entries, expected %lld", u->what, key,
                          json_array_size(v), (long long)count);
    for (int64_t i = 0; i < count; i++)
        TRY(kw_int(ctx, u, json_is_array(v) ? json_array_get(v, (size_t)i) : v, key, lo, 65536, &out[i]));
    return SARCO_OK;
}

/* kernel_sizes / strides: an int, or per stage an int or nsp ints */
static sarco_status kw_vectors(sarco_context *ctx, const nnunet *u, const json_t *kw, const char *key,
                               int64_t (*out)[3]) {
    const json_t *v = json_object_get(kw, key);
    if (!v) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: sarco.config kwargs has no \"%s\"", u->what, key);
    if (json_is_array(v) && json_array_size(v) != (size_t)u->n)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: %s has %zu entries for n_stages %lld", u->what, key,
                          json_array_size(v), (long long)u->n);
    for (int64_t s = 0; s < u->n; s++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, (size_t)s) : v;
        if (json_is_array(e) && json_array_size(e) != (size_t)u->nsp)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: %s[%lld] has %zu entries for a %dD network", u->what,
                              key, (long long)s, json_array_size(e), u->nsp);
        for (int a = 0; a < 3; a++) {
            out[s][a] = 1;
            if (a < u->nsp) TRY(kw_int(ctx, u, json_is_array(e) ? json_array_get(e, (size_t)a) : e, key, 1, 64,
                                       &out[s][a]));
        }
    }
    return SARCO_OK;
}

static sarco_status kw_norm(sarco_context *ctx, nnunet *u, const json_t *kw) {
    const char *name = short_class(json_object_get(kw, "norm_op"));
    const json_t *nk = json_object_get(kw, "norm_op_kwargs");
    if (nk && !json_is_null(nk) && !json_is_object(nk))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: norm_op_kwargs must be an object or null", u->what);
    char inst[32], batch[32];
    snprintf(inst, sizeof inst, "InstanceNorm%dd", u->nsp);
    snprintf(batch, sizeof batch, "BatchNorm%dd", u->nsp);
    int track = 0;
    u->eps = 1e-5f;
    if (!name) {
        u->norm = NORM_NONE;
    } else if (strcmp(name, inst) == 0) {
        u->norm = NORM_INSTANCE;
        TRY(kw_bool(ctx, u, nk, "affine", 0, &u->affine));
        TRY(kw_bool(ctx, u, nk, "track_running_stats", 0, &track));
        if (track) return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: InstanceNorm with track_running_stats", u->what);
    } else if (strcmp(name, batch) == 0) {
        u->norm = NORM_BATCH;
        TRY(kw_bool(ctx, u, nk, "affine", 1, &u->affine));
        TRY(kw_bool(ctx, u, nk, "track_running_stats", 1, &track));
        if (!track) /* eval mode would use the batch's own statistics */
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: BatchNorm without track_running_stats", u->what);
    } else {
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: norm_op \"%s\" (supported for %dD: %s, %s, null)", u->what,
                          name, u->nsp, inst, batch);
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)nk, key, val) {
        if (strcmp(key, "eps") == 0) {
            if (!json_is_number(val) || !(json_number_value(val) > 0) || json_number_value(val) > 1)
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: norm_op_kwargs eps must be a number in (0, 1]",
                                  u->what);
            u->eps = (float)json_number_value(val);
        } else if (strcmp(key, "affine") && strcmp(key, "track_running_stats") && strcmp(key, "momentum")) {
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: norm_op_kwargs \"%s\"", u->what, key);
        }
    }
    return SARCO_OK;
}

static sarco_status kw_nonlin(sarco_context *ctx, nnunet *u, const json_t *kw) {
    const char *name = short_class(json_object_get(kw, "nonlin"));
    const json_t *nk = json_object_get(kw, "nonlin_kwargs");
    if (nk && !json_is_null(nk) && !json_is_object(nk))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: nonlin_kwargs must be an object or null", u->what);
    u->alpha = 0.0f;
    if (!name) {
        u->act = SARCO_ACT_NONE;
    } else if (strcmp(name, "LeakyReLU") == 0) {
        u->act = SARCO_ACT_LEAKY_RELU;
        u->alpha = 0.01f; /* torch's default negative_slope */
    } else if (strcmp(name, "ReLU") == 0) {
        u->act = SARCO_ACT_RELU;
    } else {
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: nonlin \"%s\" (supported: LeakyReLU, ReLU, null)", u->what,
                          name);
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)nk, key, val) {
        if (strcmp(key, "negative_slope") == 0 && u->act == SARCO_ACT_LEAKY_RELU) {
            if (!json_is_number(val) || !isfinite(json_number_value(val)))
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: negative_slope must be a finite number", u->what);
            u->alpha = (float)json_number_value(val);
        } else if (strcmp(key, "inplace") != 0) {
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: nonlin_kwargs \"%s\" for %s", u->what, key, name);
        }
    }
    return SARCO_OK;
}

static sarco_status parse_kwargs(sarco_context *ctx, const json_t *kw, nnunet *u) {
    static const char *const common[] = {"input_channels", "n_stages", "features_per_stage", "conv_op",
                                         "kernel_sizes", "strides", "num_classes", "n_conv_per_stage_decoder",
                                         "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs",
                                         "nonlin", "nonlin_kwargs", "deep_supervision", NULL};
    static const char *const plain[] = {"n_conv_per_stage", "nonlin_first", NULL};
    static const char *const resenc[] = {"n_blocks_per_stage", "block", "bottleneck_channels", "stem_channels", NULL};
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)kw, key, val) {
        int ok = 0;
        for (int i = 0; common[i] && !ok; i++) ok = strcmp(key, common[i]) == 0;
        const char *const *own = u->resenc ? resenc : plain;
        for (int i = 0; own[i] && !ok; i++) ok = strcmp(key, own[i]) == 0;
        if (!ok) return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: unknown kwarg \"%s\"", u->what, key);
    }
    const char *conv = short_class(json_object_get(kw, "conv_op"));
    if (!conv || (strcmp(conv, "Conv2d") && strcmp(conv, "Conv3d")))
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: conv_op must be Conv2d or Conv3d", u->what);
    u->nsp = conv[4] - '0';
    const json_t *ns = json_object_get(kw, "n_stages");
    if (!ns) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: sarco.config kwargs has no \"n_stages\"", u->what);
    TRY(kw_int(ctx, u, ns, "n_stages", 2, NN_MAX_STAGES, &u->n));
    const json_t *ic = json_object_get(kw, "input_channels"), *nc = json_object_get(kw, "num_classes");
    if (!ic || !nc)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: sarco.config kwargs needs input_channels and num_classes",
                          u->what);
    TRY(kw_int(ctx, u, ic, "input_channels", 1, 4096, &u->in_ch));
    TRY(kw_int(ctx, u, nc, "num_classes", 1, 65536, &u->classes));
    TRY(kw_ints(ctx, u, kw, "features_per_stage", u->n, 1, u->feat));
    TRY(kw_vectors(ctx, u, kw, "kernel_sizes", u->k));
    TRY(kw_vectors(ctx, u, kw, "strides", u->st));
    for (int64_t s = 0; s < u->n; s++)
        for (int a = 0; a < u->nsp; a++)
            if (u->k[s][a] % 2 == 0) /* padding (k - 1) // 2 keeps the size only for odd kernels */
                return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: kernel_sizes[%lld] has the even size %lld",
                                  u->what, (long long)s, (long long)u->k[s][a]);
    TRY(kw_ints(ctx, u, kw, u->resenc ? "n_blocks_per_stage" : "n_conv_per_stage", u->n, 1, u->per_stage));
    TRY(kw_ints(ctx, u, kw, "n_conv_per_stage_decoder", u->n - 1, 1, u->per_dec));
    TRY(kw_bool(ctx, u, kw, "conv_bias", 0, &u->conv_bias));
    TRY(kw_norm(ctx, u, kw));
    TRY(kw_nonlin(ctx, u, kw));
    int flag = 0;
    TRY(kw_bool(ctx, u, kw, "deep_supervision", 0, &flag)); /* off at inference whatever training used */
    const json_t *dr = json_object_get(kw, "dropout_op");
    if (dr && !json_is_null(dr) && !json_is_string(dr)) /* a no-op at inference */
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: dropout_op must be a class name or null", u->what);
    if (!u->resenc) {
        TRY(kw_bool(ctx, u, kw, "nonlin_first", 0, &flag));
        if (flag) return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: nonlin_first true (conv -> nonlin -> norm)", u->what);
    } else {
        const char *block = short_class(json_object_get(kw, "block"));
        if (block && strcmp(block, "BasicBlockD"))
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: block \"%s\" (supported: BasicBlockD)", u->what, block);
        const json_t *bc = json_object_get(kw, "bottleneck_channels");
        if (bc && !json_is_null(bc))
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: bottleneck_channels (BottleneckD blocks)", u->what);
        const json_t *sc = json_object_get(kw, "stem_channels");
        u->stem_ch = u->feat[0];
        if (sc && !json_is_null(sc)) TRY(kw_int(ctx, u, sc, "stem_channels", 1, 65536, &u->stem_ch));
    }
    return SARCO_OK;
}

/* ================================================================================================
 * the sarco_arch interface
 * ================================================================================================ */

static void nnunet_free(sarco_context *ctx, void *state) {
    nnunet *u = state;
    if (!u) return;
    walk_free(ctx, u);
    ws_free(ctx->be, &u->ws);
    free(u);
}

/* drops the workspace (between folds: only one fold's scratch is held at a time) */
static void nnunet_trim(sarco_context *ctx, void *state) {
    nnunet *u = state;
    if (u) ws_free(ctx->be, &u->ws);
}

static sarco_status load(sarco_context *ctx, const json_t *kwargs, const sarco_st_file *st, void **state,
                         int resenc) {
    *state = NULL;
    nnunet *u = calloc(1, sizeof *u);
    if (!u) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "nnU-Net: out of memory");
    u->resenc = resenc;
    u->what = resenc ? "ResidualEncoderUNet" : "PlainConvUNet";
    sarco_status s = parse_kwargs(ctx, kwargs, u);
    if (s != SARCO_OK) {
        free(u);
        return s;
    }
    sarco_wlist list = {0};
    walker wk = {.pass = PASS_LIST, .ctx = ctx, .u = u, .list = &list};
    walk(&wk);
    /* ConvDropoutNormReLU's all_modules and the decoder's reference to the encoder repeat every tensor */
    static const char *const ignore[] = {"*.all_modules.*", "decoder.encoder.*", "*.num_batches_tracked", NULL};
    if (list.oom)
        s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory listing the weights", u->what);
    else
        s = sarco_weights_check(ctx, st, &list, ignore);
    sarco_wlist_free(&list);
    if (s == SARCO_OK) {
        wk = (walker){.pass = PASS_LOAD, .ctx = ctx, .u = u, .st = st, .s = SARCO_OK};
        walk(&wk);
        s = wk.s;
    }
    if (s != SARCO_OK) {
        nnunet_free(ctx, u);
        return s;
    }
    *state = u;
    return SARCO_OK;
}

static sarco_status plain_load(sarco_context *ctx, const json_t *kw, const sarco_st_file *st, void **state) {
    return load(ctx, kw, st, state, 0);
}

static sarco_status resenc_load(sarco_context *ctx, const json_t *kw, const sarco_st_file *st, void **state) {
    return load(ctx, kw, st, state, 1);
}

/* in (N, C, [D,] H, W): every spatial size divisible by the product of the strides on its axis (the decoder's
 * transposed convs must land on the skips' sizes) -> (N, classes, size / strides[0]) */
static sarco_status nnunet_output_shape(sarco_context *ctx, const void *state, int ndim, const int64_t *in,
                                        int64_t *out) {
    const nnunet *u = state;
    if (ndim != u->nsp + 2 || in[1] != u->in_ch)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "%s: the input must be (N, %lld, %s), got a %d-D shape with %lld channels", u->what,
                          (long long)u->in_ch, u->nsp == 3 ? "D, H, W" : "H, W", ndim, (long long)in[1]);
    out[0] = in[0];
    out[1] = u->classes;
    for (int a = 0; a < u->nsp; a++) {
        int64_t total = 1;
        for (int64_t s = 0; s < u->n; s++) total *= u->st[s][a];
        if (in[2 + a] % total)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "%s: input size %lld on spatial axis %d is not a multiple of the strides' product %lld "
                              "(use the plans' patch_size)", u->what, (long long)in[2 + a], a, (long long)total);
        out[2 + a] = in[2 + a] / u->st[0][a];
    }
    return SARCO_OK;
}

SARCO_INTERNAL const sarco_arch sarco_arch_nnunet_plain = {
    .name = "nnunet.PlainConvUNet",
    .load = plain_load,
    .output_shape = nnunet_output_shape,
    .forward = nnunet_forward,
    .free = nnunet_free,
    .trim = nnunet_trim,
};

SARCO_INTERNAL const sarco_arch sarco_arch_nnunet_resenc = {
    .name = "nnunet.ResidualEncoderUNet",
    .load = resenc_load,
    .output_shape = nnunet_output_shape,
    .forward = nnunet_forward,
    .free = nnunet_free,
    .trim = nnunet_trim,
};
