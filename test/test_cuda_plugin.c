/* libsarco_cuda.so as built: what it exports, its ABI record, how every way of using the library finds
 * it (build-tree and installed CLI, libsarco.so, libsarco.a in another program, Python) and reaches the
 * device probe, the driver-based choice of the CUDA 12 plug-in, stale and mismatched plug-ins refused,
 * SARCO_CUDA_STRICT, what it exports, which GPU code it carries, that libsarco.so links no
 * CUDA, how backend CUDA and AUTO behave with the real plugin (no GPU here: unavailable with CUDA's
 * own error text, and AUTO falls back to the CPU), and that creating and freeing contexts many
 * times grows neither the RSS nor the open file descriptors. On a machine with a GPU the same test
 * checks that CUDA contexts come up and that device buffers left allocated are freed with them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <dlfcn.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/core/core.h"
#include "lib/ops/ops.h"

static char g_plugin[4200];  /* the libsarco_cuda.so under test, "" when none is built */
static char g_libsarco[4096]; /* the libsarco.so built beside this test */
static int g_have_nvcc;

static int exists(const char *p) { return access(p, R_OK) == 0; }

static void copy_str(char *dst, size_t n, const char *src) {
    size_t l = strlen(src);
    if (l >= n) l = n - 1;
    memcpy(dst, src, l);
    dst[l] = '\0';
}

/* Runs cmd and returns its whole stdout (malloc'd, NUL-terminated); NULL when it cannot run or fails. */
static char *run(const char *cmd) {
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n < 4096) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    int rc = pclose(f);
    if (!buf) return NULL;
    buf[n] = '\0';
    if (rc != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The build dir is the test binary's parent's parent: $(BUILD)/test/test_cuda_plugin. */
static void find_artifacts(const char *argv0) {
    char self[4096], dir[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) snprintf(self, sizeof self, "%s", argv0);
    else self[len] = '\0';
    snprintf(dir, sizeof dir, "%s", self);
    char *build = dirname(dirname(dir));
    const char *env = getenv("SARCO_CUDA_LIBRARY");
    char cand[3][4200];
    snprintf(cand[0], sizeof cand[0], "%s", env ? env : "");
    snprintf(cand[1], sizeof cand[1], "%s/libsarco_cuda.so", build);
    snprintf(cand[2], sizeof cand[2], "lib/libsarco_cuda.so");
    for (int i = 0; i < 3; i++)
        if (cand[i][0] && exists(cand[i])) {
            char real[PATH_MAX];
            copy_str(g_plugin, sizeof g_plugin, realpath(cand[i], real) ? real : cand[i]);
            break;
        }
    char pat[4200];
    glob_t g;
    snprintf(pat, sizeof pat, "%s/libsarco.so.*", build);
    if (glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 0) snprintf(g_libsarco, sizeof g_libsarco, "%s", g.gl_pathv[0]);
    else if (exists("lib/libsarco.so")) snprintf(g_libsarco, sizeof g_libsarco, "lib/libsarco.so");
    globfree(&g);
    char *nvcc = run("command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null");
    g_have_nvcc = nvcc && nvcc[0];
    free(nvcc);
    if (g_plugin[0]) setenv("SARCO_CUDA_LIBRARY", g_plugin, 1); /* the loader must open this very file */
}

/* Skips when nvcc is absent (no plugin is built then); a missing plugin with nvcc present fails. */
static void need_plugin(void) {
    if (g_plugin[0]) return;
    if (!g_have_nvcc) {
        print_message("SKIP cuda: nvcc not found, libsarco_cuda.so is not built\n");
        skip();
    }
    fail_msg("nvcc is installed but libsarco_cuda.so was not found (run make cuda)");
}

static void test_exports(void **state) {
    (void)state;
    need_plugin();
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s' | awk 'NF >= 3 { print $3 }' | sort", g_plugin);
    char *syms = run(cmd);
    assert_non_null(syms);
    assert_string_equal(syms, "sarco_cuda_abi\nsarco_cuda_abi_info\nsarco_cuda_create\n");
    free(syms);
}

/* cuobjdump: $CUOBJDUMP, PATH, beside nvcc, then the pip wheel nvidia-cuda-cuobjdump. */
static char *find_cuobjdump(void) {
    char *p = run("if [ -n \"${CUOBJDUMP:-}\" ]; then echo \"$CUOBJDUMP\"; exit; fi;"
                  "command -v cuobjdump && exit; "
                  "d=$(dirname \"$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)\"); "
                  "[ -x \"$d/cuobjdump\" ] && echo \"$d/cuobjdump\" && exit; "
                  "for py in python3 python; do "
                  "  s=$($py -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])' 2>/dev/null) || continue; "
                  "  for c in \"$s\"/nvidia/cu*/bin/cuobjdump \"$s\"/nvidia/cuda_cuobjdump/bin/cuobjdump; do "
                  "    [ -x \"$c\" ] && echo \"$c\" && exit; done; done; true");
    if (p) p[strcspn(p, "\n")] = '\0';
    if (p && !p[0]) {
        free(p);
        p = NULL;
    }
    return p;
}

/* Every CUDA source (lib/cuda and kernels) must appear as an sm_80 and an sm_90 cubin and as compute_90 PTX. */
static void test_gpu_code(void **state) {
    (void)state;
    need_plugin();
    char *tool = find_cuobjdump();
    if (!tool)
        fail_msg("cuobjdump not found: install the CUDA toolkit's cuobjdump or `python3 -m pip install "
                 "nvidia-cuda-cuobjdump`, or set CUOBJDUMP");
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "'%s' --list-elf '%s'", tool, g_plugin);
    char *elf = run(cmd);
    snprintf(cmd, sizeof cmd, "'%s' --list-ptx '%s'", tool, g_plugin);
    char *ptx = run(cmd);
    assert_non_null(elf);
    assert_non_null(ptx);
    const char *dirs[] = {"lib/cuda", "kernels"};
    int modules = 0;
    for (int d = 0; d < 2; d++) {
        DIR *dp = opendir(dirs[d]);
        assert_non_null(dp);
        struct dirent *e;
        while ((e = readdir(dp))) {
            size_t n = strlen(e->d_name);
            if (n < 4 || strcmp(e->d_name + n - 3, ".cu") != 0) continue;
            char want[512];
            const char *kinds[3][2] = {{"sm_80.cubin", "elf"}, {"sm_90.cubin", "elf"}, {"sm_90.ptx", "ptx"}};
            for (int k = 0; k < 3; k++) {
                snprintf(want, sizeof want, " %.*s.%s\n", (int)(n - 3), e->d_name, kinds[k][0]);
                if (!strstr(kinds[k][1][0] == 'e' ? elf : ptx, want))
                    fail_msg("%s/%s: no%s in cuobjdump --list-%s:\n%s", dirs[d], e->d_name, want, kinds[k][1],
                             kinds[k][1][0] == 'e' ? elf : ptx);
            }
            modules++;
        }
        closedir(dp);
    }
    assert_true(modules >= 5);
    /* and no other architecture of ours: a stray sm_70 or compute_80 would mean the gencode list drifted */
    assert_null(strstr(ptx, "sm_80.ptx"));
    print_message("%d CUDA modules carry sm_80 + sm_90 SASS and compute_90 PTX (%s)\n", modules, tool);
    free(elf);
    free(ptx);
    free(tool);
}

