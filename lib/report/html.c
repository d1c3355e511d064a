/* The HTML report: one self-contained page per case. Pictures go in as base64 data: URIs, the
 * measurement and diagnosis tables come from the JSON the verbs print, the model's card from its
 * sarco.config. No scripts, no network resources; print CSS for A4. Every string that comes from a
 * file or a config is HTML-escaped; every number cell carries its full-precision JSON value in
 * data-value so the browser test can compare the page with the JSON. */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../io/imageio.h"
#include "../io/safetensors.h"
#include "report.h"

#define PICTURE_MAX_BYTES (32u << 20)
#define REPORT_MAX_PICTURES 16

/* ---- a growing text buffer; the first failure sticks ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_grow(sbuf *b, size_t more) {
    if (b->oom) return;
    if (b->n + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 8192;
    while (cap < b->n + more + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return;
        }
        cap *= 2;
    }
    char *np = realloc(b->p, cap);
    if (!np) {
        b->oom = 1;
        return;
    }
    b->p = np;
    b->cap = cap;
}

static void sb_put(sbuf *b, const char *s, size_t n) {
    sb_grow(b, n);
    if (b->oom) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) SARCO_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0) return;
    sb_grow(b, (size_t)need);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

/* HTML-escaped text (also for attribute values: quotes are escaped too). */
static void sb_esc(sbuf *b, const char *s) {
    if (!s) return;
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '&': sb_puts(b, "&amp;"); break;
        case '<': sb_puts(b, "&lt;"); break;
        case '>': sb_puts(b, "&gt;"); break;
        case '"': sb_puts(b, "&quot;"); break;
        case '\'': sb_puts(b, "&#39;"); break;
        default: sb_put(b, p, 1);
        }
    }
}

static void sb_base64(sbuf *b, const uint8_t *d, size_t n) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    sb_grow(b, (n + 2) / 3 * 4);
    if (b->oom) return;
    char *o = b->p + b->n;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *o++ = T[v >> 18];
        *o++ = T[v >> 12 & 63];
        *o++ = T[v >> 6 & 63];
        *o++ = T[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0);
        *o++ = T[v >> 18];
        *o++ = T[v >> 12 & 63];
        *o++ = i + 1 < n ? T[v >> 6 & 63] : '=';
        *o++ = '=';
    }
    b->n = (size_t)(o - b->p);
    b->p[b->n] = '\0';
}

/* A class name for reading: "rectus_femoris" -> "rectus femoris" (escaped). */
static void sb_name(sbuf *b, const char *name) {
    size_t n = strlen(name);
    char *t = malloc(n + 1);
    if (!t) {
        b->oom = 1;
        return;
    }
    for (size_t i = 0; i <= n; i++) t[i] = name[i] == '_' ? ' ' : name[i];
    sb_esc(b, t);
    free(t);
}

/* ---- units and number formats from JSON keys ---- */

typedef struct keyfmt {
    const char *title; /* column header */
    const char *unit;  /* HTML (already escaped) */
    int decimals;      /* -1: integer */
} keyfmt;

/* Known keys first, then by suffix. */
static keyfmt key_format(const char *key) {
    static const struct {
        const char *key;
        keyfmt f;
    } known[] = {
        {"voxels", {"Voxels", "", -1}},
        {"finite_voxels", {"Finite voxels", "", -1}},
        {"volume_ml", {"Volume", "mL", 1}},
        {"area_cm2", {"Area", "cm&sup2;", 2}},
        {"volume_index_ml_per_m2", {"Volume index", "mL/m&sup2;", 1}},
        {"area_index_cm2_per_m2", {"Area index", "cm&sup2;/m&sup2;", 2}},
        {"hu_mean", {"Mean attenuation", "HU", 1}},
        {"hu_sd", {"SD", "HU", 1}},
        {"hu_max", {"Max", "HU", 0}},
        {"hu_fraction_muscle", {"Share -29..150 HU", "fraction", 3}},
        {"hu_fraction_imat", {"Share -190..-30 HU", "fraction", 3}},
        {"height_m", {"Height", "m", 2}},
        {"smi_cm2_per_m2", {"Skeletal muscle index (SMI)", "cm&sup2;/m&sup2;", 2}},
        {"smi_cm2_m2", {"Skeletal muscle index (SMI)", "cm&sup2;/m&sup2;", 2}},
        {"sma_cm2", {"Skeletal muscle area (SMA)", "cm&sup2;", 2}},
        {"muscle_compartment_cm2", {"Muscle compartment", "cm&sup2;", 2}},
        {"muscle_attenuation_hu", {"Muscle attenuation", "HU", 1}},
        {"muscle_attenuation_sd_hu", {"Muscle attenuation SD", "HU", 1}},
        {"low_attenuation_fraction", {"Low-attenuation muscle share", "fraction", 3}},
        {"low_attenuation_area_cm2", {"Low-attenuation muscle area", "cm&sup2;", 2}},
        {"imat_area_cm2", {"IMAT area", "cm&sup2;", 2}},
        {"sat_cm2", {"Subcutaneous fat (SAT)", "cm&sup2;", 2}},
        {"vat_cm2", {"Visceral fat (VAT)", "cm&sup2;", 2}},
        {"pixels", {"Pixels", "", 1}},
        {"csa_mm2", {"Cross-sectional area (CSA)", "mm&sup2;", 1}},
        {"csa_cm2", {"Cross-sectional area (CSA)", "cm&sup2;", 2}},
        {"mt_mm", {"Muscle thickness (MT)", "mm", 2}},
        {"mt_columns", {"MT columns", "", -1}},
        {"mt_max_mm", {"Largest vertical extent", "mm", 2}},
        {"inscribed_diameter_mm", {"Largest inscribed circle", "mm", 2}},
        {"echo_mean", {"Echo intensity, mean", "grey 0..255", 1}},
        {"echo_sd", {"Echo intensity, SD", "grey 0..255", 1}},
        {"components", {"Connected components", "", -1}},
        {"largest_component_share", {"Largest component share", "fraction", 3}},
        {"hu_min", {"Min", "HU", 0}},
        {"nonfinite_pixels", {"Non-finite pixels", "", -1}},
    };
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (!strcmp(key, known[i].key)) return known[i].f;
    static const struct {
        const char *suffix;
        const char *unit;
        int decimals;
    } suf[] = {
        {"_cm2_per_m2", "cm&sup2;/m&sup2;", 2}, {"_cm2_m2", "cm&sup2;/m&sup2;", 2}, {"_ml_per_m2", "mL/m&sup2;", 1}, {"_kg_m2", "kg/m&sup2;", 2},
        {"_kg_per_m2", "kg/m&sup2;", 2},        {"_cm2", "cm&sup2;", 2},          {"_mm2", "mm&sup2;", 1},
        {"_ml", "mL", 1},                      {"_mm", "mm", 2},                 {"_cm", "cm", 1},
        {"_hu", "HU", 1},                      {"_percent", "%", 1},             {"_pct", "%", 1},
        {"_kg", "kg", 1},                      {"_m_s", "m/s", 2},               {"_s", "s", 1},
        {"_m", "m", 2},                        {"_deg", "&deg;", 1},             {"_fraction", "fraction", 3},
    };
    size_t n = strlen(key);
    for (size_t i = 0; i < sizeof suf / sizeof *suf; i++) {
        size_t t = strlen(suf[i].suffix);
        if (n > t && !strcmp(key + n - t, suf[i].suffix)) return (keyfmt){NULL, suf[i].unit, suf[i].decimals};
    }
    if (!strncmp(key, "hu_", 3)) return (keyfmt){NULL, "HU", 1};
    return (keyfmt){NULL, "", 3};
}

