/* Helpers the measuring verbs (evaluate, measure) share: common options, a label map's grid in the
 * measurement API's order, and the JSON report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_parse_spacing(const char *s, double *sp) {
    int n = 0;
    const char *p = s;
    while (*p && n < 3) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0.0) || !isfinite(v)) return 0;
        sp[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return 0;
    }
    return *p ? 0 : n;
}

int cli_common_option(const char *verb, const char *usage, int argc, char **argv, int *i, cli_common *c, int *rc) {
    const char *a = argv[*i];
    int more = *i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        fputs(usage, stdout);
        *rc = CLI_OK;
        return -1;
    }
    if (!more) return 0;
    if (!strcmp(a, "--report")) {
        c->report = argv[++*i];
    } else if (!strcmp(a, "--spacing")) {
        c->nsp = cli_parse_spacing(argv[++*i], c->spacing);
        if (c->nsp < 2) {
            *rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--spacing wants 2 or 3 positive mm values X,Y[,Z]");
            return -1;
        }
    } else if (!strcmp(a, "--threads")) {
        c->threads = atoi(argv[++*i]);
        if (c->threads < 0) {
            *rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--threads must be >= 0");
            return -1;
        }
    } else {
        return 0;
    }
    return 1;
}

int cli_unknown_option(const char *verb, const char *arg, const char *usage) {
    fprintf(stderr, "sarco %s: unknown or incomplete option '%s'\n\n%s", verb, arg, usage);
    return CLI_BAD_INPUT;
}

sarco_status cli_cpu_context(int threads, sarco_context **ctx, char *msg, size_t n) {
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.threads = threads;
    *ctx = NULL;
    return sarco_context_create_ex(&o, ctx, msg, n);
}

static double det_block(const double a[4][4], int n) {
    if (n == 2) return fabs(a[0][0] * a[1][1] - a[0][1] * a[1][0]);
    return fabs(a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]));
}

int cli_make_grid(const sarco_image *img, const double *spo, int nsp, cli_grid *g, char *why, size_t n) {
    g->ndim = img->ndim == 3 && img->dims[2] > 1 ? 3 : 2;
    double sx[3] = {img->spacing[0], img->spacing[1], img->spacing[2]};
    if (nsp) {
        if (nsp < g->ndim) {
            snprintf(why, n, "--spacing has %d values for a %dD image", nsp, g->ndim);
            return 0;
        }
        for (int a = 0; a < nsp; a++) sx[a] = spo[a];
    } else if (img->flags & SARCO_IMAGE_NO_SPACING) {
        snprintf(why, n, "the file carries no pixel spacing: pass --spacing X,Y in mm");
        return 0;
    }
    double prod = 1.0;
    for (int a = 0; a < g->ndim; a++) {
        g->dims[a] = img->dims[g->ndim - 1 - a];
        g->spacing[a] = sx[g->ndim - 1 - a];
        prod *= g->spacing[a];
    }
    g->cell = nsp ? prod : det_block(img->affine, g->ndim);
    if (!(g->cell > 0.0) || !isfinite(g->cell)) g->cell = prod;
    return 1;
}

int cli_same_grid(const char *pa, const sarco_image *a, const char *pb, const sarco_image *b, char *msg, size_t n) {
    int same = a->dims[0] == b->dims[0] && a->dims[1] == b->dims[1] && a->dims[2] == b->dims[2];
    for (int r = 0; r < 3 && same; r++)
        for (int c = 0; c < 4; c++)
            if (fabs(a->affine[r][c] - b->affine[r][c]) > 1e-3 * fmax(1.0, fabs(a->affine[r][c]))) same = 0;
    if (!same)
        snprintf(msg, n, "%s (%lldx%lldx%lld) and %s (%lldx%lldx%lld) are not on the same grid (dims and affine "
                 "must match)", pa, (long long)a->dims[0], (long long)a->dims[1], (long long)a->dims[2], pb,
                 (long long)b->dims[0], (long long)b->dims[1], (long long)b->dims[2]);
    return same;
}

json_t *cli_jreal(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *cli_us_json(const sarco_us_measure *u) {
    json_t *e = json_object();
    json_object_set_new(e, "pixels", json_integer(u->pixels));
    json_object_set_new(e, "csa_mm2", cli_jreal(u->csa_mm2));
    json_object_set_new(e, "csa_cm2", cli_jreal(u->csa_cm2));
    json_object_set_new(e, "mt_mm", cli_jreal(u->mt_mm));
    json_object_set_new(e, "mt_columns", json_integer(u->mt_columns));
    json_object_set_new(e, "mt_max_mm", cli_jreal(u->mt_max_mm));
    json_object_set_new(e, "inscribed_diameter_mm", cli_jreal(u->inscribed_diameter_mm));
    json_t *bb = json_object();
    json_object_set_new(bb, "row_min", json_integer(u->row_min));
    json_object_set_new(bb, "row_max", json_integer(u->row_max));
    json_object_set_new(bb, "col_min", json_integer(u->col_min));
    json_object_set_new(bb, "col_max", json_integer(u->col_max));
    json_object_set_new(bb, "height_mm", cli_jreal(u->height_mm));
    json_object_set_new(bb, "width_mm", cli_jreal(u->width_mm));
    json_object_set_new(e, "bbox", bb);
    json_object_set_new(e, "components", json_integer(u->components));
    json_object_set_new(e, "largest_component_share", cli_jreal(u->largest_component_share));
    json_object_set_new(e, "fragmented", json_boolean(u->flags & SARCO_US_FRAGMENTED));
    json_object_set_new(e, "touches_edge", json_boolean(u->flags & SARCO_US_TOUCHES_EDGE));
    if (u->flags & SARCO_US_HAS_IMAGE) {
        const int have = u->finite_pixels > 0;
        json_object_set_new(e, "echo_mean", have ? cli_jreal(u->echo_mean) : json_null());
        json_object_set_new(e, "echo_sd", have ? cli_jreal(u->echo_sd) : json_null());
        json_object_set_new(e, "finite_pixels", json_integer(u->finite_pixels));
    }
    return e;
}

void cli_json_geometry(json_t *obj, const sarco_image *img, const double *spo, int nsp) {
    json_t *dims = json_array(), *sp = json_array();
    for (int a = 0; a < img->ndim; a++) { /* file order: x, y[, z] */
        json_array_append_new(dims, json_integer(img->dims[a]));
        json_array_append_new(sp, cli_jreal(nsp ? spo[a] : img->spacing[a]));
    }
    json_object_set_new(obj, "dims", dims);
    json_object_set_new(obj, "spacing_mm", sp);
}

