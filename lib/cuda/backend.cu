/* The CUDA backend: device, stream, memory and the op table. libsarco_cuda.so exports only
 * sarco_cuda_create and sarco_cuda_abi; libsarco.so reaches them through dlopen (lib/ops/cuda_loader.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

sarco_status sarco_cu_fail(sarco_backend *be, cudaError_t e, const char *what) {
    return sarco_fail(be->ctx, SARCO_ERR_DEVICE, "cuda: %s: %s (%s)", what, cudaGetErrorString(e),
                      cudaGetErrorName(e));
}

/* ---- device memory -------------------------------------------------------------------------- */

static sarco_status track(sarco_backend *be, void *p) {
    sarco_cu *cu = sarco_cu_of(be);
    if (cu->nlive == cu->cap) {
        size_t cap = cu->cap ? 2 * cu->cap : 64;
        void **live = (void **)realloc(cu->live, cap * sizeof *live);
        if (!live) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "cuda: cannot grow the buffer list");
        cu->live = live;
        cu->cap = cap;
    }
    cu->live[cu->nlive++] = p;
    return SARCO_OK;
}

static void raw_free(sarco_cu *cu, void *p) {
    if (cu->pool)
        cudaFreeAsync(p, cu->stream);
    else
        cudaFree(p);
}

sarco_status sarco_cu_malloc(sarco_backend *be, size_t bytes, void **out) {
    sarco_cu *cu = sarco_cu_of(be);
    *out = NULL;
    void *p = NULL;
    cudaError_t e = cu->pool ? cudaMallocFromPoolAsync(&p, bytes ? bytes : 1, cu->pool, cu->stream)
                             : cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is not sticky: clear it for the next call */
        return sarco_fail(be->ctx, e == cudaErrorMemoryAllocation ? SARCO_ERR_OUT_OF_MEMORY : SARCO_ERR_DEVICE,
                          "cuda: cannot allocate %zu bytes on device %d: %s", bytes, cu->device,
                          cudaGetErrorString(e));
    }
    sarco_status s = track(be, p);
    if (s != SARCO_OK) {
        raw_free(cu, p);
        return s;
    }
    *out = p;
    return SARCO_OK;
}

void sarco_cu_free(sarco_backend *be, void *p) {
    sarco_cu *cu = sarco_cu_of(be);
    if (!p) return;
    for (size_t i = cu->nlive; i-- > 0;) { /* newest first: buffers are mostly freed in reverse order */
        if (cu->live[i] == p) {
            cu->live[i] = cu->live[--cu->nlive];
            raw_free(cu, p);
            return;
        }
    }
}

sarco_status sarco_cu_scratch(sarco_backend *be, size_t bytes, void **out) {
    sarco_cu *cu = sarco_cu_of(be);
    if (bytes > cu->arena_bytes) {
        /* stream-ordered: work queued on the old arena finishes before its memory is reused */
        sarco_cu_free(be, cu->arena);
        cu->arena = NULL;
        cu->arena_bytes = 0;
        size_t grow = bytes + bytes / 4;
        sarco_status s = sarco_cu_malloc(be, grow, &cu->arena);
        if (s != SARCO_OK) return s;
        cu->arena_bytes = grow;
    }
    *out = cu->arena;
    return SARCO_OK;
}

sarco_status sarco_cu_upload_new(sarco_backend *be, const float *host, size_t count, float **out) {
    sarco_cu *cu = sarco_cu_of(be);
    void *p;
    *out = NULL;
    sarco_status s = sarco_cu_malloc(be, count * sizeof(float), &p);
    if (s != SARCO_OK) return s;
    cudaError_t e = cudaMemcpyAsync(p, host, count * sizeof(float), cudaMemcpyHostToDevice, cu->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(cu->stream);
    if (e != cudaSuccess) {
        sarco_cu_free(be, p);
        return sarco_cu_fail(be, e, "uploading weights");
    }
    *out = (float *)p;
    return SARCO_OK;
}

/* ---- the memory part of the op table ---------------------------------------------------------- */

static sarco_status cu_alloc(sarco_backend *be, size_t bytes, void **out) {
    SARCO_CU_ENTER(be);
    return sarco_cu_malloc(be, bytes, out);
}

static void cu_free(sarco_backend *be, void *p) {
    if (sarco_cu_enter(be) == SARCO_OK) sarco_cu_free(be, p);
}

/* Host -> device at the API edge; returns once the host buffer may be reused. */
static sarco_status cu_upload(sarco_backend *be, void *dst, const void *src, size_t bytes) {
    SARCO_CU_ENTER(be);
    sarco_cu *cu = sarco_cu_of(be);
    SARCO_CU_TRY(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu->stream));
    SARCO_CU_TRY(be, cudaStreamSynchronize(cu->stream));
    return SARCO_OK;
}