static void test_libsarco_links_no_cuda(void **state) {
    (void)state;
    if (!g_libsarco[0]) { /* the sanitizer builds make only the static archive */
        print_message("SKIP: no libsarco.so beside this test or in lib/ (tools/check_exports.sh checks it too)\n");
        skip();
    }
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "readelf -d '%s' | grep '(NEEDED)'", g_libsarco);
    char *needed = run(cmd);
    assert_non_null(needed);
    assert_non_null(strstr(needed, "libc.so")); /* the listing itself worked */
    const char *bad[] = {"libcuda", "libcudart", "libcudnn", "libcublas", "libnvrtc", "libsarco_cuda"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (strstr(needed, bad[i])) fail_msg("%s links %s:\n%s", g_libsarco, bad[i], needed);
    free(needed);
}

/* Backend CUDA: a working CUDA context where a device exists, else BACKEND_UNAVAILABLE carrying
 * the CUDA runtime's own error text; AUTO: a working context either way, the CPU with the reason. */
static void test_cuda_and_auto(void **state) {
    (void)state;
    need_plugin();
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CUDA;
    sarco_context *ctx = NULL;
    char msg[1024];
    sarco_status s = sarco_context_create_ex(&o, &ctx, msg, sizeof msg);
    int gpu = s == SARCO_OK;
    if (gpu) {
        assert_int_equal(sarco_context_backend(ctx), SARCO_BACKEND_CUDA);
        assert_string_equal(ctx->be->ops->name, "cuda");
        print_message("cuda: a device is present, CUDA context created\n");
        sarco_context_free(ctx);
    } else {
        assert_int_equal(s, SARCO_ERR_BACKEND_UNAVAILABLE);
        assert_null(ctx);
        print_message("cuda -> %s: %s\n", sarco_status_string(s), msg);
        assert_true(strncmp(msg, "cuda: ", 6) == 0);
        /* the CUDA runtime's own words: its error name (cudaError...) or the no-device sentence */
        if (!strstr(msg, "(cudaError") && !strstr(msg, "no CUDA device") && !strstr(msg, "compute capability"))
            fail_msg("no CUDA error text in \"%s\"", msg);
    }

    o.backend = SARCO_BACKEND_AUTO;
    assert_int_equal(sarco_context_create_ex(&o, &ctx, msg, sizeof msg), SARCO_OK);
    assert_non_null(ctx);
    if (gpu) {
        assert_int_equal(sarco_context_backend(ctx), SARCO_BACKEND_CUDA);
    } else {
        assert_int_equal(sarco_context_backend(ctx), SARCO_BACKEND_CPU);
        const char *why = sarco_last_error(ctx);
        assert_non_null(strstr(why, "using the CPU"));
        assert_non_null(strstr(why, "cuda: ")); /* the plugin's reason, not just "no library" */
        /* and the CPU context works: one op through its table */
        sarco_backend *be = ctx->be;
        float x[4] = {-1.0f, 0.0f, 2.0f, -3.0f}, y[4];
        void *dx, *dy;
        assert_int_equal(be->ops->alloc(be, sizeof x, &dx), SARCO_OK);
        assert_int_equal(be->ops->alloc(be, sizeof y, &dy), SARCO_OK);
        assert_int_equal(be->ops->upload(be, dx, x, sizeof x), SARCO_OK);
        assert_int_equal(be->ops->act(be, SARCO_ACT_RELU, 0.0f, 4, dx, dy), SARCO_OK);
        assert_int_equal(be->ops->download(be, y, dy, sizeof y), SARCO_OK);
        assert_true(y[0] == 0.0f && y[1] == 0.0f && y[2] == 2.0f && y[3] == 0.0f);
        be->ops->free(be, dx);
        be->ops->free(be, dy);
    }
    sarco_context_free(ctx);
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* One round: CUDA and AUTO contexts; with a device, 64 MiB of device memory left allocated on purpose
 * (the context must free it) and a conv prepared and never freed by the caller's model. */
static void one_round(void) {
    sarco_context_options o;
    sarco_context_options_init(&o);
    sarco_context *ctx = NULL;
    for (int b = 0; b < 2; b++) {
        o.backend = b ? SARCO_BACKEND_AUTO : SARCO_BACKEND_CUDA;
        sarco_status s = sarco_context_create(&o, &ctx);
        if (s != SARCO_OK) {
            assert_int_equal(s, SARCO_ERR_BACKEND_UNAVAILABLE);
            continue;
        }
        sarco_backend *be = ctx->be;
        if (sarco_context_backend(ctx) == SARCO_BACKEND_CUDA) {
            void *p;
            assert_int_equal(be->ops->alloc(be, 64u << 20, &p), SARCO_OK);
            assert_int_equal(be->ops->memset0(be, p, 64u << 20), SARCO_OK);
            assert_int_equal(be->ops->sync(be), SARCO_OK);
        }
        sarco_context_free(ctx);
        ctx = NULL;
    }
}

/* Free device memory through the driver API (the primary context our plugin made current), or 0
 * where there is no driver or no context. */
static size_t device_free_bytes(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return 0;
    int (*mem_get_info)(size_t *, size_t *);
    *(void **)&mem_get_info = dlsym(h, "cuMemGetInfo_v2");
    size_t free_b = 0, total_b = 0;
    if (!mem_get_info || mem_get_info(&free_b, &total_b) != 0) free_b = 0;
    dlclose(h);
    return free_b;
}

static void test_repeated_create_free(void **state) {
    (void)state;
    need_plugin();
    for (int i = 0; i < 3; i++) one_round(); /* warm up: first loads of the libraries and their caches */
    long rss0 = rss_kb();
    int fd0 = open_fds();
    size_t dev0 = device_free_bytes();
    const int rounds = 40;
    for (int i = 0; i < rounds; i++) one_round();
    long rss1 = rss_kb();
    int fd1 = open_fds();
    size_t dev1 = device_free_bytes();
    print_message("%d rounds: RSS %ld -> %ld kB, open fds %d -> %d, free device memory %zu -> %zu MiB\n", rounds,
                  rss0, rss1, fd0, fd1, dev0 >> 20, dev1 >> 20);
    assert_true(rss0 > 0 && fd0 > 0);
    assert_int_equal(fd1, fd0);
    /* 40 rounds that each leaked a backend, a plugin copy or a library handle would show above this */
    assert_true(rss1 - rss0 < 4096);
    /* with a GPU: each round leaves 64 MiB allocated for the context to free; none may stay behind */
    if (dev0 && dev1) assert_true(dev1 + (32u << 20) >= dev0);
}

/* ---- ABI record, discovery, driver choice, strict mode ------------------------------------------- */

#ifndef SARCO_TEST_CC
#define SARCO_TEST_CC "cc"
#endif
#ifndef SARCO_TEST_LIBS
#define SARCO_TEST_LIBS "-ldnnl -lnifti2 -lznz -lz -lpng -ljansson -ldl -lm -fopenmp"
#endif
#ifndef SARCO_TEST_ARCHIVE
#define SARCO_TEST_ARCHIVE "lib/libsarco.a"
#endif
#ifndef SARCO_TEST_CLI
#define SARCO_TEST_CLI "build/sarco"
#endif

static char g_tmp[256]; /* a scratch folder for this run, removed at the end */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* Runs a shell command, 2>&1, and returns its output (exit status ignored: failures print messages). */
static char *run_all(const char *cmd) {
    size_t n = strlen(cmd) + 32;
    char *full = malloc(n);
    assert_non_null(full);
    snprintf(full, n, "(%s) 2>&1; true", cmd);
    char *out = run(full);
    free(full);
    assert_non_null(out);
    return out;
}

static void sh(const char *cmd) {
    char *out = run_all(cmd);
    free(out);
}

/* The device probe was reached: CUDA's own answer (no driver, no device, or a working device), never a
 * plug-in that was not found. */
static void assert_reached_probe(const char *how, const char *out) {
    print_message("%s: %s", how, out);
    if (strstr(out, "cannot open shared object file") || strstr(out, "cannot find libsarco_cuda"))
        fail_msg("%s did not find the plug-in:\n%s", how, out);
    if (!strstr(out, "(cudaErrorInsufficientDriver)") && !strstr(out, "cudaErrorNoDevice") &&
        !strstr(out, "no CUDA device") && !strstr(out, "\"backend\": \"cuda\"") && !strstr(out, "BACKEND cuda"))
        fail_msg("%s: no device probe answer in:\n%s", how, out);
    if (!strstr(out, "driver: ")) fail_msg("%s: the driver version found is not named:\n%s", how, out);
}

static const char *prog_src =
    "#include <stdio.h>\n#include <sarco/sarco.h>\n"
    "int main(void) {\n"
    "    sarco_context_options o; sarco_context_options_init(&o); o.backend = SARCO_BACKEND_CUDA;\n"
    "    sarco_context *c = NULL; char msg[2048];\n"
    "    sarco_status s = sarco_context_create_ex(&o, &c, msg, sizeof msg);\n"
    "    if (s == SARCO_OK) { printf(\"BACKEND cuda: %s\\n\", sarco_context_backend_detail(c)); sarco_context_free(c); return 0; }\n"
    "    printf(\"%s: %s\\n\", sarco_status_string(s), msg);\n"
    "    return 1;\n}\n";

/* Every way the library is used finds the plug-in without SARCO_CUDA_LIBRARY and reaches the device. */
static void test_discovery(void **state) {
    (void)state;
    need_plugin();
    char cmd[40000], root[PATH_MAX], cli[PATH_MAX];
    assert_non_null(getcwd(root, sizeof root));
    assert_non_null(realpath(SARCO_TEST_CLI, cli));
    char *saved = strdup(getenv("SARCO_CUDA_LIBRARY") ? getenv("SARCO_CUDA_LIBRARY") : "");
    unsetenv("SARCO_CUDA_LIBRARY");

    /* 1. the build-tree CLI (libsarco.a inside; the plug-in in the tree's lib/ or beside it) */
    snprintf(cmd, sizeof cmd, "cd / && '%s' version --backend cuda", cli);
    char *out = run_all(cmd);
    assert_reached_probe("build-tree sarco", out);
    free(out);
    snprintf(cmd, sizeof cmd, "cd / && '%s' version", cli); /* AUTO says why it chose the CPU, or that it is CUDA */
    out = run_all(cmd);
    assert_non_null(strstr(out, "\"backend_detail\""));
    if (strstr(out, "\"backend\": \"cpu\"")) assert_non_null(strstr(out, "backend auto chose the CPU because"));
    free(out);

    /* 2. the installed CLI: `make install DESTDIR=...` itself where this is the default build (PREFIX/bin/sarco
     * and PREFIX/lib/libsarco_cuda.so), else a copy in make install's layout */
    char inst[PATH_MAX];
    char prefix[PATH_MAX] = "";
    FILE *lf = fopen("build/libdir.txt", "r"); /* the PREFIX the tree was built for (mk/cuda.mk): no rebuild */
    if (lf) {
        if (fgets(prefix, sizeof prefix, lf)) prefix[strcspn(prefix, "\n")] = '\0';
        fclose(lf);
        size_t pl = strlen(prefix);
        if (pl > 4 && strcmp(prefix + pl - 4, "/lib") == 0) prefix[pl - 4] = '\0';
        else prefix[0] = '\0';
    }
    if (strcmp(SARCO_TEST_CLI, "build/sarco") == 0 && prefix[0] == '/') {
        snprintf(inst, sizeof inst, "%s/destdir%s", g_tmp, prefix);
        snprintf(cmd, sizeof cmd, "env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s --no-print-directory install "
                 "DESTDIR='%s/destdir' PREFIX='%s' >/dev/null && ls '%s/bin/sarco' '%s/lib/libsarco_cuda.so'",
                 g_tmp, prefix, inst, inst);
    } else {
        snprintf(inst, sizeof inst, "%s/prefix", g_tmp);
        snprintf(cmd, sizeof cmd, "mkdir -p '%s/bin' '%s/lib' && cp '%s' '%s/bin/sarco' && cp '%s' '%s/lib/libsarco_cuda.so'",
                 inst, inst, cli, inst, g_plugin, inst);
    }
    out = run_all(cmd);
    print_message("install: %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "cd / && '%s/bin/sarco' version --backend cuda", inst);
    out = run_all(cmd);
    assert_reached_probe("installed sarco", out);
    snprintf(cmd, sizeof cmd, "%s/lib/libsarco_cuda.so", inst); /* the installed plug-in, not the tree's */
    if (!strstr(out, cmd)) fail_msg("the installed sarco did not use %s:\n%s", cmd, out);
    free(out);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/prefix/bin' '%s/prefix/lib' && cp '%s' '%s/prefix/lib/libsarco_cuda.so'",
             g_tmp, g_tmp, g_plugin, g_tmp);
    sh(cmd);

    /* 3. libsarco.a linked into another program, installed beside the plug-in (PREFIX/bin -> PREFIX/lib) */
    snprintf(cmd, sizeof cmd, "%s/prog.c", g_tmp);
    write_file(cmd, prog_src);
    snprintf(cmd, sizeof cmd, "%s -std=c11 -I'%s/include' -o '%s/prefix/bin/static_prog' '%s/prog.c' '%s/%s' %s", SARCO_TEST_CC,
             root, g_tmp, g_tmp, SARCO_TEST_ARCHIVE[0] == '/' ? "" : root, SARCO_TEST_ARCHIVE, SARCO_TEST_LIBS);
    out = run_all(cmd);
    if (out[0]) print_message("%s\n", out);
    free(out);
    snprintf(cmd, sizeof cmd, "cd / && '%s/prefix/bin/static_prog'", g_tmp);
    out = run_all(cmd);
    assert_reached_probe("static program", out);
    free(out);
    /* ... and elsewhere, with the plug-in's folder on the dynamic loader's path */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/elsewhere' && cp '%s/prefix/bin/static_prog' '%s/elsewhere/' && cd / && "
             "LD_LIBRARY_PATH='%s/prefix/lib' '%s/elsewhere/static_prog'", g_tmp, g_tmp, g_tmp, g_tmp, g_tmp);
    out = run_all(cmd);
    assert_reached_probe("static program, LD_LIBRARY_PATH", out);
    free(out);

    /* 4. libsarco.so linked by another program, and 5. Python through ctypes */
    if (g_libsarco[0]) {
        char so[PATH_MAX], sodir[PATH_MAX];
        assert_non_null(realpath(g_libsarco, so));
        snprintf(sodir, sizeof sodir, "%s", so);
        *strrchr(sodir, '/') = '\0';
        snprintf(cmd, sizeof cmd, "%s -std=c11 -I'%s/include' -o '%s/shared_prog' '%s/prog.c' '%s' -Wl,-rpath,'%s' && cd / && "
                 "'%s/shared_prog'", SARCO_TEST_CC, root, g_tmp, g_tmp, so, sodir, g_tmp);
        out = run_all(cmd);
        assert_reached_probe("program linking libsarco.so", out);
        free(out);
        snprintf(cmd, sizeof cmd, "cd / && SARCO_LIBRARY='%s' PYTHONPATH='%s/python' python3 -c \"import sarco\n"
                 "try:\n    c = sarco.Context(backend='cuda'); print('BACKEND', c.backend)\n"
                 "except sarco.SarcoError as e:\n    print(e)\"", so, root);
        out = run_all(cmd);
        if (strstr(out, "No module named 'numpy'")) print_message("SKIP python: numpy is not installed\n");
        else assert_reached_probe("python", out);
        free(out);
    } else {
        print_message("SKIP libsarco.so and Python: no libsarco.so in this build\n");
    }
    if (saved[0]) setenv("SARCO_CUDA_LIBRARY", saved, 1);
    free(saved);
}

