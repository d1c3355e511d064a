/* sarco segment: CT -> label map + JSON volume report, with the model's pipeline settings. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_pictures.h"

static const char *SEG_USAGE =
    "usage: sarco segment --model M --input CT.nii.gz --output LABELS.nii.gz [options]\n"
    "\n"
    "Runs the model's preprocessing (sarco.config \"preprocess\"), sliding-window inference and argmax,\n"
    "writes the labels on the input's grid and prints a JSON report (or writes it to --report).\n"
    "\n"
    "  --model M            libsarco model file (.safetensors with sarco.config)\n"
    "  --input CT           NIfTI (.nii/.nii.gz), PNG, JPEG, a DICOM file or a folder with a DICOM series\n"
    "  --series UID         the SeriesInstanceUID to read when the --input folder holds several\n"
    "  --output LABELS      label map to write (.nii or .nii.gz; .png: 8-bit PNG of a 2-D input)\n"
    "  --report R.json      write the JSON report there instead of stdout\n"
    "  --backend B          auto (default), cpu or cuda\n"
    "  --precision P        fp32 (default, exact), bf16 (CPUs with AVX512-BF16/AMX), tf32 or fp16 (CUDA)\n"
    "  --height-m H         body height in metres: adds volume / height^2 (mL/m^2)\n"
    "  --overlap F          window overlap in [0, 1) (default: the model's, else 0.25)\n"
    "  --mode M             constant or gaussian blending (default: the model's, else constant)\n"
    "  --sw-batch N         windows per network call (default: the model's, else 1)\n"
    "  --overlay O.png      also draw the image with its labels (sarco overlay's defaults)\n"
    "  --html R.html        also write the HTML report (sarco report) with the overlay embedded\n"
    "  --no-mirroring       nnU-Net models: no test-time mirroring (nnUNetv2_predict -disable_tta)\n"
    "  --fp32-accumulation  nnU-Net models: accumulate windows and folds in fp32 instead of nnU-Net's fp16\n"
    "\n"
    "Exit codes: 0 ok, 2 bad input or usage, 1 internal failure.\n";

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct progress_state {
    int tty;
    int last;
    double t0;
} progress_state;

static int progress_cb(void *user, const char *stage, int64_t done, int64_t total) {
    progress_state *ps = user;
    if (!ps->tty || total <= 0) return 0;
    int width = 30, fill = (int)(width * done / total);
    int pct = (int)(100 * done / total);
    if (pct == ps->last && done != total) return 0;
    ps->last = pct;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%s [%s] %lld/%lld %3d%% %.1fs", stage, bar, (long long)done, (long long)total, pct,
            seconds() - ps->t0);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
    return 0;
}

/* JSON string with escapes */
static void jstr(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* finite numbers only: JSON has no NaN */
static void jnum(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.10g", v);
    else
        fputs("null", f);
}

static void entry(FILE *f, const sarco_volume_entry *e, int is_group, int has_height, int is_3d) {
    fputs("    {", f);
    if (!is_group) fprintf(f, "\"label\": %d, ", e->label);
    fputs("\"name\": ", f);
    jstr(f, e->name);
    fprintf(f, ", \"voxels\": %lld, \"%s\": ", (long long)e->voxels, is_3d ? "volume_ml" : "area_cm2");
    jnum(f, e->volume_ml);
    if (has_height) {
        fprintf(f, ", \"%s\": ", is_3d ? "volume_index_ml_per_m2" : "area_index_cm2_per_m2");
        jnum(f, e->volume_index);
    }
    fputs(", \"hu_mean\": ", f);
    if (e->finite_voxels) jnum(f, e->hu_mean); else fputs("null", f);
    fputs(", \"hu_sd\": ", f);
    if (e->finite_voxels) jnum(f, e->hu_sd); else fputs("null", f);
    fputs("}", f);
}

void cli_segment_report(FILE *f, const char *model_path, const sarco_model *model, const char *input,
                         const char *output, const sarco_image *ct, sarco_context *ctx, const sarco_segment_info *info,
                         const sarco_volume_report *vr, const double *t, sarco_precision precision) {
    static const char *const precision_names[] = {"fp32", "tf32", "fp16", "bf16"};
    const int is_3d = ct->ndim == 3;
    fputs("{\n  \"input\": {\"path\": ", f);
    jstr(f, input);
    fprintf(f, ", \"dims\": [%lld, %lld, %lld], \"spacing_mm\": [", (long long)ct->dims[0], (long long)ct->dims[1],
            (long long)ct->dims[2]);
    for (int i = 0; i < 3; i++) {
        jnum(f, ct->spacing[i]);
        fputs(i < 2 ? ", " : "], \"affine\": [", f);
    }
    for (int r = 0; r < 4; r++) {
        fputc('[', f);
        for (int c = 0; c < 4; c++) {
            jnum(f, ct->affine[r][c]);
            if (c < 3) fputs(", ", f);
        }
        fputs(r < 3 ? "], " : "]]", f);
    }
    fprintf(f, ", \"nan_voxels\": %lld, \"units_assumed_mm\": %s", (long long)ct->nan_count,
            (ct->flags & SARCO_IMAGE_UNITS_ASSUMED_MM) ? "true" : "false");
    json_t *dj = cli_dicom_json(ct); /* series UID, description, slices, spacing used; no patient data */
    char *dtext = dj ? json_dumps(dj, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (dtext) fprintf(f, ", \"dicom\": %s", dtext);
    free(dtext);
    json_decref(dj);
    fputs("},\n", f);
    fputs("  \"output\": ", f);
    jstr(f, output);
    fputs(",\n  \"model\": {\"path\": ", f);
    jstr(f, model_path);
    fputs(", \"arch\": ", f);
    jstr(f, sarco_model_arch(model));
    fprintf(f, ", \"classes\": %d},\n", info->num_classes);
    fprintf(f, "  \"settings\": {\"backend\": \"%s\", \"precision\": \"%s\", \"roi\": [%lld, %lld, %lld], \"overlap\": ",
            sarco_context_backend(ctx) == SARCO_BACKEND_CUDA ? "cuda" : "cpu", precision_names[precision], (long long)info->roi[0],
            (long long)info->roi[1], (long long)info->roi[2]);
    jnum(f, info->overlap);
    fprintf(f, ", \"mode\": \"%s\", \"sigma_scale\": ", info->mode == SARCO_BLEND_GAUSSIAN ? "gaussian" : "constant");
    jnum(f, info->sigma_scale);
    fprintf(f, ", \"sw_batch_size\": %d, \"windows\": %lld", info->sw_batch_size, (long long)info->windows);
    if (info->folds > 1 || info->mirror_variants > 1 || sarco_model_fold_count(model) > 1)
        fprintf(f, ", \"folds\": %d, \"mirror_variants\": %d, \"accumulation\": \"%s\"", info->folds,
                info->mirror_variants, info->fp32_accumulation ? "fp32" : "fp16");
    fputs(", \"backend_detail\": ", f);
    jstr(f, sarco_context_backend_detail(ctx)); /* which backend ran and, when AUTO chose the CPU, why */
    fputs("},\n", f);
    fprintf(f, "  \"preprocess\": {\"crop_start\": [%lld, %lld, %lld], \"crop_end\": [%lld, %lld, %lld], "
               "\"model_dims\": [%lld, %lld, %lld], \"model_spacing_mm\": [",
            (long long)info->crop_start[0], (long long)info->crop_start[1], (long long)info->crop_start[2],
            (long long)info->crop_end[0], (long long)info->crop_end[1], (long long)info->crop_end[2],
            (long long)info->model_dims[0], (long long)info->model_dims[1], (long long)info->model_dims[2]);
    for (int i = 0; i < 3; i++) {
        jnum(f, info->model_spacing[i]);
        fputs(i < 2 ? ", " : "], ", f);
    }
    fprintf(f, "\"slab_bytes\": %zu},\n", info->slab_bytes);
    fputs("  \"timing_s\": {\"load\": ", f);
    jnum(f, t[0]);
    fputs(", \"preprocess\": ", f);
    jnum(f, info->seconds_preprocess);
    fputs(", \"inference\": ", f);
    jnum(f, info->seconds_inference);
    fputs(", \"postprocess\": ", f);
    jnum(f, info->seconds_postprocess);
    fputs(", \"measure_and_write\": ", f);
    jnum(f, t[1]);
    fputs(", \"total\": ", f);
    jnum(f, t[2]);
    fputs("},\n", f);
    fputs("  \"height_m\": ", f);
    if (vr->height_m > 0) jnum(f, vr->height_m); else fputs("null", f);
    fprintf(f, ",\n  \"%s\": ", is_3d ? "voxel_volume_ml" : "pixel_area_cm2");
    jnum(f, vr->voxel_volume_ml);
    fputs(",\n  \"labels\": [\n", f);
    for (size_t i = 0; i < vr->nlabels; i++) {
        entry(f, &vr->labels[i], 0, vr->height_m > 0, is_3d);
        fputs(i + 1 < vr->nlabels ? ",\n" : "\n", f);
    }
    fputs("  ],\n  \"groups\": [\n", f);
    for (size_t i = 0; i < vr->ngroups; i++) {
        entry(f, &vr->groups[i], 1, vr->height_m > 0, is_3d);
        fputs(i + 1 < vr->ngroups ? ",\n" : "\n", f);
    }
    fputs("  ]\n}\n", f);
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

int cmd_segment(int argc, char **argv) {
    const char *model_path = NULL, *input = NULL, *output = NULL, *report = NULL, *overlay = NULL, *html = NULL;
    const char *series = NULL;
    sarco_context_options co;
    sarco_context_options_init(&co);
    sarco_segment_options so;
    sarco_segment_options_init(&so);
    double height = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(SEG_USAGE, stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--no-mirroring")) {
            so.mirroring = SARCO_MIRROR_OFF;
            continue;
        }
        if (!strcmp(a, "--fp32-accumulation")) {
            so.fp32_accumulation = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sarco segment: %s needs a value (or is unknown)\n\n%s", a, SEG_USAGE);
            return CLI_BAD_INPUT;
        }
        const char *v = argv[++i];
        double d;
        if (!strcmp(a, "--model"))
            model_path = v;
        else if (!strcmp(a, "--input"))
            input = v;
        else if (!strcmp(a, "--series"))
            series = v;
        else if (!strcmp(a, "--output"))
            output = v;
        else if (!strcmp(a, "--report"))
            report = v;
        else if (!strcmp(a, "--overlay"))
            overlay = v;
        else if (!strcmp(a, "--html"))
            html = v;
        else if (!strcmp(a, "--backend")) {
            if (!strcmp(v, "auto"))
                co.backend = SARCO_BACKEND_AUTO;
            else if (!strcmp(v, "cpu"))
                co.backend = SARCO_BACKEND_CPU;
            else if (!strcmp(v, "cuda"))
                co.backend = SARCO_BACKEND_CUDA;
            else {
                fprintf(stderr, "sarco segment: --backend must be auto, cpu or cuda, not '%s'\n", v);
                return CLI_BAD_INPUT;
            }
        } else if (!strcmp(a, "--precision")) {
            if (!cli_parse_precision(v, &co.precision)) {
                fprintf(stderr, "sarco segment: --precision must be fp32, bf16, tf32 or fp16, not '%s'\n", v);
                return CLI_BAD_INPUT;
            }
        } else if (!strcmp(a, "--height-m")) {
            if (!parse_double(v, &d) || !(d > 0.3 && d < 3.0)) {
                fprintf(stderr, "sarco segment: --height-m must be a height in metres (0.3..3), not '%s'\n", v);
                return CLI_BAD_INPUT;
            }
            height = d;
        } else if (!strcmp(a, "--overlap")) {
            if (!parse_double(v, &d) || !(d >= 0 && d < 1)) {
                fprintf(stderr, "sarco segment: --overlap must be in [0, 1), not '%s'\n", v);
                return CLI_BAD_INPUT;
            }
            so.window.overlap = d;
        } else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "constant"))
                so.window.mode = SARCO_BLEND_CONSTANT;
            else if (!strcmp(v, "gaussian"))
                so.window.mode = SARCO_BLEND_GAUSSIAN;
            else {
                fprintf(stderr, "sarco segment: --mode must be constant or gaussian, not '%s'\n", v);
                return CLI_BAD_INPUT;
            }
        } else if (!strcmp(a, "--sw-batch")) {
            if (!parse_double(v, &d) || d < 1 || d > 1024 || d != floor(d)) {
                fprintf(stderr, "sarco segment: --sw-batch must be an integer in 1..1024, not '%s'\n", v);
                return CLI_BAD_INPUT;
            }
            so.window.sw_batch_size = (int)d;
        } else {
            fprintf(stderr, "sarco segment: unknown option '%s'\n\n%s", a, SEG_USAGE);
            return CLI_BAD_INPUT;
        }
    }
    if (!model_path || !input || !output) {
        fprintf(stderr, "sarco segment: --model, --input and --output are required\n\n%s", SEG_USAGE);
        return CLI_BAD_INPUT;
    }
    double t_start = seconds();
    char msg[1024];
    sarco_context *ctx = NULL;
    sarco_status s = sarco_context_create_ex(&co, &ctx, msg, sizeof msg);
    if (s != SARCO_OK) return cli_fail("segment", s, msg);
    progress_state ps = {isatty(fileno(stderr)), -1, seconds()};
    sarco_context_set_progress(ctx, progress_cb, &ps);
    sarco_model *model = NULL;
    sarco_image *ct = NULL;
    uint16_t *labels = NULL;
    sarco_volume_report *vr = NULL;
    int rc = CLI_OK;
    if ((s = cli_image_read(ctx, input, series, &ct)) != SARCO_OK) goto fail;
    if ((s = sarco_model_load(ctx, model_path, &model)) != SARCO_OK) goto fail;
    double t_loaded = seconds();
    size_t n = (size_t)(ct->dims[0] * ct->dims[1] * (ct->ndim > 2 ? ct->dims[2] : 1));
    labels = malloc(n * sizeof *labels);
    if (!labels) {
        rc = cli_fail("segment", SARCO_ERR_OUT_OF_MEMORY, "cannot allocate the label map");
        goto done;
    }
    sarco_segment_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ps.t0 = seconds();
    if ((s = sarco_segment(ctx, model, ct, &so, labels, n, &info)) != SARCO_OK) goto fail;
    double t_seg = seconds();
    if ((s = sarco_segment_volumes(ctx, model, ct, labels, n, height, &vr)) != SARCO_OK) goto fail;
    int max_label = info.num_classes > 0 ? info.num_classes - 1 : 1;
    if ((s = sarco_labels_write(ctx, ct, labels, max_label, output)) != SARCO_OK) goto fail;
    uint8_t *rgb = NULL; /* the overlay, drawn once for --overlay and --html */
    int64_t rgb_w = 0, rgb_h = 0;
    if (overlay || html) {
        size_t nnames;
        char **names = cli_class_names(sarco_model_config_json(model), &nnames);
        sarco_overlay_options oo;
        sarco_overlay_options_init(&oo);
        oo.class_names = (const char *const *)names;
        oo.nclass_names = nnames;
        s = sarco_overlay_render(ctx, ct, labels, &oo, &rgb, &rgb_w, &rgb_h);
        cli_names_free(names, nnames);
        if (s == SARCO_OK && overlay) s = sarco_png_write(ctx, overlay, rgb, rgb_w, rgb_h, 3, NULL);
        if (s != SARCO_OK) {
            sarco_overlay_free(rgb);
            goto fail;
        }
    }
    double t_end = seconds();
    const double t[3] = {t_loaded - t_start, t_end - t_seg, t_end - t_start};
    FILE *f = stdout;
    if (report) {
        f = fopen(report, "w");
        if (!f) {
            snprintf(msg, sizeof msg, "%s: cannot open for writing (%s)", report, strerror(errno));
            rc = cli_fail("segment", SARCO_ERR_IO, msg);
            sarco_overlay_free(rgb);
            goto done;
        }
    }
    cli_segment_report(f, model_path, model, input, output, ct, ctx, &info, vr, t, co.precision);
    if (report && fclose(f) != 0) {
        snprintf(msg, sizeof msg, "%s: write failed (%s)", report, strerror(errno));
        rc = cli_fail("segment", SARCO_ERR_IO, msg);
    }
    if (html && rc == CLI_OK) {
        /* the same JSON, in memory, composed into the page with the overlay */
        char *js = NULL;
        size_t jn = 0;
        FILE *mf = open_memstream(&js, &jn);
        if (mf) {
            cli_segment_report(mf, model_path, model, input, output, ct, ctx, &info, vr, t, co.precision);
            fclose(mf);
        }
        sarco_report_picture pic = {NULL, rgb, rgb_w, rgb_h, "Segmentation: axial slices evenly spaced through the segmented extent "
                                   "and one coronal view (white ticks: the axial slices); CT window W400 / L40"};
        sarco_report_inputs ri;
        sarco_report_inputs_init(&ri);
        ri.segment_json = js;
        ri.model_path = model_path;
        ri.pictures = &pic;
        ri.npictures = 1;
        if (!js) rc = cli_fail("segment", SARCO_ERR_OUT_OF_MEMORY, "cannot build the report in memory");
        else if ((s = sarco_report_write(ctx, &ri, html)) != SARCO_OK) rc = cli_fail("segment", s, sarco_last_error(ctx));
        free(js);
    }
    sarco_overlay_free(rgb);
    goto done;
fail:
    if (ps.tty && ps.last >= 0 && ps.last < 100) fputc('\n', stderr); /* end the progress line */
    rc = cli_fail("segment", s, sarco_last_error(ctx));
done:
    sarco_volume_report_free(vr);
    free(labels);
    sarco_image_free(ct);
    sarco_model_free(model);
    sarco_context_free(ctx);
    return rc;
}
