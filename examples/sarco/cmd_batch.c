/* sarco batch: a cohort through one model, resumable (docs/cohorts.md).
 *
 * Threads: one reader reads the next cases into a bounded queue (jobs + 1 images) while `jobs`
 * workers segment; each thread has its own context (a context serves one thread at a time) and each
 * worker its own model, loaded once. Per case, in OUTDIR/<case_id>/: labels.nii.gz, report.json,
 * rows.csv and last a `done` marker holding the run key (model SHA-256 + settings); a failed case
 * leaves error.txt instead. Every file is written to a temporary name and renamed. results.csv,
 * errors.csv and run.json are rebuilt from the case folders in list order, so a killed and resumed
 * run ends with the same tables as an uninterrupted one. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_pictures.h"

enum { CLI_CASES_FAILED = 3 };

static const char *BATCH_USAGE =
    "usage: sarco batch --model M --inputs LIST.csv|FOLDER --out OUTDIR [options]\n"
    "\n"
    "Segments every case with one model loaded once; the next case is read while the current one runs.\n"
    "LIST.csv: a header with case_id,path[,height_m] (other columns ignored; relative paths from the\n"
    "list's folder). FOLDER: every .nii/.nii.gz file, the case id from the file name.\n"
    "Writes OUTDIR/<case_id>/{labels.nii.gz,report.json,rows.csv[,overlay.png],done}, OUTDIR/results.csv (one row per\n"
    "case and label or group), OUTDIR/errors.csv and OUTDIR/run.json, each atomically.\n"
    "\n"
    "  --model M            libsarco model file (.safetensors with sarco.config)\n"
    "  --inputs L           case list (.csv) or folder\n"
    "  --out OUTDIR         output folder (created)\n"
    "  --jobs N             cases segmented at once, each with its own model copy (default 1)\n"
    "  --threads T          CPU threads in all, shared by the jobs (default 0: every core)\n"
    "  --resume             (default) skip cases whose outputs are complete; failed ones are retried\n"
    "  --no-resume          redo every case\n"
    "  --force              accept an OUTDIR made with another model or settings (its cases are redone)\n"
    "  --overlay            also draw each case's labels over its image (overlay.png, sarco overlay's defaults)\n"
    "  --backend B          auto (default), cpu or cuda\n"
    "  --precision P        fp32 (default), bf16, tf32 or fp16 (as sarco segment)\n"
    "  --overlap F, --mode M, --sw-batch N   as sarco segment (default: the model's)\n"
    "\n"
    "Exit codes: 0 every case done, 3 finished with failed cases (errors.csv), 2 bad usage, unreadable\n"
    "list or a refused OUTDIR, 1 internal failure.\n";

/* ---- small helpers ---- */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void utc_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* Writes to "<path>.tmp", fsyncs and renames: readers see the old file or the whole new one. */
static FILE *atomic_open(const char *path, char *tmp, size_t n) {
    snprintf(tmp, n, "%s.tmp", path);
    return fopen(tmp, "w");
}

static int atomic_close(FILE *f, const char *tmp, const char *path) {
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (ok && rename(tmp, path) == 0) return 1;
    unlink(tmp);
    return 0;
}

static int write_file_atomic(const char *path, const char *text) {
    char tmp[4096];
    FILE *f = atomic_open(path, tmp, sizeof tmp);
    if (!f) return 0;
    fputs(text, f);
    return atomic_close(f, tmp, path);
}

/* The whole file as a string, or NULL. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t k;
    while (b && (k = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n - 1 == 0) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    fclose(f);
    if (!b) return NULL;
    b[n] = '\0';
    if (len) *len = n;
    return b;
}

/* One CSV field: quoted when it holds a comma, a quote or a line break. */
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
    }
    fputc('"', f);
}

static void csv_num(FILE *f, double v, int have) {
    if (have && isfinite(v)) fprintf(f, "%.10g", v);
}

/* ---- the case list ---- */

typedef struct bcase {
    char *id, *path;
    double height_m; /* 0: none */
} bcase;

typedef struct clist {
    bcase *v;
    int n, cap;
} clist;

static int clist_add(clist *l, const char *id, const char *path, double h) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        bcase *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return 0;
        l->v = v, l->cap = cap;
    }
    bcase *c = &l->v[l->n];
    c->id = xstrdup(id), c->path = xstrdup(path), c->height_m = h;
    if (!c->id || !c->path) return 0;
    l->n++;
    return 1;
}

static void clist_free(clist *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i].id), free(l->v[i].path);
    free(l->v);
}

