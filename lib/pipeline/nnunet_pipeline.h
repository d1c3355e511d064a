/* nnU-Net v2's inference pipeline (docs/nnunet.md), internal parts: the model config's "nnunet"
 * settings, DefaultPreprocessor at inference, scipy/skimage resampling as nnU-Net calls it, the
 * sliding-window predictor with nnU-Net's steps, Gaussian, mirroring and fp16 accumulation, and the
 * export (logits back to the input grid, argmax or regions, uncrop, transpose back, postprocessing).
 *
 * Arrays are in nnU-Net's order: a NIfTI volume is (z, y, x) (SimpleITK's array, x fastest), a 2-D
 * image (1, y, x); channels first. That is exactly a sarco_image buffer with the axes reversed. */
#ifndef SARCO_NNUNET_PIPELINE_H
#define SARCO_NNUNET_PIPELINE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../core/core.h"

/* ---- half precision (IEEE binary16 bits), round to nearest even ------------------------------ */

/* double -> half with one rounding (numpy's astype(float16)); float -> half likewise. Values >= 65520
 * in magnitude become infinity. Bit arithmetic: round to nearest even at the half's last mantissa
 * bit; subnormal halves through an exact scaling and the FPU's own round-to-nearest-even. */
static inline uint16_t sarco_f16_from_double(double x) {
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    const uint16_t sign = (uint16_t)((b >> 48) & 0x8000u);
    uint64_t a = b & 0x7fffffffffffffffull;
    if (a > 0x7ff0000000000000ull) return 0x7e00u;          /* NaN */
    if (a >= 0x40effe0000000000ull) return (uint16_t)(sign | 0x7c00u); /* >= 65520: inf */
    if (a < 0x3f10000000000000ull) {                         /* < 2^-14: a subnormal half (or 0) */
        volatile double v = fabs(x) * 16777216.0;            /* exact; < 1024 */
        volatile double r = (v + 4503599627370496.0) - 4503599627370496.0; /* RNE to an integer */
        return (uint16_t)(sign | (uint16_t)r);
    }
    a += (1ull << 41) - 1 + ((a >> 42) & 1u);
    a -= (uint64_t)(1023 - 15) << 52;
    return (uint16_t)(sign | (uint16_t)(a >> 42));
}
static inline uint16_t sarco_f16_from_float(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    const uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
    uint32_t a = b & 0x7fffffffu;
    if (a > 0x7f800000u) return 0x7e00u;
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {
        volatile float v = fabsf(x) * 16777216.0f;
        volatile float r = (v + 8388608.0f) - 8388608.0f;
        return (uint16_t)(sign | (uint16_t)r);
    }
    a += 0xfffu + ((a >> 13) & 1u);
    a -= (uint32_t)(127 - 15) << 23;
    return (uint16_t)(sign | (uint16_t)(a >> 13));
}
static inline float sarco_f16_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t b;
    if (e == 0) {
        float v = (float)m * 5.9604644775390625e-8f; /* m * 2^-24, exact */
        return sign ? -v : v;
    }
    if (e == 31) b = sign | 0x7f800000u | (m << 13);
    else b = sign | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}
/* float -> half the way torch rounds a float64 tensor to float16 (through float32) */
static inline uint16_t sarco_f16_from_double_via_float(double x) { return sarco_f16_from_float((float)x); }

/* ---- the model config's "nnunet" object -------------------------------------------------- */

#define SARCO_NN_MAX_CHANNELS 16
#define SARCO_NN_MAX_HEADS 256
#define SARCO_NN_MAX_PP 64

typedef enum {
    SARCO_NN_NORM_ZSCORE = 0,
    SARCO_NN_NORM_CT,
    SARCO_NN_NORM_NONE,
    SARCO_NN_NORM_RESCALE01,
    SARCO_NN_NORM_RGB01,
} sarco_nn_norm;

typedef struct {
    int order, order_z;
    int force_separate_z; /* -1 None, 0 False, 1 True */
} sarco_nn_resampling;

