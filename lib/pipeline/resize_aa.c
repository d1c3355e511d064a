/* Image resampling for the classifiers (host, planar float (C, H, W)):
 *
 * - sarco_resize_aa: torchvision's tensor Resize(antialias=True) bilinear, i.e. ATen's
 *   _upsample_bilinear2d_aa (align_corners False), which follows PIL's ImagingResample: for output
 *   index i along an axis of in -> out samples, scale = in / out, support = max(scale, 1), centre
 *   c = scale (i + 0.5); taps j in [floor(c - support + 0.5) clamped to 0, floor(c + support + 0.5)
 *   clamped to in), weight triangle((j - c + 0.5) / max(scale, 1)), normalised to sum 1. Separable:
 *   the width first, then the height, as ATen does. Downscaling widens the triangle (antialias);
 *   upscaling is plain half-pixel bilinear with edge taps renormalised.
 * - sarco_resize_linear_cv: OpenCV's cv2.resize INTER_LINEAR on float32 (half-pixel centres,
 *   src = (i + 0.5) scale - 0.5, indices clamped to the edge, no antialias), the upsampling
 *   pytorch-grad-cam applies to its maps. */
#include <math.h>
#include <stdlib.h>

#include "pipeline.h"

typedef struct taps {
    int64_t *lo, *n; /* per output index: first tap, tap count */
    double *w;       /* per output index: kmax weights */
    int64_t kmax;
} taps;

static void taps_free(taps *t) {
    free(t->lo);
    free(t->n);
    free(t->w);
}

static int taps_make(int64_t in, int64_t out, taps *t) {
    const double scale = (double)in / (double)out;
    const double support = scale >= 1.0 ? scale : 1.0;
    const double inv = 1.0 / support;
    t->kmax = (int64_t)ceil(support) * 2 + 1;
    t->lo = malloc((size_t)out * sizeof *t->lo);
    t->n = malloc((size_t)out * sizeof *t->n);
    t->w = calloc((size_t)(out * t->kmax), sizeof *t->w);
    if (!t->lo || !t->n || !t->w) return -1;
    for (int64_t i = 0; i < out; i++) {
        const double c = scale * ((double)i + 0.5);
        int64_t lo = (int64_t)(c - support + 0.5), hi = (int64_t)(c + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        if (hi - lo > t->kmax) hi = lo + t->kmax;
        double *w = t->w + i * t->kmax, sum = 0.0;
        for (int64_t j = lo; j < hi; j++) {
            const double x = fabs(((double)j - c + 0.5) * inv);
            w[j - lo] = x < 1.0 ? 1.0 - x : 0.0;
            sum += w[j - lo];
        }
        if (sum > 0.0)
            for (int64_t j = 0; j < hi - lo; j++) w[j] /= sum;
        t->lo[i] = lo;
        t->n[i] = hi - lo;
    }
    return 0;
}

sarco_status sarco_resize_aa(sarco_context *ctx, const float *in, int64_t c, int64_t h, int64_t w, int64_t oh,
                             int64_t ow, float *out) {
    if (h < 1 || w < 1 || oh < 1 || ow < 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "resize: empty size %lldx%lld -> %lldx%lld", (long long)h,
                          (long long)w, (long long)oh, (long long)ow);
    taps tx = {0}, ty = {0};
    float *tmp = malloc((size_t)(h * ow) * sizeof *tmp);
    if (!tmp || taps_make(w, ow, &tx) != 0 || taps_make(h, oh, &ty) != 0) {
        free(tmp);
        taps_free(&tx);
        taps_free(&ty);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "resize: out of memory");
    }
    for (int64_t ch = 0; ch < c; ch++) {
        const float *src = in + ch * h * w;
        for (int64_t y = 0; y < h; y++) /* (h, w) -> (h, ow) */
            for (int64_t x = 0; x < ow; x++) {
                const double *wt = tx.w + x * tx.kmax;
                const float *s = src + y * w + tx.lo[x];
                double acc = 0.0;
                for (int64_t k = 0; k < tx.n[x]; k++) acc += wt[k] * s[k];
                tmp[y * ow + x] = (float)acc;
            }
        float *dst = out + ch * oh * ow;
        for (int64_t y = 0; y < oh; y++) { /* (h, ow) -> (oh, ow) */
            const double *wt = ty.w + y * ty.kmax;
            for (int64_t x = 0; x < ow; x++) {
                double acc = 0.0;
                for (int64_t k = 0; k < ty.n[y]; k++) acc += wt[k] * tmp[(ty.lo[y] + k) * ow + x];
                dst[y * ow + x] = (float)acc;
            }
        }
    }
    free(tmp);
    taps_free(&tx);
    taps_free(&ty);
    return SARCO_OK;
}

static void cv_index(int64_t i, int64_t in, int64_t out, int64_t *i0, int64_t *i1, double *f) {
    const double s = ((double)i + 0.5) * ((double)in / (double)out) - 0.5;
    int64_t a = (int64_t)floor(s);
    double fr = s - (double)a;
    if (a < 0) {
        a = 0;
        fr = 0.0;
    }
    if (a >= in - 1) {
        a = in - 1;
        fr = 0.0;
    }
    *i0 = a;
    *i1 = a + 1 < in ? a + 1 : a;
    *f = fr;
}

void sarco_resize_linear_cv(const float *in, int64_t h, int64_t w, int64_t oh, int64_t ow, float *out) {
    for (int64_t y = 0; y < oh; y++) {
        int64_t y0, y1;
        double fy;
        cv_index(y, h, oh, &y0, &y1, &fy);
        for (int64_t x = 0; x < ow; x++) {
            int64_t x0, x1;
            double fx;
            cv_index(x, w, ow, &x0, &x1, &fx);
            const double top = in[y0 * w + x0] * (1.0 - fx) + in[y0 * w + x1] * fx;
            const double bot = in[y1 * w + x0] * (1.0 - fx) + in[y1 * w + x1] * fx;
            out[y * ow + x] = (float)(top * (1.0 - fy) + bot * fy);
        }
    }
}
