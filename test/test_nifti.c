/* NIfTI reading and writing against the generated corpus (test/gen_bad_nifti.py): every bad file gets
 * its status and a message naming the problem; every good file gives exactly the voxels and geometry
 * the generator wrote (and the affine nibabel reads); label maps and images round-trip with identical
 * voxels and header geometry; writes are atomic (nothing left behind on any failure). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>
#include <nifti1.h>

#include "lib/io/imageio.h"
#include "testutil.h"

#define NDIR "test/data/nifti/"

static char g_tmp[64];

/* the whole inflated content of a plain or gzip file (zlib's gz* read both) */
static uint8_t *inflate_file(const char *path, size_t *size) {
    gzFile g = gzopen(path, "rb");
    assert_non_null(g);
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    int r;
    while ((r = gzread(g, buf + n, (unsigned)(cap - n))) > 0) {
        n += (size_t)r;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    assert_true(r == 0);
    gzclose(g);
    *size = n;
    return buf;
}

static int parse_list(const char *s, double *out, int max) {
    int n = 0;
    char *end;
    while (*s && n < max) {
        out[n++] = strtod(s, &end);
        if (end == s) fail_msg("bad number list: %s", s);
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* ---- temp dir ---- */

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_tmp, name); }

static int count_entries(const char *dir, const char *containing) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && (!containing || strstr(e->d_name, containing))) n++;
    closedir(d);
    return n;
}

static int setup(void **state) {
    (void)state;
    return tu_tmpdir(g_tmp, sizeof g_tmp, "nifti");
}

static int teardown(void **state) {
    (void)state;
    tu_remove_tree(g_tmp);
    return 0;
}

/* ---- comparisons ---- */

static void assert_same_floats(const float *a, const float *b, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++) {
        uint32_t ua, ub;
        memcpy(&ua, &a[i], 4);
        memcpy(&ub, &b[i], 4);
        if (isnan(a[i]) && isnan(b[i])) continue;
        if (ua != ub) fail_msg("%s: voxel %zu is %.9g (0x%08x), expected %.9g (0x%08x)", what, i, a[i], ua, b[i], ub);
    }
}

static void assert_same_geometry(const sarco_image *a, const sarco_image *b, const char *what) {
    if (a->ndim != b->ndim || memcmp(a->dims, b->dims, sizeof a->dims))
        fail_msg("%s: dims differ", what);
    if (memcmp(a->affine, b->affine, sizeof a->affine)) fail_msg("%s: affine differs", what);
    if (memcmp(a->spacing, b->spacing, sizeof a->spacing)) fail_msg("%s: spacing differs", what);
    sarco_nifti_geometry ga = a->nifti, gb = b->nifti;
    ga.datatype = gb.datatype = 0;
    if (memcmp(&ga, &gb, sizeof ga)) {
        fail_msg("%s: header geometry differs (version %d/%d, qform %d/%d, sform %d/%d, units %d/%d)", what,
                 ga.version, gb.version, ga.qform_code, gb.qform_code, ga.sform_code, gb.sform_code, ga.xyzt_units,
                 gb.xyzt_units);
    }
}

static int64_t nvox(const sarco_image *img) { return img->dims[0] * img->dims[1] * img->dims[2]; }

/* ---- tests ---- */

static void test_manifest(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(NDIR "manifest.tsv", &n, &keep);
    assert_true(n > 100);
    int bad = tu_image_manifest_errors(ctx, NDIR, rows, n);
    free(rows);
    free(keep);
    sarco_context_free(ctx);
    assert_int_equal(bad, 0);
}

