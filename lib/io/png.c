/* PNG reading with libpng 1.6. We walk the chunk list ourselves first (signature, lengths, every
 * CRC, IHDR fields, size caps, whether the IDAT bytes can even inflate to the declared image),
 * then let libpng decode with its own limits set. Every libpng error longjmps back to one place
 * that frees whatever was allocated: all such state lives in a struct reached through a pointer
 * that is not modified after setjmp. */
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "imageio.h"

#define PNG_MAX_FILE ((uint64_t)1 << 32)
#define PNG_CHUNK_MALLOC_MAX (8u << 20) /* ancillary chunks (and their inflated text) */
#define PNG_CHUNK_CACHE_MAX 256u

typedef struct ihdr {
    uint32_t width, height;
    int bit_depth, color_type, interlace;
    uint64_t idat_bytes;
} ihdr;

typedef struct pngread {
    sarco_context *ctx;
    const char *path;
    sarco_read_mode mode;
    uint8_t *buf; /* the whole file */
    size_t size, off;
    sarco_status st; /* the status for a libpng error; BAD_FORMAT unless a callback said otherwise */
    char msg[320];
    png_structp png;
    png_infop info;
    uint8_t *raw; /* one row, or the whole image when interlaced */
    png_bytep *rows;
    sarco_image *img;
    uint16_t *labels;
    sarco_picture *pic; /* PICTURE mode */
    png_bytep trns;     /* palette alpha (tRNS), ntrns entries */
    int ntrns;
    ihdr h;
} pngread;

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int channels_of(int color_type) {
    switch (color_type) {
    case 0: return 1;
    case 2: return 3;
    case 3: return 1;
    case 4: return 2;
    case 6: return 4;
    default: return 0;
    }
}

static int depth_ok(int ct, int bd) {
    switch (ct) {
    case 0: return bd == 1 || bd == 2 || bd == 4 || bd == 8 || bd == 16;
    case 3: return bd == 1 || bd == 2 || bd == 4 || bd == 8;
    case 2: case 4: case 6: return bd == 8 || bd == 16;
    default: return 0;
    }
}

/* Bytes the filtered, deflated image data must inflate to (a filter byte per row). */
static uint64_t filtered_size(const ihdr *h) {
    uint64_t bits = (uint64_t)channels_of(h->color_type) * (uint64_t)h->bit_depth;
    if (!h->interlace) return (uint64_t)h->height * (1 + ((uint64_t)h->width * bits + 7) / 8);
    static const int x0[7] = {0, 4, 0, 2, 0, 1, 0}, dx[7] = {8, 8, 4, 4, 2, 2, 1};
    static const int y0[7] = {0, 0, 4, 0, 2, 0, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
    uint64_t total = 0;
    for (int p = 0; p < 7; p++) {
        uint64_t w = h->width > (uint32_t)x0[p] ? (h->width - x0[p] + dx[p] - 1) / dx[p] : 0;
        uint64_t hh = h->height > (uint32_t)y0[p] ? (h->height - y0[p] + dy[p] - 1) / dy[p] : 0;
        if (w && hh) total += hh * (1 + (w * bits + 7) / 8);
    }
    return total;
}

static int is_alpha(uint8_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

/* Inflates the IDAT stream into a scratch buffer, counting: it must end at exactly `need` bytes (libpng
 * itself would stop early and only warn about extra data; we refuse it, as for .nii.gz). */
static sarco_status check_idat(sarco_context *ctx, const char *path, const uint8_t *b, size_t n, const ihdr *h,
                               uint64_t need) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot start zlib", path);
    uint8_t scratch[16384];
    uint64_t total = 0;
    int ended = 0;
    sarco_status st = SARCO_OK;
    for (size_t off = 8; off + 12 <= n && !ended && st == SARCO_OK;) {
        uint32_t len = be32(b + off);
        int is_idat = memcmp(b + off + 4, "IDAT", 4) == 0, is_iend = memcmp(b + off + 4, "IEND", 4) == 0;
        if (is_idat) {
            zs.next_in = (Bytef *)(uintptr_t)(b + off + 8);
            zs.avail_in = len;
            while (zs.avail_in > 0 && !ended) {
                zs.next_out = scratch;
                zs.avail_out = sizeof scratch;
                int rc = inflate(&zs, Z_NO_FLUSH);
                total += sizeof scratch - zs.avail_out;
                if (total > need) {
                    st = sarco_fail(ctx, SARCO_ERR_LIMIT,
                                    "%s: the IDAT stream inflates past the %llu bytes a %u x %u image needs (a "
                                    "decompression bomb, or trailing data): refused",
                                    path, (unsigned long long)need, h->width, h->height);
                    break;
                }
                if (rc == Z_STREAM_END) ended = 1;
                else if (rc != Z_OK && !(rc == Z_BUF_ERROR && zs.avail_in == 0)) {
                    st = sarco_fail(ctx, rc == Z_MEM_ERROR ? SARCO_ERR_OUT_OF_MEMORY : SARCO_ERR_BAD_FORMAT,
                                    "%s: corrupt IDAT zlib stream after %llu inflated bytes (zlib: %s)", path,
                                    (unsigned long long)total, zs.msg ? zs.msg : "error");
                    break;
                }
            }
        }
        if (is_iend) break;
        off += 12 + (size_t)len;
    }
    inflateEnd(&zs);
    if (st != SARCO_OK) return st;
    if (total < need)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: truncated: the image data ends after %llu of the %llu bytes a %u x %u image needs", path,
                          (unsigned long long)total, (unsigned long long)need, h->width, h->height);
    if (!ended)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: truncated: the IDAT zlib stream has no end (or no checksum)",
                          path);
    return SARCO_OK;
}

