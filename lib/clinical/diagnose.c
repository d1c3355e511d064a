/* The diagnosis engine: a subject's measurements judged against rule sets held as data.
 *
 * Every criterion compares one input with a per-sex threshold; a missing input leaves it unknown
 * and the findings and verdicts are three-valued (any / all / not over true, false, unknown;
 * criteria that do not apply, such as a threshold for the other sex or a BMI branch not taken, are
 * left out). The verdict is the first in the file's order that is true; the more severe ones before
 * it that are still unknown are reported as not ruled out, with the inputs that would decide them.
 * An L3 SMI table can stand in for a rule set's muscle-mass finding when the caller names it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clinical.h"

#define MAX_SETS 8
#define NA 3 /* a criterion that does not apply: skipped by any/all */

static const char *get_str(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Subject fields every rule set shares (units fixed, plausible ranges). */
static const struct core_input {
    const char *name, *unit, *label;
    double min, max;
} CORE[] = {
    {"age", "years", "age", 18, 130},
    {"height_m", "m", "body height", 0.5, 2.6},
    {"weight_kg", "kg", "body weight", 10, 400},
    {"bmi", "kg/m2", "body mass index", 8, 100},
};
#define NCORE (sizeof CORE / sizeof *CORE)

typedef struct engine {
    sarco_context *ctx;
    const char *sex;
    json_t *vals;     /* name -> {"value", "unit", "source"}: the validated inputs */
    json_t *warnings; /* array of strings */
} engine;

/* ---- inputs ------------------------------------------------------------------------------- */

/* Units compare after dropping '^' and spaces, so "kg/m^2" is "kg/m2". */
static int same_unit(const char *a, const char *b) {
    for (;;) {
        while (*a == '^' || *a == ' ') a++;
        while (*b == '^' || *b == ' ') b++;
        if (*a != *b) return 0;
        if (!*a) return 1;
        a++, b++;
    }
}

/* The declaration of input `name` in the first set that has one (NULL: none). */
static const json_t *find_decl(json_t *const *sets, size_t nsets, const char *name) {
    for (size_t i = 0; i < nsets; i++) {
        const json_t *d = json_object_get(json_object_get(sets[i], "inputs"), name);
        if (d) return d;
    }
    return NULL;
}

/* Checks one given value against a declaration (type, unit, range) and stores it in e->vals. */
static sarco_status take_input(engine *e, const char *name, const json_t *given, const char *type, const char *unit,
                               double min, double max, const json_t *decl, const char *source) {
    sarco_context *ctx = e->ctx;
    const json_t *v = given;
    const char *gunit = NULL;
    if (json_is_object(given)) {
        v = json_object_get(given, "value");
        const json_t *u = json_object_get(given, "unit");
        if (u && !json_is_string(u)) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: 'unit' must be a string", name);
        gunit = u ? json_string_value(u) : NULL;
        if (!v) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: an object needs a 'value'", name);
    }
    if (!strcmp(type, "enum")) {
        size_t i;
        json_t *o;
        int ok = 0;
        json_array_foreach(json_object_get(decl, "values"), i, o) ok |= json_is_string(v) && json_equal(o, v);
        if (!ok) {
            char *vs = json_dumps(json_object_get(decl, "values"), JSON_COMPACT);
            sarco_status s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s must be one of %s", name, vs ? vs : "?");
            free(vs);
            return s;
        }
    } else if (!strcmp(type, "boolean")) {
        if (!json_is_boolean(v)) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s must be true or false", name);
    } else {
        if (!json_is_number(v))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s must be a number in %s", name, unit);
        if (gunit && !same_unit(gunit, unit))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "%s: the value is in '%s' but this measure is in '%s'; convert it first", name, gunit, unit);
        double x = json_number_value(v);
        if (!isfinite(x) || x < min || x > max)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "%s = %g %s is outside the plausible range %g..%g %s", name, x, unit, min, max, unit);
        if (!strcmp(type, "integer") && x != floor(x))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s = %g must be a whole number of %s", name, x, unit);
    }
    json_t *rec = json_object();
    json_object_set_new(rec, "value", json_is_number(v) ? json_real(json_number_value(v)) : json_deep_copy(v));
    if (unit) json_object_set_new(rec, "unit", json_string(unit));
    json_object_set_new(rec, "source", json_string(source));
    json_object_set_new(e->vals, name, rec);
    return SARCO_OK;
}

