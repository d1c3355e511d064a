/* The CPU backend's op table: memory, and C loops over the kernels/ HD headers for everything oneDNN
 * does not run (lib/cpu/cpu_dnnl.c has conv, deconv, linear and gemm). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "kernels/act_hd.h"
#include "kernels/blend_hd.h"
#include "kernels/edt_hd.h"
#include "kernels/layout_hd.h"
#include "kernels/measure_hd.h"
#include "kernels/norm_hd.h"
#include "kernels/pool_hd.h"
#include "kernels/softmax_hd.h"
#include "kernels/swin_hd.h"
#include "kernels/window_hd.h"

#define BAD(be, ...) sarco_fail((be)->ctx, SARCO_ERR_INVALID_ARGUMENT, __VA_ARGS__)
#define ALLOC_MAGIC 0x5a4c4c4f43505543ull /* header check: catches frees of foreign pointers */

/* ---- memory ---------------------------------------------------------------------------- */

/* The block starts with a 64-byte header holding the size, so free can give the bytes back to the
 * context's memory accounting and the data stays 64-byte aligned. */
sarco_status sarco_cpu_alloc(sarco_backend *be, size_t bytes, void **out) {
    if (!out) return BAD(be, "alloc: out is NULL");
    *out = NULL;
    sarco_context *ctx = be->ctx;
    size_t total;
    if (bytes > SIZE_MAX - 2 * SARCO_CPU_ALIGN)
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "alloc: %zu bytes is too large", bytes);
    total = (bytes + 2 * SARCO_CPU_ALIGN - 1) / SARCO_CPU_ALIGN * SARCO_CPU_ALIGN;
    if (ctx->opts.memory_limit &&
        (bytes > ctx->opts.memory_limit || ctx->host_bytes > ctx->opts.memory_limit - bytes))
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY,
                          "alloc: %zu bytes would pass the context's memory limit of %zu", bytes,
                          ctx->opts.memory_limit);
    unsigned char *p = aligned_alloc(SARCO_CPU_ALIGN, total);
    if (!p) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "alloc: cannot allocate %zu bytes", bytes);
    uint64_t hdr[2] = {ALLOC_MAGIC, (uint64_t)bytes};
    memcpy(p, hdr, sizeof hdr);
    ctx->host_bytes += bytes;
    *out = p + SARCO_CPU_ALIGN;
    return SARCO_OK;
}

void sarco_cpu_free(sarco_backend *be, void *ptr) {
    if (!ptr) return;
    unsigned char *p = (unsigned char *)ptr - SARCO_CPU_ALIGN;
    uint64_t hdr[2];
    memcpy(hdr, p, sizeof hdr);
    if (hdr[0] != ALLOC_MAGIC) {
        sarco_log(be->ctx, SARCO_LOG_ERROR, "cpu free: %p was not allocated by this backend (ignored)", ptr);
        return;
    }
    hdr[0] = 0;
    memcpy(p, hdr, sizeof hdr);
    size_t bytes = (size_t)hdr[1];
    be->ctx->host_bytes -= bytes <= be->ctx->host_bytes ? bytes : be->ctx->host_bytes;
    free(p);
}

void sarco_cpu_set_threads(sarco_backend *be) { omp_set_num_threads(sarco_cpu_of(be)->threads); }

void sarco_cpu_copy_n(sarco_backend *be, float *dst, const float *src, int64_t n) {
    if (dst == src || n <= 0) return;
    const int64_t chunk = 1 << 16;
    int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (nchunks > 4)
    for (int64_t i = 0; i < nchunks; i++) {
        int64_t a = i * chunk, len = n - a < chunk ? n - a : chunk;
        memcpy(dst + a, src + a, (size_t)len * sizeof(float));
    }
}

static sarco_status cpu_upload(sarco_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes && (!dst || !src)) return BAD(be, "upload: NULL buffer");
    if (bytes) memcpy(dst, src, bytes);
    return SARCO_OK;
}

static sarco_status cpu_download(sarco_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes && (!dst || !src)) return BAD(be, "download: NULL buffer");
    if (bytes) memcpy(dst, src, bytes);
    return SARCO_OK;
}

static sarco_status cpu_copy(sarco_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes && (!dst || !src)) return BAD(be, "copy: NULL buffer");
    if (bytes) memmove(dst, src, bytes);
    return SARCO_OK;
}

static sarco_status cpu_memset0(sarco_backend *be, void *p, size_t bytes) {
    if (bytes && !p) return BAD(be, "memset0: NULL buffer");
    if (bytes) memset(p, 0, bytes);
    return SARCO_OK;
}

static sarco_status cpu_sync(sarco_backend *be) {
    (void)be;
    return SARCO_OK;
}

/* ---- elementwise ----------------------------------------------------------------------- */

