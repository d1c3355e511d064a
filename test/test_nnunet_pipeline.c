/* nnU-Net v2 inference pipeline vs nnunetv2 itself (test/data/nnunet_pipeline/, written by
 * test/gen_nnunet_pipeline_reference.py): Gaussian map and steps (exact), scipy/skimage resampling
 * (max |diff| <= 1e-6 relative to the range), DefaultPreprocessor (bbox exact, values within 1e-4 of
 * the channel's range: nnU-Net's z-score statistics are float32 pairwise sums, ours double), the
 * export from nnU-Net's own fp16 logits (labels identical), the stored postprocessing (identical),
 * fp16 conversions, bad configs. The end-to-end agreement with the networks is in
 * test/python/test_nnunet_pipeline.py. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../lib/io/safetensors.h"
#include "../lib/pipeline/nnunet_pipeline.h"
#include "testutil.h"

#define DIR "test/data/nnunet_pipeline/"

static const char *CASES[] = {"d2", "ct", "re"};

static void *npy(const char *cs, const char *name, const char *descr, int *nd, int64_t *dims) {
    char p[256];
    snprintf(p, sizeof p, DIR "%s/%s", cs, name);
    void *d = tu_npy_read(p, descr, 8, nd, dims);
    assert_non_null(d);
    return d;
}

static void load_cfg(sarco_context *ctx, const char *cs, sarco_nnunet_config *cfg) {
    char p[256];
    snprintf(p, sizeof p, DIR "%s/model.safetensors", cs);
    sarco_st_file *st = NULL;
    assert_int_equal(sarco_st_open(ctx, p, &st), SARCO_OK);
    int present = 0;
    assert_int_equal(sarco_nnunet_config_parse(ctx, st->config_json, cfg, &present), SARCO_OK);
    assert_true(present);
    sarco_st_close(st);
}

/* A slow, obviously correct double -> half (RNE) to check the bit arithmetic against. */
static uint16_t ref_f16(double x) {
    uint16_t sign = signbit(x) ? 0x8000u : 0u;
    double a = fabs(x);
    if (a != a) return 0x7e00u;
    if (a >= 65520.0) return (uint16_t)(sign | 0x7c00u);
    if (a == 0.0) return sign;
    int e;
    (void)frexp(a, &e);
    int E = e - 1 < -14 ? -14 : e - 1;
    double r = ldexp(a, 10 - E), fl = floor(r), diff = r - fl;
    uint32_t n = (uint32_t)fl;
    if (diff > 0.5 || (diff == 0.5 && (n & 1u))) n++;
    return (uint16_t)(sign | (uint32_t)(((E + 15) << 10) + (int)n - 1024));
}

static void test_f16(void **state) {
    (void)state;
    /* every half, every midpoint between neighbours and points just off them, both signs */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double v = sarco_f16_to_float((uint16_t)h), w = sarco_f16_to_float((uint16_t)(h + 1));
        const double probes[5] = {v, 0.5 * (v + w), nextafter(0.5 * (v + w), 0), nextafter(0.5 * (v + w), 1e9),
                                  0.25 * v + 0.75 * w};
        for (int k = 0; k < 5; k++)
            for (int sg = 0; sg < 2; sg++) {
                double x = sg ? -probes[k] : probes[k];
                assert_int_equal(sarco_f16_from_double(x), ref_f16(x));
                float xf = (float)x;
                assert_int_equal(sarco_f16_from_float(xf), ref_f16((double)xf));
            }
    }
    assert_int_equal(sarco_f16_from_double(INFINITY), 0x7c00);
    assert_int_equal(sarco_f16_from_float(-INFINITY), 0xfc00);
    assert_int_equal(sarco_f16_from_double(NAN) & 0x7e00, 0x7e00);
    assert_int_equal(sarco_f16_from_double(1.0), 0x3c00);
    assert_int_equal(sarco_f16_from_double(-2.0), 0xc000);
    assert_int_equal(sarco_f16_from_double(65504.0), 0x7bff);
    assert_int_equal(sarco_f16_from_double(65519.99), 0x7bff);
    assert_int_equal(sarco_f16_from_double(65520.0), 0x7c00);
    assert_int_equal(sarco_f16_from_double(ldexp(1.0, -24)), 0x0001);  /* smallest subnormal */
    assert_int_equal(sarco_f16_from_double(ldexp(1.0, -25)), 0x0000);  /* tie -> even (0) */
    assert_int_equal(sarco_f16_from_double(ldexp(3.0, -25)), 0x0002);  /* tie -> even (2) */
    assert_int_equal(sarco_f16_from_double(1.0 + ldexp(1.0, -11)), 0x3c00); /* tie -> even */
    assert_int_equal(sarco_f16_from_double(1.0 + ldexp(3.0, -11)), 0x3c02);
    assert_int_equal(sarco_f16_from_double(ldexp(1.0, -14) - ldexp(1.0, -25)), 0x0400); /* carry to normal */
    /* every half round-trips */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        assert_int_equal(sarco_f16_from_float(sarco_f16_to_float((uint16_t)h)), h);
        assert_int_equal(sarco_f16_from_float(-sarco_f16_to_float((uint16_t)h)), h | 0x8000u);
    }
}

