/* The safetensors reader against the generated corpus (test/gen_bad_safetensors.py), exhaustive
 * half/bfloat16 conversion against an ldexp reference, robustness to truncation and byte flips,
 * and sarco_weights_check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/io/safetensors.h"
#include "testutil.h"

#define SDIR "test/data/safetensors/"

static void expect_msg(const char *what, const char *msg, const char *sub) {
    if (!strstr(msg, sub)) fail_msg("%s: message \"%s\" lacks \"%s\"", what, msg, sub);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Checks every tensor of a good file against expected.tsv. */
static void check_good(const char *file, const sarco_st_file *f, const tu_row *exp, size_t nexp) {
    size_t seen = 0;
    for (size_t i = 0; i < nexp; i++) {
        const tu_row *r = &exp[i];
        if (strcmp(r->f[0], file) != 0) continue;
        assert_int_equal(r->n, 5);
        seen++;
        const sarco_st_tensor *t = sarco_st_find(f, r->f[1]);
        if (!t) fail_msg("%s: tensor \"%s\" not found", file, r->f[1]);
        assert_string_equal(t->name, r->f[1]);
        assert_string_equal(sarco_st_dtype_name(t->dtype), r->f[2]);
        /* shape "2,3", "0", or "()" */
        int64_t shape[SARCO_ST_MAX_RANK];
        int nd = 0;
        if (strcmp(r->f[3], "()") != 0) {
            char tmp[128];
            snprintf(tmp, sizeof tmp, "%s", r->f[3]);
            for (char *c = tmp, *tok; (tok = strsep(&c, ",")) != NULL;) shape[nd++] = atoll(tok);
        }
        assert_int_equal(t->ndim, nd);
        int64_t numel = 1;
        for (int d = 0; d < nd; d++) {
            assert_int_equal(t->shape[d], shape[d]);
            numel *= shape[d];
        }
        assert_int_equal(t->numel, numel);
        float *v = malloc(sizeof(float) * (size_t)(numel + 1));
        assert_non_null(v);
        v[numel] = 12345.0f; /* guard: the converter writes numel values, no more */
        sarco_st_to_f32(f, t, v);
        assert_true(v[numel] == 12345.0f);
        int64_t k = 0;
        if (strcmp(r->f[4], "-") != 0) {
            char *vals = strdup(r->f[4]);
            for (char *c = vals, *tok; (tok = strsep(&c, ",")) != NULL; k++) {
                assert_true(k < numel);
                if (strcmp(tok, "nan") == 0) {
                    if (!isnan(v[k])) fail_msg("%s/%s[%lld]: expected NaN, got %g", file, t->name, (long long)k, v[k]);
                } else {
                    uint32_t want = (uint32_t)strtoul(tok, NULL, 16);
                    if (f32_bits(v[k]) != want)
                        fail_msg("%s/%s[%lld]: got 0x%08x (%g), expected 0x%08x", file, t->name, (long long)k,
                                 f32_bits(v[k]), v[k], want);
                }
            }
            free(vals);
        }
        assert_int_equal(k, numel);
        free(v);
    }
    assert_int_equal(seen, f->count);
    for (size_t i = 1; i < f->count; i++) assert_true(strcmp(f->tensors[i - 1].name, f->tensors[i].name) < 0);
}