/* One span with the activation chosen outside the loop, so each loop is a plain map. */
static void act_span(int act, float alpha, int64_t n, const float *x, float *y) {
#define MAP(expr)                                                                                                  \
    for (int64_t i = 0; i < n; i++) {                                                                              \
        float v = x[i];                                                                                            \
        y[i] = (expr);                                                                                             \
    }                                                                                                              \
    break
    switch (act) {
    case SARCO_ACT_RELU: MAP(sarco_hd_act(SARCO_ACT_RELU, 0.0f, v));
    case SARCO_ACT_LEAKY_RELU: MAP(sarco_hd_leaky(v, alpha));
    case SARCO_ACT_GELU: MAP(sarco_hd_gelu(v));
    case SARCO_ACT_GELU_TANH: MAP(sarco_hd_gelu_tanh(v));
    case SARCO_ACT_SILU: MAP(sarco_hd_silu(v));
    case SARCO_ACT_SIGMOID: MAP(sarco_hd_sigmoid(v));
    case SARCO_ACT_TANH: MAP(tanhf(v));
    case SARCO_ACT_HARDSWISH: MAP(sarco_hd_hardswish(v));
    default:
        if (x != y) memmove(y, x, (size_t)n * sizeof(float));
        break;
    }
#undef MAP
}

void sarco_cpu_act_n(sarco_backend *be, int act, float alpha, int64_t n, const float *x, float *y) {
    const int64_t chunk = 4096;
    int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (n >= SARCO_CPU_PAR_MIN)
    for (int64_t i = 0; i < nchunks; i++) {
        int64_t a = i * chunk, len = n - a < chunk ? n - a : chunk;
        act_span(act, alpha, len, x + a, y + a);
    }
}

static int act_ok(sarco_act act, float alpha) { return (int)act >= 0 && act < SARCO_ACT_COUNT && isfinite(alpha); }

static sarco_status cpu_act(sarco_backend *be, sarco_act act, float alpha, int64_t n, const float *x, float *y) {
    if (!act_ok(act, alpha)) return BAD(be, "act: activation %d / alpha %g out of range", (int)act, (double)alpha);
    if (n < 0 || (n && (!x || !y))) return BAD(be, "act: n=%lld with a NULL buffer or negative size", (long long)n);
    sarco_cpu_act_n(be, act, alpha, n, x, y);
    return SARCO_OK;
}

static sarco_status cpu_binary(sarco_backend *be, sarco_binop op, const sarco_bcast_desc *d, const float *a,
                               const float *b, float *y) {
    if ((int)op < 0 || op > SARCO_BIN_DIV) return BAD(be, "binary: op %d is not a sarco_binop", (int)op);
    if (!d || d->ndim < 1 || d->ndim > SARCO_MAX_DIMS)
        return BAD(be, "binary: ndim must be in 1..%d", SARCO_MAX_DIMS);
    int64_t total;
    if (!sarco_dims_product(d->shape, d->ndim, INT64_MAX / 2, &total))
        return BAD(be, "binary: shape has a negative dim or overflows");
    for (int i = 0; i < d->ndim; i++)
        if (d->sa[i] < 0 || d->sb[i] < 0) return BAD(be, "binary: negative stride on axis %d", i);
    if (total == 0) return SARCO_OK;
    if (!a || !b || !y) return BAD(be, "binary: NULL buffer");
    int64_t last = d->shape[d->ndim - 1], rows = total / last;
    int64_t la = d->sa[d->ndim - 1], lb = d->sb[d->ndim - 1];
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (total >= SARCO_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t oa, ob;
        sarco_hd_bcast_offsets(d, r * last, &oa, &ob);
        const float *pa = a + oa, *pb = b + ob;
        float *py = y + r * last;
        switch (op) {
        case SARCO_BIN_MUL:
            for (int64_t j = 0; j < last; j++) py[j] = pa[j * la] * pb[j * lb];
            break;
        case SARCO_BIN_SUB:
            for (int64_t j = 0; j < last; j++) py[j] = pa[j * la] - pb[j * lb];
            break;
        case SARCO_BIN_DIV:
            for (int64_t j = 0; j < last; j++) py[j] = pa[j * la] / pb[j * lb];
            break;
        default:
            for (int64_t j = 0; j < last; j++) py[j] = pa[j * la] + pb[j * lb];
            break;
        }
    }
    return SARCO_OK;
}

/* ---- normalisation --------------------------------------------------------------------- */

static sarco_status cpu_layernorm(sarco_backend *be, int64_t rows, int64_t c, const float *x, const float *gamma,
                                  const float *beta, float eps, float *y) {
    if (rows < 0 || c < 1) return BAD(be, "layernorm: rows=%lld c=%lld", (long long)rows, (long long)c);
    if (!(eps >= 0.0f) || !isfinite(eps)) return BAD(be, "layernorm: eps %g must be finite and >= 0", (double)eps);
    if (rows && (!x || !y)) return BAD(be, "layernorm: NULL buffer");
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (rows * c >= SARCO_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) sarco_hd_layernorm_row(x + r * c, c, gamma, beta, eps, y + r * c);
    return SARCO_OK;
}

static double *scratch(sarco_backend *be, size_t n) {
    sarco_cpu *st = sarco_cpu_of(be);
    if (st->scratch_n >= n) return st->scratch;
    double *p = realloc(st->scratch, n * sizeof *p);
    if (!p) return NULL;
    st->scratch = p;
    st->scratch_n = n;
    return p;
}

/* Rows [r0, r1) of instance-norm output with the activation chosen outside the loop, so the
 * per-channel loop is SIMD code; the arithmetic is sarco_hd_instnorm1's. res advances by rs floats per
 * row (0: a row of zeros), g/b are full rows (ones/zeros without affine). */