static void test_gaussian_and_steps(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        sarco_nnunet_config cfg;
        load_cfg(ctx, CASES[c], &cfg);
        int nd;
        int64_t dims[8];
        uint16_t *ref = npy(CASES[c], "gauss.npy", "<f2", &nd, dims);
        assert_int_equal(nd, cfg.nsp);
        int64_t n = 1;
        for (int i = 0; i < nd; i++) {
            assert_int_equal(dims[i], cfg.patch[i]);
            n *= dims[i];
        }
        uint16_t *g = malloc((size_t)n * sizeof *g);
        sarco_nn_gaussian(cfg.nsp, cfg.patch, g);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += g[i] != ref[i];
        if (bad) fprintf(stderr, "%s: %lld Gaussian values differ\n", CASES[c], (long long)bad);
        assert_int_equal(bad, 0);
        free(g);
        free(ref);
        for (int i = 0; i < 2; i++) {
            char p[256];
            snprintf(p, sizeof p, DIR "%s/steps%d.json", CASES[c], i);
            json_error_t e;
            json_t *j = json_load_file(p, 0, &e);
            assert_non_null(j);
            json_t *ps = json_object_get(j, "padded_shape"), *steps = json_object_get(j, "steps");
            int off = (int)json_array_size(ps) - cfg.nsp;
            for (int a = 0; a < cfg.nsp; a++) {
                int64_t size = json_integer_value(json_array_get(ps, (size_t)(a + off)));
                int64_t st[4096];
                int64_t ns = sarco_nn_steps(size, cfg.patch[a], 0.5, st);
                json_t *ra = json_array_get(steps, (size_t)a);
                assert_int_equal(ns, (int64_t)json_array_size(ra));
                for (int64_t k = 0; k < ns; k++) assert_int_equal(st[k], json_integer_value(json_array_get(ra, (size_t)k)));
            }
            json_decref(j);
        }
    }
    sarco_context_free(ctx);
}

static void test_resampling(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    json_error_t e;
    json_t *j = json_load_file(DIR "ct/resample.json", 0, &e);
    assert_non_null(j);
    int nd;
    int64_t idims[8];
    float *x = npy("ct", "resample_in.npy", "<f4", &nd, idims);
    assert_int_equal(nd, 4);
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        int64_t shape[3];
        double cur[3], tgt[3];
        for (int i = 0; i < 3; i++) {
            shape[i] = json_integer_value(json_array_get(json_object_get(v, "shape"), (size_t)i));
            cur[i] = json_number_value(json_array_get(json_object_get(v, "current_spacing"), (size_t)i));
            tgt[i] = json_number_value(json_array_get(json_object_get(v, "new_spacing"), (size_t)i));
        }
        sarco_nn_resampling r = {(int)json_integer_value(json_object_get(v, "order")), 0, -1};
        char name[64];
        snprintf(name, sizeof name, "resample_%s.npy", key);
        int64_t rd[8];
        float *ref = npy("ct", name, "<f4", &nd, rd);
        int64_t n = shape[0] * shape[1] * shape[2];
        double *y = malloc((size_t)n * sizeof *y);
        assert_int_equal(sarco_nn_resample_channel(ctx, idims + 1, x, shape, cur, tgt, &r, y), SARCO_OK);
        double md = 0;
        for (int64_t i = 0; i < n; i++) md = fmax(md, fabs((double)(float)y[i] - ref[i]));
        fprintf(stderr, "resample %s (order %d): max |diff| %.3g\n", key, r.order, md);
        assert_true(md <= 1e-6);
        free(y);
        free(ref);
    }
    free(x);
    json_decref(j);
    sarco_context_free(ctx);
}

