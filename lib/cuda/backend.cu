/* The CUDA backend: device, stream, memory and the op table. libsarco_cuda.so exports only
 * sarco_cuda_create, its ABI record sarco_cuda_abi_info and the bare ABI number sarco_cuda_abi;
 * libsarco.so reaches them through dlopen (lib/ops/cuda_loader.c), which checks the record first. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_api.h>
#include <cudnn_version.h>

#include "cuda_internal.h"

sarco_status sarco_cu_fail(sarco_backend *be, cudaError_t e, const char *what) {
    return sarco_fail(be->ctx, SARCO_ERR_DEVICE, "cuda: %s: %s (%s)", what, cudaGetErrorString(e),
                      cudaGetErrorName(e));
}

sarco_status sarco_cu_device(sarco_backend *be) {
    int d = -1;
    if (cudaGetDevice(&d) == cudaSuccess && d == sarco_cu_of(be)->device) return SARCO_OK;
    SARCO_CU_TRY(be, cudaSetDevice(sarco_cu_of(be)->device));
    return SARCO_OK;
}

sarco_status sarco_cu_enter(sarco_backend *be) {
    sarco_cu *cu = sarco_cu_of(be);
    if (cu->pending != cudaSuccess) {
        cudaError_t e = cu->pending;
        cu->pending = cudaSuccess;
        char what[sizeof cu->pending_what + 32];
        snprintf(what, sizeof what, "%s (earlier, reported now)", cu->pending_what);
        return sarco_cu_fail(be, e, what);
    }
    return sarco_cu_device(be);
}

sarco_status sarco_cu_launched(sarco_backend *be, const char *op) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return sarco_cu_fail(be, e, op);
    if (sarco_cu_of(be)->sync_each) {
        e = cudaStreamSynchronize(sarco_cu_of(be)->stream);
        if (e != cudaSuccess) {
            char what[160];
            snprintf(what, sizeof what, "%s (SARCO_CUDA_SYNC=1: synchronised right after it)", op);
            return sarco_cu_fail(be, e, what);
        }
    }
    return SARCO_OK;
}

sarco_status sarco_cu_fallback(sarco_backend *be, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (sarco_cu_of(be)->strict)
        return sarco_fail(be->ctx, SARCO_ERR_DEVICE, "%s (SARCO_CUDA_STRICT=1 makes this fallback an error)", text);
    sarco_log(be->ctx, SARCO_LOG_WARN, "%s", text);
    return SARCO_OK;
}

/* ---- device memory -------------------------------------------------------------------------- */

static sarco_status track(sarco_backend *be, void *p, size_t bytes) {
    sarco_cu *cu = sarco_cu_of(be);
    if (cu->nlive == cu->cap) {
        size_t cap = cu->cap ? 2 * cu->cap : 64;
        sarco_cu_buf *live = (sarco_cu_buf *)realloc(cu->live, cap * sizeof *live);
        if (!live) return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "cuda: cannot grow the buffer list");
        cu->live = live;
        cu->cap = cap;
    }
    cu->live[cu->nlive].p = p;
    cu->live[cu->nlive++].bytes = bytes;
    cu->dev_bytes += bytes;
    return SARCO_OK;
}

/* Frees p; an error (which for a stream-ordered free is usually an earlier kernel's fault showing up)
 * is kept and reported by the next op, with what was being freed. */
static void raw_free(sarco_cu *cu, void *p) {
    cudaError_t e = cu->pool ? cudaFreeAsync(p, cu->stream) : cudaFree(p);
    if (e != cudaSuccess && cu->pending == cudaSuccess) {
        cu->pending = e;
        snprintf(cu->pending_what, sizeof cu->pending_what, "%s(%p)", cu->pool ? "cudaFreeAsync" : "cudaFree", p);
    }
}

static cudaError_t raw_malloc(sarco_cu *cu, size_t bytes, void **p) {
    return cu->pool ? cudaMallocFromPoolAsync(p, bytes, cu->pool, cu->stream) : cudaMalloc(p, bytes);
}

/* Out of memory: give back the arena and the pool's cached blocks, then the caller tries once more.
 * Returns 0 when there was nothing to give back (or giving it back failed). */
