/* Status text, error messages and logging. Also compiled into libsarco_cuda.so (hidden there). */
#include <stdio.h>
#include <string.h>

#include "core.h"

const char *sarco_status_string(sarco_status s) {
    switch (s) {
    case SARCO_OK: return "ok";
    case SARCO_ERR_INVALID_ARGUMENT: return "invalid argument";
    case SARCO_ERR_OUT_OF_MEMORY: return "out of memory";
    case SARCO_ERR_IO: return "I/O error";
    case SARCO_ERR_BAD_FORMAT: return "bad format";
    case SARCO_ERR_UNSUPPORTED: return "unsupported";
    case SARCO_ERR_BACKEND_UNAVAILABLE: return "backend unavailable";
    case SARCO_ERR_DEVICE: return "device error";
    case SARCO_ERR_LIMIT: return "size limit exceeded";
    case SARCO_ERR_CANCELLED: return "cancelled";
    case SARCO_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

static void vlog(sarco_context *ctx, sarco_log_level lvl, const char *fmt, va_list ap) {
    if (!ctx || !ctx->opts.log || lvl > ctx->opts.log_level) return;
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    ctx->opts.log(ctx->opts.log_user, lvl, buf);
}

void sarco_log(sarco_context *ctx, sarco_log_level lvl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, lvl, fmt, ap);
    va_end(ap);
}

sarco_status sarco_fail(sarco_context *ctx, sarco_status s, const char *fmt, ...) {
    if (!ctx) return s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    sarco_log(ctx, SARCO_LOG_ERROR, "%s: %s", sarco_status_string(s), ctx->err);
    return s;
}

void sarco_note(sarco_context *ctx, const char *fmt, ...) {
    if (!ctx) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    sarco_log(ctx, SARCO_LOG_INFO, "%s", ctx->err);
}

void sarco_clear_error(sarco_context *ctx) {
    if (ctx) ctx->err[0] = '\0';
}

const char *sarco_last_error(const sarco_context *ctx) { return ctx ? ctx->err : "no context"; }
