/* The classifier head as data (lib/nn/classifier.h): building, weights, the backend forward with
 * op-table calls, and the host double-precision backward d logit[target] / dA for Grad-CAM.
 *
 * The tensor between layers is either a map (N, h, w, C) channels-last or a vector (N, F); the
 * layers say which (pooling turns a map into a vector, a LINEAR needs a vector).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "kernels/pool_hd.h"

/* ---- building ------------------------------------------------------------------------------- */

void sarco_head_init(sarco_head *h, int64_t channels) {
    memset(h, 0, sizeof *h);
    h->channels = channels;
    if (channels < 1) {
        h->bad = 1;
        snprintf(h->why, sizeof h->why, "the feature map has %lld channels", (long long)channels);
    }
}

/* the current tensor's width after the first `upto` layers: channels of a map, or features of a vector */
static int64_t width_at(const sarco_head *h, int upto, int64_t ah, int64_t aw, int *is_map) {
    int64_t f = h->channels;
    int map = 1;
    for (int i = 0; i < upto; i++) {
        const sarco_head_layer *L = &h->layers[i];
        switch (L->kind) {
        case SARCO_HEAD_GLOBAL_AVG_POOL: map = 0; break;
        case SARCO_HEAD_ADAPTIVE_AVG_POOL: map = 0; f *= L->oh * L->ow; break;
        case SARCO_HEAD_LINEAR: f = L->out; break;
        default: break;
        }
    }
    (void)ah;
    (void)aw;
    if (is_map) *is_map = map;
    return f;
}

static sarco_head_layer *add(sarco_head *h, sarco_head_kind kind, const char *name) {
    if (h->bad) return NULL;
    if (h->count >= SARCO_HEAD_MAX_LAYERS) {
        h->bad = 1;
        snprintf(h->why, sizeof h->why, "more than %d head layers", SARCO_HEAD_MAX_LAYERS);
        return NULL;
    }
    sarco_head_layer *L = &h->layers[h->count++];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    if (name) snprintf(L->name, sizeof L->name, "%s", name);
    return L;
}

static void bad(sarco_head *h, const char *fmt, ...) SARCO_PRINTF(2, 3);
static void bad(sarco_head *h, const char *fmt, ...) {
    if (h->bad) return;
    h->bad = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->why, sizeof h->why, fmt, ap);
    va_end(ap);
}

void sarco_head_add_relu(sarco_head *h) { add(h, SARCO_HEAD_RELU, NULL); }
void sarco_head_add_dropout(sarco_head *h) { add(h, SARCO_HEAD_DROPOUT, NULL); }

void sarco_head_add_global_avg_pool(sarco_head *h) {
    int map = 0;
    width_at(h, h->count, 0, 0, &map);
    if (!map) bad(h, "global average pooling of a vector (layer %d)", h->count);
    add(h, SARCO_HEAD_GLOBAL_AVG_POOL, NULL);
}

void sarco_head_add_adaptive_avg_pool(sarco_head *h, int64_t oh, int64_t ow) {
    int map = 0;
    width_at(h, h->count, 0, 0, &map);
    if (!map) bad(h, "adaptive average pooling of a vector (layer %d)", h->count);
    if (oh < 1 || ow < 1 || oh > 4096 || ow > 4096) bad(h, "adaptive pooling to %lldx%lld", (long long)oh, (long long)ow);
    sarco_head_layer *L = add(h, SARCO_HEAD_ADAPTIVE_AVG_POOL, NULL);
    if (L) {
        L->oh = oh;
        L->ow = ow;
    }
}

void sarco_head_add_layernorm(sarco_head *h, const char *name, float eps) {
    const int64_t c = width_at(h, h->count, 0, 0, NULL);
    if (!(eps > 0.0f)) bad(h, "layernorm %s: eps %g", name, (double)eps);
    sarco_head_layer *L = add(h, SARCO_HEAD_LAYERNORM, name);
    if (L) {
        L->in = L->out = c;
        L->eps = eps;
    }
}

