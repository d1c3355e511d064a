/* Helpers shared by the C tests (cmocka): CPU contexts, whole files in and out, the generated
 * corpora's TSV tables and status names, temporary directories, little-endian decoding, a log
 * collector, an in-memory safetensors file and a small .npy reader. All static inline and prefixed
 * tu_, so a test takes what it uses and keeps its own names free. */
#ifndef SARCO_TEST_TESTUTIL_H
#define SARCO_TEST_TESTUTIL_H

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sarco/sarco.h"

/* ---- contexts ---- */

/* A CPU context with a memory limit (0: none); on failure the reason is in msg. */
static inline sarco_status tu_context_create(size_t memory_limit, sarco_context **ctx, char *msg, size_t n) {
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.memory_limit = memory_limit;
    *ctx = NULL;
    return sarco_context_create_ex(&o, ctx, msg, n);
}

static inline sarco_context *tu_new_ctx(size_t memory_limit) {
    sarco_context *ctx = NULL;
    char msg[256];
    if (tu_context_create(memory_limit, &ctx, msg, sizeof msg) != SARCO_OK) fail_msg("context: %s", msg);
    return ctx;
}

/* Collects the WARN and ERROR messages of a context, one a line. */
typedef struct tu_logbuf {
    char text[8192];
} tu_logbuf;

static inline void tu_log_cb(void *user, sarco_log_level level, const char *msg) {
    tu_logbuf *b = user;
    if (level <= SARCO_LOG_WARN) {
        strncat(b->text, msg, sizeof b->text - strlen(b->text) - 2);
        strcat(b->text, "\n");
    }
}

/* A CPU context that logs into lb. */
static inline sarco_context *tu_new_logged_ctx(tu_logbuf *lb) {
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.log = tu_log_cb;
    o.log_user = lb;
    sarco_context *ctx = NULL;
    assert_int_equal(sarco_context_create(&o, &ctx), SARCO_OK);
    return ctx;
}

/* ---- files ---- */

/* The whole file, malloc'ed with a NUL after its last byte. */
static inline uint8_t *tu_slurp(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s (run the test from the repository root)", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    buf[n] = 0;
    *size = (size_t)n;
    return buf;
}

static inline void tu_spit(const char *path, const void *b, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static inline uint16_t tu_le_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static inline float tu_le_f32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

/* A safetensors file in memory: 8-byte little-endian header length, header, data. */
static inline uint8_t *tu_st_bytes(const char *header, const void *data, size_t ndata, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + ndata;
    uint8_t *b = malloc(*size);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    if (ndata) memcpy(b + 8 + h, data, ndata);
    return b;
}

/* ---- the corpora's tables (manifest.tsv, expected.tsv) ---- */

#define TU_MAXF 24
typedef struct tu_row {
    char *f[TU_MAXF];
    int n;
} tu_row;

/* Tab-separated rows, blank and '#' lines skipped; the fields point into *keep (free both). */
static inline tu_row *tu_read_tsv(const char *path, size_t *count, char **keep) {
    size_t size, n = 0, cap = 64;
    char *text = (char *)tu_slurp(path, &size);
    tu_row *rows = calloc(cap, sizeof *rows);
    assert_non_null(rows);
    char *save = text, *line;
    while ((line = strsep(&save, "\n")) != NULL) {
        if (!*line || *line == '#') continue;
        if (n == cap) {
            rows = realloc(rows, 2 * cap * sizeof *rows);
            assert_non_null(rows);
            memset(rows + cap, 0, cap * sizeof *rows);
            cap *= 2;
        }
        tu_row *r = &rows[n++];
        char *cur = line, *field;
        while ((field = strsep(&cur, "\t")) != NULL && r->n < TU_MAXF) r->f[r->n++] = field;
    }
    *count = n;
    *keep = text;
    return rows;
}

static inline sarco_status tu_status_named(const char *name) {
    static const struct {
        const char *name;
        sarco_status s;
    } t[] = {{"SARCO_OK", SARCO_OK},
             {"SARCO_ERR_INVALID_ARGUMENT", SARCO_ERR_INVALID_ARGUMENT},
             {"SARCO_ERR_OUT_OF_MEMORY", SARCO_ERR_OUT_OF_MEMORY},
             {"SARCO_ERR_IO", SARCO_ERR_IO},
             {"SARCO_ERR_BAD_FORMAT", SARCO_ERR_BAD_FORMAT},
             {"SARCO_ERR_UNSUPPORTED", SARCO_ERR_UNSUPPORTED},
             {"SARCO_ERR_LIMIT", SARCO_ERR_LIMIT}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].name, name) == 0) return t[i].s;
    fail_msg("manifest: unknown status %s", name);
    return SARCO_ERR_INTERNAL;
}

/* Reads every file of an image corpus' manifest (file, "image" or "labels", status name, part of the
 * message) from dir and returns the number of mismatches, each printed: a wrong status, a message
 * without its part, or a failed read that still returned something. */
