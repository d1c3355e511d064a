/* DICOM input: one file (2D image, ultrasound frames) or a folder holding a CT/MR series. GDCM parses
 * and decodes (lib/io/dicom_gdcm.cpp); here: finding the files, grouping by SeriesInstanceUID,
 * sorting along the slice normal, the consistency checks, the LPS -> RAS affine and the values.
 * Rules and tolerances: docs/io.md "DICOM". */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "dicom_gdcm.h"
#include "imageio.h"

#define MAX_FILES 100000  /* files looked at in one folder tree */
#define MAX_DEPTH 32      /* folder nesting */
#define GAP_REL 0.01      /* a gap may differ from the slice spacing by 1 % ... */
#define GAP_ABS 0.01      /* ... or 0.01 mm, whichever is larger */
#define ORIENT_TOL 1e-4   /* direction cosines equal within this */
#define SPACING_REL 1e-4  /* PixelSpacing equal within this fraction */

typedef struct dcm_file {
    char *path;
    sarco_dcm_header h;
    double dist; /* position along the slice normal */
} dcm_file;

typedef struct dcm_list {
    dcm_file *v;
    size_t n, cap;
    size_t skipped; /* files that are not DICOM images */
    dev_t dev[MAX_DEPTH + 1];
    ino_t ino[MAX_DEPTH + 1];
    char *dirs[MAX_DEPTH + 1];
} dcm_list;

static void list_free(dcm_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].path);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static sarco_status gdcm_status(sarco_context *ctx, int rc, const char *msg) {
    switch (rc) {
    case SARCO_DCM_OK: return SARCO_OK;
    case SARCO_DCM_NOMEM: return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s", msg);
    case SARCO_DCM_UNSUPPORTED: return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s", msg);
    default: return sarco_fail(ctx, strstr(msg, "past the cap") ? SARCO_ERR_LIMIT : SARCO_ERR_BAD_FORMAT, "%s", msg);
    }
}

int sarco_dicom_magic(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    unsigned char b[132];
    size_t n = fread(b, 1, sizeof b, fp);
    fclose(fp);
    return n == sizeof b && memcmp(b + 128, "DICM", 4) == 0;
}

/* ---- structure check before GDCM ------------------------------------------------------------
 * GDCM (as Debian builds it) asserts on some malformed files, and an assert aborts the process. So
 * every file is first walked here: the File Meta group, then every element of the data set, nested
 * sequences and items and encapsulated fragments included, must lie inside the file (and inside
 * their parent), with the delimiters where they belong. Only a file that passes goes to GDCM. */

typedef struct walker {
    const unsigned char *b;
    uint64_t n;
    int implicit, big;
    const char *path;
    char why[200];
} walker;

static uint32_t rd16(const walker *w, uint64_t at) {
    const unsigned char *p = w->b + at;
    return w->big ? (uint32_t)(p[0] << 8 | p[1]) : (uint32_t)(p[1] << 8 | p[0]);
}

