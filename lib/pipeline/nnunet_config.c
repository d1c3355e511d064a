/* The "nnunet" object of a model's sarco.config (written by `sarco.convert --nnunet`, keys as in
 * nnU-Net's plans.json / dataset.json; docs/nnunet.md) -> sarco_nnunet_config. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "nnunet_pipeline.h"

static sarco_status bad(sarco_context *ctx, const char *key, const char *want) {
    return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: nnunet.%s must be %s", key, want);
}

static sarco_status int_list(sarco_context *ctx, const json_t *o, const char *key, int n_min, int n_max, int *out,
                             int *n) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_array(v) || (int)json_array_size(v) < n_min || (int)json_array_size(v) > n_max)
        return bad(ctx, key, "a list of integers of the right length");
    *n = (int)json_array_size(v);
    for (int i = 0; i < *n; i++) {
        const json_t *e = json_array_get(v, (size_t)i);
        if (!json_is_integer(e)) return bad(ctx, key, "a list of integers");
        out[i] = (int)json_integer_value(e);
    }
    return SARCO_OK;
}

static sarco_status resampling(sarco_context *ctx, const json_t *nn, const char *fn_key, const char *kw_key,
                               sarco_nn_resampling *r) {
    const json_t *fn = json_object_get(nn, fn_key);
    if (!json_is_string(fn) || strcmp(json_string_value(fn), "resample_data_or_seg_to_shape") != 0)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                          "model config: nnunet.%s is %s; only resample_data_or_seg_to_shape is implemented", fn_key,
                          json_is_string(fn) ? json_string_value(fn) : "missing");
    const json_t *kw = json_object_get(nn, kw_key);
    if (!json_is_object(kw)) return bad(ctx, kw_key, "an object");
    const json_t *is_seg = json_object_get(kw, "is_seg");
    if (is_seg && json_is_true(is_seg))
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "model config: nnunet.%s.is_seg true is not supported", kw_key);
    const json_t *o = json_object_get(kw, "order"), *oz = json_object_get(kw, "order_z");
    const json_t *fz = json_object_get(kw, "force_separate_z");
    r->order = o ? (int)json_integer_value(o) : 3;
    r->order_z = oz ? (int)json_integer_value(oz) : 0;
    if ((o && !json_is_integer(o)) || (oz && !json_is_integer(oz)) || r->order < 0 || r->order > 5 ||
        r->order_z < 0 || r->order_z > 1)
        return bad(ctx, kw_key, "{order: 0..5, order_z: 0 or 1}");
    r->force_separate_z = (!fz || json_is_null(fz)) ? -1 : json_is_true(fz) ? 1 : 0;
    return SARCO_OK;
}

static int name_is(const char *s, const char *name) { return s && strcmp(s, name) == 0; }

/* One postprocessing entry's labels_or_regions: an int, a list of ints (a region), or a list of
 * those; the mask is the union either way. */
static sarco_status pp_labels(sarco_context *ctx, const json_t *v, int *labels, int *n) {
    if (json_is_integer(v)) {
        if (*n >= 8) return bad(ctx, "postprocessing", "at most 8 labels per step");
        labels[(*n)++] = (int)json_integer_value(v);
        return SARCO_OK;
    }
    if (!json_is_array(v)) return bad(ctx, "postprocessing[].labels_or_regions", "an int or a list");
    for (size_t i = 0; i < json_array_size(v); i++) {
        sarco_status s = pp_labels(ctx, json_array_get(v, i), labels, n);
        if (s != SARCO_OK) return s;
    }
    return SARCO_OK;
}

