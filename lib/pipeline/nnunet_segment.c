/* sarco_segment for nnU-Net models: a sarco_image (x fastest) is nnU-Net's array with the axes
 * reversed ((z, y, x); a 2-D image (1, y, x) with spacing 999 on the added axis, as SimpleITKIO and
 * NaturalImage2DIO read them); the model's folds are the predictor. */
#include <string.h>

#include "nnunet_pipeline.h"
#include "../nn/arch.h"

typedef struct {
    sarco_model *model;
    int nheads;
} nn_model_pred;

static sarco_status model_predict(void *user, sarco_context *ctx, int fold, int nsp, const int64_t *tile_shape,
                                  const float *x, float *y) {
    nn_model_pred *mp = user;
    size_t n = (size_t)tile_shape[0] * (size_t)mp->nheads;
    for (int i = 0; i < nsp; i++) n *= (size_t)tile_shape[2 + i];
    return sarco_model_forward_fold_held(ctx, mp->model, fold, 2 + nsp, tile_shape, x, y, n); /* sarco_segment holds it */
}

sarco_status sarco_nnunet_segment_model(sarco_context *ctx, sarco_model *model, const sarco_nnunet_config *cfg,
                                        const sarco_image *img, const sarco_segment_options *o, uint16_t *labels,
                                        sarco_segment_info *info) {
    if (img->ndim == 2 && cfg->nsp == 3)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "nnU-Net: the model's configuration '%s' is 3-D; the image is 2-D", cfg->configuration);
    if (cfg->nchan != 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "nnU-Net: the model takes %d input channels; the image has 1 (grey)", cfg->nchan);
    if (!cfg->natural_image && (img->flags & SARCO_IMAGE_NO_SPACING))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "nnU-Net: the image has no pixel spacing and the model (file_ending not an image "
                          "format) resamples to its spacing; set one (sarco_image_set_spacing)");
    /* the network's heads for one patch */
    int64_t in[5] = {1, cfg->nchan, 0, 0, 0}, out[5];
    for (int i = 0; i < cfg->nsp; i++) in[2 + i] = cfg->patch[i];
    sarco_status s = sarco_model_output_shape(ctx, model, 2 + cfg->nsp, in, out);
    if (s != SARCO_OK) return s;
    if (out[1] != cfg->nheads)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "nnU-Net: the network has %lld outputs, the labels/regions in sarco.config need %d",
                          (long long)out[1], cfg->nheads);
    int64_t dims[3];
    double sp[3];
    if (img->ndim == 2) {
        dims[0] = 1;
        dims[1] = img->dims[1];
        dims[2] = img->dims[0];
        sp[0] = 999.0;
        sp[1] = cfg->natural_image ? 1.0 : img->spacing[1];
        sp[2] = cfg->natural_image ? 1.0 : img->spacing[0];
    } else {
        for (int k = 0; k < 3; k++) {
            dims[k] = img->dims[2 - k];
            sp[k] = cfg->natural_image ? (k == 0 ? 999.0 : 1.0) : img->spacing[2 - k];
        }
    }
    sarco_nn_run_opts ro;
    ro.mirroring = o->mirroring != SARCO_MIRROR_OFF;
    ro.fp32 = o->fp32_accumulation != 0;
    ro.nfolds = sarco_model_fold_count(model);
    nn_model_pred mp = {model, cfg->nheads};
    const float *chan[1] = {img->data};
    sarco_nn_run_info ri;
    sarco_nn_pre_info pi;
    s = sarco_nn_segment_ex(ctx, cfg, chan, dims, sp, &ro, model_predict, &mp, labels, &ri, &pi);
    if (s != SARCO_OK) return s;
    sarco_segment_info inf;
    memset(&inf, 0, sizeof inf);
    /* nnU-Net's transposed axis k is its original axis tf[k], which is the image's axis 2 - tf[k] */
    for (int k = 0; k < 3; k++) {
        int a = 2 - cfg->transpose_forward[k];
        inf.crop_start[a] = pi.bbox[k][0];
        inf.crop_end[a] = pi.bbox[k][1];
        inf.model_dims[a] = pi.shape_model[k];
        inf.model_spacing[a] = pi.target_spacing[k];
        inf.roi[a] = 1;
    }
    for (int i = 0; i < cfg->nsp; i++) inf.roi[2 - cfg->transpose_forward[3 - cfg->nsp + i]] = cfg->patch[i];
    inf.overlap = 1.0 - cfg->tile_step;
    inf.mode = SARCO_BLEND_GAUSSIAN;
    inf.sigma_scale = 0.125;
    inf.sw_batch_size = pi.mirror_variants;
    inf.windows = ri.windows * ro.nfolds;
    int maxlab = cfg->nheads - 1;
    if (cfg->has_regions)
        for (int i = 0; i < cfg->nheads; i++)
            if (cfg->regions_class_order[i] > maxlab) maxlab = cfg->regions_class_order[i];
    inf.num_classes = maxlab + 1;
    inf.slab_bytes = ri.logit_bytes;
    inf.seconds_preprocess = ri.seconds_preprocess;
    inf.seconds_inference = ri.seconds_inference;
    inf.seconds_postprocess = ri.seconds_postprocess;
    inf.folds = ro.nfolds;
    inf.mirror_variants = pi.mirror_variants;
    inf.fp32_accumulation = ro.fp32;
    if (info && info->struct_size) {
        size_t n = info->struct_size < sizeof inf ? info->struct_size : sizeof inf;
        inf.struct_size = info->struct_size;
        memcpy(info, &inf, n);
    }
    return SARCO_OK;
}
