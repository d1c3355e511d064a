/* Times the CPU backend's weighted ops on representative shapes (best of R runs after a warm-up):
 *
 *   bench_conv [--threads N] [--repeat R] [--only NAME] [--json]
 *
 * Shapes: the UNETR decoder's 3x3x3 conv at 96^3 x 16 -> 16, UNETR's 16^3 patch-embedding conv
 * 1 -> 768 at 96^3, a 2D 3x3 conv 64 -> 64 at 224^2, a 768 -> 3072 linear on 216 tokens, and a
 * UNETR transposed conv (k2 s2) 768 -> 64 at 6^3 -> 12^3, ConvNeXt's 7x7 depthwise conv at 56^2 x 96.
 * GFLOP/s counts 2 x MACs / wall time; "cpu" is the CPU time all threads used in that run (on a
 * shared machine, cpu < threads x wall means we were waiting for a core). bench/bench_conv_torch.py times the same shapes in PyTorch and prints
 * ratios. Build: make BUILD=build-x bench. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/cpu/cpu.h"
#include "lib/ops/ops.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU seconds of all threads: beside the wall time it shows how much of the machine we really got */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct shape {
    const char *name;
    int kind; /* 0 conv, 1 deconv, 2 linear */
    sarco_conv_desc d;
    int64_t in[3];
    int64_t m, k, n; /* linear */
} shape;

static sarco_conv_desc cd(int nsp, int64_t cin, int64_t cout, int64_t g, int64_t k, int64_t s, int64_t p) {
    sarco_conv_desc d;
    memset(&d, 0, sizeof d);
    d.nsp = nsp;
    d.cin = cin;
    d.cout = cout;
    d.groups = g;
    for (int i = 0; i < nsp; i++) {
        d.k[i] = k;
        d.stride[i] = s;
        d.pad[i] = p;
        d.dil[i] = 1;
    }
    return d;
}

static float *filled(sarco_backend *be, size_t n, unsigned seed) {
    float *h = malloc(n * sizeof *h), *d = NULL;
    if (!h) return NULL;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
    if (be->ops->alloc(be, n * sizeof *h, (void **)&d) == SARCO_OK) be->ops->upload(be, d, h, n * sizeof *h);
    free(h);
    return d;
}

