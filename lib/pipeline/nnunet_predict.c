/* nnUNetPredictor on the preprocessed image, then the export:
 *   padding of axes smaller than the patch (centred, 0), compute_steps_for_sliding_window (step 0.5),
 *   the Gaussian importance map (scipy gaussian_filter of a delta, peak 10, fp16, zeros -> smallest
 *   non-zero), test-time mirroring (every combination of the allowed axes, itertools order, summed in
 *   fp32 and divided), accumulation in fp16 the way torch does it on the CPU (each add computed in
 *   fp32 and rounded to fp16) or in fp32 (option), division, fold average (fp16 adds, one division);
 *   export: logits back to the cropped grid (order 1, separate z when anisotropic, fp16 result),
 *   argmax (first index wins) or regions (sigmoid > 0.5, later regions overwrite), uncrop, transpose
 *   back, stored postprocessing (largest connected component, full connectivity).
 * Memory: the model-grid accumulators (heads x voxels, 2 bytes each in exact mode, twice while folds
 * are summed, plus one weight per voxel); labels are made at the input resolution voxel by voxel from
 * those, so no full-resolution all-class buffer exists (except when the plans ask for a spline order
 * other than 1 for probabilities: then one fp16 buffer of heads x cropped voxels). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnunet_pipeline.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- Gaussian and steps -------------------------------------------------------------------- */