static sarco_status take_declared(engine *e, json_t *const *sets, size_t nsets, const char *name, const json_t *given,
                                  const char *source) {
    for (size_t k = 0; k < NCORE; k++)
        if (!strcmp(CORE[k].name, name))
            return take_input(e, name, given, "number", CORE[k].unit, CORE[k].min, CORE[k].max, NULL, source);
    const json_t *d = find_decl(sets, nsets, name);
    if (!d) {
        char known[1024] = "sex";
        for (size_t k = 0; k < NCORE; k++) {
            strncat(known, ", ", sizeof known - strlen(known) - 1);
            strncat(known, CORE[k].name, sizeof known - strlen(known) - 1);
        }
        for (size_t i = 0; i < nsets; i++) {
            const char *k;
            json_t *x;
            json_object_foreach(json_object_get(sets[i], "inputs"), k, x) if (!strstr(known, k)) {
                strncat(known, ", ", sizeof known - strlen(known) - 1);
                strncat(known, k, sizeof known - strlen(known) - 1);
            }
        }
        return sarco_fail(e->ctx, SARCO_ERR_INVALID_ARGUMENT, "unknown measure '%s' for these rule sets (known: %s)", name,
                          known);
    }
    /* every set that declares it checks it (a value must be plausible for each) */
    for (size_t i = 0; i < nsets; i++) {
        const json_t *di = json_object_get(json_object_get(sets[i], "inputs"), name);
        if (!di) continue;
        const char *type = get_str(di, "type");
        sarco_status s = take_input(e, name, given, type ? type : "number", get_str(di, "unit"),
                                    json_number_value(json_object_get(di, "min")),
                                    json_number_value(json_object_get(di, "max")), di, source);
        if (s != SARCO_OK) return s;
    }
    return SARCO_OK;
}

static int have(const engine *e, const char *name) { return json_object_get(e->vals, name) != NULL; }
static const json_t *val(const engine *e, const char *name) {
    return json_object_get(json_object_get(e->vals, name), "value");
}

/* ---- evaluation of one rule set ------------------------------------------------------------ */

typedef struct set_eval {
    engine *e;
    const json_t *r;
    size_t nc, nf;
    int *cstate;       /* per criterion: -1 not yet, else sarco_tv or NA */
    json_t **centry;   /* per criterion: the output entry */
    int *fstate;       /* per finding */
    const char *mass_finding;
    int mass_override; /* -1 none, else the stand-in's sarco_tv */
} set_eval;

static int eval_criterion(set_eval *s, size_t i);

/* Value of an input for this set: given, or derived ("sum" terms) when every term is known.
 * Returns 1 and sets *x (number) or *j (other JSON) when known; appends missing inputs to miss. */
static int input_value(set_eval *s, const char *name, double *x, const json_t **j, const char **source, json_t *miss) {
    const json_t *v = val(s->e, name);
    if (v) {
        if (json_is_number(v)) *x = json_number_value(v);
        *j = v;
        *source = get_str(json_object_get(s->e->vals, name), "source");
        return 1;
    }
    const json_t *d = json_object_get(json_object_get(s->r, "derived"), name);
    if (!d) {
        json_array_append_new(miss, json_string(name));
        return 0;
    }
    double sum = 0.0;
    int known = 1;
    size_t k;
    json_t *t;
    json_t *sub = json_array();
    json_array_foreach(json_object_get(d, "sum"), k, t) {
        if (json_is_string(t)) {
            const json_t *tv = val(s->e, json_string_value(t));
            if (tv && json_is_number(tv))
                sum += json_number_value(tv);
            else {
                known = 0;
                json_array_append_new(sub, json_string(json_string_value(t)));
            }
        } else {
            const char *cid = get_str(t, "if");
            size_t ci;
            json_t *c;
            json_array_foreach(json_object_get(s->r, "criteria"), ci, c) if (!strcmp(get_str(c, "id"), cid)) break;
            int st = eval_criterion(s, ci);
            if (st == SARCO_TV_TRUE || st == SARCO_TV_FALSE)
                sum += json_number_value(json_object_get(t, st == SARCO_TV_TRUE ? "then" : "else"));
            else {
                known = 0;
                json_array_extend(sub, json_object_get(s->centry[ci], "missing"));
            }
        }
    }
    if (!known) {
        json_array_append_new(miss, json_string(name));
        json_array_extend(miss, sub);
        json_decref(sub);
        return 0;
    }
    json_decref(sub);
    *x = sum;
    *j = NULL;
    *source = "derived";
    return 1;
}

