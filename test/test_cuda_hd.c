/* SARCO_HD code that only the CUDA backend runs, checked on the CPU:
 *   - kernels/conv_hd.h: the weight reorder the plugin hands cuDNN and the direct conv/deconv kernel
 *     body (the fallback when cuDNN has no algorithm), against the CPU backend's conv and deconv
 *     over groups, strides, dilations, output padding, 2-D and 3-D;
 *   - lib/cuda/gemm_map.h: strided batched GEMMs with any row/column strides mapped to one column-major
 *     cuBLAS call, run through a model of cublasSgemmStridedBatched that also enforces cuBLAS's
 *     leading-dimension rules, against the row-major definition, on random layouts;
 *   - kernels/norm_hd.h's Welford moments merged in the order the GPU reduces them (per-thread
 *     pushes, warp shuffle tree, then warps and chunks in sequence), against two-pass double
 *     statistics, on plain data and on data with mean 1e5 and std 1 where naive float sums fail;
 *   - lib/cuda/dnn_status.h: cuDNN 9 status categories, only NOT_SUPPORTED's may fall back;
 *   - kernels/softmax.cu's warp-per-row softmax: 32 lanes' partials merged by the xor-shuffle tree, against
 *     the one-lane line the CPU runs (sums to 1, NaN and inf rows, logits of 1e4);
 *   - kernels/measure.cu's fastest-axis EDT tiles: lines staged transposed (sarco_edt_tile_index) and run
 *     with the tile's pitch give the same bits as the lines run in place. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/conv_hd.h"
#include "kernels/edt_hd.h"
#include "kernels/norm_hd.h"
#include "kernels/softmax_hd.h"
#include "lib/cuda/dnn_status.h"
#include "lib/cuda/gemm_map.h"

static uint64_t g_rng = 0x243F6A8885A308D3ull;
static double urand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* ---- conv ------------------------------------------------------------------------------------ */

static sarco_conv_desc cdesc(int nsp, int64_t cin, int64_t cout, int64_t groups, int64_t k0, int64_t k1, int64_t k2,
                             int64_t s, int64_t p, int64_t dil, int64_t op) {
    sarco_conv_desc d;
    memset(&d, 0, sizeof d);
    d.nsp = nsp;
    d.cin = cin;
    d.cout = cout;
    d.groups = groups;
    const int64_t k[3] = {k0, k1, k2};
    for (int i = 0; i < nsp; i++) {
        d.k[i] = k[i];
        d.stride[i] = s + i % 2; /* anisotropic: s, s+1, s */
        d.pad[i] = p;
        d.dil[i] = dil;
        d.out_pad[i] = op;
    }
    d.has_bias = 1;
    d.act = SARCO_ACT_NONE;
    return d;
}

