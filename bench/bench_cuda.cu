/* Times every op of the CUDA backend at the shapes of a MONAI UNETR 96^3 tile, and a whole UNETR
 * forward (random weights, 30 classes), and the measurement ops (exact EDT, volume integration) on a
 * 512x512x300 volume, and prints achieved TFLOP/s and GB/s next to the device's peaks (the EDT's GB/s
 * count the bytes each pass must move: sites read once, f read and written per pass; the envelope
 * scratch traffic comes on top). Without a device (or without libsarco_cuda.so) it prints
 * "SKIP bench_cuda: <reason>".
 *
 *   build-x/bench/bench_cuda [--iters N] [--no-model] [--tf32] [--measure-only]
 *   build-x/bench/bench_cuda --emit-keys IMG FS HIDDEN MLP HEADS IN OUT   (the model's tensor list; no GPU)
 *   build-x/bench/bench_cuda --cpu-model IMG FS HIDDEN MLP HEADS          (load + forward on the CPU; no GPU)
 *
 * Peaks: bandwidth from cudaDevAttrMemoryClockRate x bus width x 2 (DDR/HBM); FP32 from SMs x FP32
 * lanes x 2 x clock. The datasheet numbers (dense, no sparsity), for reference:
 *   GPU              FP32 TFLOP/s  TF32 TFLOP/s  memory GB/s
 *   A100 SXM 80GB        19.5          156          2039
 *   A100 PCIe 80GB       19.5          156          1935
 *   H100 SXM 80GB        66.9          494.7        3350
 *   H100 PCIe 80GB       51.2          378          2000
 *   H100 NVL 94GB        60.0          417          3900
 *   H200 SXM 141GB       66.9          494.7        4800
 * Op timings are host wall time around N launches bracketed by stream syncs (launch costs included),
 * so small ops show the launch-bound floor, not kernel-only time. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern "C" {
#include "lib/core/core.h"
#include "lib/measure/measure.h"
#include "lib/ops/ops.h"
}
#include <omp.h>

#include "kernels/measure_hd.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float urand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 4503599627370496.0 - 1.0);
}

/* ---- device peaks ---------------------------------------------------------------------------- */

typedef struct peaks {
    char name[256];
    int major, minor, sms;
    double clock_ghz, fp32_tflops, tf32_tflops, mem_gbs;
} peaks;

static int device_peaks(int dev, peaks *p) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) return 0;
    snprintf(p->name, sizeof p->name, "%s", prop.name);
    int clk = 0, mclk = 0, bus = 0;
    cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, dev);
    cudaDeviceGetAttribute(&mclk, cudaDevAttrMemoryClockRate, dev);
    cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, dev);
    p->major = prop.major;
    p->minor = prop.minor;
    p->sms = prop.multiProcessorCount;
    p->clock_ghz = clk * 1e-6;
    p->mem_gbs = 2.0 * mclk * 1e3 * (bus / 8.0) * 1e-9;
    /* FP32 lanes and dense TF32 FLOP per clock per SM: GA100 64 / 1024, GH100 128 / 2048 */
    int lanes = p->major == 8 && p->minor == 0 ? 64 : 128;
    int tf32 = p->major == 9 ? 2048 : p->major == 8 && p->minor == 0 ? 1024 : 512;
    p->fp32_tflops = p->sms * lanes * 2.0 * p->clock_ghz * 1e-3;
    p->tf32_tflops = p->sms * tf32 * p->clock_ghz * 1e-3;
    return 1;
}

/* ---- one op timing line ------------------------------------------------------------------------ */

typedef struct bench {
    sarco_context *ctx;
    sarco_backend *be;
    peaks pk;
    int iters, tf32;
    int failed;
} bench;

typedef sarco_status (*op_fn)(bench *b, void *arg);

static void time_op(bench *b, const char *name, op_fn fn, void *arg, double flops, double bytes) {
    sarco_backend *be = b->be;
    sarco_status s = SARCO_OK;
    for (int i = 0; i < 3 && s == SARCO_OK; i++) s = fn(b, arg); /* warm-up: plans, algorithms, arena */
    if (s == SARCO_OK) s = be->ops->sync(be);
    double t0 = now_s();
    for (int i = 0; i < b->iters && s == SARCO_OK; i++) s = fn(b, arg);
    if (s == SARCO_OK) s = be->ops->sync(be);
    double dt = (now_s() - t0) / b->iters;
    if (s != SARCO_OK) {
        printf("%-34s FAILED: %s\n", name, sarco_last_error(b->ctx));
        b->failed = 1;
        return;
    }
    double peak_f = b->tf32 ? b->pk.tf32_tflops : b->pk.fp32_tflops;
    printf("%-34s %9.3f ms", name, dt * 1e3);
    if (flops > 0)
        printf("  %7.2f TFLOP/s (%5.1f%% of %.1f)", flops / dt * 1e-12, 100.0 * flops / dt * 1e-12 / peak_f, peak_f);
    else
        printf("  %34s", "");
    printf("  %7.1f GB/s (%5.1f%% of %.0f)\n", bytes / dt * 1e-9, 100.0 * bytes / dt * 1e-9 / b->pk.mem_gbs,
           b->pk.mem_gbs);
}

static float *dev_rand(bench *b, size_t n) {
    float *h = (float *)malloc(n * sizeof *h);
    void *d = NULL;
    for (size_t i = 0; i < n; i++) h[i] = urand();
    if (!h || b->be->ops->alloc(b->be, n * sizeof(float), &d) != SARCO_OK ||
        b->be->ops->upload(b->be, d, h, n * sizeof(float)) != SARCO_OK) {
        fprintf(stderr, "bench: device buffer of %zu floats: %s\n", n, sarco_last_error(b->ctx));
        exit(1);
    }
    free(h);
    return (float *)d;
}