static int eval_criterion(set_eval *s, size_t i) {
    if (s->cstate[i] >= 0) return s->cstate[i];
    s->cstate[i] = SARCO_TV_UNKNOWN; /* guards against a derived input that loops back */
    const json_t *c = json_array_get(json_object_get(s->r, "criteria"), i);
    const char *input = get_str(c, "input"), *op = get_str(c, "op");
    json_t *en = json_object(), *miss = json_array();
    json_object_set_new(en, "id", json_string(get_str(c, "id")));
    json_object_set_new(en, "description", json_string(get_str(c, "description")));
    json_object_set_new(en, "table", json_string(get_str(s->r, "name")));
    json_object_set_new(en, "input", json_string(input));
    const json_t *th = json_object_get(c, "threshold");
    const json_t *bval = json_object_get(c, "value");
    json_t *thr = bval ? json_deep_copy(bval) : json_object_get(th, s->e->sex) ?
                                                 json_real(json_number_value(json_object_get(th, s->e->sex))) : json_null();
    json_object_set_new(en, "unit", get_str(c, "unit") ? json_string(get_str(c, "unit")) : json_null());
    json_object_set_new(en, "op", json_string(op));
    json_object_set_new(en, "threshold", thr);
    json_object_set_new(en, "sex", json_string(s->e->sex));
    int st = SARCO_TV_UNKNOWN;
    const char *status = "missing";
    json_t *value = json_null();
    if (!bval && !json_object_get(th, s->e->sex)) {
        st = NA;
        status = "not_applicable";
        json_object_set_new(en, "reason", json_string("no threshold for this sex in the table"));
    }
    const json_t *when = json_object_get(c, "when");
    if (st != NA && when) {
        const char *wi = get_str(when, "input"), *wop = get_str(when, "op");
        const json_t *wv = json_object_get(when, "value");
        json_t *wen = json_pack("{s:s, s:s, s:O}", "input", wi, "op", wop, "value", wv);
        double x = 0.0;
        const json_t *j = NULL;
        const char *src = NULL;
        int wmet = -1;
        if (input_value(s, wi, &x, &j, &src, miss))
            wmet = json_is_string(wv) ? json_equal(j, wv) : sarco_rules_compare(x, wop, json_number_value(wv));
        json_object_set_new(wen, "met", wmet < 0 ? json_null() : json_boolean(wmet));
        json_object_set_new(en, "when", wen);
        if (wmet == 0) {
            st = NA;
            status = "not_applicable";
        }
    }
    if (st != NA) {
        double x = 0.0;
        const json_t *j = NULL;
        const char *src = NULL;
        if (input_value(s, input, &x, &j, &src, miss)) {
            value = j && !json_is_number(j) ? json_deep_copy(j) : json_real(x);
            json_object_set_new(en, "value_source", json_string(src));
            if (json_array_size(miss) == 0) { /* the 'when' is known too */
                int met = bval ? json_equal(j, bval) : sarco_rules_compare(x, op, json_number_value(json_object_get(th, s->e->sex)));
                st = met ? SARCO_TV_TRUE : SARCO_TV_FALSE;
                status = met ? "met" : "not_met";
            }
        }
    }
    json_object_set_new(en, "value", value);
    json_object_set_new(en, "status", json_string(status));
    json_object_set_new(en, "met", st == SARCO_TV_TRUE ? json_true() : st == SARCO_TV_FALSE ? json_false() : json_null());
    json_object_set_new(en, "missing", miss);
    s->centry[i] = en;
    s->cstate[i] = st;
    return st;
}