/* "muscle_area_cm2" -> "Muscle area" (the unit goes in its own place). */
static void sb_key_title(sbuf *b, const char *key) {
    keyfmt f = key_format(key);
    if (f.title) {
        sb_puts(b, f.title);
        return;
    }
    char t[128];
    snprintf(t, sizeof t, "%s", key);
    static const char *strip[] = {"_cm2_per_m2", "_cm2_m2", "_ml_per_m2", "_kg_per_m2", "_kg_m2", "_cm2", "_mm2", "_ml",
                                  "_mm",         "_cm",        "_hu",        "_percent", "_pct", "_kg", "_m_s",
                                  "_s",          "_m",         "_deg"};
    size_t n = strlen(t);
    for (size_t i = 0; i < sizeof strip / sizeof *strip; i++) {
        size_t s = strlen(strip[i]);
        if (n > s && !strcmp(t + n - s, strip[i])) {
            t[n - s] = '\0';
            break;
        }
    }
    for (char *p = t; *p; p++)
        if (*p == '_') *p = ' ';
    /* acronyms as clinicians write them */
    static const char *const acr[] = {"imat", "smi", "sma", "sat", "vat", "bmi", "hu", "asmi", "sppb", NULL};
    for (char *w = t; *w;) {
        char *e = w;
        while (*e && *e != ' ') e++;
        for (const char *const *a = acr; *a; a++)
            if ((size_t)(e - w) == strlen(*a) && !strncmp(w, *a, (size_t)(e - w)))
                for (char *q = w; q < e; q++) *q = (char)toupper((unsigned char)*q);
        w = *e ? e + 1 : e;
    }
    if (t[0]) t[0] = (char)toupper((unsigned char)t[0]);
    sb_esc(b, t);
}

/* A number cell: the shown text rounded per the key, the exact JSON value in data-value. */
static void sb_num_cell(sbuf *b, const json_t *v, const char *key) {
    if (!v || json_is_null(v)) {
        sb_puts(b, "<td class=\"num na\">&ndash;</td>");
        return;
    }
    if (!json_is_number(v)) {
        sb_puts(b, json_is_boolean(v) ? "<td class=\"num\">" : "<td>");
        if (json_is_string(v)) sb_esc(b, json_string_value(v));
        else if (json_is_true(v)) sb_puts(b, "yes");
        else if (json_is_false(v)) sb_puts(b, "no");
        sb_puts(b, "</td>");
        return;
    }
    keyfmt f = key_format(key);
    if (json_is_integer(v)) {
        long long x = (long long)json_integer_value(v);
        sb_printf(b, "<td class=\"num\" data-value=\"%lld\">%lld</td>", x, x);
        return;
    }
    double x = json_real_value(v);
    sb_printf(b, "<td class=\"num\" data-value=\"%.17g\" data-decimals=\"%d\">", x, f.decimals < 0 ? 0 : f.decimals);
    sb_printf(b, "%.*f</td>", f.decimals < 0 ? 0 : f.decimals, x);
}

/* ---- sections ---- */

typedef struct page {
    sbuf b;
    sarco_context *ctx;
} page;

static const char *CSS =
    "*{box-sizing:border-box}"
    "html{background:#e9edf1}"
    "body{font-family:'DejaVu Sans','Liberation Sans',Arial,Helvetica,sans-serif;font-size:10pt;color:#1c2630;"
    "line-height:1.35;margin:0 auto;padding:8mm 10mm;max-width:210mm;background:#fff}"
    "header{border-bottom:2px solid #1f4e79;padding-bottom:3mm;margin-bottom:3mm}"
    "h1{font-size:16pt;margin:0 0 2mm 0;color:#1f4e79}"
    "h2{font-size:12pt;margin:5mm 0 2mm 0;color:#1f4e79;border-bottom:1px solid #c9d3dd;padding-bottom:1mm;"
    "break-after:avoid}"
    "h3{font-size:10.5pt;margin:3mm 0 1.5mm 0;break-after:avoid}"
    ".meta{display:grid;grid-template-columns:max-content 1fr;gap:0.6mm 4mm;font-size:9pt}"
    ".meta dt{color:#5a6b7b}.meta dd{margin:0;overflow-wrap:anywhere}"
    ".hash{font-family:'DejaVu Sans Mono',monospace;font-size:7.5pt}"
    ".warn{border:1.5px solid #b45309;background:#fff7e6;color:#7c2d12;padding:2mm 3mm;margin:3mm 0;"
    "border-radius:1.5mm;font-weight:bold}"
    ".warn span{font-weight:normal;display:block;margin-top:0.8mm}"
    "figure{margin:2mm 0;break-inside:avoid;text-align:center}"
    "figure img{max-width:100%;height:auto;border:1px solid #9aa8b5;image-rendering:auto}"
    "figcaption{font-size:8.5pt;color:#5a6b7b;margin-top:1mm}"
    "table{border-collapse:collapse;width:100%;font-size:9pt;margin:1mm 0 2mm 0;break-inside:avoid}"
    "th,td{padding:0.9mm 2mm;border-bottom:1px solid #dde3e9;text-align:left;vertical-align:top}"
    "thead th{background:#eef3f8;color:#1f4e79;font-weight:bold;border-bottom:1.5px solid #1f4e79}"
    "th .u{font-weight:normal;color:#5a6b7b}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    "th.num{text-align:right}"
    "tbody tr:nth-child(even){background:#f8fafc}"
    "tr.group td{font-weight:bold;background:#eef3f8}"
    ".na{color:#8796a5}"
    ".verdict{font-size:11pt;padding:2mm 3mm;border-left:4px solid #1f4e79;background:#eef3f8;margin:2mm 0}"
    ".verdict b{color:#1f4e79}"
    ".met{color:#9b1c1c;font-weight:bold}.notmet{color:#276749}.undecided{color:#8796a5}"
    ".small{font-size:8.5pt;color:#5a6b7b}"
    "footer{margin-top:5mm;padding-top:2mm;border-top:1px solid #c9d3dd;font-size:8pt;color:#5a6b7b}"
    "th .u{white-space:nowrap}td{overflow-wrap:break-word}"
    "@page{size:A4;margin:10mm}"
    "@media print{html{background:#fff}body{max-width:none;padding:0;font-size:8.5pt;line-height:1.25}"
    "h1{font-size:14pt}h2{font-size:11pt;margin:3mm 0 1.5mm 0}h3{margin:2mm 0 1mm 0}"
    "th,td{padding:0.3mm 1.5mm}table{font-size:7.5pt;margin:0.5mm 0 1mm 0}p{margin:1mm 0}"
    ".meta{font-size:8pt}.warn{padding:1mm 2mm;margin:2mm 0}.verdict{padding:1mm 2mm;margin:1mm 0}"
    "figure img{max-height:85mm;width:auto}"
    "table,figure,.verdict,.warn{break-inside:avoid}}";

