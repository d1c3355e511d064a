/* NIfTI-1 and NIfTI-2 files. Reading: we parse and check the raw header ourselves (both byte orders,
 * .gz inflated by us with zlib under a cap), hand only the checked geometry to nifticlib to build
 * the qform/sform matrices, and convert voxels chunk by chunk straight into float32 (or uint16
 * labels). Writing: little-endian header + voxels to a temporary file, fsync, rename. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <nifti2_io.h>

#include "imageio.h"

#define N1_HDR 348
#define N2_HDR 540
#define IN_CHUNK (64u << 10)
#define DATA_CHUNK (1u << 20) /* a multiple of every voxel size */

/* ---- byte access ---- */

static uint16_t ld16(const uint8_t *p, int swap) {
    uint16_t v;
    memcpy(&v, p, 2);
    return swap ? __builtin_bswap16(v) : v;
}
static uint32_t ld32(const uint8_t *p, int swap) {
    uint32_t v;
    memcpy(&v, p, 4);
    return swap ? __builtin_bswap32(v) : v;
}
static uint64_t ld64(const uint8_t *p, int swap) {
    uint64_t v;
    memcpy(&v, p, 8);
    return swap ? __builtin_bswap64(v) : v;
}
static int16_t ldi16(const uint8_t *p, int swap) { return (int16_t)ld16(p, swap); }
static int32_t ldi32(const uint8_t *p, int swap) { return (int32_t)ld32(p, swap); }
static int64_t ldi64(const uint8_t *p, int swap) { return (int64_t)ld64(p, swap); }
static double ldf32(const uint8_t *p, int swap) {
    uint32_t b = ld32(p, swap);
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static double ldf64(const uint8_t *p, int swap) {
    uint64_t b = ld64(p, swap);
    double d;
    memcpy(&d, &b, 8);
    return d;
}

static int host_big_endian(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 0;
}

/* little-endian stores for the writer */
static void st16(uint8_t *p, int64_t v) {
    uint16_t u = (uint16_t)v;
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
}
static void st32(uint8_t *p, int64_t v) {
    uint32_t u = (uint32_t)v;
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(u >> (8 * i));
}
static void st64(uint8_t *p, int64_t v) {
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(u >> (8 * i));
}
static void stf32(uint8_t *p, double v) {
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    st32(p, u);
}
static void stf64(uint8_t *p, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    st64(p, (int64_t)u);
}

/* ---- datatypes ---- */

typedef struct dtinfo {
    int code, bitpix, bytes, supported;
    const char *name;
} dtinfo;

static const dtinfo DTYPES[] = {
    {DT_UINT8, 8, 1, 1, "uint8"},          {DT_INT8, 8, 1, 1, "int8"},
    {DT_INT16, 16, 2, 1, "int16"},         {DT_UINT16, 16, 2, 1, "uint16"},
    {DT_INT32, 32, 4, 1, "int32"},         {DT_UINT32, 32, 4, 1, "uint32"},
    {DT_INT64, 64, 8, 1, "int64"},         {DT_UINT64, 64, 8, 1, "uint64"},
    {DT_FLOAT32, 32, 4, 1, "float32"},     {DT_FLOAT64, 64, 8, 1, "float64"},
    {DT_BINARY, 1, 0, 0, "binary"},        {DT_COMPLEX64, 64, 8, 0, "complex64"},
    {DT_COMPLEX128, 128, 16, 0, "complex128"}, {DT_COMPLEX256, 256, 32, 0, "complex256"},
    {DT_FLOAT128, 128, 16, 0, "float128"}, {DT_RGB24, 24, 3, 0, "RGB24"},
    {DT_RGBA32, 32, 4, 0, "RGBA32"},
};

static const dtinfo *dt_find(int code) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (DTYPES[i].code == code) return &DTYPES[i];
    return NULL;
}

/* ---- geometry ---- */

static double unit_scale(int xyzt_units, int *known) {
    *known = 1;
    switch (xyzt_units & 7) {
    case NIFTI_UNITS_METER: return 1000.0;
    case NIFTI_UNITS_MM: return 1.0;
    case NIFTI_UNITS_MICRON: return 1e-3;
    default: *known = 0; return 1.0;
    }
}

/* nifticlib builds qto_xyz (quaternion, or diag(pixdim) when qform_code <= 0) and sto_xyz from a
 * header that we have already checked; we only feed it the geometry fields. */
static nifti_image *nim_from_geometry(const sarco_nifti_geometry *g) {
    int dim0 = (int)g->dim[0];
    double pd[8];
    memcpy(pd, g->pixdim, sizeof pd);
    for (int i = 1; i <= 3; i++) /* voxel sizes of axes past the rank are unused: 1 when unset */
        if (i > dim0 && !(isfinite(pd[i]) && pd[i] > 0)) pd[i] = 1.0;
    if (g->version == 2) {
        nifti_2_header h;
        memset(&h, 0, sizeof h);
        h.sizeof_hdr = N2_HDR;
        memcpy(h.magic, "n+2\0\r\n\032\n", 8);
        h.datatype = DT_FLOAT32;
        h.bitpix = 32;
        for (int i = 0; i < 8; i++) {
            h.dim[i] = g->dim[i];
            h.pixdim[i] = pd[i];
        }
        h.vox_offset = 544;
        h.xyzt_units = g->xyzt_units;
        h.qform_code = g->qform_code;
        h.sform_code = g->sform_code;
        h.quatern_b = g->quatern[0];
        h.quatern_c = g->quatern[1];
        h.quatern_d = g->quatern[2];
        h.qoffset_x = g->qoffset[0];
        h.qoffset_y = g->qoffset[1];
        h.qoffset_z = g->qoffset[2];
        memcpy(h.srow_x, g->srow[0], sizeof h.srow_x);
        memcpy(h.srow_y, g->srow[1], sizeof h.srow_y);
        memcpy(h.srow_z, g->srow[2], sizeof h.srow_z);
        return nifti_convert_n2hdr2nim(h, NULL);
    }
    nifti_1_header h;
    memset(&h, 0, sizeof h);
    h.sizeof_hdr = N1_HDR;
    memcpy(h.magic, "n+1", 4);
    h.datatype = DT_FLOAT32;
    h.bitpix = 32;
    for (int i = 0; i < 8; i++) {
        h.dim[i] = (short)g->dim[i];
        h.pixdim[i] = (float)pd[i];
    }
    h.vox_offset = 352;
    h.xyzt_units = (char)g->xyzt_units;
    h.qform_code = (short)g->qform_code;
    h.sform_code = (short)g->sform_code;
    h.quatern_b = (float)g->quatern[0];
    h.quatern_c = (float)g->quatern[1];
    h.quatern_d = (float)g->quatern[2];
    h.qoffset_x = (float)g->qoffset[0];
    h.qoffset_y = (float)g->qoffset[1];
    h.qoffset_z = (float)g->qoffset[2];
    for (int c = 0; c < 4; c++) {
        h.srow_x[c] = (float)g->srow[0][c];
        h.srow_y[c] = (float)g->srow[1][c];
        h.srow_z[c] = (float)g->srow[2][c];
    }
    return nifti_convert_n1hdr2nim(h, NULL);
}

