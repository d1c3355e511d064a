/* sarco <verb> [options] inputs */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_segment(int argc, char **argv); /* cmd_segment.c */
int cmd_evaluate(int argc, char **argv); /* cmd_evaluate.c */
int cmd_measure(int argc, char **argv);  /* cmd_measure.c */
int cmd_diagnose(int argc, char **argv); /* cmd_diagnose.c */
int cmd_l3(int argc, char **argv);       /* cmd_l3.c */
static const cli_verb verbs[] = {
    {"version", "print the library version", cmd_version},
    {"segment", "segment a CT with a model: label map + volume report", cmd_segment},
    {"evaluate", "segmentation metrics of a prediction against a reference", cmd_evaluate},
    {"measure", "per-label volumes/areas and HU statistics of a label map", cmd_measure},
    {"l3", "L3 body composition: SMA, SMI, muscle attenuation, IMAT, SAT/VAT of the L3 slice", cmd_l3},
    {"diagnose", "sarcopenia verdicts from measurements (AWGS 2019, EWGSOP2, L3 SMI tables)", cmd_diagnose},
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

int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("{\"version\": \"%s\", \"version_number\": %u}\n", sarco_version_string(), sarco_version_number());
    return CLI_OK;
}

static void usage(FILE *f) {
    fprintf(f, "usage: sarco <verb> [options]\n\nverbs:\n");
    for (size_t i = 0; i < NVERBS; i++) fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(f, "\n'sarco <verb> --help' describes a verb's options.\n");
}

int main(int argc, char **argv) {
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
