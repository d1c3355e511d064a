/* sarco <verb> [options] inputs */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cmd_segment(int argc, char **argv); /* cmd_segment.c */
int cmd_evaluate(int argc, char **argv); /* cmd_evaluate.c */
int cmd_measure(int argc, char **argv);  /* cmd_measure.c */
int cmd_overlay(int argc, char **argv);  /* cmd_overlay.c */
int cmd_report(int argc, char **argv);   /* cmd_report.c */
int cmd_diagnose(int argc, char **argv); /* cmd_diagnose.c */
int cmd_l3(int argc, char **argv);       /* cmd_l3.c */
int cmd_classify(int argc, char **argv); /* cmd_classify.c */
int cmd_batch(int argc, char **argv);    /* cmd_batch.c */
static const cli_verb verbs[] = {
    {"version", "print the library version and the backend a context gets, with why", cmd_version},
    {"segment", "segment a CT with a model: label map + volume report", cmd_segment},
    {"evaluate", "segmentation metrics of a prediction against a reference", cmd_evaluate},
    {"measure", "per-label volumes/areas and HU statistics of a label map", cmd_measure},
    {"overlay", "an image with its labels as a PNG picture", cmd_overlay},
    {"report", "one self-contained HTML report from JSON reports and pictures", cmd_report},
    {"l3", "L3 body composition: SMA, SMI, muscle attenuation, IMAT, SAT/VAT of the L3 slice", cmd_l3},
    {"classify", "image classifier: probabilities per fold, mean and SD, Grad-CAM overlay", cmd_classify},
    {"diagnose", "sarcopenia verdicts from measurements (AWGS 2019, EWGSOP2, L3 SMI tables)", cmd_diagnose},
    {"batch", "segment a cohort (CSV list or folder), resumable: per-case outputs + results.csv", cmd_batch},
};
#define NVERBS (sizeof verbs / sizeof *verbs)

int cli_exit_code(sarco_status s) {
    switch (s) {
    case SARCO_OK: return CLI_OK;
    case SARCO_ERR_INVALID_ARGUMENT:
    case SARCO_ERR_IO:
    case SARCO_ERR_BAD_FORMAT:
    case SARCO_ERR_UNSUPPORTED:
    case SARCO_ERR_LIMIT:
    case SARCO_ERR_BACKEND_UNAVAILABLE: return CLI_BAD_INPUT;
    default: return CLI_INTERNAL;
    }
}

int cli_fail(const char *verb, sarco_status s, const char *msg) {
    fprintf(stderr, "sarco %s: %s: %s\n", verb, sarco_status_string(s), msg && *msg ? msg : "(no detail)");
    return cli_exit_code(s);
}

/* sarco version [--backend auto|cpu|cuda] [--device N]: the library's version and the backend a context
 * of that kind runs on, with why (the plug-in and device, or why AUTO chose the CPU). */
int cmd_version(int argc, char **argv) {
    sarco_context_options o;
    sarco_context_options_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--backend") && v) {
            i++;
            if (!strcmp(v, "auto")) o.backend = SARCO_BACKEND_AUTO;
            else if (!strcmp(v, "cpu")) o.backend = SARCO_BACKEND_CPU;
            else if (!strcmp(v, "cuda")) o.backend = SARCO_BACKEND_CUDA;
            else return cli_fail("version", SARCO_ERR_INVALID_ARGUMENT, "--backend must be auto, cpu or cuda");
        } else if (!strcmp(a, "--device") && v) {
            o.device = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: sarco version [--backend auto|cpu|cuda] [--device N]\n");
            return !strcmp(a, "--help") || !strcmp(a, "-h") ? CLI_OK : CLI_BAD_INPUT;
        }
    }
    sarco_context *ctx = NULL;
    char msg[2048];
    sarco_status s = sarco_context_create_ex(&o, &ctx, msg, sizeof msg);
    if (s != SARCO_OK) return cli_fail("version", s, msg);
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string(sarco_version_string()));
    json_object_set_new(root, "version_number", json_integer(sarco_version_number()));
    json_object_set_new(root, "backend", json_string(sarco_context_backend(ctx) == SARCO_BACKEND_CUDA ? "cuda" : "cpu"));
    json_object_set_new(root, "backend_detail", json_string(sarco_context_backend_detail(ctx)));
    sarco_context_free(ctx);
    int rc = cli_write_json("version", root, NULL);
    json_decref(root);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: sarco <verb> [options]\n\nverbs:\n");
    for (size_t i = 0; i < NVERBS; i++) fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(f, "\n'sarco <verb> --help' describes a verb's options.\n");
}

/* OpenMP threads that spin while they wait (libgomp's default) take the cores from the threads with
 * work whenever the machine runs anything else: on 2 busy cores the bench scan's inference went
 * from 19.2 s to 6.4 s with passive waiting, which costs ~200 futex wake-ups a tile on an idle one
 * (docs/performance.md). libgomp reads the setting before main, so the CLI sets it and runs itself
 * again, unless the user chose a policy. */
static void prefer_passive_openmp(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv); /* on failure: carry on with libgomp's default */
}

int main(int argc, char **argv) {
    prefer_passive_openmp(argv);
    if (argc < 2) {
        usage(stderr);
        return CLI_BAD_INPUT;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(0, NULL);
    for (size_t i = 0; i < NVERBS; i++)
        if (!strcmp(argv[1], verbs[i].name)) return verbs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sarco: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return CLI_BAD_INPUT;
}
