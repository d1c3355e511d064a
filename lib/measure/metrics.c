/* Per-label segmentation metrics (REFERENCE.md "Segmentation metrics"). One pass over both label
 * images counts |P|, |G|, |P and G| and the bounding box of P or G for every label; each label is
 * then evaluated inside its box, which is exact (every site and every query voxel lies in it, and the
 * box's outside is background for both masks) and much smaller than the image. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/measure_hd.h"
#include "measure.h"

/* Per label: counts, and the union's box in 3D-promoted coordinates (2D arrays get a unit axis 0). */
typedef struct lab_tab {
    int64_t np, ng, nb, stamp;
    int64_t lo[3], hi[3];
} lab_tab;

static void tab_init(lab_tab *t) {
    t->np = t->ng = t->nb = t->stamp = 0;
    for (int a = 0; a < 3; a++) {
        t->lo[a] = INT64_MAX;
        t->hi[a] = -1;
    }
}

/* Marks voxel (c0, c1, x) of row r1 (1-based) in e's box. Rows are walked with ascending x, so the
 * first visit of a row gives its smallest x. */
static inline void tab_touch(lab_tab *e, int64_t r1, int64_t c0, int64_t c1, int64_t x) {
    if (e->stamp != r1) {
        e->stamp = r1;
        if (c0 < e->lo[0]) e->lo[0] = c0;
        if (c0 > e->hi[0]) e->hi[0] = c0;
        if (c1 < e->lo[1]) e->lo[1] = c1;
        if (c1 > e->hi[1]) e->hi[1] = c1;
        if (x < e->lo[2]) e->lo[2] = x;
    }
    if (x > e->hi[2]) e->hi[2] = x;
}

static void tab_merge(lab_tab *a, const lab_tab *b) {
    a->np += b->np;
    a->ng += b->ng;
    a->nb += b->nb;
    for (int k = 0; k < 3; k++) {
        if (b->lo[k] < a->lo[k]) a->lo[k] = b->lo[k];
        if (b->hi[k] > a->hi[k]) a->hi[k] = b->hi[k];
    }
}

/* Gathers sqrt(dist[i]) for every i with (surf[i] & bit), in index order whatever the thread count. */
static void gather(const uint8_t *surf, uint8_t bit, const float *dist, int64_t n, float *vals, int64_t *offs,
                   int nt) {
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int64_t lo = n * t / T, hi = n * (t + 1) / T;
        int64_t c = 0;
        for (int64_t i = lo; i < hi; i++) c += (surf[i] & bit) != 0;
        offs[t + 1] = c;
#pragma omp barrier
#pragma omp single
        {
            offs[0] = 0;
            for (int k = 0; k < T; k++) offs[k + 1] += offs[k];
        }
        int64_t j = offs[t];
        for (int64_t i = lo; i < hi; i++)
            if (surf[i] & bit) vals[j++] = sqrtf(dist[i]);
    }
}

/* Max, sum (in index order) and 95th percentile of n > 0 distances; reorders v. */
static void directed(float *v, int64_t n, double *mx, double *sum, double *p95) {
    double s = 0.0;
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        s += (double)v[i];
        if (v[i] > m) m = v[i];
    }
    *mx = m;
    *sum = s;
    *p95 = sarco_quantile(v, n, 0.95);
}

typedef struct eval_job {
    int ndim;
    const int64_t *dims;  /* as given */
    const double *spacing;
    int64_t d3[3];        /* dims promoted to 3D */
    const uint16_t *pred, *ref;
    double diag, cell;
    int nt;
} eval_job;

/* Distances and surface counts for one label with at least one non-empty mask. */
static sarco_status eval_surfaces(sarco_context *ctx, const eval_job *jb, uint16_t lab, const lab_tab *e,
                                  sarco_seg_metrics *r) {
    const int ndim = jb->ndim, off = 3 - ndim;
    int64_t b3[3], nbox = 1;
    for (int a = 0; a < 3; a++) {
        b3[a] = e->hi[a] - e->lo[a] + 1;
        nbox *= b3[a];
    }
    const int64_t *bd = b3 + off; /* the box in the caller's ndim */
    int64_t bs[3];
    bs[ndim - 1] = 1;
    for (int a = ndim - 2; a >= 0; a--) bs[a] = bs[a + 1] * bd[a + 1];
    const int nt = jb->nt;
    const size_t nb = (size_t)nbox;
    uint8_t *m = sarco_ctx_malloc(ctx, nb, "evaluate box mask");
    uint8_t *surf = m ? sarco_ctx_malloc(ctx, nb, "evaluate box surface") : NULL;
    if (!surf) {
        sarco_ctx_free(ctx, m, nb);
        return SARCO_ERR_OUT_OF_MEMORY;
    }
    const int64_t rows = b3[0] * b3[1];
    /* bit 0: P, bit 1: G */
#pragma omp parallel for schedule(dynamic, 64) num_threads(nt)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t z = r / b3[1] + e->lo[0], y = r % b3[1] + e->lo[1];
        const int64_t src = (z * jb->d3[1] + y) * jb->d3[2] + e->lo[2];
        uint8_t *dst = m + r * b3[2];
        for (int64_t x = 0; x < b3[2]; x++)
            dst[x] = (uint8_t)((jb->pred[src + x] == lab) | ((jb->ref[src + x] == lab) << 1));
    }
    int64_t sp = 0, sg = 0;
