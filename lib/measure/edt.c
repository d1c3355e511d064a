/* Exact Euclidean distance transform on the CPU: the line functions of kernels/edt_hd.h, one pass
 * per axis, lines spread over threads. Strided passes gather EDT_TILE neighbouring lines into a
 * contiguous buffer so every memory access reads whole cache lines. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../ops/ops.h"
#include "kernels/edt_hd.h"
#include "measure.h"

#define EDT_TILE 16

sarco_status sarco_edt_sq(sarco_context *ctx, int ndim, const int64_t *dims, const double *spacing,
                          const uint8_t *sites, uint8_t site_bit, const uint8_t *query, uint8_t query_bit,
                          float *out) {
    if (ndim < 1 || ndim > SARCO_MEASURE_MAX_DIMS)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "edt: ndim is %d, expected 1..3", ndim);
    int64_t total = 1, maxn = 1, stride[SARCO_MEASURE_MAX_DIMS];
    for (int a = ndim - 1; a >= 0; a--) {
        stride[a] = total;
        total *= dims[a];
        if (dims[a] > maxn) maxn = dims[a];
    }
    if (total == 0) return SARCO_OK;
    const int nt = sarco_measure_threads(ctx);

    /* pass 1: the fastest axis, straight from the sites */
    {
        const int64_t n = dims[ndim - 1], lines = total / n;
        const double s2 = spacing[ndim - 1] * spacing[ndim - 1];
#pragma omp parallel for schedule(dynamic, 256) num_threads(nt)
        for (int64_t l = 0; l < lines; l++) sarco_edt_line_binary(n, s2, sites + l * n, 1, site_bit, out + l * n, 1);
    }
    if (ndim == 1) return SARCO_OK;

    /* per thread: a tile of lines, and the envelope's v, f(v) and z */
    size_t per = (size_t)maxn * EDT_TILE * sizeof(float) + (size_t)maxn * sizeof(int32_t) +
                 (size_t)(2 * maxn + 1) * sizeof(double);
    per = (per + 63) & ~(size_t)63; /* keeps every thread's doubles aligned, and off each other's cache lines */
    size_t bytes;
    if (!sarco_mul_size(per, (size_t)nt, &bytes))
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "edt: scratch size overflows");
    char *scratch = sarco_ctx_malloc(ctx, bytes, "edt scratch");
    if (!scratch) return SARCO_ERR_OUT_OF_MEMORY;

    for (int a = ndim - 2; a >= 0; a--) {
        const int64_t n = dims[a], S = stride[a], outer = total / (n * S);
        const int64_t tiles = (S + EDT_TILE - 1) / EDT_TILE, tasks = outer * tiles;
        const double s2 = spacing[a] * spacing[a];
        const int skip = a == 0 && query != NULL;
#pragma omp parallel num_threads(nt)
        {
            char *mine = scratch + per * (size_t)omp_get_thread_num();
            double *fv = (double *)mine;
            double *z = fv + maxn;
            float *buf = (float *)(z + maxn + 1);
            int32_t *v = (int32_t *)(buf + maxn * EDT_TILE);
#pragma omp for schedule(dynamic, 16)
            for (int64_t t = 0; t < tasks; t++) {
                const int64_t o = t / tiles, i0 = (t % tiles) * EDT_TILE;
                const int64_t w = S - i0 < EDT_TILE ? S - i0 : EDT_TILE;
                const int64_t base = o * n * S + i0;
                if (skip) {
                    int any = 0;
                    for (int64_t q = 0; q < n && !any; q++)
                        for (int64_t l = 0; l < w; l++) any |= query[base + q * S + l] & query_bit;
                    if (!any) continue;
                }
                for (int64_t q = 0; q < n; q++) memcpy(buf + q * EDT_TILE, out + base + q * S, (size_t)w * sizeof(float));
                for (int64_t l = 0; l < w; l++) sarco_edt_line(n, s2, buf + l, EDT_TILE, buf + l, EDT_TILE, v, fv, z);
                for (int64_t q = 0; q < n; q++) memcpy(out + base + q * S, buf + q * EDT_TILE, (size_t)w * sizeof(float));
            }
        }
    }
    sarco_ctx_free(ctx, scratch, bytes);
    return SARCO_OK;
}

/* ---- on the context's backend (CUDA) ------------------------------------------------------- */

sarco_backend *sarco_measure_device(const sarco_context *ctx) {
    if (!ctx || !ctx->be || sarco_context_backend(ctx) != SARCO_BACKEND_CUDA) return NULL;
    return ctx->be->ops->edt_axis && ctx->be->ops->label_stats ? ctx->be : NULL;
}