static int find_index(const json_t *arr, const char *id) {
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o) if (!strcmp(get_str(o, "id"), id)) return (int)i;
    return -1;
}

static int eval_expr(set_eval *s, const json_t *x) {
    if (json_is_string(x)) {
        const char *id = json_string_value(x);
        int i = find_index(json_object_get(s->r, "criteria"), id);
        if (i >= 0) return eval_criterion(s, (size_t)i);
        i = find_index(json_object_get(s->r, "findings"), id);
        return s->fstate[i];
    }
    const json_t *v;
    if ((v = json_object_get(x, "not"))) {
        int t = eval_expr(s, v);
        return t == SARCO_TV_TRUE ? SARCO_TV_FALSE : t == SARCO_TV_FALSE ? SARCO_TV_TRUE : t;
    }
    /* any_measured: alternative tests of one quality (gait speed, chair stand, SPPB): whichever
     * were done decide, the ones not done do not keep the finding open */
    const int measured = json_object_get(x, "any_measured") != NULL;
    const int any = measured || json_object_get(x, "any") != NULL;
    v = measured ? json_object_get(x, "any_measured") : any ? json_object_get(x, "any") : json_object_get(x, "all");
    int seen = 0, unknown = 0, known = 0, decisive = 0;
    size_t i;
    json_t *t;
    json_array_foreach(v, i, t) {
        int r = eval_expr(s, t);
        if (r == NA) continue;
        seen = 1;
        if (r == SARCO_TV_UNKNOWN) unknown = 1;
        else known = 1;
        if (r == (any ? SARCO_TV_TRUE : SARCO_TV_FALSE)) decisive = 1;
    }
    if (!seen) return NA;
    if (decisive) return any ? SARCO_TV_TRUE : SARCO_TV_FALSE;
    if (unknown && !(measured && known)) return SARCO_TV_UNKNOWN;
    return any ? SARCO_TV_FALSE : SARCO_TV_TRUE;
}

/* The inputs that would settle an unknown expression. */
static void collect_missing(set_eval *s, const json_t *x, json_t *out) {
    if (eval_expr(s, x) != SARCO_TV_UNKNOWN) return;
    if (json_is_string(x)) {
        const char *id = json_string_value(x);
        int i = find_index(json_object_get(s->r, "criteria"), id);
        if (i >= 0) {
            size_t k;
            json_t *m;
            json_array_foreach(json_object_get(s->centry[i], "missing"), k, m) {
                int dup = 0;
                size_t q;
                json_t *o;
                json_array_foreach(out, q, o) dup |= json_equal(o, m);
                if (!dup) json_array_append(out, m);
            }
            return;
        }
        i = find_index(json_object_get(s->r, "findings"), id);
        if (s->mass_override >= 0 && s->mass_finding && !strcmp(id, s->mass_finding)) return;
        collect_missing(s, json_object_get(json_array_get(json_object_get(s->r, "findings"), (size_t)i), "if"), out);
        return;
    }
    const json_t *v = json_object_get(x, "not");
    if (v) {
        collect_missing(s, v, out);
        return;
    }
    v = json_object_get(x, "any") ? json_object_get(x, "any")
        : json_object_get(x, "all") ? json_object_get(x, "all") : json_object_get(x, "any_measured");
    size_t i;
    json_t *t;
    json_array_foreach(v, i, t) collect_missing(s, t, out);
}

static json_t *tv_json(int t) {
    return t == SARCO_TV_TRUE ? json_true() : (t == SARCO_TV_FALSE || t == NA) ? json_false() : json_null();
}