static uint32_t rd32(const walker *w, uint64_t at) {
    const unsigned char *p = w->b + at;
    return w->big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                  : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static int long_vr(const unsigned char *vr) {
    static const char *const l[] = {"OB", "OW", "OF", "SQ", "UT", "UN", "OD", "OL", "OV", "UC", "UR", "SV", "UV"};
    for (size_t i = 0; i < sizeof l / sizeof *l; i++)
        if (vr[0] == l[i][0] && vr[1] == l[i][1]) return 1;
    return 0;
}

/* The VRs of PS3.5 6.2: anything else is a damaged header (GDCM asserts on some). */
static int known_vr(const unsigned char *vr) {
    static const char k[] = "AEASATCSDADSDTFLFDISLOLTOBODOFOLOVOWPNSHSLSQSSSTSVTMUCUIULUNURUSUTUV";
    for (size_t i = 0; i + 1 < sizeof k; i += 2)
        if (vr[0] == k[i] && vr[1] == k[i + 1]) return 1;
    return 0;
}

static int walk_set(walker *w, uint64_t *at, uint64_t end, int depth, int until_item_end);

/* Items of a sequence (or fragments of encapsulated pixel data) up to end or a sequence delimiter. */
static int walk_items(walker *w, uint64_t *at, uint64_t end, int depth, int undefined, int fragments) {
    while (*at < end) {
        if (*at + 8 > end) return snprintf(w->why, sizeof w->why, "an item header past the end at byte %llu", (unsigned long long)*at), 0;
        uint32_t g = rd16(w, *at), e = rd16(w, *at + 2), len = rd32(w, *at + 4);
        *at += 8;
        if (g == 0xfffe && e == 0xe0dd) return undefined ? 1 : (snprintf(w->why, sizeof w->why, "a stray sequence delimiter"), 0);
        if (g != 0xfffe || e != 0xe000)
            return snprintf(w->why, sizeof w->why, "(%04x,%04x) where an item belongs, at byte %llu", g, e,
                            (unsigned long long)(*at - 8)), 0;
        if (len == 0xffffffffu) {
            if (fragments) return snprintf(w->why, sizeof w->why, "a pixel data fragment of undefined length"), 0;
            if (!walk_set(w, at, end, depth + 1, 1)) return 0;
        } else {
            if (len > end - *at) return snprintf(w->why, sizeof w->why, "an item of %u bytes past the end", len), 0;
            uint64_t sub = *at;
            if (!fragments && !walk_set(w, &sub, *at + len, depth + 1, 0)) return 0;
            *at += len;
        }
    }
    return undefined ? (snprintf(w->why, sizeof w->why, "a sequence without its delimiter (truncated)"), 0) : 1;
}

/* Elements up to end (or, until_item_end, up to an item delimiter). */
static int walk_set(walker *w, uint64_t *at, uint64_t end, int depth, int until_item_end) {
    if (depth > 16) return snprintf(w->why, sizeof w->why, "sequences nested deeper than 16"), 0;
    while (*at < end) {
        if (*at + 8 > end) return snprintf(w->why, sizeof w->why, "an element header past the end at byte %llu", (unsigned long long)*at), 0;
        uint32_t g = rd16(w, *at), e = rd16(w, *at + 2), len;
        int sq = 0;
        if (g == 0xfffe) {
            if (e == 0xe00d && until_item_end) {
                *at += 8;
                return 1;
            }
            return snprintf(w->why, sizeof w->why, "a stray (fffe,%04x) at byte %llu", e, (unsigned long long)*at), 0;
        }
        if (w->implicit) {
            len = rd32(w, *at + 4);
            *at += 8;
            sq = len == 0xffffffffu;
        } else {
            const unsigned char *vr = w->b + *at + 4;
            if (!known_vr(vr))
                return snprintf(w->why, sizeof w->why, "no VR for (%04x,%04x) at byte %llu", g, e, (unsigned long long)*at), 0;
            if (long_vr(vr)) {
                if (*at + 12 > end) return snprintf(w->why, sizeof w->why, "an element header past the end"), 0;
                len = rd32(w, *at + 8);
                sq = vr[0] == 'S' && vr[1] == 'Q';
                *at += 12;
            } else {
                len = rd16(w, *at + 6);
                *at += 8;
            }
        }
        if (len == 0xffffffffu) {
            int pixels = g == 0x7fe0 && e == 0x0010;
            if (!sq && !pixels && !(!w->implicit && w->b[*at - 8] == 'U' && w->b[*at - 7] == 'N'))
                return snprintf(w->why, sizeof w->why, "(%04x,%04x) of undefined length", g, e), 0;
            if (!walk_items(w, at, end, depth, 1, pixels)) return 0;
        } else {
            if (len > end - *at)
                return snprintf(w->why, sizeof w->why, "(%04x,%04x) of %u bytes runs past the end (truncated)", g, e, len), 0;
            if (sq && len) {
                uint64_t sub = *at;
                if (!walk_items(w, &sub, *at + len, depth, 0, 0)) return 0;
            }
            *at += len;
        }
    }
    return until_item_end ? (snprintf(w->why, sizeof w->why, "an item without its delimiter (truncated)"), 0) : 1;
}

/* 0 with a reason in w->why when the file's structure is broken. Deflated data sets are inflated
 * by GDCM and only their meta group is walked here. */
static int dcm_structure_ok(sarco_context *ctx, const char *path, char *why, size_t whyn) {
    int ok = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return snprintf(why, whyn, "cannot open: %s", strerror(errno)), 0;
    struct stat sb;
    unsigned char *buf = NULL, *infl = NULL;
    uint64_t infl_cap = 0;
    if (fstat(fileno(fp), &sb) != 0 || sb.st_size < 132) {
        snprintf(why, whyn, "too short for DICOM");
        goto done;
    }
    if ((uint64_t)sb.st_size > ((uint64_t)1 << 34)) {
        snprintf(why, whyn, "a file of %lld bytes is past the 16 GiB cap", (long long)sb.st_size);
        goto done;
    }
    if (!(buf = sarco_ctx_malloc(ctx, (size_t)sb.st_size, "dicom file"))) {
        snprintf(why, whyn, "out of memory for %lld bytes", (long long)sb.st_size);
        goto done;
    }
    if (fread(buf, 1, (size_t)sb.st_size, fp) != (size_t)sb.st_size) {
        snprintf(why, whyn, "read failed");
        goto done;
    }
    walker w = {buf, (uint64_t)sb.st_size, 0, 0, path, ""};
    uint64_t at = 132, meta_end = 0, group_end = 0;
    char ts[68] = "";
    /* File Meta: explicit VR little endian, group 0002 */
    while (at + 8 <= w.n && rd16(&w, at) == 0x0002) {
        uint32_t e = rd16(&w, at + 2), len;
        const unsigned char *vr = buf + at + 4;
        if (!known_vr(vr)) {
            snprintf(why, whyn, "the file meta element (0002,%04x) has no valid VR", e);
            goto done;
        }
        uint64_t hdr = long_vr(vr) ? 12 : 8;
        if (at + hdr > w.n) break;
        len = hdr == 12 ? rd32(&w, at + 8) : rd16(&w, at + 6);
        if (len > w.n - at - hdr) {
            snprintf(why, whyn, "the file meta element (0002,%04x) runs past the end (truncated)", e);
            goto done;
        }
        if (e == 0x0010) snprintf(ts, sizeof ts, "%.*s", (int)(len < 64 ? len : 64), (const char *)buf + at + hdr);
        if (e == 0x0000 && len == 4 && at == 132) group_end = at + hdr + 4 + rd32(&w, at + hdr);
        at += hdr + len;
        meta_end = at;
    }
    /* GDCM trusts the group length and asserts when the group is cut: both must agree */
    if (!meta_end || !group_end || group_end != meta_end || !ts[0]) {
        snprintf(why, whyn, "%s", !meta_end ? "no File Meta group after the DICM magic"
                                 : !ts[0]  ? "no TransferSyntaxUID in the File Meta group"
                                           : "the File Meta group's length does not match its elements (cut?)");
        goto done;
    }
    if (at >= w.n) {
        snprintf(why, whyn, "no data set after the File Meta group (truncated)");
        goto done;
    }
    for (char *p = ts + strlen(ts); p > ts && (p[-1] == ' ' || p[-1] == '\0');) *--p = '\0';
    /* the transfer syntaxes read (GDCM guesses at others, differently from this walk) */
    static const char *const known_ts[] = {
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.5"};
    int known = 0;
    for (size_t i = 0; i < sizeof known_ts / sizeof *known_ts; i++) known |= !strcmp(ts, known_ts[i]);
    if (!known) {
        snprintf(why, whyn, "transfer syntax %s is not read (UNSUPPORTED)", ts);
        goto done;
    }
    w.implicit = !strcmp(ts, "1.2.840.10008.1.2");
    w.big = !strcmp(ts, "1.2.840.10008.1.2.2");
    if (!strcmp(ts, "1.2.840.10008.1.2.1.99")) { /* deflated: inflate (raw deflate) what follows the meta group */
        uint64_t cap = (uint64_t)1 << 30, got = 0;
        infl_cap = SARCO_INFLATE_BOUND(w.n - at) < cap ? SARCO_INFLATE_BOUND(w.n - at) : cap;
        if (!(infl = sarco_ctx_malloc(ctx, (size_t)infl_cap, "dicom inflate"))) {
            snprintf(why, whyn, "out of memory for the inflated data set");
            goto done;
        }
        z_stream z;
        memset(&z, 0, sizeof z);
        if (inflateInit2(&z, -15) != Z_OK) {
            snprintf(why, whyn, "zlib failed");
            goto done;
        }
        z.next_in = buf + at;
        z.avail_in = (uInt)(w.n - at > UINT32_MAX ? UINT32_MAX : w.n - at);
        z.next_out = infl;
        z.avail_out = (uInt)infl_cap;
        int zr = inflate(&z, Z_FINISH);
        got = z.total_out;
        inflateEnd(&z);
        if (zr != Z_STREAM_END) {
            snprintf(why, whyn, "the deflated data set is corrupt or truncated");
            goto done;
        }
        walker d = {infl, got, 0, 0, path, ""};
        uint64_t at2 = 0;
        if (!walk_set(&d, &at2, d.n, 0, 0)) {
            snprintf(why, whyn, "%s (inflated data set)", d.why);
            goto done;
        }
        ok = 1;
        goto done;
    }
    if (!walk_set(&w, &at, w.n, 0, 0)) {
        snprintf(why, whyn, "%s", w.why);
        goto done;
    }
    ok = 1;
done:
    if (infl) sarco_ctx_free(ctx, infl, (size_t)infl_cap);
    if (buf) sarco_ctx_free(ctx, buf, (size_t)sb.st_size);
    fclose(fp);
    return ok;
}

/* Adds one file with a DICM magic; files without it are counted as skipped. */
static sarco_status add_file(sarco_context *ctx, dcm_list *l, const char *path) {
    if (!sarco_dicom_magic(path)) {
        l->skipped++;
        sarco_log(ctx, SARCO_LOG_INFO, "%s: no DICM magic, not read", path);
        return SARCO_OK;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        dcm_file *v = realloc(l->v, cap * sizeof *v);
        if (!v) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory listing files", path);
        l->v = v;
        l->cap = cap;
    }
    dcm_file *f = &l->v[l->n];
    memset(f, 0, sizeof *f);
    char msg[1024] = "";
    if (!dcm_structure_ok(ctx, path, msg, sizeof msg))
        return sarco_fail(ctx, strstr(msg, "out of memory") ? SARCO_ERR_OUT_OF_MEMORY :
                               strstr(msg, "(UNSUPPORTED)") ? SARCO_ERR_UNSUPPORTED : SARCO_ERR_BAD_FORMAT,
                          "%s: broken DICOM: %s", path, msg);
    int rc = sarco_dcm_read_header(path, &f->h, msg, sizeof msg);
    if (rc != SARCO_DCM_OK) return gdcm_status(ctx, rc, msg);
    if (!f->h.has_rows) { /* DICOMDIR, structured reports, presentation states: not images */
        l->skipped++;
        sarco_log(ctx, SARCO_LOG_INFO, "%s: DICOM without Rows/Columns (not an image), not read", path);
        return SARCO_OK;
    }
    if (!(f->path = strdup(path))) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    l->n++;
    return SARCO_OK;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Walks a folder tree (symlinks followed; a folder that is its own ancestor is a loop: refused). */
static sarco_status walk(sarco_context *ctx, dcm_list *l, const char *dir, int depth) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot stat: %s", dir, strerror(errno));
    for (int d = 0; d < depth; d++)
        if (l->dev[d] == sb.st_dev && l->ino[d] == sb.st_ino)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: a folder loop (it is %s again, through a link)", dir,
                              l->dirs[d]);
    if (depth >= MAX_DEPTH)
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: folders nested deeper than %d", dir, MAX_DEPTH);
    l->dev[depth] = sb.st_dev;
    l->ino[depth] = sb.st_ino;
    l->dirs[depth] = (char *)dir;
    DIR *dp = opendir(dir);
    if (!dp) return sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot open the folder: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    sarco_status s = SARCO_OK;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n + l->n + l->skipped >= MAX_FILES) {
            s = sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: more than %d files", dir, MAX_FILES);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
                break;
            }
            names = nn;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) {
            s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
            break;
        }
        snprintf(names[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(dp);
    if (s == SARCO_OK) qsort(names, n, sizeof *names, cmp_name); /* a stable order for messages */
    for (size_t i = 0; i < n && s == SARCO_OK; i++) {
        if (stat(names[i], &sb) != 0) {
            sarco_log(ctx, SARCO_LOG_WARN, "%s: cannot stat (a dangling link?), skipped", names[i]);
            l->skipped++;
        } else if (S_ISDIR(sb.st_mode)) {
            s = walk(ctx, l, names[i], depth + 1);
        } else if (S_ISREG(sb.st_mode)) {
            s = add_file(ctx, l, names[i]);
        } else {
            l->skipped++;
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return s;
}

/* ---- values ---------------------------------------------------------------------------------- */

/* Sample k of a decoded buffer as a number: bits_stored wide, sign-extended when pixel_rep is 1. */
static double sample(const sarco_dcm_pixels *px, int64_t bits_stored, size_t k) {
    uint32_t u;
    switch (px->bits_allocated) {
    case 8: u = ((const uint8_t *)px->data)[k]; break;
    case 16: u = ((const uint16_t *)px->data)[k]; break;
    default: u = ((const uint32_t *)px->data)[k]; break;
    }
    int bs = (int)bits_stored;
    if (bs > 0 && bs < 32) u &= (1u << bs) - 1u;
    else bs = 32;
    if (px->pixel_rep == 1 && (u >> (bs - 1)) & 1u) return (double)u - (bs == 32 ? 4294967296.0 : (double)(1u << bs));
    return (double)u;
}

static double clip8(double v) { return v <= 0 ? 0 : v >= 255 ? 255 : v; }

/* The sample (frame f, row r, column c, channel ch) of a decoded buffer, colour turned to RGB. */
typedef struct px_view {
    const sarco_dcm_pixels *px;
    int64_t bits_stored;
    int ybr; /* YBR_FULL(_422) still in YCbCr: convert (DICOM PS3.3 C.7.6.3.1.2, full range) */
} px_view;

static double px_at(const px_view *v, int64_t f, int64_t r, int64_t c, int ch) {
    const sarco_dcm_pixels *p = v->px;
    size_t per_frame = (size_t)(p->rows * p->cols * p->spp), pix = (size_t)(r * p->cols + c);
    size_t base = (size_t)f * per_frame;
    if (p->spp == 1) return sample(p, v->bits_stored, base + pix);
    double s[3];
    for (int k = 0; k < 3; k++)
        s[k] = sample(p, v->bits_stored, base + (p->planar ? (size_t)k * (size_t)(p->rows * p->cols) + pix : pix * 3 + k));
    if (!v->ybr) return s[ch];
    /* PS3.3 C.7.6.3.1.2 in float32 and rounded as floor(x + 0.5), as pydicom's convert_color_space */
    float y = (float)s[0], cb = (float)s[1] - 128.0f, cr = (float)s[2] - 128.0f, rgb;
    if (ch == 0) rgb = y + 1.402f * cr;
    else if (ch == 1) rgb = y + (float)(-0.114 * 1.772 / 0.587) * cb + (float)(-0.299 * 1.402 / 0.587) * cr;
    else rgb = y + 1.772f * cb;
    return clip8(floor((double)rgb + 0.5));
}

/* Checks what a decoded file holds against what the reader handles. */
static sarco_status check_pixels(sarco_context *ctx, const char *path, const sarco_dcm_pixels *px, px_view *v,
                                 const sarco_dcm_header *h) {
    if (px->spp != 1 && px->spp != 3)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: %lld samples per pixel", path, (long long)px->spp);
    if (px->bits_allocated != 8 && px->bits_allocated != 16 && px->bits_allocated != 32)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: %lld bits allocated", path, (long long)px->bits_allocated);
    if (px->spp == 3 && px->bits_allocated != 8 && strncmp(px->photometric, "RGB", 3) != 0)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: %lld-bit %s colour", path, (long long)px->bits_allocated,
                          px->photometric);
    v->px = px;
    /* after a palette, the samples are the LUT's: full width */
    v->bits_stored = (!strcmp(h->photometric, "PALETTE COLOR") || h->bits_stored <= 0 ||
                      h->bits_stored > px->bits_allocated) ? px->bits_allocated : h->bits_stored;
    v->ybr = px->spp == 3 && (!strcmp(px->photometric, "YBR_FULL") || !strcmp(px->photometric, "YBR_FULL_422"));
    if (px->spp == 3 && !v->ybr && strcmp(px->photometric, "RGB") != 0)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: colour as %s (RGB, YBR_FULL, YBR_FULL_422, palette are read)",
                          path, px->photometric);
    if (px->spp == 1 && strncmp(px->photometric, "MONOCHROME", 10) != 0)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: one sample per pixel as %s", path, px->photometric);
    return SARCO_OK;
}

static sarco_status decode(sarco_context *ctx, const dcm_file *f, sarco_dcm_pixels *px) {
    uint64_t cap = (uint64_t)SARCO_IMAGE_MAX_VOXELS * 4u; /* 3 samples x 4 bytes is less than 4 x 4 bytes/voxel */
    if (ctx && ctx->opts.memory_limit && ctx->opts.memory_limit < cap) cap = ctx->opts.memory_limit;
    char msg[1024] = "";
    int rc = sarco_dcm_decode(f->path, &f->h, cap, px, msg, sizeof msg);
    return gdcm_status(ctx, rc, msg);
}

/* Header fields every image needs, and the size caps, before anything is decoded. */
static sarco_status check_header(sarco_context *ctx, const dcm_file *f) {
    const sarco_dcm_header *h = &f->h;
    if (h->rows < 1 || h->cols < 1)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: Rows x Columns is %lld x %lld", f->path, (long long)h->rows,
                          (long long)h->cols);
    if (h->bits_allocated != 8 && h->bits_allocated != 16 && h->bits_allocated != 32 && h->bits_allocated != 1)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: BitsAllocated is %lld", f->path, (long long)h->bits_allocated);
    if (h->spp != 1 && h->spp != 3)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: SamplesPerPixel is %lld", f->path, (long long)h->spp);
    int64_t d[4] = {h->rows, h->cols, h->frames, h->spp}, n;
    if (!sarco_dims_product(d, 4, SARCO_IMAGE_MAX_VOXELS, &n))
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: %lld x %lld x %lld frames x %lld samples is past the cap of %lld",
                          f->path, (long long)h->rows, (long long)h->cols, (long long)h->frames, (long long)h->spp,
                          (long long)SARCO_IMAGE_MAX_VOXELS);
    return SARCO_OK;
}

