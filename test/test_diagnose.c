/* The diagnosis rules: the hand-worked table test/data/diagnose/cases.json (every threshold at and
 * beside its boundary, each verdict; test_diagnose.py runs the same table through Python and the
 * CLI), bad input against clear errors, rule files found through $SARCO_RULES_PATH and every
 * built-in rules file valid. */
#include <jansson.h>
#include <stdlib.h>

#include "testutil.h"

#define CASES "test/data/diagnose/cases.json"

static json_t *load_cases(void) {
    json_error_t je;
    json_t *c = json_load_file(CASES, 0, &je);
    if (!c) fail_msg("%s: %s", CASES, je.text);
    return c;
}

static const json_t *find_by(const json_t *arr, const char *key, const char *val) {
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o) if (json_is_string(json_object_get(o, key)) &&
                                      !strcmp(json_string_value(json_object_get(o, key)), val)) return o;
    return NULL;
}

/* Checks one rule set's result against its expectation; returns the number of mismatches. */
static int check_set(const char *cname, const char *set, const json_t *res, const json_t *exp) {
    int bad = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)exp, k, v) {
        if (!strcmp(k, "verdict") || !strcmp(k, "decided")) {
            if (!json_equal(json_object_get(res, k), v)) {
                char *got = json_dumps(json_object_get(res, k), JSON_ENCODE_ANY);
                print_error("%s: %s %s = %s, expected %s\n", cname, set, k, got, json_is_string(v) ? json_string_value(v) : json_is_true(v) ? "true" : "false");
                free(got);
                bad++;
            }
        } else if (!strcmp(k, "criteria") || !strcmp(k, "findings") || !strcmp(k, "values")) {
            const char *id;
            json_t *want;
            json_object_foreach(v, id, want) {
                const json_t *e = find_by(json_object_get(res, !strcmp(k, "values") ? "criteria" : k), "id", id);
                const json_t *got = !e ? NULL
                                    : !strcmp(k, "criteria") ? json_object_get(e, "status")
                                    : !strcmp(k, "findings") ? json_object_get(e, "met") : json_object_get(e, "value");
                int eq = got && (json_is_number(want) ? json_is_number(got) && json_number_value(got) == json_number_value(want)
                                                      : json_equal(got, want));
                if (!eq) {
                    print_error("%s: %s %s '%s' does not match\n", cname, set, k, id);
                    bad++;
                }
            }
        } else if (!strcmp(k, "not_ruled_out") || !strcmp(k, "missing")) {
            /* every expected entry present (missing: in any order; not_ruled_out: exactly) */
            const json_t *got = json_object_get(res, k);
            size_t i;
            json_t *w;
            if (!strcmp(k, "not_ruled_out") && !json_equal(got, v)) bad++, print_error("%s: %s not_ruled_out differs\n", cname, set);
            json_array_foreach(v, i, w) {
                int found = 0;
                size_t j;
                json_t *g;
                json_array_foreach(got, j, g) found |= json_equal(g, w);
                if (!found) bad++, print_error("%s: %s %s lacks %s\n", cname, set, k, json_string_value(w));
            }
        } else {
            print_error("%s: unknown expectation key %s\n", cname, k);
            bad++;
        }
    }
    return bad;
}