/* numpy's pairwise sum of a float64 array (n <= 128: 8 partial sums, unrolled as numpy does) */
static double np_sum(const double *a, int64_t n) {
    if (n < 8) {
        double r = 0.0; /* numpy starts from -0.0 for n < 8; the sign of zero does not matter here */
        for (int64_t i = 0; i < n; i++) r += a[i];
        return r;
    }
    if (n <= 128) {
        double r[8];
        for (int k = 0; k < 8; k++) r[k] = a[k];
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[i + k];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return np_sum(a, n2) + np_sum(a + n2, n - n2);
}

/* scipy _gaussian_kernel1d(sigma, 0, radius): exp(-0.5 / sigma^2 * x^2) / its sum */
static int gauss_kernel(double sigma, double *k, int max_radius) {
    int r = (int)(4.0 * sigma + 0.5);
    if (r > max_radius) r = max_radius;
    double s2 = sigma * sigma;
    for (int x = -r; x <= r; x++) k[x + r] = exp(-0.5 / s2 * (double)(x * x));
    double sum = np_sum(k, 2 * r + 1);
    for (int i = 0; i < 2 * r + 1; i++) k[i] = k[i] / sum;
    return r;
}

void sarco_nn_gaussian(int nsp, const int64_t *patch, uint16_t *w) {
    int64_t p[3] = {1, 1, 1};
    for (int i = 0; i < nsp; i++) p[3 - nsp + i] = patch[i];
    /* per axis: the kernel value at each position's distance from the centre P // 2 (0 beyond) */
    double *val[3];
    for (int a = 0; a < 3; a++) {
        val[a] = calloc((size_t)p[a], sizeof(double));
        if (!val[a]) {
            for (int b = 0; b < a; b++) free(val[b]);
            memset(w, 0, (size_t)(p[0] * p[1] * p[2]) * sizeof *w);
            return;
        }
        if (a < 3 - nsp) {
            val[a][0] = 1.0;
            continue;
        }
        int maxr = 8192;
        double *k = malloc((size_t)(2 * maxr + 1) * sizeof(double));
        if (!k) {
            val[a][p[a] / 2] = 1.0;
            continue;
        }
        int r = gauss_kernel((double)p[a] * 0.125, k, maxr);
        for (int64_t i = 0; i < p[a]; i++) {
            int64_t d = i - p[a] / 2;
            val[a][i] = (d >= -r && d <= r) ? k[d + r] : 0.0;
        }
        free(k);
    }
    /* the filter runs axis 0, 1, 2 on a delta: each value is one product, rounded in that order */
    const int64_t n = p[0] * p[1] * p[2];
    double mx = val[0][p[0] / 2] * val[1][p[1] / 2] * val[2][p[2] / 2];
    double scale = mx / 10.0;
    uint16_t minnz = 0x7c00;
    for (int64_t a = 0; a < p[0]; a++)
        for (int64_t b = 0; b < p[1]; b++)
            for (int64_t c = 0; c < p[2]; c++) {
                double g = val[0][a] * val[1][b] * val[2][c];
                uint16_t h = sarco_f16_from_double_via_float(g / scale);
                w[(a * p[1] + b) * p[2] + c] = h;
                if (h != 0 && h < minnz) minnz = h; /* positive halves order like their bits */
            }
    for (int64_t i = 0; i < n; i++)
        if (w[i] == 0) w[i] = minnz;
    for (int a = 0; a < 3; a++) free(val[a]);
}

int64_t sarco_nn_steps(int64_t size, int64_t patch, double step, int64_t *steps) {
    double target = (double)patch * step;
    int64_t n = (int64_t)ceil((double)(size - patch) / target) + 1;
    if (n < 1) n = 1;
    if (n == 1) {
        steps[0] = 0;
        return 1;
    }
    double actual = (double)(size - patch) / (double)(n - 1);
    for (int64_t i = 0; i < n; i++) steps[i] = (int64_t)nearbyint(actual * (double)i);
    return n;
}

/* ---- the sliding window ---------------------------------------------------------------------- */

typedef struct {
    int nvar;              /* 1 + mirror combinations */
    int flip[8][3];        /* per variant: flip unified axis a */
} mirror_set;

static void make_mirrors(const sarco_nnunet_config *cfg, int on, mirror_set *m) {
    memset(m, 0, sizeof *m);
    m->nvar = 1;
    if (!on || cfg->nmirror == 0) return;
    const int off = 3 - cfg->nsp, n = cfg->nmirror;
    /* itertools.combinations(axes, r) for r = 1..n, in order */
    for (int r = 1; r <= n; r++) {
        int idx[3];
        for (int i = 0; i < r; i++) idx[i] = i;
        for (;;) {
            for (int i = 0; i < r; i++) m->flip[m->nvar][cfg->mirror_axes[idx[i]] + off] = 1;
            m->nvar++;
            int i = r - 1;
            while (i >= 0 && idx[i] == n - r + i) i--;
            if (i < 0) break;
            idx[i]++;
            for (int j = i + 1; j < r; j++) idx[j] = idx[j - 1] + 1;
        }
    }
}

sarco_status sarco_nn_predict_logits(sarco_context *ctx, const sarco_nnunet_config *cfg, const sarco_nn_pre *pre,
                                     const sarco_nn_run_opts *o, sarco_nn_predict_fn predict, void *user,
                                     void **logits_out, size_t *bytes_out, sarco_nn_run_info *info) {
    *logits_out = NULL;
    *bytes_out = 0;
    const int64_t *M = pre->shape_model;
    const int64_t NM = M[0] * M[1] * M[2];
    const int K = cfg->nheads, C = cfg->nchan, fp32 = o->fp32;
    int64_t pp[3] = {1, 1, 1}, padded[3], padlo[3];
    for (int i = 0; i < cfg->nsp; i++) pp[3 - cfg->nsp + i] = cfg->patch[i];
    for (int k = 0; k < 3; k++) {
        padded[k] = M[k] > pp[k] ? M[k] : pp[k];
        padlo[k] = (padded[k] - M[k]) / 2;
    }
    const int64_t NP = pp[0] * pp[1] * pp[2];
    mirror_set ms;
    make_mirrors(cfg, o->mirroring, &ms);
    /* steps; a 2-D configuration visits every slice of axis 0 */
    int64_t *steps[3] = {NULL, NULL, NULL}, nsteps[3];
    size_t stb[3];
    sarco_status s = SARCO_OK;
    for (int k = 0; k < 3; k++) {
        stb[k] = (size_t)(padded[k] + 1) * sizeof(int64_t);
        steps[k] = sarco_ctx_malloc(ctx, stb[k], "nnU-Net: steps");
        if (!steps[k]) {
            s = SARCO_ERR_OUT_OF_MEMORY;
            goto free_steps;
        }
        if (k == 0 && cfg->nsp == 2) {
            nsteps[0] = M[0];
            for (int64_t i = 0; i < M[0]; i++) steps[0][i] = i;
        } else {
            nsteps[k] = sarco_nn_steps(padded[k], pp[k], cfg->tile_step, steps[k]);
        }
    }
    const int64_t nwin = nsteps[0] * nsteps[1] * nsteps[2];
    /* buffers: Gaussian, tile batch, outputs, one fold's accumulators, the fold sum, the weights */
    const size_t eb = fp32 ? sizeof(float) : sizeof(uint16_t);
    size_t gb = (size_t)NP * sizeof(uint16_t), gfb = (size_t)NP * sizeof(float);
    size_t xb = (size_t)(ms.nvar * C) * (size_t)NP * sizeof(float);
    size_t yb = (size_t)(ms.nvar * K) * (size_t)NP * sizeof(float), pb = (size_t)K * (size_t)NP * sizeof(float);
    size_t ab = (size_t)K * (size_t)NM * eb, wb = (size_t)NM * eb;
    uint16_t *G = sarco_ctx_malloc(ctx, gb, "nnU-Net: Gaussian");
    float *Gf = sarco_ctx_malloc(ctx, gfb, "nnU-Net: Gaussian");
    float *X = sarco_ctx_malloc(ctx, xb, "nnU-Net: tiles");
    float *Y = sarco_ctx_malloc(ctx, yb, "nnU-Net: tile logits");
    float *P = sarco_ctx_malloc(ctx, pb, "nnU-Net: mirrored prediction");
    void *A = sarco_ctx_malloc(ctx, ab, "nnU-Net: logit accumulators (model grid)");
    void *W = sarco_ctx_malloc(ctx, wb, "nnU-Net: weight accumulators");
    void *S = NULL;
    if (!G || !Gf || !X || !Y || !P || !A || !W) {
        s = SARCO_ERR_OUT_OF_MEMORY;
        goto out;
    }
    sarco_nn_gaussian(cfg->nsp, cfg->patch, G);
    for (int64_t i = 0; i < NP; i++) Gf[i] = sarco_f16_to_float(G[i]);
    int64_t tile_shape[5] = {ms.nvar, C, 0, 0, 0};
    for (int i = 0; i < cfg->nsp; i++) tile_shape[2 + i] = cfg->patch[i];
    const int64_t total = nwin * o->nfolds;
    int64_t done = 0;
    if ((s = sarco_progress(ctx, "windows", 0, total)) != SARCO_OK) goto out;
    for (int fold = 0; fold < o->nfolds && s == SARCO_OK; fold++) {
        memset(A, 0, ab);
        if (fold == 0) memset(W, 0, wb); /* the weights are the same for every fold */
        for (int64_t w0 = 0; w0 < nsteps[0] && s == SARCO_OK; w0++)
            for (int64_t w1 = 0; w1 < nsteps[1] && s == SARCO_OK; w1++)
                for (int64_t w2 = 0; w2 < nsteps[2] && s == SARCO_OK; w2++) {
                    const int64_t st[3] = {steps[0][w0], steps[1][w1], steps[2][w2]};
                    /* the tile and its mirror variants (zero outside the image = the padding) */
#pragma omp parallel for collapse(2) schedule(static)
                    for (int v = 0; v < ms.nvar; v++)
                        for (int c = 0; c < C; c++) {
                            const float *src = pre->data + (size_t)c * (size_t)NM;
                            float *dst = X + ((size_t)v * (size_t)C + (size_t)c) * (size_t)NP;
                            for (int64_t a = 0; a < pp[0]; a++)
                                for (int64_t b = 0; b < pp[1]; b++)
                                    for (int64_t e = 0; e < pp[2]; e++) {
                                        int64_t ta = ms.flip[v][0] ? pp[0] - 1 - a : a;
                                        int64_t tb = ms.flip[v][1] ? pp[1] - 1 - b : b;
                                        int64_t te = ms.flip[v][2] ? pp[2] - 1 - e : e;
                                        int64_t i0 = st[0] + ta - padlo[0], i1 = st[1] + tb - padlo[1],
                                                i2 = st[2] + te - padlo[2];
                                        float val = 0.0f;
                                        if (i0 >= 0 && i0 < M[0] && i1 >= 0 && i1 < M[1] && i2 >= 0 && i2 < M[2])
                                            val = src[(i0 * M[1] + i1) * M[2] + i2];
                                        dst[(a * pp[1] + b) * pp[2] + e] = val;
                                    }
                        }
                    s = predict(user, ctx, fold, cfg->nsp, tile_shape, X, Y);
                    if (s != SARCO_OK) break;
                    if (info) info->network_calls++;
                    /* prediction + flipped-back variants, in order, then / nvar (fp32) */
                    const float inv = (float)ms.nvar;
#pragma omp parallel for schedule(static)
                    for (int k = 0; k < K; k++) {
                        float *pk = P + (size_t)k * (size_t)NP;
                        memcpy(pk, Y + (size_t)k * (size_t)NP, (size_t)NP * sizeof(float));
                        for (int v = 1; v < ms.nvar; v++) {
                            const float *yk = Y + ((size_t)v * (size_t)K + (size_t)k) * (size_t)NP;
                            for (int64_t a = 0; a < pp[0]; a++)
                                for (int64_t b = 0; b < pp[1]; b++)
                                    for (int64_t e = 0; e < pp[2]; e++) {
                                        int64_t ta = ms.flip[v][0] ? pp[0] - 1 - a : a;
                                        int64_t tb = ms.flip[v][1] ? pp[1] - 1 - b : b;
                                        int64_t te = ms.flip[v][2] ? pp[2] - 1 - e : e;
                                        pk[(a * pp[1] + b) * pp[2] + e] += yk[(ta * pp[1] + tb) * pp[2] + te];
                                    }
                        }
                        if (ms.nvar > 1)
                            for (int64_t i = 0; i < NP; i++) pk[i] /= inv;
                    }
                    /* accumulate the model-grid part of the window (padding is dropped later anyway);
                     * the weights once (the same for every fold) */
                    const int with_w = fold == 0;
#pragma omp parallel for collapse(2) schedule(static)
                    for (int64_t a = 0; a < pp[0]; a++)
                        for (int64_t b = 0; b < pp[1]; b++) {
                            int64_t i0 = st[0] + a - padlo[0], i1 = st[1] + b - padlo[1];
                            if (i0 < 0 || i0 >= M[0] || i1 < 0 || i1 >= M[1]) continue;
                            for (int64_t e = 0; e < pp[2]; e++) {
                                int64_t i2 = st[2] + e - padlo[2];
                                if (i2 < 0 || i2 >= M[2]) continue;
                                const int64_t t = (a * pp[1] + b) * pp[2] + e, m = (i0 * M[1] + i1) * M[2] + i2;
                                const float g = Gf[t];
                                if (fp32) {
                                    float *af = A;
                                    for (int k = 0; k < K; k++)
                                        af[(size_t)k * (size_t)NM + (size_t)m] += P[(size_t)k * (size_t)NP + (size_t)t] * g;
                                    if (with_w) ((float *)W)[m] += g;
                                } else {
                                    /* torch on the CPU: fp32 product, fp16 + fp32 added in fp32, rounded to fp16 */
                                    uint16_t *a16 = A;
                                    for (int k = 0; k < K; k++) {
                                        const size_t ai = (size_t)k * (size_t)NM + (size_t)m;
                                        const float pg = P[(size_t)k * (size_t)NP + (size_t)t] * g;
                                        a16[ai] = sarco_f16_from_float(sarco_f16_to_float(a16[ai]) + pg);
                                    }
                                    if (with_w) {
                                        uint16_t *w16 = W;
                                        w16[m] = sarco_f16_from_float(sarco_f16_to_float(w16[m]) + g);
                                    }
                                }
                            }
                        }
                    done++;
                    if (s == SARCO_OK) s = sarco_progress(ctx, "windows", done, total);
                }
        if (s != SARCO_OK) break;
        /* this fold's logits = accumulators / weights; then the fold sum */
        int inf_found = 0;
#pragma omp parallel for schedule(static) reduction(| : inf_found)
        for (int64_t i = 0; i < (int64_t)K * NM; i++) {
            const int64_t m = i % NM;
            if (fp32) {
                float v = ((float *)A)[i] / ((float *)W)[m];
                ((float *)A)[i] = v;
            } else {
                uint16_t *a16 = A;
                const uint16_t *w16 = W;
                uint16_t h = sarco_f16_from_float(sarco_f16_to_float(a16[i]) / sarco_f16_to_float(w16[m]));
                a16[i] = h;
                inf_found |= (h & 0x7fffu) == 0x7c00u;
            }
        }
        if (inf_found) {
            s = sarco_fail(ctx, SARCO_ERR_LIMIT,
                           "nnU-Net: the fp16 logits overflowed (nnU-Net raises here too); run with fp32 accumulation");
            break;
        }
        if (fold == 0) {
            S = A;
            A = NULL;
            if (o->nfolds > 1) {
                A = sarco_ctx_malloc(ctx, ab, "nnU-Net: logit accumulators (model grid)");
                if (!A) {
                    s = SARCO_ERR_OUT_OF_MEMORY;
                    break;
                }
            }
        } else {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < (int64_t)K * NM; i++) {
                if (fp32) ((float *)S)[i] += ((float *)A)[i];
                else {
                    uint16_t *s16 = S;
                    s16[i] = sarco_f16_from_float(sarco_f16_to_float(s16[i]) + sarco_f16_to_float(((uint16_t *)A)[i]));
                }
            }
        }
    }
    if (s == SARCO_OK && o->nfolds > 1) {
        const float nf = (float)o->nfolds;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < (int64_t)K * NM; i++) {
            if (fp32) ((float *)S)[i] /= nf;
            else {
                uint16_t *s16 = S;
                s16[i] = sarco_f16_from_float(sarco_f16_to_float(s16[i]) / nf);
            }
        }
    }
    if (info) {
        info->windows = nwin;
        info->logit_bytes = ab * (o->nfolds > 1 ? 2 : 1) + wb;
    }
