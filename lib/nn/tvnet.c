/* Shared pieces of the torchvision classifiers (lib/nn/tvnet.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tvnet.h"

void tv_name(char *dst, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, TV_NAME_LEN, fmt, ap);
    va_end(ap);
}

/* a tensor as float32 on the host: the file's bytes when possible (*own = 0), else a copy (*own = 1) */
static float *host(tv_walker *wk, const char *name, int writable, int *own) {
    *own = 0;
    if (wk->s != SARCO_OK) return NULL;
    const sarco_st_tensor *t = sarco_st_find(wk->st, name);
    if (!t) {
        wk->s = sarco_fail(wk->ctx, SARCO_ERR_INTERNAL, "%s vanished after the check", name);
        return NULL;
    }
    const float *view = writable ? NULL : sarco_st_f32_view(wk->st, t);
    if (view) return (float *)view;
    float *p = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *p);
    if (!p) {
        wk->s = sarco_fail(wk->ctx, SARCO_ERR_OUT_OF_MEMORY, "out of memory reading %s", name);
        return NULL;
    }
    sarco_st_to_f32(wk->st, t, p);
    *own = 1;
    return p;
}

static void put(float *p, int own) {
    if (own) free(p);
}

static void list_bn(tv_walker *wk, int64_t c, const char *bn) {
    static const char *const leaves[] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) sarco_wlist_add(wk->list, SARCO_SHAPE(c), "%s.%s", bn, leaves[i]);
}

/* scale[c] = gamma / sqrt(var + eps), shift[c] = beta - mean scale, in double */
static int bn_fold(tv_walker *wk, int64_t c, const char *bn, double *scale, double *shift) {
    char nm[TV_NAME_LEN];
    int own[4] = {0, 0, 0, 0};
    float *p[4];
    static const char *const leaves[] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        tv_name(nm, "%s.%s", bn, leaves[i]);
        p[i] = host(wk, nm, 0, &own[i]);
    }
    if (wk->s == SARCO_OK)
        for (int64_t o = 0; o < c; o++) {
            scale[o] = (double)p[0][o] / sqrt((double)p[3][o] + (double)wk->bn_eps);
            shift[o] = (double)p[1][o] - (double)p[2][o] * scale[o];
        }
    for (int i = 0; i < 4; i++) put(p[i], own[i]);
    return wk->s == SARCO_OK;
}

void tv_conv(tv_walker *wk, sarco_conv **dst, int64_t cin, int64_t cout, int64_t k, int64_t stride, int64_t pad,
             int64_t groups, int bias, const char *conv, const char *bn, sarco_act act) {
    char wn[TV_NAME_LEN], bname[TV_NAME_LEN];
    tv_name(wn, "%s.weight", conv);
    tv_name(bname, "%s.bias", conv);
    if (wk->pass == TV_LIST) {
        sarco_wlist_add(wk->list, SARCO_SHAPE(cout, cin / groups, k, k), "%s", wn);
        if (bias) sarco_wlist_add(wk->list, SARCO_SHAPE(cout), "%s", bname);
        if (bn) list_bn(wk, cout, bn);
        return;
    }
    sarco_backend *be = wk->ctx->be;
    if (wk->pass == TV_FREE) {
        if (*dst) be->ops->conv_free(be, *dst);
        *dst = NULL;
        return;
    }
    if (wk->s != SARCO_OK) return;
    const sarco_conv_desc d = {.nsp = 2, .cin = cin, .cout = cout, .groups = groups,
                               .k = {k, k, 1}, .stride = {stride, stride, 1}, .pad = {pad, pad, 0},
                               .dil = {1, 1, 1}, .has_bias = bias || bn, .act = act};
    int wown = 0, bown = 0;
    float *w = host(wk, wn, bn != NULL, &wown); /* folding scales w in place: a copy */
    float *b = bias ? host(wk, bname, bn != NULL, &bown) : NULL;
    float *fb = NULL;
    if (wk->s == SARCO_OK && bn) {
        double *sc = malloc((size_t)cout * sizeof *sc), *sh = malloc((size_t)cout * sizeof *sh);
        fb = malloc((size_t)cout * sizeof *fb);
        if (!sc || !sh || !fb)
            wk->s = sarco_fail(wk->ctx, SARCO_ERR_OUT_OF_MEMORY, "out of memory folding %s", bn);
        else if (bn_fold(wk, cout, bn, sc, sh)) {
            const int64_t per = cin / groups * k * k;
            for (int64_t o = 0; o < cout; o++) {
                for (int64_t j = 0; j < per; j++) w[o * per + j] = (float)((double)w[o * per + j] * sc[o]);
                fb[o] = (float)((b ? (double)b[o] * sc[o] : 0.0) + sh[o]);
            }
        }
        free(sc);
        free(sh);
    }
    if (wk->s == SARCO_OK) wk->s = be->ops->conv_prepare(be, &d, 0, w, bn ? fb : b, dst);
    free(fb);
    put(w, wown);
    put(b, bown);
}

