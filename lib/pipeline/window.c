/* Sliding-window inference with MONAI's semantics (monai.inferers.sliding_window_inference):
 * centred constant padding for images smaller than the roi, scan interval int(roi (1 - overlap)),
 * the last window shifted back to end at the border, constant or Gaussian blending, output =
 * sum(pred * w) / sum(w) in float32 summed in MONAI's window order.
 *
 * Memory: windows run with the first spatial axis outermost (MONAI's order), so once every
 * window starting at row s has run, rows < s are final. The engine keeps a slab of roi0 rows
 * (cout x roi0 x H x W floats plus the weight sums), turns finished rows into labels or logits
 * and slides. The slab, the tiles' outputs and the blend live on ctx's backend (the op table's
 * window_accumulate and argmax_labels); only finished labels or logits are downloaded. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "kernels/window_hd.h"
#include "../ops/ops.h"

void sarco_sw_plan_free(sarco_sw_plan *plan) {
    if (!plan) return;
    for (int i = 0; i < 3; i++) {
        free(plan->starts[i]);
        plan->starts[i] = NULL;
    }
}

sarco_status sarco_sw_plan_make(sarco_context *ctx, const sarco_sw_params *p, const int64_t *size, sarco_sw_plan *plan) {
    memset(plan, 0, sizeof *plan);
    if (p->nsp != 2 && p->nsp != 3)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: %d spatial dims (need 2 or 3)", p->nsp);
    if (p->sw_batch < 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: sw_batch_size %lld < 1",
                          (long long)p->sw_batch);
    if (p->mode != SARCO_SW_CONSTANT && p->mode != SARCO_SW_GAUSSIAN)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: unknown blend mode %d", (int)p->mode);
    plan->nsp = p->nsp;
    for (int i = 0; i < 3; i++) {
        if (i >= p->nsp) { /* a 2-D image is a 3-D one with one plane on a trailing axis */
            plan->size[i] = plan->padded[i] = plan->roi[i] = plan->interval[i] = plan->nstart[i] = 1;
            plan->starts[i] = calloc(1, sizeof(int64_t));
            if (!plan->starts[i]) goto oom;
            continue;
        }
        if (size[i] < 1 || size[i] > (1 << 24))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: image size %lld on axis %d",
                              (long long)size[i], i);
        double ov = p->overlap[i];
        if (!(ov >= 0.0 && ov < 1.0))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: overlap %g on axis %d is not in [0, 1)",
                              ov, i);
        if (p->mode == SARCO_SW_GAUSSIAN && !(p->sigma_scale[i] > 0.0 && isfinite(p->sigma_scale[i])))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: sigma_scale %g on axis %d is not > 0",
                              p->sigma_scale[i], i);
        int64_t roi = p->roi[i] > 0 ? p->roi[i] : size[i];
        if (roi > (1 << 16))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: roi %lld on axis %d is too large",
                              (long long)roi, i);
        plan->size[i] = size[i];
        plan->roi[i] = roi;
        plan->padded[i] = size[i] > roi ? size[i] : roi;
        plan->pad_lo[i] = (plan->padded[i] - size[i]) / 2;
        int64_t img = plan->padded[i];
        int64_t interval;
        if (roi == img) {
            interval = roi;
        } else {
            interval = (int64_t)((double)roi * (1.0 - ov)); /* Python int() truncates */
            if (interval < 1) interval = 1;
        }
        plan->interval[i] = interval;
        /* dense_patch_slices: the first d with d * interval + roi >= img, plus one */
        int64_t num = (img + interval - 1) / interval, n = 1;
        for (int64_t d = 0; d < num; d++)
            if (d * interval + roi >= img) {
                n = d + 1;
                break;
            }
        if (n > SARCO_SW_MAX_STARTS)
            return sarco_fail(ctx, SARCO_ERR_LIMIT, "sliding window: %lld windows on axis %d", (long long)n, i);
        plan->nstart[i] = n;
        plan->starts[i] = malloc((size_t)n * sizeof(int64_t));
        if (!plan->starts[i]) goto oom;
        for (int64_t d = 0; d < n; d++) {
            int64_t s = d * interval;
            int64_t over = s + roi - img;
            plan->starts[i][d] = s - (over > 0 ? over : 0);
        }
    }
    plan->nwin = plan->nstart[0] * plan->nstart[1] * plan->nstart[2];
    return SARCO_OK;