out:
    sarco_ctx_free(ctx, W, wb);
    sarco_ctx_free(ctx, A, ab);
    sarco_ctx_free(ctx, P, pb);
    sarco_ctx_free(ctx, Y, yb);
    sarco_ctx_free(ctx, X, xb);
    sarco_ctx_free(ctx, Gf, gfb);
    sarco_ctx_free(ctx, G, gb);
    if (s == SARCO_OK) {
        *logits_out = S;
        *bytes_out = ab;
    } else {
        sarco_ctx_free(ctx, S, ab);
    }
free_steps:
    for (int k = 0; k < 3; k++) sarco_ctx_free(ctx, steps[k], stb[k]);
    return s;
}

/* ---- export ------------------------------------------------------------------------------------ */

/* The label of one voxel from its heads' values (halves compare like their float values). */
static uint16_t decide(const sarco_nnunet_config *cfg, const double *v) {
    if (cfg->has_regions) {
        uint16_t lab = 0;
        for (int i = 0; i < cfg->nheads; i++) {
            float p = 1.0f / (1.0f + expf(-(float)v[i]));
            if (p > 0.5f) lab = (uint16_t)cfg->regions_class_order[i];
        }
        return lab;
    }
    int best = 0;
    for (int i = 1; i < cfg->nheads; i++)
        if (v[i] > v[best]) best = i;
    return (uint16_t)best;
}