void sarco_head_add_linear(sarco_head *h, const char *name, int64_t out, sarco_act act) {
    int map = 0;
    const int64_t in = width_at(h, h->count, 0, 0, &map);
    if (map) bad(h, "linear %s on a feature map (pool first)", name);
    if (out < 1) bad(h, "linear %s with %lld outputs", name, (long long)out);
    if (act != SARCO_ACT_NONE && act != SARCO_ACT_RELU && act != SARCO_ACT_GELU)
        bad(h, "linear %s: activation %d (supported: none, ReLU, GELU)", name, (int)act);
    sarco_head_layer *L = add(h, SARCO_HEAD_LINEAR, name);
    if (L) {
        L->in = in;
        L->out = out;
        L->act = act;
    }
}

int sarco_head_final_linear(const sarco_head *h) {
    for (int i = h->count - 1; i >= 0; i--)
        if (h->layers[i].kind == SARCO_HEAD_LINEAR) return i;
    return -1;
}

sarco_status sarco_head_check(sarco_context *ctx, const sarco_head *h, const char *arch) {
    if (h->bad) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: classifier head: %s", arch, h->why);
    const int f = sarco_head_final_linear(h);
    if (f < 0) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: classifier head has no linear layer", arch);
    for (int i = f + 1; i < h->count; i++)
        if (h->layers[i].kind != SARCO_HEAD_DROPOUT)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: classifier head: layer %d follows the final linear",
                              arch, i);
    return SARCO_OK;
}

int64_t sarco_head_classes(const sarco_head *h) {
    const int f = sarco_head_final_linear(h);
    return f < 0 ? 0 : h->layers[f].out;
}

int64_t sarco_head_pooled_dim(const sarco_head *h, int64_t ah, int64_t aw) {
    const int f = sarco_head_final_linear(h);
    return f < 0 ? 0 : width_at(h, f, ah, aw, NULL);
}

/* ---- weights -------------------------------------------------------------------------------- */

void sarco_head_list(const sarco_head *h, sarco_wlist *l) {
    for (int i = 0; i < h->count; i++) {
        const sarco_head_layer *L = &h->layers[i];
        if (L->kind == SARCO_HEAD_LINEAR) {
            sarco_wlist_add(l, SARCO_SHAPE(L->out, L->in), "%s.weight", L->name);
            sarco_wlist_add(l, SARCO_SHAPE(L->out), "%s.bias", L->name);
        } else if (L->kind == SARCO_HEAD_LAYERNORM) {
            sarco_wlist_add(l, SARCO_SHAPE(L->in), "%s.weight", L->name);
            sarco_wlist_add(l, SARCO_SHAPE(L->in), "%s.bias", L->name);
        }
    }
}

static sarco_status host_copy(sarco_context *ctx, const sarco_st_file *st, const char *layer, const char *leaf,
                              int64_t count, float **out) {
    char name[SARCO_HEAD_NAME_LEN + 16];
    snprintf(name, sizeof name, "%s.%s", layer, leaf);
    const sarco_st_tensor *t = sarco_st_find(st, name);
    if (!t || t->numel != count)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "classifier head: %s missing or mis-sized", name);
    float *p = malloc((size_t)count * sizeof *p);
    if (!p) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "classifier head: out of memory for %s", name);
    sarco_st_to_f32(st, t, p);
    *out = p;
    return SARCO_OK;
}

static sarco_status upload(sarco_context *ctx, const float *h, int64_t count, float **out) {
    sarco_backend *be = ctx->be;
    void *d = NULL;
    sarco_status s = be->ops->alloc(be, (size_t)count * sizeof(float), &d);
    if (s != SARCO_OK) return s;
    *out = d;
    return be->ops->upload(be, d, h, (size_t)count * sizeof(float));
}

