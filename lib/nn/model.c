/* sarco_model: a model file opened, checked against its architecture and prepared on a backend. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "classifier.h"

#define MAX_FOLDS 64

struct sarco_model {
    const sarco_arch *arch;
    void **states;  /* one per fold; a file without "folds" has one */
    int nfolds;
    int last_fold;  /* the fold that ran last (its workspace is the one held) */
    char *config_json;
    sarco_backend *be; /* the backend the weights live on */
    atomic_int busy;   /* a call is running on the model: a second one at once is refused (docs/reliability.md) */
};

sarco_status sarco_model_enter(sarco_context *ctx, sarco_model *m, const char *fn) {
    if (m && atomic_exchange(&m->busy, 1))
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "%s: the model is already running a call (a model and its context serve one call at a "
                          "time; give each thread its own context and model)", fn);
    return SARCO_OK;
}

void sarco_model_leave(sarco_model *m) {
    if (m) atomic_store(&m->busy, 0);
}

/* The tensors of fold i as a file of their own: a view sharing f's bytes, names without "fold.<i>." (the
 * names are sorted, so the fold's tensors are one run and stay sorted once the prefix is gone). Free
 * view->tensors only. */
static sarco_status fold_view(sarco_context *ctx, const sarco_st_file *f, int i, sarco_st_file *view) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "fold.%d.", i);
    const size_t plen = strlen(prefix);
    size_t a = 0;
    while (a < f->count && strncmp(f->tensors[a].name, prefix, plen) < 0) a++;
    size_t b = a;
    while (b < f->count && strncmp(f->tensors[b].name, prefix, plen) == 0) b++;
    *view = *f;
    view->count = b - a;
    view->tensors = calloc(b - a + 1, sizeof *view->tensors);
    if (!view->tensors) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t k = a; k < b; k++) {
        view->tensors[k - a] = f->tensors[k];
        view->tensors[k - a].name = f->tensors[k].name + plen;
    }
    return SARCO_OK;
}

/* sarco.config "folds": NULL or absent = one plain set of tensors (*count = 0); else a list of 1..64 names */
static sarco_status read_folds(sarco_context *ctx, const json_t *cfg, const char *path, int *count) {
    const json_t *folds = json_object_get(cfg, "folds");
    *count = 0;
    if (!folds || json_is_null(folds)) return SARCO_OK;
    if (!json_is_array(folds) || json_array_size(folds) < 1 || json_array_size(folds) > MAX_FOLDS)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: sarco.config \"folds\" must be a list of 1..%d fold names",
                          path, MAX_FOLDS);
    size_t i;
    const json_t *v;
    json_array_foreach(folds, i, v) if (!json_is_string(v))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: sarco.config \"folds\"[%zu] is not a string", path, i);
    *count = (int)json_array_size(folds);
    return SARCO_OK;
}

static void free_states(sarco_context *ctx, const sarco_arch *arch, void **states, int n) {
    for (int i = 0; i < n; i++)
        if (states[i] && arch->free) arch->free(ctx, states[i]);
}

