/* Convolution and transposed convolution, 2D and 3D, channels-last, through cuDNN.
 *
 * Every cuDNN call of the backend lives in this file, so a move from the legacy descriptor API
 * (used here: cudnnConvolutionForward, cudnnConvolutionBiasActivationForward,
 * cudnnConvolutionBackwardData for transposed convs) to the v9 graph API stays local.
 *
 * Layouts: activations (N, spatial..., C) are described to cuDNN as NCDHW dims with channels-last
 * strides; filters are reordered once at prepare into cuDNN's NHWC filter order (K, spatial..., C/g).
 * A transposed conv is the data gradient of the forward conv whose filter (Cin, Cout/g, k...) is
 * exactly PyTorch's ConvTranspose weight, so the weight needs the same reorder and nothing else.
 * Algorithms: cuDNN's heuristics (no timing runs, so no hidden synchronisation), once per input
 * shape, cached on the prepared conv; an algorithm that cuDNN refuses (a NOT_SUPPORTED-category
 * status) is dropped and the next one on the list is used, logged with cuDNN's status name and
 * cudnnGetLastErrorString; any other cuDNN failure is SARCO_ERR_DEVICE with that text, and under
 * SARCO_CUDA_STRICT=1 every fallback is too. */
#include <cudnn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "dnn_status.h"
#include "kernels/conv_hd.h"

#define MAX_ALGOS 16

static cudnnHandle_t handle_of(sarco_backend *be) { return (cudnnHandle_t)sarco_cu_of(be)->cudnn; }

/* cuDNN 9 statuses are a category (thousands) plus a detail, e.g. 3002 NOT_SUPPORTED_SHAPE: compare
 * categories (CUDNN_STATUS_CATEGORY, cudnn_graph.h), never the full code against a bare category. */
static_assert(CUDNN_STATUS_CATEGORY(CUDNN_STATUS_NOT_SUPPORTED_SHAPE) == CUDNN_STATUS_NOT_SUPPORTED &&
                  sarco_dnn_category(CUDNN_STATUS_NOT_SUPPORTED_SHAPE) == CUDNN_STATUS_NOT_SUPPORTED &&
                  sarco_dnn_category(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER) == CUDNN_STATUS_BAD_PARAM &&
                  CUDNN_STATUS_NOT_SUPPORTED == 3000,
              "lib/cuda/dnn_status.h no longer matches cudnn_graph.h's CUDNN_STATUS_CATEGORY");
static int not_supported(cudnnStatus_t st) { return sarco_dnn_may_fall_back((int)st); }

/* "CUDNN_STATUS_NOT_SUPPORTED_SHAPE (3002): <cudnnGetLastErrorString>" */
static void dnn_text(cudnnStatus_t st, char *buf, size_t n) {
    char detail[512] = "";
    cudnnGetLastErrorString(detail, sizeof detail);
    snprintf(buf, n, "%s (%d)%s%s", cudnnGetErrorString(st), (int)st, detail[0] ? ": " : "", detail);
}

