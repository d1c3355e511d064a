/* Overlays: an image windowed to grey with its label map in fixed colours and a legend, as an RGB
 * buffer. 2D images are one panel; 3D volumes are a mosaic of evenly spaced axial slices through the
 * labelled extent plus one coronal view through the labels' centroid. Every panel is sampled
 * nearest-neighbour on square output pixels of pixel_mm, so the voxel aspect ratio is kept. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/imageio.h"
#include "font5x7.h"
#include "report.h"

#define NCOLORS 20
/* 20 colours chosen to be told apart (Trubetskoy's list), strong enough to show on grey. */
static const uint8_t palette[NCOLORS][3] = {
    {230, 25, 75},   {60, 180, 75},   {255, 225, 25}, {0, 130, 200},   {245, 130, 48},
    {145, 30, 180},  {70, 240, 240},  {240, 50, 230}, {210, 245, 60},  {250, 190, 212},
    {0, 128, 128},   {220, 190, 255}, {170, 110, 40}, {255, 250, 200}, {128, 0, 0},
    {170, 255, 195}, {128, 128, 0},   {255, 215, 180}, {0, 0, 128},    {128, 128, 128},
};

static const uint8_t WHITE[3] = {255, 255, 255};

void sarco_overlay_color(int label, uint8_t rgb[3]) {
    if (!rgb) return;
    if (label < 1) {
        rgb[0] = rgb[1] = rgb[2] = 0;
        return;
    }
    memcpy(rgb, palette[(label - 1) % NCOLORS], 3);
}

void sarco_overlay_options_init(sarco_overlay_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->style = SARCO_OVERLAY_FILL;
    o->alpha = 0.4;
    o->legend = 1;
    o->axial_slices = 8;
    o->orientation = SARCO_OVERLAY_AUTO;
}

void sarco_overlay_free(uint8_t *rgb) { free(rgb); }

static void put(uint8_t *rgb, int W, int H, int x, int y, const uint8_t c[3]) {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    memcpy(rgb + 3 * ((size_t)y * W + x), c, 3);
}

int sarco_draw_text(uint8_t *rgb, int W, int H, int x, int y, const char *text, int s, const uint8_t c[3]) {
    int x0 = x;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        int g = (*p >= 32 && *p <= 126) ? *p - 32 : '?' - 32;
        for (int col = 0; col < 5; col++)
            for (int row = 0; row < 7; row++)
                if (sarco_font5x7[g][col] >> row & 1)
                    for (int dy = 0; dy < s; dy++)
                        for (int dx = 0; dx < s; dx++) put(rgb, W, H, x + col * s + dx, y + row * s + dy, c);
        x += SARCO_FONT_W * s;
    }
    return x - x0;
}

/* One panel: which image axes run along the columns (au) and rows (av), the fixed axis and index. */
typedef struct view {
    int au, av, af;
    int64_t fixed;
    int flip_u, flip_v;
    int w, h;
} view;

/* The shown range of each axis: [start, start + count) (3D panels are cropped to the labels). */
typedef struct crop {
    int64_t start[3], count[3];
} crop;

static int64_t axis_index(int pix, double d, double sp, int64_t start, int64_t n, int flip) {
    int64_t i = (int64_t)floor((pix + 0.5) * d / sp);
    if (i < 0) i = 0;
    if (i > n - 1) i = n - 1;
    return start + (flip ? n - 1 - i : i);
}

typedef struct render {
    const sarco_image *img;
    const uint16_t *labels;
    double sp[3], d, lo, width;
    int alpha255, outline_only;
    crop cr;
    uint8_t *rgb;
    int W, H;
    uint16_t *lab; /* one panel's labels on the output grid */
    int64_t *vox;  /* one panel's voxel indices */
} render;

/* Output pixels along an axis; past the canvas cap it says cap + 1, so the caller's LIMIT check fires
 * before any int arithmetic can overflow. */
static int panel_size(double n, double sp, double d) {
    double v = n * sp / d;
    if (!(v < SARCO_OVERLAY_MAX_SIDE)) return SARCO_OVERLAY_MAX_SIDE + 1;
    long r = lround(v);
    return r < 1 ? 1 : (int)r;
}