/* The plug-in's record matches this build: ABI version, struct sizes, build id. */
static void test_abi_record(void **state) {
    (void)state;
    need_plugin();
    void *h = dlopen(g_plugin, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    assert_non_null(h);
    const sarco_cuda_abi_record *r = (const sarco_cuda_abi_record *)dlsym(h, "sarco_cuda_abi_info");
    assert_non_null(r);
    assert_int_equal(r->abi_version, SARCO_CUDA_ABI_VERSION);
    assert_int_equal(r->context_size, sizeof(sarco_context));
    assert_int_equal(r->ops_size, sizeof(sarco_backend_ops));
    assert_string_equal(r->build_id, SARCO_BUILD_ID);
    assert_true(r->cuda_runtime >= 12000);
    assert_true(r->cudnn_version / 10000 == 9);
    print_message("plug-in record: ABI %d, build %s, CUDA %d, cuDNN %d, cuBLAS %d\n", r->abi_version, r->build_id,
                  r->cuda_runtime, r->cudnn_version, r->cublas_version);
    dlclose(h);
}

/* A fake plug-in (plain C, no CUDA): `record` is the body of its exports; its create aborts, so a
 * loader that calls a refused plug-in fails the test. */
static void build_fake_plugin(const char *path, const char *record) {
    char src[PATH_MAX + 8], cmd[8192], text[4096];
    snprintf(src, sizeof src, "%s.c", path);
    snprintf(text, sizeof text,
             "#include <stdlib.h>\n#include <string.h>\n#include \"lib/ops/ops.h\"\n%s\n"
             "__attribute__((visibility(\"default\"))) sarco_status sarco_cuda_create(sarco_context *c, sarco_backend **o,"
             " char *m, size_t n) {\n  (void)c; (void)o;\n#ifdef FAKE_MESSAGE\n  strncpy(m, FAKE_MESSAGE, n - 1); m[n - 1] = 0;"
             "\n  return SARCO_ERR_BACKEND_UNAVAILABLE;\n#else\n  (void)m; (void)n; abort();\n#endif\n}\n", record);
    write_file(src, text);
    snprintf(cmd, sizeof cmd, "%s -std=c11 -shared -fPIC -D_GNU_SOURCE -I. -Iinclude -DSARCO_BUILD_ID='\"%s\"' %s -o '%s' '%s'",
             "cc", SARCO_BUILD_ID, strstr(path, "cuda12") ? "-DFAKE_MESSAGE='\"fake CUDA 12 plug-in selected\"'" : "",
             path, src);
    char *out = run_all(cmd);
    if (out[0]) fail_msg("building %s: %s", path, out);
    free(out);
}

#define REC_EXPORT "__attribute__((visibility(\"default\"))) const sarco_cuda_abi_record sarco_cuda_abi_info = "

static void expect_refused(const char *plugin, const char *const *want, int nwant) {
    setenv("SARCO_CUDA_LIBRARY", plugin, 1);
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CUDA;
    sarco_context *ctx = NULL;
    char msg[2048];
    assert_int_equal(sarco_context_create_ex(&o, &ctx, msg, sizeof msg), SARCO_ERR_BACKEND_UNAVAILABLE);
    assert_null(ctx);
    print_message("%s -> %s\n", plugin, msg);
    for (int i = 0; i < nwant; i++)
        if (!strstr(msg, want[i])) fail_msg("\"%s\" not in \"%s\"", want[i], msg);
    /* AUTO gets the CPU, with the refusal as its reason */
    o.backend = SARCO_BACKEND_AUTO;
    assert_int_equal(sarco_context_create_ex(&o, &ctx, msg, sizeof msg), SARCO_OK);
    assert_int_equal(sarco_context_backend(ctx), SARCO_BACKEND_CPU);
    assert_non_null(strstr(sarco_context_backend_detail(ctx), "does not match"));
    sarco_context_free(ctx);
}

/* A stale plug-in (the ABI number only) and one whose record differs are refused, naming both sides. */
static void test_abi_mismatch(void **state) {
    (void)state;
    char path[PATH_MAX], sizes[64], ours[64], cur[512];
    snprintf(cur, sizeof cur, "%s", getenv("SARCO_CUDA_LIBRARY") ? getenv("SARCO_CUDA_LIBRARY") : "");
    snprintf(path, sizeof path, "%s/stale/libsarco_cuda.so", g_tmp);
    sh("true");
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/stale' '%s/bad'", g_tmp, g_tmp);
    sh(cmd);
    build_fake_plugin(path, "__attribute__((visibility(\"default\"))) const int sarco_cuda_abi = 3;");
    snprintf(ours, sizeof ours, "ABI %d, build %s", SARCO_CUDA_ABI_VERSION, SARCO_BUILD_ID);
    const char *stale[] = {"stale plug-in (ABI 3, no build record)", ours, "rebuild"};
    /* AUTO's reason for a stale plug-in says "stale"; check CUDA's message, then AUTO's CPU */
    setenv("SARCO_CUDA_LIBRARY", path, 1);
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CUDA;
    sarco_context *ctx = NULL;
    char msg[2048];
    assert_int_equal(sarco_context_create_ex(&o, &ctx, msg, sizeof msg), SARCO_ERR_BACKEND_UNAVAILABLE);
    print_message("stale -> %s\n", msg);
    for (int i = 0; i < 3; i++)
        if (!strstr(msg, stale[i])) fail_msg("\"%s\" not in \"%s\"", stale[i], msg);

    snprintf(path, sizeof path, "%s/bad/libsarco_cuda.so", g_tmp);
    char rec[1024];
    snprintf(rec, sizeof rec, REC_EXPORT "{SARCO_CUDA_ABI_VERSION, 13000, sizeof(sarco_context) + 16, "
             "sizeof(sarco_backend_ops), \"0123456789abcdef\", 91900, 130100};");
    build_fake_plugin(path, rec);
    snprintf(sizes, sizeof sizes, "sizeof(sarco_context) %zu", sizeof(sarco_context) + 16);
    snprintf(ours, sizeof ours, "sizeof(sarco_context) %zu", sizeof(sarco_context));
    char theirs_id[64], ours_id[64];
    snprintf(theirs_id, sizeof theirs_id, "build 0123456789abcdef");
    snprintf(ours_id, sizeof ours_id, "build %s", SARCO_BUILD_ID);
    const char *bad[] = {"does not match this libsarco", sizes, ours, theirs_id, ours_id};
    expect_refused(path, bad, 5);
    if (cur[0]) setenv("SARCO_CUDA_LIBRARY", cur, 1);
    else unsetenv("SARCO_CUDA_LIBRARY");
}

/* The loader picks the plug-in by the driver's CUDA version (a fake libcuda.so.1 reports it), and the
 * message names the driver found and what it would need. */
static void test_driver_choice(void **state) {
    (void)state;
    need_plugin();
    char cmd[40000], cli[PATH_MAX];
    assert_non_null(realpath(SARCO_TEST_CLI, cli));
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/drv' '%s/app/bin' '%s/app/lib' && cp '%s' '%s/app/bin/sarco' && cp '%s' "
             "'%s/app/lib/libsarco_cuda.so'", g_tmp, g_tmp, g_tmp, cli, g_tmp, g_plugin, g_tmp);
    sh(cmd);
    snprintf(cmd, sizeof cmd, "%s/drv/fake.c", g_tmp);
    write_file(cmd, "#include <stdlib.h>\n__attribute__((visibility(\"default\"))) int cuDriverGetVersion(int *v) {\n"
                    "  const char *e = getenv(\"FAKE_CUDA_DRIVER\"); *v = e ? atoi(e) : 0; return 0; }\n");
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o '%s/drv/libcuda.so.1' '%s/drv/fake.c'", g_tmp,
             g_tmp);
    sh(cmd);
    char *saved = strdup(getenv("SARCO_CUDA_LIBRARY") ? getenv("SARCO_CUDA_LIBRARY") : "");
    unsetenv("SARCO_CUDA_LIBRARY");

    /* no CUDA 12 plug-in: a 12.4 driver gets the CUDA 13 one, whose failure says what is missing */
    snprintf(cmd, sizeof cmd, "cd / && LD_LIBRARY_PATH='%s/drv' FAKE_CUDA_DRIVER=12040 '%s/app/bin/sarco' version --backend cuda",
             g_tmp, g_tmp);
    char *out = run_all(cmd);
    print_message("driver 12.4, no cuda12 plug-in: %s", out);
    assert_non_null(strstr(out, "driver: CUDA 12.4"));
    assert_non_null(strstr(out, "needs a driver for CUDA 13 (580 or newer)"));
    assert_non_null(strstr(out, SARCO_CUDA12_PLUGIN));
    free(out);

    /* with one beside it, a 12.4 driver gets it ... */
    snprintf(cmd, sizeof cmd, "%s/app/lib/" SARCO_CUDA12_PLUGIN, g_tmp);
    char rec[1024];
    snprintf(rec, sizeof rec, REC_EXPORT "{SARCO_CUDA_ABI_VERSION, 12090, sizeof(sarco_context), "
             "sizeof(sarco_backend_ops), SARCO_BUILD_ID, 92800, 120903};");
    build_fake_plugin(cmd, rec);
    snprintf(cmd, sizeof cmd, "cd / && LD_LIBRARY_PATH='%s/drv' FAKE_CUDA_DRIVER=12040 '%s/app/bin/sarco' version --backend cuda",
             g_tmp, g_tmp);
    out = run_all(cmd);
    print_message("driver 12.4: %s", out);
    assert_non_null(strstr(out, "fake CUDA 12 plug-in selected"));
    assert_non_null(strstr(out, "driver: CUDA 12.4"));
    free(out);
    /* ... and without a driver the default one is opened and CUDA itself says what is wrong */
    snprintf(cmd, sizeof cmd, "cd / && '%s/app/bin/sarco' version --backend cuda", g_tmp);
    out = run_all(cmd);
    assert_null(strstr(out, "fake CUDA 12"));
    assert_reached_probe("no driver, both plug-ins present", out);
    free(out);
    if (saved[0]) setenv("SARCO_CUDA_LIBRARY", saved, 1);
    free(saved);
}