/* Our own pass over the file before libpng sees it. */
static sarco_status prescan(sarco_context *ctx, const char *path, const uint8_t *b, size_t n, ihdr *h) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memset(h, 0, sizeof *h);
    if (n < 8 || memcmp(b, sig, 8) != 0)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: bad PNG signature (not a PNG, or damaged in transfer)", path);
    size_t off = 8;
    int chunks = 0, seen_iend = 0;
    while (off < n) {
        if (n - off < 12)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: truncated: %zu stray bytes where a chunk should start at "
                              "byte %zu", path, n - off, off);
        uint32_t len = be32(b + off);
        const uint8_t *type = b + off + 4;
        char name[5] = {0};
        for (int i = 0; i < 4; i++) name[i] = is_alpha(type[i]) ? (char)type[i] : '?';
        if (len > 0x7fffffffu)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: chunk %s at byte %zu declares length %u (> 2^31 - 1)",
                              path, name, off, len);
        if (!is_alpha(type[0]) || !is_alpha(type[1]) || !is_alpha(type[2]) || !is_alpha(type[3]))
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: chunk at byte %zu has an invalid type %02x%02x%02x%02x",
                              path, off, type[0], type[1], type[2], type[3]);
        if ((uint64_t)len + 12 > n - off)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                              "%s: truncated: chunk %s at byte %zu declares %u data bytes, only %zu remain", path, name,
                              off, len, n - off - 12);
        uint32_t want = be32(b + off + 8 + len);
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), type, 4 + len);
        if (crc != want)
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: CRC mismatch in chunk %s at byte %zu (stored %08x, "
                              "computed %08x)", path, name, off, want, crc);
        const uint8_t *d = b + off + 8;
        if (chunks == 0) {
            if (memcmp(type, "IHDR", 4) != 0 || len != 13)
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: the first chunk is %s (%u bytes), not a 13-byte IHDR",
                                  path, name, len);
            h->width = be32(d);
            h->height = be32(d + 4);
            h->bit_depth = d[8];
            h->color_type = d[9];
            h->interlace = d[12];
            if (h->width == 0 || h->height == 0)
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: width %u x height %u: an empty image", path, h->width,
                                  h->height);
            if (h->width > 0x7fffffffu || h->height > 0x7fffffffu)
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: width %u x height %u: past the PNG limit of 2^31 - 1",
                                  path, h->width, h->height);
            if (h->width > SARCO_PNG_MAX_SIDE || h->height > SARCO_PNG_MAX_SIDE ||
                (uint64_t)h->width * h->height > SARCO_PNG_MAX_PIXELS)
                return sarco_fail(ctx, SARCO_ERR_LIMIT,
                                  "%s: width %u x height %u is past the cap (%u pixels a side, %llu pixels)", path,
                                  h->width, h->height, SARCO_PNG_MAX_SIDE, (unsigned long long)SARCO_PNG_MAX_PIXELS);
            if (!depth_ok(h->color_type, h->bit_depth))
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: colour type %d with bit depth %d is not a valid PNG "
                                  "combination", path, h->color_type, h->bit_depth);
            if (d[10] != 0 || d[11] != 0 || h->interlace > 1)
                return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                                  "%s: unknown compression (%d), filter (%d) or interlace (%d) method", path, d[10],
                                  d[11], d[12]);
        } else if (memcmp(type, "IHDR", 4) == 0) {
            return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: a second IHDR chunk at byte %zu", path, off);
        }
        if (memcmp(type, "IDAT", 4) == 0) h->idat_bytes += len;
        chunks++;
        off += 12 + (size_t)len;
        if (memcmp(type, "IEND", 4) == 0) {
            seen_iend = 1;
            break; /* bytes after IEND are ignored, as every decoder does */
        }
    }
    if (chunks == 0)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: truncated: nothing after the PNG signature", path);
    if (!seen_iend)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: truncated: the file ends without an IEND chunk", path);
    if (h->idat_bytes == 0) return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: no IDAT chunk (no image data)", path);
    uint64_t need = filtered_size(h);
    if (need > SARCO_INFLATE_BOUND(h->idat_bytes))
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT,
                          "%s: %llu bytes of IDAT cannot inflate to the %llu bytes a %u x %u image needs: "
                          "truncated, or a decompression bomb",
                          path, (unsigned long long)h->idat_bytes, (unsigned long long)need, h->width, h->height);
    return check_idat(ctx, path, b, n, h, need);
}

