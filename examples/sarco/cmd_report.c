/* sarco report: one self-contained HTML page from the verbs' JSON reports and overlay pictures. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_pictures.h"

#define MAX_PICTURES 16
#define MAX_JSON_BYTES (16u << 20)

static const char *REPORT_USAGE =
    "usage: sarco report --out REPORT.html [--segment-json R.json] [--diagnosis-json D.json]\n"
    "                    [--l3-json L.json] [--measure-json M.json] [--overlay O.png [--caption TEXT]]...\n"
    "                    [--model M.safetensors] [--input-name NAME] [--date TEXT] [--title TEXT]\n"
    "\n"
    "Composes one self-contained HTML report (pictures embedded, no scripts, no network, A4 print\n"
    "layout): a header without patient data (input file name, date, library version, model\n"
    "architecture and SHA-256, and the demonstration-model warning when the model's config says so),\n"
    "the overlays, the measurement tables with units, the diagnosis table and the model card summary.\n"
    "\n"
    "  --segment-json R     `sarco segment --report` output (also names the input and the model)\n"
    "  --diagnosis-json D   `sarco diagnose` output\n"
    "  --l3-json L          `sarco l3` output\n"
    "  --measure-json M     `sarco measure` output (e.g. ultrasound)\n"
    "  --overlay O.png      a picture to embed (up to 16; `sarco overlay` or `segment --overlay`)\n"
    "  --caption TEXT       the caption of the --overlay before it\n"
    "  --model M            the model file (default: the one named in --segment-json)\n"
    "  --input-name NAME    the input file name to show (default: from --segment-json)\n"
    "  --date TEXT          the date to show (default: now, UTC)\n"
    "  --title TEXT         the page title (default: Body composition report)\n"
    "  --out REPORT.html    the page to write (atomically)\n"
    "\n"
    "Exit codes: 0 ok, 2 bad input or usage, 1 internal failure.\n";

/* The whole file as a NUL-terminated string; NULL with the reason in msg. */
static char *slurp_text(const char *path, char *msg, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, n, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > MAX_JSON_BYTES) {
        snprintf(msg, n, "%s: not a regular file of at most 16 MiB", path);
        fclose(f);
        return NULL;
    }
    char *t = malloc((size_t)sb.st_size + 1);
    size_t got = t ? fread(t, 1, (size_t)sb.st_size, f) : 0;
    fclose(f);
    if (!t || got != (size_t)sb.st_size) {
        snprintf(msg, n, "%s: read failed", path);
        free(t);
        return NULL;
    }
    t[got] = '\0';
    return t;
}

int cmd_report(int argc, char **argv) {
    const char *verb = "report", *out = NULL, *paths[4] = {NULL, NULL, NULL, NULL};
    static const char *const json_opts[4] = {"--segment-json", "--diagnosis-json", "--l3-json", "--measure-json"};
    sarco_report_inputs in;
    sarco_report_inputs_init(&in);
    sarco_report_picture pics[MAX_PICTURES];
    memset(pics, 0, sizeof pics);
    size_t npics = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(REPORT_USAGE, stdout);
            return CLI_OK;
        }
        if (i + 1 >= argc) return cli_unknown_option(verb, a, REPORT_USAGE);
        const char *v = argv[++i];
        int k = -1;
        for (int j = 0; j < 4; j++)
            if (!strcmp(a, json_opts[j])) k = j;
        if (k >= 0) paths[k] = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--model")) in.model_path = v;
        else if (!strcmp(a, "--input-name")) in.input_name = v;
        else if (!strcmp(a, "--date")) in.date = v;
        else if (!strcmp(a, "--title")) in.title = v;
        else if (!strcmp(a, "--overlay")) {
            if (npics == MAX_PICTURES) {
                fprintf(stderr, "sarco report: at most %d --overlay pictures\n", MAX_PICTURES);
                return CLI_BAD_INPUT;
            }
            pics[npics++].png_path = v;
        } else if (!strcmp(a, "--caption")) {
            if (!npics) {
                fprintf(stderr, "sarco report: --caption belongs after an --overlay\n");
                return CLI_BAD_INPUT;
            }
            pics[npics - 1].caption = v;
        } else {
            return cli_unknown_option(verb, a, REPORT_USAGE);
        }
    }
    if (!out) {
        fprintf(stderr, "sarco report: --out is required\n\n%s", REPORT_USAGE);
        return CLI_BAD_INPUT;
    }
    char msg[1024];
    char *texts[4] = {NULL, NULL, NULL, NULL};
    int rc = CLI_OK;
    for (int j = 0; j < 4; j++)
        if (paths[j] && !(texts[j] = slurp_text(paths[j], msg, sizeof msg))) {
            rc = cli_fail(verb, SARCO_ERR_IO, msg);
            goto done;
        }
    in.segment_json = texts[0];
    in.diagnosis_json = texts[1];
    in.l3_json = texts[2];
    in.measure_json = texts[3];
    in.pictures = pics;
    in.npictures = npics;
    sarco_context *ctx = NULL;
    sarco_status s = cli_cpu_context(1, &ctx, msg, sizeof msg);
    if (s != SARCO_OK) {
        rc = cli_fail(verb, s, msg);
        goto done;
    }
    if ((s = sarco_report_write(ctx, &in, out)) != SARCO_OK) rc = cli_fail(verb, s, sarco_last_error(ctx));
    sarco_context_free(ctx);
done:
    for (int j = 0; j < 4; j++) free(texts[j]);
    return rc;
}
