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

int cmd_measure(int argc, char **argv) {
    const char *verb = "measure", *lpath = NULL, *ipath = NULL;
    double height = 0.0;
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
    if (!cli_make_grid(geom, spo, nsp, &g, msg, sizeof msg)) {
        rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, msg);
        goto done;
    }
    if (ipath) {
        s = sarco_image_read(ctx, ipath, &img);
        if (s != SARCO_OK) {
            rc = cli_fail(verb, s, sarco_last_error(ctx));
            goto done;
        }
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
