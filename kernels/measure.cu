/* Measurements on the device (the op table's edt_axis and label_stats). The arithmetic is the CPU's:
 * kernels/edt_hd.h (one line per thread; the fastest axis through shared-memory tiles) and kernels/measure_hd.h (per-voxel accumulation); these
 * wrappers only map threads to lines and voxels. */
#include "../lib/cuda/cuda_internal.h"
#include "edt_hd.h"
#include "measure_hd.h"

#define EDT_THREADS 128
#define EDT_SCRATCH_BUDGET ((size_t)256 << 20) /* envelope scratch of all threads in flight, bytes */
#define STATS_THREADS 256
#define STATS_SHARED_LABELS 256 /* per-block tables in shared memory up to this many labels (16 KiB) */

/* ---- distance transform ------------------------------------------------------------------------ */

/* Thread t takes lines t, t + T, ...: neighbouring threads on neighbouring lines, so strided passes read
 * and write coalesced. Envelope passes (sites NULL) keep fv, z and v of the current line in their own
 * `per` bytes of scratch (global memory, sized for the line length). */
__global__ void k_edt_axis(int64_t lines, int64_t n, int64_t S, double s2, const uint8_t *sites, uint8_t site_bit,
                           const uint8_t *query, uint8_t query_bit, int take_sqrt, float *f, char *scratch,
                           size_t per) {
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, T = (int64_t)blockDim.x * gridDim.x;
    int32_t *v = NULL;
    double *fv = NULL, *z = NULL;
    if (!sites) sarco_edt_scratch_split(scratch + per * (size_t)t, n, &v, &fv, &z);
    for (int64_t l = t; l < lines; l += T) {
        const int64_t b = sarco_edt_line_start(l, n, S);
        if (query && !sarco_edt_line_any(query + b, n, S, query_bit)) continue;
        if (sites)
            sarco_edt_line_binary(n, s2, sites + b, S, site_bit, f + b, S);
        else
            sarco_edt_line(n, s2, f + b, S, f + b, S, v, fv, z);
        if (take_sqrt)
            for (int64_t q = 0; q < n; q++) f[b + q * S] = sqrtf(f[b + q * S]);
    }
}

/* The fastest axis (S = 1): a line per thread would have neighbouring threads read addresses n floats
 * apart. Instead a block of EDT_TILE threads takes EDT_TILE consecutive lines (one contiguous run of
 * memory), loads them into shared memory in memory order (coalesced), each thread runs its line there
 * (sarco_edt_tile_index: stride EDT_TILE + 1, so the 32 threads of a step hit 32 different banks), and
 * the block stores the tile back in memory order. Same line functions, same bits as k_edt_axis. */
#define EDT_TILE 32
__global__ void k_edt_rows(int64_t lines, int64_t n, double s2, const uint8_t *sites, uint8_t site_bit,
                           const uint8_t *query, uint8_t query_bit, int take_sqrt, float *f, char *scratch, size_t per) {
    extern __shared__ float tile[]; /* n x (EDT_TILE + 1) */
    __shared__ int ran[EDT_TILE];
    const int j = threadIdx.x, pitch = EDT_TILE + 1;
    int32_t *v = NULL;
    double *fv = NULL, *z = NULL;
    if (!sites) sarco_edt_scratch_split(scratch + per * ((size_t)blockIdx.x * EDT_TILE + j), n, &v, &fv, &z);
    for (int64_t l0 = (int64_t)blockIdx.x * EDT_TILE; l0 < lines; l0 += (int64_t)gridDim.x * EDT_TILE) {
        const int64_t nl = lines - l0 < EDT_TILE ? lines - l0 : EDT_TILE, count = nl * n;
        float *base = f + l0 * n;
        if (!sites)
            for (int64_t e = j; e < count; e += EDT_TILE) tile[sarco_edt_tile_index(e, n, pitch)] = base[e];
        const int64_t l = l0 + j;
        ran[j] = j < nl && !(query && !sarco_edt_line_any(query + l * n, n, 1, query_bit));
        __syncthreads();
        if (ran[j]) {
            float *t = tile + j;
            if (sites)
                sarco_edt_line_binary(n, s2, sites + l * n, 1, site_bit, t, pitch);
            else
                sarco_edt_line(n, s2, t, pitch, t, pitch, v, fv, z);
            if (take_sqrt)
                for (int64_t q = 0; q < n; q++) t[q * pitch] = sqrtf(t[q * pitch]);
        }
        __syncthreads();
        for (int64_t e = j; e < count; e += EDT_TILE)
            if (ran[e / n]) base[e] = tile[sarco_edt_tile_index(e, n, pitch)];
        __syncthreads();
    }
}

