/* Safetensors model files: a validated reader and the weight checks models run before loading.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the data section.
 * Every rule of REFERENCE.md "Bad input" is checked here; nothing is handed out before the whole
 * header has been validated, and a failure leaves nothing allocated. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

#define ST_MAX_HEADER 100000000ull   /* 100 MB, the safetensors reference implementation's cap */
#define ST_MAX_FILE (16ull << 30)     /* 16 GiB: no model we run is near this */
#define ST_MAX_INT (1ull << 53)       /* offsets and element counts must survive a trip through a double */

static const struct {
    const char *name;
    size_t size;
} dtypes[SARCO_ST_DTYPE_COUNT] = {
    [SARCO_ST_F64] = {"F64", 8}, [SARCO_ST_F32] = {"F32", 4}, [SARCO_ST_F16] = {"F16", 2},
    [SARCO_ST_BF16] = {"BF16", 2}, [SARCO_ST_I64] = {"I64", 8}, [SARCO_ST_I32] = {"I32", 4},
    [SARCO_ST_I16] = {"I16", 2}, [SARCO_ST_I8] = {"I8", 1}, [SARCO_ST_U8] = {"U8", 1},
    [SARCO_ST_BOOL] = {"BOOL", 1},
};

#define DTYPE_LIST "F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL"

/* Valid safetensors dtypes that we do not read: UNSUPPORTED rather than BAD_FORMAT. */
static const char *const other_dtypes[] = {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
                                           "F6_E3M2", "F4", "C64", NULL};