/* A case id names a folder: letters, digits, '.', '_', '-', not starting with '.', at most 200. */
static int valid_id(const char *s) {
    size_t n = strlen(s);
    if (!n || n > 200 || s[0] == '.') return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* Splits one CSV line in place (double quotes with "" escapes); returns the field count. */
static int csv_split(char *line, char **fields, int maxf) {
    int nf = 0;
    char *p = line;
    while (nf < maxf) {
        char *out = p;
        fields[nf++] = p;
        if (*p == '"') {
            char *r = p + 1;
            for (;;) {
                if (!*r) break;
                if (*r == '"' && r[1] == '"') *out++ = '"', r += 2;
                else if (*r == '"') { r++; break; }
                else *out++ = *r++;
            }
            while (*r && *r != ',') r++;
            char c = *r;
            *out = '\0';
            if (!c) break;
            p = r + 1;
        } else {
            char *c = strchr(p, ',');
            if (!c) break;
            *c = '\0';
            p = c + 1;
        }
    }
    for (int i = 0; i < nf; i++) { /* trim spaces */
        char *s = fields[i];
        while (*s == ' ' || *s == '\t') s++;
        size_t k = strlen(s);
        while (k && (s[k - 1] == ' ' || s[k - 1] == '\t' || s[k - 1] == '\r')) s[--k] = '\0';
        fields[i] = s;
    }
    return nf;
}

static int read_list_csv(const char *list, clist *l, char *msg, size_t mn) {
    char *text = read_all(list, NULL);
    if (!text) {
        snprintf(msg, mn, "%s: cannot read the case list (%s)", list, strerror(errno));
        return 0;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", list);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = '\0'; else dir[0] = '\0';
    int ci = -1, pi = -1, hi = -1, lineno = 0, ok = 1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && ok; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *f[64];
        int nf = csv_split(line, f, 64);
        if (nf == 1 && !*f[0]) continue;
        if (ci < 0) {
            for (int i = 0; i < nf; i++) {
                if (!strcmp(f[i], "case_id")) ci = i;
                else if (!strcmp(f[i], "path")) pi = i;
                else if (!strcmp(f[i], "height_m")) hi = i;
            }
            if (ci < 0 || pi < 0) {
                snprintf(msg, mn, "%s: the first line must be a header naming case_id and path columns", list);
                ok = 0;
            }
            continue;
        }
        if (nf <= ci || nf <= pi) {
            snprintf(msg, mn, "%s line %d: %d fields, no case_id or path", list, lineno, nf);
            ok = 0;
            break;
        }
        if (!valid_id(f[ci])) {
            snprintf(msg, mn, "%s line %d: case id '%s' must be letters, digits, '.', '_' or '-' (not first)",
                     list, lineno, f[ci]);
            ok = 0;
            break;
        }
        double h = 0;
        if (hi >= 0 && hi < nf && *f[hi]) {
            char *end;
            h = strtod(f[hi], &end);
            if (*end || !(h > 0.3 && h < 3.0)) {
                snprintf(msg, mn, "%s line %d: height_m '%s' is not a height in metres (0.3..3)", list, lineno, f[hi]);
                ok = 0;
                break;
            }
        }
        char path[8192];
        if (f[pi][0] == '/' || !dir[0]) snprintf(path, sizeof path, "%s", f[pi]);
        else snprintf(path, sizeof path, "%s%s", dir, f[pi]);
        if (!clist_add(l, f[ci], path, h)) {
            snprintf(msg, mn, "out of memory reading %s", list);
            ok = 0;
        }
    }
    if (ok && ci < 0) {
        snprintf(msg, mn, "%s: empty case list (need a header with case_id,path)", list);
        ok = 0;
    }
    free(text);
    return ok;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int read_list_dir(const char *dir, clist *l, char *msg, size_t mn) {
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(msg, mn, "%s: cannot open the folder (%s)", dir, strerror(errno));
        return 0;
    }
    char **names = NULL;
    int n = 0, cap = 0, ok = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t k = strlen(e->d_name);
        if (e->d_name[0] == '.') continue;
        if (!((k > 4 && !strcmp(e->d_name + k - 4, ".nii")) || (k > 7 && !strcmp(e->d_name + k - 7, ".nii.gz"))))
            continue;
        if (n == cap) {
            char **nn = realloc(names, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *nn);
            if (!nn) { ok = 0; break; }
            names = nn;
        }
        if (!(names[n] = xstrdup(e->d_name))) { ok = 0; break; }
        n++;
    }
    closedir(d);
    if (!ok) snprintf(msg, mn, "out of memory listing %s", dir);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n && ok; i++) {
        char id[1024], path[8192];
        snprintf(id, sizeof id, "%s", names[i]);
        size_t k = strlen(id);
        id[k - (k > 7 && !strcmp(id + k - 7, ".nii.gz") ? 7 : 4)] = '\0';
        if (!valid_id(id)) {
            snprintf(msg, mn, "%s/%s: the case id '%s' must be letters, digits, '.', '_' or '-'; rename the file "
                              "or pass a CSV list", dir, names[i], id);
            ok = 0;
            break;
        }
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (!clist_add(l, id, path, 0)) {
            snprintf(msg, mn, "out of memory listing %s", dir);
            ok = 0;
        }
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (ok && !l->n) {
        snprintf(msg, mn, "%s: no .nii or .nii.gz files", dir);
        ok = 0;
    }
    return ok;
}