static void conv_case(sarco_backend *cpu, sarco_conv_desc d, int tr, int64_t n, const int64_t *in) {
    int64_t out[3] = {1, 1, 1}, S = 1, O = 1, ks = 1;
    assert_true(sarco_conv_out_shape(&d, tr, in, out));
    for (int i = 0; i < d.nsp; i++) {
        S *= in[i];
        O *= out[i];
        ks *= d.k[i];
    }
    int64_t K = tr ? d.cin : d.cout, Cg = (tr ? d.cout : d.cin) / d.groups;
    size_t nw = (size_t)(K * Cg * ks), nx = (size_t)(n * S * d.cin), ny = (size_t)(n * O * d.cout);
    float *w = malloc(nw * sizeof *w), *wr = malloc(nw * sizeof *wr), *b = malloc((size_t)d.cout * sizeof *b);
    float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y), *got = malloc(ny * sizeof *got);
    for (size_t i = 0; i < nw; i++) w[i] = (float)urand();
    for (int64_t i = 0; i < d.cout; i++) b[i] = (float)urand();
    for (size_t i = 0; i < nx; i++) x[i] = (float)urand();

    /* the CPU backend: PyTorch weights, channels-last data (host memory, so pointers pass as they are) */
    sarco_conv *c = NULL;
    if (cpu->ops->conv_prepare(cpu, &d, tr, w, b, &c) != SARCO_OK) fail_msg("cpu conv_prepare (%s cin %lld cout %lld g %lld): %s", tr ? "deconv" : "conv", (long long)d.cin, (long long)d.cout, (long long)d.groups, sarco_last_error(cpu->ctx));
    if (cpu->ops->conv_run(cpu, c, n, in, x, NULL, y) != SARCO_OK) fail_msg("cpu conv_run: %s", sarco_last_error(cpu->ctx));
    cpu->ops->conv_free(cpu, c);

    /* the CUDA fallback's arithmetic: reordered weights, one output element at a time */
    sarco_hd_conv_reorder(w, K, Cg, ks, wr);
    double err = 0, ref = 0;
    for (int64_t s = 0; s < n; s++)
        for (int64_t q = 0; q < O; q++) {
            int64_t o[3], t = q;
            for (int j = d.nsp - 1; j >= 0; j--) {
                o[j] = t % out[j];
                t /= out[j];
            }
            for (int64_t co = 0; co < d.cout; co++) {
                size_t i = (size_t)((s * O + q) * d.cout + co);
                got[i] = sarco_hd_conv1(&d, tr, in, x + s * S * d.cin, wr, o, co) + b[co];
                err += ((double)got[i] - y[i]) * ((double)got[i] - y[i]);
                ref += (double)y[i] * y[i];
            }
        }
    if (!(err / ref < 1e-11))
        fail_msg("%s nsp %d cin %lld cout %lld groups %lld: nMSE %.3g against the CPU backend", tr ? "deconv" : "conv",
                 d.nsp, (long long)d.cin, (long long)d.cout, (long long)d.groups, err / ref);
    free(w);
    free(wr);
    free(b);
    free(x);
    free(y);
    free(got);
}

static void test_conv_direct(void **state) {
    (void)state;
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CPU;
    sarco_context *ctx = NULL;
    assert_int_equal(sarco_context_create(&o, &ctx), SARCO_OK);
    sarco_backend *cpu = ctx->be;
    const int64_t in3[3] = {7, 6, 5}, in2[3] = {9, 8, 0};
    conv_case(cpu, cdesc(3, 3, 5, 1, 3, 3, 3, 1, 1, 1, 0), 0, 2, in3);   /* 3x3x3, batch 2 */
    conv_case(cpu, cdesc(3, 4, 6, 2, 3, 2, 3, 1, 1, 2, 0), 0, 1, in3);   /* groups, dilation, stride 1/2 */
    conv_case(cpu, cdesc(2, 6, 9, 3, 2, 4, 0, 2, 1, 1, 0), 0, 1, in2);   /* 2-D, even kernel, groups 3 */
    conv_case(cpu, cdesc(2, 8, 8, 8, 3, 3, 0, 1, 1, 1, 0), 0, 1, in2);   /* depthwise */
    conv_case(cpu, cdesc(3, 6, 4, 1, 2, 2, 2, 2, 0, 1, 0), 1, 2, in3);   /* UNETR transp conv k2 s2 */
    conv_case(cpu, cdesc(3, 5, 3, 1, 3, 3, 3, 1, 1, 1, 0), 1, 1, in3);   /* deconv k3 s1 p1 */
    conv_case(cpu, cdesc(2, 4, 6, 2, 3, 3, 0, 2, 1, 1, 1), 1, 1, in2);   /* groups, out_pad 1 */
    conv_case(cpu, cdesc(2, 3, 4, 1, 3, 2, 0, 2, 0, 2, 1), 1, 1, in2);   /* dilation 2, strides 2 and 3, out_pad 1 */
    sarco_context_free(ctx);
}

/* ---- moments merged as the GPU merges them ------------------------------------------------------ */

/* Per-thread Welford over a strided slice, warp trees (shfl_down order) over 32 lanes, then the
 * warps' results in sequence (block_moments in kernels/norm.cu); chunks then merged in order. */