static double logit_at(const void *L, int fp32, size_t i) {
    return fp32 ? (double)((const float *)L)[i] : (double)sarco_f16_to_float(((const uint16_t *)L)[i]);
}

/* Round a resampled value the way nnU-Net stores it (fp16 in exact mode). */
static double store(int fp32, double v) { return fp32 ? v : (double)sarco_f16_to_float(sarco_f16_from_double(v)); }

sarco_status sarco_nn_export(sarco_context *ctx, const sarco_nnunet_config *cfg, const sarco_nn_pre *pre, int fp32,
                             const void *L, const int64_t *dims, uint16_t *labels) {
    const int64_t *M = pre->shape_model, *Cd = pre->shape_cropped;
    const int64_t NM = M[0] * M[1] * M[2], NC = Cd[0] * Cd[1] * Cd[2];
    const int K = cfg->nheads;
    const int *tf = cfg->transpose_forward;
    const int64_t sst[3] = {dims[1] * dims[2], dims[2], 1};
    int64_t tst[3];
    for (int k = 0; k < 3; k++) tst[k] = sst[tf[k]];
    memset(labels, 0, (size_t)(dims[0] * dims[1] * dims[2]) * sizeof *labels);
    const int same = M[0] == Cd[0] && M[1] == Cd[1] && M[2] == Cd[2];
    int sep = 0, axis = -1;
    if (!same) sarco_nn_sep_z(cfg->res_prob.force_separate_z, pre->target_spacing, pre->spacing_t, &sep, &axis);
    const int streaming = same || (cfg->res_prob.order == 1 && (!sep || cfg->res_prob.order_z == 0));
    sarco_status s = SARCO_OK;
    void *R = NULL; /* the general path: every head resampled, (K, cropped...) */
    size_t rb = 0;
    int64_t *ti = NULL;
    double *tw = NULL;
    size_t tib = 0, twb = 0;
    int64_t off[3] = {0, 0, 0}; /* tap tables per axis: i0, i1 and w0, w1 per output index */
    if (!streaming) {
        rb = (size_t)K * (size_t)NC * (fp32 ? sizeof(double) : sizeof(uint16_t));
        R = sarco_ctx_malloc(ctx, rb, "nnU-Net export: resampled logits");
        size_t cb = (size_t)NM * sizeof(float), db = (size_t)NC * sizeof(double);
        float *ch = sarco_ctx_malloc(ctx, cb, "nnU-Net export: one head");
        double *dd = sarco_ctx_malloc(ctx, db, "nnU-Net export: one head resampled");
        if (!R || !ch || !dd) s = SARCO_ERR_OUT_OF_MEMORY;
        for (int k = 0; k < K && s == SARCO_OK; k++) {
            for (int64_t i = 0; i < NM; i++) ch[i] = (float)logit_at(L, fp32, (size_t)k * (size_t)NM + (size_t)i);
            s = sarco_nn_resample_channel(ctx, M, ch, Cd, pre->target_spacing, pre->spacing_t, &cfg->res_prob, dd);
            for (int64_t i = 0; i < NC && s == SARCO_OK; i++) {
                if (fp32) ((double *)R)[(size_t)k * (size_t)NC + (size_t)i] = dd[i];
                else ((uint16_t *)R)[(size_t)k * (size_t)NC + (size_t)i] = sarco_f16_from_double(dd[i]);
            }
        }
        sarco_ctx_free(ctx, dd, db);
        sarco_ctx_free(ctx, ch, cb);
        if (s != SARCO_OK) {
            sarco_ctx_free(ctx, R, rb);
            return s;
        }
    } else if (!same) {
        int64_t tot = Cd[0] + Cd[1] + Cd[2];
        tib = (size_t)(2 * tot) * sizeof(int64_t);
        twb = (size_t)(2 * tot) * sizeof(double);
        ti = sarco_ctx_malloc(ctx, tib, "nnU-Net export: taps");
        tw = sarco_ctx_malloc(ctx, twb, "nnU-Net export: taps");
        if (!ti || !tw) {
            sarco_ctx_free(ctx, ti, tib);
            sarco_ctx_free(ctx, tw, twb);
            return SARCO_ERR_OUT_OF_MEMORY;
        }
        int64_t o = 0;
        for (int k = 0; k < 3; k++) {
            off[k] = o;
            if (sep && k == axis) /* order 0 along the thick axis: i0 = the source slice */
                for (int64_t j = 0; j < Cd[k]; j++) {
                    ti[2 * (o + j)] = ti[2 * (o + j) + 1] = sarco_nn_nearest_index(M[k], Cd[k], j);
                    tw[2 * (o + j)] = 1.0;
                    tw[2 * (o + j) + 1] = 0.0;
                }
            else {
                int64_t *i0 = malloc((size_t)Cd[k] * 2 * sizeof(int64_t));
                double *w0 = malloc((size_t)Cd[k] * 2 * sizeof(double));
                if (!i0 || !w0) {
                    free(i0);
                    free(w0);
                    sarco_ctx_free(ctx, ti, tib);
                    sarco_ctx_free(ctx, tw, twb);
                    return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "nnU-Net export: out of memory");
                }
                sarco_nn_linear_taps(M[k], Cd[k], i0, i0 + Cd[k], w0, w0 + Cd[k]);
                for (int64_t j = 0; j < Cd[k]; j++) {
                    ti[2 * (o + j)] = i0[j];
                    ti[2 * (o + j) + 1] = i0[Cd[k] + j];
                    tw[2 * (o + j)] = w0[j];
                    tw[2 * (o + j) + 1] = w0[Cd[k] + j];
                }
                free(i0);
                free(w0);
            }
            o += Cd[k];
        }
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t a = 0; a < Cd[0]; a++)
        for (int64_t b = 0; b < Cd[1]; b++) {
            double v[SARCO_NN_MAX_HEADS];
            for (int64_t c = 0; c < Cd[2]; c++) {
                const int64_t p[3] = {a, b, c};
                if (same) {
                    const size_t m = (size_t)((a * M[1] + b) * M[2] + c);
                    for (int k = 0; k < K; k++) v[k] = logit_at(L, fp32, (size_t)k * (size_t)NM + m);
                } else if (!streaming) {
                    const size_t m = (size_t)((a * Cd[1] + b) * Cd[2] + c);
                    for (int k = 0; k < K; k++)
                        v[k] = fp32 ? ((const double *)R)[(size_t)k * (size_t)NC + m]
                                    : (double)sarco_f16_to_float(((const uint16_t *)R)[(size_t)k * (size_t)NC + m]);
                } else {
                    /* scipy's order-1 taps: row-major over the real axes, value * w0 * w1 (* w2); the
                     * thick axis of a separate-z resampling contributes one tap of weight 1 and no
                     * multiplication (its slices were picked, not interpolated) */
                    int64_t ix[3][2];
                    double wx[3][2];
                    int nt[3];
                    for (int k = 0; k < 3; k++) {
                        const int64_t j = off[k] + p[k];
                        ix[k][0] = ti[2 * j];
                        ix[k][1] = ti[2 * j + 1];
                        wx[k][0] = tw[2 * j];
                        wx[k][1] = tw[2 * j + 1];
                        nt[k] = (sep && k == axis) ? 1 : 2;
                    }
                    for (int k = 0; k < K; k++) {
                        const size_t base = (size_t)k * (size_t)NM;
                        double t = 0.0;
                        for (int f0 = 0; f0 < nt[0]; f0++)
                            for (int f1 = 0; f1 < nt[1]; f1++)
                                for (int f2 = 0; f2 < nt[2]; f2++) {
                                    double x = logit_at(L, fp32, base + (size_t)((ix[0][f0] * M[1] + ix[1][f1]) * M[2] +
                                                                               ix[2][f2]));
                                    if (nt[0] == 2) x *= wx[0][f0];
                                    if (nt[1] == 2) x *= wx[1][f1];
                                    if (nt[2] == 2) x *= wx[2][f2];
                                    t += x;
                                }
                        v[k] = store(fp32, t);
                    }
                }
                const int64_t o = (a + pre->bbox[0][0]) * tst[0] + (b + pre->bbox[1][0]) * tst[1] +
                                  (c + pre->bbox[2][0]) * tst[2];
                labels[o] = decide(cfg, v);
            }
        }
    sarco_ctx_free(ctx, R, rb);
    sarco_ctx_free(ctx, ti, tib);
    sarco_ctx_free(ctx, tw, twb);
    for (int i = 0; i < cfg->npp && s == SARCO_OK; i++)
        s = sarco_nn_keep_largest(ctx, dims, labels, cfg->pp_labels[i], cfg->pp_nlabels[i]);
    return s;
}

