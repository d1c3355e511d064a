/* libsarco: sarcopenia measurements from CT and ultrasound images.
 *
 * The one public header. Rules that hold for every function here:
 *   - functions return a sarco_status; results come back through out-pointers;
 *   - nothing aborts or exits on bad input; the reason is in sarco_last_error(ctx);
 *   - freeing NULL is a no-op;
 *   - new behaviour arrives as new functions, never as a changed signature;
 *   - option structs carry their own size, so old callers keep working.
 */
#ifndef SARCO_SARCO_H
#define SARCO_SARCO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SARCO_VERSION_MAJOR 0
#define SARCO_VERSION_MINOR 1
#define SARCO_VERSION_PATCH 0
#define SARCO_VERSION_NUMBER (SARCO_VERSION_MAJOR * 10000 + SARCO_VERSION_MINOR * 100 + SARCO_VERSION_PATCH)

#if defined(_WIN32)
#define SARCO_API
#else
#define SARCO_API __attribute__((visibility("default")))
#endif

/* The library's version; compare with SARCO_VERSION_NUMBER to catch a header/library mismatch. */
SARCO_API unsigned sarco_version_number(void);
SARCO_API const char *sarco_version_string(void);

typedef enum sarco_status {
    SARCO_OK = 0,
    SARCO_ERR_INVALID_ARGUMENT = 1,  /* a NULL, a wrong shape, an out-of-range option */
    SARCO_ERR_OUT_OF_MEMORY = 2,     /* allocation failed or would pass the context's memory limit */
    SARCO_ERR_IO = 3,                /* open/read/write/rename failed */
    SARCO_ERR_BAD_FORMAT = 4,        /* a file that breaks its format's rules */
    SARCO_ERR_UNSUPPORTED = 5,       /* well-formed but not something we handle (an unknown arch, dtype) */
    SARCO_ERR_BACKEND_UNAVAILABLE = 6, /* the asked-for backend cannot run here (no CUDA library, no device) */
    SARCO_ERR_DEVICE = 7,            /* the backend failed while running (a CUDA/cuDNN/oneDNN error) */
    SARCO_ERR_LIMIT = 8,             /* a size past a safety cap (absurd dims, decompression bombs) */
    SARCO_ERR_CANCELLED = 9,         /* the progress callback asked to stop */
    SARCO_ERR_INTERNAL = 10          /* a bug in libsarco: please report it */
} sarco_status;

/* Static text for a status, e.g. "bad format". Never NULL. */
SARCO_API const char *sarco_status_string(sarco_status s);

/* ---- context ---------------------------------------------------------------------------- */

/* Threading contract (docs/reliability.md; tested by test/test_threads.c, also under ThreadSanitizer):
 *  - The library has no global mutable state: calls on different contexts may run at once in any
 *    number of threads.
 *  - A context serves one call at a time. Share it between threads only with your own lock (the
 *    Python binding holds one); its error text, memory count and progress callback are per context.
 *  - A model is tied to the context it was loaded on (another context gets INVALID_ARGUMENT) and so
 *    is not shared between threads: give each thread its own context and model. A second call on a
 *    model while one runs on it (another thread, or re-entry from the progress callback) is refused
 *    with SARCO_ERR_INVALID_ARGUMENT, not run.
 *  - Images, pictures and label buffers are plain memory: many threads may read one at once (e.g. the
 *    same input image segmented by several contexts); a writer needs exclusive use.
 *  - Callbacks (log, progress) run on the calling thread, inside the call. */
typedef struct sarco_context sarco_context;

typedef enum sarco_backend_kind {
    SARCO_BACKEND_AUTO = 0, /* CUDA when libsarco_cuda.so and a device are present, else CPU */
    SARCO_BACKEND_CPU = 1,
    SARCO_BACKEND_CUDA = 2
} sarco_backend_kind;

typedef enum sarco_precision {
    SARCO_PRECISION_FP32 = 0, /* exact mode: the reference results */
    SARCO_PRECISION_TF32 = 1, /* GPU fast mode: TF32 tensor cores for convs and GEMMs */
    SARCO_PRECISION_FP16 = 2, /* GPU fast mode: half-precision storage, FP32 accumulation */
    SARCO_PRECISION_BF16 = 3  /* CPU fast mode (AVX512-BF16 or AMX only; refused elsewhere and on CUDA): BF16
                                 weights and conv/linear inputs, FP32 accumulation, outputs and other ops */
} sarco_precision;

typedef enum sarco_log_level {
    SARCO_LOG_ERROR = 0,
    SARCO_LOG_WARN = 1,
    SARCO_LOG_INFO = 2,
    SARCO_LOG_DEBUG = 3
} sarco_log_level;

typedef void (*sarco_log_fn)(void *user, sarco_log_level level, const char *message);

/* Return non-zero to cancel the running call (it then returns SARCO_ERR_CANCELLED). */
typedef int (*sarco_progress_fn)(void *user, const char *stage, int64_t done, int64_t total);

typedef struct sarco_context_options {
    size_t struct_size;          /* sizeof(sarco_context_options); set by sarco_context_options_init */
    sarco_backend_kind backend;  /* default AUTO */
    int device;                  /* CUDA device index, default 0 */
    int threads;                 /* CPU threads; 0 = all cores */
    sarco_precision precision;   /* default FP32 */
    size_t memory_limit;         /* bytes the context may hold on the host; 0 = no limit */
    sarco_log_fn log;            /* optional; default: silent */
    void *log_user;
    sarco_log_level log_level;   /* messages above this level are dropped; default WARN */
    /* fields added later stay below, at the end */
    size_t device_memory_limit;  /* bytes a CUDA context may hold on its device; 0 = $SARCO_CUDA_MEMORY_LIMIT,
                                    else no limit (docs/cuda.md) */
} sarco_context_options;

SARCO_API void sarco_context_options_init(sarco_context_options *opts);

/* opts may be NULL (defaults). On failure *out is NULL and, when the failure is a backend
 * one, sarco_last_error(NULL) is not available: use sarco_context_create_ex's message buffer. */
SARCO_API sarco_status sarco_context_create(const sarco_context_options *opts, sarco_context **out);
/* Like sarco_context_create, and on failure copies the reason into msg (size msg_size). */
SARCO_API sarco_status sarco_context_create_ex(const sarco_context_options *opts, sarco_context **out,
                                               char *msg, size_t msg_size);
SARCO_API void sarco_context_free(sarco_context *ctx);

/* The message of the last failing call on ctx (or a note such as why AUTO chose the CPU).
 * Valid until the next call on ctx. Never NULL; "" when there is nothing to say. */
SARCO_API const char *sarco_last_error(const sarco_context *ctx);

/* The backend this context actually runs on (CPU or CUDA, never AUTO). */
SARCO_API sarco_backend_kind sarco_context_backend(const sarco_context *ctx);
/* Which backend this context runs on and why, one line: for CUDA the plug-in file, the CUDA runtime
 * it was built with, the driver's CUDA version and the device; for the CPU chosen by AUTO, why CUDA
 * was not used (the loader's or the driver's own words). Never NULL; valid as long as ctx. */