/* Loads every fold (or the one plain set) into states[]; fails whole. */
static sarco_status load_states(sarco_context *ctx, const sarco_arch *arch, const json_t *kwargs,
                                const sarco_st_file *st, const json_t *cfg, int nfolds, void **states) {
    if (nfolds == 0) return arch->load(ctx, kwargs, st, &states[0]);
    size_t covered = 0;
    sarco_status s = SARCO_OK;
    for (int i = 0; i < nfolds && s == SARCO_OK; i++) {
        sarco_st_file view;
        s = fold_view(ctx, st, i, &view);
        if (s != SARCO_OK) break;
        covered += view.count;
        if (view.count == 0)
            s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "sarco.config names %d folds but no tensor is named fold.%d.*",
                           nfolds, i);
        else
            s = arch->load(ctx, kwargs, &view, &states[i]);
        free(view.tensors);
        if (s != SARCO_OK && view.count) {
            char why[sizeof ctx->err];
            memcpy(why, ctx->err, sizeof why);
            sarco_fail(ctx, s, "fold %d (%s): %s", i, json_string_value(json_array_get(json_object_get(cfg, "folds"),
                                                                                      (size_t)i)), why);
        }
    }
    if (s == SARCO_OK && covered != st->count) {
        /* a tensor outside every fold.<i>. prefix: name the first */
        const char *stray = NULL;
        for (size_t k = 0; k < st->count && !stray; k++) {
            int fold = -1;
            char prefix[32];
            if (sscanf(st->tensors[k].name, "fold.%d.", &fold) == 1 && fold >= 0 && fold < nfolds)
                snprintf(prefix, sizeof prefix, "fold.%d.", fold); /* exactly that spelling ("fold.01." is not) */
            else
                prefix[0] = '\0';
            if (!prefix[0] || strncmp(st->tensors[k].name, prefix, strlen(prefix)) != 0) stray = st->tensors[k].name;
        }
        s = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "tensor %s belongs to none of the %d folds (fold.0 .. fold.%d)",
                       stray ? stray : "?", nfolds, nfolds - 1);
    }
    if (s != SARCO_OK) free_states(ctx, arch, states, nfolds);
    return s;
}

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

    int nfolds = 0;
    s = read_folds(ctx, cfg, path, &nfolds);
    if (s != SARCO_OK) {
        json_decref(empty);
        goto done;
    }
    sarco_model *m = calloc(1, sizeof *m);
    char *cfg_copy = strdup(st->config_json);
    void **states = calloc((size_t)(nfolds ? nfolds : 1), sizeof *states);
    if (!m || !cfg_copy || !states) {
        free(m);
        free(cfg_copy);
        free(states);
        json_decref(empty);
        s = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    s = load_states(ctx, arch, kwargs ? kwargs : empty, st, cfg, nfolds, states);
    json_decref(empty);
    if (s != SARCO_OK) {
        /* keep the arch's message, prefixed with the file */
        char why[sizeof ctx->err];
        memcpy(why, ctx->err, sizeof why);
        sarco_fail(ctx, s, "%s: %s", path, why);
        free(m);
        free(cfg_copy);
        free(states);
        goto done;
    }
    m->states = states;
    m->nfolds = nfolds ? nfolds : 1;
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
    if (m->arch) free_states(&tmp, m->arch, m->states, m->nfolds);
    free(m->states);
    free(m->config_json);
    free(m);
}

const char *sarco_model_config_json(const sarco_model *m) { return m ? m->config_json : NULL; }
const char *sarco_model_arch(const sarco_model *m) { return m ? m->arch->name : NULL; }
int sarco_model_fold_count(const sarco_model *m) { return m ? m->nfolds : 0; }

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
    return m->arch->output_shape(ctx, m->states[0], ndim, in, out); /* every fold has the same network */
}

/* The fold's state, after trimming the workspace of the fold that ran before (only one is held). */
static sarco_status fold_state(sarco_context *ctx, sarco_model *m, int fold, const char *fn, void **state) {
    if (fold < 0 || fold >= m->nfolds)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: fold %d does not exist (the model has %d)", fn, fold,
                          m->nfolds);
    if (fold != m->last_fold && m->arch->trim) m->arch->trim(ctx, m->states[m->last_fold]);
    m->last_fold = fold;
    *state = m->states[fold];
    return SARCO_OK;
}