static void upload(tv_walker *wk, float **dst, const float *h, int64_t c) {
    sarco_backend *be = wk->ctx->be;
    void *d = NULL;
    if (wk->s != SARCO_OK) return;
    wk->s = be->ops->alloc(be, (size_t)c * sizeof(float), &d);
    if (wk->s != SARCO_OK) return;
    *dst = d; /* freed by TV_FREE even when the upload fails */
    wk->s = be->ops->upload(be, d, h, (size_t)c * sizeof(float));
}

void tv_bn_affine(tv_walker *wk, float **scale, float **shift, int64_t c, const char *bn) {
    if (wk->pass == TV_LIST) {
        list_bn(wk, c, bn);
        return;
    }
    sarco_backend *be = wk->ctx->be;
    if (wk->pass == TV_FREE) {
        if (*scale) be->ops->free(be, *scale);
        if (*shift) be->ops->free(be, *shift);
        *scale = *shift = NULL;
        return;
    }
    if (wk->s != SARCO_OK) return;
    double *sc = malloc((size_t)c * sizeof *sc), *sh = malloc((size_t)c * sizeof *sh);
    float *f = malloc((size_t)c * 2 * sizeof *f);
    if (!sc || !sh || !f)
        wk->s = sarco_fail(wk->ctx, SARCO_ERR_OUT_OF_MEMORY, "out of memory reading %s", bn);
    else if (bn_fold(wk, c, bn, sc, sh)) {
        for (int64_t i = 0; i < c; i++) {
            f[i] = (float)sc[i];
            f[c + i] = (float)sh[i];
        }
        upload(wk, scale, f, c);
        upload(wk, shift, f + c, c);
    }
    free(sc);
    free(sh);
    free(f);
}

void tv_conv1x1_linear(tv_walker *wk, sarco_linear **dst, int64_t in, int64_t out, sarco_act act, const char *name) {
    char wn[TV_NAME_LEN], bname[TV_NAME_LEN];
    tv_name(wn, "%s.weight", name);
    tv_name(bname, "%s.bias", name);
    if (wk->pass == TV_LIST) {
        sarco_wlist_add(wk->list, SARCO_SHAPE(out, in, 1, 1), "%s", wn);
        sarco_wlist_add(wk->list, SARCO_SHAPE(out), "%s", bname);
        return;
    }
    sarco_backend *be = wk->ctx->be;
    if (wk->pass == TV_FREE) {
        if (*dst) be->ops->linear_free(be, *dst);
        *dst = NULL;
        return;
    }
    if (wk->s != SARCO_OK) return;
    int wown = 0, bown = 0;
    float *w = host(wk, wn, 0, &wown);
    float *b = host(wk, bname, 0, &bown);
    if (wk->s == SARCO_OK) {
        const sarco_linear_desc d = {.in_features = in, .out_features = out, .has_bias = 1, .act = act};
        wk->s = be->ops->linear_prepare(be, &d, w, b, dst);
    }
    put(w, wown);
    put(b, bown);
}

