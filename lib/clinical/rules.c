/* Rule sets as data: finding a rules file (a path, $SARCO_RULES_PATH, the compiled-in copies of
 * rules/NAME.json) and checking it against the schema before anything is judged with it, so a broken
 * file fails whole with a message naming the entry. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clinical.h"

#define RULES_MAX_BYTES (1u << 20) /* a rules file is a few kB; refuse anything past 1 MiB */

int sarco_rules_compare(double v, const char *op, double t) {
    if (!strcmp(op, "<")) return v < t;
    if (!strcmp(op, "<=")) return v <= t;
    if (!strcmp(op, ">")) return v > t;
    if (!strcmp(op, ">=")) return v >= t;
    return -1;
}

static int is_num_op(const char *op) { return sarco_rules_compare(0.0, op, 0.0) >= 0; }

static int valid_name(const char *s) {
    if (!*s || strlen(s) > 64) return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

static const char *get_str(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

#define BAD(...) sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, __VA_ARGS__)

/* An id of a criterion or of one of the first nfind findings. */
static int known_id(const json_t *r, const char *id, size_t nfind) {
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r, "criteria"), i, c) if (!strcmp(get_str(c, "id"), id)) return 1;
    json_t *f = json_object_get(r, "findings");
    for (i = 0; i < nfind && i < json_array_size(f); i++)
        if (!strcmp(get_str(json_array_get(f, i), "id"), id)) return 1;
    return 0;
}

/* An expression: an id, {"any": [e...]}, {"any_measured": [e...]}, {"all": [e...]} or {"not": e}. */
static sarco_status check_expr(sarco_context *ctx, const char *where, const json_t *r, const json_t *e,
                               size_t nfind, int depth) {
    if (depth > 16) return BAD("%s: expression nested deeper than 16", where);
    if (json_is_string(e)) {
        if (!known_id(r, json_string_value(e), nfind))
            return BAD("%s: '%s' is neither a criterion nor an earlier finding", where, json_string_value(e));
        return SARCO_OK;
    }
    if (!json_is_object(e) || json_object_size(e) != 1)
        return BAD("%s: an expression is an id or an object with one of any, any_measured, all, not", where);
    const json_t *v;
    if ((v = json_object_get(e, "not"))) return check_expr(ctx, where, r, v, nfind, depth + 1);
    if (!(v = json_object_get(e, "any")) && !(v = json_object_get(e, "all")) && !(v = json_object_get(e, "any_measured")))
        return BAD("%s: an expression is an id or an object with one of any, any_measured, all, not", where);
    if (!json_is_array(v) || json_array_size(v) == 0) return BAD("%s: any/any_measured/all want a non-empty array", where);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        sarco_status s = check_expr(ctx, where, r, x, nfind, depth + 1);
        if (s != SARCO_OK) return s;
    }
    return SARCO_OK;
}

static sarco_status check_inputs(sarco_context *ctx, const char *w, const json_t *r) {
    const json_t *in = json_object_get(r, "inputs");
    if (!json_is_object(in)) return BAD("%s: 'inputs' must be an object", w);
    const char *k;
    json_t *d;
    json_object_foreach((json_t *)in, k, d) {
        if (!valid_name(k)) return BAD("%s: input name '%s' is not [a-z0-9_]+", w, k);
        if (!json_is_object(d)) return BAD("%s: input '%s' must be an object", w, k);
        const char *type = get_str(d, "type");
        if (!type) type = "number";
        if (!strcmp(type, "number") || !strcmp(type, "integer")) {
            const json_t *mn = json_object_get(d, "min"), *mx = json_object_get(d, "max");
            if (!get_str(d, "unit") || !json_is_number(mn) || !json_is_number(mx) ||
                json_number_value(mn) > json_number_value(mx))
                return BAD("%s: input '%s' needs a unit and a plausible range min <= max", w, k);
        } else if (!strcmp(type, "enum")) {
            const json_t *vals = json_object_get(d, "values");
            size_t i;
            json_t *v;
            if (!json_is_array(vals) || !json_array_size(vals)) return BAD("%s: enum input '%s' needs values", w, k);
            json_array_foreach(vals, i, v) if (!json_is_string(v)) return BAD("%s: enum '%s' values are strings", w, k);
        } else if (strcmp(type, "boolean")) {
            return BAD("%s: input '%s' has type '%s' (number, integer, enum or boolean)", w, k, type);
        }
        const json_t *req = json_object_get(d, "requires");
        if (req) {
            size_t i;
            json_t *v;
            if (!json_is_array(req)) return BAD("%s: input '%s': requires is an array of inputs", w, k);
            json_array_foreach(req, i, v) if (!json_is_string(v) || !json_object_get(in, json_string_value(v)))
                return BAD("%s: input '%s' requires an undeclared input", w, k);
        }
    }
    return SARCO_OK;
}

