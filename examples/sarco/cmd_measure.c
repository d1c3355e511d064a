/* sarco measure: per-label voxels, volumes (3D) or areas (2D), HU statistics, and indices by height;
 * on 2D ultrasound label maps also CSA, muscle thickness, echo intensity and components. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *MEASURE_USAGE =
    "usage: sarco measure --labels L.nii.gz [--image CT.nii.gz] [--height-m H] [--report R.json]\n"
    "       sarco measure --labels L.png --image US.png [--pixel-spacing-mm ROW COL] [--report R.json]\n"
    "\n"
    "Per-label voxel counts and volumes (mL; areas in cm^2 for 2D images and single slices), and with\n"
    "--image the intensity statistics inside each label (HU for CT: mean, population SD, min, max, the\n"
    "share of voxels in the muscle window -29..150 HU and the IMAT window -190..-30 HU). \"total\" covers\n"
    "all nonzero labels together. JSON on stdout, or to --report.\n"
    "\n"
    "  --labels L           label map (NIfTI or PNG), integer labels 0..65535, 0 = background\n"
    "  --image CT           intensity image on the same grid (optional): NIfTI, PNG, JPEG, a DICOM file\n"
    "                       or a folder with a DICOM series\n"
    "  --series UID         the SeriesInstanceUID to read when the --image folder holds several\n"
    "  --height-m H         body height in metres: adds volume / H^2 (mL/m^2) or area / H^2 (cm^2/m^2,\n"
    "                       the skeletal muscle index of an L3 slice)\n"
    "  --spacing X,Y[,Z]    voxel size in mm (x, y, z) when the file has none or it is wrong\n"
    "\n"
    "Ultrasound (2D label maps, when the labels or the image are PNG/JPEG, --pixel-spacing-mm is given,\n"
    "or --ultrasound): each label also gets \"ultrasound\": CSA (mm^2, cm^2), MT (median vertical extent\n"
    "over the central third of its width), the largest vertical extent, the largest inscribed circle's\n"
    "diameter, bounding box, 8-connected components and, with --image, the echo intensity (mean and SD\n"
    "of the raw grey values inside; colour images as BT.601 luma). docs/measure.md has the definitions.\n"
    "  --pixel-spacing-mm ROW COL  pixel size in mm, rows (depth) then columns; otherwise the file's\n"
    "                       (PNG pHYs, JPEG density, NIfTI). Never assumed: without one, refused.\n"
    "  --ultrasound         ultrasound measures for a 2D NIfTI label map too\n"
    "  --report R.json      write the report there instead of stdout\n"
    "  --threads N          CPU threads (default: all)\n"
    "\n"
    "Exit codes: 0 ok, 2 bad input or usage, 1 internal failure.\n";

/* label < 0: the "total" entry, without a label key */
static json_t *measure_entry(const sarco_label_measure *m, int label, const cli_grid *g, double height) {
    json_t *e = json_object();
    if (label >= 0) json_object_set_new(e, "label", json_integer(label));
    json_object_set_new(e, "voxels", json_integer(m->voxels));
    const double size = (double)m->voxels * g->cell / (g->ndim == 3 ? 1000.0 : 100.0);
    json_object_set_new(e, g->ndim == 3 ? "volume_ml" : "area_cm2", cli_jreal(size));
    if (height > 0.0)
        json_object_set_new(e, g->ndim == 3 ? "volume_index_ml_per_m2" : "area_index_cm2_per_m2",
                            cli_jreal(size / (height * height)));
    if (m->flags & SARCO_MEASURE_HAS_IMAGE) {
        const int have = m->finite_voxels > 0;
        json_object_set_new(e, "finite_voxels", json_integer(m->finite_voxels));
        json_object_set_new(e, "hu_mean", have ? cli_jreal(m->mean) : json_null());
        json_object_set_new(e, "hu_sd", have ? cli_jreal(m->sd) : json_null());
        json_object_set_new(e, "hu_min", have ? cli_jreal(m->min) : json_null());
        json_object_set_new(e, "hu_max", have ? cli_jreal(m->max) : json_null());
        json_object_set_new(e, "hu_fraction_muscle", have ? cli_jreal(m->fraction_muscle) : json_null());
        json_object_set_new(e, "hu_fraction_imat", have ? cli_jreal(m->fraction_imat) : json_null());
    }
    return e;
}

/* The spacing (row, col mm) of a 2D file, 0 when it has none. */
static int file_spacing_rc(const sarco_image *im, double *rc) {
    if (!im || (im->flags & SARCO_IMAGE_NO_SPACING) || !(im->spacing[0] > 0) || !(im->spacing[1] > 0)) return 0;
    rc[0] = im->spacing[1];
    rc[1] = im->spacing[0];
    return 1;
}

/* Ultrasound mode: sizes from sarco_measure_labels (no image: its statistics are HU-named), the rest
 * from sarco_measure_ultrasound. Spacing: --pixel-spacing-mm, else --spacing, else the label file's,
 * else the image file's (nnU-Net writes label PNGs without pHYs). */
