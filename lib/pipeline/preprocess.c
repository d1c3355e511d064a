/* Preprocessing with MONAI's semantics (monai.transforms): ScaleIntensityRange, AdjustContrast,
 * CropForeground and Spacing (its geometry from zoom_affine + compute_shape_offset and its
 * resampler, grid_sample with align_corners False and border padding, in float64).
 * Arrays are channel-first volumes without the channel, PyTorch layout (last axis fastest). */
#include <math.h>
#include <string.h>

#include "pipeline.h"

void sarco_intensity_init(sarco_intensity *t, int scale, double a_min, double a_max, double b_min, double b_max,
                          int clip, double gamma) {
    memset(t, 0, sizeof *t);
    t->scale = scale;
    t->fa = (float)a_min;
    t->fr = (float)(a_max - a_min);
    t->fs = (float)(b_max - b_min);
    t->fb = (float)b_min;
    t->lo = (float)b_min;
    t->hi = (float)b_max;
    t->clip = clip;
    t->contrast = gamma > 0.0;
    t->gamma = (float)gamma;
}

void sarco_intensity_set_range(sarco_intensity *t, float mn, float mx) {
    /* torch: ((img - min) / float(range + 1e-7)) ** gamma * range + min, range a float32 tensor */
    t->mn = mn;
    t->range = mx - mn;
    t->den = t->range + 1e-7f;
}

void sarco_pp_scale_range(float *x, int64_t n, double a_min, double a_max, double b_min, double b_max, int clip) {
    sarco_intensity t;
    sarco_intensity_init(&t, 1, a_min, a_max, b_min, b_max, clip, 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = sarco_intensity_scale(&t, x[i]);
}

void sarco_pp_adjust_contrast(float *x, int64_t n, double gamma) {
    if (n <= 0) return;
    float mn = x[0], mx = x[0];
    for (int64_t i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    sarco_intensity t;
    sarco_intensity_init(&t, 0, 0, 1, 0, 1, 0, gamma);
    sarco_intensity_set_range(&t, mn, mx);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = sarco_intensity_contrast(&t, x[i]);
}

int sarco_pp_foreground_box(const float *x, int nsp, const int64_t *size, const int64_t *margin, int64_t *start,
                            int64_t *end) {
    int64_t s1 = nsp > 1 ? size[1] : 1, s2 = nsp > 2 ? size[2] : 1;
    int64_t lo[3] = {INT64_MAX, INT64_MAX, INT64_MAX}, hi[3] = {-1, -1, -1};
    for (int64_t i = 0; i < size[0]; i++)
        for (int64_t j = 0; j < s1; j++) {
            const float *row = x + (i * s1 + j) * s2;
            int64_t k0 = -1, k1 = -1;
            for (int64_t k = 0; k < s2; k++)
                if (row[k] > 0.0f) {
                    if (k0 < 0) k0 = k;
                    k1 = k;
                }
            if (k0 < 0) continue;
            if (i < lo[0]) lo[0] = i;
            if (i > hi[0]) hi[0] = i;
            if (j < lo[1]) lo[1] = j;
            if (j > hi[1]) hi[1] = j;
            if (k0 < lo[2]) lo[2] = k0;
            if (k1 > hi[2]) hi[2] = k1;
        }
    if (hi[0] < 0) return 0;
    for (int a = 0; a < nsp; a++) {
        int64_t m = margin ? margin[a] : 0;
        /* MONAI >= 1.5 default allow_smaller=False: the box may reach outside the image and the
         * crop pads it with zeros; callers keep the box and pad */
        start[a] = lo[a] - m;
        end[a] = hi[a] + m + 1;
    }
    return 1;
}

/* ---- Spacing geometry --------------------------------------------------------------------- */

/* Solves A X = B for n x n (n <= 4) by Gaussian elimination with partial pivoting; 0 if singular. */
static int solve(int n, const double A_[4][4], const double B[4][4], double X[4][4]) {
    double A[4][4], R[4][4];
    memcpy(A, A_, sizeof A);
    memcpy(R, B, sizeof R);
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(A[r][c]) > fabs(A[p][c])) p = r;
        if (!(fabs(A[p][c]) > 1e-300)) return 0;
        if (p != c)
            for (int k = 0; k < 4; k++) {
                double t = A[c][k];
                A[c][k] = A[p][k];
                A[p][k] = t;
                t = R[c][k];
                R[c][k] = R[p][k];
                R[p][k] = t;
            }
        for (int r = 0; r < n; r++) {
            if (r == c) continue;
            double f = A[r][c] / A[c][c];
            if (f == 0.0) continue;
            for (int k = 0; k < n; k++) {
                A[r][k] -= f * A[c][k];
                R[r][k] -= f * R[c][k];
            }
        }
    }
    for (int r = 0; r < n; r++)
        for (int k = 0; k < n; k++) X[r][k] = R[r][k] / A[r][r];
    return 1;
}

