/* sarco evaluate: per-label segmentation metrics of a prediction against a reference, for one pair
 * or for a list of subjects with a per-label cohort summary. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"

static const char *EVAL_USAGE =
    "usage: sarco evaluate --pred P.nii.gz --ref G.nii.gz [--labels 1,2,...] [--report R.json]\n"
    "       sarco evaluate --list pairs.csv [--labels 1,2,...] [--report R.json]\n"
    "\n"
    "Per label: dice, jaccard, hd_mm, hd95_mm, assd_mm, ravd_percent, volume_pred_ml, volume_ref_ml\n"
    "(area_*_cm2 for 2D images and single slices) and flags (pred_empty, ref_empty, ravd_undefined).\n"
    "Definitions: docs/measure.md. JSON on stdout, or to --report.\n"
    "\n"
    "  --pred P, --ref G    predicted and reference label maps on the same grid (NIfTI or PNG)\n"
    "  --list pairs.csv     one subject per line: pred,ref or id,pred,ref; an optional header line names\n"
    "                       the columns (id, pred, ref); relative paths are relative to the CSV's folder.\n"
    "                       Adds a per-label summary over subjects: mean and sample SD of every metric,\n"
    "                       and the Pearson correlation and ICC(2,1) of predicted vs reference volumes\n"
    "  --labels 1,2,...     labels to evaluate (default: every nonzero label in either map)\n"
    "  --spacing X,Y[,Z]    voxel size in mm (x, y, z) when the files have none or it is wrong\n"
    "  --report R.json      write the report there instead of stdout\n"
    "  --threads N          CPU threads (default: all)\n"
    "\n"
    "Exit codes: 0 ok, 2 bad input or usage, 1 internal failure.\n";

#define MAX_LABELS 4096

static int parse_labels(const char *s, int32_t *out, size_t *n) {
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 65535 || *n == MAX_LABELS) return 0;
        out[(*n)++] = (int32_t)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return 0;
    }
    return *n > 0;
}

static const char *FLAG_NAMES[] = {"pred_empty", "ref_empty", "ravd_undefined"};

/* One pair's per-label metrics; sizes from voxel counts x |det| so they match sarco segment's report. */
static json_t *metrics_json(const sarco_seg_metrics *m, const cli_grid *g) {
    json_t *e = json_object();
    json_object_set_new(e, "label", json_integer(m->label));
    json_object_set_new(e, "dice", cli_jreal(m->dice));
    json_object_set_new(e, "jaccard", cli_jreal(m->jaccard));
    json_object_set_new(e, "hd_mm", cli_jreal(m->hd_mm));
    json_object_set_new(e, "hd95_mm", cli_jreal(m->hd95_mm));
    json_object_set_new(e, "assd_mm", cli_jreal(m->assd_mm));
    json_object_set_new(e, "ravd_percent", cli_jreal(m->ravd_percent));
    const int is3 = g->ndim == 3;
    const double scale = g->cell / (is3 ? 1000.0 : 100.0);
    json_object_set_new(e, "volume_pred_ml", is3 ? cli_jreal((double)m->voxels_pred * scale) : json_null());
    json_object_set_new(e, "volume_ref_ml", is3 ? cli_jreal((double)m->voxels_ref * scale) : json_null());
    if (!is3) {
        json_object_set_new(e, "area_pred_cm2", cli_jreal((double)m->voxels_pred * scale));
        json_object_set_new(e, "area_ref_cm2", cli_jreal((double)m->voxels_ref * scale));
    }
    json_object_set_new(e, "voxels_pred", json_integer(m->voxels_pred));
    json_object_set_new(e, "voxels_ref", json_integer(m->voxels_ref));
    json_object_set_new(e, "voxels_both", json_integer(m->voxels_both));
    json_object_set_new(e, "surface_pred", json_integer(m->surface_pred));
    json_object_set_new(e, "surface_ref", json_integer(m->surface_ref));
    json_t *fl = json_array();
    for (int b = 0; b < 3; b++)
        if (m->flags & (1u << b)) json_array_append_new(fl, json_string(FLAG_NAMES[b]));
    json_object_set_new(e, "flags", fl);
    return e;
}

typedef struct opts {
    const int32_t *labels;
    size_t nlabels;
    const double *spo;
    int nsp;
} opts;

/* Evaluates one pair; *out gets {"pred", "ref", "dims", "spacing_mm", ..., "labels": [...]}. On
 * failure returns the status with the reason in msg. g gets the pair's grid. */
