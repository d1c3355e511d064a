/* Per-label and per-group volumes of a segmentation with the model config's class names and
 * groups. Voxel counts and HU statistics come from sarco_measure_labels; the voxel volume is
 * |det(affine[:3,:3])| (REFERENCE.md), which equals the product of the spacings for any affine
 * with orthogonal columns. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

typedef struct report_impl {
    sarco_volume_report r;
    char *names; /* all names, NUL-separated */
} report_impl;

void sarco_volume_report_free(sarco_volume_report *r) {
    if (!r) return;
    report_impl *ri = (report_impl *)r;
    free(r->labels);
    free(r->groups);
    free(ri->names);
    free(ri);
}

static double voxel_size(const sarco_image *ct) {
    const double(*a)[4] = ct->affine;
    if (ct->ndim == 2) return fabs(a[0][0] * a[1][1] - a[0][1] * a[1][0]);
    return fabs(a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]));
}

sarco_status sarco_segment_volumes(sarco_context *ctx, const sarco_model *model, const sarco_image *ct,
                                   const uint16_t *labels, size_t labels_count, double height_m,
                                   sarco_volume_report **out) {
    return sarco_volumes_from_config(ctx, model ? sarco_model_config_json(model) : NULL, ct, labels, labels_count,
                                     height_m, out);
}

