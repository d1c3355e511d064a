/* Finds and opens the CUDA plug-in at run time, so libsarco.so itself never links CUDA.
 *
 * Which file: $SARCO_CUDA_LIBRARY when set (and nothing else). Otherwise the plug-in for the driver:
 * libsarco_cuda.so (built with the toolkit `make` found: CUDA 13, driver 580+) or libsarco_cuda12.so
 * (`make cuda12`: CUDA 12, driver 525+) when the driver's CUDA version (cuDriverGetVersion, the number
 * cudaDriverGetVersion reports) is below 13.0, each looked for in
 *   1. the folder of the module holding this code: libsarco.so, or the executable that linked
 *      libsarco.a (the build tree's and the installed `sarco`),
 *   2. the executable's folder and its ../lib and ../lib64 (PREFIX/bin/sarco -> PREFIX/lib),
 *   3. the libdir the library was built for (SARCO_LIBDIR, $(PREFIX)/lib),
 *   4. the dynamic loader's own path (LD_LIBRARY_PATH, ld.so.cache).
 * The first file that exists is the one meant: if it does not load, that error is reported rather than
 * hidden by a search further on. Every failure names the driver's CUDA version found.
 * RTLD_NODELETE: dlclose only drops a reference and the plugin, with cudart, cuDNN and cuBLAS, stays
 * mapped, so a program that creates and frees many contexts neither reloads ~600 MB of libraries
 * each time nor runs CUDA's teardown while the process goes on. Only one of the two plug-ins is ever
 * opened in a process: both need a libcudnn.so.9, and the first one loaded would serve both. */
#include <dlfcn.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops.h"

#ifndef SARCO_LIBDIR
#define SARCO_LIBDIR "/usr/local/lib"
#endif

#define NDIRS 6

/* snprintf for messages that may be cut short (paths are long; the message stays readable). */
static size_t say(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static size_t say(char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return w < 0 ? 0 : (size_t)w < n ? (size_t)w : n; /* n: full */
}

/* The driver's CUDA version (12040 = 12.4), 0 when there is no usable driver; `drv` describes it. */
static int driver_version(char *drv, size_t n) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        say(drv, n, "driver: none found (libcuda.so.1 does not load)");
        return 0;
    }
    int (*get)(int *);
    *(void **)&get = dlsym(h, "cuDriverGetVersion");
    int v = 0;
    if (!get || get(&v) != 0 || v <= 0) {
        say(drv, n, "driver: libcuda.so.1 loads but cuDriverGetVersion fails");
        v = 0;
    } else {
        say(drv, n, "driver: CUDA %d.%d (cuDriverGetVersion %d)", v / 1000, v % 1000 / 10, v);
    }
    dlclose(h);
    return v;
}

static void add_dir(char dirs[][PATH_MAX], int *nd, const char *d) {
    if (!d || !*d || *nd >= NDIRS) return;
    char real[PATH_MAX];
    if (!realpath(d, real)) return; /* folders that do not exist are not searched */
    for (int i = 0; i < *nd; i++)
        if (strcmp(dirs[i], real) == 0) return;
    memcpy(dirs[(*nd)++], real, strlen(real) + 1);
}

static void parent_of(const char *path, char *out, size_t n) {
    say(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash) *slash = '\0';
    else say(out, n, ".");
}

/* Folders to search, in order, deduplicated (see the top of the file). */
static int search_dirs(char dirs[][PATH_MAX]) {
    int nd = 0;
    char d[PATH_MAX + 16], exe[PATH_MAX], exedir[PATH_MAX];
    Dl_info info;
    if (dladdr((void *)&sarco_backend_open_cuda, &info) && info.dli_fname && strchr(info.dli_fname, '/')) {
        char real[PATH_MAX];
        if (realpath(info.dli_fname, real)) {
            parent_of(real, d, sizeof d);
            add_dir(dirs, &nd, d);
        }
    }
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        parent_of(exe, exedir, sizeof exedir);
        add_dir(dirs, &nd, exedir);
        say(d, sizeof d, "%s/../lib", exedir);
        add_dir(dirs, &nd, d);
        say(d, sizeof d, "%s/../lib64", exedir);
        add_dir(dirs, &nd, d);
    }
    add_dir(dirs, &nd, SARCO_LIBDIR);
    return nd;
}

