/* Times libsarco's exact EDT and surface metrics (HD, HD95, ASSD) on a pair of binary masks.
 *
 *   bench_edt --pred P.raw --ref G.raw --dims D H W --spacing sd sh sw [--threads N] [--repeat R]
 *
 * The masks are raw uint8 files in C order (the last axis fastest), nonzero = inside. Prints one
 * JSON object: the best wall time of R runs for the full-volume EDT of the reference
 * (as scipy.ndimage.distance_transform_edt(ref, sampling)) and for sarco_evaluate_labels on label 1,
 * and the metrics. bench/bench_edt_ref.py runs it beside scipy and MONAI on the same masks.
 * Build: make BUILD=build bench   (or: cc -O2 -fopenmp -Iinclude bench/bench_edt.c lib/libsarco.a $(LIBS)) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sarco/sarco.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint8_t *read_raw(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_edt: cannot open %s\n", path);
        return NULL;
    }
    uint8_t *b = malloc(n);
    size_t got = b ? fread(b, 1, n, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra) {
        fprintf(stderr, "bench_edt: %s does not hold exactly %zu bytes\n", path, n);
        free(b);
        return NULL;
    }
    return b;
}

int main(int argc, char **argv) {
    const char *pp = NULL, *gp = NULL;
    int64_t dims[3] = {0, 0, 0};
    double sp[3] = {1, 1, 1};
    int threads = 0, repeat = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pred") && i + 1 < argc)
            pp = argv[++i];
        else if (!strcmp(argv[i], "--ref") && i + 1 < argc)
            gp = argv[++i];
        else if (!strcmp(argv[i], "--dims") && i + 3 < argc)
            for (int a = 0; a < 3; a++) dims[a] = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--spacing") && i + 3 < argc)
            for (int a = 0; a < 3; a++) sp[a] = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_edt --pred P.raw --ref G.raw --dims D H W --spacing sd sh sw "
                            "[--threads N] [--repeat R]\n");
            return 2;
        }
    }
    if (!pp || !gp || dims[0] <= 0 || dims[1] <= 0 || dims[2] <= 0 || repeat < 1) {
        fprintf(stderr, "bench_edt: need --pred, --ref and positive --dims\n");
        return 2;
    }
    size_t n = (size_t)(dims[0] * dims[1] * dims[2]);
    uint8_t *p8 = read_raw(pp, n), *g8 = read_raw(gp, n);
    uint16_t *p = malloc(n * 2), *g = malloc(n * 2);
    float *dist = malloc(n * sizeof *dist);
    if (!p8 || !g8 || !p || !g || !dist) return 1;
    for (size_t i = 0; i < n; i++) {
        p[i] = p8[i] != 0;
        g[i] = g8[i] != 0;
    }
    free(p8);

    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.threads = threads;
    sarco_context *ctx;
    char msg[512];
    if (sarco_context_create_ex(&o, &ctx, msg, sizeof msg) != SARCO_OK) {
        fprintf(stderr, "bench_edt: %s\n", msg);
        return 1;
    }
    double best_edt = 1e30, best_eval = 1e30;
    sarco_seg_metrics m = {0};
    for (int r = 0; r < repeat; r++) {
        double t0 = now();
        if (sarco_edt(ctx, 3, dims, sp, g8, dist) != SARCO_OK) {
            fprintf(stderr, "bench_edt: %s\n", sarco_last_error(ctx));
            return 1;
        }
        double t1 = now();
        sarco_seg_metrics *res;
        size_t cnt;
        int32_t label = 1;
        if (sarco_evaluate_labels(ctx, 3, dims, sp, p, g, &label, 1, &res, &cnt) != SARCO_OK) {
            fprintf(stderr, "bench_edt: %s\n", sarco_last_error(ctx));
            return 1;
        }
        double t2 = now();
        m = res[0];
        sarco_seg_metrics_free(res);
        if (t1 - t0 < best_edt) best_edt = t1 - t0;
        if (t2 - t1 < best_eval) best_eval = t2 - t1;
    }
    double maxd = 0.0;
    for (size_t i = 0; i < n; i++)
        if (dist[i] > maxd) maxd = dist[i];
    printf("{\"threads\": %d, \"repeat\": %d, \"edt_s\": %.4f, \"evaluate_s\": %.4f, \"edt_max_mm\": %.6f, "
           "\"dice\": %.8f, \"hd_mm\": %.6f, \"hd95_mm\": %.6f, \"assd_mm\": %.6f, \"surface_pred\": %lld, "
           "\"surface_ref\": %lld}\n",
           threads, repeat, best_edt, best_eval, maxd, m.dice, m.hd_mm, m.hd95_mm, m.assd_mm,
           (long long)m.surface_pred, (long long)m.surface_ref);
    sarco_context_free(ctx);
    free(g8);
    free(p);
    free(g);
    free(dist);
    return 0;
}