/* ---- postprocessing: the largest connected component ----------------------------------------- */

sarco_status sarco_nn_keep_largest(sarco_context *ctx, const int64_t *d, uint16_t *seg, const int *labs, int nl) {
    const int64_t n = d[0] * d[1] * d[2];
    size_t cb = (size_t)n * sizeof(uint32_t);
    uint32_t *comp = sarco_ctx_malloc(ctx, cb, "postprocessing: components");
    if (!comp) return SARCO_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) {
        int in = 0;
        for (int j = 0; j < nl; j++) in |= seg[i] == labs[j];
        comp[i] = in ? UINT32_MAX : 0; /* UINT32_MAX: in the mask, not yet visited */
    }
    size_t cap = 1024, sbytes = cap * sizeof(int64_t), zbytes = 1024 * sizeof(int64_t);
    int64_t *stack = sarco_ctx_malloc(ctx, sbytes, "postprocessing: stack");
    int64_t *sizes = sarco_ctx_malloc(ctx, zbytes, "postprocessing: sizes");
    size_t zcap = 1024;
    uint32_t ncomp = 0;
    sarco_status s = SARCO_OK;
    if (!stack || !sizes) {
        s = SARCO_ERR_OUT_OF_MEMORY;
        goto out;
    }
    for (int64_t i = 0; i < n && s == SARCO_OK; i++) {
        if (comp[i] != UINT32_MAX) continue;
        if (ncomp + 2 >= zcap) {
            size_t nb = zbytes * 2;
            int64_t *nz = sarco_ctx_malloc(ctx, nb, "postprocessing: sizes");
            if (!nz) {
                s = SARCO_ERR_OUT_OF_MEMORY;
                break;
            }
            memcpy(nz, sizes, zbytes);
            sarco_ctx_free(ctx, sizes, zbytes);
            sizes = nz;
            zbytes = nb;
            zcap *= 2;
        }
        const uint32_t id = ++ncomp;
        int64_t count = 0;
        size_t top = 0;
        comp[i] = id;
        stack[top++] = i;
        while (top && s == SARCO_OK) {
            const int64_t v = stack[--top];
            count++;
            const int64_t c0 = v / (d[1] * d[2]), c1 = (v / d[2]) % d[1], c2 = v % d[2];
            for (int64_t a = c0 - 1; a <= c0 + 1; a++)
                for (int64_t b = c1 - 1; b <= c1 + 1; b++)
                    for (int64_t e = c2 - 1; e <= c2 + 1; e++) {
                        if (a < 0 || a >= d[0] || b < 0 || b >= d[1] || e < 0 || e >= d[2]) continue;
                        const int64_t w = (a * d[1] + b) * d[2] + e;
                        if (comp[w] != UINT32_MAX) continue;
                        comp[w] = id;
                        if (top == cap) {
                            size_t nb = sbytes * 2;
                            int64_t *ns = sarco_ctx_malloc(ctx, nb, "postprocessing: stack");
                            if (!ns) {
                                s = SARCO_ERR_OUT_OF_MEMORY;
                                break;
                            }
                            memcpy(ns, stack, sbytes);
                            sarco_ctx_free(ctx, stack, sbytes);
                            stack = ns;
                            sbytes = nb;
                            cap *= 2;
                        }
                        stack[top++] = w;
                    }
        }
        sizes[id] = count;
    }
    if (s == SARCO_OK && ncomp > 1) {
        int64_t mx = 0;
        for (uint32_t c = 1; c <= ncomp; c++)
            if (sizes[c] > mx) mx = sizes[c];
        for (int64_t i = 0; i < n; i++)
            if (comp[i] && sizes[comp[i]] != mx) seg[i] = 0; /* every largest one stays (ties) */
    }