static void test_manifest(void **state) {
    (void)state;
    size_t nman, nexp;
    char *k1, *k2;
    tu_row *man = tu_read_tsv(SDIR "manifest.tsv", &nman, &k1);
    tu_row *exp = tu_read_tsv(SDIR "expected.tsv", &nexp, &k2);
    assert_true(nman >= 60);
    sarco_context *ctx = tu_new_ctx(0);
    int ngood = 0, nbad = 0;
    for (size_t i = 0; i < nman; i++) {
        const tu_row *r = &man[i];
        assert_int_equal(r->n, 5);
        char path[512];
        snprintf(path, sizeof path, SDIR "%s", r->f[0]);
        sarco_status want = tu_status_named(r->f[1]);
        sarco_st_file *f = (sarco_st_file *)0x1;
        sarco_status s = sarco_st_open(ctx, path, &f);
        if (s != want)
            fail_msg("%s: status %s (%s), expected %s", r->f[0], sarco_status_string(s), sarco_last_error(ctx),
                     r->f[1]);
        if (want != SARCO_OK) {
            nbad++;
            assert_null(f);
            expect_msg(r->f[0], sarco_last_error(ctx), r->f[2]);
            expect_msg(r->f[0], sarco_last_error(ctx), path); /* names the file */
            /* the in-memory path says the same */
            size_t size;
            uint8_t *buf = tu_slurp(path, &size);
            sarco_st_file *g = (sarco_st_file *)0x1;
            assert_int_equal(sarco_st_parse(ctx, buf, size, "in-memory", &g), want);
            assert_null(g);
            expect_msg(r->f[0], sarco_last_error(ctx), r->f[2]);
            expect_msg(r->f[0], sarco_last_error(ctx), "in-memory");
            free(buf);
            continue;
        }
        ngood++;
        assert_non_null(f);
        assert_string_equal(f->path, path);
        assert_int_equal(f->nonfinite, atoll(r->f[3]));
        if (strcmp(r->f[4], "-") == 0)
            assert_null(f->first_nonfinite);
        else
            assert_string_equal(f->first_nonfinite, r->f[4]);
        check_good(r->f[0], f, exp, nexp);
        /* metadata is always a JSON object text */
        assert_non_null(f->metadata_json);
        assert_int_equal(f->metadata_json[0], '{');
        if (strcmp(r->f[0], "good_f32.safetensors") == 0) {
            assert_string_equal(f->config_json, "{\"arch\": \"test.none\", \"kwargs\": {}}");
            assert_non_null(strstr(f->metadata_json, "\"format\":\"pt\""));
        } else {
            assert_null(f->config_json);
        }
        sarco_st_close(f);
    }
    assert_true(ngood >= 10);
    assert_true(nbad >= 50);
    free(man);
    free(exp);
    free(k1);
    free(k2);
    sarco_context_free(ctx);
}

/* Unaligned data really is unaligned in that file (so the test means something). */
static void test_unaligned_is_unaligned(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_st_file *f = NULL;
    assert_int_equal(sarco_st_open(ctx, SDIR "good_unaligned.safetensors", &f), SARCO_OK);
    assert_int_equal(f->data_start % 8, 3);
    const sarco_st_tensor *t = sarco_st_find(f, "b_f32");
    assert_non_null(t);
    assert_int_not_equal((uintptr_t)(f->buf + f->data_start + t->begin) % 4, 0);
    sarco_st_close(f);
    sarco_context_free(ctx);
}

/* ---- half and bfloat16, exhaustively ---- */

/* The reference: value of an IEEE half / bfloat16 pattern by ldexp (exact in double). */
static double half_ref(uint16_t b) {
    int e = (b >> 10) & 31, m = b & 1023;
    double s = (b & 0x8000) ? -1.0 : 1.0;
    if (e == 0) return s * ldexp(m, -24);
    if (e == 31) return m ? NAN : s * INFINITY;
    return s * ldexp(1024 + m, e - 25);
}

static double bf16_ref(uint16_t b) {
    int e = (b >> 7) & 255, m = b & 127;
    double s = (b & 0x8000) ? -1.0 : 1.0;
    if (e == 0) return s * ldexp(m, -133);
    if (e == 255) return m ? NAN : s * INFINITY;
    return s * ldexp(128 + m, e - 134);
}

