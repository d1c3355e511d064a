/* The CUDA backend's private state and helpers, shared by lib/cuda/ and kernels/ (.cu files).
 * Only libsarco_cuda.so includes this; everything here is hidden in the plugin. */
#ifndef SARCO_CUDA_INTERNAL_H
#define SARCO_CUDA_INTERNAL_H

#include <cuda_runtime.h>

extern "C" {
#include "../ops/ops.h"
}

/* A device buffer handed out by alloc, with its size (the device memory limit counts bytes). */
typedef struct sarco_cu_buf {
    void *p;
    size_t bytes;
} sarco_cu_buf;

/* One per context: the device, its stream and library handles, the scratch arena, live buffers. */
typedef struct sarco_cu {
    int device;
    int fast;                /* TF32 tensor cores allowed (precision TF32 or FP16) */
    int sm_count;
    int smem_optin;          /* shared memory a block may opt in to, bytes */
    int strict;              /* SARCO_CUDA_STRICT=1: every fallback is an error */
    int sync_each;           /* SARCO_CUDA_SYNC=1: synchronise and check after every kernel and library call */
    cudaStream_t stream;     /* every op, copy and allocation is ordered on this one stream */
    cudaMemPool_t pool;      /* context-owned pool (NULL: plain cudaMalloc/cudaFree) */
    void *cublas;            /* cublasHandle_t, lib/cuda/blas.cu */
    void *cudnn;             /* cudnnHandle_t, lib/cuda/cudnn_conv.cu */
    void *arena;             /* scratch for one op at a time: cuDNN workspace, norm partials */
    size_t arena_bytes;
    size_t ws_cap;           /* largest cuDNN workspace taken (SARCO_CUDA_WORKSPACE_MIB, default 256 MiB) */
    size_t ws_largest_asked; /* largest workspace cuDNN's chosen algorithms asked for (logged, bench) */
    size_t dev_bytes;        /* bytes held through sarco_cu_malloc, arena included */
    size_t dev_limit;        /* options.device_memory_limit or $SARCO_CUDA_MEMORY_LIMIT; 0 = none */
    cudaError_t pending;     /* an error from a call that could not return one (a free): the next op reports it */
    char pending_what[96];
    sarco_cu_buf *live;      /* device buffers handed out by alloc, freed at destroy if still held */
    size_t nlive, cap;
} sarco_cu;

static inline sarco_cu *sarco_cu_of(sarco_backend *be) { return (sarco_cu *)be->impl; }

/* Error mapping: every CUDA runtime / library status becomes SARCO_ERR_DEVICE with the library's text. */
SARCO_INTERNAL sarco_status sarco_cu_fail(sarco_backend *be, cudaError_t e, const char *what);
#define SARCO_CU_TRY(be, call)                                                                                 \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess) return sarco_cu_fail((be), e_, #call);                                          \
    } while (0)
/* After a <<<>>> launch or a library call: configuration errors show up here; with SARCO_CUDA_SYNC=1
 * the stream is synchronised too, so a fault inside the kernel is reported against `op`. */
SARCO_INTERNAL sarco_status sarco_cu_launched(sarco_backend *be, const char *op);
#define SARCO_CU_LAUNCHED(be)                                                                                  \
    do {                                                                                                       \
        sarco_status s_ = sarco_cu_launched((be), __func__);                                                   \
        if (s_ != SARCO_OK) return s_;                                                                         \
    } while (0)
/* A fallback (another algorithm, the direct kernel, an unfused path): logged as a warning and SARCO_OK,
 * or with SARCO_CUDA_STRICT=1 SARCO_ERR_DEVICE with the same text. */
SARCO_INTERNAL sarco_status sarco_cu_fallback(sarco_backend *be, const char *fmt, ...) SARCO_PRINTF(2, 3);

/* Makes the context's device current for this host thread (contexts on two devices may share a thread),
 * and reports an error left pending by an earlier call that could not return one. */
SARCO_INTERNAL sarco_status sarco_cu_enter(sarco_backend *be);
/* Only the device part, for free paths (they cannot return the pending error, so they leave it). */
SARCO_INTERNAL sarco_status sarco_cu_device(sarco_backend *be);
#define SARCO_CU_ENTER(be)                                                                                     \
    do {                                                                                                       \
        sarco_status s_ = sarco_cu_enter(be);                                                                  \
        if (s_ != SARCO_OK) return s_;                                                                         \
    } while (0)