static int check_unique(const clist *l, char *msg, size_t mn) {
    char **ids = malloc((size_t)(l->n ? l->n : 1) * sizeof *ids);
    if (!ids) return snprintf(msg, mn, "out of memory"), 0;
    for (int i = 0; i < l->n; i++) ids[i] = l->v[i].id;
    qsort(ids, (size_t)l->n, sizeof *ids, cmp_str);
    int ok = 1;
    for (int i = 1; i < l->n && ok; i++)
        if (!strcmp(ids[i - 1], ids[i])) {
            snprintf(msg, mn, "case id '%s' appears twice", ids[i]);
            ok = 0;
        }
    free(ids);
    return ok;
}

/* ---- the run ---- */

typedef struct item {
    int idx;
    sarco_image *ct;
    sarco_status st;
    char msg[1024];
} item;

typedef struct batch {
    const char *model_path, *out;
    clist cases;
    unsigned char *todo; /* 1: run this case */
    int ntodo;
    int jobs;
    sarco_context_options co;
    sarco_segment_options so;
    char sha[65];
    char settings[256];
    char key[400]; /* the run key: "sha256:<hex> <settings>" */
    int overlay;   /* --overlay: OUTDIR/<case_id>/overlay.png too */
    sarco_overlay_options oo;
    char **names;  /* the model's class names, for the overlay's legend */
    size_t nnames;
    sarco_context **ctx;
    sarco_model **model;
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* queue changed or a case finished */
    item *q;
    int qcap, qhead, qn, reader_done, workers_done;
    int processed, failed_now;
    int tty;
    double t0;
} batch;

static void case_dir(const batch *b, int i, char *buf, size_t n) { snprintf(buf, n, "%s/%s", b->out, b->cases.v[i].id); }

static void case_file(const batch *b, int i, const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s/%s", b->out, b->cases.v[i].id, name);
}

/* 1 when the case's done marker holds this run's key. */
static int case_complete(const batch *b, int i) {
    char p[8192];
    case_file(b, i, "done", p, sizeof p);
    char *t = read_all(p, NULL);
    int ok = t && !strcmp(t, b->key);
    free(t);
    if (ok && b->overlay) { /* a case done without --overlay is redone to draw it */
        case_file(b, i, "overlay.png", p, sizeof p);
        ok = access(p, F_OK) == 0;
    }
    return ok;
}

/* Empties a case folder (creating it): a case is always written from nothing, so an interrupted
 * earlier attempt leaves no trace. */
static int case_reset(const batch *b, int i) {
    char d[8192];
    case_dir(b, i, d, sizeof d);
    if (mkdir(d, 0777) != 0 && errno != EEXIST) return 0;
    DIR *dd = opendir(d);
    if (!dd) return 0;
    struct dirent *e;
    while ((e = readdir(dd))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[8192 + 300];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        unlink(p);
    }
    closedir(dd);
    return 1;
}

static void record_failure(batch *b, int i, sarco_status st, const char *msg) {
    char p[8192];
    case_file(b, i, "error.txt", p, sizeof p);
    char *text = malloc(strlen(msg) + 64);
    if (text) {
        sprintf(text, "%s\t%s\n", sarco_status_string(st), msg);
        for (char *c = text; *c && c[1]; c++)
            if (*c == '\n') *c = ' ';
        write_file_atomic(p, text);
        free(text);
    }
}