static void on_error(png_structp png, png_const_charp msg) {
    pngread *r = png_get_error_ptr(png);
    if (r->msg[0] == '\0') {
        snprintf(r->msg, sizeof r->msg, "libpng: %s", msg);
        if (strstr(msg, "memory")) r->st = SARCO_ERR_OUT_OF_MEMORY;
        else if (strstr(msg, "limit") || strstr(msg, "too large")) r->st = SARCO_ERR_LIMIT;
    }
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
    pngread *r = png_get_error_ptr(png);
    sarco_log(r->ctx, SARCO_LOG_WARN, "%s: libpng: %s", r->path, msg);
}

static void on_read(png_structp png, png_bytep out, size_t n) {
    pngread *r = png_get_io_ptr(png);
    if (n > r->size - r->off) {
        snprintf(r->msg, sizeof r->msg, "truncated: libpng wants %zu bytes at byte %zu, the file has %zu", n, r->off,
                 r->size);
        png_error(png, "truncated");
    }
    memcpy(out, r->buf + r->off, n);
    r->off += n;
}

/* One decoded row (after png_set_packing: a byte per sample below 8 bits; 16-bit big-endian). */
static void convert_row(pngread *r, const uint8_t *row, uint32_t y, uint32_t width, const ihdr *h,
                        png_colorp pal, int npal) {
    int ch = channels_of(h->color_type), bd = h->bit_depth;
    size_t bps = bd == 16 ? 2 : 1;
    size_t base = (size_t)y * width;
    double lowscale = bd < 8 ? 255.0 / (double)((1 << bd) - 1) : 1.0;
    for (uint32_t x = 0; x < width; x++) {
        const uint8_t *px = row + (size_t)x * ch * bps;
        unsigned s[4] = {0, 0, 0, 0};
        for (int c = 0; c < ch; c++) s[c] = bps == 2 ? (unsigned)px[2 * c] << 8 | px[2 * c + 1] : px[c];
        if (h->color_type == 3 && (int)s[0] >= npal) {
            snprintf(r->msg, sizeof r->msg, "palette index %u at (x %u, y %u) is past the %d-entry PLTE", s[0], x, y,
                     npal);
            png_error(r->png, "palette index");
        }
        if (r->mode == SARCO_READ_LABELS) {
            r->labels[base + x] = (uint16_t)s[0]; /* grey sample as stored, or the palette index */
            continue;
        }
        if (r->mode == SARCO_READ_PICTURE) { /* channels as stored, planar */
            float *d = r->pic->data + base + x;
            const size_t plane = (size_t)r->pic->width * (size_t)r->pic->height;
            if (h->color_type == 3) {
                d[0] = pal[s[0]].red;
                d[plane] = pal[s[0]].green;
                d[2 * plane] = pal[s[0]].blue;
                if (r->pic->channels == 4) d[3 * plane] = (int)s[0] < r->ntrns ? r->trns[s[0]] : 255;
            } else {
                for (int c = 0; c < ch; c++) d[(size_t)c * plane] = (float)(bd < 8 ? s[c] * lowscale : s[c]);
            }
            continue;
        }
        double v;
        unsigned R, G, B;
        double div = bd == 16 ? 257.0 : 1.0;
        switch (h->color_type) {
        case 0:
        case 4: v = bd < 8 ? s[0] * lowscale : s[0] / div; break;
        case 3:
            R = pal[s[0]].red;
            G = pal[s[0]].green;
            B = pal[s[0]].blue;
            v = (R == G && G == B) ? (double)R : 0.299 * R + 0.587 * G + 0.114 * B;
            break;
        default:
            R = s[0];
            G = s[1];
            B = s[2];
            v = (R == G && G == B) ? R / div : (0.299 * R + 0.587 * G + 0.114 * B) / div;
            break;
        }
        r->img->data[base + x] = (float)v;
    }
}

