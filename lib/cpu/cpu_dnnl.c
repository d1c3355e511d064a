/* oneDNN-backed ops of the CPU backend: conv and deconv (convolution / deconvolution primitives on
 * channels-last activations, weights in the blocked layout oneDNN picks), linear and strided batched
 * gemm (matmul). Primitives are cached per input shape in the prepared op (LRU, WOP_CACHE entries). */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

#include "cpu.h"

#define WOP_CACHE 8
#define IMPL_LEN 48

enum { RES_NONE = 0, RES_BINARY = 1, RES_SUM = 2, RES_MODES = 3 };
enum { WOP_CONV = 0, WOP_DECONV = 1, WOP_LINEAR = 2 };

typedef struct wop_entry {
    int used;
    uint64_t last;
    int64_t key[4];                /* conv: (n, in...), linear: (m) */
    dnnl_memory_desc_t w_md;       /* the weights layout the primitives were made for */
    int wi;                        /* which of the op's weight copies (in w_md) it runs on */
    dnnl_memory_desc_t src_md, dst_md;
    dnnl_primitive_t prim[RES_MODES];
    int own_act[RES_MODES];        /* the activation could not be fused: run our own pass */
    int bin_failed;                /* a binary-add post-op was refused or slow: use sum */
    char impl[IMPL_LEN];
} wop_entry;

/* The weights in one layout. Shapes whose best primitives want different layouts get one copy per
 * layout; a copy no cache entry uses is freed, except the last one, which later layouts are made from. */
typedef struct wop_weights {
    dnnl_memory_desc_t md;
    float *w; /* NULL: free slot */
} wop_weights;

/* What conv, deconv and linear share: one prepared weighted op. */
typedef struct wop {
    int kind;
    sarco_conv_desc cd;            /* conv/deconv */
    sarco_linear_desc ld;          /* linear */
    sarco_act act;
    float alpha;
    int has_bias;
    int bf16;                      /* BF16 weights and input, FP32 bias, accumulation and output */
    wop_weights wc[WOP_CACHE + 1];
    float *bias;
    uint64_t tick;
    wop_entry cache[WOP_CACHE];
} wop;

struct sarco_conv {
    wop op;
};
struct sarco_linear {
    wop op;
};

static sarco_status dnnl_err(sarco_backend *be, dnnl_status_t st, const char *what) {
    sarco_status s = st == dnnl_out_of_memory ? SARCO_ERR_OUT_OF_MEMORY
                     : st == dnnl_unimplemented ? SARCO_ERR_UNSUPPORTED
                                                : SARCO_ERR_DEVICE;
    return sarco_fail(be->ctx, s, "%s: oneDNN: %s", what, dnnl_status2str(st));
}

/* Maps a sarco_act to a oneDNN eltwise post-op; 0 when there is none to fuse. */
static int act_alg(sarco_act act, float alpha, dnnl_alg_kind_t *alg, float *a) {
    *a = 0.0f;
    switch (act) {
    case SARCO_ACT_RELU: *alg = dnnl_eltwise_relu; return 1;
    case SARCO_ACT_LEAKY_RELU: *alg = dnnl_eltwise_relu; *a = alpha; return 1;
    case SARCO_ACT_GELU: *alg = dnnl_eltwise_gelu_erf; return 1;
    case SARCO_ACT_GELU_TANH: *alg = dnnl_eltwise_gelu_tanh; return 1;
    case SARCO_ACT_SILU: *alg = dnnl_eltwise_swish; *a = 1.0f; return 1;
    case SARCO_ACT_SIGMOID: *alg = dnnl_eltwise_logistic; return 1;
    case SARCO_ACT_TANH: *alg = dnnl_eltwise_tanh; return 1;
    case SARCO_ACT_HARDSWISH: *alg = dnnl_eltwise_hardswish; return 1;
    default: return 0;
    }
}

/* Post-ops in the order y = act(op(x) + residual). */
static dnnl_status_t make_attr(const wop *op, int res, int fuse_act, const dnnl_memory_desc_t *dst_md,
                               dnnl_primitive_attr_t *out) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success) st = dnnl_post_ops_create(&po);
    if (st == dnnl_success && res == RES_BINARY) st = dnnl_post_ops_append_binary(po, dnnl_binary_add, dst_md);
    if (st == dnnl_success && res == RES_SUM) st = dnnl_post_ops_append_sum(po, 1.0f);
    dnnl_alg_kind_t alg;
    float a;
    if (st == dnnl_success && fuse_act && act_alg(op->act, op->alpha, &alg, &a))
        st = dnnl_post_ops_append_eltwise(po, 1.0f, alg, a, 0.0f);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
    if (po) dnnl_post_ops_destroy(po);
    if (st != dnnl_success && attr) {
        dnnl_primitive_attr_destroy(attr);
        attr = NULL;
    }
    *out = attr;
    return st;
}

static int wop_nsp(const wop *op) { return op->kind == WOP_LINEAR ? 0 : op->cd.nsp; }