static void draw_panel(render *r, const view *v, int ox, int oy) {
    const sarco_image *img = r->img;
    int64_t nx = img->dims[0], ny = img->dims[1];
    int64_t c[3];
    c[v->af] = v->fixed;
    for (int row = 0; row < v->h; row++) {
        c[v->av] = axis_index(row, r->d, r->sp[v->av], r->cr.start[v->av], r->cr.count[v->av], v->flip_v);
        for (int col = 0; col < v->w; col++) {
            c[v->au] = axis_index(col, r->d, r->sp[v->au], r->cr.start[v->au], r->cr.count[v->au], v->flip_u);
            int64_t k = c[0] + nx * (c[1] + ny * c[2]);
            r->vox[(size_t)row * v->w + col] = k;
            r->lab[(size_t)row * v->w + col] = r->labels ? r->labels[k] : 0;
        }
    }
    for (int row = 0; row < v->h; row++) {
        for (int col = 0; col < v->w; col++) {
            size_t i = (size_t)row * v->w + col;
            float x = img->data[r->vox[i]];
            int g = 0;
            if (isfinite(x)) {
                double t = lround(255.0 * ((double)x - r->lo) / r->width);
                g = t < 0 ? 0 : t > 255 ? 255 : (int)t;
            }
            uint8_t px[3] = {(uint8_t)g, (uint8_t)g, (uint8_t)g};
            uint16_t L = r->lab[i];
            if (L) {
                int edge = row == 0 || col == 0 || row == v->h - 1 || col == v->w - 1 || r->lab[i - 1] != L ||
                           r->lab[i + 1] != L || r->lab[i - v->w] != L || r->lab[i + v->w] != L;
                uint8_t lc[3];
                sarco_overlay_color(L, lc);
                if (edge) {
                    memcpy(px, lc, 3);
                } else if (!r->outline_only) {
                    for (int ch = 0; ch < 3; ch++)
                        px[ch] = (uint8_t)((g * (255 - r->alpha255) + lc[ch] * r->alpha255 + 127) / 255);
                }
            }
            memcpy(r->rgb + 3 * ((size_t)(oy + row) * r->W + ox + col), px, 3);
        }
    }
}

static sarco_status take_options(sarco_context *ctx, const sarco_overlay_options *in, sarco_overlay_options *o) {
    sarco_overlay_options_init(o);
    if (!in) return SARCO_OK;
    if (in->struct_size == 0 || in->struct_size > sizeof *o)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "overlay options: struct_size is not set (call sarco_overlay_options_init first)");
    memcpy(o, in, in->struct_size);
    o->struct_size = sizeof *o;
    if (!(o->alpha >= 0 && o->alpha <= 1))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: alpha %g is outside [0, 1]", o->alpha);
    if (o->window_width > 0 && !(isfinite(o->window_width) && isfinite(o->window_level)))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: the window (W %g, L %g) is not finite",
                          o->window_width, o->window_level);
    if (isnan(o->window_width))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: the window width is NaN");
    if (o->style != SARCO_OVERLAY_FILL && o->style != SARCO_OVERLAY_OUTLINE)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: unknown style %d", (int)o->style);
    if (o->orientation < SARCO_OVERLAY_AUTO || o->orientation > SARCO_OVERLAY_RADIOLOGICAL)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: unknown orientation %d", (int)o->orientation);
    if (o->axial_slices < 1 || o->axial_slices > SARCO_OVERLAY_MAX_AXIAL)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: axial_slices %d is outside 1..%d",
                          o->axial_slices, SARCO_OVERLAY_MAX_AXIAL);
    if (isnan(o->pixel_mm) || isinf(o->pixel_mm))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: pixel_mm is not finite");
    if (o->nclass_names && !o->class_names)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: nclass_names %zu with class_names NULL",
                          o->nclass_names);
    return SARCO_OK;
}

typedef struct legend_entry {
    int label;
    char text[48];
    int x, y, w;
} legend_entry;

#define MAX_LEGEND 64