static void cleanup(pngread *r) {
    if (r->png) png_destroy_read_struct(&r->png, r->info ? &r->info : NULL, NULL);
    free(r->raw);
    free(r->rows);
    free(r->buf);
    free(r->labels);
    sarco_image_free(r->img);
    sarco_picture_free(r->pic);
    free(r);
}

/* Everything libpng touches; returns with r->img (and r->labels) filled, or longjmps. */
static void decode(pngread *r, const ihdr *h) {
    png_structp png = r->png;
    png_infop info = r->info;
    png_set_read_fn(png, r, on_read);
    png_set_user_limits(png, SARCO_PNG_MAX_SIDE, SARCO_PNG_MAX_SIDE);
    png_set_chunk_cache_max(png, PNG_CHUNK_CACHE_MAX);
    png_set_chunk_malloc_max(png, PNG_CHUNK_MALLOC_MAX);
    /* text and ICC profiles are never needed: skip them unread (no zTXt/iTXt/iCCP inflation) */
    static const png_byte skip[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT\0eXIf";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skip, (int)(sizeof skip / 5));
    png_read_info(png, info);
    png_uint_32 w, hh;
    int bd, ct, il;
    png_get_IHDR(png, info, &w, &hh, &bd, &ct, &il, NULL, NULL);
    if (w != h->width || hh != h->height || bd != h->bit_depth || ct != h->color_type) {
        snprintf(r->msg, sizeof r->msg, "libpng read a different IHDR than the file holds");
        r->st = SARCO_ERR_INTERNAL;
        png_error(png, "IHDR");
    }
    png_colorp pal = NULL;
    int npal = 0;
    if (ct == PNG_COLOR_TYPE_PALETTE && !png_get_PLTE(png, info, &pal, &npal)) {
        snprintf(r->msg, sizeof r->msg, "a palette image without a PLTE chunk");
        png_error(png, "PLTE");
    }
    if (bd < 8) png_set_packing(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    size_t need_row = (size_t)w * (size_t)channels_of(ct) * (bd == 16 ? 2 : 1);
    if (rowbytes < need_row) {
        snprintf(r->msg, sizeof r->msg, "libpng row of %zu bytes, expected %zu", rowbytes, need_row);
        r->st = SARCO_ERR_INTERNAL;
        png_error(png, "rowbytes");
    }
    int64_t dims[3] = {(int64_t)w, (int64_t)hh, 1};
    sarco_status st;
    if (r->mode == SARCO_READ_PICTURE) {
        int pch = channels_of(ct);
        if (ct == PNG_COLOR_TYPE_PALETTE) {
            png_bytep trns = NULL;
            int ntrns = 0;
            if (png_get_tRNS(png, info, &trns, &ntrns, NULL) && trns && ntrns > 0) {
                r->trns = trns;
                r->ntrns = ntrns;
            }
            pch = r->ntrns > 0 ? 4 : 3; /* as PIL's convert("RGBA" / "RGB") of a palette image */
        }
        st = sarco_picture_alloc(r->ctx, (int64_t)w, (int64_t)hh, pch, &r->pic);
        if (st == SARCO_OK) {
            r->pic->bit_depth = bd == 16 ? 16 : 8;
            r->pic->format = SARCO_PICTURE_FORMAT_PNG;
            if (ct == PNG_COLOR_TYPE_PALETTE) r->pic->flags |= SARCO_PICTURE_FROM_PALETTE;
            else if (bd < 8) r->pic->flags |= SARCO_PICTURE_STRETCHED;
        }
    } else {
        st = sarco_image_alloc(r->ctx, 2, dims, r->mode == SARCO_READ_IMAGE, &r->img);
    }
    if (st != SARCO_OK) {
        snprintf(r->msg, sizeof r->msg, "%s", sarco_last_error(r->ctx));
        r->st = st;
        png_error(png, "alloc");
    }
    if (r->mode == SARCO_READ_LABELS) {
        if (ct == PNG_COLOR_TYPE_RGB || ct == PNG_COLOR_TYPE_RGB_ALPHA) {
            snprintf(r->msg, sizeof r->msg, "a colour PNG (type %d) cannot hold labels: use grey or palette", ct);
            r->st = SARCO_ERR_UNSUPPORTED;
            png_error(png, "labels");
        }
        r->labels = malloc((size_t)w * hh * sizeof(uint16_t));
        if (!r->labels) {
            snprintf(r->msg, sizeof r->msg, "out of memory for %u x %u labels", (unsigned)w, (unsigned)hh);
            r->st = SARCO_ERR_OUT_OF_MEMORY;
            png_error(png, "alloc");
        }
    }
    if (passes > 1) {
        r->raw = malloc(rowbytes * hh);
        r->rows = malloc(sizeof(png_bytep) * hh);
        if (!r->raw || !r->rows) {
            snprintf(r->msg, sizeof r->msg, "out of memory for an interlaced %u x %u image", (unsigned)w, (unsigned)hh);
            r->st = SARCO_ERR_OUT_OF_MEMORY;
            png_error(png, "alloc");
        }
        for (png_uint_32 y = 0; y < hh; y++) r->rows[y] = r->raw + (size_t)y * rowbytes;
        png_read_image(png, r->rows);
        for (png_uint_32 y = 0; y < hh; y++) convert_row(r, r->rows[y], y, w, h, pal, npal);
    } else {
        r->raw = malloc(rowbytes);
        if (!r->raw) {
            snprintf(r->msg, sizeof r->msg, "out of memory");
            r->st = SARCO_ERR_OUT_OF_MEMORY;
            png_error(png, "alloc");
        }
        for (png_uint_32 y = 0; y < hh; y++) {
            png_read_row(png, r->raw, NULL);
            convert_row(r, r->raw, y, w, h, pal, npal);
        }
    }
    png_read_end(png, NULL);

    png_uint_32 xres = 0, yres = 0;
    int unit = -1;
    if (r->pic) {
        if (png_get_pHYs(png, info, &xres, &yres, &unit) && unit == PNG_RESOLUTION_METER && xres > 0 && yres > 0) {
            r->pic->spacing[0] = 1000.0 / yres; /* rows */
            r->pic->spacing[1] = 1000.0 / xres; /* columns */
            r->pic->flags &= ~SARCO_IMAGE_NO_SPACING;
        } else {
            sarco_log(r->ctx, SARCO_LOG_INFO, "%s: no pHYs in metres: pixel spacing must come from the caller", r->path);
        }
        return;
    }
    sarco_image *img = r->img;
    if (png_get_pHYs(png, info, &xres, &yres, &unit) && unit == PNG_RESOLUTION_METER && xres > 0 && yres > 0) {
        img->spacing[0] = 1000.0 / xres;
        img->spacing[1] = 1000.0 / yres;
        img->spacing[2] = 1.0;
        img->affine[0][0] = img->spacing[0];
        img->affine[1][1] = img->spacing[1];
        img->affine[2][2] = 1.0;
    } else {
        img->flags |= SARCO_IMAGE_NO_SPACING;
        sarco_log(r->ctx, SARCO_LOG_INFO, "%s: no pHYs in metres: pixel spacing must come from the caller", r->path);
    }
}

sarco_status sarco_png_read(sarco_context *ctx, const char *path, FILE *fp, uint64_t file_size,
                            sarco_read_mode mode, sarco_image **out_img, uint16_t **out_labels,
                            sarco_picture **out_pic) {
    if (out_img) *out_img = NULL;
    if (out_labels) *out_labels = NULL;
    if (out_pic) *out_pic = NULL;
    if (file_size > PNG_MAX_FILE)
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: a %llu-byte PNG is past the 4 GiB cap", path,
                          (unsigned long long)file_size);
    /* on the heap, not a local: its fields change between setjmp and longjmp */
    pngread *const r = calloc(1, sizeof *r);
    if (!r) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    r->ctx = ctx;
    r->path = path;
    r->mode = mode;
    r->st = SARCO_ERR_BAD_FORMAT;
    r->size = (size_t)file_size;
    sarco_status st;
    if (ctx && ctx->opts.memory_limit && r->size > ctx->opts.memory_limit) {
        st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: the %zu-byte file passes the memory limit", path, r->size);
        goto fail;
    }
    r->buf = malloc(r->size ? r->size : 1);
    if (!r->buf) {
        st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot hold the %zu-byte file", path, r->size);
        goto fail;
    }
    if (fread(r->buf, 1, r->size, fp) != r->size) {
        st = ferror(fp) ? sarco_fail(ctx, SARCO_ERR_IO, "%s: read error: %s", path, strerror(errno))
                        : sarco_fail(ctx, SARCO_ERR_IO, "%s: the file shrank while being read", path);
        goto fail;
    }
    st = prescan(ctx, path, r->buf, r->size, &r->h);
    if (st != SARCO_OK) goto fail;
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r, on_error, on_warning);
    if (r->png) r->info = png_create_info_struct(r->png);
    if (!r->png || !r->info) {
        st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot start libpng", path);
        goto fail;
    }
    if (setjmp(png_jmpbuf(r->png))) {
        /* r itself was not modified since setjmp; what it points to is in memory */
        st = sarco_fail(ctx, r->st, "%s: %s", path, r->msg[0] ? r->msg : "libpng failed");
        goto fail;
    }
    decode(r, &r->h);
    if (out_pic) {
        *out_pic = r->pic;
        r->pic = NULL;
    }
    if (out_img) {
        *out_img = r->img;
        r->img = NULL;
    }
    if (out_labels) {
        *out_labels = r->labels;
        r->labels = NULL;
    }
    cleanup(r);
    return SARCO_OK;
fail:
    cleanup(r);
    return st;
}