/* The image in nnU-Net's order: dims reversed, spacing reversed; 2-D natural images (1, y, x) with
 * spacing (999, 1, 1). */
static sarco_image *read_input(sarco_context *ctx, const char *cs, int i, const sarco_nnunet_config *cfg,
                               int64_t *dims, double *sp) {
    char p[256];
    snprintf(p, sizeof p, DIR "%s/img%d.%s", cs, i, cfg->natural_image ? "png" : "nii.gz");
    sarco_image *img = NULL;
    assert_int_equal(sarco_image_read(ctx, p, &img), SARCO_OK);
    if (img->ndim == 2) {
        dims[0] = 1;
        dims[1] = img->dims[1];
        dims[2] = img->dims[0];
        sp[0] = 999.0;
        sp[1] = cfg->natural_image ? 1.0 : img->spacing[1];
        sp[2] = cfg->natural_image ? 1.0 : img->spacing[0];
    } else {
        for (int k = 0; k < 3; k++) {
            dims[k] = img->dims[2 - k];
            sp[k] = img->spacing[2 - k];
        }
    }
    return img;
}

static void test_preprocess(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        sarco_nnunet_config cfg;
        load_cfg(ctx, CASES[c], &cfg);
        for (int i = 0; i < 2; i++) {
            int64_t dims[3];
            double sp[3];
            sarco_image *img = read_input(ctx, CASES[c], i, &cfg, dims, sp);
            const float *chan[1] = {img->data};
            sarco_nn_pre pre;
            assert_int_equal(sarco_nn_preprocess(ctx, &cfg, chan, dims, sp, &pre), SARCO_OK);
            char name[64];
            int nd;
            int64_t rd[8], bd[8];
            snprintf(name, sizeof name, "bbox%d.npy", i);
            int64_t *bb = npy(CASES[c], name, "<i8", &nd, bd);
            for (int k = 0; k < 3; k++) {
                assert_int_equal(pre.bbox[k][0], bb[2 * k]);
                assert_int_equal(pre.bbox[k][1], bb[2 * k + 1]);
            }
            snprintf(name, sizeof name, "pp%d.npy", i);
            float *ref = npy(CASES[c], name, "<f4", &nd, rd);
            assert_int_equal(nd, 4);
            for (int k = 0; k < 3; k++) assert_int_equal(pre.shape_model[k], rd[k + 1]);
            int64_t n = rd[1] * rd[2] * rd[3];
            double md = 0, lo = INFINITY, hi = -INFINITY;
            for (int64_t q = 0; q < n; q++) {
                md = fmax(md, fabs((double)pre.data[q] - ref[q]));
                lo = fmin(lo, ref[q]);
                hi = fmax(hi, ref[q]);
            }
            fprintf(stderr, "preprocess %s/%d: shape %lldx%lldx%lld, max |diff| %.3g (range %.3g)\n", CASES[c], i,
                    (long long)rd[1], (long long)rd[2], (long long)rd[3], md, hi - lo);
            assert_true(md <= 1e-4 * (hi - lo));
            free(ref);
            free(bb);
            sarco_nn_pre_free(ctx, &pre);
            sarco_image_free(img);
        }
    }
    sarco_context_free(ctx);
}