const char *sarco_st_dtype_name(sarco_st_dtype d) {
    return (unsigned)d < SARCO_ST_DTYPE_COUNT ? dtypes[d].name : "?";
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16 -> binary32, exact (every half is a float): subnormals renormalised, inf/NaN kept
 * with their payload (the quiet bit 9 lands on float's quiet bit 22). */
static uint32_t half_bits_to_f32_bits(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return sign;
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        return sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    if (exp == 31) return sign | 0x7f800000u | (man << 13);
    return sign | ((exp + 112u) << 23) | (man << 13);
}

const float *sarco_st_f32_view(const sarco_st_file *f, const sarco_st_tensor *t) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (!f || !t || t->dtype != SARCO_ST_F32) return NULL;
    const uint8_t *p = f->buf + f->data_start + t->begin;
    return ((uintptr_t)p % _Alignof(float)) == 0 ? (const float *)(const void *)p : NULL;
#else
    (void)f;
    (void)t;
    return NULL;
#endif
}

void sarco_st_to_f32(const sarco_st_file *f, const sarco_st_tensor *t, float *out) {
    if (!f || !t || !out) return;
    const uint8_t *p = f->buf + f->data_start + t->begin;
    int64_t n = t->numel;
    switch (t->dtype) {
    case SARCO_ST_F64:
        for (int64_t i = 0; i < n; i++) {
            uint64_t u = le64(p + 8 * i);
            double d;
            memcpy(&d, &u, sizeof d);
            out[i] = (float)d;
        }
        break;
    case SARCO_ST_F32:
        for (int64_t i = 0; i < n; i++) out[i] = bits_f32(le32(p + 4 * i));
        break;
    case SARCO_ST_F16:
        for (int64_t i = 0; i < n; i++) out[i] = bits_f32(half_bits_to_f32_bits(le16(p + 2 * i)));
        break;
    case SARCO_ST_BF16:
        for (int64_t i = 0; i < n; i++) out[i] = bits_f32((uint32_t)le16(p + 2 * i) << 16);
        break;
    case SARCO_ST_I64:
        for (int64_t i = 0; i < n; i++) out[i] = (float)(int64_t)le64(p + 8 * i);
        break;
    case SARCO_ST_I32:
        for (int64_t i = 0; i < n; i++) out[i] = (float)(int32_t)le32(p + 4 * i);
        break;
    case SARCO_ST_I16:
        for (int64_t i = 0; i < n; i++) out[i] = (float)(int16_t)le16(p + 2 * i);
        break;
    case SARCO_ST_I8:
        for (int64_t i = 0; i < n; i++) out[i] = (float)(int8_t)p[i];
        break;
    case SARCO_ST_U8:
        for (int64_t i = 0; i < n; i++) out[i] = (float)p[i];
        break;
    case SARCO_ST_BOOL:
        for (int64_t i = 0; i < n; i++) out[i] = p[i] ? 1.0f : 0.0f;
        break;
    case SARCO_ST_DTYPE_COUNT:
        break;
    }
}

/* NaN/Inf values of one floating tensor, from the exponent bits (no float loads). The F32 case is
 * the whole of most models: on a little-endian host with aligned data it reads 4-byte words, which
 * the compiler vectorises, split across threads (a 370 MB UNETR scans in ~20 ms instead of 160). */
static int64_t count_nonfinite(const sarco_st_file *f, const sarco_st_tensor *t) {
    const uint8_t *p = f->buf + f->data_start + t->begin;
    int64_t c = 0;
    switch (t->dtype) {
    case SARCO_ST_F64:
        for (int64_t i = 0; i < t->numel; i++) c += (le64(p + 8 * i) & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
        break;
    case SARCO_ST_F32: {
        const float *v = sarco_st_f32_view(f, t);
        if (v) {
            const uint32_t *u = (const uint32_t *)(const void *)v;
            int64_t n = t->numel;
#pragma omp parallel for reduction(+ : c) schedule(static) if (n > (1 << 20))
            for (int64_t i = 0; i < n; i++) c += (u[i] & 0x7f800000u) == 0x7f800000u;
        } else {
            for (int64_t i = 0; i < t->numel; i++) c += (le32(p + 4 * i) & 0x7f800000u) == 0x7f800000u;
        }
        break;
    }
    case SARCO_ST_F16:
        for (int64_t i = 0; i < t->numel; i++) c += (le16(p + 2 * i) & 0x7c00u) == 0x7c00u;
        break;
    case SARCO_ST_BF16:
        for (int64_t i = 0; i < t->numel; i++) c += (le16(p + 2 * i) & 0x7f80u) == 0x7f80u;
        break;
    default:
        break;
    }
    return c;
}

void sarco_st_close(sarco_st_file *f) {
    if (!f) return;
    if (f->tensors)
        for (size_t i = 0; i < f->count; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    free(f->metadata_json);
    free(f->config_json);
    free(f->first_nonfinite);
    free(f->path);
    if (f->mapped)
        munmap(f->buf, f->size);
    else
        free(f->buf);
    free(f);
}

static int cmp_name_key(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const sarco_st_tensor *)elem)->name);
}

const sarco_st_tensor *sarco_st_find(const sarco_st_file *f, const char *name) {
    if (!f || !name || !f->count) return NULL;
    return bsearch(name, f->tensors, f->count, sizeof *f->tensors, cmp_name_key);
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const sarco_st_tensor *)a)->name, ((const sarco_st_tensor *)b)->name);
}

static int cmp_by_offset(const void *a, const void *b) {
    const sarco_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static const char *json_kind(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}

/* "(768, 1, 16)" or "()" for a scalar. */
static void fmt_shape(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, ")");
}

/* An offset: an integer in [0, 2^53]. Describes what it found otherwise. */
static int get_offset(const json_t *j, uint64_t *out, char *what, size_t n) {
    if (!json_is_integer(j)) {
        snprintf(what, n, "a JSON %s", j ? json_kind(j) : "nothing");
        return 0;
    }
    json_int_t v = json_integer_value(j);
    if (v < 0 || (unsigned long long)v > ST_MAX_INT) {
        snprintf(what, n, "%lld", (long long)v);
        return 0;
    }
    *out = (uint64_t)v;
    return 1;
}