static sarco_hd_moments gpu_like(const float *x, int64_t n, int threads, int chunks) {
    sarco_hd_moments total;
    sarco_hd_moments_init(&total);
    int64_t per = (n + chunks - 1) / chunks;
    sarco_hd_moments *m = malloc((size_t)threads * sizeof *m);
    for (int ch = 0; ch < chunks; ch++) {
        int64_t r0 = ch * per, r1 = r0 + per < n ? r0 + per : n;
        for (int t = 0; t < threads; t++) {
            sarco_hd_moments_init(&m[t]);
            for (int64_t i = r0 + t; i < r1; i += threads) sarco_hd_moments_push(&m[t], x[i]);
        }
        for (int w = 0; w < threads / 32; w++)
            for (int off = 16; off > 0; off >>= 1)
                for (int lane = 0; lane + off < 32; lane++) /* lanes read the pre-step values of lane + off */
                    sarco_hd_moments_merge(&m[w * 32 + lane], &m[w * 32 + lane + off]);
        sarco_hd_moments blk = m[0];
        for (int w = 1; w < threads / 32; w++) sarco_hd_moments_merge(&blk, &m[w * 32]);
        sarco_hd_moments_merge(&total, &blk);
    }
    free(m);
    return total;
}

static void moments_case(int64_t n, double mean, double std, int threads, int chunks, double tol_mean, double tol_var) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(mean + std * urand() * 1.7320508);
    double m, v;
    sarco_hd_mean_var(x, n, 1, &m, &v);
    sarco_hd_moments g = gpu_like(x, n, threads, chunks);
    assert_true(g.n == (float)n);
    double em = fabs(g.mean - m) / (std > 0 ? std : 1), ev = fabs(sarco_hd_moments_var(&g) - v) / (v > 0 ? v : 1);
    if (!(em < tol_mean && ev < tol_var))
        fail_msg("n %lld mean %g std %g: mean off by %.3g std, var off by %.3g (relative)", (long long)n, mean, std, em,
                 ev);
    free(x);
}

static void test_moments_tree(void **state) {
    (void)state;
    /* the shfl_down tree with a lane reading its partner's pre-step value needs the merge to be order-safe */
    moments_case(768, 0.0, 1.0, 256, 1, 1e-6, 1e-5);          /* a layernorm row */
    moments_case(1000003, 0.3, 2.0, 256, 37, 1e-5, 1e-5);     /* an instnorm channel, odd size, 37 chunks */
    moments_case(96 * 96 * 96, 1e5, 1.0, 256, 1024, 2e-2, 2e-2); /* mean 1e5: float holds it to ~4e-3 */
    moments_case(5, 3.0, 0.5, 256, 1, 1e-6, 1e-5);            /* fewer values than threads: empty threads */
    moments_case(64, 7.0, 0.0, 64, 3, 1e-6, 1e-5);            /* constant data: variance exactly 0 */
    /* the merge of empties, and of one value into empty */
    sarco_hd_moments a, b;
    sarco_hd_moments_init(&a);
    sarco_hd_moments_init(&b);
    sarco_hd_moments_merge(&a, &b);
    assert_true(a.n == 0.0f && sarco_hd_moments_var(&a) == 0.0f);
    sarco_hd_moments_push(&b, 4.0f);
    sarco_hd_moments_merge(&a, &b);
    assert_true(a.n == 1.0f && a.mean == 4.0f && a.m2 == 0.0f);
    assert_true(sarco_hd_rstd(-1e-9f, 1e-5f) == 1.0f / sqrtf(1e-5f)); /* var clamped at 0 */
}

/* ---- cuBLAS operand mapping --------------------------------------------------------------------- */

/* cublasSgemmStridedBatched's column-major semantics, with its argument checks. */
static int model_sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, double alpha, const double *A, int64_t lda,
                       int64_t sa, const double *B, int64_t ldb, int64_t sb, double beta, double *C, int64_t ldc,
                       int64_t sc, int64_t batch) {
    if (lda < (ta ? k : m) || lda < 1 || ldb < (tb ? n : k) || ldb < 1 || ldc < m || ldc < 1) return 0;
    for (int64_t bt = 0; bt < batch; bt++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0;
                for (int64_t p = 0; p < k; p++)
                    acc += A[bt * sa + (ta ? p + i * lda : i + p * lda)] * B[bt * sb + (tb ? j + p * ldb : p + j * ldb)];
                double *c = &C[bt * sc + i + j * ldc];
                *c = alpha * acc + (beta != 0 ? beta * *c : 0);
            }
    return 1;
}

static int64_t pick(const int64_t *v, int n) { return v[(int)((urand() + 1) * 0.5 * n) % n]; }

