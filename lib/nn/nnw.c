/* The list / load / free weight walk shared by lib/nn/convnext.c and lib/nn/swin.c (nnw.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nnw.h"

static void vname(char *dst, const char *fmt, va_list ap) { vsnprintf(dst, NNW_NAME, fmt, ap); }

float *sarco_nnw_host(nnw *w, const char *name, int64_t *numel) {
    const sarco_st_tensor *t = sarco_st_find(w->st, name);
    if (!t) {
        w->s = sarco_fail(w->ctx, SARCO_ERR_INTERNAL, "%s: %s vanished after the check", w->arch, name);
        return NULL;
    }
    float *p = sarco_ctx_malloc(w->ctx, (size_t)(t->numel ? t->numel : 1) * sizeof(float), name);
    if (!p) {
        w->s = SARCO_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    sarco_st_to_f32(w->st, t, p);
    *numel = t->numel;
    return p;
}

static void host_free(nnw *w, float *p, int64_t numel) {
    if (p) sarco_ctx_free(w->ctx, p, (size_t)(numel ? numel : 1) * sizeof(float));
}

static void param(nnw *w, float **dst, const int64_t *shape, int ndim, const char *name) {
    if (w->pass == NNW_LIST) {
        sarco_wlist_add(w->list, shape, ndim, "%s", name);
        return;
    }
    sarco_backend *be = w->ctx->be;
    if (w->pass == NNW_FREE) {
        if (*dst) be->ops->free(be, *dst);
        *dst = NULL;
        return;
    }
    if (w->s != SARCO_OK) return;
    int64_t n = 0;
    float *h = sarco_nnw_host(w, name, &n);
    if (!h) return;
    void *d = NULL;
    w->s = be->ops->alloc(be, (size_t)(n ? n : 1) * sizeof(float), &d);
    if (w->s == SARCO_OK) {
        *dst = d; /* freed by NNW_FREE even when the upload fails */
        w->s = be->ops->upload(be, d, h, (size_t)n * sizeof(float));
    }
    host_free(w, h, n);
}

void sarco_nnw_param(nnw *w, float **dst, const int64_t *shape, int ndim, const char *fmt, ...) {
    char name[NNW_NAME];
    va_list ap;
    va_start(ap, fmt);
    vname(name, fmt, ap);
    va_end(ap);
    param(w, dst, shape, ndim, name);
}

void sarco_nnw_norm(nnw *w, float **g, float **b, int64_t c, const char *fmt, ...) {
    char prefix[NNW_NAME], name[NNW_NAME + 8];
    va_list ap;
    va_start(ap, fmt);
    vname(prefix, fmt, ap);
    va_end(ap);
    snprintf(name, sizeof name, "%s.weight", prefix);
    param(w, g, SARCO_SHAPE(c), name);
    snprintf(name, sizeof name, "%s.bias", prefix);
    param(w, b, SARCO_SHAPE(c), name);
}

void sarco_nnw_linear(nnw *w, sarco_linear **dst, int64_t in, int64_t out, int bias, sarco_act act,
                      const char *row_scale, const char *fmt, ...) {
    char prefix[NNW_NAME], wn[NNW_NAME + 8], bn[NNW_NAME + 8];
    va_list ap;
    va_start(ap, fmt);
    vname(prefix, fmt, ap);
    va_end(ap);
    snprintf(wn, sizeof wn, "%s.weight", prefix);
    snprintf(bn, sizeof bn, "%s.bias", prefix);
    if (w->pass == NNW_LIST) {
        sarco_wlist_add(w->list, SARCO_SHAPE(out, in), "%s", wn);
        if (bias) sarco_wlist_add(w->list, SARCO_SHAPE(out), "%s", bn);
        if (row_scale) sarco_wlist_add(w->list, SARCO_SHAPE(out, 1, 1), "%s", row_scale);
        return;
    }
    sarco_backend *be = w->ctx->be;
    if (w->pass == NNW_FREE) {
        if (*dst) be->ops->linear_free(be, *dst);
        *dst = NULL;
        return;
    }
    if (w->s != SARCO_OK) return;
    int64_t nw = 0, nb = 0, ns = 0;
    float *wt = sarco_nnw_host(w, wn, &nw);
    float *b = wt && bias ? sarco_nnw_host(w, bn, &nb) : NULL;
    float *sc = wt && row_scale && (b || !bias) ? sarco_nnw_host(w, row_scale, &ns) : NULL;
    if (wt && (b || !bias) && (sc || !row_scale)) {
        if (sc) /* s (W x + b) = (s W) x + s b, row by row */
            for (int64_t o = 0; o < out; o++) {
                for (int64_t i = 0; i < in; i++) wt[o * in + i] *= sc[o];
                if (b) b[o] *= sc[o];
            }
        const sarco_linear_desc d = {.in_features = in, .out_features = out, .has_bias = bias, .act = act};
        w->s = be->ops->linear_prepare(be, &d, wt, b, dst);
    }
    host_free(w, wt, nw);
    host_free(w, b, nb);
    host_free(w, sc, ns);
}

void sarco_nnw_conv2d(nnw *w, sarco_conv **dst, int64_t cin, int64_t cout, int64_t k, int64_t stride, int64_t pad,
                      int64_t groups, int bias, const char *fmt, ...) {
    char prefix[NNW_NAME], wn[NNW_NAME + 8], bn[NNW_NAME + 8];
    va_list ap;
    va_start(ap, fmt);
    vname(prefix, fmt, ap);
    va_end(ap);
    snprintf(wn, sizeof wn, "%s.weight", prefix);
    snprintf(bn, sizeof bn, "%s.bias", prefix);
    if (w->pass == NNW_LIST) {
        sarco_wlist_add(w->list, SARCO_SHAPE(cout, cin / groups, k, k), "%s", wn);
        if (bias) sarco_wlist_add(w->list, SARCO_SHAPE(cout), "%s", bn);
        return;
    }
    sarco_backend *be = w->ctx->be;
    if (w->pass == NNW_FREE) {
        if (*dst) be->ops->conv_free(be, *dst);
        *dst = NULL;
        return;
    }
    if (w->s != SARCO_OK) return;
    int64_t nw = 0, nb = 0;
    float *wt = sarco_nnw_host(w, wn, &nw);
    float *b = wt && bias ? sarco_nnw_host(w, bn, &nb) : NULL;
    if (wt && (b || !bias)) {
        sarco_conv_desc d = {.nsp = 2, .cin = cin, .cout = cout, .groups = groups, .has_bias = bias,
                             .act = SARCO_ACT_NONE};
        for (int i = 0; i < 3; i++) {
            d.k[i] = i < 2 ? k : 1;
            d.stride[i] = i < 2 ? stride : 1;
            d.pad[i] = i < 2 ? pad : 0;
            d.dil[i] = 1;
        }
        w->s = be->ops->conv_prepare(be, &d, 0, wt, b, dst);
    }
    host_free(w, wt, nw);
    host_free(w, b, nb);
}