static void exhaustive(const char *dtype, double (*ref)(uint16_t), int64_t want_nonfinite) {
    sarco_context *ctx = tu_new_ctx(0);
    uint8_t *data = malloc(2 * 65536);
    assert_non_null(data);
    for (unsigned i = 0; i < 65536; i++) {
        data[2 * i] = (uint8_t)i;
        data[2 * i + 1] = (uint8_t)(i >> 8);
    }
    char header[128];
    snprintf(header, sizeof header, "{\"x\":{\"dtype\":\"%s\",\"shape\":[256,256],\"data_offsets\":[0,131072]}}",
             dtype);
    size_t size;
    uint8_t *file = tu_st_bytes(header, data, 2 * 65536, &size);
    sarco_st_file *f = NULL;
    assert_int_equal(sarco_st_parse(ctx, file, size, dtype, &f), SARCO_OK);
    assert_int_equal(f->nonfinite, want_nonfinite);
    assert_string_equal(f->first_nonfinite, "x");
    float *out = malloc(sizeof(float) * 65536);
    assert_non_null(out);
    sarco_st_to_f32(f, &f->tensors[0], out);
    int subnormals = 0;
    for (unsigned i = 0; i < 65536; i++) {
        double r = ref((uint16_t)i);
        if (isnan(r)) {
            if (!isnan(out[i])) fail_msg("%s 0x%04x: expected NaN, got %g", dtype, i, out[i]);
            assert_int_equal(!!signbit(out[i]), !!(i & 0x8000));
            continue;
        }
        if ((double)out[i] != r || (r == 0 && !!signbit(out[i]) != !!(i & 0x8000)))
            fail_msg("%s 0x%04x: got %a, expected %a", dtype, i, (double)out[i], r);
        if (r != 0 && fabs(r) < (strcmp(dtype, "F16") == 0 ? ldexp(1, -14) : ldexp(1, -126))) subnormals++;
    }
    assert_true(subnormals >= 2 * 127); /* the subnormal range was really covered */
    free(out);
    sarco_st_close(f);
    free(file);
    free(data);
    sarco_context_free(ctx);
}

static void test_f16_exhaustive(void **state) {
    (void)state;
    exhaustive("F16", half_ref, 2 * 1024); /* exponent 31: 2 signs x 1024 mantissas */
}

static void test_bf16_exhaustive(void **state) {
    (void)state;
    exhaustive("BF16", bf16_ref, 2 * 128);
}

/* ---- robustness ---- */

static const char *const fuzz_files[] = {"good_f32.safetensors", "good_unaligned.safetensors",
                                         "good_ints.safetensors", "good_empty.safetensors",
                                         "good_nonfinite.safetensors", "good_many.safetensors", NULL};

/* Returns the status; on success every tensor must convert without touching memory outside. */
static sarco_status parse_and_touch(sarco_context *ctx, const uint8_t *buf, size_t n) {
    sarco_st_file *f = (sarco_st_file *)0x1;
    sarco_status s = sarco_st_parse(ctx, buf, n, "fuzz", &f);
    if (s != SARCO_OK) {
        assert_null(f);
        assert_true(sarco_last_error(ctx)[0] != '\0');
        assert_true(strcmp(sarco_status_string(s), "unknown status") != 0);
        return s;
    }
    assert_non_null(f);
    for (size_t i = 0; i < f->count; i++) {
        const sarco_st_tensor *t = &f->tensors[i];
        assert_true(t->end <= f->size - f->data_start);
        float *v = malloc(sizeof(float) * (size_t)(t->numel + 1));
        assert_non_null(v);
        sarco_st_to_f32(f, t, v);
        free(v);
        assert_ptr_equal(sarco_st_find(f, t->name), t);
    }
    sarco_st_close(f);
    return s;
}

static void test_truncations(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    size_t total = 0;
    for (int k = 0; fuzz_files[k]; k++) {
        char path[256];
        snprintf(path, sizeof path, SDIR "%s", fuzz_files[k]);
        size_t size;
        uint8_t *buf = tu_slurp(path, &size);
        assert_int_equal(parse_and_touch(ctx, buf, size), SARCO_OK);
        for (size_t n = 0; n < size; n++) {
            /* a copy of exactly n bytes, so ASan sees any read past it */
            uint8_t *cut = malloc(n ? n : 1);
            memcpy(cut, buf, n);
            sarco_status s = parse_and_touch(ctx, cut, n);
            if (s == SARCO_OK) fail_msg("%s truncated to %zu of %zu bytes was accepted", fuzz_files[k], n, size);
            free(cut);
            total++;
        }
        free(buf);
    }
    print_message("truncations tried: %zu, all refused\n", total);
    sarco_context_free(ctx);
}