static void instnorm_apply_rows(const float *x, const float *res, int64_t rs, int64_t r0, int64_t r1, int64_t c,
                                const float *mean, const float *rstd, const float *g, const float *b, int act,
                                float alpha, float *y) {
#define APPLY(expr)                                                                                                \
    for (int64_t r = r0; r < r1; r++) {                                                                            \
        const float *xr = x + r * c, *rr = res + r * rs;                                                           \
        float *yr = y + r * c;                                                                                     \
        SARCO_HD_SIMD                                                                                              \
        for (int64_t ch = 0; ch < c; ch++) {                                                                       \
            float v = sarco_hd_norm1(xr[ch], mean[ch], rstd[ch], g[ch], b[ch]) + rr[ch];                           \
            yr[ch] = (expr);                                                                                       \
        }                                                                                                          \
    }                                                                                                              \
    break
    switch (act) {
    case SARCO_ACT_NONE: APPLY(v);
    case SARCO_ACT_LEAKY_RELU: APPLY(sarco_hd_leaky(v, alpha));
    case SARCO_ACT_RELU: APPLY(sarco_hd_act(SARCO_ACT_RELU, 0.0f, v));
    default: APPLY(sarco_hd_act(act, alpha, v));
    }
#undef APPLY
}

/* One parallel region: each thread takes a fixed range of rows, accumulates one-pass shifted sums
 * (sarco_hd_instnorm_moments_row), and after one barrier every thread merges the partials into its own
 * copy of mean/rstd and normalises the same rows it read (still warm in its cache). */
static sarco_status cpu_instnorm(sarco_backend *be, int64_t n, int64_t s, int64_t c, const float *x,
                                 const float *gamma, const float *beta, float eps, const float *residual,
                                 sarco_act act, float alpha, float *y) {
    if (n < 0 || s < 1 || c < 1 || c > (1 << 24))
        return BAD(be, "instnorm: n=%lld s=%lld c=%lld", (long long)n, (long long)s, (long long)c);
    if (!(eps >= 0.0f) || !isfinite(eps)) return BAD(be, "instnorm: eps %g must be finite and >= 0", (double)eps);
    if (!act_ok(act, alpha)) return BAD(be, "instnorm: activation %d / alpha %g out of range", (int)act, (double)alpha);
    if (n && (!x || !y)) return BAD(be, "instnorm: NULL buffer");
    if ((gamma == NULL) != (beta == NULL)) return BAD(be, "instnorm: gamma and beta must both be given or both NULL");
    if (n == 0) return SARCO_OK;
    const int T = sarco_cpu_of(be)->threads;
    /* layout: per thread sum, sumsq, shift (c doubles each) and mean, rstd (c floats each, in c doubles);
     * then c ones and c zeros (floats, in c doubles) for a missing gamma/beta/residual */
    double *part = scratch(be, (size_t)(4 * T + 1) * (size_t)c);
    if (!part) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "instnorm: scratch for %lld channels", (long long)c);
    float *ones = (float *)(part + (size_t)4 * T * c), *zeros = ones + c;
    for (int64_t ch = 0; ch < c; ch++) {
        ones[ch] = 1.0f;
        zeros[ch] = 0.0f;
    }
    const float *g = gamma ? gamma : ones, *bt = beta ? beta : zeros;
    const int64_t rs = residual ? c : 0;
#pragma omp parallel num_threads(T) if (s * c >= SARCO_CPU_PAR_MIN)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        double *sum = part + (size_t)4 * t * c, *sq = sum + c, *shift = sq + c;
        float *mean = (float *)(shift + c), *rstd = mean + c;
        const int64_t r0 = s * t / nt, r1 = s * (t + 1) / nt;
        for (int64_t bi = 0; bi < n; bi++) {
            const float *xb = x + bi * s * c;
            sarco_hd_instnorm_shift(xb, s, c, shift); /* the same on every thread */
            memset(sum, 0, (size_t)(2 * c) * sizeof *sum);
            for (int64_t r = r0; r < r1; r++) sarco_hd_instnorm_moments_row(xb + r * c, c, shift, sum, sq);
#pragma omp barrier
            for (int64_t ch = 0; ch < c; ch++) {
                double su = 0.0, q = 0.0;
                for (int k = 0; k < nt; k++) {
                    su += part[(size_t)4 * k * c + ch];
                    q += part[(size_t)4 * k * c + c + ch];
                }
                sarco_hd_instnorm_finish(su, q, shift[ch], s, eps, &mean[ch], &rstd[ch]);
            }
            /* the partials are overwritten by the next batch item only after everyone has read them */
            if (bi + 1 < n) {
#pragma omp barrier
            }
            instnorm_apply_rows(xb, residual ? residual + bi * s * c : zeros, rs, r0, r1, c, mean, rstd, g, bt,
                                act, alpha, y + bi * s * c);
        }
    }
    return SARCO_OK;
}

static sarco_status cpu_channel_affine(sarco_backend *be, int64_t rows, int64_t c, const float *x,
                                       const float *scale, const float *shift, sarco_act act, float alpha,
                                       float *y) {
    if (rows < 0 || c < 1) return BAD(be, "channel_affine: rows=%lld c=%lld", (long long)rows, (long long)c);
    if (!act_ok(act, alpha))
        return BAD(be, "channel_affine: activation %d / alpha %g out of range", (int)act, (double)alpha);
    if (rows && (!x || !y)) return BAD(be, "channel_affine: NULL buffer");
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (rows * c >= SARCO_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        for (int64_t ch = 0; ch < c; ch++)
            yr[ch] = sarco_hd_affine1(xr[ch], scale ? scale[ch] : 1.0f, shift ? shift[ch] : 0.0f, act, alpha);
    }
    return SARCO_OK;
}

