/* Context lifetime, host allocation with limits, version, progress. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "../ops/ops.h"

#define STR2(x) #x
#define STR(x) STR2(x)

unsigned sarco_version_number(void) { return SARCO_VERSION_NUMBER; }

const char *sarco_version_string(void) {
    return STR(SARCO_VERSION_MAJOR) "." STR(SARCO_VERSION_MINOR) "." STR(SARCO_VERSION_PATCH);
}

void sarco_context_options_init(sarco_context_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->backend = SARCO_BACKEND_AUTO;
    o->precision = SARCO_PRECISION_FP32;
    o->log_level = SARCO_LOG_WARN;
}

static void set_msg(char *msg, size_t n, const char *text) {
    if (msg && n) snprintf(msg, n, "%s", text);
}

sarco_status sarco_context_create_ex(const sarco_context_options *opts, sarco_context **out, char *msg,
                                     size_t msg_size) {
    set_msg(msg, msg_size, "");
    if (!out) {
        set_msg(msg, msg_size, "sarco_context_create: out is NULL");
        return SARCO_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    sarco_context_options o;
    sarco_context_options_init(&o);
    if (opts) {
        if (opts->struct_size == 0 || opts->struct_size > sizeof o) {
            set_msg(msg, msg_size, "sarco_context_create: options.struct_size is not set "
                                   "(call sarco_context_options_init first)");
            return SARCO_ERR_INVALID_ARGUMENT;
        }
        memcpy(&o, opts, opts->struct_size); /* an older, smaller struct keeps our defaults for the rest */
        o.struct_size = sizeof o;
    }
    if (o.backend < SARCO_BACKEND_AUTO || o.backend > SARCO_BACKEND_CUDA || o.threads < 0 || o.device < 0 ||
        o.precision < SARCO_PRECISION_FP32 || o.precision > SARCO_PRECISION_BF16) {
        set_msg(msg, msg_size, "sarco_context_create: an option is out of range (backend, device, threads "
                               "or precision)");
        return SARCO_ERR_INVALID_ARGUMENT;
    }
    sarco_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        set_msg(msg, msg_size, "sarco_context_create: out of memory");
        return SARCO_ERR_OUT_OF_MEMORY;
    }
    ctx->opts = o;

    sarco_status s = SARCO_ERR_BACKEND_UNAVAILABLE;
    if (o.precision == SARCO_PRECISION_BF16 && o.backend == SARCO_BACKEND_CUDA) {
        set_msg(msg, msg_size, "sarco_context_create: BF16 is a CPU mode; on CUDA use TF32 or FP16");
        free(ctx);
        return SARCO_ERR_UNSUPPORTED;
    }
    if (o.precision == SARCO_PRECISION_BF16 && o.backend == SARCO_BACKEND_AUTO)
        sarco_note(ctx, "backend auto: using the CPU (BF16 is a CPU mode)");
    else if (o.backend != SARCO_BACKEND_CPU) {
        s = sarco_backend_open_cuda(ctx, &ctx->be);
        if (s != SARCO_OK && o.backend == SARCO_BACKEND_CUDA) {
            set_msg(msg, msg_size, ctx->err);
            free(ctx);
            return s;
        }
        if (s != SARCO_OK) {
            char why[sizeof ctx->err];
            snprintf(why, sizeof why, "%s", ctx->err);
            sarco_note(ctx, "backend auto: using the CPU (CUDA unavailable: %s)", why);
        }
    }
    if (s != SARCO_OK) {
        char note[sizeof ctx->err];
        snprintf(note, sizeof note, "%s", ctx->err);
        s = sarco_backend_create_cpu(ctx, &ctx->be);
        if (s != SARCO_OK) {
            set_msg(msg, msg_size, ctx->err);
            free(ctx);
            return s;
        }
        snprintf(ctx->err, sizeof ctx->err, "%s", note); /* keep AUTO's reason readable */
    }
    *out = ctx;
    return SARCO_OK;
}

sarco_status sarco_context_create(const sarco_context_options *opts, sarco_context **out) {
    return sarco_context_create_ex(opts, out, NULL, 0);
}

void sarco_context_free(sarco_context *ctx) {
    if (!ctx) return;
    if (ctx->be && ctx->be->ops->destroy) ctx->be->ops->destroy(ctx->be);
    free(ctx);
}

sarco_backend_kind sarco_context_backend(const sarco_context *ctx) {
    if (!ctx || !ctx->be) return SARCO_BACKEND_CPU;
    return strcmp(ctx->be->ops->name, "cuda") == 0 ? SARCO_BACKEND_CUDA : SARCO_BACKEND_CPU;
}

void sarco_context_set_progress(sarco_context *ctx, sarco_progress_fn fn, void *user) {
    if (!ctx) return;
    ctx->progress = fn;
    ctx->progress_user = user;
}

sarco_status sarco_progress(sarco_context *ctx, const char *stage, int64_t done, int64_t total) {
    if (ctx && ctx->progress && ctx->progress(ctx->progress_user, stage, done, total))
        return sarco_fail(ctx, SARCO_ERR_CANCELLED, "%s: cancelled by the progress callback", stage);
    return SARCO_OK;
}

void *sarco_ctx_malloc(sarco_context *ctx, size_t bytes, const char *what) {
    if (ctx && ctx->opts.memory_limit && (bytes > ctx->opts.memory_limit ||
                                          ctx->host_bytes > ctx->opts.memory_limit - bytes)) {
        sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: %zu bytes would pass the context's memory limit of %zu",
                   what, bytes, ctx->opts.memory_limit);
        return NULL;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", what, bytes);
        return NULL;
    }
    if (ctx) ctx->host_bytes += bytes;
    return p;
}

void sarco_ctx_free(sarco_context *ctx, void *p, size_t bytes) {
    if (!p) return;
    if (ctx) ctx->host_bytes -= bytes <= ctx->host_bytes ? bytes : ctx->host_bytes;
    free(p);
}

int sarco_dims_product(const int64_t *dims, int n, int64_t limit, int64_t *out) {
    int64_t p = 1;
    for (int i = 0; i < n; i++) {
        if (dims[i] < 0) return 0;
        if (dims[i] != 0 && p > limit / dims[i]) return 0;
        p *= dims[i];
    }
    *out = p;
    return 1;
}