/* Judges one set; *provided gets the tv of the finding named by provides.low_muscle_mass (tables). */
static sarco_status eval_set(engine *e, const json_t *r, const char *source, int mass_override,
                             const json_t *mass_source, json_t **out, int *provided) {
    set_eval s = {.e = e, .r = r, .mass_override = mass_override};
    s.nc = json_array_size(json_object_get(r, "criteria"));
    s.nf = json_array_size(json_object_get(r, "findings"));
    s.mass_finding = get_str(r, "mass_finding");
    s.cstate = malloc(s.nc * sizeof *s.cstate);
    s.centry = calloc(s.nc, sizeof *s.centry);
    s.fstate = malloc((s.nf ? s.nf : 1) * sizeof *s.fstate);
    if (!s.cstate || !s.centry || !s.fstate) {
        free(s.cstate), free(s.centry), free(s.fstate);
        return sarco_fail(e->ctx, SARCO_ERR_OUT_OF_MEMORY, "diagnose: out of memory");
    }
    for (size_t i = 0; i < s.nc; i++) s.cstate[i] = -1;
    for (size_t i = 0; i < s.nf; i++) s.fstate[i] = SARCO_TV_UNKNOWN;
    for (size_t i = 0; i < s.nc; i++) eval_criterion(&s, i);

    json_t *res = json_object();
    json_object_set_new(res, "name", json_string(get_str(r, "name")));
    json_object_set_new(res, "version", json_string(get_str(r, "version")));
    json_object_set_new(res, "kind", json_string(get_str(r, "kind")));
    json_object_set_new(res, "title", json_string(get_str(r, "title")));
    json_object_set_new(res, "citation", json_string(get_str(r, "citation")));
    json_object_set_new(res, "source", json_string(source));
    json_t *findings = json_array();
    for (size_t i = 0; i < s.nf; i++) {
        const json_t *f = json_array_get(json_object_get(r, "findings"), i);
        const char *id = get_str(f, "id");
        json_t *fe = json_pack("{s:s, s:s}", "id", id, "description", get_str(f, "description"));
        if (mass_override >= 0 && s.mass_finding && !strcmp(id, s.mass_finding)) {
            s.fstate[i] = mass_override;
            json_object_set_new(fe, "decided_by", json_deep_copy(mass_source));
        } else {
            int t = eval_expr(&s, json_object_get(f, "if"));
            s.fstate[i] = t == NA ? SARCO_TV_FALSE : t;
        }
        json_object_set_new(fe, "met", tv_json(s.fstate[i]));
        json_array_append_new(findings, fe);
    }
    json_t *criteria = json_array();
    for (size_t i = 0; i < s.nc; i++) json_array_append_new(criteria, s.centry[i]);
    json_object_set_new(res, "criteria", criteria);
    json_object_set_new(res, "findings", findings);

    const json_t *vd = json_object_get(r, "verdicts");
    json_t *not_ruled_out = json_array(), *missing = json_array();
    const json_t *chosen = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(vd, i, v) {
        int t = eval_expr(&s, json_object_get(v, "if"));
        if (t == SARCO_TV_TRUE) {
            chosen = v;
            break;
        }
        if (t == SARCO_TV_UNKNOWN) {
            json_array_append_new(not_ruled_out, json_string(get_str(v, "id")));
            collect_missing(&s, json_object_get(v, "if"), missing);
        }
    }
    json_object_set_new(res, "verdict", json_string(chosen ? get_str(chosen, "id") : "undetermined"));
    json_object_set_new(res, "verdict_text",
                        json_string(chosen ? get_str(chosen, "text") : "undetermined: measurements are missing"));
    json_object_set_new(res, "decided", json_boolean(chosen && json_array_size(not_ruled_out) == 0));
    json_object_set_new(res, "not_ruled_out", not_ruled_out);
    json_object_set_new(res, "missing", missing);
    const char *prov = get_str(json_object_get(r, "provides"), "low_muscle_mass");
    if (prov && provided) *provided = s.fstate[find_index(json_object_get(r, "findings"), prov)];
    const json_t *notes = json_object_get(r, "notes");
    json_object_set_new(res, "notes", notes ? json_deep_copy(notes) : json_array());
    free(s.cstate), free(s.centry), free(s.fstate);
    *out = res;
    return SARCO_OK;
}