#pragma omp parallel for schedule(dynamic, 64) reduction(+ : sp, sg) num_threads(nt)
    for (int64_t r = 0; r < rows; r++) {
        int64_t c3[3] = {r / b3[1], r % b3[1], 0};
        for (int64_t x = 0; x < b3[2]; x++) {
            c3[2] = x;
            const int64_t i = r * b3[2] + x;
            const int s1 = sarco_is_surface(m, 1, ndim, bd, bs, c3 + off, i);
            const int s2 = sarco_is_surface(m, 2, ndim, bd, bs, c3 + off, i);
            surf[i] = (uint8_t)(s1 | (s2 << 1));
            sp += s1;
            sg += s2;
        }
    }
    sarco_ctx_free(ctx, m, nb);
    r->surface_pred = sp;
    r->surface_ref = sg;
    if (sp == 0 || sg == 0) { /* one mask empty: distances are the diagonal by definition */
        sarco_ctx_free(ctx, surf, nb);
        r->hd_mm = r->hd95_mm = r->assd_mm = jb->diag;
        return SARCO_OK;
    }

    sarco_status s = SARCO_ERR_OUT_OF_MEMORY;
    const size_t vbytes = (size_t)(sp + sg) * sizeof(float), obytes = (size_t)(nt + 1) * sizeof(int64_t);
    float *dist = sarco_ctx_malloc(ctx, nb * sizeof(float), "evaluate box distances");
    float *vals = dist ? sarco_ctx_malloc(ctx, vbytes, "evaluate surface distances") : NULL;
    int64_t *offs = vals ? sarco_ctx_malloc(ctx, obytes, "evaluate offsets") : NULL;
    if (offs) {
        /* P's surface voxels -> nearest G surface voxel, then the other way (on the GPU for CUDA contexts) */
        sarco_edt_job ej;
        s = sarco_edt_job_begin(&ej, ctx, ndim, bd, jb->spacing, surf, nbox);
        if (s == SARCO_OK) s = sarco_edt_job_run(&ej, 2, 1, dist);
        if (s == SARCO_OK) {
            gather(surf, 1, dist, nbox, vals, offs, nt);
            s = sarco_edt_job_run(&ej, 1, 2, dist);
        }
        sarco_edt_job_end(&ej);
        if (s == SARCO_OK) {
            gather(surf, 2, dist, nbox, vals + sp, offs, nt);
            double mx1, sum1, p1, mx2, sum2, p2;
            directed(vals, sp, &mx1, &sum1, &p1);
            directed(vals + sp, sg, &mx2, &sum2, &p2);
            r->hd_mm = mx1 > mx2 ? mx1 : mx2;
            r->hd95_mm = p1 > p2 ? p1 : p2;
            r->assd_mm = (sum1 + sum2) / (double)(sp + sg);
        }
    }
    sarco_ctx_free(ctx, offs, obytes);
    sarco_ctx_free(ctx, vals, vbytes);
    sarco_ctx_free(ctx, dist, nb * sizeof(float));
    sarco_ctx_free(ctx, surf, nb);
    return s;
}

static sarco_status eval_label(sarco_context *ctx, const eval_job *jb, int32_t label, const lab_tab *e,
                               sarco_seg_metrics *r) {
    memset(r, 0, sizeof *r);
    r->label = label;
    r->voxels_pred = e->np;
    r->voxels_ref = e->ng;
    r->voxels_both = e->nb;
    const double vp = (double)e->np * jb->cell, vg = (double)e->ng * jb->cell;
    if (jb->ndim == 3) {
        r->volume_pred_ml = vp / 1000.0;
        r->volume_ref_ml = vg / 1000.0;
    } else {
        r->area_pred_cm2 = vp / 100.0;
        r->area_ref_cm2 = vg / 100.0;
    }
    if (e->np == 0) r->flags |= SARCO_METRIC_PRED_EMPTY;
    if (e->ng == 0) r->flags |= SARCO_METRIC_REF_EMPTY | SARCO_METRIC_RAVD_UNDEFINED;
    const int64_t uni = e->np + e->ng - e->nb;
    if (uni == 0) { /* both empty: perfect agreement by definition */
        r->dice = r->jaccard = 1.0;
        return SARCO_OK;
    }
    r->dice = 2.0 * (double)e->nb / (double)(e->np + e->ng);
    r->jaccard = (double)e->nb / (double)uni;
    if (e->ng > 0) r->ravd_percent = ((double)e->np - (double)e->ng) / (double)e->ng * 100.0;
    return eval_surfaces(ctx, jb, (uint16_t)label, e, r);
}