static sarco_status cpu_softmax(sarco_backend *be, int64_t outer, int64_t n, int64_t inner, const float *x,
                                float *y) {
    if (outer < 0 || n < 1 || inner < 1)
        return BAD(be, "softmax: outer=%lld n=%lld inner=%lld", (long long)outer, (long long)n, (long long)inner);
    if (outer && (!x || !y)) return BAD(be, "softmax: NULL buffer");
    int64_t lines = outer * inner;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (lines * n >= SARCO_CPU_PAR_MIN)
    for (int64_t l = 0; l < lines; l++) {
        int64_t base = (l / inner) * n * inner + l % inner;
        sarco_hd_softmax_line(x + base, n, inner, y + base);
    }
    return SARCO_OK;
}

/* ---- data movement --------------------------------------------------------------------- */

static sarco_status cpu_concat(sarco_backend *be, int count, const float *const *xs, const int64_t *sizes,
                               int64_t outer, int64_t inner, float *y) {
    if (count < 1 || !xs || !sizes || outer < 0 || inner < 1)
        return BAD(be, "concat: count=%d outer=%lld inner=%lld", count, (long long)outer, (long long)inner);
    int64_t total = 0;
    for (int k = 0; k < count; k++) {
        if (sizes[k] < 0) return BAD(be, "concat: sizes[%d]=%lld is negative", k, (long long)sizes[k]);
        if (sizes[k] && outer && !xs[k]) return BAD(be, "concat: input %d is NULL", k);
        total += sizes[k];
    }
    if (outer && total && !y) return BAD(be, "concat: y is NULL");
    int64_t pieces = outer * count;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (outer * total * inner >= SARCO_CPU_PAR_MIN)
    for (int64_t p = 0; p < pieces; p++) {
        int64_t o = p / count;
        int k = (int)(p % count);
        int64_t off = 0;
        for (int j = 0; j < k; j++) off += sizes[j];
        if (sizes[k])
            memcpy(y + (o * total + off) * inner, xs[k] + o * sizes[k] * inner,
                   (size_t)(sizes[k] * inner) * sizeof(float));
    }
    return SARCO_OK;
}

/* (N, R, Q) -> (N, Q, R), tiled so both sides stay in cache. */
static void transpose(sarco_backend *be, int64_t n, int64_t r, int64_t q, const float *x, float *y) {
    const int64_t B = 32;
    int64_t rb = (r + B - 1) / B, qb = (q + B - 1) / B, tiles = n * rb * qb;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (n * r * q >= SARCO_CPU_PAR_MIN)
    for (int64_t t = 0; t < tiles; t++) {
        int64_t b = t / (rb * qb), i0 = (t / qb) % rb * B, j0 = t % qb * B;
        int64_t i1 = i0 + B < r ? i0 + B : r, j1 = j0 + B < q ? j0 + B : q;
        const float *xb = x + b * r * q;
        float *yb = y + b * r * q;
        for (int64_t j = j0; j < j1; j++)
            for (int64_t i = i0; i < i1; i++) yb[j * r + i] = xb[i * q + j];
    }
}

static sarco_status cpu_to_cl(sarco_backend *be, int64_t n, int64_t c, int64_t s, const float *x, float *y) {
    if (n < 0 || c < 1 || s < 1) return BAD(be, "to_cl: n=%lld c=%lld s=%lld", (long long)n, (long long)c, (long long)s);
    if (n && (!x || !y || x == y)) return BAD(be, "to_cl: NULL or aliased buffers");
    transpose(be, n, c, s, x, y);
    return SARCO_OK;
}

static sarco_status cpu_from_cl(sarco_backend *be, int64_t n, int64_t c, int64_t s, const float *x, float *y) {
    if (n < 0 || c < 1 || s < 1)
        return BAD(be, "from_cl: n=%lld c=%lld s=%lld", (long long)n, (long long)c, (long long)s);
    if (n && (!x || !y || x == y)) return BAD(be, "from_cl: NULL or aliased buffers");
    transpose(be, n, s, c, x, y);
    return SARCO_OK;
}

static sarco_status patch_check(sarco_backend *be, const char *what, const sarco_patch_desc *d, const float *x,
                                float *y) {
    if (!d || (d->nsp != 2 && d->nsp != 3)) return BAD(be, "%s: nsp must be 2 or 3", what);
    if (d->n < 0 || d->c < 1) return BAD(be, "%s: n=%lld c=%lld", what, (long long)d->n, (long long)d->c);
    for (int i = 0; i < d->nsp; i++)
        if (d->p[i] < 1 || d->in[i] < 1 || d->in[i] % d->p[i])
            return BAD(be, "%s: spatial size %lld on axis %d is not a positive multiple of the patch size %lld", what,
                       (long long)d->in[i], i, (long long)d->p[i]);
    if (d->n && (!x || !y || x == y)) return BAD(be, "%s: NULL or aliased buffers", what);
    return SARCO_OK;
}