/* Weight dims as oneDNN sees them (grouped convs get a leading G), and the tag of PyTorch's layout. */
static int weight_dims(const wop *op, dnnl_dims_t wd, dnnl_format_tag_t *user_tag) {
    if (op->kind == WOP_LINEAR) {
        wd[0] = op->ld.in_features;
        wd[1] = op->ld.out_features;
        *user_tag = dnnl_ba; /* nn.Linear's (N, K) row-major is the (K, N) matrix with K fastest */
        return 2;
    }
    const sarco_conv_desc *d = &op->cd;
    int nsp = d->nsp, g = d->groups > 1, nd = 0;
    if (g) wd[nd++] = d->groups;
    wd[nd++] = d->cout / d->groups;
    wd[nd++] = d->cin / d->groups;
    for (int i = 0; i < nsp; i++) wd[nd++] = d->k[i];
    if (op->kind == WOP_CONV) /* (Cout, Cin/g, k...) */
        *user_tag = nsp == 3 ? (g ? dnnl_goidhw : dnnl_oidhw) : (g ? dnnl_goihw : dnnl_oihw);
    else /* (Cin, Cout/g, k...) */
        *user_tag = nsp == 3 ? (g ? dnnl_giodhw : dnnl_iodhw) : (g ? dnnl_giohw : dnnl_iohw);
    return nd;
}

/* A primitive descriptor for input `key`; w_md NULL lets oneDNN choose the weights layout. */
static dnnl_status_t wop_pd(sarco_backend *be, const wop *op, const int64_t *key, const dnnl_memory_desc_t *w_md,
                            int res, int fuse_act, dnnl_primitive_desc_t *pd) {
    dnnl_memory_desc_t src, dst, w, b;
    dnnl_dims_t sd = {0}, dd = {0}, wd = {0}, bd = {0};
    dnnl_format_tag_t user_tag;
    int wnd = weight_dims(op, wd, &user_tag);
    dnnl_data_type_t in_dt = op->bf16 ? dnnl_bf16 : dnnl_f32; /* src and weights */
    dnnl_status_t st;
    *pd = NULL;
    if (op->kind == WOP_LINEAR) {
        sd[0] = dd[0] = key[0];
        sd[1] = op->ld.in_features;
        dd[1] = bd[1] = op->ld.out_features;
        bd[0] = 1;
        st = dnnl_memory_desc_init_by_tag(&src, 2, sd, in_dt, dnnl_ab);
        if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab);
        if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&b, 2, bd, dnnl_f32, dnnl_ab);
    } else {
        const sarco_conv_desc *d = &op->cd;
        int nsp = d->nsp, tr = op->kind == WOP_DECONV;
        int64_t out[3];
        sarco_conv_out_shape(d, tr, key + 1, out);
        sd[0] = dd[0] = key[0];
        sd[1] = d->cin;
        dd[1] = bd[0] = d->cout;
        for (int i = 0; i < nsp; i++) {
            sd[2 + i] = key[1 + i];
            dd[2 + i] = out[i];
        }
        dnnl_format_tag_t tag = nsp == 3 ? dnnl_ndhwc : dnnl_nhwc;
        st = dnnl_memory_desc_init_by_tag(&src, nsp + 2, sd, in_dt, tag);
        if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&dst, nsp + 2, dd, dnnl_f32, tag);
        if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&b, 1, bd, dnnl_f32, dnnl_a);
    }
    if (st != dnnl_success) return st;
    if (w_md)
        w = *w_md;
    else if ((st = dnnl_memory_desc_init_by_tag(&w, wnd, wd, in_dt, dnnl_format_tag_any)) != dnnl_success)
        return st;
    dnnl_primitive_attr_t attr;
    if ((st = make_attr(op, res, fuse_act, &dst, &attr)) != dnnl_success) return st;
    const dnnl_memory_desc_t *bp = op->has_bias ? &b : NULL;
    if (op->kind == WOP_LINEAR) {
        dnnl_matmul_desc_t md;
        st = dnnl_matmul_desc_init(&md, &src, &w, bp, &dst);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, &md, attr, sarco_cpu_of(be)->eng, NULL);
    } else {
        const sarco_conv_desc *d = &op->cd;
        dnnl_dims_t strides = {0}, dil = {0}, pl = {0}, pr = {0};
        for (int i = 0; i < d->nsp; i++) {
            strides[i] = d->stride[i];
            dil[i] = d->dil[i] - 1; /* oneDNN counts the gaps */
            pl[i] = d->pad[i];
            pr[i] = op->kind == WOP_DECONV ? d->pad[i] - d->out_pad[i] : d->pad[i];
        }
        if (op->kind == WOP_CONV) {
            dnnl_convolution_desc_t cd;
            st = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                            &src, &w, bp, &dst, strides, dil, pl, pr);
            if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, &cd, attr, sarco_cpu_of(be)->eng, NULL);
        } else {
            dnnl_deconvolution_desc_t dd_;
            st = dnnl_dilated_deconvolution_forward_desc_init(&dd_, dnnl_forward_inference,
                                                              dnnl_deconvolution_direct, &src, &w, bp, &dst, strides,
                                                              dil, pl, pr);
            if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, &dd_, attr, sarco_cpu_of(be)->eng, NULL);
        }
    }
    dnnl_primitive_attr_destroy(attr);
    return st;
}