/* The qform and sform matrices of g, in mm (unit scale applied). 0 when nifticlib refuses. */
static int geometry_matrices(const sarco_nifti_geometry *g, double q[3][4], double s[3][4]) {
    if ((g->version != 1 && g->version != 2) || g->dim[0] < 1 || g->dim[0] > 7) return 0;
    nifti_image *nim = nim_from_geometry(g);
    if (!nim) return 0;
    int known;
    double k = unit_scale(g->xyzt_units, &known);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            q[r][c] = nim->qto_xyz.m[r][c] * k;
            s[r][c] = g->sform_code > 0 ? nim->sto_xyz.m[r][c] * k : 0.0;
        }
    nifti_image_free(nim);
    return 1;
}

static double det3(const double m[3][4]) {
    return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
           m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

/* 1 when m is finite and its 3x3 part is not (numerically) singular; fills the column lengths. */
static int usable_transform(const double m[3][4], double len[3], double *det) {
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            if (!isfinite(m[r][c])) return 0;
    for (int c = 0; c < 3; c++) len[c] = sqrt(m[0][c] * m[0][c] + m[1][c] * m[1][c] + m[2][c] * m[2][c]);
    *det = det3(m);
    return len[0] > 0 && len[1] > 0 && len[2] > 0 && fabs(*det) > 1e-9 * len[0] * len[1] * len[2];
}

int sarco_nifti_geometry_affine(const sarco_nifti_geometry *g, double affine[4][4], double spacing[3]) {
    double q[3][4], s[3][4], len[3], det;
    if (!geometry_matrices(g, q, s)) return 0;
    double m[3][4];
    memcpy(m, g->sform_code > 0 ? s : q, sizeof m);
    if (g->dim[0] <= 2 && m[0][2] == 0 && m[1][2] == 0 && m[2][2] == 0) {
        /* a 2D sform often leaves the unused third axis zero: take the unit normal of the plane */
        double n[3] = {m[1][0] * m[2][1] - m[2][0] * m[1][1], m[2][0] * m[0][1] - m[0][0] * m[2][1],
                       m[0][0] * m[1][1] - m[1][0] * m[0][1]};
        double l = sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
        if (l > 0 && isfinite(l))
            for (int r = 0; r < 3; r++) m[r][2] = n[r] / l;
    }
    if (!usable_transform((const double(*)[4])m, len, &det)) return 0;
    memset(affine, 0, 16 * sizeof(double));
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) affine[r][c] = m[r][c];
    affine[3][3] = 1.0;
    for (int c = 0; c < 3; c++) spacing[c] = len[c];
    return 1;
}

/* Largest distance (mm) between where qform and sform put the corners of the grid. */
static double qs_disagreement(const double q[3][4], const double s[3][4], const int64_t dims[3]) {
    double worst = 0;
    for (int corner = 0; corner < 8; corner++) {
        double v[3];
        for (int a = 0; a < 3; a++) v[a] = (corner >> a & 1) ? (double)(dims[a] - 1) : 0.0;
        double d2 = 0;
        for (int r = 0; r < 3; r++) {
            double pq = q[r][3], ps = s[r][3];
            for (int c = 0; c < 3; c++) {
                pq += q[r][c] * v[c];
                ps += s[r][c] * v[c];
            }
            d2 += (pq - ps) * (pq - ps);
        }
        if (sqrt(d2) > worst) worst = sqrt(d2);
    }
    return worst;
}

/* ---- input stream: plain or gzip, with a pushback buffer for the over-read header ---- */

typedef struct src {
    sarco_context *ctx;
    const char *path;
    FILE *fp;
    uint64_t file_size;
    int gz, z_init, z_member_done, z_end;
    z_stream zs;
    uint8_t *in;
    uint8_t pb[N2_HDR];
    size_t pb_len, pb_off;
    uint64_t pos;    /* bytes delivered (inflated offset for .gz) */
    int truncated;   /* the input ended early: plain EOF, or gzip cut inside a member */
    sarco_status st; /* set (with the message) once reading failed */
} src;

static int src_refill(src *s, size_t keep) {
    if (keep) memmove(s->in, s->zs.next_in, keep);
    size_t r = fread(s->in + keep, 1, IN_CHUNK - keep, s->fp);
    if (r == 0 && ferror(s->fp)) {
        s->st = sarco_fail(s->ctx, SARCO_ERR_IO, "%s: read error: %s", s->path, strerror(errno));
        return 0;
    }
    s->zs.next_in = s->in;
    s->zs.avail_in = (uInt)(keep + r);
    return (int)r > 0 || keep > 0;
}