/* ---- the ops ------------------------------------------------------------------------------------ */

typedef struct conv_arg {
    sarco_conv *c;
    int64_t in[3];
    const float *x, *res;
    float *y;
} conv_arg;

static sarco_status run_conv(bench *b, void *a) {
    conv_arg *c = (conv_arg *)a;
    return b->be->ops->conv_run(b->be, c->c, 1, c->in, c->x, c->res, c->y);
}

static void bench_conv(bench *b, const char *name, int tr, int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t pad,
                       int64_t in, int res, int bias, sarco_act act) {
    sarco_conv_desc d;
    memset(&d, 0, sizeof d);
    d.nsp = 3;
    d.cin = cin;
    d.cout = cout;
    d.groups = 1;
    for (int i = 0; i < 3; i++) {
        d.k[i] = k;
        d.stride[i] = s;
        d.pad[i] = pad;
        d.dil[i] = 1;
    }
    d.has_bias = bias;
    d.act = act;
    d.alpha = 0.01f;
    int64_t in3[3] = {in, in, in}, out[3];
    sarco_conv_out_shape(&d, tr, in3, out);
    int64_t vin = in * in * in, vout = out[0] * out[1] * out[2], kk = k * k * k;
    size_t nw = (size_t)(cin * cout * kk);
    float *w = (float *)malloc(nw * sizeof *w), *bb = (float *)malloc((size_t)cout * sizeof *bb);
    for (size_t i = 0; i < nw; i++) w[i] = urand() / sqrtf((float)(cin * kk));
    for (int64_t i = 0; i < cout; i++) bb[i] = 0.01f * urand();
    conv_arg a;
    memset(&a, 0, sizeof a);
    if (b->be->ops->conv_prepare(b->be, &d, tr, w, bias ? bb : NULL, &a.c) != SARCO_OK) {
        printf("%-34s FAILED: %s\n", name, sarco_last_error(b->ctx));
        b->failed = 1;
        return;
    }
    memcpy(a.in, in3, sizeof in3);
    a.x = dev_rand(b, (size_t)(vin * cin));
    a.y = dev_rand(b, (size_t)(vout * cout));
    a.res = res ? dev_rand(b, (size_t)(vout * cout)) : NULL;
    double flops = 2.0 * (double)(tr ? vin : vout) * (double)cin * (double)cout * (double)kk;
    double bytes = 4.0 * ((double)vin * cin + (double)vout * cout * (res ? 2 : 1) + (double)nw);
    time_op(b, name, run_conv, &a, flops, bytes);
    b->be->ops->conv_free(b->be, a.c);
    b->be->ops->free(b->be, (void *)a.x);
    b->be->ops->free(b->be, a.y);
    b->be->ops->free(b->be, (void *)a.res);
    free(w);
    free(bb);
}

typedef struct lin_arg {
    sarco_linear *l;
    int64_t m;
    const float *x, *res;
    float *y;
} lin_arg;

static sarco_status run_linear(bench *b, void *a) {
    lin_arg *l = (lin_arg *)a;
    return b->be->ops->linear_run(b->be, l->l, l->m, l->x, l->res, l->y);
}

static void bench_linear(bench *b, const char *name, int64_t m, int64_t k, int64_t n, sarco_act act, int res) {
    sarco_linear_desc d = {k, n, 1, act, 0.0f};
    float *w = (float *)malloc((size_t)(k * n) * sizeof *w), *bb = (float *)malloc((size_t)n * sizeof *bb);
    for (int64_t i = 0; i < k * n; i++) w[i] = urand() / sqrtf((float)k);
    for (int64_t i = 0; i < n; i++) bb[i] = 0.01f * urand();
    lin_arg a;
    memset(&a, 0, sizeof a);
    if (b->be->ops->linear_prepare(b->be, &d, w, bb, &a.l) != SARCO_OK) {
        printf("%-34s FAILED: %s\n", name, sarco_last_error(b->ctx));
        b->failed = 1;
        return;
    }
    a.m = m;
    a.x = dev_rand(b, (size_t)(m * k));
    a.y = dev_rand(b, (size_t)(m * n));
    a.res = res ? dev_rand(b, (size_t)(m * n)) : NULL;
    time_op(b, name, run_linear, &a, 2.0 * m * k * n, 4.0 * (m * k + m * n * (res ? 2 : 1) + k * n));
    b->be->ops->linear_free(b->be, a.l);
    b->be->ops->free(b->be, (void *)a.x);
    b->be->ops->free(b->be, a.y);
    b->be->ops->free(b->be, (void *)a.res);
    free(w);
    free(bb);
}

typedef struct gemm_arg {
    sarco_gemm_desc d;
    const float *a, *b;
    float *c;
} gemm_arg;

static sarco_status run_gemm(bench *b, void *a) {
    gemm_arg *g = (gemm_arg *)a;
    return b->be->ops->gemm(b->be, &g->d, g->a, g->b, g->c);
}

typedef struct simple_arg {
    int kind;
    int64_t n1, n2, n3;
    const float *x, *x2, *g, *bt;
    float *y;
    sarco_bcast_desc bd;
    sarco_patch_desc pd;
    sarco_pool_desc pl;
} simple_arg;

