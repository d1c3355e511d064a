/* nnU-Net's resampling: skimage.transform.resize(order, mode='edge', anti_aliasing=False) on float64,
 * which is scipy.ndimage.zoom(order, mode='nearest', grid_mode=True) with scipy's spline prefilter,
 * clipped to the input's range; nnU-Net's separate-z rule (in-plane resize per slice, then order 0
 * or 1 along the thick axis). Arithmetic follows scipy's C code term by term (weights, tap order,
 * prefilter recursion), so results agree to the last bits in most voxels (test_nnunet_pipeline). */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "nnunet_pipeline.h"

#define NN_PREPAD 12 /* scipy pads by 12 (edge values) before the spline filter for mode 'nearest' */

/* B-spline interpolation weights at x for orders 0..5 (the standard piecewise polynomials, in the
 * form scipy evaluates them). */
static void spline_weights(double x, int order, double *w) {
    x -= floor((order & 1) ? x : x + 0.5);
    double y = x, z = 1.0 - x, t;
    switch (order) {
    case 1: w[0] = 1.0 - x; break;
    case 2:
        w[1] = 0.75 - x * x;
        y = 0.5 - x;
        w[0] = 0.5 * y * y;
        break;
    case 3:
        w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
        w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
        w[0] = z * z * z / 6.0;
        break;
    case 4:
        t = x * x;
        w[2] = t * (t * 0.25 - 0.625) + 115.0 / 192.0;
        y = 1.0 + x;
        w[1] = y * (y * (y * (5.0 - y) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
        w[3] = z * (z * (z * (5.0 - z) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
        y = 0.5 - x;
        t = y * y;
        w[0] = t * t / 24.0;
        break;
    case 5:
        t = y * y;
        w[2] = t * (t * (0.25 - y / 12.0) - 0.5) + 0.55;
        t = z * z;
        w[3] = t * (t * (0.25 - z / 12.0) - 0.5) + 0.55;
        y += 1.0;
        w[1] = y * (y * (y * (y * (y / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
        z += 1.0;
        w[4] = z * (z * (z * (z * (z / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
        y = 1.0 - x;
        t = y * y;
        w[0] = y * t * t / 120.0;
        break;
    default: break;
    }
    if (order > 0) {
        w[order] = 1.0;
        for (int i = 0; i < order; i++) w[order] -= w[i];
    }
}

static int spline_poles(int order, double *p) {
    switch (order) {
    case 2: p[0] = -0.171572875253809902396622551580603843; return 1;
    case 3: p[0] = -0.267949192431122706472553658494127633; return 1;
    case 4:
        p[0] = -0.361341225900220177092212841325675255;
        p[1] = -0.013725429297339121360331226939128204;
        return 2;
    case 5:
        p[0] = -0.430575347099973791851434783493520110;
        p[1] = -0.043096288203264653822712376822550182;
        return 2;
    default: return 0;
    }
}

/* In-place B-spline prefilter of one line with mirror boundaries (what scipy uses for 'nearest'). */
static void spline_filter_line(double *c, int64_t n, const double *poles, int npoles) {
    if (n <= 1) return;
    double gain = 1.0;
    for (int k = 0; k < npoles; k++) gain *= (1.0 - poles[k]) * (1.0 - 1.0 / poles[k]);
    for (int64_t i = 0; i < n; i++) c[i] *= gain;
    for (int k = 0; k < npoles; k++) {
        const double z = poles[k];
        /* causal init, mirror */
        double zi = z, zn1 = pow(z, (double)(n - 1));
        c[0] = c[0] + zn1 * c[n - 1];
        for (int64_t i = 1; i < n - 1; i++) {
            c[0] += zi * (c[i] + zn1 * c[n - 1 - i]);
            zi *= z;
        }
        c[0] /= 1 - zn1 * zn1;
        for (int64_t i = 1; i < n; i++) c[i] += z * c[i - 1];
        /* anticausal init, mirror */
        c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1);
        for (int64_t i = n - 2; i >= 0; i--) c[i] = z * (c[i + 1] - c[i]);
    }
}

/* Whole-sample mirror of a tap index into [0, len) (scipy's edge offsets). */
static int64_t mirror_index(int64_t idx, int64_t len) {
    if (len <= 1) return 0;
    int64_t s2 = 2 * len - 2;
    if (idx < 0) {
        idx = s2 * (-idx / s2) + idx;
        idx = idx <= 1 - len ? idx + s2 : -idx;
    } else if (idx >= len) {
        idx -= s2 * (idx / s2);
        if (idx >= len) idx = s2 - idx;
    }
    return idx;
}

/* Per axis and output index: the order + 1 tap indices (already mirrored) and weights. */
typedef struct {
    int64_t *idx;
    double *w;
} axis_taps;

static void make_taps(int64_t in_len, int64_t pad, int64_t out_len, int order, axis_taps *t) {
    const double zoom = (double)in_len / (double)out_len;
    const int64_t len = in_len + 2 * pad;
    for (int64_t k = 0; k < out_len; k++) {
        double cc = ((double)k + 0.5) * zoom - 0.5;
        cc += (double)pad;
        if (cc < 0) cc = 0; /* mode 'nearest' */
        if (cc > (double)(len - 1)) cc = (double)(len - 1);
        int64_t start = (order & 1) ? (int64_t)floor(cc) - order / 2 : (int64_t)floor(cc + 0.5) - order / 2;
        for (int h = 0; h <= order; h++) t->idx[k * (order + 1) + h] = mirror_index(start + h, len);
        if (order > 0) spline_weights(cc, order, t->w + k * (order + 1));
        else t->w[k] = 1.0;
    }
}

sarco_status sarco_nn_resize(sarco_context *ctx, int nd, const int64_t *ishape, const double *x,
                             const int64_t *oshape, int order, double *y) {
    if (nd < 1 || nd > 3 || order < 0 || order > 5)
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "nnU-Net resampling: %d dims, spline order %d (0..5 only)", nd,
                          order);
    int64_t is[3] = {1, 1, 1}, os[3] = {1, 1, 1};
    int64_t nin = 1, nout = 1;
    for (int i = 0; i < nd; i++) {
        is[3 - nd + i] = ishape[i];
        os[3 - nd + i] = oshape[i];
        nin *= ishape[i];
        nout *= oshape[i];
    }
    double mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < nin; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    int same = 1;
    for (int i = 0; i < 3; i++) same &= is[i] == os[i];
    if (same) { /* scipy returns the input when every zoom factor is 1 */
        memcpy(y, x, (size_t)nin * sizeof *y);
        return SARCO_OK;
    }
    const int nt = order + 1;
    const int64_t pad = order > 1 ? NN_PREPAD : 0;
    /* coefficients: the (padded, prefiltered) input; only the real axes are padded */
    int64_t cs[3];
    for (int i = 0; i < 3; i++) cs[i] = is[i] + ((3 - i) <= nd ? 2 * pad : 0);
    const double *coef = x;
    double *P = NULL;
    size_t pbytes = 0;
    if (pad) {
        pbytes = (size_t)(cs[0] * cs[1] * cs[2]) * sizeof(double);
        P = sarco_ctx_malloc(ctx, pbytes, "nnU-Net resampling: spline coefficients");
        if (!P) return SARCO_ERR_OUT_OF_MEMORY;
        int64_t off[3];
        for (int i = 0; i < 3; i++) off[i] = (cs[i] - is[i]) / 2;
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t a = 0; a < cs[0]; a++)
            for (int64_t b = 0; b < cs[1]; b++)
                for (int64_t c = 0; c < cs[2]; c++) {
                    int64_t s0 = a - off[0], s1 = b - off[1], s2 = c - off[2];
                    s0 = s0 < 0 ? 0 : (s0 >= is[0] ? is[0] - 1 : s0); /* np.pad mode 'edge' */
                    s1 = s1 < 0 ? 0 : (s1 >= is[1] ? is[1] - 1 : s1);
                    s2 = s2 < 0 ? 0 : (s2 >= is[2] ? is[2] - 1 : s2);
                    P[(a * cs[1] + b) * cs[2] + c] = x[(s0 * is[1] + s1) * is[2] + s2];
                }
        double poles[2];
        int np_ = spline_poles(order, poles);
        /* spline_filter: one axis after the other, axis 0 first (only real axes) */
        for (int ax = 3 - nd; ax < 3; ax++) {
            const int64_t len = cs[ax];
            const int64_t stride = ax == 0 ? cs[1] * cs[2] : (ax == 1 ? cs[2] : 1);
            const int64_t nlines = cs[0] * cs[1] * cs[2] / len;
            sarco_status st = SARCO_OK;
#pragma omp parallel
            {
                double *line = malloc((size_t)len * sizeof *line);
                if (!line) {
#pragma omp atomic write
                    st = SARCO_ERR_OUT_OF_MEMORY;
                }
#pragma omp for schedule(static)
                for (int64_t l = 0; l < nlines; l++) {
                    if (!line) continue;
                    /* line l: the other two indices in C order */
                    int64_t base;
                    if (ax == 0) base = l;
                    else if (ax == 1) base = (l / cs[2]) * cs[1] * cs[2] + (l % cs[2]);
                    else base = l * cs[2];
                    for (int64_t i = 0; i < len; i++) line[i] = P[base + i * stride];
                    spline_filter_line(line, len, poles, np_);
                    for (int64_t i = 0; i < len; i++) P[base + i * stride] = line[i];
                }
                free(line);
            }
            if (st != SARCO_OK) {
                sarco_ctx_free(ctx, P, pbytes);
                return sarco_fail(ctx, st, "nnU-Net resampling: out of memory");
            }
        }
        coef = P;
    }
    axis_taps t[3];
    size_t tb[3] = {0, 0, 0};
    sarco_status s = SARCO_OK;
    for (int i = 0; i < 3; i++) {
        tb[i] = (size_t)(os[i] * nt) * (sizeof(int64_t) + sizeof(double));
        t[i].idx = sarco_ctx_malloc(ctx, tb[i], "nnU-Net resampling: taps");
        if (!t[i].idx) {
            for (int j = 0; j < i; j++) sarco_ctx_free(ctx, t[j].idx, tb[j]);
            sarco_ctx_free(ctx, P, pbytes);
            return SARCO_ERR_OUT_OF_MEMORY;
        }
        t[i].w = (double *)(t[i].idx + os[i] * nt);
        int real = (3 - i) <= nd;
        if (real) make_taps(is[i], pad, os[i], order, &t[i]);
        else { /* a size-1 axis that is not part of the array: one tap of weight 1 at 0 */
            for (int h = 0; h < nt; h++) {
                t[i].idx[h] = 0;
                t[i].w[h] = h == 0 ? 1.0 : 0.0;
            }
        }
    }
    /* taps: row-major over the real axes, coefficient times w0 times w1 (times w2), summed in order */
    const int n0 = (nd == 3) ? nt : 1, n1 = (nd >= 2) ? nt : 1, n2 = nt;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t a = 0; a < os[0]; a++)
        for (int64_t b = 0; b < os[1]; b++)
            for (int64_t c = 0; c < os[2]; c++) {
                const int64_t *i0 = t[0].idx + a * nt, *i1 = t[1].idx + b * nt, *i2 = t[2].idx + c * nt;
                const double *w0 = t[0].w + a * nt, *w1 = t[1].w + b * nt, *w2 = t[2].w + c * nt;
                double acc = 0.0;
                for (int f0 = 0; f0 < n0; f0++)
                    for (int f1 = 0; f1 < n1; f1++)
                        for (int f2 = 0; f2 < n2; f2++) {
                            double v = coef[(i0[f0] * cs[1] + i1[f1]) * cs[2] + i2[f2]];
                            if (order > 0) {
                                if (nd == 3) v *= w0[f0];
                                if (nd >= 2) v *= w1[f1];
                                v *= w2[f2];
                            }
                            acc += v;
                        }
                /* skimage clips to the input's range */
                acc = acc < mn ? mn : (acc > mx ? mx : acc);
                y[(a * os[1] + b) * os[2] + c] = acc;
            }
    for (int i = 0; i < 3; i++) sarco_ctx_free(ctx, t[i].idx, tb[i]);
    sarco_ctx_free(ctx, P, pbytes);
    return s;
}

void sarco_nn_sep_z(int force, const double *cur, const double *tgt, int *sep, int *axis) {
    *sep = 0;
    *axis = -1;
    const double *lowres_of = NULL;
    double cmax = fmax(cur[0], fmax(cur[1], cur[2])), cmin = fmin(cur[0], fmin(cur[1], cur[2]));
    double tmax = fmax(tgt[0], fmax(tgt[1], tgt[2])), tmin = fmin(tgt[0], fmin(tgt[1], tgt[2]));
    if (force >= 0) {
        *sep = force;
        if (force) lowres_of = cur;
    } else if (cmax / cmin > 3.0) {
        *sep = 1;
        lowres_of = cur;
    } else if (tmax / tmin > 3.0) {
        *sep = 1;
        lowres_of = tgt;
    }
    if (!lowres_of) return;
    double m = fmax(lowres_of[0], fmax(lowres_of[1], lowres_of[2]));
    int n = 0, a = -1;
    for (int i = 0; i < 3; i++)
        if (m / lowres_of[i] == 1.0) {
            n++;
            a = i;
        }
    if (n != 1) { /* two or three axes share the largest spacing: not separate */
        *sep = 0;
        return;
    }
    *axis = a;
}

void sarco_nn_new_shape(int n, const int64_t *old_shape, const double *old_sp, const double *new_sp, int64_t *out) {
    for (int i = 0; i < n; i++) out[i] = (int64_t)nearbyint(old_sp[i] / new_sp[i] * (double)old_shape[i]);
}

sarco_status sarco_nn_resample_channel(sarco_context *ctx, const int64_t *shape, const float *x,
                                       const int64_t *new_shape, const double *cur, const double *tgt,
                                       const sarco_nn_resampling *r, double *y) {
    const int64_t n = shape[0] * shape[1] * shape[2];
    if (shape[0] == new_shape[0] && shape[1] == new_shape[1] && shape[2] == new_shape[2]) {
        for (int64_t i = 0; i < n; i++) y[i] = x[i];
        return SARCO_OK;
    }
    int sep, axis;
    sarco_nn_sep_z(r->force_separate_z, cur, tgt, &sep, &axis);
    size_t xb = (size_t)n * sizeof(double);
    double *xd = sarco_ctx_malloc(ctx, xb, "nnU-Net resampling: float64 input");
    if (!xd) return SARCO_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) xd[i] = x[i];
    sarco_status s = SARCO_OK;
    if (!sep) {
        s = sarco_nn_resize(ctx, 3, shape, xd, new_shape, r->order, y);
        sarco_ctx_free(ctx, xd, xb);
        return s;
    }
    if (r->order_z < 0 || r->order_z > 1) {
        sarco_ctx_free(ctx, xd, xb);
        return sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "nnU-Net resampling: order_z %d (0 or 1 supported)",
                          r->order_z);
    }
    /* in-plane resize per slice of the thick axis, into (shape[axis] slices, new in-plane) */
    int p0 = axis == 0 ? 1 : 0, p1 = axis == 2 ? 1 : 2;
    int64_t ish[2] = {shape[p0], shape[p1]}, osh[2] = {new_shape[p0], new_shape[p1]};
    int64_t tmp_shape[3] = {new_shape[0], new_shape[1], new_shape[2]};
    tmp_shape[axis] = shape[axis];
    const int64_t nsl = shape[axis], in2 = ish[0] * ish[1], out2 = osh[0] * osh[1];
    size_t tb = (size_t)(nsl * out2) * sizeof(double), sb = (size_t)(in2 + out2) * sizeof(double);
    double *T = sarco_ctx_malloc(ctx, tb, "nnU-Net resampling: slices");
    double *S = sarco_ctx_malloc(ctx, sb, "nnU-Net resampling: one slice");
    if (!T || !S) {
        s = SARCO_ERR_OUT_OF_MEMORY;
        goto out;
    }
    const int64_t st[3] = {shape[1] * shape[2], shape[2], 1};
    const int64_t tst[3] = {tmp_shape[1] * tmp_shape[2], tmp_shape[2], 1};
    for (int64_t k = 0; k < nsl && s == SARCO_OK; k++) {
        for (int64_t a = 0; a < ish[0]; a++)
            for (int64_t b = 0; b < ish[1]; b++) S[a * ish[1] + b] = xd[k * st[axis] + a * st[p0] + b * st[p1]];
        s = sarco_nn_resize(ctx, 2, ish, S, osh, r->order, S + in2);
        for (int64_t a = 0; a < osh[0]; a++)
            for (int64_t b = 0; b < osh[1]; b++) T[k * tst[axis] + a * tst[p0] + b * tst[p1]] = S[in2 + a * osh[1] + b];
    }
    if (s != SARCO_OK) goto out;
    if (nsl == new_shape[axis]) {
        memcpy(y, T, tb);
    } else {
        /* map_coordinates along the thick axis: coordinate scale * (k + 0.5) - 0.5, mode nearest */
        const double scale = (double)nsl / (double)new_shape[axis];
        const int64_t yst[3] = {new_shape[1] * new_shape[2], new_shape[2], 1};
        for (int64_t k = 0; k < new_shape[axis]; k++) {
            double c = scale * ((double)k + 0.5) - 0.5;
            if (c < 0) c = 0;
            if (c > (double)(nsl - 1)) c = (double)(nsl - 1);
            int64_t i0, i1;
            double w0, w1;
            if (r->order_z == 0) {
                i0 = i1 = (int64_t)floor(c + 0.5);
                w0 = 1.0;
                w1 = 0.0;
            } else {
                i0 = (int64_t)floor(c);
                i1 = mirror_index(i0 + 1, nsl);
                w0 = 1.0 - (c - floor(c));
                w1 = 1.0 - w0;
            }
            for (int64_t a = 0; a < osh[0]; a++)
                for (int64_t b = 0; b < osh[1]; b++) {
                    int64_t o = a * tst[p0] + b * tst[p1];
                    double v = T[i0 * tst[axis] + o];
                    if (r->order_z == 1) v = v * w0 + T[i1 * tst[axis] + o] * w1;
                    y[k * yst[axis] + a * yst[p0] + b * yst[p1]] = v;
                }
        }
    }
out:
    sarco_ctx_free(ctx, S, sb);
    sarco_ctx_free(ctx, T, tb);
    sarco_ctx_free(ctx, xd, xb);
    return s;
}

void sarco_nn_linear_taps(int64_t in_len, int64_t out_len, int64_t *i0, int64_t *i1, double *w0, double *w1) {
    const double zoom = (double)in_len / (double)out_len;
    for (int64_t k = 0; k < out_len; k++) {
        double cc = ((double)k + 0.5) * zoom - 0.5;
        if (cc < 0) cc = 0;
        if (cc > (double)(in_len - 1)) cc = (double)(in_len - 1);
        int64_t start = (int64_t)floor(cc);
        double w[2];
        spline_weights(cc, 1, w);
        i0[k] = mirror_index(start, in_len);
        i1[k] = mirror_index(start + 1, in_len);
        w0[k] = w[0];
        w1[k] = w[1];
    }
}

int64_t sarco_nn_nearest_index(int64_t in_len, int64_t out_len, int64_t k) {
    const double scale = (double)in_len / (double)out_len;
    double c = scale * ((double)k + 0.5) - 0.5;
    if (c < 0) c = 0;
    if (c > (double)(in_len - 1)) c = (double)(in_len - 1);
    return (int64_t)floor(c + 0.5);
}
