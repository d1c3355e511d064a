/* The segmentation pipeline, internal parts: MONAI-equivalent preprocessing, the sliding-window
 * engine with bounded-memory blending, and the model config's pipeline settings.
 * Arrays in "PyTorch layout" are C-contiguous (C, D, H, W): the last axis is fastest. */
#ifndef SARCO_PIPELINE_H
#define SARCO_PIPELINE_H

#include <math.h>
#include <stdint.h>

#include "../core/core.h"

/* ---- sliding window ---------------------------------------------------------------------- */

/* Runs the network on a batch of tiles: x (n, cin, roi...) -> y (n, cout, roi...) in PyTorch layout,
 * host buffers, or ctx->be buffers when sarco_sw_params.tiles_on_backend is set. tile_shape holds
 * (n, cin, roi...) (2 + nsp entries). */
typedef sarco_status (*sarco_sw_predict_fn)(void *user, sarco_context *ctx, int nsp, const int64_t *tile_shape,
                                            const float *x, float *y);

typedef enum { SARCO_SW_CONSTANT = 0, SARCO_SW_GAUSSIAN = 1 } sarco_sw_mode;

typedef struct sarco_sw_params {
    int nsp;               /* spatial dims, 2 or 3 */
    int64_t roi[3];        /* <= 0: the image's size on that axis (MONAI fall_back_tuple) */
    double overlap[3];     /* in [0, 1) */
    sarco_sw_mode mode;
    double sigma_scale[3]; /* > 0, Gaussian mode only */
    int64_t sw_batch;      /* tiles per predictor call, >= 1 */
    float cval;            /* padding value for images smaller than the roi */
    int tiles_on_backend;  /* the predictor takes and returns ctx->be buffers (0: host buffers) */
} sarco_sw_params;

#define SARCO_SW_MAX_STARTS 65536

/* Where the windows go (MONAI dense_patch_slices after the centred padding). */
typedef struct sarco_sw_plan {
    int nsp;
    int64_t size[3];     /* image size */
    int64_t padded[3];   /* max(size, roi) */
    int64_t pad_lo[3];   /* centred padding: (roi - size) / 2 when the image is smaller */
    int64_t roi[3];
    int64_t interval[3];
    int64_t nstart[3];
    int64_t *starts[3];  /* window starts per axis in the padded image (owned) */
    int64_t nwin;        /* product of nstart */
} sarco_sw_plan;

SARCO_INTERNAL sarco_status sarco_sw_plan_make(sarco_context *ctx, const sarco_sw_params *p, const int64_t *size,
                                               sarco_sw_plan *plan);
SARCO_INTERNAL void sarco_sw_plan_free(sarco_sw_plan *plan);

/* MONAI compute_importance_map for the plan's roi: w (roi...) in PyTorch layout. */
SARCO_INTERNAL void sarco_sw_importance_map(const sarco_sw_params *p, const int64_t *roi, float *w);

/* The engine, on x (cin, size...) of one image (host memory). Windows run in MONAI's order in
 * batches of p->sw_batch and are blended on ctx's backend (a CPU backend of the call's own when ctx
 * is NULL or has none): rows of the first spatial axis that no later window touches become labels
 * or logits and are downloaded, so the backend holds cout x roi0 x padded1 x padded2 floats at
 * most, never the whole output.
 *
 * Full logits y (cout, size...) like MONAI sliding_window_inference for one image. */
SARCO_INTERNAL sarco_status sarco_sw_logits(sarco_context *ctx, const sarco_sw_params *p, int64_t cin, int64_t cout,
                                            const int64_t *size, const float *x, sarco_sw_predict_fn predict,
                                            void *predict_user, float *y);
/* Labels (size...) = argmax over channels of the same logits, in bounded memory. */
SARCO_INTERNAL sarco_status sarco_sw_labels(sarco_context *ctx, const sarco_sw_params *p, int64_t cin, int64_t cout,
                                            const int64_t *size, const float *x, sarco_sw_predict_fn predict,
                                            void *predict_user, uint16_t *labels);

/* ---- preprocessing (MONAI transforms on a channel-first volume, PyTorch layout) ---------- */

/* The per-voxel intensity steps with the float32 operands torch uses (Python scalars become
 * float32): ScaleIntensityRange then AdjustContrast (min/max of the scaled image). */
typedef struct sarco_intensity {
    int scale;         /* ScaleIntensityRange on */
    float fa, fr, fs, fb, lo, hi;
    int clip;
    int contrast;      /* AdjustContrast on (needs mn/range from the scaled image) */
    float gamma, mn, range, den;
} sarco_intensity;

SARCO_INTERNAL void sarco_intensity_init(sarco_intensity *t, int scale, double a_min, double a_max, double b_min,
                                         double b_max, int clip, double gamma);
/* Call once the scaled image's min and max are known (only when t->contrast). */
SARCO_INTERNAL void sarco_intensity_set_range(sarco_intensity *t, float mn, float mx);

static inline float sarco_intensity_scale(const sarco_intensity *t, float v) {
    if (!t->scale) return v;
    if (v != v) v = t->fa; /* NaN voxels: taken as the window's lower edge (documented) */
    if (t->fr == 0.0f) return v - t->fa + t->fb;
    v = (v - t->fa) / t->fr;
    v = v * t->fs + t->fb;
    if (t->clip) v = v < t->lo ? t->lo : (v > t->hi ? t->hi : v);
    return v;
}

static inline float sarco_intensity_contrast(const sarco_intensity *t, float v) {
    if (!t->contrast) return v;
    float u = (v - t->mn) / t->den;
    u = t->gamma == 2.0f ? u * u : powf(u, t->gamma); /* torch computes x ** 2 as x * x */
    return u * t->range + t->mn;
}

