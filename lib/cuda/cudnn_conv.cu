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
 * shape, cached on the prepared conv; an algorithm that cuDNN refuses at run time (NOT_SUPPORTED)
 * is dropped and the next one on the list is used. */
#include <cudnn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "kernels/conv_hd.h"

#define MAX_ALGOS 16
#define WORKSPACE_CAP ((size_t)2 << 30) /* ignore algorithms asking for more scratch than 2 GiB */

static cudnnHandle_t handle_of(sarco_backend *be) { return (cudnnHandle_t)sarco_cu_of(be)->cudnn; }

static sarco_status dnn_fail(sarco_backend *be, cudnnStatus_t st, const char *what) {
    char detail[512] = "";
    cudnnGetLastErrorString(detail, sizeof detail);
    return sarco_fail(be->ctx, SARCO_ERR_DEVICE, "cudnn: %s: %s%s%s", what, cudnnGetErrorString(st),
                      detail[0] ? ": " : "", detail);
}
#define DNN_TRY(be, call)                                                                                      \
    do {                                                                                                       \
        cudnnStatus_t st_ = (call);                                                                            \
        if (st_ != CUDNN_STATUS_SUCCESS) return dnn_fail((be), st_, #call);                                    \
    } while (0)

sarco_status sarco_cu_dnn_init(sarco_backend *be, char *msg, size_t n) {
    sarco_cu *cu = sarco_cu_of(be);
    size_t v = cudnnGetVersion();
    if (v / 10000 != CUDNN_MAJOR) { /* cuDNN 9 numbers versions major*10000 + minor*100 + patch */
        snprintf(msg, n, "cuDNN %zu found, libsarco_cuda.so was built for cuDNN %d", v, CUDNN_MAJOR);
        return SARCO_ERR_BACKEND_UNAVAILABLE;
    }
    cudnnHandle_t h = NULL;
    cudnnStatus_t st = cudnnCreate(&h);
    if (st == CUDNN_STATUS_SUCCESS) {
        cu->cudnn = h;
        st = cudnnSetStream(h, cu->stream);
    }
    if (st != CUDNN_STATUS_SUCCESS) {
        snprintf(msg, n, "cudnnCreate: %s", cudnnGetErrorString(st));
        return SARCO_ERR_BACKEND_UNAVAILABLE;
    }
    return SARCO_OK;
}

void sarco_cu_dnn_fini(sarco_backend *be) {
    sarco_cu *cu = sarco_cu_of(be);
    if (cu->cudnn) cudnnDestroy((cudnnHandle_t)cu->cudnn);
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

static void plan_destroy(conv_plan *p) {
    if (p->xd) cudnnDestroyTensorDescriptor(p->xd);
    if (p->yd) cudnnDestroyTensorDescriptor(p->yd);
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
        plan_destroy(p);
        p = next;
    }
    if (c->wd) cudnnDestroyFilterDescriptor(c->wd);
    if (c->cd) cudnnDestroyConvolutionDescriptor(c->cd);
    if (c->bd) cudnnDestroyTensorDescriptor(c->bd);
    if (c->ad) cudnnDestroyActivationDescriptor(c->ad);
    sarco_cu_free(be, c->w);
    sarco_cu_free(be, c->b);
    free(c);
}

void sarco_cu_conv_free(sarco_backend *be, sarco_conv *c) {
    if (c && sarco_cu_enter(be) == SARCO_OK) conv_destroy(be, c);
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
            if (cudaMemsetAsync(z, 0, (size_t)d->cout * sizeof(float), sarco_cu_of(be)->stream) != cudaSuccess)
                st = sarco_cu_fail(be, cudaGetLastError(), "zeroing a bias");
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

/* Ranked algorithms for this shape from cuDNN's heuristics, with their math types. */
/* Ranked algorithms for this shape from cuDNN's heuristics, with their math types (UNSUPPORTED: none). */
static sarco_status find_algos(sarco_backend *be, sarco_conv *c, conv_plan *p) {
    cudnnHandle_t h = handle_of(be);
    int got = 0;
    p->nalgo = 0;
    if (!c->transposed) {
        cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
        if (cudnnGetConvolutionForwardAlgorithm_v7(h, p->xd, c->wd, c->cd, p->yd, MAX_ALGOS, &got, perf) != CUDNN_STATUS_SUCCESS)
            return SARCO_ERR_UNSUPPORTED;
        for (int i = 0; i < got; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= WORKSPACE_CAP) {
                p->algos[p->nalgo] = (int)perf[i].algo;
                p->math[p->nalgo++] = perf[i].mathType;
            }
    } else {
        cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
        if (cudnnGetConvolutionBackwardDataAlgorithm_v7(h, c->wd, p->xd, c->cd, p->yd, MAX_ALGOS, &got, perf) !=
            CUDNN_STATUS_SUCCESS)
            return SARCO_ERR_UNSUPPORTED;
        for (int i = 0; i < got; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= WORKSPACE_CAP) {
                p->algos[p->nalgo] = (int)perf[i].algo;
                p->math[p->nalgo++] = perf[i].mathType;
            }
    }
    return SARCO_OK;
}

/* Math type for the algorithm in use: its own in fast mode, FMA-only in exact mode. */
static cudnnMathType_t math_of(sarco_backend *be, const conv_plan *p) {
    if (!sarco_cu_of(be)->fast) return CUDNN_FMA_MATH;
    return p->math[p->cur] == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION ? CUDNN_TENSOR_OP_MATH : p->math[p->cur];
}

/* Makes algos[cur] current (moving past ones whose workspace cannot be queried); 0 when none is left. */
static int select_algo(sarco_backend *be, sarco_conv *c, conv_plan *p) {
    cudnnHandle_t h = handle_of(be);
    for (; p->cur < p->nalgo; p->cur++) {
        if (cudnnSetConvolutionMathType(c->cd, math_of(be, p)) != CUDNN_STATUS_SUCCESS) continue;
        size_t ws = 0;
        cudnnStatus_t st =
            c->transposed
                ? cudnnGetConvolutionBackwardDataWorkspaceSize(h, c->wd, p->xd, c->cd, p->yd,
                                                               (cudnnConvolutionBwdDataAlgo_t)p->algos[p->cur], &ws)
                : cudnnGetConvolutionForwardWorkspaceSize(h, p->xd, c->wd, c->cd, p->yd,
                                                          (cudnnConvolutionFwdAlgo_t)p->algos[p->cur], &ws);
        if (st == CUDNN_STATUS_SUCCESS && ws <= WORKSPACE_CAP) {
            p->ws = ws;
            return 1;
        }
    }
    return 0;
}

/* No cuDNN algorithm for this shape: from now on it runs on our direct kernel (kernels/conv_direct.cu). */
static void use_direct(sarco_backend *be, sarco_conv *c, conv_plan *p) {
    p->direct = 1;
    sarco_log(be->ctx, SARCO_LOG_WARN,
              "cudnn: no %s algorithm for %dD, %lld -> %lld channels, groups %lld, input n=%lld (%lld, %lld, %lld); "
              "using the direct kernel",
              c->transposed ? "transposed convolution" : "convolution", c->d.nsp, (long long)c->d.cin,
              (long long)c->d.cout, (long long)c->d.groups, (long long)p->n, (long long)p->in[0], (long long)p->in[1],
              (long long)p->in[2]);
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
    if (find_algos(be, c, p) != SARCO_OK || !select_algo(be, c, p)) use_direct(be, c, p);
    return SARCO_OK;
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
        plan_destroy(p);
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

    /* a residual that is y itself rides on cuDNN's beta; any other one goes to the epilogue */
    const float *res_epi = residual && residual != y ? residual : NULL;
    float beta = residual == y ? 1.0f : 0.0f;
    for (;;) {
        void *ws = NULL;
        if (p->ws && (s = sarco_cu_scratch(be, p->ws, &ws)) != SARCO_OK) return s;
        int fused = p->fused_ok;
        cudnnStatus_t st = launch(be, c, p, x, residual, beta, fused, y, ws);
        if (st == CUDNN_STATUS_SUCCESS) {
            if (fused) return SARCO_OK;
            break;
        }
        if (fused && (st == CUDNN_STATUS_NOT_SUPPORTED || st == CUDNN_STATUS_BAD_PARAM)) {
            p->fused_ok = 0; /* this shape/algorithm has no fused kernel: conv, then our epilogue */
            continue;
        }
        if (st != CUDNN_STATUS_NOT_SUPPORTED) return dnn_fail(be, st, c->transposed ? "cudnnConvolutionBackwardData"
                                                                                     : "cudnnConvolutionForward");
        p->cur++; /* refused at run time: the next algorithm on the heuristics' list */
        p->fused_ok = c->ad != NULL;
        if (!select_algo(be, c, p)) {
            use_direct(be, c, p);
            return sarco_cu_conv_direct(be, &c->d, c->transposed, n, p->in, p->out, x, c->w,
                                        c->has_bias ? c->b : NULL, residual, y);
        }
    }
    if (!c->has_bias && !res_epi && c->d.act == SARCO_ACT_NONE) return SARCO_OK;
    int64_t rows = n;
    for (int i = 0; i < c->d.nsp; i++) rows *= p->out[i];
    return sarco_cu_bias_act(be, rows, c->d.cout, y, c->has_bias ? c->b : NULL, res_epi, c->d.act, c->d.alpha);
}