/* nnU-Net's fp16 logits on the model grid -> our export -> nnU-Net's labels, identical. */
static void test_export_from_nnunet_logits(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        sarco_nnunet_config cfg;
        load_cfg(ctx, CASES[c], &cfg);
        int npp = cfg.npp;
        cfg.npp = 0; /* the labels files are before postprocessing */
        for (int i = 0; i < 2; i++) {
            int64_t dims[3];
            double sp[3];
            sarco_image *img = read_input(ctx, CASES[c], i, &cfg, dims, sp);
            const float *chan[1] = {img->data};
            sarco_nn_pre pre;
            assert_int_equal(sarco_nn_preprocess(ctx, &cfg, chan, dims, sp, &pre), SARCO_OK);
            char name[64];
            int nd;
            int64_t ld[8], rd[8];
            snprintf(name, sizeof name, "logits%d_mirror.npy", i);
            uint16_t *L = npy(CASES[c], name, "<f2", &nd, ld);
            assert_int_equal(ld[0], cfg.nheads);
            for (int k = 0; k < 3; k++) assert_int_equal(ld[k + 1], pre.shape_model[k]);
            snprintf(name, sizeof name, "lab%d_mirror.npy", i);
            uint8_t *ref = npy(CASES[c], name, "|u1", &nd, rd);
            int64_t n = dims[0] * dims[1] * dims[2];
            uint16_t *lab = malloc((size_t)n * sizeof *lab);
            assert_int_equal(sarco_nn_export(ctx, &cfg, &pre, 0, L, dims, lab), SARCO_OK);
            int64_t diff = 0;
            for (int64_t q = 0; q < n; q++) diff += lab[q] != ref[q];
            fprintf(stderr, "export %s/%d: %lld of %lld voxels differ\n", CASES[c], i, (long long)diff, (long long)n);
            assert_int_equal(diff, 0);
            if (npp) { /* the stored postprocessing, applied to nnU-Net's labels, vs nnU-Net's */
                snprintf(name, sizeof name, "lab%d_pp.npy", i);
                uint8_t *pref = npy(CASES[c], name, "|u1", &nd, rd);
                sarco_nnunet_config full;
                load_cfg(ctx, CASES[c], &full);
                for (int64_t q = 0; q < n; q++) lab[q] = ref[q];
                for (int k = 0; k < full.npp; k++)
                    assert_int_equal(sarco_nn_keep_largest(ctx, dims, lab, full.pp_labels[k], full.pp_nlabels[k]),
                                     SARCO_OK);
                int64_t pd = 0, removed = 0;
                for (int64_t q = 0; q < n; q++) {
                    pd += lab[q] != pref[q];
                    removed += ref[q] != pref[q];
                }
                fprintf(stderr, "postprocessing %s/%d: %lld voxels removed by nnU-Net, %lld differ\n", CASES[c], i,
                        (long long)removed, (long long)pd);
                assert_true(removed > 0);
                assert_int_equal(pd, 0);
                free(pref);
            }
            free(lab);
            free(ref);
            free(L);
            sarco_nn_pre_free(ctx, &pre);
            sarco_image_free(img);
        }
    }
    sarco_context_free(ctx);
}

static void test_fill_holes_and_components(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    /* a ring with a hole in a 1 x 7 x 7 image: with a single slice every voxel is on the border, so
     * (as in scipy) nothing is filled; in 3 x 7 x 7 with the ring in the middle slice the hole fills
     * only when the slices above and below close it */
    int64_t d1[3] = {1, 7, 7};
    uint8_t m[3 * 49];
    memset(m, 0, sizeof m);
    for (int y = 1; y <= 5; y++)
        for (int x = 1; x <= 5; x++) m[y * 7 + x] = !(y >= 2 && y <= 4 && x >= 2 && x <= 4);
    assert_int_equal(sarco_nn_fill_holes(ctx, d1, m), SARCO_OK);
    assert_int_equal(m[3 * 7 + 3], 0);
    int64_t d3[3] = {3, 7, 7};
    memset(m, 0, sizeof m);
    for (int z = 0; z < 3; z++)
        for (int y = 1; y <= 5; y++)
            for (int x = 1; x <= 5; x++)
                m[z * 49 + y * 7 + x] = z != 1 || !(y >= 2 && y <= 4 && x >= 2 && x <= 4);
    assert_int_equal(sarco_nn_fill_holes(ctx, d3, m), SARCO_OK);
    assert_int_equal(m[49 + 3 * 7 + 3], 1);
    assert_int_equal(m[0], 0);
    /* components: diagonal neighbours connect (full connectivity); ties keep both */
    uint16_t s[9] = {1, 0, 0, 0, 1, 0, 0, 0, 2};
    int64_t d[3] = {1, 3, 3};
    int l1[1] = {1};
    assert_int_equal(sarco_nn_keep_largest(ctx, d, s, l1, 1), SARCO_OK);
    assert_int_equal(s[0], 1);
    assert_int_equal(s[4], 1);
    uint16_t t[9] = {1, 0, 1, 0, 0, 0, 1, 1, 0};
    assert_int_equal(sarco_nn_keep_largest(ctx, d, t, l1, 1), SARCO_OK);
    assert_int_equal(t[0], 0); /* size 1 */
    assert_int_equal(t[2], 0); /* size 1 */
    assert_int_equal(t[6], 1);
    assert_int_equal(t[7], 1);
    uint16_t u[9] = {1, 0, 2, 0, 0, 0, 0, 0, 0};
    int l12[2] = {1, 2};
    assert_int_equal(sarco_nn_keep_largest(ctx, d, u, l12, 2), SARCO_OK);
    assert_int_equal(u[0], 1); /* tie: both stay */
    assert_int_equal(u[2], 2);
    sarco_context_free(ctx);
}