static const char *pd_impl(const_dnnl_primitive_desc_t pd) {
    const char *s = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, (void *)&s) != dnnl_success || !s) return "?";
    return s;
}

static const char *wop_name(const wop *op) {
    return op->kind == WOP_CONV ? "conv" : op->kind == WOP_DECONV ? "deconv" : "linear";
}

/* wop_pd with the weights layout left to oneDNN, except that a gemm-based matmul (no AVX-512 brgemm)
 * gets PyTorch's own K-fastest `ba` weights: it reads plain weights in place, and `ab` rows of a 4 KB
 * multiple (N = 3072) hit cache-set conflicts that made a 216x768x3072 linear 2x slower. */
static dnnl_status_t wop_pd_any(sarco_backend *be, const wop *op, const int64_t *key, int fuse_act,
                                dnnl_primitive_desc_t *pd) {
    dnnl_status_t st = wop_pd(be, op, key, NULL, RES_NONE, fuse_act, pd);
    if (st != dnnl_success || op->kind != WOP_LINEAR || strncmp(pd_impl(*pd), "gemm", 4) != 0) return st;
    dnnl_memory_desc_t ba;
    dnnl_dims_t wd = {op->ld.in_features, op->ld.out_features};
    dnnl_primitive_desc_t pd2 = NULL;
    if (dnnl_memory_desc_init_by_tag(&ba, 2, wd, op->bf16 ? dnnl_bf16 : dnnl_f32, dnnl_ba) == dnnl_success &&
        wop_pd(be, op, key, &ba, RES_NONE, fuse_act, &pd2) == dnnl_success) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = pd2;
    }
    return dnnl_success;
}

/* Runs a reorder src (src_md) -> dst (dst_md) at once. */
static dnnl_status_t reorder(sarco_backend *be, const dnnl_memory_desc_t *src_md, const void *src,
                             const dnnl_memory_desc_t *dst_md, void *dst) {
    sarco_cpu *st = sarco_cpu_of(be);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, src_md, st->eng, dst_md, st->eng, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&p, pd);
    if (s == dnnl_success) s = dnnl_memory_create(&ms, src_md, st->eng, (void *)src);
    if (s == dnnl_success) s = dnnl_memory_create(&md, dst_md, st->eng, dst);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
        s = dnnl_primitive_execute(p, st->strm, 2, args);
        if (s == dnnl_success) s = dnnl_stream_wait(st->strm);
    }
    if (md) dnnl_memory_destroy(md);
    if (ms) dnnl_memory_destroy(ms);
    if (p) dnnl_primitive_destroy(p);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return s;
}

/* A weights buffer in layout `md`, reordered from `src` (layout src_md). */
static sarco_status weights_in(sarco_backend *be, const char *what, const dnnl_memory_desc_t *src_md,
                               const void *src, const dnnl_memory_desc_t *md, float **out) {
    void *w = NULL;
    sarco_status s = sarco_cpu_alloc(be, dnnl_memory_desc_get_size(md), &w);
    if (s != SARCO_OK) return s;
    dnnl_status_t ds = reorder(be, src_md, src, md, w);
    if (ds != dnnl_success) {
        sarco_cpu_free(be, w);
        return dnnl_err(be, ds, what);
    }
    *out = w;
    return SARCO_OK;
}

/* Frees weight copies no entry uses, keeping at least one. */
static void weights_gc(sarco_backend *be, wop *op) {
    for (int i = 0; i < WOP_CACHE + 1; i++) {
        if (!op->wc[i].w) continue;
        int used = 0, live = 0;
        for (int k = 0; k < WOP_CACHE; k++)
            if (op->cache[k].used && op->cache[k].wi == i) used = 1;
        for (int k = 0; k < WOP_CACHE + 1; k++) live += op->wc[k].w != NULL;
        if (!used && live > 1) {
            sarco_cpu_free(be, op->wc[i].w);
            op->wc[i].w = NULL;
        }
    }
}

static void entry_clear(sarco_backend *be, wop *op, wop_entry *e) {
    for (int r = 0; r < RES_MODES; r++)
        if (e->prim[r]) dnnl_primitive_destroy(e->prim[r]);
    memset(e, 0, sizeof *e);
    weights_gc(be, op);
}

/* The index of a weight copy in layout md, reordered from a live copy when there is none yet. */
static sarco_status weights_for(sarco_backend *be, wop *op, const dnnl_memory_desc_t *md, int *out) {
    int src = -1, slot = -1;
    for (int i = 0; i < WOP_CACHE + 1; i++) {
        if (op->wc[i].w && dnnl_memory_desc_equal(&op->wc[i].md, md)) {
            *out = i;
            return SARCO_OK;
        }
        if (op->wc[i].w && src < 0) src = i;
        if (!op->wc[i].w && slot < 0) slot = i;
    }
    if (src < 0 || slot < 0) return sarco_fail(be->ctx, SARCO_ERR_INTERNAL, "%s: no weight copy slot", wop_name(op));
    sarco_status s = weights_in(be, wop_name(op), &op->wc[src].md, op->wc[src].w, md, &op->wc[slot].w);
    if (s != SARCO_OK) return s;
    op->wc[slot].md = *md;
    *out = slot;
    return SARCO_OK;
}