static const char *jstr(const json_t *o, const char *key) {
    const json_t *v = o ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *basename_of(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int contains_ci(const char *hay, const char *needle) {
    if (!hay) return 0;
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (!strncasecmp(p, needle, n)) return 1;
    return 0;
}

/* A demonstration model: "demonstration": true, "clinical_use": false, or a description that says so. */
static int is_demo_model(const json_t *cfg) {
    if (!cfg) return 0;
    if (json_is_true(json_object_get(cfg, "demonstration"))) return 1;
    if (json_is_false(json_object_get(cfg, "clinical_use"))) return 1;
    const char *d = jstr(cfg, "description");
    return contains_ci(d, "demonstration") || contains_ci(d, "not a clinical") || contains_ci(d, "not for clinical");
}

/* A unit as written in a rule file, with squares shown as such: "cm2/m2" -> "cm&sup2;/m&sup2;". */
static void sb_unit(sbuf *b, const char *u) {
    if (!u) return;
    for (const char *p = u; *p; p++) {
        if (*p == '2' && p > u && isalpha((unsigned char)p[-1]) && !isalnum((unsigned char)p[1])) {
            sb_puts(b, "&sup2;");
            continue;
        }
        char c[2] = {*p, 0};
        sb_esc(b, c);
    }
}

static void sb_json_compact(sbuf *b, const json_t *v);

/* Scalars as a reader wants them (numbers with %g), objects as "k v, k v", arrays comma-separated. */
static void sb_json_plain(sbuf *b, const json_t *v) {
    if (json_is_string(v)) sb_esc(b, json_string_value(v));
    else if (json_is_integer(v)) sb_printf(b, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) sb_printf(b, "%g", json_real_value(v));
    else if (json_is_true(v)) sb_puts(b, "yes");
    else if (json_is_false(v)) sb_puts(b, "no");
    else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        int n = 0;
        json_object_foreach((json_t *)v, k, x) {
            if (json_is_null(x)) continue;
            sb_puts(b, n++ ? ", " : "");
            sb_key_title(b, k);
            sb_puts(b, " ");
            if (json_is_string(x) && !strcmp(k, "unit")) sb_unit(b, json_string_value(x));
            else sb_json_plain(b, x);
            if (json_is_number(x) && key_format(k).unit[0] && strcmp(key_format(k).unit, "fraction"))
                sb_printf(b, " %s", key_format(k).unit);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach((json_t *)v, i, x) {
            sb_puts(b, i ? ", " : "");
            sb_json_plain(b, x);
        }
    } else sb_json_compact(b, v);
}

static void sb_json_compact(sbuf *b, const json_t *v) {
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (t) {
        sb_esc(b, t);
        free(t);
    }
}

static void model_card(page *pg, const json_t *cfg) {
    sbuf *b = &pg->b;
    sb_puts(b, "<h2>Model card (summary)</h2><dl class=\"meta\">");
    const char *d = jstr(cfg, "description");
    if (d) {
        sb_puts(b, "<dt>Description</dt><dd>");
        sb_esc(b, d);
        sb_puts(b, "</dd>");
    }
    const json_t *cls = json_object_get(cfg, "classes");
    if (json_is_array(cls)) {
        sb_printf(b, "<dt>Classes</dt><dd>%zu: ", json_array_size(cls));
        size_t i;
        const json_t *c;
        json_array_foreach(cls, i, c) {
            if (i) sb_puts(b, ", ");
            sb_printf(b, "%zu&nbsp;", i);
            sb_esc(b, json_is_string(c) ? json_string_value(c) : "?");
        }
        sb_puts(b, "</dd>");
    }
    const json_t *pre = json_object_get(cfg, "preprocess");
    if (json_is_object(pre)) {
        const json_t *w = json_object_get(pre, "hu_window"), *sp = json_object_get(pre, "target_spacing_mm");
        sb_puts(b, "<dt>Preprocessing</dt><dd>");
        if (json_is_array(w) && json_array_size(w) == 2)
            sb_printf(b, "intensity window %g..%g; ", json_number_value(json_array_get(w, 0)),
                      json_number_value(json_array_get(w, 1)));
        if (json_is_array(sp)) {
            sb_puts(b, "spacing ");
            for (size_t i = 0; i < json_array_size(sp); i++)
                sb_printf(b, "%s%g", i ? " &times; " : "", json_number_value(json_array_get(sp, i)));
            sb_puts(b, " mm");
        }
        sb_puts(b, "</dd>");
    }
    const json_t *inf = json_object_get(cfg, "inference");
    if (json_is_object(inf)) {
        const json_t *roi = json_object_get(inf, "roi");
        sb_puts(b, "<dt>Inference</dt><dd>sliding window");
        if (json_is_array(roi)) {
            sb_puts(b, " ");
            for (size_t i = 0; i < json_array_size(roi); i++)
                sb_printf(b, "%s%lld", i ? " &times; " : "", (long long)json_integer_value(json_array_get(roi, i)));
        }
        const char *mode = jstr(inf, "mode");
        if (mode) {
            sb_puts(b, ", ");
            sb_esc(b, mode);
            sb_puts(b, " blending");
        }
        sb_puts(b, "</dd>");
    }
    const json_t *tr = json_object_get(cfg, "training");
    if (json_is_object(tr)) {
        const char *data = jstr(tr, "data");
        if (data) {
            sb_puts(b, "<dt>Training data</dt><dd>");
            sb_esc(b, data);
            sb_puts(b, "</dd>");
        }
        const json_t *dice = json_object_get(tr, "validation_mean_dice");
        const json_t *verr = json_object_get(tr, "validation_max_abs_volume_error_percent");
        if (json_is_number(dice) || json_is_number(verr)) {
            sb_puts(b, "<dt>Validation</dt><dd>");
            if (json_is_number(dice)) sb_printf(b, "mean Dice %.3f", json_number_value(dice));
            if (json_is_number(verr))
                sb_printf(b, "%slargest volume error %.1f %%", json_is_number(dice) ? "; " : "",
                          json_number_value(verr));
            sb_puts(b, "</dd>");
        }
    }
    sb_puts(b, "</dl>");
}

/* A table of entries (objects): a name column, then every numeric key in order of appearance. */
static void entries_table(page *pg, const json_t *arr, const json_t *arr2, const char *arr2_title,
                          const char *name_title) {
    sbuf *b = &pg->b;
    const char *cols[32];
    int ncols = 0;
    const json_t *lists[2] = {arr, arr2};
    for (int l = 0; l < 2; l++) {
        size_t i;
        const json_t *e;
        if (!json_is_array(lists[l])) continue;
        json_array_foreach(lists[l], i, e) {
            const char *k;
            const json_t *v;
            json_object_foreach((json_t *)e, k, v) {
                if (!strcmp(k, "label") || !strcmp(k, "name")) continue;
                if (!json_is_number(v) && !json_is_null(v)) continue;
                int have = 0;
                for (int c = 0; c < ncols; c++) have |= !strcmp(cols[c], k);
                if (!have && ncols < 32) cols[ncols++] = k;
            }
        }
    }
    /* the measure itself first, counts last */
    static const char *const first[] = {"volume_ml", "area_cm2", "volume_index_ml_per_m2", "area_index_cm2_per_m2",
                                        "hu_mean", "hu_sd"};
    static const char *const last[] = {"finite_voxels", "voxels"};
    const char *ordered[32];
    int no = 0;
    for (size_t f = 0; f < sizeof first / sizeof *first; f++)
        for (int c = 0; c < ncols; c++)
            if (!strcmp(cols[c], first[f])) ordered[no++] = cols[c];
    for (int c = 0; c < ncols; c++) {
        int special = 0;
        for (size_t f = 0; f < sizeof first / sizeof *first; f++) special |= !strcmp(cols[c], first[f]);
        for (size_t f = 0; f < sizeof last / sizeof *last; f++) special |= !strcmp(cols[c], last[f]);
        if (!special) ordered[no++] = cols[c];
    }
    for (size_t f = 0; f < sizeof last / sizeof *last; f++)
        for (int c = 0; c < ncols; c++)
            if (!strcmp(cols[c], last[f])) ordered[no++] = cols[c];
    memcpy(cols, ordered, sizeof(char *) * (size_t)ncols);
    sb_puts(b, "<table><thead><tr><th>");
    sb_esc(b, name_title);
    sb_puts(b, "</th>");
    for (int c = 0; c < ncols; c++) {
        keyfmt f = key_format(cols[c]);
        sb_printf(b, "<th class=\"num\" data-key=\"");
        sb_esc(b, cols[c]);
        sb_puts(b, "\">");
        sb_key_title(b, cols[c]);
        if (f.unit[0]) sb_printf(b, " <span class=\"u\">(%s)</span>", f.unit);
        sb_puts(b, "</th>");
    }
    sb_puts(b, "</tr></thead><tbody>");
    for (int l = 0; l < 2; l++) {
        size_t i;
        const json_t *e;
        if (!json_is_array(lists[l]) || json_array_size(lists[l]) == 0) continue;
        if (l == 1) {
            sb_printf(b, "<tr class=\"group\"><td colspan=\"%d\">", ncols + 1);
            sb_esc(b, arr2_title);
            sb_puts(b, "</td></tr>");
        }
        json_array_foreach(lists[l], i, e) {
            const json_t *lab = json_object_get(e, "label");
            const char *name = jstr(e, "name");
            sb_puts(b, "<tr><td>");
            if (json_is_integer(lab)) sb_printf(b, "%lld&nbsp;", (long long)json_integer_value(lab));
            if (name) sb_name(b, name);
            sb_puts(b, "</td>");
            for (int c = 0; c < ncols; c++) sb_num_cell(b, json_object_get(e, cols[c]), cols[c]);
            sb_puts(b, "</tr>");
        }
    }
    sb_puts(b, "</tbody></table>");
}

/* Top-level numbers of a JSON object (and of its objects one level down) as a two-column table. */
static void scalars_table(page *pg, const json_t *o, const char *const *skip) {
    sbuf *b = &pg->b;
    int rows = 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        int sk = 0;
        for (const char *const *s = skip; s && *s; s++) sk |= !strcmp(*s, k);
        if (sk || !(json_is_number(v) || json_is_object(v))) continue;
        const char *k2;
        const json_t *v2;
        if (json_is_object(v)) {
            json_object_foreach((json_t *)v, k2, v2) {
                if (!json_is_number(v2)) continue;
                if (!rows++) sb_puts(b, "<table class=\"kv\"><thead><tr><th>Measure</th><th class=\"num\">Value</th>"
                                        "<th>Unit</th></tr></thead><tbody>");
                keyfmt f = key_format(k2);
                if (!f.unit[0]) f.unit = key_format(k).unit; /* "windows_hu": {"low": ...} is in HU */
                sb_puts(b, "<tr><td>");
                sb_key_title(b, k);
                sb_puts(b, ": ");
                sb_key_title(b, k2);
                sb_puts(b, "</td>");
                sb_num_cell(b, v2, k2);
                sb_printf(b, "<td>%s</td></tr>", f.unit);
            }
            continue;
        }
        if (!rows++) sb_puts(b, "<table class=\"kv\"><thead><tr><th>Measure</th><th class=\"num\">Value</th>"
                                "<th>Unit</th></tr></thead><tbody>");
        keyfmt f = key_format(k);
        sb_puts(b, "<tr><td>");
        sb_key_title(b, k);
        sb_puts(b, "</td>");
        sb_num_cell(b, v, k);
        sb_printf(b, "<td>%s</td></tr>", f.unit);
    }
    if (rows) sb_puts(b, "</tbody></table>");
}

/* Rows of a measure report's entries: every numeric or boolean key, one nested object deep (e.g. the
 * ultrasound measures) and two for a box ("ultrasound.bbox.height_mm"); keys are JSON paths. */
#define MAX_ROWS 48
typedef struct flatkeys {
    char path[MAX_ROWS][96];
    const char *leaf[MAX_ROWS];
    int n;
} flatkeys;

static void flat_collect(flatkeys *fk, const json_t *o, const char *prefix, int depth) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        if (!strcmp(k, "label") || !strcmp(k, "name")) continue;
        char path[96];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", k);
        if (json_is_object(v)) {
            if (depth < 2) flat_collect(fk, v, path, depth + 1);
            continue;
        }
        if (!json_is_number(v) && !json_is_boolean(v) && !json_is_null(v)) continue;
        int have = 0;
        for (int i = 0; i < fk->n && !have; i++) have = !strcmp(fk->path[i], path);
        if (have || fk->n == MAX_ROWS) continue;
        snprintf(fk->path[fk->n], sizeof fk->path[fk->n], "%s", path);
        fk->leaf[fk->n] = k;
        fk->n++;
    }
}