static sarco_status run_simple(bench *b, void *arg) {
    simple_arg *a = (simple_arg *)arg;
    sarco_backend *be = b->be;
    switch (a->kind) {
    case 0: return be->ops->layernorm(be, a->n1, a->n2, a->x, a->g, a->bt, 1e-5f, a->y);
    case 1: return be->ops->instnorm(be, 1, a->n1, a->n2, a->x, NULL, NULL, 1e-5f, a->x2, SARCO_ACT_LEAKY_RELU, 0.01f, a->y);
    case 2: return be->ops->softmax(be, a->n1, a->n2, 1, a->x, a->y);
    case 3: return be->ops->act(be, SARCO_ACT_GELU, 0.0f, a->n1, a->x, a->y);
    case 4: return be->ops->binary(be, SARCO_BIN_ADD, &a->bd, a->x, a->x2, a->y);
    case 5: {
        const float *xs[2] = {a->x, a->x2};
        int64_t sizes[2] = {a->n2, a->n2};
        return be->ops->concat(be, 2, xs, sizes, a->n1, 1, a->y);
    }
    case 6: return be->ops->to_cl(be, 1, a->n2, a->n1, a->x, a->y);
    case 7: return be->ops->from_cl(be, 1, a->n2, a->n1, a->x, a->y);
    case 8: return be->ops->patchify(be, &a->pd, a->x, a->y);
    case 9: return be->ops->unpatchify(be, &a->pd, a->x, a->y);
    case 10: {
        int64_t in[3] = {a->n1, a->n1, a->n1};
        return be->ops->pool(be, &a->pl, 1, a->n2, in, a->x, a->y);
    }
    case 11: return be->ops->channel_affine(be, a->n1, a->n2, a->x, a->g, a->bt, SARCO_ACT_RELU, 0.0f, a->y);
    default: return be->ops->copy(be, a->y, a->x, (size_t)a->n1 * sizeof(float));
    }
}

static void bench_simple(bench *b, const char *name, simple_arg *a, size_t nx, size_t ny, double flops, double bytes) {
    a->x = dev_rand(b, nx);
    a->x2 = dev_rand(b, nx);
    a->y = dev_rand(b, ny);
    a->g = dev_rand(b, 4096);
    a->bt = dev_rand(b, 4096);
    time_op(b, name, run_simple, a, flops, bytes);
    b->be->ops->free(b->be, (void *)a->x);
    b->be->ops->free(b->be, (void *)a->x2);
    b->be->ops->free(b->be, a->y);
    b->be->ops->free(b->be, (void *)a->g);
    b->be->ops->free(b->be, (void *)a->bt);
}