/* SARCO_CUDA_STRICT=1: AUTO may not fall back to the CPU; bad memory settings are refused by name. */
static void test_strict_and_env(void **state) {
    (void)state;
    need_plugin();
    sarco_context_options o;
    sarco_context_options_init(&o);
    sarco_context *ctx = NULL;
    char msg[2048];
    setenv("SARCO_CUDA_STRICT", "1", 1);
    sarco_status s = sarco_context_create_ex(&o, &ctx, msg, sizeof msg);
    if (s == SARCO_OK) { /* a GPU: AUTO is CUDA, and the FP16 fallback (TF32 storage) becomes an error */
        assert_int_equal(sarco_context_backend(ctx), SARCO_BACKEND_CUDA);
        sarco_context_free(ctx);
        o.backend = SARCO_BACKEND_CUDA;
        o.precision = SARCO_PRECISION_FP16;
        assert_int_equal(sarco_context_create_ex(&o, &ctx, msg, sizeof msg), SARCO_ERR_DEVICE);
        assert_non_null(strstr(msg, "SARCO_CUDA_STRICT=1"));
        o.precision = SARCO_PRECISION_FP32;
        o.backend = SARCO_BACKEND_AUTO;
    } else {
        assert_int_equal(s, SARCO_ERR_BACKEND_UNAVAILABLE);
        assert_null(ctx);
        print_message("strict AUTO -> %s\n", msg);
        assert_non_null(strstr(msg, "SARCO_CUDA_STRICT=1"));
        assert_non_null(strstr(msg, "cuda: "));
    }
    unsetenv("SARCO_CUDA_STRICT");
    setenv("SARCO_CUDA_STRICT", "0", 1); /* only "1" turns it on */
    assert_int_equal(sarco_context_create_ex(&o, &ctx, msg, sizeof msg), SARCO_OK);
    sarco_context_free(ctx);
    unsetenv("SARCO_CUDA_STRICT");

    o.backend = SARCO_BACKEND_CUDA;
    const char *bad[][2] = {{"SARCO_CUDA_MEMORY_LIMIT", "12Q"}, {"SARCO_CUDA_WORKSPACE_MIB", "0"}};
    for (int i = 0; i < 2; i++) {
        setenv(bad[i][0], bad[i][1], 1);
        assert_int_equal(sarco_context_create_ex(&o, &ctx, msg, sizeof msg), SARCO_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(msg, bad[i][0]));
        unsetenv(bad[i][0]);
    }
}