int main(int argc, char **argv) {
    int threads = 0, repeat = 5, json = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--repeat R] [--only NAME] [--json]\n", argv[0]);
            return 2;
        }
    }
    if (repeat < 1) repeat = 1;
    shape shapes[] = {
        {"conv3d_k3_96^3_16->16", 0, cd(3, 16, 16, 1, 3, 1, 1), {96, 96, 96}, 0, 0, 0},
        {"patch_embed_k16s16_96^3_1->768", 0, cd(3, 1, 768, 1, 16, 16, 0), {96, 96, 96}, 0, 0, 0},
        {"conv2d_k3_224^2_64->64", 0, cd(2, 64, 64, 1, 3, 1, 1), {224, 224, 0}, 0, 0, 0},
        {"linear_216x768->3072", 2, cd(2, 1, 1, 1, 1, 1, 0), {0, 0, 0}, 216, 768, 3072},
        {"deconv3d_k2s2_6^3_768->64", 1, cd(3, 768, 64, 1, 2, 2, 0), {6, 6, 6}, 0, 0, 0},
        {"dwconv2d_k7_56^2_96", 0, cd(2, 96, 96, 96, 7, 1, 3), {56, 56, 0}, 0, 0, 0},
    };
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    o.threads = threads;
    sarco_context *ctx = NULL;
    char msg[512];
    if (sarco_context_create_ex(&o, &ctx, msg, sizeof msg) != SARCO_OK) {
        fprintf(stderr, "context: %s\n", msg);
        return 1;
    }
    sarco_backend *be = ctx->be;
    if (json) printf("[\n");
    int first = 1;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        shape *s = &shapes[si];
        if (only && !strstr(s->name, only)) continue;
        size_t nx, ny, nw, nb;
        double macs;
        int64_t out[3] = {1, 1, 1};
        if (s->kind == 2) {
            nx = (size_t)(s->m * s->k);
            ny = (size_t)(s->m * s->n);
            nw = (size_t)(s->n * s->k);
            nb = (size_t)s->n;
            macs = (double)s->m * s->k * s->n;
        } else {
            sarco_conv_out_shape(&s->d, s->kind == 1, s->in, out);
            int64_t S = 1, O = 1, K = 1;
            for (int i = 0; i < s->d.nsp; i++) {
                S *= s->in[i];
                O *= out[i];
                K *= s->d.k[i];
            }
            nx = (size_t)(S * s->d.cin);
            ny = (size_t)(O * s->d.cout);
            nw = (size_t)(s->d.cin * s->d.cout / s->d.groups * K);
            nb = (size_t)s->d.cout;
            /* MACs per output (conv) or per input (deconv) element */
            macs = s->kind == 1 ? (double)S * s->d.cin * (s->d.cout / s->d.groups) * K
                                : (double)O * s->d.cout * (s->d.cin / s->d.groups) * K;
        }
        float *wh = malloc(nw * sizeof *wh), *bh = calloc(nb, sizeof *bh);
        for (size_t i = 0; i < nw; i++) wh[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        float *x = filled(be, nx, 1), *y = filled(be, ny, 2);
        sarco_conv *c = NULL;
        sarco_linear *l = NULL;
        sarco_status st;
        if (s->kind == 2) {
            sarco_linear_desc ld = {s->k, s->n, 1, SARCO_ACT_NONE, 0};
            st = be->ops->linear_prepare(be, &ld, wh, bh, &l);
        } else {
            s->d.has_bias = 1;
            st = be->ops->conv_prepare(be, &s->d, s->kind == 1, wh, bh, &c);
        }
        if (st != SARCO_OK || !x || !y) {
            fprintf(stderr, "%s: %s\n", s->name, sarco_last_error(ctx));
            return 1;
        }
        double best = 1e30, best_cpu = 0, first_run = 0;
        for (int r = 0; r <= repeat; r++) { /* run 0 creates the primitive: reported separately */
            double t0 = now(), c0 = cpu_now();
            st = s->kind == 2 ? be->ops->linear_run(be, l, s->m, x, NULL, y)
                              : be->ops->conv_run(be, c, 1, s->in, x, NULL, y);
            double dt = now() - t0, dc = cpu_now() - c0;
            if (st != SARCO_OK) {
                fprintf(stderr, "%s: %s\n", s->name, sarco_last_error(ctx));
                return 1;
            }
            if (r == 0)
                first_run = dt;
            else if (dt < best) {
                best = dt;
                best_cpu = dc;
            }
        }
        const char *impl = c ? sarco_cpu_conv_impl(c, 1, s->in) : "matmul";
        if (json)
            printf("%s  {\"name\": \"%s\", \"ms\": %.3f, \"cpu_ms\": %.3f, \"gflops\": %.1f, \"first_ms\": %.3f, "
                   "\"impl\": \"%s\"}",
                   first ? "" : ",\n", s->name, best * 1e3, best_cpu * 1e3, 2 * macs / best * 1e-9, first_run * 1e3,
                   impl ? impl : "?");
        else
            printf("%-34s %9.2f ms %8.1f GFLOP/s  cpu %9.2f ms  (first run %.2f ms, %s)\n", s->name, best * 1e3,
                   2 * macs / best * 1e-9, best_cpu * 1e3, first_run * 1e3, impl ? impl : "?");
        first = 0;
        fflush(stdout);
        if (c) be->ops->conv_free(be, c);
        if (l) be->ops->linear_free(be, l);
        be->ops->free(be, x);
        be->ops->free(be, y);
        free(wh);
        free(bh);
    }
    if (json) printf("\n]\n");
    sarco_context_free(ctx);
    return 0;
}