static const json_t *flat_get(const json_t *o, const char *path) {
    char buf[96];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *cur = o;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, ".")) cur = json_object_get(cur, tok);
    return cur;
}

static void sb_flat_title(sbuf *b, const char *path, const char *leaf) {
    const char *dot = strchr(path, '.');
    if (dot && !strncmp(path, "bbox", 4)) sb_puts(b, "Box ");
    else if (dot && strstr(path, ".bbox.")) sb_puts(b, "Box ");
    sb_key_title(b, leaf);
}

/* A `sarco measure` report: the grid, then its entries with measures as rows and labels as columns
 * (so many measures of a few labels, e.g. ultrasound, fit the page). */
static void measure_section(page *pg, const json_t *m) {
    sbuf *b = &pg->b;
    sb_puts(b, "<h2>Measurements (label map)</h2><p class=\"small\">");
    const json_t *sp = json_object_get(m, "pixel_spacing_mm");
    const char *how = jstr(m, "measured_as");
    if (how) {
        sb_puts(b, "Measured as ");
        sb_esc(b, how);
        sb_puts(b, ". ");
    }
    if (!json_is_array(sp)) sp = json_object_get(m, "spacing_mm");
    if (json_is_array(sp)) {
        sb_puts(b, "Pixel spacing ");
        for (size_t i = 0; i < json_array_size(sp) && i < 3; i++)
            sb_printf(b, "%s%.4g", i ? " &times; " : "", json_number_value(json_array_get(sp, i)));
        sb_puts(b, " mm");
        const char *from = jstr(m, "pixel_spacing_from");
        if (from) {
            sb_puts(b, " (from ");
            sb_esc(b, basename_of(from));
            sb_puts(b, ")");
        }
        sb_puts(b, ". ");
    }
    const char *mt = jstr(m, "mt_definition");
    if (mt) {
        sb_puts(b, "Muscle thickness: ");
        sb_esc(b, mt);
        sb_puts(b, ".");
    }
    sb_puts(b, "</p>");
    const json_t *labels = json_object_get(m, "labels");
    if (!json_is_array(labels) || json_array_size(labels) == 0) return;
    flatkeys *fk = calloc(1, sizeof *fk);
    if (!fk) {
        b->oom = 1;
        return;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(labels, i, e) if (json_is_object(e)) flat_collect(fk, e, "", 0);
    const json_t *total = json_object_get(m, "total");
    size_t ncol = json_array_size(labels) + (json_is_object(total) ? 1 : 0);
    if (ncol > 8) ncol = 8; /* the page's width: at most 8 label columns */
    sb_puts(b, "<table class=\"measures\"><thead><tr><th>Measure</th><th>Unit</th>");
    for (size_t c = 0; c < ncol; c++) {
        const json_t *ec = c < json_array_size(labels) ? json_array_get(labels, c) : total;
        sb_puts(b, "<th class=\"num\">");
        if (ec == total) sb_puts(b, "total");
        else {
            const json_t *lab = json_object_get(ec, "label");
            const char *nm = jstr(ec, "name");
            if (nm) sb_name(b, nm);
            else if (json_is_integer(lab)) sb_printf(b, "label %lld", (long long)json_integer_value(lab));
        }
        sb_puts(b, "</th>");
    }
    sb_puts(b, "</tr></thead><tbody>");
    for (int r = 0; r < fk->n; r++) {
        keyfmt f = key_format(fk->leaf[r]);
        sb_puts(b, "<tr data-key=\"");
        sb_esc(b, fk->path[r]);
        sb_puts(b, "\"><td>");
        sb_flat_title(b, fk->path[r], fk->leaf[r]);
        sb_printf(b, "</td><td>%s</td>", f.unit);
        for (size_t c = 0; c < ncol; c++) {
            const json_t *ec = c < json_array_size(labels) ? json_array_get(labels, c) : total;
            sb_num_cell(b, flat_get(ec, fk->path[r]), fk->leaf[r]);
        }
        sb_puts(b, "</tr>");
    }
    sb_puts(b, "</tbody></table>");
    if (json_array_size(labels) + (json_is_object(total) ? 1 : 0) > ncol)
        sb_printf(b, "<p class=\"small\">%zu more labels in the JSON report.</p>",
                  json_array_size(labels) + (json_is_object(total) ? 1 : 0) - ncol);
    free(fk);
}

static void segment_section(page *pg, const json_t *seg) {
    sbuf *b = &pg->b;
    const json_t *labels = json_object_get(seg, "labels"), *groups = json_object_get(seg, "groups");
    sb_puts(b, "<h2>Measurements</h2>");
    const json_t *h = json_object_get(seg, "height_m");
    const json_t *input = json_object_get(seg, "input");
    const json_t *sp = json_object_get(input, "spacing_mm");
    sb_puts(b, "<p class=\"small\">Per structure of the label map");
    if (json_is_array(sp)) {
        sb_puts(b, "; voxel size ");
        for (size_t i = 0; i < json_array_size(sp) && i < 3; i++)
            sb_printf(b, "%s%.3g", i ? " &times; " : "", json_number_value(json_array_get(sp, i)));
        sb_puts(b, " mm");
    }
    if (json_is_number(h)) sb_printf(b, "; height %.2f m (indices = measure / height&sup2;)", json_number_value(h));
    sb_puts(b, ". HU statistics of the CT inside each structure (SD: population).</p>");
    if (json_is_array(labels)) entries_table(pg, labels, groups, "Groups", "Structure");
}

static void rule_set_section(page *pg, const json_t *rs);

/* `sarco l3`'s report (schema sarco.l3/1): the slice, the HU windows, the measures with their
 * definitions, the classes and the table's judgement; any other numbers as a key/value table. */
static void l3_section(page *pg, const json_t *l3) {
    sbuf *b = &pg->b;
    sb_puts(b, "<h2>L3 body composition</h2>");
    const json_t *sl = json_object_get(l3, "slice"), *win = json_object_get(l3, "windows_hu");
    if (json_is_object(sl) || json_is_object(win)) {
        sb_puts(b, "<p class=\"small\">");
        if (json_is_object(sl)) {
            const json_t *idx = json_object_get(sl, "index"), *avg = json_object_get(sl, "averaged_over");
            sb_puts(b, "Slice ");
            sb_json_plain(b, idx);
            const json_t *src = json_object_get(sl, "source");
            if (src && !json_is_null(src)) {
                sb_puts(b, " (");
                sb_json_plain(b, src);
                sb_puts(b, ")");
            }
            if (json_is_integer(avg) && json_integer_value(avg) > 1) {
                sb_printf(b, ", measures averaged over %lld slices (", (long long)json_integer_value(avg));
                sb_json_plain(b, json_object_get(sl, "indices"));
                sb_puts(b, ")");
            }
            sb_puts(b, ". ");
        }
        if (json_is_object(win)) {
            sb_puts(b, "HU windows");
            int incl = json_is_true(json_object_get(win, "inclusive")), defs = json_is_true(json_object_get(win, "defaults"));
            if (incl || defs) sb_printf(b, " (%s%s%s)", incl ? "inclusive" : "", incl && defs ? ", " : "",
                                        defs ? "the defaults" : "");
            sb_puts(b, ": ");
            const char *k;
            const json_t *v;
            int n = 0;
            json_object_foreach((json_t *)win, k, v) {
                if (!json_is_array(v) || json_array_size(v) != 2) continue;
                sb_puts(b, n++ ? "; " : "");
                sb_key_title(b, k);
                sb_printf(b, " %g..%g", json_number_value(json_array_get(v, 0)), json_number_value(json_array_get(v, 1)));
            }
            sb_puts(b, " HU.");
        }
        const json_t *h = json_object_get(l3, "height_m");
        if (json_is_number(h)) sb_printf(b, " Height %.2f m.", json_number_value(h));
        sb_puts(b, "</p>");
    }
    const json_t *ms = json_object_get(l3, "measures"), *defs = json_object_get(l3, "definitions");
    if (json_is_object(ms)) {
        sb_puts(b, "<table class=\"kv\"><thead><tr><th>Measure</th><th class=\"num\">Value</th><th>Unit</th>"
                   "<th>Definition</th></tr></thead><tbody>");
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)ms, k, v) {
            keyfmt f = key_format(k);
            sb_puts(b, "<tr><td>");
            sb_key_title(b, k);
            sb_puts(b, "</td>");
            sb_num_cell(b, v, k);
            sb_printf(b, "<td>%s</td><td class=\"small\">", f.unit);
            sb_esc(b, jstr(defs, k));
            sb_puts(b, "</td></tr>");
        }
        sb_puts(b, "</tbody></table>");
    }
    const json_t *cls = json_object_get(l3, "classes");
    if (json_is_array(cls) && json_array_size(cls)) {
        sb_puts(b, "<h3>Per class</h3>");
        entries_table(pg, cls, NULL, NULL, "Class");
    }
    const json_t *jud = json_object_get(l3, "judgement");
    if (json_is_object(jud)) rule_set_section(pg, jud);
    static const char *const skip[] = {"schema", "library_version", "input", "model", "settings", "timing_s",
                                       "preprocess", "image", "slice", "windows_hu", "height_m", "measures",
                                       "definitions", "segmentation", "judgement", "classes", "per_slice", NULL};
    scalars_table(pg, l3, skip);
}