static void bench_ops(bench *b) {
    const int64_t S96 = 96 * 96 * 96, L = 216, H = 768, HEADS = 12;
    printf("\n-- convolutions (cuDNN), UNETR 96^3 shapes --\n");
    bench_conv(b, "patch embed 1->768 k16 s16 96^3", 0, 1, 768, 16, 16, 0, 96, 0, 1, SARCO_ACT_NONE);
    bench_conv(b, "conv3 16->16 96^3 +res leaky", 0, 16, 16, 3, 1, 1, 96, 1, 0, SARCO_ACT_LEAKY_RELU);
    bench_conv(b, "conv3 32->16 96^3", 0, 32, 16, 3, 1, 1, 96, 0, 0, SARCO_ACT_NONE);
    bench_conv(b, "conv3 32->32 48^3", 0, 32, 32, 3, 1, 1, 48, 0, 0, SARCO_ACT_NONE);
    bench_conv(b, "conv3 64->64 24^3", 0, 64, 64, 3, 1, 1, 24, 0, 0, SARCO_ACT_NONE);
    bench_conv(b, "conv3 256->128 12^3", 0, 256, 128, 3, 1, 1, 12, 0, 0, SARCO_ACT_NONE);
    bench_conv(b, "conv3 16->16 96^3 bias relu (fused)", 0, 16, 16, 3, 1, 1, 96, 0, 1, SARCO_ACT_RELU);
    bench_conv(b, "conv1 16->30 96^3 bias (out)", 0, 16, 30, 1, 1, 0, 96, 0, 1, SARCO_ACT_NONE);
    bench_conv(b, "deconv2 768->128 6^3->12^3", 1, 768, 128, 2, 2, 0, 6, 0, 0, SARCO_ACT_NONE);
    bench_conv(b, "deconv2 32->16 48^3->96^3", 1, 32, 16, 2, 2, 0, 48, 0, 0, SARCO_ACT_NONE);

    printf("\n-- linear layers and attention GEMMs (cuBLAS), 216 tokens x 768 --\n");
    bench_linear(b, "linear qkv 768->2304", L, H, 3 * H, SARCO_ACT_NONE, 0);
    bench_linear(b, "linear out_proj 768->768 +res", L, H, H, SARCO_ACT_NONE, 1);
    bench_linear(b, "linear mlp1 768->3072 gelu", L, H, 3072, SARCO_ACT_GELU, 0);
    bench_linear(b, "linear mlp2 3072->768 +res", L, 3072, H, SARCO_ACT_NONE, 1);
    {
        gemm_arg g;
        float *qkv = dev_rand(b, (size_t)(L * 3 * H)), *att = dev_rand(b, (size_t)(HEADS * L * L));
        float *ctxo = dev_rand(b, (size_t)(L * H));
        /* scores[h] = Q_h K_h^T / 8: Q_h (i, p) at h*64 + i*2304 + p; K_h^T (p, j) at 768 + h*64 + j*2304 + p */
        sarco_gemm_desc qk = {HEADS, L, L, 64, 64, 3 * H, 1, 64, 1, 3 * H, L * L, L, 0.125f, 0.0f};
        g.d = qk;
        g.a = qkv;
        g.b = qkv + H;
        g.c = att;
        time_op(b, "gemm QK^T 12 x 216x216x64", run_gemm, &g, 2.0 * HEADS * L * L * 64,
                4.0 * (2 * L * H + HEADS * L * L));
        /* ctx[:, h*64:] = P_h V_h: P_h (i, p) at h*L*L + i*L + p; V_h (p, j) at 1536 + h*64 + p*2304 + j */
        sarco_gemm_desc av = {HEADS, L, 64, L, L * L, L, 1, 64, 3 * H, 1, 64, H, 1.0f, 0.0f};
        g.d = av;
        g.a = att;
        g.b = qkv + 2 * H;
        g.c = ctxo;
        time_op(b, "gemm PV 12 x 216x64x216", run_gemm, &g, 2.0 * HEADS * L * L * 64, 4.0 * (HEADS * L * L + 2 * L * H));
        b->be->ops->free(b->be, qkv);
        b->be->ops->free(b->be, att);
        b->be->ops->free(b->be, ctxo);
    }

    printf("\n-- our kernels --\n");
    simple_arg a;
    memset(&a, 0, sizeof a);
    a.kind = 0, a.n1 = L, a.n2 = H;
    bench_simple(b, "layernorm 216x768", &a, (size_t)(L * H), (size_t)(L * H), 0, 8.0 * L * H);
    a.kind = 1, a.n1 = S96, a.n2 = 16;
    bench_simple(b, "instnorm 96^3x16 +res leaky", &a, (size_t)(S96 * 16), (size_t)(S96 * 16), 0, 4.0 * 4 * S96 * 16);
    a.kind = 2, a.n1 = HEADS * L, a.n2 = L;
    bench_simple(b, "softmax 12x216 rows of 216", &a, (size_t)(HEADS * L * L), (size_t)(HEADS * L * L), 0,
                 8.0 * HEADS * L * L);
    a.kind = 3, a.n1 = L * 3072;
    bench_simple(b, "act gelu 216x3072", &a, (size_t)(L * 3072), (size_t)(L * 3072), 0, 8.0 * L * 3072);
    a.kind = 4, a.bd.ndim = 1, a.bd.shape[0] = S96 * 16, a.bd.sa[0] = 1, a.bd.sb[0] = 1;
    bench_simple(b, "binary add 96^3x16", &a, (size_t)(S96 * 16), (size_t)(S96 * 16), 0, 12.0 * S96 * 16);
    a.kind = 5, a.n1 = S96, a.n2 = 16;
    bench_simple(b, "concat 96^3 x (16+16)", &a, (size_t)(S96 * 16), (size_t)(S96 * 32), 0, 16.0 * S96 * 16);
    a.kind = 6, a.n1 = S96, a.n2 = 4;
    bench_simple(b, "to_cl 4x96^3", &a, (size_t)(S96 * 4), (size_t)(S96 * 4), 0, 8.0 * S96 * 4);
    a.kind = 7, a.n1 = S96, a.n2 = 30;
    bench_simple(b, "from_cl 96^3x30", &a, (size_t)(S96 * 30), (size_t)(S96 * 30), 0, 8.0 * S96 * 30);
    a.kind = 8;
    a.pd.nsp = 3, a.pd.n = 1, a.pd.c = 1;
    for (int i = 0; i < 3; i++) a.pd.in[i] = 96, a.pd.p[i] = 16;
    bench_simple(b, "patchify 96^3 p16", &a, (size_t)S96, (size_t)S96, 0, 8.0 * S96);
    a.kind = 9;
    bench_simple(b, "unpatchify 96^3 p16", &a, (size_t)S96, (size_t)S96, 0, 8.0 * S96);
    a.kind = 10, a.n1 = 96, a.n2 = 16;
    a.pl.nsp = 3, a.pl.kind = SARCO_POOL_MAX;
    for (int i = 0; i < 3; i++) a.pl.k[i] = 2, a.pl.stride[i] = 2;
    bench_simple(b, "max pool 2 96^3x16", &a, (size_t)(S96 * 16), (size_t)(S96 * 2), 0, 4.0 * (S96 * 16 + S96 * 2));
    a.kind = 11, a.n1 = S96, a.n2 = 16;
    bench_simple(b, "channel affine relu 96^3x16", &a, (size_t)(S96 * 16), (size_t)(S96 * 16), 0, 8.0 * S96 * 16);
    a.kind = 12, a.n1 = S96 * 16;
    bench_simple(b, "copy 96^3x16 (device memcpy)", &a, (size_t)(S96 * 16), (size_t)(S96 * 16), 0, 8.0 * S96 * 16);
}

/* ---- measurements: exact EDT and volume integration on a 512x512x300 CT-sized volume ----------------- */

typedef struct measure_arg {
    int64_t dims[3];
    double sp[3];
    int axis;          /* edt: -1 = all passes (sarco_edt_sq_on), else that pass alone */
    const uint8_t *sites;
    float *f;
    const uint16_t *labels;
    const float *image;
    sarco_hu_acc *acc;
} measure_arg;

static sarco_status run_edt(bench *b, void *arg) {
    measure_arg *a = (measure_arg *)arg;
    if (a->axis < 0) return sarco_edt_sq_on(b->be, 3, a->dims, a->sp, a->sites, 1, NULL, 0, 1, a->f);
    sarco_edt_desc d;
    memset(&d, 0, sizeof d);
    for (int k = 0; k < 3; k++) d.dims[k] = a->dims[k];
    d.axis = a->axis;
    d.spacing = a->sp[a->axis];
    d.site_bit = a->axis == 2 ? 1 : 0;
    return b->be->ops->edt_axis(b->be, &d, a->axis == 2 ? a->sites : NULL, NULL, a->f);
}

static sarco_status run_stats(bench *b, void *arg) {
    measure_arg *a = (measure_arg *)arg;
    return b->be->ops->label_stats(b->be, a->dims[0] * a->dims[1] * a->dims[2], a->labels, a->image, 4, a->acc);
}