/* Device memory on the context's stream (stream-ordered, so no hidden device synchronisation). */
SARCO_INTERNAL sarco_status sarco_cu_malloc(sarco_backend *be, size_t bytes, void **out);
SARCO_INTERNAL void sarco_cu_free(sarco_backend *be, void *p);
/* The scratch arena, grown to at least `bytes`; valid until the next op. Freed when an allocation
 * runs out of memory (trim and retry), so it never holds memory a live buffer needs. */
SARCO_INTERNAL sarco_status sarco_cu_scratch(sarco_backend *be, size_t bytes, void **out);
/* Host weights -> new device buffer (waits for the copy, so the host buffer may be freed at once). */
SARCO_INTERNAL sarco_status sarco_cu_upload_new(sarco_backend *be, const float *host, size_t count, float **out);

/* Grid for a grid-stride loop over n elements with `threads` per block. */
static inline unsigned sarco_cu_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > (1 << 20)) b = 1 << 20;
    return (unsigned)b;
}
#define SARCO_CU_THREADS 256
#define SARCO_CU_FOR(i, n)                                                                                     \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

/* Memory policy (docs/cuda.md): freed pool blocks kept cached up to SARCO_CU_POOL_KEEP, cuDNN workspaces
 * capped at SARCO_CU_WORKSPACE_CAP (SARCO_CUDA_WORKSPACE_MIB overrides it). */
#define SARCO_CU_POOL_KEEP ((size_t)512 << 20)
#define SARCO_CU_WORKSPACE_CAP ((size_t)256 << 20)

/* ---- library parts (lib/cuda/) ---- */
/* "cuDNN 9.19.0 for CUDA 13.0 (built with 9.19.0), cuBLAS 130100": what runs, for the backend's detail. */
SARCO_INTERNAL void sarco_cu_dnn_describe(sarco_backend *be, char *buf, size_t n);
SARCO_INTERNAL sarco_status sarco_cu_dnn_init(sarco_backend *be, char *msg, size_t n);
SARCO_INTERNAL void sarco_cu_dnn_fini(sarco_backend *be);
SARCO_INTERNAL sarco_status sarco_cu_conv_prepare(sarco_backend *be, const sarco_conv_desc *d, int transposed,
                                                  const float *w_host, const float *b_host, sarco_conv **out);
SARCO_INTERNAL sarco_status sarco_cu_conv_run(sarco_backend *be, sarco_conv *c, int64_t n, const int64_t *in,
                                              const float *x, const float *residual, float *y);
SARCO_INTERNAL void sarco_cu_conv_free(sarco_backend *be, sarco_conv *c);

SARCO_INTERNAL sarco_status sarco_cu_blas_init(sarco_backend *be, char *msg, size_t n);
SARCO_INTERNAL void sarco_cu_blas_fini(sarco_backend *be);
SARCO_INTERNAL sarco_status sarco_cu_linear_prepare(sarco_backend *be, const sarco_linear_desc *d,
                                                    const float *w_host, const float *b_host, sarco_linear **out);
SARCO_INTERNAL sarco_status sarco_cu_linear_run(sarco_backend *be, sarco_linear *l, int64_t m, const float *x,
                                                const float *residual, float *y);
SARCO_INTERNAL void sarco_cu_linear_free(sarco_backend *be, sarco_linear *l);
SARCO_INTERNAL sarco_status sarco_cu_gemm(sarco_backend *be, const sarco_gemm_desc *d, const float *a,
                                          const float *b, float *c);

/* ---- our kernels (kernels/, .cu files) ---- */
/* y (rows, C) = act(y + bias[c] + res): the epilogue of conv/deconv/linear when the library cannot fuse it.
 * bias and res may be NULL; res may not alias y (callers fold that case into the library call's beta). */
SARCO_INTERNAL sarco_status sarco_cu_bias_act(sarco_backend *be, int64_t rows, int64_t c, float *y,
                                              const float *bias, const float *res, sarco_act act, float alpha);
/* The direct conv/deconv kernel (cuDNN fallback): w in the (K, k..., C/g) layout, res may alias y. */
SARCO_INTERNAL sarco_status sarco_cu_conv_direct(sarco_backend *be, const sarco_conv_desc *d, int transposed, int64_t n,
                                                 const int64_t *in, const int64_t *out, const float *x, const float *w,
                                                 const float *bias, const float *res, float *y);
