/* Finds and opens libsarco_cuda.so at run time, so libsarco.so itself never links CUDA. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* Where to look: $SARCO_CUDA_LIBRARY, then beside libsarco.so itself, then the loader's path.
 * RTLD_NODELETE: dlclose only drops a reference and the plugin, with cudart, cuDNN and cuBLAS, stays
 * mapped, so a program that creates and frees many contexts neither reloads ~600 MB of libraries
 * each time nor runs CUDA's teardown while the process goes on. */
static void *open_plugin(char *why, size_t n) {
    const char *env = getenv("SARCO_CUDA_LIBRARY");
    if (env && *env) {
        void *h = dlopen(env, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!h) snprintf(why, n, "SARCO_CUDA_LIBRARY=%s: %s", env, dlerror());
        return h;
    }
    Dl_info info;
    if (dladdr((void *)&sarco_backend_open_cuda, &info) && info.dli_fname) {
        char path[4096];
        snprintf(path, sizeof path, "%s", info.dli_fname);
        char *slash = strrchr(path, '/');
        if (slash && (size_t)(slash - path) + sizeof "/libsarco_cuda.so" < sizeof path) {
            strcpy(slash, "/libsarco_cuda.so");
            void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
            if (h) return h;
        }
    }
    void *h = dlopen("libsarco_cuda.so", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) snprintf(why, n, "cannot load libsarco_cuda.so: %s", dlerror());
    return h;
}

/* The plugin's backend, wrapped so that freeing it also drops our dlopen reference (the plugin
 * cannot dlclose itself from inside its own destroy). `ops` comes first: be->ops points at it. */
typedef struct cuda_wrap {
    sarco_backend_ops ops;          /* the plugin's table with destroy replaced */
    const sarco_backend_ops *inner; /* the plugin's own table */
    void *dl;
} cuda_wrap;

static void wrapped_destroy(sarco_backend *be) {
    cuda_wrap *w = (cuda_wrap *)(void *)be->ops;
    void *dl = w->dl;
    be->ops = w->inner;
    if (be->ops->destroy) be->ops->destroy(be);
    free(w);
    dlclose(dl);
}

sarco_status sarco_backend_open_cuda(sarco_context *ctx, sarco_backend **out) {
    char why[1024] = "";
    *out = NULL;
    void *h = open_plugin(why, sizeof why);
    if (!h) return sarco_fail(ctx, SARCO_ERR_BACKEND_UNAVAILABLE, "cuda: %s", why);
    const int *abi = (const int *)dlsym(h, "sarco_cuda_abi");
    sarco_cuda_create_fn create;
    *(void **)&create = dlsym(h, "sarco_cuda_create");
    if (!abi || !create || *abi != SARCO_CUDA_ABI_VERSION) {
        int found = abi ? *abi : -1;
        dlclose(h);
        return sarco_fail(ctx, SARCO_ERR_BACKEND_UNAVAILABLE,
                          "cuda: libsarco_cuda.so does not match this libsarco (ABI %d, want %d)", found,
                          SARCO_CUDA_ABI_VERSION);
    }
    cuda_wrap *w = calloc(1, sizeof *w);
    if (!w) {
        dlclose(h);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "cuda: out of memory");
    }
    sarco_status s = create(ctx, out, why, sizeof why);
    if (s != SARCO_OK) {
        free(w);
        dlclose(h);
        return sarco_fail(ctx, s, "cuda: %s", why);
    }
    w->ops = *(*out)->ops;
    w->ops.destroy = wrapped_destroy;
    w->inner = (*out)->ops;
    w->dl = h;
    (*out)->ops = &w->ops;
    return SARCO_OK;
}