sarco_status sarco_volumes_from_config(sarco_context *ctx, const char *config_json, const sarco_image *ct,
                                       const uint16_t *labels, size_t labels_count, double height_m,
                                       sarco_volume_report **out) {
    if (!out || !ct || !labels || (ct->ndim != 2 && ct->ndim != 3))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_segment_volumes: NULL argument or bad image");
    *out = NULL;
    const int64_t nd[3] = {ct->dims[0], ct->dims[1], ct->ndim > 2 ? ct->dims[2] : 1};
    int64_t nvox;
    if (!sarco_dims_product(nd, 3, INT64_MAX / 8, &nvox) || (size_t)nvox != labels_count)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "sarco_segment_volumes: labels holds %zu values, the image has %lld voxels", labels_count,
                          (long long)nvox);
    if (!(height_m >= 0.0) && !(height_m < 0.0))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_segment_volumes: height is NaN");
    if (height_m > 3.0)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "sarco_segment_volumes: height %g m is not plausible (give metres, not cm)", height_m);
    sarco_pipeline_config cfg;
    memset(&cfg, 0, sizeof cfg);
    sarco_status s;
    if (config_json && (s = sarco_pipeline_config_parse(ctx, config_json, ct->ndim, &cfg)) != SARCO_OK)
        return s;
    /* which labels: the config's classes 1..n-1, else 1..the largest label present */
    int32_t nl = cfg.nclasses > 1 ? cfg.nclasses - 1 : 0;
    if (!nl) {
        uint16_t mx = 0;
        for (int64_t i = 0; i < nvox; i++)
            if (labels[i] > mx) mx = labels[i];
        nl = mx;
    }
    int32_t *which = malloc((size_t)(nl ? nl : 1) * sizeof(int32_t));
    if (!which) {
        sarco_pipeline_config_free(&cfg);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_segment_volumes: out of memory");
    }
    for (int32_t i = 0; i < nl; i++) which[i] = i + 1;
    /* sarco_measure_labels takes C-order arrays: a sarco_image is (nz, ny, nx) */
    int64_t cdims[3];
    double csp[3];
    for (int k = 0; k < ct->ndim; k++) {
        cdims[k] = ct->dims[ct->ndim - 1 - k];
        csp[k] = ct->spacing[ct->ndim - 1 - k] > 0 ? ct->spacing[ct->ndim - 1 - k] : 1.0;
    }
    sarco_label_measure *lm = NULL;
    size_t count = 0;
    s = nl ? sarco_measure_labels(ctx, ct->ndim, cdims, csp, labels, ct->data, which, (size_t)nl, &lm, &count)
           : SARCO_OK;
    free(which);
    if (s != SARCO_OK) {
        sarco_pipeline_config_free(&cfg);
        return s;
    }
    report_impl *ri = calloc(1, sizeof *ri);
    size_t name_bytes = 0;
    for (int32_t i = 0; i < nl; i++) {
        const char *nm = i + 1 < cfg.nclasses ? cfg.classes[i + 1] : NULL;
        name_bytes += (nm ? strlen(nm) : 24) + 1;
    }
    for (int g = 0; g < cfg.ngroups; g++) name_bytes += strlen(cfg.group_names[g]) + 1;
    if (ri) {
        ri->names = malloc(name_bytes + 1);
        ri->r.labels = calloc((size_t)(nl ? nl : 1), sizeof(sarco_volume_entry));
        ri->r.groups = calloc((size_t)(cfg.ngroups ? cfg.ngroups : 1), sizeof(sarco_volume_entry));
    }
    if (!ri || !ri->names || !ri->r.labels || !ri->r.groups) {
        sarco_volume_report_free(ri ? &ri->r : NULL);
        sarco_label_measures_free(lm);
        sarco_pipeline_config_free(&cfg);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_segment_volumes: out of memory");
    }
    sarco_volume_report *r = &ri->r;
    const double vml = voxel_size(ct) / (ct->ndim == 3 ? 1000.0 : 100.0);
    const double h2 = height_m > 0 ? height_m * height_m : 0.0;
    r->voxel_volume_ml = vml;
    r->height_m = height_m > 0 ? height_m : 0.0;
    char *np = ri->names;
    r->nlabels = (size_t)nl;
    for (int32_t i = 0; i < nl; i++) {
        sarco_volume_entry *e = &r->labels[i];
        const sarco_label_measure *m = (size_t)i < count ? &lm[i] : NULL;
        e->label = i + 1;
        const char *nm = i + 1 < cfg.nclasses ? cfg.classes[i + 1] : NULL;
        if (nm)
            strcpy(np, nm);
        else
            snprintf(np, 25, "label_%d", (int)(i + 1));
        e->name = np;
        np += strlen(np) + 1;
        e->voxels = m ? m->voxels : 0;
        e->volume_ml = (double)e->voxels * vml;
        e->volume_index = h2 > 0 ? e->volume_ml / h2 : 0.0;
        e->finite_voxels = m ? m->finite_voxels : 0;
        e->hu_mean = m ? m->mean : 0.0;
        e->hu_sd = m ? m->sd : 0.0;
    }
    r->ngroups = (size_t)cfg.ngroups;
    for (int g = 0; g < cfg.ngroups; g++) {
        sarco_volume_entry *e = &r->groups[g];
        e->label = -1;
        strcpy(np, cfg.group_names[g]);
        e->name = np;
        np += strlen(np) + 1;
        /* pooled mean and population SD from the members' counts, means and SDs */
        double n = 0, sum = 0, sumsq = 0;
        for (int j = 0; j < cfg.group_sizes[g]; j++) {
            int lab = cfg.group_labels[g][j];
            if (lab < 1 || lab > nl) continue;
            const sarco_volume_entry *le = &r->labels[lab - 1];
            e->voxels += le->voxels;
            double fn = (double)le->finite_voxels;
            n += fn;
            sum += fn * le->hu_mean;
            sumsq += fn * (le->hu_sd * le->hu_sd + le->hu_mean * le->hu_mean);
        }
        e->volume_ml = (double)e->voxels * vml;
        e->volume_index = h2 > 0 ? e->volume_ml / h2 : 0.0;
        e->finite_voxels = (int64_t)n;
        if (n > 0) {
            e->hu_mean = sum / n;
            double var = sumsq / n - e->hu_mean * e->hu_mean;
            e->hu_sd = var > 0 ? sqrt(var) : 0.0;
        }
    }
    sarco_label_measures_free(lm);
    sarco_pipeline_config_free(&cfg);
    *out = r;
    return SARCO_OK;
}
