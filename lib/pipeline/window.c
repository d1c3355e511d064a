/* Sliding-window inference with MONAI's semantics (monai.inferers.sliding_window_inference):
 * centred constant padding for images smaller than the roi, scan interval int(roi (1 - overlap)),
 * the last window shifted back to end at the border, constant or Gaussian blending, output =
 * sum(pred * w) / sum(w) in float32 summed in MONAI's window order.
 *
 * Memory: windows run with the first spatial axis outermost (MONAI's order), so once every
 * window starting at row s has run, rows < s are final. The engine keeps a slab of roi0 rows
 * (cout x roi0 x H x W floats plus the weight sums), hands finished rows to a sink and slides. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "kernels/window_hd.h"

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
    const sarco_sw_params *p;
    sarco_sw_plan plan;
    int64_t cin, cout;
    int64_t tile;          /* roi0 * roi1 * roi2 */
    int64_t plane;         /* padded1 * padded2 */
    int64_t slab_rows;     /* roi0 */
    float *acc;            /* (cout, slab_rows, padded1, padded2) */
    float *cnt;            /* (slab_rows, padded1, padded2) */
    float *wmap;           /* (roi...) */
    float *xt, *yt;        /* (batch, cin, roi...), (batch, cout, roi...) */
    size_t acc_bytes, cnt_bytes, w_bytes, xt_bytes, yt_bytes;
    int64_t base;          /* padded row of slab row 0 */
} sw_state;

static void sw_free(sw_state *s) {
    sarco_ctx_free(s->ctx, s->acc, s->acc_bytes);
    sarco_ctx_free(s->ctx, s->cnt, s->cnt_bytes);
    sarco_ctx_free(s->ctx, s->wmap, s->w_bytes);
    sarco_ctx_free(s->ctx, s->xt, s->xt_bytes);
    sarco_ctx_free(s->ctx, s->yt, s->yt_bytes);
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

/* acc += y * w and cnt += w for one window (MONAI's per-window order). */
static void accumulate(sw_state *s, const float *y, const int64_t *st) {
    const sarco_sw_plan *pl = &s->plan;
    const int64_t R0 = pl->roi[0], R1 = pl->roi[1], R2 = pl->roi[2];
    const int64_t P1 = pl->padded[1], P2 = pl->padded[2];
    const int64_t r_off = st[0] - s->base;
    const int64_t chan = s->slab_rows * s->plane;
    const float *w = s->wmap;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t c = 0; c < s->cout; c++)
        for (int64_t i = 0; i < R0; i++) {
            const float *yc = y + c * s->tile + i * R1 * R2;
            float *ac = s->acc + c * chan + (r_off + i) * s->plane;
            const float *wi = w + i * R1 * R2;
            for (int64_t j = 0; j < R1; j++) {
                float *arow = ac + (st[1] + j) * P2 + st[2];
                const float *yrow = yc + j * R2;
                const float *wrow = wi + j * R2;
                for (int64_t k = 0; k < R2; k++) sarco_window_accumulate(&arow[k], yrow[k], wrow[k]);
            }
        }
    (void)P1;
    for (int64_t i = 0; i < R0; i++)
        for (int64_t j = 0; j < R1; j++) {
            float *crow = s->cnt + (r_off + i) * s->plane + (st[1] + j) * P2 + st[2];
            const float *wrow = w + (i * R1 + j) * R2;
            for (int64_t k = 0; k < R2; k++) crow[k] += wrow[k];
        }
}

