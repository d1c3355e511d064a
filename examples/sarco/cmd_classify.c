/* sarco classify: probabilities (every fold, mean and SD) and a Grad-CAM overlay for one picture, or
 * one CSV for a list of pictures (docs/classifiers.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *CLASSIFY_USAGE =
    "usage: sarco classify --model M (--input IMG | --list files.csv) [options]\n"
    "\n"
    "Classifies a PNG, JPEG or 2D NIfTI picture with an image classifier model: the config's\n"
    "preprocessing, every fold of the file, the mean probability with each fold's and their SD.\n"
    "\n"
    "  --model M            classifier model file (sarco.convert --arch torchvision.*)\n"
    "  --input IMG          the picture\n"
    "  --tabular V.json     named clinical values for a multimodal model\n"
    "  --cam C.png          write the Grad-CAM map (predicted class) over the picture, viridis\n"
    "  --target K           the Grad-CAM class (default: the predicted one)\n"
    "  --report R.json      the JSON result (default: stdout)\n"
    "  --list F.csv         classify every picture path in the first column of F (a header 'path' is\n"
    "                       skipped); one CSV row each to --report (default: stdout)\n"
    "  --threads N          CPU threads (default: all)\n"
    "\n"
    "Exit codes: 0 ok, 2 bad input or usage, 1 internal failure (with --list: the worst row's).\n";

typedef struct job {
    sarco_context *ctx;
    sarco_model *model;
    const char *tabular; /* JSON text or NULL */
} job;

static sarco_status classify_one(job *j, const char *path, sarco_picture **pic, sarco_classification **r) {
    *pic = NULL;
    *r = NULL;
    sarco_status s = sarco_picture_read(j->ctx, path, pic);
    if (s == SARCO_OK) s = sarco_classify(j->ctx, j->model, *pic, j->tabular, r);
    return s;
}

static json_t *jarray(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, cli_jreal(v[i]));
    return a;
}

static int write_cam(job *j, const char *verb, const sarco_picture *pic, int target, const char *out) {
    const size_t n = (size_t)(pic->width * pic->height);
    float *cam = malloc(n * sizeof *cam);
    uint8_t *rgb = malloc(n * 3);
    sarco_status s = !cam || !rgb ? SARCO_ERR_OUT_OF_MEMORY : SARCO_OK;
    if (s == SARCO_OK) s = sarco_gradcam(j->ctx, j->model, pic, j->tabular, target, cam, n);
    if (s == SARCO_OK) s = sarco_cam_overlay(j->ctx, pic, cam, n, 0.5, rgb);
    if (s == SARCO_OK) s = sarco_png_write(j->ctx, out, rgb, pic->width, pic->height, 3, NULL);
    free(cam);
    free(rgb);
    return s == SARCO_OK ? CLI_OK : cli_fail(verb, s, s == SARCO_ERR_OUT_OF_MEMORY && !sarco_last_error(j->ctx)[0]
                                                         ? "out of memory" : sarco_last_error(j->ctx));
}

static int run_list(job *j, const char *verb, const char *list, const char *report) {
    FILE *in = fopen(list, "r");
    if (!in) {
        fprintf(stderr, "sarco %s: cannot open %s\n", verb, list);
        return CLI_BAD_INPUT;
    }
    FILE *out = report ? fopen(report, "w") : stdout;
    if (!out) {
        fclose(in);
        fprintf(stderr, "sarco %s: cannot write %s\n", verb, report);
        return CLI_BAD_INPUT;
    }
    /* the columns: classes from the network's output on a 224x224 input (every torchvision arch takes it) */
    const int64_t probe[4] = {1, 3, 224, 224};
    int64_t oshape[4] = {0, 1, 1, 1};
    sarco_model_output_shape(j->ctx, j->model, 4, probe, oshape);
    const int nc = (int)oshape[1], nf = sarco_model_fold_count(j->model);
    fputs("path,status,predicted", out);
    for (int k = 0; k < nc; k++) fprintf(out, ",probability_%d,fold_sd_%d", k, k);
    for (int f = 0; f < nf; f++)
        for (int k = 0; k < nc; k++) fprintf(out, ",fold%d_probability_%d", f, k);
    fputs(",error\n", out);
    char line[4096];
    int rc = CLI_OK;
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, ",\r\n")] = 0;
        if (!line[0] || !strcmp(line, "path")) continue;
        sarco_picture *pic;
        sarco_classification *r;
        sarco_status s = classify_one(j, line, &pic, &r);
        if (s == SARCO_OK) {
            fprintf(out, "%s,ok,%d", line, r->predicted);
            for (int k = 0; k < r->classes; k++) fprintf(out, ",%.6g,%.6g", r->probability[k], r->fold_sd[k]);
            for (int f = 0; f < r->folds * r->classes; f++) fprintf(out, ",%.6g", r->per_fold[f]);
            fputs(",\n", out);
        } else {
            const char *e = sarco_last_error(j->ctx);
            fprintf(out, "%s,%s,", line, sarco_status_string(s));
            for (int k = 0; k < 1 + 2 * nc + nf * nc; k++) fputc(',', out);
            fputc('"', out);
            for (; *e; e++) fputc(*e == '"' ? '\'' : *e, out);
            fputs("\"\n", out);
            const int code = cli_exit_code(s);
            rc = code > rc ? code : rc;
        }
        sarco_classification_free(r);
        sarco_picture_free(pic);
    }
    fclose(in);
    if (report && fclose(out) != 0) {
        fprintf(stderr, "sarco %s: cannot write %s\n", verb, report);
        return CLI_INTERNAL;
    }
    return rc;
}

