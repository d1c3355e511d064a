/* Linear layers and strided batched GEMMs through cuBLAS.
 *
 * cuBLAS is column-major; our matrices are row-major. A row-major (r x c) matrix with row stride ld
 * is the column-major (c x r) matrix with the same ld, so C = A B (row-major) is computed as
 * C^T = B^T A^T (column-major) and no data moves. FP32 by default; TF32 tensor cores only when the
 * context asked for a fast precision (CUBLAS_TF32_TENSOR_OP_MATH). */
#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_internal.h"
#include "gemm_map.h"

static cublasHandle_t handle_of(sarco_backend *be) { return (cublasHandle_t)sarco_cu_of(be)->cublas; }

static sarco_status blas_fail(sarco_backend *be, cublasStatus_t st, const char *what) {
    return sarco_fail(be->ctx, SARCO_ERR_DEVICE, "cublas: %s: %s", what, cublasGetStatusString(st));
}
#define BLAS_TRY(be, call)                                                                                     \
    do {                                                                                                       \
        cublasStatus_t st_ = (call);                                                                           \
        if (st_ != CUBLAS_STATUS_SUCCESS) return blas_fail((be), st_, #call);                                  \
    } while (0)

sarco_status sarco_cu_blas_init(sarco_backend *be, char *msg, size_t n) {
    sarco_cu *cu = sarco_cu_of(be);
    cublasHandle_t h = NULL;
    cublasStatus_t st = cublasCreate(&h);
    if (st == CUBLAS_STATUS_SUCCESS) {
        cu->cublas = h;
        st = cublasSetStream(h, cu->stream);
    }
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasSetMathMode(h, cu->fast ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    if (st != CUBLAS_STATUS_SUCCESS) {
        snprintf(msg, n, "cublas: %s", cublasGetStatusString(st));
        return SARCO_ERR_BACKEND_UNAVAILABLE;
    }
    return SARCO_OK;
}

void sarco_cu_blas_fini(sarco_backend *be) {
    sarco_cu *cu = sarco_cu_of(be);
    cublasStatus_t st = cu->cublas ? cublasDestroy((cublasHandle_t)cu->cublas) : CUBLAS_STATUS_SUCCESS;
    if (st != CUBLAS_STATUS_SUCCESS) sarco_log(be->ctx, SARCO_LOG_ERROR, "cublas: cublasDestroy: %s", cublasGetStatusString(st));
    cu->cublas = NULL;
}

static int fits_int(int64_t v) { return v >= 0 && v <= 0x7fffffff; }

/* ---- linear ------------------------------------------------------------------------------------ */

struct sarco_linear {
    sarco_linear_desc d;
    float *w; /* (N, K) as PyTorch stores it */
    float *b; /* (N) or NULL */
};

void sarco_cu_linear_free(sarco_backend *be, sarco_linear *l) {
    if (!l) return;
    if (sarco_cu_device(be) == SARCO_OK) {
        sarco_cu_free(be, l->w);
        sarco_cu_free(be, l->b);
    }
    free(l);
}

sarco_status sarco_cu_linear_prepare(sarco_backend *be, const sarco_linear_desc *d, const float *w_host,
                                     const float *b_host, sarco_linear **out) {
    if (!out || !d || !w_host || (d->has_bias && !b_host))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda linear_prepare: NULL argument");
    *out = NULL;
    if (d->in_features < 1 || d->out_features < 1 || !fits_int(d->in_features) || !fits_int(d->out_features) ||
        d->act < SARCO_ACT_NONE || d->act >= SARCO_ACT_COUNT || !isfinite(d->alpha))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda linear_prepare: %lld -> %lld features, act %d",
                          (long long)d->in_features, (long long)d->out_features, (int)d->act);
    SARCO_CU_ENTER(be);
    sarco_linear *l = (sarco_linear *)calloc(1, sizeof *l);
    if (!l) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "cuda linear_prepare: out of memory");
    l->d = *d;
    sarco_status s = sarco_cu_upload_new(be, w_host, (size_t)(d->in_features * d->out_features), &l->w);
    if (s == SARCO_OK && d->has_bias) s = sarco_cu_upload_new(be, b_host, (size_t)d->out_features, &l->b);
    if (s != SARCO_OK) {
        sarco_cu_linear_free(be, l);
        return s;
    }
    *out = l;
    return SARCO_OK;
}