static int allclose(int n, const double A[4][4], const double B[4][4], double atol, double rtol) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (!(fabs(A[i][j] - B[i][j]) <= atol + rtol * fabs(B[i][j]))) return 0;
    return 1;
}

sarco_status sarco_pp_spacing_geom(sarco_context *ctx, int nsp, const int64_t *size, const double affine4[4][4],
                                   const double *pixdim, sarco_spacing_geom *g) {
    memset(g, 0, sizeof *g);
    if (nsp != 2 && nsp != 3) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "spacing: %d spatial dims", nsp);
    const int n = nsp + 1;
    g->nsp = nsp;
    /* to_affine_nd: the nsp x nsp block plus the translation column */
    double A[4][4] = {{0}};
    for (int i = 0; i < nsp; i++) {
        for (int j = 0; j < nsp; j++) A[i][j] = affine4[i][j];
        A[i][nsp] = affine4[i][3];
    }
    A[nsp][nsp] = 1.0;
    for (int i = 0; i < nsp; i++) {
        g->in_size[i] = size[i];
        if (!(pixdim[i] > 0.0) || !isfinite(pixdim[i]))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "spacing: target spacing %g on axis %d", pixdim[i], i);
    }
    /* out_d: keep the input spacing where it is within AFFINE_TOL of the target */
    double out_d[3];
    for (int j = 0; j < nsp; j++) {
        double s = 0;
        for (int i = 0; i < nsp; i++) s += A[i][j] * A[i][j];
        double orig = sqrt(s);
        out_d[j] = (pixdim[j] - 1e-3 <= orig && orig <= pixdim[j] + 1e-3) ? orig : pixdim[j];
    }
    /* zoom_affine: rzs = Q zs (zs = chol(rzs^T rzs)^T, upper with positive diagonal),
     * new = Q diag(sign(diag zs) |out_d|) */
    double M[3][3] = {{0}}, L[3][3] = {{0}};
    for (int i = 0; i < nsp; i++)
        for (int j = 0; j < nsp; j++)
            for (int k = 0; k < nsp; k++) M[i][j] += A[k][i] * A[k][j];
    for (int i = 0; i < nsp; i++)
        for (int j = 0; j <= i; j++) {
            double s = M[i][j];
            for (int k = 0; k < j; k++) s -= L[i][k] * L[j][k];
            if (i == j) {
                if (!(s > 0.0)) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "spacing: the affine is singular");
                L[i][i] = sqrt(s);
            } else {
                L[i][j] = s / L[j][j];
            }
        }
    double ZS[4][4] = {{0}}, Q[4][4] = {{0}}, RZS[4][4] = {{0}};
    for (int i = 0; i < nsp; i++)
        for (int j = 0; j < nsp; j++) {
            ZS[i][j] = L[j][i];
            RZS[i][j] = A[i][j];
        }
    /* Q = rzs inv(zs): solve zs^T Q^T = rzs^T */
    double ZT[4][4] = {{0}}, RT[4][4] = {{0}}, QT[4][4];
    for (int i = 0; i < nsp; i++)
        for (int j = 0; j < nsp; j++) {
            ZT[i][j] = ZS[j][i];
            RT[i][j] = RZS[j][i];
        }
    if (!solve(nsp, ZT, RT, QT)) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "spacing: the affine is singular");
    for (int i = 0; i < nsp; i++)
        for (int j = 0; j < nsp; j++) Q[i][j] = QT[j][i];
    double NEW[4][4] = {{0}};
    for (int i = 0; i < nsp; i++)
        for (int j = 0; j < nsp; j++) {
            double sgn = ZS[j][j] > 0 ? 1.0 : (ZS[j][j] < 0 ? -1.0 : 0.0);
            NEW[i][j] = Q[i][j] * sgn * fabs(out_d[j]);
        }
    NEW[nsp][nsp] = 1.0;
    for (int j = 0; j < nsp; j++) g->out_spacing[j] = fabs(out_d[j]);

    /* compute_shape_offset (scale_extent False): corners (0 or dim - 1) through inv(new) @ A */
    double T[4][4];
    if (!solve(n, NEW, A, T)) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "spacing: singular output affine");
    const int ncorner = 1 << nsp;
    double cout_[8][3], cw[8][3];
    for (int c = 0; c < ncorner; c++) {
        double v[4] = {0, 0, 0, 1};
        for (int a = 0; a < nsp; a++) {
            int bit = (c >> (nsp - 1 - a)) & 1; /* meshgrid "ij" order: the last axis fastest */
            v[a] = bit ? (double)(size[a] - 1) : 0.0;
        }
        v[nsp] = 1.0;
        for (int i = 0; i < nsp; i++) {
            double s = 0, w = 0;
            for (int k = 0; k < n; k++) {
                s += T[i][k] * v[k];
                w += A[i][k] * v[k];
            }
            cout_[c][i] = s;
            cw[c][i] = w;
        }
    }
    for (int i = 0; i < nsp; i++) {
        double mn = INFINITY, mx = -INFINITY;
        for (int c = 0; c < ncorner; c++) {
            if (cout_[c][i] < mn) mn = cout_[c][i];
            if (cout_[c][i] > mx) mx = cout_[c][i];
        }
        double sh = nearbyint(mx - mn + 1.0); /* np.round: half to even */
        if (!(sh >= 1.0) || sh > (double)(1 << 24))
            return sarco_fail(ctx, SARCO_ERR_LIMIT, "spacing: output size %g on axis %d", sh, i);
        g->out_size[i] = (int64_t)sh;
    }
    int found = 0;
    double offset[3] = {0, 0, 0};
    for (int c = 0; c < ncorner && !found; c++) {
        int ok = 1;
        for (int i = 0; i < nsp && ok; i++) {
            double mn = INFINITY;
            for (int d = 0; d < ncorner; d++) {
                double dv = cout_[d][i] - cout_[c][i];
                if (dv < mn) mn = dv;
            }
            if (!(fabs(mn) <= 1e-8)) ok = 0; /* np.allclose(min_corner, 0, rtol=1e-3): atol 1e-8 */
        }
        if (ok) {
            found = 1;
            for (int i = 0; i < nsp; i++) offset[i] = cw[c][i];
        }
    }
    if (!found) /* centre-align the output with the input */
        for (int i = 0; i < nsp; i++) {
            double s = A[i][nsp];
            for (int k = 0; k < nsp; k++)
                s += A[i][k] * ((double)size[k] / 2.0) - NEW[i][k] * ((double)g->out_size[k] / 2.0);
            offset[i] = s;
        }
    for (int i = 0; i < nsp; i++) NEW[i][nsp] = offset[i];

    double X[4][4];
    if (!solve(n, A, NEW, X)) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "spacing: the affine is singular");
    double I[4][4] = {{0}};
    for (int i = 0; i < n; i++) I[i][i] = 1.0;
    int same = 1;
    for (int i = 0; i < nsp; i++) same &= g->out_size[i] == size[i];
    g->identity = same && (allclose(n, A, NEW, 1e-3, 1e-5) || allclose(n, X, I, 1e-3, 1e-5));
    /* back to 4x4 in the public convention (unused rows/cols identity) */
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            g->out_affine[i][j] = i == j ? 1.0 : 0.0;
            g->xform[i][j] = i == j ? 1.0 : 0.0;
        }
    for (int i = 0; i < nsp; i++) {
        for (int j = 0; j < nsp; j++) {
            g->out_affine[i][j] = NEW[i][j];
            g->xform[i][j] = X[i][j];
        }
        g->out_affine[i][3] = NEW[i][nsp];
        g->xform[i][3] = X[i][nsp];
    }
    if (nsp == 2) {
        g->in_size[2] = g->out_size[2] = 1;
        g->out_spacing[2] = 1.0;
    }
    return SARCO_OK;
}

