/* The L3 workflow behind `sarco l3` and sarco.l3: pick the slice (and its neighbours), segment it
 * with a 2-D model or take the caller's labels, measure every class and the muscle compartment
 * (sarco_measure_labels, sarco_l3_measure), average over the slices, and judge the SMI and the
 * muscle attenuation with a cut-off table through the diagnosis engine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clinical.h"

#define MAX_CLASSES 64
#define MAX_SLICES 9

/* Class names of the L3 phantom and the demo L3 model (python/sarco/l3_phantom.py). */
static const char *const DEFAULT_CLASSES[] = {"background", "skeletal_muscle", "subcutaneous_fat", "visceral_fat"};

static int name_in(const char *n, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(n, *list)) return 1;
    return 0;
}
static const char *const MUSCLE_NAMES[] = {"skeletal_muscle", "muscle", "psoas", "paraspinal", "paraspinals",
                                           "abdominal_wall", "abdominal_muscles", NULL};
static const char *const IMAT_NAMES[] = {"intermuscular_fat", "imat", NULL};
static const char *const SAT_NAMES[] = {"subcutaneous_fat", "sat", NULL};
static const char *const VAT_NAMES[] = {"visceral_fat", "vat", NULL};

typedef struct l3_job {
    sarco_context *ctx;
    int nclasses;
    char *classes[MAX_CLASSES];
    int32_t muscle[MAX_CLASSES];
    size_t nmuscle;
    int has_skeletal;
} l3_job;

static sarco_status window_opt(sarco_context *ctx, const json_t *o, const char *key, double w[2], json_t *report,
                               int *defaults) {
    const json_t *v = json_object_get(o, key);
    if (v) {
        if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_number(json_array_get(v, 0)) ||
            !json_is_number(json_array_get(v, 1)))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "l3: \"%s\" must be [lo, hi] in HU", key);
        w[0] = json_number_value(json_array_get(v, 0));
        w[1] = json_number_value(json_array_get(v, 1));
        if (!(w[0] <= w[1]) || w[0] < -1100 || w[1] > 4000)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "l3: \"%s\" [%g, %g] is not an HU window lo <= hi", key,
                              w[0], w[1]);
        *defaults = 0;
    }
    json_object_set_new(report, key, json_pack("[f, f]", w[0], w[1]));
    return SARCO_OK;
}

static double opt_num(const json_t *o, const char *k, double dflt) {
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static sarco_status set_classes(l3_job *j, const json_t *names) {
    size_t i;
    json_t *v;
    if (json_array_size(names) < 2 || json_array_size(names) > MAX_CLASSES)
        return sarco_fail(j->ctx, SARCO_ERR_INVALID_ARGUMENT, "l3: classes must name 2..%d labels (background first)",
                          MAX_CLASSES);
    json_array_foreach(names, i, v) {
        if (!json_is_string(v)) return sarco_fail(j->ctx, SARCO_ERR_INVALID_ARGUMENT, "l3: class names are strings");
        j->classes[i] = strdup(json_string_value(v));
        if (!j->classes[i]) return sarco_fail(j->ctx, SARCO_ERR_OUT_OF_MEMORY, "l3: out of memory");
        j->nclasses = (int)i + 1;
        if (i > 0 && (name_in(j->classes[i], MUSCLE_NAMES) || name_in(j->classes[i], IMAT_NAMES)))
            j->muscle[j->nmuscle++] = (int32_t)i;
        if (i > 0 && name_in(j->classes[i], MUSCLE_NAMES)) j->has_skeletal = 1;
    }
    if (!j->has_skeletal)
        return sarco_fail(j->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "l3: no class is skeletal muscle (a class named skeletal_muscle, muscle, psoas, paraspinal or "
                          "abdominal_wall)");
    return SARCO_OK;
}

/* The measures of one slice, as JSON; acc (same keys) accumulates sums for the average. */
static json_t *measures_json(const sarco_l3_measures *m, double sat, double vat, int has_sat, int has_vat,
                             double height) {
    json_t *o = json_object();
    json_object_set_new(o, "muscle_compartment_cm2", jnum(m->compartment_area_cm2));
    json_object_set_new(o, "sma_cm2", jnum(m->sma_cm2));
    json_object_set_new(o, "smi_cm2_m2", height > 0 ? jnum(m->smi_cm2_m2) : json_null());
    json_object_set_new(o, "muscle_attenuation_hu", m->sma_pixels ? jnum(m->muscle_attenuation_hu) : json_null());
    json_object_set_new(o, "muscle_attenuation_sd_hu", m->sma_pixels ? jnum(m->muscle_attenuation_sd_hu) : json_null());
    json_object_set_new(o, "low_attenuation_fraction", m->sma_pixels ? jnum(m->low_attenuation_fraction) : json_null());
    json_object_set_new(o, "low_attenuation_area_cm2", jnum(m->low_attenuation_area_cm2));
    json_object_set_new(o, "imat_area_cm2", jnum(m->imat_area_cm2));
    json_object_set_new(o, "sat_cm2", has_sat ? jnum(sat) : json_null());
    json_object_set_new(o, "vat_cm2", has_vat ? jnum(vat) : json_null());
    json_object_set_new(o, "nonfinite_pixels", json_integer(m->nonfinite_pixels));
    return o;
}

/* Adds every number of src into acc (keys alike); a null anywhere keeps the key null. */
static void accumulate(json_t *acc, const json_t *src) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)src, k, v) {
        if (!strcmp(k, "label") || !strcmp(k, "name")) continue; /* identity, not a measure */
        json_t *a = json_object_get(acc, k);
        if (!a)
            json_object_set_new(acc, k, json_deep_copy(v));
        else if (json_is_number(a) && json_is_number(v))
            json_object_set_new(acc, k, json_real(json_number_value(a) + json_number_value(v)));
        else if (!json_is_null(a))
            json_object_set_new(acc, k, json_null());
    }
}