int cmd_classify(int argc, char **argv) {
    const char *verb = "classify", *mpath = NULL, *input = NULL, *tab = NULL, *campath = NULL, *report = NULL,
               *list = NULL;
    int threads = 0, target = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(CLASSIFY_USAGE, stdout);
            return CLI_OK;
        }
        if (i + 1 >= argc) return cli_unknown_option(verb, a, CLASSIFY_USAGE);
        if (!strcmp(a, "--threads") || !strcmp(a, "--target")) {
            char *end;
            const long v = strtol(argv[++i], &end, 10);
            if (*end || end == argv[i] || v < (a[2] == 't' && a[3] == 'h' ? 0 : -1) || v > 4096) {
                fprintf(stderr, "sarco %s: %s needs an integer, got '%s'\n", verb, a, argv[i]);
                return CLI_BAD_INPUT;
            }
            *(a[3] == 'h' ? &threads : &target) = (int)v;
            continue;
        }
        const char **slot = !strcmp(a, "--model") ? &mpath : !strcmp(a, "--input") ? &input
                            : !strcmp(a, "--tabular") ? &tab : !strcmp(a, "--cam") ? &campath
                            : !strcmp(a, "--report") ? &report : !strcmp(a, "--list") ? &list : NULL;
        if (!slot) return cli_unknown_option(verb, a, CLASSIFY_USAGE);
        *slot = argv[++i];
    }
    if (!mpath || !input == !list) {
        fprintf(stderr, "sarco %s: need --model and one of --input or --list\n%s", verb, CLASSIFY_USAGE);
        return CLI_BAD_INPUT;
    }
    if (list && campath) {
        fprintf(stderr, "sarco %s: --cam goes with --input, not --list\n", verb);
        return CLI_BAD_INPUT;
    }
    job j = {0};
    char msg[1024];
    json_t *tabular = NULL;
    int rc = CLI_OK;
    sarco_status s = cli_cpu_context(threads, &j.ctx, msg, sizeof msg);
    if (s != SARCO_OK) return cli_fail(verb, s, msg);
    if (tab) {
        json_error_t je;
        tabular = json_load_file(tab, 0, &je);
        if (!tabular) {
            fprintf(stderr, "sarco %s: cannot read %s: %s\n", verb, tab, je.text);
            rc = CLI_BAD_INPUT;
            goto done;
        }
        j.tabular = json_dumps(tabular, JSON_COMPACT);
    }
    s = sarco_model_load(j.ctx, mpath, &j.model);
    if (s != SARCO_OK) {
        rc = cli_fail(verb, s, sarco_last_error(j.ctx));
        goto done;
    }
    if (list) {
        rc = run_list(&j, verb, list, report);
        goto done;
    }
    sarco_picture *pic;
    sarco_classification *r;
    s = classify_one(&j, input, &pic, &r);
    if (s != SARCO_OK) {
        rc = cli_fail(verb, s, sarco_last_error(j.ctx));
        sarco_picture_free(pic);
        goto done;
    }
    if (campath) rc = write_cam(&j, verb, pic, target, campath);
    if (rc == CLI_OK) {
        json_t *o = json_object(), *imp = json_array();
        json_object_set_new(o, "input", json_string(input));
        json_object_set_new(o, "model", json_string(mpath));
        json_object_set_new(o, "arch", json_string(sarco_model_arch(j.model)));
        json_object_set_new(o, "classes", json_integer(r->classes));
        json_object_set_new(o, "folds", json_integer(r->folds));
        json_object_set_new(o, "predicted", json_integer(r->predicted));
        json_object_set_new(o, "probability", jarray(r->probability, r->classes));
        json_object_set_new(o, "fold_sd", jarray(r->fold_sd, r->classes));
        json_t *pf = json_array();
        for (int f = 0; f < r->folds; f++) json_array_append_new(pf, jarray(r->per_fold + f * r->classes, r->classes));
        json_object_set_new(o, "per_fold", pf);
        for (int k = 0; k < r->nimputed; k++) json_array_append_new(imp, json_string(r->imputed[k]));
        json_object_set_new(o, "imputed", imp);
        if (campath) json_object_set_new(o, "cam", json_string(campath));
        rc = cli_write_json(verb, o, report);
        json_decref(o);
    }
    sarco_classification_free(r);
    sarco_picture_free(pic);
done:
    free((char *)j.tabular);
    json_decref(tabular);
    sarco_model_free(j.model);
    sarco_context_free(j.ctx);
    return rc;
}
