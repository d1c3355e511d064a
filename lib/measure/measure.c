/* Volume integration: per-label counts, volumes or areas, and intensity statistics in one pass
 * over a label image and an optional intensity image. Each thread accumulates its own table of
 * kernels/measure_hd.h accumulators; the tables are merged in thread order. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/ops.h"
#include "kernels/measure_hd.h"
#include "measure.h"

/* The largest label value in labels[0..n). */
static uint16_t max_label(const uint16_t *labels, int64_t n, int nt) {
    uint16_t m = 0;
#pragma omp parallel for schedule(static) reduction(max : m) num_threads(nt)
    for (int64_t i = 0; i < n; i++)
        if (labels[i] > m) m = labels[i];
    return m;
}

/* acc[0..nl) (host) from the labels and image on dev: upload once, label_stats, download. Counts, min and
 * max equal the CPU's; sums too for integer-valued images (else up to the summation order, ops.h). */
static sarco_status stats_on_device(sarco_backend *dev, int64_t n, const uint16_t *labels, const float *image,
                                    size_t nl, sarco_hu_acc *acc) {
    void *dl = NULL, *di = NULL, *da = NULL;
    sarco_status s = dev->ops->alloc(dev, (size_t)n * sizeof *labels, &dl);
    if (s == SARCO_OK && image) s = dev->ops->alloc(dev, (size_t)n * sizeof *image, &di);
    if (s == SARCO_OK) s = dev->ops->alloc(dev, nl * sizeof *acc, &da);
    if (s == SARCO_OK) s = dev->ops->upload(dev, dl, labels, (size_t)n * sizeof *labels);
    if (s == SARCO_OK && image) s = dev->ops->upload(dev, di, image, (size_t)n * sizeof *image);
    if (s == SARCO_OK) s = dev->ops->label_stats(dev, n, dl, di, (int64_t)nl, da);
    if (s == SARCO_OK) s = dev->ops->download(dev, acc, da, nl * sizeof *acc);
    dev->ops->free(dev, da);
    dev->ops->free(dev, di);
    dev->ops->free(dev, dl);
    return s;
}

sarco_status sarco_measure_labels(sarco_context *ctx, int ndim, const int64_t *dims, const double *spacing,
                                  const uint16_t *labels, const float *image, const int32_t *which, size_t nwhich,
                                  sarco_label_measure **out, size_t *count) {
    static const char fn[] = "sarco_measure_labels";
    if (out) *out = NULL;
    if (count) *count = 0;
    if (!out || !count || !labels)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: labels, out or count is NULL", fn);
    int64_t n;
    sarco_status s = sarco_measure_check_grid(ctx, fn, ndim, dims, spacing, &n);
    if (s != SARCO_OK) return s;
    for (size_t i = 0; which && i < nwhich; i++)
        if (which[i] < 0 || which[i] > UINT16_MAX)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: label %d is outside 0..65535", fn, (int)which[i]);

    const int nt = sarco_measure_threads(ctx);
    const size_t nl = (size_t)max_label(labels, n, nt) + 1;
    const size_t bytes = (size_t)nt * nl * sizeof(sarco_hu_acc);
    sarco_hu_acc *acc = sarco_ctx_malloc(ctx, bytes, "measure accumulators");
    if (!acc) return SARCO_ERR_OUT_OF_MEMORY;
    const int has_image = image != NULL;
    sarco_backend *dev = sarco_measure_device(ctx);
    if (dev) {
        s = stats_on_device(dev, n, labels, image, nl, acc);
        if (s != SARCO_OK) {
            sarco_ctx_free(ctx, acc, bytes);
            return s;
        }
    } else {
#pragma omp parallel num_threads(nt)
        {
            sarco_hu_acc *mine = acc + nl * (size_t)omp_get_thread_num();
            for (size_t l = 0; l < nl; l++) sarco_hu_acc_init(&mine[l]);
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n; i++) sarco_hu_acc_add(&mine[labels[i]], has_image, has_image ? image[i] : 0.0f);
        }
        for (int t = 1; t < nt; t++)
            for (size_t l = 0; l < nl; l++) sarco_hu_acc_merge(&acc[l], &acc[(size_t)t * nl + l]);
    }

    size_t m = 0;
    if (which)
        m = nwhich;
    else
        for (size_t l = 1; l < nl; l++) m += acc[l].count > 0;
    sarco_label_measure *res = calloc(m ? m : 1, sizeof *res);
    if (!res) {
        sarco_ctx_free(ctx, acc, bytes);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu results", fn, m);
    }
    double cell = 1.0;
    for (int a = 0; a < ndim; a++) cell *= spacing[a];
    size_t j = 0;
    for (size_t l = which ? 0 : 1; which ? l < nwhich : l < nl; l++) {
        const size_t lab = which ? (size_t)which[l] : l;
        sarco_hu_acc none;
        sarco_hu_acc_init(&none);
        const sarco_hu_acc *a = lab < nl ? &acc[lab] : &none;
        if (!which && a->count == 0) continue;
        sarco_label_measure *r = &res[j++];
        r->label = (int32_t)lab;
        r->voxels = a->count;
        if (ndim == 3)
            r->volume_ml = (double)a->count * cell / 1000.0;
        else
            r->area_cm2 = (double)a->count * cell / 100.0;
        if (has_image) {
            r->flags |= SARCO_MEASURE_HAS_IMAGE;
            r->finite_voxels = a->finite;
            sarco_hu_acc_moments(a, &r->mean, &r->sd);
            if (a->finite > 0) {
                r->min = a->min;
                r->max = a->max;
                r->fraction_muscle = (double)a->muscle / (double)a->finite;
                r->fraction_imat = (double)a->imat / (double)a->finite;
            }
        }
    }
    sarco_ctx_free(ctx, acc, bytes);
    *out = res;
    *count = m;
    return SARCO_OK;
}

void sarco_label_measures_free(sarco_label_measure *m) { free(m); }