/* Copies whole (p3 C) runs between the volume and the token matrix; dir 0 = patchify, 1 = unpatchify. */
static void patch_move(sarco_backend *be, const sarco_patch_desc *d, const float *x, float *y, int dir) {
    int64_t in[3] = {1, 1, 1}, p[3] = {1, 1, 1}, g[3];
    for (int j = 0; j < d->nsp; j++) {
        in[3 - d->nsp + j] = d->in[j];
        p[3 - d->nsp + j] = d->p[j];
    }
    for (int j = 0; j < 3; j++) g[j] = in[j] / p[j];
    int64_t L = g[0] * g[1] * g[2], P = p[0] * p[1] * p[2] * d->c, run = p[2] * d->c, toks = d->n * L;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (toks * P >= SARCO_CPU_PAR_MIN)
    for (int64_t t = 0; t < toks; t++) {
        int64_t b = t / L, l = t % L;
        int64_t g2 = l % g[2], g1 = l / g[2] % g[1], g0 = l / (g[1] * g[2]);
        for (int64_t q0 = 0; q0 < p[0]; q0++)
            for (int64_t q1 = 0; q1 < p[1]; q1++) {
                int64_t vol = (((b * in[0] + g0 * p[0] + q0) * in[1] + g1 * p[1] + q1) * in[2] + g2 * p[2]) * d->c;
                int64_t tok = t * P + (q0 * p[1] + q1) * run;
                if (dir == 0)
                    memcpy(y + tok, x + vol, (size_t)run * sizeof(float));
                else
                    memcpy(y + vol, x + tok, (size_t)run * sizeof(float));
            }
    }
}

static sarco_status cpu_patchify(sarco_backend *be, const sarco_patch_desc *d, const float *x, float *y) {
    sarco_status s = patch_check(be, "patchify", d, x, y);
    if (s == SARCO_OK) patch_move(be, d, x, y, 0);
    return s;
}

static sarco_status cpu_unpatchify(sarco_backend *be, const sarco_patch_desc *d, const float *x, float *y) {
    sarco_status s = patch_check(be, "unpatchify", d, x, y);
    if (s == SARCO_OK) patch_move(be, d, x, y, 1);
    return s;
}

/* ---- pooling --------------------------------------------------------------------------- */

static sarco_status cpu_pool(sarco_backend *be, const sarco_pool_desc *d, int64_t n, int64_t c, const int64_t *in,
                             const float *x, float *y) {
    if (!d || !in || (d->nsp != 2 && d->nsp != 3)) return BAD(be, "pool: desc/in missing or nsp not 2 or 3");
    if (d->kind != SARCO_POOL_MAX && d->kind != SARCO_POOL_AVG) return BAD(be, "pool: kind %d", (int)d->kind);
    if (n < 0 || c < 1) return BAD(be, "pool: n=%lld c=%lld", (long long)n, (long long)c);
    for (int i = 0; i < d->nsp; i++) {
        if (d->k[i] < 1 || d->stride[i] < 1 || d->pad[i] < 0 || in[i] < 1)
            return BAD(be, "pool: axis %d: kernel %lld, stride %lld, padding %lld, input %lld", i, (long long)d->k[i],
                       (long long)d->stride[i], (long long)d->pad[i], (long long)in[i]);
        if (2 * d->pad[i] > d->k[i])
            return BAD(be, "pool: axis %d: padding %lld must be at most half the kernel size %lld", i,
                       (long long)d->pad[i], (long long)d->k[i]);
    }
    int64_t out[3];
    if (!sarco_pool_out_shape(d, in, out)) return BAD(be, "pool: the output would be empty");
    if (n && (!x || !y || x == y)) return BAD(be, "pool: NULL or aliased buffers");
    int64_t in_total = 1, out_total = 1;
    for (int i = 0; i < d->nsp; i++) {
        in_total *= in[i];
        out_total *= out[i];
    }
    int64_t items = n * out_total;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (items * c >= SARCO_CPU_PAR_MIN / 4)
    for (int64_t it = 0; it < items; it++) {
        int64_t b = it / out_total, r = it % out_total, o[3];
        for (int i = d->nsp - 1; i >= 0; i--) {
            o[i] = r % out[i];
            r /= out[i];
        }
        const float *xb = x + b * in_total * c;
        float *yo = y + it * c;
        for (int64_t ch = 0; ch < c; ch++) yo[ch] = sarco_hd_pool1(d, in, c, xb, o, ch);
    }
    return SARCO_OK;
}

static sarco_status cpu_adaptive_avg_pool2d(sarco_backend *be, int64_t n, int64_t c, const int64_t *in,
                                            const int64_t *out, const float *x, float *y) {
    if (!in || !out) return BAD(be, "adaptive_avg_pool2d: NULL sizes");
    if (n < 0 || c < 1 || in[0] < 1 || in[1] < 1 || out[0] < 1 || out[1] < 1)
        return BAD(be, "adaptive_avg_pool2d: n=%lld c=%lld in %lldx%lld out %lldx%lld", (long long)n, (long long)c,
                   (long long)in[0], (long long)in[1], (long long)out[0], (long long)out[1]);
    if (n && (!x || !y || x == y)) return BAD(be, "adaptive_avg_pool2d: NULL or aliased buffers");
    const int64_t items = n * out[0] * out[1], sample = in[0] * in[1] * c;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (items * c >= SARCO_CPU_PAR_MIN / 4)
    for (int64_t it = 0; it < items; it++) {
        const int64_t b = it / (out[0] * out[1]), r = it % (out[0] * out[1]);
        for (int64_t ch = 0; ch < c; ch++)
            y[it * c + ch] = sarco_hd_adaptive_avg1(x + b * sample, in[0], in[1], c, out[0], out[1], r / out[1],
                                                    r % out[1], ch);
    }
    return SARCO_OK;
}