/* Random operand layout (r x c): row-major or column-major, padded leading dim, batch stride. */
static void layout(int64_t r, int64_t c, int64_t *rs, int64_t *cs, int64_t *bs) {
    const int64_t pad[3] = {0, 0, 2}, extra[2] = {0, 3};
    if (urand() < 0) {
        *cs = 1;
        *rs = c + pick(pad, 3);
        *bs = *rs * r + pick(extra, 2);
    } else {
        *rs = 1;
        *cs = r + pick(pad, 3);
        *bs = *cs * c + pick(extra, 2);
    }
}

static void test_gemm_map(void **state) {
    (void)state;
    const int64_t bs_[3] = {1, 2, 3}, ms[4] = {1, 2, 3, 5}, ns[3] = {1, 2, 4}, ks[3] = {1, 3, 4};
    const double betas[3] = {0.0, 1.0, 0.5};
    for (int trial = 0; trial < 500; trial++) {
        sarco_gemm_desc d;
        memset(&d, 0, sizeof d);
        d.batch = pick(bs_, 3), d.m = pick(ms, 4), d.n = pick(ns, 3), d.k = pick(ks, 3);
        layout(d.m, d.k, &d.a_rs, &d.a_cs, &d.a_bs);
        layout(d.k, d.n, &d.b_rs, &d.b_cs, &d.b_bs);
        if (urand() < -0.6) d.b_bs = 0; /* one B for the whole batch */
        d.c_rs = d.n + (urand() < 0 ? 1 : 0);
        d.c_bs = d.c_rs * d.m + (urand() < 0 ? 2 : 0);
        d.alpha = 0.75f;
        d.beta = (float)betas[trial % 3];
        size_t na = (size_t)(d.a_bs * d.batch + d.a_rs * d.m + d.a_cs * d.k + 8);
        size_t nb = (size_t)(d.b_bs * d.batch + d.b_rs * d.k + d.b_cs * d.n + 8);
        size_t nc = (size_t)(d.c_bs * d.batch + d.c_rs * d.m + 8);
        double *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = malloc(nc * sizeof *C),
               *R = malloc(nc * sizeof *R);
        for (size_t i = 0; i < na; i++) A[i] = urand();
        for (size_t i = 0; i < nb; i++) B[i] = urand();
        for (size_t i = 0; i < nc; i++) C[i] = R[i] = urand();
        for (int64_t bt = 0; bt < d.batch; bt++) /* the definition in ops.h, row-major */
            for (int64_t i = 0; i < d.m; i++)
                for (int64_t j = 0; j < d.n; j++) {
                    double acc = 0;
                    for (int64_t p = 0; p < d.k; p++)
                        acc += A[bt * d.a_bs + i * d.a_rs + p * d.a_cs] * B[bt * d.b_bs + p * d.b_rs + j * d.b_cs];
                    double *r = &R[bt * d.c_bs + i * d.c_rs + j];
                    *r = d.alpha * acc + d.beta * *r;
                }
        sarco_gemm_map g = {0, 0, 0, 0, 0, 0, 0, 0};
        assert_true(sarco_gemm_map_desc(&d, &g));
        if (!model_sgemm(g.ta, g.tb, g.m, g.n, g.k, d.alpha, B, g.lda, d.b_bs, A, g.ldb, d.a_bs, d.beta, C, g.ldc,
                         d.c_bs, d.batch))
            fail_msg("trial %d: cuBLAS would reject lda %lld ldb %lld ldc %lld", trial, (long long)g.lda,
                     (long long)g.ldb, (long long)g.ldc);
        for (size_t i = 0; i < nc; i++)
            if (fabs(C[i] - R[i]) > 1e-12) fail_msg("trial %d: element %zu is %g, want %g", trial, i, C[i], R[i]);
        free(A);
        free(B);
        free(C);
        free(R);
    }
    /* neither stride of A is 1: refused (INVALID_ARGUMENT in the backend) */
    sarco_gemm_desc bad = {1, 2, 2, 2, 0, 2, 3, 0, 2, 1, 0, 2, 1, 0};
    sarco_gemm_map g = {0, 0, 0, 0, 0, 0, 0, 0};
    assert_false(sarco_gemm_map_desc(&bad, &g));
    /* the linear layer's fixed call: y (M, N) = x (M, K) W (N, K)^T as Sgemm(T, N, N, M, K, W, K, x, K, y, N) */
    const int64_t M = 5, N = 3, K = 4;
    double x[20], w[12], y[15] = {0};
    for (int i = 0; i < 20; i++) x[i] = urand();
    for (int i = 0; i < 12; i++) w[i] = urand();
    assert_true(model_sgemm(1, 0, N, M, K, 1.0, w, K, 0, x, K, 0, 0.0, y, N, 0, 1));
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t p = 0; p < K; p++) acc += x[i * K + p] * w[j * K + p];
            assert_true(fabs(y[i * N + j] - acc) < 1e-12);
        }
}

