/* nnU-Net's DefaultPreprocessor.run_case_npy at inference: float32 -> transpose -> crop to the
 * non-zero box (mask = any channel != 0, holes filled) -> per-channel normalisation on the cropped
 * image -> resampling to the configuration's spacing (resample_nnunet.c). */
#include <stdlib.h>
#include <string.h>

#include "nnunet_pipeline.h"

sarco_status sarco_nn_fill_holes(sarco_context *ctx, const int64_t *d, uint8_t *mask) {
    const int64_t n = d[0] * d[1] * d[2];
    /* background reached from the border through faces stays background (value 2 while marking) */
    size_t cap = 1024, sbytes = cap * sizeof(int64_t);
    int64_t *stack = sarco_ctx_malloc(ctx, sbytes, "fill holes: stack");
    if (!stack) return SARCO_ERR_OUT_OF_MEMORY;
    size_t top = 0;
    const int64_t st[3] = {d[1] * d[2], d[2], 1};
    for (int64_t i = 0; i < n; i++) {
        if (mask[i]) continue;
        int64_t c0 = i / st[0], c1 = (i / st[1]) % d[1], c2 = i % d[2];
        int border = c0 == 0 || c0 == d[0] - 1 || c1 == 0 || c1 == d[1] - 1 || c2 == 0 || c2 == d[2] - 1;
        if (!border) continue;
        mask[i] = 2;
        stack[top++] = i;
        while (top) {
            int64_t v = stack[--top];
            int64_t c[3] = {v / st[0], (v / st[1]) % d[1], v % d[2]};
            for (int ax = 0; ax < 3; ax++)
                for (int dir = -1; dir <= 1; dir += 2) {
                    int64_t q = c[ax] + dir;
                    if (q < 0 || q >= d[ax]) continue;
                    int64_t w = v + dir * st[ax];
                    if (mask[w]) continue;
                    mask[w] = 2;
                    if (top == cap) {
                        size_t nb = 2 * sbytes;
                        int64_t *ns = sarco_ctx_malloc(ctx, nb, "fill holes: stack");
                        if (!ns) {
                            sarco_ctx_free(ctx, stack, sbytes);
                            return SARCO_ERR_OUT_OF_MEMORY;
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
    }
    sarco_ctx_free(ctx, stack, sbytes);
    for (int64_t i = 0; i < n; i++) mask[i] = mask[i] != 2; /* unreached background = a hole: filled */
    return SARCO_OK;
}

void sarco_nn_pre_free(sarco_context *ctx, sarco_nn_pre *p) {
    if (p->data) sarco_ctx_free(ctx, p->data, p->data_bytes);
    p->data = NULL;
}

/* Normalisation of one cropped channel in place (float32 arithmetic as numpy does it; the means
 * and standard deviations are summed in double, numpy sums float32 pairwise: they agree to ~1 ulp). */
static sarco_status normalize(sarco_context *ctx, const sarco_nnunet_config *cfg, int ch, float *x, int64_t n,
                              const uint8_t *mask) {
    const float eps = 1e-8f;
    switch (cfg->norm[ch]) {
    case SARCO_NN_NORM_NONE: return SARCO_OK;
    case SARCO_NN_NORM_CT: {
        const float lo = (float)cfg->fg_p005[ch], hi = (float)cfg->fg_p995[ch], mean = (float)cfg->fg_mean[ch];
        const float sd = (float)fmax(cfg->fg_std[ch], 1e-8);
        for (int64_t i = 0; i < n; i++) {
            float v = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
            v -= mean;
            x[i] = v / sd;
        }
        return SARCO_OK;
    }
    case SARCO_NN_NORM_ZSCORE: {
        const int use_mask = cfg->use_mask_for_norm[ch];
        double s = 0;
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            if (!use_mask || mask[i]) {
                s += x[i];
                m++;
            }
        if (m == 0) return SARCO_OK; /* numpy: mean of an empty selection is NaN; nothing to normalise */
        const float mean = (float)(s / (double)m);
        double q = 0;
        for (int64_t i = 0; i < n; i++)
            if (!use_mask || mask[i]) {
                double dv = (double)(x[i] - mean);
                q += dv * dv;
            }
        float sd = (float)sqrt(q / (double)m);
        if (!(sd > eps)) sd = eps;
        for (int64_t i = 0; i < n; i++)
            if (!use_mask || mask[i]) x[i] = (x[i] - mean) / sd;
        return SARCO_OK;
    }
    case SARCO_NN_NORM_RESCALE01: {
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t i = 0; i < n; i++)
            if (x[i] < mn) mn = x[i];
        for (int64_t i = 0; i < n; i++) {
            x[i] -= mn;
            if (x[i] > mx) mx = x[i];
        }
        if (!(mx > eps)) mx = eps;
        for (int64_t i = 0; i < n; i++) x[i] /= mx;
        return SARCO_OK;
    }
    case SARCO_NN_NORM_RGB01:
        for (int64_t i = 0; i < n; i++)
            if (!(x[i] >= 0.0f && x[i] <= 255.0f))
                return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                                  "nnU-Net RGBTo01Normalization: channel %d has a value %g outside 0..255", ch,
                                  (double)x[i]);
        for (int64_t i = 0; i < n; i++) x[i] /= 255.0f;
        return SARCO_OK;
    }
    return SARCO_ERR_INTERNAL;
}

sarco_status sarco_nn_preprocess(sarco_context *ctx, const sarco_nnunet_config *cfg, const float *const *chan,
                                 const int64_t *dims, const double *spacing, sarco_nn_pre *out) {
    memset(out, 0, sizeof *out);
    const int *tf = cfg->transpose_forward;
    int64_t d[3], sst[3] = {dims[1] * dims[2], dims[2], 1}, tst[3];
    for (int i = 0; i < 3; i++) {
        d[i] = dims[tf[i]];
        out->spacing_t[i] = spacing[tf[i]];
        out->shape_before[i] = d[i];
        tst[i] = sst[tf[i]]; /* stride in the source of transposed axis i */
    }
    const int64_t n = d[0] * d[1] * d[2];
    for (int ch = 0; ch < cfg->nchan; ch++)
        for (int64_t i = 0; i < n; i++)
            if (chan[ch][i] != chan[ch][i])
                return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                                  "nnU-Net preprocessing: channel %d has NaN voxels (nnU-Net would spread them)", ch);
    /* crop_to_nonzero: mask of any channel != 0, holes filled, bbox (all-zero: the whole image) */
    size_t mbytes = (size_t)n;
    uint8_t *mask = sarco_ctx_malloc(ctx, mbytes, "nnU-Net preprocessing: non-zero mask");
    if (!mask) return SARCO_ERR_OUT_OF_MEMORY;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t a = 0; a < d[0]; a++)
        for (int64_t b = 0; b < d[1]; b++)
            for (int64_t c = 0; c < d[2]; c++) {
                int64_t si = a * tst[0] + b * tst[1] + c * tst[2];
                uint8_t m = 0;
                for (int ch = 0; ch < cfg->nchan; ch++) m |= chan[ch][si] != 0.0f;
                mask[(a * d[1] + b) * d[2] + c] = m;
            }
    sarco_status s = sarco_nn_fill_holes(ctx, d, mask);
    if (s != SARCO_OK) {
        sarco_ctx_free(ctx, mask, mbytes);
        return s;
    }
    int64_t lo[3] = {INT64_MAX, INT64_MAX, INT64_MAX}, hi[3] = {-1, -1, -1};
    for (int64_t a = 0; a < d[0]; a++)
        for (int64_t b = 0; b < d[1]; b++)
            for (int64_t c = 0; c < d[2]; c++)
                if (mask[(a * d[1] + b) * d[2] + c]) {
                    const int64_t p[3] = {a, b, c};
                    for (int k = 0; k < 3; k++) {
                        if (p[k] < lo[k]) lo[k] = p[k];
                        if (p[k] > hi[k]) hi[k] = p[k];
                    }
                }
    for (int k = 0; k < 3; k++) {
        out->bbox[k][0] = hi[0] < 0 ? 0 : lo[k];
        out->bbox[k][1] = hi[0] < 0 ? d[k] : hi[k] + 1;
        out->shape_cropped[k] = out->bbox[k][1] - out->bbox[k][0];
    }
    const int64_t *cd = out->shape_cropped;
    const int64_t nc = cd[0] * cd[1] * cd[2];
    /* target spacing: a 2-D configuration keeps the image's axis 0 */
    if (cfg->nsp == 2) {
        out->target_spacing[0] = out->spacing_t[0];
        out->target_spacing[1] = cfg->spacing[0];
        out->target_spacing[2] = cfg->spacing[1];
    } else {
        for (int k = 0; k < 3; k++) out->target_spacing[k] = cfg->spacing[k];
    }
    sarco_nn_new_shape(3, cd, out->spacing_t, out->target_spacing, out->shape_model);
    for (int k = 0; k < 3; k++)
        if (out->shape_model[k] < 1) {
            sarco_ctx_free(ctx, mask, mbytes);
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "nnU-Net preprocessing: the image resamples to an empty grid on axis %d", k);
        }
    const int64_t nm = out->shape_model[0] * out->shape_model[1] * out->shape_model[2];
    size_t cbytes = (size_t)nc * sizeof(float), mcbytes = (size_t)nc, rbytes = (size_t)nm * sizeof(double);
    float *C = sarco_ctx_malloc(ctx, cbytes, "nnU-Net preprocessing: cropped channel");
    uint8_t *MC = sarco_ctx_malloc(ctx, mcbytes, "nnU-Net preprocessing: cropped mask");
    double *R = sarco_ctx_malloc(ctx, rbytes, "nnU-Net preprocessing: resampled channel");
    out->data_bytes = (size_t)nm * (size_t)cfg->nchan * sizeof(float);
    out->data = sarco_ctx_malloc(ctx, out->data_bytes, "nnU-Net preprocessing: model input");
    if (!C || !MC || !R || !out->data) {
        s = SARCO_ERR_OUT_OF_MEMORY;
        goto done;
    }
    for (int64_t a = 0; a < cd[0]; a++)
        for (int64_t b = 0; b < cd[1]; b++)
            for (int64_t c = 0; c < cd[2]; c++)
                MC[(a * cd[1] + b) * cd[2] + c] =
                    mask[((a + out->bbox[0][0]) * d[1] + b + out->bbox[1][0]) * d[2] + c + out->bbox[2][0]];
    for (int ch = 0; ch < cfg->nchan && s == SARCO_OK; ch++) {
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t a = 0; a < cd[0]; a++)
            for (int64_t b = 0; b < cd[1]; b++)
                for (int64_t c = 0; c < cd[2]; c++)
                    C[(a * cd[1] + b) * cd[2] + c] =
                        chan[ch][(a + out->bbox[0][0]) * tst[0] + (b + out->bbox[1][0]) * tst[1] +
                                 (c + out->bbox[2][0]) * tst[2]];
        if ((s = normalize(ctx, cfg, ch, C, nc, MC)) != SARCO_OK) break;
        s = sarco_nn_resample_channel(ctx, cd, C, out->shape_model, out->spacing_t, out->target_spacing,
                                      &cfg->res_data, R);
        float *o = out->data + (size_t)ch * (size_t)nm;
        for (int64_t i = 0; i < nm && s == SARCO_OK; i++) o[i] = (float)R[i];
    }
done:
    sarco_ctx_free(ctx, R, rbytes);
    sarco_ctx_free(ctx, MC, mcbytes);
    sarco_ctx_free(ctx, C, cbytes);
    sarco_ctx_free(ctx, mask, mbytes);
    if (s != SARCO_OK) sarco_nn_pre_free(ctx, out);
    return s;
}