/* ScaleIntensityRange(a_min, a_max, b_min, b_max, clip) in place; NaN voxels become b_min. */
SARCO_INTERNAL void sarco_pp_scale_range(float *x, int64_t n, double a_min, double a_max, double b_min, double b_max,
                                         int clip);
/* AdjustContrast(gamma) in place (min/max over the whole array). */
SARCO_INTERNAL void sarco_pp_adjust_contrast(float *x, int64_t n, double gamma);
/* CropForeground(select_fn = x > 0, margin): box [start, end) per spatial axis of a (size...)
 * volume. Returns 0 when nothing is positive (MONAI would then crop to an empty image). */
SARCO_INTERNAL int sarco_pp_foreground_box(const float *x, int nsp, const int64_t *size, const int64_t *margin,
                                           int64_t *start, int64_t *end);

/* MONAI Spacing(pixdim, diagonal=False, scale_extent=False) geometry for an image whose voxel
 * index (i0, i1, i2) (PyTorch axis order) maps to world by `affine` (4x4, same axis order):
 * the output shape, the output affine and xform = inv(affine) @ out_affine (output voxel ->
 * input voxel). identity is set when MONAI would skip resampling (affine unchanged). */
typedef struct sarco_spacing_geom {
    int nsp;
    int64_t in_size[3], out_size[3];
    double out_spacing[3];
    double out_affine[4][4];
    double xform[4][4];
    int identity;
} sarco_spacing_geom;

SARCO_INTERNAL sarco_status sarco_pp_spacing_geom(sarco_context *ctx, int nsp, const int64_t *size,
                                                  const double affine[4][4], const double *pixdim,
                                                  sarco_spacing_geom *g);
/* grid_sample bilinear/trilinear, padding "border", align_corners False, in double precision:
 * y (out_size...) from x (in_size...), one channel. */
SARCO_INTERNAL void sarco_pp_resample_linear(const sarco_spacing_geom *g, const float *x, float *y);
/* The inverse with nearest neighbour (grid_sample "nearest", round half to even, border): labels
 * on the Spacing output grid -> the input grid. */
SARCO_INTERNAL void sarco_pp_resample_nearest_back(const sarco_spacing_geom *g, const uint16_t *lab_out,
                                                   uint16_t *lab_in);

/* ---- the model config's pipeline settings (docs/pipeline.md) ------------------------------ */

#define SARCO_MAX_CLASSES 1024
#define SARCO_MAX_GROUPS 64

typedef struct sarco_pipeline_config {
    /* preprocess */
    int has_window;
    double hu_window[2];
    double scale_to[2];
    int clip;
    double gamma;          /* 0 = no AdjustContrast */
    int crop_foreground;
    int64_t crop_margin;
    int has_spacing;
    double target_spacing[3]; /* mm, image axis order (x, y, z) */
    char axcodes[4];       /* "" = keep the orientation */
    /* inference */
    int64_t roi[3];
    int has_roi;
    double overlap;
    sarco_sw_mode mode;
    double sigma_scale;
    int64_t sw_batch;
    /* labels */
    int nclasses;          /* 0 when the config lists none */
    char **classes;
    int ngroups;
    char **group_names;
    int *group_sizes;
    int **group_labels;
    int in_channels, out_channels; /* from kwargs when present, else 0 */
} sarco_pipeline_config;

SARCO_INTERNAL sarco_status sarco_pipeline_config_parse(sarco_context *ctx, const char *json, int nsp,
                                                        sarco_pipeline_config *cfg);
SARCO_INTERNAL void sarco_pipeline_config_free(sarco_pipeline_config *cfg);

/* The window parameters from the config, overridden by the caller's options. */
SARCO_INTERNAL sarco_status sarco_pipeline_params(sarco_context *ctx, const sarco_pipeline_config *cfg,
                                                  const sarco_window_options *o, int nsp, sarco_sw_params *p);

/* sarco_segment with any predictor (cin = 1, cout channels): preprocessing, bounded-memory
 * sliding window + argmax, labels back on ct's grid (x fastest). info may be NULL. */
SARCO_INTERNAL sarco_status sarco_segment_run(sarco_context *ctx, const sarco_pipeline_config *cfg,
                                              const sarco_sw_params *p, int64_t cout, sarco_sw_predict_fn predict,
                                              void *user, const sarco_image *ct, uint16_t *labels,
                                              sarco_segment_info *info);

/* sarco_segment_volumes with the config given as JSON text (NULL: no names, no groups). */
SARCO_INTERNAL sarco_status sarco_volumes_from_config(sarco_context *ctx, const char *config_json, const sarco_image *ct,
                                                      const uint16_t *labels, size_t labels_count, double height_m,
                                                      sarco_volume_report **out);

/* ---- classifier image resampling (lib/pipeline/resize_aa.c), planar float (C, H, W) ---- */

/* torchvision's tensor Resize(antialias=True) bilinear (ATen _upsample_bilinear2d_aa) */
SARCO_INTERNAL sarco_status sarco_resize_aa(sarco_context *ctx, const float *in, int64_t c, int64_t h, int64_t w,
                                            int64_t oh, int64_t ow, float *out);
/* cv2.resize(..., INTER_LINEAR) of one float plane (half-pixel, edge-clamped, no antialias) */
SARCO_INTERNAL void sarco_resize_linear_cv(const float *in, int64_t h, int64_t w, int64_t oh, int64_t ow, float *out);

#endif
