/*
 * vma tool: archive input, plain or compressed
 *
 * The first bytes are read ahead to recognize the format; for a plain
 * archive they are handed out before anything else, and the rest is read
 * straight into the caller's buffer.  Compressed input goes through one
 * input buffer into the decompressor, which writes into the caller's buffer.
 *
 * zlib and libzstd are optional (VMA_HAVE_ZLIB, VMA_HAVE_ZSTD, set by the
 * build when it finds them): without one, an archive compressed that way
 * is refused when it is opened, saying how to decompress it first.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#ifdef VMA_HAVE_ZLIB
#include <zlib.h>
#endif
#ifdef VMA_HAVE_ZSTD
#include <zstd.h>
#endif
#include "vma-input.h"
#include "vma-ops.h"

#define INPUT_BUFFER_SIZE   (256 * 1024)
#define MAGIC_SIZE          4

static const uint8_t gzip_magic[] = { 0x1f, 0x8b };
static const uint8_t zstd_magic[] = { 0x28, 0xb5, 0x2f, 0xfd };

typedef enum InputKind {
    INPUT_PLAIN,
    INPUT_GZIP,
    INPUT_ZSTD,
} InputKind;

struct VmaInput {
    int fd;
    bool close_fd;
    InputKind kind;
    char *error;

    /* Bytes read from fd and not consumed yet: buf[pos..len) */
    uint8_t *buf;
    size_t pos;
    size_t len;
    bool eof;

#ifdef VMA_HAVE_ZLIB
    z_stream zs;
    bool zs_ready;          /* inflateInit2() done */
    bool gzip_member_done;  /* between two gzip members */
#endif
#ifdef VMA_HAVE_ZSTD
    ZSTD_DStream *zds;
    bool zstd_frame_done;   /* between two zstd frames */
#endif
};

static ssize_t input_fail(VmaInput *in, int err, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/* Remember why reading failed; returns -@err for the VmaInputFunc */
static ssize_t input_fail(VmaInput *in, int err, const char *fmt, ...)
{
    va_list ap;

    g_free(in->error);
    va_start(ap, fmt);
    in->error = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return -err;
}

/* read(), retrying EINTR unless the user asked us to stop */
static ssize_t input_read_fd(VmaInput *in, void *buf, size_t len)
{
    ssize_t n;

    do {
        n = read(in->fd, buf, len);
    } while (n < 0 && errno == EINTR && !vma_interrupted);
    if (n < 0) {
        return -errno;
    }
    if (n == 0) {
        in->eof = true;
    }
    return n;
}

/* Read more into the buffer once it is used up; < 0 is an error */
static ssize_t input_fill(VmaInput *in)
{
    ssize_t n;

    if (in->pos < in->len || in->eof) {
        return 0;
    }
    in->pos = in->len = 0;
    n = input_read_fd(in, in->buf, INPUT_BUFFER_SIZE);
    if (n > 0) {
        in->len = n;
    }
    return n;
}

static ssize_t plain_read(VmaInput *in, void *buf, size_t len)
{
    if (in->pos < in->len) {
        size_t n = MIN(len, in->len - in->pos);

        memcpy(buf, in->buf + in->pos, n);
        in->pos += n;
        return n;
    }
    return input_read_fd(in, buf, len);
}

#ifdef VMA_HAVE_ZLIB
/*
 * Zero bytes after the last member (tape or block padding) end the data,
 * as gzip -d accepts them; anything else after them is garbage
 */
static ssize_t gzip_skip_padding(VmaInput *in)
{
    for (;;) {
        ssize_t n;

        for (; in->pos < in->len; in->pos++) {
            if (in->buf[in->pos] != 0) {
                return input_fail(in, EIO, "gzip: trailing garbage after "
                                  "the zero padding");
            }
        }
        n = input_fill(in);
        if (n < 0) {
            return n;
        }
        if (n == 0) {
            return 0;
        }
    }
}

static ssize_t gzip_read(VmaInput *in, void *buf, size_t len)
{
    z_stream *zs = &in->zs;
    uInt want = MIN(len, UINT_MAX);

    zs->next_out = buf;
    zs->avail_out = want;
    for (;;) {
        ssize_t n = input_fill(in);
        bool have_input = in->pos < in->len;
        int ret;

        if (n < 0) {
            return n;
        }
        if (in->gzip_member_done) {
            if (!have_input) {
                return 0;
            }
            if (in->buf[in->pos] == 0) {
                return gzip_skip_padding(in);
            }
            /* gzip files may hold several members one after another */
            inflateReset(zs);
            in->gzip_member_done = false;
        }
        zs->next_in = in->buf + in->pos;
        zs->avail_in = in->len - in->pos;
        ret = inflate(zs, Z_NO_FLUSH);
        in->pos = in->len - zs->avail_in;
        if (ret == Z_STREAM_END) {
            in->gzip_member_done = true;
        } else if (ret == Z_BUF_ERROR && !have_input) {
            return input_fail(in, EIO, "gzip: the compressed data ends "
                              "early");
        } else if (ret != Z_OK) {
            return input_fail(in, EIO, "gzip: %s",
                              zs->msg ? zs->msg : "corrupt data");
        }
        if (zs->avail_out < want) {
            return want - zs->avail_out;
        }
    }
}

#endif /* VMA_HAVE_ZLIB */

#ifdef VMA_HAVE_ZSTD
static ssize_t zstd_read(VmaInput *in, void *buf, size_t len)
{
    ZSTD_outBuffer out = { .dst = buf, .size = len, .pos = 0 };

    for (;;) {
        ssize_t n = input_fill(in);
        ZSTD_inBuffer zin;
        size_t ret;

        if (n < 0) {
            return n;
        }
        if (in->pos == in->len && in->eof && in->zstd_frame_done) {
            /* Asking once more would report the next frame as missing */
            return 0;
        }
        zin = (ZSTD_inBuffer) { .src = in->buf, .size = in->len,
                                .pos = in->pos };
        ret = ZSTD_decompressStream(in->zds, &out, &zin);
        in->pos = zin.pos;
        if (ZSTD_isError(ret)) {
            return input_fail(in, EIO, "zstd: %s", ZSTD_getErrorName(ret));
        }
        /* 0 means a frame is complete; another may follow */
        in->zstd_frame_done = ret == 0;
        if (out.pos > 0) {
            return out.pos;
        }
        if (in->pos == in->len && in->eof) {
            if (!in->zstd_frame_done) {
                return input_fail(in, EIO, "zstd: the compressed data ends "
                                  "early");
            }
            return 0;
        }
    }
}

#endif /* VMA_HAVE_ZSTD */

ssize_t vma_input_read(void *opaque, void *buf, size_t len)
{
    VmaInput *in = opaque;

    if (len == 0) {
        return 0;
    }
    switch (in->kind) {
#ifdef VMA_HAVE_ZLIB
    case INPUT_GZIP:
        return gzip_read(in, buf, len);
#endif
#ifdef VMA_HAVE_ZSTD
    case INPUT_ZSTD:
        return zstd_read(in, buf, len);
#endif
    default:
        return plain_read(in, buf, len);
    }
}

#if !defined(VMA_HAVE_ZSTD) || !defined(VMA_HAVE_ZLIB)
/* Refuse an archive compressed in a way this build cannot read */
static bool input_no_support(const char *path, const char *lib,
                             const char *cmd, GError **errp)
{
    g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                "'%s' is %s-compressed and this vma was built without %s "
                "support: decompress with `%s -dc %s | vma ...`", path, lib,
                lib, cmd, strcmp(path, "-") ? path : "ARCHIVE");
    return false;
}
#endif

