/* JPEG reading with libjpeg-turbo (the libjpeg 6.2 API). The file is read whole; libjpeg parses the
 * markers, and before anything image-sized is allocated we check the frame: size caps, colour space,
 * and that the file holds enough bytes for the blocks it declares. libjpeg's errors, and the
 * warnings that mean damaged data (a truncated file, corrupt entropy data), longjmp back to one
 * place that frees everything: all state lives in one heap struct reached through a pointer that is
 * not modified after setjmp. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "imageio.h"

/* libjpeg's working memory (progressive coefficient buffers are the big part) */
#define JPEG_MAX_WORK ((long)1 << 31)

typedef struct jpegread {
    struct jpeg_decompress_struct cinfo; /* first: libjpeg hands us &cinfo, we cast back */
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr prog;
    jmp_buf jb;
    sarco_context *ctx;
    const char *path;
    sarco_read_mode mode;
    int started;             /* jpeg_create_decompress was called */
    sarco_status st;         /* the status for a longjmp; BAD_FORMAT unless set otherwise */
    char msg[JMSG_LENGTH_MAX + 200];
    uint8_t *buf;            /* the whole file */
    size_t size;
    JSAMPLE *row;            /* one decoded row */
    sarco_image *img;
    sarco_picture *pic;
} jpegread;

static void fail_jump(jpegread *r, sarco_status st, const char *fmt, const char *detail) {
    if (r->msg[0] == '\0') {
        snprintf(r->msg, sizeof r->msg, fmt, detail);
        r->st = st;
    }
    longjmp(r->jb, 1);
}

static void on_error(j_common_ptr cinfo) {
    jpegread *r = (jpegread *)(void *)cinfo;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    int code = cinfo->err->msg_code;
    sarco_status st = SARCO_ERR_BAD_FORMAT;
    if (code == JERR_OUT_OF_MEMORY || code == JERR_BAD_ALLOC_CHUNK || code == JERR_NO_BACKING_STORE ||
        code == JERR_TFILE_CREATE)
        st = SARCO_ERR_LIMIT; /* past our cap on libjpeg's working memory */
    else if (code == JERR_IMAGE_TOO_BIG || code == JERR_WIDTH_OVERFLOW)
        st = SARCO_ERR_LIMIT;
    else if (code == JERR_BAD_PRECISION || code == JERR_NOT_COMPILED || code == JERR_CONVERSION_NOTIMPL)
        st = SARCO_ERR_UNSUPPORTED; /* e.g. 12-bit samples */
    fail_jump(r, st, "libjpeg: %s", text);
}

/* Warnings (msg_level -1) that mean the data is damaged end the read; trace messages are dropped. */
static void on_message(j_common_ptr cinfo, int msg_level) {
    jpegread *r = (jpegread *)(void *)cinfo;
    if (msg_level >= 0) return;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF: fail_jump(r, SARCO_ERR_BAD_FORMAT, "truncated: the data ends early (libjpeg: %s)", text); break;
    case JWRN_JFIF_MAJOR:
    case JWRN_ADOBE_XFORM:
    case JWRN_BOGUS_ICC: sarco_log(r->ctx, SARCO_LOG_WARN, "%s: libjpeg: %s", r->path, text); break;
    default: fail_jump(r, SARCO_ERR_BAD_FORMAT, "corrupt JPEG data (libjpeg: %s)", text);
    }
}

/* Progressive files can hold any number of scans, each a pass over the whole coefficient buffer. */
static void on_progress(j_common_ptr cinfo) {
    jpegread *r = (jpegread *)(void *)cinfo;
    if (r->cinfo.progressive_mode && r->cinfo.input_scan_number > SARCO_JPEG_MAX_SCANS) {
        char n[32];
        snprintf(n, sizeof n, "%d", r->cinfo.input_scan_number);
        fail_jump(r, SARCO_ERR_LIMIT, "a progressive JPEG with more than %s scans (cap 1000): refused", n);
    }
}

static void cleanup(jpegread *r) {
    if (r->started) jpeg_destroy_decompress(&r->cinfo);
    free(r->buf);
    free(r->row);
    sarco_image_free(r->img);
    sarco_picture_free(r->pic);
    free(r);
}

static void fail_now(jpegread *r, sarco_status st, const char *msg) {
    snprintf(r->msg, sizeof r->msg, "%s", msg);
    r->st = st;
    longjmp(r->jb, 1);
}