/* Hands padded rows [base, upto) to the sink (only rows inside the image) and slides the slab. */
static sarco_status flush_rows(sw_state *s, int64_t upto, sarco_sw_sink_fn sink, void *user) {
    const sarco_sw_plan *pl = &s->plan;
    int64_t n = upto - s->base;
    if (n <= 0) return SARCO_OK;
    if (n > s->slab_rows) /* windows advance by at most roi0 rows; anything else is a bug */
        return sarco_fail(s->ctx, SARCO_ERR_INTERNAL, "sliding window: slab skipped %lld rows", (long long)n);
    int64_t lo = s->base, hi = upto;
    int64_t img_lo = pl->pad_lo[0], img_hi = pl->pad_lo[0] + pl->size[0];
    if (lo < img_lo) lo = img_lo;
    if (hi > img_hi) hi = img_hi;
    const int64_t chan = s->slab_rows * s->plane;
    if (hi > lo) {
        int64_t off = (lo - s->base) * s->plane;
        sarco_status st = sink(user, pl, s->cout, lo - img_lo, hi - img_lo, s->acc + off, s->cnt + off, chan);
        if (st != SARCO_OK) return st;
    }
    /* slide: keep rows [upto, base + slab_rows) at the front, zero the rest */
    int64_t keep = s->slab_rows - n;
    if (keep < 0) keep = 0;
    for (int64_t c = 0; c < s->cout; c++) {
        float *ac = s->acc + c * chan;
        if (keep) memmove(ac, ac + n * s->plane, (size_t)(keep * s->plane) * sizeof(float));
        memset(ac + keep * s->plane, 0, (size_t)((s->slab_rows - keep) * s->plane) * sizeof(float));
    }
    if (keep) memmove(s->cnt, s->cnt + n * s->plane, (size_t)(keep * s->plane) * sizeof(float));
    memset(s->cnt + keep * s->plane, 0, (size_t)((s->slab_rows - keep) * s->plane) * sizeof(float));
    s->base = upto;
    return SARCO_OK;
}

sarco_status sarco_sw_run(sarco_context *ctx, const sarco_sw_params *p, int64_t cin, int64_t cout, const int64_t *size,
                          const float *x, sarco_sw_predict_fn predict, void *predict_user, sarco_sw_sink_fn sink,
                          void *sink_user) {
    if (!p || !size || !x || !predict || !sink || cin < 1 || cout < 1 || cout > 65535)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: bad arguments (cin %lld, cout %lld)",
                          (long long)cin, (long long)cout);
    sw_state s;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    s.p = p;
    s.cin = cin;
    s.cout = cout;
    sarco_status st = sarco_sw_plan_make(ctx, p, size, &s.plan);
    if (st != SARCO_OK) return st;
    const sarco_sw_plan *pl = &s.plan;
    s.tile = pl->roi[0] * pl->roi[1] * pl->roi[2];
    s.plane = pl->padded[1] * pl->padded[2];
    s.slab_rows = pl->roi[0];
    int64_t nb = p->sw_batch < pl->nwin ? p->sw_batch : pl->nwin;
    if (!bytes_of(cout * s.slab_rows, s.plane, 1, &s.acc_bytes) || !bytes_of(s.slab_rows, s.plane, 1, &s.cnt_bytes) ||
        !bytes_of(s.tile, 1, 1, &s.w_bytes) || !bytes_of(nb * cin, s.tile, 1, &s.xt_bytes) ||
        !bytes_of(nb * cout, s.tile, 1, &s.yt_bytes)) {
        sw_free(&s);
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "sliding window: buffer sizes overflow");
    }
    s.acc = sarco_ctx_malloc(ctx, s.acc_bytes, "sliding window blend slab");
    s.cnt = s.acc ? sarco_ctx_malloc(ctx, s.cnt_bytes, "sliding window weight slab") : NULL;
    s.wmap = s.cnt ? sarco_ctx_malloc(ctx, s.w_bytes, "sliding window importance map") : NULL;
    s.xt = s.wmap ? sarco_ctx_malloc(ctx, s.xt_bytes, "sliding window input tiles") : NULL;
    s.yt = s.xt ? sarco_ctx_malloc(ctx, s.yt_bytes, "sliding window output tiles") : NULL;
    if (!s.yt) {
        sw_free(&s);
        return SARCO_ERR_OUT_OF_MEMORY; /* the message is set by sarco_ctx_malloc */
    }
    sarco_sw_importance_map(p, pl->roi, s.wmap);

    int64_t tile_shape[5] = {0, cin, pl->roi[0], pl->roi[1], pl->roi[2]};
    const int64_t n12 = pl->nstart[1] * pl->nstart[2];
    int64_t done = 0;
    st = sarco_progress(ctx, "windows", 0, pl->nwin);
    for (int64_t g = 0; g < pl->nstart[0] && st == SARCO_OK; g++) {
        int64_t s0 = pl->starts[0][g];
        st = flush_rows(&s, s0, sink, sink_user);
        /* the windows of this row group, in batches (batching does not change the sums) */
        for (int64_t w0 = 0; w0 < n12 && st == SARCO_OK; w0 += nb) {
            int64_t bn = n12 - w0 < nb ? n12 - w0 : nb;
            int64_t stt[64][3];
            int64_t (*starts)[3] = bn <= 64 ? stt : malloc((size_t)bn * sizeof *starts);
            if (!starts) {
                st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sliding window: out of memory");
                break;
            }
            for (int64_t b = 0; b < bn; b++) {
                int64_t w = w0 + b;
                starts[b][0] = s0;
                starts[b][1] = pl->starts[1][w / pl->nstart[2]];
                starts[b][2] = pl->starts[2][w % pl->nstart[2]];
                extract_tile(&s, x, starts[b], s.xt + b * cin * s.tile);
            }
            tile_shape[0] = bn;
            if (p->nsp == 2) tile_shape[4] = 0;
            st = predict(predict_user, ctx, p->nsp, tile_shape, s.xt, s.yt);
            if (st == SARCO_OK) {
                for (int64_t b = 0; b < bn; b++) accumulate(&s, s.yt + b * cout * s.tile, starts[b]);
                done += bn;
                st = sarco_progress(ctx, "windows", done, pl->nwin);
            }
            if (starts != stt) free(starts);
        }
    }
    if (st == SARCO_OK) st = flush_rows(&s, pl->padded[0], sink, sink_user);
    sw_free(&s);
    return st;
}