sarco_status sarco_head_load(sarco_context *ctx, sarco_head *h, const sarco_st_file *st) {
    sarco_status s = SARCO_OK;
    for (int i = 0; i < h->count && s == SARCO_OK; i++) {
        sarco_head_layer *L = &h->layers[i];
        if (L->kind == SARCO_HEAD_LINEAR) {
            s = host_copy(ctx, st, L->name, "weight", L->out * L->in, &L->w_host);
            if (s == SARCO_OK) s = host_copy(ctx, st, L->name, "bias", L->out, &L->b_host);
            if (s == SARCO_OK) {
                const sarco_linear_desc d = {.in_features = L->in, .out_features = L->out, .has_bias = 1,
                                             .act = L->act};
                s = ctx->be->ops->linear_prepare(ctx->be, &d, L->w_host, L->b_host, &L->lin);
            }
        } else if (L->kind == SARCO_HEAD_LAYERNORM) {
            s = host_copy(ctx, st, L->name, "weight", L->in, &L->w_host);
            if (s == SARCO_OK) s = host_copy(ctx, st, L->name, "bias", L->in, &L->b_host);
            if (s == SARCO_OK) s = upload(ctx, L->w_host, L->in, &L->w_be);
            if (s == SARCO_OK) s = upload(ctx, L->b_host, L->in, &L->b_be);
        }
    }
    return s;
}

void sarco_head_free(sarco_backend *be, sarco_head *h) {
    for (int i = 0; i < h->count; i++) {
        sarco_head_layer *L = &h->layers[i];
        free(L->w_host);
        free(L->b_host);
        L->w_host = L->b_host = NULL;
        if (be) {
            if (L->lin) be->ops->linear_free(be, L->lin);
            if (L->w_be) be->ops->free(be, L->w_be);
            if (L->b_be) be->ops->free(be, L->b_be);
        }
        L->lin = NULL;
        L->w_be = L->b_be = NULL;
    }
    for (int k = 0; k < 2; k++) {
        if (h->ws[k] && be) be->ops->free(be, h->ws[k]);
        h->ws[k] = NULL;
    }
    h->ws_count = 0;
}

/* ---- backend forward ------------------------------------------------------------------------ */

/* Runs layers [0, upto) on A (N, ah, aw, K); *out points at the result (a workspace buffer, or A itself
 * when no layer ran). */
static sarco_status run_layers(sarco_context *ctx, sarco_head *h, int upto, int64_t n, int64_t ah, int64_t aw,
                               const float *A, const float **out) {
    sarco_backend *be = ctx->be;
    const sarco_backend_ops *op = be->ops;
    if (n < 1 || ah < 1 || aw < 1 || !A)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "classifier head: bad input (N %lld, %lldx%lld)",
                          (long long)n, (long long)ah, (long long)aw);
    /* the largest tensor a layer writes */
    int64_t need = 1;
    for (int i = 0; i < upto; i++) {
        int map = 0;
        const int64_t f = width_at(h, i + 1, ah, aw, &map);
        const int64_t e = n * f * (map ? ah * aw : 1);
        if (e > need) need = e;
        if (h->layers[i].kind == SARCO_HEAD_ADAPTIVE_AVG_POOL && n * f > need) need = n * f;
    }
    if (need > h->ws_count) {
        for (int k = 0; k < 2; k++) {
            if (h->ws[k]) op->free(be, h->ws[k]);
            h->ws[k] = NULL;
        }
        h->ws_count = 0;
        for (int k = 0; k < 2; k++) {
            void *p = NULL;
            sarco_status s = op->alloc(be, (size_t)need * sizeof(float), &p);
            if (s != SARCO_OK) return s;
            h->ws[k] = p;
        }
        h->ws_count = need;
    }
    const float *cur = A;
    int next = 0, map = 1;
    int64_t f = h->channels;
    for (int i = 0; i < upto; i++) {
        const sarco_head_layer *L = &h->layers[i];
        float *dst = h->ws[next];
        const int64_t rows = map ? n * ah * aw : n;
        sarco_status s = SARCO_OK;
        switch (L->kind) {
        case SARCO_HEAD_DROPOUT: continue;
        case SARCO_HEAD_RELU: s = op->act(be, SARCO_ACT_RELU, 0.0f, rows * f, cur, dst); break;
        case SARCO_HEAD_GLOBAL_AVG_POOL: {
            const sarco_pool_desc d = {.nsp = 2, .kind = SARCO_POOL_AVG, .k = {ah, aw, 1}, .stride = {1, 1, 1},
                                       .count_include_pad = 1};
            const int64_t in[2] = {ah, aw};
            s = op->pool(be, &d, n, f, in, cur, dst); /* (N, 1, 1, C) = (N, C) */
            map = 0;
            break;
        }
        case SARCO_HEAD_ADAPTIVE_AVG_POOL: {
            const int64_t in[2] = {ah, aw}, o[2] = {L->oh, L->ow};
            float *tmp = h->ws[1 - next]; /* cur may be that buffer: pool into dst first */
            s = op->adaptive_avg_pool2d(be, n, f, in, o, cur, dst);                  /* (N, oh, ow, C) */
            if (s == SARCO_OK) s = op->from_cl(be, n, f, L->oh * L->ow, dst, tmp);  /* (N, C, oh, ow) */
            if (s != SARCO_OK) return s;
            cur = tmp;
            f *= L->oh * L->ow;
            map = 0;
            continue; /* the result sits in ws[1 - next]; next stays */
        }
        case SARCO_HEAD_LAYERNORM: s = op->layernorm(be, rows, f, cur, L->w_be, L->b_be, L->eps, dst); break;
        case SARCO_HEAD_LINEAR:
            s = op->linear_run(be, L->lin, n, cur, NULL, dst);
            f = L->out;
            break;
        default: return sarco_fail(ctx, SARCO_ERR_INTERNAL, "classifier head: layer kind %d", (int)L->kind);
        }
        if (s != SARCO_OK) return s;
        cur = dst;
        next = 1 - next;
    }
    *out = cur;
    return SARCO_OK;
}