static void sb_threshold(sbuf *b, const json_t *c) {
    const char *op = jstr(c, "op");
    const json_t *t = json_object_get(c, "threshold");
    if (op) {
        const char *sym = !strcmp(op, "<") || !strcmp(op, "lt") ? "&lt;"
                          : !strcmp(op, "<=") || !strcmp(op, "le") ? "&le;"
                          : !strcmp(op, ">") || !strcmp(op, "gt") ? "&gt;"
                          : !strcmp(op, ">=") || !strcmp(op, "ge") ? "&ge;"
                          : NULL;
        if (sym) sb_puts(b, sym);
        else sb_esc(b, op);
        sb_puts(b, " ");
    }
    if (json_is_number(t)) sb_printf(b, "%g", json_number_value(t));
    else if (json_is_string(t)) sb_esc(b, json_string_value(t));
    else if (t && !json_is_null(t)) sb_json_plain(b, t);
    else sb_puts(b, "<span class=\"na\">&ndash;</span>");
}

/* A rule set of `sarco diagnose`, or the judgement of `sarco l3` by a cut-off table (the same shape:
 * verdict, criteria, citation; named by "table"). */
static void rule_set_section(page *pg, const json_t *rs) {
    sbuf *b = &pg->b;
    const char *title = jstr(rs, "title"), *name = jstr(rs, "name"), *table = jstr(rs, "table");
    sb_puts(b, "<h3>");
    if (!title && !name && table) sb_puts(b, "Cut-off table ");
    sb_esc(b, title ? title : name ? name : table ? table : "Rule set");
    const char *ver = jstr(rs, "version");
    if (ver) {
        sb_puts(b, " <span class=\"small\">(");
        sb_esc(b, ver);
        sb_puts(b, ")</span>");
    }
    sb_puts(b, "</h3>");
    const char *vt = jstr(rs, "verdict_text"), *v = jstr(rs, "verdict");
    sb_puts(b, "<div class=\"verdict\">Verdict: <b data-verdict=\"");
    sb_esc(b, v ? v : "");
    sb_puts(b, "\">");
    if (vt || !v) {
        sb_esc(b, vt ? vt : "not given");
    } else { /* the id in words: smi_not_low -> smi not low */
        for (const char *p = v; *p; p++) {
            char ch[2] = {*p == '_' ? ' ' : *p, 0};
            sb_esc(b, ch);
        }
    }
    sb_puts(b, "</b>");
    const json_t *myo = json_object_get(rs, "myosteatosis");
    if (json_is_boolean(myo))
        sb_printf(b, "; myosteatosis: <b data-myosteatosis=\"%s\">%s</b>", json_is_true(myo) ? "true" : "false",
                  json_is_true(myo) ? "yes" : "no");
    const json_t *decided = json_object_get(rs, "decided");
    if (json_is_false(decided)) sb_puts(b, " <span class=\"small\">(not fully decided: see what is missing)</span>");
    sb_puts(b, "</div>");
    const json_t *crit = json_object_get(rs, "criteria");
    if (json_is_array(crit) && json_array_size(crit)) {
        sb_puts(b, "<table class=\"criteria\"><thead><tr><th>Criterion</th><th class=\"num\">Value</th><th>Unit</th>"
                   "<th>Threshold</th><th>Table</th><th>Met</th></tr></thead><tbody>");
        size_t i;
        const json_t *c;
        json_array_foreach(crit, i, c) {
            const char *status = jstr(c, "status");
            if (status && !strcmp(status, "not_applicable")) continue; /* e.g. the other sex's threshold */
            const char *desc = jstr(c, "description"), *id = jstr(c, "id"), *unit = jstr(c, "unit");
            const char *table = jstr(c, "table"), *src = jstr(c, "value_source");
            sb_puts(b, "<tr><td>");
            sb_esc(b, desc ? desc : id ? id : jstr(c, "name"));
            if (src) {
                sb_puts(b, " <span class=\"small\">(from ");
                sb_esc(b, src);
                sb_puts(b, ")</span>");
            }
            sb_puts(b, "</td>");
            const json_t *val = json_object_get(c, "value");
            if (json_is_number(val)) {
                sb_printf(b, "<td class=\"num\" data-value=\"%.17g\">%g</td>", json_number_value(val),
                          json_number_value(val));
            } else {
                sb_num_cell(b, val, "");
            }
            sb_puts(b, "<td>");
            sb_unit(b, unit);
            sb_puts(b, "</td><td>");
            sb_threshold(b, c);
            sb_puts(b, "</td><td>");
            sb_esc(b, table ? table : "");
            sb_puts(b, "</td>");
            const json_t *met = json_object_get(c, "met");
            if (json_is_true(met)) sb_puts(b, "<td class=\"met\" data-met=\"true\">&#9679; yes</td>");
            else if (json_is_false(met)) sb_puts(b, "<td class=\"notmet\" data-met=\"false\">&#9675; no</td>");
            else sb_puts(b, "<td class=\"undecided\" data-met=\"null\">&ndash; missing</td>");
            sb_puts(b, "</tr>");
        }
        sb_puts(b, "</tbody></table>");
    }
    const json_t *miss = json_object_get(rs, "missing");
    if (json_is_array(miss) && json_array_size(miss)) {
        sb_puts(b, "<p class=\"small\">Missing to decide: ");
        size_t i;
        const json_t *m;
        json_array_foreach(miss, i, m) {
            if (i) sb_puts(b, ", ");
            sb_json_plain(b, m);
        }
        sb_puts(b, "</p>");
    }
    const char *cite = jstr(rs, "citation");
    if (cite) {
        sb_puts(b, "<p class=\"small\">");
        sb_esc(b, cite);
        sb_puts(b, "</p>");
    }
}

