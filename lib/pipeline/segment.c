/* sarco_sliding_window and sarco_segment: the model config's settings, the model as the sliding
 * window's predictor, and the whole CT -> labels path in bounded memory.
 *
 * Axis order: MONAI loads a NIfTI as an array (x, y, z) (nibabel order), so the network's first
 * spatial axis is the image's x. A sarco_image is x fastest; the network input built here is
 * (1, 1, nx', ny', nz') in PyTorch layout (z fastest), exactly what MONAI feeds the network. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline.h"
#include "../nn/arch.h"
#include "nnunet_pipeline.h"

void sarco_window_options_init(sarco_window_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->overlap = -1.0;
    o->mode = SARCO_BLEND_FROM_CONFIG;
    o->sigma_scale = -1.0;
    o->sw_batch_size = 0;
    o->cval = 0.0f;
}

void sarco_segment_options_init(sarco_segment_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    sarco_window_options_init(&o->window);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Copies a caller's options (maybe an older, smaller struct) over the defaults. */
static sarco_status take_window_options(sarco_context *ctx, const sarco_window_options *in, sarco_window_options *o) {
    sarco_window_options_init(o);
    if (!in) return SARCO_OK;
    if (in->struct_size == 0 || in->struct_size > sizeof *o)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "window options: struct_size is not set (call sarco_window_options_init first)");
    memcpy(o, in, in->struct_size);
    o->struct_size = sizeof *o;
    return SARCO_OK;
}

sarco_status sarco_pipeline_params(sarco_context *ctx, const sarco_pipeline_config *cfg, const sarco_window_options *o,
                                   int nsp, sarco_sw_params *p) {
    memset(p, 0, sizeof *p);
    p->nsp = nsp;
    int any_roi = 0;
    for (int i = 0; i < nsp; i++) any_roi |= o->roi[i] != 0;
    for (int i = 0; i < nsp; i++) {
        if (any_roi) {
            if (o->roi[i] < 1 || o->roi[i] > 65536)
                return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "window options: roi[%d] = %lld", i,
                                  (long long)o->roi[i]);
            p->roi[i] = o->roi[i];
        } else if (cfg->has_roi) {
            p->roi[i] = cfg->roi[i];
        } else {
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "sliding window: the model config has no inference.roi (nor kwargs.img_size); "
                              "pass a roi in the window options");
        }
    }
    double ov = o->overlap >= 0.0 ? o->overlap : cfg->overlap;
    if (!(ov >= 0.0 && ov < 1.0))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "window options: overlap %g is not in [0, 1)", ov);
    double ss = o->sigma_scale > 0.0 ? o->sigma_scale : cfg->sigma_scale;
    for (int i = 0; i < 3; i++) {
        p->overlap[i] = ov;
        p->sigma_scale[i] = ss;
    }
    switch (o->mode) {
    case SARCO_BLEND_FROM_CONFIG: p->mode = cfg->mode; break;
    case SARCO_BLEND_CONSTANT: p->mode = SARCO_SW_CONSTANT; break;
    case SARCO_BLEND_GAUSSIAN: p->mode = SARCO_SW_GAUSSIAN; break;
    default: return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "window options: unknown mode %d", (int)o->mode);
    }
    if (o->sw_batch_size < 0 || o->sw_batch_size > 1024)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "window options: sw_batch_size %d", o->sw_batch_size);
    p->sw_batch = o->sw_batch_size > 0 ? o->sw_batch_size : cfg->sw_batch;
    p->cval = o->cval;
    if (!isfinite(p->cval)) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "window options: cval is not finite");
    return SARCO_OK;
}

/* ---- the model as predictor ---------------------------------------------------------------- */

typedef struct {
    sarco_model *model;
    int64_t cout;
} model_pred;

/* Tiles stay on the model's backend (sarco_sw_params.tiles_on_backend is set with this predictor). */
static sarco_status model_predict(void *user, sarco_context *ctx, int nsp, const int64_t *tile_shape, const float *x,
                                  float *y) {
    model_pred *mp = user;
    return sarco_model_forward_be(ctx, mp->model, 2 + nsp, tile_shape, x, y);
}

