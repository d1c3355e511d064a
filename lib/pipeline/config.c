/* The pipeline settings of a model's sarco.config (schema: docs/pipeline.md). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

void sarco_pipeline_config_free(sarco_pipeline_config *c) {
    if (!c) return;
    for (int i = 0; i < c->nclasses; i++) free(c->classes ? c->classes[i] : NULL);
    free(c->classes);
    for (int i = 0; i < c->ngroups; i++) {
        free(c->group_names ? c->group_names[i] : NULL);
        free(c->group_labels ? c->group_labels[i] : NULL);
    }
    free(c->group_names);
    free(c->group_labels);
    free(c->group_sizes);
    memset(c, 0, sizeof *c);
}

static sarco_status bad(sarco_context *ctx, const char *key, const char *want) {
    return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "sarco.config: \"%s\" must be %s", key, want);
}

/* n numbers (or one number repeated n times) into out[n] */
static sarco_status numbers(sarco_context *ctx, const json_t *v, const char *key, int n, double *out) {
    if (json_is_number(v)) {
        for (int i = 0; i < n; i++) out[i] = json_number_value(v);
        return SARCO_OK;
    }
    if (!json_is_array(v) || (int)json_array_size(v) != n) {
        char want[64];
        snprintf(want, sizeof want, "a list of %d numbers", n);
        return bad(ctx, key, want);
    }
    for (int i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, (size_t)i);
        if (!json_is_number(e)) return bad(ctx, key, "a list of numbers");
        out[i] = json_number_value(e);
    }
    return SARCO_OK;
}

static sarco_status parse_preprocess(sarco_context *ctx, const json_t *pp, int nsp, sarco_pipeline_config *c) {
    if (!pp || json_is_null(pp)) return SARCO_OK;
    if (!json_is_object(pp)) return bad(ctx, "preprocess", "an object");
    sarco_status s;
    const json_t *v = json_object_get(pp, "hu_window");
    if (v && !json_is_null(v)) {
        if ((s = numbers(ctx, v, "preprocess.hu_window", 2, c->hu_window)) != SARCO_OK) return s;
        if (!(c->hu_window[1] > c->hu_window[0])) return bad(ctx, "preprocess.hu_window", "[low, high] with low < high");
        c->has_window = 1;
    }
    v = json_object_get(pp, "scale_to");
    if (v && !json_is_null(v) && (s = numbers(ctx, v, "preprocess.scale_to", 2, c->scale_to)) != SARCO_OK) return s;
    v = json_object_get(pp, "clip");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) return bad(ctx, "preprocess.clip", "true or false");
        c->clip = json_is_true(v);
    }
    v = json_object_get(pp, "gamma");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !(json_number_value(v) > 0)) return bad(ctx, "preprocess.gamma", "a number > 0 or null");
        c->gamma = json_number_value(v);
    }
    v = json_object_get(pp, "crop_foreground");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) return bad(ctx, "preprocess.crop_foreground", "true or false");
        c->crop_foreground = json_is_true(v);
    }
    v = json_object_get(pp, "crop_margin");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 4096)
            return bad(ctx, "preprocess.crop_margin", "an integer in 0..4096");
        c->crop_margin = json_integer_value(v);
    }
    v = json_object_get(pp, "target_spacing_mm");
    if (v && !json_is_null(v)) {
        if ((s = numbers(ctx, v, "preprocess.target_spacing_mm", nsp, c->target_spacing)) != SARCO_OK) return s;
        for (int i = 0; i < nsp; i++)
            if (!(c->target_spacing[i] > 0 && c->target_spacing[i] < 1e6))
                return bad(ctx, "preprocess.target_spacing_mm", "positive spacings in mm");
        c->has_spacing = 1;
    }
    v = json_object_get(pp, "axcodes");
    if (v && !json_is_null(v)) {
        const char *a = json_string_value(v);
        if (!a || strlen(a) != 3) return bad(ctx, "preprocess.axcodes", "a 3-letter code such as \"RAS\", or null");
        int seen[3] = {0, 0, 0};
        for (int i = 0; i < 3; i++) {
            const char *p = strchr("RLAPSI", a[i]);
            if (!p || !a[i]) return bad(ctx, "preprocess.axcodes", "letters from R/L, A/P, S/I");
            seen[(p - "RLAPSI") / 2]++;
        }
        if (seen[0] != 1 || seen[1] != 1 || seen[2] != 1)
            return bad(ctx, "preprocess.axcodes", "one letter of each pair R/L, A/P, S/I");
        memcpy(c->axcodes, a, 4);
    }
    return SARCO_OK;
}

