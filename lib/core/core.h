/* Internal core: the context, error text, allocation with limits, logging. Not public. */
#ifndef SARCO_CORE_H
#define SARCO_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "sarco/sarco.h"

#define SARCO_INTERNAL __attribute__((visibility("hidden")))
#define SARCO_PRINTF(f, a) __attribute__((format(printf, f, a)))

typedef struct sarco_backend sarco_backend; /* lib/ops/ops.h */

struct sarco_context {
    sarco_context_options opts;
    sarco_backend *be;            /* the op table + its state; never NULL once created */
    sarco_progress_fn progress;
    void *progress_user;
    size_t host_bytes;            /* bytes held through sarco_ctx_malloc */
    char err[1024];
    /* fields added later stay below, at the end */
    char backend_note[1024];      /* which backend runs and why (sarco_context_backend_detail) */
};

/* Records a message on ctx (ctx may be NULL: then the message is only logged) and returns s,
 * so failures read `return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: ...", path);`. */
SARCO_INTERNAL sarco_status sarco_fail(sarco_context *ctx, sarco_status s, const char *fmt, ...)
    SARCO_PRINTF(3, 4);
SARCO_INTERNAL void sarco_note(sarco_context *ctx, const char *fmt, ...) SARCO_PRINTF(2, 3);
SARCO_INTERNAL void sarco_log(sarco_context *ctx, sarco_log_level lvl, const char *fmt, ...)
    SARCO_PRINTF(3, 4);
SARCO_INTERNAL void sarco_clear_error(sarco_context *ctx);

/* Host allocation counted against the context's memory_limit. Zeroed. NULL + error on failure.
 * Free with sarco_ctx_free and the same size. */
SARCO_INTERNAL void *sarco_ctx_malloc(sarco_context *ctx, size_t bytes, const char *what);
SARCO_INTERNAL void sarco_ctx_free(sarco_context *ctx, void *p, size_t bytes);

/* Overflow-checked size arithmetic: returns 0 on overflow (*out untouched), 1 otherwise. */
static inline int sarco_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}
/* Product of n non-negative dims; 0 on overflow or a negative dim or a product past limit. */
SARCO_INTERNAL int sarco_dims_product(const int64_t *dims, int n, int64_t limit, int64_t *out);

/* Progress: returns SARCO_ERR_CANCELLED when the callback asks to stop. */
SARCO_INTERNAL sarco_status sarco_progress(sarco_context *ctx, const char *stage, int64_t done, int64_t total);

#endif
