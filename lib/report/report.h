/* Pictures and the report: internal interface of lib/report/{overlay,html,sha256}.c and their tests. */
#ifndef SARCO_REPORT_H
#define SARCO_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

#define SARCO_OVERLAY_MAX_AXIAL 64
#define SARCO_OVERLAY_MAX_SIDE 4096 /* canvas cap, pixels a side */

typedef enum sarco_overlay_view { SARCO_VIEW_2D = 0, SARCO_VIEW_AXIAL = 1, SARCO_VIEW_CORONAL = 2 } sarco_overlay_view;

/* Where a render put things, for the tests and the report. */
typedef struct sarco_overlay_panel {
    int x, y, w, h;          /* canvas pixels */
    sarco_overlay_view view;
    int64_t slice;           /* z of an axial panel, y of the coronal one, 0 in 2D */
} sarco_overlay_panel;

typedef struct sarco_overlay_layout {
    int npanels;
    sarco_overlay_panel panels[SARCO_OVERLAY_MAX_AXIAL + 1];
    double pixel_mm;         /* mm per canvas pixel */
    int flip[3];             /* display flips of the voxel axes (x, y, z) */
    double window_lo, window_width; /* grey = 255 (v - lo) / width, rounded, clamped */
    int legend_y, legend_h;  /* the legend band (full canvas width); 0 high when none */
    int nlegend;             /* entries drawn */
    int text_scale;          /* font pixels per font-cell pixel */
    int width, height;
} sarco_overlay_layout;

/* sarco_overlay_render with the layout it used (layout may be NULL). */
SARCO_INTERNAL sarco_status sarco_overlay_render_ex(sarco_context *ctx, const sarco_image *image, const uint16_t *labels,
                                                    const sarco_overlay_options *opts, uint8_t **rgb, int64_t *width,
                                                    int64_t *height, sarco_overlay_layout *layout);

/* Draws ASCII text with the 5x7 font at (x, y) (top-left of the first cell), scale s, clipped to
 * the canvas. Returns the width drawn in pixels. */
SARCO_INTERNAL int sarco_draw_text(uint8_t *rgb, int width, int height, int x, int y, const char *text, int s,
                                   const uint8_t color[3]);

/* SHA-256 of a file, as 64 lowercase hex digits + NUL. */
SARCO_INTERNAL sarco_status sarco_sha256_file(sarco_context *ctx, const char *path, char hex[65]);
SARCO_INTERNAL void sarco_sha256(const void *data, size_t n, uint8_t digest[32]);

#endif