void tv_linear(tv_walker *wk, sarco_linear **dst, int64_t in, int64_t out, int bias, sarco_act act,
               const char *row_scale, const char *name) {
    char wn[TV_NAME_LEN], bname[TV_NAME_LEN];
    tv_name(wn, "%s.weight", name);
    tv_name(bname, "%s.bias", name);
    if (wk->pass == TV_LIST) {
        sarco_wlist_add(wk->list, SARCO_SHAPE(out, in), "%s", wn);
        if (bias) sarco_wlist_add(wk->list, SARCO_SHAPE(out), "%s", bname);
        if (row_scale) sarco_wlist_add(wk->list, SARCO_SHAPE(out, 1, 1), "%s", row_scale);
        return;
    }
    sarco_backend *be = wk->ctx->be;
    if (wk->pass == TV_FREE) {
        if (*dst) be->ops->linear_free(be, *dst);
        *dst = NULL;
        return;
    }
    if (wk->s != SARCO_OK) return;
    int wown = 0, bown = 0, sown = 0;
    float *w = host(wk, wn, row_scale != NULL, &wown); /* folding scales w and b in place: copies */
    float *b = bias ? host(wk, bname, row_scale != NULL, &bown) : NULL;
    float *sc = row_scale ? host(wk, row_scale, 0, &sown) : NULL;
    if (wk->s == SARCO_OK) {
        if (sc)
            for (int64_t o = 0; o < out; o++) {
                for (int64_t i = 0; i < in; i++) w[o * in + i] *= sc[o];
                if (b) b[o] *= sc[o];
            }
        const sarco_linear_desc d = {.in_features = in, .out_features = out, .has_bias = bias, .act = act};
        wk->s = be->ops->linear_prepare(be, &d, w, b, dst);
    }
    put(w, wown);
    put(b, bown);
    put(sc, sown);
}

void tv_param(tv_walker *wk, float **dst, const int64_t *shape, int ndim, const char *name) {
    if (wk->pass == TV_LIST) {
        sarco_wlist_add(wk->list, shape, ndim, "%s", name);
        return;
    }
    if (wk->pass == TV_FREE) {
        if (*dst) wk->ctx->be->ops->free(wk->ctx->be, *dst);
        *dst = NULL;
        return;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    int own = 0;
    float *h = host(wk, name, 0, &own);
    if (h) upload(wk, dst, h, n);
    put(h, own);
}

void tv_layernorm(tv_walker *wk, float **gamma, float **beta, int64_t c, const char *name) {
    char nm[TV_NAME_LEN];
    tv_name(nm, "%s.weight", name);
    tv_param(wk, gamma, SARCO_SHAPE(c), nm);
    tv_name(nm, "%s.bias", name);
    tv_param(wk, beta, SARCO_SHAPE(c), nm);
}

/* ---- keywords ---- */

sarco_status tv_kw_known(sarco_context *ctx, const char *arch, const json_t *kw, const char *const *known) {
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)kw, key, val) {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++) ok = strcmp(key, known[i]) == 0;
        if (!ok) return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: unknown or unsupported kwarg \"%s\"", arch, key);
    }
    return SARCO_OK;
}