SARCO_INTERNAL sarco_status sarco_cu_act(sarco_backend *be, sarco_act act, float alpha, int64_t n, const float *x,
                                         float *y);
SARCO_INTERNAL sarco_status sarco_cu_binary(sarco_backend *be, sarco_binop op, const sarco_bcast_desc *d,
                                            const float *a, const float *b, float *y);
SARCO_INTERNAL sarco_status sarco_cu_channel_affine(sarco_backend *be, int64_t rows, int64_t c, const float *x,
                                                    const float *scale, const float *shift, sarco_act act,
                                                    float alpha, float *y);
SARCO_INTERNAL sarco_status sarco_cu_layernorm(sarco_backend *be, int64_t rows, int64_t c, const float *x,
                                               const float *gamma, const float *beta, float eps, float *y);
SARCO_INTERNAL sarco_status sarco_cu_instnorm(sarco_backend *be, int64_t n, int64_t s, int64_t c, const float *x,
                                              const float *gamma, const float *beta, float eps,
                                              const float *residual, sarco_act act, float alpha, float *y);
SARCO_INTERNAL sarco_status sarco_cu_softmax(sarco_backend *be, int64_t outer, int64_t n, int64_t inner,
                                             const float *x, float *y);
SARCO_INTERNAL sarco_status sarco_cu_concat(sarco_backend *be, int count, const float *const *xs,
                                            const int64_t *sizes, int64_t outer, int64_t inner, float *y);
SARCO_INTERNAL sarco_status sarco_cu_to_cl(sarco_backend *be, int64_t n, int64_t c, int64_t s, const float *x,
                                           float *y);
SARCO_INTERNAL sarco_status sarco_cu_from_cl(sarco_backend *be, int64_t n, int64_t c, int64_t s, const float *x,
                                             float *y);
SARCO_INTERNAL sarco_status sarco_cu_patchify(sarco_backend *be, const sarco_patch_desc *d, const float *x,
                                              float *y);
SARCO_INTERNAL sarco_status sarco_cu_unpatchify(sarco_backend *be, const sarco_patch_desc *d, const float *x,
                                                float *y);
SARCO_INTERNAL sarco_status sarco_cu_pool(sarco_backend *be, const sarco_pool_desc *d, int64_t n, int64_t c,
                                          const int64_t *in, const float *x, float *y);
SARCO_INTERNAL sarco_status sarco_cu_adaptive_avg_pool2d(sarco_backend *be, int64_t n, int64_t c, const int64_t *in,
                                                         const int64_t *out, const float *x, float *y);
/* kernels/window.cu */
SARCO_INTERNAL sarco_status sarco_cu_window_accumulate(sarco_backend *be, const sarco_window_desc *d, const float *y,
                                                       const float *w, float *acc, float *cnt);
SARCO_INTERNAL sarco_status sarco_cu_argmax_labels(sarco_backend *be, int64_t c, int64_t count, int64_t chan,
                                                   const float *acc, const float *cnt, int bits, void *labels);
/* kernels/measure.cu */
SARCO_INTERNAL sarco_status sarco_cu_edt_axis(sarco_backend *be, const sarco_edt_desc *d, const uint8_t *sites,
                                              const uint8_t *query, float *f);
SARCO_INTERNAL sarco_status sarco_cu_label_stats(sarco_backend *be, int64_t n, const uint16_t *labels,
                                                 const float *image, int64_t nlabels, sarco_hu_acc *acc);
/* kernels/swin.cu */
SARCO_INTERNAL sarco_status sarco_cu_swin_partition(sarco_backend *be, const sarco_swin_desc *d, const float *x,
                                                    float *y);
SARCO_INTERNAL sarco_status sarco_cu_swin_reverse(sarco_backend *be, const sarco_swin_desc *d, const float *x,
                                                  const float *residual, float *y);
SARCO_INTERNAL sarco_status sarco_cu_swin_attention(sarco_backend *be, const sarco_swin_desc *d, int64_t heads,
                                                    const float *table, const float *qkv, float *out);
SARCO_INTERNAL sarco_status sarco_cu_patch_merge(sarco_backend *be, int64_t n, int64_t h, int64_t w, int64_t c,
                                                 const float *x, float *y);

#endif
