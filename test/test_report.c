/* The HTML report without a browser (test/python/test_report.py renders it in Chromium): SHA-256
 * against the FIPS 180-4 vectors; every string from a file is escaped; nothing refers to the network
 * or runs a script; pictures become data: URIs; the demonstration warning follows the config; bad
 * inputs fail with a message and leave no file. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/io/imageio.h"
#include "lib/report/report.h"
#include "testutil.h"

static char g_dir[128];
static sarco_context *g_ctx;

static int setup(void **state) {
    (void)state;
    return tu_dir_and_ctx("report", g_dir, sizeof g_dir, &g_ctx);
}

static int teardown(void **state) {
    (void)state;
    tu_dir_and_ctx_free(g_dir, g_ctx);
    return 0;
}

static void hex(const uint8_t d[32], char out[65]) {
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_sha256_vectors(void **state) {
    (void)state;
    uint8_t d[32];
    char h[65];
    sarco_sha256("", 0, d);
    hex(d, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sarco_sha256("abc", 3, d);
    hex(d, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 448 bits: padding spills */
    sarco_sha256(two, strlen(two), d);
    hex(d, h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a' through the file path (64 KiB reads) */
    char path[256];
    snprintf(path, sizeof path, "%s/a.bin", g_dir);
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    tu_spit(path, a, 1000000);
    free(a);
    assert_int_equal(sarco_sha256_file(g_ctx, path, h), SARCO_OK);
    assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    snprintf(path, sizeof path, "%s/missing.bin", g_dir);
    assert_int_equal(sarco_sha256_file(g_ctx, path, h), SARCO_ERR_IO);
}

/* A model file whose only content is a sarco.config with this description (and extra fields). */
static void write_model(const char *path, const char *config_fields) {
    char header[1024];
    /* the config is a JSON string inside the metadata: its quotes are escaped */
    snprintf(header, sizeof header, "{\"__metadata__\": {\"sarco.config\": \"{\\\"arch\\\": \\\"monai.UNETR\\\", %s}\"}}",
             config_fields);
    size_t n;
    uint8_t *b = tu_st_bytes(header, NULL, 0, &n);
    tu_spit(path, b, n);
    free(b);
}

static const char *SEG =
    "{\"input\": {\"path\": \"/data/<img>&.nii.gz\", \"spacing_mm\": [1, 1, 2]},"
    " \"model\": {\"path\": null, \"arch\": \"monai.UNETR\"}, \"height_m\": 1.7,"
    " \"labels\": [{\"label\": 1, \"name\": \"<script>alert(1)</script>\", \"voxels\": 10, \"volume_ml\": 1.25,"
    " \"hu_mean\": 40.04999, \"hu_sd\": null}],"
    " \"groups\": [{\"name\": \"g&\\\"'\", \"voxels\": 10, \"volume_ml\": 1.25}]}";

static char *render(const sarco_report_inputs *in) {
    char *html = NULL;
    size_t n = 0;
    sarco_status st = sarco_report_html(g_ctx, in, &html, &n);
    if (st != SARCO_OK) fail_msg("report: %s", sarco_last_error(g_ctx));
    assert_int_equal(strlen(html), n);
    return html;
}

static void test_escaping_and_self_contained(void **state) {
    (void)state;
    char model[256];
    snprintf(model, sizeof model, "%s/m.safetensors", g_dir);
    write_model(model, "\\\"description\\\": \\\"thigh <b>model</b>\\\", \\\"classes\\\": [\\\"bg\\\", \\\"m&m\\\"]");
    uint8_t rgb[4 * 3 * 3];
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 20);
    sarco_report_picture pic = {NULL, rgb, 4, 3, "caption \"<x>\""};
    sarco_report_inputs in;
    sarco_report_inputs_init(&in);
    in.segment_json = SEG;
    in.model_path = model;
    in.pictures = &pic;
    in.npictures = 1;
    in.date = "2026-01-02 <now>";
    char *html = render(&in);
    /* escaped, never raw */
    assert_null(strstr(html, "<script"));
    assert_non_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_non_null(strstr(html, "&lt;img&gt;&amp;.nii.gz"));
    assert_null(strstr(html, "/data/")); /* only the file name is shown */
    assert_non_null(strstr(html, "g&amp;&quot;&#39;"));
    assert_non_null(strstr(html, "thigh &lt;b&gt;model&lt;/b&gt;"));
    assert_non_null(strstr(html, "m&amp;m"));
    assert_non_null(strstr(html, "caption &quot;&lt;x&gt;&quot;"));
    assert_non_null(strstr(html, "2026-01-02 &lt;now&gt;"));
    /* self-contained: no network, no scripts, the picture inline */
    assert_null(strstr(html, "http://"));
    assert_null(strstr(html, "https://"));
    assert_null(strstr(html, "//cdn"));
    assert_null(strstr(html, "url("));
    assert_non_null(strstr(html, "src=\"data:image/png;base64,iVBORw0KGgo"));
    assert_non_null(strstr(html, "@page{size:A4"));
    /* numbers: the exact JSON value in data-value, the shown text rounded per unit; null is a dash */
    assert_non_null(strstr(html, "data-value=\"1.25\" data-decimals=\"1\">1.2</td>") ||
                    strstr(html, "data-value=\"1.25\" data-decimals=\"1\">1.3</td>"));
    assert_non_null(strstr(html, "data-value=\"40.049990000000001\" data-decimals=\"1\">40.0</td>"));
    assert_non_null(strstr(html, "<td class=\"num na\">&ndash;</td>"));
    /* the model's hash is the file's */
    char sha[65];
    assert_int_equal(sarco_sha256_file(g_ctx, model, sha), SARCO_OK);
    assert_non_null(strstr(html, sha));
    assert_null(strstr(html, "demo-warning")); /* nothing in this config says demonstration */
    sarco_report_free(html);

    /* written atomically: the same bytes */
    char out[256];
    snprintf(out, sizeof out, "%s/r.html", g_dir);
    assert_int_equal(sarco_report_write(g_ctx, &in, out), SARCO_OK);
    size_t sz;
    uint8_t *back = tu_slurp(out, &sz);
    html = render(&in);
    assert_int_equal(sz, strlen(html));
    assert_memory_equal(back, html, sz);
    free(back);
    sarco_report_free(html);
}