static bool input_start_zstd(VmaInput *in, const char *path, GError **errp)
{
#ifdef VMA_HAVE_ZSTD
    in->zds = ZSTD_createDStream();
    if (!in->zds || ZSTD_isError(ZSTD_initDStream(in->zds))) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOMEM,
                    "cannot set up zstd decompression");
        return false;
    }
    return true;
#else
    return input_no_support(path, "zstd", "zstd", errp);
#endif
}

static bool input_start_gzip(VmaInput *in, const char *path, GError **errp)
{
#ifdef VMA_HAVE_ZLIB
    /* 16 + MAX_WBITS: gzip wrapper only */
    if (inflateInit2(&in->zs, 16 + MAX_WBITS) != Z_OK) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOMEM,
                    "cannot set up gzip decompression");
        return false;
    }
    in->zs_ready = true;
    return true;
#else
    return input_no_support(path, "gzip", "gzip", errp);
#endif
}

/* Read the first bytes (fewer only at the end) to see what we have */
static bool input_detect(VmaInput *in, const char *path, GError **errp)
{
    while (in->len < MAGIC_SIZE && !in->eof) {
        ssize_t n = input_read_fd(in, in->buf + in->len,
                                  MAGIC_SIZE - in->len);
        if (n < 0) {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(-n),
                        "cannot read '%s': %s", path, g_strerror(-n));
            return false;
        }
        in->len += n;
    }
    if (in->len >= sizeof(zstd_magic) &&
        !memcmp(in->buf, zstd_magic, sizeof(zstd_magic))) {
        in->kind = INPUT_ZSTD;
        return input_start_zstd(in, path, errp);
    }
    if (in->len >= sizeof(gzip_magic) &&
        !memcmp(in->buf, gzip_magic, sizeof(gzip_magic))) {
        in->kind = INPUT_GZIP;
        return input_start_gzip(in, path, errp);
    }
    return true;
}

VmaInput *vma_input_open(const char *path, GError **errp)
{
    VmaInput *in = g_new0(VmaInput, 1);

    in->buf = g_malloc(INPUT_BUFFER_SIZE);
    if (!strcmp(path, "-")) {
        in->fd = STDIN_FILENO;
    } else {
        in->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (in->fd < 0) {
            int err = errno;

            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                        "cannot open '%s': %s", path, g_strerror(err));
            vma_input_close(in);
            return NULL;
        }
        in->close_fd = true;
        posix_fadvise(in->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    if (!input_detect(in, path, errp)) {
        vma_input_close(in);
        return NULL;
    }
    return in;
}

void vma_input_close(VmaInput *in)
{
    if (!in) {
        return;
    }
    if (in->close_fd) {
        close(in->fd);
    }
#ifdef VMA_HAVE_ZLIB
    if (in->zs_ready) {
        inflateEnd(&in->zs);
    }
#endif
#ifdef VMA_HAVE_ZSTD
    ZSTD_freeDStream(in->zds);
#endif
    g_free(in->error);
    g_free(in->buf);
    g_free(in);
}

bool vma_input_stat(VmaInput *in, struct stat *st)
{
    return fstat(in->fd, st) == 0;
}

const char *vma_input_get_compression(VmaInput *in)
{
    static const char *const names[] = {
        [INPUT_PLAIN] = "plain",
        [INPUT_GZIP] = "gzip",
        [INPUT_ZSTD] = "zstd",
    };

    return names[in->kind];
}

const char *vma_input_get_error(VmaInput *in)
{
    return in->error;
}