oom:
    sarco_sw_plan_free(plan);
    return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sliding window: out of memory");
}

void sarco_sw_importance_map(const sarco_sw_params *p, const int64_t *roi, float *w) {
    int64_t r0 = roi[0], r1 = p->nsp > 1 ? roi[1] : 1, r2 = p->nsp > 2 ? roi[2] : 1;
    int64_t n = r0 * r1 * r2;
    if (p->mode == SARCO_SW_CONSTANT) {
        for (int64_t i = 0; i < n; i++) w[i] = 1.0f;
        return;
    }
    float *g0 = malloc((size_t)(r0 + r1 + r2) * sizeof(float));
    if (!g0) { /* cannot happen for sane sizes; fall back to the constant map rather than crash */
        for (int64_t i = 0; i < n; i++) w[i] = 1.0f;
        return;
    }
    float *g1 = g0 + r0, *g2 = g1 + r1;
    const int64_t rr[3] = {r0, r1, r2};
    float *gs[3] = {g0, g1, g2};
    for (int a = 0; a < 3; a++) {
        if (a >= p->nsp) {
            gs[a][0] = 1.0f;
            continue;
        }
        double sigma = (double)rr[a] * p->sigma_scale[a];
        float neg2sig2 = (float)(-2.0 * sigma * sigma);
        for (int64_t i = 0; i < rr[a]; i++) gs[a][i] = sarco_gauss_1d(i, rr[a], neg2sig2);
    }
    float mn = INFINITY;
    for (int64_t i = 0; i < r0; i++)
        for (int64_t j = 0; j < r1; j++) {
            float gij = g0[i] * g1[j];
            for (int64_t k = 0; k < r2; k++) {
                /* torch: (g0 g1) * g2 on the 3-D map; a 2-D map has no third factor (x1 is exact) */
                float v = p->nsp > 2 ? gij * g2[k] : gij;
                w[(i * r1 + j) * r2 + k] = v;
                if (v < mn) mn = v;
            }
        }
    float floor_v = mn > 1e-3f ? mn : 1e-3f; /* max(min, 1e-3): the Python float 1e-3 as float32 */
    for (int64_t i = 0; i < n; i++) w[i] = sarco_gauss_clamp(w[i], floor_v);
    free(g0);
}

typedef struct sw_state {
    sarco_context *ctx;
    sarco_backend *be;     /* ctx->be, or a CPU backend of this call's own (contexts without one) */
    const sarco_sw_params *p;
    sarco_sw_plan plan;
    int64_t cin, cout;
    int64_t tile;          /* roi0 * roi1 * roi2 */
    int64_t plane;         /* padded1 * padded2 */
    int64_t slab_rows;     /* roi0 */
    int crop;              /* axes 1 or 2 are padded: outputs go through `stage` */
    float *logits;         /* the output (cout, size...), or NULL */
    uint16_t *labels;      /* the output (size...), or NULL */
    /* backend buffers */
    float *acc;            /* (cout, slab_rows, padded1, padded2) */
    float *cnt;            /* (slab_rows, padded1, padded2) */
    float *wmap;           /* (roi...); NULL in constant mode */
    float *xd, *yd;        /* (batch, cin, roi...), (batch, cout, roi...) */
    void *outd;            /* one channel of logits or the labels of up to slab_rows rows */
    size_t acc_bytes, cnt_bytes, w_bytes, xt_bytes, yt_bytes, out_bytes;
    /* host buffers */
    float *xt, *yt;        /* the predictor's tiles (yt only when it works on the host) */
    void *stage;           /* outputs before the crop (crop only) */
    int64_t base;          /* padded row of slab row 0 */
} sw_state;