/* grid_sample(bilinear, border, align_corners False) in double: clip to [0, n - 1], then the
 * weighted corners (a corner past the edge has weight 0). */
void sarco_pp_resample_linear(const sarco_spacing_geom *g, const float *x, float *y) {
    const int nsp = g->nsp;
    const int64_t I0 = g->in_size[0], I1 = g->in_size[1], I2 = nsp > 2 ? g->in_size[2] : 1;
    const int64_t O0 = g->out_size[0], O1 = g->out_size[1], O2 = nsp > 2 ? g->out_size[2] : 1;
    if (g->identity) {
        memcpy(y, x, (size_t)(I0 * I1 * I2) * sizeof(float));
        return;
    }
    const double(*X)[4] = g->xform;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t o0 = 0; o0 < O0; o0++)
        for (int64_t o1 = 0; o1 < O1; o1++)
            for (int64_t o2 = 0; o2 < O2; o2++) {
                double o[3] = {(double)o0, (double)o1, nsp > 2 ? (double)o2 : 0.0};
                const int64_t lim[3] = {I0, I1, I2};
                int64_t i0[3];
                double f[3];
                for (int a = 0; a < 3; a++) {
                    if (a >= nsp) {
                        i0[a] = 0;
                        f[a] = 0.0;
                        continue;
                    }
                    double s = X[a][3];
                    for (int k = 0; k < nsp; k++) s += X[a][k] * o[k];
                    double hi = (double)(lim[a] - 1);
                    s = s < 0.0 ? 0.0 : (s > hi ? hi : s);
                    double fl = floor(s);
                    i0[a] = (int64_t)fl;
                    f[a] = s - fl;
                }
                double acc = 0.0;
                for (int corner = 0; corner < (1 << nsp); corner++) {
                    double w = 1.0;
                    int64_t idx[3];
                    int inside = 1;
                    for (int a = 0; a < 3; a++) {
                        int b = a < nsp ? (corner >> a) & 1 : 0;
                        idx[a] = i0[a] + b;
                        w *= b ? f[a] : 1.0 - f[a];
                        if (idx[a] >= lim[a]) inside = 0;
                    }
                    if (inside && w != 0.0) acc += w * (double)x[(idx[0] * I1 + idx[1]) * I2 + idx[2]];
                }
                y[(o0 * O1 + o1) * O2 + o2] = (float)acc;
            }
}