/* ---- softmax, a warp per row ------------------------------------------------------------------- */

/* k_softmax_warp on the CPU: the lanes' partials, then the xor butterfly every lane runs (lane 0's result
 * is returned; the test checks all lanes agree bit for bit, as the kernel relies on). */
static void softmax_warp_emulated(const float *x, int64_t n, float *y) {
    float m[32], s[32], t[32];
    for (int l = 0; l < 32; l++) m[l] = sarco_hd_softmax_part_max(x, n, 1, l, 32);
    for (int o = 16; o; o >>= 1) {
        for (int l = 0; l < 32; l++) t[l] = sarco_hd_softmax_max2(m[l], m[l ^ o]);
        memcpy(m, t, sizeof m);
    }
    for (int l = 0; l < 32; l++) s[l] = sarco_hd_softmax_part_sum(x, n, 1, l, 32, m[l]);
    for (int o = 16; o; o >>= 1) {
        for (int l = 0; l < 32; l++) t[l] = s[l] + s[l ^ o];
        memcpy(s, t, sizeof s);
    }
    for (int l = 1; l < 32; l++) {
        assert_memory_equal(&m[l], &m[0], sizeof(float));
        assert_memory_equal(&s[l], &s[0], sizeof(float));
    }
    for (int l = 0; l < 32; l++) sarco_hd_softmax_part_write(x, n, 1, l, 32, m[l], 1.0f / s[l], y);
}

static void test_softmax_warp(void **state) {
    (void)state;
    const int64_t ns[] = {1, 5, 31, 32, 33, 216, 1000};
    double worst = 0.0;
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        int64_t n = ns[k];
        float *x = malloc(n * sizeof *x), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        for (int rep = 0; rep < 20; rep++) {
            for (int64_t i = 0; i < n; i++) x[i] = (float)(urand() * (rep < 10 ? 8.0 : 1e4));
            sarco_hd_softmax_line(x, n, 1, a);
            softmax_warp_emulated(x, n, b);
            double sum = 0.0;
            for (int64_t i = 0; i < n; i++) {
                double d = fabs((double)a[i] - b[i]) / fmax(fabs((double)a[i]), 1e-30);
                if (a[i] > 1e-30f && d > worst) worst = d;
                assert_true(fabs((double)a[i] - b[i]) <= 1e-5 * fabs((double)a[i]) + 1e-37);
                sum += b[i];
            }
            assert_true(fabs(sum - 1.0) < 1e-5);
        }
        /* a NaN anywhere: the whole row NaN, as the CPU; +inf: NaN as the CPU (inf - inf) */
        for (int64_t i = 0; i < n; i++) x[i] = (float)urand();
        x[n / 2] = NAN;
        softmax_warp_emulated(x, n, b);
        for (int64_t i = 0; i < n; i++) assert_true(isnan(b[i]));
        x[n / 2] = INFINITY;
        sarco_hd_softmax_line(x, n, 1, a);
        softmax_warp_emulated(x, n, b);
        for (int64_t i = 0; i < n; i++) assert_int_equal(isnan(a[i]) != 0, isnan(b[i]) != 0);
        /* in place, as the op allows */
        for (int64_t i = 0; i < n; i++) x[i] = (float)urand();
        sarco_hd_softmax_line(x, n, 1, a);
        softmax_warp_emulated(x, n, x);
        for (int64_t i = 0; i < n; i++) assert_true(fabs((double)a[i] - x[i]) <= 1e-5 * fabs((double)a[i]) + 1e-37);
        free(x);
        free(a);
        free(b);
    }
    print_message("softmax warp vs one lane: worst relative difference %.2e (bound 1e-5)\n", worst);
}