/* ---- sarco_diagnose ------------------------------------------------------------------------- */

static sarco_status parse_sex(engine *e, const json_t *v) {
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (!s) return sarco_fail(e->ctx, SARCO_ERR_INVALID_ARGUMENT, "\"sex\" is required: \"M\" or \"F\"");
    if (!strcmp(s, "M") || !strcmp(s, "m") || !strcmp(s, "male"))
        e->sex = "M";
    else if (!strcmp(s, "F") || !strcmp(s, "f") || !strcmp(s, "female"))
        e->sex = "F";
    else
        return sarco_fail(e->ctx, SARCO_ERR_UNSUPPORTED,
                          "sex '%s' is not covered: the cut-off tables are given for M and F only", s);
    return SARCO_OK;
}

/* The L3 SMI (and muscle attenuation) from a `sarco l3` report: measures.smi_cm2_m2, or
 * measures.sma_cm2 / height^2 when the report had no height. */
static sarco_status take_measurements(engine *e, json_t *const *sets, size_t nsets, const json_t *m) {
    if (!json_is_object(m)) return sarco_fail(e->ctx, SARCO_ERR_INVALID_ARGUMENT, "\"measurements\" must be an object");
    const json_t *ms = json_object_get(m, "measures");
    if (!json_is_object(ms))
        return sarco_fail(e->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "measurements: no \"measures\" object (expected a `sarco l3` report)");
    sarco_status st = SARCO_OK;
    const json_t *smi = json_object_get(ms, "smi_cm2_m2"), *sma = json_object_get(ms, "sma_cm2");
    if (!have(e, "smi_cm2_m2")) {
        if (json_is_number(smi))
            st = take_declared(e, sets, nsets, "smi_cm2_m2", smi, "measurements");
        else if (json_is_number(sma) && have(e, "height_m")) {
            double h = json_number_value(val(e, "height_m"));
            json_t *x = json_real(json_number_value(sma) / (h * h));
            st = take_declared(e, sets, nsets, "smi_cm2_m2", x, "measurements: sma_cm2 / height_m^2");
            json_decref(x);
        } else
            return sarco_fail(e->ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "measurements: neither measures.smi_cm2_m2 nor measures.sma_cm2 with a height_m");
    }
    const json_t *att = json_object_get(ms, "muscle_attenuation_hu");
    if (st == SARCO_OK && json_is_number(att) && !have(e, "muscle_attenuation_hu") &&
        find_decl(sets, nsets, "muscle_attenuation_hu"))
        st = take_declared(e, sets, nsets, "muscle_attenuation_hu", att, "measurements");
    return st;
}

static void free_sets(json_t **sets, size_t n) {
    for (size_t i = 0; i < n; i++) json_decref(sets[i]);
}