static sarco_status parse_tensor(sarco_context *ctx, const char *file, const char *name, json_t *v,
                                 sarco_st_tensor *t) {
    if (!json_is_object(v))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: tensor \"%.200s\": expected an object with dtype, shape and data_offsets, found a "
                          "JSON %s", file, name, json_kind(v));
    const char *field;
    json_t *fv;
    json_object_foreach(v, field, fv) {
        if (strcmp(field, "dtype") && strcmp(field, "shape") && strcmp(field, "data_offsets"))
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: tensor \"%.200s\": unknown field \"%.100s\"", file,
                              name, field);
    }

    const char *dt = json_string_value(json_object_get(v, "dtype"));
    if (!dt)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: tensor \"%.200s\": \"dtype\" is missing or not a string",
                          file, name);
    int d = -1;
    for (int i = 0; i < SARCO_ST_DTYPE_COUNT; i++)
        if (strcmp(dt, dtypes[i].name) == 0) d = i;
    if (d < 0) {
        for (size_t i = 0; other_dtypes[i]; i++)
            if (strcmp(dt, other_dtypes[i]) == 0)
                return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                                  "%s: tensor \"%.200s\": dtype %s is not supported (supported: " DTYPE_LIST ")",
                                  file, name, dt);
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: tensor \"%.200s\": unknown dtype \"%.40s\" (expected one of " DTYPE_LIST ")", file,
                          name, dt);
    }
    t->dtype = (sarco_st_dtype)d;

    json_t *shape = json_object_get(v, "shape");
    if (!json_is_array(shape))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: tensor \"%.200s\": \"shape\" is missing or not an array",
                          file, name);
    size_t rank = json_array_size(shape);
    if (rank > SARCO_ST_MAX_RANK)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: tensor \"%.200s\": rank %zu is above the supported %d",
                          file, name, rank, SARCO_ST_MAX_RANK);
    t->ndim = (int)rank;
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < rank; i++) {
        json_t *e = json_array_get(shape, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0) {
            char what[64];
            if (json_is_integer(e))
                snprintf(what, sizeof what, "%lld", (long long)json_integer_value(e));
            else
                snprintf(what, sizeof what, "a JSON %s", json_kind(e));
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                              "%s: tensor \"%.200s\": shape[%zu] is %s, expected a non-negative integer", file, name,
                              i, what);
        }
        uint64_t dim = (uint64_t)json_integer_value(e);
        t->shape[i] = (int64_t)dim;
        if (dim > ST_MAX_INT || (dim && numel > ST_MAX_INT / dim))
            overflow = 1; /* keep reading: a later 0 does not excuse an absurd dim */
        else
            numel *= dim;
    }
    char sh[160];
    fmt_shape(sh, sizeof sh, t->shape, t->ndim);
    if (overflow)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: tensor \"%.200s\": shape %s overflows (more than 2^53 elements)", file, name, sh);
    t->numel = (int64_t)numel;

    json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: tensor \"%.200s\": \"data_offsets\" must be an array of 2 integers", file, name);
    uint64_t be[2];
    for (int i = 0; i < 2; i++) {
        char what[64];
        if (!get_offset(json_array_get(off, (size_t)i), &be[i], what, sizeof what))
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                              "%s: tensor \"%.200s\": data_offsets[%d] is %s, expected an integer in [0, 2^53]", file,
                              name, i, what);
    }
    if (be[0] > be[1])
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: tensor \"%.200s\": data_offsets [%llu, %llu] end before they begin", file, name,
                          (unsigned long long)be[0], (unsigned long long)be[1]);
    uint64_t bytes = numel * dtypes[d].size; /* numel <= 2^53, size <= 8: no overflow */
    if (be[1] - be[0] != bytes)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: tensor \"%.200s\": shape %s of %s needs %llu bytes, but data_offsets [%llu, %llu] span "
                          "%llu", file, name, sh, dt, (unsigned long long)bytes, (unsigned long long)be[0],
                          (unsigned long long)be[1], (unsigned long long)(be[1] - be[0]));
    t->begin = be[0];
    t->end = be[1];
    return SARCO_OK;
}