static sarco_dicom_info *new_info(sarco_context *ctx, const dcm_file *f, int64_t files) {
    sarco_dicom_info *di = calloc(1, sizeof *di);
    if (!di) {
        sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "dicom: out of memory");
        return NULL;
    }
    snprintf(di->series_uid, sizeof di->series_uid, "%s", f->h.series_uid);
    snprintf(di->series_description, sizeof di->series_description, "%s", f->h.series_description);
    snprintf(di->modality, sizeof di->modality, "%s", f->h.modality);
    snprintf(di->transfer_syntax, sizeof di->transfer_syntax, "%s", f->h.transfer_syntax);
    snprintf(di->photometric, sizeof di->photometric, "%s", f->h.photometric);
    di->files = files;
    di->frames = f->h.frames;
    di->rescale_slope = f->h.slope;
    di->rescale_intercept = f->h.intercept;
    return di;
}

/* The in-plane spacing (row, col) of a single file: ultrasound regions, else PixelSpacing. */
static int plane_spacing(sarco_context *ctx, const dcm_file *f, double sp[2]) {
    const sarco_dcm_header *h = &f->h;
    if (h->has_us_spacing) {
        if (h->us_regions_disagree)
            sarco_log(ctx, SARCO_LOG_INFO, "%s: 2D ultrasound regions with different deltas: the largest one's are used",
                      f->path);
        sp[0] = h->us_spacing[0];
        sp[1] = h->us_spacing[1];
        return SARCO_DICOM_SPACING_US_REGIONS;
    }
    if (h->us_regions && h->us_units_note[0])
        sarco_log(ctx, SARCO_LOG_WARN, "%s: %s", f->path, h->us_units_note);
    if (h->has_pixel_spacing && h->pixel_spacing[0] > 0 && h->pixel_spacing[1] > 0) {
        sp[0] = h->pixel_spacing[0];
        sp[1] = h->pixel_spacing[1];
        return SARCO_DICOM_SPACING_PIXEL_SPACING;
    }
    sp[0] = sp[1] = 0;
    return SARCO_DICOM_SPACING_NONE;
}