/* Creates e->prim[res] with the entry's weights layout, falling back to an unfused activation. */
static dnnl_status_t entry_prim(sarco_backend *be, wop *op, wop_entry *e, int res) {
    dnnl_primitive_desc_t pd = NULL;
    int own = 0;
    dnnl_status_t st = wop_pd(be, op, e->key, &e->w_md, res, 1, &pd);
    if (st == dnnl_unimplemented && op->act != SARCO_ACT_NONE) {
        own = 1;
        st = wop_pd(be, op, e->key, &e->w_md, res, 0, &pd);
    }
    if (st != dnnl_success) return st;
    if (res == RES_BINARY && strncmp(pd_impl(pd), "ref", 3) == 0 && strncmp(e->impl, "ref", 3) != 0) {
        dnnl_primitive_desc_destroy(pd); /* a slow reference path: the sum post-op is better */
        return dnnl_unimplemented;
    }
    if (res == RES_NONE) snprintf(e->impl, sizeof e->impl, "%s", pd_impl(pd));
    st = dnnl_primitive_create(&e->prim[res], pd);
    dnnl_primitive_desc_destroy(pd);
    e->own_act[res] = own;
    return st;
}

/* The cache entry for `key`, made on a miss (LRU eviction). */
static sarco_status wop_entry_get(sarco_backend *be, wop *op, const int64_t *key, wop_entry **out) {
    wop_entry *e = NULL, *victim = &op->cache[0];
    for (int i = 0; i < WOP_CACHE; i++) {
        wop_entry *c = &op->cache[i];
        if (c->used && memcmp(c->key, key, sizeof c->key) == 0) {
            e = c;
            break;
        }
        if (!c->used ? victim->used : (victim->used && c->last < victim->last)) victim = c;
    }
    if (e) {
        e->last = ++op->tick;
        *out = e;
        return SARCO_OK;
    }
    entry_clear(be, op, victim);
    e = victim;
    memcpy(e->key, key, sizeof e->key);

    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = wop_pd_any(be, op, key, 1, &pd);
    if (st == dnnl_unimplemented && op->act != SARCO_ACT_NONE) st = wop_pd_any(be, op, key, 0, &pd);
    if (st != dnnl_success) return dnnl_err(be, st, wop_name(op));
    e->w_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    e->src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    e->dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    dnnl_primitive_desc_destroy(pd);

    sarco_status s = weights_for(be, op, &e->w_md, &e->wi);
    if (s != SARCO_OK) {
        memset(e, 0, sizeof *e);
        return s;
    }
    st = entry_prim(be, op, e, RES_NONE);
    if (st != dnnl_success) {
        s = dnnl_err(be, st, wop_name(op));
        entry_clear(be, op, e);
        return s;
    }
    e->used = 1;
    e->last = ++op->tick;
    *out = e;
    return SARCO_OK;
}

/* float -> bfloat16 with the CPU's own conversion (round to nearest even, NaN kept quiet, as oneDNN's
 * reorders do). Only called when the backend checked for AVX512-BF16, so the target attribute is safe;
 * the loop is memory-bound (6 bytes a value). */
__attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16"))) static void f32_to_bf16_n(const float *x, uint16_t *b, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
        _mm256_storeu_si256((__m256i *)(void *)(b + i), (__m256i)v);
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, x + i));
        _mm256_mask_storeu_epi16((void *)(b + i), k, (__m256i)v);
    }
}

/* The op's input in BF16, in the backend's grow-only buffer (valid until the next weighted op). */
static sarco_status bf16_input(sarco_backend *be, const float *x, int64_t n, const uint16_t **out) {
    sarco_cpu *st = sarco_cpu_of(be);
    if ((size_t)n > st->bf16_n) {
        uint16_t *p = realloc(st->bf16_in, (size_t)n * sizeof *p);
        if (!p) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "bf16: %lld input values", (long long)n);
        st->bf16_in = p;
        st->bf16_n = (size_t)n;
    }
    uint16_t *b = st->bf16_in;
    const int64_t chunk = 1 << 16;
    int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(st->threads) schedule(static) if (n >= SARCO_CPU_PAR_MIN)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t lo = c * chunk, len = n - lo < chunk ? n - lo : chunk;
        f32_to_bf16_n(x + lo, b + lo, len);
    }
    *out = b;
    return SARCO_OK;
}

/* Elements of a weighted op's input for `key`. */
static int64_t wop_in_count(const wop *op, const int64_t *key) {
    if (op->kind == WOP_LINEAR) return key[0] * op->ld.in_features;
    int64_t n = key[0] * op->cd.cin;
    for (int i = 0; i < op->cd.nsp; i++) n *= key[1 + i];
    return n;
}