out:
    sarco_ctx_free(ctx, sizes, zbytes);
    sarco_ctx_free(ctx, stack, sbytes);
    sarco_ctx_free(ctx, comp, cb);
    return s;
}

/* ---- the whole path ------------------------------------------------------------------------------ */

sarco_status sarco_nn_segment_ex(sarco_context *ctx, const sarco_nnunet_config *cfg, const float *const *chan,
                                 const int64_t *dims, const double *spacing, const sarco_nn_run_opts *o,
                                 sarco_nn_predict_fn predict, void *user, uint16_t *labels, sarco_nn_run_info *info,
                                 sarco_nn_pre_info *pinfo) {
    sarco_nn_run_info inf;
    memset(&inf, 0, sizeof inf);
    double t0 = now_s();
    sarco_nn_pre pre;
    sarco_status s = sarco_nn_preprocess(ctx, cfg, chan, dims, spacing, &pre);
    if (s != SARCO_OK) return s;
    if (pinfo) {
        mirror_set ms;
        make_mirrors(cfg, o->mirroring, &ms);
        memcpy(pinfo->bbox, pre.bbox, sizeof pre.bbox);
        memcpy(pinfo->shape_model, pre.shape_model, sizeof pre.shape_model);
        memcpy(pinfo->target_spacing, pre.target_spacing, sizeof pre.target_spacing);
        pinfo->mirror_variants = ms.nvar;
    }
    double t1 = now_s();
    void *L = NULL;
    size_t lb = 0;
    s = sarco_nn_predict_logits(ctx, cfg, &pre, o, predict, user, &L, &lb, &inf);
    double t2 = now_s();
    if (s == SARCO_OK) s = sarco_nn_export(ctx, cfg, &pre, o->fp32, L, dims, labels);
    sarco_ctx_free(ctx, L, lb);
    sarco_nn_pre_free(ctx, &pre);
    inf.seconds_preprocess = t1 - t0;
    inf.seconds_inference = t2 - t1;
    inf.seconds_postprocess = now_s() - t2;
    if (info) *info = inf;
    return s;
}

sarco_status sarco_nn_segment(sarco_context *ctx, const sarco_nnunet_config *cfg, const float *const *chan,
                              const int64_t *dims, const double *spacing, const sarco_nn_run_opts *o,
                              sarco_nn_predict_fn predict, void *user, uint16_t *labels, sarco_nn_run_info *info) {
    return sarco_nn_segment_ex(ctx, cfg, chan, dims, spacing, o, predict, user, labels, info, NULL);
}