static void cross(const double *a, const double *b, double *o) {
    o[0] = a[1] * b[2] - a[2] * b[1];
    o[1] = a[2] * b[0] - a[0] * b[2];
    o[2] = a[0] * b[1] - a[1] * b[0];
}

static double dot(const double *a, const double *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

/* Row and column cosines must be unit length and orthogonal (to 1e-3). */
static sarco_status check_orientation(sarco_context *ctx, const dcm_file *f) {
    const double *o = f->h.orientation;
    if (fabs(dot(o, o) - 1) > 1e-3 || fabs(dot(o + 3, o + 3) - 1) > 1e-3 || fabs(dot(o, o + 3)) > 1e-3)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: ImageOrientationPatient is not two orthogonal unit vectors", f->path);
    return SARCO_OK;
}

/* LPS (DICOM) -> RAS (NIfTI): x and y change sign. col0 along a row (columns), col1 down (rows). */
static void set_affine(sarco_image *img, const double *r, const double *c, const double *nz, const double *origin,
                       double dcol, double drow) {
    for (int a = 0; a < 3; a++) {
        double sgn = a < 2 ? -1.0 : 1.0;
        img->affine[a][0] = sgn * r[a] * dcol;
        img->affine[a][1] = sgn * c[a] * drow;
        img->affine[a][2] = sgn * nz[a];
        img->affine[a][3] = sgn * origin[a];
    }
    img->affine[3][0] = img->affine[3][1] = img->affine[3][2] = 0;
    img->affine[3][3] = 1;
}

/* ---- one file -------------------------------------------------------------------------------- */

static int multiframe_ok(const sarco_dcm_header *h) {
    /* cine loops and secondary captures: frames are time; a CT/MR/PET multi-frame has per-frame
     * positions this reader does not take yet, so it is refused rather than stacked wrongly */
    return !strcmp(h->modality, "US") || !strcmp(h->modality, "OT") || !strcmp(h->modality, "SC") ||
           !strcmp(h->modality, "XC") || !strcmp(h->modality, "ES") || !h->modality[0];
}

static sarco_status read_file(sarco_context *ctx, const dcm_file *f, sarco_read_mode mode, sarco_image **img_out,
                              sarco_picture **pic_out) {
    sarco_status s = check_header(ctx, f);
    if (s != SARCO_OK) return s;
    const sarco_dcm_header *h = &f->h;
    if (h->frames > 1 && !multiframe_ok(h))
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                          "%s: a %s multi-frame file (%lld frames): enhanced multi-frame geometry is not read", f->path,
                          h->modality, (long long)h->frames);
    if (mode == SARCO_READ_PICTURE && h->frames > 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "%s: %lld frames: a picture is one frame (sarco_image_read gives the frames along z)", f->path,
                          (long long)h->frames);
    if (mode == SARCO_READ_LABELS)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: label maps are not read from DICOM", f->path);
    sarco_dcm_pixels px;
    if ((s = decode(ctx, f, &px)) != SARCO_OK) return s;
    px_view v;
    sarco_dicom_info *di = NULL;
    if ((s = check_pixels(ctx, f->path, &px, &v, h)) != SARCO_OK) goto out;
    if (!(di = new_info(ctx, f, 1))) {
        s = SARCO_ERR_OUT_OF_MEMORY;
        goto out;
    }
    double sp[2];
    di->spacing_source = plane_spacing(ctx, f, sp);
    int64_t rows = px.rows, cols = px.cols, frames = px.frames;
    int rescale = px.spp == 1 && h->has_rescale && (h->slope != 1 || h->intercept != 0);
    if (mode == SARCO_READ_PICTURE) {
        sarco_picture *p;
        if ((s = sarco_picture_alloc(ctx, cols, rows, (int)px.spp, &p)) != SARCO_OK) goto out;
        for (int ch = 0; ch < px.spp; ch++)
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++)
                    p->data[(ch * rows + r) * cols + c] = (float)px_at(&v, 0, r, c, ch);
        p->bit_depth = px.spp == 3 ? (int)px.bits_allocated : (int)(v.bits_stored <= 8 ? 8 : 16);
        if (px.pixel_rep == 1 || v.bits_stored > 16) p->bit_depth = 0; /* signed or 32-bit: real values */
        p->format = SARCO_PICTURE_FORMAT_DICOM;
        if (di->spacing_source != SARCO_DICOM_SPACING_NONE) {
            p->spacing[0] = sp[0];
            p->spacing[1] = sp[1];
            p->flags &= ~SARCO_IMAGE_NO_SPACING;
        }
        if (!strcmp(h->photometric, "PALETTE COLOR")) p->flags |= SARCO_PICTURE_FROM_PALETTE;
        p->dicom = di;
        di = NULL;
        *pic_out = p;
        goto out;
    }
    int64_t dims[3] = {cols, rows, frames};
    sarco_image *img;
    if ((s = sarco_image_alloc(ctx, frames > 1 ? 3 : 2, dims, 1, &img)) != SARCO_OK) goto out;
    for (int64_t fr = 0; fr < frames; fr++)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                double val;
                if (px.spp == 1) {
                    val = px_at(&v, fr, r, c, 0);
                    if (rescale) val = val * h->slope + h->intercept;
                } else {
                    /* BT.601 luma on the 0..255 scale (16-bit colour, e.g. a 16-bit palette, / 257 as for PNG) */
                    val = 0.299 * px_at(&v, fr, r, c, 0) + 0.587 * px_at(&v, fr, r, c, 1) + 0.114 * px_at(&v, fr, r, c, 2);
                    if (px.bits_allocated == 16) val /= 257.0;
                }
                img->data[(fr * rows + r) * cols + c] = (float)val;
            }
    if (rescale) img->flags |= SARCO_IMAGE_SCALED;
    if (frames > 1) img->flags |= SARCO_IMAGE_DICOM_FRAMES;
    if (!strcmp(h->photometric, "MONOCHROME1")) img->flags |= SARCO_IMAGE_DICOM_MONOCHROME1;
    if (di->spacing_source == SARCO_DICOM_SPACING_NONE) {
        img->flags |= SARCO_IMAGE_NO_SPACING;
    } else {
        double dz = h->has_thickness && h->thickness > 0 && frames == 1 ? h->thickness : 1.0;
        img->spacing[0] = sp[1];
        img->spacing[1] = sp[0];
        img->spacing[2] = dz;
        if (di->spacing_source == SARCO_DICOM_SPACING_PIXEL_SPACING && h->has_orientation && h->has_position &&
            frames == 1 && check_orientation(ctx, f) == SARCO_OK) {
            double nrm[3];
            cross(h->orientation, h->orientation + 3, nrm);
            for (int a = 0; a < 3; a++) nrm[a] *= dz;
            set_affine(img, h->orientation, h->orientation + 3, nrm, h->position, sp[1], sp[0]);
        } else { /* no patient geometry (ultrasound): the grid, as for a PNG with pHYs */
            for (int a = 0; a < 3; a++) img->affine[a][a] = img->spacing[a];
        }
    }
    img->dicom = di;
    di = NULL;
    *img_out = img;
