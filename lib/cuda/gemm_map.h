/* How a sarco_gemm_desc (row-major C = A B with arbitrary row/column strides) becomes one column-major
 * cuBLAS call, C^T = B^T A^T. Plain C so the CPU tests check it against a model of cuBLAS. */
#ifndef SARCO_CUDA_GEMM_MAP_H
#define SARCO_CUDA_GEMM_MAP_H

#include <stdint.h>

#include "../ops/ops.h"

/* One cuBLAS call: m x n x k, its "A" is B (op ta, lda), its "B" is A (op tb, ldb), C^T has ldc. */
typedef struct sarco_gemm_map {
    int64_t m, n, k;      /* cuBLAS's: n, m, k of the desc */
    int ta, tb;           /* 1: transposed */
    int64_t lda, ldb, ldc;
} sarco_gemm_map;

/* A column-major operand op(X) of R rows and C columns whose element (r, c) lies at r*sr + c*sc:
 * X itself when sr = 1 (ld = sc), the transpose of a stored C x R matrix when sc = 1 (ld = sr). */
static inline int sarco_gemm_operand(int64_t R, int64_t C, int64_t sr, int64_t sc, int *trans, int64_t *ld) {
    if (sr == 1 && (C == 1 || sc >= R)) {
        *trans = 0;
        *ld = C == 1 || sc < R ? R : sc;
    } else if (sc == 1 && (R == 1 || sr >= C)) {
        *trans = 1;
        *ld = R == 1 || sr < C ? C : sr;
    } else {
        return 0;
    }
    if (*ld < 1) *ld = 1;
    return 1;
}

/* 0 when the strides cannot map (neither stride of an operand is 1, or rows of C overlap). */
static inline int sarco_gemm_map_desc(const sarco_gemm_desc *d, sarco_gemm_map *g) {
    g->m = d->n;
    g->n = d->m;
    g->k = d->k;
    /* cuBLAS "A" = B^T (n x k): element (j, p) = B(p, j) at p b_rs + j b_cs */
    if (!sarco_gemm_operand(d->n, d->k, d->b_cs, d->b_rs, &g->ta, &g->lda)) return 0;
    /* cuBLAS "B" = A^T (k x m): element (p, i) = A(i, p) at i a_rs + p a_cs */
    if (!sarco_gemm_operand(d->k, d->m, d->a_cs, d->a_rs, &g->tb, &g->ldb)) return 0;
    g->ldc = d->m == 1 && d->c_rs < d->n ? d->n : d->c_rs;
    if (g->ldc < 1) g->ldc = 1;
    return g->ldc >= d->n;
}

#endif