/* ---- sinks -------------------------------------------------------------------------------- */

typedef struct {
    float *y;
} logits_sink;

static sarco_status sink_logits(void *user, const sarco_sw_plan *pl, int64_t cout, int64_t r0, int64_t r1,
                                const float *blend, const float *cnt, int64_t chan) {
    float *y = ((logits_sink *)user)->y;
    const int64_t S0 = pl->size[0], S1 = pl->size[1], S2 = pl->size[2];
    const int64_t P1 = pl->padded[1], P2 = pl->padded[2];
    const int64_t o1 = pl->pad_lo[1], o2 = pl->pad_lo[2];
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t c = 0; c < cout; c++)
        for (int64_t r = r0; r < r1; r++) {
            const float *b = blend + c * chan + (r - r0) * P1 * P2;
            const float *w = cnt + (r - r0) * P1 * P2;
            float *yr = y + (c * S0 + r) * S1 * S2;
            for (int64_t j = 0; j < S1; j++)
                for (int64_t k = 0; k < S2; k++) {
                    int64_t q = (j + o1) * P2 + (k + o2);
                    yr[j * S2 + k] = b[q] / w[q];
                }
        }
    return SARCO_OK;
}

sarco_status sarco_sw_logits(sarco_context *ctx, const sarco_sw_params *p, int64_t cin, int64_t cout,
                             const int64_t *size, const float *x, sarco_sw_predict_fn predict, void *predict_user,
                             float *y) {
    if (!y) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: NULL output");
    logits_sink ls = {y};
    return sarco_sw_run(ctx, p, cin, cout, size, x, predict, predict_user, sink_logits, &ls);
}

typedef struct {
    uint16_t *labels;
} labels_sink;

static sarco_status sink_labels(void *user, const sarco_sw_plan *pl, int64_t cout, int64_t r0, int64_t r1,
                                const float *blend, const float *cnt, int64_t chan) {
    uint16_t *lab = ((labels_sink *)user)->labels;
    const int64_t S1 = pl->size[1], S2 = pl->size[2];
    const int64_t P1 = pl->padded[1], P2 = pl->padded[2];
    const int64_t o1 = pl->pad_lo[1], o2 = pl->pad_lo[2];
#pragma omp parallel for schedule(static)
    for (int64_t r = r0; r < r1; r++) {
        const float *b = blend + (r - r0) * P1 * P2;
        const float *w = cnt + (r - r0) * P1 * P2;
        uint16_t *lr = lab + r * S1 * S2;
        for (int64_t j = 0; j < S1; j++)
            for (int64_t k = 0; k < S2; k++) {
                int64_t q = (j + o1) * P2 + (k + o2);
                lr[j * S2 + k] = sarco_argmax_div(b + q, cout, chan, w[q]);
            }
    }
    return SARCO_OK;
}

sarco_status sarco_sw_labels(sarco_context *ctx, const sarco_sw_params *p, int64_t cin, int64_t cout,
                             const int64_t *size, const float *x, sarco_sw_predict_fn predict, void *predict_user,
                             uint16_t *labels) {
    if (!labels) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sliding window: NULL labels");
    labels_sink ls = {labels};
    return sarco_sw_run(ctx, p, cin, cout, size, x, predict, predict_user, sink_labels, &ls);
}