static void *dev_copy(bench *b, const void *host, size_t bytes) {
    void *d = NULL;
    if (b->be->ops->alloc(b->be, bytes, &d) != SARCO_OK || (host && b->be->ops->upload(b->be, d, host, bytes) != SARCO_OK)) {
        fprintf(stderr, "bench: device buffer of %zu bytes: %s\n", bytes, sarco_last_error(b->ctx));
        exit(1);
    }
    return d;
}

/* A thigh-like muscle ring through every slice (radii varying with z), 3 labels by angle, integer HU. */
static void bench_measure(bench *b) {
    measure_arg a;
    memset(&a, 0, sizeof a);
    const int64_t D = 300, H = 512, W = 512, n = D * H * W;
    const double sp[3] = {1.5, 0.78, 0.78};
    a.dims[0] = D, a.dims[1] = H, a.dims[2] = W;
    memcpy(a.sp, sp, sizeof sp);
    uint8_t *mask = (uint8_t *)malloc((size_t)n), *sites = (uint8_t *)malloc((size_t)n);
    uint16_t *lab = (uint16_t *)malloc((size_t)n * 2);
    float *hu = (float *)malloc((size_t)n * 4), *cpu = (float *)malloc((size_t)n * 4), *gpu = (float *)malloc((size_t)n * 4);
    for (int64_t z = 0; z < D; z++) {
        const double s = 1.0 + 0.06 * sin(6.2832 * (double)z / (double)D);
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                const int64_t i = (z * H + y) * W + x;
                const double u = (x - W / 2.0) / (0.44 * W * s), v = (y - H / 2.0) / (0.41 * H * s);
                const double ui = (x - W / 2.0 - 10) / (0.17 * W * s), vi = (y - H / 2.0 + 5) / (0.15 * H * s);
                mask[i] = u * u + v * v <= 1.0 && ui * ui + vi * vi > 1.0;
                sites[i] = !mask[i];
                lab[i] = mask[i] ? (uint16_t)(1 + (int)((atan2(v, u) + 3.1416) / 2.0944) % 3) : 0;
                hu[i] = (float)((int)(urand() * 200.0f) + (mask[i] ? 40 : -100));
            }
    }
    printf("\n-- measurements, 512x512x300 voxels at (1.5, 0.78, 0.78) mm --\n");
    a.sites = (const uint8_t *)dev_copy(b, sites, (size_t)n);
    a.f = (float *)dev_copy(b, NULL, (size_t)n * 4);
    /* bytes each pass must move at least: pass 1 reads the sites and writes f, the others read and write f */
    static const char *names[3] = {"edt pass axis 0 (300, envelope)", "edt pass axis 1 (512, envelope)",
                                   "edt pass axis 2 (512, from sites)"};
    for (int ax = 2; ax >= 0; ax--) {
        a.axis = ax;
        time_op(b, names[ax], run_edt, &a, 0, ax == 2 ? 5.0 * n : 8.0 * n);
    }
    a.axis = -1;
    time_op(b, "edt 3 passes + sqrt (device)", run_edt, &a, 0, 21.0 * n);
    /* the public call, host to host (uploads, passes, download), against the CPU loops */
    const int64_t dims[3] = {D, H, W};
    double t0 = now_s();
    sarco_status s = sarco_edt(b->ctx, 3, dims, sp, mask, gpu);
    double t1 = now_s();
    s = s == SARCO_OK ? sarco_edt(NULL, 3, dims, sp, mask, cpu) : s;
    double t2 = now_s();
    if (s != SARCO_OK) {
        printf("sarco_edt FAILED: %s\n", sarco_last_error(b->ctx));
        b->failed = 1;
    } else {
        int same = memcmp(cpu, gpu, (size_t)n * 4) == 0;
        printf("%-34s %9.3f ms host to host; CPU (%d threads) %.1f ms; results %s\n", "sarco_edt", (t1 - t0) * 1e3,
               omp_get_max_threads(), (t2 - t1) * 1e3, same ? "identical" : "DIFFER");
        b->failed |= !same;
    }
    a.labels = (const uint16_t *)dev_copy(b, lab, (size_t)n * 2);
    a.image = (const float *)dev_copy(b, hu, (size_t)n * 4);
    a.acc = (sarco_hu_acc *)dev_copy(b, NULL, 4 * sizeof(sarco_hu_acc));
    time_op(b, "label_stats 4 labels + HU", run_stats, &a, 0, 6.0 * n);
    sarco_label_measure *mg = NULL, *mc = NULL;
    size_t cg = 0, cc = 0;
    t0 = now_s();
    s = sarco_measure_labels(b->ctx, 3, dims, sp, lab, hu, NULL, 0, &mg, &cg);
    t1 = now_s();
    s = s == SARCO_OK ? sarco_measure_labels(NULL, 3, dims, sp, lab, hu, NULL, 0, &mc, &cc) : s;
    t2 = now_s();
    if (s != SARCO_OK) {
        printf("sarco_measure_labels FAILED: %s\n", sarco_last_error(b->ctx));
        b->failed = 1;
    } else {
        int same = cg == cc && memcmp(mg, mc, cg * sizeof *mg) == 0;
        printf("%-34s %9.3f ms host to host; CPU %.1f ms; results %s\n", "sarco_measure_labels", (t1 - t0) * 1e3,
               (t2 - t1) * 1e3, same ? "identical" : "DIFFER");
        b->failed |= !same;
    }
    sarco_label_measures_free(mg);
    sarco_label_measures_free(mc);
    b->be->ops->free(b->be, (void *)a.sites);
    b->be->ops->free(b->be, a.f);
    b->be->ops->free(b->be, (void *)a.labels);
    b->be->ops->free(b->be, (void *)a.image);
    b->be->ops->free(b->be, a.acc);
    free(mask);
    free(sites);
    free(lab);
    free(hu);
    free(cpu);
    free(gpu);
}