static void test_bad_configs(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    sarco_nnunet_config cfg;
    int present = 1;
    assert_int_equal(sarco_nnunet_config_parse(ctx, "{\"arch\": \"monai.UNETR\"}", &cfg, &present),
                     SARCO_ERR_UNSUPPORTED);
    assert_false(present);
    const char *bad[] = {
        "{\"nnunet\": {\"patch_size\": [0, 32]}}",
        "{\"nnunet\": {\"patch_size\": [32, 32], \"spacing\": [1]}}",
        "{\"nnunet\": {\"patch_size\": [32, 32], \"spacing\": [1, 1], \"transpose_forward\": [0, 0, 1], "
        "\"transpose_backward\": [0, 1, 2]}}",
        "{\"nnunet\": {\"patch_size\": [32, 32], \"spacing\": [1, 1], \"transpose_forward\": [0, 1, 2], "
        "\"transpose_backward\": [0, 1, 2], \"normalization_schemes\": [\"Foo\"], \"use_mask_for_norm\": [false]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sarco_status s = sarco_nnunet_config_parse(ctx, bad[i], &cfg, &present);
        assert_int_not_equal(s, SARCO_OK);
        assert_true(strstr(sarco_last_error(ctx), "nnunet") || strstr(sarco_last_error(ctx), "normalization"));
    }
    /* NaN voxels are refused */
    sarco_nnunet_config good;
    load_cfg(ctx, "re", &good);
    float x[8] = {1, 2, NAN, 4, 5, 6, 7, 8};
    const float *chan[1] = {x};
    int64_t dims[3] = {2, 2, 2};
    double sp[3] = {1, 1, 1};
    sarco_nn_pre pre;
    assert_int_equal(sarco_nn_preprocess(ctx, &good, chan, dims, sp, &pre), SARCO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(sarco_last_error(ctx), "NaN"));
    sarco_context_free(ctx);
}


/* 8-bit PNG labels: round trip through the PNG reader, refusals leave no file */
static void test_png_labels(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    char dir[] = "/tmp/sarco_nnpng_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/lab.png", dir);
    int64_t dims[3] = {7, 5, 1};
    sarco_image *g = NULL;
    assert_int_equal(sarco_image_create(ctx, 2, dims, NULL, &g), SARCO_OK);
    uint16_t lab[35];
    for (int i = 0; i < 35; i++) lab[i] = (uint16_t)((i * 37) % 256);
    assert_int_equal(sarco_labels_write(ctx, g, lab, 255, path), SARCO_OK);
    uint16_t *back = NULL;
    sarco_image *gb = NULL;
    assert_int_equal(sarco_labels_read(ctx, path, &back, &gb), SARCO_OK);
    assert_int_equal(gb->dims[0], 7);
    assert_int_equal(gb->dims[1], 5);
    for (int i = 0; i < 35; i++) assert_int_equal(back[i], lab[i]);
    sarco_labels_free(back);
    sarco_image_free(gb);
    char p2[256];
    snprintf(p2, sizeof p2, "%s/big.png", dir);
    assert_int_equal(sarco_labels_write(ctx, g, lab, 300, p2), SARCO_ERR_INVALID_ARGUMENT);
    lab[3] = 256;
    assert_int_equal(sarco_labels_write(ctx, g, lab, 65535, p2), SARCO_ERR_INVALID_ARGUMENT);
    FILE *f = fopen(p2, "rb");
    assert_null(f);
    snprintf(p2, sizeof p2, "%s/missing_dir/x.png", dir);
    lab[3] = 0;
    assert_int_equal(sarco_labels_write(ctx, g, lab, 255, p2), SARCO_ERR_IO);
    remove(path);
    rmdir(dir);
    sarco_image_free(g);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_gaussian_and_steps),
        cmocka_unit_test(test_resampling),
        cmocka_unit_test(test_preprocess),
        cmocka_unit_test(test_export_from_nnunet_logits),
        cmocka_unit_test(test_fill_holes_and_components),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_png_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