static void rows_csv(FILE *f, const batch *b, int i, const sarco_volume_report *vr, int is_3d) {
    for (int g = 0; g < 2; g++) {
        size_t n = g ? vr->ngroups : vr->nlabels;
        const sarco_volume_entry *v = g ? vr->groups : vr->labels;
        for (size_t k = 0; k < n; k++) {
            const sarco_volume_entry *e = &v[k];
            fprintf(f, "%s,%s,", b->cases.v[i].id, g ? "group" : "label");
            if (!g) fprintf(f, "%d", e->label);
            fputc(',', f);
            csv_field(f, e->name ? e->name : "");
            fprintf(f, ",%lld,", (long long)e->voxels);
            csv_num(f, e->volume_ml, is_3d);
            fputc(',', f);
            csv_num(f, e->volume_ml, !is_3d);
            fputc(',', f);
            csv_num(f, e->volume_index, vr->height_m > 0);
            fputc(',', f);
            csv_num(f, e->hu_mean, e->finite_voxels > 0);
            fputc(',', f);
            csv_num(f, e->hu_sd, e->finite_voxels > 0);
            fputc(',', f);
            csv_num(f, vr->height_m, vr->height_m > 0);
            fprintf(f, ",%s,%s\n", b->sha, b->settings);
        }
    }
}

static const char *RESULTS_HEADER = "case_id,kind,label,name,voxels,volume_ml,area_cm2,index_per_m2,hu_mean,hu_sd,"
                                    "height_m,model_sha256,settings\n";

/* One case, start to end; returns SARCO_OK or the failing status with msg. */
static sarco_status run_case(batch *b, int w, item *it, char *msg, size_t mn) {
    sarco_context *ctx = b->ctx[w];
    const bcase *c = &b->cases.v[it->idx];
    sarco_image *ct = it->ct;
    double t0 = now_s();
    size_t n = (size_t)(ct->dims[0] * ct->dims[1] * (ct->ndim > 2 ? ct->dims[2] : 1));
    uint16_t *labels = malloc(n * sizeof *labels);
    sarco_volume_report *vr = NULL;
    sarco_status s = SARCO_OK;
    char lab[8192], rep[8192], rows[8192], done[8192], tmp[8300];
    case_file(b, it->idx, "labels.nii.gz", lab, sizeof lab);
    case_file(b, it->idx, "report.json", rep, sizeof rep);
    case_file(b, it->idx, "rows.csv", rows, sizeof rows);
    case_file(b, it->idx, "done", done, sizeof done);
    if (!labels) {
        snprintf(msg, mn, "cannot allocate the label map (%zu voxels)", n);
        return SARCO_ERR_OUT_OF_MEMORY;
    }
    sarco_segment_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if ((s = sarco_segment(ctx, b->model[w], ct, &b->so, labels, n, &info)) != SARCO_OK) goto fail;
    double t_seg = now_s();
    if ((s = sarco_segment_volumes(ctx, b->model[w], ct, labels, n, c->height_m, &vr)) != SARCO_OK) goto fail;
    if ((s = sarco_labels_write(ctx, ct, labels, info.num_classes > 0 ? info.num_classes - 1 : 1, lab)) != SARCO_OK)
        goto fail;
    if (b->overlay) {
        char ov[8192];
        case_file(b, it->idx, "overlay.png", ov, sizeof ov);
        if ((s = sarco_overlay_write(ctx, ct, labels, &b->oo, ov)) != SARCO_OK) goto fail;
    }
    FILE *f = atomic_open(rows, tmp, sizeof tmp);
    if (!f) goto io;
    rows_csv(f, b, it->idx, vr, ct->ndim == 3);
    if (!atomic_close(f, tmp, rows)) goto io;
    double t_end = now_s();
    const double t[3] = {0.0, t_end - t_seg, t_end - t0};
    if (!(f = atomic_open(rep, tmp, sizeof tmp))) goto io;
    cli_segment_report(f, b->model_path, b->model[w], c->path, lab, ct, ctx, &info, vr, t, b->co.precision);
    if (!atomic_close(f, tmp, rep)) goto io;
    if (!write_file_atomic(done, b->key)) goto io; /* last: the case is complete */
    free(labels);
    sarco_volume_report_free(vr);
    return SARCO_OK;
io:
    snprintf(msg, mn, "cannot write the outputs in %s/%s (%s)", b->out, c->id, strerror(errno));
    s = SARCO_ERR_IO;
    goto out;
fail:
    snprintf(msg, mn, "%s", sarco_last_error(ctx));
out:
    free(labels);
    sarco_volume_report_free(vr);
    return s;
}