static sarco_status run_into(sarco_context *ctx, sarco_head *h, int upto, int64_t n, int64_t ah, int64_t aw,
                             const float *A, int64_t width, float *y) {
    const float *r = NULL;
    sarco_status s = run_layers(ctx, h, upto, n, ah, aw, A, &r);
    if (s != SARCO_OK) return s;
    return ctx->be->ops->copy(ctx->be, y, r, (size_t)(n * width) * sizeof(float));
}

sarco_status sarco_head_forward(sarco_context *ctx, sarco_head *h, int64_t n, int64_t ah, int64_t aw, const float *A,
                                float *logits) {
    return run_into(ctx, h, h->count, n, ah, aw, A, sarco_head_classes(h), logits);
}

sarco_status sarco_head_pooled(sarco_context *ctx, sarco_head *h, int64_t n, int64_t ah, int64_t aw, const float *A,
                               float *pooled) {
    const int f = sarco_head_final_linear(h);
    int map = 0;
    width_at(h, f, ah, aw, &map);
    if (f < 0 || map)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "classifier head: no pooled vector before the final linear");
    return run_into(ctx, h, f, n, ah, aw, A, sarco_head_pooled_dim(h, ah, aw), pooled);
}

/* ---- host backward (double) ----------------------------------------------------------------- */

static double gelu(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double gelu_grad(double x) { return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI); }

