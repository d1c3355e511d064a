/* The op interface: one function table per backend.
 *
 * Layout: activations are float32, contiguous and channels-last inside every backend:
 *   3D feature map (N, D, H, W, C), 2D feature map (N, H, W, C), token matrix (N, L, C).
 * Models convert from/to the PyTorch layout (NCDHW/NCHW) only at their edges (to_cl/from_cl).
 *
 * Memory: `float *` arguments are backend memory (host for the CPU backend, device memory for
 * CUDA) obtained from be->alloc. Host buffers cross only through upload/download.
 *
 * Weighted ops (conv, deconv, linear) are prepared once at model load: the backend reorders the
 * PyTorch-layout weights into whatever it runs fastest and returns an opaque handle; running it
 * reuses primitives cached per input shape. Everything else is stateless.
 *
 * Every function returns SARCO_OK or a status with a message set on be->ctx. Ops never allocate
 * per call on the hot path except through their cached plans. No op synchronises the device;
 * download does.
 */
#ifndef SARCO_OPS_H
#define SARCO_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

/* Activation fused after an op (conv/deconv/linear/norm/affine) or run alone (be->act). */
typedef enum sarco_act {
    SARCO_ACT_NONE = 0,
    SARCO_ACT_RELU,
    SARCO_ACT_LEAKY_RELU, /* alpha = negative slope (0.01 for MONAI and nnU-Net) */
    SARCO_ACT_GELU,       /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    SARCO_ACT_GELU_TANH,  /* tanh approximation */
    SARCO_ACT_SILU,       /* x * sigmoid(x) (EfficientNet) */
    SARCO_ACT_SIGMOID,
    SARCO_ACT_TANH,
    SARCO_ACT_HARDSWISH,
    SARCO_ACT_COUNT
} sarco_act;

/* Convolution and transposed convolution, 2D (nsp = 2: H, W) or 3D (nsp = 3: D, H, W).
 * Spatial arrays are indexed [0..nsp). PyTorch semantics throughout:
 *   conv   out = floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1
 *   deconv out = (in - 1) stride - 2 pad + dil (k - 1) + out_pad + 1
 * Weights arrive in PyTorch layout: conv (Cout, Cin/groups, k...), deconv (Cin, Cout/groups, k...). */
typedef struct sarco_conv_desc {
    int nsp;
    int64_t cin, cout, groups;
    int64_t k[3], stride[3], pad[3], dil[3], out_pad[3];
    int has_bias;
    sarco_act act;
    float alpha;
} sarco_conv_desc;

typedef struct sarco_conv sarco_conv;     /* prepared conv or deconv */
typedef struct sarco_linear sarco_linear; /* prepared linear layer */

/* y(M, N) = act(x(M, K) W(N, K)^T + b): PyTorch nn.Linear. */
typedef struct sarco_linear_desc {
    int64_t in_features, out_features;
    int has_bias;
    sarco_act act;
    float alpha;
} sarco_linear_desc;

/* Strided batched GEMM, C[b] = alpha A[b] B[b] (+ beta C[b]), without prepared weights (attention).
 * Element (b, i, p) of A is a[b*a_bs + i*a_rs + p*a_cs]; B likewise (b, p, j); C is (b, i, j) at
 * c[b*c_bs + i*c_rs + j]. One of each operand's row/column strides must be 1. */
typedef struct sarco_gemm_desc {
    int64_t batch, m, n, k;
    int64_t a_bs, a_rs, a_cs;
    int64_t b_bs, b_rs, b_cs;
    int64_t c_bs, c_rs;
    float alpha, beta;
} sarco_gemm_desc;

typedef enum sarco_pool_kind { SARCO_POOL_MAX = 0, SARCO_POOL_AVG = 1 } sarco_pool_kind;

/* Max/avg pooling on channels-last maps, PyTorch semantics (ceil_mode, count_include_pad;
 * max pooling pads with -inf). Global pooling: k = in, stride = 1, pad = 0. */
typedef struct sarco_pool_desc {
    int nsp;
    sarco_pool_kind kind;
    int64_t k[3], stride[3], pad[3];
    int ceil_mode;
    int count_include_pad;
} sarco_pool_desc;