/* y = act(op(x) + b + residual) for input `key`; `count` = elements of y. */
static sarco_status wop_run(sarco_backend *be, wop *op, const int64_t *key, int64_t count, const float *x,
                            const float *residual, float *y) {
    sarco_cpu *st = sarco_cpu_of(be);
    sarco_cpu_set_threads(be);
    wop_entry *e = NULL;
    sarco_status s = wop_entry_get(be, op, key, &e);
    if (s != SARCO_OK) return s;
    int res = RES_NONE;
    if (residual) {
        res = residual == y || e->bin_failed ? RES_SUM : RES_BINARY;
        if (res == RES_BINARY && !e->prim[RES_BINARY] && entry_prim(be, op, e, RES_BINARY) != dnnl_success) {
            e->bin_failed = 1;
            res = RES_SUM;
        }
        if (res == RES_SUM && !e->prim[RES_SUM]) {
            dnnl_status_t ds = entry_prim(be, op, e, RES_SUM);
            if (ds != dnnl_success) return dnnl_err(be, ds, wop_name(op));
        }
        if (res == RES_SUM && residual != y) sarco_cpu_copy_n(be, y, residual, count);
    }
    const void *src = x;
    if (op->bf16) {
        const uint16_t *xb = NULL;
        if ((s = bf16_input(be, x, wop_in_count(op, key), &xb)) != SARCO_OK) return s;
        src = xb;
    }
    const float *w = op->wc[e->wi].w;
    dnnl_memory_desc_t bmd;
    dnnl_dims_t bd = {0};
    if (op->kind == WOP_LINEAR) {
        bd[0] = 1;
        bd[1] = op->ld.out_features;
        dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab);
    } else {
        bd[0] = op->cd.cout;
        dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a);
    }
    struct {
        int arg;
        const dnnl_memory_desc_t *md;
        const void *p;
    } io[5] = {{DNNL_ARG_SRC, &e->src_md, src},
               {DNNL_ARG_WEIGHTS, &e->w_md, w},
               {DNNL_ARG_DST, &e->dst_md, y},
               {DNNL_ARG_BIAS, &bmd, op->bias},
               {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, &e->dst_md, residual}};
    int nargs = 3 + (op->has_bias ? 1 : 0);
    if (res == RES_BINARY) {
        if (!op->has_bias) io[3] = io[4];
        nargs++;
    }
    dnnl_exec_arg_t args[5];
    dnnl_status_t ds = dnnl_success;
    int made = 0;
    for (; made < nargs && ds == dnnl_success; made++) {
        args[made].arg = io[made].arg;
        args[made].memory = NULL;
        ds = dnnl_memory_create(&args[made].memory, io[made].md, st->eng, (void *)io[made].p);
    }
    if (ds == dnnl_success) ds = dnnl_primitive_execute(e->prim[res], st->strm, nargs, args);
    if (ds == dnnl_success) ds = dnnl_stream_wait(st->strm);
    for (int i = 0; i < made; i++)
        if (args[i].memory) dnnl_memory_destroy(args[i].memory);
    if (ds != dnnl_success) return dnnl_err(be, ds, wop_name(op));
    if (e->own_act[res]) sarco_cpu_act_n(be, op->act, op->alpha, count, y, y);
    return SARCO_OK;
}

/* Stores bias and the weights reordered for a nominal input `key` (the first real shape may
 * re-pick the layout; see wop_entry_get). */
static sarco_status wop_prepare(sarco_backend *be, wop *op, const int64_t *key, const float *w_host,
                                const float *b_host) {
    sarco_status s;
    op->bf16 = sarco_cpu_of(be)->bf16;
    int64_t nb = op->kind == WOP_LINEAR ? op->ld.out_features : op->cd.cout;
    if (op->has_bias) {
        void *b = NULL;
        if ((s = sarco_cpu_alloc(be, (size_t)nb * sizeof(float), &b)) != SARCO_OK) return s;
        memcpy(b, b_host, (size_t)nb * sizeof(float));
        op->bias = b;
    }
    sarco_cpu_set_threads(be);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = wop_pd_any(be, op, key, 1, &pd);
    if (st == dnnl_unimplemented && op->act != SARCO_ACT_NONE) st = wop_pd_any(be, op, key, 0, &pd);
    if (st != dnnl_success) return dnnl_err(be, st, wop_name(op));
    op->wc[0].md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    dnnl_dims_t wd = {0};
    dnnl_format_tag_t tag;
    int wnd = weight_dims(op, wd, &tag);
    dnnl_memory_desc_t user;
    if ((st = dnnl_memory_desc_init_by_tag(&user, wnd, wd, dnnl_f32, tag)) != dnnl_success)
        return dnnl_err(be, st, wop_name(op));
    return weights_in(be, wop_name(op), &user, w_host, &op->wc[0].md, &op->wc[0].w);
}

static void wop_release(sarco_backend *be, wop *op) {
    for (int i = 0; i < WOP_CACHE; i++) entry_clear(be, op, &op->cache[i]);
    for (int i = 0; i < WOP_CACHE + 1; i++) sarco_cpu_free(be, op->wc[i].w);
    sarco_cpu_free(be, op->bias);
}

/* ---- conv / deconv --------------------------------------------------------------------- */