static sarco_status parse_metadata(sarco_context *ctx, sarco_st_file *f, const char *file, json_t *meta) {
    if (!json_is_object(meta))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: __metadata__ is a JSON %s, expected an object of strings",
                          file, json_kind(meta));
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                              "%s: __metadata__ \"%.200s\" is a JSON %s, expected a string", file, k, json_kind(v));
    }
    f->metadata_json = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    const char *cfg = json_string_value(json_object_get(meta, "sarco.config"));
    if (!f->metadata_json || (cfg && !(f->config_json = strdup(cfg))))
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory copying __metadata__", file);
    return SARCO_OK;
}

/* Validates f->buf (f->size bytes) and fills f. On failure the caller closes f. */
static sarco_status parse_file(sarco_context *ctx, sarco_st_file *f, const char *file) {
    if (f->size < 8)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: file is %zu bytes, too short for the 8-byte header length", file, f->size);
    uint64_t hlen = le64(f->buf);
    if (hlen > ST_MAX_HEADER)
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: header length %llu bytes is past the 100 MB limit", file,
                          (unsigned long long)hlen);
    if (hlen > f->size - 8)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: header length %llu runs past the end of the file (%zu bytes follow the length field)",
                          file, (unsigned long long)hlen, f->size - 8);
    f->data_start = 8 + (size_t)hlen;

    json_error_t err;
    json_t *root = json_loadb((const char *)f->buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: header is not UTF-8 JSON: %s (at header byte %d)", file,
                          err.text, err.position);
    sarco_status s = SARCO_OK;
    if (!json_is_object(root)) {
        s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: header is a JSON %s, expected an object", file,
                       json_kind(root));
        goto done;
    }

    json_t *meta = json_object_get(root, "__metadata__");
    size_t n = json_object_size(root) - (meta ? 1 : 0);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) {
        s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu tensors", file, n);
        goto done;
    }
    for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        if (memchr(key, '\0', klen)) { /* jansson refuses these already; never trust a C string's length */
            s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: header key \"%.200s...\" holds a NUL byte", file, key);
            goto done;
        }
        if (strcmp(key, "__metadata__") == 0) {
            s = parse_metadata(ctx, f, file, json_object_iter_value(it));
            if (s != SARCO_OK) goto done;
            continue;
        }
        sarco_st_tensor *t = &f->tensors[f->count];
        if (!(t->name = strdup(key))) {
            s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
            goto done;
        }
        f->count++;
        s = parse_tensor(ctx, file, key, json_object_iter_value(it), t);
        if (s != SARCO_OK) goto done;
    }
    if (!f->metadata_json && !(f->metadata_json = strdup("{}"))) {
        s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
        goto done;
    }

    /* The data section is exactly the tensors, back to back from 0, in some order. */
    qsort(f->tensors, f->count, sizeof *f->tensors, cmp_by_offset);
    uint64_t pos = 0;
    for (size_t i = 0; i < f->count; i++) {
        const sarco_st_tensor *t = &f->tensors[i];
        if (t->begin != pos) {
            if (i == 0)
                s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                               "%s: tensor \"%.200s\" starts at data byte %llu, expected 0 (data_offsets must be "
                               "contiguous from 0)", file, t->name, (unsigned long long)t->begin);
            else
                s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                               "%s: tensor \"%.200s\" starts at data byte %llu, expected %llu where \"%.200s\" ends "
                               "(data_offsets must be contiguous: a %s)", file, t->name,
                               (unsigned long long)t->begin, (unsigned long long)pos, f->tensors[i - 1].name,
                               t->begin > pos ? "gap" : "overlap");
            goto done;
        }
        pos = t->end;
    }
    size_t data_len = f->size - f->data_start;
    if (pos != data_len) {
        s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                       "%s: the tensors end at data byte %llu but the data section holds %zu bytes (file size %zu, "
                       "expected %llu)", file, (unsigned long long)pos, data_len, f->size,
                       (unsigned long long)(f->data_start + pos));
        goto done;
    }
    qsort(f->tensors, f->count, sizeof *f->tensors, cmp_by_name);

    for (size_t i = 0; i < f->count; i++) {
        int64_t c = count_nonfinite(f, &f->tensors[i]);
        if (c && !f->first_nonfinite && !(f->first_nonfinite = strdup(f->tensors[i].name))) {
            s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
            goto done;
        }
        f->nonfinite += c;
    }