sarco_status sarco_diagnose(sarco_context *ctx, const char *rules, const char *input_json, char **output_json) {
    if (!output_json) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_diagnose: output_json is NULL");
    *output_json = NULL;
    if (!input_json) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_diagnose: input_json is NULL");
    json_error_t je;
    json_t *in = json_loads(input_json, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(in)) {
        json_decref(in);
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_diagnose: the input is not a JSON object%s%s",
                          in ? "" : ": ", in ? "" : je.text);
    }
    engine e = {.ctx = ctx, .vals = json_object(), .warnings = json_array()};
    json_t *sets[MAX_SETS + 1] = {0}, *out = NULL, *table = NULL;
    const char *sources[MAX_SETS + 1] = {0}, *tsource = NULL;
    size_t nsets = 0;
    sarco_status s = SARCO_OK;
    char names[1024];

    /* the rule sets */
    const json_t *jr = json_object_get(in, "rules");
    if (!rules) {
        if (json_is_string(jr))
            rules = json_string_value(jr);
        else {
            s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "no rule set: pass rules or an input \"rules\" entry");
            goto done;
        }
    }
    if (strlen(rules) >= sizeof names) {
        s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "rules: the list is too long");
        goto done;
    }
    strcpy(names, rules);
    for (char *tok = strtok(names, ","); tok; tok = strtok(NULL, ",")) {
        if (nsets == MAX_SETS) {
            s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "rules: at most %d rule sets at once", MAX_SETS);
            goto done;
        }
        if ((s = sarco_rules_load(ctx, tok, &sets[nsets], &sources[nsets])) != SARCO_OK) goto done;
        nsets++;
    }
    if (!nsets) {
        s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "rules: no rule set named");
        goto done;
    }

    /* an imaging stand-in for muscle mass, only when the caller names the table */
    const json_t *mf = json_object_get(in, "mass_from");
    char measure[64] = "", tname[512] = "";
    if (mf) {
        const char *m = json_is_string(mf) ? json_string_value(mf) : "";
        const char *colon = strchr(m, ':');
        if (!colon || colon == m || !colon[1] || (size_t)(colon - m) >= sizeof measure || strlen(colon + 1) >= sizeof tname) {
            s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "mass_from must read MEASURE:TABLE, e.g. l3_smi:prado2008");
            goto done;
        }
        snprintf(measure, sizeof measure, "%.*s", (int)(colon - m), m);
        snprintf(tname, sizeof tname, "%s", colon + 1);
        if (strcmp(measure, "l3_smi")) {
            s = sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                           "mass_from: no cut-off tables for '%s' (only l3_smi, the L3 skeletal muscle index)", measure);
            goto done;
        }
        if ((s = sarco_rules_load(ctx, tname, &table, &tsource)) != SARCO_OK) goto done;
        if (strcmp(get_str(table, "kind"), "l3_smi_cutoffs")) {
            s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "mass_from: '%s' is a %s rule set, not an L3 SMI table", tname,
                           get_str(table, "kind"));
            goto done;
        }
        sets[nsets] = table; /* declares smi_cm2_m2 & co. for the input checks */
    }
    const size_t ndecl = nsets + (table != NULL);

    /* the subject and the measurements */
    if ((s = parse_sex(&e, json_object_get(in, "sex"))) != SARCO_OK) goto done;
    const char *k;
    json_t *v;
    json_object_foreach(in, k, v) {
        if (!strcmp(k, "rules") || !strcmp(k, "mass_from") || !strcmp(k, "measurements") || !strcmp(k, "sex") ||
            json_is_null(v))
            continue;
        if ((s = take_declared(&e, sets, ndecl, k, v, "given")) != SARCO_OK) goto done;
    }
    if (!have(&e, "bmi") && have(&e, "weight_kg") && have(&e, "height_m")) {
        double h = json_number_value(val(&e, "height_m"));
        /* rounded to 1e-6 so that a BMI of exactly 25 is not 24.999999999999996 */
        json_t *b = json_real(round(json_number_value(val(&e, "weight_kg")) / (h * h) * 1e6) / 1e6);
        s = take_declared(&e, sets, ndecl, "bmi", b, "weight_kg / height_m^2");
        json_decref(b);
        if (s != SARCO_OK) goto done;
    }
    if (table) {
        if (have(&e, "asmi_kg_m2") || have(&e, "asm_kg")) {
            s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                           "give either a measured ASM/ASMI or mass_from %s:%s, not both", measure, tname);
            goto done;
        }
        const json_t *mm = json_object_get(in, "measurements");
        if (mm && (s = take_measurements(&e, sets, ndecl, mm)) != SARCO_OK) goto done;
        if (!have(&e, "smi_cm2_m2")) {
            s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                           "mass_from %s:%s needs smi_cm2_m2 or measurements from `sarco l3`", measure, tname);
            goto done;
        }
    } else if (json_object_get(in, "measurements")) {
        s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                       "measurements given without mass_from: name the cut-off table (e.g. l3_smi:prado2008) for imaging "
                       "to stand in for muscle mass");
        goto done;
    }
    /* inputs that need another (AWGS's ASMI needs to know DXA or BIA) */
    for (size_t i = 0; i < ndecl; i++) {
        json_object_foreach(json_object_get(sets[i], "inputs"), k, v) {
            size_t q;
            json_t *rq;
            if (!have(&e, k)) continue;
            json_array_foreach(json_object_get(v, "requires"), q, rq) if (!have(&e, json_string_value(rq))) {
                s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: %s needs %s as well (the cut-offs differ by it)",
                               get_str(sets[i], "name"), k, json_string_value(rq));
                goto done;
            }
        }
    }
    for (size_t i = 0; i < ndecl; i++) {
        size_t q;
        json_t *sx;
        int covered = 0;
        json_array_foreach(json_object_get(sets[i], "sexes"), q, sx) covered |= !strcmp(json_string_value(sx), e.sex);
        if (!covered) {
            s = sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "rule set '%s' does not cover sex '%s'", get_str(sets[i], "name"),
                           e.sex);
            goto done;
        }
        const json_t *ma = json_object_get(sets[i], "min_age");
        if (have(&e, "age") && json_is_number(ma) && json_number_value(val(&e, "age")) < json_number_value(ma)) {
            char w[256];
            snprintf(w, sizeof w, "%s is defined for %s; age %g was given", get_str(sets[i], "name"),
                     get_str(sets[i], "population") ? get_str(sets[i], "population") : "older adults",
                     json_number_value(val(&e, "age")));
            json_array_append_new(e.warnings, json_string(w));
        }
    }

    /* judge */
    out = json_object();
    json_object_set_new(out, "schema", json_string("sarco.diagnosis/1"));
    json_object_set_new(out, "library_version", json_string(sarco_version_string()));
    json_t *subject = json_pack("{s:s}", "sex", e.sex);
    for (size_t q = 0; q < NCORE; q++) {
        const json_t *x = val(&e, CORE[q].name);
        json_object_set_new(subject, CORE[q].name, x ? json_deep_copy(x) : json_null());
    }
    if (have(&e, "bmi"))
        json_object_set(subject, "bmi_source", json_object_get(json_object_get(e.vals, "bmi"), "source"));
    json_object_set_new(out, "subject", subject);
    json_object_set(out, "inputs", e.vals);
    json_t *arr = json_array(), *mass_source = json_null();
    int stand_in = -1;
    if (table) {
        json_t *tr = NULL;
        if ((s = eval_set(&e, table, tsource, -1, NULL, &tr, &stand_in)) != SARCO_OK) goto done;
        json_object_set_new(tr, "role", json_string("muscle-mass stand-in chosen by the caller"));
        char note[512];
        snprintf(note, sizeof note,
                 "muscle mass judged from the L3 skeletal muscle index with the %s table (named by the caller); "
                 "it stands in for ASMI",
                 get_str(table, "name"));
        mass_source = json_pack("{s:s, s:s, s:O, s:s, s:s, s:o, s:s}", "measure", measure, "table", get_str(table, "name"),
                                "value", val(&e, "smi_cm2_m2"), "unit", "cm2/m2", "finding",
                                get_str(json_object_get(table, "provides"), "low_muscle_mass"), "low", tv_json(stand_in),
                                "note", note);
        json_array_append_new(arr, tr);
    }
    for (size_t i = 0; i < nsets; i++) {
        json_t *sr = NULL;
        int is_diag = !strcmp(get_str(sets[i], "kind"), "diagnosis");
        if ((s = eval_set(&e, sets[i], sources[i], table && is_diag ? stand_in : -1, mass_source, &sr, NULL)) != SARCO_OK)
            goto done;
        json_array_insert_new(arr, i, sr);
    }
    json_object_set_new(out, "mass_source", mass_source);
    json_object_set_new(out, "rule_sets", arr);
    json_object_set(out, "warnings", e.warnings);
    *output_json = json_dumps(out, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    if (!*output_json) s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_diagnose: out of memory");
done:
    json_decref(out);
    json_decref(e.vals);
    json_decref(e.warnings);
    json_decref(in);
    free_sets(sets, nsets);
    json_decref(table);
    return s;
}