/* y (M, N) = act(x (M, K) W^T + b + residual): column-major y^T (N x M) = W (op T of the stored K x N) x^T. */
sarco_status sarco_cu_linear_run(sarco_backend *be, sarco_linear *l, int64_t m, const float *x,
                                 const float *residual, float *y) {
    if (!l || !x || !y) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda linear_run: NULL argument");
    if (x == y) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda linear_run: y may not alias x");
    if (!fits_int(m)) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda linear_run: %lld rows", (long long)m);
    if (m == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    int K = (int)l->d.in_features, N = (int)l->d.out_features;
    const float one = 1.0f, beta = residual == y ? 1.0f : 0.0f; /* y += ... when the residual is y itself */
    BLAS_TRY(be, cublasSgemm(handle_of(be), CUBLAS_OP_T, CUBLAS_OP_N, N, (int)m, K, &one, l->w, K, x, K, &beta, y, N));
    SARCO_CU_LAUNCHED(be);
    const float *res = residual && residual != y ? residual : NULL;
    if (!l->b && !res && l->d.act == SARCO_ACT_NONE) return SARCO_OK;
    return sarco_cu_bias_act(be, m, N, y, l->b, res, l->d.act, l->d.alpha);
}

/* ---- strided batched GEMM ------------------------------------------------------------------------ */

/* C[b] (m x n, row stride c_rs) = alpha A[b] B[b] + beta C[b], as C^T = B^T A^T in column-major:
 * cuBLAS's "A" is op(B^T) (n x k), its "B" is op(A^T) (k x m), its C is C^T (n x m, ld c_rs). */
sarco_status sarco_cu_gemm(sarco_backend *be, const sarco_gemm_desc *d, const float *a, const float *b, float *c) {
    if (!d || !a || !b || !c) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda gemm: NULL argument");
    if (d->batch < 0 || d->m < 0 || d->n < 0 || d->k < 0)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda gemm: negative size");
    if (d->batch == 0 || d->m == 0 || d->n == 0) return SARCO_OK;
    sarco_gemm_map g;
    int ok = sarco_gemm_map_desc(d, &g);
    if (!ok || !fits_int(d->batch) || !fits_int(d->m) || !fits_int(d->n) || !fits_int(d->k) || !fits_int(g.lda) ||
        !fits_int(g.ldb) || !fits_int(g.ldc))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "cuda gemm: batch %lld, %lld x %lld x %lld with strides A (%lld, %lld), B (%lld, %lld), "
                          "C row %lld cannot map to cuBLAS (one stride of each operand must be 1)",
                          (long long)d->batch, (long long)d->m, (long long)d->n, (long long)d->k,
                          (long long)d->a_rs, (long long)d->a_cs, (long long)d->b_rs, (long long)d->b_cs,
                          (long long)d->c_rs);
    SARCO_CU_ENTER(be);
    cublasHandle_t h = handle_of(be);
    cublasOperation_t opa = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (d->batch == 1) {
        BLAS_TRY(be, cublasSgemm(h, opa, opb, (int)g.m, (int)g.n, (int)g.k, &d->alpha, b, (int)g.lda, a, (int)g.ldb,
                                 &d->beta, c, (int)g.ldc));
    } else {
        BLAS_TRY(be, cublasSgemmStridedBatched(h, opa, opb, (int)g.m, (int)g.n, (int)g.k, &d->alpha, b, (int)g.lda,
                                               (long long)d->b_bs, a, (int)g.ldb, (long long)d->a_bs, &d->beta, c,
                                               (int)g.ldc, (long long)d->c_bs, (int)d->batch));
    }
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}