int cli_write_json(const char *verb, const json_t *root, const char *report) {
    FILE *f = report ? fopen(report, "w") : stdout;
    int bad = !f;
    if (f) {
        bad = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) != 0;
        fputc('\n', f);
        if (report) bad |= fclose(f) != 0;
    }
    if (!bad) return CLI_OK;
    char msg[4200];
    snprintf(msg, sizeof msg, "cannot write the report to %s", report ? report : "stdout");
    return cli_fail(verb, SARCO_ERR_IO, msg);
}

int cli_parse_precision(const char *s, sarco_precision *p) {
    static const struct {
        const char *name;
        sarco_precision v;
    } names[] = {{"fp32", SARCO_PRECISION_FP32}, {"bf16", SARCO_PRECISION_BF16}, {"tf32", SARCO_PRECISION_TF32},
                 {"fp16", SARCO_PRECISION_FP16}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(s, names[i].name)) {
            *p = names[i].v;
            return 1;
        }
    return 0;
}

sarco_status cli_image_read(sarco_context *ctx, const char *path, const char *series, sarco_image **img) {
    return series ? sarco_image_read_series(ctx, path, series, img) : sarco_image_read(ctx, path, img);
}

json_t *cli_dicom_json(const sarco_image *img) {
    const sarco_dicom_info *d = img ? img->dicom : NULL;
    if (!d) return NULL;
    static const char *const from[] = {"none", "PixelSpacing", "ultrasound regions"};
    json_t *o = json_object();
    json_object_set_new(o, "series_uid", json_string(d->series_uid));
    json_object_set_new(o, "series_description", json_string(d->series_description));
    json_object_set_new(o, "modality", json_string(d->modality));
    json_object_set_new(o, "transfer_syntax", json_string(d->transfer_syntax));
    json_object_set_new(o, "photometric", json_string(d->photometric));
    json_object_set_new(o, "slices", json_integer(d->files));
    json_object_set_new(o, "frames", json_integer(d->frames));
    json_t *sp = json_array();
    for (int a = 0; a < img->ndim; a++) json_array_append_new(sp, cli_jreal(img->spacing[a]));
    json_object_set_new(o, "spacing_mm_used", (img->flags & SARCO_IMAGE_NO_SPACING) ? json_null() : sp);
    if (img->flags & SARCO_IMAGE_NO_SPACING) json_decref(sp);
    json_object_set_new(o, "spacing_from",
                        json_string(d->spacing_source >= 0 && d->spacing_source <= 2 ? from[d->spacing_source] : "?"));
    if (d->files > 1) {
        json_object_set_new(o, "slice_spacing_mm", cli_jreal(d->slice_spacing));
        json_object_set_new(o, "largest_gap_mm", cli_jreal(d->largest_gap));
        json_object_set_new(o, "gap_tolerance_mm", cli_jreal(d->gap_tolerance));
    }
    json_object_set_new(o, "rescale_slope", cli_jreal(d->rescale_slope));
    json_object_set_new(o, "rescale_intercept", cli_jreal(d->rescale_intercept));
    json_object_set_new(o, "frames_along_z", json_boolean(img->flags & SARCO_IMAGE_DICOM_FRAMES));
    return o;
}
