/* Test-only allocation-failure injection (docs/reliability.md). A test binary linked with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=aligned_alloc,--wrap=posix_memalign
 * has every call to those functions from its own objects and from libsarco.a's objects (the static archive
 * is part of the link) routed here; shared libraries (libc itself, jansson, libnifti, libpng, libjpeg,
 * oneDNN) are not rewritten, so only libsarco's own allocation sites are counted or failed. No allocation
 * site in lib/ changes. Counting is armed only around the call under test. Single-threaded use. */
#ifndef SARCO_ALLOC_HOOK_H
#define SARCO_ALLOC_HOOK_H

#include <stdlib.h>
#include <string.h>

typedef struct alloc_hook {
    int armed;
    long count;    /* allocations seen while armed */
    long fail_at;  /* 1-based: this allocation returns NULL; 0 = none */
    int failed;    /* the injected failure happened */
    void *sites[512]; /* distinct return addresses seen while armed */
    int nsites;
} alloc_hook;

static alloc_hook g_hook;

void *__real_malloc(size_t);
void *__real_calloc(size_t, size_t);
void *__real_realloc(void *, size_t);
char *__real_strdup(const char *);
void *__real_aligned_alloc(size_t, size_t);
int __real_posix_memalign(void **, size_t, size_t);

/* 1 = this allocation must fail */
__attribute__((noinline)) static int hook_take(void *site) {
    if (!g_hook.armed) return 0;
    int i;
    for (i = 0; i < g_hook.nsites && g_hook.sites[i] != site; i++) {}
    if (i == g_hook.nsites && g_hook.nsites < 512) g_hook.sites[g_hook.nsites++] = site;
    if (++g_hook.count == g_hook.fail_at) {
        g_hook.failed = 1;
        return 1;
    }
    return 0;
}

#define SITE __builtin_return_address(0)
void *__wrap_malloc(size_t n) { return hook_take(SITE) ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t a, size_t b) { return hook_take(SITE) ? NULL : __real_calloc(a, b); }
void *__wrap_realloc(void *p, size_t n) { return hook_take(SITE) ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return hook_take(SITE) ? NULL : __real_strdup(s); }
void *__wrap_aligned_alloc(size_t a, size_t n) { return hook_take(SITE) ? NULL : __real_aligned_alloc(a, n); }
int __wrap_posix_memalign(void **p, size_t a, size_t n) {
    return hook_take(SITE) ? 12 /* ENOMEM */ : __real_posix_memalign(p, a, n);
}
#undef SITE

static void hook_arm(long fail_at) {
    memset(&g_hook, 0, sizeof g_hook);
    g_hook.fail_at = fail_at;
    g_hook.armed = 1;
}
static void hook_disarm(void) { g_hook.armed = 0; }

#endif