static size_t gz_read(src *s, uint8_t *out, size_t n) {
    size_t got = 0;
    while (got < n && s->st == SARCO_OK && !s->z_end) {
        if (s->z_member_done) {
            /* a concatenated gzip member may follow; anything else ends the stream (as gzip does) */
            if (s->zs.avail_in < 2) src_refill(s, s->zs.avail_in);
            if (s->st != SARCO_OK) break;
            if (s->zs.avail_in >= 2 && s->zs.next_in[0] == 0x1f && s->zs.next_in[1] == 0x8b) {
                inflateReset(&s->zs);
                s->z_member_done = 0;
            } else {
                s->z_end = 1;
                break;
            }
        }
        if (s->zs.avail_in == 0 && !src_refill(s, 0)) {
            if (s->st == SARCO_OK) s->truncated = 1;
            s->z_end = 1;
            break;
        }
        size_t want = n - got < UINT_MAX ? n - got : UINT_MAX;
        s->zs.next_out = out + got;
        s->zs.avail_out = (uInt)want;
        uInt in_before = s->zs.avail_in;
        int rc = inflate(&s->zs, Z_NO_FLUSH);
        size_t made = want - s->zs.avail_out;
        got += made;
        if (rc == Z_STREAM_END) {
            s->z_member_done = 1;
            continue;
        }
        if (rc == Z_OK) continue;
        if (rc == Z_BUF_ERROR && s->zs.avail_in == 0) continue; /* needs more input: refill above */
        if (rc == Z_MEM_ERROR) {
            s->st = sarco_fail(s->ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: zlib is out of memory", s->path);
        } else {
            (void)in_before;
            s->st = sarco_fail(s->ctx, SARCO_ERR_BAD_FORMAT, "%s: corrupt gzip data near inflated byte %llu (zlib: %s)",
                               s->path, (unsigned long long)(s->pos + got), s->zs.msg ? s->zs.msg : "error");
        }
        break;
    }
    return got;
}

static size_t src_read(src *s, void *buf, size_t n) {
    uint8_t *out = buf;
    size_t got = 0;
    if (s->st != SARCO_OK) return 0;
    if (s->pb_off < s->pb_len) {
        got = s->pb_len - s->pb_off < n ? s->pb_len - s->pb_off : n;
        memcpy(out, s->pb + s->pb_off, got);
        s->pb_off += got;
    }
    if (got < n) {
        if (s->gz) {
            got += gz_read(s, out + got, n - got);
        } else {
            size_t r = fread(out + got, 1, n - got, s->fp);
            if (r < n - got) {
                if (ferror(s->fp))
                    s->st = sarco_fail(s->ctx, SARCO_ERR_IO, "%s: read error: %s", s->path, strerror(errno));
                else
                    s->truncated = 1;
            }
            got += r;
        }
    }
    s->pos += got;
    return got;
}

/* Skips n bytes; returns 0 when the stream ended or failed first. */
static int src_skip(src *s, uint64_t n, uint8_t *scratch, size_t scratch_size) {
    if (!s->gz && s->pb_off >= s->pb_len && n > 0) {
        if (fseeko(s->fp, (off_t)n, SEEK_CUR) != 0) {
            s->st = sarco_fail(s->ctx, SARCO_ERR_IO, "%s: seek failed: %s", s->path, strerror(errno));
            return 0;
        }
        s->pos += n;
        return 1;
    }
    while (n > 0) {
        size_t want = n < scratch_size ? (size_t)n : scratch_size;
        size_t got = src_read(s, scratch, want);
        if (got < want) return 0;
        n -= got;
    }
    return 1;
}

/* ---- header ---- */

typedef struct hdrinfo {
    sarco_nifti_geometry g;
    int swap;
    int64_t hsize;
    int bitpix;
    int64_t vox_offset;
    double slope, inter;
} hdrinfo;

static int is_ascii_nifti(const uint8_t *h, size_t n) {
    size_t i = 0;
    while (i < n && (h[i] == ' ' || h[i] == '\t' || h[i] == '\r' || h[i] == '\n')) i++;
    return n - i >= 12 && memcmp(h + i, "<nifti_image", 12) == 0;
}

/* Parses and checks everything that needs no file size: magic, dims, datatype, pixdim, vox_offset,
 * scaling and transforms. */
static sarco_status parse_header(sarco_context *ctx, const char *path, const uint8_t *h, size_t n, hdrinfo *hi) {
    memset(hi, 0, sizeof *hi);
    sarco_nifti_geometry *g = &hi->g;
    if (is_ascii_nifti(h, n))
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                          "%s: ASCII NIfTI (<nifti_image ...>) is not supported; convert it to a binary .nii", path);
    if (n < 4)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: only %zu bytes: too short for a NIfTI header (348 bytes) or a PNG", path, n);
    int32_t sz = ldi32(h, 0), szs = ldi32(h, 1);
    if (sz == N1_HDR || szs == N1_HDR) {
        g->version = 1;
        hi->swap = sz != N1_HDR;
    } else if (sz == N2_HDR || szs == N2_HDR) {
        g->version = 2;
        hi->swap = sz != N2_HDR;
    } else {
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: not a NIfTI-1/NIfTI-2 or PNG file: sizeof_hdr is %d (expected 348 or 540 in either "
                          "byte order)", path, (int)sz);
    }
    hi->hsize = g->version == 1 ? N1_HDR : N2_HDR;
    if (n < (size_t)hi->hsize)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: truncated header: %zu of the %lld bytes of a NIfTI-%d header",
                          path, n, (long long)hi->hsize, g->version);
    int sw = hi->swap;
    if (g->version == 1) {
        const uint8_t *mg = h + 344;
        if (memcmp(mg, "ni1\0", 4) == 0)
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                              "%s: a two-file NIfTI-1 header (magic \"ni1\", .hdr/.img pair) is not supported; use "
                              "a single .nii", path);
        if (memcmp(mg, "n+1\0", 4) != 0) {
            if (!mg[0] && !mg[1] && !mg[2] && !mg[3])
                return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                                  "%s: no NIfTI magic: an Analyze 7.5 header is not supported", path);
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: bad NIfTI-1 magic %02x %02x %02x %02x (expected \"n+1\")",
                              path, mg[0], mg[1], mg[2], mg[3]);
        }
        for (int i = 0; i < 8; i++) g->dim[i] = ldi16(h + 40 + 2 * i, sw);
        g->datatype = ldi16(h + 70, sw);
        hi->bitpix = ldi16(h + 72, sw);
        for (int i = 0; i < 8; i++) g->pixdim[i] = ldf32(h + 76 + 4 * i, sw);
        double vo = ldf32(h + 108, sw);
        if (isnan(vo)) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: vox_offset is NaN", path);
        if (vo < 0) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: vox_offset %g is negative", path, vo);
        if (!isfinite(vo) || vo > 9.0e15)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: vox_offset %g is past the end of any file", path, vo);
        if (vo != floor(vo))
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: vox_offset %g is not a whole number of bytes", path, vo);
        hi->vox_offset = (int64_t)vo;
        hi->slope = ldf32(h + 112, sw);
        hi->inter = ldf32(h + 116, sw);
        g->xyzt_units = h[123];
        g->qform_code = ldi16(h + 252, sw);
        g->sform_code = ldi16(h + 254, sw);
        for (int i = 0; i < 3; i++) {
            g->quatern[i] = ldf32(h + 256 + 4 * i, sw);
            g->qoffset[i] = ldf32(h + 268 + 4 * i, sw);
        }
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) g->srow[r][c] = ldf32(h + 280 + 16 * r + 4 * c, sw);
    } else {
        const uint8_t *mg = h + 4;
        if (memcmp(mg, "ni2\0", 4) == 0)
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                              "%s: a two-file NIfTI-2 header (magic \"ni2\") is not supported; use a single .nii",
                              path);
        if (memcmp(mg, "n+2\0", 4) != 0)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: bad NIfTI-2 magic %02x %02x %02x %02x (expected \"n+2\")",
                              path, mg[0], mg[1], mg[2], mg[3]);
        if (memcmp(mg + 4, "\r\n\032\n", 4) != 0)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                              "%s: NIfTI-2 magic bytes 4..7 are damaged (expected \\r\\n\\032\\n): was the file "
                              "transferred in text mode?", path);
        g->datatype = ldi16(h + 12, sw);
        hi->bitpix = ldi16(h + 14, sw);
        for (int i = 0; i < 8; i++) g->dim[i] = ldi64(h + 16 + 8 * i, sw);
        for (int i = 0; i < 8; i++) g->pixdim[i] = ldf64(h + 104 + 8 * i, sw);
        hi->vox_offset = ldi64(h + 168, sw);
        if (hi->vox_offset < 0)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: vox_offset %lld is negative", path,
                              (long long)hi->vox_offset);
        hi->slope = ldf64(h + 176, sw);
        hi->inter = ldf64(h + 184, sw);
        g->qform_code = ldi32(h + 344, sw);
        g->sform_code = ldi32(h + 348, sw);
        for (int i = 0; i < 3; i++) {
            g->quatern[i] = ldf64(h + 352 + 8 * i, sw);
            g->qoffset[i] = ldf64(h + 376 + 8 * i, sw);
        }
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) g->srow[r][c] = ldf64(h + 400 + 32 * r + 8 * c, sw);
        g->xyzt_units = ldi32(h + 500, sw);
    }
    if (hi->vox_offset < hi->hsize + 4) /* the spec's minimum for single files; nibabel refuses less too */
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: vox_offset %lld is below %lld (the %lld-byte header and its 4-byte extension flag)",
                          path, (long long)hi->vox_offset, (long long)hi->hsize + 4, (long long)hi->hsize);

    /* dims */
    int64_t dim0 = g->dim[0];
    if (dim0 < 1 || dim0 > 7)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: dim[0] = %lld is outside 1..7", path, (long long)dim0);
    for (int i = 1; i <= dim0; i++)
        if (g->dim[i] < 1)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: dim[%d] = %lld (every used dim must be >= 1)", path, i,
                              (long long)g->dim[i]);
    for (int i = (int)dim0 + 1; i < 8; i++) g->dim[i] = 1;

    /* datatype */
    const dtinfo *dt = dt_find(g->datatype);
    if (!dt) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: unknown datatype %d", path, g->datatype);
    if (hi->bitpix != dt->bitpix)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: bitpix %d does not match datatype %s (%d bits)", path,
                          hi->bitpix, dt->name, dt->bitpix);
    if (!dt->supported)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                          "%s: datatype %s (%d) is not supported: only real scalar voxels (integers, float32, "
                          "float64)", path, dt->name, dt->code);

    /* size */
    int64_t nvox = 1;
    for (int i = 1; i <= dim0; i++) {
        if (nvox > INT64_MAX / g->dim[i])
            return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: the voxel count dim[1] x ... x dim[%lld] overflows 64 bits",
                              path, (long long)dim0);
        nvox *= g->dim[i];
    }
    if (nvox > SARCO_IMAGE_MAX_VOXELS)
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: %lld voxels is past the cap of %lld", path, (long long)nvox,
                          (long long)SARCO_IMAGE_MAX_VOXELS);
    for (int i = 4; i <= dim0; i++)
        if (g->dim[i] != 1)
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                              "%s: dim[%d] = %lld: a series of %lld volumes is not supported (dim[4..7] must be 1); "
                              "split it into single volumes", path, i, (long long)g->dim[i], (long long)g->dim[i]);

    /* voxel sizes of the used spatial axes */
    for (int i = 1; i <= 3 && i <= dim0; i++)
        if (!(isfinite(g->pixdim[i]) && g->pixdim[i] > 0))
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: pixdim[%d] = %g (voxel sizes must be finite and > 0)",
                              path, i, g->pixdim[i]);

    /* scaling: slope 0 or not finite means none (NIfTI); a valid slope needs a finite intercept */
    if (hi->slope != 0 && isfinite(hi->slope) && !isfinite(hi->inter))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: scl_slope %g is valid but scl_inter is %g", path, hi->slope,
                          hi->inter);

    /* transforms that are in use must be finite and non-singular */
    if (g->qform_code > 0) {
        double n2 = 0;
        for (int i = 0; i < 3; i++) {
            if (!isfinite(g->quatern[i]) || !isfinite(g->qoffset[i]))
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                                  "%s: the qform (qform_code %d) has a NaN/Inf quatern or qoffset", path,
                                  g->qform_code);
            n2 += g->quatern[i] * g->quatern[i];
        }
        if (n2 > 1.0 + 1e-6)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                              "%s: the qform quaternion (b, c, d) = (%g, %g, %g) has length %g > 1", path,
                              g->quatern[0], g->quatern[1], g->quatern[2], sqrt(n2));
    }
    if (g->sform_code > 0)
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                if (!isfinite(g->srow[r][c]))
                    return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: the sform (sform_code %d) has NaN/Inf in srow_%c",
                                      path, g->sform_code, "xyz"[r]);
    return SARCO_OK;
}