/* Everything libjpeg touches; returns with r->img or r->pic filled, or longjmps. */
static void decode(jpegread *r) {
    j_decompress_ptr ci = &r->cinfo;
    char m[400];
    jpeg_mem_src(ci, r->buf, (unsigned long)r->size);
    if (jpeg_read_header(ci, TRUE) != JPEG_HEADER_OK) fail_now(r, SARCO_ERR_BAD_FORMAT, "no image in the file");
    const JDIMENSION w = ci->image_width, h = ci->image_height;
    if (w == 0 || h == 0) { /* libjpeg refuses these itself; kept for clarity */
        snprintf(m, sizeof m, "width %u x height %u: an empty image", w, h);
        fail_now(r, SARCO_ERR_BAD_FORMAT, m);
    }
    if (w > SARCO_PNG_MAX_SIDE || h > SARCO_PNG_MAX_SIDE || (uint64_t)w * h > SARCO_PNG_MAX_PIXELS) {
        snprintf(m, sizeof m, "width %u x height %u is past the cap (%u pixels a side, %llu pixels)", w, h,
                 SARCO_PNG_MAX_SIDE, (unsigned long long)SARCO_PNG_MAX_PIXELS);
        fail_now(r, SARCO_ERR_LIMIT, m);
    }
    int channels;
    switch (ci->jpeg_color_space) {
    case JCS_GRAYSCALE:
        ci->out_color_space = JCS_GRAYSCALE;
        channels = 1;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        ci->out_color_space = JCS_RGB;
        channels = 3;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        fail_now(r, SARCO_ERR_UNSUPPORTED, "a CMYK JPEG (print colours): convert it to RGB or grey first");
        return;
    default:
        snprintf(m, sizeof m, "a JPEG with %d components in an unknown colour space", ci->num_components);
        fail_now(r, SARCO_ERR_UNSUPPORTED, m);
        return;
    }
    if (r->mode == SARCO_READ_LABELS)
        fail_now(r, SARCO_ERR_UNSUPPORTED, "a JPEG cannot hold labels (lossy compression changes them): use PNG");
    /* Huffman coding spends at least one bit per 8x8 block (its DC code), so a file of n bytes holds at
     * most 8n blocks: a header that declares more is truncated or a decompression bomb. */
    uint64_t blocks = 0;
    for (int c = 0; c < ci->num_components; c++)
        blocks += (uint64_t)ci->comp_info[c].width_in_blocks * ci->comp_info[c].height_in_blocks;
    if (!ci->arith_code && blocks > 8 * (uint64_t)r->size) {
        snprintf(m, sizeof m, "%zu bytes cannot hold the %llu blocks of a %u x %u image: truncated, or a "
                 "decompression bomb", r->size, (unsigned long long)blocks, w, h);
        fail_now(r, SARCO_ERR_BAD_FORMAT, m);
    }
    /* the decoding settings PIL uses (libjpeg's defaults), so values agree with it */
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(ci);
    if ((int)ci->output_components != channels || ci->output_width != w || ci->output_height != h) {
        snprintf(m, sizeof m, "libjpeg gives %d components of %u x %u, expected %d of %u x %u", ci->output_components,
                 ci->output_width, ci->output_height, channels, w, h);
        fail_now(r, SARCO_ERR_INTERNAL, m);
    }
    sarco_status st;
    int64_t dims[3] = {(int64_t)w, (int64_t)h, 1};
    if (r->mode == SARCO_READ_PICTURE) {
        st = sarco_picture_alloc(r->ctx, w, h, channels, &r->pic);
        if (st == SARCO_OK) {
            r->pic->bit_depth = 8;
            r->pic->format = SARCO_PICTURE_FORMAT_JPEG;
        }
    } else {
        st = sarco_image_alloc(r->ctx, 2, dims, 1, &r->img);
    }
    if (st != SARCO_OK) fail_now(r, st, sarco_last_error(r->ctx));
    r->row = malloc((size_t)w * (size_t)channels);
    if (!r->row) fail_now(r, SARCO_ERR_OUT_OF_MEMORY, "out of memory for one row");
    const size_t plane = (size_t)w * h;
    while (ci->output_scanline < h) {
        JDIMENSION y = ci->output_scanline;
        JSAMPROW rows[1] = {r->row};
        if (jpeg_read_scanlines(ci, rows, 1) != 1) fail_now(r, SARCO_ERR_BAD_FORMAT, "truncated: no more rows");
        const JSAMPLE *p = r->row;
        if (r->pic) {
            float *d = r->pic->data + (size_t)y * w;
            for (JDIMENSION x = 0; x < w; x++)
                for (int c = 0; c < channels; c++) d[x + (size_t)c * plane] = p[(size_t)x * channels + c];
        } else {
            float *d = r->img->data + (size_t)y * w;
            for (JDIMENSION x = 0; x < w; x++) {
                if (channels == 1) {
                    d[x] = p[x];
                } else { /* ITU-R BT.601 luma in double, as the PNG reader: exactly R when R = G = B */
                    unsigned R = p[3 * x], G = p[3 * x + 1], B = p[3 * x + 2];
                    d[x] = (float)((R == G && G == B) ? (double)R : 0.299 * R + 0.587 * G + 0.114 * B);
                }
            }
        }
    }
    jpeg_finish_decompress(ci); /* reads up to EOI: a missing EOI is the JWRN_JPEG_EOF warning */

    /* JFIF density: 1 = dots per inch, 2 = dots per cm; 0 = an aspect ratio only. 72 and 96 dpi are what
     * writers put in by default (a screen, not a probe), so they say nothing about the pixel size. */
    double sp_col = 0, sp_row = 0;
    if (ci->saw_JFIF_marker && (ci->density_unit == 1 || ci->density_unit == 2) && ci->X_density > 0 &&
        ci->Y_density > 0) {
        int placeholder = ci->density_unit == 1 && (ci->X_density == 72 || ci->X_density == 96) &&
                          ci->Y_density == ci->X_density;
        if (placeholder) {
            sarco_log(r->ctx, SARCO_LOG_INFO, "%s: JFIF density %u dpi is a writer's default, not a pixel size: "
                      "pixel spacing must come from the caller", r->path, ci->X_density);
        } else {
            double per = ci->density_unit == 1 ? 25.4 : 10.0;
            sp_col = per / ci->X_density;
            sp_row = per / ci->Y_density;
        }
    } else {
        sarco_log(r->ctx, SARCO_LOG_INFO, "%s: no JFIF density: pixel spacing must come from the caller", r->path);
    }
    if (r->pic) {
        if (sp_col > 0) {
            r->pic->spacing[0] = sp_row;
            r->pic->spacing[1] = sp_col;
            r->pic->flags &= ~SARCO_IMAGE_NO_SPACING;
        }
    } else if (sp_col > 0) {
        sarco_image *img = r->img;
        img->spacing[0] = sp_col;
        img->spacing[1] = sp_row;
        img->spacing[2] = 1.0;
        img->affine[0][0] = sp_col;
        img->affine[1][1] = sp_row;
        img->affine[2][2] = 1.0;
    } else {
        r->img->flags |= SARCO_IMAGE_NO_SPACING;
    }
}