static sarco_status dnn_fail(sarco_backend *be, cudnnStatus_t st, const char *what) {
    char text[700];
    dnn_text(st, text, sizeof text);
    return sarco_fail(be->ctx, SARCO_ERR_DEVICE, "cudnn: %s: %s", what, text);
}
#define DNN_TRY(be, call)                                                                                      \
    do {                                                                                                       \
        cudnnStatus_t st_ = (call);                                                                            \
        if (st_ != CUDNN_STATUS_SUCCESS) return dnn_fail((be), st_, #call);                                    \
    } while (0)

void sarco_cu_dnn_describe(sarco_backend *be, char *buf, size_t n) {
    (void)be;
    size_t v = cudnnGetVersion(), rt = cudnnGetCudartVersion();
    snprintf(buf, n, "cuDNN %zu.%zu.%zu for CUDA %zu.%zu (built with %d.%d.%d)", v / 10000, v % 10000 / 100, v % 100,
             rt / 1000, rt % 1000 / 10, CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
}

sarco_status sarco_cu_dnn_init(sarco_backend *be, char *msg, size_t n) {
    sarco_cu *cu = sarco_cu_of(be);
    size_t v = cudnnGetVersion(), rt = cudnnGetCudartVersion();
    if (v / 10000 != CUDNN_MAJOR) { /* cuDNN 9 numbers versions major*10000 + minor*100 + patch */
        snprintf(msg, n, "cuDNN %zu found, libsarco_cuda.so was built for cuDNN %d", v, CUDNN_MAJOR);
        return SARCO_ERR_BACKEND_UNAVAILABLE;
    }
    /* a cuDNN built for another CUDA major (a cu12 wheel's libcudnn.so.9 first on the path) would run on
     * a runtime it was not built for */
    if (rt / 1000 != CUDART_VERSION / 1000) {
        snprintf(msg, n, "cuDNN %zu.%zu.%zu was built for CUDA %zu.%zu, this plug-in for CUDA %d.%d: put the "
                 "matching libcudnn.so.9 first (the plug-in's RUNPATH, or SARCO_CUDA_LIBRARY the other build)",
                 v / 10000, v % 10000 / 100, v % 100, rt / 1000, rt % 1000 / 10, CUDART_VERSION / 1000,
                 CUDART_VERSION % 1000 / 10);
        return SARCO_ERR_BACKEND_UNAVAILABLE;
    }
    cudnnHandle_t h = NULL;
    cudnnStatus_t st = cudnnCreate(&h);
    if (st == CUDNN_STATUS_SUCCESS) {
        cu->cudnn = h;
        st = cudnnSetStream(h, cu->stream);
    }
    if (st != CUDNN_STATUS_SUCCESS) {
        char text[700];
        dnn_text(st, text, sizeof text);
        snprintf(msg, n, "cudnnCreate: %s", text);
        return SARCO_ERR_BACKEND_UNAVAILABLE;
    }
    return SARCO_OK;
}

void sarco_cu_dnn_fini(sarco_backend *be) {
    sarco_cu *cu = sarco_cu_of(be);
    cudnnStatus_t st = cu->cudnn ? cudnnDestroy((cudnnHandle_t)cu->cudnn) : CUDNN_STATUS_SUCCESS;
    if (st != CUDNN_STATUS_SUCCESS) sarco_log(be->ctx, SARCO_LOG_ERROR, "cudnn: cudnnDestroy: %s", cudnnGetErrorString(st));
    cu->cudnn = NULL;
}

/* One input shape's descriptors and algorithm list. */
typedef struct conv_plan {
    struct conv_plan *next;
    int64_t n, in[3], out[3];
    cudnnTensorDescriptor_t xd, yd; /* the op's input and output (for a deconv: cuDNN's dy and dx) */
    int algos[MAX_ALGOS];
    cudnnMathType_t math[MAX_ALGOS];
    int nalgo, cur;                 /* algos[cur] is in use; NOT_SUPPORTED at run time moves on */
    size_t ws;                      /* workspace of algos[cur] */
    int fused_ok;                   /* cudnnConvolutionBiasActivationForward accepted (or untried) */
    int direct;                     /* cuDNN has no algorithm: our direct kernel runs this shape */
} conv_plan;

/* Destroy calls cannot return a status from a free path: a failure is logged with the call. */
#define DNN_LOG(be, call)                                                                                      \
    do {                                                                                                       \
        cudnnStatus_t st_ = (call);                                                                            \
        if (st_ != CUDNN_STATUS_SUCCESS)                                                                       \
            sarco_log((be)->ctx, SARCO_LOG_ERROR, "cudnn: %s: %s", #call, cudnnGetErrorString(st_));           \
    } while (0)

static void plan_destroy(sarco_backend *be, conv_plan *p) {
    if (p->xd) DNN_LOG(be, cudnnDestroyTensorDescriptor(p->xd));
    if (p->yd) DNN_LOG(be, cudnnDestroyTensorDescriptor(p->yd));
    free(p);
}

struct sarco_conv {
    sarco_conv_desc d;
    int transposed;
    float *w;       /* device, (K, k..., C/g) */
    float *b;       /* device bias (Cout), or zeros when the fused path needs one; NULL otherwise */
    int has_bias;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cudnnTensorDescriptor_t bd;     /* (1, Cout, 1, 1[, 1]) for the fused path */
    cudnnActivationDescriptor_t ad; /* ReLU for the fused path */
    conv_plan *plans;
};

/* dims {N, C, sp...} with channels-last strides. */
static cudnnStatus_t set_cl_desc(cudnnTensorDescriptor_t t, int nsp, int64_t n, int64_t c, const int64_t *sp) {
    int dims[5], strides[5];
    dims[0] = (int)n;
    dims[1] = (int)c;
    strides[1] = 1;
    int64_t s = c;
    for (int i = nsp - 1; i >= 0; i--) {
        dims[2 + i] = (int)sp[i];
        strides[2 + i] = (int)s;
        s *= sp[i];
    }
    strides[0] = (int)s;
    return cudnnSetTensorNdDescriptor(t, CUDNN_DATA_FLOAT, 2 + nsp, dims, strides);
}

static int fits_int(int64_t v) { return v >= 0 && v <= 0x7fffffff; }

static void conv_destroy(sarco_backend *be, sarco_conv *c) {
    if (!c) return;
    for (conv_plan *p = c->plans; p;) {
        conv_plan *next = p->next;
        plan_destroy(be, p);
        p = next;
    }
    if (c->wd) DNN_LOG(be, cudnnDestroyFilterDescriptor(c->wd));
    if (c->cd) DNN_LOG(be, cudnnDestroyConvolutionDescriptor(c->cd));
    if (c->bd) DNN_LOG(be, cudnnDestroyTensorDescriptor(c->bd));
    if (c->ad) DNN_LOG(be, cudnnDestroyActivationDescriptor(c->ad));
    sarco_cu_free(be, c->w);
    sarco_cu_free(be, c->b);
    free(c);
}

void sarco_cu_conv_free(sarco_backend *be, sarco_conv *c) {
    if (c && sarco_cu_device(be) == SARCO_OK) conv_destroy(be, c);
}

/* The filter as cuDNN sees it: K output maps of C/g inputs (a deconv's K is its Cin). */
static void filter_dims(const sarco_conv *c, int64_t *k_out, int64_t *c_per_group) {
    const sarco_conv_desc *d = &c->d;
    *k_out = c->transposed ? d->cin : d->cout;
    *c_per_group = (c->transposed ? d->cout : d->cin) / d->groups;
}

static sarco_status prepare(sarco_backend *be, sarco_conv *c, const float *w_host, const float *b_host) {
    const sarco_conv_desc *d = &c->d;
    int nsp = d->nsp;
    int64_t K, Cg, ks = 1;
    filter_dims(c, &K, &Cg);
    for (int i = 0; i < nsp; i++) ks *= d->k[i];

    /* (K, Cg, k...) -> (K, k..., Cg) */
    size_t count = (size_t)(K * Cg * ks);
    float *tmp = (float *)malloc(count * sizeof *tmp);
    if (!tmp) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "cuda conv: cannot reorder %zu weights", count);
    sarco_hd_conv_reorder(w_host, K, Cg, ks, tmp);
    sarco_status st = sarco_cu_upload_new(be, tmp, count, &c->w);
    free(tmp);
    if (st != SARCO_OK) return st;

    int fused = !c->transposed && d->act == SARCO_ACT_RELU;
    if (b_host && d->has_bias) {
        c->has_bias = 1;
        st = sarco_cu_upload_new(be, b_host, (size_t)d->cout, &c->b);
    } else if (fused) { /* cudnnConvolutionBiasActivationForward always adds a bias */
        void *z;
        st = sarco_cu_malloc(be, (size_t)d->cout * sizeof(float), &z);
        if (st == SARCO_OK) {
            c->b = (float *)z;
            cudaError_t e = cudaMemsetAsync(z, 0, (size_t)d->cout * sizeof(float), sarco_cu_of(be)->stream);
            if (e != cudaSuccess) st = sarco_cu_fail(be, e, "zeroing a bias");
        }
    }
    if (st != SARCO_OK) return st;

    int fdims[5] = {(int)K, (int)Cg, 1, 1, 1}, pad[3], stride[3], dil[3];
    for (int i = 0; i < nsp; i++) {
        fdims[2 + i] = (int)d->k[i];
        pad[i] = (int)d->pad[i];
        stride[i] = (int)d->stride[i];
        dil[i] = (int)d->dil[i];
    }
    DNN_TRY(be, cudnnCreateFilterDescriptor(&c->wd));
    DNN_TRY(be, cudnnSetFilterNdDescriptor(c->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, 2 + nsp, fdims));
    DNN_TRY(be, cudnnCreateConvolutionDescriptor(&c->cd));
    DNN_TRY(be, cudnnSetConvolutionNdDescriptor(c->cd, nsp, pad, stride, dil, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    DNN_TRY(be, cudnnSetConvolutionGroupCount(c->cd, (int)d->groups));
    /* FP32 exact mode must forbid TF32, which cuDNN's default math allows on Ampere and later */
    DNN_TRY(be, cudnnSetConvolutionMathType(c->cd, sarco_cu_of(be)->fast ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    if (fused) {
        int64_t one[3] = {1, 1, 1};
        DNN_TRY(be, cudnnCreateTensorDescriptor(&c->bd));
        DNN_TRY(be, set_cl_desc(c->bd, nsp, 1, d->cout, one));
        DNN_TRY(be, cudnnCreateActivationDescriptor(&c->ad));
        DNN_TRY(be, cudnnSetActivationDescriptor(c->ad, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
    }
    return SARCO_OK;
}

sarco_status sarco_cu_conv_prepare(sarco_backend *be, const sarco_conv_desc *d, int transposed, const float *w_host,
                                   const float *b_host, sarco_conv **out) {
    if (!out || !d || !w_host)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda conv_prepare: NULL argument");
    *out = NULL;
    SARCO_CU_ENTER(be);
    sarco_status s = sarco_conv_desc_check(be->ctx, d, transposed); /* lib/ops/shape.c: the CPU's rules */
    if (s != SARCO_OK) return s;
    if (d->has_bias && !b_host)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda conv_prepare: has_bias set but no bias given");
    sarco_conv *c = (sarco_conv *)calloc(1, sizeof *c);
    if (!c) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "cuda conv_prepare: out of memory");
    c->d = *d;
    c->transposed = transposed != 0;
    s = prepare(be, c, w_host, b_host);
    if (s != SARCO_OK) {
        conv_destroy(be, c);
        return s;
    }
    *out = c;
    return SARCO_OK;
}

/* PyTorch's output size (lib/ops/shape.c, as the CPU backend computes it); 0 when empty or past int. */
static int out_shape(const sarco_conv *c, const int64_t *in, int64_t *out) {
    if (!sarco_conv_out_shape(&c->d, c->transposed, in, out)) return 0;
    for (int i = 0; i < c->d.nsp; i++)
        if (!fits_int(out[i])) return 0;
    return 1;
}

/* "3D convolution, 64 -> 32 channels, groups 1, input n=1 (96, 96, 96)" for messages. */
static void describe(const sarco_conv *c, const conv_plan *p, char *buf, size_t n) {
    snprintf(buf, n, "%dD %s, %lld -> %lld channels, groups %lld, input n=%lld (%lld, %lld, %lld)", c->d.nsp,
             c->transposed ? "transposed convolution" : "convolution", (long long)c->d.cin, (long long)c->d.cout,
             (long long)c->d.groups, (long long)p->n, (long long)p->in[0], (long long)p->in[1], (long long)p->in[2]);
}

/* The math type exact mode needs (FMA only: cuDNN's default would allow TF32 on Ampere and later), or
 * in fast mode tensor cores. Set on the shared descriptor before every heuristics query, because the
 * last run's algorithm-specific math type is still on it. */
static cudnnMathType_t base_math(sarco_backend *be) {
    return sarco_cu_of(be)->fast ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
}

/* Ranked algorithms for this shape from cuDNN's heuristics, with their math types, those over the
 * workspace cap left out. A heuristics failure of the NOT_SUPPORTED category leaves the list empty
 * (the caller falls back, saying why in *why); any other failure is SARCO_ERR_DEVICE. */
static sarco_status find_algos(sarco_backend *be, sarco_conv *c, conv_plan *p, char *why, size_t wn) {
    cudnnHandle_t h = handle_of(be);
    sarco_cu *cu = sarco_cu_of(be);
    int got = 0, refused = 0;
    cudnnStatus_t first_refusal = CUDNN_STATUS_SUCCESS;
    size_t asked = 0;
    p->nalgo = 0;
    DNN_TRY(be, cudnnSetConvolutionMathType(c->cd, base_math(be)));
    cudnnStatus_t st;
    const char *call;
    if (!c->transposed) {
        cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
        call = "cudnnGetConvolutionForwardAlgorithm_v7";
        st = cudnnGetConvolutionForwardAlgorithm_v7(h, p->xd, c->wd, c->cd, p->yd, MAX_ALGOS, &got, perf);
        for (int i = 0; st == CUDNN_STATUS_SUCCESS && i < got; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS) {
                if (!refused++) first_refusal = perf[i].status;
                continue;
            }
            if (!asked) asked = perf[i].memory ? perf[i].memory : 1;
            if (perf[i].memory > cu->ws_cap) continue;
            p->algos[p->nalgo] = (int)perf[i].algo;
            p->math[p->nalgo++] = perf[i].mathType;
        }
    } else {
        cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
        call = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
        st = cudnnGetConvolutionBackwardDataAlgorithm_v7(h, c->wd, p->xd, c->cd, p->yd, MAX_ALGOS, &got, perf);
        for (int i = 0; st == CUDNN_STATUS_SUCCESS && i < got; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS) {
                if (!refused++) first_refusal = perf[i].status;
                continue;
            }
            if (!asked) asked = perf[i].memory ? perf[i].memory : 1;
            if (perf[i].memory > cu->ws_cap) continue;
            p->algos[p->nalgo] = (int)perf[i].algo;
            p->math[p->nalgo++] = perf[i].mathType;
        }
    }
    char shape[200], text[700];
    describe(c, p, shape, sizeof shape);
    if (st != CUDNN_STATUS_SUCCESS) {
        dnn_text(st, text, sizeof text);
        if (!not_supported(st)) return sarco_fail(be->ctx, SARCO_ERR_DEVICE, "cudnn: %s for %s: %s", call, shape, text);
        snprintf(why, wn, "%s: %s", call, text);
        return SARCO_OK;
    }
    if (asked > cu->ws_largest_asked) cu->ws_largest_asked = asked;
    sarco_log(be->ctx, SARCO_LOG_INFO, "cudnn: %s: %d algorithms, %d within the %zu MiB workspace cap; the first "
              "asks %.1f MiB", shape, got, p->nalgo, cu->ws_cap >> 20, asked / 1048576.0);
    if (!p->nalgo)
        snprintf(why, wn, "%s: %d candidates, %d refused by cuDNN (the first: %s), %d over the workspace cap of %zu "
                 "MiB (SARCO_CUDA_WORKSPACE_MIB raises it)", call, got, refused,
                 refused ? cudnnGetErrorString(first_refusal) : "none", got - refused, cu->ws_cap >> 20);
    return SARCO_OK;
}

/* Math type for the algorithm in use: its own in fast mode, FMA-only in exact mode. */
static cudnnMathType_t math_of(sarco_backend *be, const conv_plan *p) {
    if (!sarco_cu_of(be)->fast) return CUDNN_FMA_MATH;
    return p->math[p->cur] == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION ? CUDNN_TENSOR_OP_MATH : p->math[p->cur];
}

/* Makes algos[cur] current, moving past those cuDNN calls NOT_SUPPORTED or whose workspace is over the
 * cap (each one logged, an error under SARCO_CUDA_STRICT=1); *ok = 0 when none is left, with why.
 * Any other failure is SARCO_ERR_DEVICE. */
static sarco_status select_algo(sarco_backend *be, sarco_conv *c, conv_plan *p, int *ok, char *why, size_t wn) {
    cudnnHandle_t h = handle_of(be);
    char shape[200], text[700];
    *ok = 0;
    for (; p->cur < p->nalgo; p->cur++) {
        DNN_TRY(be, cudnnSetConvolutionMathType(c->cd, math_of(be, p)));
        size_t ws = 0;
        cudnnStatus_t st =
            c->transposed
                ? cudnnGetConvolutionBackwardDataWorkspaceSize(h, c->wd, p->xd, c->cd, p->yd,
                                                               (cudnnConvolutionBwdDataAlgo_t)p->algos[p->cur], &ws)
                : cudnnGetConvolutionForwardWorkspaceSize(h, p->xd, c->wd, c->cd, p->yd,
                                                          (cudnnConvolutionFwdAlgo_t)p->algos[p->cur], &ws);
        describe(c, p, shape, sizeof shape);
        if (st == CUDNN_STATUS_SUCCESS && ws <= sarco_cu_of(be)->ws_cap) {
            p->ws = ws;
            *ok = 1;
            return SARCO_OK;
        }
        if (st != CUDNN_STATUS_SUCCESS && !not_supported(st))
            return dnn_fail(be, st, c->transposed ? "cudnnGetConvolutionBackwardDataWorkspaceSize"
                                                  : "cudnnGetConvolutionForwardWorkspaceSize");
        if (st == CUDNN_STATUS_SUCCESS)
            snprintf(text, sizeof text, "workspace %.1f MiB over the cap", ws / 1048576.0);
        else
            dnn_text(st, text, sizeof text);
        snprintf(why, wn, "algorithm %d: %s", p->algos[p->cur], text);
        sarco_status s = sarco_cu_fallback(be, "cudnn: %s: %s; trying the next algorithm", shape, why);
        if (s != SARCO_OK) return s;
    }
    return SARCO_OK;
}

/* No cuDNN algorithm for this shape: from now on it runs on our direct kernel (kernels/conv_direct.cu),
 * 10-100x slower, so it is a warning with cuDNN's reason (an error under SARCO_CUDA_STRICT=1). */
static sarco_status use_direct(sarco_backend *be, sarco_conv *c, conv_plan *p, const char *why) {
    char shape[200];
    describe(c, p, shape, sizeof shape);
    sarco_status s = sarco_cu_fallback(be, "cudnn: no algorithm for %s (%s); using the direct kernel", shape, why);
    if (s == SARCO_OK) p->direct = 1;
    return s;
}

static sarco_status plan_init(sarco_backend *be, sarco_conv *c, conv_plan *p) {
    int nsp = c->d.nsp;
    DNN_TRY(be, cudnnCreateTensorDescriptor(&p->xd));
    DNN_TRY(be, cudnnCreateTensorDescriptor(&p->yd));
    DNN_TRY(be, set_cl_desc(p->xd, nsp, p->n, c->d.cin, p->in));
    DNN_TRY(be, set_cl_desc(p->yd, nsp, p->n, c->d.cout, p->out));
    if (!c->transposed) { /* our output shape must be cuDNN's */
        int dims[5];
        DNN_TRY(be, cudnnGetConvolutionNdForwardOutputDim(c->cd, p->xd, c->wd, 2 + nsp, dims));
        int same = dims[0] == p->n && dims[1] == c->d.cout;
        for (int i = 0; i < nsp; i++) same = same && dims[2 + i] == p->out[i];
        if (!same)
            return sarco_fail(be->ctx, SARCO_ERR_INTERNAL, "cuda conv: cuDNN's output shape differs from PyTorch's");
    }
    char why[800] = "";
    int ok = 0;
    sarco_status s = find_algos(be, c, p, why, sizeof why);
    if (s == SARCO_OK && p->nalgo) s = select_algo(be, c, p, &ok, why, sizeof why);
    if (s == SARCO_OK && !ok) s = use_direct(be, c, p, why);
    return s;
}

/* The cached plan for (n, in...), made on first use. */
static sarco_status plan_for(sarco_backend *be, sarco_conv *c, int64_t n, const int64_t *in, conv_plan **out) {
    int nsp = c->d.nsp;
    for (conv_plan *p = c->plans; p; p = p->next) {
        int same = p->n == n;
        for (int i = 0; i < nsp; i++) same = same && p->in[i] == in[i];
        if (same) {
            *out = p;
            return SARCO_OK;
        }
    }
    int64_t o[3] = {1, 1, 1}, in3[3] = {1, 1, 1}, xcount = n * c->d.cin, ycount = n * c->d.cout;
    for (int i = 0; i < nsp; i++) in3[i] = in[i];
    if (n < 1 || !fits_int(n) || !out_shape(c, in3, o))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "cuda %s: input n=%lld (%lld, %lld, %lld) gives an empty or oversized output",
                          c->transposed ? "deconv" : "conv", (long long)n, (long long)in3[0], (long long)in3[1],
                          (long long)in3[2]);
    for (int i = 0; i < nsp; i++) {
        xcount *= in[i];
        ycount *= o[i];
    }
    if (!fits_int(xcount) || !fits_int(ycount)) /* cuDNN's legacy descriptors take int strides */
        return sarco_fail(be->ctx, SARCO_ERR_LIMIT, "cuda %s: a tensor of %lld or %lld elements is past cuDNN's 2^31",
                          c->transposed ? "deconv" : "conv", (long long)xcount, (long long)ycount);

    conv_plan *p = (conv_plan *)calloc(1, sizeof *p);
    if (!p) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "cuda conv: out of memory");
    p->n = n;
    for (int i = 0; i < 3; i++) {
        p->in[i] = in3[i];
        p->out[i] = o[i];
    }
    p->fused_ok = c->ad != NULL;
    sarco_status s = plan_init(be, c, p);
    if (s != SARCO_OK) { /* not cached: the next call with this shape asks cuDNN again */
        plan_destroy(be, p);
        return s;
    }
    p->next = c->plans;
    c->plans = p;
    *out = p;
    return SARCO_OK;
}

/* One cuDNN call for the plan's current algorithm: y = conv(x) + beta y, or the fused
 * y = relu(conv(x) + z + bias) where fused is set. */
static cudnnStatus_t launch(sarco_backend *be, sarco_conv *c, conv_plan *p, const float *x, const float *z,
                            float beta, int fused, float *y, void *ws) {
    cudnnHandle_t h = handle_of(be);
    const float one = 1.0f;
    cudnnStatus_t st = cudnnSetConvolutionMathType(c->cd, math_of(be, p));
    if (st != CUDNN_STATUS_SUCCESS) return st;
    if (c->transposed)
        return cudnnConvolutionBackwardData(h, &one, c->wd, c->w, p->xd, x, c->cd,
                                            (cudnnConvolutionBwdDataAlgo_t)p->algos[p->cur], ws, p->ws, &beta, p->yd,
                                            y);
    cudnnConvolutionFwdAlgo_t algo = (cudnnConvolutionFwdAlgo_t)p->algos[p->cur];
    if (fused) {
        const float a2 = z ? 1.0f : 0.0f;
        return cudnnConvolutionBiasActivationForward(h, &one, p->xd, x, c->wd, c->w, c->cd, algo, ws, p->ws, &a2,
                                                     p->yd, z ? z : y, c->bd, c->b, c->ad, p->yd, y);
    }
    return cudnnConvolutionForward(h, &one, p->xd, x, c->wd, c->w, c->cd, algo, ws, p->ws, &beta, p->yd, y);
}

sarco_status sarco_cu_conv_run(sarco_backend *be, sarco_conv *c, int64_t n, const int64_t *in, const float *x,
                               const float *residual, float *y) {
    if (!c || !in || !x || !y) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda conv_run: NULL argument");
    if (x == y)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda conv_run: the output may not alias the input");
    SARCO_CU_ENTER(be);
    conv_plan *p;
    sarco_status s = plan_for(be, c, n, in, &p);
    if (s != SARCO_OK) return s;
    if (p->direct)
        return sarco_cu_conv_direct(be, &c->d, c->transposed, n, p->in, p->out, x, c->w, c->has_bias ? c->b : NULL,
                                    residual, y);

    /* a residual that is y itself rides on cuDNN's beta (and never on the fused call's z, which cuDNN
     * does not promise may alias y); any other one goes to the epilogue or the fused z */
    const float *res_epi = residual && residual != y ? residual : NULL;
    float beta = residual == y ? 1.0f : 0.0f;
    char shape[200], text[700];
    for (;;) {
        void *ws = NULL;
        if (p->ws && (s = sarco_cu_scratch(be, p->ws, &ws)) != SARCO_OK) return s;
        int fused = p->fused_ok && residual != y;
        cudnnStatus_t st = launch(be, c, p, x, residual, beta, fused, y, ws);
        if (st == CUDNN_STATUS_SUCCESS) {
            if ((s = sarco_cu_launched(be, fused ? "cudnnConvolutionBiasActivationForward"
                                                 : c->transposed ? "cudnnConvolutionBackwardData"
                                                                 : "cudnnConvolutionForward")) != SARCO_OK)
                return s;
            if (fused) return SARCO_OK;
            break;
        }
        const char *call = fused ? "cudnnConvolutionBiasActivationForward"
                                 : c->transposed ? "cudnnConvolutionBackwardData" : "cudnnConvolutionForward";
        if (!not_supported(st)) return dnn_fail(be, st, call);
        describe(c, p, shape, sizeof shape);
        dnn_text(st, text, sizeof text);
        if (fused) { /* this shape/algorithm has no fused kernel: conv, then our epilogue */
            if ((s = sarco_cu_fallback(be, "cudnn: %s for %s, algorithm %d: %s; running it unfused", call, shape,
                                       p->algos[p->cur], text)) != SARCO_OK)
                return s;
            p->fused_ok = 0;
            continue;
        }
        /* refused at run time: the next algorithm on the heuristics' list */
        if ((s = sarco_cu_fallback(be, "cudnn: %s for %s, algorithm %d: %s; trying the next algorithm", call, shape,
                                   p->algos[p->cur], text)) != SARCO_OK)
            return s;
        p->cur++;
        p->fused_ok = c->ad != NULL;
        char why[800];
        snprintf(why, sizeof why, "%s: %s", call, text);
        int ok = 0;
        if ((s = select_algo(be, c, p, &ok, why, sizeof why)) != SARCO_OK) return s;
        if (!ok) {
            if ((s = use_direct(be, c, p, why)) != SARCO_OK) return s;
            return sarco_cu_conv_direct(be, &c->d, c->transposed, n, p->in, p->out, x, c->w,
                                        c->has_bias ? c->b : NULL, residual, y);
        }
    }
    if (!c->has_bias && !res_epi && c->d.act == SARCO_ACT_NONE) return SARCO_OK;
    int64_t rows = n;
    for (int i = 0; i < c->d.nsp; i++) rows *= p->out[i];
    return sarco_cu_bias_act(be, rows, c->d.cout, y, c->has_bias ? c->b : NULL, res_epi, c->d.act, c->d.alpha);
}