static sarco_status check_criteria(sarco_context *ctx, const char *w, const json_t *r) {
    const json_t *in = json_object_get(r, "inputs"), *cr = json_object_get(r, "criteria"),
                 *sexes = json_object_get(r, "sexes");
    if (!json_is_array(cr) || !json_array_size(cr)) return BAD("%s: 'criteria' must be a non-empty array", w);
    size_t i, j;
    json_t *c, *o;
    json_array_foreach(cr, i, c) {
        const char *id = get_str(c, "id"), *input = get_str(c, "input"), *op = get_str(c, "op");
        if (!id || !valid_name(id)) return BAD("%s: criterion %zu needs an id of [a-z0-9_]+", w, i);
        json_array_foreach(cr, j, o) if (j < i && !strcmp(get_str(o, "id"), id))
            return BAD("%s: criterion id '%s' appears twice", w, id);
        const json_t *d = input ? json_object_get(in, input) : NULL;
        if (!d) return BAD("%s: criterion '%s' reads input '%s', which 'inputs' does not declare", w, id,
                           input ? input : "(none)");
        if (!get_str(c, "description")) return BAD("%s: criterion '%s' needs a description", w, id);
        const char *type = get_str(d, "type");
        if (type && !strcmp(type, "boolean")) {
            if (!op || strcmp(op, "==") || !json_is_boolean(json_object_get(c, "value")))
                return BAD("%s: criterion '%s' on a boolean wants op '==' and a true/false value", w, id);
        } else if (type && !strcmp(type, "enum")) {
            return BAD("%s: criterion '%s' compares an enum input; use it in 'when'", w, id);
        } else {
            const char *unit = get_str(c, "unit");
            if (!unit || strcmp(unit, get_str(d, "unit")))
                return BAD("%s: criterion '%s' has unit '%s' but input '%s' is in '%s'", w, id, unit ? unit : "(none)",
                           input, get_str(d, "unit"));
            if (!op || !is_num_op(op)) return BAD("%s: criterion '%s' needs op <, <=, > or >=", w, id);
            const json_t *th = json_object_get(c, "threshold");
            if (!json_is_object(th) || !json_object_size(th)) return BAD("%s: criterion '%s' needs thresholds per sex", w, id);
            const char *sx;
            json_t *tv;
            json_object_foreach((json_t *)th, sx, tv) {
                int listed = 0;
                json_array_foreach(sexes, j, o) listed |= !strcmp(json_string_value(o), sx);
                if (!listed || !json_is_number(tv))
                    return BAD("%s: criterion '%s': threshold for '%s' must be a number for a sex in 'sexes'", w, id, sx);
            }
        }
        const json_t *when = json_object_get(c, "when");
        if (when) {
            const char *wi = get_str(when, "input"), *wop = get_str(when, "op");
            const json_t *wd = wi ? json_object_get(in, wi) : NULL, *wv = json_object_get(when, "value");
            if (!wd || !wop) return BAD("%s: criterion '%s': 'when' needs a declared input and an op", w, id);
            const char *wt = get_str(wd, "type");
            if (wt && !strcmp(wt, "enum")) {
                int ok = 0;
                json_array_foreach(json_object_get(wd, "values"), j, o) ok |= json_is_string(wv) && json_equal(o, wv);
                if (strcmp(wop, "==") || !ok)
                    return BAD("%s: criterion '%s': 'when' on enum '%s' wants == one of its values", w, id, wi);
            } else if (!is_num_op(wop) || !json_is_number(wv)) {
                return BAD("%s: criterion '%s': 'when' wants a numeric op and value", w, id);
            }
        }
    }
    return SARCO_OK;
}

static sarco_status check_derived(sarco_context *ctx, const char *w, const json_t *r) {
    const json_t *dv = json_object_get(r, "derived"), *in = json_object_get(r, "inputs");
    if (!dv) return SARCO_OK;
    if (!json_is_object(dv)) return BAD("%s: 'derived' must be an object", w);
    const char *k;
    json_t *d;
    json_object_foreach((json_t *)dv, k, d) {
        const json_t *sum = json_object_get(d, "sum");
        if (!json_object_get(in, k)) return BAD("%s: derived '%s' is not a declared input", w, k);
        if (!json_is_array(sum) || !json_array_size(sum)) return BAD("%s: derived '%s' needs a 'sum' array", w, k);
        size_t i;
        json_t *t;
        json_array_foreach(sum, i, t) {
            if (json_is_string(t)) {
                if (!json_object_get(in, json_string_value(t)) || !strcmp(json_string_value(t), k))
                    return BAD("%s: derived '%s' adds '%s', not another declared input", w, k, json_string_value(t));
            } else if (!json_is_object(t) || !get_str(t, "if") || !known_id(r, get_str(t, "if"), 0) ||
                       !json_is_number(json_object_get(t, "then")) || !json_is_number(json_object_get(t, "else"))) {
                return BAD("%s: derived '%s': a term is an input or {\"if\": criterion, \"then\": n, \"else\": n}", w, k);
            }
        }
    }
    return SARCO_OK;
}

