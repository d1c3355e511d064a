/* Layer norm and instance norm (+ residual, + fused activation). Statistics are Welford moments
 * merged across threads (kernels/norm_hd.h), normalisation is sarco_hd_norm1 / sarco_hd_instnorm1. */
#include "../lib/cuda/cuda_internal.h"
#include "norm_hd.h"

#define NORM_THREADS 256

/* Merges the moments of every thread of the block; the result is returned to all threads. */
__device__ sarco_hd_moments block_moments(sarco_hd_moments m) {
    __shared__ sarco_hd_moments warp_m[NORM_THREADS / 32];
    for (int off = 16; off > 0; off >>= 1) {
        sarco_hd_moments o;
        o.n = __shfl_down_sync(0xffffffffu, m.n, off);
        o.mean = __shfl_down_sync(0xffffffffu, m.mean, off);
        o.m2 = __shfl_down_sync(0xffffffffu, m.m2, off);
        sarco_hd_moments_merge(&m, &o);
    }
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = (blockDim.x + 31) / 32;
    if (lane == 0) warp_m[warp] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < nwarps; w++) sarco_hd_moments_merge(&m, &warp_m[w]);
        warp_m[0] = m;
    }
    __syncthreads();
    m = warp_m[0];
    __syncthreads(); /* warp_m may be reused by the caller's next reduction */
    return m;
}

/* One block per row of x (rows, C). y may alias x: every read of a row ends before its first write. */
__global__ void k_layernorm(int64_t rows, int64_t c, const float *x, const float *gamma, const float *beta, float eps,
                            float *y) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * c;
        sarco_hd_moments m;
        sarco_hd_moments_init(&m);
        for (int64_t i = threadIdx.x; i < c; i += blockDim.x) sarco_hd_moments_push(&m, xr[i]);
        m = block_moments(m);
        float mean = m.mean, rstd = sarco_hd_rstd(sarco_hd_moments_var(&m), eps);
        for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
            y[r * c + i] = sarco_hd_norm1(xr[i], mean, rstd, gamma ? gamma[i] : 1.0f, beta ? beta[i] : 0.0f);
    }
}