sarco_status sarco_edt_sq_on(sarco_backend *be, int ndim, const int64_t *dims, const double *spacing,
                             const uint8_t *sites, uint8_t site_bit, const uint8_t *query, uint8_t query_bit,
                             int take_sqrt, float *f) {
    if (ndim < 1 || ndim > SARCO_MEASURE_MAX_DIMS)
        return sarco_fail(be->ctx, SARCO_ERR_INVALID_ARGUMENT, "edt: ndim is %d, expected 1..3", ndim);
    sarco_edt_desc d;
    memset(&d, 0, sizeof d);
    const int off = 3 - ndim; /* the volume as (D0, D1, D2) with leading unit axes */
    for (int a = 0; a < 3; a++) d.dims[a] = a < off ? 1 : dims[a - off];
    d.query_bit = query_bit;
    /* as sarco_edt_sq: the fastest axis from the sites, then the envelope along the others; only the last
     * of several passes skips lines without a query voxel */
    for (int a = ndim - 1; a >= 0; a--) {
        d.axis = off + a;
        d.spacing = spacing[a];
        d.site_bit = a == ndim - 1 ? site_bit : 0;
        d.take_sqrt = take_sqrt && a == 0;
        sarco_status s = be->ops->edt_axis(be, &d, a == ndim - 1 ? sites : NULL, a == 0 && ndim > 1 ? query : NULL, f);
        if (s != SARCO_OK) return s;
    }
    return SARCO_OK;
}

/* The distance transform of host sites on dev: upload, passes with the square root, download. */
static sarco_status edt_on_device(sarco_backend *dev, int ndim, const int64_t *dims, const double *spacing,
                                  const uint8_t *sites, int64_t n, float *out) {
    void *ds = NULL, *df = NULL;
    sarco_status s = dev->ops->alloc(dev, (size_t)n, &ds);
    if (s == SARCO_OK) s = dev->ops->alloc(dev, (size_t)n * sizeof(float), &df);
    if (s == SARCO_OK) s = dev->ops->upload(dev, ds, sites, (size_t)n);
    if (s == SARCO_OK) s = sarco_edt_sq_on(dev, ndim, dims, spacing, ds, 1, NULL, 0, 1, df);
    if (s == SARCO_OK) s = dev->ops->download(dev, out, df, (size_t)n * sizeof(float));
    dev->ops->free(dev, df);
    dev->ops->free(dev, ds);
    return s;
}

sarco_status sarco_edt_job_begin(sarco_edt_job *j, sarco_context *ctx, int ndim, const int64_t *dims,
                                 const double *spacing, const uint8_t *sites, int64_t n) {
    memset(j, 0, sizeof *j);
    j->ctx = ctx;
    j->dev = sarco_measure_device(ctx);
    j->ndim = ndim;
    j->dims = dims;
    j->spacing = spacing;
    j->sites = sites;
    j->n = n;
    if (!j->dev) return SARCO_OK;
    sarco_backend *be = j->dev;
    sarco_status s = be->ops->alloc(be, (size_t)n, &j->dsites);
    if (s == SARCO_OK) s = be->ops->alloc(be, (size_t)n * sizeof(float), &j->df);
    if (s == SARCO_OK) s = be->ops->upload(be, j->dsites, sites, (size_t)n);
    return s;
}

sarco_status sarco_edt_job_run(sarco_edt_job *j, uint8_t site_bit, uint8_t query_bit, float *out) {
    if (!j->dev) return sarco_edt_sq(j->ctx, j->ndim, j->dims, j->spacing, j->sites, site_bit, j->sites, query_bit, out);
    sarco_backend *be = j->dev;
    sarco_status s = sarco_edt_sq_on(be, j->ndim, j->dims, j->spacing, j->dsites, site_bit, j->dsites, query_bit, 0,
                                     j->df);
    return s == SARCO_OK ? be->ops->download(be, out, j->df, (size_t)j->n * sizeof(float)) : s;
}

void sarco_edt_job_end(sarco_edt_job *j) {
    if (!j->dev) return;
    j->dev->ops->free(j->dev, j->df);
    j->dev->ops->free(j->dev, j->dsites);
    j->df = j->dsites = NULL;
}

sarco_status sarco_edt(sarco_context *ctx, int ndim, const int64_t *dims, const double *spacing, const uint8_t *mask,
                       float *out) {
    int64_t n;
    sarco_status s = sarco_measure_check_grid(ctx, "sarco_edt", ndim, dims, spacing, &n);
    if (s != SARCO_OK) return s;
    if (!mask || !out) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_edt: mask or out is NULL");
    uint8_t *sites = sarco_ctx_malloc(ctx, (size_t)n, "sarco_edt sites");
    if (!sites) return SARCO_ERR_OUT_OF_MEMORY;
    const int nt = sarco_measure_threads(ctx);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++) sites[i] = mask[i] == 0;
    sarco_backend *dev = sarco_measure_device(ctx);
    if (dev) { /* the square root comes with the last pass */
        s = edt_on_device(dev, ndim, dims, spacing, sites, n, out);
        sarco_ctx_free(ctx, sites, (size_t)n);
        return s;
    }
    s = sarco_edt_sq(ctx, ndim, dims, spacing, sites, 1, NULL, 0, out);
    sarco_ctx_free(ctx, sites, (size_t)n);
    if (s != SARCO_OK) return s;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++) out[i] = sqrtf(out[i]);
    return SARCO_OK;
}
