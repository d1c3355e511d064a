/* One image classifier on the CPU backend: load time, first forward (primitive creation included),
 * best of N forwards.
 *
 *   bench_classifier MODEL.safetensors N H W [repeats] [--input x.bin] [--output y.bin]
 *
 * MODEL: any libsarco classifier file (bench/bench_classifier.py writes torchvision ones with random
 * weights and compares against torchvision). --input: float32 (N, C, H, W) (default: seeded noise);
 * --output: where to write the logits (N, classes) as float32. Threads: SARCO_THREADS (default: all). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sarco/sarco.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int die(sarco_context *ctx, const char *what, sarco_status s) {
    fprintf(stderr, "bench_classifier: %s: %s: %s\n", what, sarco_status_string(s), ctx ? sarco_last_error(ctx) : "");
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *in_path = NULL, *out_path = NULL;
    long pos[4] = {0, 0, 0, 3};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--input") == 0 && i + 1 < argc)
            in_path = argv[++i];
        else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc)
            out_path = argv[++i];
        else if (!model_path)
            model_path = argv[i];
        else if (npos < 4)
            pos[npos++] = atol(argv[i]);
    }
    if (!model_path || npos < 3 || pos[0] < 1 || pos[1] < 1 || pos[2] < 1 || pos[3] < 1) {
        fprintf(stderr, "usage: bench_classifier MODEL.safetensors N H W [repeats] [--input x.bin] [--output y.bin]\n");
        return 2;
    }
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    const char *th = getenv("SARCO_THREADS");
    o.threads = th ? atoi(th) : 0;
    sarco_context *ctx = NULL;
    char msg[512];
    sarco_status s = sarco_context_create_ex(&o, &ctx, msg, sizeof msg);
    if (s != SARCO_OK) {
        fprintf(stderr, "bench_classifier: context: %s\n", msg);
        return 1;
    }
    double t0 = now_ms();
    sarco_model *m = NULL;
    if ((s = sarco_model_load(ctx, model_path, &m)) != SARCO_OK) return die(ctx, model_path, s);
    const double load_ms = now_ms() - t0;
    int64_t in[4] = {pos[0], 3, pos[1], pos[2]}, out[4];
    if ((s = sarco_model_output_shape(ctx, m, 4, in, out)) != SARCO_OK) return die(ctx, "output shape", s);
    const size_t nin = (size_t)(in[0] * in[1] * in[2] * in[3]), nout = (size_t)(out[0] * out[1]);
    float *x = malloc(nin * sizeof(float)), *y = malloc(nout * sizeof(float));
    if (!x || !y) return die(ctx, "host buffers", SARCO_ERR_OUT_OF_MEMORY);
    if (in_path) {
        FILE *f = fopen(in_path, "rb");
        if (!f || fread(x, sizeof(float), nin, f) != nin) {
            fprintf(stderr, "bench_classifier: cannot read %zu floats from %s\n", nin, in_path);
            return 1;
        }
        fclose(f);
    } else {
        uint64_t r = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < nin; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            x[i] = (float)((r >> 40) * (1.0 / (1 << 24)));
        }
    }
    t0 = now_ms();
    if ((s = sarco_model_forward(ctx, m, 4, in, x, y, nout)) != SARCO_OK) return die(ctx, "forward", s);
    const double first_ms = now_ms() - t0;
    double best = 1e300;
    for (long r = 0; r < pos[3]; r++) {
        t0 = now_ms();
        if ((s = sarco_model_forward(ctx, m, 4, in, x, y, nout)) != SARCO_OK) return die(ctx, "forward", s);
        const double ms = now_ms() - t0;
        if (ms < best) best = ms;
    }
    if (out_path) {
        FILE *f = fopen(out_path, "wb");
        if (!f || fwrite(y, sizeof(float), nout, f) != nout || fclose(f) != 0) {
            fprintf(stderr, "bench_classifier: cannot write %s\n", out_path);
            return 1;
        }
    }
    printf("%s N %lld %lldx%lld, cpu, threads %s: load %.0f ms, first forward %.0f ms, best %.1f ms of %ld\n",
           sarco_model_arch(m), (long long)in[0], (long long)in[2], (long long)in[3], th ? th : "all", load_ms,
           first_ms, best, pos[3]);
    printf("best_ms=%.3f\n", best);
    free(x);
    free(y);
    sarco_model_free(m);
    sarco_context_free(ctx);
    return 0;
}