sarco_status sarco_cpu_conv_prepare(sarco_backend *be, const sarco_conv_desc *d, int transposed,
                                    const float *w_host, const float *b_host, sarco_conv **out) {
    const char *what = transposed ? "deconv" : "conv";
    if (!out) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "%s_prepare: out is NULL", what);
    *out = NULL;
    sarco_status s = sarco_conv_desc_check(be->ctx, d, transposed);
    if (s != SARCO_OK) return s;
    if (!w_host || (d->has_bias && !b_host))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "%s_prepare: weights%s are NULL", what,
                          d->has_bias ? " or bias" : "");
    sarco_conv *c = calloc(1, sizeof *c);
    if (!c) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "%s_prepare: out of memory", what);
    wop *op = &c->op;
    op->kind = transposed ? WOP_DECONV : WOP_CONV;
    op->cd = *d;
    op->act = d->act;
    op->alpha = d->alpha;
    op->has_bias = d->has_bias;
    /* nominal input: a moderate tile, large enough for the kernel to give an output */
    int64_t key[4] = {1, 1, 1, 1};
    for (int i = 0; i < d->nsp; i++) {
        int64_t ext = d->dil[i] * (d->k[i] - 1) + 1, in = d->nsp == 3 ? 16 : 32;
        if (!transposed && in < ext - 2 * d->pad[i]) in = ext - 2 * d->pad[i];
        if (transposed) {
            int64_t need = 2 * d->pad[i] - ext - d->out_pad[i] + 1; /* (in - 1) stride >= need */
            if (need > 0 && in < need / d->stride[i] + 2) in = need / d->stride[i] + 2;
        }
        key[1 + i] = in;
    }
    s = wop_prepare(be, op, key, w_host, b_host);
    if (s != SARCO_OK) {
        wop_release(be, op);
        free(c);
        return s;
    }
    *out = c;
    return SARCO_OK;
}

sarco_status sarco_cpu_conv_run(sarco_backend *be, sarco_conv *c, int64_t n, const int64_t *in, const float *x,
                                const float *residual, float *y) {
    if (!c || !in) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "conv_run: conv or in is NULL");
    wop *op = &c->op;
    const char *what = wop_name(op);
    int nsp = wop_nsp(op);
    if (n < 1) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "%s_run: batch n=%lld", what, (long long)n);
    int64_t key[4] = {n, 1, 1, 1}, out[3], count = n * op->cd.cout;
    for (int i = 0; i < nsp; i++) {
        if (in[i] < 1 || in[i] > (1 << 20))
            return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "%s_run: input size %lld on axis %d", what,
                              (long long)in[i], i);
        key[1 + i] = in[i];
    }
    if (!sarco_conv_out_shape(&op->cd, op->kind == WOP_DECONV, in, out))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "%s_run: input %lldx%lldx%lld is too small for the kernel (empty output)", what,
                          (long long)key[1], (long long)key[2], (long long)key[3]);
    for (int i = 0; i < nsp; i++) count *= out[i];
    if (!x || !y || x == y || residual == x)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "%s_run: x or y is NULL, or y/residual alias x", what);
    return wop_run(be, op, key, count, x, residual, y);
}

void sarco_cpu_conv_free(sarco_backend *be, sarco_conv *c) {
    if (!c) return;
    wop_release(be, &c->op);
    free(c);
}

const char *sarco_cpu_conv_impl(sarco_conv *c, int64_t n, const int64_t *in) {
    if (!c) return NULL;
    int64_t key[4] = {n, 1, 1, 1};
    for (int i = 0; i < c->op.cd.nsp; i++) key[1 + i] = in[i];
    for (int i = 0; i < WOP_CACHE; i++)
        if (c->op.cache[i].used && memcmp(c->op.cache[i].key, key, sizeof key) == 0) return c->op.cache[i].impl;
    return NULL;
}

/* ---- linear ---------------------------------------------------------------------------- */

sarco_status sarco_cpu_linear_prepare(sarco_backend *be, const sarco_linear_desc *d, const float *w_host,
                                      const float *b_host, sarco_linear **out) {
    if (!out) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "linear_prepare: out is NULL");
    *out = NULL;
    if (!d || d->in_features < 1 || d->out_features < 1 || d->in_features > (1 << 24) || d->out_features > (1 << 24))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "linear_prepare: features must be in 1..2^24");
    if (d->has_bias != 0 && d->has_bias != 1)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "linear_prepare: has_bias=%d", d->has_bias);
    if ((int)d->act < 0 || d->act >= SARCO_ACT_COUNT || !(d->alpha == d->alpha))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "linear_prepare: activation %d out of range",
                          (int)d->act);
    if (!w_host || (d->has_bias && !b_host))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "linear_prepare: weights or bias are NULL");
    sarco_linear *l = calloc(1, sizeof *l);
    if (!l) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "linear_prepare: out of memory");
    wop *op = &l->op;
    op->kind = WOP_LINEAR;
    op->ld = *d;
    op->act = d->act;
    op->alpha = d->alpha;
    op->has_bias = d->has_bias;
    int64_t key[4] = {256, 0, 0, 0};
    sarco_status s = wop_prepare(be, op, key, w_host, b_host);
    if (s != SARCO_OK) {
        wop_release(be, op);
        free(l);
        return s;
    }
    *out = l;
    return SARCO_OK;
}