static void divide(json_t *acc, double n) {
    const char *k;
    json_t *v;
    json_object_foreach(acc, k, v) if (json_is_number(v) && strcmp(k, "nonfinite_pixels"))
        json_object_set_new(acc, k, json_real(json_number_value(v) / n));
}

/* The SMI / muscle attenuation judged with a cut-off table (sarco_diagnose on that one table). */
static sarco_status judge(sarco_context *ctx, const char *table, const char *sex, double height, double bmi,
                          const json_t *measures, json_t **out) {
    json_t *r;
    const char *src;
    sarco_status s = sarco_rules_load(ctx, table, &r, &src);
    if (s != SARCO_OK) return s;
    const int is_table = !strcmp(json_string_value(json_object_get(r, "kind")), "l3_smi_cutoffs");
    const json_t *inputs = json_object_get(r, "inputs");
    json_t *in = json_pack("{s:s}", "sex", sex);
    if (!is_table) {
        s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "l3: '%s' is not an L3 SMI cut-off table", table);
        goto done;
    }
    const json_t *smi = json_object_get(measures, "smi_cm2_m2");
    if (!json_is_number(smi)) {
        s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "l3: judging with %s needs the height (SMI = SMA / height^2)",
                       table);
        goto done;
    }
    json_object_set(in, "smi_cm2_m2", (json_t *)smi);
    const json_t *att = json_object_get(measures, "muscle_attenuation_hu");
    if (json_object_get(inputs, "muscle_attenuation_hu") && json_is_number(att))
        json_object_set(in, "muscle_attenuation_hu", (json_t *)att);
    if (bmi > 0) json_object_set_new(in, "bmi", json_real(bmi));
    if (height > 0) json_object_set_new(in, "height_m", json_real(height));
    char *text = json_dumps(in, JSON_COMPACT), *res = NULL;
    s = text ? sarco_diagnose(ctx, table, text, &res) : SARCO_ERR_OUT_OF_MEMORY;
    free(text);
    if (s == SARCO_OK) {
        json_t *d = json_loads(res, 0, NULL);
        json_t *set = json_incref(json_array_get(json_object_get(d, "rule_sets"), 0));
        json_decref(d);
        sarco_json_free(res);
        json_t *j = json_pack("{s:O, s:O, s:O, s:O, s:s}", "table", json_object_get(set, "name"), "version",
                              json_object_get(set, "version"), "citation", json_object_get(set, "citation"), "verdict",
                              json_object_get(set, "verdict"), "sex", sex);
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(set, "findings"), i, f)
            json_object_set(j, json_string_value(json_object_get(f, "id")), json_object_get(f, "met"));
        json_object_set(j, "criteria", json_object_get(set, "criteria"));
        json_object_set(j, "missing", json_object_get(set, "missing"));
        json_object_set_new(j, "bmi", bmi > 0 ? json_real(bmi) : json_null());
        json_decref(set);
        *out = j;
    }