static void check_expected_row(sarco_context *ctx, tu_row *r) {
    const char *name = r->f[0], *api = r->f[1];
    char path[512], dpath[512];
    snprintf(path, sizeof path, NDIR "%s", name);
    snprintf(dpath, sizeof dpath, NDIR "%s", r->f[11]);
    sarco_image *img = NULL;
    uint16_t *labels = NULL;
    int is_labels = strcmp(api, "labels") == 0;
    sarco_status s = is_labels ? sarco_labels_read(ctx, path, &labels, &img) : sarco_image_read(ctx, path, &img);
    if (s != SARCO_OK) fail_msg("%s: %s", name, sarco_last_error(ctx));
    double dims[3], spacing[3], affine[12], nib[12], hdr[4];
    assert_int_equal(img->ndim, atoi(r->f[2]));
    parse_list(r->f[3], dims, 3);
    for (int a = 0; a < 3; a++) assert_int_equal(img->dims[a], (int64_t)dims[a]);
    if (img->flags != (uint32_t)atoi(r->f[4])) fail_msg("%s: flags 0x%x, expected %s", name, img->flags, r->f[4]);
    assert_int_equal(img->nan_count, atoll(r->f[5]));
    parse_list(r->f[6], spacing, 3);
    parse_list(r->f[7], affine, 12);
    for (int a = 0; a < 3; a++)
        if (fabs(img->spacing[a] - spacing[a]) > 1e-9 * (1 + spacing[a]))
            fail_msg("%s: spacing[%d] = %.17g, expected %.17g", name, a, img->spacing[a], spacing[a]);
    for (int k = 0; k < 12; k++)
        if (fabs(img->affine[k / 4][k % 4] - affine[k]) > 1e-9 * (1 + fabs(affine[k])))
            fail_msg("%s: affine[%d][%d] = %.17g, expected %.17g", name, k / 4, k % 4, img->affine[k / 4][k % 4],
                     affine[k]);
    assert_true(img->affine[3][0] == 0 && img->affine[3][1] == 0 && img->affine[3][2] == 0 && img->affine[3][3] == 1);
    if (strcmp(r->f[8], "-") != 0) {
        /* nibabel's affine is in file units */
        parse_list(r->f[8], nib, 12);
        double unit = strtod(r->f[9], NULL);
        for (int k = 0; k < 12; k++)
            if (fabs(img->affine[k / 4][k % 4] - nib[k] * unit) > 1e-6 * (1 + fabs(nib[k] * unit)))
                fail_msg("%s: affine[%d][%d] = %.17g, nibabel %.17g", name, k / 4, k % 4, img->affine[k / 4][k % 4],
                         nib[k] * unit);
    }
    parse_list(r->f[10], hdr, 4);
    assert_int_equal(img->nifti.version, (int)hdr[0]);
    assert_int_equal(img->nifti.datatype, (int)hdr[1]);
    assert_int_equal(img->nifti.qform_code, (int)hdr[2]);
    assert_int_equal(img->nifti.sform_code, (int)hdr[3]);
    size_t size;
    uint8_t *want = tu_slurp(dpath, &size);
    if (is_labels) {
        assert_null(img->data);
        assert_int_equal(size, (size_t)nvox(img) * 2);
        for (int64_t i = 0; i < nvox(img); i++) {
            uint16_t w = tu_le_u16(want + 2 * i);
            if (labels[i] != w) fail_msg("%s: label %lld is %u, expected %u", name, (long long)i, labels[i], w);
        }
    } else {
        assert_int_equal(size, (size_t)nvox(img) * 4);
        float *w = malloc(size);
        for (size_t i = 0; i < size / 4; i++) w[i] = tu_le_f32(want + 4 * i);
        assert_same_floats(img->data, w, size / 4, name);
        free(w);
    }
    free(want);
    sarco_image_free(img);
    sarco_labels_free(labels);
}

static void test_expected(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(NDIR "expected.tsv", &n, &keep);
    int checked = 0, nib = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].f[1], "written") == 0) continue;
        assert_int_equal(rows[i].n, 12);
        check_expected_row(ctx, &rows[i]);
        checked++;
        nib += strcmp(rows[i].f[8], "-") != 0;
    }
    print_message("checked %d good files, %d of them against nibabel's affine\n", checked, nib);
    assert_true(checked >= 40);
    free(rows);
    free(keep);
    sarco_context_free(ctx);
}