sarco_status sarco_cu_layernorm(sarco_backend *be, int64_t rows, int64_t c, const float *x, const float *gamma,
                                const float *beta, float eps, float *y) {
    if (!x || !y || rows < 0 || c < 1 || !(eps >= 0.0f))
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda layernorm: rows %lld, C %lld, eps %g",
                          (long long)rows, (long long)c, (double)eps);
    if (rows == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    unsigned blocks = rows < 65535 ? (unsigned)rows : 65535u;
    k_layernorm<<<blocks, NORM_THREADS, 0, sarco_cu_of(be)->stream>>>(rows, c, x, gamma, beta, eps, y);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

/* Instance norm on (N, S, C), in three steps:
 *   partial: block (chunk, n, channel group) reduces rows [r0, r1) of its up-to-256 channels; its threads
 *            are laid out (row lane, channel) so each warp reads contiguous memory;
 *   finish:  block (n, c) merges the chunks' moments into mean and 1/std;
 *   apply:   one thread per element, sarco_hd_instnorm1. */
__global__ void k_inorm_partial(int64_t s, int64_t c, int64_t rows_per_chunk, int nchunks, const float *x,
                                sarco_hd_moments *part) {
    __shared__ sarco_hd_moments sm[NORM_THREADS];
    int64_t n = blockIdx.y, cb = (int64_t)blockIdx.z * NORM_THREADS;
    int cw = (int)(c - cb < NORM_THREADS ? c - cb : NORM_THREADS);
    int lanes = NORM_THREADS / cw, ch = threadIdx.x % cw, ro = threadIdx.x / cw;
    int64_t r0 = (int64_t)blockIdx.x * rows_per_chunk, r1 = r0 + rows_per_chunk < s ? r0 + rows_per_chunk : s;
    sarco_hd_moments m;
    sarco_hd_moments_init(&m);
    if (ro < lanes)
        for (int64_t r = r0 + ro; r < r1; r += lanes) sarco_hd_moments_push(&m, x[(n * s + r) * c + cb + ch]);
    sm[threadIdx.x] = m;
    __syncthreads();
    if (ro == 0) {
        for (int j = 1; j < lanes; j++) sarco_hd_moments_merge(&m, &sm[j * cw + ch]);
        part[(n * c + cb + ch) * nchunks + blockIdx.x] = m;
    }
}

__global__ void k_inorm_finish(int nchunks, const sarco_hd_moments *part, float eps, float *stats) {
    int64_t nc = blockIdx.x; /* n * C + c */
    sarco_hd_moments m;
    sarco_hd_moments_init(&m);
    for (int j = threadIdx.x; j < nchunks; j += blockDim.x) sarco_hd_moments_merge(&m, &part[nc * nchunks + j]);
    m = block_moments(m);
    if (threadIdx.x == 0) {
        stats[2 * nc] = m.mean;
        stats[2 * nc + 1] = sarco_hd_rstd(sarco_hd_moments_var(&m), eps);
    }
}

__global__ void k_inorm_apply(int64_t total, int64_t s, int64_t c, const float *x, const float *stats,
                              const float *gamma, const float *beta, const float *res, int act, float alpha,
                              float *y) {
    SARCO_CU_FOR(i, total) {
        int64_t ch = i % c, nc = (i / (s * c)) * c + ch;
        y[i] = sarco_hd_instnorm1(x[i], stats[2 * nc], stats[2 * nc + 1], gamma ? gamma[ch] : 1.0f,
                                  beta ? beta[ch] : 0.0f, res ? res[i] : 0.0f, act, alpha);
    }
}

sarco_status sarco_cu_instnorm(sarco_backend *be, int64_t n, int64_t s, int64_t c, const float *x, const float *gamma,
                               const float *beta, float eps, const float *residual, sarco_act act, float alpha,
                               float *y) {
    if (!x || !y || n < 0 || s < 1 || c < 1 || !(eps >= 0.0f) || act < SARCO_ACT_NONE || act >= SARCO_ACT_COUNT || !isfinite(alpha) ||
        n > 65535 || (c + NORM_THREADS - 1) / NORM_THREADS > 65535)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "cuda instnorm: N %lld, S %lld, C %lld, eps %g, act %d",
                          (long long)n, (long long)s, (long long)c, (double)eps, (int)act);
    if (n == 0) return SARCO_OK;
    SARCO_CU_ENTER(be);
    sarco_cu *cu = sarco_cu_of(be);
    int cw = c < NORM_THREADS ? (int)c : NORM_THREADS, lanes = NORM_THREADS / cw;
    int64_t min_rows = 16 * (int64_t)lanes; /* at least 16 elements per thread and chunk */
    int64_t nchunks = (s + min_rows - 1) / min_rows;
    if (nchunks > 1024) nchunks = 1024;
    int64_t rows_per_chunk = (s + nchunks - 1) / nchunks;
    nchunks = (s + rows_per_chunk - 1) / rows_per_chunk;

    size_t part_bytes = (size_t)(n * c * nchunks) * sizeof(sarco_hd_moments);
    part_bytes = (part_bytes + 255) & ~(size_t)255;
    void *scratch;
    sarco_status st = sarco_cu_scratch(be, part_bytes + (size_t)(2 * n * c) * sizeof(float), &scratch);
    if (st != SARCO_OK) return st;
    sarco_hd_moments *part = (sarco_hd_moments *)scratch;
    float *stats = (float *)((char *)scratch + part_bytes);

    dim3 grid((unsigned)nchunks, (unsigned)n, (unsigned)((c + NORM_THREADS - 1) / NORM_THREADS));
    k_inorm_partial<<<grid, NORM_THREADS, 0, cu->stream>>>(s, c, rows_per_chunk, (int)nchunks, x, part);
    SARCO_CU_LAUNCHED(be);
    int64_t nc = n * c;
    if (nc > 0x7fffffff) return sarco_fail(be->ctx, SARCO_ERR_LIMIT, "cuda instnorm: N x C = %lld", (long long)nc);
    k_inorm_finish<<<(unsigned)nc, NORM_THREADS, 0, cu->stream>>>((int)nchunks, part, eps, stats);
    SARCO_CU_LAUNCHED(be);
    int64_t total = n * s * c;
    k_inorm_apply<<<sarco_cu_blocks(total, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, cu->stream>>>(
        total, s, c, x, stats, gamma, beta, residual, (int)act, alpha, y);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}