typedef struct sarco_nnunet_config {
    char configuration[64];
    int nsp;                      /* the network's spatial dims (patch_size length) */
    int64_t patch[3];
    double spacing[3];            /* the configuration's spacing (nnU-Net's transposed order), nsp entries */
    int transpose_forward[3], transpose_backward[3];
    int nchan;                    /* input channels */
    sarco_nn_norm norm[SARCO_NN_MAX_CHANNELS];
    int use_mask_for_norm[SARCO_NN_MAX_CHANNELS];
    double fg_mean[SARCO_NN_MAX_CHANNELS], fg_std[SARCO_NN_MAX_CHANNELS];
    double fg_p005[SARCO_NN_MAX_CHANNELS], fg_p995[SARCO_NN_MAX_CHANNELS];
    sarco_nn_resampling res_data, res_prob;
    int nmirror;                  /* allowed mirroring axes (spatial, 0-based); 0 = none */
    int mirror_axes[3];
    int nheads;                   /* segmentation heads (classes, or regions) */
    int has_regions;
    int regions_class_order[SARCO_NN_MAX_HEADS];
    int natural_image;            /* file_ending is .png/.jpg/...: nnU-Net reads spacing (999, 1, 1) */
    double tile_step;             /* 0.5 */
    /* postprocessing: remove all but the largest component of the union of each entry's labels,
     * in order (a region entry lists its labels) */
    int npp;
    int pp_nlabels[SARCO_NN_MAX_PP];
    int pp_labels[SARCO_NN_MAX_PP][8];
} sarco_nnunet_config;

/* Parses the "nnunet" object of a sarco.config (docs/nnunet.md). Returns SARCO_ERR_UNSUPPORTED with
 * a message when the object is absent (*present = 0 then, no error set). */
SARCO_INTERNAL sarco_status sarco_nnunet_config_parse(sarco_context *ctx, const char *config_json,
                                                      sarco_nnunet_config *cfg, int *present);

/* ---- resampling (nnunetv2.preprocessing.resampling.default_resampling) ------------------- */

/* scipy.ndimage.zoom(x, zoom = out/in, order, mode='nearest', grid_mode=True, prefilter=True) on a
 * float64 array of nd <= 3 dims (C order), as skimage.transform.resize(mode='edge',
 * anti_aliasing=False) calls it, then clipped to x's [min, max] (skimage's clip). order 0..5. */
SARCO_INTERNAL sarco_status sarco_nn_resize(sarco_context *ctx, int nd, const int64_t *ishape, const double *x,
                                            const int64_t *oshape, int order, double *y);

/* nnU-Net's separate-z decision: *axis = -1 when not separate. */
SARCO_INTERNAL void sarco_nn_sep_z(int force_separate_z, const double *current, const double *target, int *sep,
                                   int *axis);

/* resample_data_or_seg_to_shape(is_seg=False) on one channel (3 dims): float32 in, float64 out. */
SARCO_INTERNAL sarco_status sarco_nn_resample_channel(sarco_context *ctx, const int64_t *shape, const float *x,
                                                      const int64_t *new_shape, const double *current_spacing,
                                                      const double *new_spacing, const sarco_nn_resampling *r,
                                                      double *y);

/* Order-1 zoom taps on one axis (mode nearest, grid_mode): output k = x[i0] w0 + x[i1] w1 (scipy's
 * weights; an unchanged length gives w0 = 1). */
SARCO_INTERNAL void sarco_nn_linear_taps(int64_t in_len, int64_t out_len, int64_t *i0, int64_t *i1, double *w0,
                                         double *w1);
/* map_coordinates order 0 along the thick axis: the source index of output k */
SARCO_INTERNAL int64_t sarco_nn_nearest_index(int64_t in_len, int64_t out_len, int64_t k);

/* round(old_spacing / new_spacing * old_shape), Python's round (half to even) */
SARCO_INTERNAL void sarco_nn_new_shape(int n, const int64_t *old_shape, const double *old_sp, const double *new_sp,
                                       int64_t *out);

/* ---- preprocessing (DefaultPreprocessor.run_case_npy at inference) ----------------------- */

typedef struct sarco_nn_pre {
    int64_t shape_before[3];   /* after transpose, before cropping */
    int64_t bbox[3][2];        /* half-open, transposed axes */
    int64_t shape_cropped[3];
    int64_t shape_model[3];    /* after resampling */
    double spacing_t[3];       /* the image's spacing, transposed */
    double target_spacing[3];  /* the model grid's spacing (3 entries; a 2-D config keeps axis 0) */
    float *data;               /* (nchan, shape_model...) owned, sarco_ctx_malloc */
    size_t data_bytes;
} sarco_nn_pre;

/* chan: cfg->nchan pointers to (dims...) arrays in nnU-Net order (ndim 3; a 2-D image is (1, y, x));
 * spacing in the same order. */
SARCO_INTERNAL sarco_status sarco_nn_preprocess(sarco_context *ctx, const sarco_nnunet_config *cfg,
                                                const float *const *chan, const int64_t *dims,
                                                const double *spacing, sarco_nn_pre *out);
SARCO_INTERNAL void sarco_nn_pre_free(sarco_context *ctx, sarco_nn_pre *p);