done:
    json_decref(root);
    return s;
}

static sarco_status check_limit(sarco_context *ctx, const char *file, size_t bytes) {
    if (ctx && ctx->opts.memory_limit &&
        (bytes > ctx->opts.memory_limit || ctx->host_bytes > ctx->opts.memory_limit - bytes))
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY,
                          "%s: reading %zu bytes would pass the context's memory limit of %zu", file, bytes,
                          ctx->opts.memory_limit);
    return SARCO_OK;
}

/* Takes ownership of buf (malloc'd, or mapped when `mapped`) whatever happens. */
static sarco_status parse_owned(sarco_context *ctx, uint8_t *buf, size_t size, const char *file, int mapped,
                                sarco_st_file **out) {
    sarco_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(file))) {
        free(f);
        if (mapped)
            munmap(buf, size);
        else
            free(buf);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
    }
    f->buf = buf;
    f->size = size;
    f->mapped = mapped;
    sarco_status s = parse_file(ctx, f, file);
    if (s != SARCO_OK) {
        sarco_st_close(f);
        return s;
    }
    *out = f;
    return SARCO_OK;
}

sarco_status sarco_st_parse(sarco_context *ctx, const uint8_t *buf, size_t size, const char *name,
                            sarco_st_file **out) {
    if (!out) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_st_parse: out is NULL");
    *out = NULL;
    if (!name) name = "(memory)";
    if (!buf && size) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: NULL buffer of %zu bytes", name, size);
    if ((uint64_t)size > ST_MAX_FILE)
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: %zu bytes is past the 16 GiB limit for a model file", name,
                          size);
    sarco_status s = check_limit(ctx, name, size);
    if (s != SARCO_OK) return s;
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", name, size);
    if (size) memcpy(copy, buf, size);
    return parse_owned(ctx, copy, size, name, 0, out);
}

sarco_status sarco_st_open(sarco_context *ctx, const char *path, sarco_st_file **out) {
    if (!out) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_st_open: out is NULL");
    *out = NULL;
    if (!path) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_st_open: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block us before fstat */
    if (fd < 0) return sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sarco_fail(ctx, SARCO_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > ST_MAX_FILE || (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: file is %lld bytes, past the 16 GiB limit for a model file",
                          path, (long long)sb.st_size);
    }
    size_t size = (size_t)sb.st_size;
    sarco_status s = check_limit(ctx, path, size);
    if (s != SARCO_OK) {
        close(fd);
        return s;
    }
    /* Mapped, not read: nothing is copied, and the pages come from the page cache. The mapping lives
     * only as long as the sarco_st_file (models copy their weights into backend layouts at load and
     * close the file), so a file replaced or truncated after sarco_model_load cannot reach a model
     * (docs/io.md). Empty files are mapped as nothing and fail the size check below. */
    uint8_t *buf = NULL;
    if (size) {
        void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot map %zu bytes: %s", path, size, strerror(e));
        }
        (void)madvise(map, size, MADV_WILLNEED);
        buf = map;
    }
    close(fd);
    return parse_owned(ctx, buf, size, path, size != 0, out);
}

/* ---- what a model expects ---- */