static void sw_free(sw_state *s) {
    void *dev[] = {s->acc, s->cnt, s->wmap, s->xd, s->yd, s->outd};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        if (dev[i]) s->be->ops->free(s->be, dev[i]);
    sarco_ctx_free(s->ctx, s->xt, s->xt_bytes);
    sarco_ctx_free(s->ctx, s->yt, s->yt_bytes);
    sarco_ctx_free(s->ctx, s->stage, s->out_bytes);
    sarco_sw_plan_free(&s->plan);
}

static int bytes_of(int64_t a, int64_t b, int64_t c, size_t *out) {
    size_t t;
    if (a < 0 || b < 0 || c < 0) return 0;
    if (!sarco_mul_size((size_t)a, (size_t)b, &t) || !sarco_mul_size(t, (size_t)c, &t) ||
        !sarco_mul_size(t, sizeof(float), &t))
        return 0;
    *out = t;
    return 1;
}

/* Copies window `starts` (padded coords) of x (cin, size...) into dst (cin, roi...). */
static void extract_tile(const sw_state *s, const float *x, const int64_t *st, float *dst) {
    const sarco_sw_plan *pl = &s->plan;
    const int64_t R0 = pl->roi[0], R1 = pl->roi[1], R2 = pl->roi[2];
    const int64_t S0 = pl->size[0], S1 = pl->size[1], S2 = pl->size[2];
    const float cval = s->p->cval;
    for (int64_t c = 0; c < s->cin; c++) {
        const float *xc = x + c * S0 * S1 * S2;
        float *dc = dst + c * s->tile;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < R0; i++) {
            int64_t xi = st[0] + i - pl->pad_lo[0];
            for (int64_t j = 0; j < R1; j++) {
                int64_t xj = st[1] + j - pl->pad_lo[1];
                float *d = dc + (i * R1 + j) * R2;
                if (xi < 0 || xi >= S0 || xj < 0 || xj >= S1) {
                    for (int64_t k = 0; k < R2; k++) d[k] = cval;
                    continue;
                }
                const float *row = xc + (xi * S1 + xj) * S2;
                for (int64_t k = 0; k < R2; k++) {
                    int64_t xk = st[2] + k - pl->pad_lo[2];
                    d[k] = (xk < 0 || xk >= S2) ? cval : row[xk];
                }
            }
        }
    }
}

/* Downloads rows (padded1, padded2) of `es`-byte elements from outd into dst (rows, size1, size2). */
static sarco_status fetch_rows(sw_state *s, int64_t rows, size_t es, void *dst) {
    const sarco_sw_plan *pl = &s->plan;
    if (!s->crop) return s->be->ops->download(s->be, dst, s->outd, (size_t)(rows * s->plane) * es);
    sarco_status st = s->be->ops->download(s->be, s->stage, s->outd, (size_t)(rows * s->plane) * es);
    if (st != SARCO_OK) return st;
    const int64_t S1 = pl->size[1], S2 = pl->size[2], P1 = pl->padded[1], P2 = pl->padded[2];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < S1; j++)
            memcpy((char *)dst + (size_t)((r * S1 + j) * S2) * es,
                   (const char *)s->stage + (size_t)((r * P1 + j + pl->pad_lo[1]) * P2 + pl->pad_lo[2]) * es,
                   (size_t)S2 * es);
    return SARCO_OK;
}

/* Slab rows [n, slab_rows) of one channel move to the front, the rest is zeroed. A device copy may
 * not overlap itself, so the move goes in pieces of at most n rows (in stream order). */