/* A label file libsarco wrote (committed, checked by nibabel in the generator) reads back as its source
 * did, and writing the source again now gives the same bytes. */
static void test_written_files(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(NDIR "expected.tsv", &n, &keep);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].f[1], "written") != 0) continue;
        seen++;
        char wpath[512], spath[512], again[512];
        snprintf(wpath, sizeof wpath, NDIR "%s", rows[i].f[0]);
        snprintf(spath, sizeof spath, NDIR "%s", rows[i].f[11]);
        tmp_path(again, sizeof again, rows[i].f[0]);
        sarco_image *gw, *gs;
        uint16_t *lw, *ls;
        if (sarco_labels_read(ctx, wpath, &lw, &gw) != SARCO_OK) fail_msg("%s", sarco_last_error(ctx));
        if (sarco_labels_read(ctx, spath, &ls, &gs) != SARCO_OK) fail_msg("%s", sarco_last_error(ctx));
        assert_memory_equal(lw, ls, (size_t)nvox(gs) * 2);
        assert_same_geometry(gw, gs, rows[i].f[0]);
        int max_label = gw->nifti.datatype == DT_UINT8 ? 255 : 65535;
        if (strstr(rows[i].f[0], "float_ints")) max_label = 8;
        if (strstr(rows[i].f[0], "_2d")) max_label = 300;
        assert_int_equal(sarco_labels_write(ctx, gs, ls, max_label, again), SARCO_OK);
        size_t a, b;
        uint8_t *x = inflate_file(wpath, &a), *y = inflate_file(again, &b);
        assert_int_equal(a, b);
        assert_memory_equal(x, y, a);
        free(x);
        free(y);
        if (!strstr(wpath, ".gz")) { /* plain: byte for byte */
            x = tu_slurp(wpath, &a);
            y = tu_slurp(again, &b);
            assert_int_equal(a, b);
            assert_memory_equal(x, y, a);
            free(x);
            free(y);
        }
        /* nibabel's affine of the written file (file units) against ours */
        double nib[12];
        parse_list(rows[i].f[8], nib, 12);
        int known = (gw->flags & SARCO_IMAGE_UNITS_ASSUMED_MM) == 0;
        (void)known;
        for (int k = 0; k < 12; k++)
            assert_true(fabs(gw->affine[k / 4][k % 4] - nib[k]) <= 1e-6 * (1 + fabs(nib[k])));
        sarco_image_free(gw);
        sarco_image_free(gs);
        sarco_labels_free(lw);
        sarco_labels_free(ls);
    }
    if (seen == 0) print_message("SKIP: no written_* files (run test/gen_bad_nifti.py with a built library)\n");
    free(rows);
    free(keep);
    sarco_context_free(ctx);
}