/* The network's output channels for a tile; its spatial size must equal the tile's. */
static sarco_status model_channels(sarco_context *ctx, sarco_model *m, int nsp, int64_t cin, const int64_t *roi,
                                   int64_t *cout) {
    int64_t in[5] = {1, cin, roi[0], roi[1], nsp > 2 ? roi[2] : 0}, out[5];
    sarco_status s = sarco_model_output_shape(ctx, m, 2 + nsp, in, out);
    if (s != SARCO_OK) return s;
    for (int i = 0; i < nsp; i++)
        if (out[2 + i] != roi[i])
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                              "sliding window: the network maps a %lld-wide tile to %lld on axis %d; only "
                              "same-size outputs are supported",
                              (long long)roi[i], (long long)out[2 + i], i);
    if (out[1] < 1 || out[1] > 65535)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "sliding window: the network has %lld output channels",
                          (long long)out[1]);
    *cout = out[1];
    return SARCO_OK;
}

static sarco_status setup(sarco_context *ctx, sarco_model *model, int nsp, const sarco_window_options *opts,
                          sarco_pipeline_config *cfg, sarco_sw_params *p) {
    if (!ctx || !model) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "NULL context or model");
    sarco_window_options o;
    sarco_status s = take_window_options(ctx, opts, &o);
    if (s != SARCO_OK) return s;
    s = sarco_pipeline_config_parse(ctx, sarco_model_config_json(model), nsp, cfg);
    if (s != SARCO_OK) return s;
    s = sarco_pipeline_params(ctx, cfg, &o, nsp, p);
    if (s != SARCO_OK) sarco_pipeline_config_free(cfg);
    return s;
}

sarco_status sarco_sliding_window_shape(sarco_context *ctx, const sarco_model *model, int ndim, const int64_t *in_shape,
                                        const sarco_window_options *opts, int64_t *out_shape) {
    if (!in_shape || !out_shape || (ndim != 4 && ndim != 5))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "sarco_sliding_window_shape: need a 4-D (N,C,H,W) or 5-D (N,C,D,H,W) shape");
    for (int i = 0; i < ndim; i++)
        if (in_shape[i] < 1 || in_shape[i] > (1 << 24))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_sliding_window_shape: dimension %d is %lld", i,
                              (long long)in_shape[i]);
    sarco_pipeline_config cfg;
    sarco_sw_params p;
    sarco_status s = setup(ctx, (sarco_model *)model, ndim - 2, opts, &cfg, &p);
    if (s != SARCO_OK) return s;
    int64_t cout;
    s = model_channels(ctx, (sarco_model *)model, ndim - 2, in_shape[1], p.roi, &cout);
    sarco_pipeline_config_free(&cfg);
    if (s != SARCO_OK) return s;
    out_shape[0] = in_shape[0];
    out_shape[1] = cout;
    for (int i = 2; i < ndim; i++) out_shape[i] = in_shape[i];
    return SARCO_OK;
}

sarco_status sarco_sliding_window(sarco_context *ctx, sarco_model *model, int ndim, const int64_t *in_shape,
                                  const float *x, const sarco_window_options *opts, float *logits,
                                  size_t logits_count) {
    if (ctx) sarco_clear_error(ctx);
    int64_t oshape[5];
    sarco_status s = sarco_sliding_window_shape(ctx, model, ndim, in_shape, opts, oshape);
    if (s != SARCO_OK) return s;
    if (!x || !logits) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_sliding_window: NULL x or logits");
    int64_t nout, nimg_in = 1, nimg_out = 1;
    if (!sarco_dims_product(oshape, ndim, INT64_MAX / 8, &nout))
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "sarco_sliding_window: output too large");
    if ((size_t)nout != logits_count)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "sarco_sliding_window: logits holds %zu floats, the output needs %lld", logits_count,
                          (long long)nout);
    for (int i = 1; i < ndim; i++) {
        nimg_in *= in_shape[i];
        nimg_out *= oshape[i];
    }
    sarco_pipeline_config cfg;
    sarco_sw_params p;
    s = setup(ctx, model, ndim - 2, opts, &cfg, &p);
    if (s != SARCO_OK) return s;
    model_pred mp = {model, oshape[1]};
    p.tiles_on_backend = 1;
    /* batch items blend independently in MONAI too (windows of one item never touch another) */
    for (int64_t b = 0; b < in_shape[0] && s == SARCO_OK; b++)
        s = sarco_sw_logits(ctx, &p, in_shape[1], oshape[1], in_shape + 2, x + b * nimg_in, model_predict, &mp,
                            logits + b * nimg_out);
    sarco_pipeline_config_free(&cfg);
    return s;
}