/* binary_fill_holes of (d0, d1, d2) in place (face-connected background reaching the border stays) */
SARCO_INTERNAL sarco_status sarco_nn_fill_holes(sarco_context *ctx, const int64_t *dims, uint8_t *mask);

/* ---- the predictor ----------------------------------------------------------------------- */

/* The network of fold `fold` on a batch of tiles: x (n, cin, patch...) -> y (n, nheads, patch...),
 * host buffers, PyTorch layout. */
typedef sarco_status (*sarco_nn_predict_fn)(void *user, sarco_context *ctx, int fold, int nsp,
                                            const int64_t *tile_shape, const float *x, float *y);

/* compute_gaussian(patch, 1/8, value_scaling_factor 10, fp16): w (patch...) as halves. */
SARCO_INTERNAL void sarco_nn_gaussian(int nsp, const int64_t *patch, uint16_t *w);
/* compute_steps_for_sliding_window for one axis: n steps into steps (room for 1 + size). */
SARCO_INTERNAL int64_t sarco_nn_steps(int64_t size, int64_t patch, double step, int64_t *steps);

typedef struct sarco_nn_run_opts {
    int mirroring;      /* 1: over cfg's allowed axes (nnU-Net's default), 0: off */
    int fp32;           /* 0: nnU-Net's fp16 accumulators and fold average (exact mode); 1: fp32 */
    int nfolds;
} sarco_nn_run_opts;

typedef struct sarco_nn_run_info {
    int64_t windows;           /* sliding-window positions per fold */
    int64_t network_calls;     /* forward calls (each a batch of mirror variants) */
    size_t logit_bytes;        /* bytes of the model-grid accumulators held */
    double seconds_preprocess, seconds_inference, seconds_postprocess;
} sarco_nn_run_info;

/* Logits on the model grid (nheads, shape_model...), fold-averaged, as halves (exact mode) or
 * floats (fp32 mode): *logits is sarco_ctx_malloc'd, *bytes its size. */
SARCO_INTERNAL sarco_status sarco_nn_predict_logits(sarco_context *ctx, const sarco_nnunet_config *cfg,
                                                    const sarco_nn_pre *pre, const sarco_nn_run_opts *o,
                                                    sarco_nn_predict_fn predict, void *user, void **logits,
                                                    size_t *bytes, sarco_nn_run_info *info);

/* Export: logits (model grid) -> labels (nnU-Net order, shape before transpose = dims of the input),
 * postprocessing included. */
SARCO_INTERNAL sarco_status sarco_nn_export(sarco_context *ctx, const sarco_nnunet_config *cfg,
                                            const sarco_nn_pre *pre, int fp32, const void *logits,
                                            const int64_t *dims, uint16_t *labels);

/* remove_all_but_largest_component (full connectivity; ties keep every largest one) on the union
 * of `labels` (n of them) in seg (dims, 3 axes); removed voxels become 0. */
SARCO_INTERNAL sarco_status sarco_nn_keep_largest(sarco_context *ctx, const int64_t *dims, uint16_t *seg,
                                                  const int *labels, int n);

/* The whole path on channel arrays in nnU-Net order (dims 3 axes, spacing likewise): labels out in
 * the same order and size. */
SARCO_INTERNAL sarco_status sarco_nn_segment(sarco_context *ctx, const sarco_nnunet_config *cfg,
                                             const float *const *chan, const int64_t *dims, const double *spacing,
                                             const sarco_nn_run_opts *o, sarco_nn_predict_fn predict, void *user,
                                             uint16_t *labels, sarco_nn_run_info *info);

/* The same, also saying what preprocessing decided (for sarco_segment_info). */
typedef struct sarco_nn_pre_info {
    int64_t bbox[3][2];
    int64_t shape_model[3];
    double target_spacing[3];
    int mirror_variants;
} sarco_nn_pre_info;
SARCO_INTERNAL sarco_status sarco_nn_segment_ex(sarco_context *ctx, const sarco_nnunet_config *cfg,
                                                const float *const *chan, const int64_t *dims, const double *spacing,
                                                const sarco_nn_run_opts *o, sarco_nn_predict_fn predict, void *user,
                                                uint16_t *labels, sarco_nn_run_info *info, sarco_nn_pre_info *pinfo);

/* sarco_segment's nnU-Net branch (nnunet_segment.c): the model's folds as the predictor. */
SARCO_INTERNAL sarco_status sarco_nnunet_segment_model(sarco_context *ctx, sarco_model *model,
                                                       const sarco_nnunet_config *cfg, const sarco_image *img,
                                                       const sarco_segment_options *o, uint16_t *labels,
                                                       sarco_segment_info *info);

#endif