static void diagnosis_section(page *pg, const json_t *d) {
    sbuf *b = &pg->b;
    sb_puts(b, "<h2>Diagnosis</h2>");
    const json_t *subj = json_object_get(d, "subject");
    if (json_is_object(subj)) {
        sb_puts(b, "<p class=\"small\">Inputs: ");
        const char *k;
        const json_t *v;
        int n = 0;
        json_object_foreach((json_t *)subj, k, v) {
            if (json_is_null(v)) continue;
            sb_puts(b, n++ ? "; " : "");
            sb_key_title(b, k);
            keyfmt f = key_format(k);
            sb_puts(b, " ");
            sb_json_plain(b, v);
            if (f.unit[0] && json_is_number(v)) sb_printf(b, " %s", f.unit);
        }
        sb_puts(b, "</p>");
    }
    const json_t *ms = json_object_get(d, "mass_source");
    if (ms && !json_is_null(ms)) {
        sb_puts(b, "<p class=\"small\">Muscle mass from imaging, as named by the user: ");
        sb_json_plain(b, ms);
        sb_puts(b, "</p>");
    }
    const json_t *sets = json_object_get(d, "rule_sets");
    if (json_is_array(sets)) {
        size_t i;
        const json_t *rs;
        json_array_foreach(sets, i, rs) rule_set_section(pg, rs);
    } else {
        rule_set_section(pg, d);
    }
}