static sarco_status forward_fold(sarco_context *ctx, sarco_model *m, int fold, int ndim, const int64_t *in,
                                 const float *x, float *y, size_t y_count) {
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
    void *state = NULL;
    s = fold_state(ctx, m, fold, "sarco_model_forward", &state);
    if (s != SARCO_OK) return s;
    sarco_backend *be = ctx->be;
    /* CPU backend memory is host memory: run on the caller's buffers unless they overlap */
    const char *xb = (const char *)x, *yb = (const char *)y;
    if (sarco_context_backend(ctx) == SARCO_BACKEND_CPU &&
        (yb + (size_t)nout * sizeof(float) <= xb || xb + (size_t)nin * sizeof(float) <= yb))
        return m->arch->forward(ctx, state, ndim, in, x, y);
    void *dx = NULL, *dy = NULL;
    s = be->ops->alloc(be, (size_t)nin * sizeof(float), &dx);
    if (s == SARCO_OK) s = be->ops->alloc(be, (size_t)nout * sizeof(float), &dy);
    if (s == SARCO_OK) s = be->ops->upload(be, dx, x, (size_t)nin * sizeof(float));
    if (s == SARCO_OK) s = m->arch->forward(ctx, state, ndim, in, dx, dy);
    if (s == SARCO_OK) s = be->ops->download(be, y, dy, (size_t)nout * sizeof(float));
    be->ops->free(be, dx);
    be->ops->free(be, dy);
    return s;
}

sarco_status sarco_model_forward_fold_held(sarco_context *ctx, sarco_model *m, int fold, int ndim, const int64_t *in,
                                           const float *x, float *y, size_t y_count) {
    sarco_status s = check_model_ctx(ctx, m, "sarco_model_forward");
    return s == SARCO_OK ? forward_fold(ctx, m, fold, ndim, in, x, y, y_count) : s;
}

sarco_status sarco_model_forward_fold(sarco_context *ctx, sarco_model *m, int fold, int ndim, const int64_t *in,
                                      const float *x, float *y, size_t y_count) {
    sarco_status s = check_model_ctx(ctx, m, "sarco_model_forward");
    if (s == SARCO_OK) s = sarco_model_enter(ctx, m, "sarco_model_forward");
    if (s != SARCO_OK) return s;
    s = forward_fold(ctx, m, fold, ndim, in, x, y, y_count);
    sarco_model_leave(m);
    return s;
}

sarco_status sarco_model_forward(sarco_context *ctx, sarco_model *m, int ndim, const int64_t *in, const float *x,
                                 float *y, size_t y_count) {
    return sarco_model_forward_fold(ctx, m, 0, ndim, in, x, y, y_count);
}

sarco_status sarco_model_forward_be_fold(sarco_context *ctx, sarco_model *m, int fold, int ndim, const int64_t *in,
                                         const float *x, float *y) {
    int64_t oshape[5];
    sarco_status s = sarco_model_output_shape(ctx, m, ndim, in, oshape);
    if (s != SARCO_OK) return s;
    if (!x || !y) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "sarco_model_forward: NULL x or y");
    void *state = NULL;
    s = fold_state(ctx, m, fold, "sarco_model_forward", &state);
    if (s != SARCO_OK) return s;
    return m->arch->forward(ctx, state, ndim, in, x, y);
}

sarco_status sarco_model_forward_be(sarco_context *ctx, sarco_model *m, int ndim, const int64_t *in, const float *x,
                                    float *y) {
    return sarco_model_forward_be_fold(ctx, m, 0, ndim, in, x, y);
}

const sarco_classifier *sarco_model_classifier_fold(const sarco_model *m, int fold, void **state) {
    if (!m || !m->arch || !m->arch->classifier || fold < 0 || fold >= m->nfolds) return NULL;
    if (state) *state = m->states[fold];
    return m->arch->classifier;
}

const sarco_classifier *sarco_model_classifier(const sarco_model *m, void **state) {
    return sarco_model_classifier_fold(m, 0, state);
}

const sarco_classifier *sarco_model_classifier_run(sarco_context *ctx, sarco_model *m, int fold, void **state) {
    if (!m || !m->arch || !m->arch->classifier) return NULL;
    if (fold_state(ctx, m, fold, "classifier", state) != SARCO_OK) return NULL;
    return m->arch->classifier;
}