/* ---- writer ---- */

/* The encoder's state, on the heap for the same setjmp reason as the reader's. */
typedef struct pngwrite {
    uint8_t *buf;
    size_t size, cap;
    int oom;
    char msg[256];
    png_structp png;
    png_infop info;
} pngwrite;

static void on_write(png_structp png, png_bytep data, size_t n) {
    pngwrite *w = png_get_io_ptr(png);
    if (n > w->cap - w->size) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap - w->size < n) {
            if (cap > SIZE_MAX / 2) {
                w->oom = 1;
                png_error(png, "output too large");
            }
            cap *= 2;
        }
        uint8_t *nb = realloc(w->buf, cap);
        if (!nb) {
            w->oom = 1;
            png_error(png, "out of memory");
        }
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->size, data, n);
    w->size += n;
}

static void on_flush(png_structp png) { (void)png; }

static void on_write_error(png_structp png, png_const_charp msg) {
    pngwrite *w = png_get_error_ptr(png);
    if (!w->msg[0]) snprintf(w->msg, sizeof w->msg, "libpng: %s", msg);
    png_longjmp(png, 1);
}

static void on_write_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static sarco_status check_spacing(sarco_context *ctx, const double *sp, png_uint_32 ppm[2]) {
    for (int a = 0; a < 2; a++) {
        /* pHYs holds whole pixels per metre: 0.001 mm .. 1 m per pixel fit comfortably */
        if (!(sp[a] >= 1e-3 && sp[a] <= 1e3))
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                              "PNG pixel spacing %g mm (axis %d) is not a finite value in 0.001..1000 mm", sp[a], a);
        ppm[a] = (png_uint_32)lround(1000.0 / sp[a]);
        if (ppm[a] == 0) ppm[a] = 1;
    }
    return SARCO_OK;
}