/* ---- a random-weight MONAI UNETR as a safetensors file ------------------------------------------ */

typedef struct unetr_cfg {
    int64_t img, fs, hidden, mlp, heads, in, out;
} unetr_cfg;

typedef struct tensor {
    char name[96];
    int nd;
    int64_t shape[5];
} tensor;

static int add_t(tensor *t, int n, const char *name, int nd, int64_t a, int64_t b2 = 0, int64_t c = 0, int64_t d = 0,
                 int64_t e = 0) {
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].nd = nd;
    int64_t s[5] = {a, b2, c, d, e};
    memcpy(t[n].shape, s, sizeof s);
    return n + 1;
}

/* MONAI UNETR (proj conv, instance norm without affine, res blocks, no qkv bias) tensor list. */
static int unetr_tensors(const unetr_cfg *c, tensor *t) {
    int n = 0;
    char nm[96];
    int64_t L = 1, fs = c->fs, h = c->hidden;
    for (int i = 0; i < 3; i++) L *= c->img / 16;
    n = add_t(t, n, "vit.patch_embedding.position_embeddings", 3, 1, L, h);
    n = add_t(t, n, "vit.patch_embedding.patch_embeddings.weight", 5, h, c->in, 16, 16, 16);
    n = add_t(t, n, "vit.patch_embedding.patch_embeddings.bias", 1, h);
    for (int k = 0; k < 12; k++) {
#define BLK(suffix, nd, ...) (snprintf(nm, sizeof nm, "vit.blocks.%d." suffix, k), n = add_t(t, n, nm, nd, __VA_ARGS__))
        BLK("mlp.linear1.weight", 2, c->mlp, h);
        BLK("mlp.linear1.bias", 1, c->mlp);
        BLK("mlp.linear2.weight", 2, h, c->mlp);
        BLK("mlp.linear2.bias", 1, h);
        BLK("norm1.weight", 1, h);
        BLK("norm1.bias", 1, h);
        BLK("attn.out_proj.weight", 2, h, h);
        BLK("attn.out_proj.bias", 1, h);
        BLK("attn.qkv.weight", 2, 3 * h, h);
        BLK("norm2.weight", 1, h);
        BLK("norm2.bias", 1, h);
#undef BLK
    }
    n = add_t(t, n, "vit.norm.weight", 1, h);
    n = add_t(t, n, "vit.norm.bias", 1, h);
    n = add_t(t, n, "encoder1.layer.conv1.conv.weight", 5, fs, c->in, 3, 3, 3);
    n = add_t(t, n, "encoder1.layer.conv2.conv.weight", 5, fs, fs, 3, 3, 3);
    n = add_t(t, n, "encoder1.layer.conv3.conv.weight", 5, fs, c->in, 1, 1, 1);
    const int64_t pr_out[3] = {2 * fs, 4 * fs, 8 * fs};
    const int pr_layers[3] = {2, 1, 0};
    for (int e = 0; e < 3; e++) {
        int64_t o = pr_out[e];
        snprintf(nm, sizeof nm, "encoder%d.transp_conv_init.conv.weight", e + 2);
        n = add_t(t, n, nm, 5, h, o, 2, 2, 2);
        for (int j = 0; j < pr_layers[e]; j++) {
            snprintf(nm, sizeof nm, "encoder%d.blocks.%d.0.conv.weight", e + 2, j);
            n = add_t(t, n, nm, 5, o, o, 2, 2, 2);
            snprintf(nm, sizeof nm, "encoder%d.blocks.%d.1.conv1.conv.weight", e + 2, j);
            n = add_t(t, n, nm, 5, o, o, 3, 3, 3);
            snprintf(nm, sizeof nm, "encoder%d.blocks.%d.1.conv2.conv.weight", e + 2, j);
            n = add_t(t, n, nm, 5, o, o, 3, 3, 3);
        }
    }
    const int64_t dec_in[4] = {h, 8 * fs, 4 * fs, 2 * fs}, dec_out[4] = {8 * fs, 4 * fs, 2 * fs, fs};
    for (int dd = 0; dd < 4; dd++) {
        int id = 5 - dd;
        int64_t i = dec_in[dd], o = dec_out[dd];
        snprintf(nm, sizeof nm, "decoder%d.transp_conv.conv.weight", id);
        n = add_t(t, n, nm, 5, i, o, 2, 2, 2);
        snprintf(nm, sizeof nm, "decoder%d.conv_block.conv1.conv.weight", id);
        n = add_t(t, n, nm, 5, o, 2 * o, 3, 3, 3);
        snprintf(nm, sizeof nm, "decoder%d.conv_block.conv2.conv.weight", id);
        n = add_t(t, n, nm, 5, o, o, 3, 3, 3);
        snprintf(nm, sizeof nm, "decoder%d.conv_block.conv3.conv.weight", id);
        n = add_t(t, n, nm, 5, o, 2 * o, 1, 1, 1);
    }
    n = add_t(t, n, "out.conv.conv.weight", 5, c->out, fs, 1, 1, 1);
    n = add_t(t, n, "out.conv.conv.bias", 1, c->out);
    return n;
}

static int64_t numel(const tensor *t) {
    int64_t p = 1;
    for (int i = 0; i < t->nd; i++) p *= t->shape[i];
    return p;
}