/* ---- orientation (MONAI Orientation(axcodes)) ------------------------------------------------ */

/* Oriented axis k reads source axis perm[k], flipped when flip[k]. Each source axis is matched to
 * the world axis its affine column points along most (largest |component|, assigned greedily). */
static sarco_status orientation(sarco_context *ctx, const double aff[4][4], const char *axcodes, int *perm,
                                int *flip) {
    for (int k = 0; k < 3; k++) {
        perm[k] = k;
        flip[k] = 0;
    }
    if (!axcodes || !axcodes[0]) return SARCO_OK;
    int world_of[3] = {-1, -1, -1}, used_w[3] = {0, 0, 0};
    double colnorm[3];
    for (int i = 0; i < 3; i++) {
        colnorm[i] = sqrt(aff[0][i] * aff[0][i] + aff[1][i] * aff[1][i] + aff[2][i] * aff[2][i]);
        if (!(colnorm[i] > 0))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "orientation: the affine's column %d is zero", i);
    }
    for (int round = 0; round < 3; round++) {
        int bi = -1, bw = -1;
        double best = -1;
        for (int i = 0; i < 3; i++) {
            if (world_of[i] >= 0) continue;
            for (int w = 0; w < 3; w++) {
                if (used_w[w]) continue;
                double v = fabs(aff[w][i]) / colnorm[i];
                if (v > best) {
                    best = v;
                    bi = i;
                    bw = w;
                }
            }
        }
        world_of[bi] = bw;
        used_w[bw] = 1;
    }
    for (int k = 0; k < 3; k++) {
        const char *p = strchr("RLAPSI", axcodes[k]);
        int w = (int)(p - "RLAPSI") / 2, positive = ((p - "RLAPSI") % 2) == 0;
        for (int i = 0; i < 3; i++)
            if (world_of[i] == w) {
                perm[k] = i;
                int src_positive = aff[w][i] > 0;
                flip[k] = src_positive != positive;
            }
    }
    return SARCO_OK;
}

/* ---- the whole path ------------------------------------------------------------------------- */

static void *xmalloc(sarco_context *ctx, size_t n, size_t size, const char *what, size_t *bytes) {
    size_t b;
    if (!sarco_mul_size(n, size, &b)) {
        sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: size overflow", what);
        return NULL;
    }
    *bytes = b;
    return sarco_ctx_malloc(ctx, b, what);
}