/* With a device: the context's device memory limit holds, and two contexts on one device coexist. */
static void test_device_memory(void **state) {
    (void)state;
    need_plugin();
    sarco_context_options o;
    sarco_context_options_init(&o);
    o.backend = SARCO_BACKEND_CUDA;
    o.device_memory_limit = (size_t)64 << 20;
    sarco_context *a = NULL, *b = NULL;
    char msg[2048];
    if (sarco_context_create_ex(&o, &a, msg, sizeof msg) != SARCO_OK) {
        print_message("SKIP cuda: %s\n", msg);
        skip();
    }
    o.device_memory_limit = 0;
    assert_int_equal(sarco_context_create_ex(&o, &b, msg, sizeof msg), SARCO_OK);
    void *p, *q, *r;
    assert_int_equal(a->be->ops->alloc(a->be, (size_t)48 << 20, &p), SARCO_OK);
    assert_int_equal(a->be->ops->alloc(a->be, (size_t)32 << 20, &q), SARCO_ERR_OUT_OF_MEMORY);
    assert_non_null(strstr(sarco_last_error(a), "device memory limit"));
    assert_int_equal(b->be->ops->alloc(b->be, (size_t)256 << 20, &r), SARCO_OK);
    assert_int_equal(b->be->ops->memset0(b->be, r, (size_t)256 << 20), SARCO_OK);
    a->be->ops->free(a->be, p);
    assert_int_equal(a->be->ops->alloc(a->be, (size_t)60 << 20, &q), SARCO_OK);
    assert_int_equal(a->be->ops->sync(a->be), SARCO_OK);
    assert_int_equal(b->be->ops->sync(b->be), SARCO_OK);
    sarco_context_free(a);
    sarco_context_free(b);
}