/* Opens the plug-in; on failure NULL with the reason in why. `path` gets the file opened. */
static void *open_plugin(int drv, char *path, size_t pn, char *why, size_t n) {
    const char *env = getenv("SARCO_CUDA_LIBRARY");
    if (env && *env) {
        say(path, pn, "%s", env);
        void *h = dlopen(env, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!h) say(why, n, "SARCO_CUDA_LIBRARY=%s: %s", env, dlerror());
        return h;
    }
    /* a driver older than CUDA 13 wants the CUDA 12 build first; either build may serve as the other's
     * stand-in (a CUDA 12 runtime runs on newer drivers; the CUDA 13 one then reports the driver) */
    const char *names[2] = {SARCO_CUDA_PLUGIN, SARCO_CUDA12_PLUGIN};
    if (drv > 0 && drv < 13000) {
        names[0] = SARCO_CUDA12_PLUGIN;
        names[1] = SARCO_CUDA_PLUGIN;
    }
    char dirs[NDIRS][PATH_MAX];
    int nd = search_dirs(dirs);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < nd; i++) {
            char p[PATH_MAX + 64];
            if (snprintf(p, sizeof p, "%s/%s", dirs[i], names[k]) >= (int)sizeof p || access(p, F_OK) != 0) continue;
            say(path, pn, "%s", p);
            void *h = dlopen(p, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
            if (!h) say(why, n, "%s exists but does not load: %s", p, dlerror());
            return h;
        }
    for (int k = 0; k < 2; k++) {
        void *h = dlopen(names[k], RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (h) {
            sarco_cuda_create_fn fn;
            Dl_info info;
            *(void **)&fn = dlsym(h, "sarco_cuda_create");
            say(path, pn, "%s", fn && dladdr(*(void **)&fn, &info) && info.dli_fname ? info.dli_fname : names[k]);
            return h;
        }
    }
    size_t at = say(why, n, "cannot find %s or %s in", SARCO_CUDA_PLUGIN, SARCO_CUDA12_PLUGIN);
    for (int i = 0; i < nd && at < n; i++) at += say(why + at, n - at, " %s,", dirs[i]);
    if (at < n)
        say(why + at, n - at, " nor on the dynamic loader's path (set SARCO_CUDA_LIBRARY, or build it: make cuda)");
    return NULL;
}

/* The plug-in's ABI record against ours: 1 when they match, else 0 with both named in why. */
static int abi_matches(void *h, const char *path, char *why, size_t n) {
    const sarco_cuda_abi_record *pi = (const sarco_cuda_abi_record *)dlsym(h, "sarco_cuda_abi_info");
    const char *ours_fmt = "this libsarco: ABI %d, build %s, sizeof(sarco_context) %zu, sizeof(sarco_backend_ops) %zu";
    char ours[256];
    snprintf(ours, sizeof ours, ours_fmt, SARCO_CUDA_ABI_VERSION, SARCO_BUILD_ID, sizeof(sarco_context),
             sizeof(sarco_backend_ops));
    if (!pi) {
        const int *abi = (const int *)dlsym(h, "sarco_cuda_abi");
        if (abi)
            say(why, n, "%s is a stale plug-in (ABI %d, no build record); %s: rebuild it from the same tree (make cuda)",
                path, *abi, ours);
        else
            say(why, n, "%s does not match this libsarco: it is no libsarco CUDA plug-in (it exports neither "
                "sarco_cuda_abi_info nor sarco_cuda_abi); %s", path, ours);
        return 0;
    }
    if (pi->abi_version != SARCO_CUDA_ABI_VERSION) { /* an older record may be shorter: read no further */
        say(why, n, "%s was built for another libsarco (plug-in ABI %d); %s: rebuild it from the same tree", path,
                 pi->abi_version, ours);
        return 0;
    }
    char id[sizeof pi->build_id + 1];
    memcpy(id, pi->build_id, sizeof pi->build_id);
    id[sizeof pi->build_id] = '\0';
    if (pi->context_size != sizeof(sarco_context) || pi->ops_size != sizeof(sarco_backend_ops) ||
        strcmp(id, SARCO_BUILD_ID) != 0) {
        say(why, n, "%s does not match this libsarco: plug-in ABI %d, build %s, sizeof(sarco_context) %zu, "
                 "sizeof(sarco_backend_ops) %zu; %s: rebuild both from one tree", path, pi->abi_version, id,
                 pi->context_size, pi->ops_size, ours);
        return 0;
    }
    return 1;
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

/* What a failure must add: the driver found and, where it is too old for this plug-in, what would run. */
static void driver_hint(int drv, const sarco_cuda_abi_record *pi, const char *drvtext, char *out, size_t n) {
    int need = pi ? pi->cuda_runtime / 1000 : 0;
    if (drv > 0 && need > 0 && drv / 1000 < need)
        say(out, n, "%s; this plug-in is built with CUDA %d.%d and needs a driver for CUDA %d (%s): use %s "
                 "(make cuda12) or update the driver", drvtext, need, pi->cuda_runtime % 1000 / 10, need,
                 need >= 13 ? "580 or newer" : "525 or newer", SARCO_CUDA12_PLUGIN);
    else if (pi)
        say(out, n, "%s; plug-in built with CUDA %d.%d", drvtext, need, pi->cuda_runtime % 1000 / 10);
    else
        say(out, n, "%s", drvtext);
}

sarco_status sarco_backend_open_cuda(sarco_context *ctx, sarco_backend **out) {
    char why[2048] = "", drvtext[128], path[PATH_MAX + 64] = "", hint[512];
    *out = NULL;
    int drv = driver_version(drvtext, sizeof drvtext);
    void *h = open_plugin(drv, path, sizeof path, why, sizeof why);
    if (!h) return sarco_fail(ctx, SARCO_ERR_BACKEND_UNAVAILABLE, "cuda: %.1400s [%s]", why, drvtext);
    sarco_cuda_create_fn create;
    *(void **)&create = dlsym(h, "sarco_cuda_create");
    if (!abi_matches(h, path, why, sizeof why) || !create) {
        if (!why[0]) say(why, sizeof why, "%s exports no sarco_cuda_create", path);
        dlclose(h);
        return sarco_fail(ctx, SARCO_ERR_BACKEND_UNAVAILABLE, "cuda: %.1400s [%s]", why, drvtext);
    }
    const sarco_cuda_abi_record *pi = (const sarco_cuda_abi_record *)dlsym(h, "sarco_cuda_abi_info");
    driver_hint(drv, pi, drvtext, hint, sizeof hint);
    cuda_wrap *w = calloc(1, sizeof *w);
    if (!w) {
        dlclose(h);
        return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "cuda: out of memory");
    }
    why[0] = '\0';
    sarco_status s = create(ctx, out, why, sizeof why);
    if (s != SARCO_OK) {
        free(w);
        dlclose(h);
        return sarco_fail(ctx, s, "cuda: %.600s [plug-in %.200s; %s]", why, path, hint);
    }
    say(ctx->backend_note, sizeof ctx->backend_note, "cuda: %.500s; plug-in %.300s; %.200s", why, path, hint);
    w->ops = *(*out)->ops;
    w->ops.destroy = wrapped_destroy;
    w->inner = (*out)->ops;
    w->dl = h;
    (*out)->ops = &w->ops;
    return SARCO_OK;
}