static sarco_status eval_pair(sarco_context *ctx, const char *pp, const char *gp, const opts *o, json_t **out,
                              cli_grid *g, char *msg, size_t n) {
    uint16_t *pl = NULL, *gl = NULL;
    sarco_image *pg = NULL, *gg = NULL;
    sarco_seg_metrics *m = NULL;
    size_t cnt = 0;
    *out = NULL;
    sarco_status s = sarco_labels_read(ctx, pp, &pl, &pg);
    if (s == SARCO_OK) s = sarco_labels_read(ctx, gp, &gl, &gg);
    if (s != SARCO_OK) {
        snprintf(msg, n, "%s", sarco_last_error(ctx));
        goto done;
    }
    if (!cli_same_grid(pp, pg, gp, gg, msg, n)) {
        s = SARCO_ERR_INVALID_ARGUMENT;
        goto done;
    }
    if (!cli_make_grid(gg, o->spo, o->nsp, g, msg, n)) {
        s = SARCO_ERR_INVALID_ARGUMENT;
        goto done;
    }
    s = sarco_evaluate_labels(ctx, g->ndim, g->dims, g->spacing, pl, gl, o->labels, o->nlabels, &m, &cnt);
    if (s != SARCO_OK) {
        snprintf(msg, n, "%s", sarco_last_error(ctx));
        goto done;
    }
    json_t *r = json_object();
    json_object_set_new(r, "pred", json_string(pp));
    json_object_set_new(r, "ref", json_string(gp));
    cli_json_geometry(r, gg, o->spo, o->nsp);
    json_object_set_new(r, "evaluated_as", json_string(g->ndim == 3 ? "3d" : "2d"));
    json_object_set_new(r, "units_assumed_mm",
                        json_boolean(!o->nsp && ((pg->flags | gg->flags) & SARCO_IMAGE_UNITS_ASSUMED_MM)));
    json_t *arr = json_array();
    for (size_t k = 0; k < cnt; k++) json_array_append_new(arr, metrics_json(&m[k], g));
    json_object_set_new(r, "labels", arr);
    *out = r;
done:
    sarco_seg_metrics_free(m);
    sarco_labels_free(pl);
    sarco_labels_free(gl);
    sarco_image_free(pg);
    sarco_image_free(gg);
    return s;
}

/* ---- --list ---------------------------------------------------------------------------------- */

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = '\0';
    if (e - s >= 2 && s[0] == '"' && e[-1] == '"') {
        e[-1] = '\0';
        s++;
    }
    return s;
}

/* Splits a CSV line on commas (no embedded commas); returns the field count (at most 8). */
static int split(char *line, char **f) {
    int n = 0;
    for (char *p = line; n < 8;) {
        char *c = strchr(p, ',');
        if (c) *c = '\0';
        f[n++] = trim(p);
        if (!c) break;
        p = c + 1;
    }
    return n;
}

static void resolve(const char *dir, const char *path, char *out, size_t n) {
    if (path[0] == '/' || !dir[0])
        snprintf(out, n, "%s", path);
    else
        snprintf(out, n, "%s/%s", dir, path);
}

static double mean_of(const double *v, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return n ? s / (double)n : NAN;
}

