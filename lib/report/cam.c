/* Grad-CAM overlay: a [0, 1] map in viridis (matplotlib's perceptual colormap, linear between its
 * values at t = 0, 1/8, ..., 1) over the picture's grey, blended with alpha like
 * pytorch-grad-cam's show_cam_on_image (image_weight = 1 - alpha). */
#include <math.h>
#include <string.h>

#include "lib/core/core.h"
#include "sarco/sarco.h"

static const unsigned char VIRIDIS[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 82, 139},
                                            {44, 113, 142}, {33, 145, 140}, {39, 173, 129},
                                            {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};

sarco_status sarco_cam_overlay(sarco_context *ctx, const sarco_picture *pic, const float *cam, size_t cam_count,
                               double alpha, uint8_t *rgb) {
    if (!pic || !pic->data || !cam || !rgb)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_cam_overlay: NULL argument");
    const int64_t n = pic->width * pic->height;
    if (cam_count != (size_t)n)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_cam_overlay: the map holds %zu values, the picture %lld",
                          cam_count, (long long)n);
    if (!(alpha >= 0.0 && alpha <= 1.0))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_cam_overlay: alpha %g is outside [0, 1]", alpha);
    /* grey: BT.601 luma of colour pictures, stretched to 0..255 by the picture's own range */
    const int colour = pic->channels >= 3;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        const double g = colour ? 0.299 * pic->data[i] + 0.587 * pic->data[n + i] + 0.114 * pic->data[2 * n + i]
                                : pic->data[i];
        lo = g < lo ? g : lo;
        hi = g > hi ? g : hi;
    }
    const double span = hi > lo ? hi - lo : 1.0;
    for (int64_t i = 0; i < n; i++) {
        const double g = colour ? 0.299 * pic->data[i] + 0.587 * pic->data[n + i] + 0.114 * pic->data[2 * n + i]
                                : pic->data[i];
        const double grey = 255.0 * (g - lo) / span;
        double t = isfinite(cam[i]) ? cam[i] : 0.0;
        t = t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t;
        const double u = t * 8.0;
        const int k = u >= 8.0 ? 7 : (int)u;
        const double f = u - k;
        for (int c = 0; c < 3; c++) {
            const double col = VIRIDIS[k][c] * (1.0 - f) + VIRIDIS[k + 1][c] * f;
            const double v = (1.0 - alpha) * grey + alpha * col;
            rgb[i * 3 + c] = (uint8_t)(v < 0.0 ? 0 : v > 255.0 ? 255 : lrint(v));
        }
    }
    return SARCO_OK;
}
