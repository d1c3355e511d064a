/* Image classification on top of the classifier split (lib/nn/classifier.h): the model config's
 * image preprocessing, every fold's probabilities with their mean and SD, and Grad-CAM with
 * pytorch-grad-cam's arithmetic. docs/classifiers.md describes the config schema and the choices. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/nn/classifier.h"
#include "pipeline.h"

#define MAX_SIDE 8192 /* network input side cap (config "size") */

/* ---- the config's "classify" object ---- */

typedef struct cls_cfg {
    int64_t oh, ow;    /* 0: keep the picture's size */
    int channels;      /* the network's input channels (1 or 3) */
    int has_norm;
    double mean[4], std[4];
    int has_crop;
    int64_t crop[4];   /* top, left, height, width */
} cls_cfg;

static sarco_status read_cfg(sarco_context *ctx, const sarco_model *m, cls_cfg *c) {
    memset(c, 0, sizeof *c);
    c->channels = 3;
    json_error_t e;
    json_t *root = json_loads(sarco_model_config_json(m), 0, &e);
    if (!root) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: %s", e.text);
    sarco_status s = SARCO_OK;
    const json_t *cl = json_object_get(root, "classify");
    if (!cl) goto done;
    if (!json_is_object(cl)) {
        s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: \"classify\" is not an object");
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)cl, key, v) {
        if (!strcmp(key, "size")) {
            if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
                !json_is_integer(json_array_get(v, 1))) {
                s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: classify.size must be [height, width]");
                goto done;
            }
            c->oh = json_integer_value(json_array_get(v, 0));
            c->ow = json_integer_value(json_array_get(v, 1));
            if (c->oh < 1 || c->ow < 1 || c->oh > MAX_SIDE || c->ow > MAX_SIDE) {
                s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: classify.size %lldx%lld is outside 1..%d",
                               (long long)c->oh, (long long)c->ow, MAX_SIDE);
                goto done;
            }
        } else if (!strcmp(key, "channels")) {
            const json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;
            if (n != 1 && n != 3) {
                s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: classify.channels must be 1 or 3");
                goto done;
            }
            c->channels = (int)n;
        } else if (!strcmp(key, "mean") || !strcmp(key, "std")) {
            double *dst = key[0] == 'm' ? c->mean : c->std;
            if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > 3) {
                s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: classify.%s must list 1 or 3 numbers", key);
                goto done;
            }
            for (size_t i = 0; i < 3; i++) {
                const json_t *x = json_array_get(v, i < json_array_size(v) ? i : 0);
                if (!json_is_number(x) || !isfinite(json_number_value(x)) ||
                    (key[0] == 's' && !(json_number_value(x) > 0))) {
                    s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: classify.%s[%zu] is not a %snumber", key,
                                   i, key[0] == 's' ? "positive " : "finite ");
                    goto done;
                }
                dst[i] = json_number_value(x);
            }
            c->has_norm |= key[0] == 'm' ? 1 : 2;
        } else if (!strcmp(key, "crop")) {
            if (!json_is_array(v) || json_array_size(v) != 4) {
                s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: classify.crop must be [top, left, height, width]");
                goto done;
            }
            for (size_t i = 0; i < 4; i++) {
                const json_t *x = json_array_get(v, i);
                if (!json_is_integer(x) || json_integer_value(x) < 0 || (i >= 2 && json_integer_value(x) < 1)) {
                    s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: classify.crop[%zu] is not a valid pixel count", i);
                    goto done;
                }
                c->crop[i] = json_integer_value(x);
            }
            c->has_crop = 1;
        } else {
            s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                           "model config: unknown classify key \"%s\" (size, channels, mean, std, crop)", key);
            goto done;
        }
    }
    if (c->has_norm && c->has_norm != 3)
        s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "model config: classify.mean and classify.std go together");
done:
    json_decref(root);
    return s;
}

/* ---- preprocessing ---- */