SARCO_API const char *sarco_context_backend_detail(const sarco_context *ctx);
SARCO_API void sarco_context_set_progress(sarco_context *ctx, sarco_progress_fn fn, void *user);

/* ---- images ------------------------------------------------------------------------------ */

/* The NIfTI header geometry an image was read from, exactly as stored (file units, no unit
 * scaling), so that writing the image or a label map on its grid gives back the same dims,
 * pixdim, xyzt_units, qform and sform. version 0: not from a NIfTI file (the rest is zero). */
typedef struct sarco_nifti_geometry {
    int version;           /* 1 or 2 (NIfTI-1 / NIfTI-2), 0 = none */
    int datatype;          /* the file's NIFTI_TYPE_* code */
    int64_t dim[8];        /* dim[0] = rank; dims past the rank are 1 */
    double pixdim[8];      /* pixdim[0] = qfac */
    int xyzt_units;
    int qform_code, sform_code;
    double quatern[3];     /* quatern_b, quatern_c, quatern_d */
    double qoffset[3];     /* qoffset_x, qoffset_y, qoffset_z */
    double srow[3][4];     /* srow_x, srow_y, srow_z */
} sarco_nifti_geometry;

/* A scalar image on the host, float32, x fastest (NIfTI order): data[x + nx*(y + ny*z)].
 * spacing in mm; affine maps voxel (i, j, k, 1) to scanner RAS+ mm (NIfTI sform/qform). */
typedef struct sarco_image {
    int ndim;              /* 2 or 3 */
    int64_t dims[3];       /* nx, ny, nz (nz = 1 for 2D) */
    double spacing[3];     /* mm */
    double affine[4][4];
    float *data;           /* owned by the image */
    int64_t nan_count;     /* NaN voxels found when the file was read (kept as NaN) */
    uint32_t flags;        /* SARCO_IMAGE_* notes from reading */
    /* fields added later stay below, at the end */
    sarco_nifti_geometry nifti; /* the source header's geometry (docs/io.md) */
    struct sarco_dicom_info *dicom; /* what was read from DICOM (owned; NULL for other sources) */
} sarco_image;

/* What a DICOM read used (docs/io.md "DICOM"). Never holds patient name, ID or birth date. */
typedef struct sarco_dicom_info {
    char series_uid[68];          /* SeriesInstanceUID */
    char series_description[68];  /* SeriesDescription ("" when absent) */
    char modality[20];
    char transfer_syntax[68];     /* of the first file read */
    char photometric[20];         /* PhotometricInterpretation as stored */
    int64_t files;                /* files read (slices of a series; 1 for a single file) */
    int64_t frames;               /* frames per file */
    double slice_spacing;         /* mm between slice centres along the normal (series), else 0 */
    double largest_gap;           /* mm, the largest distance between neighbouring slices (series) */
    double gap_tolerance;         /* mm, the largest deviation from slice_spacing accepted */
    int spacing_source;           /* SARCO_DICOM_SPACING_* */
    double rescale_slope, rescale_intercept; /* of the first slice (1, 0 without Rescale) */
} sarco_dicom_info;

#define SARCO_DICOM_SPACING_NONE 0          /* no physical spacing (SARCO_IMAGE_NO_SPACING) */
#define SARCO_DICOM_SPACING_PIXEL_SPACING 1 /* PixelSpacing (0028,0030) */
#define SARCO_DICOM_SPACING_US_REGIONS 2    /* Sequence of Ultrasound Regions: Physical Delta X/Y in cm */

#define SARCO_IMAGE_UNITS_ASSUMED_MM 0x1u   /* xyzt_units said nothing: spacing taken as mm */
#define SARCO_IMAGE_SCALED 0x2u             /* scl_slope/inter were applied */
#define SARCO_IMAGE_NO_SPACING 0x4u         /* the file carries no physical spacing (PNG without pHYs) */
#define SARCO_IMAGE_QFORM_SFORM_DISAGREE 0x8u /* both set, > 1e-3 mm apart inside the grid: sform used */
#define SARCO_IMAGE_DICOM_FRAMES 0x10u       /* DICOM multi-frame (cine): z is the frame index, not space */
#define SARCO_IMAGE_DICOM_MONOCHROME1 0x20u  /* DICOM MONOCHROME1: values as stored, low = white */

SARCO_API sarco_status sarco_image_create(sarco_context *ctx, int ndim, const int64_t *dims,
                                          const double *spacing, sarco_image **out);
SARCO_API void sarco_image_free(sarco_image *img);

/* ---- models ------------------------------------------------------------------------------ */

typedef struct sarco_model sarco_model;

/* Loads a libsarco model file (safetensors with a sarco.config entry in __metadata__). Every
 * tensor the architecture needs is checked by name and shape before anything is allocated on a
 * device; on any problem nothing is loaded and *out is NULL. */
SARCO_API sarco_status sarco_model_load(sarco_context *ctx, const char *path, sarco_model **out);
SARCO_API void sarco_model_free(sarco_model *model);

/* The model's sarco.config as a JSON string (owned by the model). */
SARCO_API const char *sarco_model_config_json(const sarco_model *model);
/* The architecture name, e.g. "monai.UNETR". */
SARCO_API const char *sarco_model_arch(const sarco_model *model);

/* The raw network's output shape for an input shape, both in PyTorch layout: (N, C, H, W) or
 * (N, C, D, H, W). Fails with INVALID_ARGUMENT when the model cannot take that input. */
SARCO_API sarco_status sarco_model_output_shape(sarco_context *ctx, const sarco_model *model, int ndim,
                                                const int64_t *in_shape, int64_t *out_shape);

/* Runs the raw network (no pre/post-processing) on a float32 host buffer in PyTorch layout.
 * y must hold y_count floats, the product of sarco_model_output_shape's result. */
SARCO_API sarco_status sarco_model_forward(sarco_context *ctx, sarco_model *model, int ndim,
                                           const int64_t *in_shape, const float *x, float *y,
                                           size_t y_count);

/* Model files may hold several trainings of one network (nnU-Net's cross-validation folds,
 * classifier ensembles): sarco.config "folds" names them and tensor t of fold i is stored as
 * "fold.<i>.<t>". The number of folds (1 for a file without "folds"); 0 for NULL. */
SARCO_API int sarco_model_fold_count(const sarco_model *model);
/* sarco_model_forward with fold `fold` (0 .. fold_count - 1); sarco_model_forward runs fold 0. */
SARCO_API sarco_status sarco_model_forward_fold(sarco_context *ctx, sarco_model *model, int fold, int ndim,
                                                const int64_t *in_shape, const float *x, float *y,
                                                size_t y_count);

/* ---- measurements, segmentation metrics, cohort statistics -------------------------------- */