static int trim(sarco_backend *be) {
    sarco_cu *cu = sarco_cu_of(be);
    int freed = 0;
    if (cu->arena) {
        sarco_cu_free(be, cu->arena);
        cu->arena = NULL;
        cu->arena_bytes = 0;
        freed = 1;
    }
    if (cu->pool) { /* blocks freed on the stream return to the pool once the stream passes them */
        cudaError_t e = cudaStreamSynchronize(cu->stream);
        const char *what = "cudaStreamSynchronize (trimming the pool after out of memory)";
        if (e == cudaSuccess) {
            e = cudaMemPoolTrimTo(cu->pool, 0);
            what = "cudaMemPoolTrimTo";
        }
        if (e != cudaSuccess) { /* an earlier kernel's fault: the next op reports it */
            if (cu->pending == cudaSuccess) {
                cu->pending = e;
                snprintf(cu->pending_what, sizeof cu->pending_what, "%s", what);
            }
            return 0;
        }
        freed = 1;
    }
    return freed;
}

sarco_status sarco_cu_malloc(sarco_backend *be, size_t bytes, void **out) {
    sarco_cu *cu = sarco_cu_of(be);
    *out = NULL;
    if (bytes == 0) bytes = 1;
    if (cu->dev_limit && (bytes > cu->dev_limit || cu->dev_bytes > cu->dev_limit - bytes)) {
        if (cu->arena) trim(be); /* the arena may be what stands in the way */
        if (bytes > cu->dev_limit || cu->dev_bytes > cu->dev_limit - bytes)
            return sarco_fail(be->ctx, SARCO_ERR_OUT_OF_MEMORY, "cuda: %zu bytes on device %d would pass the context's "
                              "device memory limit of %zu bytes (%zu held)", bytes, cu->device, cu->dev_limit,
                              cu->dev_bytes);
    }
    void *p = NULL;
    cudaError_t e = raw_malloc(cu, bytes, &p);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError(); /* an allocation failure is not sticky: clear it for the next call */
        if (trim(be)) {
            sarco_log(be->ctx, SARCO_LOG_INFO, "cuda: out of memory for %zu bytes: trimmed the pool and the arena, "
                      "trying again", bytes);
            e = raw_malloc(cu, bytes, &p);
        }
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) cudaGetLastError();
        return sarco_fail(be->ctx, e == cudaErrorMemoryAllocation ? SARCO_ERR_OUT_OF_MEMORY : SARCO_ERR_DEVICE,
                          "cuda: cannot allocate %zu bytes on device %d: %s (%s); this context holds %zu bytes, the "
                          "device has %zu of %zu bytes free", bytes, cu->device, cudaGetErrorString(e),
                          cudaGetErrorName(e), cu->dev_bytes, fr, tot);
    }
    sarco_status s = track(be, p, bytes);
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
        if (cu->live[i].p == p) {
            cu->dev_bytes -= cu->live[i].bytes;
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
        if (grow < bytes) grow = bytes;
        sarco_status s = sarco_cu_malloc(be, grow, &cu->arena);
        if (s != SARCO_OK && grow > bytes) { /* the quarter's headroom is a nicety, not a need */
            sarco_clear_error(be->ctx);
            grow = bytes;
            s = sarco_cu_malloc(be, grow, &cu->arena);
        }
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
    if (sarco_cu_device(be) == SARCO_OK) sarco_cu_free(be, p);
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
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

static sarco_status cu_copy(sarco_backend *be, void *dst, const void *src, size_t bytes) {
    SARCO_CU_ENTER(be);
    if (dst == src || bytes == 0) return SARCO_OK;
    SARCO_CU_TRY(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, sarco_cu_of(be)->stream));
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

static sarco_status cu_sync(sarco_backend *be) {
    SARCO_CU_ENTER(be);
    SARCO_CU_TRY(be, cudaStreamSynchronize(sarco_cu_of(be)->stream));
    return SARCO_OK;
}

/* Frees everything the context still holds on the device, then the handles and the stream. Nothing
 * can be returned from here: failures are logged with the call that failed. */
static void destroy_check(sarco_backend *be, cudaError_t e, const char *what) {
    if (e != cudaSuccess)
        sarco_log(be->ctx, SARCO_LOG_ERROR, "cuda: freeing the context: %s: %s (%s)", what, cudaGetErrorString(e),
                  cudaGetErrorName(e));
}

static void cu_destroy(sarco_backend *be) {
    if (!be) return;
    sarco_cu *cu = sarco_cu_of(be);
    if (cu) {
        if (cu->stream) {
            destroy_check(be, cudaSetDevice(cu->device), "cudaSetDevice");
            destroy_check(be, cudaStreamSynchronize(cu->stream), "cudaStreamSynchronize");
        }
        sarco_cu_dnn_fini(be);
        sarco_cu_blas_fini(be);
        for (size_t i = 0; i < cu->nlive; i++) raw_free(cu, cu->live[i].p);
        cu->nlive = 0;
        if (cu->pending != cudaSuccess) destroy_check(be, cu->pending, cu->pending_what);
        if (cu->stream) destroy_check(be, cudaStreamSynchronize(cu->stream), "cudaStreamSynchronize");
        if (cu->pool) destroy_check(be, cudaMemPoolDestroy(cu->pool), "cudaMemPoolDestroy");
        if (cu->stream) destroy_check(be, cudaStreamDestroy(cu->stream), "cudaStreamDestroy");
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

/* ---- the plugin's exports ------------------------------------------------------------------------ */

extern "C" {
SARCO_API extern const int sarco_cuda_abi;
SARCO_API extern const sarco_cuda_abi_record sarco_cuda_abi_info;
SARCO_API sarco_status sarco_cuda_create(sarco_context *ctx, sarco_backend **out, char *msg, size_t msg_size);
}

const int sarco_cuda_abi = SARCO_CUDA_ABI_VERSION;
const sarco_cuda_abi_record sarco_cuda_abi_info = {
    SARCO_CUDA_ABI_VERSION, CUDART_VERSION, sizeof(sarco_context), sizeof(sarco_backend_ops), SARCO_BUILD_ID,
    CUDNN_VERSION, CUBLAS_VERSION,
};

static sarco_status unavailable(char *msg, size_t n, const char *what, cudaError_t e) {
    int drv = 0;
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    if (drv > 0)
        snprintf(msg, n, "%s: %s (%s); cudaDriverGetVersion: CUDA %d.%d", what, cudaGetErrorString(e),
                 cudaGetErrorName(e), drv / 1000, drv % 1000 / 10);
    else
        snprintf(msg, n, "%s: %s (%s); cudaDriverGetVersion: no driver", what, cudaGetErrorString(e), cudaGetErrorName(e));
    cudaGetLastError();
    return SARCO_ERR_BACKEND_UNAVAILABLE;
}

/* "1" turns a switch on; anything else (unset, "0") leaves it off. */
static int env_on(const char *name) {
    const char *v = getenv(name);
    return v && strcmp(v, "1") == 0;
}

/* A byte count with an optional K, M, G or T suffix (powers of 1024): 1 when it parses, else 0. */
static int parse_bytes(const char *v, size_t *out) {
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v) return 0;
    int shift = 0;
    switch (*end) {
    case 'K': case 'k': shift = 10; end++; break;
    case 'M': case 'm': shift = 20; end++; break;
    case 'G': case 'g': shift = 30; end++; break;
    case 'T': case 't': shift = 40; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B') end += *end == 'i' && end[1] == 'B' ? 2 : 1;
    if (*end || (shift && x > (~0ull >> shift))) return 0;
    *out = (size_t)(x << shift);
    return 1;
}

#define ATTR(be, attr, out)                                                                                    \
    do {                                                                                                       \
        cudaError_t e_ = cudaDeviceGetAttribute((out), (attr), cu->device);                                    \
        if (e_ != cudaSuccess) return unavailable(msg, n, "cudaDeviceGetAttribute(" #attr ")", e_);            \
    } while (0)

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
    ATTR(be, cudaDevAttrComputeCapabilityMajor, &major);
    ATTR(be, cudaDevAttrComputeCapabilityMinor, &minor);
    ATTR(be, cudaDevAttrMultiProcessorCount, &cu->sm_count);
    ATTR(be, cudaDevAttrMemoryPoolsSupported, &pools);
    ATTR(be, cudaDevAttrMaxSharedMemoryPerBlockOptin, &cu->smem_optin);
    if (major < 8) { /* the plugin carries sm_80 and sm_90 code and compute_90 PTX */
        snprintf(msg, n, "device %d has compute capability %d.%d; libsarco_cuda.so needs 8.0 or newer", cu->device,
                 major, minor);
        return SARCO_ERR_BACKEND_UNAVAILABLE;
    }
    if ((e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking)) != cudaSuccess)
        return unavailable(msg, n, "cudaStreamCreate", e);
    size_t fr = 0, tot = 0;
    if ((e = cudaMemGetInfo(&fr, &tot)) != cudaSuccess) return unavailable(msg, n, "cudaMemGetInfo", e);
    if (pools) {
        cudaMemPoolProps props;
        memset(&props, 0, sizeof props);
        props.allocType = cudaMemAllocationTypePinned;
        props.location.type = cudaMemLocationTypeDevice;
        props.location.id = cu->device;
        if ((e = cudaMemPoolCreate(&cu->pool, &props)) != cudaSuccess) return unavailable(msg, n, "cudaMemPoolCreate", e);
        /* freed blocks up to this much stay cached for the next forward; the rest goes back to the device at
         * each synchronisation, so a second context or another library in the process can have it */
        uint64_t keep = (uint64_t)SARCO_CU_POOL_KEEP;
        if (cu->dev_limit && keep > cu->dev_limit / 2) keep = cu->dev_limit / 2;
        if ((e = cudaMemPoolSetAttribute(cu->pool, cudaMemPoolAttrReleaseThreshold, &keep)) != cudaSuccess)
            return unavailable(msg, n, "cudaMemPoolSetAttribute(cudaMemPoolAttrReleaseThreshold)", e);
    }
    sarco_status s = sarco_cu_blas_init(be, msg, n);
    if (s == SARCO_OK) s = sarco_cu_dnn_init(be, msg, n);
    if (s != SARCO_OK) return s;
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, cu->device)) != cudaSuccess)
        return unavailable(msg, n, "cudaGetDeviceProperties", e);
    int drv = 0;
    if ((e = cudaDriverGetVersion(&drv)) != cudaSuccess) return unavailable(msg, n, "cudaDriverGetVersion", e);
    char lim[64] = "none", libs[256];
    sarco_cu_dnn_describe(be, libs, sizeof libs);
    if (cu->dev_limit) snprintf(lim, sizeof lim, "%.1f GiB", cu->dev_limit / 1073741824.0);
    snprintf(msg, n, "device %d %s (sm_%d%d, %d SMs, %.1f GiB, %.1f GiB free), CUDA runtime %d.%d, driver CUDA %d.%d, "
             "%s; memory limit %s, workspace cap %zu MiB%s%s", cu->device, prop.name, major, minor, cu->sm_count,
             tot / 1073741824.0, fr / 1073741824.0, CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10, drv / 1000,
             drv % 1000 / 10, libs, lim, cu->ws_cap >> 20, cu->strict ? ", strict" : "",
             cu->sync_each ? ", sync after every op" : "");
    return SARCO_OK;
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
    cu->strict = env_on("SARCO_CUDA_STRICT");
    cu->sync_each = env_on("SARCO_CUDA_SYNC");
    cu->ws_cap = SARCO_CU_WORKSPACE_CAP;
    cu->dev_limit = ctx->opts.device_memory_limit;
    const char *v = getenv("SARCO_CUDA_WORKSPACE_MIB");
    size_t mib;
    if (v && *v) {
        if (!parse_bytes(v, &mib) || mib == 0 || mib > ((size_t)1 << 20)) {
            snprintf(msg, msg_size, "SARCO_CUDA_WORKSPACE_MIB=%s: want a whole number of MiB, 1 to 1048576", v);
            free(be);
            free(cu);
            return SARCO_ERR_INVALID_ARGUMENT;
        }
        cu->ws_cap = mib << 20;
    }
    v = getenv("SARCO_CUDA_MEMORY_LIMIT");
    if (!cu->dev_limit && v && *v && !parse_bytes(v, &cu->dev_limit)) {
        snprintf(msg, msg_size, "SARCO_CUDA_MEMORY_LIMIT=%s: want bytes, optionally with K, M, G or T (1024s)", v);
        free(be);
        free(cu);
        return SARCO_ERR_INVALID_ARGUMENT;
    }
    sarco_status s = open_device(be, msg, msg_size);
    if (s != SARCO_OK) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", msg);
        cu_destroy(be);
        snprintf(msg, msg_size, "%s", keep);
        return s;
    }
    if (ctx->opts.precision == SARCO_PRECISION_FP16) {
        s = sarco_cu_fallback(be, "cuda: FP16 storage is not implemented; running TF32 with FP32 storage");
        if (s != SARCO_OK) {
            snprintf(msg, msg_size, "%s", ctx->err);
            cu_destroy(be);
            return s;
        }
    }
    *out = be;
    return SARCO_OK;
}