static sarco_status slide(sw_state *s, float *chan, int64_t n) {
    const sarco_backend_ops *o = s->be->ops;
    int64_t keep = s->slab_rows - n;
    sarco_status st = SARCO_OK;
    for (int64_t r = 0; r < keep && st == SARCO_OK; r += n) {
        int64_t len = keep - r < n ? keep - r : n;
        st = o->copy(s->be, chan + r * s->plane, chan + (r + n) * s->plane, (size_t)(len * s->plane) * sizeof(float));
    }
    if (st == SARCO_OK) st = o->memset0(s->be, chan + keep * s->plane, (size_t)(n * s->plane) * sizeof(float));
    return st;
}

/* Finishes padded rows [base, upto): labels or logits of the rows inside the image, then slides. */
static sarco_status flush_rows(sw_state *s, int64_t upto) {
    const sarco_sw_plan *pl = &s->plan;
    const sarco_backend_ops *o = s->be->ops;
    int64_t n = upto - s->base;
    if (n <= 0) return SARCO_OK;
    if (n > s->slab_rows) /* windows advance by at most roi0 rows; anything else is a bug */
        return sarco_fail(s->ctx, SARCO_ERR_INTERNAL, "sliding window: slab skipped %lld rows", (long long)n);
    int64_t lo = s->base, hi = upto;
    int64_t img_lo = pl->pad_lo[0], img_hi = pl->pad_lo[0] + pl->size[0];
    if (lo < img_lo) lo = img_lo;
    if (hi > img_hi) hi = img_hi;
    const int64_t chan = s->slab_rows * s->plane, img_plane = pl->size[1] * pl->size[2];
    sarco_status st = SARCO_OK;
    if (hi > lo) {
        int64_t rows = hi - lo, off = (lo - s->base) * s->plane, r0 = lo - img_lo;
        if (s->labels) {
            st = o->argmax_labels(s->be, s->cout, rows * s->plane, chan, s->acc + off, s->cnt + off, 16, s->outd);
            if (st == SARCO_OK) st = fetch_rows(s, rows, sizeof(uint16_t), s->labels + r0 * img_plane);
        } else {
            /* (rows, plane) so the CPU backend splits the division across its threads */
            sarco_bcast_desc d = {2, {rows, s->plane}, {s->plane, 1}, {s->plane, 1}};
            for (int64_t c = 0; c < s->cout && st == SARCO_OK; c++) {
                st = o->binary(s->be, SARCO_BIN_DIV, &d, s->acc + c * chan + off, s->cnt + off, s->outd);
                if (st == SARCO_OK)
                    st = fetch_rows(s, rows, sizeof(float), s->logits + (c * pl->size[0] + r0) * img_plane);
            }
        }
    }
    if (upto < pl->padded[0]) { /* after the last rows there is nothing left to slide */
        for (int64_t c = 0; c < s->cout && st == SARCO_OK; c++) st = slide(s, s->acc + c * chan, n);
        if (st == SARCO_OK) st = slide(s, s->cnt, n);
    }
    s->base = upto;
    return st;
}

/* Allocation chains: each does nothing once *st holds an error. */
static void *dev_alloc(sw_state *s, size_t bytes, sarco_status *st) {
    void *p = NULL;
    if (*st == SARCO_OK) *st = s->be->ops->alloc(s->be, bytes, &p);
    return p;
}

static void *host_alloc(sw_state *s, size_t bytes, const char *what, sarco_status *st) {
    void *p = NULL;
    if (*st == SARCO_OK && !(p = sarco_ctx_malloc(s->ctx, bytes, what))) *st = SARCO_ERR_OUT_OF_MEMORY;
    return p;
}

