/* One 96^3 tile through monai.UNETR on the CPU backend: load time, first forward (primitive
 * creation included), best of N forwards, peak RSS.
 *
 *   bench_unetr MODEL.safetensors [repeats] [--input x.bin] [--output y.bin]
 *
 * MODEL: a libsarco UNETR file; bench/bench_unetr_torch.py makes one with random weights (in 1,
 * out 30, feature 16, hidden 768, mlp 3072, heads 12, img 96) and compares against PyTorch+MONAI.
 * --input: a float32 (1, C, D, H, W) input (default: seeded uniform noise); --output: where to
 * write the last forward's float32 output. Threads: SARCO_THREADS (default: all cores). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sarco/sarco.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* VmHWM of this process image: ru_maxrss would also count a parent's pages from before the exec */
static double peak_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kib) == 1) break;
    if (f) fclose(f);
    if (kib < 0) {
        struct rusage u;
        getrusage(RUSAGE_SELF, &u);
        kib = (double)u.ru_maxrss;
    }
    return kib / 1024.0;
}

static int die(sarco_context *ctx, const char *what, sarco_status s) {
    fprintf(stderr, "bench_unetr: %s: %s: %s\n", what, sarco_status_string(s), ctx ? sarco_last_error(ctx) : "");
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *in_path = NULL, *out_path = NULL;
    int repeats = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--input") == 0 && i + 1 < argc)
            in_path = argv[++i];
        else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc)
            out_path = argv[++i];
        else if (!model_path)
            model_path = argv[i];
        else
            repeats = atoi(argv[i]);
    }
    if (!model_path || repeats < 1) {
        fprintf(stderr, "usage: bench_unetr MODEL.safetensors [repeats] [--input x.bin] [--output y.bin]\n");
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
        fprintf(stderr, "bench_unetr: context: %s\n", msg);
        return 1;
    }
    double t0 = now_ms();
    sarco_model *m = NULL;
    if ((s = sarco_model_load(ctx, model_path, &m)) != SARCO_OK) return die(ctx, model_path, s);
    const double load_ms = now_ms() - t0;

    /* the thigh model's tile: one channel at 96^3 (another model says what it expects and stops) */
    int64_t in[5] = {1, 1, 96, 96, 96}, out[5];
    if ((s = sarco_model_output_shape(ctx, m, 5, in, out)) != SARCO_OK) return die(ctx, "output shape", s);
    const size_t nin = (size_t)(in[0] * in[1] * in[2] * in[3] * in[4]);
    const size_t nout = (size_t)(out[0] * out[1] * out[2] * out[3] * out[4]);
    float *x = malloc(nin * sizeof(float)), *y = malloc(nout * sizeof(float));
    if (!x || !y) return die(ctx, "host buffers", SARCO_ERR_OUT_OF_MEMORY);
    if (in_path) {
        FILE *f = fopen(in_path, "rb");
        if (!f || fread(x, sizeof(float), nin, f) != nin) {
            fprintf(stderr, "bench_unetr: cannot read %zu floats from %s\n", nin, in_path);
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
    if ((s = sarco_model_forward(ctx, m, 5, in, x, y, nout)) != SARCO_OK) return die(ctx, "forward", s);
    const double first_ms = now_ms() - t0;
    double best = 1e300, sum = 0;
    for (int r = 0; r < repeats; r++) {
        t0 = now_ms();
        if ((s = sarco_model_forward(ctx, m, 5, in, x, y, nout)) != SARCO_OK) return die(ctx, "forward", s);
        const double ms = now_ms() - t0;
        sum += ms;
        if (ms < best) best = ms;
    }
    if (out_path) {
        FILE *f = fopen(out_path, "wb");
        if (!f || fwrite(y, sizeof(float), nout, f) != nout || fclose(f) != 0) {
            fprintf(stderr, "bench_unetr: cannot write %s\n", out_path);
            return 1;
        }
    }
    printf("unetr %lldx%lldx%lld in %lld out %lld, cpu, threads %s: load %.0f ms, first forward %.0f ms, "
           "best %.1f ms (mean %.1f over %d), peak RSS %.0f MiB\n",
           (long long)in[2], (long long)in[3], (long long)in[4], (long long)in[1], (long long)out[1],
           th ? th : "all", load_ms, first_ms, best, sum / repeats, repeats, peak_rss_mib());
    printf("best_ms=%.3f peak_rss_mib=%.1f\n", best, peak_rss_mib());
    free(x);
    free(y);
    sarco_model_free(m);
    sarco_context_free(ctx);
    return 0;
}