sarco_status sarco_classify_preprocess(sarco_context *ctx, const sarco_model *m, const sarco_picture *pic,
                                       int64_t *shape, float *x, size_t x_count) {
    sarco_clear_error(ctx);
    if (!m || !pic || !shape || !pic->data)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_classify_preprocess: NULL model, picture or shape");
    cls_cfg c;
    sarco_status s = read_cfg(ctx, m, &c);
    if (s != SARCO_OK) return s;
    if (pic->width < 2 || pic->height < 2)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "picture: %lldx%lld pixels is too small to classify",
                          (long long)pic->width, (long long)pic->height);
    if (pic->channels < 1 || pic->channels > 4)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "picture: %d channels", pic->channels);
    int64_t top = 0, left = 0, h = pic->height, w = pic->width;
    if (c.has_crop) {
        top = c.crop[0], left = c.crop[1], h = c.crop[2], w = c.crop[3];
        if (top + h > pic->height || left + w > pic->width)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "model config: classify.crop [%lld, %lld, %lld, %lld] leaves the %lldx%lld picture",
                              (long long)top, (long long)left, (long long)h, (long long)w, (long long)pic->height,
                              (long long)pic->width);
    }
    const int64_t oh = c.oh ? c.oh : h, ow = c.ow ? c.ow : w;
    shape[0] = 1, shape[1] = c.channels, shape[2] = oh, shape[3] = ow;
    if (!x) return SARCO_OK;
    if (x_count != (size_t)(c.channels * oh * ow))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_classify_preprocess: x holds %zu floats, need %lld",
                          x_count, (long long)(c.channels * oh * ow));
    /* ToTensor's scale: 8-bit /255, 16-bit /65535, real values (NIfTI) as they are */
    const double scale = pic->bit_depth == 8 ? 1.0 / 255.0 : pic->bit_depth == 16 ? 1.0 / 65535.0 : 1.0;
    const int pc = pic->channels, colour = pc >= 3; /* grey(+alpha) or RGB(A); alpha is dropped */
    float *src = malloc((size_t)(c.channels * h * w) * sizeof *src);
    if (!src) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "classify: out of memory");
    const int64_t plane = pic->width * pic->height;
    for (int ch = 0; ch < c.channels; ch++)
        for (int64_t r = 0; r < h; r++)
            for (int64_t q = 0; q < w; q++) {
                const int64_t at = (top + r) * pic->width + left + q;
                double v;
                if (c.channels == 3)
                    v = pic->data[(colour ? ch : 0) * plane + at]; /* grey replicated */
                else if (colour) /* PIL's convert("L"): ITU-R 601-2 luma */
                    v = (pic->data[at] * 299.0 + pic->data[plane + at] * 587.0 + pic->data[2 * plane + at] * 114.0) / 1000.0;
                else
                    v = pic->data[at];
                src[(ch * h + r) * w + q] = (float)(v * scale);
            }
    s = sarco_resize_aa(ctx, src, c.channels, h, w, oh, ow, x);
    free(src);
    if (s != SARCO_OK) return s;
    if (c.has_norm)
        for (int ch = 0; ch < c.channels; ch++) {
            const float mu = (float)c.mean[ch], sd = (float)c.std[ch]; /* torchvision Normalize in float32 */
            for (int64_t i = 0; i < oh * ow; i++) x[ch * oh * ow + i] = (x[ch * oh * ow + i] - mu) / sd;
        }
    return SARCO_OK;
}

/* ---- classification ---- */

void sarco_classification_free(sarco_classification *c) {
    if (!c) return;
    free(c->probability);
    free(c->per_fold);
    free(c->fold_sd);
    free(c->logits);
    for (int i = 0; i < c->nimputed; i++) free(c->imputed[i]);
    free(c->imputed);
    free(c);
}

static void probabilities(const double *logit, int classes, double *p) {
    if (classes == 1) {
        p[0] = 1.0 / (1.0 + exp(-logit[0]));
        return;
    }
    double mx = logit[0], sum = 0.0;
    for (int k = 1; k < classes; k++) mx = logit[k] > mx ? logit[k] : mx;
    for (int k = 0; k < classes; k++) sum += (p[k] = exp(logit[k] - mx));
    for (int k = 0; k < classes; k++) p[k] /= sum;
}

static int predicted_class(const double *p, int classes) {
    if (classes == 1) return p[0] >= 0.5;
    int best = 0;
    for (int k = 1; k < classes; k++)
        if (p[k] > p[best]) best = k;
    return best;
}