/* ---- voxel conversion ---- */

typedef struct conv {
    int dt, swap, scaled;
    double slope, inter;
    float *f;        /* image mode */
    uint16_t *u;     /* labels mode */
    int64_t nan_count;
    int64_t bad;     /* labels: first voxel that is not a label, -1 while none */
    double bad_value;
} conv;

/* labels: d must be an integer in 0..65535; the first voxel that is not is kept for the message */
static inline void emit_label(conv *c, int64_t i, double d) {
    if (d >= 0 && d <= 65535 && d == floor(d)) {
        c->u[i] = (uint16_t)d;
    } else if (c->bad < 0) {
        c->bad = i;
        c->bad_value = d;
    }
}

static inline uint8_t bs8(uint8_t v) { return v; }

/* every value goes through double (exact for every type but 64-bit integers, which then round once
 * more to float32, the same path numpy/nibabel take) */
#define LOAD(T, U, SW, k, v)                                                                                     \
    T v;                                                                                                          \
    {                                                                                                             \
        U bits_;                                                                                                  \
        memcpy(&bits_, raw + (k) * sizeof(U), sizeof(U));                                                        \
        if (swap) bits_ = SW(bits_);                                                                              \
        memcpy(&v, &bits_, sizeof v);                                                                             \
    }

#define CONVERT(T, U, SW, IS_FLOAT)                                                                              \
    if (c->u) {                                                                                                   \
        for (size_t k = 0; k < count; k++) {                                                                      \
            LOAD(T, U, SW, k, v)                                                                                  \
            double d = (double)v;                                                                                 \
            emit_label(c, base + (int64_t)k, c->scaled ? d * c->slope + c->inter : d);                           \
        }                                                                                                         \
    } else if (c->scaled) {                                                                                       \
        const double slope = c->slope, inter = c->inter;                                                          \
        for (size_t k = 0; k < count; k++) {                                                                      \
            LOAD(T, U, SW, k, v)                                                                                  \
            float f = (float)((double)v * slope + inter);                                                         \
            out[k] = f;                                                                                           \
            nan += f != f;                                                                                        \
        }                                                                                                         \
    } else {                                                                                                      \
        for (size_t k = 0; k < count; k++) {                                                                      \
            LOAD(T, U, SW, k, v)                                                                                  \
            float f = (float)(double)v;                                                                           \
            out[k] = f;                                                                                           \
            if (IS_FLOAT) nan += f != f;                                                                          \
        }                                                                                                         \
    }                                                                                                             \
    break