typedef enum sarco_binop { SARCO_BIN_ADD = 0, SARCO_BIN_MUL, SARCO_BIN_SUB, SARCO_BIN_DIV } sarco_binop;

/* Broadcasting elementwise op over up to SARCO_MAX_DIMS dims: y[i] = a[i .* sa] op b[i .* sb],
 * where a stride of 0 broadcasts. y is contiguous with shape `shape`. y may alias a or b when
 * that operand is not broadcast. */
#define SARCO_MAX_DIMS 6
typedef struct sarco_bcast_desc {
    int ndim;
    int64_t shape[SARCO_MAX_DIMS];
    int64_t sa[SARCO_MAX_DIMS], sb[SARCO_MAX_DIMS];
} sarco_bcast_desc;

/* Patchify: (N, D, H, W, C) channels-last volume -> tokens (N, L, P) with L = (D/pd)(H/ph)(W/pw)
 * patches in row-major (d, h, w) order and P = pd ph pw C, each patch's features ordered
 * (p1, p2, p3, c) as MONAI's "perceptron" Rearrange does. nsp = 2 for (N, H, W, C).
 * Unpatchify is the inverse. */
typedef struct sarco_patch_desc {
    int nsp;
    int64_t n, c;
    int64_t in[3];    /* spatial size, divisible by p */
    int64_t p[3];
} sarco_patch_desc;

/* Sliding-window blending (lib/pipeline/window.c): one window's prediction y (C, R0, R1, R2), as the
 * network returns it (PyTorch layout), lands in a slab accumulator acc (C, S0, S1, S2) with weight sums
 * cnt (S0, S1, S2), starting at st[] inside the slab (st[a] + roi[a] <= slab[a]). 2-D: roi2 = slab2 = 1. */
typedef struct sarco_window_desc {
    int64_t c;
    int64_t roi[3], slab[3], st[3];
} sarco_window_desc;

/* Swin Transformer windows (torchvision swin_transformer.py, v1 shifted_window_attention) on a map
 * (N, H, W, C) channels-last. The map is padded with zeros on the right/bottom to multiples of the
 * window (PH, PW), rolled by (-shift[0], -shift[1]) (torch.roll) and cut into nW = (PH/win0)(PW/win1)
 * windows in row-major order, each window's L = win0 win1 tokens row-major:
 *   swin_partition: x (N, H, W, C) -> windows (N nW, L, C)
 *   swin_reverse:   windows (N nW, L, C) -> y (N, H, W, C) = residual + (windows placed back, rolled by
 *                   +shift, cropped); residual may be NULL and y may alias residual
 *   swin_attention: qkv (N nW, L, 3C), each token laid out (3, heads, C / heads) as the qkv Linear writes it
 *                   -> out (N nW, L, C) = per window and head softmax(Q K^T (C/heads)^-0.5 + bias + mask) V,
 *                   heads concatenated. bias[h](i, j) = table[rel(i, j) heads + h] with torchvision's
 *                   relative_position_index rel(i, j) = (ri - rj + win0 - 1)(2 win1 - 1) + ci - cj + win1 - 1
 *                   (table: ((2 win0 - 1)(2 win1 - 1), heads)); the mask adds -100 between tokens of
 *                   different shift regions when some shift is non-zero. L <= 256.
 * shift[] is the one torchvision applies: the caller sets it to 0 on an axis where win >= padded size.
 * Patch merging: x (N, H, W, C) -> y (N, ceil(H/2), ceil(W/2), 4C) = cat(x[0::2, 0::2], x[1::2, 0::2],
 * x[0::2, 1::2], x[1::2, 1::2]) after zero-padding H and W to even sizes (torchvision's _patch_merging_pad). */
typedef struct sarco_swin_desc {
    int64_t n, h, w, c;
    int64_t win[2];
    int64_t shift[2];
} sarco_swin_desc;
SARCO_INTERNAL sarco_status sarco_swin_desc_check(sarco_context *ctx, const sarco_swin_desc *d, int64_t heads);

