/* sarco measure: per-label voxels, volumes (3D) or areas (2D), HU statistics, and indices by height. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *MEASURE_USAGE =
    "usage: sarco measure --labels L.nii.gz [--image CT.nii.gz] [--height-m H] [--report R.json]\n"
    "\n"
    "Per-label voxel counts and volumes (mL; areas in cm^2 for 2D images and single slices), and with\n"
    "--image the intensity statistics inside each label (HU for CT: mean, population SD, min, max, the\n"
    "share of voxels in the muscle window -29..150 HU and the IMAT window -190..-30 HU). \"total\" covers\n"
    "all nonzero labels together. JSON on stdout, or to --report.\n"
    "\n"
    "  --labels L           label map (NIfTI or PNG), integer labels 0..65535, 0 = background\n"
    "  --image CT           intensity image on the same grid (optional)\n"
    "  --height-m H         body height in metres: adds volume / H^2 (mL/m^2) or area / H^2 (cm^2/m^2,\n"
    "                       the skeletal muscle index of an L3 slice)\n"
    "  --spacing X,Y[,Z]    voxel size in mm (x, y, z) when the file has none or it is wrong\n"
    "  --report R.json      write the report there instead of stdout\n"
    "  --threads N          CPU threads (default: all)\n"
    "\n"
    "Exit codes: 0 ok, 2 bad input or usage, 1 internal failure.\n";

/* The label map's grid in the measurement API's order (C order: {nz, ny, nx} or {ny, nx}); a 3D file
 * holding one slice is measured as 2D. cell: |det| of the affine's voxel block (mm^3 or mm^2). */
typedef struct grid {
    int ndim;
    int64_t dims[3];
    double spacing[3];
    double cell;
} grid;

static int parse_spacing(const char *s, double *sp) {
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

static double det_block(const double a[4][4], int n) {
    if (n == 2) return fabs(a[0][0] * a[1][1] - a[0][1] * a[1][0]);
    return fabs(a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]));
}

/* Fills g from an image's geometry; sp_override (x, y[, z] mm, nsp values) replaces the file's. */
static int make_grid(const sarco_image *img, const double *sp_override, int nsp, grid *g, char *why, size_t n) {
    g->ndim = img->ndim == 3 && img->dims[2] > 1 ? 3 : 2;
    double sx[3] = {img->spacing[0], img->spacing[1], img->spacing[2]};
    if (nsp) {
        if (nsp < g->ndim) {
            snprintf(why, n, "--spacing has %d values for a %dD image", nsp, g->ndim);
            return 0;
        }
        for (int a = 0; a < nsp; a++) sx[a] = sp_override[a];
    } else if (img->flags & SARCO_IMAGE_NO_SPACING) {
        snprintf(why, n, "the file carries no pixel spacing: pass --spacing X,Y in mm");
        return 0;
    }
    for (int a = 0; a < g->ndim; a++) {
        g->dims[a] = img->dims[g->ndim - 1 - a];
        g->spacing[a] = sx[g->ndim - 1 - a];
    }
    double prod = 1.0;
    for (int a = 0; a < g->ndim; a++) prod *= g->spacing[a];
    g->cell = nsp ? prod : det_block(img->affine, g->ndim);
    if (!(g->cell > 0.0) || !isfinite(g->cell)) g->cell = prod;
    return 1;
}

