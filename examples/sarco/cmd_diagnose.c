/* sarco diagnose: a subject's measurements against the rule sets (sarco_diagnose). Every
 * --NAME VALUE option that is not one of the verb's own becomes the input NAME (dashes to
 * underscores), so a measure a new rules file declares needs no new code here. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *DIAGNOSE_USAGE =
    "usage: sarco diagnose --rules awgs2019[,ewgsop2,...] --sex M|F [--age Y] [--height-m H] [--weight-kg W]\n"
    "           [--grip-kg G] [--gait-speed-m-s V] [--chair-stand-s T] [--sppb N] [--calf-cm C] [--sarc-f N]\n"
    "           [--asmi-kg-m2 A --asmi-method dxa|bia | --asm-kg A]\n"
    "           [--measurements L3.json | --smi-cm2-m2 S] [--mass-from l3_smi:TABLE] [--report R.json]\n"
    "       sarco diagnose --list-rules | --show-rules NAME\n"
    "\n"
    "Judges the measurements against each rule set and prints JSON: every criterion with its value,\n"
    "unit, threshold, operator, table and whether it is met; the findings; the verdict per rule set;\n"
    "the verdicts not yet ruled out and the measurements missing to decide them.\n"
    "\n"
    "  --rules R            built-in rule sets (--list-rules), a NAME.json in $SARCO_RULES_PATH, or a path\n"
    "  --NAME VALUE         any input the rule sets declare, e.g. --grip-kg 16, --tug-s 21,\n"
    "                       --walk-400m-completed false; a unit may follow the value (16kg); one that\n"
    "                       does not match the measure's unit is refused\n"
    "  --mass-from l3_smi:TABLE  let the L3 skeletal muscle index judged by TABLE (prado2008,\n"
    "                       martin2013, knhanes, cirrhosis_sarco) stand in for muscle mass\n"
    "  --measurements R     a `sarco l3` report supplying the SMI (and muscle attenuation)\n"
    "  --report R.json      write the JSON there instead of stdout\n"
    "\n"
    "Exit codes: 0 ok, 2 bad input or usage, 1 internal failure.\n";

/* "16", "16kg", "16 kg", "true", "dxa" -> a JSON value ({"value", "unit"} when a unit follows). */
static json_t *parse_value(const char *s) {
    if (!strcmp(s, "true")) return json_true();
    if (!strcmp(s, "false")) return json_false();
    char *end;
    double x = strtod(s, &end);
    if (end == s) return json_string(s);
    while (*end == ' ') end++;
    if (!*end) return json_real(x);
    return json_pack("{s:f, s:s}", "value", x, "unit", end);
}

static int read_json_file(const char *verb, const char *path, json_t **out) {
    json_error_t je;
    *out = json_load_file(path, 0, &je);
    if (!*out) {
        fprintf(stderr, "sarco %s: cannot read %s: %s\n", verb, path, je.text);
        return CLI_BAD_INPUT;
    }
    return CLI_OK;
}

int cmd_diagnose(int argc, char **argv) {
    const char *verb = "diagnose", *rules = NULL, *report = NULL, *show = NULL;
    int list = 0, rc = CLI_OK;
    json_t *in = json_object();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(DIAGNOSE_USAGE, stdout);
            json_decref(in);
            return CLI_OK;
        } else if (!strcmp(a, "--list-rules")) {
            list = 1;
        } else if (!strcmp(a, "--show-rules") && more) {
            show = argv[++i];
        } else if (!strcmp(a, "--rules") && more) {
            rules = argv[++i];
        } else if (!strcmp(a, "--report") && more) {
            report = argv[++i];
        } else if (!strcmp(a, "--sex") && more) {
            json_object_set_new(in, "sex", json_string(argv[++i]));
        } else if (!strcmp(a, "--mass-from") && more) {
            json_object_set_new(in, "mass_from", json_string(argv[++i]));
        } else if (!strcmp(a, "--measurements") && more) {
            json_t *m;
            if ((rc = read_json_file(verb, argv[++i], &m)) != CLI_OK) goto done;
            json_object_set_new(in, "measurements", m);
        } else if (!strncmp(a, "--", 2) && a[2] && more && strlen(a) < 64) {
            char name[64];
            size_t n = 0;
            for (const char *p = a + 2; *p; p++) name[n++] = *p == '-' ? '_' : (char)tolower((unsigned char)*p);
            name[n] = 0;
            if (json_object_get(in, name)) {
                fprintf(stderr, "sarco %s: %s given twice\n", verb, a);
                rc = CLI_BAD_INPUT;
                goto done;
            }
            json_object_set_new(in, name, parse_value(argv[++i]));
        } else {
            rc = cli_unknown_option(verb, a, DIAGNOSE_USAGE);
            goto done;
        }
    }
    sarco_context *ctx = NULL;
    char msg[1024];
    sarco_status s = cli_cpu_context(1, &ctx, msg, sizeof msg);
    if (s != SARCO_OK) {
        rc = cli_fail(verb, s, msg);
        goto done;
    }
    char *out = NULL;
    if (list)
        s = sarco_rules_list(ctx, &out);
    else if (show)
        s = sarco_rules_get(ctx, show, &out);
    else if (!rules) {
        sarco_context_free(ctx);
        fprintf(stderr, "sarco %s: --rules is required\n\n%s", verb, DIAGNOSE_USAGE);
        rc = CLI_BAD_INPUT;
        goto done;
    } else {
        char *text = json_dumps(in, JSON_COMPACT);
        s = text ? sarco_diagnose(ctx, rules, text, &out) : SARCO_ERR_OUT_OF_MEMORY;
        free(text);
    }
    if (s != SARCO_OK) {
        rc = cli_fail(verb, s, sarco_last_error(ctx));
    } else {
        json_t *root = json_loads(out, 0, NULL);
        rc = root ? cli_write_json(verb, root, report) : cli_fail(verb, SARCO_ERR_INTERNAL, "unreadable JSON");
        json_decref(root);
    }
    sarco_json_free(out);
    sarco_context_free(ctx);
done:
    json_decref(in);
    return rc;
}