/* read -> write (.nii and .nii.gz) -> read: identical voxels and header geometry, for every good file */
static void test_roundtrip(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t n;
    char *keep;
    tu_row *rows = tu_read_tsv(NDIR "expected.tsv", &n, &keep);
    int done = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = rows[i].f[0];
        if (strcmp(rows[i].f[1], "written") == 0) continue;
        int is_labels = strcmp(rows[i].f[1], "labels") == 0;
        char path[512];
        snprintf(path, sizeof path, NDIR "%s", name);
        for (int gz = 0; gz < 2; gz++) {
            char out[512];
            snprintf(out, sizeof out, "%s/rt%s", g_tmp, gz ? ".nii.gz" : ".nii");
            sarco_image *a = NULL, *b = NULL;
            uint16_t *la = NULL, *lb = NULL;
            if (is_labels) {
                assert_int_equal(sarco_labels_read(ctx, path, &la, &a), SARCO_OK);
                int max = 0;
                for (int64_t k = 0; k < nvox(a); k++) max = la[k] > max ? la[k] : max;
                if (sarco_labels_write(ctx, a, la, max, out) != SARCO_OK) fail_msg("%s", sarco_last_error(ctx));
                if (sarco_labels_read(ctx, out, &lb, &b) != SARCO_OK) fail_msg("%s", sarco_last_error(ctx));
                assert_memory_equal(la, lb, (size_t)nvox(a) * 2);
                assert_int_equal(b->nifti.datatype, max <= 255 ? DT_UINT8 : DT_UINT16);
            } else {
                assert_int_equal(sarco_image_read(ctx, path, &a), SARCO_OK);
                if (sarco_image_write(ctx, a, out) != SARCO_OK) fail_msg("%s: %s", name, sarco_last_error(ctx));
                if (sarco_image_read(ctx, out, &b) != SARCO_OK) fail_msg("%s", sarco_last_error(ctx));
                assert_same_floats(b->data, a->data, (size_t)nvox(a), name);
                assert_int_equal(a->nan_count, b->nan_count);
                assert_int_equal(b->nifti.datatype, DT_FLOAT32);
            }
            assert_same_geometry(a, b, name);
            /* the written file carries no scaling; every other note survives */
            if ((a->flags & ~SARCO_IMAGE_SCALED) != b->flags)
                fail_msg("%s: flags 0x%x after the round trip, 0x%x before", name, b->flags, a->flags);
            assert_int_equal(count_entries(g_tmp, ".tmp-"), 0);
            sarco_image_free(a);
            sarco_image_free(b);
            sarco_labels_free(la);
            sarco_labels_free(lb);
            done++;
        }
    }
    assert_true(done >= 80);
    free(rows);
    free(keep);
    sarco_context_free(ctx);
}

/* An image that never was NIfTI: written from its affine, read back within float32 precision. */
static void test_write_from_affine(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    int64_t dims[3] = {7, 6, 5};
    double sp[3] = {0.75, 0.5, 3.0};
    sarco_image *img;
    assert_int_equal(sarco_image_create(ctx, 3, dims, sp, &img), SARCO_OK);
    assert_int_equal(img->flags & SARCO_IMAGE_NO_SPACING, 0);
    for (int64_t i = 0; i < nvox(img); i++) img->data[i] = (float)(i * 0.25 - 3);
    /* an oblique, left-handed grid */
    double c = cos(0.4), s = sin(0.4);
    double rot[3][3] = {{c, -s, 0}, {s, c, 0}, {0, 0, -1}};
    for (int r = 0; r < 3; r++) {
        for (int k = 0; k < 3; k++) img->affine[r][k] = rot[r][k] * sp[k];
        img->affine[r][3] = 10.0 * (r + 1);
    }
    char out[512];
    tmp_path(out, sizeof out, "affine.nii.gz");
    assert_int_equal(sarco_image_write(ctx, img, out), SARCO_OK);
    sarco_image *b;
    assert_int_equal(sarco_image_read(ctx, out, &b), SARCO_OK);
    assert_same_floats(b->data, img->data, (size_t)nvox(img), "affine");
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 4; k++) assert_true(fabs(b->affine[r][k] - img->affine[r][k]) < 1e-5);
    for (int a = 0; a < 3; a++) assert_true(fabs(b->spacing[a] - sp[a]) < 1e-6);
    assert_int_equal(b->nifti.version, 1);
    assert_int_equal(b->nifti.qform_code, NIFTI_XFORM_ALIGNED_ANAT);
    assert_int_equal(b->nifti.sform_code, NIFTI_XFORM_ALIGNED_ANAT);
    assert_true(b->nifti.pixdim[0] < 0); /* qfac -1 */
    assert_int_equal(b->flags, 0);       /* qform and sform agree */
    sarco_image_free(b);

    /* a NIfTI image whose affine changed is written from the new affine, keeping its codes */
    sarco_image *src;
    assert_int_equal(sarco_image_read(ctx, NDIR "good_qform_only.nii", &src), SARCO_OK);
    src->affine[0][3] += 7.0;
    tmp_path(out, sizeof out, "moved.nii");
    assert_int_equal(sarco_image_write(ctx, src, out), SARCO_OK);
    assert_int_equal(sarco_image_read(ctx, out, &b), SARCO_OK);
    assert_true(fabs(b->affine[0][3] - src->affine[0][3]) < 1e-4);
    assert_int_equal(b->nifti.qform_code, 1);
    sarco_image_free(b);
    sarco_image_free(src);

    /* no spacing: refused, nothing written */
    sarco_image *nos;
    assert_int_equal(sarco_image_create(ctx, 2, dims, NULL, &nos), SARCO_OK);
    assert_true(nos->flags & SARCO_IMAGE_NO_SPACING);
    assert_int_equal(nos->dims[2], 1);
    tmp_path(out, sizeof out, "nospacing.nii");
    assert_int_equal(sarco_image_write(ctx, nos, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(ctx), "sarco_image_set_spacing"));
    assert_int_equal(access(out, F_OK), -1);
    double sp2[2] = {0.2, 0.3};
    assert_int_equal(sarco_image_set_spacing(ctx, nos, sp2), SARCO_OK);
    assert_int_equal(sarco_image_write(ctx, nos, out), SARCO_OK);
    assert_int_equal(sarco_image_read(ctx, out, &b), SARCO_OK);
    assert_int_equal(b->ndim, 2);
    assert_true(fabs(b->spacing[0] - 0.2) < 1e-7 && fabs(b->spacing[1] - 0.3) < 1e-7);
    sarco_image_free(b);
    sarco_image_free(nos);
    sarco_image_free(img);
    sarco_context_free(ctx);
}

