/* CPU backend internals shared by the files in lib/cpu. Not public. */
#ifndef SARCO_CPU_H
#define SARCO_CPU_H

#include <oneapi/dnnl/dnnl.h>

#include "../ops/ops.h"

#define SARCO_CPU_GEMM_CACHE 16
#define SARCO_CPU_ALIGN 64
/* elementwise loops below this many elements stay on the calling thread */
#define SARCO_CPU_PAR_MIN 32768

typedef struct sarco_cpu_gemm_entry {
    int used;
    uint64_t last;
    sarco_gemm_desc d;
    dnnl_primitive_t prim;       /* NULL when oneDNN refused the strides: the C loop runs instead */
    dnnl_memory_t a, b, c;
    int per_batch;               /* a 2D primitive run once per batch (batch strides oneDNN refused) */
} sarco_cpu_gemm_entry;

typedef struct sarco_cpu {
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    int threads;
    uint64_t tick;
    sarco_cpu_gemm_entry gemm[SARCO_CPU_GEMM_CACHE];
    double *scratch; /* instnorm partial sums, grown on demand */
    size_t scratch_n;
    int bf16;             /* SARCO_PRECISION_BF16: weighted ops take BF16 weights and inputs */
    uint16_t *bf16_in;    /* a weighted op's input converted to BF16, grown on demand */
    size_t bf16_n;
} sarco_cpu;

static inline sarco_cpu *sarco_cpu_of(sarco_backend *be) { return (sarco_cpu *)be->impl; }

/* 64-byte aligned host memory counted against the context's memory limit. */
SARCO_INTERNAL sarco_status sarco_cpu_alloc(sarco_backend *be, size_t bytes, void **out);
SARCO_INTERNAL void sarco_cpu_free(sarco_backend *be, void *p);

/* y = act(x) over n elements on the backend's threads (x may equal y). */
SARCO_INTERNAL void sarco_cpu_act_n(sarco_backend *be, int act, float alpha, int64_t n, const float *x, float *y);
/* Parallel memcpy. */
SARCO_INTERNAL void sarco_cpu_copy_n(sarco_backend *be, float *dst, const float *src, int64_t n);

/* Makes oneDNN (OpenMP runtime) use the backend's thread count on the calling thread. */
SARCO_INTERNAL void sarco_cpu_set_threads(sarco_backend *be);

/* lib/cpu/cpu_dnnl.c: the oneDNN-backed ops */
SARCO_INTERNAL sarco_status sarco_cpu_conv_prepare(sarco_backend *be, const sarco_conv_desc *d, int transposed,
                                                   const float *w_host, const float *b_host, sarco_conv **out);
SARCO_INTERNAL sarco_status sarco_cpu_conv_run(sarco_backend *be, sarco_conv *c, int64_t n, const int64_t *in,
                                               const float *x, const float *residual, float *y);
SARCO_INTERNAL void sarco_cpu_conv_free(sarco_backend *be, sarco_conv *c);
SARCO_INTERNAL sarco_status sarco_cpu_linear_prepare(sarco_backend *be, const sarco_linear_desc *d,
                                                     const float *w_host, const float *b_host, sarco_linear **out);
SARCO_INTERNAL sarco_status sarco_cpu_linear_run(sarco_backend *be, sarco_linear *l, int64_t m, const float *x,
                                                 const float *residual, float *y);
SARCO_INTERNAL void sarco_cpu_linear_free(sarco_backend *be, sarco_linear *l);
SARCO_INTERNAL sarco_status sarco_cpu_gemm(sarco_backend *be, const sarco_gemm_desc *d, const float *a,
                                           const float *b, float *c);
SARCO_INTERNAL void sarco_cpu_gemm_cache_free(sarco_backend *be);
/* The C loops the gemm falls back to when oneDNN refuses a stride pattern (desc already checked). */
SARCO_INTERNAL void sarco_cpu_gemm_loops(sarco_backend *be, const sarco_gemm_desc *d, const float *a, const float *b,
                                         float *c);
/* Implementation name of a cached conv primitive for input (n, in) or NULL (tests, docs). */
SARCO_INTERNAL const char *sarco_cpu_conv_impl(sarco_conv *c, int64_t n, const int64_t *in);

#endif
