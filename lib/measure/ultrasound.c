/* Ultrasound measures of a 2D label map: CSA, muscle thickness (MT) as the median vertical extent over
 * the central third of the muscle's span, the largest extent, the largest inscribed circle (sarco_edt),
 * 8-connected components, the bounding box and the echo intensity of the raw grey image. One pass finds
 * every label's pixel count and bounding box; each reported label is then measured inside its box
 * (plus a one-pixel margin of background, so the image border counts as outside for the EDT). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "measure.h"

typedef struct us_box {
    int64_t count, r0, r1, c0, c1;
} us_box;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy.median of v[0..n), n > 0; sorts v */
static double median(double *v, int64_t n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* 8-connected components of mask (values 1) in a rows x cols crop; marks visited pixels 2.
 * Returns the number of components and the size of the largest; stack holds rows x cols entries. */
static int64_t components8(uint8_t *mask, int64_t rows, int64_t cols, int64_t *stack, int64_t *largest) {
    int64_t ncomp = 0, best = 0;
    for (int64_t start = 0; start < rows * cols; start++) {
        if (mask[start] != 1) continue;
        int64_t top = 0, size = 0;
        stack[top++] = start;
        mask[start] = 2;
        while (top > 0) {
            int64_t p = stack[--top], r = p / cols, c = p % cols;
            size++;
            for (int64_t dr = -1; dr <= 1; dr++)
                for (int64_t dc = -1; dc <= 1; dc++) {
                    int64_t rr = r + dr, cc = c + dc;
                    if (rr < 0 || rr >= rows || cc < 0 || cc >= cols) continue;
                    int64_t q = rr * cols + cc;
                    if (mask[q] == 1) {
                        mask[q] = 2;
                        stack[top++] = q;
                    }
                }
        }
        ncomp++;
        if (size > best) best = size;
    }
    *largest = best;
    return ncomp;
}

/* One label inside its box: everything but the counts the first pass found. */
static sarco_status measure_one(sarco_context *ctx, const int64_t *dims, const double *sp, const uint16_t *labels,
                                const float *image, uint16_t lab, const us_box *b, sarco_us_measure *m) {
    const int64_t H = dims[0], W = dims[1];
    const int64_t h = b->r1 - b->r0 + 1, w = b->c1 - b->c0 + 1;
    const int64_t ph = h + 2, pw = w + 2, pn = ph * pw; /* padded crop */
    m->pixels = b->count;
    m->csa_mm2 = (double)b->count * sp[0] * sp[1];
    m->csa_cm2 = m->csa_mm2 / 100.0;
    m->row_min = b->r0;
    m->row_max = b->r1;
    m->col_min = b->c0;
    m->col_max = b->c1;
    m->height_mm = (double)h * sp[0];
    m->width_mm = (double)w * sp[1];
    if (b->r0 == 0 || b->c0 == 0 || b->r1 == H - 1 || b->c1 == W - 1) m->flags |= SARCO_US_TOUCHES_EDGE;

    const size_t mask_bytes = (size_t)pn, edt_bytes = (size_t)pn * sizeof(float);
    const size_t stack_bytes = (size_t)pn * sizeof(int64_t), ext_bytes = (size_t)w * sizeof(double);
    uint8_t *mask = sarco_ctx_malloc(ctx, mask_bytes, "ultrasound mask");
    float *edt = mask ? sarco_ctx_malloc(ctx, edt_bytes, "ultrasound EDT") : NULL;
    int64_t *stack = edt ? sarco_ctx_malloc(ctx, stack_bytes, "ultrasound components") : NULL;
    double *ext = stack ? sarco_ctx_malloc(ctx, ext_bytes, "ultrasound extents") : NULL;
    sarco_status s = ext ? SARCO_OK : SARCO_ERR_OUT_OF_MEMORY;
    if (s != SARCO_OK) goto done;

    /* the crop, the column extents, and the echo sum */
    double sum = 0.0;
    int64_t finite = 0;
    for (int64_t r = 0; r < h; r++) {
        const uint16_t *row = labels + (b->r0 + r) * W + b->c0;
        for (int64_t c = 0; c < w; c++)
            if (row[c] == lab) {
                mask[(r + 1) * pw + c + 1] = 1;
                if (image) {
                    float v = image[(b->r0 + r) * W + b->c0 + c];
                    if (isfinite(v)) {
                        sum += v;
                        finite++;
                    }
                }
            }
    }
    if (image) {
        m->flags |= SARCO_US_HAS_IMAGE;
        m->finite_pixels = finite;
        if (finite > 0) {
            const double mean = sum / (double)finite;
            double ss = 0.0; /* second pass around the mean: no cancellation */
            for (int64_t r = 0; r < h; r++)
                for (int64_t c = 0; c < w; c++) {
                    if (mask[(r + 1) * pw + c + 1] != 1) continue;
                    float v = image[(b->r0 + r) * W + b->c0 + c];
                    if (isfinite(v)) ss += ((double)v - mean) * ((double)v - mean);
                }
            m->echo_mean = mean;
            m->echo_sd = sqrt(ss / (double)finite);
        }
    }

    /* vertical extent per column (0 for a column without a pixel) */
    double mt_max = 0.0;
    for (int64_t c = 0; c < w; c++) {
        int64_t top = -1, bottom = -1;
        for (int64_t r = 0; r < h; r++)
            if (mask[(r + 1) * pw + c + 1]) {
                if (top < 0) top = r;
                bottom = r;
            }
        ext[c] = top < 0 ? 0.0 : (double)(bottom - top + 1) * sp[0];
        if (ext[c] > mt_max) mt_max = ext[c];
    }
    m->mt_max_mm = mt_max;
    /* the central third of the span [0, w) in pixel edges: columns whose centre c + 0.5 lies in [w/3, 2w/3] */
    int64_t k = 0;
    for (int64_t c = 0; c < w; c++) {
        double centre = (double)c + 0.5;
        if (centre >= (double)w / 3.0 && centre <= 2.0 * (double)w / 3.0 && ext[c] > 0) ext[k++] = ext[c];
    }
    if (k == 0) { /* a span of one or two columns: its middle column, else the tallest */
        ext[0] = mt_max;
        k = 1;
    }
    m->mt_columns = k;
    m->mt_mm = median(ext, k);

    /* the largest inscribed circle: the EDT of the padded crop, whose margin is background */
    const int64_t pd[2] = {ph, pw};
    s = sarco_edt(ctx, 2, pd, sp, mask, edt);
    if (s != SARCO_OK) goto done;
    float best = 0.0f;
    for (int64_t i = 0; i < pn; i++)
        if (edt[i] > best) best = edt[i];
    m->inscribed_diameter_mm = 2.0 * (double)best;

    int64_t largest;
    m->components = components8(mask, ph, pw, stack, &largest);
    m->largest_component_share = (double)largest / (double)b->count;
    if (m->components > 1) m->flags |= SARCO_US_FRAGMENTED;
done:
    sarco_ctx_free(ctx, ext, ext_bytes);
    sarco_ctx_free(ctx, stack, stack_bytes);
    sarco_ctx_free(ctx, edt, edt_bytes);
    sarco_ctx_free(ctx, mask, mask_bytes);
    return s;
}

sarco_status sarco_measure_ultrasound(sarco_context *ctx, const int64_t *dims, const double *spacing,
                                      const uint16_t *labels, const float *image, const int32_t *which, size_t nwhich,
                                      sarco_us_measure **out, size_t *count) {
    static const char fn[] = "sarco_measure_ultrasound";
    if (out) *out = NULL;
    if (count) *count = 0;
    if (!out || !count || !labels || !dims)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: labels, dims, out or count is NULL", fn);
    if (!spacing)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "%s: no pixel spacing: CSA and MT in mm need the image's pixel size, which is never assumed "
                          "to be 1 mm; pass it (sarco measure --pixel-spacing-mm ROW COL), or use a file that "
                          "carries it (PNG pHYs, JPEG density, NIfTI)", fn);
    int64_t n;
    sarco_status s = sarco_measure_check_grid(ctx, fn, 2, dims, spacing, &n);
    if (s != SARCO_OK) return s;
    for (size_t i = 0; which && i < nwhich; i++)
        if (which[i] < 0 || which[i] > UINT16_MAX)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: label %d is outside 0..65535", fn, (int)which[i]);

    /* pass 1: counts and boxes of every label value */
    uint16_t top = 0;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] > top) top = labels[i];
    const size_t nl = (size_t)top + 1, box_bytes = nl * sizeof(us_box);
    us_box *box = sarco_ctx_malloc(ctx, box_bytes, "ultrasound boxes");
    if (!box) return SARCO_ERR_OUT_OF_MEMORY;
    for (size_t l = 0; l < nl; l++) {
        box[l].r0 = box[l].c0 = INT64_MAX;
        box[l].r1 = box[l].c1 = -1;
    }
    const int64_t W = dims[1];
    for (int64_t r = 0; r < dims[0]; r++)
        for (int64_t c = 0; c < W; c++) {
            us_box *b = &box[labels[r * W + c]];
            b->count++;
            if (r < b->r0) b->r0 = r;
            b->r1 = r;
            if (c < b->c0) b->c0 = c;
            if (c > b->c1) b->c1 = c;
        }

    size_t m = 0;
    if (which)
        m = nwhich;
    else
        for (size_t l = 1; l < nl; l++) m += box[l].count > 0;
    sarco_us_measure *res = calloc(m ? m : 1, sizeof *res);
    if (!res) {
        sarco_ctx_free(ctx, box, box_bytes);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu results", fn, m);
    }
    size_t j = 0;
    for (size_t l = which ? 0 : 1; s == SARCO_OK && (which ? l < nwhich : l < nl); l++) {
        const size_t lab = which ? (size_t)which[l] : l;
        if (!which && box[lab].count == 0) continue;
        sarco_us_measure *r = &res[j++];
        r->label = (int32_t)lab;
        if (lab >= nl || box[lab].count == 0) {
            r->flags = SARCO_US_EMPTY | (image ? SARCO_US_HAS_IMAGE : 0);
            r->row_min = r->row_max = r->col_min = r->col_max = -1;
            continue;
        }
        s = measure_one(ctx, dims, spacing, labels, image, (uint16_t)lab, &box[lab], r);
    }
    sarco_ctx_free(ctx, box, box_bytes);
    if (s != SARCO_OK) {
        free(res);
        return s;
    }
    *out = res;
    *count = m;
    return SARCO_OK;
}

void sarco_us_measures_free(sarco_us_measure *m) { free(m); }