void sarco_pp_resample_nearest_back(const sarco_spacing_geom *g, const uint16_t *lab_out, uint16_t *lab_in) {
    const int nsp = g->nsp;
    const int64_t I0 = g->in_size[0], I1 = g->in_size[1], I2 = nsp > 2 ? g->in_size[2] : 1;
    const int64_t O0 = g->out_size[0], O1 = g->out_size[1], O2 = nsp > 2 ? g->out_size[2] : 1;
    if (g->identity) {
        memcpy(lab_in, lab_out, (size_t)(I0 * I1 * I2) * sizeof(uint16_t));
        return;
    }
    /* inverse transform: input voxel -> output voxel = inv(xform) */
    const int n = nsp + 1;
    double X[4][4] = {{0}}, I[4][4] = {{0}}, B[4][4];
    for (int i = 0; i < nsp; i++) {
        for (int j = 0; j < nsp; j++) X[i][j] = g->xform[i][j];
        X[i][nsp] = g->xform[i][3];
    }
    X[nsp][nsp] = 1.0;
    for (int i = 0; i < n; i++) I[i][i] = 1.0;
    if (!solve(n, X, I, B)) { /* cannot happen: xform came from two invertible affines */
        memset(lab_in, 0, (size_t)(I0 * I1 * I2) * sizeof(uint16_t));
        return;
    }
    const int64_t lim[3] = {O0, O1, O2};
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i0 = 0; i0 < I0; i0++)
        for (int64_t i1 = 0; i1 < I1; i1++)
            for (int64_t i2 = 0; i2 < I2; i2++) {
                double v[3] = {(double)i0, (double)i1, nsp > 2 ? (double)i2 : 0.0};
                int64_t idx[3] = {0, 0, 0};
                for (int a = 0; a < nsp; a++) {
                    double s = B[a][nsp];
                    for (int k = 0; k < nsp; k++) s += B[a][k] * v[k];
                    double hi = (double)(lim[a] - 1);
                    s = s < 0.0 ? 0.0 : (s > hi ? hi : s);
                    idx[a] = (int64_t)nearbyint(s); /* grid_sample nearest: round half to even */
                }
                lab_in[(i0 * I1 + i1) * I2 + i2] = lab_out[(idx[0] * O1 + idx[1]) * O2 + idx[2]];
            }
}
