/* Safetensors model files: a validated reader (every rule of REFERENCE.md "Bad input") and the
 * weight checks a model runs before it allocates anything on a device. */
#ifndef SARCO_SAFETENSORS_H
#define SARCO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

typedef enum sarco_st_dtype {
    SARCO_ST_F64, SARCO_ST_F32, SARCO_ST_F16, SARCO_ST_BF16,
    SARCO_ST_I64, SARCO_ST_I32, SARCO_ST_I16, SARCO_ST_I8, SARCO_ST_U8, SARCO_ST_BOOL,
    SARCO_ST_DTYPE_COUNT
} sarco_st_dtype;

#define SARCO_ST_MAX_RANK 8

typedef struct sarco_st_tensor {
    const char *name;
    sarco_st_dtype dtype;
    int ndim;                           /* 0 for a scalar */
    int64_t shape[SARCO_ST_MAX_RANK];
    int64_t numel;
    uint64_t begin, end;                /* byte span inside the data section */
} sarco_st_tensor;

typedef struct sarco_st_file {
    uint8_t *buf;               /* the whole file: mapped read-only (sarco_st_open) or a copy (sarco_st_parse) */
    size_t size;
    int mapped;
    size_t data_start;          /* 8 + header length */
    sarco_st_tensor *tensors;   /* sorted by name */
    size_t count;
    char *metadata_json;        /* __metadata__ as a JSON object text ("{}" if absent) */
    char *config_json;          /* __metadata__["sarco.config"], NULL if absent */
    int64_t nonfinite;          /* NaN/Inf values found in floating tensors (reported, not fatal) */
    char *first_nonfinite;      /* name of the first tensor holding one */
    char *path;
} sarco_st_file;

/* Reads and validates a whole file. */
SARCO_INTERNAL sarco_status sarco_st_open(sarco_context *ctx, const char *path, sarco_st_file **out);
/* Validates an in-memory file; takes a copy of buf. `name` is used in messages. */
SARCO_INTERNAL sarco_status sarco_st_parse(sarco_context *ctx, const uint8_t *buf, size_t size, const char *name,
                                           sarco_st_file **out);
SARCO_INTERNAL void sarco_st_close(sarco_st_file *f);

SARCO_INTERNAL const sarco_st_tensor *sarco_st_find(const sarco_st_file *f, const char *name);
SARCO_INTERNAL const char *sarco_st_dtype_name(sarco_st_dtype d);
/* Converts a tensor to float32 (from any float or integer dtype) into out[numel]; copies, never
 * casts the file's bytes, so unaligned data is fine. */
SARCO_INTERNAL void sarco_st_to_f32(const sarco_st_file *f, const sarco_st_tensor *t, float *out);
/* The tensor's values in place (valid until sarco_st_close) when the file holds them as 4-byte aligned
 * float32 on a little-endian host, so a loader can skip the copy; NULL otherwise (use sarco_st_to_f32). */
SARCO_INTERNAL const float *sarco_st_f32_view(const sarco_st_file *f, const sarco_st_tensor *t);

/* ---- what a model expects ---- */

typedef struct sarco_wspec {
    char name[192];
    int ndim;
    int64_t shape[SARCO_ST_MAX_RANK];
} sarco_wspec;

typedef struct sarco_wlist {
    sarco_wspec *items;
    size_t count, cap;
    int oom;
} sarco_wlist;

/* Adds an expected tensor; the name is a printf format:
 *   sarco_wlist_add(&l, SARCO_SHAPE(768, 1, 16, 16, 16), "vit.patch_embedding.%s.weight", p); */
SARCO_INTERNAL void sarco_wlist_add(sarco_wlist *l, const int64_t *shape, int ndim, const char *fmt, ...)
    SARCO_PRINTF(4, 5);
#define SARCO_SHAPE(...) ((const int64_t[]){__VA_ARGS__}), (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
SARCO_INTERNAL void sarco_wlist_free(sarco_wlist *l);

/* Fails whole (BAD_FORMAT, naming the tensor and expected vs found shape) when a listed tensor is
 * missing or mis-shaped, or when the file holds a tensor that is neither listed nor matched by one
 * of the `ignore` glob patterns (fnmatch, e.g. "vit.blocks.*.cross_attn.*"; NULL-terminated). */
SARCO_INTERNAL sarco_status sarco_weights_check(sarco_context *ctx, const sarco_st_file *f, const sarco_wlist *l,
                                                const char *const *ignore);

#endif