/* Arrays in this section are in C order, as numpy stores them: dims[0] is the slowest axis and
 * dims[ndim - 1] the fastest, so element (i, j, k) of a 3D array is a[k + dims[2] * (j + dims[1] * i)];
 * spacing[a] (mm, finite, > 0) belongs to axis a. A sarco_image (x fastest) is such an array, with no
 * copy, when read as dims {nz, ny, nx} and spacing {sz, sy, sx} (2D: {ny, nx} and {sy, sx}).
 * ndim is 2 or 3. Label images are uint16, 0 = background. ctx may be NULL: then every core is
 * used and no message is kept. Results do not depend on the number of threads, except that the
 * intensity sums of an image with non-integer values may differ in the last bits. */

/* Exact Euclidean distance transform, as scipy.ndimage.distance_transform_edt(mask, sampling=spacing):
 * out[i] = distance in mm from voxel i to the nearest voxel whose mask is 0 (0 where the mask is 0;
 * +inf everywhere when no voxel is 0). out holds prod(dims) floats. */
SARCO_API sarco_status sarco_edt(sarco_context *ctx, int ndim, const int64_t *dims, const double *spacing,
                                 const uint8_t *mask, float *out);

#define SARCO_MEASURE_HAS_IMAGE 0x1u /* the intensity fields are set (an image was given) */

/* One label's size and intensity. CT windows (inclusive): muscle -29..150 HU, IMAT -190..-30 HU. */
typedef struct sarco_label_measure {
    int32_t label;
    uint32_t flags;         /* SARCO_MEASURE_* */
    int64_t voxels;         /* voxels (pixels in 2D) carrying the label */
    double volume_ml;       /* 3D: voxels x voxel volume / 1000; 0 in 2D */
    double area_cm2;        /* 2D: pixels x pixel area / 100; 0 in 3D */
    /* with an image only (else 0); NaN/inf intensities are left out and counted */
    int64_t finite_voxels;  /* voxels with a finite intensity: the statistics cover these */
    double mean, sd;        /* sd: population (divides by finite_voxels, as numpy.std) */
    double min, max;
    double fraction_muscle; /* share of finite_voxels inside -29..150 HU */
    double fraction_imat;   /* share of finite_voxels inside -190..-30 HU */
} sarco_label_measure;

/* Per-label voxel counts, volumes (3D) or areas (2D) and intensity statistics in one pass.
 * image (optional, float32, same dims) gives the intensities, e.g. CT in HU. which/nwhich: the
 * labels to report, in that order (absent ones get zero counts); which = NULL reports every nonzero
 * label present, ascending. *out (free with sarco_label_measures_free) holds *count entries. */
SARCO_API sarco_status sarco_measure_labels(sarco_context *ctx, int ndim, const int64_t *dims,
                                            const double *spacing, const uint16_t *labels, const float *image,
                                            const int32_t *which, size_t nwhich, sarco_label_measure **out,
                                            size_t *count);
SARCO_API void sarco_label_measures_free(sarco_label_measure *m);

/* Flags of a sarco_seg_metrics. With both masks empty: Dice = Jaccard = 1, distances 0, RAVD 0.
 * With one empty: Dice = Jaccard = 0 and HD = HD95 = ASSD = the image diagonal, the length of the
 * field of view sqrt(sum_a (dims[a] spacing[a])^2) in mm. RAVD with an empty reference is
 * undefined: it is 0 and flagged. No field is ever NaN. */
#define SARCO_METRIC_PRED_EMPTY 0x1u
#define SARCO_METRIC_REF_EMPTY 0x2u
#define SARCO_METRIC_RAVD_UNDEFINED 0x4u

/* One label's agreement between a prediction P and a reference G.
 * Surface = voxels of the mask with a face-neighbour (4 in 2D, 6 in 3D) outside the mask or the
 * array. Distances: exact Euclidean, in mm, from each surface voxel of one mask to the nearest
 * surface voxel of the other. HD = max of the two directed maxima; HD95 = max of the two directed
 * 95th percentiles (linear interpolation); ASSD = mean of both directions' distances pooled
 * (MONAI's SurfaceDistanceMetric(symmetric=True)); RAVD = (|P| - |G|) / |G| x 100, signed. */
typedef struct sarco_seg_metrics {
    int32_t label;
    uint32_t flags;                            /* SARCO_METRIC_* */
    int64_t voxels_pred, voxels_ref, voxels_both;
    int64_t surface_pred, surface_ref;         /* surface voxel counts */
    double dice, jaccard;
    double hd_mm, hd95_mm, assd_mm;
    double ravd_percent;
    double volume_pred_ml, volume_ref_ml;      /* 3D; 0 in 2D */
    double area_pred_cm2, area_ref_cm2;        /* 2D; 0 in 3D */
} sarco_seg_metrics;

/* Per-label metrics of pred against ref (same dims). labels/nlabels: the labels to evaluate, in
 * that order; labels = NULL evaluates every nonzero label found in either image, ascending.
 * *out (free with sarco_seg_metrics_free) holds *count entries. */
SARCO_API sarco_status sarco_evaluate_labels(sarco_context *ctx, int ndim, const int64_t *dims,
                                             const double *spacing, const uint16_t *pred, const uint16_t *ref,
                                             const int32_t *labels, size_t nlabels, sarco_seg_metrics **out,
                                             size_t *count);
SARCO_API void sarco_seg_metrics_free(sarco_seg_metrics *m);

/* Ultrasound measures of a 2D label map (docs/measure.md "Ultrasound"). dims = {rows, cols}: C order,
 * rows down the image (the depth axis, away from the probe), columns across; spacing = {row, col} mm,
 * required (NULL is INVALID_ARGUMENT: a pixel size is never assumed). Per label:
 *   CSA = pixels x row spacing x col spacing;
 *   extent of a column = (deepest - shallowest mask row + 1) x row spacing: the vertical extent;
 *   MT = the median extent over the columns of the central third of the label's horizontal span
 *        (the columns whose centres lie in [c0 + w/3, c0 + 2w/3] of the span [c0, c0 + w) in pixel
 *        edges; at least the middle column), as DL_Track_US measures between the aponeuroses;
 *   mt_max = the largest extent of any column;
 *   inscribed diameter = 2 x the largest in-mask Euclidean distance to a pixel outside the label
 *        (outside the image counts as outside), sarco_edt's distance;
 *   components = 8-connected pieces, with the largest one's share of the pixels;
 *   echo (with an image: the raw grey values, e.g. 0..255; colour images as their luma) = mean and
 *        population SD over the label's finite pixels. */
#define SARCO_US_HAS_IMAGE 0x1u      /* the echo fields are set */
#define SARCO_US_EMPTY 0x2u          /* the label has no pixel: every size is 0 */
#define SARCO_US_FRAGMENTED 0x4u     /* more than one 8-connected component */
#define SARCO_US_TOUCHES_EDGE 0x8u   /* a pixel on the image border: the muscle may be cut off */