sarco_status sarco_cpu_linear_run(sarco_backend *be, sarco_linear *l, int64_t m, const float *x,
                                  const float *residual, float *y) {
    if (!l) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "linear_run: linear is NULL");
    if (m < 1 || m > ((int64_t)1 << 40))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "linear_run: rows m=%lld", (long long)m);
    if (!x || !y || x == y || residual == x)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "linear_run: x or y is NULL, or y/residual alias x");
    int64_t key[4] = {m, 0, 0, 0};
    return wop_run(be, &l->op, key, m * l->op.ld.out_features, x, residual, y);
}

void sarco_cpu_linear_free(sarco_backend *be, sarco_linear *l) {
    if (!l) return;
    wop_release(be, &l->op);
    free(l);
}

/* ---- gemm ------------------------------------------------------------------------------ */

static int gemm_same(const sarco_gemm_desc *a, const sarco_gemm_desc *b) {
    return a->batch == b->batch && a->m == b->m && a->n == b->n && a->k == b->k && a->a_bs == b->a_bs &&
           a->a_rs == b->a_rs && a->a_cs == b->a_cs && a->b_bs == b->b_bs && a->b_rs == b->b_rs &&
           a->b_cs == b->b_cs && a->c_bs == b->c_bs && a->c_rs == b->c_rs && a->alpha == b->alpha &&
           a->beta == b->beta;
}

/* A 3D strided md; a broadcast (stride 0) or single batch becomes a batch dim of 1. */
static dnnl_status_t gemm_md(dnnl_memory_desc_t *md, int64_t batch, int64_t bs, int64_t r, int64_t c, int64_t rs,
                             int64_t cs) {
    int one = batch == 1 || bs == 0;
    dnnl_dims_t dims = {one ? 1 : batch, r, c}, strides = {one ? (r - 1) * rs + (c - 1) * cs + 1 : bs, rs, cs};
    return dnnl_memory_desc_init_by_strides(md, 3, dims, dnnl_f32, strides);
}

static void gemm_entry_clear(sarco_cpu_gemm_entry *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->a) dnnl_memory_destroy(e->a);
    if (e->b) dnnl_memory_destroy(e->b);
    if (e->c) dnnl_memory_destroy(e->c);
    memset(e, 0, sizeof *e);
}

void sarco_cpu_gemm_cache_free(sarco_backend *be) {
    sarco_cpu *st = sarco_cpu_of(be);
    for (int i = 0; i < SARCO_CPU_GEMM_CACHE; i++) gemm_entry_clear(&st->gemm[i]);
}

/* One matmul primitive for the desc: batched with strided 3D mds, or (per_batch) a 2D one that is run
 * once per batch with offset pointers, for batch strides oneDNN's batched matmul will not take. */
static dnnl_status_t gemm_prim(sarco_backend *be, sarco_cpu_gemm_entry *e, const sarco_gemm_desc *d, int per_batch) {
    sarco_cpu *st = sarco_cpu_of(be);
    dnnl_memory_desc_t a, b, c;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t mm;
    dnnl_status_t s;
    if (per_batch) {
        dnnl_dims_t da = {d->m, d->k}, sa = {d->a_rs, d->a_cs}, db = {d->k, d->n}, sb = {d->b_rs, d->b_cs};
        dnnl_dims_t dc = {d->m, d->n}, sc = {d->c_rs, 1};
        s = dnnl_memory_desc_init_by_strides(&a, 2, da, dnnl_f32, sa);
        if (s == dnnl_success) s = dnnl_memory_desc_init_by_strides(&b, 2, db, dnnl_f32, sb);
        if (s == dnnl_success) s = dnnl_memory_desc_init_by_strides(&c, 2, dc, dnnl_f32, sc);
    } else {
        s = gemm_md(&a, d->batch, d->a_bs, d->m, d->k, d->a_rs, d->a_cs);
        if (s == dnnl_success) s = gemm_md(&b, d->batch, d->b_bs, d->k, d->n, d->b_rs, d->b_cs);
        if (s == dnnl_success) {
            dnnl_dims_t dims = {d->batch, d->m, d->n};
            dnnl_dims_t strides = {d->batch == 1 ? d->m * d->c_rs : d->c_bs, d->c_rs, 1};
            s = dnnl_memory_desc_init_by_strides(&c, 3, dims, dnnl_f32, strides);
        }
    }
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success && d->alpha != 1.0f) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &d->alpha);
    if (s == dnnl_success && d->beta != 0.0f) {
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success) s = dnnl_post_ops_append_sum(po, d->beta);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&mm, &a, &b, NULL, &c);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &mm, attr, st->eng, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&e->prim, pd);
    if (s == dnnl_success) s = dnnl_memory_create(&e->a, &a, st->eng, DNNL_MEMORY_NONE);
    if (s == dnnl_success) s = dnnl_memory_create(&e->b, &b, st->eng, DNNL_MEMORY_NONE);
    if (s == dnnl_success) s = dnnl_memory_create(&e->c, &c, st->eng, DNNL_MEMORY_NONE);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (pd) dnnl_primitive_desc_destroy(pd);
    e->per_batch = per_batch;
    return s;
}