static void test_demo_warning(void **state) {
    (void)state;
    char model[256];
    snprintf(model, sizeof model, "%s/d.safetensors", g_dir);
    static const char *const demo[] = {
        "\\\"demonstration\\\": true",
        "\\\"clinical_use\\\": false",
        "\\\"description\\\": \\\"A Demonstration model on phantoms\\\"",
        "\\\"description\\\": \\\"Not for clinical use\\\"",
    };
    sarco_report_inputs in;
    sarco_report_inputs_init(&in);
    in.model_path = model;
    for (int i = 0; i < 4; i++) {
        write_model(model, demo[i]);
        char *html = render(&in);
        assert_non_null(strstr(html, "id=\"demo-warning\">Demonstration model &mdash; not for clinical use."));
        sarco_report_free(html);
    }
    write_model(model, "\\\"demonstration\\\": false, \\\"description\\\": \\\"trained on 500 CTs\\\"");
    char *html = render(&in);
    assert_null(strstr(html, "demo-warning"));
    sarco_report_free(html);
    /* the bundled demo model says so in its description */
    in.model_path = "weights/demo_thigh_unetr.safetensors";
    html = render(&in);
    assert_non_null(strstr(html, "demo-warning"));
    assert_non_null(strstr(html, "monai.UNETR"));
    sarco_report_free(html);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void test_bad_inputs(void **state) {
    (void)state;
    tu_clear_dir(g_dir);
    char out[256], notpng[256], missing[256];
    snprintf(out, sizeof out, "%s/r.html", g_dir);
    snprintf(notpng, sizeof notpng, "%s/x.png", g_dir);
    snprintf(missing, sizeof missing, "%s/none.png", g_dir);
    tu_spit(notpng, "not a png", 9);
    sarco_report_inputs in;
    sarco_report_inputs_init(&in);
    in.segment_json = "{\"labels\": [1, 2,]}";
    assert_int_equal(sarco_report_write(g_ctx, &in, out), SARCO_ERR_BAD_FORMAT);
    assert_non_null(strstr(sarco_last_error(g_ctx), "segment JSON does not parse: line 1"));
    in.segment_json = "[1]";
    assert_int_equal(sarco_report_write(g_ctx, &in, out), SARCO_ERR_BAD_FORMAT);
    in.segment_json = NULL;
    in.diagnosis_json = "{";
    assert_int_equal(sarco_report_write(g_ctx, &in, out), SARCO_ERR_BAD_FORMAT);
    assert_non_null(strstr(sarco_last_error(g_ctx), "diagnosis JSON"));
    in.diagnosis_json = NULL;
    sarco_report_picture pic = {notpng, NULL, 0, 0, NULL};
    in.pictures = &pic;
    in.npictures = 1;
    assert_int_equal(sarco_report_write(g_ctx, &in, out), SARCO_ERR_BAD_FORMAT);
    pic.png_path = missing;
    assert_int_equal(sarco_report_write(g_ctx, &in, out), SARCO_ERR_IO);
    pic.png_path = NULL;
    assert_int_equal(sarco_report_write(g_ctx, &in, out), SARCO_ERR_INVALID_ARGUMENT);
    in.npictures = 0;
    in.model_path = missing;
    assert_int_equal(sarco_report_write(g_ctx, &in, out), SARCO_ERR_IO);
    in.model_path = notpng; /* not a safetensors file: "not a pn" as a header length is past the cap */
    assert_int_equal(sarco_report_write(g_ctx, &in, out), SARCO_ERR_LIMIT);
    in.model_path = NULL;
    in.struct_size = 0;
    assert_int_equal(sarco_report_write(g_ctx, &in, out), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(count_entries(g_dir), 1); /* only x.png: no report, no temporary file */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_escaping_and_self_contained),
        cmocka_unit_test(test_demo_warning),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests_name("report", tests, setup, teardown);
}