/* l->oom: 1 = an allocation failed, 2 = an entry was unusable (name too long, bad rank): a bug in the
 * model's code, reported by sarco_weights_check. */
void sarco_wlist_add(sarco_wlist *l, const int64_t *shape, int ndim, const char *fmt, ...) {
    if (!l || l->oom) return;
    if (!fmt || ndim < 0 || ndim > SARCO_ST_MAX_RANK || (ndim && !shape)) {
        l->oom = 2;
        return;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        sarco_wspec *items = realloc(l->items, cap * sizeof *items);
        if (!items) {
            l->oom = 1;
            return;
        }
        l->items = items;
        l->cap = cap;
    }
    sarco_wspec *w = &l->items[l->count];
    memset(w, 0, sizeof *w);
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(w->name, sizeof w->name, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof w->name) {
        l->oom = 2;
        return;
    }
    w->ndim = ndim;
    for (int i = 0; i < ndim; i++) w->shape[i] = shape[i];
    l->count++;
}

void sarco_wlist_free(sarco_wlist *l) {
    if (!l) return;
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int same_shape(const sarco_wspec *w, const sarco_st_tensor *t) {
    if (w->ndim != t->ndim) return 0;
    for (int i = 0; i < w->ndim; i++)
        if (w->shape[i] != t->shape[i]) return 0;
    return 1;
}

static int ignored(const char *name, const char *const *ignore) {
    for (size_t i = 0; ignore && ignore[i]; i++)
        if (fnmatch(ignore[i], name, 0) == 0) return 1;
    return 0;
}

sarco_status sarco_weights_check(sarco_context *ctx, const sarco_st_file *f, const sarco_wlist *l,
                                 const char *const *ignore) {
    if (!f || !l) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_weights_check: NULL file or list");
    if (l->oom == 1)
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "weights: out of memory listing the model's tensors");
    if (l->oom)
        return sarco_fail(ctx, SARCO_ERR_INTERNAL,
                          "weights: the model's tensor list has a bad entry (name over %zu bytes or rank over %d)",
                          sizeof l->items[0].name - 1, SARCO_ST_MAX_RANK);
    unsigned char *used = calloc(f->count ? f->count : 1, 1);
    if (!used) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "weights: out of memory");
    size_t missing = 0, misshaped = 0, unexpected = 0;
    char first[640] = "", a[160], b[160];
    for (size_t i = 0; i < l->count; i++) {
        const sarco_wspec *w = &l->items[i];
        const sarco_st_tensor *t = sarco_st_find(f, w->name);
        fmt_shape(a, sizeof a, w->shape, w->ndim);
        if (!t) {
            if (!first[0]) snprintf(first, sizeof first, "tensor \"%s\" is missing (expected shape %s)", w->name, a);
            missing++;
            continue;
        }
        used[t - f->tensors] = 1;
        if (!same_shape(w, t)) {
            fmt_shape(b, sizeof b, t->shape, t->ndim);
            if (!first[0]) snprintf(first, sizeof first, "tensor \"%s\" has shape %s, expected %s", w->name, b, a);
            misshaped++;
        }
    }
    for (size_t i = 0; i < f->count; i++) {
        const sarco_st_tensor *t = &f->tensors[i];
        if (used[i] || ignored(t->name, ignore)) continue;
        if (!first[0]) {
            fmt_shape(b, sizeof b, t->shape, t->ndim);
            snprintf(first, sizeof first, "unexpected tensor \"%.200s\" %s: the model does not use it", t->name, b);
        }
        unexpected++;
    }
    free(used);
    size_t total = missing + misshaped + unexpected;
    if (!total) return SARCO_OK;
    return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                      "weights do not match the model: %s; %zu problem%s in all (%zu missing, %zu mis-shaped, %zu "
                      "unexpected)", first, total, total == 1 ? "" : "s", missing, misshaped, unexpected);
}