/* The CUDA 12 plug-in (`make cuda12`): only where its wheels are installed (`make cuda12-deps`). The
 * wheels carry no nvcc (docs/cuda.md): this keeps that statement true, and checks a built plug-in. */
static void test_cuda12_build(void **state) {
    (void)state;
    const char *dir = getenv("SARCO_CU12_DIR") ? getenv("SARCO_CU12_DIR") : "build/cu12";
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/.installed", dir);
    if (!exists(p)) {
        print_message("SKIP cuda12: the CUDA 12 wheels are not installed (make cuda12-deps)\n");
        skip();
    }
    snprintf(p, sizeof p, "%s/nvidia/cuda_nvcc/bin/ptxas", dir);
    assert_true(exists(p)); /* the nvcc wheel is there ... */
    snprintf(p, sizeof p, "%s/nvidia/cuda_nvcc/bin/nvcc", dir);
    if (exists(p))
        fail_msg("%s exists: the nvcc wheel now carries the compiler driver; build the CUDA 12 plug-in from it "
                 "(make cuda12) and update docs/cuda.md", p);
    snprintf(p, sizeof p, "%s/nvidia/cudnn/lib/libcudnn.so.9", dir);
    assert_true(exists(p));
    const char *so = exists("lib/" SARCO_CUDA12_PLUGIN) ? "lib/" SARCO_CUDA12_PLUGIN : NULL;
    if (!so) {
        print_message("cuda12: wheels present, no nvcc among them (as documented); no %s built\n", SARCO_CUDA12_PLUGIN);
        return;
    }
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "readelf -d '%s' | grep NEEDED", so);
    char *needed = run(cmd);
    assert_non_null(needed);
    assert_non_null(strstr(needed, "libcublas.so.12"));
    assert_non_null(strstr(needed, "libcudnn.so.9"));
    free(needed);
}

int main(int argc, char **argv) {
    (void)argc;
    find_artifacts(argv[0]);
    /* these tests exercise the fallbacks themselves (AUTO to the CPU); test_strict_and_env sets strict mode */
    unsetenv("SARCO_CUDA_STRICT");
    snprintf(g_tmp, sizeof g_tmp, "/tmp/sarco_cuda_plugin_XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exports),
        cmocka_unit_test(test_gpu_code),
        cmocka_unit_test(test_libsarco_links_no_cuda),
        cmocka_unit_test(test_cuda_and_auto),
        cmocka_unit_test(test_repeated_create_free),
        cmocka_unit_test(test_abi_record),
        cmocka_unit_test(test_discovery),
        cmocka_unit_test(test_abi_mismatch),
        cmocka_unit_test(test_driver_choice),
        cmocka_unit_test(test_strict_and_env),
        cmocka_unit_test(test_device_memory),
        cmocka_unit_test(test_cuda12_build),
    };
    int rc = cmocka_run_group_tests_name("cuda_plugin", tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) rc = rc ? rc : 1;
    return rc;
}