typedef struct sarco_us_measure {
    int32_t label;
    uint32_t flags;                    /* SARCO_US_* */
    int64_t pixels;
    double csa_mm2, csa_cm2;
    double mt_mm;                      /* median vertical extent, central third */
    double mt_max_mm;                  /* largest vertical extent */
    double inscribed_diameter_mm;      /* 2 x max in-mask EDT */
    int64_t mt_columns;                /* columns the median ran over */
    int64_t row_min, row_max, col_min, col_max; /* bounding box, inclusive pixel indices */
    double height_mm, width_mm;        /* bounding box size: (row_max - row_min + 1) x row spacing, ... */
    int64_t components;                /* 8-connected */
    double largest_component_share;    /* pixels of the largest component / pixels */
    int64_t finite_pixels;             /* with an image: pixels with a finite grey value */
    double echo_mean, echo_sd;         /* with an image: mean, population SD (0 when no finite pixel) */
} sarco_us_measure;

/* Ultrasound measures of labels (rows x cols, uint16, 0 = background) with an optional grey image
 * (float32, same dims). which/nwhich: the labels to report, in that order (absent ones flagged
 * EMPTY); which = NULL reports every nonzero label present, ascending. Free *out with
 * sarco_us_measures_free. */
SARCO_API sarco_status sarco_measure_ultrasound(sarco_context *ctx, const int64_t *dims, const double *spacing,
                                                const uint16_t *labels, const float *image, const int32_t *which,
                                                size_t nwhich, sarco_us_measure **out, size_t *count);
SARCO_API void sarco_us_measures_free(sarco_us_measure *m);

/* Cohort statistics. Inputs must be finite; failures (too few values, zero variance) return
 * INVALID_ARGUMENT with the reason rather than a NaN. */

/* Pearson correlation of x and y (n >= 2, neither constant). */
SARCO_API sarco_status sarco_stats_pearson(sarco_context *ctx, const double *x, const double *y, size_t n,
                                           double *r);

/* Intraclass correlation (Shrout & Fleiss 1979) of n subjects x k raters, ratings[i * k + j]. */
typedef enum sarco_icc_form {
    SARCO_ICC_1_1 = 0, /* one-way random, single rater */
    SARCO_ICC_2_1 = 1, /* two-way random, absolute agreement, single rater */
    SARCO_ICC_3_1 = 2  /* two-way mixed, consistency, single rater */
} sarco_icc_form;
SARCO_API sarco_status sarco_stats_icc(sarco_context *ctx, const double *ratings, size_t n, size_t k,
                                       sarco_icc_form form, double *icc);

/* Area under the ROC curve = Mann-Whitney U / (n_pos n_neg), ties counted one half. truth: nonzero =
 * positive; both classes must be present. */
SARCO_API sarco_status sarco_stats_auc(sarco_context *ctx, const double *scores, const uint8_t *truth, size_t n,
                                       double *auc);

#define SARCO_BINARY_NO_POSITIVES 0x1u /* sensitivity undefined: reported as 0 */
#define SARCO_BINARY_NO_NEGATIVES 0x2u /* specificity undefined: reported as 0 */
#define SARCO_BINARY_F1_UNDEFINED 0x4u /* no true or predicted positives: F1 reported as 0 */

/* A classifier at a threshold: predicted positive when score >= threshold. */
typedef struct sarco_binary_metrics {
    int64_t tp, fp, tn, fn;
    double sensitivity, specificity, accuracy, f1;
    uint32_t flags; /* SARCO_BINARY_* */
} sarco_binary_metrics;
SARCO_API sarco_status sarco_stats_binary(sarco_context *ctx, const double *scores, const uint8_t *truth,
                                          size_t n, double threshold, sarco_binary_metrics *out);

/* ---- images: files ------------------------------------------------------------------------ */

/* Reads a NIfTI-1 or NIfTI-2 file (.nii or gzipped .nii.gz, either byte order) or a PNG, told apart
 * by content. Every header field is checked before anything is allocated (docs/io.md lists the
 * rules and the status each broken file gets). NIfTI: 1D-3D, or 4D+ with dim[4..] = 1; every real
 * datatype becomes float32 with scl_slope/scl_inter applied; spacing and affine in mm (xyzt_units
 * metres and micrometres converted); affine = sform if sform_code > 0, else qform if qform_code > 0,
 * else diag(pixdim); spacing = the affine's column lengths. PNG: grey on a 0..255 scale (1/2/4-bit
 * stretched, 16-bit / 257 kept fractional; colour -> ITU-R BT.601 luma; alpha ignored); spacing
 * from pHYs in metres, else 0 with SARCO_IMAGE_NO_SPACING (see sarco_image_set_spacing). JPEG
 * (baseline, progressive; grey, YCbCr or RGB; libjpeg-turbo): the same grey scale (colour -> BT.601
 * luma of the decoded RGB), spacing from the JFIF density as sarco_picture_read takes it; CMYK is
 * UNSUPPORTED, and a damaged or truncated file is BAD_FORMAT, never half-read. Labels cannot come
 * from a JPEG (lossy): UNSUPPORTED. */
SARCO_API sarco_status sarco_image_read(sarco_context *ctx, const char *path, sarco_image **out);
/* DICOM (docs/io.md "DICOM"; also through sarco_image_read): path is a DICOM file (told by the "DICM"
 * magic) or a folder searched recursively. A folder is one CT/MR series, grouped by SeriesInstanceUID
 * (series_uid NULL: the folder must hold exactly one, else INVALID_ARGUMENT listing each UID and
 * description), sorted by position along the slice normal, checked for equal size, orientation and
 * spacing (missing slices refused), values Rescale Slope/Intercept applied (CT: HU); the affine is
 * DICOM's LPS geometry turned to RAS. A file is a 2D image (grey; colour as BT.601 luma), or frames
 * along z for a multi-frame ultrasound file (SARCO_IMAGE_DICOM_FRAMES). img->dicom says what was
 * read. series_uid may be given with a file too (it must match). */
SARCO_API sarco_status sarco_image_read_series(sarco_context *ctx, const char *path, const char *series_uid,
                                               sarco_image **out);

/* Writes img as float32 NIfTI, .nii or .nii.gz by the path's ending. An image read from NIfTI (and
 * not re-gridded since) keeps its header's dims, pixdim, units, qform and sform exactly; any other
 * image is written from its affine (mm). Atomic: a temporary file in the target's directory,
 * fsync, rename; on failure no file is left and an existing one at path is untouched. */
SARCO_API sarco_status sarco_image_write(sarco_context *ctx, const sarco_image *img, const char *path);