static void test_cases(void **state) {
    (void)state;
    json_t *all = load_cases();
    sarco_context *ctx = tu_new_ctx(0);
    size_t i, n = 0;
    json_t *c;
    int bad = 0;
    json_array_foreach(json_object_get(all, "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        char *in = json_dumps(json_object_get(c, "input"), 0), *out = NULL;
        sarco_status s = sarco_diagnose(ctx, json_string_value(json_object_get(c, "rules")), in, &out);
        free(in);
        if (s != SARCO_OK) {
            print_error("%s: %s\n", name, sarco_last_error(ctx));
            bad++;
            continue;
        }
        json_t *res = json_loads(out, 0, NULL);
        assert_non_null(res);
        sarco_json_free(out);
        const char *set;
        json_t *exp;
        json_object_foreach(json_object_get(c, "expect"), set, exp) {
            if (!strcmp(set, "mass_source")) {
                const char *k;
                json_t *v;
                json_object_foreach(exp, k, v) if (!json_equal(json_object_get(json_object_get(res, "mass_source"), k), v))
                    bad++, print_error("%s: mass_source.%s differs\n", name, k);
                continue;
            }
            const json_t *r = find_by(json_object_get(res, "rule_sets"), "name", set);
            if (!r) {
                print_error("%s: no result for %s\n", name, set);
                bad++;
                continue;
            }
            bad += check_set(name, set, r, exp);
        }
        json_decref(res);
        n++;
    }
    print_message("diagnose: %zu hand-worked cases, %d mismatches\n", n, bad);
    assert_int_equal(bad, 0);
    assert_true(n >= 90);
    sarco_context_free(ctx);
    json_decref(all);
}

static void test_errors(void **state) {
    (void)state;
    json_t *all = load_cases();
    sarco_context *ctx = tu_new_ctx(0);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(all, "errors"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        char *in = json_dumps(json_object_get(c, "input"), 0), *out = (char *)1;
        sarco_status s = sarco_diagnose(ctx, json_string_value(json_object_get(c, "rules")), in, &out);
        free(in);
        const char *want = json_string_value(json_object_get(c, "message"));
        if ((int)s != json_integer_value(json_object_get(c, "status")) || !strstr(sarco_last_error(ctx), want) || out)
            fail_msg("%s: status %d (%s), message '%s', expected %d and '%s'", name, (int)s, sarco_status_string(s),
                     sarco_last_error(ctx), (int)json_integer_value(json_object_get(c, "status")), want);
    }
    /* the API's own argument checks */
    char *out;
    assert_int_equal(sarco_diagnose(ctx, "awgs2019", "{\"sex\": \"M\"", &out), SARCO_ERR_INVALID_ARGUMENT);
    assert_null(out);
    assert_int_equal(sarco_diagnose(ctx, "awgs2019", "[1]", &out), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_diagnose(ctx, "awgs2019", NULL, &out), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_diagnose(ctx, "awgs2019", "{}", NULL), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_diagnose(ctx, NULL, "{\"sex\": \"M\"}", &out), SARCO_ERR_INVALID_ARGUMENT);
    assert_int_equal(sarco_diagnose(ctx, "../etc", "{\"sex\": \"M\"}", &out), SARCO_ERR_IO);
    assert_int_equal(sarco_diagnose(ctx, NULL, "{\"sex\": \"M\", \"rules\": \"ewgsop2\"}", &out), SARCO_OK);
    sarco_json_free(out);
    sarco_context_free(ctx);
    json_decref(all);
}

/* A rules file in $SARCO_RULES_PATH is found by name, ahead of the built-in one. */
static void test_rules_path(void **state) {
    (void)state;
    char dir[] = "/tmp/sarco_rules_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/men_only.json", dir);
    FILE *f = fopen(path, "w"), *g = fopen("test/data/diagnose/men_only.json", "r");
    assert_non_null(f);
    assert_non_null(g);
    int ch;
    while ((ch = fgetc(g)) != EOF) fputc(ch, f);
    fclose(g);
    fclose(f);
    sarco_context *ctx = tu_new_ctx(0);
    char *out = NULL;
    assert_int_equal(sarco_diagnose(ctx, "men_only", "{\"sex\": \"M\", \"smi_cm2_m2\": 50}", &out), SARCO_ERR_INVALID_ARGUMENT);
    setenv("SARCO_RULES_PATH", dir, 1);
    assert_int_equal(sarco_diagnose(ctx, "men_only", "{\"sex\": \"M\", \"smi_cm2_m2\": 50}", &out), SARCO_OK);
    assert_non_null(strstr(out, "\"verdict\": \"low_smi\""));
    sarco_json_free(out);
    char *list = NULL;
    assert_int_equal(sarco_rules_list(ctx, &list), SARCO_OK);
    assert_non_null(strstr(list, dir));
    sarco_json_free(list);
    unsetenv("SARCO_RULES_PATH");
    remove(path);
    rmdir(dir);
    sarco_context_free(ctx);
}

/* Every built-in set loads and validates, and carries a citation and units per criterion. */
static void test_builtin(void **state) {
    (void)state;
    sarco_context *ctx = tu_new_ctx(0);
    char *list = NULL;
    assert_int_equal(sarco_rules_list(ctx, &list), SARCO_OK);
    json_t *l = json_loads(list, 0, NULL);
    sarco_json_free(list);
    const char *want[] = {"awgs2019", "ewgsop2", "prado2008", "martin2013", "knhanes", "cirrhosis_sarco"};
    for (size_t i = 0; i < 6; i++) {
        assert_non_null(find_by(json_object_get(l, "builtin"), "name", want[i]));
        char *text = NULL;
        assert_int_equal(sarco_rules_get(ctx, want[i], &text), SARCO_OK);
        json_t *r = json_loads(text, 0, NULL);
        assert_true(strlen(json_string_value(json_object_get(r, "citation"))) > 20);
        sarco_json_free(text);
        json_decref(r);
    }
    json_decref(l);
    sarco_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_rules_path),
        cmocka_unit_test(test_builtin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