sarco_status sarco_rules_validate(sarco_context *ctx, const json_t *r, const char *w) {
    if (!json_is_object(r)) return BAD("%s: a rules file is a JSON object", w);
    const char *schema = get_str(r, "schema"), *name = get_str(r, "name"), *kind = get_str(r, "kind");
    if (!schema || strcmp(schema, "sarco.rules/1"))
        return BAD("%s: 'schema' must be \"sarco.rules/1\" (got %s)", w, schema ? schema : "none");
    if (!name || !valid_name(name)) return BAD("%s: 'name' must be [a-z0-9_]+", w);
    if (!kind || (strcmp(kind, "diagnosis") && strcmp(kind, "l3_smi_cutoffs")))
        return BAD("%s: 'kind' must be \"diagnosis\" or \"l3_smi_cutoffs\"", w);
    static const char *const text_keys[] = {"version", "title", "citation"};
    for (size_t i = 0; i < 3; i++)
        if (!get_str(r, text_keys[i]) || !*get_str(r, text_keys[i])) return BAD("%s: '%s' is required", w, text_keys[i]);
    const json_t *sexes = json_object_get(r, "sexes");
    size_t i;
    json_t *v;
    if (!json_is_array(sexes) || !json_array_size(sexes)) return BAD("%s: 'sexes' must list \"M\" and/or \"F\"", w);
    json_array_foreach(sexes, i, v) if (!json_is_string(v) || (strcmp(json_string_value(v), "M") &&
                                                               strcmp(json_string_value(v), "F")))
        return BAD("%s: 'sexes' must list \"M\" and/or \"F\"", w);
    sarco_status s = check_inputs(ctx, w, r);
    if (s == SARCO_OK) s = check_criteria(ctx, w, r);
    if (s == SARCO_OK) s = check_derived(ctx, w, r);
    if (s != SARCO_OK) return s;
    const json_t *fd = json_object_get(r, "findings"), *vd = json_object_get(r, "verdicts");
    if (!json_is_array(fd) || !json_is_array(vd) || !json_array_size(vd))
        return BAD("%s: 'findings' and a non-empty 'verdicts' must be arrays", w);
    char where[256];
    json_array_foreach(fd, i, v) {
        const char *id = get_str(v, "id");
        if (!id || !valid_name(id) || !get_str(v, "description") || known_id(r, id, i))
            return BAD("%s: finding %zu needs a new id and a description", w, i);
        snprintf(where, sizeof where, "%s: finding '%s'", w, id);
        if ((s = check_expr(ctx, where, r, json_object_get(v, "if"), i, 0)) != SARCO_OK) return s;
    }
    json_array_foreach(vd, i, v) {
        const char *id = get_str(v, "id");
        if (!id || !valid_name(id) || !get_str(v, "text")) return BAD("%s: verdict %zu needs an id and a text", w, i);
        snprintf(where, sizeof where, "%s: verdict '%s'", w, id);
        if ((s = check_expr(ctx, where, r, json_object_get(v, "if"), json_array_size(fd), 0)) != SARCO_OK) return s;
    }
    const char *mf = get_str(r, "mass_finding");
    const char *prov = get_str(json_object_get(r, "provides"), "low_muscle_mass");
    if (mf && !known_id(r, mf, json_array_size(fd))) return BAD("%s: mass_finding '%s' is not a finding", w, mf);
    if (prov && !known_id(r, prov, json_array_size(fd))) return BAD("%s: provides '%s' is not a finding", w, prov);
    if (!strcmp(kind, "l3_smi_cutoffs") && !prov)
        return BAD("%s: an l3_smi_cutoffs table must say which finding it provides (provides.low_muscle_mass)", w);
    return SARCO_OK;
}

static int is_path(const char *s) {
    size_t n = strlen(s);
    return strchr(s, '/') || (n > 5 && !strcmp(s + n - 5, ".json"));
}

/* Reads a whole small file into a NUL-terminated buffer. */
static sarco_status slurp(sarco_context *ctx, const char *path, char **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return sarco_fail(ctx, SARCO_ERR_IO, "cannot open rules file %s", path);
    char *buf = malloc(RULES_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, RULES_MAX_BYTES + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "out of memory reading %s", path);
    if (err || n > RULES_MAX_BYTES) {
        free(buf);
        return sarco_fail(ctx, err ? SARCO_ERR_IO : SARCO_ERR_LIMIT, "%s: %s", path,
                          err ? "read error" : "larger than 1 MiB, not a rules file");
    }
    buf[n] = 0;
    *out = buf;
    return SARCO_OK;
}