sarco_status sarco_nnunet_config_parse(sarco_context *ctx, const char *config_json, sarco_nnunet_config *c,
                                       int *present) {
    memset(c, 0, sizeof *c);
    *present = 0;
    if (!config_json) return SARCO_ERR_UNSUPPORTED;
    json_error_t err;
    json_t *root = json_loads(config_json, 0, &err);
    if (!root) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: not JSON (%s)", err.text);
    sarco_status s = SARCO_OK;
    const json_t *nn = json_object_get(root, "nnunet");
    if (!json_is_object(nn)) {
        json_decref(root);
        return SARCO_ERR_UNSUPPORTED;
    }
    *present = 1;
    const json_t *v = json_object_get(nn, "configuration");
    snprintf(c->configuration, sizeof c->configuration, "%s", json_is_string(v) ? json_string_value(v) : "");
    int p[3], n = 0;
    if ((s = int_list(ctx, nn, "patch_size", 2, 3, p, &n)) != SARCO_OK) goto out;
    c->nsp = n;
    for (int i = 0; i < n; i++) {
        if (p[i] < 1 || p[i] > 4096) {
            s = bad(ctx, "patch_size", "positive sizes");
            goto out;
        }
        c->patch[i] = p[i];
    }
    v = json_object_get(nn, "spacing");
    if (!json_is_array(v) || (int)json_array_size(v) != c->nsp) {
        s = bad(ctx, "spacing", "a list as long as patch_size");
        goto out;
    }
    for (int i = 0; i < c->nsp; i++) {
        c->spacing[i] = json_number_value(json_array_get(v, (size_t)i));
        if (!(c->spacing[i] > 0)) {
            s = bad(ctx, "spacing", "positive numbers");
            goto out;
        }
    }
    int tf[3], tb[3], ntf, ntb;
    if ((s = int_list(ctx, nn, "transpose_forward", 3, 3, tf, &ntf)) != SARCO_OK) goto out;
    if ((s = int_list(ctx, nn, "transpose_backward", 3, 3, tb, &ntb)) != SARCO_OK) goto out;
    for (int i = 0; i < 3; i++) {
        if (tf[i] < 0 || tf[i] > 2 || tb[i] < 0 || tb[i] > 2 || tb[tf[i]] != i) {
            s = bad(ctx, "transpose_forward/backward", "inverse permutations of (0, 1, 2)");
            goto out;
        }
        c->transpose_forward[i] = tf[i];
        c->transpose_backward[i] = tb[i];
    }
    const json_t *ns = json_object_get(nn, "normalization_schemes"), *um = json_object_get(nn, "use_mask_for_norm");
    const json_t *fg = json_object_get(nn, "foreground_intensity_properties_per_channel");
    const json_t *cn = json_object_get(nn, "channel_names");
    if (!json_is_array(ns) || json_array_size(ns) < 1 || json_array_size(ns) > SARCO_NN_MAX_CHANNELS) {
        s = bad(ctx, "normalization_schemes", "a list with one scheme per channel");
        goto out;
    }
    c->nchan = (int)json_array_size(ns);
    if (json_is_object(cn) && (int)json_object_size(cn) != c->nchan) {
        s = bad(ctx, "channel_names", "as many channels as normalization_schemes");
        goto out;
    }
    if (!json_is_array(um) || (int)json_array_size(um) != c->nchan) {
        s = bad(ctx, "use_mask_for_norm", "a list of booleans, one per channel");
        goto out;
    }
    for (int ch = 0; ch < c->nchan; ch++) {
        const char *name = json_string_value(json_array_get(ns, (size_t)ch));
        if (name_is(name, "ZScoreNormalization")) c->norm[ch] = SARCO_NN_NORM_ZSCORE;
        else if (name_is(name, "CTNormalization")) c->norm[ch] = SARCO_NN_NORM_CT;
        else if (name_is(name, "NoNormalization")) c->norm[ch] = SARCO_NN_NORM_NONE;
        else if (name_is(name, "RescaleTo01Normalization")) c->norm[ch] = SARCO_NN_NORM_RESCALE01;
        else if (name_is(name, "RGBTo01Normalization")) c->norm[ch] = SARCO_NN_NORM_RGB01;
        else {
            s = sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "model config: normalization scheme '%s' is not implemented",
                           name ? name : "(not a string)");
            goto out;
        }
        c->use_mask_for_norm[ch] = json_is_true(json_array_get(um, (size_t)ch));
        if (c->norm[ch] == SARCO_NN_NORM_CT) {
            char key[16];
            snprintf(key, sizeof key, "%d", ch);
            const json_t *pr = json_is_object(fg) ? json_object_get(fg, key) : NULL;
            const json_t *m = json_object_get(pr, "mean"), *sd = json_object_get(pr, "std");
            const json_t *lo = json_object_get(pr, "percentile_00_5"), *hi = json_object_get(pr, "percentile_99_5");
            if (!json_is_number(m) || !json_is_number(sd) || !json_is_number(lo) || !json_is_number(hi)) {
                s = bad(ctx, "foreground_intensity_properties_per_channel",
                        "an object with mean, std, percentile_00_5 and percentile_99_5 per CT channel");
                goto out;
            }
            c->fg_mean[ch] = json_number_value(m);
            c->fg_std[ch] = json_number_value(sd);
            c->fg_p005[ch] = json_number_value(lo);
            c->fg_p995[ch] = json_number_value(hi);
        }
    }
    if ((s = resampling(ctx, nn, "resampling_fn_data", "resampling_fn_data_kwargs", &c->res_data)) != SARCO_OK ||
        (s = resampling(ctx, nn, "resampling_fn_probabilities", "resampling_fn_probabilities_kwargs",
                        &c->res_prob)) != SARCO_OK)
        goto out;
    v = json_object_get(nn, "inference_allowed_mirroring_axes");
    if (v && !json_is_null(v)) {
        if ((s = int_list(ctx, nn, "inference_allowed_mirroring_axes", 0, 3, c->mirror_axes, &c->nmirror)) != SARCO_OK)
            goto out;
        for (int i = 0; i < c->nmirror; i++)
            if (c->mirror_axes[i] < 0 || c->mirror_axes[i] >= c->nsp) {
                s = bad(ctx, "inference_allowed_mirroring_axes", "spatial axes of the patch");
                goto out;
            }
    }
    /* heads: labels (minus "ignore"), or the regions in regions_class_order */
    const json_t *labels = json_object_get(nn, "labels"), *rco = json_object_get(nn, "regions_class_order");
    if (!json_is_object(labels)) {
        s = bad(ctx, "labels", "an object");
        goto out;
    }
    if (rco && !json_is_null(rco)) {
        c->has_regions = 1;
        if ((s = int_list(ctx, nn, "regions_class_order", 1, SARCO_NN_MAX_HEADS, c->regions_class_order,
                          &c->nheads)) != SARCO_OK)
            goto out;
    } else {
        const char *k;
        const json_t *lv;
        json_object_foreach((json_t *)labels, k, lv) {
            if (strcmp(k, "ignore") == 0) continue;
            if (!json_is_integer(lv)) {
                s = bad(ctx, "labels", "integers (regions need regions_class_order)");
                goto out;
            }
            c->nheads++;
        }
        if (c->nheads < 1 || c->nheads > SARCO_NN_MAX_HEADS) {
            s = bad(ctx, "labels", "1..256 labels");
            goto out;
        }
    }
    v = json_object_get(nn, "file_ending");
    if (json_is_string(v)) {
        const char *fe = json_string_value(v);
        c->natural_image = !strcasecmp(fe, ".png") || !strcasecmp(fe, ".jpg") || !strcasecmp(fe, ".jpeg") ||
                           !strcasecmp(fe, ".bmp") || !strcasecmp(fe, ".tif") || !strcasecmp(fe, ".tiff");
    }
    c->tile_step = 0.5;
    v = json_object_get(nn, "postprocessing");
    if (v && !json_is_null(v)) {
        if (!json_is_array(v) || json_array_size(v) > SARCO_NN_MAX_PP) {
            s = bad(ctx, "postprocessing", "null or a list of steps");
            goto out;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            const char *op = json_string_value(json_object_get(e, "op"));
            const json_t *bl = json_object_get(e, "background_label");
            if (!name_is(op, "largest_component") || (bl && !json_is_null(bl) && json_integer_value(bl) != 0)) {
                s = sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                               "model config: nnunet.postprocessing[%zu] is not a largest_component step with "
                               "background 0", i);
                goto out;
            }
            if ((s = pp_labels(ctx, json_object_get(e, "labels_or_regions"), c->pp_labels[c->npp],
                               &c->pp_nlabels[c->npp])) != SARCO_OK)
                goto out;
            c->npp++;
        }
    }
out:
    json_decref(root);
    return s;
}