sarco_status sarco_overlay_render_ex(sarco_context *ctx, const sarco_image *img, const uint16_t *labels,
                                     const sarco_overlay_options *opts, uint8_t **out, int64_t *out_w,
                                     int64_t *out_h, sarco_overlay_layout *layout) {
    if (out) *out = NULL;
    if (out_w) *out_w = 0;
    if (out_h) *out_h = 0;
    if (!img || !out || !out_w || !out_h)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: image, rgb, width and height must not be NULL");
    if (!img->data) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: the image has no voxel data");
    int64_t nvox;
    if ((img->ndim != 2 && img->ndim != 3) || !sarco_dims_product(img->dims, 3, SARCO_IMAGE_MAX_VOXELS, &nvox) ||
        nvox < 1 || (img->ndim == 2 && img->dims[2] != 1))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: the image's ndim/dims are invalid");
    sarco_overlay_options o;
    sarco_status st = take_options(ctx, opts, &o);
    if (st != SARCO_OK) return st;
    int is3d = img->ndim == 3 && img->dims[2] > 1;
    render r;
    memset(&r, 0, sizeof r);
    r.img = img;
    r.labels = labels;
    /* an image without physical spacing (a PNG without pHYs) is shown with square pixels */
    int nsp = is3d ? 3 : 2;
    for (int a = 0; a < 3; a++) r.sp[a] = 1.0;
    if (!(img->flags & SARCO_IMAGE_NO_SPACING)) {
        for (int a = 0; a < nsp; a++) {
            if (!(isfinite(img->spacing[a]) && img->spacing[a] > 0))
                return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: spacing[%d] = %g mm", a, img->spacing[a]);
            r.sp[a] = img->spacing[a];
        }
    }
    int64_t nx = img->dims[0], ny = img->dims[1], nz = img->dims[2];
    if (o.window_width > 0) {
        r.lo = o.window_level - o.window_width / 2;
        r.width = o.window_width;
    } else {
        int in_byte = 1;
        for (int64_t i = 0; i < nvox && in_byte; i++)
            if (isfinite(img->data[i]) && !(img->data[i] >= 0 && img->data[i] <= 255)) in_byte = 0;
        r.lo = in_byte ? 0 : 40 - 200;
        r.width = in_byte ? 255 : 400;
    }
    r.alpha255 = (int)lround(o.alpha * 255);
    r.outline_only = o.style == SARCO_OVERLAY_OUTLINE;

    /* which labels are present, the labelled z extent and the labels' centroid row */
    uint8_t *present = calloc(65536, 1);
    if (!present) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "overlay: out of memory");
    int64_t z0 = nz, z1 = -1, bx0 = nx, bx1 = -1, by0 = ny, by1 = -1;
    double ysum = 0;
    int64_t ycount = 0;
    if (labels)
        for (int64_t z = 0; z < nz; z++)
            for (int64_t y = 0; y < ny; y++)
                for (int64_t x = 0; x < nx; x++) {
                    uint16_t L = labels[x + nx * (y + ny * z)];
                    if (!L) continue;
                    present[L] = 1;
                    if (z < z0) z0 = z;
                    if (z > z1) z1 = z;
                    if (x < bx0) bx0 = x;
                    if (x > bx1) bx1 = x;
                    if (y < by0) by0 = y;
                    if (y > by1) by1 = y;
                    ysum += (double)y;
                    ycount++;
                }
    if (z1 < 0) {
        z0 = 0;
        z1 = nz - 1;
    }
    /* 2D: the whole image; 3D: in-plane, the labels' box grown by 10 % of its size + 4 voxels a side */
    for (int a = 0; a < 3; a++) {
        r.cr.start[a] = 0;
        r.cr.count[a] = img->dims[a];
    }
    if (is3d && bx1 >= 0) {
        int64_t lo[2] = {bx0, by0}, hi[2] = {bx1, by1};
        for (int a = 0; a < 2; a++) {
            int64_t grow = (hi[a] - lo[a] + 1) / 10 + 4;
            int64_t s0 = lo[a] - grow < 0 ? 0 : lo[a] - grow;
            int64_t s1 = hi[a] + grow > img->dims[a] - 1 ? img->dims[a] - 1 : hi[a] + grow;
            r.cr.start[a] = s0;
            r.cr.count[a] = s1 - s0 + 1;
        }
    }

    /* orientation */
    int radiological = o.orientation == SARCO_OVERLAY_RADIOLOGICAL ||
                       (o.orientation == SARCO_OVERLAY_AUTO && (is3d || img->nifti.version != 0));
    int flip[3] = {0, 0, 0};
    if (radiological && !(img->flags & SARCO_IMAGE_NO_SPACING))
        for (int a = 0; a < 3; a++) flip[a] = img->affine[a][a] > 0;

    /* output pixel size */
    double d = o.pixel_mm;
    if (!(d > 0)) {
        double ext = fmax((double)r.cr.count[0] * r.sp[0], (double)r.cr.count[1] * r.sp[1]);
        if (is3d) {
            d = ext / 192.0;
        } else {
            d = fmin(r.sp[0], r.sp[1]);
            double native = ext / d;
            int k = (int)floor(384.0 / native);
            if (k > 1) d /= k; /* small images: an integer zoom */
            if (ext / d > 1024) d = ext / 1024;
        }
    }
    r.d = d;

    /* panels */
    sarco_overlay_layout lay;
    memset(&lay, 0, sizeof lay);
    view views[SARCO_OVERLAY_MAX_AXIAL + 1];
    int nviews = 0, gap = 4, content_w, content_h;
    const int cap = SARCO_FONT_H + 4; /* 3D: a caption band above each panel (z, or the coronal's y) */
    if (!is3d) {
        view v = {0, 1, 2, 0, flip[0], flip[1], panel_size((double)nx, r.sp[0], d), panel_size((double)ny, r.sp[1], d)};
        views[nviews] = v;
        lay.panels[nviews] = (sarco_overlay_panel){0, 0, v.w, v.h, SARCO_VIEW_2D, 0};
        nviews++;
        content_w = v.w;
        content_h = v.h;
    } else {
        int64_t extent = z1 - z0 + 1;
        int n = o.axial_slices < extent ? o.axial_slices : (int)extent;
        int cols = n < 4 ? n : 4, rows = (n + cols - 1) / cols;
        int pw = panel_size((double)r.cr.count[0], r.sp[0], d), ph = panel_size((double)r.cr.count[1], r.sp[1], d);
        for (int k = 0; k < n; k++) {
            int64_t z = z0 + (int64_t)floor((k + 0.5) * (double)extent / n);
            view v = {0, 1, 2, z, flip[0], flip[1], pw, ph};
            views[nviews] = v;
            lay.panels[nviews] = (sarco_overlay_panel){(k % cols) * (pw + gap), (k / cols) * (ph + gap + cap) + cap,
                                                       pw, ph, SARCO_VIEW_AXIAL, z};
            nviews++;
        }
        int64_t yc = ycount ? (int64_t)llround(ysum / (double)ycount) : ny / 2;
        int grid_w = cols * pw + (cols - 1) * gap, grid_h = rows * (ph + cap) + (rows - 1) * gap;
        view cv = {0, 2, 1, yc, flip[0], flip[2], pw, panel_size((double)nz, r.sp[2], d)};
        views[nviews] = cv;
        lay.panels[nviews] = (sarco_overlay_panel){grid_w + gap, cap, cv.w, cv.h, SARCO_VIEW_CORONAL, yc};
        nviews++;
        content_w = grid_w + gap + cv.w;
        content_h = grid_h > cv.h + cap ? grid_h : cv.h + cap;
    }

    /* legend entries and their flow below the picture */
    int s = content_w >= 400 ? 2 : 1, margin = 6 * s, row_h = SARCO_FONT_H * s + 6 * s, sw = 7 * s;
    legend_entry *ents = calloc(MAX_LEGEND + 1, sizeof *ents);
    if (!ents) {
        free(present);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "overlay: out of memory");
    }
    int nent = 0, more = 0;
    if (o.legend && labels) {
        for (int L = 1; L < 65536; L++) {
            if (!present[L]) continue;
            if (nent == MAX_LEGEND) {
                more++;
                continue;
            }
            legend_entry *e = &ents[nent++];
            e->label = L;
            const char *name = (size_t)L < o.nclass_names ? o.class_names[L] : NULL;
            if (name) snprintf(e->text, sizeof e->text, "%d %.30s", L, name);
            else snprintf(e->text, sizeof e->text, "%d label %d", L, L);
        }
        if (more) {
            ents[nent].label = 0;
            snprintf(ents[nent].text, sizeof ents[nent].text, "+%d more", more);
            nent++;
        }
    }
    int canvas_w = content_w, legend_h = 0;
    for (int i = 0; i < nent; i++) {
        ents[i].w = (ents[i].label ? sw + 4 * s : 0) + (int)strlen(ents[i].text) * SARCO_FONT_W * s + 10 * s;
        if (ents[i].w + 2 * margin > canvas_w) canvas_w = ents[i].w + 2 * margin;
    }
    if (nent) {
        int x = margin, y = content_h + margin;
        for (int i = 0; i < nent; i++) {
            if (x > margin && x + ents[i].w > canvas_w - margin) {
                x = margin;
                y += row_h;
            }
            ents[i].x = x;
            ents[i].y = y;
            x += ents[i].w;
        }
        legend_h = y + row_h - content_h;
    }
    int canvas_h = content_h + legend_h;
    if (canvas_w > SARCO_OVERLAY_MAX_SIDE || canvas_h > SARCO_OVERLAY_MAX_SIDE) {
        free(ents);
        free(present);
        return sarco_fail(ctx, SARCO_ERR_LIMIT,
                          "overlay: a %d x %d picture is past the %d-pixel cap (pixel_mm %g is too small)", canvas_w,
                          canvas_h, SARCO_OVERLAY_MAX_SIDE, d);
    }
    size_t maxpanel = 0;
    for (int i = 0; i < nviews; i++)
        if ((size_t)views[i].w * views[i].h > maxpanel) maxpanel = (size_t)views[i].w * views[i].h;
    r.W = canvas_w;
    r.H = canvas_h;
    r.rgb = calloc((size_t)canvas_w * canvas_h, 3); /* black background */
    r.lab = malloc(maxpanel * sizeof *r.lab);
    r.vox = malloc(maxpanel * sizeof *r.vox);
    if (!r.rgb || !r.lab || !r.vox) {
        free(r.rgb);
        free(r.lab);
        free(r.vox);
        free(ents);
        free(present);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "overlay: out of memory for a %d x %d picture", canvas_w,
                          canvas_h);
    }
    for (int i = 0; i < nviews; i++) {
        draw_panel(&r, &views[i], lay.panels[i].x, lay.panels[i].y);
        if (is3d) {
            char t[32];
            if (lay.panels[i].view == SARCO_VIEW_AXIAL) snprintf(t, sizeof t, "z %lld", (long long)lay.panels[i].slice);
            else snprintf(t, sizeof t, "coronal y %lld", (long long)lay.panels[i].slice);
            sarco_draw_text(r.rgb, r.W, r.H, lay.panels[i].x, lay.panels[i].y - cap + 2, t, 1, WHITE);
        }
        if (lay.panels[i].view == SARCO_VIEW_CORONAL) /* ticks on both edges at the axial panels' z */
            for (int k = 0; k < nviews - 1; k++) {
                int64_t z = lay.panels[k].slice;
                int row = (int)floor(((double)(flip[2] ? nz - 1 - z : z) + 0.5) * r.sp[2] / d);
                if (row >= lay.panels[i].h) row = lay.panels[i].h - 1;
                for (int t = 0; t < 5; t++) {
                    put(r.rgb, r.W, r.H, lay.panels[i].x + t, lay.panels[i].y + row, WHITE);
                    put(r.rgb, r.W, r.H, lay.panels[i].x + lay.panels[i].w - 1 - t, lay.panels[i].y + row, WHITE);
                }
            }
    }
    for (int i = 0; i < nent; i++) {
        int x = ents[i].x, y = ents[i].y;
        if (ents[i].label) {
            uint8_t c[3];
            sarco_overlay_color(ents[i].label, c);
            for (int dy = 0; dy < sw; dy++)
                for (int dx = 0; dx < sw; dx++) put(r.rgb, r.W, r.H, x + dx, y + dy, c);
            x += sw + 4 * s;
        }
        sarco_draw_text(r.rgb, r.W, r.H, x, y, ents[i].text, s, WHITE);
    }
    free(r.lab);
    free(r.vox);
    free(ents);
    free(present);
    if (layout) {
        lay.npanels = nviews;
        lay.pixel_mm = d;
        memcpy(lay.flip, flip, sizeof flip);
        lay.window_lo = r.lo;
        lay.window_width = r.width;
        lay.legend_y = content_h;
        lay.legend_h = legend_h;
        lay.nlegend = nent;
        lay.text_scale = s;
        lay.width = canvas_w;
        lay.height = canvas_h;
        *layout = lay;
    }
    *out = r.rgb;
    *out_w = canvas_w;
    *out_h = canvas_h;
    return SARCO_OK;
}

sarco_status sarco_overlay_render(sarco_context *ctx, const sarco_image *image, const uint16_t *labels,
                                  const sarco_overlay_options *opts, uint8_t **rgb, int64_t *width, int64_t *height) {
    return sarco_overlay_render_ex(ctx, image, labels, opts, rgb, width, height, NULL);
}

sarco_status sarco_overlay_write(sarco_context *ctx, const sarco_image *image, const uint16_t *labels,
                                 const sarco_overlay_options *opts, const char *path) {
    if (!path || !*path) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "overlay: no output path");
    uint8_t *rgb;
    int64_t w, h;
    sarco_overlay_layout lay;
    sarco_status st = sarco_overlay_render_ex(ctx, image, labels, opts, &rgb, &w, &h, &lay);
    if (st != SARCO_OK) return st;
    double sp[2] = {lay.pixel_mm, lay.pixel_mm};
    int known = !(image->flags & SARCO_IMAGE_NO_SPACING) && lay.pixel_mm >= 1e-3 && lay.pixel_mm <= 1e3;
    st = sarco_png_write(ctx, path, rgb, w, h, 3, known ? sp : NULL);
    free(rgb);
    return st;
}
