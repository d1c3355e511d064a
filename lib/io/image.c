/* sarco_image lifetime and the public image-file entry points (NIfTI in nifti.c, PNG in png.c). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <nifti1.h>

#include "imageio.h"

sarco_status sarco_image_alloc(sarco_context *ctx, int ndim, const int64_t *dims, int with_data, sarco_image **out) {
    *out = NULL;
    int64_t n;
    if (ndim < 2 || ndim > 3 || dims[0] < 1 || dims[1] < 1 || dims[2] < 1 || (ndim == 2 && dims[2] != 1))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "image: ndim %d with dims %lld x %lld x %lld", ndim,
                          (long long)dims[0], (long long)dims[1], (long long)dims[2]);
    if (!sarco_dims_product(dims, 3, SARCO_IMAGE_MAX_VOXELS, &n))
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "image: %lld x %lld x %lld voxels is past the cap of %lld",
                          (long long)dims[0], (long long)dims[1], (long long)dims[2],
                          (long long)SARCO_IMAGE_MAX_VOXELS);
    size_t bytes = (size_t)n * sizeof(float);
    /* image memory is checked against the context's limit, not counted: the image outlives calls */
    if (with_data && ctx && ctx->opts.memory_limit && bytes > ctx->opts.memory_limit)
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "image: %zu bytes pass the context's memory limit of %zu",
                          bytes, ctx->opts.memory_limit);
    sarco_image *img = calloc(1, sizeof *img);
    if (!img) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "image: out of memory");
    if (with_data) {
        img->data = calloc((size_t)n, sizeof(float));
        if (!img->data) {
            free(img);
            return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "image: cannot allocate %zu bytes", bytes);
        }
    }
    img->ndim = ndim;
    for (int a = 0; a < 3; a++) img->dims[a] = dims[a];
    img->affine[3][3] = 1.0;
    *out = img;
    return SARCO_OK;
}

static int valid_spacing(const double *sp, int ndim) {
    for (int a = 0; a < ndim; a++)
        if (!(isfinite(sp[a]) && sp[a] > 0)) return 0;
    return 1;
}

sarco_status sarco_image_create(sarco_context *ctx, int ndim, const int64_t *dims, const double *spacing,
                                sarco_image **out) {
    if (!out || !dims) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_image_create: NULL argument");
    *out = NULL;
    if (ndim != 2 && ndim != 3)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_image_create: ndim %d (must be 2 or 3)", ndim);
    if (spacing && !valid_spacing(spacing, ndim))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "sarco_image_create: spacing must be finite and > 0 (use NULL when unknown)");
    int64_t d[3] = {dims[0], dims[1], ndim == 3 ? dims[2] : 1};
    sarco_image *img;
    sarco_status s = sarco_image_alloc(ctx, ndim, d, 1, &img);
    if (s != SARCO_OK) return s;
    if (spacing) {
        for (int a = 0; a < 3; a++) {
            img->spacing[a] = a < ndim ? spacing[a] : 1.0;
            img->affine[a][a] = img->spacing[a];
        }
    } else {
        img->flags |= SARCO_IMAGE_NO_SPACING;
    }
    *out = img;
    return SARCO_OK;
}

void sarco_image_free(sarco_image *img) {
    if (!img) return;
    free(img->dicom);
    free(img->data);
    free(img);
}

void sarco_labels_free(uint16_t *labels) { free(labels); }

