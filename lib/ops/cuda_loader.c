/* Finds and opens libsarco_cuda.so at run time, so libsarco.so itself never links CUDA. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* Where to look: $SARCO_CUDA_LIBRARY, then beside libsarco.so itself, then the loader's path. */
static void *open_plugin(char *why, size_t n) {
    const char *env = getenv("SARCO_CUDA_LIBRARY");
    if (env && *env) {
        void *h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
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
            void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (h) return h;
        }
    }
    void *h = dlopen("libsarco_cuda.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(why, n, "cannot load libsarco_cuda.so: %s", dlerror());
    return h;
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
        dlclose(h);
        return sarco_fail(ctx, SARCO_ERR_BACKEND_UNAVAILABLE,
                          "cuda: libsarco_cuda.so does not match this libsarco (ABI %d, want %d)", abi ? *abi : -1,
                          SARCO_CUDA_ABI_VERSION);
    }
    sarco_status s = create(ctx, out, why, sizeof why);
    if (s != SARCO_OK) {
        dlclose(h);
        return sarco_fail(ctx, s, "cuda: %s", why);
    }
    /* the plugin stays loaded for the life of the process: its code backs *out */
    return SARCO_OK;
}