static sarco_status sw_run(sarco_context *ctx, const sarco_sw_params *p, int64_t cin, int64_t cout, const int64_t *size,
                           const float *x, sarco_sw_predict_fn predict, void *predict_user, float *logits,
                           uint16_t *labels) {
    if (!p || !size || !x || !predict || cin < 1 || cout < 1 || cout > 65535)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: bad arguments (cin %lld, cout %lld)",
                          (long long)cin, (long long)cout);
    sw_state s;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    s.be = ctx->be;
    s.p = p;
    s.cin = cin;
    s.cout = cout;
    s.logits = logits;
    s.labels = labels;
    sarco_status st = sarco_sw_plan_make(ctx, p, size, &s.plan);
    if (st != SARCO_OK) return st;
    const sarco_sw_plan *pl = &s.plan;
    s.tile = pl->roi[0] * pl->roi[1] * pl->roi[2];
    s.plane = pl->padded[1] * pl->padded[2];
    s.slab_rows = pl->roi[0];
    s.crop = pl->padded[1] != pl->size[1] || pl->padded[2] != pl->size[2];
    int64_t nb = p->sw_batch < pl->nwin ? p->sw_batch : pl->nwin;
    if (!bytes_of(cout * s.slab_rows, s.plane, 1, &s.acc_bytes) || !bytes_of(s.slab_rows, s.plane, 1, &s.cnt_bytes) ||
        !bytes_of(s.tile, 1, 1, &s.w_bytes) || !bytes_of(nb * cin, s.tile, 1, &s.xt_bytes) ||
        !bytes_of(nb * cout, s.tile, 1, &s.yt_bytes)) {
        sw_free(&s);
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "sliding window: buffer sizes overflow");
    }
    s.out_bytes = s.cnt_bytes; /* one channel of rows: floats, or labels in half of it */
    int gauss = p->mode == SARCO_SW_GAUSSIAN;
    float *wh = NULL;
    s.acc = dev_alloc(&s, s.acc_bytes, &st);
    s.cnt = dev_alloc(&s, s.cnt_bytes, &st);
    if (gauss) s.wmap = dev_alloc(&s, s.w_bytes, &st);
    if (p->tiles_on_backend) s.xd = dev_alloc(&s, s.xt_bytes, &st);
    s.yd = dev_alloc(&s, s.yt_bytes, &st);
    s.outd = dev_alloc(&s, s.out_bytes, &st);
    s.xt = host_alloc(&s, s.xt_bytes, "sliding window input tiles", &st);
    if (!p->tiles_on_backend) s.yt = host_alloc(&s, s.yt_bytes, "sliding window output tiles", &st);
    if (s.crop) s.stage = host_alloc(&s, s.out_bytes, "sliding window output rows", &st);
    if (gauss) wh = host_alloc(&s, s.w_bytes, "sliding window importance map", &st);
    if (st == SARCO_OK) st = s.be->ops->memset0(s.be, s.acc, s.acc_bytes);
    if (st == SARCO_OK) st = s.be->ops->memset0(s.be, s.cnt, s.cnt_bytes);
    if (st == SARCO_OK && gauss) { /* built on the host once, uploaded once */
        sarco_sw_importance_map(p, pl->roi, wh);
        st = s.be->ops->upload(s.be, s.wmap, wh, s.w_bytes);
    }
    sarco_ctx_free(ctx, wh, s.w_bytes);
    if (st != SARCO_OK) {
        sw_free(&s);
        return st;
    }

    sarco_window_desc wd = {cout, {pl->roi[0], pl->roi[1], pl->roi[2]}, {s.slab_rows, pl->padded[1], pl->padded[2]},
                            {0, 0, 0}};
    int64_t tile_shape[5] = {0, cin, pl->roi[0], pl->roi[1], pl->roi[2]};
    const int64_t n12 = pl->nstart[1] * pl->nstart[2];
    int64_t done = 0;
    st = sarco_progress(ctx, "windows", 0, pl->nwin);
    for (int64_t g = 0; g < pl->nstart[0] && st == SARCO_OK; g++) {
        int64_t s0 = pl->starts[0][g];
        st = flush_rows(&s, s0);
        /* the windows of this row group, in batches (batching does not change the sums) */
        for (int64_t w0 = 0; w0 < n12 && st == SARCO_OK; w0 += nb) {
            int64_t bn = n12 - w0 < nb ? n12 - w0 : nb;
            for (int64_t b = 0; b < bn; b++) {
                int64_t w = w0 + b;
                const int64_t stb[3] = {s0, pl->starts[1][w / pl->nstart[2]], pl->starts[2][w % pl->nstart[2]]};
                extract_tile(&s, x, stb, s.xt + b * cin * s.tile);
            }
            tile_shape[0] = bn;
            if (p->nsp == 2) tile_shape[4] = 0;
            size_t ybytes = (size_t)(bn * cout * s.tile) * sizeof(float);
            if (p->tiles_on_backend) {
                st = s.be->ops->upload(s.be, s.xd, s.xt, (size_t)(bn * cin * s.tile) * sizeof(float));
                if (st == SARCO_OK) st = predict(predict_user, ctx, p->nsp, tile_shape, s.xd, s.yd);
            } else {
                st = predict(predict_user, ctx, p->nsp, tile_shape, s.xt, s.yt);
                if (st == SARCO_OK) st = s.be->ops->upload(s.be, s.yd, s.yt, ybytes);
            }
            for (int64_t b = 0; b < bn && st == SARCO_OK; b++) {
                int64_t w = w0 + b;
                wd.st[0] = s0 - s.base;
                wd.st[1] = pl->starts[1][w / pl->nstart[2]];
                wd.st[2] = pl->starts[2][w % pl->nstart[2]];
                st = s.be->ops->window_accumulate(s.be, &wd, s.yd + b * cout * s.tile, s.wmap, s.acc, s.cnt);
            }
            if (st == SARCO_OK) {
                done += bn;
                st = sarco_progress(ctx, "windows", done, pl->nwin);
            }
        }
    }
    if (st == SARCO_OK) st = flush_rows(&s, pl->padded[0]);
    sw_free(&s);
    return st;
}