done:
    json_decref(in);
    json_decref(r);
    return s;
}

sarco_status sarco_l3_report(sarco_context *ctx, const sarco_image *ct, const uint16_t *labels, size_t labels_count,
                             sarco_model *model, const char *options_json, char **out_json, uint16_t *slice_labels) {
    static const char fn[] = "sarco_l3_report";
    if (!out_json) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: out_json is NULL", fn);
    *out_json = NULL;
    if (!ct || !ct->data || (ct->ndim != 2 && ct->ndim != 3))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: need a 2-D or 3-D CT image", fn);
    if (!labels == !model)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: give either a label map or a model, exactly one", fn);
    const int64_t nx = ct->dims[0], ny = ct->dims[1], nz = ct->ndim == 3 ? ct->dims[2] : 1;
    if (nx < 1 || ny < 1 || nz < 1 || nx > 16384 || ny > 16384)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: bad image dims", fn);
    const size_t plane = (size_t)(nx * ny);
    if (labels && labels_count != plane * (size_t)nz)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: labels holds %zu values, the image %zu", fn,
                          labels_count, plane * (size_t)nz);
    if (ct->flags & SARCO_IMAGE_NO_SPACING)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "%s: the image carries no pixel spacing; areas need it (give the spacing)", fn);
    json_error_t je;
    json_t *o = options_json ? json_loads(options_json, JSON_REJECT_DUPLICATES, &je) : json_object();
    if (!json_is_object(o)) {
        json_decref(o);
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: options are not a JSON object", fn);
    }
    l3_job j = {.ctx = ctx};
    json_t *root = NULL, *per_slice = json_array(), *acc = json_object(), *classes_acc = json_array();
    uint16_t *seg = NULL;
    sarco_image *img = NULL;
    sarco_status s = SARCO_OK;

    /* slices */
    const json_t *js = json_object_get(o, "slice");
    int64_t k = 0;
    if (js) {
        if (!json_is_integer(js)) {
            s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: \"slice\" must be an integer", fn);
            goto done;
        }
        k = json_integer_value(js);
    } else if (nz > 1) {
        s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                       "%s: a volume of %lld slices needs the L3 slice (slice, or a vertebra map)", fn, (long long)nz);
        goto done;
    }
    const int64_t nsl = (int64_t)opt_num(o, "slices", 1);
    if (nsl < 1 || nsl > MAX_SLICES || nsl % 2 == 0 || opt_num(o, "slices", 1) != (double)nsl) {
        s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: \"slices\" must be odd, 1..%d", fn, MAX_SLICES);
        goto done;
    }
    if (k - nsl / 2 < 0 || k + nsl / 2 >= nz) {
        s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: slices %lld..%lld are not all inside 0..%lld", fn,
                       (long long)(k - nsl / 2), (long long)(k + nsl / 2), (long long)(nz - 1));
        goto done;
    }

    /* classes: the caller's, else the model's, else the L3 phantom's */
    const json_t *cn = json_object_get(o, "classes");
    json_t *model_cfg = NULL;
    const char *class_source = "options";
    if (!cn && model) {
        model_cfg = json_loads(sarco_model_config_json(model), 0, NULL);
        cn = json_object_get(model_cfg, "classes");
        class_source = "model config";
    }
    json_t *dflt = NULL;
    if (!cn) {
        dflt = json_array();
        for (size_t i = 0; i < sizeof DEFAULT_CLASSES / sizeof *DEFAULT_CLASSES; i++)
            json_array_append_new(dflt, json_string(DEFAULT_CLASSES[i]));
        cn = dflt;
        class_source = "default (the L3 phantom's)";
    }
    s = set_classes(&j, cn);
    json_decref(model_cfg);
    json_decref(dflt);
    if (s != SARCO_OK) goto done;

    /* windows, height, the judgement's inputs */
    sarco_l3_options lo;
    sarco_l3_options_init(&lo);
    json_t *windows = json_object();
    int defaults = 1;
    if ((s = window_opt(ctx, o, "muscle_hu", lo.muscle_hu, windows, &defaults)) != SARCO_OK ||
        (s = window_opt(ctx, o, "low_attenuation_hu", lo.low_attenuation_hu, windows, &defaults)) != SARCO_OK ||
        (s = window_opt(ctx, o, "imat_hu", lo.imat_hu, windows, &defaults)) != SARCO_OK) {
        json_decref(windows);
        goto done;
    }
    json_object_set_new(windows, "defaults", json_boolean(defaults));
    json_object_set_new(windows, "inclusive", json_true());
    const double height = opt_num(o, "height_m", 0.0);
    if (json_object_get(o, "height_m") && !(height >= 0.5 && height <= 2.6)) {
        json_decref(windows);
        s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: height_m %g is outside 0.5..2.6 m", fn, height);
        goto done;
    }
    lo.height_m = height;
    double bmi = opt_num(o, "bmi", 0.0);
    const double weight = opt_num(o, "weight_kg", 0.0);
    if (bmi <= 0 && weight > 0 && height > 0) bmi = round(weight / (height * height) * 1e6) / 1e6;
    const char *table = json_string_value(json_object_get(o, "table"));
    const char *sex = json_string_value(json_object_get(o, "sex"));
    if (table && !sex) {
        json_decref(windows);
        s = sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: judging with table %s needs the sex", fn, table);
        goto done;
    }

    /* measure each slice */
    const int64_t dims2[2] = {ny, nx};
    const double sp2[2] = {ct->spacing[1], ct->spacing[0]};
    int32_t which[MAX_CLASSES];
    for (int c = 1; c < j.nclasses; c++) which[c - 1] = c;
    if (model) {
        seg = malloc(plane * sizeof *seg);
        const int64_t d2[2] = {nx, ny};
        const double s2[2] = {ct->spacing[0], ct->spacing[1]};
        if (!seg) s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        if (s == SARCO_OK) s = sarco_image_create(ctx, 2, d2, s2, &img);
        if (s != SARCO_OK) {
            json_decref(windows);
            goto done;
        }
    }
    for (int64_t z = k - nsl / 2; z <= k + nsl / 2; z++) {
        const float *hu = ct->data + (size_t)z * plane;
        const uint16_t *lab = labels ? labels + (size_t)z * plane : seg;
        if (model) {
            /* the slice as a 2-D image in its place: the CT's in-plane axes, origin at slice z */
            memcpy(img->data, hu, plane * sizeof *hu);
            for (int r = 0; r < 4; r++) {
                for (int c = 0; c < 4; c++) img->affine[r][c] = (c < 2 || r == 3) ? ct->affine[r][c] : (r == c);
                img->affine[r][3] = ct->affine[r][3] + ct->affine[r][2] * (double)z;
            }
            if ((s = sarco_segment(ctx, model, img, NULL, seg, plane, NULL)) != SARCO_OK) break;
        }
        if (slice_labels && z == k) memcpy(slice_labels, lab, plane * sizeof *lab);
        sarco_l3_measures m;
        if ((s = sarco_l3_measure(ctx, dims2, sp2, lab, hu, j.muscle, j.nmuscle, &lo, &m)) != SARCO_OK) break;
        sarco_label_measure *cm = NULL;
        size_t cc = 0;
        if ((s = sarco_measure_labels(ctx, 2, dims2, sp2, lab, hu, which, (size_t)(j.nclasses - 1), &cm, &cc)) !=
            SARCO_OK)
            break;
        double sat = 0, vat = 0;
        int has_sat = 0, has_vat = 0;
        json_t *cl = json_array();
        for (size_t c = 0; c < cc; c++) {
            const char *name = j.classes[cm[c].label];
            if (name_in(name, SAT_NAMES)) sat += cm[c].area_cm2, has_sat = 1;
            if (name_in(name, VAT_NAMES)) vat += cm[c].area_cm2, has_vat = 1;
            const int have = cm[c].finite_voxels > 0;
            json_array_append_new(cl, json_pack("{s:i, s:s, s:o, s:o, s:o, s:o}", "label", cm[c].label, "name", name,
                                                "pixels", json_real((double)cm[c].voxels), "area_cm2",
                                                jnum(cm[c].area_cm2), "hu_mean", have ? jnum(cm[c].mean) : json_null(),
                                                "hu_sd", have ? jnum(cm[c].sd) : json_null()));
        }
        sarco_label_measures_free(cm);
        json_t *mj = measures_json(&m, sat, vat, has_sat, has_vat, height);
        accumulate(acc, mj);
        if (json_array_size(classes_acc) == 0)
            json_array_extend(classes_acc, cl);
        else
            for (size_t c = 0; c < json_array_size(cl); c++) accumulate(json_array_get(classes_acc, c), json_array_get(cl, c));
        json_array_append_new(per_slice, json_pack("{s:I, s:o, s:o}", "index", (json_int_t)z, "measures", mj,
                                                   "classes", cl));
    }
    if (s != SARCO_OK) {
        json_decref(windows);
        goto done;
    }
    divide(acc, (double)nsl);
    for (size_t c = 0; c < json_array_size(classes_acc); c++) {
        json_t *e = json_array_get(classes_acc, c);
        json_t *lab = json_deep_copy(json_object_get(e, "label")), *nm = json_deep_copy(json_object_get(e, "name"));
        divide(e, (double)nsl);
        json_object_set_new(e, "label", lab);
        json_object_set_new(e, "name", nm);
    }

    root = json_object();
    json_object_set_new(root, "schema", json_string("sarco.l3/1"));
    json_object_set_new(root, "library_version", json_string(sarco_version_string()));
    json_object_set_new(root, "image", json_pack("{s:[I,I,I], s:[f,f], s:f, s:b}", "dims", (json_int_t)nx,
                                                 (json_int_t)ny, (json_int_t)nz, "spacing_mm", ct->spacing[0],
                                                 ct->spacing[1], "pixel_area_mm2", ct->spacing[0] * ct->spacing[1],
                                                 "units_assumed_mm", (ct->flags & SARCO_IMAGE_UNITS_ASSUMED_MM) != 0));
    json_t *slj = json_pack("{s:I, s:I, s:[]}", "index", (json_int_t)k, "averaged_over", (json_int_t)nsl, "indices");
    for (int64_t z = k - nsl / 2; z <= k + nsl / 2; z++)
        json_array_append_new(json_object_get(slj, "indices"), json_integer(z));
    const json_t *ss = json_object_get(o, "slice_source");
    json_object_set_new(slj, "source", ss ? json_deep_copy(ss) : json_string(js ? "given" : "the only slice"));
    json_object_set_new(root, "slice", slj);
    json_t *segj = json_pack("{s:s, s:s, s:[], s:[]}", "source", model ? "model" : "labels", "classes_from",
                             class_source, "classes", "muscle_labels");
    for (int c = 0; c < j.nclasses; c++) json_array_append_new(json_object_get(segj, "classes"), json_string(j.classes[c]));
    for (size_t c = 0; c < j.nmuscle; c++)
        json_array_append_new(json_object_get(segj, "muscle_labels"), json_integer(j.muscle[c]));
    if (model) json_object_set_new(segj, "arch", json_string(sarco_model_arch(model)));
    json_object_set_new(root, "segmentation", segj);
    json_object_set_new(root, "windows_hu", windows);
    json_object_set_new(root, "height_m", height > 0 ? json_real(height) : json_null());
    json_object_set_new(root, "measures", json_incref(acc));
    json_object_set_new(root, "classes", json_incref(classes_acc));
    json_object_set_new(root, "per_slice", json_incref(per_slice));
    json_object_set_new(
        root, "definitions",
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "muscle_compartment_cm2",
                  "area of the pixels labelled muscle (skeletal muscle and intermuscular fat classes)", "sma_cm2",
                  "skeletal muscle area: compartment pixels inside the muscle window", "smi_cm2_m2",
                  "SMA / height^2", "muscle_attenuation_hu", "mean HU of the SMA pixels (population SD beside it)",
                  "low_attenuation_fraction", "share of the SMA pixels inside the low-attenuation window",
                  "imat_area_cm2", "compartment pixels inside the IMAT window; with slices > 1 every value is the "
                                   "mean over the slices"));
    json_t *jud = json_null();
    if (table) {
        if ((s = judge(ctx, table, sex, height, bmi, acc, &jud)) != SARCO_OK) goto done;
    } else if (sex) {
        jud = json_null();
    }
    json_object_set_new(root, "judgement", jud);
    *out_json = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    if (!*out_json) s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
done:
    json_decref(root);
    json_decref(acc);
    json_decref(classes_acc);
    json_decref(per_slice);
    json_decref(o);
    for (int c = 0; c < j.nclasses; c++) free(j.classes[c]);
    free(seg);
    sarco_image_free(img);
    return s;
}