static sarco_status check_tensor(sarco_context *ctx, sarco_model *m, const int64_t *in, const float *x,
                                 const char *fn, int64_t *classes) {
    if (!ctx || !m || !in || !x) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    void *state = NULL;
    const sarco_classifier *c = sarco_model_classifier(m, &state);
    if (!c)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: %s is not an image classifier", fn,
                          sarco_model_arch(m));
    if (in[0] != 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: one image at a time (batch %lld)", fn,
                          (long long)in[0]);
    int64_t out[4];
    sarco_status s = sarco_model_output_shape(ctx, m, 4, in, out);
    if (s != SARCO_OK) return s;
    *classes = out[1];
    return SARCO_OK;
}

sarco_status sarco_classify_tensor(sarco_context *ctx, sarco_model *m, const int64_t *in, const float *x,
                                   sarco_classification **out) {
    sarco_clear_error(ctx);
    if (!out) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_classify_tensor: NULL out");
    *out = NULL;
    int64_t classes;
    sarco_status s = check_tensor(ctx, m, in, x, "sarco_classify_tensor", &classes);
    if (s != SARCO_OK) return s;
    const int nf = sarco_model_fold_count(m), nc = (int)classes;
    sarco_classification *r = calloc(1, sizeof *r);
    float *y = malloc((size_t)nc * sizeof *y);
    if (r) {
        r->classes = nc, r->folds = nf;
        r->probability = calloc((size_t)nc, sizeof(double));
        r->fold_sd = calloc((size_t)nc, sizeof(double));
        r->per_fold = calloc((size_t)(nf * nc), sizeof(double));
        r->logits = calloc((size_t)(nf * nc), sizeof(double));
    }
    if (!r || !y || !r->probability || !r->fold_sd || !r->per_fold || !r->logits) {
        free(y);
        sarco_classification_free(r);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_classify_tensor: out of memory");
    }
    for (int f = 0; f < nf && s == SARCO_OK; f++) {
        s = sarco_model_forward_fold(ctx, m, f, 4, in, x, y, (size_t)nc);
        for (int k = 0; k < nc && s == SARCO_OK; k++) r->logits[f * nc + k] = y[k];
        if (s == SARCO_OK) probabilities(r->logits + f * nc, nc, r->per_fold + f * nc);
    }
    free(y);
    if (s != SARCO_OK) {
        sarco_classification_free(r);
        return s;
    }
    for (int k = 0; k < nc; k++) {
        double mean = 0.0, var = 0.0;
        for (int f = 0; f < nf; f++) mean += r->per_fold[f * nc + k];
        mean /= nf;
        for (int f = 0; f < nf; f++) var += (r->per_fold[f * nc + k] - mean) * (r->per_fold[f * nc + k] - mean);
        r->probability[k] = mean;
        r->fold_sd[k] = sqrt(var / nf);
    }
    r->predicted = predicted_class(r->probability, nc);
    *out = r;
    return SARCO_OK;
}

static sarco_status no_tabular(sarco_context *ctx, const char *tabular_json, const char *fn) {
    if (tabular_json)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: tabular values given but the model takes none", fn);
    return SARCO_OK;
}

/* preprocessed tensor of a picture (caller frees *x) */
static sarco_status prepare(sarco_context *ctx, const sarco_model *m, const sarco_picture *pic, int64_t *shape,
                            float **x) {
    *x = NULL;
    sarco_status s = sarco_classify_preprocess(ctx, m, pic, shape, NULL, 0);
    if (s != SARCO_OK) return s;
    const size_t n = (size_t)(shape[1] * shape[2] * shape[3]);
    *x = malloc(n * sizeof **x);
    if (!*x) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "classify: out of memory");
    s = sarco_classify_preprocess(ctx, m, pic, shape, *x, n);
    if (s != SARCO_OK) {
        free(*x);
        *x = NULL;
    }
    return s;
}

sarco_status sarco_classify(sarco_context *ctx, sarco_model *m, const sarco_picture *pic, const char *tabular_json,
                            sarco_classification **out) {
    sarco_clear_error(ctx);
    if (out) *out = NULL;
    sarco_status s = no_tabular(ctx, tabular_json, "sarco_classify");
    if (s != SARCO_OK) return s;
    int64_t shape[4];
    float *x;
    s = prepare(ctx, m, pic, shape, &x);
    if (s != SARCO_OK) return s;
    s = sarco_classify_tensor(ctx, m, shape, x, out);
    free(x);
    return s;
}

/* ---- Grad-CAM ---- */