static void progress(batch *b, const char *id, sarco_status st, const char *msg, double secs) {
    /* called with b->mu held */
    double el = now_s() - b->t0, rate = b->processed / (el > 1e-9 ? el : 1e-9);
    int left = b->ntodo - b->processed;
    if (b->tty) {
        double eta = rate > 0 ? left / rate : 0;
        fprintf(stderr, "\rsarco batch: %d/%d done, %d failed, %.1f cases/min, ETA %dm%02ds   ",
                b->processed, b->ntodo, b->failed_now, 60.0 * rate, (int)(eta / 60), (int)fmod(eta, 60));
        if (!left) fputc('\n', stderr);
    } else if (st == SARCO_OK) {
        fprintf(stderr, "sarco batch: [%d/%d] %s ok %.1fs\n", b->processed, b->ntodo, id, secs);
    } else {
        fprintf(stderr, "sarco batch: [%d/%d] %s FAILED %s: %s\n", b->processed, b->ntodo, id,
                sarco_status_string(st), msg);
    }
    fflush(stderr);
}

static void *reader_main(void *arg) {
    batch *b = arg;
    sarco_context *ctx = NULL;
    char cmsg[512];
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.threads = 1;
    sarco_status cs = sarco_context_create_ex(&o, &ctx, cmsg, sizeof cmsg);
    for (int i = 0; i < b->cases.n; i++) {
        if (!b->todo[i]) continue;
        item it = {.idx = i, .ct = NULL, .st = cs};
        if (cs == SARCO_OK) {
            it.st = sarco_image_read(ctx, b->cases.v[i].path, &it.ct);
            if (it.st != SARCO_OK) snprintf(it.msg, sizeof it.msg, "%s", sarco_last_error(ctx));
        } else {
            snprintf(it.msg, sizeof it.msg, "reader context: %s", cmsg);
        }
        pthread_mutex_lock(&b->mu);
        while (b->qn == b->qcap) pthread_cond_wait(&b->cv, &b->mu);
        b->q[(b->qhead + b->qn++) % b->qcap] = it;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
    pthread_mutex_lock(&b->mu);
    b->reader_done = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    sarco_context_free(ctx);
    return NULL;
}

typedef struct worker_arg {
    batch *b;
    int w;
} worker_arg;

static void *worker_main(void *arg) {
    batch *b = ((worker_arg *)arg)->b;
    int w = ((worker_arg *)arg)->w;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        while (!b->qn && !b->reader_done) pthread_cond_wait(&b->cv, &b->mu);
        if (!b->qn) {
            b->workers_done++;
            pthread_cond_broadcast(&b->cv);
            pthread_mutex_unlock(&b->mu);
            return NULL;
        }
        item it = b->q[b->qhead];
        b->qhead = (b->qhead + 1) % b->qcap;
        b->qn--;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);

        double t0 = now_s();
        sarco_status st = it.st;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", it.msg);
        if (!case_reset(b, it.idx)) {
            snprintf(msg, sizeof msg, "cannot create %s/%s (%s)", b->out, b->cases.v[it.idx].id, strerror(errno));
            st = SARCO_ERR_IO;
        } else if (st == SARCO_OK) {
            st = run_case(b, w, &it, msg, sizeof msg);
        }
        if (st != SARCO_OK) record_failure(b, it.idx, st, msg);
        sarco_image_free(it.ct);
        pthread_mutex_lock(&b->mu);
        b->processed++;
        if (st != SARCO_OK) b->failed_now++;
        progress(b, b->cases.v[it.idx].id, st, msg, now_s() - t0);
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
}

/* results.csv and errors.csv from the case folders, in list order; counts complete and failed. */
static int write_tables(batch *b, int *ncomplete, int *nfailed) {
    char p[8192], tmp[8300], pe[8192], tmpe[8300];
    snprintf(p, sizeof p, "%s/results.csv", b->out);
    snprintf(pe, sizeof pe, "%s/errors.csv", b->out);
    FILE *r = atomic_open(p, tmp, sizeof tmp);
    FILE *e = r ? atomic_open(pe, tmpe, sizeof tmpe) : NULL;
    if (!r || !e) {
        if (r) fclose(r), unlink(tmp);
        return 0;
    }
    fputs(RESULTS_HEADER, r);
    fputs("case_id,status,message\n", e);
    *ncomplete = *nfailed = 0;
    for (int i = 0; i < b->cases.n; i++) {
        char f[8192];
        if (case_complete(b, i)) {
            case_file(b, i, "rows.csv", f, sizeof f);
            char *t = read_all(f, NULL);
            if (t) fputs(t, r), free(t), ++*ncomplete;
            continue;
        }
        ++*nfailed;
        case_file(b, i, "error.txt", f, sizeof f);
        char *t = read_all(f, NULL);
        char *tab = t ? strchr(t, '\t') : NULL;
        fprintf(e, "%s,", b->cases.v[i].id);
        if (tab) {
            *tab = '\0';
            size_t k = strlen(tab + 1);
            while (k && tab[k] == '\n') tab[k--] = '\0';
            csv_field(e, t);
            fputc(',', e);
            csv_field(e, tab + 1);
        } else {
            fputs("not run,", e);
        }
        fputc('\n', e);
        free(t);
    }
    int ok = atomic_close(r, tmp, p);
    return atomic_close(e, tmpe, pe) && ok;
}

