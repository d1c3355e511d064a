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

typedef struct sarco_context sarco_context;

typedef enum sarco_backend_kind {
    SARCO_BACKEND_AUTO = 0, /* CUDA when libsarco_cuda.so and a device are present, else CPU */
    SARCO_BACKEND_CPU = 1,
    SARCO_BACKEND_CUDA = 2
} sarco_backend_kind;

typedef enum sarco_precision {
    SARCO_PRECISION_FP32 = 0, /* exact mode: the reference results */
    SARCO_PRECISION_TF32 = 1, /* GPU fast mode: TF32 tensor cores for convs and GEMMs */
    SARCO_PRECISION_FP16 = 2  /* GPU fast mode: half-precision storage, FP32 accumulation */
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
SARCO_API void sarco_context_set_progress(sarco_context *ctx, sarco_progress_fn fn, void *user);

/* ---- images ------------------------------------------------------------------------------ */

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
} sarco_image;

#define SARCO_IMAGE_UNITS_ASSUMED_MM 0x1u   /* xyzt_units said nothing: spacing taken as mm */
#define SARCO_IMAGE_SCALED 0x2u             /* scl_slope/inter were applied */
#define SARCO_IMAGE_NO_SPACING 0x4u         /* the file carries no physical spacing (PNG without pHYs) */

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

#ifdef __cplusplus
}
#endif

#endif /* SARCO_SARCO_H */
