/* Atomic file writes shared by every writer (NIfTI, PNG, HTML): a temporary file next to the target
 * (O_EXCL), fsync, close, rename over the target, fsync of the directory. On any failure the
 * temporary file is removed and an existing target is untouched. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imageio.h"

int sarco_atomic_temp_open(const char *path, char *tmp, size_t tmp_size) {
    for (int attempt = 0; attempt < 32; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long salt = (unsigned long)ts.tv_nsec ^ ((unsigned long)(uintptr_t)tmp >> 4) ^
                             (unsigned long)attempt * 2654435761u;
        snprintf(tmp, tmp_size, "%s.tmp-%ld-%08lx", path, (long)getpid(), salt & 0xffffffffUL);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    errno = EEXIST;
    return -1;
}

void sarco_atomic_fsync_dir(const char *path) {
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash == dir) d = "/";
    else if (slash) {
        *slash = '\0';
        d = dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: the rename is done either way */
        close(fd);
    }
    free(dir);
}

sarco_status sarco_write_file_atomic(sarco_context *ctx, const char *path, const void *data, size_t n,
                                     const sarco_write_fault *fault) {
    if (!path || !*path) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "no output path");
    if (!data && n) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: no data to write", path);
    size_t tmp_size = strlen(path) + 64;
    char *tmp = malloc(tmp_size);
    if (!tmp) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    sarco_status st = SARCO_OK;
    int fd = sarco_atomic_temp_open(path, tmp, tmp_size);
    if (fd < 0) {
        st = sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    const uint8_t *p = data;
    size_t left = n, written = 0;
    while (left > 0) {
        size_t w = left;
        if (fault && fault->fail_after_bytes >= 0) {
            if ((int64_t)written >= fault->fail_after_bytes) {
                errno = ENOSPC; /* simulated: the disk filled up */
                goto write_fail;
            }
            if ((int64_t)w > fault->fail_after_bytes - (int64_t)written)
                w = (size_t)(fault->fail_after_bytes - (int64_t)written);
        }
        ssize_t r = write(fd, p, w);
        if (r < 0) {
            if (errno == EINTR) continue;
            goto write_fail;
        }
        p += r;
        left -= (size_t)r;
        written += (size_t)r;
    }
    if ((fault && fault->fail_fsync) || fsync(fd) != 0) {
        if (fault && fault->fail_fsync) errno = EIO;
        st = sarco_fail(ctx, SARCO_ERR_IO, "%s: fsync failed: %s; nothing was written", path, strerror(errno));
        goto fail;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) {
        st = sarco_fail(ctx, SARCO_ERR_IO, "%s: close failed: %s; nothing was written", path, strerror(errno));
        goto fail;
    }
    if ((fault && fault->fail_rename) || rename(tmp, path) != 0) {
        if (fault && fault->fail_rename) errno = EXDEV;
        st = sarco_fail(ctx, SARCO_ERR_IO, "%s: cannot rename the finished temporary file onto it: %s", path,
                        strerror(errno));
        goto fail;
    }
    sarco_atomic_fsync_dir(path);
    free(tmp);
    return SARCO_OK;
write_fail:
    st = sarco_fail(ctx, SARCO_ERR_IO, "%s: write failed after %zu bytes: %s; nothing was written", path, written,
                    strerror(errno));
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(tmp);
    return st;
}
