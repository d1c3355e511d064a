/* sarco_model: a model file opened, checked against its architecture and prepared on a backend. */
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "classifier.h"

struct sarco_model {
    const sarco_arch *arch;
    void *state;
    char *config_json;
    sarco_backend *be; /* the backend the weights live on */
};

static sarco_status read_config(sarco_context *ctx, const sarco_st_file *st, const char *path, json_t **out) {
    if (!st->config_json)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: no \"sarco.config\" in __metadata__ (convert the checkpoint with "
                          "python3 -m sarco.convert)", path);
    json_error_t e;
    json_t *cfg = json_loads(st->config_json, JSON_REJECT_DUPLICATES, &e);
    if (!cfg || !json_is_object(cfg)) {
        json_decref(cfg);
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: sarco.config is not a JSON object (%s, column %d)", path,
                          e.text, e.column);
    }
    *out = cfg;
    return SARCO_OK;
}

sarco_status sarco_model_load(sarco_context *ctx, const char *path, sarco_model **out) {
    if (!ctx || !path || !out) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_model_load: NULL argument");
    *out = NULL;
    sarco_clear_error(ctx);
    sarco_st_file *st = NULL;
    sarco_status s = sarco_st_open(ctx, path, &st);
    if (s != SARCO_OK) return s;
    json_t *cfg = NULL;
    s = read_config(ctx, st, path, &cfg);
    if (s != SARCO_OK) goto done;

    const char *arch_name = json_string_value(json_object_get(cfg, "arch"));
    if (!arch_name) {
        s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: sarco.config has no string \"arch\"", path);
        goto done;
    }
    const sarco_arch *arch = sarco_arch_find(arch_name);
    if (!arch) {
        char names[256];
        sarco_arch_names(names, sizeof names);
        s = sarco_fail(ctx, SARCO_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not built in (known: %s)", path,
                       arch_name, names);
        goto done;
    }
    json_t *kwargs = json_object_get(cfg, "kwargs");
    if (kwargs && !json_is_object(kwargs)) {
        s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: sarco.config \"kwargs\" is not an object", path);
        goto done;
    }
    json_t *empty = json_object();
    if (st->nonfinite)
        sarco_log(ctx, SARCO_LOG_WARN, "%s: %lld NaN/Inf weight values (first in %s)", path,
                  (long long)st->nonfinite, st->first_nonfinite);

    sarco_model *m = calloc(1, sizeof *m);
    char *cfg_copy = strdup(st->config_json);
    if (!m || !cfg_copy) {
        free(m);
        free(cfg_copy);
        json_decref(empty);
        s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    s = arch->load(ctx, kwargs ? kwargs : empty, st, &m->state);
    json_decref(empty);
    if (s != SARCO_OK) {
        /* keep the arch's message, prefixed with the file */
        char why[sizeof ctx->err];
        memcpy(why, ctx->err, sizeof why);
        sarco_fail(ctx, s, "%s: %s", path, why);
        free(m);
        free(cfg_copy);
        goto done;
    }
    m->arch = arch;
    m->config_json = cfg_copy;
    m->be = ctx->be;
    if (st->nonfinite)
        sarco_note(ctx, "%s: loaded, but %lld weight values are NaN/Inf (first in %s)", path,
                   (long long)st->nonfinite, st->first_nonfinite);
    *out = m;
done:
    json_decref(cfg);
    sarco_st_close(st);
    return s;
}

void sarco_model_free(sarco_model *m) {
    if (!m) return;
    /* the arch frees its backend buffers through the backend it was loaded on */
    sarco_context tmp = {0};
    tmp.be = m->be;
    if (m->arch && m->arch->free) m->arch->free(&tmp, m->state);
    free(m->config_json);
    free(m);
}

const char *sarco_model_config_json(const sarco_model *m) { return m ? m->config_json : NULL; }
const char *sarco_model_arch(const sarco_model *m) { return m ? m->arch->name : NULL; }

static sarco_status check_model_ctx(sarco_context *ctx, const sarco_model *m, const char *fn) {
    if (!ctx || !m) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: NULL context or model", fn);
    if (m->be != ctx->be)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: the model was loaded on another context", fn);
    return SARCO_OK;
}

sarco_status sarco_model_output_shape(sarco_context *ctx, const sarco_model *m, int ndim, const int64_t *in,
                                      int64_t *out) {
    sarco_status s = check_model_ctx(ctx, m, "sarco_model_output_shape");
    if (s != SARCO_OK) return s;
    if (!in || !out || (ndim != 4 && ndim != 5))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "sarco_model_output_shape: need a 4-D (N,C,H,W) or 5-D (N,C,D,H,W) shape, got %d-D", ndim);
    for (int i = 0; i < ndim; i++)
        if (in[i] <= 0 || in[i] > (1 << 20))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_model_output_shape: dimension %d is %lld", i,
                              (long long)in[i]);
    return m->arch->output_shape(ctx, m->state, ndim, in, out);
}

sarco_status sarco_model_forward(sarco_context *ctx, sarco_model *m, int ndim, const int64_t *in, const float *x,
                                 float *y, size_t y_count) {
    sarco_clear_error(ctx);
    int64_t oshape[5];
    sarco_status s = sarco_model_output_shape(ctx, m, ndim, in, oshape);
    if (s != SARCO_OK) return s;
    if (!x || !y) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_model_forward: NULL x or y");
    int64_t nin, nout;
    if (!sarco_dims_product(in, ndim, INT64_MAX / 4, &nin) || !sarco_dims_product(oshape, ndim, INT64_MAX / 4, &nout))
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "sarco_model_forward: shape too large");
    if ((size_t)nout != y_count)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "sarco_model_forward: y holds %zu floats, the output needs %lld", y_count, (long long)nout);
    sarco_backend *be = ctx->be;
    /* CPU backend memory is host memory: run on the caller's buffers unless they overlap */
    const char *xb = (const char *)x, *yb = (const char *)y;
    if (sarco_context_backend(ctx) == SARCO_BACKEND_CPU &&
        (yb + (size_t)nout * sizeof(float) <= xb || xb + (size_t)nin * sizeof(float) <= yb))
        return m->arch->forward(ctx, m->state, ndim, in, x, y);
    void *dx = NULL, *dy = NULL;
    s = be->ops->alloc(be, (size_t)nin * sizeof(float), &dx);
    if (s == SARCO_OK) s = be->ops->alloc(be, (size_t)nout * sizeof(float), &dy);
    if (s == SARCO_OK) s = be->ops->upload(be, dx, x, (size_t)nin * sizeof(float));
    if (s == SARCO_OK) s = m->arch->forward(ctx, m->state, ndim, in, dx, dy);
    if (s == SARCO_OK) s = be->ops->download(be, y, dy, (size_t)nout * sizeof(float));
    be->ops->free(be, dx);
    be->ops->free(be, dy);
    return s;
}

sarco_status sarco_model_forward_be(sarco_context *ctx, sarco_model *m, int ndim, const int64_t *in, const float *x,
                                    float *y) {
    int64_t oshape[5];
    sarco_status s = sarco_model_output_shape(ctx, m, ndim, in, oshape);
    if (s != SARCO_OK) return s;
    if (!x || !y) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_model_forward: NULL x or y");
    return m->arch->forward(ctx, m->state, ndim, in, x, y);
}

const sarco_classifier *sarco_model_classifier(const sarco_model *m, void **state) {
    if (!m || !m->arch || !m->arch->classifier) return NULL;
    if (state) *state = m->state;
    return m->arch->classifier;
}