sarco_status sarco_cu_edt_axis(sarco_backend *be, const sarco_edt_desc *d, const uint8_t *sites, const uint8_t *query,
                               float *f) {
    sarco_status s = sarco_edt_desc_check(be->ctx, d, sites != NULL);
    if (s != SARCO_OK) return s;
    if (!f) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "edt_axis: f is NULL");
    SARCO_CU_ENTER(be);
    sarco_cu *cu = sarco_cu_of(be);
    int64_t S = 1;
    for (int a = d->axis + 1; a < 3; a++) S *= d->dims[a];
    const int64_t n = d->dims[d->axis], lines = d->dims[0] * d->dims[1] * d->dims[2] / n;
    const size_t per = sarco_edt_scratch_bytes(n);
    const double s2 = d->spacing * d->spacing;
    /* the fastest axis through shared-memory tiles when a tile fits the block's shared memory */
    const size_t smem = (size_t)n * (EDT_TILE + 1) * sizeof(float);
    if (S == 1 && smem <= (size_t)cu->smem_optin) {
        int64_t blocks = (lines + EDT_TILE - 1) / EDT_TILE;
        if (blocks > (int64_t)cu->sm_count * 32) blocks = (int64_t)cu->sm_count * 32;
        if (!sites && (int64_t)(EDT_SCRATCH_BUDGET / (per * EDT_TILE)) < blocks)
            blocks = (int64_t)(EDT_SCRATCH_BUDGET / (per * EDT_TILE));
        if (blocks < 1) blocks = 1;
        void *scratch = NULL;
        if (!sites && (s = sarco_cu_scratch(be, per * EDT_TILE * (size_t)blocks, &scratch)) != SARCO_OK) return s;
        if (smem > 48 * 1024)
            SARCO_CU_TRY(be, cudaFuncSetAttribute(k_edt_rows, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        k_edt_rows<<<(unsigned)blocks, EDT_TILE, smem, cu->stream>>>(lines, n, s2, sites, d->site_bit, query,
                                                                     d->query_bit, d->take_sqrt, f, (char *)scratch, per);
        SARCO_CU_LAUNCHED(be);
        return SARCO_OK;
    }
    /* one thread per line, at most as many as the device holds at once and, for envelope passes, as many
     * as EDT_SCRATCH_BUDGET gives scratch to (at least one block) */
    int64_t threads = lines < (int64_t)cu->sm_count * 2048 ? lines : (int64_t)cu->sm_count * 2048;
    if (!sites && (int64_t)(EDT_SCRATCH_BUDGET / per) < threads) threads = (int64_t)(EDT_SCRATCH_BUDGET / per);
    const int64_t blocks = threads > EDT_THREADS ? (threads + EDT_THREADS - 1) / EDT_THREADS : 1;
    void *scratch = NULL;
    if (!sites) {
        size_t bytes;
        if (!sarco_mul_size(per, (size_t)(blocks * EDT_THREADS), &bytes))
            return sarco_fail(be->ctx, SARCO_ERR_LIMIT, "edt_axis: scratch for lines of %lld overflows", (long long)n);
        s = sarco_cu_scratch(be, bytes, &scratch);
        if (s != SARCO_OK) return s;
    }
    k_edt_axis<<<(unsigned)blocks, EDT_THREADS, 0, cu->stream>>>(lines, n, S, s2, sites, d->site_bit, query,
                                                                  d->query_bit, d->take_sqrt, f, (char *)scratch, per);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}

/* ---- volume integration ------------------------------------------------------------------------ */

__device__ void atomic_min_double(double *p, double v) {
    unsigned long long *a = (unsigned long long *)p, old = *a;
    while (v < __longlong_as_double((long long)old)) {
        unsigned long long prev = atomicCAS(a, old, (unsigned long long)__double_as_longlong(v));
        if (prev == old) break;
        old = prev;
    }
}

__device__ void atomic_max_double(double *p, double v) {
    unsigned long long *a = (unsigned long long *)p, old = *a;
    while (v > __longlong_as_double((long long)old)) {
        unsigned long long prev = atomicCAS(a, old, (unsigned long long)__double_as_longlong(v));
        if (prev == old) break;
        old = prev;
    }
}

/* *dst += *a with atomics (dst in shared or global memory): sarco_hu_acc_merge for concurrent writers */
__device__ void acc_merge_atomic(sarco_hu_acc *dst, const sarco_hu_acc *a) {
    if (a->count == 0) return;
    atomicAdd((unsigned long long *)&dst->count, (unsigned long long)a->count);
    if (a->finite == 0) return;
    atomicAdd((unsigned long long *)&dst->finite, (unsigned long long)a->finite);
    if (a->muscle) atomicAdd((unsigned long long *)&dst->muscle, (unsigned long long)a->muscle);
    if (a->imat) atomicAdd((unsigned long long *)&dst->imat, (unsigned long long)a->imat);
    atomicAdd(&dst->sum, a->sum);
    atomicAdd(&dst->sumsq, a->sumsq);
    atomic_min_double(&dst->min, a->min);
    atomic_max_double(&dst->max, a->max);
}

__global__ void k_acc_init(int64_t nl, sarco_hu_acc *acc) { SARCO_CU_FOR(l, nl) sarco_hu_acc_init(&acc[l]); }

/* Each thread sums its run of same-label voxels (sarco_stats_voxel's order) privately and merges it on
 * a label change: into the block's shared table when the labels fit there, then the table into acc;
 * straight into acc otherwise. */
__global__ void k_label_stats(int64_t n, const uint16_t *labels, const float *image, int64_t nl, int use_shared,
                              sarco_hu_acc *acc) {
    extern __shared__ sarco_hu_acc stats_tab[];
    sarco_hu_acc *dst = use_shared ? stats_tab : acc;
    if (use_shared) {
        for (int64_t l = threadIdx.x; l < nl; l += blockDim.x) sarco_hu_acc_init(&stats_tab[l]);
        __syncthreads();
    }
    const int lane = threadIdx.x & 31;
    const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5, nw = ((int64_t)blockDim.x * gridDim.x) >> 5;
    const int has_image = image != NULL;
    sarco_hu_acc run;
    sarco_hu_acc_init(&run);
    int64_t cur = -1;
    for (int64_t step = 0;; step++) {
        const int64_t i = sarco_stats_voxel(n, w, nw, lane, step);
        if (i < 0) break;
        const int64_t l = labels[i];
        if (l >= nl) continue;
        if (l != cur) {
            if (cur >= 0) acc_merge_atomic(&dst[cur], &run);
            sarco_hu_acc_init(&run);
            cur = l;
        }
        sarco_hu_acc_add(&run, has_image, has_image ? image[i] : 0.0f);
    }
    if (cur >= 0) acc_merge_atomic(&dst[cur], &run);
    if (use_shared) {
        __syncthreads();
        for (int64_t l = threadIdx.x; l < nl; l += blockDim.x) acc_merge_atomic(&acc[l], &stats_tab[l]);
    }
}

sarco_status sarco_cu_label_stats(sarco_backend *be, int64_t n, const uint16_t *labels, const float *image,
                                  int64_t nlabels, sarco_hu_acc *acc) {
    sarco_status s = sarco_label_stats_check(be->ctx, n, nlabels);
    if (s != SARCO_OK) return s;
    if (!acc || (n && !labels)) return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "label_stats: NULL buffer");
    SARCO_CU_ENTER(be);
    sarco_cu *cu = sarco_cu_of(be);
    k_acc_init<<<sarco_cu_blocks(nlabels, SARCO_CU_THREADS), SARCO_CU_THREADS, 0, cu->stream>>>(nlabels, acc);
    SARCO_CU_LAUNCHED(be);
    if (n == 0) return SARCO_OK;
    /* enough warps to fill the device (8 blocks per SM), none without a chunk of voxels */
    const int64_t warps_per_block = STATS_THREADS / 32, chunks = (n + SARCO_STATS_CHUNK - 1) / SARCO_STATS_CHUNK;
    int64_t blocks = (chunks + warps_per_block - 1) / warps_per_block;
    if (blocks > (int64_t)cu->sm_count * 8) blocks = (int64_t)cu->sm_count * 8;
    const int use_shared = nlabels <= STATS_SHARED_LABELS;
    const size_t shared = use_shared ? (size_t)nlabels * sizeof(sarco_hu_acc) : 0;
    k_label_stats<<<(unsigned)blocks, STATS_THREADS, shared, cu->stream>>>(n, labels, image, nlabels, use_shared, acc);
    SARCO_CU_LAUNCHED(be);
    return SARCO_OK;
}
