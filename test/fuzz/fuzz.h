/* Shared by the libFuzzer targets in test/fuzz/: the input bytes become a file (the readers take a
 * path, as a user calls them) and go through the public function with the library's caps in force.
 * The context has a 512 MiB memory_limit, as a service reading outside files would set: an input that
 * declares a huge image must be refused by a cap or the limit before it is allocated, never by the
 * fuzzer's own -rss_limit_mb/-malloc_limit_mb. */
#ifndef SARCO_FUZZ_H
#define SARCO_FUZZ_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sarco/sarco.h"

#define FUZZ_MEMORY_LIMIT ((size_t)512 << 20)

static sarco_context *fuzz_ctx(void) {
    static sarco_context *ctx; /* one per fuzzing process: a context is reused across calls, as in a service */
    if (!ctx) {
        sarco_context_options o;
        sarco_context_options_init(&o);
        o.backend = SARCO_BACKEND_CPU;
        o.memory_limit = FUZZ_MEMORY_LIMIT;
        o.log_level = SARCO_LOG_ERROR;
        if (sarco_context_create(&o, &ctx) != SARCO_OK) abort();
    }
    return ctx;
}

/* Writes the bytes to a per-process file under /dev/shm (tmpfs: no disk wear) with the suffix the
 * reader expects; the same path is reused by every input. */
static const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix) {
    static char path[256];
    snprintf(path, sizeof path, "/dev/shm/sarco_fuzz_%ld%s", (long)getpid(), suffix);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    close(fd);
    return path;
}

/* A status a reader may return on bad bytes; anything else (INTERNAL, an unknown code) is a bug. */
static void fuzz_check_status(sarco_status s) {
    switch (s) {
    case SARCO_OK: case SARCO_ERR_BAD_FORMAT: case SARCO_ERR_UNSUPPORTED: case SARCO_ERR_LIMIT:
    case SARCO_ERR_OUT_OF_MEMORY: case SARCO_ERR_IO: case SARCO_ERR_INVALID_ARGUMENT:
        break;
    default:
        fprintf(stderr, "fuzz: unexpected status %d (%s): %s\n", (int)s, sarco_status_string(s),
                sarco_last_error(fuzz_ctx()));
        abort();
    }
    if (s != SARCO_OK && !sarco_last_error(fuzz_ctx())[0]) {
        fprintf(stderr, "fuzz: status %d without a message\n", (int)s);
        abort();
    }
}

/* An image that was read must be usable: touch every voxel (ASan sees a short buffer). */
static void fuzz_touch_image(const sarco_image *img) {
    if (!img) return;
    size_t n = 1;
    for (int i = 0; i < 3; i++) n *= (size_t)img->dims[i];
    volatile float acc = 0;
    for (size_t i = 0; i < n; i++) acc += img->data[i];
    (void)acc;
}

__attribute__((unused)) static void fuzz_read_image(const uint8_t *data, size_t size, const char *suffix) {
    sarco_image *img = NULL;
    sarco_status s = sarco_image_read(fuzz_ctx(), fuzz_file(data, size, suffix), &img);
    fuzz_check_status(s);
    if ((s == SARCO_OK) != (img != NULL)) abort();
    fuzz_touch_image(img);
    sarco_image_free(img);
}

#endif
