/*
 * vma tool: raw file (or block device) source
 *
 * Holes are found with SEEK_DATA/SEEK_HOLE, so `vma create` records them as
 * zero clusters without reading them.  Where the file system or device
 * cannot say, everything is data.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vma-ops.h"

typedef struct RawSource {
    VmaSource common;
    int fd;
    bool seek_data_works;   /* cleared on the first EINVAL/ENOTSUP */
} RawSource;

static bool raw_source_error(GError **errp, int err, const char *name,
                             const char *what)
{
    g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                "%s '%s': %s", what, name, g_strerror(err));
    return false;
}

/* Size of a regular file or block device; anything else has none */
static bool raw_source_get_size(RawSource *s, GError **errp)
{
    struct stat st;
    off_t end;

    if (fstat(s->fd, &st) < 0) {
        return raw_source_error(errp, errno, s->common.name, "cannot stat");
    }
    if (S_ISREG(st.st_mode)) {
        s->common.size = st.st_size;
        return true;
    }
    if (!S_ISBLK(st.st_mode)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "'%s' is neither a regular file nor a block device",
                    s->common.name);
        return false;
    }
    end = lseek(s->fd, 0, SEEK_END);
    if (end < 0) {
        return raw_source_error(errp, errno, s->common.name,
                                "cannot get the size of");
    }
    s->common.size = end;
    return true;
}

static void raw_source_close(VmaSource *src)
{
    RawSource *s = (RawSource *)src;

    if (!s) {
        return;
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    g_free(s->common.name);
    g_free(s);
}

static VmaSource *raw_source_open(const char *format, const char *path,
                                  GError **errp)
{
    RawSource *s = g_new0(RawSource, 1);

    s->common.ops = &vma_source_raw_ops;
    s->common.name = g_strdup(path);
    s->seek_data_works = true;
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
        raw_source_error(errp, errno, path, "cannot open");
        raw_source_close(&s->common);
        return NULL;
    }
    if (!raw_source_get_size(s, errp)) {
        raw_source_close(&s->common);
        return NULL;
    }
    /* We read each byte once, front to back */
    posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return &s->common;
}

static bool raw_source_read(VmaSource *src, uint64_t offset, void *buf,
                            size_t len, GError **errp)
{
    RawSource *s = (RawSource *)src;
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(s->fd, (uint8_t *)buf + done, len - done,
                          offset + done);
        if (n < 0 && errno == EINTR && !vma_interrupted) {
            continue;
        }
        if (n < 0) {
            return raw_source_error(errp, errno, src->name, "cannot read");
        }
        if (n == 0) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_IO,
                        "'%s' shrank while reading it (end of file at "
                        "%" G_GUINT64_FORMAT ", size was %" G_GUINT64_FORMAT
                        ")", src->name, offset + done, src->size);
            return false;
        }
        done += n;
    }
    return true;
}

static bool raw_source_next_extent(VmaSource *src, uint64_t offset,
                                   bool *is_data, uint64_t *end,
                                   GError **errp)
{
    RawSource *s = (RawSource *)src;
    off_t data, hole;

    *is_data = true;
    *end = src->size;
    if (!s->seek_data_works) {
        return true;
    }

    data = lseek(s->fd, offset, SEEK_DATA);
    if (data < 0) {
        switch (errno) {
        case ENXIO:             /* no data after @offset */
            *is_data = false;
            return true;
        case EINVAL:            /* no SEEK_DATA support: all data */
        case ENOTSUP:
            s->seek_data_works = false;
            return true;
        default:
            return raw_source_error(errp, errno, src->name,
                                    "cannot look for data in");
        }
    }
    if ((uint64_t)data > offset) {
        *is_data = false;
        *end = MIN((uint64_t)data, src->size);
        return true;
    }

    hole = lseek(s->fd, offset, SEEK_HOLE);
    if (hole < 0) {
        return raw_source_error(errp, errno, src->name,
                                "cannot look for holes in");
    }
    /* A file that grew or shrank meanwhile must not confuse the caller */
    *end = MAX(MIN((uint64_t)hole, src->size), offset + 1);
    return true;
}

const VmaSourceOps vma_source_raw_ops = {
    .open = raw_source_open,
    .read = raw_source_read,
    .next_extent = raw_source_next_extent,
    .close = raw_source_close,
};