out:
    free(di);
    free(px.data);
    return s;
}

/* ---- a series -------------------------------------------------------------------------------- */

static int cmp_dist(const void *a, const void *b) {
    double x = ((const dcm_file *)a)->dist, y = ((const dcm_file *)b)->dist;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static sarco_status read_series(sarco_context *ctx, const char *where, dcm_file *v, size_t n, sarco_image **out) {
    sarco_status s;
    if (n < 2)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                          "%s: the series has one slice (%s): not a volume; read the file for a 2D image", where, v[0].path);
    const dcm_file *f0 = &v[0];
    for (size_t i = 0; i < n; i++) {
        const dcm_file *f = &v[i];
        const sarco_dcm_header *h = &f->h;
        if ((s = check_header(ctx, f)) != SARCO_OK) return s;
        if (h->frames != 1)
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: %lld frames in a file of a series", f->path,
                              (long long)h->frames);
        if (h->spp != 1)
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: a colour slice (%s) in a series", f->path, h->photometric);
        if (!h->has_position || !h->has_orientation || !h->has_pixel_spacing)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: no %s: the slice cannot be placed", f->path,
                              !h->has_position ? "ImagePositionPatient" :
                              !h->has_orientation ? "ImageOrientationPatient" : "PixelSpacing");
        if (!(h->pixel_spacing[0] > 0 && h->pixel_spacing[1] > 0))
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: PixelSpacing %g\\%g", f->path, h->pixel_spacing[0],
                              h->pixel_spacing[1]);
        if ((s = check_orientation(ctx, f)) != SARCO_OK) return s;
        if (h->has_tilt && fabs(h->tilt) > 1e-3)
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                              "%s: gantry tilt of %g degrees: the slices are sheared; resample the series without tilt "
                              "(e.g. dcm2niix's tilt correction) first", f->path, h->tilt);
        if (h->rows != f0->h.rows || h->cols != f0->h.cols)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: %lld x %lld pixels, but %s has %lld x %lld", f->path,
                              (long long)h->rows, (long long)h->cols, f0->path, (long long)f0->h.rows,
                              (long long)f0->h.cols);
        for (int k = 0; k < 6; k++)
            if (fabs(h->orientation[k] - f0->h.orientation[k]) > ORIENT_TOL)
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: ImageOrientationPatient differs from %s's", f->path,
                                  f0->path);
        for (int k = 0; k < 2; k++)
            if (fabs(h->pixel_spacing[k] - f0->h.pixel_spacing[k]) > SPACING_REL * f0->h.pixel_spacing[k])
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: PixelSpacing %g\\%g differs from %s's %g\\%g", f->path,
                                  h->pixel_spacing[0], h->pixel_spacing[1], f0->path, f0->h.pixel_spacing[0],
                                  f0->h.pixel_spacing[1]);
    }
    const double *rdir = f0->h.orientation, *cdir = f0->h.orientation + 3;
    double nrm[3];
    cross(rdir, cdir, nrm);
    for (size_t i = 0; i < n; i++) v[i].dist = dot(v[i].h.position, nrm);
    qsort(v, n, sizeof *v, cmp_dist);
    f0 = &v[0];
    double *gaps = malloc((n - 1) * sizeof *gaps);
    if (!gaps) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", where);
    double largest = 0;
    size_t at = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        gaps[i] = v[i + 1].dist - v[i].dist;
        if (gaps[i] > largest) largest = gaps[i], at = i;
        if (gaps[i] < 1e-3) {
            free(gaps);
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                              "%s and %s: two slices at the same position (%g mm along the normal): several "
                              "acquisitions in one series?", v[i].path, v[i + 1].path, v[i].dist);
        }
    }
    double spacing = (v[n - 1].dist - v[0].dist) / (double)(n - 1);
    qsort(gaps, n - 1, sizeof *gaps, cmp_double);
    double median = gaps[(n - 1) / 2], smallest = gaps[0];
    free(gaps);
    double tol = fmax(GAP_ABS, GAP_REL * median);
    if (largest - median > tol || median - smallest > tol)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: uneven slices: the largest gap is %.4g mm (between %s and %s) and the smallest %.4g mm "
                          "where the usual spacing is %.4g mm (tolerance %.3g mm): missing slices?",
                          where, largest, v[at].path, v[at + 1].path, smallest, median, tol);
    /* every slice on the line through the first along the normal: else sheared (tilt) or curved */
    for (size_t i = 1; i < n; i++) {
        double d[3], off = 0;
        for (int a = 0; a < 3; a++) d[a] = v[i].h.position[a] - f0->h.position[a];
        double along = dot(d, nrm);
        for (int a = 0; a < 3; a++) off += (d[a] - along * nrm[a]) * (d[a] - along * nrm[a]);
        if (sqrt(off) > tol)
            return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                              "%s: slices are shifted %.3g mm within their plane (%s vs %s): gantry tilt or a sheared "
                              "series; resample it first", where, sqrt(off), v[i].path, f0->path);
    }
    int64_t rows = f0->h.rows, cols = f0->h.cols, dims[3] = {cols, rows, (int64_t)n};
    sarco_image *img;
    if ((s = sarco_image_alloc(ctx, 3, dims, 1, &img)) != SARCO_OK) return s;
    int scaled = 0;
    size_t plane = (size_t)(rows * cols);
    for (size_t i = 0; i < n && s == SARCO_OK; i++) {
        const sarco_dcm_header *h = &v[i].h;
        sarco_dcm_pixels px;
        if ((s = decode(ctx, &v[i], &px)) != SARCO_OK) break;
        px_view pv;
        if ((s = check_pixels(ctx, v[i].path, &px, &pv, h)) == SARCO_OK && px.spp != 1)
            s = sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: decodes to colour in a grey series", v[i].path);
        if (s == SARCO_OK) {
            int rescale = h->has_rescale && (h->slope != 1 || h->intercept != 0);
            scaled |= rescale;
            float *dst = img->data + i * plane;
            for (size_t k = 0; k < plane; k++) {
                double val = sample(&px, pv.bits_stored, k);
                dst[k] = (float)(rescale ? val * h->slope + h->intercept : val);
            }
        }
        free(px.data);
        if (s == SARCO_OK) s = sarco_progress(ctx, "dicom", (int64_t)i + 1, (int64_t)n);
    }
    sarco_dicom_info *di = s == SARCO_OK ? new_info(ctx, f0, (int64_t)n) : NULL;
    if (s != SARCO_OK || !di) {
        sarco_image_free(img);
        return s != SARCO_OK ? s : SARCO_ERR_OUT_OF_MEMORY;
    }
    di->slice_spacing = spacing;
    di->largest_gap = largest;
    di->gap_tolerance = tol;
    di->spacing_source = SARCO_DICOM_SPACING_PIXEL_SPACING;
    double col3[3] = {nrm[0] * spacing, nrm[1] * spacing, nrm[2] * spacing};
    set_affine(img, rdir, cdir, col3, f0->h.position, f0->h.pixel_spacing[1], f0->h.pixel_spacing[0]);
    img->spacing[0] = f0->h.pixel_spacing[1];
    img->spacing[1] = f0->h.pixel_spacing[0];
    img->spacing[2] = spacing;
    if (scaled) img->flags |= SARCO_IMAGE_SCALED;
    if (!strcmp(f0->h.photometric, "MONOCHROME1")) img->flags |= SARCO_IMAGE_DICOM_MONOCHROME1;
    img->dicom = di;
    *out = img;
    return SARCO_OK;
}