sarco_status tv_kw_int(sarco_context *ctx, const char *arch, const json_t *kw, const char *key, int64_t def,
                       int64_t lo, int64_t hi, int64_t *out) {
    const json_t *v = json_object_get(kw, key);
    if (!v) {
        *out = def;
        return SARCO_OK;
    }
    if (!json_is_integer(v)) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: kwarg %s must be an integer", arch, key);
    const int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: kwarg %s = %lld is outside [%lld, %lld]", arch, key,
                          (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return SARCO_OK;
}

sarco_status tv_num_classes(sarco_context *ctx, const char *arch, const json_t *kw, const sarco_st_file *st,
                            const char *final_weight, int64_t *out) {
    const sarco_st_tensor *t = sarco_st_find(st, final_weight);
    const int64_t def = t && t->ndim == 2 && t->shape[0] >= 1 ? t->shape[0] : 1000;
    return tv_kw_int(ctx, arch, kw, "num_classes", def, 1, 1 << 20, out);
}

int64_t tv_in_channels(const sarco_st_file *st, const char *first_weight) {
    const sarco_st_tensor *t = sarco_st_find(st, first_weight);
    return t && t->ndim == 4 && t->shape[1] >= 1 && t->shape[1] <= 64 ? t->shape[1] : 3;
}

/* ---- loading ---- */

void tv_free_weights(sarco_context *ctx, tv_walk_fn walk, void *net, sarco_head *head) {
    tv_walker wk = {.pass = TV_FREE, .ctx = ctx, .s = SARCO_OK};
    walk(&wk, net);
    sarco_head_free(ctx->be, head);
}

sarco_status tv_load_weights(sarco_context *ctx, const char *arch, const sarco_st_file *st, tv_walk_fn walk, void *net,
                             sarco_head *head, const char *const *ignore) {
    TV_TRY(sarco_head_check(ctx, head, arch));
    sarco_wlist list = {0};
    tv_walker wk = {.pass = TV_LIST, .ctx = ctx, .list = &list, .s = SARCO_OK, .bn_eps = 1e-5f};
    walk(&wk, net);
    sarco_head_list(head, &list);
    static const char *const def_ignore[] = {"*.num_batches_tracked", NULL};
    sarco_status s = list.oom ? sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory listing the weights", arch)
                              : sarco_weights_check(ctx, st, &list, ignore ? ignore : def_ignore);
    sarco_wlist_free(&list);
    if (s != SARCO_OK) return s;
    wk = (tv_walker){.pass = TV_LOAD, .ctx = ctx, .st = st, .s = SARCO_OK, .bn_eps = 1e-5f};
    walk(&wk, net);
    s = wk.s;
    if (s == SARCO_OK) s = sarco_head_load(ctx, head, st);
    if (s != SARCO_OK) tv_free_weights(ctx, walk, net, head);
    return s;
}

/* ---- workspace ---- */

void tv_ws_free(sarco_backend *be, tv_ws *w) {
    for (int i = 0; i < TV_WS_MAX; i++) {
        if (w->b[i] && be) be->ops->free(be, w->b[i]);
        w->b[i] = NULL;
    }
    w->count = 0;
}

sarco_status tv_ws_ensure(sarco_context *ctx, tv_ws *w, int nbuf, int64_t count) {
    if (count <= w->count) return SARCO_OK;
    tv_ws_free(ctx->be, w);
    if (count < 0 || (uint64_t)count > SIZE_MAX / sizeof(float) / 8)
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "classifier workspace too large");
    for (int i = 0; i < nbuf && i < TV_WS_MAX; i++) {
        void *p = NULL;
        sarco_status s = ctx->be->ops->alloc(ctx->be, (size_t)count * sizeof(float), &p);
        if (s != SARCO_OK) {
            tv_ws_free(ctx->be, w);
            return s;
        }
        w->b[i] = p;
    }
    w->count = count;
    return SARCO_OK;
}

/* ---- arch glue ---- */

sarco_status tv_check_input(sarco_context *ctx, const char *arch, const int64_t *in, int64_t channels) {
    if (in[1] != channels)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: the input must have %lld channels (N, %lld, H, W), got %lld",
                          arch, (long long)channels, (long long)channels, (long long)in[1]);
    if (in[0] < 1 || in[2] < 1 || in[3] < 1 || in[2] > 16384 || in[3] > 16384)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: input size %lldx%lldx%lld is out of range", arch,
                          (long long)in[0], (long long)in[2], (long long)in[3]);
    return SARCO_OK;
}

sarco_status tv_output_shape(sarco_context *ctx, const sarco_classifier *c, const void *state, int ndim,
                             const int64_t *in, int64_t *out) {
    if (ndim != 4)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "classifier: the input must be 4-D (N, C, H, W), got %d-D",
                          ndim);
    int64_t a[4];
    TV_TRY(c->features_shape(ctx, state, in, a));
    out[0] = in[0];
    out[1] = sarco_head_classes(c->head((void *)state));
    out[2] = out[3] = 1; /* logits (N, classes) seen as (N, classes, 1, 1): the forward keeps the input's rank */
    return SARCO_OK;
}
