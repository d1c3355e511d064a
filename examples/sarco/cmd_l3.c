/* sarco l3: L3 body composition from a CT slice (sarco_l3_report). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *L3_USAGE =
    "usage: sarco l3 --input CT.nii.gz (--slice K | --vertebrae V.nii.gz --l3-label N) (--model M | --labels L)\n"
    "                [--slices 3] [--classes a,b,...] [--height-m H] [--sex M|F --table T [--bmi B | --weight-kg W]]\n"
    "                [--muscle-hu LO,HI] [--low-attenuation-hu LO,HI] [--imat-hu LO,HI] [--spacing X,Y]\n"
    "                [--output SLICE_LABELS.nii.gz] [--overlay O.png] [--html R.html] [--report R.json] [--threads N]\n"
    "\n"
    "Measures the axial slice at L3: per class area (cm^2), mean and SD HU; the muscle compartment, SMA\n"
    "(its pixels in the muscle window), SMI = SMA / height^2, muscle attenuation, the low-attenuation\n"
    "fraction and IMAT area; averaged over --slices slices centred on L3. With --sex and --table the SMI\n"
    "and muscle attenuation are judged with that cut-off table (prado2008, martin2013, knhanes,\n"
    "cirrhosis_sarco). JSON on stdout or to --report (schema sarco.l3/1, docs/clinical.md).\n"
    "\n"
    "  --input CT           CT volume or single slice (NIfTI), HU\n"
    "  --slice K            the L3 slice index (0-based, third axis); not needed for a single slice\n"
    "  --vertebrae V        a vertebra label map on the CT's grid (e.g. TotalSegmentator's)\n"
    "  --l3-label N         L3's label in it: the slice through the centroid of that label is used\n"
    "  --slices N           average over N slices (odd) centred on L3 (default 1)\n"
    "  --model M            a 2-D segmentation model (class names from its config)\n"
    "  --labels L           a label map on the CT's grid instead of a model\n"
    "  --classes a,b,...    names of labels 0,1,... (default: the model's, else background,\n"
    "                       skeletal_muscle,subcutaneous_fat,visceral_fat: the L3 phantom's)\n"
    "  --muscle-hu, --low-attenuation-hu, --imat-hu   HU windows, inclusive (defaults -29,150 / -29,29 /\n"
    "                       -190,-30; the report states which were used)\n"
    "  --output L           write the centre slice's labels (as measured) there\n"
    "  --overlay O.png      draw the centre slice with its labels (CT window W400/L40, class names)\n"
    "  --html R.html        the HTML report (sarco report) of these measures with the overlay embedded\n"
    "\n"
    "Exit codes: 0 ok, 2 bad input or usage, 1 internal failure.\n";

static int parse_pair(const char *s, double *lo, double *hi) {
    char *end;
    *lo = strtod(s, &end);
    if (end == s || *end != ',') return 0;
    const char *t = end + 1;
    *hi = strtod(t, &end);
    return end != t && !*end;
}

static int parse_num(const char *s, double *v) {
    char *end;
    *v = strtod(s, &end);
    return end != s && !*end;
}

int cmd_l3(int argc, char **argv) {
    const char *verb = "l3", *in = NULL, *vert = NULL, *mpath = NULL, *lpath = NULL, *out = NULL;
    const char *overlay = NULL, *html = NULL;
    long l3_label = -1;
    cli_common co = {0};
    json_t *o = json_object();
    int rc = CLI_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc, r;
        int took = cli_common_option(verb, L3_USAGE, argc, argv, &i, &co, &r);
        if (took < 0) {
            json_decref(o);
            return r;
        }
        if (took) continue;
        double x, lo, hi;
        if (!strcmp(a, "--input") && more) {
            in = argv[++i];
        } else if (!strcmp(a, "--vertebrae") && more) {
            vert = argv[++i];
        } else if (!strcmp(a, "--model") && more) {
            mpath = argv[++i];
        } else if (!strcmp(a, "--labels") && more) {
            lpath = argv[++i];
        } else if (!strcmp(a, "--output") && more) {
            out = argv[++i];
        } else if (!strcmp(a, "--overlay") && more) {
            overlay = argv[++i];
        } else if (!strcmp(a, "--html") && more) {
            html = argv[++i];
        } else if (!strcmp(a, "--l3-label") && more) {
            char *end;
            l3_label = strtol(argv[++i], &end, 10);
            if (*end || l3_label < 1 || l3_label > 65535) {
                rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--l3-label wants a label 1..65535");
                goto done;
            }
        } else if ((!strcmp(a, "--slice") || !strcmp(a, "--slices")) && more) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0) {
                rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--slice/--slices want a non-negative integer");
                goto done;
            }
            json_object_set_new(o, a + 2, json_integer(v));
        } else if ((!strcmp(a, "--height-m") || !strcmp(a, "--bmi") || !strcmp(a, "--weight-kg")) && more) {
            if (!parse_num(argv[++i], &x)) {
                rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--height-m, --bmi and --weight-kg want numbers");
                goto done;
            }
            json_object_set_new(o, !strcmp(a, "--height-m") ? "height_m" : !strcmp(a, "--bmi") ? "bmi" : "weight_kg",
                                json_real(x));
        } else if ((!strcmp(a, "--sex") || !strcmp(a, "--table")) && more) {
            json_object_set_new(o, a + 2, json_string(argv[++i]));
        } else if ((!strcmp(a, "--muscle-hu") || !strcmp(a, "--low-attenuation-hu") || !strcmp(a, "--imat-hu")) && more) {
            if (!parse_pair(argv[++i], &lo, &hi)) {
                rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "HU windows are LO,HI");
                goto done;
            }
            json_object_set_new(o, !strcmp(a, "--muscle-hu") ? "muscle_hu" : !strcmp(a, "--imat-hu") ? "imat_hu"
                                                                                                      : "low_attenuation_hu",
                                json_pack("[f, f]", lo, hi));
        } else if (!strcmp(a, "--classes") && more) {
            json_t *arr = json_array();
            char *dup = strdup(argv[++i]);
            for (char *t = strtok(dup, ","); t; t = strtok(NULL, ",")) json_array_append_new(arr, json_string(t));
            free(dup);
            json_object_set_new(o, "classes", arr);
        } else {
            rc = cli_unknown_option(verb, a, L3_USAGE);
            goto done;
        }
    }
    if (!in || (!mpath == !lpath) || (json_object_get(o, "slice") && vert) || (!vert != (l3_label < 0))) {
        fprintf(stderr, "sarco l3: need --input, one of --model/--labels, and --slice or --vertebrae with --l3-label\n\n%s",
                L3_USAGE);
        rc = CLI_BAD_INPUT;
        goto done;
    }

    sarco_context *ctx = NULL;
    char msg[1024];
    sarco_status s = cli_cpu_context(co.threads, &ctx, msg, sizeof msg);
    if (s != SARCO_OK) {
        rc = cli_fail(verb, s, msg);
        goto done;
    }
    sarco_image *ct = NULL, *lgeom = NULL, *vgeom = NULL, *g2 = NULL;
    uint8_t *rgb = NULL; /* the overlay, drawn once for --overlay and --html */
    int64_t rgb_w = 0, rgb_h = 0;
    uint16_t *labels = NULL, *vlab = NULL, *slice_lab = NULL;
    sarco_model *model = NULL;
    char *report = NULL;
    if ((s = sarco_image_read(ctx, in, &ct)) != SARCO_OK) goto fail;
    if (co.nsp) {
        if (co.nsp < 2) {
            s = SARCO_ERR_INVALID_ARGUMENT;
            snprintf(msg, sizeof msg, "--spacing wants X,Y[,Z]");
            goto fail_msg;
        }
        double sp[3] = {co.spacing[0], co.spacing[1], co.nsp > 2 ? co.spacing[2] : ct->spacing[2]};
        if ((s = sarco_image_set_spacing(ctx, ct, sp)) != SARCO_OK) goto fail;
    }
    size_t n = (size_t)(ct->dims[0] * ct->dims[1] * (ct->ndim == 3 ? ct->dims[2] : 1));
    if (lpath) {
        if ((s = sarco_labels_read(ctx, lpath, &labels, &lgeom)) != SARCO_OK) goto fail;
        if (!co.nsp && !cli_same_grid(lpath, lgeom, in, ct, msg, sizeof msg)) {
            s = SARCO_ERR_INVALID_ARGUMENT;
            goto fail_msg;
        }
    } else if ((s = sarco_model_load(ctx, mpath, &model)) != SARCO_OK) {
        goto fail;
    }
    if (vert) {
        if ((s = sarco_labels_read(ctx, vert, &vlab, &vgeom)) != SARCO_OK) goto fail;
        if (!cli_same_grid(vert, vgeom, in, ct, msg, sizeof msg)) {
            s = SARCO_ERR_INVALID_ARGUMENT;
            goto fail_msg;
        }
        int64_t k;
        double cz;
        size_t nv = (size_t)(vgeom->dims[0] * vgeom->dims[1] * vgeom->dims[2]);
        if ((s = sarco_l3_slice_from_labels(ctx, vgeom, vlab, nv, (int32_t)l3_label, &k, &cz)) != SARCO_OK) goto fail;
        json_object_set_new(o, "slice", json_integer(k));
        json_object_set_new(o, "slice_source", json_pack("{s:s, s:i, s:f, s:s}", "vertebrae", vert, "label",
                                                          (int)l3_label, "centroid_z", cz, "rule",
                                                          "the slice nearest the centroid of the L3 label"));
    }
    const size_t plane = (size_t)(ct->dims[0] * ct->dims[1]);
    const int picture = overlay || html;
    if ((out || picture) && !(slice_lab = calloc(plane, sizeof *slice_lab))) {
        s = SARCO_ERR_OUT_OF_MEMORY;
        snprintf(msg, sizeof msg, "out of memory");
        goto fail_msg;
    }
    char *opts = json_dumps(o, JSON_COMPACT);
    s = sarco_l3_report(ctx, ct, labels, labels ? n : 0, model, opts, &report, slice_lab);
    free(opts);
    if (s != SARCO_OK) goto fail;
    if (out || picture) {
        /* the centre slice as a 2-D image on the volume's geometry, with its HU for the overlay */
        json_t *rep = json_loads(report, 0, NULL);
        const int64_t d2[2] = {ct->dims[0], ct->dims[1]};
        const double sp2[2] = {ct->spacing[0], ct->spacing[1]};
        json_t *sl = json_object_get(rep, "slice");
        int64_t k = json_is_object(sl) ? json_integer_value(json_object_get(sl, "index"))
                                       : json_integer_value(json_object_get(o, "slice"));
        if (k < 0 || k >= (ct->ndim == 3 ? ct->dims[2] : 1)) k = 0;
        if ((s = sarco_image_create(ctx, 2, d2, sp2, &g2)) != SARCO_OK) {
            json_decref(rep);
            goto fail;
        }
        for (int r = 0; r < 4; r++) {
            for (int c = 0; c < 4; c++) g2->affine[r][c] = (c < 2 || r == 3) ? ct->affine[r][c] : (r == c);
            g2->affine[r][3] = ct->affine[r][3] + ct->affine[r][2] * (double)k;
        }
        memcpy(g2->data, ct->data + (size_t)k * plane, plane * sizeof *g2->data);
        int mx = 1;
        for (size_t i = 0; i < plane; i++) mx = slice_lab[i] > mx ? slice_lab[i] : mx;
        if (out && (s = sarco_labels_write(ctx, g2, slice_lab, mx, out)) != SARCO_OK) {
            json_decref(rep);
            goto fail;
        }
        if (picture) {
            const char *names[64] = {"background"};
            size_t nn = 1, ci;
            json_t *c;
            json_array_foreach(json_object_get(rep, "classes"), ci, c) {
                json_int_t lab = json_integer_value(json_object_get(c, "label"));
                const char *nm = json_string_value(json_object_get(c, "name"));
                if (lab > 0 && lab < 64 && nm) {
                    names[lab] = nm;
                    if ((size_t)lab + 1 > nn) nn = (size_t)lab + 1;
                }
            }
            sarco_overlay_options oo;
            sarco_overlay_options_init(&oo);
            oo.class_names = names;
            oo.nclass_names = nn;
            oo.orientation = SARCO_OVERLAY_RADIOLOGICAL;
            s = sarco_overlay_render(ctx, g2, slice_lab, &oo, &rgb, &rgb_w, &rgb_h);
            if (s == SARCO_OK && overlay) s = sarco_png_write(ctx, overlay, rgb, rgb_w, rgb_h, 3, NULL);
        }
        json_decref(rep);
        if (s != SARCO_OK) goto fail;
    }
    {
        json_t *root = json_loads(report, 0, NULL);
        json_object_set_new(root, "input", json_string(in));
        if (lpath) json_object_set_new(root, "labels_path", json_string(lpath));
        if (mpath) json_object_set_new(root, "model_path", json_string(mpath));
        if (out) json_object_set_new(root, "slice_labels_path", json_string(out));
        if (overlay) json_object_set_new(root, "overlay_path", json_string(overlay));
        rc = cli_write_json(verb, root, co.report);
        if (html && rc == CLI_OK) {
            char *js = json_dumps(root, JSON_COMPACT);
            sarco_report_picture pic = {NULL, rgb, rgb_w, rgb_h,
                                        "The L3 slice with its labels (radiological view, CT window W400 / L40)"};
            sarco_report_inputs ri;
            sarco_report_inputs_init(&ri);
            ri.l3_json = js;
            ri.model_path = mpath;
            ri.input_name = in;
            ri.pictures = &pic;
            ri.npictures = 1;
            if (!js) rc = cli_fail(verb, SARCO_ERR_OUT_OF_MEMORY, "out of memory");
            else if ((s = sarco_report_write(ctx, &ri, html)) != SARCO_OK) rc = cli_fail(verb, s, sarco_last_error(ctx));
            free(js);
        }
        json_decref(root);
    }
    goto cleanup;
fail:
    snprintf(msg, sizeof msg, "%s", sarco_last_error(ctx));
fail_msg:
    rc = cli_fail(verb, s, msg);
cleanup:
    sarco_json_free(report);
    sarco_overlay_free(rgb);
    free(slice_lab);
    sarco_labels_free(labels);
    sarco_labels_free(vlab);
    sarco_image_free(ct);
    sarco_image_free(lgeom);
    sarco_image_free(vgeom);
    sarco_image_free(g2);
    sarco_model_free(model);
    sarco_context_free(ctx);
done:
    json_decref(o);
    return rc;
}