/* ---- entry ----------------------------------------------------------------------------------- */

/* Which series to read: series_uid, or the only one there is; otherwise a list of them. */
static sarco_status pick_series(sarco_context *ctx, const char *where, dcm_list *l, const char *uid, size_t *first,
                                size_t *count) {
    if (l->n == 0) /* IO, as any folder given where a file was expected */
        return sarco_fail(ctx, SARCO_ERR_IO, "%s: not a regular file, and a folder with no DICOM image (%zu other files)",
                          where, l->skipped);
    /* stable partition: the chosen series' files first, in walk order */
    const char *want = uid && *uid ? uid : l->v[0].h.series_uid;
    size_t k = 0;
    int several = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (!strcmp(l->v[i].h.series_uid, want)) {
            dcm_file t = l->v[i];
            memmove(&l->v[k + 1], &l->v[k], (i - k) * sizeof t);
            l->v[k++] = t;
        } else {
            several = 1;
        }
    }
    if (k == 0 || (several && !(uid && *uid))) {
        char list[4096] = "";
        size_t len = 0, shown = 0, total = 0;
        for (size_t i = 0; i < l->n; i++) {
            int seen = 0;
            for (size_t j = 0; j < i && !seen; j++) seen = !strcmp(l->v[j].h.series_uid, l->v[i].h.series_uid);
            if (seen) continue;
            size_t files = 0;
            for (size_t j = i; j < l->n; j++) files += !strcmp(l->v[j].h.series_uid, l->v[i].h.series_uid);
            total++;
            if (len < sizeof list - 200 && shown < 20) {
                len += (size_t)snprintf(list + len, sizeof list - len, "%s  %s \"%s\" (%zu files)", shown ? "\n" : "",
                                        l->v[i].h.series_uid[0] ? l->v[i].h.series_uid : "(no SeriesInstanceUID)",
                                        l->v[i].h.series_description, files);
                shown++;
            }
        }
        if (k == 0)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: no series %s here; the series are:\n%s", where, uid,
                              list);
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: %zu series; choose one with --series UID:\n%s%s", where,
                          total, list, shown < total ? "\n  ..." : "");
    }
    *first = 0;
    *count = k;
    return SARCO_OK;
}