static sarco_status cu_download(sarco_backend *be, void *dst, const void *src, size_t bytes) {
    SARCO_CU_ENTER(be);
    sarco_cu *cu = sarco_cu_of(be);
    SARCO_CU_TRY(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cu->stream));
    SARCO_CU_TRY(be, cudaStreamSynchronize(cu->stream));
    return SARCO_OK;
}

static sarco_status cu_memset0(sarco_backend *be, void *p, size_t bytes) {
    SARCO_CU_ENTER(be);
    SARCO_CU_TRY(be, cudaMemsetAsync(p, 0, bytes, sarco_cu_of(be)->stream));
    return SARCO_OK;
}

static sarco_status cu_copy(sarco_backend *be, void *dst, const void *src, size_t bytes) {
    SARCO_CU_ENTER(be);
    if (dst == src || bytes == 0) return SARCO_OK;
    SARCO_CU_TRY(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, sarco_cu_of(be)->stream));
    return SARCO_OK;
}

static sarco_status cu_sync(sarco_backend *be) {
    SARCO_CU_ENTER(be);
    SARCO_CU_TRY(be, cudaStreamSynchronize(sarco_cu_of(be)->stream));
    return SARCO_OK;
}

/* Frees everything the context still holds on the device, then the handles and the stream. */
static void cu_destroy(sarco_backend *be) {
    if (!be) return;
    sarco_cu *cu = sarco_cu_of(be);
    if (cu) {
        if (cu->stream) {
            cudaSetDevice(cu->device);
            cudaStreamSynchronize(cu->stream);
        }
        sarco_cu_dnn_fini(be);
        sarco_cu_blas_fini(be);
        for (size_t i = 0; i < cu->nlive; i++) raw_free(cu, cu->live[i]);
        cu->nlive = 0;
        if (cu->stream) cudaStreamSynchronize(cu->stream);
        if (cu->pool) cudaMemPoolDestroy(cu->pool);
        if (cu->stream) cudaStreamDestroy(cu->stream);
        free(cu->live);
        free(cu);
    }
    free(be);
}

static const sarco_backend_ops cuda_ops = {
    .name = "cuda",
    .alloc = cu_alloc,
    .free = cu_free,
    .upload = cu_upload,
    .download = cu_download,
    .memset0 = cu_memset0,
    .copy = cu_copy,
    .sync = cu_sync,
    .conv_prepare = sarco_cu_conv_prepare,
    .conv_run = sarco_cu_conv_run,
    .conv_free = sarco_cu_conv_free,
    .linear_prepare = sarco_cu_linear_prepare,
    .linear_run = sarco_cu_linear_run,
    .linear_free = sarco_cu_linear_free,
    .gemm = sarco_cu_gemm,
    .layernorm = sarco_cu_layernorm,
    .instnorm = sarco_cu_instnorm,
    .channel_affine = sarco_cu_channel_affine,
    .act = sarco_cu_act,
    .binary = sarco_cu_binary,
    .softmax = sarco_cu_softmax,
    .concat = sarco_cu_concat,
    .to_cl = sarco_cu_to_cl,
    .from_cl = sarco_cu_from_cl,
    .patchify = sarco_cu_patchify,
    .unpatchify = sarco_cu_unpatchify,
    .pool = sarco_cu_pool,
    .adaptive_avg_pool2d = sarco_cu_adaptive_avg_pool2d,
    .window_accumulate = sarco_cu_window_accumulate,
    .argmax_labels = sarco_cu_argmax_labels,
    .edt_axis = sarco_cu_edt_axis,
    .label_stats = sarco_cu_label_stats,
    .swin_partition = sarco_cu_swin_partition,
    .swin_reverse = sarco_cu_swin_reverse,
    .swin_attention = sarco_cu_swin_attention,
    .patch_merge = sarco_cu_patch_merge,
    .destroy = cu_destroy,
};

/* ---- the plugin's two exports ----------------------------------------------------------------- */