static int measure_ultrasound(const char *lpath, const char *ipath, const uint16_t *labels, const sarco_image *geom,
                              const sarco_image *img, const double *pxsp, const cli_common *co, double height,
                              sarco_context *ctx) {
    const char *verb = "measure";
    char msg[1024];
    double rc[2] = {0, 0};
    const char *source = NULL;
    if (pxsp) {
        rc[0] = pxsp[0];
        rc[1] = pxsp[1];
        source = "--pixel-spacing-mm";
    } else if (co->nsp) {
        rc[0] = co->spacing[1];
        rc[1] = co->spacing[0];
        source = "--spacing";
    } else if (file_spacing_rc(geom, rc)) {
        source = lpath;
    } else if (file_spacing_rc(img, rc)) {
        source = ipath;
    }
    if (img) {
        if (img->dims[0] != geom->dims[0] || img->dims[1] != geom->dims[1] || img->dims[2] != 1) {
            snprintf(msg, sizeof msg, "%s (%lldx%lld) and %s (%lldx%lld) differ in size", ipath,
                     (long long)img->dims[0], (long long)img->dims[1], lpath, (long long)geom->dims[0],
                     (long long)geom->dims[1]);
            return cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, msg);
        }
        double a[2], b[2];
        if (file_spacing_rc(img, a) && file_spacing_rc(geom, b) &&
            (fabs(a[0] - b[0]) > 1e-3 * b[0] || fabs(a[1] - b[1]) > 1e-3 * b[1])) {
            snprintf(msg, sizeof msg, "%s (%g x %g mm) and %s (%g x %g mm) carry different pixel spacings: pass "
                     "--pixel-spacing-mm ROW COL", ipath, a[0], a[1], lpath, b[0], b[1]);
            return cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, msg);
        }
    }
    const int64_t dims[2] = {geom->dims[1], geom->dims[0]}; /* rows, cols */
    sarco_us_measure *u = NULL;
    sarco_label_measure *m = NULL;
    size_t nu = 0, nm = 0;
    sarco_status s = sarco_measure_ultrasound(ctx, dims, source ? rc : NULL, labels, img ? img->data : NULL, NULL, 0,
                                              &u, &nu);
    if (s != SARCO_OK) return cli_fail(verb, s, sarco_last_error(ctx));
    s = sarco_measure_labels(ctx, 2, dims, rc, labels, NULL, NULL, 0, &m, &nm);
    if (s != SARCO_OK || nm != nu) {
        sarco_us_measures_free(u);
        sarco_label_measures_free(m);
        return cli_fail(verb, s != SARCO_OK ? s : SARCO_ERR_INTERNAL, sarco_last_error(ctx));
    }
    json_t *root = json_object();
    json_object_set_new(root, "labels_path", json_string(lpath));
    json_object_set_new(root, "image_path", ipath ? json_string(ipath) : json_null());
    json_t *image_dicom = cli_dicom_json(img); /* no patient data */
    if (image_dicom) json_object_set_new(root, "image_dicom", image_dicom);
    json_t *dj = json_array();
    json_array_append_new(dj, json_integer(dims[0]));
    json_array_append_new(dj, json_integer(dims[1]));
    json_object_set_new(root, "rows_cols", dj);
    json_t *sj = json_array();
    json_array_append_new(sj, cli_jreal(rc[0]));
    json_array_append_new(sj, cli_jreal(rc[1]));
    json_object_set_new(root, "pixel_spacing_mm", sj);
    json_object_set_new(root, "pixel_spacing_from", json_string(source));
    json_object_set_new(root, "measured_as", json_string("2d-ultrasound"));
    json_object_set_new(root, "mt_definition",
                        json_string("median vertical extent over the central third of the label's width"));
    json_object_set_new(root, "connectivity", json_integer(8));
    json_object_set_new(root, "height_m", height > 0.0 ? cli_jreal(height) : json_null());
    json_t *arr = json_array();
    for (size_t k = 0; k < nu; k++) {
        json_t *e = json_object();
        json_object_set_new(e, "label", json_integer(u[k].label));
        json_object_set_new(e, "voxels", json_integer(m[k].voxels));
        json_object_set_new(e, "area_cm2", cli_jreal(m[k].area_cm2));
        if (height > 0.0) json_object_set_new(e, "area_index_cm2_per_m2", cli_jreal(m[k].area_cm2 / (height * height)));
        json_object_set_new(e, "ultrasound", cli_us_json(&u[k]));
        json_array_append_new(arr, e);
    }
    json_object_set_new(root, "labels", arr);
    int rc_ = cli_write_json(verb, root, co->report);
    json_decref(root);
    sarco_us_measures_free(u);
    sarco_label_measures_free(m);
    return rc_;
}