static void convert(conv *c, const uint8_t *raw, size_t count, int64_t base) {
    const int swap = c->swap;
    float *out = c->f ? c->f + base : NULL;
    int64_t nan = 0;
    switch (c->dt) {
    case DT_UINT8: CONVERT(uint8_t, uint8_t, bs8, 0);
    case DT_INT8: CONVERT(int8_t, uint8_t, bs8, 0);
    case DT_INT16: CONVERT(int16_t, uint16_t, __builtin_bswap16, 0);
    case DT_UINT16: CONVERT(uint16_t, uint16_t, __builtin_bswap16, 0);
    case DT_INT32: CONVERT(int32_t, uint32_t, __builtin_bswap32, 0);
    case DT_UINT32: CONVERT(uint32_t, uint32_t, __builtin_bswap32, 0);
    case DT_INT64: CONVERT(int64_t, uint64_t, __builtin_bswap64, 0);
    case DT_UINT64: CONVERT(uint64_t, uint64_t, __builtin_bswap64, 0);
    case DT_FLOAT32: CONVERT(float, uint32_t, __builtin_bswap32, 1);
    case DT_FLOAT64: CONVERT(double, uint64_t, __builtin_bswap64, 1);
    default: break;
    }
    c->nan_count += nan;
}

/* ---- reader ---- */

static void fill_image_geometry(sarco_image *img, const hdrinfo *hi, const double affine[4][4],
                                const double spacing[3]) {
    memcpy(img->affine, affine, sizeof img->affine);
    memcpy(img->spacing, spacing, sizeof img->spacing);
    img->nifti = hi->g;
}