/* One fold's normalised map on the A grid, then pytorch-grad-cam's scale_cam_image steps:
 * cam = ReLU(sum_k w_k A_k) with w_k = mean_ij dscore/dA_ijk; cam = (cam - min) / (1e-7 + max); cv2
 * INTER_LINEAR to (oh, ow); ReLU; (cam - min) / (1e-7 + max) again (aggregate_multi_layers).
 * relu_a: the activations enter the sum through a ReLU (DenseNet, see the caller). */
static void cam_from(const float *A, const double *dA, int64_t ah, int64_t aw, int64_t K, double sign, int relu_a,
                     int64_t oh, int64_t ow, float *small, float *cam) {
    double *wk = calloc((size_t)K, sizeof *wk);
    if (!wk) return;
    for (int64_t p = 0; p < ah * aw; p++)
        for (int64_t k = 0; k < K; k++) wk[k] += dA[p * K + k];
    for (int64_t k = 0; k < K; k++) wk[k] = sign * wk[k] / (double)(ah * aw);
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t p = 0; p < ah * aw; p++) {
        double v = 0.0;
        for (int64_t k = 0; k < K; k++) v += wk[k] * (relu_a && A[p * K + k] < 0.0f ? 0.0f : A[p * K + k]);
        small[p] = v > 0.0 ? (float)v : 0.0f;
        mn = small[p] < mn ? small[p] : mn;
    }
    for (int64_t p = 0; p < ah * aw; p++) mx = (small[p] -= mn) > mx ? small[p] : mx;
    for (int64_t p = 0; p < ah * aw; p++) small[p] = small[p] / (1e-7f + mx);
    free(wk);
    sarco_resize_linear_cv(small, ah, aw, oh, ow, cam);
    mn = INFINITY, mx = -INFINITY;
    for (int64_t p = 0; p < oh * ow; p++) {
        cam[p] = cam[p] > 0.0f ? cam[p] : 0.0f;
        mn = cam[p] < mn ? cam[p] : mn;
    }
    for (int64_t p = 0; p < oh * ow; p++) mx = (cam[p] -= mn) > mx ? cam[p] : mx;
    for (int64_t p = 0; p < oh * ow; p++) cam[p] = cam[p] / (1e-7f + mx);
}