static sarco_status parse_json(sarco_context *ctx, const char *what, const char *text, json_t **out) {
    *out = NULL;
    if (!text) return SARCO_OK;
    json_error_t e;
    *out = json_loads(text, 0, &e);
    if (!*out)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "report: the %s JSON does not parse: line %d, column %d: %s",
                          what, e.line, e.column, e.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "report: the %s JSON is not an object", what);
    }
    return SARCO_OK;
}

/* A picture's PNG bytes: a file checked by our validating reader, or an RGB buffer encoded here. */
static sarco_status picture_png(sarco_context *ctx, const sarco_report_picture *p, size_t idx, uint8_t **png,
                                size_t *n) {
    *png = NULL;
    *n = 0;
    if (p->png_path) {
        sarco_image *img = NULL;
        sarco_status st = sarco_image_read(ctx, p->png_path, &img);
        sarco_image_free(img);
        if (st != SARCO_OK) return st;
        FILE *f = fopen(p->png_path, "rb");
        if (!f) return sarco_fail(ctx, SARCO_ERR_IO, "report: cannot open picture %s", p->png_path);
        uint8_t sig[8];
        size_t got = fread(sig, 1, 8, f);
        static const uint8_t PNGSIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        struct stat sb;
        if (got != 8 || memcmp(sig, PNGSIG, 8) != 0 || fstat(fileno(f), &sb) != 0) {
            fclose(f);
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "report: picture %s is not a PNG", p->png_path);
        }
        if ((uint64_t)sb.st_size > PICTURE_MAX_BYTES) {
            fclose(f);
            return sarco_fail(ctx, SARCO_ERR_LIMIT, "report: picture %s is past the %u MiB cap", p->png_path,
                              PICTURE_MAX_BYTES >> 20);
        }
        *png = malloc((size_t)sb.st_size);
        if (!*png) {
            fclose(f);
            return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "report: out of memory");
        }
        rewind(f);
        *n = fread(*png, 1, (size_t)sb.st_size, f);
        fclose(f);
        if (*n != (size_t)sb.st_size) {
            free(*png);
            *png = NULL;
            return sarco_fail(ctx, SARCO_ERR_IO, "report: picture %s changed while being read", p->png_path);
        }
        return SARCO_OK;
    }
    if (!p->rgb) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "report: picture %zu has no png_path and no rgb", idx);
    return sarco_png_encode(ctx, p->rgb, p->width, p->height, 3, NULL, png, n);
}

void sarco_report_inputs_init(sarco_report_inputs *in) {
    if (!in) return;
    memset(in, 0, sizeof *in);
    in->struct_size = sizeof *in;
}

void sarco_report_free(char *html) { free(html); }

