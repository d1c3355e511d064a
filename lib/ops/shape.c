/* Output shapes and desc checks for conv/deconv/pool: PyTorch's formulas, shared by every backend. */
#include <math.h>

#include "ops.h"

#define SARCO_MAX_KERNEL 4096        /* per axis: far past any real network, small enough to never overflow */
#define SARCO_MAX_CHANNELS (1 << 24)

int sarco_conv_out_shape(const sarco_conv_desc *d, int transposed, const int64_t *in, int64_t *out) {
    if (!d || !in || !out || (d->nsp != 2 && d->nsp != 3)) return 0;
    int ok = 1;
    for (int i = 0; i < d->nsp; i++) {
        int64_t ext = d->dil[i] * (d->k[i] - 1); /* effective kernel extent minus one */
        int64_t o;
        if (in[i] < 1 || d->stride[i] < 1) {
            o = 0;
        } else if (transposed) {
            o = (in[i] - 1) * d->stride[i] - 2 * d->pad[i] + ext + d->out_pad[i] + 1;
        } else {
            int64_t num = in[i] + 2 * d->pad[i] - ext - 1;
            o = num < 0 ? 0 : num / d->stride[i] + 1;
        }
        if (o < 1) {
            o = 0;
            ok = 0;
        }
        out[i] = o;
    }
    return ok;
}

int sarco_pool_out_shape(const sarco_pool_desc *d, const int64_t *in, int64_t *out) {
    if (!d || !in || !out || (d->nsp != 2 && d->nsp != 3)) return 0;
    int ok = 1;
    for (int i = 0; i < d->nsp; i++) {
        int64_t s = d->stride[i], num = in[i] + 2 * d->pad[i] - d->k[i], o;
        if (in[i] < 1 || s < 1 || d->k[i] < 1 || num < 0) {
            o = 0;
        } else {
            o = (d->ceil_mode ? (num + s - 1) / s : num / s) + 1;
            /* PyTorch: the last window must start inside the input or its left padding */
            if (d->ceil_mode && (o - 1) * s >= in[i] + d->pad[i]) o--;
        }
        if (o < 1) {
            o = 0;
            ok = 0;
        }
        out[i] = o;
    }
    return ok;
}

sarco_status sarco_conv_desc_check(sarco_context *ctx, const sarco_conv_desc *d, int transposed) {
    const char *what = transposed ? "deconv" : "conv";
    if (!d) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: desc is NULL", what);
    if (d->nsp != 2 && d->nsp != 3)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: nsp is %d, expected 2 or 3", what, d->nsp);
    if (d->cin < 1 || d->cout < 1 || d->cin > SARCO_MAX_CHANNELS || d->cout > SARCO_MAX_CHANNELS)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: channels cin=%lld cout=%lld must be in 1..%d", what,
                          (long long)d->cin, (long long)d->cout, SARCO_MAX_CHANNELS);
    if (d->groups < 1 || d->cin % d->groups || d->cout % d->groups)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "%s: groups=%lld must be >= 1 and divide cin=%lld and cout=%lld", what,
                          (long long)d->groups, (long long)d->cin, (long long)d->cout);
    for (int i = 0; i < d->nsp; i++) {
        if (d->k[i] < 1 || d->k[i] > SARCO_MAX_KERNEL)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: kernel[%d]=%lld must be in 1..%d", what,
                              i, (long long)d->k[i], SARCO_MAX_KERNEL);
        if (d->stride[i] < 1 || d->stride[i] > SARCO_MAX_KERNEL)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: stride[%d]=%lld must be in 1..%d", what,
                              i, (long long)d->stride[i], SARCO_MAX_KERNEL);
        if (d->dil[i] < 1 || d->dil[i] > SARCO_MAX_KERNEL)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: dilation[%d]=%lld must be in 1..%d", what,
                              i, (long long)d->dil[i], SARCO_MAX_KERNEL);
        if (d->pad[i] < 0 || d->pad[i] > SARCO_MAX_KERNEL)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: padding[%d]=%lld must be in 0..%d", what,
                              i, (long long)d->pad[i], SARCO_MAX_KERNEL);
        if (!transposed && d->out_pad[i] != 0)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "conv: output_padding[%d]=%lld is only meaningful for a transposed conv", i,
                              (long long)d->out_pad[i]);
        if (transposed && (d->out_pad[i] < 0 || (d->out_pad[i] >= d->stride[i] && d->out_pad[i] >= d->dil[i])))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "deconv: output_padding[%d]=%lld must be >= 0 and smaller than stride (%lld) or "
                              "dilation (%lld)",
                              i, (long long)d->out_pad[i], (long long)d->stride[i], (long long)d->dil[i]);
    }
    if (d->has_bias != 0 && d->has_bias != 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: has_bias=%d must be 0 or 1", what, d->has_bias);
    if ((int)d->act < 0 || d->act >= SARCO_ACT_COUNT)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: activation %d is not a sarco_act", what, (int)d->act);
    if (!isfinite(d->alpha))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: activation alpha is not finite", what);
    return SARCO_OK;
}