static void gemm_entry_make(sarco_backend *be, sarco_cpu_gemm_entry *e, const sarco_gemm_desc *d) {
    dnnl_status_t s = gemm_prim(be, e, d, 0);
    if (s != dnnl_success && d->batch > 1) {
        gemm_entry_clear(e);
        s = gemm_prim(be, e, d, 1);
    }
    if (s != dnnl_success) { /* strides oneDNN will not take at all: the C loop below runs instead */
        gemm_entry_clear(e);
        sarco_log(be->ctx, SARCO_LOG_DEBUG, "gemm %lldx%lldx%lld: oneDNN matmul refused (%s), using C loops",
                  (long long)d->m, (long long)d->n, (long long)d->k, dnnl_status2str(s));
    }
    e->d = *d;
    e->used = 1;
}

/* Fallback when oneDNN takes no matmul for the strides: one output row at a time, accumulating over
 * k in order (tests call it directly). */
void sarco_cpu_gemm_loops(sarco_backend *be, const sarco_gemm_desc *d, const float *a, const float *b, float *c) {
    int64_t rows = d->batch * d->m;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (rows * d->n * d->k >= SARCO_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t bi = r / d->m, i = r % d->m;
        float *cr = c + bi * d->c_bs + i * d->c_rs;
        const float *ar = a + bi * d->a_bs + i * d->a_rs, *bb = b + bi * d->b_bs;
        for (int64_t j = 0; j < d->n; j++) cr[j] = d->beta != 0.0f ? d->beta * cr[j] : 0.0f;
        for (int64_t p = 0; p < d->k; p++) {
            float av = d->alpha * ar[p * d->a_cs];
            const float *br = bb + p * d->b_rs;
            for (int64_t j = 0; j < d->n; j++) cr[j] += av * br[j * d->b_cs];
        }
    }
}

sarco_status sarco_cpu_gemm(sarco_backend *be, const sarco_gemm_desc *d, const float *a, const float *b, float *c) {
    if (!d) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "gemm: desc is NULL");
    if (d->batch < 1 || d->m < 1 || d->n < 1 || d->k < 1)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "gemm: batch=%lld m=%lld n=%lld k=%lld must be >= 1",
                          (long long)d->batch, (long long)d->m, (long long)d->n, (long long)d->k);
    if (d->a_bs < 0 || d->a_rs < 0 || d->a_cs < 0 || d->b_bs < 0 || d->b_rs < 0 || d->b_cs < 0 || d->c_bs < 0 ||
        d->c_rs < d->n || (d->a_rs != 1 && d->a_cs != 1) || (d->b_rs != 1 && d->b_cs != 1) ||
        (d->batch > 1 && d->c_bs == 0))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "gemm: strides must be >= 0, one of each operand's row/column strides 1, c_rs >= n, and "
                          "c_bs > 0 for a batch");
    if (!(d->alpha == d->alpha) || !(d->beta == d->beta))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "gemm: alpha or beta is NaN");
    if (!a || !b || !c) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "gemm: NULL operand");
    sarco_cpu *st = sarco_cpu_of(be);
    sarco_cpu_set_threads(be);
    sarco_cpu_gemm_entry *e = NULL, *victim = &st->gemm[0];
    for (int i = 0; i < SARCO_CPU_GEMM_CACHE; i++) {
        sarco_cpu_gemm_entry *g = &st->gemm[i];
        if (g->used && gemm_same(&g->d, d)) {
            e = g;
            break;
        }
        if (!g->used ? victim->used : (victim->used && g->last < victim->last)) victim = g;
    }
    if (!e) {
        gemm_entry_clear(victim);
        e = victim;
        gemm_entry_make(be, e, d);
    }
    e->last = ++st->tick;
    if (!e->prim) {
        sarco_cpu_gemm_loops(be, d, a, b, c);
        return SARCO_OK;
    }
    dnnl_status_t s = dnnl_success;
    int64_t runs = e->per_batch ? d->batch : 1;
    for (int64_t bi = 0; bi < runs && s == dnnl_success; bi++) {
        s = dnnl_memory_set_data_handle_v2(e->a, (void *)(a + bi * d->a_bs), st->strm);
        if (s == dnnl_success) s = dnnl_memory_set_data_handle_v2(e->b, (void *)(b + bi * d->b_bs), st->strm);
        if (s == dnnl_success) s = dnnl_memory_set_data_handle_v2(e->c, c + bi * d->c_bs, st->strm);
        if (s == dnnl_success) {
            dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
            s = dnnl_primitive_execute(e->prim, st->strm, 3, args);
        }
    }
    if (s == dnnl_success) s = dnnl_stream_wait(st->strm);
    if (s != dnnl_success) return dnnl_err(be, s, "gemm");
    return SARCO_OK;
}