sarco_status sarco_head_backward_host(sarco_context *ctx, const sarco_head *h, int64_t ah, int64_t aw, const float *A,
                                      int64_t target, double *logits, double *dA) {
    const int64_t classes = sarco_head_classes(h);
    if (!A || !dA || ah < 1 || aw < 1 || target < 0 || target >= classes)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "classifier head backward: target %lld of %lld classes, A %lldx%lld", (long long)target,
                          (long long)classes, (long long)ah, (long long)aw);
    const int nl = h->count;
    /* t[i] = the input of layer i (t[nl] the logits); z[i] = a LINEAR's pre-activation */
    double *t[SARCO_HEAD_MAX_LAYERS + 1] = {0}, *z[SARCO_HEAD_MAX_LAYERS] = {0};
    int64_t len[SARCO_HEAD_MAX_LAYERS + 1] = {0};
    sarco_status s = SARCO_OK;
    const int64_t S = ah * aw;
    for (int i = 0; i <= nl; i++) {
        int map = 0;
        const int64_t f = width_at(h, i, ah, aw, &map);
        len[i] = f * (map ? S : 1);
        t[i] = malloc((size_t)len[i] * sizeof(double));
        if (i < nl && h->layers[i].kind == SARCO_HEAD_LINEAR) z[i] = malloc((size_t)h->layers[i].out * sizeof(double));
        if (!t[i] || (i < nl && h->layers[i].kind == SARCO_HEAD_LINEAR && !z[i])) {
            s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "classifier head backward: out of memory");
            goto done;
        }
    }
    for (int64_t k = 0; k < len[0]; k++) t[0][k] = A[k];

    /* forward */
    for (int i = 0; i < nl; i++) {
        const sarco_head_layer *L = &h->layers[i];
        const double *x = t[i];
        double *y = t[i + 1];
        const int64_t c = width_at(h, i, ah, aw, NULL);
        switch (L->kind) {
        case SARCO_HEAD_DROPOUT:
            memcpy(y, x, (size_t)len[i] * sizeof(double));
            break;
        case SARCO_HEAD_RELU:
            for (int64_t k = 0; k < len[i]; k++) y[k] = x[k] > 0 ? x[k] : 0.0;
            break;
        case SARCO_HEAD_GLOBAL_AVG_POOL:
            for (int64_t ch = 0; ch < c; ch++) {
                double acc = 0;
                for (int64_t p = 0; p < S; p++) acc += x[p * c + ch];
                y[ch] = acc / (double)S;
            }
            break;
        case SARCO_HEAD_ADAPTIVE_AVG_POOL:
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t oy = 0; oy < L->oh; oy++)
                    for (int64_t ox = 0; ox < L->ow; ox++) {
                        int64_t y0, y1, x0, x1;
                        sarco_hd_adaptive_window(oy, ah, L->oh, &y0, &y1);
                        sarco_hd_adaptive_window(ox, aw, L->ow, &x0, &x1);
                        double acc = 0;
                        for (int64_t a = y0; a < y1; a++)
                            for (int64_t b = x0; b < x1; b++) acc += x[(a * aw + b) * c + ch];
                        y[(ch * L->oh + oy) * L->ow + ox] = acc / (double)((y1 - y0) * (x1 - x0));
                    }
            break;
        case SARCO_HEAD_LAYERNORM:
            for (int64_t r = 0; r < len[i] / c; r++) {
                const double *xr = x + r * c;
                double mu = 0, var = 0;
                for (int64_t k = 0; k < c; k++) mu += xr[k];
                mu /= (double)c;
                for (int64_t k = 0; k < c; k++) var += (xr[k] - mu) * (xr[k] - mu);
                const double inv = 1.0 / sqrt(var / (double)c + (double)L->eps);
                for (int64_t k = 0; k < c; k++)
                    y[r * c + k] = (xr[k] - mu) * inv * (double)L->w_host[k] + (double)L->b_host[k];
            }
            break;
        case SARCO_HEAD_LINEAR:
            for (int64_t o = 0; o < L->out; o++) {
                const float *w = L->w_host + o * L->in;
                double acc = L->b_host[o];
                for (int64_t k = 0; k < L->in; k++) acc += (double)w[k] * x[k];
                z[i][o] = acc;
                y[o] = L->act == SARCO_ACT_RELU ? (acc > 0 ? acc : 0.0) : L->act == SARCO_ACT_GELU ? gelu(acc) : acc;
            }
            break;
        default: s = sarco_fail(ctx, SARCO_ERR_INTERNAL, "classifier head: layer kind %d", (int)L->kind); goto done;
        }
    }
    if (logits) memcpy(logits, t[nl], (size_t)classes * sizeof(double));

    /* backward: g (the gradient w.r.t. t[i + 1]) turns into the gradient w.r.t. t[i], in place of t[i] once
     * t[i] has been read; gbuf holds the incoming gradient */
    double *g = calloc((size_t)len[nl], sizeof(double));
    if (!g) {
        s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "classifier head backward: out of memory");
        goto done;
    }
    g[target] = 1.0;
    for (int i = nl - 1; i >= 0; i--) {
        const sarco_head_layer *L = &h->layers[i];
        const int64_t c = width_at(h, i, ah, aw, NULL);
        double *x = t[i]; /* becomes the gradient w.r.t. x */
        switch (L->kind) {
        case SARCO_HEAD_DROPOUT:
            memcpy(x, g, (size_t)len[i] * sizeof(double));
            break;
        case SARCO_HEAD_RELU:
            for (int64_t k = 0; k < len[i]; k++) x[k] = x[k] > 0 ? g[k] : 0.0;
            break;
        case SARCO_HEAD_GLOBAL_AVG_POOL:
            for (int64_t p = 0; p < S; p++)
                for (int64_t ch = 0; ch < c; ch++) x[p * c + ch] = g[ch] / (double)S;
            break;
        case SARCO_HEAD_ADAPTIVE_AVG_POOL:
            memset(x, 0, (size_t)len[i] * sizeof(double));
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t oy = 0; oy < L->oh; oy++)
                    for (int64_t ox = 0; ox < L->ow; ox++) {
                        int64_t y0, y1, x0, x1;
                        sarco_hd_adaptive_window(oy, ah, L->oh, &y0, &y1);
                        sarco_hd_adaptive_window(ox, aw, L->ow, &x0, &x1);
                        const double gv = g[(ch * L->oh + oy) * L->ow + ox] / (double)((y1 - y0) * (x1 - x0));
                        for (int64_t a = y0; a < y1; a++)
                            for (int64_t b = x0; b < x1; b++) x[(a * aw + b) * c + ch] += gv;
                    }
            break;
        case SARCO_HEAD_LAYERNORM:
            for (int64_t r = 0; r < len[i] / c; r++) {
                double *xr = x + r * c;
                const double *gr = g + r * c;
                double mu = 0, var = 0;
                for (int64_t k = 0; k < c; k++) mu += xr[k];
                mu /= (double)c;
                for (int64_t k = 0; k < c; k++) var += (xr[k] - mu) * (xr[k] - mu);
                const double inv = 1.0 / sqrt(var / (double)c + (double)L->eps);
                /* dx = inv (dxh - mean(dxh) - xh mean(dxh xh)), dxh = g gamma */
                double m1 = 0, m2 = 0;
                for (int64_t k = 0; k < c; k++) {
                    const double dxh = gr[k] * (double)L->w_host[k];
                    m1 += dxh;
                    m2 += dxh * (xr[k] - mu) * inv;
                }
                m1 /= (double)c;
                m2 /= (double)c;
                for (int64_t k = 0; k < c; k++) {
                    const double xh = (xr[k] - mu) * inv;
                    xr[k] = inv * (gr[k] * (double)L->w_host[k] - m1 - xh * m2);
                }
            }
            break;
        case SARCO_HEAD_LINEAR:
            for (int64_t o = 0; o < L->out; o++) {
                const double a = z[i][o];
                g[o] *= L->act == SARCO_ACT_RELU ? (a > 0 ? 1.0 : 0.0) : L->act == SARCO_ACT_GELU ? gelu_grad(a) : 1.0;
            }
            memset(x, 0, (size_t)L->in * sizeof(double));
            for (int64_t o = 0; o < L->out; o++) {
                if (g[o] == 0.0) continue;
                const float *w = L->w_host + o * L->in;
                const double go = g[o];
                for (int64_t k = 0; k < L->in; k++) x[k] += go * (double)w[k];
            }
            break;
        default: break;
        }
        /* the gradient now lives in t[i]; make it g for the next layer down */
        double *tmp = realloc(g, (size_t)len[i] * sizeof(double));
        if (!tmp) {
            free(g);
            s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "classifier head backward: out of memory");
            goto done;
        }
        g = tmp;
        memcpy(g, x, (size_t)len[i] * sizeof(double));
    }
    memcpy(dA, g, (size_t)len[0] * sizeof(double));
    free(g);
done:
    for (int i = 0; i <= nl; i++) free(t[i]);
    for (int i = 0; i < nl; i++) free(z[i]);
    return s;
}

/* ---- the split ------------------------------------------------------------------------------ */

sarco_status sarco_classifier_forward(sarco_context *ctx, const sarco_classifier *c, void *state, const int64_t *in,
                                      const float *x, float *y) {
    const float *A = NULL;
    int64_t a[4];
    sarco_status s = c->features(ctx, state, in, x, &A, a);
    if (s != SARCO_OK) return s;
    return sarco_head_forward(ctx, c->head(state), a[0], a[1], a[2], A, y);
}