static sarco_status gradcam_run(sarco_context *ctx, sarco_model *m, const int64_t *in, const float *x, int target,
                                int64_t oh, int64_t ow, float *cam) {
    int64_t classes;
    sarco_status s = check_tensor(ctx, m, in, x, "sarco_gradcam", &classes);
    if (s != SARCO_OK) return s;
    if (target < -1 || target >= (classes == 1 ? 2 : classes))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_gradcam: target %d is not a class of this model (%lld)",
                          target, (long long)(classes == 1 ? 2 : classes));
    const int nf = sarco_model_fold_count(m), nc = (int)classes;
    sarco_backend *be = ctx->be;
    const size_t nx = (size_t)(in[1] * in[2] * in[3]);
    void *dx = NULL;
    float **A = calloc((size_t)nf, sizeof *A);
    double *logits = calloc((size_t)(nf * nc), sizeof *logits);
    int64_t a[4] = {0};
    if (!A || !logits) {
        free(A);
        free(logits);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_gradcam: out of memory");
    }
    s = be->ops->alloc(be, nx * sizeof(float), &dx);
    if (s == SARCO_OK) s = be->ops->upload(be, dx, x, nx * sizeof(float));
    double *dA = NULL;
    /* pass 1: every fold's A (host) and logits */
    for (int f = 0; f < nf && s == SARCO_OK; f++) {
        void *state = NULL;
        const sarco_classifier *c = sarco_model_classifier_run(ctx, m, f, &state);
        if (!c) {
            s = sarco_fail(ctx, SARCO_ERR_INTERNAL, "sarco_gradcam: fold %d has no classifier split", f);
            break;
        }
        const float *Ab = NULL;
        s = c->features(ctx, state, in, dx, &Ab, a);
        const size_t na = (size_t)(a[1] * a[2] * a[3]);
        if (s == SARCO_OK && !(A[f] = malloc(na * sizeof(float))))
            s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_gradcam: out of memory");
        if (s == SARCO_OK) s = be->ops->download(be, A[f], Ab, na * sizeof(float));
        if (s == SARCO_OK && !dA && !(dA = malloc(na * sizeof *dA)))
            s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_gradcam: out of memory");
        if (s == SARCO_OK) s = sarco_head_backward_host(ctx, c->head(state), a[1], a[2], A[f], 0, logits + f * nc, dA);
    }
    be->ops->free(be, dx);
    /* the class: given, or the ensemble's prediction */
    int cls = target;
    if (s == SARCO_OK && cls < 0) {
        double *p = calloc((size_t)nc, sizeof *p), *pf = calloc((size_t)nc, sizeof *pf);
        if (!p || !pf) s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_gradcam: out of memory");
        for (int f = 0; f < nf && s == SARCO_OK; f++) {
            probabilities(logits + f * nc, nc, pf);
            for (int k = 0; k < nc; k++) p[k] += pf[k] / nf;
        }
        if (s == SARCO_OK) cls = predicted_class(p, nc);
        free(p);
        free(pf);
    }
    /* pass 2: per fold, d score / dA and the map; the mean over folds */
    float *small = s == SARCO_OK ? malloc((size_t)(a[1] * a[2]) * sizeof *small) : NULL;
    float *one = s == SARCO_OK ? malloc((size_t)(oh * ow) * sizeof *one) : NULL;
    if (s == SARCO_OK && (!small || !one)) s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_gradcam: out of memory");
    if (s == SARCO_OK) memset(cam, 0, (size_t)(oh * ow) * sizeof *cam);
    for (int f = 0; f < nf && s == SARCO_OK; f++) {
        void *state = NULL;
        const sarco_classifier *c = sarco_model_classifier_fold(m, f, &state);
        const int idx = nc == 1 ? 0 : cls;
        const double sign = nc == 1 && cls == 0 ? -1.0 : 1.0;
        s = sarco_head_backward_host(ctx, c->head(state), a[1], a[2], A[f], idx, NULL, dA);
        if (s != SARCO_OK) break;
        one[0] = NAN;
        /* DenseNet's forward applies F.relu(inplace=True) to the hooked A: pytorch-grad-cam's stored
         * activation is then ReLU(A) while its gradient stays d score / dA. A head that starts with a
         * RELU reproduces that (its in-place ReLU is the only way such a head arises in torchvision). */
        const sarco_head *hd = c->head(state);
        const int relu_a = hd->count > 0 && hd->layers[0].kind == SARCO_HEAD_RELU;
        cam_from(A[f], dA, a[1], a[2], a[3], sign, relu_a, oh, ow, small, one);
        if (isnan(one[0])) s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "sarco_gradcam: out of memory");
        for (int64_t p = 0; p < oh * ow && s == SARCO_OK; p++) cam[p] += one[p] / (float)nf;
    }
    free(small);
    free(one);
    free(dA);
    for (int f = 0; f < nf; f++) free(A[f]);
    free(A);
    free(logits);
    return s;
}

sarco_status sarco_gradcam_tensor(sarco_context *ctx, sarco_model *m, const int64_t *in, const float *x, int target,
                                  float *cam, size_t cam_count) {
    sarco_clear_error(ctx);
    if (!in || !cam) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_gradcam_tensor: NULL shape or cam");
    if (cam_count != (size_t)(in[2] * in[3]))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_gradcam_tensor: cam holds %zu floats, need %lld",
                          cam_count, (long long)(in[2] * in[3]));
    return gradcam_run(ctx, m, in, x, target, in[2], in[3], cam);
}

sarco_status sarco_gradcam(sarco_context *ctx, sarco_model *m, const sarco_picture *pic, const char *tabular_json,
                           int target, float *cam, size_t cam_count) {
    sarco_clear_error(ctx);
    sarco_status s = no_tabular(ctx, tabular_json, "sarco_gradcam");
    if (s != SARCO_OK) return s;
    if (!pic || !cam) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_gradcam: NULL picture or cam");
    if (cam_count != (size_t)(pic->width * pic->height))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_gradcam: cam holds %zu floats, need %lld", cam_count,
                          (long long)(pic->width * pic->height));
    int64_t shape[4];
    float *x;
    s = prepare(ctx, m, pic, shape, &x);
    if (s != SARCO_OK) return s;
    s = gradcam_run(ctx, m, shape, x, target, pic->height, pic->width, cam);
    free(x);
    return s;
}