/* Writes a label map (NIFTI_INTENT_LABEL) on geometry's grid, exactly as sarco_image_write would
 * place it; geometry->data is not used. labels: one value per voxel, x fastest, each <= max_label
 * (0..65535); stored as uint8 when max_label <= 255, else uint16. Atomic as above. A path ending in
 * ".png" writes an 8-bit grey PNG of a 2-D geometry instead (as nnU-Net writes labels of PNG
 * datasets; max_label <= 255; no spacing needed). */
SARCO_API sarco_status sarco_labels_write(sarco_context *ctx, const sarco_image *geometry, const uint16_t *labels,
                                          int max_label, const char *path);

/* Reads a label map exactly: every voxel (after scl_slope/scl_inter) must be an integer in 0..65535,
 * otherwise BAD_FORMAT naming the first voxel that is not (NaN, negative, fractional, too large).
 * PNG: grey samples as stored (no stretching) or palette indices; colour PNGs are refused.
 * *geometry gets dims, spacing, affine, flags and header geometry, with data == NULL.
 * Free *labels with sarco_labels_free and *geometry with sarco_image_free. */
SARCO_API sarco_status sarco_labels_read(sarco_context *ctx, const char *path, uint16_t **labels,
                                         sarco_image **geometry);
SARCO_API void sarco_labels_free(uint16_t *labels);

/* A new zero-filled image with src's dims, spacing, affine, header geometry and flags. */
SARCO_API sarco_status sarco_image_like(sarco_context *ctx, const sarco_image *src, sarco_image **out);
/* Copies spacing, affine, header geometry and flags (not nan_count) from src to dst (same dims). */
SARCO_API sarco_status sarco_image_copy_geometry(sarco_context *ctx, sarco_image *dst, const sarco_image *src);
/* Sets the voxel size in mm (ndim values, finite, > 0) where the file had none or it is wrong: the
 * affine's columns keep their directions (axis-aligned where they were zero) and take the new
 * lengths, NO_SPACING is cleared and the header geometry is dropped (nifti.version = 0). */
SARCO_API sarco_status sarco_image_set_spacing(sarco_context *ctx, sarco_image *img, const double *spacing);

/* ---- pictures: 2D images with their colour channels (docs/io.md "Pictures") ----------------- */

/* A 2D raster as stored, channels kept apart: data[c * height * width + row * width + col], i.e.
 * PyTorch's (C, H, W). Rows run down the image (the depth axis of an ultrasound image), columns
 * across. Values are the file's samples, unscaled: 0..255 when bit_depth is 8, 0..65535 when 16
 * (PNG grey of 1/2/4 bits is stretched to 0..255 and reported as 8, as PIL reads it); NIfTI pictures
 * carry real values (bit_depth 0). */
typedef struct sarco_picture {
    int64_t width, height;   /* columns, rows */
    int channels;            /* PNG: grey 1, grey+alpha 2, RGB 3, RGBA 4 (palette -> 3, or 4 with tRNS);
                                JPEG: grey 1, RGB 3; NIfTI: 1 */
    int bit_depth;           /* 8 or 16: the scale of the values; 0 = real values (NIfTI) */
    double spacing[2];       /* row, col pixel size in mm; 0 = unknown (then SARCO_IMAGE_NO_SPACING) */
    uint32_t flags;          /* SARCO_IMAGE_NO_SPACING, SARCO_PICTURE_* */
    float *data;             /* owned by the picture */
    /* fields added later stay below, at the end */
    int format;              /* SARCO_PICTURE_FORMAT_* the picture was read from */
    struct sarco_dicom_info *dicom; /* DICOM only (owned), else NULL */
} sarco_picture;

#define SARCO_PICTURE_FROM_PALETTE 0x100u   /* PNG palette indices expanded to RGB(A) */
#define SARCO_PICTURE_STRETCHED 0x200u      /* PNG grey of 1/2/4 bits stretched to 0..255 */
#define SARCO_PICTURE_FORMAT_PNG 1
#define SARCO_PICTURE_FORMAT_JPEG 2
#define SARCO_PICTURE_FORMAT_NIFTI 3
#define SARCO_PICTURE_FORMAT_DICOM 4   /* grey 1 or RGB 3 channels (YBR and palette as RGB), one frame */

/* Reads a PNG, a JPEG, a 2D NIfTI or a single-frame DICOM file (told by content, checked as sarco_image_read checks it)
 * with its channels as stored. Spacing: PNG pHYs in metres; JPEG JFIF density in dots per inch or
 * per cm, except the 72 and 96 dpi that writers put in by default; NIfTI pixdim. Otherwise 0 with
 * SARCO_IMAGE_NO_SPACING: the caller supplies it, it is never assumed. A 3D NIfTI (nz > 1) is
 * INVALID_ARGUMENT. Free with sarco_picture_free. */
SARCO_API sarco_status sarco_picture_read(sarco_context *ctx, const char *path, sarco_picture **out);
SARCO_API void sarco_picture_free(sarco_picture *pic);

/* ---- image classifiers: classify, fold ensembles, Grad-CAM (docs/classifiers.md) ------------- */

/* One image's result. classes is the network's output count: 1 = one sigmoid logit (probability[0]
 * is P(positive)), 2+ = softmax. Every fold of the model file runs; fold_sd is numpy's std (ddof 0). */
typedef struct sarco_classification {
    int classes, folds;
    double *probability; /* (classes): the mean over folds of each fold's probabilities */
    double *per_fold;    /* (folds, classes) */
    double *fold_sd;     /* (classes) */
    double *logits;      /* (folds, classes) */
    int predicted;       /* argmax of probability; for 1 class: 1 when probability[0] >= 0.5, else 0 */
    int nimputed;        /* tabular features imputed (multimodal models; 0 otherwise) */
    char **imputed;      /* their names */
} sarco_classification;

SARCO_API void sarco_classification_free(sarco_classification *c);

/* Classifies one prepared tensor x (1, C, H, W), PyTorch layout, host memory (already scaled and
 * normalised as the network was trained). */
SARCO_API sarco_status sarco_classify_tensor(sarco_context *ctx, sarco_model *model, const int64_t *in_shape,
                                             const float *x, sarco_classification **out);
/* The model config's image preprocessing ("classify" in sarco.config, docs/classifiers.md) applied to a
 * picture: shape gets (1, C, H, W); x (may be NULL to ask for the shape) must hold x_count floats. */
SARCO_API sarco_status sarco_classify_preprocess(sarco_context *ctx, const sarco_model *model,
                                                 const sarco_picture *pic, int64_t *shape, float *x, size_t x_count);
/* Preprocesses, then classifies. tabular_json: a JSON object of named clinical values for a
 * multimodal model, NULL otherwise. */
SARCO_API sarco_status sarco_classify(sarco_context *ctx, sarco_model *model, const sarco_picture *pic,
                                      const char *tabular_json, sarco_classification **out);

/* Grad-CAM (pytorch-grad-cam's GradCAM on the arch's default target layer) of a prepared tensor
 * (1, C, H, W): cam (H, W) in [0, 1]. target: the class; -1 = the predicted one (for a single logit
 * the score is +logit when predicted positive, -logit otherwise: BinaryClassifierOutputTarget; a
 * target of 1 or 0 picks the sign). Several folds: the mean of the folds' maps. */