sarco_status sarco_png_encode(sarco_context *ctx, const uint8_t *pixels, int64_t width, int64_t height, int channels,
                              const double *spacing_mm, uint8_t **out, size_t *out_size) {
    if (out) *out = NULL;
    if (out_size) *out_size = 0;
    if (!pixels || !out || !out_size)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "PNG writer: pixels, out and out_size must not be NULL");
    if (channels < 1 || channels > 4)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT,
                          "PNG writer: %d channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)", channels);
    if (width < 1 || height < 1)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "PNG writer: width %lld x height %lld: an empty image",
                          (long long)width, (long long)height);
    if (width > SARCO_PNG_MAX_SIDE || height > SARCO_PNG_MAX_SIDE ||
        (uint64_t)width * (uint64_t)height > SARCO_PNG_MAX_PIXELS)
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "PNG writer: width %lld x height %lld is past the cap (%u a side, %llu "
                          "pixels)", (long long)width, (long long)height, SARCO_PNG_MAX_SIDE,
                          (unsigned long long)SARCO_PNG_MAX_PIXELS);
    png_uint_32 ppm[2] = {0, 0};
    if (spacing_mm) {
        sarco_status s = check_spacing(ctx, spacing_mm, ppm);
        if (s != SARCO_OK) return s;
    }
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                 PNG_COLOR_TYPE_RGB_ALPHA};
    pngwrite *const w = calloc(1, sizeof *w);
    if (!w) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "PNG writer: out of memory");
    sarco_status st = SARCO_OK;
    w->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w, on_write_error, on_write_warning);
    if (w->png) w->info = png_create_info_struct(w->png);
    if (!w->png || !w->info) {
        st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "PNG writer: cannot start libpng");
        goto done;
    }
    if (setjmp(png_jmpbuf(w->png))) {
        st = sarco_fail(ctx, w->oom ? SARCO_ERR_OUT_OF_MEMORY : SARCO_ERR_INTERNAL, "PNG writer: %s",
                        w->msg[0] ? w->msg : "libpng failed");
        goto done;
    }
    png_set_write_fn(w->png, w, on_write, on_flush);
    png_set_IHDR(w->png, w->info, (png_uint_32)width, (png_uint_32)height, 8, types[channels], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (spacing_mm) png_set_pHYs(w->png, w->info, ppm[0], ppm[1], PNG_RESOLUTION_METER);
    png_write_info(w->png, w->info);
    size_t stride = (size_t)width * (size_t)channels;
    for (int64_t y = 0; y < height; y++) png_write_row(w->png, (png_const_bytep)(pixels + (size_t)y * stride));
    png_write_end(w->png, NULL);
    *out = w->buf;
    *out_size = w->size;
    w->buf = NULL;
done:
    if (w->png) png_destroy_write_struct(&w->png, w->info ? &w->info : NULL);
    free(w->buf);
    free(w);
    return st;
}

