/* Helpers of the picture and report verbs (overlay, report, segment --overlay/--html). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli_pictures.h"

void cli_names_free(char **names, size_t n) {
    if (!names) return;
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

char **cli_class_names(const char *config_json, size_t *n) {
    *n = 0;
    if (!config_json) return NULL;
    json_t *root = json_loads(config_json, 0, NULL);
    json_t *cls = root ? json_object_get(root, "classes") : NULL;
    char **out = NULL;
    if (json_is_array(cls) && json_array_size(cls) > 0) {
        size_t k = json_array_size(cls);
        out = calloc(k, sizeof *out);
        if (out) {
            for (size_t i = 0; i < k; i++) {
                const char *s = json_string_value(json_array_get(cls, i));
                out[i] = s ? strdup(s) : NULL;
            }
            *n = k;
        }
    }
    json_decref(root);
    return out;
}

char **cli_split_names(const char *list, size_t *n) {
    *n = 0;
    if (!list || !*list) return NULL;
    size_t k = 1;
    for (const char *p = list; *p; p++) k += *p == ',';
    char **out = calloc(k, sizeof *out);
    if (!out) return NULL;
    const char *start = list;
    for (size_t i = 0; i < k; i++) {
        const char *end = strchr(start, ',');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        out[i] = strndup(start, len);
        start = end ? end + 1 : start + len;
    }
    *n = k;
    return out;
}

static int num(const char *s, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return !errno && end != s && !*end && isfinite(*v);
}

int cli_overlay_option(const char *verb, int argc, char **argv, int *i, sarco_overlay_options *o) {
    const char *a = argv[*i];
    double v, v2;
    if (!strcmp(a, "--outline")) {
        o->style = SARCO_OVERLAY_OUTLINE;
        return 1;
    }
    if (!strcmp(a, "--no-legend")) {
        o->legend = 0;
        return 1;
    }
    if (!strcmp(a, "--window")) {
        if (*i + 2 >= argc || !num(argv[*i + 1], &v) || !num(argv[*i + 2], &v2) || !(v > 0)) {
            fprintf(stderr, "sarco %s: --window needs a width > 0 and a level, e.g. --window 400 40\n", verb);
            return -1;
        }
        o->window_width = v;
        o->window_level = v2;
        *i += 2;
        return 1;
    }
    int is_alpha = !strcmp(a, "--alpha"), is_slices = !strcmp(a, "--slices"), is_px = !strcmp(a, "--pixel-mm");
    int is_or = !strcmp(a, "--orientation");
    if (!is_alpha && !is_slices && !is_px && !is_or) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "sarco %s: %s needs a value\n", verb, a);
        return -1;
    }
    const char *val = argv[++*i];
    if (is_or) {
        if (!strcmp(val, "auto")) o->orientation = SARCO_OVERLAY_AUTO;
        else if (!strcmp(val, "stored")) o->orientation = SARCO_OVERLAY_AS_STORED;
        else if (!strcmp(val, "radiological")) o->orientation = SARCO_OVERLAY_RADIOLOGICAL;
        else {
            fprintf(stderr, "sarco %s: --orientation must be auto, stored or radiological, not '%s'\n", verb, val);
            return -1;
        }
        return 1;
    }
    if (!num(val, &v) || (is_alpha && !(v >= 0 && v <= 1)) ||
        (is_slices && !(v >= 1 && v <= 64 && v == floor(v))) || (is_px && !(v >= 1e-3 && v <= 1e3))) {
        fprintf(stderr, "sarco %s: %s: bad value '%s' (%s)\n", verb, a, val,
                is_alpha ? "0..1" : is_slices ? "an integer 1..64" : "mm, 0.001..1000");
        return -1;
    }
    if (is_alpha) o->alpha = v;
    else if (is_slices) o->axial_slices = (int)v;
    else o->pixel_mm = v;
    return 1;
}