static int write_run_json(batch *b, const char *started, const char *finished, int ncomplete, int nfailed, int skipped) {
    json_t *root = json_object();
    json_object_set_new(root, "run_key", json_string(b->key));
    json_object_set_new(root, "model", json_string(b->model_path));
    json_object_set_new(root, "model_sha256", json_string(b->sha));
    json_object_set_new(root, "settings", json_string(b->settings));
    json_object_set_new(root, "library_version", json_string(sarco_version_string()));
    json_object_set_new(root, "backend", json_string(b->ctx[0] && sarco_context_backend(b->ctx[0]) == SARCO_BACKEND_CUDA
                                                          ? "cuda" : "cpu"));
    json_object_set_new(root, "backend_detail", json_string(b->ctx[0] ? sarco_context_backend_detail(b->ctx[0]) : ""));
    json_object_set_new(root, "jobs", json_integer(b->jobs));
    json_object_set_new(root, "started", json_string(started));
    json_object_set_new(root, "finished", finished ? json_string(finished) : json_null());
    json_object_set_new(root, "cases", json_integer(b->cases.n));
    json_object_set_new(root, "complete", json_integer(ncomplete));
    json_object_set_new(root, "failed", json_integer(nfailed));
    json_object_set_new(root, "this_run", json_pack("{s:i,s:i,s:i}", "processed", b->processed, "failed",
                                                    b->failed_now, "skipped_complete", skipped));
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!text) return 0;
    char p[8192];
    snprintf(p, sizeof p, "%s/run.json", b->out);
    size_t k = strlen(text);
    char *t2 = realloc(text, k + 2);
    if (t2) text = t2, strcat(text, "\n");
    int ok = write_file_atomic(p, text);
    free(text);
    return ok;
}