sarco_status sarco_report_html(sarco_context *ctx, const sarco_report_inputs *user, char **html, size_t *len) {
    if (html) *html = NULL;
    if (len) *len = 0;
    if (!user || !html) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "report: inputs and html must not be NULL");
    sarco_report_inputs in;
    sarco_report_inputs_init(&in);
    if (user->struct_size == 0 || user->struct_size > sizeof in)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "report: struct_size is not set (call sarco_report_inputs_init first)");
    memcpy(&in, user, user->struct_size);
    if (in.npictures > REPORT_MAX_PICTURES)
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "report: %zu pictures (at most %d)", in.npictures,
                          REPORT_MAX_PICTURES);
    if (in.npictures && !in.pictures)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "report: npictures %zu with pictures NULL", in.npictures);

    json_t *seg = NULL, *dia = NULL, *l3 = NULL, *mea = NULL, *cfg = NULL;
    sarco_status st;
    page pg;
    memset(&pg, 0, sizeof pg);
    pg.ctx = ctx;
    sbuf *b = &pg.b;
    if ((st = parse_json(ctx, "segment", in.segment_json, &seg)) != SARCO_OK ||
        (st = parse_json(ctx, "diagnosis", in.diagnosis_json, &dia)) != SARCO_OK ||
        (st = parse_json(ctx, "L3", in.l3_json, &l3)) != SARCO_OK ||
        (st = parse_json(ctx, "measure", in.measure_json, &mea)) != SARCO_OK)
        goto done;

    /* the model: its file's hash and its config (without loading the weights) */
    const char *model_path = in.model_path;
    if (!model_path && seg) model_path = jstr(json_object_get(seg, "model"), "path");
    char sha[65] = "";
    const char *arch = seg ? jstr(json_object_get(seg, "model"), "arch") : NULL;
    if (model_path) {
        if ((st = sarco_sha256_file(ctx, model_path, sha)) != SARCO_OK) {
            char m[1024];
            snprintf(m, sizeof m, "%s", sarco_last_error(ctx));
            st = sarco_fail(ctx, st, "report: the model file is needed for its SHA-256 and card: %s (name it with "
                            "--model / model_path)", m);
            goto done;
        }
        sarco_st_file *f = NULL;
        if ((st = sarco_st_open(ctx, model_path, &f)) != SARCO_OK) goto done;
        if (f->config_json) cfg = json_loads(f->config_json, 0, NULL);
        sarco_st_close(f);
        if (cfg && !arch) arch = jstr(cfg, "arch");
    }
    const char *input = in.input_name;
    if (!input && seg) input = jstr(json_object_get(seg, "input"), "path");
    if (!input && l3) input = jstr(json_object_get(l3, "input"), "path");
    if (!input && mea) input = jstr(mea, "image_path") ? jstr(mea, "image_path") : jstr(mea, "labels_path");
    char date[64];
    if (in.date) {
        snprintf(date, sizeof date, "%s", in.date);
    } else {
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tmv);
    }
    const char *title = in.title ? in.title : "Body composition report";

    sb_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
               "<meta name=\"generator\" content=\"libsarco ");
    sb_esc(b, sarco_version_string());
    sb_puts(b, "\"><title>");
    sb_esc(b, title);
    if (input) {
        sb_puts(b, ": ");
        sb_esc(b, basename_of(input));
    }
    sb_printf(b, "</title><style>%s</style></head>\n<body>\n<header><h1>", CSS);
    sb_esc(b, title);
    sb_puts(b, "</h1><dl class=\"meta\">");
    if (input) {
        sb_puts(b, "<dt>Input file</dt><dd id=\"input\">");
        sb_esc(b, basename_of(input));
        sb_puts(b, "</dd>");
    }
    sb_puts(b, "<dt>Date</dt><dd id=\"date\">");
    sb_esc(b, date);
    sb_puts(b, "</dd><dt>Software</dt><dd>libsarco ");
    sb_esc(b, sarco_version_string());
    sb_puts(b, "</dd>");
    if (model_path) {
        sb_puts(b, "<dt>Model</dt><dd id=\"model\">");
        sb_esc(b, basename_of(model_path));
        if (arch) {
            sb_puts(b, " (");
            sb_esc(b, arch);
            sb_puts(b, ")");
        }
        sb_puts(b, "</dd><dt>Model SHA-256</dt><dd class=\"hash\" id=\"sha256\">");
        sb_puts(b, sha);
        sb_puts(b, "</dd>");
    }
    sb_puts(b, "</dl></header>\n");
    if (is_demo_model(cfg)) {
        sb_puts(b, "<div class=\"warn\" id=\"demo-warning\">Demonstration model &mdash; not for clinical use.<span>");
        const char *d = jstr(cfg, "description");
        sb_esc(b, d ? d : "The model's configuration marks it as a demonstration model.");
        sb_puts(b, "</span></div>\n");
    }

    if (dia) { /* the verdicts first: what the reader came for; the criteria follow below */
        const json_t *sets = json_object_get(dia, "rule_sets");
        sb_puts(b, "<div class=\"verdict\" id=\"summary\">");
        for (size_t i = 0; i < (json_is_array(sets) ? json_array_size(sets) : 1); i++) {
            const json_t *rs = json_is_array(sets) ? json_array_get(sets, i) : dia;
            const char *t = jstr(rs, "title"), *nm = jstr(rs, "name"), *vt = jstr(rs, "verdict_text"),
                       *v = jstr(rs, "verdict");
            sb_puts(b, i ? "<br>" : "");
            sb_esc(b, t ? t : nm ? nm : "Rule set");
            sb_puts(b, ": <b>");
            sb_esc(b, vt ? vt : v ? v : "not given");
            sb_puts(b, "</b>");
        }
        sb_puts(b, "</div>\n");
    }

    for (size_t i = 0; i < in.npictures; i++) {
        uint8_t *png;
        size_t n;
        if ((st = picture_png(ctx, &in.pictures[i], i, &png, &n)) != SARCO_OK) goto done;
        if (i == 0) sb_puts(b, "<h2>Images</h2>");
        sb_puts(b, "<figure><img alt=\"");
        sb_esc(b, in.pictures[i].caption ? in.pictures[i].caption : "segmentation overlay");
        sb_puts(b, "\" src=\"data:image/png;base64,");
        sb_base64(b, png, n);
        free(png);
        sb_puts(b, "\">");
        if (in.pictures[i].caption) {
            sb_puts(b, "<figcaption>");
            sb_esc(b, in.pictures[i].caption);
            sb_puts(b, "</figcaption>");
        }
        sb_puts(b, "</figure>\n");
    }

    if (seg) segment_section(&pg, seg);
    if (l3) l3_section(&pg, l3);
    if (mea) measure_section(&pg, mea);
    if (dia) diagnosis_section(&pg, dia);
    if (cfg) model_card(&pg, cfg);
    sb_puts(b, "<footer>Generated by libsarco ");
    sb_esc(b, sarco_version_string());
    sb_puts(b, ". Research software, not a medical device: every measurement and verdict needs a clinician&rsquo;s "
               "review. This page holds no patient identifiers beyond the input file name.</footer>\n</body></html>\n");
    if (b->oom) {
        st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "report: out of memory");
        goto done;
    }
    *html = b->p;
    if (len) *len = b->n;
    b->p = NULL;
    st = SARCO_OK;
done:
    free(b->p);
    json_decref(seg);
    json_decref(dia);
    json_decref(l3);
    json_decref(mea);
    json_decref(cfg);
    return st;
}

sarco_status sarco_report_write(sarco_context *ctx, const sarco_report_inputs *in, const char *path) {
    if (!path || !*path) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "report: no output path");
    char *html;
    size_t n;
    sarco_status st = sarco_report_html(ctx, in, &html, &n);
    if (st != SARCO_OK) return st;
    st = sarco_write_file_atomic(ctx, path, html, n, NULL);
    free(html);
    return st;
}