static int write_unetr(const unetr_cfg *c, const char *path) {
    static tensor t[256];
    int n = unetr_tensors(c, t);
    size_t cap = 1 << 20, len = 0;
    char *hdr = (char *)malloc(cap);
    len += snprintf(hdr + len, cap - len,
                    "{\"__metadata__\":{\"sarco.config\":\"{\\\"arch\\\": \\\"monai.UNETR\\\", \\\"kwargs\\\": "
                    "{\\\"in_channels\\\": %lld, \\\"out_channels\\\": %lld, \\\"img_size\\\": [%lld, %lld, %lld], "
                    "\\\"feature_size\\\": %lld, \\\"hidden_size\\\": %lld, \\\"mlp_dim\\\": %lld, \\\"num_heads\\\": "
                    "%lld}}\"}",
                    (long long)c->in, (long long)c->out, (long long)c->img, (long long)c->img, (long long)c->img,
                    (long long)c->fs, (long long)c->hidden, (long long)c->mlp, (long long)c->heads);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t bytes = numel(&t[i]) * 4;
        len += snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", t[i].name);
        for (int j = 0; j < t[i].nd; j++) len += snprintf(hdr + len, cap - len, "%s%lld", j ? "," : "", (long long)t[i].shape[j]);
        len += snprintf(hdr + len, cap - len, "],\"data_offsets\":[%lld,%lld]}", (long long)off, (long long)(off + bytes));
        off += bytes;
    }
    len += snprintf(hdr + len, cap - len, "}");
    while (len % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, len, f);
    free(hdr);
    for (int i = 0; i < n; i++) {
        int64_t m = numel(&t[i]);
        float *v = (float *)malloc((size_t)m * sizeof *v);
        const char *nm = t[i].name;
        int is_norm = strstr(nm, "norm") != NULL, is_bias = strstr(nm, ".bias") != NULL;
        float scale = t[i].nd >= 2 ? 1.0f / sqrtf((float)(m / t[i].shape[0])) : 0.02f;
        if (strstr(nm, "position_embeddings")) scale = 0.02f;
        for (int64_t j = 0; j < m; j++) v[j] = is_norm ? (is_bias ? 0.0f : 1.0f) : scale * urand();
        fwrite(v, sizeof *v, (size_t)m, f);
        free(v);
    }
    return fclose(f) == 0;
}

/* Multiply-adds x 2 of the UNETR forward at batch 1 (convs, transposed convs, linears, attention). */
static double unetr_flops(const unetr_cfg *c) {
    double v = (double)(c->img * c->img * c->img), L = v / 4096.0, h = (double)c->hidden, fs = (double)c->fs, f = 0;
    f += 2 * L * h * c->in * 4096;                                                 /* patch embedding */
    f += 12 * (2 * L * h * 3 * h + 2 * 2 * L * L * h + 2 * L * h * h + 2 * 2 * L * h * c->mlp); /* blocks */
    f += 2 * v * fs * c->in * 27 + 2 * v * fs * fs * 27 + 2 * v * fs * c->in;     /* encoder1 */
    const double pr_out[3] = {2 * fs, 4 * fs, 8 * fs};
    const int pr_layers[3] = {2, 1, 0};
    for (int e = 0; e < 3; e++) {
        double o = pr_out[e], vin = L; /* 6^3 tokens -> 12^3 ... */
        f += 2 * vin * h * o * 8;
        vin *= 8;
        for (int j = 0; j < pr_layers[e]; j++) {
            f += 2 * vin * o * o * 8;
            vin *= 8;
            f += 2 * 2 * vin * o * o * 27;
        }
    }
    const double dec_in[4] = {h, 8 * fs, 4 * fs, 2 * fs}, dec_out[4] = {8 * fs, 4 * fs, 2 * fs, fs};
    double vin = L;
    for (int d = 0; d < 4; d++) {
        double i = dec_in[d], o = dec_out[d];
        f += 2 * vin * i * o * 8;
        vin *= 8;
        f += 2 * vin * o * 2 * o * 27 + 2 * vin * o * o * 27 + 2 * vin * o * 2 * o;
    }
    f += 2 * v * fs * c->out;
    return f;
}

static int model_forward(sarco_context *ctx, const unetr_cfg *c, int iters, double *best_ms, double *mean_ms) {
    char path[] = "/tmp/sarco_bench_unetr_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    close(fd);
    int ok = write_unetr(c, path);
    sarco_model *m = NULL;
    if (ok && sarco_model_load(ctx, path, &m) != SARCO_OK) {
        printf("model load: %s\n", sarco_last_error(ctx));
        ok = 0;
    }
    unlink(path);
    if (!ok) return 0;
    int64_t in[5] = {1, c->in, c->img, c->img, c->img}, out[5];
    if (sarco_model_output_shape(ctx, m, 5, in, out) != SARCO_OK) {
        printf("output shape: %s\n", sarco_last_error(ctx));
        sarco_model_free(m);
        return 0;
    }
    size_t nx = (size_t)(c->in * c->img * c->img * c->img), ny = (size_t)(out[0] * out[1] * out[2] * out[3] * out[4]);
    float *x = (float *)malloc(nx * sizeof *x), *y = (float *)malloc(ny * sizeof *y);
    for (size_t i = 0; i < nx; i++) x[i] = 0.5f + 0.5f * urand();
    *best_ms = 1e30;
    double sum = 0;
    for (int i = 0; i < iters + 1 && ok; i++) { /* the first run makes the plans */
        double t0 = now_s();
        if (sarco_model_forward(ctx, m, 5, in, x, y, ny) != SARCO_OK) {
            printf("forward: %s\n", sarco_last_error(ctx));
            ok = 0;
            break;
        }
        double ms = (now_s() - t0) * 1e3;
        if (i == 0) {
            printf("first forward (plans, algorithms, workspace): %.1f ms\n", ms);
            continue;
        }
        sum += ms;
        if (ms < *best_ms) *best_ms = ms;
    }
    double finite = 0;
    for (size_t i = 0; ok && i < ny; i++) finite += isfinite(y[i]) ? 1 : 0;
    if (ok && finite != (double)ny) {
        printf("forward: %.0f of %zu outputs are not finite\n", (double)ny - finite, ny);
        ok = 0;
    }
    *mean_ms = iters > 0 ? sum / iters : 0;
    free(x);
    free(y);
    sarco_model_free(m);
    return ok;
}