sarco_status sarco_picture_alloc(sarco_context *ctx, int64_t width, int64_t height, int channels,
                                 sarco_picture **out) {
    *out = NULL;
    int64_t d[3] = {width, height, channels}, n;
    if (width < 1 || height < 1 || channels < 1 || channels > 4)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "picture: %lld x %lld with %d channels",
                          (long long)width, (long long)height, channels);
    if (!sarco_dims_product(d, 3, SARCO_IMAGE_MAX_VOXELS, &n))
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "picture: %lld x %lld x %d samples is past the cap of %lld",
                          (long long)width, (long long)height, channels, (long long)SARCO_IMAGE_MAX_VOXELS);
    size_t bytes = (size_t)n * sizeof(float);
    if (ctx && ctx->opts.memory_limit && bytes > ctx->opts.memory_limit)
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "picture: %zu bytes pass the context's memory limit of %zu",
                          bytes, ctx->opts.memory_limit);
    sarco_picture *p = calloc(1, sizeof *p);
    if (p) p->data = calloc((size_t)n, sizeof(float));
    if (!p || !p->data) {
        free(p);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "picture: cannot allocate %zu bytes", bytes);
    }
    p->width = width;
    p->height = height;
    p->channels = channels;
    p->flags = SARCO_IMAGE_NO_SPACING;
    *out = p;
    return SARCO_OK;
}

void sarco_picture_free(sarco_picture *pic) {
    if (!pic) return;
    free(pic->dicom);
    free(pic->data);
    free(pic);
}

static int has_jpeg_signature(const unsigned char *b, size_t n) {
    return n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff; /* SOI, then a marker */
}

static int has_png_signature(const unsigned char *b, size_t n) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return n >= 4 && memcmp(b, sig, n < 8 ? n : 8) == 0;
}

/* gzip, a NIfTI-1/-2 sizeof_hdr in either byte order, or text (ASCII NIfTI) */
static int looks_like_nifti(const unsigned char *b, size_t n) {
    if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) return 1;
    if (n >= 1 && (b[0] == '<' || b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t')) return 1;
    if (n < 4) return 0;
    uint32_t le = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    uint32_t be = (uint32_t)b[3] | (uint32_t)b[2] << 8 | (uint32_t)b[1] << 16 | (uint32_t)b[0] << 24;
    return le == 348 || le == 540 || be == 348 || be == 540;
}

/* A 2D NIfTI image as a one-channel picture: rows = y (j), columns = x (i); the same bytes. */
static sarco_status picture_from_image(sarco_context *ctx, const char *path, const sarco_image *im,
                                       sarco_picture **out) {
    if (im->dims[2] != 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: a 3D image (%lld x %lld x %lld) is not a 2D picture",
                          path, (long long)im->dims[0], (long long)im->dims[1], (long long)im->dims[2]);
    sarco_picture *p;
    sarco_status s = sarco_picture_alloc(ctx, im->dims[0], im->dims[1], 1, &p);
    if (s != SARCO_OK) return s;
    memcpy(p->data, im->data, (size_t)(im->dims[0] * im->dims[1]) * sizeof(float));
    p->bit_depth = 0;
    p->format = SARCO_PICTURE_FORMAT_NIFTI;
    if (!(im->flags & SARCO_IMAGE_NO_SPACING) && im->spacing[0] > 0 && im->spacing[1] > 0) {
        p->spacing[0] = im->spacing[1];
        p->spacing[1] = im->spacing[0];
        p->flags &= ~SARCO_IMAGE_NO_SPACING;
    }
    *out = p;
    return SARCO_OK;
}

static int ends_with_ci(const char *s, const char *tail) {
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcasecmp(s + n - t, tail) == 0;
}

static sarco_status read_any(sarco_context *ctx, const char *path, sarco_read_mode mode, sarco_image **img,
                             uint16_t **labels, sarco_picture **pic) {
    /* a folder (a DICOM series) or a DICOM Part 10 file ("DICM" at byte 128) */
    struct stat ds;
    if (stat(path, &ds) == 0 && (S_ISDIR(ds.st_mode) || (S_ISREG(ds.st_mode) && sarco_dicom_magic(path))))
        return sarco_dicom_read(ctx, path, NULL, mode, img, pic);
    FILE *fp = fopen(path, "rb");
    if (!fp) return sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return sarco_fail(ctx, SARCO_ERR_IO, "%s: not a regular file", path);
    }
    unsigned char head[8];
    size_t n = fread(head, 1, sizeof head, fp);
    sarco_status s;
    if (fseeko(fp, 0, SEEK_SET) != 0) {
        s = sarco_fail(ctx, SARCO_ERR_IO, "%s: seek failed: %s", path, strerror(errno));
    } else if (has_png_signature(head, n) || (ends_with_ci(path, ".png") && !looks_like_nifti(head, n))) {
        /* by content; bytes that are neither (damaged) go by the name, to the reader whose error fits */
        s = sarco_png_read(ctx, path, fp, (uint64_t)sb.st_size, mode, img, labels, pic);
    } else if (has_jpeg_signature(head, n) || ((ends_with_ci(path, ".jpg") || ends_with_ci(path, ".jpeg")) &&
                                               !looks_like_nifti(head, n))) {
        s = sarco_jpeg_read(ctx, path, fp, (uint64_t)sb.st_size, mode, img, labels, pic);
    } else if (mode == SARCO_READ_PICTURE) {
        sarco_image *im = NULL;
        s = sarco_nifti_read(ctx, path, fp, (uint64_t)sb.st_size, SARCO_READ_IMAGE, &im, NULL);
        if (s == SARCO_OK) s = picture_from_image(ctx, path, im, pic);
        sarco_image_free(im);
    } else {
        s = sarco_nifti_read(ctx, path, fp, (uint64_t)sb.st_size, mode, img, labels);
    }
    fclose(fp);
    return s;
}