static void write_marker(const char *path) { tu_spit(path, "previous content", 16); }

static void assert_marker(const char *path) {
    size_t n;
    uint8_t *b = tu_slurp(path, &n);
    assert_int_equal(n, 16);
    assert_memory_equal(b, "previous content", 16);
    free(b);
}

/* Failures at every stage leave no temporary file and the old target untouched. */
static void test_atomic_write(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_image *img;
    assert_int_equal(sarco_image_read(ctx, NDIR "good_n1_be_int16.nii", &img), SARCO_OK);
    char out[512];

    /* a directory that does not exist */
    snprintf(out, sizeof out, "%s/no/such/dir/x.nii", g_tmp);
    assert_int_equal(sarco_image_write(ctx, img, out), SARCO_ERR_IO);
    assert_non_null(strstr(sarco_last_error(ctx), "temporary file"));
    /* a name that is not NIfTI */
    tmp_path(out, sizeof out, "x.img");
    assert_int_equal(sarco_image_write(ctx, img, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(access(out, F_OK), -1);
    /* the target is a directory: the rename fails */
    tmp_path(out, sizeof out, "adir.nii");
    assert_int_equal(mkdir(out, 0755), 0);
    char inner[600];
    snprintf(inner, sizeof inner, "%s/keep", out);
    write_marker(inner);
    assert_int_equal(sarco_image_write(ctx, img, out), SARCO_ERR_IO);
    assert_non_null(strstr(sarco_last_error(ctx), "rename"));
    assert_int_equal(count_entries(g_tmp, ".tmp-"), 0);
    assert_marker(inner);

    /* injected failures: the disk fills up after k bytes, fsync fails, rename fails */
    for (int gz = 0; gz < 2; gz++) {
        tmp_path(out, sizeof out, gz ? "target.nii.gz" : "target.nii");
        assert_int_equal(sarco_image_write(ctx, img, out), SARCO_OK);
        struct stat sb;
        assert_int_equal(stat(out, &sb), 0);
        const int64_t full = (int64_t)sb.st_size;
        const int64_t cut[] = {0, 1, 100, full / 2, full - 1, full};
        write_marker(out);
        for (size_t k = 0; k < sizeof cut / sizeof cut[0] + 2; k++) {
            sarco_write_fault f = {-1, 0, 0};
            if (k < sizeof cut / sizeof cut[0]) f.fail_after_bytes = cut[k];
            else if (k == sizeof cut / sizeof cut[0]) f.fail_fsync = 1;
            else f.fail_rename = 1;
            sarco_status s = sarco_nifti_write(ctx, img, img->data, DT_FLOAT32, 0, out, &f);
            if (f.fail_after_bytes == full) { /* the whole file fits: no failure */
                assert_int_equal(s, SARCO_OK);
                write_marker(out);
                continue;
            }
            assert_int_equal(s, SARCO_ERR_IO);
            assert_non_null(strstr(sarco_last_error(ctx), f.fail_fsync ? "fsync" : f.fail_rename ? "rename" : "write"));
            assert_int_equal(count_entries(g_tmp, ".tmp-"), 0);
            assert_marker(out);
        }
    }
    /* and the same path written without faults replaces the old file */
    assert_int_equal(sarco_image_write(ctx, img, out), SARCO_OK);
    sarco_image *b;
    assert_int_equal(sarco_image_read(ctx, out, &b), SARCO_OK);
    assert_same_floats(b->data, img->data, (size_t)nvox(img), "rewrite");
    sarco_image_free(b);
    sarco_image_free(img);
    sarco_context_free(ctx);
}

static void test_labels_write_checks(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    int64_t dims[3] = {4, 3, 2};
    double sp[3] = {1, 1, 1};
    sarco_image *g;
    assert_int_equal(sarco_image_create(ctx, 3, dims, sp, &g), SARCO_OK);
    uint16_t lab[24];
    for (int i = 0; i < 24; i++) lab[i] = (uint16_t)(i * 11);
    char out[512];
    tmp_path(out, sizeof out, "labels.nii");
    assert_int_equal(sarco_labels_write(ctx, g, lab, -1, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_labels_write(ctx, g, lab, 65536, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_labels_write(ctx, g, lab, 252, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(ctx), "label 253 at voxel 23 is above max_label 252"));
    assert_int_equal(access(out, F_OK), -1);
    const int maxes[] = {253, 255, 256, 65535};
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(sarco_labels_write(ctx, g, lab, maxes[k], out), SARCO_OK);
        sarco_image *b;
        uint16_t *l;
        assert_int_equal(sarco_labels_read(ctx, out, &l, &b), SARCO_OK);
        assert_int_equal(b->nifti.datatype, maxes[k] <= 255 ? DT_UINT8 : DT_UINT16);
        assert_memory_equal(l, lab, sizeof lab);
        sarco_labels_free(l);
        sarco_image_free(b);
    }
    /* a float image is not a label map */
    tmp_path(out, sizeof out, "float.nii");
    g->data[5] = 0.5f;
    assert_int_equal(sarco_image_write(ctx, g, out), SARCO_OK);
    sarco_image *b;
    uint16_t *l;
    assert_int_equal(sarco_labels_read(ctx, out, &l, &b), SARCO_ERR_BAD_FORMAT);
    assert_null(l);
    assert_null(b);
    assert_non_null(strstr(sarco_last_error(ctx), "voxel 5 (x 1, y 1, z 0) holds 0.5"));
    sarco_image_free(g);
    sarco_context_free(ctx);
}

static void test_arguments_and_files(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_image *img = (sarco_image *)1;
    uint16_t *l = (uint16_t *)1;
    assert_int_equal(sarco_image_read(ctx, NULL, &img), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_image_read(ctx, NDIR "good_2d.nii", NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_labels_read(ctx, NDIR "lab_n1_2d.nii", NULL, &img), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_image_read(ctx, NDIR "no_such_file.nii", &img), SARCO_ERR_IO);
    assert_null(img);
    assert_non_null(strstr(sarco_last_error(ctx), "cannot open"));
    assert_int_equal(sarco_image_read(ctx, NDIR, &img), SARCO_ERR_IO);
    assert_non_null(strstr(sarco_last_error(ctx), "not a regular file"));
    assert_int_equal(sarco_labels_read(ctx, NDIR, &l, &img), SARCO_ERR_IO);
    assert_null(l);
    /* without a context the status still comes back */
    assert_int_equal(sarco_image_read(NULL, NDIR "bad_dim0_8.nii", &img), SARCO_ERR_BAD_FORMAT);
    assert_int_equal(sarco_image_write(ctx, NULL, "x.nii"), SARCO_ERR_INVALID_ARGUMENT);
    sarco_image_free(NULL);
    sarco_labels_free(NULL);

    /* memory limit: refused before allocating */
    sarco_context *small = tu_new_ctx(64);
    assert_int_equal(sarco_image_read(small, NDIR "good_n1_le_float32.nii", &img), SARCO_ERR_OUT_OF_MEMORY);
    assert_null(img);
    assert_int_equal(sarco_labels_read(small, NDIR "lab_n1_uint8.nii.gz", &l, &img), SARCO_ERR_OUT_OF_MEMORY);
    /* sizes the file cannot hold are refused as such, before any allocation could hit the limit */
    assert_int_equal(sarco_image_read(small, NDIR "bad_truncated_big.nii", &img), SARCO_ERR_BAD_FORMAT);
    assert_int_equal(sarco_image_read(small, NDIR "bad_gz_declares_huge.nii.gz", &img), SARCO_ERR_BAD_FORMAT);
    sarco_context_free(small);
    sarco_context_free(ctx);
}

static int cancel_cb(void *user, const char *stage, int64_t done, int64_t total) {
    (void)stage;
    (void)done;
    (void)total;
    ++*(int *)user;
    return 1;
}

static void test_progress_and_warnings(void **state) {
    (void)state;
    tu_logbuf lb = {{0}};
    sarco_context *ctx = tu_new_logged_ctx(&lb);
    int calls = 0;
    sarco_context_set_progress(ctx, cancel_cb, &calls);
    sarco_image *img;
    assert_int_equal(sarco_image_read(ctx, NDIR "good_n1_le_uint8.nii", &img), SARCO_ERR_CANCELLED);
    assert_null(img);
    assert_int_equal(calls, 1);
    sarco_context_set_progress(ctx, NULL, NULL);
    lb.text[0] = 0;
    assert_int_equal(sarco_image_read(ctx, NDIR "good_qs_disagree.nii", &img), SARCO_OK);
    assert_non_null(strstr(lb.text, "qform and sform disagree by up to 0.5 mm"));
    sarco_image_free(img);
    lb.text[0] = 0;
    assert_int_equal(sarco_image_read(ctx, NDIR "good_units_unknown.nii", &img), SARCO_OK);
    assert_non_null(strstr(lb.text, "assuming mm"));
    sarco_image_free(img);
    lb.text[0] = 0;
    assert_int_equal(sarco_image_read(ctx, NDIR "good_nan_voxels.nii", &img), SARCO_OK);
    assert_non_null(strstr(lb.text, "3 NaN voxels"));
    sarco_image_free(img);
    sarco_context_free(ctx);
}

static void test_image_helpers(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_image *src, *like, *other;
    assert_int_equal(sarco_image_read(ctx, NDIR "good_qform_only.nii", &src), SARCO_OK);
    assert_int_equal(sarco_image_like(ctx, src, &like), SARCO_OK);
    for (int64_t i = 0; i < nvox(like); i++) assert_true(like->data[i] == 0.0f);
    assert_same_geometry(like, src, "like");
    assert_int_equal(like->flags, src->flags);
    int64_t d2[3] = {5, 4, 2};
    double sp[3] = {1, 1, 1};
    assert_int_equal(sarco_image_create(ctx, 3, d2, sp, &other), SARCO_OK);
    assert_int_equal(sarco_image_copy_geometry(ctx, other, src), SARCO_ERR_INVALID_ARGUMENT);
    sarco_image_free(other);
    int64_t d3[3] = {5, 4, 3};
    assert_int_equal(sarco_image_create(ctx, 3, d3, sp, &other), SARCO_OK);
    assert_int_equal(sarco_image_copy_geometry(ctx, other, src), SARCO_OK);
    assert_same_geometry(other, src, "copy");
    /* a label map written on the copied grid has the source's header geometry */
    uint16_t lab[60] = {0};
    lab[7] = 3;
    char out[512];
    tmp_path(out, sizeof out, "copied.nii");
    assert_int_equal(sarco_labels_write(ctx, other, lab, 3, out), SARCO_OK);
    sarco_image *g;
    uint16_t *l;
    assert_int_equal(sarco_labels_read(ctx, out, &l, &g), SARCO_OK);
    assert_same_geometry(g, src, "labels on copied grid");
    sarco_labels_free(l);
    sarco_image_free(g);
    /* new spacing keeps each axis' direction */
    double ns[3] = {2, 3, 4};
    double before[3][3];
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) before[r][c] = other->affine[r][c] / other->spacing[c];
    assert_int_equal(sarco_image_set_spacing(ctx, other, ns), SARCO_OK);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) assert_true(fabs(other->affine[r][c] - before[r][c] * ns[c]) < 1e-12);
    assert_int_equal(other->nifti.version, 0);
    double badsp[3] = {1, 0, 1};
    assert_int_equal(sarco_image_set_spacing(ctx, other, badsp), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_image_create(ctx, 4, d3, sp, &g), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_image_create(ctx, 3, d3, badsp, &g), SARCO_ERR_INVALID_ARGUMENT);
    int64_t huge[3] = {1 << 20, 1 << 20, 4};
    assert_int_equal(sarco_image_create(ctx, 3, huge, sp, &g), SARCO_ERR_LIMIT);
    sarco_image_free(other);
    sarco_image_free(like);
    sarco_image_free(src);
    sarco_context_free(ctx);
}

/* Every prefix of a good gzip file and every single-byte flip of a good plain file is refused or read,
 * never a crash (ASan run) and never a partial success with a wrong size. */
static void test_truncation_and_flips(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    const char *files[] = {NDIR "good_n1_be_int8.nii.gz", NDIR "good_n2_le_float64.nii", NDIR "good_extension.nii"};
    char out[512];
    tmp_path(out, sizeof out, "mut.nii");
    char outgz[512];
    tmp_path(outgz, sizeof outgz, "mut.nii.gz");
    for (size_t f = 0; f < 3; f++) {
        size_t n;
        uint8_t *b = tu_slurp(files[f], &n);
        const char *dst = strstr(files[f], ".gz") ? outgz : out;
        for (size_t cut = 0; cut < n; cut += (cut < 600 ? 1 : 7)) {
            tu_spit(dst, b, cut);
            sarco_image *img = NULL;
            sarco_status s = sarco_image_read(ctx, dst, &img);
            if (s == SARCO_OK) fail_msg("%s cut at %zu was accepted", files[f], cut);
            assert_null(img);
        }
        for (size_t pos = 0; pos < (n < 700 ? n : 700); pos++) {
            uint8_t save = b[pos];
            b[pos] ^= (uint8_t)(1u << (pos % 8));
            tu_spit(dst, b, n);
            b[pos] = save;
            sarco_image *img = NULL;
            if (sarco_image_read(ctx, dst, &img) == SARCO_OK) {
                assert_non_null(img);
                assert_true(nvox(img) > 0);
            }
            sarco_image_free(img);
        }
        free(b);
    }
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest),
        cmocka_unit_test(test_expected),
        cmocka_unit_test(test_written_files),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_write_from_affine),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_labels_write_checks),
        cmocka_unit_test(test_arguments_and_files),
        cmocka_unit_test(test_progress_and_warnings),
        cmocka_unit_test(test_image_helpers),
        cmocka_unit_test(test_truncation_and_flips),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
