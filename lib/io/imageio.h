/* Image files (NIfTI, PNG): internal interface shared by lib/io/{image,nifti,png}.c and the tests. */
#ifndef SARCO_IMAGEIO_H
#define SARCO_IMAGEIO_H

#include <stdint.h>
#include <stdio.h>

#include "../core/core.h"

/* Caps: 2^31 voxels (8 GiB as float32) for any image; PNG also 32768 pixels a side, 2^28 pixels. */
#define SARCO_IMAGE_MAX_VOXELS ((int64_t)1 << 31)
#define SARCO_PNG_MAX_SIDE 32768u
#define SARCO_PNG_MAX_PIXELS ((uint64_t)1 << 28)
/* deflate never expands more than 1032:1, so a compressed stream of n bytes inflates to at most
 * this: a header that claims more is truncated or hostile and is refused before allocating. */
#define SARCO_INFLATE_BOUND(n) ((uint64_t)(n) * 1032u + 4096u)

typedef enum sarco_read_mode { SARCO_READ_IMAGE = 0, SARCO_READ_LABELS = 1 } sarco_read_mode;

/* A new image; data is zeroed when with_data, else NULL. spacing = 0, affine = diag(0, 0, 0, 1)
 * until the caller sets them. dims: 3 values (nz = 1 for 2D). */
SARCO_INTERNAL sarco_status sarco_image_alloc(sarco_context *ctx, int ndim, const int64_t *dims, int with_data,
                                              sarco_image **out);

/* Readers: fp is open at offset 0 on a regular file of file_size bytes; the caller closes it.
 * IMAGE mode fills *img (float data); LABELS mode fills *labels (uint16, malloc) and *img (data NULL). */
SARCO_INTERNAL sarco_status sarco_nifti_read(sarco_context *ctx, const char *path, FILE *fp, uint64_t file_size,
                                             sarco_read_mode mode, sarco_image **img, uint16_t **labels);
SARCO_INTERNAL sarco_status sarco_png_read(sarco_context *ctx, const char *path, FILE *fp, uint64_t file_size,
                                           sarco_read_mode mode, sarco_image **img, uint16_t **labels);

/* An 8-bit grey PNG of width x height values (row-major, x fastest, each <= 255), written atomically
 * (temporary file, fsync, rename). */
SARCO_INTERNAL sarco_status sarco_png_write_grey8(sarco_context *ctx, const char *path, uint32_t width, uint32_t height,
                                                  const uint16_t *values);

/* Fault injection for the tests: make a write fail part-way so they can check nothing is left. */
typedef struct sarco_write_fault {
    int64_t fail_after_bytes; /* < 0: never; else write() fails once this many bytes went out */
    int fail_fsync;
    int fail_rename;
} sarco_write_fault;

/* Writes a NIfTI file on geom's grid: datatype NIFTI_TYPE_FLOAT32 (data = float), or UINT8/UINT16
 * (data = uint16_t labels, each <= 255 for UINT8). fault may be NULL. */
SARCO_INTERNAL sarco_status sarco_nifti_write(sarco_context *ctx, const sarco_image *geom, const void *data,
                                              int datatype, int intent_code, const char *path,
                                              const sarco_write_fault *fault);

/* The affine (mm) and spacing the reader derives from a header geometry, via nifticlib.
 * Returns 0 when the geometry has no usable transform (non-finite, singular). */
SARCO_INTERNAL int sarco_nifti_geometry_affine(const sarco_nifti_geometry *g, double affine[4][4], double spacing[3]);

#endif