static inline int tu_image_manifest_errors(sarco_context *ctx, const char *dir, const tu_row *rows, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s%s", dir, rows[i].f[0]);
        sarco_status want = tu_status_named(rows[i].f[2]);
        sarco_image *img = NULL;
        uint16_t *labels = NULL;
        sarco_status got = strcmp(rows[i].f[1], "labels") == 0 ? sarco_labels_read(ctx, path, &labels, &img)
                                                               : sarco_image_read(ctx, path, &img);
        if (got != want) {
            print_error("%s: status %s, expected %s (%s)\n", rows[i].f[0], sarco_status_string(got),
                        sarco_status_string(want), sarco_last_error(ctx));
            bad++;
        } else if (want != SARCO_OK) {
            if (!strstr(sarco_last_error(ctx), rows[i].f[3])) {
                print_error("%s: message \"%s\" lacks \"%s\"\n", rows[i].f[0], sarco_last_error(ctx), rows[i].f[3]);
                bad++;
            }
            if (img || labels) {
                print_error("%s: failed but returned something\n", rows[i].f[0]);
                bad++;
            }
        }
        sarco_image_free(img);
        sarco_labels_free(labels);
    }
    return bad;
}

/* ---- temporary directories ---- */

/* A new directory <tmpfs, else /tmp>/sarco-test-<name>-XXXXXX in dir (tmpfs: the writers fsync);
 * 0, or -1 when it cannot be made. */
static inline int tu_tmpdir(char *dir, size_t n, const char *name) {
    struct stat sb;
    const char *base =
        stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    int len = snprintf(dir, n, "%s/sarco-test-%s-XXXXXX", base, name);
    if (len < 0 || (size_t)len >= n) return -1;
    return mkdtemp(dir) ? 0 : -1;
}

/* Removes everything inside dir (not dir itself). */
static inline void tu_clear_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        int len = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (len < 0 || (size_t)len >= sizeof p) continue;
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            tu_clear_dir(p);
            rmdir(p);
        } else {
            unlink(p);
        }
    }
    closedir(d);
}

/* dir and all it holds; 0 when it is gone. */
static inline int tu_remove_tree(const char *dir) {
    tu_clear_dir(dir);
    return rmdir(dir);
}

/* For a group setup: a temporary directory and a CPU context; 0, or -1 with the reason on stderr. */
static inline int tu_dir_and_ctx(const char *name, char *dir, size_t n, sarco_context **ctx) {
    if (tu_tmpdir(dir, n, name) != 0) {
        fprintf(stderr, "cannot make a temporary directory for %s\n", name);
        return -1;
    }
    char msg[256];
    if (tu_context_create(0, ctx, msg, sizeof msg) != SARCO_OK) {
        fprintf(stderr, "context: %s\n", msg);
        return -1;
    }
    return 0;
}

static inline void tu_dir_and_ctx_free(const char *dir, sarco_context *ctx) {
    if (tu_remove_tree(dir) != 0) fprintf(stderr, "could not remove %s\n", dir);
    sarco_context_free(ctx);
}

/* ---- .npy ---- */

/* Loads an .npy file (version 1, C order) of dtype descr ("|u1", "<u2", "<i2", "<f4", "<i8", "<f8":
 * the digits are the element size) with up to max_dims dimensions; returns malloc'ed data with the
 * shape in dims, or NULL with the reason on stderr. */
static inline void *tu_npy_read(const char *path, const char *descr, int max_dims, int *ndim, int64_t *dims) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s (run from the repository root)\n", path);
        return NULL;
    }
    unsigned char pre[10];
    void *data = NULL;
    char hdr[1024];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1) goto out;
    size_t hl = (size_t)pre[8] | ((size_t)pre[9] << 8);
    if (hl >= sizeof hdr || fread(hdr, 1, hl, f) != hl) goto out;
    hdr[hl] = '\0';
    char want[64];
    snprintf(want, sizeof want, "'descr': '%s'", descr);
    if (!strstr(hdr, want) || !strstr(hdr, "'fortran_order': False")) goto out;
    const char *sh = strstr(hdr, "'shape': (");
    if (!sh) goto out;
    sh += strlen("'shape': (");
    *ndim = 0;
    size_t n = 1;
    while (*sh && *sh != ')' && *ndim < max_dims) {
        char *end;
        long long v = strtoll(sh, &end, 10);
        if (end == sh) break;
        dims[(*ndim)++] = v;
        n *= (size_t)v;
        sh = end;
        while (*sh == ',' || *sh == ' ') sh++;
    }
    size_t es = (size_t)atoi(descr + 2);
    if (es == 0) goto out;
    data = malloc(n * es);
    if (data && fread(data, es, n, f) != n) {
        free(data);
        data = NULL;
    }
out:
    fclose(f);
    if (!data) fprintf(stderr, "%s: not a readable %s .npy array\n", path, descr);
    return data;
}

#endif
