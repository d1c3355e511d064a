/* L3 body composition on one axial slice: muscle compartment, SMA in the muscle window, IMAT and
 * low-attenuation muscle inside the compartment, muscle attenuation; and the slice through the
 * centre of a vertebra in a label map. One pass over the pixels, in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "measure.h"

#define L3_MIN_SPACING_MM 0.1
#define L3_MAX_SPACING_MM 5.0

void sarco_l3_options_init(sarco_l3_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->muscle_hu[0] = -29.0, o->muscle_hu[1] = 150.0;
    o->low_attenuation_hu[0] = -29.0, o->low_attenuation_hu[1] = 29.0;
    o->imat_hu[0] = -190.0, o->imat_hu[1] = -30.0;
}

static int in_window(double v, const double w[2]) { return v >= w[0] && v <= w[1]; }

static int good_window(const double w[2]) { return isfinite(w[0]) && isfinite(w[1]) && w[0] <= w[1]; }

sarco_status sarco_l3_measure(sarco_context *ctx, const int64_t *dims, const double *spacing, const uint16_t *labels,
                              const float *hu, const int32_t *muscle_labels, size_t nmuscle,
                              const sarco_l3_options *opts, sarco_l3_measures *out) {
    static const char fn[] = "sarco_l3_measure";
    if (!out || !labels || !hu || !muscle_labels || !nmuscle)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: labels, hu, muscle_labels or out is NULL/empty", fn);
    memset(out, 0, sizeof *out);
    int64_t n;
    sarco_status s = sarco_measure_check_grid(ctx, fn, 2, dims, spacing, &n);
    if (s != SARCO_OK) return s;
    for (int a = 0; a < 2; a++)
        if (spacing[a] < L3_MIN_SPACING_MM || spacing[a] > L3_MAX_SPACING_MM)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "%s: pixel spacing %g mm (axis %d) is not a CT pixel (expected %g..%g mm): check the "
                              "file's units or give the spacing",
                              fn, spacing[a], a, L3_MIN_SPACING_MM, L3_MAX_SPACING_MM);
    sarco_l3_options o;
    sarco_l3_options_init(&o);
    if (opts) {
        if (opts->struct_size == 0 || opts->struct_size > sizeof o)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: options.struct_size is not set", fn);
        memcpy(&o, opts, opts->struct_size);
    }
    if (!good_window(o.muscle_hu) || !good_window(o.low_attenuation_hu) || !good_window(o.imat_hu))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: an HU window is not finite lo <= hi", fn);
    if (!(o.height_m >= 0.0) || o.height_m > 3.0)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: height %g m is not 0 (none) or a height", fn, o.height_m);
    uint8_t is_muscle[65536 / 8] = {0};
    for (size_t i = 0; i < nmuscle; i++) {
        if (muscle_labels[i] <= 0 || muscle_labels[i] > UINT16_MAX)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: muscle label %d is outside 1..65535", fn,
                              (int)muscle_labels[i]);
        is_muscle[muscle_labels[i] >> 3] |= (uint8_t)(1u << (muscle_labels[i] & 7));
    }
    int64_t comp = 0, sma = 0, low = 0, imat = 0, bad = 0;
    double sum = 0.0, sum2 = 0.0, shift = 0.0;
    int have_shift = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint16_t l = labels[i];
        if (!(is_muscle[l >> 3] & (1u << (l & 7)))) continue;
        comp++;
        const double v = hu[i];
        if (!isfinite(v)) {
            bad++;
            continue;
        }
        if (in_window(v, o.imat_hu)) imat++;
        if (!in_window(v, o.muscle_hu)) continue;
        if (!have_shift) shift = v, have_shift = 1; /* shifted sums keep the SD exact for HU ~ 40 */
        sma++;
        sum += v - shift;
        sum2 += (v - shift) * (v - shift);
        if (in_window(v, o.low_attenuation_hu)) low++;
    }
    const double cell = spacing[0] * spacing[1];
    out->pixel_area_mm2 = cell;
    out->compartment_pixels = comp;
    out->compartment_area_cm2 = (double)comp * cell / 100.0;
    out->sma_pixels = sma;
    out->sma_cm2 = (double)sma * cell / 100.0;
    out->smi_cm2_m2 = o.height_m > 0.0 ? out->sma_cm2 / (o.height_m * o.height_m) : 0.0;
    if (sma > 0) {
        const double m = sum / (double)sma;
        out->muscle_attenuation_hu = shift + m;
        const double var = sum2 / (double)sma - m * m;
        out->muscle_attenuation_sd_hu = var > 0.0 ? sqrt(var) : 0.0;
        out->low_attenuation_fraction = (double)low / (double)sma;
    }
    out->low_attenuation_pixels = low;
    out->low_attenuation_area_cm2 = (double)low * cell / 100.0;
    out->imat_pixels = imat;
    out->imat_area_cm2 = (double)imat * cell / 100.0;
    out->nonfinite_pixels = bad;
    return SARCO_OK;
}

sarco_status sarco_l3_slice_from_labels(sarco_context *ctx, const sarco_image *g, const uint16_t *labels,
                                        size_t labels_count, int32_t label, int64_t *slice, double *centroid_z) {
    static const char fn[] = "sarco_l3_slice_from_labels";
    if (!g || !labels || !slice) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: NULL argument", fn);
    if (g->ndim != 3 || g->dims[2] < 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: the vertebra map must be a 3-D volume", fn);
    if (label <= 0 || label > UINT16_MAX)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: label %d is outside 1..65535", fn, (int)label);
    const int64_t nx = g->dims[0], ny = g->dims[1], nz = g->dims[2];
    if ((size_t)(nx * ny * nz) != labels_count)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: labels holds %zu values, the grid %lld", fn, labels_count,
                          (long long)(nx * ny * nz));
    /* the third voxel axis must point mostly along the world's S axis for its slices to be axial */
    const double cx = fabs(g->affine[0][2]), cy = fabs(g->affine[1][2]), cz = fabs(g->affine[2][2]);
    if (!(cz > cx && cz > cy))
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED,
                          "%s: the volume's third axis does not run head-feet (affine column %g, %g, %g): its slices "
                          "are not axial",
                          fn, g->affine[0][2], g->affine[1][2], g->affine[2][2]);
    double sz = 0.0;
    int64_t cnt = 0;
    for (int64_t z = 0; z < nz; z++) {
        int64_t c = 0;
        const uint16_t *p = labels + z * nx * ny;
        for (int64_t i = 0; i < nx * ny; i++) c += p[i] == label;
        cnt += c;
        sz += (double)c * (double)z;
    }
    if (cnt == 0)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: label %d is not in the vertebra map", fn, (int)label);
    const double cz_idx = sz / (double)cnt;
    *slice = (int64_t)floor(cz_idx + 0.5);
    if (centroid_z) *centroid_z = cz_idx;
    return SARCO_OK;
}