/* ---- sliding window -------------------------------------------------------------------- */

static sarco_status cpu_window_accumulate(sarco_backend *be, const sarco_window_desc *d, const float *y,
                                          const float *w, float *acc, float *cnt) {
    sarco_status s = sarco_window_desc_check(be->ctx, d);
    if (s != SARCO_OK) return s;
    if (!y || !acc || !cnt) return BAD(be, "window_accumulate: NULL buffer");
    const int64_t C = d->c, R01 = d->roi[0] * d->roi[1], R2 = d->roi[2], S1 = d->slab[1], S2 = d->slab[2];
    const int64_t tile = R01 * R2, chan = d->slab[0] * S1 * S2;
    /* one task per run of R2 elements: (channel, r0, r1), channel C being the weight sums */
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if ((C + 1) * tile >= SARCO_CPU_PAR_MIN)
    for (int64_t r = 0; r < (C + 1) * R01; r++) {
        int64_t ch = r / R01, ij = r % R01, i = ij / d->roi[1], j = ij % d->roi[1];
        int64_t off = ((d->st[0] + i) * S1 + d->st[1] + j) * S2 + d->st[2];
        const float *wr = w ? w + ij * R2 : NULL;
        if (ch == C) {
            float *cr = cnt + off;
            if (wr)
                for (int64_t k = 0; k < R2; k++) cr[k] += wr[k];
            else
                for (int64_t k = 0; k < R2; k++) cr[k] += 1.0f;
            continue;
        }
        float *ar = acc + ch * chan + off;
        const float *yr = y + ch * tile + ij * R2;
        if (wr)
            for (int64_t k = 0; k < R2; k++) sarco_window_accumulate(&ar[k], yr[k], wr[k]);
        else
            for (int64_t k = 0; k < R2; k++) sarco_window_accumulate(&ar[k], yr[k], 1.0f);
    }
    return SARCO_OK;
}

static sarco_status cpu_argmax_labels(sarco_backend *be, int64_t c, int64_t count, int64_t chan, const float *acc,
                                      const float *cnt, int bits, void *labels) {
    sarco_status s = sarco_argmax_check(be->ctx, c, count, chan, bits);
    if (s != SARCO_OK) return s;
    if (count && (!acc || !cnt || !labels)) return BAD(be, "argmax_labels: NULL buffer");
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (count * c >= SARCO_CPU_PAR_MIN)
    for (int64_t i = 0; i < count; i++) sarco_label_store(labels, bits, i, sarco_argmax_div(acc + i, c, chan, cnt[i]));
    return SARCO_OK;
}

/* ---- measurements ---------------------------------------------------------------------- */

/* One EDT pass, one line per task through kernels/edt_hd.h, as on the GPU. (lib/measure keeps its
 * own tiled loops for CPU contexts; this is the op table's reference.) */
static sarco_status cpu_edt_axis(sarco_backend *be, const sarco_edt_desc *d, const uint8_t *sites, const uint8_t *query,
                                 float *f) {
    sarco_status s = sarco_edt_desc_check(be->ctx, d, sites != NULL);
    if (s != SARCO_OK) return s;
    if (!f) return BAD(be, "edt_axis: f is NULL");
    int64_t S = 1;
    for (int a = d->axis + 1; a < 3; a++) S *= d->dims[a];
    const int64_t n = d->dims[d->axis], lines = d->dims[0] * d->dims[1] * d->dims[2] / n;
    const double s2 = d->spacing * d->spacing;
    const int T = sarco_cpu_of(be)->threads;
    const size_t per = sarco_edt_scratch_bytes(n);
    size_t bytes;
    char *scr = NULL;
    if (!sites) { /* envelope scratch per thread */
        if (!sarco_mul_size(per, (size_t)T, &bytes) || !(scr = (char *)scratch(be, bytes / sizeof(double))))
            return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "edt_axis: scratch for %d lines of %lld", T,
                              (long long)n);
    }
#pragma omp parallel num_threads(T) if (lines * n >= SARCO_CPU_PAR_MIN)
    {
        int32_t *v = NULL;
        double *fv = NULL, *z = NULL;
        if (scr) sarco_edt_scratch_split(scr + per * (size_t)omp_get_thread_num(), n, &v, &fv, &z);
#pragma omp for schedule(dynamic, 64)
        for (int64_t l = 0; l < lines; l++) {
            const int64_t b = sarco_edt_line_start(l, n, S);
            if (query && !sarco_edt_line_any(query + b, n, S, d->query_bit)) continue;
            if (sites)
                sarco_edt_line_binary(n, s2, sites + b, S, d->site_bit, f + b, S);
            else
                sarco_edt_line(n, s2, f + b, S, f + b, S, v, fv, z);
            if (d->take_sqrt)
                for (int64_t q = 0; q < n; q++) f[b + q * S] = sqrtf(f[b + q * S]);
        }
    }
    return SARCO_OK;
}