int cmd_measure(int argc, char **argv) {
    const char *verb = "measure", *lpath = NULL, *ipath = NULL, *series = NULL;
    double height = 0.0, pxsp[2] = {0, 0};
    int have_pxsp = 0, force_us = 0;
    cli_common co = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc, rc;
        int took = cli_common_option(verb, MEASURE_USAGE, argc, argv, &i, &co, &rc);
        if (took < 0) return rc;
        if (took) continue;
        if (!strcmp(a, "--labels") && more) {
            lpath = argv[++i];
        } else if (!strcmp(a, "--image") && more) {
            ipath = argv[++i];
        } else if (!strcmp(a, "--series") && more) {
            series = argv[++i];
        } else if (!strcmp(a, "--pixel-spacing-mm") && i + 2 < argc) {
            for (int k = 0; k < 2; k++) {
                char *end;
                pxsp[k] = strtod(argv[++i], &end);
                if (*end || !(pxsp[k] > 0.0) || !isfinite(pxsp[k]))
                    return cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT,
                                    "--pixel-spacing-mm wants two positive mm values: ROW COL");
            }
            have_pxsp = 1;
        } else if (!strcmp(a, "--ultrasound")) {
            force_us = 1;
        } else if (!strcmp(a, "--height-m") && more) {
            char *end;
            height = strtod(argv[++i], &end);
            if (*end || !(height > 0.0 && height < 3.0))
                return cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--height-m wants a height in metres (0 < H < 3)");
        } else {
            return cli_unknown_option(verb, a, MEASURE_USAGE);
        }
    }
    const double *spo = co.spacing;
    const int nsp = co.nsp;
    if (!lpath) {
        fprintf(stderr, "sarco measure: --labels is required\n\n%s", MEASURE_USAGE);
        return CLI_BAD_INPUT;
    }

    sarco_context *ctx = NULL;
    char msg[1024];
    sarco_status s = cli_cpu_context(co.threads, &ctx, msg, sizeof msg);
    if (s != SARCO_OK) return cli_fail(verb, s, msg);

    int rc = CLI_OK;
    uint16_t *labels = NULL, *bin = NULL;
    sarco_image *geom = NULL, *img = NULL;
    sarco_label_measure *m = NULL, *tot = NULL;
    size_t cnt = 0, tcnt = 0;
    json_t *root = NULL;
    cli_grid g;
    s = sarco_labels_read(ctx, lpath, &labels, &geom);
    if (s != SARCO_OK) {
        rc = cli_fail(verb, s, sarco_last_error(ctx));
        goto done;
    }
    if (ipath || have_pxsp) {
        const int two_d = geom->ndim == 2 || geom->dims[2] == 1;
        if (ipath) {
            s = cli_image_read(ctx, ipath, series, &img);
            if (s != SARCO_OK) {
                rc = cli_fail(verb, s, sarco_last_error(ctx));
                goto done;
            }
        }
        if (have_pxsp && !two_d) {
            rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--pixel-spacing-mm is for 2D images; use --spacing");
            goto done;
        }
        /* PNG/JPEG files carry no NIfTI header: they are pictures, ultrasound here */
        int us = two_d && (force_us || have_pxsp || geom->nifti.version == 0 || (img && img->nifti.version == 0));
        if (us) {
            rc = measure_ultrasound(lpath, ipath, labels, geom, img, have_pxsp ? pxsp : NULL, &co, height, ctx);
            goto done;
        }
    } else if (force_us && (geom->ndim == 2 || geom->dims[2] == 1)) {
        rc = measure_ultrasound(lpath, NULL, labels, geom, NULL, NULL, &co, height, ctx);
        goto done;
    }
    if (!cli_make_grid(geom, spo, nsp, &g, msg, sizeof msg)) {
        rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, msg);
        goto done;
    }
    if (ipath) {
        if (!cli_same_grid(ipath, img, lpath, geom, msg, sizeof msg)) {
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
    json_t *image_dicom = cli_dicom_json(img); /* no patient data */
    if (image_dicom) json_object_set_new(root, "image_dicom", image_dicom);
    cli_json_geometry(root, geom, spo, nsp);
    json_object_set_new(root, g.ndim == 3 ? "voxel_volume_mm3" : "pixel_area_mm2", cli_jreal(g.cell));
    json_object_set_new(root, "measured_as", json_string(g.ndim == 3 ? "3d" : "2d"));
    json_object_set_new(root, "units_assumed_mm",
                        json_boolean(!nsp && ((geom->flags | (img ? img->flags : 0)) & SARCO_IMAGE_UNITS_ASSUMED_MM)));
    if (img) json_object_set_new(root, "image_nan_voxels", json_integer(img->nan_count));
    json_object_set_new(root, "height_m", height > 0.0 ? cli_jreal(height) : json_null());
    json_t *arr = json_array();
    for (size_t k = 0; k < cnt; k++) {
        json_array_append_new(arr, measure_entry(&m[k], m[k].label, &g, height));
    }
    json_object_set_new(root, "labels", arr);
    json_object_set_new(root, "total", measure_entry(&tot[0], -1, &g, height));
    rc = cli_write_json(verb, root, co.report);
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