static int parse_num(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

int cmd_batch(int argc, char **argv) {
    batch b;
    memset(&b, 0, sizeof b);
    sarco_context_options_init(&b.co);
    sarco_segment_options_init(&b.so);
    sarco_overlay_options_init(&b.oo);
    const char *inputs = NULL;
    int resume = 1, force = 0, threads = 0;
    b.jobs = 1;
    char ov[32] = "model", md[32] = "model", swb[32] = "model";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(BATCH_USAGE, stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "--resume")) { resume = 1; continue; }
        if (!strcmp(a, "--no-resume")) { resume = 0; continue; }
        if (!strcmp(a, "--force")) { force = 1; continue; }
        if (!strcmp(a, "--overlay")) { b.overlay = 1; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "sarco batch: %s needs a value (or is unknown)\n\n%s", a, BATCH_USAGE);
            return CLI_BAD_INPUT;
        }
        const char *v = argv[++i];
        double d;
        if (!strcmp(a, "--model")) b.model_path = v;
        else if (!strcmp(a, "--inputs")) inputs = v;
        else if (!strcmp(a, "--out")) b.out = v;
        else if (!strcmp(a, "--jobs")) {
            if (!parse_num(v, &d) || d < 1 || d > 64 || d != floor(d))
                return cli_fail("batch", SARCO_ERR_INVALID_ARGUMENT, "--jobs must be an integer in 1..64");
            b.jobs = (int)d;
        } else if (!strcmp(a, "--threads")) {
            if (!parse_num(v, &d) || d < 0 || d > 4096 || d != floor(d))
                return cli_fail("batch", SARCO_ERR_INVALID_ARGUMENT, "--threads must be an integer >= 0");
            threads = (int)d;
        } else if (!strcmp(a, "--backend")) {
            if (!strcmp(v, "auto")) b.co.backend = SARCO_BACKEND_AUTO;
            else if (!strcmp(v, "cpu")) b.co.backend = SARCO_BACKEND_CPU;
            else if (!strcmp(v, "cuda")) b.co.backend = SARCO_BACKEND_CUDA;
            else return cli_fail("batch", SARCO_ERR_INVALID_ARGUMENT, "--backend must be auto, cpu or cuda");
        } else if (!strcmp(a, "--precision")) {
            if (!cli_parse_precision(v, &b.co.precision))
                return cli_fail("batch", SARCO_ERR_INVALID_ARGUMENT, "--precision must be fp32, bf16, tf32 or fp16");
        } else if (!strcmp(a, "--overlap")) {
            if (!parse_num(v, &d) || !(d >= 0 && d < 1))
                return cli_fail("batch", SARCO_ERR_INVALID_ARGUMENT, "--overlap must be in [0, 1)");
            b.so.window.overlap = d;
            snprintf(ov, sizeof ov, "%.6g", d);
        } else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "constant")) b.so.window.mode = SARCO_BLEND_CONSTANT;
            else if (!strcmp(v, "gaussian")) b.so.window.mode = SARCO_BLEND_GAUSSIAN;
            else return cli_fail("batch", SARCO_ERR_INVALID_ARGUMENT, "--mode must be constant or gaussian");
            snprintf(md, sizeof md, "%s", v);
        } else if (!strcmp(a, "--sw-batch")) {
            if (!parse_num(v, &d) || d < 1 || d > 1024 || d != floor(d))
                return cli_fail("batch", SARCO_ERR_INVALID_ARGUMENT, "--sw-batch must be an integer in 1..1024");
            b.so.window.sw_batch_size = (int)d;
            snprintf(swb, sizeof swb, "%d", (int)d);
        } else {
            return cli_unknown_option("batch", a, BATCH_USAGE);
        }
    }
    if (!b.model_path || !inputs || !b.out) {
        fprintf(stderr, "sarco batch: --model, --inputs and --out are required\n\n%s", BATCH_USAGE);
        return CLI_BAD_INPUT;
    }
    static const char *const prec[] = {"fp32", "tf32", "fp16", "bf16"};
    /* What changes the results; threads and jobs do not. Same text in python/sarco/distributed.py. */
    snprintf(b.settings, sizeof b.settings, "precision=%s;overlap=%s;mode=%s;sw_batch=%s", prec[b.co.precision], ov,
             md, swb);
    char msg[2048];
    struct stat st;
    if (stat(inputs, &st) != 0) {
        snprintf(msg, sizeof msg, "%s: %s", inputs, strerror(errno));
        return cli_fail("batch", SARCO_ERR_IO, msg);
    }
    int ok = S_ISDIR(st.st_mode) ? read_list_dir(inputs, &b.cases, msg, sizeof msg)
                                 : read_list_csv(inputs, &b.cases, msg, sizeof msg);
    if (ok) ok = check_unique(&b.cases, msg, sizeof msg);
    if (!ok) {
        clist_free(&b.cases);
        return cli_fail("batch", SARCO_ERR_INVALID_ARGUMENT, msg);
    }
    sarco_status hs = sarco_file_sha256(NULL, b.model_path, b.sha); /* the run key names the exact weights */
    if (hs != SARCO_OK) {
        snprintf(msg, sizeof msg, "%s: cannot read the model file (%s)", b.model_path, strerror(errno));
        clist_free(&b.cases);
        return cli_fail("batch", hs, msg);
    }
    snprintf(b.key, sizeof b.key, "sha256:%s %s", b.sha, b.settings);
    if (mkdir(b.out, 0777) != 0 && errno != EEXIST) {
        snprintf(msg, sizeof msg, "%s: cannot create the output folder (%s)", b.out, strerror(errno));
        clist_free(&b.cases);
        return cli_fail("batch", SARCO_ERR_IO, msg);
    }
    /* An OUTDIR of another model or settings is refused unless --force. */
    char rp[8192];
    snprintf(rp, sizeof rp, "%s/run.json", b.out);
    json_error_t jerr;
    json_t *old = json_load_file(rp, 0, &jerr);
    if (old) {
        const char *ok_key = json_string_value(json_object_get(old, "run_key"));
        if ((!ok_key || strcmp(ok_key, b.key)) && !force) {
            const char *om = json_string_value(json_object_get(old, "model"));
            const char *os = json_string_value(json_object_get(old, "settings"));
            snprintf(msg, sizeof msg,
                     "%s holds a run of model %s (%s) with settings %s; this one is %s (sha256 %.12s) with %s. "
                     "Pass --force to redo its cases with these, or choose another --out",
                     b.out, om ? om : "?", ok_key ? ok_key : "no key", os ? os : "?", b.model_path, b.sha, b.settings);
            json_decref(old);
            clist_free(&b.cases);
            return cli_fail("batch", SARCO_ERR_INVALID_ARGUMENT, msg);
        }
        json_decref(old);
    }
    b.todo = calloc((size_t)b.cases.n, 1);
    b.ctx = calloc((size_t)b.jobs, sizeof *b.ctx);
    b.model = calloc((size_t)b.jobs, sizeof *b.model);
    b.qcap = b.jobs + 1;
    b.q = calloc((size_t)b.qcap, sizeof *b.q);
    int rc = CLI_OK, skipped = 0;
    if (!b.todo || !b.ctx || !b.model || !b.q) {
        rc = cli_fail("batch", SARCO_ERR_OUT_OF_MEMORY, "cannot allocate the run's tables");
        goto done;
    }
    for (int i = 0; i < b.cases.n; i++) {
        b.todo[i] = !(resume && case_complete(&b, i));
        b.ntodo += b.todo[i];
    }
    skipped = b.cases.n - b.ntodo;
    /* Each job: its context and model, loaded once. CPU threads shared out among the jobs. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int total = threads > 0 ? threads : (int)(cores > 0 ? cores : 1);
    for (int w = 0; w < b.jobs; w++) {
        sarco_context_options o = b.co;
        o.threads = total / b.jobs > 0 ? total / b.jobs : 1;
        sarco_status s = sarco_context_create_ex(&o, &b.ctx[w], msg, sizeof msg);
        if (s != SARCO_OK) {
            rc = cli_fail("batch", s, msg);
            goto done;
        }
        if (b.ntodo && (s = sarco_model_load(b.ctx[w], b.model_path, &b.model[w])) != SARCO_OK) {
            rc = cli_fail("batch", s, sarco_last_error(b.ctx[w]));
            goto done;
        }
    }
    if (b.overlay && b.ntodo) {
        b.names = cli_class_names(sarco_model_config_json(b.model[0]), &b.nnames);
        b.oo.class_names = (const char *const *)b.names;
        b.oo.nclass_names = b.nnames;
    }
    char started[32];
    utc_now(started, sizeof started);
    if (!write_run_json(&b, started, NULL, 0, 0, skipped)) {
        snprintf(msg, sizeof msg, "%s: cannot write run.json (%s)", b.out, strerror(errno));
        rc = cli_fail("batch", SARCO_ERR_IO, msg);
        goto done;
    }
    b.tty = isatty(fileno(stderr));
    fprintf(stderr, "sarco batch: %d cases, %d to run, %d complete already; %d job(s) x %d thread(s)\n", b.cases.n,
            b.ntodo, skipped, b.jobs, total / b.jobs > 0 ? total / b.jobs : 1);
    b.t0 = now_s();
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    pthread_t reader, workers[64];
    worker_arg wa[64];
    int nstarted = 0, reader_ok = pthread_create(&reader, NULL, reader_main, &b) == 0;
    for (int w = 0; reader_ok && w < b.jobs; w++) {
        wa[w] = (worker_arg){&b, w};
        if (pthread_create(&workers[w], NULL, worker_main, &wa[w]) != 0) break;
        nstarted++;
    }
    if (reader_ok && !nstarted) { /* no worker: drain the queue here so the reader can finish */
        wa[0] = (worker_arg){&b, 0};
        worker_main(&wa[0]);
    }
    for (int w = 0; w < nstarted; w++) pthread_join(workers[w], NULL);
    if (reader_ok) pthread_join(reader, NULL);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    if (!reader_ok) {
        rc = cli_fail("batch", SARCO_ERR_INTERNAL, "cannot start the reader thread");
        goto done;
    }
    int ncomplete = 0, nfailed = 0;
    char finished[32];
    utc_now(finished, sizeof finished);
    if (!write_tables(&b, &ncomplete, &nfailed) || !write_run_json(&b, started, finished, ncomplete, nfailed, skipped)) {
        snprintf(msg, sizeof msg, "%s: cannot write results.csv, errors.csv or run.json (%s)", b.out, strerror(errno));
        rc = cli_fail("batch", SARCO_ERR_IO, msg);
        rc = CLI_INTERNAL;
        goto done;
    }
    double el = now_s() - b.t0;
    fprintf(stderr, "sarco batch: %d/%d cases complete, %d failed (errors.csv); this run: %d in %.1fs (%.2f cases/min)\n",
            ncomplete, b.cases.n, nfailed, b.processed, el, el > 0 ? 60.0 * b.processed / el : 0.0);
    printf("%s/results.csv\n", b.out);
    rc = nfailed ? CLI_CASES_FAILED : CLI_OK;
done:
    for (int w = 0; b.model && w < b.jobs; w++) sarco_model_free(b.model[w]);
    for (int w = 0; b.ctx && w < b.jobs; w++) sarco_context_free(b.ctx[w]);
    free(b.model);
    free(b.ctx);
    free(b.q);
    free(b.todo);
    cli_names_free(b.names, b.nnames);
    clist_free(&b.cases);
    return rc;
}