/* Per-thread tables over contiguous ranges, merged in thread order (as lib/measure/measure.c). */
static sarco_status cpu_label_stats(sarco_backend *be, int64_t n, const uint16_t *labels, const float *image,
                                    int64_t nlabels, sarco_hu_acc *acc) {
    sarco_status s = sarco_label_stats_check(be->ctx, n, nlabels);
    if (s != SARCO_OK) return s;
    if (!acc || (n && !labels)) return BAD(be, "label_stats: NULL buffer");
    const int T = sarco_cpu_of(be)->threads, has_image = image != NULL;
    const size_t nl = (size_t)nlabels;
    sarco_hu_acc *tabs = T > 1 ? malloc((size_t)(T - 1) * nl * sizeof *tabs) : NULL;
    if (T > 1 && !tabs) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "label_stats: %d tables", T);
    int used = 1;
#pragma omp parallel num_threads(T) if (n >= SARCO_CPU_PAR_MIN)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        sarco_hu_acc *mine = t ? tabs + (size_t)(t - 1) * nl : acc;
        for (size_t l = 0; l < nl; l++) sarco_hu_acc_init(&mine[l]);
        for (int64_t i = n * t / nt, end = n * (t + 1) / nt; i < end; i++)
            if (labels[i] < nlabels) sarco_hu_acc_add(&mine[labels[i]], has_image, has_image ? image[i] : 0.0f);
        if (t == 0) used = nt;
    }
    for (int t = 1; t < used; t++)
        for (size_t l = 0; l < nl; l++) sarco_hu_acc_merge(&acc[l], &tabs[(size_t)(t - 1) * nl + l]);
    free(tabs);
    return SARCO_OK;
}

/* ---- the table ------------------------------------------------------------------------- */

/* ---- Swin Transformer ------------------------------------------------------------------ */

/* whole C-runs per token: a pixel's channels, or zeros for padding */
static sarco_status cpu_swin_partition(sarco_backend *be, const sarco_swin_desc *d, const float *x, float *y) {
    sarco_status s = sarco_swin_desc_check(be->ctx, d, 0);
    if (s != SARCO_OK) return s;
    if (d->n && (!x || !y || x == y)) return BAD(be, "swin_partition: NULL or aliased buffers");
    const int64_t toks = d->n * sarco_hd_swin_pad(d->h, d->win[0]) * sarco_hd_swin_pad(d->w, d->win[1]), c = d->c;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (toks * c >= SARCO_CPU_PAR_MIN)
    for (int64_t t = 0; t < toks; t++) {
        const int64_t p = sarco_hd_swin_token_pixel(d, t);
        if (p < 0)
            memset(y + t * c, 0, (size_t)c * sizeof(float));
        else
            memcpy(y + t * c, x + p * c, (size_t)c * sizeof(float));
    }
    return SARCO_OK;
}

static sarco_status cpu_swin_reverse(sarco_backend *be, const sarco_swin_desc *d, const float *x, const float *res,
                                     float *y) {
    sarco_status s = sarco_swin_desc_check(be->ctx, d, 0);
    if (s != SARCO_OK) return s;
    if (d->n && (!x || !y || x == y || x == res)) return BAD(be, "swin_reverse: NULL or aliased buffers");
    const int64_t pix = d->n * d->h * d->w, c = d->c;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (pix * c >= SARCO_CPU_PAR_MIN)
    for (int64_t p = 0; p < pix; p++) {
        const float *src = x + sarco_hd_swin_pixel_token(d, p) * c;
        float *dst = y + p * c;
        if (res) {
            const float *r = res + p * c;
            SARCO_HD_SIMD
            for (int64_t ch = 0; ch < c; ch++) dst[ch] = r[ch] + src[ch];
        } else {
            memcpy(dst, src, (size_t)c * sizeof(float));
        }
    }
    return SARCO_OK;
}

/* one (window, head) block per iteration (kernels/swin_hd.h), its scratch on the thread's stack */
static sarco_status cpu_swin_attention(sarco_backend *be, const sarco_swin_desc *d, int64_t heads, const float *table,
                                       const float *qkv, float *out) {
    sarco_status s = sarco_swin_desc_check(be->ctx, d, heads);
    if (s != SARCO_OK) return s;
    const int64_t L = d->win[0] * d->win[1];
    if (heads < 1 || d->c % heads || L > SARCO_SWIN_MAX_L || d->c / heads > SARCO_SWIN_MAX_DH)
        return BAD(be, "swin_attention: %lld heads for %lld channels, %lld tokens per window (at most %d tokens and %d "
                   "channels per head)",
                   (long long)heads, (long long)d->c, (long long)L, SARCO_SWIN_MAX_L, SARCO_SWIN_MAX_DH);
    if (d->n && (!table || !qkv || !out || qkv == out)) return BAD(be, "swin_attention: NULL or aliased buffers");
    const int64_t nw = sarco_hd_swin_pad(d->h, d->win[0]) / d->win[0] * (sarco_hd_swin_pad(d->w, d->win[1]) / d->win[1]);
    const int64_t blocks = d->n * nw * heads;
    const size_t bytes = (size_t)sarco_hd_swin_attention_scratch(L, d->c / heads) * sizeof(float);
#pragma omp parallel num_threads(sarco_cpu_of(be)->threads) if (blocks > 1)
    {
        float *scratch = malloc(bytes); /* <= 129 KB; per thread, not per block */
        if (scratch) {
#pragma omp for schedule(static)
            for (int64_t b = 0; b < blocks; b++) sarco_hd_swin_attention_block(d, heads, table, qkv, b, scratch, out);
        } else {
#pragma omp atomic write
            s = SARCO_ERR_OUT_OF_MEMORY;
        }
        free(scratch);
    }
    if (s != SARCO_OK) return sarco_fail(be->ctx, s, "swin_attention: out of memory for %zu bytes of scratch", bytes);
    return SARCO_OK;
}