sarco_status sarco_segment_run(sarco_context *ctx, const sarco_pipeline_config *cfg, const sarco_sw_params *p,
                               int64_t cout, sarco_sw_predict_fn predict, void *user, const sarco_image *ct,
                               uint16_t *labels, sarco_segment_info *info) {
    sarco_segment_info inf;
    memset(&inf, 0, sizeof inf);
    double t0 = now_s();
    const int nsp = ct->ndim;
    if (nsp != p->nsp) return sarco_fail(ctx, SARCO_ERR_INTERNAL, "segment: dims mismatch");
    if (nsp == 2 && cfg->axcodes[0])
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "segment: preprocess.axcodes is for 3-D images only");
    const int64_t sd[3] = {ct->dims[0], ct->dims[1], nsp > 2 ? ct->dims[2] : 1};
    const int64_t nvox = sd[0] * sd[1] * sd[2];
    const float *src = ct->data;
    sarco_status s;
    int perm[3], flip[3];
    if ((s = orientation(ctx, ct->affine, cfg->axcodes, perm, flip)) != SARCO_OK) return s;
    int64_t od[3];
    for (int k = 0; k < 3; k++) od[k] = sd[perm[k]];
    /* oriented affine = ct affine @ M (M: oriented voxel -> source voxel) */
    double M[4][4] = {{0}}, oaff[4][4];
    for (int k = 0; k < 3; k++) {
        M[perm[k]][k] = flip[k] ? -1.0 : 1.0;
        M[perm[k]][3] = flip[k] ? (double)(sd[perm[k]] - 1) : 0.0;
    }
    M[3][3] = 1.0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double acc = 0;
            for (int k = 0; k < 4; k++) acc += ct->affine[i][k] * M[k][j];
            oaff[i][j] = acc;
        }

    sarco_intensity it;
    sarco_intensity_init(&it, cfg->has_window, cfg->hu_window[0], cfg->hu_window[1], cfg->scale_to[0],
                         cfg->scale_to[1], cfg->clip, cfg->gamma);
    if (it.contrast) { /* AdjustContrast's min and max over the whole scaled image */
        float mn = INFINITY, mx = -INFINITY;
#pragma omp parallel for reduction(min : mn) reduction(max : mx) schedule(static)
        for (int64_t i = 0; i < nvox; i++) {
            float v = sarco_intensity_scale(&it, src[i]);
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
        if (!(mn <= mx)) mn = mx = 0.0f; /* all NaN */
        sarco_intensity_set_range(&it, mn, mx);
    }
    /* CropForeground: the box of voxels > 0 after the intensity steps, in oriented voxels */
    int64_t cs[3] = {0, 0, 0}, ce[3] = {od[0], od[1], od[2]};
    if (cfg->crop_foreground) {
        int64_t lo0 = INT64_MAX, lo1 = INT64_MAX, lo2 = INT64_MAX, hi0 = -1, hi1 = -1, hi2 = -1;
#pragma omp parallel for reduction(min : lo0, lo1, lo2) reduction(max : hi0, hi1, hi2) schedule(static)
        for (int64_t z = 0; z < sd[2]; z++)
            for (int64_t y = 0; y < sd[1]; y++) {
                const float *row = src + (z * sd[1] + y) * sd[0];
                for (int64_t x = 0; x < sd[0]; x++)
                    if (sarco_intensity_contrast(&it, sarco_intensity_scale(&it, row[x])) > 0.0f) {
                        if (x < lo0) lo0 = x;
                        if (x > hi0) hi0 = x;
                        if (y < lo1) lo1 = y;
                        if (y > hi1) hi1 = y;
                        if (z < lo2) lo2 = z;
                        if (z > hi2) hi2 = z;
                    }
            }
        if (hi0 < 0) {
            sarco_log(ctx, SARCO_LOG_WARN, "segment: no voxel is above the intensity window's lower edge; "
                                           "the whole image is used (MONAI would crop to an empty image)");
        } else {
            const int64_t lo[3] = {lo0, lo1, lo2}, hi[3] = {hi0, hi1, hi2};
            for (int k = 0; k < nsp; k++) {
                int a = perm[k];
                int64_t l = flip[k] ? sd[a] - 1 - hi[a] : lo[a];
                int64_t h = flip[k] ? sd[a] - 1 - lo[a] : hi[a];
                cs[k] = l - cfg->crop_margin;
                ce[k] = h + cfg->crop_margin + 1;
            }
        }
    }
    int64_t cd[3] = {ce[0] - cs[0], ce[1] - cs[1], ce[2] - cs[2]};
    for (int k = 0; k < 3; k++) {
        inf.crop_start[k] = cs[k];
        inf.crop_end[k] = ce[k];
    }
    /* the cropped, intensity-transformed network grid before resampling, PyTorch layout */
    size_t cbytes = 0, bbytes = 0, lbbytes = 0, lcbytes = 0;
    float *C = xmalloc(ctx, (size_t)(cd[0] * cd[1] * cd[2]), sizeof(float), "segment: cropped image", &cbytes);
    if (!C) return SARCO_ERR_OUT_OF_MEMORY;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t c0 = 0; c0 < cd[0]; c0++)
        for (int64_t c1 = 0; c1 < cd[1]; c1++)
            for (int64_t c2 = 0; c2 < cd[2]; c2++) {
                const int64_t a[3] = {cs[0] + c0, cs[1] + c1, cs[2] + c2};
                int64_t si[3] = {0, 0, 0};
                int inside = 1;
                for (int k = 0; k < 3; k++) {
                    if (a[k] < 0 || a[k] >= od[k]) inside = 0;
                    si[perm[k]] = flip[k] ? od[k] - 1 - a[k] : a[k];
                }
                float v = 0.0f; /* the crop pads with 0 past the image (margins) */
                if (inside) v = sarco_intensity_contrast(&it, sarco_intensity_scale(&it, src[si[0] + sd[0] * (si[1] + sd[1] * si[2])]));
                C[(c0 * cd[1] + c1) * cd[2] + c2] = v;
            }
    /* Spacing on the cropped image: affine_c = oriented affine @ translate(crop start) */
    double caff[4][4];
    memcpy(caff, oaff, sizeof caff);
    for (int i = 0; i < 3; i++) caff[i][3] = oaff[i][3] + oaff[i][0] * cs[0] + oaff[i][1] * cs[1] + oaff[i][2] * cs[2];
    sarco_spacing_geom g;
    int resample = 0;
    float *B = C;
    int64_t bd[3] = {cd[0], cd[1], cd[2]};
    if (cfg->has_spacing) {
        if ((s = sarco_pp_spacing_geom(ctx, nsp, cd, caff, cfg->target_spacing, &g)) != SARCO_OK) goto out_c;
        resample = !g.identity;
        for (int k = 0; k < 3; k++) inf.model_spacing[k] = g.out_spacing[k];
        if (resample) {
            for (int k = 0; k < 3; k++) bd[k] = g.out_size[k];
            B = xmalloc(ctx, (size_t)(bd[0] * bd[1] * bd[2]), sizeof(float), "segment: resampled image", &bbytes);
            if (!B) {
                s = SARCO_ERR_OUT_OF_MEMORY;
                goto out_c;
            }
            sarco_pp_resample_linear(&g, C, B);
            sarco_ctx_free(ctx, C, cbytes);
            C = NULL;
        }
    } else {
        for (int k = 0; k < 3; k++)
            inf.model_spacing[k] = sqrt(caff[0][k] * caff[0][k] + caff[1][k] * caff[1][k] + caff[2][k] * caff[2][k]);
    }
    for (int k = 0; k < 3; k++) inf.model_dims[k] = k < nsp ? bd[k] : 1;
    double t1 = now_s();
    inf.seconds_preprocess = t1 - t0;

    uint16_t *LB = xmalloc(ctx, (size_t)(bd[0] * bd[1] * bd[2]), sizeof(uint16_t), "segment: labels", &lbbytes);
    if (!LB) {
        s = SARCO_ERR_OUT_OF_MEMORY;
        goto out_b;
    }
    s = sarco_sw_labels(ctx, p, 1, cout, bd, B, predict, user, LB);
    if (B != C) sarco_ctx_free(ctx, B, bbytes);
    B = NULL;
    sarco_ctx_free(ctx, C, cbytes);
    C = NULL;
    double t2 = now_s();
    inf.seconds_inference = t2 - t1;
    if (s != SARCO_OK) {
        sarco_ctx_free(ctx, LB, lbbytes);
        return s;
    }
    uint16_t *LC = LB;
    if (resample) {
        LC = xmalloc(ctx, (size_t)(cd[0] * cd[1] * cd[2]), sizeof(uint16_t), "segment: cropped labels", &lcbytes);
        if (!LC) {
            sarco_ctx_free(ctx, LB, lbbytes);
            return SARCO_ERR_OUT_OF_MEMORY;
        }
        sarco_pp_resample_nearest_back(&g, LB, LC);
        sarco_ctx_free(ctx, LB, lbbytes);
        LB = NULL;
    }
    /* back to the input grid: uncrop (0 outside the box) and undo the orientation */
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t z = 0; z < sd[2]; z++)
        for (int64_t y = 0; y < sd[1]; y++)
            for (int64_t x = 0; x < sd[0]; x++) {
                const int64_t si[3] = {x, y, z};
                int64_t c[3];
                int inside = 1;
                for (int k = 0; k < 3; k++) {
                    int64_t a = flip[k] ? od[k] - 1 - si[perm[k]] : si[perm[k]];
                    c[k] = a - cs[k];
                    if (c[k] < 0 || c[k] >= cd[k]) inside = 0;
                }
                labels[x + sd[0] * (y + sd[1] * z)] = inside ? LC[(c[0] * cd[1] + c[1]) * cd[2] + c[2]] : 0;
            }
    if (LC == LB)
        sarco_ctx_free(ctx, LB, lbbytes);
    else
        sarco_ctx_free(ctx, LC, lcbytes);
    inf.seconds_postprocess = now_s() - t2;
    for (int k = 0; k < 3; k++) inf.roi[k] = k < nsp ? p->roi[k] : 1;
    inf.overlap = p->overlap[0];
    inf.mode = p->mode == SARCO_SW_GAUSSIAN ? SARCO_BLEND_GAUSSIAN : SARCO_BLEND_CONSTANT;
    inf.sigma_scale = p->sigma_scale[0];
    inf.sw_batch_size = (int)p->sw_batch;
    inf.num_classes = (int)cout;
    {
        sarco_sw_plan plan;
        if (sarco_sw_plan_make(NULL, p, bd, &plan) == SARCO_OK) {
            inf.windows = plan.nwin;
            inf.slab_bytes = (size_t)((cout + 1) * plan.roi[0] * plan.padded[1] * plan.padded[2]) * sizeof(float);
            sarco_sw_plan_free(&plan);
        }
    }
    if (info && info->struct_size) {
        size_t n = info->struct_size < sizeof inf ? info->struct_size : sizeof inf;
        inf.struct_size = info->struct_size;
        memcpy(info, &inf, n);
    }
    return SARCO_OK;