sarco_status sarco_evaluate_labels(sarco_context *ctx, int ndim, const int64_t *dims, const double *spacing,
                                   const uint16_t *pred, const uint16_t *ref, const int32_t *labels, size_t nlabels,
                                   sarco_seg_metrics **out, size_t *count) {
    static const char fn[] = "sarco_evaluate_labels";
    if (out) *out = NULL;
    if (count) *count = 0;
    if (!out || !count || !pred || !ref)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: pred, ref, out or count is NULL", fn);
    int64_t n;
    sarco_status s = sarco_measure_check_grid(ctx, fn, ndim, dims, spacing, &n);
    if (s != SARCO_OK) return s;
    for (size_t i = 0; labels && i < nlabels; i++)
        if (labels[i] < 0 || labels[i] > UINT16_MAX)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: label %d is outside 0..65535", fn, (int)labels[i]);

    eval_job jb = {.ndim = ndim, .dims = dims, .spacing = spacing, .pred = pred, .ref = ref};
    jb.nt = sarco_measure_threads(ctx);
    jb.d3[0] = jb.d3[1] = 1;
    for (int a = 0; a < ndim; a++) jb.d3[3 - ndim + a] = dims[a];
    double diag2 = 0.0;
    jb.cell = 1.0;
    for (int a = 0; a < ndim; a++) {
        diag2 += (double)dims[a] * spacing[a] * (double)dims[a] * spacing[a];
        jb.cell *= spacing[a];
    }
    jb.diag = sqrt(diag2);

    /* the largest label in either image sizes the tables */
    uint16_t mx = 0;
#pragma omp parallel for schedule(static) reduction(max : mx) num_threads(jb.nt)
    for (int64_t i = 0; i < n; i++) {
        uint16_t v = pred[i] > ref[i] ? pred[i] : ref[i];
        if (v > mx) mx = v;
    }
    const size_t nl = (size_t)mx + 1;
    const size_t tbytes = (size_t)jb.nt * nl * sizeof(lab_tab);
    lab_tab *tabs = sarco_ctx_malloc(ctx, tbytes, "evaluate label tables");
    if (!tabs) return SARCO_ERR_OUT_OF_MEMORY;
    const int64_t rows = jb.d3[0] * jb.d3[1], nx = jb.d3[2];
#pragma omp parallel num_threads(jb.nt)
    {
        lab_tab *tab = tabs + nl * (size_t)omp_get_thread_num();
        for (size_t l = 0; l < nl; l++) tab_init(&tab[l]);
#pragma omp for schedule(dynamic, 64)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t c0 = r / jb.d3[1], c1 = r % jb.d3[1];
            const uint16_t *pp = pred + r * nx, *gg = ref + r * nx;
            for (int64_t x = 0; x < nx; x++) {
                const uint16_t p = pp[x], g = gg[x];
                lab_tab *e = &tab[p];
                e->np++;
                tab_touch(e, r + 1, c0, c1, x);
                lab_tab *f = &tab[g];
                f->ng++;
                if (g == p)
                    f->nb++;
                else
                    tab_touch(f, r + 1, c0, c1, x);
            }
        }
    }
    for (int t = 1; t < jb.nt; t++)
        for (size_t l = 0; l < nl; l++) tab_merge(&tabs[l], &tabs[(size_t)t * nl + l]);

    size_t m = 0;
    if (labels)
        m = nlabels;
    else
        for (size_t l = 1; l < nl; l++) m += tabs[l].np + tabs[l].ng > 0;
    sarco_seg_metrics *res = calloc(m ? m : 1, sizeof *res);
    if (!res) {
        sarco_ctx_free(ctx, tabs, tbytes);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu results", fn, m);
    }
    lab_tab none;
    tab_init(&none);
    size_t j = 0;
    for (size_t l = labels ? 0 : 1; s == SARCO_OK && (labels ? l < nlabels : l < nl); l++) {
        const size_t lab = labels ? (size_t)labels[l] : l;
        const lab_tab *e = lab < nl ? &tabs[lab] : &none;
        if (!labels && e->np + e->ng == 0) continue;
        s = sarco_progress(ctx, "evaluate", (int64_t)j, (int64_t)m);
        if (s == SARCO_OK) s = eval_label(ctx, &jb, (int32_t)lab, e, &res[j++]);
    }
    sarco_ctx_free(ctx, tabs, tbytes);
    if (s != SARCO_OK) {
        free(res);
        return s;
    }
    *out = res;
    *count = m;
    return SARCO_OK;
}

void sarco_seg_metrics_free(sarco_seg_metrics *m) { free(m); }