static int parse_cfg(char **argv, int n, unetr_cfg *c) {
    int64_t v[7] = {96, 16, 768, 3072, 12, 1, 30};
    for (int i = 0; i < n; i++) v[i] = atoll(argv[i]);
    *c = (unetr_cfg){v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
    return c->img >= 16 && c->img % 16 == 0 && c->fs > 0 && c->hidden % c->heads == 0;
}

/* SARCO_CUDA_LIBRARY, else the plugin beside this program's build dir, else lib/. */
static void point_at_plugin(void) {
    if (getenv("SARCO_CUDA_LIBRARY")) return;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 40);
    if (n <= 0) return;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash) return;
    *slash = '\0';
    slash = strrchr(self, '/'); /* $(BUILD)/bench -> $(BUILD) */
    if (slash) {
        strcpy(slash, "/libsarco_cuda.so");
        if (access(self, R_OK) == 0) {
            setenv("SARCO_CUDA_LIBRARY", self, 1);
            return;
        }
    }
    if (access("lib/libsarco_cuda.so", R_OK) == 0) setenv("SARCO_CUDA_LIBRARY", "lib/libsarco_cuda.so", 1);
}

int main(int argc, char **argv) {
    int iters = 20, want_model = 1, tf32 = 0, want_ops = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--emit-keys")) {
            unetr_cfg c;
            if (!parse_cfg(argv + i + 1, argc - i - 1 < 7 ? argc - i - 1 : 7, &c)) return 2;
            static tensor t[256];
            int n = unetr_tensors(&c, t);
            for (int k = 0; k < n; k++) {
                printf("%s", t[k].name);
                for (int j = 0; j < t[k].nd; j++) printf(" %lld", (long long)t[k].shape[j]);
                printf("\n");
            }
            return 0;
        }
        if (!strcmp(argv[i], "--cpu-model")) {
            unetr_cfg c;
            if (!parse_cfg(argv + i + 1, argc - i - 1 < 5 ? argc - i - 1 : 5, &c)) return 2;
            c.in = 1, c.out = 3;
            sarco_context_options o;
            sarco_context_options_init(&o);
            o.backend = SARCO_BACKEND_CPU;
            sarco_context *ctx;
            if (sarco_context_create(&o, &ctx) != SARCO_OK) return 1;
            double best, mean;
            int ok = model_forward(ctx, &c, 1, &best, &mean);
            printf("cpu UNETR img %lld hidden %lld: %s, %.1f ms, %.3f GFLOP\n", (long long)c.img, (long long)c.hidden,
                   ok ? "ok" : "FAILED", best, unetr_flops(&c) * 1e-9);
            sarco_context_free(ctx);
            return ok ? 0 : 1;
        }
        if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-model")) want_model = 0;
        else if (!strcmp(argv[i], "--measure-only")) want_ops = want_model = 0;
        else if (!strcmp(argv[i], "--tf32")) tf32 = 1;
    }
    if (iters < 1) iters = 1;
    point_at_plugin();
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CUDA;
    o.precision = tf32 ? SARCO_PRECISION_TF32 : SARCO_PRECISION_FP32;
    sarco_context *ctx = NULL;
    char msg[1024];
    if (sarco_context_create_ex(&o, &ctx, msg, sizeof msg) != SARCO_OK) {
        printf("SKIP bench_cuda: %s\n", msg);
        return 0;
    }
    bench b;
    memset(&b, 0, sizeof b);
    b.ctx = ctx;
    b.be = ctx->be;
    b.iters = iters;
    b.tf32 = tf32;
    if (!device_peaks(o.device, &b.pk)) {
        printf("SKIP bench_cuda: cudaGetDeviceProperties failed\n");
        sarco_context_free(ctx);
        return 0;
    }
    printf("device %d: %s, sm_%d%d, %d SMs at %.2f GHz\n", o.device, b.pk.name, b.pk.major, b.pk.minor, b.pk.sms,
           b.pk.clock_ghz);
    printf("peaks from the device's attributes: FP32 %.1f TFLOP/s, TF32 (dense) %.1f TFLOP/s, memory %.0f GB/s\n",
           b.pk.fp32_tflops, b.pk.tf32_tflops, b.pk.mem_gbs);
    printf("precision: %s; %d timed runs per op\n", tf32 ? "TF32 (fast mode)" : "FP32 (exact mode)", iters);
    if (want_ops) bench_ops(&b);
    bench_measure(&b);
    if (want_model) {
        unetr_cfg c = {96, 16, 768, 3072, 12, 1, 30};
        double best, mean, fl = unetr_flops(&c);
        printf("\n-- whole UNETR forward, 1x1x96^3 -> 1x30x96^3, random weights (%.1f GFLOP) --\n", fl * 1e-9);
        if (model_forward(ctx, &c, 5, &best, &mean)) {
            double peak = tf32 ? b.pk.tf32_tflops : b.pk.fp32_tflops;
            printf("UNETR forward (host in, host out)  best %.2f ms, mean %.2f ms, %.2f TFLOP/s (%.1f%% of %.1f)\n",
                   best, mean, fl / (best * 1e-3) * 1e-12, 100.0 * fl / (best * 1e-3) * 1e-12 / peak, peak);
        } else {
            b.failed = 1;
        }
    }
    sarco_context_free(ctx);
    return b.failed ? 1 : 0;
}