/* Runs sw_run on ctx's backend. Contexts without one (NULL, or the tests' bare ones) blend on a CPU
 * backend made for the call, counted against ctx's memory limit. */
static sarco_status sw_on_backend(sarco_context *ctx, const sarco_sw_params *p, int64_t cin, int64_t cout,
                                  const int64_t *size, const float *x, sarco_sw_predict_fn predict, void *user,
                                  float *logits, uint16_t *labels) {
    if (ctx && ctx->be) return sw_run(ctx, p, cin, cout, size, x, predict, user, logits, labels);
    if (p && p->tiles_on_backend)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: backend tiles but no backend");
    sarco_context local;
    memset(&local, 0, sizeof local);
    sarco_context *c = ctx ? ctx : &local;
    sarco_status st = sarco_backend_create_cpu(c, &c->be);
    if (st == SARCO_OK) {
        st = sw_run(c, p, cin, cout, size, x, predict, user, logits, labels);
        c->be->ops->destroy(c->be);
        c->be = NULL;
    }
    if (st != SARCO_OK && c == &local) sarco_fail(NULL, st, "%s", local.err); /* NULL ctx: logged only */
    return st;
}

sarco_status sarco_sw_logits(sarco_context *ctx, const sarco_sw_params *p, int64_t cin, int64_t cout,
                             const int64_t *size, const float *x, sarco_sw_predict_fn predict, void *predict_user,
                             float *y) {
    if (!y) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: NULL output");
    return sw_on_backend(ctx, p, cin, cout, size, x, predict, predict_user, y, NULL);
}

sarco_status sarco_sw_labels(sarco_context *ctx, const sarco_sw_params *p, int64_t cin, int64_t cout,
                             const int64_t *size, const float *x, sarco_sw_predict_fn predict, void *predict_user,
                             uint16_t *labels) {
    if (!labels) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: NULL labels");
    return sw_on_backend(ctx, p, cin, cout, size, x, predict, predict_user, NULL, labels);
}