/* Measurements (lib/measure/). edt_axis: one separable pass of the exact squared distance transform
 * (kernels/edt_hd.h) along `axis` of a C-order float volume f (D0, D1, D2), lines of dims[axis] voxels
 * `spacing` mm apart. With sites (uint8, same shape): the first pass, f = squared distance (mm^2) to the
 * nearest voxel of the line with (sites & site_bit) != 0, +inf where the line has none
 * (sarco_edt_line_binary); without: the lower envelope f = min_j f[j] + spacing^2 (i - j)^2 in place
 * (sarco_edt_line). query (optional, uint8): lines holding no voxel with (query & query_bit) != 0 may be
 * skipped and left unspecified. take_sqrt: f gets the square root of the result (for the last pass).
 * Running the passes in the same order gives the same bits on every backend. */
typedef struct sarco_edt_desc {
    int64_t dims[3];
    int axis;
    double spacing;
    uint8_t site_bit, query_bit;
    int take_sqrt;
} sarco_edt_desc;
/* label_stats' per-label accumulator, defined in kernels/measure_hd.h */
typedef struct sarco_hu_acc sarco_hu_acc;
SARCO_INTERNAL sarco_status sarco_edt_desc_check(sarco_context *ctx, const sarco_edt_desc *d, int has_sites);
SARCO_INTERNAL sarco_status sarco_label_stats_check(sarco_context *ctx, int64_t n, int64_t nlabels);