sarco_status sarco_nifti_read(sarco_context *ctx, const char *path, FILE *fp, uint64_t file_size,
                              sarco_read_mode mode, sarco_image **out_img, uint16_t **out_labels) {
    *out_img = NULL;
    if (out_labels) *out_labels = NULL;
    sarco_status st = SARCO_OK;
    src s;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    s.path = path;
    s.fp = fp;
    s.file_size = file_size;
    uint8_t *chunk = NULL;
    sarco_image *img = NULL;
    uint16_t *labels = NULL;
    size_t labels_bytes = 0;

    uint8_t magic[2] = {0, 0};
    size_t m = fread(magic, 1, 2, fp);
    if (fseeko(fp, 0, SEEK_SET) != 0)
        return sarco_fail(ctx, SARCO_ERR_IO, "%s: seek failed: %s", path, strerror(errno));
    if (m == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        s.gz = 1;
        s.in = malloc(IN_CHUNK);
        if (!s.in) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        if (inflateInit2(&s.zs, 15 + 16) != Z_OK) {
            free(s.in);
            return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot start zlib", path);
        }
        s.z_init = 1;
    }

    uint8_t h[N2_HDR];
    size_t n = src_read(&s, h, sizeof h);
    if (s.st != SARCO_OK) {
        st = s.st;
        goto done;
    }
    /* (a short NIfTI-1 file may end inside the 540 bytes asked for: s.truncated stays for the gzip
     * trailer check at the end; plain files are checked by byte counts) */
    hdrinfo hi;
    st = parse_header(ctx, path, h, n, &hi);
    if (st != SARCO_OK) goto done;
    sarco_nifti_geometry *g = &hi.g;
    const dtinfo *dt = dt_find(g->datatype);
    int64_t nvox = 1;
    for (int i = 1; i <= g->dim[0]; i++) nvox *= g->dim[i];
    uint64_t data_bytes = (uint64_t)nvox * (uint64_t)dt->bytes;
    uint64_t vo = (uint64_t)hi.vox_offset;

    /* the declared size must fit in the file before anything is allocated */
    if (!s.gz) {
        if (vo > file_size) {
            st = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: vox_offset %llu is past the end of the file (%llu bytes)",
                            path, (unsigned long long)vo, (unsigned long long)file_size);
            goto done;
        }
        if (data_bytes > file_size - vo) {
            st = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                            "%s: truncated: %lld voxels of %s need %llu bytes from offset %llu, the file has %llu",
                            path, (long long)nvox, dt->name, (unsigned long long)data_bytes, (unsigned long long)vo,
                            (unsigned long long)file_size);
            goto done;
        }
    } else if (vo > SARCO_INFLATE_BOUND(file_size) || data_bytes > SARCO_INFLATE_BOUND(file_size) - vo) {
        st = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                        "%s: the header declares %llu bytes (vox_offset %llu + %lld voxels of %s), more than this "
                        "%llu-byte gzip file can inflate to: truncated or corrupt",
                        path, (unsigned long long)(vo + data_bytes), (unsigned long long)vo, (long long)nvox,
                        dt->name, (unsigned long long)file_size);
        goto done;
    }

    /* geometry */
    int known_units;
    (void)unit_scale(g->xyzt_units, &known_units);
    double q[3][4], sm[3][4], affine[4][4], spacing[3];
    if (!geometry_matrices(g, q, sm)) {
        st = sarco_fail(ctx, SARCO_ERR_INTERNAL, "%s: nifticlib refused a header that passed our checks", path);
        goto done;
    }
    if (!sarco_nifti_geometry_affine(g, affine, spacing)) {
        st = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: the %s is singular (det of its 3x3 = %g)", path,
                        g->sform_code > 0 ? "sform" : g->qform_code > 0 ? "qform" : "pixdim diagonal",
                        det3(g->sform_code > 0 ? (const double(*)[4])sm : (const double(*)[4])q));
        goto done;
    }
    uint32_t flags = 0;
    if (!known_units) {
        flags |= SARCO_IMAGE_UNITS_ASSUMED_MM;
        sarco_log(ctx, SARCO_LOG_WARN, "%s: xyzt_units (%d) names no spatial unit: assuming mm", path,
                  g->xyzt_units);
    }
    int64_t dims[3] = {g->dim[1], g->dim[0] >= 2 ? g->dim[2] : 1, g->dim[0] >= 3 ? g->dim[3] : 1};
    if (g->qform_code > 0 && g->sform_code > 0) {
        double d = qs_disagreement(q, sm, dims);
        if (d > 1e-3) {
            flags |= SARCO_IMAGE_QFORM_SFORM_DISAGREE;
            sarco_log(ctx, SARCO_LOG_WARN,
                      "%s: qform and sform disagree by up to %.4g mm inside the grid; using the sform", path, d);
        }
    }
    int scaled = hi.slope != 0 && isfinite(hi.slope) && !(hi.slope == 1 && hi.inter == 0);
    if (scaled) flags |= SARCO_IMAGE_SCALED;

    /* extensions: each esize a multiple of 16 (>= 16) that ends at or before vox_offset */
    chunk = malloc(DATA_CHUNK);
    if (!chunk) {
        st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    if (n > (size_t)hi.hsize) {
        s.pb_len = n - (size_t)hi.hsize;
        memcpy(s.pb, h + hi.hsize, s.pb_len);
    }
    s.pos = (uint64_t)hi.hsize;
    if (vo >= s.pos + 4) {
        uint8_t ext[4];
        if (src_read(&s, ext, 4) < 4) goto short_read;
        if (ext[0] != 0) {
            for (int e = 0; vo - s.pos >= 8; e++) {
                uint8_t eh[8];
                uint64_t at = s.pos;
                if (src_read(&s, eh, 8) < 8) goto short_read;
                int32_t esize = ldi32(eh, hi.swap);
                if (esize < 16 || esize % 16 != 0) {
                    st = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                                    "%s: extension %d at byte %llu has esize %d (must be a multiple of 16, >= 16)",
                                    path, e, (unsigned long long)at, (int)esize);
                    goto done;
                }
                if ((uint64_t)esize > vo - at) {
                    st = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                                    "%s: extension %d at byte %llu has esize %d and runs past vox_offset %llu", path, e,
                                    (unsigned long long)at, (int)esize, (unsigned long long)vo);
                    goto done;
                }
                if (!src_skip(&s, (uint64_t)esize - 8, chunk, DATA_CHUNK)) goto short_read;
            }
        }
    }
    if (!src_skip(&s, vo - s.pos, chunk, DATA_CHUNK)) goto short_read;

    /* allocate, then stream the voxels through the converter */
    int ndim = g->dim[0] >= 3 ? 3 : 2;
    st = sarco_image_alloc(ctx, ndim, dims, mode == SARCO_READ_IMAGE, &img);
    if (st != SARCO_OK) goto done;
    conv c;
    memset(&c, 0, sizeof c);
    c.dt = g->datatype;
    c.swap = hi.swap;
    c.scaled = scaled;
    c.slope = hi.slope;
    c.inter = hi.inter;
    c.bad = -1;
    if (mode == SARCO_READ_IMAGE) {
        c.f = img->data;
    } else {
        labels_bytes = (size_t)nvox * sizeof(uint16_t);
        if (ctx && ctx->opts.memory_limit && labels_bytes > ctx->opts.memory_limit) {
            st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: %zu bytes of labels pass the memory limit", path,
                            labels_bytes);
            goto done;
        }
        labels = malloc(labels_bytes);
        if (!labels) {
            st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for labels", path,
                            labels_bytes);
            goto done;
        }
        c.u = labels;
    }
    uint64_t left = data_bytes;
    int64_t base = 0;
    while (left > 0) {
        size_t want = left < DATA_CHUNK ? (size_t)left : DATA_CHUNK;
        size_t got = src_read(&s, chunk, want);
        if (got < want) goto short_read;
        size_t count = want / (size_t)dt->bytes;
        convert(&c, chunk, count, base);
        base += (int64_t)count;
        left -= want;
        if (c.bad >= 0) break;
        st = sarco_progress(ctx, "read", (int64_t)(data_bytes - left), (int64_t)data_bytes);
        if (st != SARCO_OK) goto done;
    }
    if (c.bad >= 0) {
        int64_t i = c.bad, x = i % dims[0], y = i / dims[0] % dims[1], z = i / dims[0] / dims[1];
        const char *why = isnan(c.bad_value) ? "NaN" : c.bad_value < 0 ? "negative"
                          : c.bad_value > 65535 ? "larger than 65535" : "not an integer";
        st = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                        "%s: voxel %lld (x %lld, y %lld, z %lld) holds %.17g: %s, so this is not a label map "
                        "(labels are integers 0..65535)",
                        path, (long long)i, (long long)x, (long long)y, (long long)z, c.bad_value, why);
        goto done;
    }
    if (s.gz) {
        /* one byte more: makes zlib check the CRC and length trailer, and catches a stream that
         * inflates past the declared size */
        uint8_t extra;
        size_t e = src_read(&s, &extra, 1);
        if (s.st != SARCO_OK) {
            st = s.st;
            goto done;
        }
        if (e == 1) {
            st = sarco_fail(ctx, SARCO_ERR_LIMIT,
                            "%s: the gzip stream inflates past the %llu bytes the header declares (a decompression "
                            "bomb, or trailing data): refused", path, (unsigned long long)(vo + data_bytes));
            goto done;
        }
        if (s.truncated) {
            st = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                            "%s: truncated gzip stream: it ends after the voxel data without its CRC trailer", path);
            goto done;
        }
    }
    fill_image_geometry(img, &hi, affine, spacing);
    img->flags = flags;
    img->nan_count = c.nan_count;
    if (c.nan_count)
        sarco_log(ctx, SARCO_LOG_WARN, "%s: %lld NaN voxels (kept as NaN)", path, (long long)c.nan_count);
    *out_img = img;
    img = NULL;
    if (out_labels) {
        *out_labels = labels;
        labels = NULL;
    }
    st = SARCO_OK;
    goto done;

short_read:
    if (s.st != SARCO_OK) {
        st = s.st;
    } else {
        uint64_t need = vo + data_bytes;
        st = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                        "%s: truncated: the %sdata ends at byte %llu but the header declares %llu bytes "
                        "(vox_offset %llu + %llu)",
                        path, s.gz ? "gzip " : "", (unsigned long long)s.pos, (unsigned long long)need,
                        (unsigned long long)vo, (unsigned long long)data_bytes);
    }
done:
    if (s.z_init) inflateEnd(&s.zs);
    free(s.in);
    free(chunk);
    free(labels);
    sarco_image_free(img);
    return st;
}

/* ---- writer ---- */

typedef struct sink {
    sarco_context *ctx;
    const char *path;
    int fd, gz, z_init;
    z_stream zs;
    uint8_t *zbuf;
    int64_t written;
    const sarco_write_fault *fault;
    sarco_status st;
} sink;