SARCO_API sarco_status sarco_gradcam_tensor(sarco_context *ctx, sarco_model *model, const int64_t *in_shape,
                                            const float *x, int target, float *cam, size_t cam_count);
/* The same on a picture, after the config's preprocessing; the map is brought from the activation grid
 * straight to the picture's grid (height x width floats), as the resize maps the picture onto the
 * network's input. */
SARCO_API sarco_status sarco_gradcam(sarco_context *ctx, sarco_model *model, const sarco_picture *pic,
                                     const char *tabular_json, int target, float *cam, size_t cam_count);

/* A Grad-CAM map (picture grid, [0, 1]) as an RGB picture: viridis over the picture's grey (its
 * luma stretched to 0..255), out = (1 - alpha) grey + alpha colour (pytorch-grad-cam's
 * show_cam_on_image with image_weight 1 - alpha). rgb holds width x height x 3 bytes, top row first,
 * for sarco_png_write. */
SARCO_API sarco_status sarco_cam_overlay(sarco_context *ctx, const sarco_picture *pic, const float *cam,
                                         size_t cam_count, double alpha, uint8_t *rgb);

/* ---- segmentation pipeline (docs/pipeline.md) ---------------------------------------------- */

typedef enum sarco_blend_mode {
    SARCO_BLEND_FROM_CONFIG = 0, /* the model config's inference.mode (default constant) */
    SARCO_BLEND_CONSTANT = 1,
    SARCO_BLEND_GAUSSIAN = 2
} sarco_blend_mode;

/* MONAI sliding_window_inference settings. Fields left at their _init values take the model
 * config's "inference" entry, else MONAI's defaults (overlap 0.25, constant, sigma 0.125, batch 1). */
typedef struct sarco_window_options {
    size_t struct_size;        /* sizeof(sarco_window_options); set by sarco_window_options_init */
    int64_t roi[3];            /* window size per spatial axis; 0 = config inference.roi */
    double overlap;            /* in [0, 1); < 0 = config */
    sarco_blend_mode mode;
    double sigma_scale;        /* Gaussian sigma / roi; <= 0 = config */
    int sw_batch_size;         /* windows per network call; 0 = config */
    float cval;                /* padding value for inputs smaller than the roi; default 0 */
} sarco_window_options;

SARCO_API void sarco_window_options_init(sarco_window_options *opts);

/* The logits shape sarco_sliding_window gives for an input shape (N, C, [D,] H, W): (N, classes,
 * same spatial size). */
SARCO_API sarco_status sarco_sliding_window_shape(sarco_context *ctx, const sarco_model *model, int ndim,
                                                  const int64_t *in_shape, const sarco_window_options *opts,
                                                  int64_t *out_shape);

/* The raw network input x (N, C, [D,] H, W), float32, PyTorch layout, host) through MONAI's
 * sliding_window_inference with the model's roi: no preprocessing. logits holds logits_count floats
 * (the product of sarco_sliding_window_shape). opts may be NULL. Progress stage "windows". */
SARCO_API sarco_status sarco_sliding_window(sarco_context *ctx, sarco_model *model, int ndim,
                                            const int64_t *in_shape, const float *x,
                                            const sarco_window_options *opts, float *logits,
                                            size_t logits_count);

/* Test-time mirroring of nnU-Net models (sarco_segment_options.mirroring). */
typedef enum {
    SARCO_MIRROR_FROM_CONFIG = 0, /* the model's allowed mirroring axes (nnU-Net's default: on) */
    SARCO_MIRROR_OFF = 1,         /* as nnUNetv2_predict -disable_tta */
    SARCO_MIRROR_ON = 2           /* the allowed axes (none allowed: no mirroring either) */
} sarco_mirroring;

typedef struct sarco_segment_options {
    size_t struct_size;        /* sizeof(sarco_segment_options); set by sarco_segment_options_init */
    sarco_window_options window;
    /* fields added later stay below, at the end */
    sarco_mirroring mirroring; /* nnU-Net models only */
    int fp32_accumulation;     /* nnU-Net models: 0 = nnU-Net's fp16 window accumulation and fold average
                                  (exact mode, the default), 1 = fp32 (docs/nnunet.md) */
} sarco_segment_options;

SARCO_API void sarco_segment_options_init(sarco_segment_options *opts);

/* What sarco_segment did. The caller sets struct_size (sizeof); fields past it are not written. */
typedef struct sarco_segment_info {
    size_t struct_size;
    int64_t crop_start[3], crop_end[3]; /* foreground box in input voxels (after axcodes), [start, end) */
    int64_t model_dims[3];              /* the grid the network ran on, image axis order */
    double model_spacing[3];            /* mm */
    int64_t roi[3];
    double overlap;
    sarco_blend_mode mode;
    double sigma_scale;
    int sw_batch_size;
    int64_t windows;                    /* network calls x batch */
    int num_classes;                    /* network output channels */
    size_t slab_bytes;                  /* host bytes of the blending slab (not the whole logits) */
    double seconds_preprocess, seconds_inference, seconds_postprocess;
    /* fields added later stay below, at the end */
    int folds;                          /* networks averaged (nnU-Net folds); 1 otherwise */
    int mirror_variants;                /* network inputs per window: 1, or 1 + mirror combinations */
    int fp32_accumulation;              /* nnU-Net models: the accumulation used */
} sarco_segment_info;

/* nnU-Net models (a sarco.config with an "nnunet" object, docs/nnunet.md) run nnU-Net's own
 * pipeline instead: DefaultPreprocessor, nnUNetPredictor's sliding window with Gaussian weighting,
 * mirroring and fold averaging, its export and the stored postprocessing; window options other than
 * the ones below are ignored there, info->roi is the patch size and crop_start/end nnU-Net's box.
 *
 * The whole path on a CT (or 2-D) image: the config's preprocessing (HU window and scaling, gamma,
 * crop to foreground, resampling to the model's spacing), sliding-window inference, argmax, and the
 * labels back on ct's grid (nearest neighbour; 0 outside the foreground box). Memory stays bounded:
 * the logits are blended in slabs of roi rows and never held whole. labels: caller-owned, one
 * uint16 per voxel of ct, x fastest; labels_count must equal the voxel count. opts and info may be
 * NULL. Progress stage "windows". */
SARCO_API sarco_status sarco_segment(sarco_context *ctx, sarco_model *model, const sarco_image *ct,
                                     const sarco_segment_options *opts, uint16_t *labels, size_t labels_count,
                                     sarco_segment_info *info);