sarco_status sarco_jpeg_read(sarco_context *ctx, const char *path, FILE *fp, uint64_t file_size,
                             sarco_read_mode mode, sarco_image **out_img, uint16_t **out_labels,
                             sarco_picture **out_pic) {
    if (out_img) *out_img = NULL;
    if (out_labels) *out_labels = NULL;
    if (out_pic) *out_pic = NULL;
    if (file_size > SARCO_JPEG_MAX_FILE)
        return sarco_fail(ctx, SARCO_ERR_LIMIT, "%s: a %llu-byte JPEG is past the 1 GiB cap", path,
                          (unsigned long long)file_size);
    if (file_size < 4)
        return sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: truncated: %llu bytes cannot hold a JPEG", path,
                          (unsigned long long)file_size);
    /* on the heap, not a local: its fields change between setjmp and longjmp */
    jpegread *const r = calloc(1, sizeof *r);
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
    r->buf = malloc(r->size);
    if (!r->buf) {
        st = sarco_fail(ctx, SARCO_ERR_OUT_OF_MEMORY, "%s: cannot hold the %zu-byte file", path, r->size);
        goto fail;
    }
    if (fread(r->buf, 1, r->size, fp) != r->size) {
        st = ferror(fp) ? sarco_fail(ctx, SARCO_ERR_IO, "%s: read error: %s", path, strerror(errno))
                        : sarco_fail(ctx, SARCO_ERR_IO, "%s: the file shrank while being read", path);
        goto fail;
    }
    if (!(r->buf[0] == 0xff && r->buf[1] == 0xd8)) {
        st = sarco_fail(ctx, SARCO_ERR_BAD_FORMAT, "%s: bad JPEG signature (no SOI marker: not a JPEG, or damaged)",
                        path);
        goto fail;
    }
    r->cinfo.err = jpeg_std_error(&r->jerr);
    r->jerr.error_exit = on_error;
    r->jerr.emit_message = on_message;
    if (setjmp(r->jb)) {
        /* r itself was not modified since setjmp; what it points to is in memory */
        st = sarco_fail(ctx, r->st, "%s: %s", path, r->msg[0] ? r->msg : "libjpeg failed");
        goto fail;
    }
    jpeg_create_decompress(&r->cinfo);
    r->started = 1;
    r->cinfo.mem->max_memory_to_use = JPEG_MAX_WORK;
    if (ctx && ctx->opts.memory_limit && (size_t)JPEG_MAX_WORK > ctx->opts.memory_limit)
        r->cinfo.mem->max_memory_to_use = (long)ctx->opts.memory_limit;
    r->prog.progress_monitor = on_progress;
    r->cinfo.progress = &r->prog;
    decode(r);
    if (out_pic) {
        *out_pic = r->pic;
        r->pic = NULL;
    }
    if (out_img) {
        *out_img = r->img;
        r->img = NULL;
    }
    cleanup(r);
    return SARCO_OK;
fail:
    cleanup(r);
    return st;
}