static int raw_write(sink *k, const uint8_t *p, size_t n) {
    while (n > 0) {
        size_t w = n;
        if (k->fault && k->fault->fail_after_bytes >= 0) {
            if (k->written >= k->fault->fail_after_bytes) {
                errno = ENOSPC; /* simulated: the disk filled up */
                goto fail;
            }
            if ((int64_t)w > k->fault->fail_after_bytes - k->written)
                w = (size_t)(k->fault->fail_after_bytes - k->written);
        }
        ssize_t r = write(k->fd, p, w);
        if (r < 0) {
            if (errno == EINTR) continue;
            goto fail;
        }
        p += r;
        n -= (size_t)r;
        k->written += r;
    }
    return 1;
fail:
    k->st = sarco_fail(k->ctx, SARCO_ERR_IO, "%s: write failed after %lld bytes: %s; nothing was written", k->path,
                       (long long)k->written, strerror(errno));
    return 0;
}

static int sink_write(sink *k, const void *p, size_t n) {
    if (k->st != SARCO_OK) return 0;
    if (!k->gz) return raw_write(k, p, n);
    k->zs.next_in = (Bytef *)(uintptr_t)p;
    k->zs.avail_in = (uInt)n;
    while (k->zs.avail_in > 0) {
        k->zs.next_out = k->zbuf;
        k->zs.avail_out = IN_CHUNK;
        if (deflate(&k->zs, Z_NO_FLUSH) == Z_STREAM_ERROR) {
            k->st = sarco_fail(k->ctx, SARCO_ERR_INTERNAL, "%s: zlib deflate failed", k->path);
            return 0;
        }
        if (!raw_write(k, k->zbuf, IN_CHUNK - k->zs.avail_out)) return 0;
    }
    return 1;
}

static int sink_finish(sink *k) {
    if (k->st != SARCO_OK) return 0;
    if (!k->gz) return 1;
    for (;;) {
        k->zs.next_out = k->zbuf;
        k->zs.avail_out = IN_CHUNK;
        int rc = deflate(&k->zs, Z_FINISH);
        if (rc == Z_STREAM_ERROR) {
            k->st = sarco_fail(k->ctx, SARCO_ERR_INTERNAL, "%s: zlib deflate failed", k->path);
            return 0;
        }
        if (!raw_write(k, k->zbuf, IN_CHUNK - k->zs.avail_out)) return 0;
        if (rc == Z_STREAM_END) return 1;
    }
}

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcasecmp(s + n - t, tail) == 0;
}

/* The header geometry to write: the image's own NIfTI geometry while it still describes the
 * image (same grid, same affine), else one built from the affine. */
static int geometry_current(const sarco_image *img) {
    const sarco_nifti_geometry *g = &img->nifti;
    if ((g->version != 1 && g->version != 2) || g->dim[0] < 1 || g->dim[0] > 7) return 0;
    int64_t d[3] = {g->dim[1], g->dim[0] >= 2 ? g->dim[2] : 1, g->dim[0] >= 3 ? g->dim[3] : 1};
    if (img->ndim != (g->dim[0] >= 3 ? 3 : 2)) return 0;
    for (int a = 0; a < 3; a++)
        if (img->dims[a] != d[a]) return 0;
    for (int i = 4; i <= g->dim[0]; i++)
        if (g->dim[i] != 1) return 0;
    if (g->version == 1)
        for (int i = 1; i <= 3; i++)
            if (g->dim[i] > 32767) return 0;
    double A[4][4], sp[3];
    if (!sarco_nifti_geometry_affine(g, A, sp)) return 0;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            if (fabs(A[r][c] - img->affine[r][c]) > 1e-9 * (1 + fabs(A[r][c]))) return 0;
    for (int a = 0; a < 3; a++)
        if (fabs(sp[a] - img->spacing[a]) > 1e-9 * (1 + sp[a])) return 0;
    return 1;
}

static sarco_status geometry_from_affine(sarco_context *ctx, const sarco_image *img, const char *path,
                                         sarco_nifti_geometry *g) {
    double m[3][4], len[3], det;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) m[r][c] = img->affine[r][c];
    if (!usable_transform(m, len, &det))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "%s: the image's affine is singular or not finite (an image without spacing? set it with "
                          "sarco_image_set_spacing)", path);
    nifti_dmat44 R;
    memset(&R, 0, sizeof R);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) R.m[r][c] = m[r][c];
    R.m[3][3] = 1;
    double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
    nifti_dmat44_to_quatern(R, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
    int keep_codes = img->nifti.version == 1 || img->nifti.version == 2;
    memset(g, 0, sizeof *g);
    g->version = img->dims[0] > 32767 || img->dims[1] > 32767 || img->dims[2] > 32767 ? 2 : 1;
    g->dim[0] = img->ndim;
    for (int i = 1; i < 8; i++) g->dim[i] = i <= 3 ? img->dims[i - 1] : 1;
    g->pixdim[0] = qfac;
    g->pixdim[1] = dx;
    g->pixdim[2] = dy;
    g->pixdim[3] = dz;
    for (int i = 4; i < 8; i++) g->pixdim[i] = 1;
    g->xyzt_units = NIFTI_UNITS_MM;
    g->qform_code = keep_codes && img->nifti.qform_code > 0 ? img->nifti.qform_code : NIFTI_XFORM_ALIGNED_ANAT;
    g->sform_code = keep_codes && img->nifti.sform_code > 0 ? img->nifti.sform_code : NIFTI_XFORM_ALIGNED_ANAT;
    g->quatern[0] = qb;
    g->quatern[1] = qc;
    g->quatern[2] = qd;
    g->qoffset[0] = qx;
    g->qoffset[1] = qy;
    g->qoffset[2] = qz;
    memcpy(g->srow, m, sizeof g->srow);
    return SARCO_OK;
}

static void build_header(const sarco_nifti_geometry *g, int datatype, int bitpix, int intent_code, uint8_t *h,
                         size_t *hlen) {
    char descrip[80];
    memset(descrip, 0, sizeof descrip);
    snprintf(descrip, sizeof descrip, "libsarco %s", sarco_version_string());
    if (g->version == 2) {
        memset(h, 0, N2_HDR + 4);
        st32(h, N2_HDR);
        memcpy(h + 4, "n+2\0\r\n\032\n", 8);
        st16(h + 12, datatype);
        st16(h + 14, bitpix);
        for (int i = 0; i < 8; i++) st64(h + 16 + 8 * i, g->dim[i]);
        for (int i = 0; i < 8; i++) stf64(h + 104 + 8 * i, g->pixdim[i]);
        st64(h + 168, N2_HDR + 4);
        stf64(h + 176, 1.0); /* scl_slope 1, scl_inter 0: values as stored */
        memcpy(h + 240, descrip, 80);
        st32(h + 344, g->qform_code);
        st32(h + 348, g->sform_code);
        for (int i = 0; i < 3; i++) {
            stf64(h + 352 + 8 * i, g->quatern[i]);
            stf64(h + 376 + 8 * i, g->qoffset[i]);
        }
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) stf64(h + 400 + 32 * r + 8 * c, g->srow[r][c]);
        st32(h + 500, g->xyzt_units);
        st32(h + 504, intent_code);
        *hlen = N2_HDR + 4;
        return;
    }
    memset(h, 0, N1_HDR + 4);
    st32(h, N1_HDR);
    h[38] = 'r';
    for (int i = 0; i < 8; i++) st16(h + 40 + 2 * i, g->dim[i]);
    st16(h + 68, intent_code);
    st16(h + 70, datatype);
    st16(h + 72, bitpix);
    for (int i = 0; i < 8; i++) stf32(h + 76 + 4 * i, g->pixdim[i]);
    stf32(h + 108, N1_HDR + 4);
    stf32(h + 112, 1.0);
    h[123] = (uint8_t)g->xyzt_units;
    memcpy(h + 148, descrip, 80);
    st16(h + 252, g->qform_code);
    st16(h + 254, g->sform_code);
    for (int i = 0; i < 3; i++) {
        stf32(h + 256 + 4 * i, g->quatern[i]);
        stf32(h + 268 + 4 * i, g->qoffset[i]);
    }
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) stf32(h + 280 + 16 * r + 4 * c, g->srow[r][c]);
    memcpy(h + 344, "n+1\0", 4);
    *hlen = N1_HDR + 4;
}