/* One backend's op table. `be` carries the backend's state (engine, streams, caches). */
typedef struct sarco_backend_ops {
    const char *name; /* "cpu" or "cuda" */

    /* memory */
    sarco_status (*alloc)(sarco_backend *be, size_t bytes, void **out);
    void (*free)(sarco_backend *be, void *p);
    sarco_status (*upload)(sarco_backend *be, void *dst, const void *src, size_t bytes);
    sarco_status (*download)(sarco_backend *be, void *dst, const void *src, size_t bytes); /* synchronises */
    sarco_status (*memset0)(sarco_backend *be, void *p, size_t bytes);
    sarco_status (*copy)(sarco_backend *be, void *dst, const void *src, size_t bytes);
    sarco_status (*sync)(sarco_backend *be);

    /* weighted ops, prepared once */
    sarco_status (*conv_prepare)(sarco_backend *be, const sarco_conv_desc *d, int transposed,
                                 const float *w_host, const float *b_host, sarco_conv **out);
    /* x (N, in..., Cin) -> y (N, out..., Cout); in[] is the input's spatial size. If `residual` is
     * non-NULL it is added to the result before the activation (y = act(conv(x) + b + residual)). */
    sarco_status (*conv_run)(sarco_backend *be, sarco_conv *c, int64_t n, const int64_t *in,
                             const float *x, const float *residual, float *y);
    void (*conv_free)(sarco_backend *be, sarco_conv *c);

    sarco_status (*linear_prepare)(sarco_backend *be, const sarco_linear_desc *d, const float *w_host,
                                   const float *b_host, sarco_linear **out);
    /* x (M, K) -> y (M, N); residual (M, N) optional, added before the activation */
    sarco_status (*linear_run)(sarco_backend *be, sarco_linear *l, int64_t m, const float *x,
                               const float *residual, float *y);
    void (*linear_free)(sarco_backend *be, sarco_linear *l);

    sarco_status (*gemm)(sarco_backend *be, const sarco_gemm_desc *d, const float *a, const float *b,
                         float *c);

    /* normalisation */
    /* x (rows, C) -> y, over the last axis; gamma/beta may be NULL (then 1 and 0) */
    sarco_status (*layernorm)(sarco_backend *be, int64_t rows, int64_t c, const float *x,
                              const float *gamma, const float *beta, float eps, float *y);
    /* x (N, S, C) channels-last, stats per (n, c) over S; gamma/beta NULL = affine False.
     * residual (N, S, C) optional, added after the affine and before the activation. */
    sarco_status (*instnorm)(sarco_backend *be, int64_t n, int64_t s, int64_t c, const float *x,
                             const float *gamma, const float *beta, float eps, const float *residual,
                             sarco_act act, float alpha, float *y);
    /* y = act(x * scale[c] + shift[c]) on (rows, C): eval-mode batch norm and other affines */
    sarco_status (*channel_affine)(sarco_backend *be, int64_t rows, int64_t c, const float *x,
                                   const float *scale, const float *shift, sarco_act act, float alpha,
                                   float *y);

    /* elementwise */
    sarco_status (*act)(sarco_backend *be, sarco_act act, float alpha, int64_t n, const float *x, float *y);
    sarco_status (*binary)(sarco_backend *be, sarco_binop op, const sarco_bcast_desc *d, const float *a,
                           const float *b, float *y);
    /* softmax over the middle axis of x viewed as (outer, n, inner) */
    sarco_status (*softmax)(sarco_backend *be, int64_t outer, int64_t n, int64_t inner, const float *x,
                            float *y);

    /* data movement */
    /* concat along the middle axis: inputs k of shape (outer, sizes[k], inner) -> (outer, sum, inner) */
    sarco_status (*concat)(sarco_backend *be, int count, const float *const *xs, const int64_t *sizes,
                           int64_t outer, int64_t inner, float *y);
    /* (N, C, S) <-> (N, S, C): PyTorch layout to channels-last and back */
    sarco_status (*to_cl)(sarco_backend *be, int64_t n, int64_t c, int64_t s, const float *x, float *y);
    sarco_status (*from_cl)(sarco_backend *be, int64_t n, int64_t c, int64_t s, const float *x, float *y);
    sarco_status (*patchify)(sarco_backend *be, const sarco_patch_desc *d, const float *x, float *y);
    sarco_status (*unpatchify)(sarco_backend *be, const sarco_patch_desc *d, const float *x, float *y);

    /* pooling: x (N, in..., C) -> y (N, out..., C) */
    sarco_status (*pool)(sarco_backend *be, const sarco_pool_desc *d, int64_t n, int64_t c,
                         const int64_t *in, const float *x, float *y);
    /* adaptive average pooling, 2D: x (N, in0, in1, C) -> y (N, out0, out1, C), PyTorch's windows
     * (kernels/pool_hd.h sarco_hd_adaptive_window); out may exceed in */
    sarco_status (*adaptive_avg_pool2d)(sarco_backend *be, int64_t n, int64_t c, const int64_t *in,
                                        const int64_t *out, const float *x, float *y);

    /* sliding window: acc += y w and cnt += w for one window (w (R0, R1, R2), NULL = 1), the product
     * rounded to float before the add (MONAI); windows land in call order, so sums match across backends */
    sarco_status (*window_accumulate)(sarco_backend *be, const sarco_window_desc *d, const float *y,
                                      const float *w, float *acc, float *cnt);
    /* labels[i] = argmax_k acc[k * chan + i] / cnt[i] over c classes, i < count (torch.argmax: the first
     * index wins ties, a NaN wins at its first index), stored as uint8 (bits 8, c <= 256) or uint16 */
    sarco_status (*argmax_labels)(sarco_backend *be, int64_t c, int64_t count, int64_t chan, const float *acc,
                                  const float *cnt, int bits, void *labels);

    /* measurements (sarco_edt_desc above): sites, query and f are backend memory */
    sarco_status (*edt_axis)(sarco_backend *be, const sarco_edt_desc *d, const uint8_t *sites, const uint8_t *query,
                             float *f);
    /* volume integration: acc[l] (nlabels entries, overwritten) = the sarco_hu_acc of the voxels i < n with
     * labels[i] == l, with their intensities when image (n floats) is given; labels >= nlabels are left out.
     * Counts, min and max are exact; the double sums are exact for integer-valued images (CT in HU) and
     * otherwise depend on the summation order (threads, blocks, atomics) in the last bits. */
    sarco_status (*label_stats)(sarco_backend *be, int64_t n, const uint16_t *labels, const float *image,
                                int64_t nlabels, sarco_hu_acc *acc);

    /* Swin Transformer (sarco_swin_desc above) */
    sarco_status (*swin_partition)(sarco_backend *be, const sarco_swin_desc *d, const float *x, float *windows);
    sarco_status (*swin_reverse)(sarco_backend *be, const sarco_swin_desc *d, const float *windows,
                                 const float *residual, float *y);
    sarco_status (*swin_attention)(sarco_backend *be, const sarco_swin_desc *d, int64_t heads, const float *table,
                                   const float *qkv, float *out);
    sarco_status (*patch_merge)(sarco_backend *be, int64_t n, int64_t h, int64_t w, int64_t c, const float *x,
                                float *y);

    void (*destroy)(sarco_backend *be);
} sarco_backend_ops;

