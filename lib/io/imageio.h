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

/* IMAGE: grey float (sarco_image); LABELS: exact uint16 labels; PICTURE: channels as stored (sarco_picture). */
typedef enum sarco_read_mode { SARCO_READ_IMAGE = 0, SARCO_READ_LABELS = 1, SARCO_READ_PICTURE = 2 } sarco_read_mode;

/* JPEG caps: the PNG ones, and at most 1 GiB of file; progressive files at most this many scans. */
#define SARCO_JPEG_MAX_FILE ((uint64_t)1 << 30)
#define SARCO_JPEG_MAX_SCANS 1000

/* A new image; data is zeroed when with_data, else NULL. spacing = 0, affine = diag(0, 0, 0, 1)
 * until the caller sets them. dims: 3 values (nz = 1 for 2D). */
SARCO_INTERNAL sarco_status sarco_image_alloc(sarco_context *ctx, int ndim, const int64_t *dims, int with_data,
                                              sarco_image **out);

/* A new zeroed picture (data of width x height x channels floats), flags NO_SPACING until the reader
 * sets a spacing. Caps as for images (SARCO_IMAGE_MAX_VOXELS samples) and the context's memory limit. */
SARCO_INTERNAL sarco_status sarco_picture_alloc(sarco_context *ctx, int64_t width, int64_t height, int channels,
                                                sarco_picture **out);

/* Readers: fp is open at offset 0 on a regular file of file_size bytes; the caller closes it.
 * IMAGE mode fills *img (float data); LABELS mode fills *labels (uint16, malloc) and *img (data NULL);
 * PICTURE mode (PNG, JPEG) fills *pic instead (img and labels untouched, may be NULL). */
SARCO_INTERNAL sarco_status sarco_nifti_read(sarco_context *ctx, const char *path, FILE *fp, uint64_t file_size,
                                             sarco_read_mode mode, sarco_image **img, uint16_t **labels);
SARCO_INTERNAL sarco_status sarco_png_read(sarco_context *ctx, const char *path, FILE *fp, uint64_t file_size,
                                           sarco_read_mode mode, sarco_image **img, uint16_t **labels,
                                           sarco_picture **pic);
SARCO_INTERNAL sarco_status sarco_jpeg_read(sarco_context *ctx, const char *path, FILE *fp, uint64_t file_size,
                                            sarco_read_mode mode, sarco_image **img, uint16_t **labels,
                                            sarco_picture **pic);

/* DICOM (lib/io/dicom.c): path is a file with the DICM magic or a folder (IMAGE mode only); series_uid
 * may be NULL. IMAGE mode fills *img, PICTURE mode *pic; LABELS is UNSUPPORTED. */
SARCO_INTERNAL sarco_status sarco_dicom_read(sarco_context *ctx, const char *path, const char *series_uid,
                                             sarco_read_mode mode, sarco_image **img, sarco_picture **pic);
/* 1 when the file has "DICM" at byte 128 (the DICOM Part 10 preamble). */
SARCO_INTERNAL int sarco_dicom_magic(const char *path);

/* Fault injection for the tests: make a write fail part-way so they can check nothing is left. */
typedef struct sarco_write_fault {
    int64_t fail_after_bytes; /* < 0: never; else write() fails once this many bytes went out */
    int fail_fsync;
    int fail_rename;
} sarco_write_fault;

/* Atomic writes (lib/io/atomic.c): a temporary file next to path, fsync, rename, directory fsync.
 * sarco_atomic_temp_open creates "<path>.tmp-<pid>-<random>" with O_EXCL (tmp gets its name; tmp_size
 * >= strlen(path) + 64) and returns the fd or -1 with errno. sarco_write_file_atomic writes n bytes
 * that way; on any failure no file is left and an existing file at path is untouched. fault may be NULL. */
SARCO_INTERNAL int sarco_atomic_temp_open(const char *path, char *tmp, size_t tmp_size);
SARCO_INTERNAL void sarco_atomic_fsync_dir(const char *path);
SARCO_INTERNAL sarco_status sarco_write_file_atomic(sarco_context *ctx, const char *path, const void *data, size_t n,
                                                    const sarco_write_fault *fault);

/* Writes a NIfTI file on geom's grid: datatype NIFTI_TYPE_FLOAT32 (data = float), or UINT8/UINT16
 * (data = uint16_t labels, each <= 255 for UINT8). fault may be NULL. */
SARCO_INTERNAL sarco_status sarco_nifti_write(sarco_context *ctx, const sarco_image *geom, const void *data,
                                              int datatype, int intent_code, const char *path,
                                              const sarco_write_fault *fault);

/* PNG writer: 8-bit grey / grey+alpha / RGB / RGBA rows (top first, interleaved) encoded in memory
 * (*out malloc'd), optionally with pHYs (pixels per metre = round(1000 / spacing_mm)). _ex writes the
 * file atomically with an optional fault (sarco_png_write is _ex with fault NULL). */
SARCO_INTERNAL sarco_status sarco_png_encode(sarco_context *ctx, const uint8_t *pixels, int64_t width, int64_t height,
                                             int channels, const double *spacing_mm, uint8_t **out, size_t *out_size);
SARCO_INTERNAL sarco_status sarco_png_write_ex(sarco_context *ctx, const char *path, const uint8_t *pixels,
                                               int64_t width, int64_t height, int channels, const double *spacing_mm,
                                               const sarco_write_fault *fault);

/* An 8-bit grey PNG of width x height values (row-major, x fastest, each <= 255), written atomically
 * through sarco_png_write_ex (nnU-Net's PNG label output: sarco_labels_write on a .png path). */
SARCO_INTERNAL sarco_status sarco_png_write_grey8(sarco_context *ctx, const char *path, uint32_t width, uint32_t height,
                                                  const uint16_t *values);

/* The affine (mm) and spacing the reader derives from a header geometry, via nifticlib.
 * Returns 0 when the geometry has no usable transform (non-finite, singular). */
SARCO_INTERNAL int sarco_nifti_geometry_affine(const sarco_nifti_geometry *g, double affine[4][4], double spacing[3]);

#endif