sarco_status sarco_nifti_write(sarco_context *ctx, const sarco_image *img, const void *data, int datatype,
                               int intent_code, const char *path, const sarco_write_fault *fault) {
    int gz = ends_with(path, ".nii.gz");
    if (!gz && !ends_with(path, ".nii"))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: the file name must end in .nii or .nii.gz", path);
    const dtinfo *dt = dt_find(datatype);
    if (!dt || (datatype != DT_FLOAT32 && datatype != DT_UINT8 && datatype != DT_UINT16))
        return sarco_fail(ctx, SARCO_ERR_INTERNAL, "%s: cannot write datatype %d", path, datatype);
    int64_t nvox;
    if (img->ndim < 2 || img->ndim > 3 || (img->ndim == 2 && img->dims[2] != 1) ||
        !sarco_dims_product(img->dims, 3, SARCO_IMAGE_MAX_VOXELS, &nvox) || nvox < 1 || img->dims[0] < 1 ||
        img->dims[1] < 1 || img->dims[2] < 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: the image's ndim/dims are invalid", path);

    sarco_nifti_geometry g;
    if (geometry_current(img)) {
        g = img->nifti;
    } else {
        sarco_status s = geometry_from_affine(ctx, img, path, &g);
        if (s != SARCO_OK) return s;
        if (img->nifti.version)
            sarco_log(ctx, SARCO_LOG_INFO, "%s: the image no longer matches its source header: writing its affine",
                      path);
    }
    uint8_t hdr[N2_HDR + 4];
    size_t hlen;
    build_header(&g, datatype, dt->bitpix, intent_code, hdr, &hlen);

    size_t tmp_size = strlen(path) + 64;
    char *tmp = malloc(tmp_size);
    uint8_t *chunk = malloc(DATA_CHUNK);
    sink k;
    memset(&k, 0, sizeof k);
    k.ctx = ctx;
    k.path = path;
    k.fd = -1;
    k.fault = fault;
    k.gz = gz;
    if (!tmp || !chunk || (gz && !(k.zbuf = malloc(IN_CHUNK)))) {
        k.st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto fail_nofile;
    }
    if (gz) {
        /* deterministic (no name, mtime 0); level 1 as nibabel: float images barely compress further */
        if (deflateInit2(&k.zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            k.st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot start zlib", path);
            goto fail_nofile;
        }
        k.z_init = 1;
    }
    k.fd = sarco_atomic_temp_open(path, tmp, tmp_size);
    if (k.fd < 0) {
        k.st = sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot create a temporary file next to it: %s", path,
                          strerror(errno));
        goto fail_nofile;
    }
    sink_write(&k, hdr, hlen);
    int swap_out = host_big_endian();
    size_t per = (size_t)dt->bytes, step = DATA_CHUNK / per;
    for (int64_t i = 0; i < nvox && k.st == SARCO_OK; i += (int64_t)step) {
        size_t cnt = (size_t)(nvox - i) < step ? (size_t)(nvox - i) : step;
        if (datatype == DT_FLOAT32 && !swap_out) { /* already little-endian float32 */
            sink_write(&k, (const float *)data + i, cnt * per);
            continue;
        }
        if (datatype == DT_FLOAT32) {
            const float *f = (const float *)data + i;
            for (size_t j = 0; j < cnt; j++) {
                uint32_t u;
                memcpy(&u, &f[j], 4);
                if (swap_out) u = __builtin_bswap32(u);
                memcpy(chunk + 4 * j, &u, 4);
            }
        } else if (datatype == DT_UINT8) {
            const uint16_t *l = (const uint16_t *)data + i;
            for (size_t j = 0; j < cnt; j++) chunk[j] = (uint8_t)l[j];
        } else {
            const uint16_t *l = (const uint16_t *)data + i;
            for (size_t j = 0; j < cnt; j++) {
                chunk[2 * j] = (uint8_t)l[j];
                chunk[2 * j + 1] = (uint8_t)(l[j] >> 8);
            }
        }
        sink_write(&k, chunk, cnt * per);
    }
    if (!sink_finish(&k)) goto fail;
    if ((fault && fault->fail_fsync) || fsync(k.fd) != 0) {
        if (fault && fault->fail_fsync) errno = EIO;
        k.st = sarco_fail(ctx, SARCO_ERR_IO, "%s: fsync failed: %s; nothing was written", path, strerror(errno));
        goto fail;
    }
    int fd = k.fd;
    k.fd = -1;
    if (close(fd) != 0) {
        k.st = sarco_fail(ctx, SARCO_ERR_IO, "%s: close failed: %s; nothing was written", path, strerror(errno));
        goto fail;
    }
    if ((fault && fault->fail_rename) || rename(tmp, path) != 0) {
        if (fault && fault->fail_rename) errno = EXDEV;
        k.st = sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot rename the finished temporary file onto it: %s", path,
                          strerror(errno));
        goto fail;
    }
    sarco_atomic_fsync_dir(path);
    if (k.z_init) deflateEnd(&k.zs);
    free(k.zbuf);
    free(chunk);
    free(tmp);
    return SARCO_OK;

fail:
    if (k.fd >= 0) close(k.fd);
    unlink(tmp);
fail_nofile:
    if (k.z_init) deflateEnd(&k.zs);
    free(k.zbuf);
    free(chunk);
    free(tmp);
    return k.st != SARCO_OK ? k.st : sarco_fail(ctx, SARCO_ERR_INTERNAL, "%s: write failed", path);
}