static sarco_status parse_inference(sarco_context *ctx, const json_t *inf, const json_t *kwargs, int nsp,
                                    sarco_pipeline_config *c) {
    sarco_status s;
    const json_t *roi = inf && json_is_object(inf) ? json_object_get(inf, "roi") : NULL;
    const char *roi_key = "inference.roi";
    if (!roi || json_is_null(roi)) {
        roi = kwargs ? json_object_get(kwargs, "img_size") : NULL; /* MONAI UNETR's own tile size */
        roi_key = "kwargs.img_size";
    }
    if (roi && !json_is_null(roi)) {
        double r[3];
        if ((s = numbers(ctx, roi, roi_key, nsp, r)) != SARCO_OK) return s;
        for (int i = 0; i < nsp; i++) {
            if (!(r[i] >= 1 && r[i] <= 65536) || r[i] != (double)(int64_t)r[i])
                return bad(ctx, roi_key, "whole numbers in 1..65536");
            c->roi[i] = (int64_t)r[i];
        }
        c->has_roi = 1;
    }
    if (!inf || json_is_null(inf)) return SARCO_OK;
    if (!json_is_object(inf)) return bad(ctx, "inference", "an object");
    const json_t *v = json_object_get(inf, "overlap");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !(json_number_value(v) >= 0 && json_number_value(v) < 1))
            return bad(ctx, "inference.overlap", "a number in [0, 1)");
        c->overlap = json_number_value(v);
    }
    v = json_object_get(inf, "mode");
    if (v && !json_is_null(v)) {
        const char *m = json_string_value(v);
        if (m && !strcmp(m, "constant"))
            c->mode = SARCO_SW_CONSTANT;
        else if (m && !strcmp(m, "gaussian"))
            c->mode = SARCO_SW_GAUSSIAN;
        else
            return bad(ctx, "inference.mode", "\"constant\" or \"gaussian\"");
    }
    v = json_object_get(inf, "sigma_scale");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !(json_number_value(v) > 0 && json_number_value(v) < 1e3))
            return bad(ctx, "inference.sigma_scale", "a number > 0");
        c->sigma_scale = json_number_value(v);
    }
    v = json_object_get(inf, "sw_batch_size");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1024)
            return bad(ctx, "inference.sw_batch_size", "an integer in 1..1024");
        c->sw_batch = json_integer_value(v);
    }
    return SARCO_OK;
}

static sarco_status parse_labels(sarco_context *ctx, const json_t *root, sarco_pipeline_config *c) {
    const json_t *cl = json_object_get(root, "classes");
    if (cl && !json_is_null(cl)) {
        if (!json_is_array(cl) || json_array_size(cl) > SARCO_MAX_CLASSES)
            return bad(ctx, "classes", "a list of class names (at most 1024)");
        size_t n = json_array_size(cl);
        c->classes = calloc(n ? n : 1, sizeof(char *));
        if (!c->classes) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco.config: out of memory");
        for (size_t i = 0; i < n; i++) {
            const char *name = json_string_value(json_array_get(cl, i));
            if (!name) return bad(ctx, "classes", "a list of strings");
            c->classes[i] = strdup(name);
            c->nclasses = (int)i + 1;
            if (!c->classes[i]) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco.config: out of memory");
        }
    }
    const json_t *gr = json_object_get(root, "groups");
    if (gr && !json_is_null(gr)) {
        if (!json_is_object(gr) || json_object_size(gr) > SARCO_MAX_GROUPS)
            return bad(ctx, "groups", "an object of name: [labels] (at most 64 groups)");
        size_t n = json_object_size(gr);
        c->group_names = calloc(n ? n : 1, sizeof(char *));
        c->group_labels = calloc(n ? n : 1, sizeof(int *));
        c->group_sizes = calloc(n ? n : 1, sizeof(int));
        if (!c->group_names || !c->group_labels || !c->group_sizes)
            return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco.config: out of memory");
        const char *key;
        json_t *val;
        int g = 0;
        json_object_foreach((json_t *)gr, key, val) {
            if (!json_is_array(val) || json_array_size(val) > SARCO_MAX_CLASSES)
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "sarco.config: group \"%s\" must be a list of labels", key);
            c->ngroups = g + 1;
            c->group_names[g] = strdup(key);
            size_t m = json_array_size(val);
            c->group_labels[g] = calloc(m ? m : 1, sizeof(int));
            if (!c->group_names[g] || !c->group_labels[g])
                return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco.config: out of memory");
            for (size_t i = 0; i < m; i++) {
                const json_t *e = json_array_get(val, i);
                if (!json_is_integer(e) || json_integer_value(e) < 1 || json_integer_value(e) > 65535)
                    return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                                      "sarco.config: group \"%s\" holds a label that is not an integer in 1..65535", key);
                c->group_labels[g][i] = (int)json_integer_value(e);
            }
            c->group_sizes[g] = (int)m;
            g++;
        }
    }
    return SARCO_OK;
}

sarco_status sarco_pipeline_config_parse(sarco_context *ctx, const char *text, int nsp, sarco_pipeline_config *c) {
    memset(c, 0, sizeof *c);
    c->scale_to[0] = 0.0;
    c->scale_to[1] = 1.0;
    c->clip = 1;
    c->overlap = 0.25; /* MONAI sliding_window_inference defaults */
    c->mode = SARCO_SW_CONSTANT;
    c->sigma_scale = 0.125;
    c->sw_batch = 1;
    if (nsp != 2 && nsp != 3) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco.config: %d spatial dims", nsp);
    if (!text) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco.config: missing");
    json_error_t e;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "sarco.config is not a JSON object (%s)", e.text);
    }
    const json_t *kwargs = json_object_get(root, "kwargs");
    if (kwargs && !json_is_object(kwargs)) kwargs = NULL;
    if (kwargs) {
        const json_t *v = json_object_get(kwargs, "in_channels");
        if (json_is_integer(v)) c->in_channels = (int)json_integer_value(v);
        v = json_object_get(kwargs, "out_channels");
        if (json_is_integer(v)) c->out_channels = (int)json_integer_value(v);
    }
    sarco_status s = parse_preprocess(ctx, json_object_get(root, "preprocess"), nsp, c);
    if (s == SARCO_OK) s = parse_inference(ctx, json_object_get(root, "inference"), kwargs, nsp, c);
    if (s == SARCO_OK) s = parse_labels(ctx, root, c);
    json_decref(root);
    if (s != SARCO_OK) sarco_pipeline_config_free(c);
    return s;
}