sarco_status sarco_png_write_ex(sarco_context *ctx, const char *path, const uint8_t *pixels, int64_t width,
                                int64_t height, int channels, const double *spacing_mm,
                                const sarco_write_fault *fault) {
    if (!path || !*path) return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "PNG writer: no output path");
    uint8_t *buf;
    size_t n;
    sarco_status st = sarco_png_encode(ctx, pixels, width, height, channels, spacing_mm, &buf, &n);
    if (st != SARCO_OK) {
        char m[1024];
        snprintf(m, sizeof m, "%s", sarco_last_error(ctx));
        return sarco_fail(ctx, st, "%s: %s", path, m);
    }
    st = sarco_write_file_atomic(ctx, path, buf, n, fault);
    free(buf);
    return st;
}

sarco_status sarco_png_write(sarco_context *ctx, const char *path, const uint8_t *pixels, int64_t width,
                             int64_t height, int channels, const double *spacing_mm) {
    return sarco_png_write_ex(ctx, path, pixels, width, height, channels, spacing_mm, NULL);
}

/* 8-bit grey labels (the nnU-Net PNG label output of sarco_labels_write), through the writer above. */
sarco_status sarco_png_write_grey8(sarco_context *ctx, const char *path, uint32_t width, uint32_t height,
                                   const uint16_t *values) {
    if (width == 0 || height == 0 || width > SARCO_PNG_MAX_SIDE || height > SARCO_PNG_MAX_SIDE)
        return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: cannot write a %ux%u PNG", path, width, height);
    size_t n = (size_t)width * height;
    for (size_t i = 0; i < n; i++)
        if (values[i] > 255)
            return sarco_fail(ctx, SARCO_ERR_INVALID_ARGUMENT, "%s: value %u at pixel %llu does not fit 8 bits", path,
                              values[i], (unsigned long long)i);
    uint8_t *px = malloc(n);
    if (!px) return sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) px[i] = (uint8_t)values[i];
    sarco_status st = sarco_png_write_ex(ctx, path, px, width, height, 1, NULL, NULL);
    free(px);
    return st;
}