static sarco_status parse(sarco_context *ctx, const char *text, const char *where, json_t **out) {
    json_error_t je;
    json_t *r = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!r) return BAD("%s: not valid JSON: %s (line %d)", where, je.text, je.line);
    sarco_status s = sarco_rules_validate(ctx, r, where);
    if (s != SARCO_OK) {
        json_decref(r);
        return s;
    }
    *out = r;
    return SARCO_OK;
}

sarco_status sarco_rules_load(sarco_context *ctx, const char *name, json_t **out, const char **source) {
    *out = NULL;
    *source = NULL;
    if (!name || !*name) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "no rule set named");
    char *text = NULL;
    sarco_status s;
    if (is_path(name)) {
        if ((s = slurp(ctx, name, &text)) != SARCO_OK) return s;
        s = parse(ctx, text, name, out);
        free(text);
        if (s == SARCO_OK) {
            json_object_set_new(*out, "_source", json_string(name));
            *source = get_str(*out, "_source");
        }
        return s;
    }
    if (!valid_name(name))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "'%s' is not a rule set name ([a-z0-9_]+) or a path", name);
    const char *env = getenv("SARCO_RULES_PATH");
    while (env && *env) {
        const char *end = strchr(env, ':');
        size_t len = end ? (size_t)(end - env) : strlen(env);
        char path[4096];
        if (len > 0 && len + strlen(name) + 7 < sizeof path) {
            snprintf(path, sizeof path, "%.*s/%s.json", (int)len, env, name);
            FILE *f = fopen(path, "rb");
            if (f) {
                fclose(f);
                return sarco_rules_load(ctx, path, out, source);
            }
        }
        env = end ? end + 1 : NULL;
    }
    for (const sarco_rules_blob *b = sarco_rules_builtin; b->name; b++)
        if (!strcmp(b->name, name)) {
            s = parse(ctx, b->text, name, out);
            if (s == SARCO_OK && strcmp(get_str(*out, "name"), name))
                s = BAD("built-in rules file %s.json names itself '%s'", name, get_str(*out, "name"));
            if (s != SARCO_OK) {
                json_decref(*out);
                *out = NULL;
                return s;
            }
            *source = "builtin";
            return SARCO_OK;
        }
    char known[512] = "";
    for (const sarco_rules_blob *b = sarco_rules_builtin; b->name; b++) {
        if (*known) strncat(known, ", ", sizeof known - strlen(known) - 1);
        strncat(known, b->name, sizeof known - strlen(known) - 1);
    }
    return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "unknown rule set '%s' (built in: %s; or a path to a .json file)",
                      name, known);
}

sarco_status sarco_rules_get(sarco_context *ctx, const char *name, char **out) {
    if (!out) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_rules_get: out is NULL");
    *out = NULL;
    json_t *r;
    const char *src;
    sarco_status s = sarco_rules_load(ctx, name, &r, &src);
    if (s != SARCO_OK) return s;
    json_object_del(r, "_source");
    *out = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(r);
    return *out ? SARCO_OK : sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_rules_get: out of memory");
}

sarco_status sarco_rules_list(sarco_context *ctx, char **out) {
    if (!out) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_rules_list: out is NULL");
    *out = NULL;
    json_t *root = json_object(), *arr = json_array(), *sp = json_array();
    for (const sarco_rules_blob *b = sarco_rules_builtin; b->name; b++) {
        json_t *r;
        const char *src;
        sarco_status s = parse(ctx, b->text, b->name, &r);
        (void)src;
        if (s != SARCO_OK) {
            json_decref(root);
            json_decref(arr);
            json_decref(sp);
            return s;
        }
        json_array_append_new(arr, json_pack("{s:s, s:O, s:O, s:O}", "name", b->name, "version",
                                             json_object_get(r, "version"), "kind", json_object_get(r, "kind"),
                                             "title", json_object_get(r, "title")));
        json_decref(r);
    }
    const char *env = getenv("SARCO_RULES_PATH");
    while (env && *env) {
        const char *end = strchr(env, ':');
        size_t len = end ? (size_t)(end - env) : strlen(env);
        if (len) json_array_append_new(sp, json_stringn(env, len));
        env = end ? end + 1 : NULL;
    }
    json_object_set_new(root, "builtin", arr);
    json_object_set_new(root, "search_path", sp);
    *out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return *out ? SARCO_OK : sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_rules_list: out of memory");
}

void sarco_json_free(char *json) { free(json); }