sarco_status sarco_image_read(sarco_context *ctx, const char *path, sarco_image **out) {
    if (!out || !path) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_image_read: NULL argument");
    *out = NULL;
    sarco_clear_error(ctx);
    return read_any(ctx, path, SARCO_READ_IMAGE, out, NULL, NULL);
}

sarco_status sarco_image_read_series(sarco_context *ctx, const char *path, const char *series_uid, sarco_image **out) {
    if (!out || !path) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_image_read_series: NULL argument");
    *out = NULL;
    sarco_clear_error(ctx);
    return sarco_dicom_read(ctx, path, series_uid, SARCO_READ_IMAGE, out, NULL);
}

sarco_status sarco_labels_read(sarco_context *ctx, const char *path, uint16_t **labels, sarco_image **geometry) {
    if (!labels || !geometry || !path)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_labels_read: NULL argument");
    *labels = NULL;
    *geometry = NULL;
    sarco_clear_error(ctx);
    return read_any(ctx, path, SARCO_READ_LABELS, geometry, labels, NULL);
}

sarco_status sarco_picture_read(sarco_context *ctx, const char *path, sarco_picture **out) {
    if (!out || !path) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_picture_read: NULL argument");
    *out = NULL;
    sarco_clear_error(ctx);
    return read_any(ctx, path, SARCO_READ_PICTURE, NULL, NULL, out);
}

static sarco_status check_image(sarco_context *ctx, const sarco_image *img, const char *what) {
    int64_t n;
    if (img->ndim < 2 || img->ndim > 3 || (img->ndim == 2 && img->dims[2] != 1) || img->dims[0] < 1 ||
        img->dims[1] < 1 || img->dims[2] < 1 || !sarco_dims_product(img->dims, 3, SARCO_IMAGE_MAX_VOXELS, &n))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: the image has invalid ndim/dims", what);
    return SARCO_OK;
}

sarco_status sarco_image_write(sarco_context *ctx, const sarco_image *img, const char *path) {
    if (!img || !path) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_image_write: NULL argument");
    sarco_clear_error(ctx);
    if (!img->data) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: the image has no data", path);
    sarco_status s = check_image(ctx, img, path);
    if (s != SARCO_OK) return s;
    return sarco_nifti_write(ctx, img, img->data, DT_FLOAT32, 0, path, NULL);
}