static sarco_status cpu_patch_merge(sarco_backend *be, int64_t n, int64_t h, int64_t w, int64_t c, const float *x,
                                    float *y) {
    if (n < 0 || h < 1 || w < 1 || c < 1)
        return BAD(be, "patch_merge: N %lld, H %lld, W %lld, C %lld", (long long)n, (long long)h, (long long)w,
                   (long long)c);
    if (n && (!x || !y || x == y)) return BAD(be, "patch_merge: NULL or aliased buffers");
    const int64_t runs = n * ((h + 1) / 2) * ((w + 1) / 2) * 4;
#pragma omp parallel for num_threads(sarco_cpu_of(be)->threads) schedule(static) if (runs * c >= SARCO_CPU_PAR_MIN)
    for (int64_t q = 0; q < runs; q++) {
        const int64_t src = sarco_hd_patch_merge_src(h, w, c, q * c);
        if (src < 0)
            memset(y + q * c, 0, (size_t)c * sizeof(float));
        else
            memcpy(y + q * c, x + src, (size_t)c * sizeof(float));
    }
    return SARCO_OK;
}

static void cpu_destroy(sarco_backend *be) {
    if (!be) return;
    sarco_cpu *st = sarco_cpu_of(be);
    if (st) {
        sarco_cpu_gemm_cache_free(be);
        if (st->strm) dnnl_stream_destroy(st->strm);
        if (st->eng) dnnl_engine_destroy(st->eng);
        free(st->scratch);
        free(st->bf16_in);
        free(st);
    }
    free(be);
}

static const sarco_backend_ops cpu_ops = {
    .name = "cpu",
    .alloc = sarco_cpu_alloc,
    .free = sarco_cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .memset0 = cpu_memset0,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .conv_prepare = sarco_cpu_conv_prepare,
    .conv_run = sarco_cpu_conv_run,
    .conv_free = sarco_cpu_conv_free,
    .linear_prepare = sarco_cpu_linear_prepare,
    .linear_run = sarco_cpu_linear_run,
    .linear_free = sarco_cpu_linear_free,
    .gemm = sarco_cpu_gemm,
    .layernorm = cpu_layernorm,
    .instnorm = cpu_instnorm,
    .channel_affine = cpu_channel_affine,
    .act = cpu_act,
    .binary = cpu_binary,
    .softmax = cpu_softmax,
    .concat = cpu_concat,
    .to_cl = cpu_to_cl,
    .from_cl = cpu_from_cl,
    .patchify = cpu_patchify,
    .unpatchify = cpu_unpatchify,
    .pool = cpu_pool,
    .adaptive_avg_pool2d = cpu_adaptive_avg_pool2d,
    .window_accumulate = cpu_window_accumulate,
    .argmax_labels = cpu_argmax_labels,
    .edt_axis = cpu_edt_axis,
    .label_stats = cpu_label_stats,
    .swin_partition = cpu_swin_partition,
    .swin_reverse = cpu_swin_reverse,
    .swin_attention = cpu_swin_attention,
    .patch_merge = cpu_patch_merge,
    .destroy = cpu_destroy,
};

sarco_status sarco_backend_create_cpu(sarco_context *ctx, sarco_backend **out) {
    if (!out) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "cpu backend: out is NULL");
    *out = NULL;
    sarco_backend *be = calloc(1, sizeof *be);
    sarco_cpu *st = calloc(1, sizeof *st);
    if (!be || !st) {
        free(be);
        free(st);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "cpu backend: out of memory");
    }
    be->ops = &cpu_ops;
    be->ctx = ctx;
    be->impl = st;
    st->threads = ctx && ctx->opts.threads > 0 ? ctx->opts.threads : omp_get_num_procs();
    if (st->threads < 1) st->threads = 1;
    dnnl_status_t ds = dnnl_engine_create(&st->eng, dnnl_cpu, 0);
    if (ds == dnnl_success) ds = dnnl_stream_create(&st->strm, st->eng, dnnl_stream_default_flags);
    if (ds != dnnl_success) {
        cpu_destroy(be);
        return sarco_fail(ctx, SARCO_ERR_BACKEND_UNAVAILABLE, "cpu backend: oneDNN engine/stream creation failed (%d)",
                          (int)ds);
    }
    if (ctx && ctx->opts.precision == SARCO_PRECISION_BF16) {
        /* BF16 only where the CPU computes it natively: oneDNN would emulate it (slower than FP32)
         * on AVX-512 without BF16 and has no BF16 kernels at all on AVX2. ONEDNN_MAX_CPU_ISA caps it. */
        dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
        if ((isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16) {
            cpu_destroy(be);
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                              "cpu backend: precision BF16 needs a CPU with AVX512-BF16 or AMX; oneDNN finds ISA "
                              "0x%x here (use FP32)", (unsigned)isa);
        }
        st->bf16 = 1;
    }
    *out = be;
    return SARCO_OK;
}