/* ---- EDT along the fastest axis through shared-memory tiles ------------------------------------ */

static void test_edt_tiles(void **state) {
    (void)state;
    const int tile = 32, pitch = tile + 1;
    const int64_t ns[] = {1, 7, 64, 97};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        const int64_t n = ns[k], lines = 45; /* a full tile and a partial one */
        const double s2 = 0.7 * 0.7;
        uint8_t *sites = malloc(lines * n);
        float *direct = malloc(lines * n * sizeof(float)), *tiled = malloc(lines * n * sizeof(float));
        float *buf = malloc(n * pitch * sizeof(float));
        void *scr = malloc(sarco_edt_scratch_bytes(n));
        int32_t *v;
        double *fv, *z;
        sarco_edt_scratch_split(scr, n, &v, &fv, &z);
        for (int64_t i = 0; i < lines * n; i++) sites[i] = urand() > 0.6 ? 1 : 0;
        for (int pass = 0; pass < 2; pass++) {
            /* pass 0: the binary first pass; pass 1: the envelope on its result */
            for (int64_t l = 0; l < lines; l++) {
                if (pass == 0) sarco_edt_line_binary(n, s2, sites + l * n, 1, 1, direct + l * n, 1);
                else sarco_edt_line(n, s2, direct + l * n, 1, direct + l * n, 1, v, fv, z);
            }
            for (int64_t l0 = 0; l0 < lines; l0 += tile) {
                const int64_t nl = lines - l0 < tile ? lines - l0 : tile, count = nl * n;
                float *base = tiled + l0 * n;
                if (pass == 1)
                    for (int64_t e = 0; e < count; e++) buf[sarco_edt_tile_index(e, n, pitch)] = base[e];
                for (int64_t j = 0; j < nl; j++) {
                    float *t = buf + j;
                    if (pass == 0) sarco_edt_line_binary(n, s2, sites + (l0 + j) * n, 1, 1, t, pitch);
                    else sarco_edt_line(n, s2, t, pitch, t, pitch, v, fv, z);
                }
                for (int64_t e = 0; e < count; e++) base[e] = buf[sarco_edt_tile_index(e, n, pitch)];
            }
            assert_memory_equal(direct, tiled, lines * n * sizeof(float));
        }
        free(sites);
        free(direct);
        free(tiled);
        free(buf);
        free(scr);
    }
}

/* ---- cuDNN statuses: categories, and which may fall back ------------------------------------- */

static void test_dnn_status(void **state) {
    (void)state;
    /* NOT_SUPPORTED and its details (3002 NOT_SUPPORTED_SHAPE, 3007 ARCH_MISMATCH, ...) fall back */
    const int fall[] = {3000, 3001, 3002, 3007, 3999};
    /* success, sub-library loading (1008), BAD_PARAM and its details (2003 MISALIGNED_POINTER), internal
     * errors and execution failures do not: they are errors */
    const int fail[] = {0, 1000, 1002, 1008, 2000, 2003, 2999, 4000, 4001, 5000, 5003};
    for (size_t i = 0; i < sizeof fall / sizeof *fall; i++) assert_true(sarco_dnn_may_fall_back(fall[i]));
    for (size_t i = 0; i < sizeof fail / sizeof *fail; i++) assert_false(sarco_dnn_may_fall_back(fail[i]));
    assert_int_equal(sarco_dnn_category(3002), 3000);
    assert_int_equal(sarco_dnn_category(2003), 2000);
    /* the old bug: 3002 == 3000 is false, so a detailed refusal was taken for a hard failure */
    assert_true(3002 != 3000 && sarco_dnn_may_fall_back(3002));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_direct),
        cmocka_unit_test(test_moments_tree),
        cmocka_unit_test(test_gemm_map),
        cmocka_unit_test(test_softmax_warp),
        cmocka_unit_test(test_dnn_status),
        cmocka_unit_test(test_edt_tiles),
    };
    return cmocka_run_group_tests_name("cuda_hd", tests, NULL, NULL);
}