sarco_status sarco_dicom_read(sarco_context *ctx, const char *path, const char *series_uid, sarco_read_mode mode,
                              sarco_image **img, sarco_picture **pic) {
    struct stat sb;
    if (stat(path, &sb) != 0) return sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    dcm_list l;
    memset(&l, 0, sizeof l);
    sarco_status s;
    if (S_ISDIR(sb.st_mode)) {
        if (mode != SARCO_READ_IMAGE) {
            return sarco_fail(ctx, SARCO_ERR_IO, "%s: not a regular file (a folder is read as a DICOM series by "
                                                 "sarco_image_read, not as a %s)", path,
                              mode == SARCO_READ_LABELS ? "label map" : "picture");
        }
        s = walk(ctx, &l, path, 0);
        size_t first = 0, count = 0;
        if (s == SARCO_OK) s = pick_series(ctx, path, &l, series_uid, &first, &count);
        if (s == SARCO_OK) s = read_series(ctx, path, l.v + first, count, img);
    } else {
        s = add_file(ctx, &l, path);
        if (s == SARCO_OK && l.n == 0)
            s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: %s", path,
                           l.skipped ? "not a DICOM image (no DICM magic, or no Rows/Columns)" : "not DICOM");
        if (s == SARCO_OK && series_uid && *series_uid && strcmp(series_uid, l.v[0].h.series_uid) != 0)
            s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: its series is %s, not %s", path, l.v[0].h.series_uid,
                           series_uid);
        if (s == SARCO_OK) s = read_file(ctx, &l.v[0], mode, img, pic);
    }
    list_free(&l);
    return s;
}