/* Per-label and per-group volumes of a label map on ct's grid. */
typedef struct sarco_volume_entry {
    int32_t label;             /* the label; -1 for a group */
    const char *name;          /* class or group name (owned by the report) */
    int64_t voxels;
    double volume_ml;          /* voxels x |det(affine[:3,:3])| / 1000 (area in cm^2 for 2-D images) */
    double volume_index;       /* volume_ml / height_m^2 (mL/m^2); 0 when no height was given */
    int64_t finite_voxels;     /* voxels with a finite intensity (the HU statistics cover these) */
    double hu_mean, hu_sd;     /* of ct inside the label; sd divides by finite_voxels */
} sarco_volume_entry;

typedef struct sarco_volume_report {
    size_t nlabels;
    sarco_volume_entry *labels; /* labels 1..classes-1 (or the largest label present), ascending */
    size_t ngroups;
    sarco_volume_entry *groups; /* the config's "groups", in its order */
    double voxel_volume_ml;     /* |det(affine)| / 1000 */
    double height_m;            /* 0 = none given */
} sarco_volume_report;

/* Volumes and HU statistics of labels (on ct's grid, x fastest) with the model config's class
 * names and groups. model may be NULL (then names are "label_N" and there are no groups);
 * height_m <= 0 means none. Free *out with sarco_volume_report_free. */
SARCO_API sarco_status sarco_segment_volumes(sarco_context *ctx, const sarco_model *model, const sarco_image *ct,
                                             const uint16_t *labels, size_t labels_count, double height_m,
                                             sarco_volume_report **out);
SARCO_API void sarco_volume_report_free(sarco_volume_report *report);

/* ---- pictures: PNG, overlays, the HTML report (docs/report.md) ------------------------------ */

/* The SHA-256 of a file's bytes as 64 lowercase hex digits (hex holds 65 bytes): the reports and
 * `sarco batch` name the exact model weights with it. */
SARCO_API sarco_status sarco_file_sha256(sarco_context *ctx, const char *path, char hex[65]);

/* Writes an 8-bit PNG: channels 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; pixels holds height rows of
 * width x channels bytes, top row first. spacing_mm (x, y in mm, each 0.001..1000) adds a pHYs chunk
 * of round(1000 / spacing) pixels per metre; NULL writes none. Atomic like sarco_image_write. */
SARCO_API sarco_status sarco_png_write(sarco_context *ctx, const char *path, const uint8_t *pixels, int64_t width,
                                       int64_t height, int channels, const double *spacing_mm);

typedef enum sarco_overlay_style {
    SARCO_OVERLAY_FILL = 0,   /* translucent fill (alpha) with an opaque 1-pixel outline */
    SARCO_OVERLAY_OUTLINE = 1 /* the opaque 1-pixel outline only */
} sarco_overlay_style;

typedef enum sarco_overlay_orientation {
    SARCO_OVERLAY_AUTO = 0,         /* radiological for 3D images and 2D NIfTI, as stored otherwise */
    SARCO_OVERLAY_AS_STORED = 1,    /* column = x index, row = y index, top row = y 0 */
    SARCO_OVERLAY_RADIOLOGICAL = 2  /* patient right on the viewer's left, anterior / superior up
                                       (by the sign of the affine's diagonal) */
} sarco_overlay_orientation;

/* How sarco_overlay_render draws (docs/report.md). */
typedef struct sarco_overlay_options {
    size_t struct_size;           /* sizeof(sarco_overlay_options); set by sarco_overlay_options_init */
    double window_width;          /* grey window in image units; <= 0: auto: 0..255 when every finite value
                                     lies in 0..255 (ultrasound, PNG), else CT soft tissue W400 / L40 */
    double window_level;
    sarco_overlay_style style;    /* default FILL */
    double alpha;                 /* fill opacity in [0, 1]; default 0.4 */
    int legend;                   /* 1 (default): a legend of the labels present, below the picture */
    const char *const *class_names; /* class_names[v] names label value v (v < nclass_names, non-NULL);
                                     others are "label v" */
    size_t nclass_names;
    double pixel_mm;              /* mm per output pixel; <= 0: auto */
    int axial_slices;             /* 3D: axial panels of the mosaic, 1..64; default 8 */
    sarco_overlay_orientation orientation;
} sarco_overlay_options;

SARCO_API void sarco_overlay_options_init(sarco_overlay_options *opts);

/* The fixed display colour of a label value (>= 1; 20 distinct colours, repeating). */
SARCO_API void sarco_overlay_color(int label, uint8_t rgb[3]);

/* Draws image (2D, or 3D as a mosaic of evenly spaced axial slices through the labelled extent plus
 * one coronal view) windowed to grey, with labels (one uint16 per voxel, x fastest; NULL: none) in
 * their colours, on square output pixels (the voxel aspect ratio from the spacing), and a legend.
 * *rgb (free with sarco_overlay_free) holds *height rows of *width x 3 bytes, top row first. */
SARCO_API sarco_status sarco_overlay_render(sarco_context *ctx, const sarco_image *image, const uint16_t *labels,
                                            const sarco_overlay_options *opts, uint8_t **rgb, int64_t *width,
                                            int64_t *height);
SARCO_API void sarco_overlay_free(uint8_t *rgb);
/* sarco_overlay_render written as an RGB PNG (with pHYs when the spacing is known), atomically. */
SARCO_API sarco_status sarco_overlay_write(sarco_context *ctx, const sarco_image *image, const uint16_t *labels,
                                           const sarco_overlay_options *opts, const char *path);

/* A picture for the report: a PNG file, or an RGB buffer (rows of width x 3 bytes, top first). */
typedef struct sarco_report_picture {
    const char *png_path;      /* embedded as is after validation; NULL: use rgb */
    const uint8_t *rgb;
    int64_t width, height;
    const char *caption;       /* optional */
} sarco_report_picture;

/* What one HTML report is made of. Every JSON text is optional; strings from them are HTML-escaped. */
typedef struct sarco_report_inputs {
    size_t struct_size;             /* sizeof(sarco_report_inputs); set by sarco_report_inputs_init */
    const char *segment_json;       /* `sarco segment`'s report */
    const char *diagnosis_json;     /* `sarco diagnose`'s output */
    const char *l3_json;            /* `sarco l3`'s output */
    const char *measure_json;       /* `sarco measure`'s output (e.g. ultrasound) */
    const char *model_path;         /* the model file (SHA-256, card, demo warning); NULL: segment_json's */
    const sarco_report_picture *pictures;
    size_t npictures;
    const char *input_name;         /* shown as the input file (its last path part); NULL: segment_json's */
    const char *date;               /* shown as the date; NULL: now, UTC */
    const char *title;              /* NULL: "Body composition report" */
} sarco_report_inputs;

SARCO_API void sarco_report_inputs_init(sarco_report_inputs *in);
/* One self-contained HTML page (pictures as data: URIs, no scripts, no network, print CSS for A4):
 * a header without patient data (input file name, date, library version, model architecture and
 * file SHA-256, model card summary, and a warning when the model's config marks it a demonstration
 * model), the pictures, the measurement tables with units and the diagnosis table (docs/report.md).
 * *html (free with sarco_report_free) is NUL-terminated, *len bytes without the NUL (len may be NULL). */