struct sarco_backend {
    const sarco_backend_ops *ops;
    sarco_context *ctx;  /* for error messages and options */
    void *impl;          /* backend-private state */
};

/* Output spatial sizes of a conv/deconv/pool for the given input; 0 when some size is < 1. */
SARCO_INTERNAL int sarco_conv_out_shape(const sarco_conv_desc *d, int transposed, const int64_t *in,
                                        int64_t *out);
SARCO_INTERNAL int sarco_pool_out_shape(const sarco_pool_desc *d, const int64_t *in, int64_t *out);
/* Checks a desc's fields (positive sizes, groups divide channels, ...) and names the problem. */
SARCO_INTERNAL sarco_status sarco_conv_desc_check(sarco_context *ctx, const sarco_conv_desc *d, int transposed);
/* The same for window_accumulate's desc and argmax_labels' sizes (buffers are the backend's to check). */
SARCO_INTERNAL sarco_status sarco_window_desc_check(sarco_context *ctx, const sarco_window_desc *d);
SARCO_INTERNAL sarco_status sarco_argmax_check(sarco_context *ctx, int64_t c, int64_t count, int64_t chan, int bits);

/* Backend constructors. The CPU one always exists; the CUDA one lives in libsarco_cuda.so and is
 * reached through sarco_backend_open_cuda (dlopen). */
SARCO_INTERNAL sarco_status sarco_backend_create_cpu(sarco_context *ctx, sarco_backend **out);
SARCO_INTERNAL sarco_status sarco_backend_open_cuda(sarco_context *ctx, sarco_backend **out);

/* The entry point libsarco_cuda.so exports, with its ABI record (and, for libsarco builds older
 * than the record, the bare ABI number sarco_cuda_abi, so they refuse a newer plugin cleanly). */
#define SARCO_CUDA_ABI_VERSION 5 /* 2: window_accumulate, argmax_labels; 3: edt_axis, label_stats; 4: abi record;
                                  * 5: adaptive_avg_pool2d, swin_partition, swin_reverse, swin_attention,
                                  *    patch_merge */
typedef sarco_status (*sarco_cuda_create_fn)(sarco_context *ctx, sarco_backend **out, char *msg,
                                             size_t msg_size);

/* SARCO_BUILD_ID: a hash of the headers that lay out what libsarco and the plugin share (sarco.h,
 * core.h, ops.h), set by the Makefile; both sides must carry the same one. */
#ifndef SARCO_BUILD_ID
#define SARCO_BUILD_ID "unset"
#endif

/* The plugin's exported `sarco_cuda_abi_info`. The loader refuses a plugin whose record differs from
 * its own in any of the first five fields (it reads sarco_context and this op table directly), naming
 * both. Fields are only ever appended. */
typedef struct sarco_cuda_abi_record {
    int abi_version;         /* SARCO_CUDA_ABI_VERSION */
    int cuda_runtime;        /* CUDART_VERSION the plugin was built with, e.g. 13000 */
    size_t context_size;     /* sizeof(sarco_context) */
    size_t ops_size;         /* sizeof(sarco_backend_ops) */
    char build_id[48];       /* SARCO_BUILD_ID */
    int cudnn_version;       /* CUDNN_VERSION built against (cuDNN 9: major*10000 + minor*100 + patch) */
    int cublas_version;      /* CUBLAS_VERSION built against */
} sarco_cuda_abi_record;

/* Plugin file names: the default one, built with the toolkit `make` found (CUDA 13 here), and the
 * CUDA 12 one (`make cuda12`), which the loader picks for a driver older than CUDA 13 (docs/cuda.md). */
#define SARCO_CUDA_PLUGIN "libsarco_cuda.so"
#define SARCO_CUDA12_PLUGIN "libsarco_cuda12.so"

#endif