extern "C" {
SARCO_API extern const int sarco_cuda_abi;
SARCO_API sarco_status sarco_cuda_create(sarco_context *ctx, sarco_backend **out, char *msg, size_t msg_size);
}

const int sarco_cuda_abi = SARCO_CUDA_ABI_VERSION;

static sarco_status unavailable(char *msg, size_t n, const char *what, cudaError_t e) {
    snprintf(msg, n, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    cudaGetLastError();
    return SARCO_ERR_BACKEND_UNAVAILABLE;
}

static sarco_status open_device(sarco_backend *be, char *msg, size_t n) {
    sarco_cu *cu = sarco_cu_of(be);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) return unavailable(msg, n, "cudaGetDeviceCount", e);
    if (count == 0) {
        snprintf(msg, n, "cudaGetDeviceCount: no CUDA device");
        return SARCO_ERR_BACKEND_UNAVAILABLE;
    }
    if (cu->device >= count) {
        snprintf(msg, n, "device %d asked for, but there %s %d CUDA device%s", cu->device, count == 1 ? "is" : "are",
                 count, count == 1 ? "" : "s");
        return SARCO_ERR_BACKEND_UNAVAILABLE;
    }
    if ((e = cudaSetDevice(cu->device)) != cudaSuccess) return unavailable(msg, n, "cudaSetDevice", e);
    int major = 0, minor = 0, pools = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, cu->device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, cu->device);
    cudaDeviceGetAttribute(&cu->sm_count, cudaDevAttrMultiProcessorCount, cu->device);
    cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, cu->device);
    if (major < 8) { /* the plugin carries sm_80 and sm_90 code and compute_90 PTX */
        snprintf(msg, n, "device %d has compute capability %d.%d; libsarco_cuda.so needs 8.0 or newer", cu->device,
                 major, minor);
        return SARCO_ERR_BACKEND_UNAVAILABLE;
    }
    if ((e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking)) != cudaSuccess)
        return unavailable(msg, n, "cudaStreamCreate", e);
    if (pools) {
        cudaMemPoolProps props;
        memset(&props, 0, sizeof props);
        props.allocType = cudaMemAllocationTypePinned;
        props.location.type = cudaMemLocationTypeDevice;
        props.location.id = cu->device;
        if ((e = cudaMemPoolCreate(&cu->pool, &props)) != cudaSuccess) return unavailable(msg, n, "cudaMemPoolCreate", e);
        /* keep freed blocks for reuse by the next forward instead of returning them at every sync */
        uint64_t keep = UINT64_MAX;
        if ((e = cudaMemPoolSetAttribute(cu->pool, cudaMemPoolAttrReleaseThreshold, &keep)) != cudaSuccess)
            return unavailable(msg, n, "cudaMemPoolSetAttribute", e);
    }
    sarco_status s = sarco_cu_blas_init(be, msg, n);
    if (s == SARCO_OK) s = sarco_cu_dnn_init(be, msg, n);
    return s;
}

sarco_status sarco_cuda_create(sarco_context *ctx, sarco_backend **out, char *msg, size_t msg_size) {
    char dummy[8];
    if (!msg || !msg_size) {
        msg = dummy;
        msg_size = sizeof dummy;
    }
    msg[0] = '\0';
    if (!ctx || !out) {
        snprintf(msg, msg_size, "sarco_cuda_create: NULL argument");
        return SARCO_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    sarco_backend *be = (sarco_backend *)calloc(1, sizeof *be);
    sarco_cu *cu = (sarco_cu *)calloc(1, sizeof *cu);
    if (!be || !cu) {
        free(be);
        free(cu);
        snprintf(msg, msg_size, "cannot allocate the CUDA backend");
        return SARCO_ERR_OUT_OF_MEMORY;
    }
    be->ops = &cuda_ops;
    be->ctx = ctx;
    be->impl = cu;
    cu->device = ctx->opts.device;
    cu->fast = ctx->opts.precision != SARCO_PRECISION_FP32;
    sarco_status s = open_device(be, msg, msg_size);
    if (s != SARCO_OK) {
        cu_destroy(be);
        return s;
    }
    if (ctx->opts.precision == SARCO_PRECISION_FP16)
        sarco_log(ctx, SARCO_LOG_WARN, "cuda: FP16 storage is not implemented; running TF32 with FP32 storage");
    *out = be;
    return SARCO_OK;
}