SARCO_API sarco_status sarco_report_html(sarco_context *ctx, const sarco_report_inputs *in, char **html,
                                         size_t *len);
SARCO_API void sarco_report_free(char *html);
/* sarco_report_html written to path atomically. */
SARCO_API sarco_status sarco_report_write(sarco_context *ctx, const sarco_report_inputs *in, const char *path);
/* ---- diagnosis rules (docs/clinical.md) ---------------------------------------------------- */

/* Rule sets are versioned JSON data (rules/NAME.json in the source tree, compiled into the library and
 * installed under PREFIX/share/sarco/rules): AWGS 2019, EWGSOP2 and the L3 SMI cut-off tables.
 * A name is looked up in the directories of $SARCO_RULES_PATH (colon-separated, NAME.json) first,
 * then among the built-in sets; a name containing '/' or ending in ".json" is a file path. */

/* Judges one subject against one or more rule sets. rules: a name, a path, or several joined by
 * ','; NULL takes input_json's "rules" entry. input_json: an object with "sex" ("M" or "F"),
 * optional "age", "height_m", "weight_kg", "bmi" and the measurements named by the rule sets'
 * inputs (e.g. "grip_kg": 16 or "grip_kg": {"value": 16, "unit": "kg"}); "mass_from":
 * "l3_smi:TABLE" with "smi_cm2_m2" or "measurements" (a `sarco l3` report) lets an imaging
 * measure stand in for muscle mass. *output_json (free with sarco_json_free): every criterion with
 * its value, unit, threshold, operator, table and status, the findings, the verdict per rule set and
 * what is missing to decide (schema sarco.diagnosis/1). Bad input (unknown rule set or measure, a
 * value outside its plausible range, a unit that does not match, a sex a table does not cover):
 * INVALID_ARGUMENT (UNSUPPORTED for a sex, BAD_FORMAT for a broken rules file) with the reason. */
SARCO_API sarco_status sarco_diagnose(sarco_context *ctx, const char *rules, const char *input_json,
                                      char **output_json);
/* Frees a JSON string returned by the library. */
SARCO_API void sarco_json_free(char *json);
/* The text of a rule set, found as sarco_diagnose finds it, after validation. */
SARCO_API sarco_status sarco_rules_get(sarco_context *ctx, const char *name_or_path, char **out_json);
/* {"builtin": [{"name", "version", "kind", "title"}...], "search_path": [...]} */
SARCO_API sarco_status sarco_rules_list(sarco_context *ctx, char **out_json);

/* ---- L3 body composition (docs/clinical.md) ------------------------------------------------ */

/* HU windows, inclusive (CT values are integers). Defaults (sarco_l3_options_init): muscle -29..150,
 * low-attenuation muscle -29..29, intermuscular adipose tissue (IMAT) -190..-30 (REFERENCE.md). */
typedef struct sarco_l3_options {
    size_t struct_size;            /* sizeof(sarco_l3_options); set by sarco_l3_options_init */
    double muscle_hu[2];
    double low_attenuation_hu[2];
    double imat_hu[2];
    double height_m;               /* > 0: SMI = SMA / height^2; 0: none */
} sarco_l3_options;

SARCO_API void sarco_l3_options_init(sarco_l3_options *opts);

/* One axial slice's muscle measures. The muscle compartment is every pixel carrying one of the
 * muscle labels; SMA counts the compartment's pixels inside the muscle window (the Alberta
 * protocol), IMAT its pixels inside the IMAT window; muscle attenuation is the mean HU over the SMA
 * pixels; the low-attenuation fraction is the share of SMA pixels inside the low-attenuation window. */
typedef struct sarco_l3_measures {
    double pixel_area_mm2;
    int64_t compartment_pixels;
    double compartment_area_cm2;
    int64_t sma_pixels;
    double sma_cm2;
    double smi_cm2_m2;                /* 0 without a height */
    double muscle_attenuation_hu;     /* 0 when sma_pixels is 0 */
    double muscle_attenuation_sd_hu;  /* population SD */
    int64_t low_attenuation_pixels;
    double low_attenuation_fraction;  /* of the SMA pixels */
    double low_attenuation_area_cm2;
    int64_t imat_pixels;
    double imat_area_cm2;
    int64_t nonfinite_pixels;         /* compartment pixels whose HU is NaN/inf: left out */
} sarco_l3_measures;

/* Measures one slice: dims {ny, nx} and spacing {sy, sx} in C order (as the measurement API), labels
 * uint16, hu float32 (HU), both ny*nx. muscle_labels/nmuscle: the labels forming the compartment.
 * Spacing must be finite and within 0.1..5 mm (a CT pixel): else INVALID_ARGUMENT. opts may be NULL. */
SARCO_API sarco_status sarco_l3_measure(sarco_context *ctx, const int64_t *dims, const double *spacing,
                                        const uint16_t *labels, const float *hu, const int32_t *muscle_labels,
                                        size_t nmuscle, const sarco_l3_options *opts, sarco_l3_measures *out);

/* The axial slice through the centre of a vertebra in a label map on geometry's grid (x fastest, e.g.
 * TotalSegmentator's vertebrae_L3): the z index nearest the centroid of the label's voxels (halves
 * round up). The grid's third axis must run head-feet. *centroid_z (may be NULL): the unrounded
 * centroid. INVALID_ARGUMENT when the label is absent. */
SARCO_API sarco_status sarco_l3_slice_from_labels(sarco_context *ctx, const sarco_image *geometry,
                                                  const uint16_t *labels, size_t labels_count, int32_t label,
                                                  int64_t *slice, double *centroid_z);

/* The L3 workflow in one call: the slice options_json names (and its neighbours when "slices" is 3),
 * segmented with model (sarco_segment on each 2-D slice) or taken from labels (on ct's grid; exactly
 * one of the two), measured per class and as sarco_l3_measures, averaged over the slices, and judged
 * with a cut-off table when "sex" and "table" are given. options_json (NULL = {}): "slice", "slices",
 * "classes" (names of the label values; else the model's, else the L3 phantom's), "height_m",
 * "sex", "bmi" or "weight_kg", "table", "muscle_hu", "low_attenuation_hu", "imat_hu" ([lo, hi]),
 * "slice_source" (echoed). *out_json (sarco_json_free): schema sarco.l3/1 (docs/clinical.md).
 * slice_labels (may be NULL): nx*ny values (x fastest) that receive the centre slice's labels as
 * measured, e.g. for an overlay. */
SARCO_API sarco_status sarco_l3_report(sarco_context *ctx, const sarco_image *ct, const uint16_t *labels,
                                       size_t labels_count, sarco_model *model, const char *options_json,
                                       char **out_json, uint16_t *slice_labels);

#ifdef __cplusplus
}
#endif

#endif /* SARCO_SARCO_H */