out_b:
    if (B != C) sarco_ctx_free(ctx, B, bbytes);
out_c:
    sarco_ctx_free(ctx, C, cbytes);
    return s;
}

sarco_status sarco_segment(sarco_context *ctx, sarco_model *model, const sarco_image *ct,
                           const sarco_segment_options *opts, uint16_t *labels, size_t labels_count,
                           sarco_segment_info *info) {
    if (ctx) sarco_clear_error(ctx);
    if (!ct || !labels || !ct->data || (ct->ndim != 2 && ct->ndim != 3))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_segment: NULL image or labels, or not 2-D/3-D");
    int64_t nvox;
    int64_t dims[3] = {ct->dims[0], ct->dims[1], ct->ndim > 2 ? ct->dims[2] : 1};
    if (!sarco_dims_product(dims, 3, INT64_MAX / 8, &nvox) || nvox < 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_segment: bad image dims");
    if ((size_t)nvox != labels_count)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "sarco_segment: labels holds %zu values, the image has %lld voxels", labels_count,
                          (long long)nvox);
    sarco_segment_options o;
    sarco_segment_options_init(&o);
    if (opts) {
        if (opts->struct_size == 0 || opts->struct_size > sizeof o)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "sarco_segment: options.struct_size is not set (call sarco_segment_options_init)");
        memcpy(&o, opts, opts->struct_size);
    }
    if (!model) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_segment: NULL model");
    if (o.mirroring < SARCO_MIRROR_FROM_CONFIG || o.mirroring > SARCO_MIRROR_ON)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_segment: unknown mirroring %d", (int)o.mirroring);
    { /* nnU-Net models run nnU-Net's own pipeline (docs/nnunet.md) */
        sarco_nnunet_config *nc = sarco_ctx_malloc(ctx, sizeof *nc, "sarco_segment: nnU-Net settings");
        if (!nc) return SARCO_ERR_OUT_OF_MEMORY;
        int present = 0;
        sarco_status ns = sarco_nnunet_config_parse(ctx, sarco_model_config_json(model), nc, &present);
        if (present) {
            if (ns == SARCO_OK) ns = sarco_nnunet_segment_model(ctx, model, nc, ct, &o, labels, info);
            sarco_ctx_free(ctx, nc, sizeof *nc);
            return ns;
        }
        sarco_ctx_free(ctx, nc, sizeof *nc);
    }
    sarco_pipeline_config cfg;
    sarco_sw_params p;
    sarco_status s = setup(ctx, model, ct->ndim, &o.window, &cfg, &p);
    if (s != SARCO_OK) return s;
    if (cfg.in_channels > 1) {
        sarco_pipeline_config_free(&cfg);
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "sarco_segment: the model takes %d input channels; a CT has 1",
                          cfg.in_channels);
    }
    int64_t cout;
    s = model_channels(ctx, model, ct->ndim, 1, p.roi, &cout);
    model_pred mp = {model, cout};
    p.tiles_on_backend = 1;
    if (s == SARCO_OK) s = sarco_segment_run(ctx, &cfg, &p, cout, model_predict, &mp, ct, labels, info);
    sarco_pipeline_config_free(&cfg);
    return s;
}