static double sd_of(const double *v, size_t n) { /* sample SD (n - 1) */
    if (n < 2) return NAN;
    double m = mean_of(v, n), s = 0.0;
    for (size_t i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    return sqrt(s / (double)(n - 1));
}

static json_t *mean_sd(const double *v, size_t n) {
    json_t *o = json_object();
    json_object_set_new(o, "mean", n ? cli_jreal(mean_of(v, n)) : json_null());
    json_object_set_new(o, "sd", cli_jreal(sd_of(v, n)));
    json_object_set_new(o, "n", json_integer((json_int_t)n));
    return o;
}

/* Per-label summary over subjects, from the subjects' JSON entries. */
static json_t *summary_json(sarco_context *ctx, json_t *subjects, int is3) {
    /* the labels seen, ascending */
    unsigned char *seen = calloc(65536, 1);
    json_t *arr = json_array();
    if (!seen) return arr;
    size_t i, k;
    json_t *sj, *e;
    json_array_foreach(subjects, i, sj) json_array_foreach(json_object_get(sj, "labels"), k, e)
        seen[json_integer_value(json_object_get(e, "label"))] = 1;
    size_t ns = json_array_size(subjects);
    static const char *keys[] = {"dice", "jaccard", "hd_mm", "hd95_mm", "assd_mm", "ravd_percent"};
    const char *vp = is3 ? "volume_pred_ml" : "area_pred_cm2", *vr = is3 ? "volume_ref_ml" : "area_ref_cm2";
    double *buf = malloc((ns ? ns : 1) * 8 * sizeof *buf);
    if (!buf) {
        free(seen);
        return arr;
    }
    for (int lab = 0; lab < 65536; lab++) {
        if (!seen[lab]) continue;
        json_t *o = json_object();
        json_object_set_new(o, "label", json_integer(lab));
        double *col[8];
        size_t cnt[8] = {0};
        for (int c = 0; c < 8; c++) col[c] = buf + (size_t)c * ns;
        size_t flagged = 0;
        json_array_foreach(subjects, i, sj) json_array_foreach(json_object_get(sj, "labels"), k, e) {
            if (json_integer_value(json_object_get(e, "label")) != lab) continue;
            json_t *fl = json_object_get(e, "flags");
            int ravd_undef = 0;
            size_t q;
            json_t *fv;
            json_array_foreach(fl, q, fv) ravd_undef |= !strcmp(json_string_value(fv), "ravd_undefined");
            flagged += json_array_size(fl) > 0;
            for (int c = 0; c < 6; c++)
                if (!(c == 5 && ravd_undef)) col[c][cnt[c]++] = json_number_value(json_object_get(e, keys[c]));
            col[6][cnt[6]++] = json_number_value(json_object_get(e, vp));
            col[7][cnt[7]++] = json_number_value(json_object_get(e, vr));
        }
        json_object_set_new(o, "subjects", json_integer((json_int_t)cnt[0]));
        json_object_set_new(o, "flagged", json_integer((json_int_t)flagged));
        for (int c = 0; c < 6; c++) json_object_set_new(o, keys[c], mean_sd(col[c], cnt[c]));
        json_object_set_new(o, vp, mean_sd(col[6], cnt[6]));
        json_object_set_new(o, vr, mean_sd(col[7], cnt[7]));
        /* agreement of sizes across subjects; null when undefined (fewer than 2, or constant) */
        double r, icc;
        const int have_r = sarco_stats_pearson(ctx, col[6], col[7], cnt[6], &r) == SARCO_OK;
        json_object_set_new(o, is3 ? "volume_correlation" : "area_correlation", have_r ? cli_jreal(r) : json_null());
        double *pairs = malloc((cnt[6] ? cnt[6] : 1) * 2 * sizeof *pairs);
        int ok = 0;
        if (pairs) {
            for (size_t j = 0; j < cnt[6]; j++) {
                pairs[2 * j] = col[6][j];
                pairs[2 * j + 1] = col[7][j];
            }
            ok = sarco_stats_icc(ctx, pairs, cnt[6], 2, SARCO_ICC_2_1, &icc) == SARCO_OK;
            free(pairs);
        }
        json_object_set_new(o, is3 ? "volume_icc_2_1" : "area_icc_2_1", ok ? cli_jreal(icc) : json_null());
        json_array_append_new(arr, o);
    }
    free(buf);
    free(seen);
    return arr;
}

static sarco_status eval_list(sarco_context *ctx, const char *csv, const opts *o, json_t **out, char *msg, size_t n) {
    *out = NULL;
    FILE *f = fopen(csv, "r");
    if (!f) {
        snprintf(msg, n, "cannot open %s", csv);
        return SARCO_ERR_IO;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", csv);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        dir[0] = '\0';
    int ci = -1, cp = 0, cr = 1, header_seen = 0, dim = 0, tty = isatty(2);
    json_t *subjects = json_array();
    sarco_status s = SARCO_OK;
    char line[8192];
    long lineno = 0;
    while (s == SARCO_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char *t = trim(line);
        if (!*t || *t == '#') continue;
        char *fld[8];
        int nf = split(t, fld);
        if (!header_seen) {
            header_seen = 1;
            int hp = -1, hr = -1, hi = -1;
            for (int c = 0; c < nf; c++) {
                if (!strcasecmp(fld[c], "pred") || !strcasecmp(fld[c], "prediction")) hp = c;
                if (!strcasecmp(fld[c], "ref") || !strcasecmp(fld[c], "reference") || !strcasecmp(fld[c], "gt")) hr = c;
                if (!strcasecmp(fld[c], "id") || !strcasecmp(fld[c], "subject")) hi = c;
            }
            if (hp >= 0 && hr >= 0) {
                cp = hp;
                cr = hr;
                ci = hi;
                continue;
            }
            if (nf == 3) {
                ci = 0;
                cp = 1;
                cr = 2;
            } else if (nf != 2) {
                snprintf(msg, n, "%s:%ld: expected pred,ref or id,pred,ref", csv, lineno);
                s = SARCO_ERR_INVALID_ARGUMENT;
                break;
            }
        }
        int need = (cp > cr ? cp : cr) + 1;
        if (ci + 1 > need) need = ci + 1;
        if (nf < need) {
            snprintf(msg, n, "%s:%ld: %d fields, expected at least %d", csv, lineno, nf, need);
            s = SARCO_ERR_INVALID_ARGUMENT;
            break;
        }
        char pp[4096], gp[4096];
        resolve(dir, fld[cp], pp, sizeof pp);
        resolve(dir, fld[cr], gp, sizeof gp);
        json_t *r;
        cli_grid g;
        char why[1536];
        s = eval_pair(ctx, pp, gp, o, &r, &g, why, sizeof why);
        if (s != SARCO_OK) {
            snprintf(msg, n, "%s:%ld: %s", csv, lineno, why);
            break;
        }
        if (dim && dim != g.ndim) {
            json_decref(r);
            snprintf(msg, n, "%s:%ld: a %dD pair in a list of %dD pairs", csv, lineno, g.ndim, dim);
            s = SARCO_ERR_INVALID_ARGUMENT;
            break;
        }
        dim = g.ndim;
        char idbuf[32];
        snprintf(idbuf, sizeof idbuf, "%zu", json_array_size(subjects) + 1);
        json_object_set_new(r, "id", json_string(ci >= 0 ? fld[ci] : idbuf));
        json_array_append_new(subjects, r);
        if (tty) fprintf(stderr, "\rsarco evaluate: %zu subjects", json_array_size(subjects));
    }
    if (tty && json_array_size(subjects)) fputc('\n', stderr);
    fclose(f);
    if (s == SARCO_OK && json_array_size(subjects) == 0) {
        snprintf(msg, n, "%s lists no subjects", csv);
        s = SARCO_ERR_INVALID_ARGUMENT;
    }
    if (s != SARCO_OK) {
        json_decref(subjects);
        return s;
    }
    json_t *root = json_object();
    json_object_set_new(root, "list", json_string(csv));
    json_object_set_new(root, "subjects", subjects);
    json_object_set_new(root, "summary", summary_json(ctx, subjects, dim == 3));
    *out = root;
    return SARCO_OK;
}

int cmd_evaluate(int argc, char **argv) {
    const char *verb = "evaluate", *pp = NULL, *gp = NULL, *list = NULL;
    static int32_t labels[MAX_LABELS];
    opts o = {0};
    cli_common co = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc, rc;
        int took = cli_common_option(verb, EVAL_USAGE, argc, argv, &i, &co, &rc);
        if (took < 0) return rc;
        if (took) continue;
        if (!strcmp(a, "--pred") && more) {
            pp = argv[++i];
        } else if (!strcmp(a, "--ref") && more) {
            gp = argv[++i];
        } else if (!strcmp(a, "--list") && more) {
            list = argv[++i];
        } else if (!strcmp(a, "--labels") && more) {
            if (!parse_labels(argv[++i], labels, &o.nlabels))
                return cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, "--labels wants integers 0..65535 like 1,2,3");
            o.labels = labels;
        } else {
            return cli_unknown_option(verb, a, EVAL_USAGE);
        }
    }
    o.spo = co.spacing;
    o.nsp = co.nsp;
    if (list ? (pp || gp) : !(pp && gp)) {
        fprintf(stderr, "sarco evaluate: give --pred and --ref, or --list\n\n%s", EVAL_USAGE);
        return CLI_BAD_INPUT;
    }
    sarco_context *ctx = NULL;
    char msg[2048];
    sarco_status s = cli_cpu_context(co.threads, &ctx, msg, sizeof msg);
    if (s != SARCO_OK) return cli_fail(verb, s, msg);
    json_t *root = NULL;
    cli_grid g;
    s = list ? eval_list(ctx, list, &o, &root, msg, sizeof msg) : eval_pair(ctx, pp, gp, &o, &root, &g, msg, sizeof msg);
    int rc = s != SARCO_OK ? cli_fail(verb, s, msg) : cli_write_json(verb, root, co.report);
    json_decref(root);
    sarco_context_free(ctx);
    return rc;
}