sarco_status sarco_labels_write(sarco_context *ctx, const sarco_image *geometry, const uint16_t *labels,
                                int max_label, const char *path) {
    if (!geometry || !labels || !path)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_labels_write: NULL argument");
    sarco_clear_error(ctx);
    if (max_label < 0 || max_label > 65535)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: max_label %d is outside 0..65535", path, max_label);
    sarco_status s = check_image(ctx, geometry, path);
    if (s != SARCO_OK) return s;
    int64_t n = geometry->dims[0] * geometry->dims[1] * geometry->dims[2];
    for (int64_t i = 0; i < n; i++)
        if (labels[i] > max_label)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: label %u at voxel %lld is above max_label %d", path,
                              labels[i], (long long)i, max_label);
    if (ends_with_ci(path, ".png")) { /* as nnU-Net writes labels of PNG datasets: 8-bit grey, the input's size */
        if (geometry->ndim != 2 && geometry->dims[2] != 1)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: a PNG holds one 2-D slice; the labels are 3-D", path);
        if (max_label > 255)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: labels up to %d do not fit an 8-bit PNG", path,
                              max_label);
        return sarco_png_write_grey8(ctx, path, (uint32_t)geometry->dims[0], (uint32_t)geometry->dims[1], labels);
    }
    return sarco_nifti_write(ctx, geometry, labels, max_label <= 255 ? DT_UINT8 : DT_UINT16, NIFTI_INTENT_LABEL, path,
                             NULL);
}

sarco_status sarco_image_like(sarco_context *ctx, const sarco_image *src, sarco_image **out) {
    if (!src || !out) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_image_like: NULL argument");
    *out = NULL;
    sarco_status s = check_image(ctx, src, "sarco_image_like");
    if (s != SARCO_OK) return s;
    sarco_image *img;
    s = sarco_image_alloc(ctx, src->ndim, src->dims, 1, &img);
    if (s != SARCO_OK) return s;
    memcpy(img->spacing, src->spacing, sizeof img->spacing);
    memcpy(img->affine, src->affine, sizeof img->affine);
    img->flags = src->flags;
    img->nifti = src->nifti;
    *out = img;
    return SARCO_OK;
}

sarco_status sarco_image_copy_geometry(sarco_context *ctx, sarco_image *dst, const sarco_image *src) {
    if (!dst || !src) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_image_copy_geometry: NULL argument");
    if (dst->ndim != src->ndim || dst->dims[0] != src->dims[0] || dst->dims[1] != src->dims[1] ||
        dst->dims[2] != src->dims[2])
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "sarco_image_copy_geometry: dims differ (%lld x %lld x %lld vs %lld x %lld x %lld)",
                          (long long)dst->dims[0], (long long)dst->dims[1], (long long)dst->dims[2],
                          (long long)src->dims[0], (long long)src->dims[1], (long long)src->dims[2]);
    memcpy(dst->spacing, src->spacing, sizeof dst->spacing);
    memcpy(dst->affine, src->affine, sizeof dst->affine);
    dst->flags = src->flags;
    dst->nifti = src->nifti;
    return SARCO_OK;
}

sarco_status sarco_image_set_spacing(sarco_context *ctx, sarco_image *img, const double *spacing) {
    if (!img || !spacing) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_image_set_spacing: NULL argument");
    if (img->ndim != 2 && img->ndim != 3)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_image_set_spacing: ndim %d", img->ndim);
    if (!valid_spacing(spacing, img->ndim))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_image_set_spacing: spacing must be finite and > 0");
    for (int c = 0; c < 3; c++) {
        double want = c < img->ndim ? spacing[c] : (img->spacing[c] > 0 ? img->spacing[c] : 1.0);
        double len = 0;
        for (int r = 0; r < 3; r++) len += img->affine[r][c] * img->affine[r][c];
        len = sqrt(len);
        if (len > 0 && isfinite(len)) {
            for (int r = 0; r < 3; r++) img->affine[r][c] *= want / len;
        } else {
            for (int r = 0; r < 3; r++) img->affine[r][c] = r == c ? want : 0.0;
        }
        img->spacing[c] = want;
    }
    img->affine[3][0] = img->affine[3][1] = img->affine[3][2] = 0.0;
    img->affine[3][3] = 1.0;
    img->flags &= ~SARCO_IMAGE_NO_SPACING;
    memset(&img->nifti, 0, sizeof img->nifti);
    return SARCO_OK;
}