static uint64_t rng_next(uint64_t *s) {
    /* xorshift64*: seeded, reproducible */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void test_byte_flips(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    uint64_t seed = 0x5a4c0u ^ 0x9e3779b97f4a7c15ull;
    int ok = 0, refused = 0;
    for (int k = 0; fuzz_files[k]; k++) {
        char path[256];
        snprintf(path, sizeof path, SDIR "%s", fuzz_files[k]);
        size_t size;
        uint8_t *buf = tu_slurp(path, &size);
        size_t hend = 8;
        for (int i = 0; i < 8; i++) hend += (size_t)buf[i] << (8 * i);
        uint8_t *m = malloc(size);
        for (int it = 0; it < 120; it++) {
            memcpy(m, buf, size);
            int flips = 1 + (int)(rng_next(&seed) % 4);
            for (int j = 0; j < flips; j++) {
                uint64_t r = rng_next(&seed);
                /* a third of the runs damage only the data (they must parse), the rest the header */
                size_t pos = (it % 3 == 0 && size > hend) ? hend + (size_t)((r >> 8) % (size - hend))
                                                          : (size_t)((r >> 8) % hend);
                uint8_t x = (uint8_t)(r >> 40);
                if (r & (1ull << 62)) x = (uint8_t)(1u << ((r >> 48) % 8)); /* single bit */
                m[pos] ^= x ? x : 1;
            }
            if (parse_and_touch(ctx, m, size) == SARCO_OK)
                ok++;
            else
                refused++;
        }
        free(m);
        free(buf);
    }
    print_message("byte flips: %d parsed, %d refused\n", ok, refused);
    assert_true(refused > 100); /* most header damage must be caught */
    assert_true(ok >= 6 * 40);  /* damaged values are still values */
    assert_true(ok + refused == 6 * 120);
    sarco_context_free(ctx);
}

/* ---- open() failures ---- */

static void test_open_errors(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_st_file *f = (sarco_st_file *)0x1;
    assert_int_equal(sarco_st_open(ctx, SDIR "no_such_file.safetensors", &f), SARCO_ERR_IO);
    assert_null(f);
    expect_msg("missing", sarco_last_error(ctx), SDIR "no_such_file.safetensors");
    expect_msg("missing", sarco_last_error(ctx), "cannot open");

    f = (sarco_st_file *)0x1;
    assert_int_equal(sarco_st_open(ctx, SDIR, &f), SARCO_ERR_IO);
    assert_null(f);
    expect_msg("directory", sarco_last_error(ctx), "not a regular file");

    assert_int_equal(sarco_st_open(ctx, NULL, &f), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_st_open(ctx, SDIR "good_f32.safetensors", NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_st_parse(ctx, NULL, 4, "x", &f), SARCO_ERR_INVALID_ARGUMENT);

    /* a sparse file past 16 GiB is refused before anything is read or allocated */
    char dir[] = "/tmp/sarco_st_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char big[64];
    snprintf(big, sizeof big, "%s/big.safetensors", dir);
    int fd = open(big, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    if (ftruncate(fd, (off_t)(17ll << 30)) == 0) {
        close(fd);
        f = (sarco_st_file *)0x1;
        assert_int_equal(sarco_st_open(ctx, big, &f), SARCO_ERR_LIMIT);
        assert_null(f);
        expect_msg("big", sarco_last_error(ctx), "16 GiB");
        expect_msg("big", sarco_last_error(ctx), big);
    } else {
        close(fd);
        print_message("SKIP sparse 17 GiB file: ftruncate refused\n");
    }
    unlink(big);
    /* a FIFO: refused at once, not read forever */
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/fifo.safetensors", dir);
    if (mkfifo(fifo, 0600) == 0) {
        f = (sarco_st_file *)0x1;
        assert_int_equal(sarco_st_open(ctx, fifo, &f), SARCO_ERR_IO);
        assert_null(f);
        expect_msg("fifo", sarco_last_error(ctx), "not a regular file");
        unlink(fifo);
    }
    rmdir(dir);
    sarco_context_free(ctx);

    /* the context's memory limit covers the file buffer */
    ctx = tu_new_ctx(64);
    f = (sarco_st_file *)0x1;
    assert_int_equal(sarco_st_open(ctx, SDIR "good_f32.safetensors", &f), SARCO_ERR_OUT_OF_MEMORY);
    assert_null(f);
    expect_msg("limit", sarco_last_error(ctx), "memory limit of 64");
    sarco_context_free(ctx);
}

static void test_misc(void **state) {
    (void)state;
    sarco_st_close(NULL);
    assert_null(sarco_st_find(NULL, "x"));
    const char *names[] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"};
    for (int d = 0; d < SARCO_ST_DTYPE_COUNT; d++) assert_string_equal(sarco_st_dtype_name((sarco_st_dtype)d), names[d]);
    assert_string_equal(sarco_st_dtype_name(SARCO_ST_DTYPE_COUNT), "?");
    sarco_context *ctx = tu_new_ctx(0);
    sarco_st_file *f = NULL;
    assert_int_equal(sarco_st_open(ctx, SDIR "good_many.safetensors", &f), SARCO_OK);
    assert_int_equal(f->count, 24);
    assert_null(sarco_st_find(f, "t24"));
    assert_null(sarco_st_find(f, ""));
    assert_string_equal(sarco_st_find(f, "t00")->name, "t00");
    assert_string_equal(sarco_st_find(f, "t23")->name, "t23");
    sarco_st_close(f);
    sarco_context_free(ctx);
}

/* ---- sarco_weights_check ---- */

static sarco_st_file *weights_file(sarco_context *ctx) {
    static const char header[] =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
        "\"blk.0.cross_attn.w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[32,36]},"
        "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[36,40]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[40,40]}}";
    uint8_t data[40] = {0};
    size_t size;
    uint8_t *b = tu_st_bytes(header, data, sizeof data, &size);
    sarco_st_file *f = NULL;
    assert_int_equal(sarco_st_parse(ctx, b, size, "weights.safetensors", &f), SARCO_OK);
    free(b);
    return f;
}

static void full_list(sarco_wlist *l) {
    sarco_wlist_add(l, SARCO_SHAPE(2, 3), "%s", "a");
    sarco_wlist_add(l, SARCO_SHAPE(4), "b");
    sarco_wlist_add(l, NULL, 0, "s");
    sarco_wlist_add(l, SARCO_SHAPE(0, 5), "%c", 'e');
}

static void test_weights_check(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_st_file *f = weights_file(ctx);
    const char *const ign[] = {"*.cross_attn.*", NULL};
    const char *const ign_other[] = {"*.norm_cross_attn.*", "x*", NULL};
    sarco_wlist l = {0};

    /* everything listed, the unused one ignored by a glob */
    full_list(&l);
    assert_int_equal(l.count, 4);
    assert_int_equal(sarco_weights_check(ctx, f, &l, ign), SARCO_OK);
    /* ... and the same without the glob: one unexpected tensor */
    assert_int_equal(sarco_weights_check(ctx, f, &l, NULL), SARCO_ERR_BAD_FORMAT);
    expect_msg("extra", sarco_last_error(ctx), "unexpected tensor \"blk.0.cross_attn.w\" (1)");
    expect_msg("extra", sarco_last_error(ctx), "1 problem in all (0 missing, 0 mis-shaped, 1 unexpected)");
    assert_int_equal(sarco_weights_check(ctx, f, &l, ign_other), SARCO_ERR_BAD_FORMAT);
    /* listing it also works */
    sarco_wlist_add(&l, SARCO_SHAPE(1), "blk.%d.cross_attn.w", 0);
    assert_int_equal(sarco_weights_check(ctx, f, &l, NULL), SARCO_OK);
    sarco_wlist_free(&l);
    assert_null(l.items);
    assert_int_equal(l.count, 0);

    /* missing */
    full_list(&l);
    sarco_wlist_add(&l, SARCO_SHAPE(768, 1, 16, 16, 16), "vit.patch_embedding.%s.weight", "patch_embeddings");
    assert_int_equal(sarco_weights_check(ctx, f, &l, ign), SARCO_ERR_BAD_FORMAT);
    expect_msg("missing", sarco_last_error(ctx),
               "tensor \"vit.patch_embedding.patch_embeddings.weight\" is missing (expected shape (768, 1, 16, 16, 16))");
    expect_msg("missing", sarco_last_error(ctx), "1 problem in all (1 missing, 0 mis-shaped, 0 unexpected)");
    sarco_wlist_free(&l);

    /* mis-shaped: transposed, a scalar versus (1), an extra axis */
    const struct {
        const char *name;
        int ndim;
        int64_t shape[3];
        const char *msg;
    } mis[] = {{"a", 2, {3, 2}, "tensor \"a\" has shape (2, 3), expected (3, 2)"},
               {"s", 1, {1}, "tensor \"s\" has shape (), expected (1)"},
               {"b", 2, {4, 1}, "tensor \"b\" has shape (4), expected (4, 1)"}};
    for (int i = 0; i < 3; i++) {
        sarco_wlist_add(&l, mis[i].shape, mis[i].ndim, "%s", mis[i].name);
        if (strcmp(mis[i].name, "a")) sarco_wlist_add(&l, SARCO_SHAPE(2, 3), "a");
        if (strcmp(mis[i].name, "b")) sarco_wlist_add(&l, SARCO_SHAPE(4), "b");
        if (strcmp(mis[i].name, "s")) sarco_wlist_add(&l, NULL, 0, "s");
        sarco_wlist_add(&l, SARCO_SHAPE(0, 5), "e");
        assert_int_equal(sarco_weights_check(ctx, f, &l, ign), SARCO_ERR_BAD_FORMAT);
        expect_msg("mis-shaped", sarco_last_error(ctx), mis[i].msg);
        expect_msg("mis-shaped", sarco_last_error(ctx), "(0 missing, 1 mis-shaped, 0 unexpected)");
        sarco_wlist_free(&l);
    }

    /* several problems: the first is named, all are counted */
    sarco_wlist_add(&l, SARCO_SHAPE(2, 2), "a");   /* mis-shaped */
    sarco_wlist_add(&l, SARCO_SHAPE(7), "gone.1"); /* missing */
    sarco_wlist_add(&l, SARCO_SHAPE(7), "gone.2"); /* missing */
    sarco_wlist_add(&l, NULL, 0, "s");             /* fine; b and e unexpected */
    assert_int_equal(sarco_weights_check(ctx, f, &l, ign), SARCO_ERR_BAD_FORMAT);
    expect_msg("several", sarco_last_error(ctx), "tensor \"a\" has shape (2, 3), expected (2, 2)");
    expect_msg("several", sarco_last_error(ctx), "5 problems in all (2 missing, 1 mis-shaped, 2 unexpected)");
    sarco_wlist_free(&l);

    /* the list grows past its first capacity; a bad entry is the model's bug, reported */
    for (int i = 0; i < 300; i++) sarco_wlist_add(&l, SARCO_SHAPE(1), "x.%d", i);
    assert_int_equal(l.count, 300);
    assert_int_equal(l.oom, 0);
    assert_int_equal(sarco_weights_check(ctx, f, &l, NULL), SARCO_ERR_BAD_FORMAT);
    expect_msg("300", sarco_last_error(ctx), "tensor \"x.0\" is missing");
    expect_msg("300", sarco_last_error(ctx), "305 problems in all (300 missing, 0 mis-shaped, 5 unexpected)");
    sarco_wlist_free(&l);
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    full_list(&l);
    sarco_wlist_add(&l, SARCO_SHAPE(1), "%s", longname);
    assert_int_equal(sarco_weights_check(ctx, f, &l, ign), SARCO_ERR_INTERNAL);
    expect_msg("long", sarco_last_error(ctx), "bad entry");
    sarco_wlist_free(&l);
    sarco_wlist_add(&l, (const int64_t[9]){1, 1, 1, 1, 1, 1, 1, 1, 1}, 9, "r9");
    assert_int_equal(sarco_weights_check(ctx, f, &l, ign), SARCO_ERR_INTERNAL);
    sarco_wlist_free(&l);
    sarco_wlist_free(NULL);
    assert_int_equal(sarco_weights_check(ctx, NULL, &l, NULL), SARCO_ERR_INVALID_ARGUMENT);

    sarco_st_close(f);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest),        cmocka_unit_test(test_unaligned_is_unaligned),
        cmocka_unit_test(test_f16_exhaustive),  cmocka_unit_test(test_bf16_exhaustive),
        cmocka_unit_test(test_truncations),     cmocka_unit_test(test_byte_flips),
        cmocka_unit_test(test_open_errors),     cmocka_unit_test(test_misc),
        cmocka_unit_test(test_weights_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