static json_t *jreal(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* label < 0: the "total" entry, without a label key */
static json_t *measure_entry(const sarco_label_measure *m, int label, const grid *g, double height) {
    json_t *e = json_object();
    if (label >= 0) json_object_set_new(e, "label", json_integer(label));
    json_object_set_new(e, "voxels", json_integer(m->voxels));
    const double size = (double)m->voxels * g->cell / (g->ndim == 3 ? 1000.0 : 100.0);
    json_object_set_new(e, g->ndim == 3 ? "volume_ml" : "area_cm2", jreal(size));
    if (height > 0.0)
        json_object_set_new(e, g->ndim == 3 ? "volume_index_ml_per_m2" : "area_index_cm2_per_m2",
                            jreal(size / (height * height)));
    if (m->flags & SARCO_MEASURE_HAS_IMAGE) {
        const int have = m->finite_voxels > 0;
        json_object_set_new(e, "finite_voxels", json_integer(m->finite_voxels));
        json_object_set_new(e, "hu_mean", have ? jreal(m->mean) : json_null());
        json_object_set_new(e, "hu_sd", have ? jreal(m->sd) : json_null());
        json_object_set_new(e, "hu_min", have ? jreal(m->min) : json_null());
        json_object_set_new(e, "hu_max", have ? jreal(m->max) : json_null());
        json_object_set_new(e, "hu_fraction_muscle", have ? jreal(m->fraction_muscle) : json_null());
        json_object_set_new(e, "hu_fraction_imat", have ? jreal(m->fraction_imat) : json_null());
    }
    return e;
}

static int same_grid(const sarco_image *a, const sarco_image *b) {
    if (a->dims[0] != b->dims[0] || a->dims[1] != b->dims[1] || a->dims[2] != b->dims[2]) return 0;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            if (fabs(a->affine[r][c] - b->affine[r][c]) > 1e-3 * fmax(1.0, fabs(a->affine[r][c]))) return 0;
    return 1;
}

int cmd_measure(int argc, char **argv) {
    const char *verb = "measure", *lpath = NULL, *ipath = NULL, *report = NULL;
    double height = 0.0, spo[3];
    int nsp = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(MEASURE_USAGE, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--labels") && more) {
            lpath = argv[++i];
        } else if (!strcmp(a, "--image") && more) {
            ipath = argv[++i];
        } else if (!strcmp(a, "--report") && more) {
            report = argv[++i];
        } else if (!strcmp(a, "--height-m") && more) {
            char *end;
            height = strtod(argv[++i], &end);
            if (*end || !(height > 0.0 && height < 3.0))
                return cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--height-m wants a height in metres (0 < H < 3)");
        } else if (!strcmp(a, "--spacing") && more) {
            nsp = parse_spacing(argv[++i], spo);
            if (nsp < 2) return cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--spacing wants 2 or 3 positive mm values X,Y[,Z]");
        } else if (!strcmp(a, "--threads") && more) {
            threads = atoi(argv[++i]);
            if (threads < 0) return cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--threads must be >= 0");
        } else {
            fprintf(stderr, "sarco measure: unknown or incomplete option '%s'\n\n%s", a, MEASURE_USAGE);
            return CLI_BAD_INPUT;
        }
    }
    if (!lpath) {
        fprintf(stderr, "sarco measure: --labels is required\n\n%s", MEASURE_USAGE);
        return CLI_BAD_INPUT;
    }

    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.threads = threads;
    sarco_context *ctx = NULL;
    char msg[1024];
    sarco_status s = sarco_context_create_ex(&o, &ctx, msg, sizeof msg);
    if (s != SARCO_OK) return cli_fail(verb, s, msg);

    int rc = CLI_OK;
    uint16_t *labels = NULL, *bin = NULL;
    sarco_image *geom = NULL, *img = NULL;
    sarco_label_measure *m = NULL, *tot = NULL;
    size_t cnt = 0, tcnt = 0;
    json_t *root = NULL;
    grid g;
    s = sarco_labels_read(ctx, lpath, &labels, &geom);
    if (s != SARCO_OK) {
        rc = cli_fail(verb, s, sarco_last_error(ctx));
        goto done;
    }
    if (!make_grid(geom, spo, nsp, &g, msg, sizeof msg)) {
        rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, msg);
        goto done;
    }
    if (ipath) {
        s = sarco_image_read(ctx, ipath, &img);
        if (s != SARCO_OK) {
            rc = cli_fail(verb, s, sarco_last_error(ctx));
            goto done;
        }
        if (!same_grid(img, geom)) {
            snprintf(msg, sizeof msg, "%s (%lldx%lldx%lld) and %s (%lldx%lldx%lld) are not on the same grid (dims and "
                     "affine must match)", ipath, (long long)img->dims[0], (long long)img->dims[1],
                     (long long)img->dims[2], lpath, (long long)geom->dims[0], (long long)geom->dims[1],
                     (long long)geom->dims[2]);
            rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, msg);
            goto done;
        }
    }
    const float *data = img ? img->data : NULL;
    s = sarco_measure_labels(ctx, g.ndim, g.dims, g.spacing, labels, data, NULL, 0, &m, &cnt);
    int64_t n = g.dims[0] * g.dims[1] * (g.ndim == 3 ? g.dims[2] : 1);
    if (s == SARCO_OK && !(bin = malloc((size_t)n * sizeof *bin))) s = SARCO_ERR_OUT_OF_MEMORY;
    if (s == SARCO_OK) {
        for (int64_t i = 0; i < n; i++) bin[i] = labels[i] != 0;
        int32_t one = 1;
        s = sarco_measure_labels(ctx, g.ndim, g.dims, g.spacing, bin, data, &one, 1, &tot, &tcnt);
    }
    if (s != SARCO_OK) {
        rc = cli_fail(verb, s, s == SARCO_ERR_OUT_OF_MEMORY && !bin ? "out of memory" : sarco_last_error(ctx));
        goto done;
    }

    root = json_object();
    json_object_set_new(root, "labels_path", json_string(lpath));
    json_object_set_new(root, "image_path", ipath ? json_string(ipath) : json_null());
    json_t *dims = json_array(), *sp = json_array();
    for (int a = 0; a < geom->ndim; a++) { /* file order: x, y[, z] */
        json_array_append_new(dims, json_integer(geom->dims[a]));
        json_array_append_new(sp, jreal(nsp ? spo[a] : geom->spacing[a]));
    }
    json_object_set_new(root, "dims", dims);
    json_object_set_new(root, "spacing_mm", sp);
    json_object_set_new(root, g.ndim == 3 ? "voxel_volume_mm3" : "pixel_area_mm2", jreal(g.cell));
    json_object_set_new(root, "measured_as", json_string(g.ndim == 3 ? "3d" : "2d"));
    json_object_set_new(root, "units_assumed_mm",
                        json_boolean(!nsp && ((geom->flags | (img ? img->flags : 0)) & SARCO_IMAGE_UNITS_ASSUMED_MM)));
    if (img) json_object_set_new(root, "image_nan_voxels", json_integer(img->nan_count));
    json_object_set_new(root, "height_m", height > 0.0 ? jreal(height) : json_null());
    json_t *arr = json_array();
    for (size_t k = 0; k < cnt; k++) {
        json_array_append_new(arr, measure_entry(&m[k], m[k].label, &g, height));
    }
    json_object_set_new(root, "labels", arr);
    json_object_set_new(root, "total", measure_entry(&tot[0], -1, &g, height));
    FILE *f = report ? fopen(report, "w") : stdout;
    if (!f) {
        snprintf(msg, sizeof msg, "cannot write %s", report);
        rc = cli_fail(verb, SARCO_ERR_IO, msg);
        goto done;
    }
    int bad = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) != 0;
    fputc('\n', f);
    if (report) bad |= fclose(f) != 0;
    if (bad) {
        snprintf(msg, sizeof msg, "cannot write the report to %s", report ? report : "stdout");
        rc = cli_fail(verb, SARCO_ERR_IO, msg);
    }
done:
    json_decref(root);
    sarco_label_measures_free(m);
    sarco_label_measures_free(tot);
    free(bin);
    sarco_labels_free(labels);
    sarco_image_free(geom);
    sarco_image_free(img);
    sarco_context_free(ctx);
    return rc;
}