sarco_status sarco_window_desc_check(sarco_context *ctx, const sarco_window_desc *d) {
    if (!d) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "window_accumulate: desc is NULL");
    if (d->c < 1 || d->c > 65536)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "window_accumulate: %lld channels (need 1..65536)",
                          (long long)d->c);
    for (int a = 0; a < 3; a++)
        if (d->roi[a] < 1 || d->st[a] < 0 || d->slab[a] > (1 << 24) || d->st[a] + d->roi[a] > d->slab[a])
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "window_accumulate: axis %d: window [%lld, %lld + %lld) is not inside the slab of %lld",
                              a, (long long)d->st[a], (long long)d->st[a], (long long)d->roi[a],
                              (long long)d->slab[a]);
    return SARCO_OK;
}

sarco_status sarco_argmax_check(sarco_context *ctx, int64_t c, int64_t count, int64_t chan, int bits) {
    if (bits != 8 && bits != 16)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "argmax_labels: %d-bit labels (need 8 or 16)", bits);
    if (c < 1 || c > (bits == 8 ? 256 : 65536))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "argmax_labels: %lld classes do not fit %d-bit labels",
                          (long long)c, bits);
    if (count < 0 || (c > 1 && chan < count))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "argmax_labels: %lld voxels with a channel stride of %lld (need 0 <= count <= stride)",
                          (long long)count, (long long)chan);
    return SARCO_OK;
}

sarco_status sarco_edt_desc_check(sarco_context *ctx, const sarco_edt_desc *d, int has_sites) {
    if (!d) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "edt_axis: desc is NULL");
    for (int a = 0; a < 3; a++)
        if (d->dims[a] < 1 || d->dims[a] > INT32_MAX)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "edt_axis: dims[%d] is %lld, expected 1..2^31-1", a,
                              (long long)d->dims[a]);
    if (d->dims[0] > INT64_MAX / 16 / d->dims[1] / d->dims[2])
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "edt_axis: dims product overflows");
    if (d->axis < 0 || d->axis > 2)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "edt_axis: axis is %d, expected 0..2", d->axis);
    if (!(d->spacing > 0.0) || !isfinite(d->spacing))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "edt_axis: spacing %g mm, expected finite and > 0",
                          d->spacing);
    if (has_sites && d->site_bit == 0)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "edt_axis: sites given with site_bit 0");
    return SARCO_OK;
}

sarco_status sarco_label_stats_check(sarco_context *ctx, int64_t n, int64_t nlabels) {
    if (n < 0 || nlabels < 1 || nlabels > 65536)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "label_stats: %lld voxels and %lld labels (need n >= 0, "
                          "1..65536 labels)", (long long)n, (long long)nlabels);
    return SARCO_OK;
}

sarco_status sarco_swin_desc_check(sarco_context *ctx, const sarco_swin_desc *d, int64_t heads) {
    if (!d) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "swin: desc is NULL");
    if (d->n < 0 || d->h < 1 || d->w < 1 || d->c < 1 || d->h > (1 << 20) || d->w > (1 << 20) ||
        d->c > SARCO_MAX_CHANNELS)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "swin: map (N %lld, H %lld, W %lld, C %lld)",
                          (long long)d->n, (long long)d->h, (long long)d->w, (long long)d->c);
    for (int a = 0; a < 2; a++) {
        const int64_t size = a ? d->w : d->h, win = d->win[a];
        if (win < 1 || win > SARCO_MAX_KERNEL)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "swin: window[%d] = %lld must be in 1..%d", a,
                              (long long)win, SARCO_MAX_KERNEL);
        const int64_t padded = (size + win - 1) / win * win;
        if (d->shift[a] < 0 || d->shift[a] >= win || (d->shift[a] > 0 && win >= padded))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "swin: shift[%d] = %lld must be in [0, window %lld), and 0 when the window covers the "
                              "padded size %lld",
                              a, (long long)d->shift[a], (long long)win, (long long)padded);
    }
    if (heads < 0 || heads > SARCO_MAX_CHANNELS)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "swin: heads = %lld", (long long)heads);
    return SARCO_OK;
}
