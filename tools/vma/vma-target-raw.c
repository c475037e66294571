/*
 * vma tool: raw file target
 *
 * Two uses:
 * - create(): a new file in the extract directory, made as "tmp-<name>"
 *   next to its final name, sized with ftruncate() so that everything not
 *   written stays a hole, and renamed into place only when it is committed.
 *   Discarding it unlinks the temporary.
 * - open(): an existing file or block device named in the restore map.  It
 *   keeps its size; zeroes are written (holes punched) only where it is not
 *   known to read as zeroes already.  Committing makes it durable.
 *
 * Durability: a created file is fsync()ed before its rename and its
 * directory after it; an opened target is fdatasync()ed when committed.
 *
 * Linux extras (hole punching, BLKZEROOUT, renameat2(RENAME_NOREPLACE)) are
 * used where the headers have them; elsewhere the POSIX fallbacks (writing
 * zeroes, check-then-rename) do the same more slowly.
 *
 * Clusters arrive one at a time; adjacent writes are gathered into one
 * larger pwrite().  One buffer serves all targets: whenever another target
 * writes, the pending data of the previous one goes out first, so memory
 * does not grow with the number of disks.  The tool is single threaded.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#ifdef __linux__
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#endif
#include <sys/stat.h>
#include <unistd.h>
#include "vma-ops.h"

#define RAW_TARGET_GATHER_SIZE  (1024 * 1024)
#define RAW_TARGET_ZERO_BUF     (64 * 1024)

typedef struct RawTarget {
    VmaTarget common;
    int fd;
    int dirfd;          /* create(): where the file is; else -1 */
    char *tmp_path;     /* create(): relative to dirfd */
    char *final_path;
    bool zero_known;    /* reads as zeroes where nothing was written */
    bool is_blockdev;
    /* open(): a range to zero, grown while zero ranges are adjacent */
    uint64_t zero_offset;
    uint64_t zero_len;
} RawTarget;

/* Writes waiting to go out as one pwrite() */
static struct {
    unsigned targets;   /* open targets; the last one frees buf */
    RawTarget *owner;   /* NULL: nothing pending */
    uint64_t offset;
    size_t len;
    uint8_t *buf;       /* RAW_TARGET_GATHER_SIZE, allocated on first use */
} gather;

static const uint8_t zero_buf[RAW_TARGET_ZERO_BUF];

static bool raw_target_error(GError **errp, int err, RawTarget *t,
                             const char *what)
{
    g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                "%s '%s': %s", what, t->common.name, g_strerror(err));
    return false;
}

static bool raw_target_pwrite(RawTarget *t, uint64_t offset, const void *buf,
                              size_t len, GError **errp)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pwrite(t->fd, (const uint8_t *)buf + done, len - done,
                           offset + done);
        if (n < 0 && errno == EINTR && !vma_interrupted) {
            continue;
        }
        if (n < 0) {
            return raw_target_error(errp, errno, t, "cannot write");
        }
        if (n == 0) {
            return raw_target_error(errp, ENOSPC, t, "cannot write");
        }
        done += n;
    }
    return true;
}

/* Write out the gathered data (of whichever target it belongs to) */
static bool gather_flush(GError **errp)
{
    RawTarget *owner = gather.owner;

    if (!owner) {
        return true;
    }
    gather.owner = NULL;
    return raw_target_pwrite(owner, gather.offset, gather.buf, gather.len,
                             errp);
}

static bool raw_target_write(VmaTarget *target, uint64_t offset,
                             const void *buf, size_t len, GError **errp)
{
    RawTarget *t = (RawTarget *)target;

    if (gather.owner == t && offset == gather.offset + gather.len &&
        len <= RAW_TARGET_GATHER_SIZE - gather.len) {
        memcpy(gather.buf + gather.len, buf, len);
        gather.len += len;
        return true;
    }
    if (!gather_flush(errp)) {
        return false;
    }
    if (len >= RAW_TARGET_GATHER_SIZE / 2) {
        return raw_target_pwrite(t, offset, buf, len, errp);
    }
    if (!gather.buf) {
        gather.buf = g_malloc(RAW_TARGET_GATHER_SIZE);
    }
    memcpy(gather.buf, buf, len);
    gather.owner = t;
    gather.offset = offset;
    gather.len = len;
    return true;
}

/*
 * Make a range of an existing target read as zeroes: punch a hole in a
 * file, BLKZEROOUT on a block device, and where neither works, write them.
 */
static bool raw_target_zero_range(RawTarget *t, uint64_t offset, uint64_t len,
                                  GError **errp)
{
#ifdef __linux__
    if (!t->is_blockdev) {
        if (fallocate(t->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      offset, len) == 0 ||
            fallocate(t->fd, FALLOC_FL_ZERO_RANGE, offset, len) == 0) {
            return true;
        }
    } else if (offset % 512 == 0 && len % 512 == 0) {
        uint64_t range[2] = { offset, len };

        if (ioctl(t->fd, BLKZEROOUT, range) == 0) {
            return true;
        }
    }
#endif
    while (len > 0) {
        size_t n = MIN(len, sizeof(zero_buf));

        if (!raw_target_pwrite(t, offset, zero_buf, n, errp)) {
            return false;
        }
        offset += n;
        len -= n;
    }
    return true;
}

static bool raw_target_flush_zeroes(RawTarget *t, GError **errp)
{
    uint64_t len = t->zero_len;

    t->zero_len = 0;
    return !len || raw_target_zero_range(t, t->zero_offset, len, errp);
}

static bool raw_target_write_zeroes(VmaTarget *target, uint64_t offset,
                                    uint64_t len, GError **errp)
{
    RawTarget *t = (RawTarget *)target;

    /*
     * A created file is all holes and every range is written at most once,
     * so ranges not written are zero already; so is a target the restore
     * map says reads as zeroes.
     */
    if (t->zero_known) {
        return true;
    }
    if (t->zero_len && offset == t->zero_offset + t->zero_len) {
        t->zero_len += len;
        return true;
    }
    if (!raw_target_flush_zeroes(t, errp)) {
        return false;
    }
    t->zero_offset = offset;
    t->zero_len = len;
    return true;
}

static bool raw_target_flush(VmaTarget *target, GError **errp)
{
    RawTarget *t = (RawTarget *)target;

    if (!raw_target_flush_zeroes(t, errp)) {
        return false;
    }
    if (gather.owner != t) {
        return true;
    }
    return gather_flush(errp);
}

static void raw_target_free(RawTarget *t)
{
    if (gather.owner == t) {
        gather.owner = NULL;
    }
    if (--gather.targets == 0) {
        g_clear_pointer(&gather.buf, g_free);
    }
    if (t->fd >= 0) {
        close(t->fd);
    }
    if (t->dirfd >= 0) {
        close(t->dirfd);
    }
    g_free(t->tmp_path);
    g_free(t->final_path);
    g_free(t->common.name);
    g_free(t);
}

static RawTarget *raw_target_new(const char *name, uint64_t size)
{
    RawTarget *t = g_new0(RawTarget, 1);

    gather.targets++;
    t->common.ops = &vma_target_raw_ops;
    t->common.name = g_strdup(name);
    t->common.size = size;
    t->common.sparse_blocks = true;
    t->fd = -1;
    t->dirfd = -1;
    return t;
}

/* Rename without ever replacing an existing file */
static int rename_noreplace(int dirfd, const char *from, const char *to)
{
    struct stat st;

#if defined(__linux__) && defined(RENAME_NOREPLACE)
    if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0) {
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS) {
        return -errno;
    }
#endif
    /* The file system cannot do it atomically: check, then rename */
    if (fstatat(dirfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        return -EEXIST;
    }
    return renameat(dirfd, from, dirfd, to) == 0 ? 0 : -errno;
}

static bool raw_target_commit(RawTarget *t, GError **errp)
{
    int fd = t->fd;
    int ret;

    if (!raw_target_flush(&t->common, errp)) {
        return false;
    }
    /*
     * A disk restored in place must be on disk when we say it is done; a
     * new file before its name says it is complete (a crash must not leave
     * a complete-looking file with missing data)
     */
    if (t->tmp_path ? fsync(fd) < 0 :
        fdatasync(fd) < 0 && errno != EINVAL) {
        return raw_target_error(errp, errno, t, "cannot write");
    }
    t->fd = -1;
    if (close(fd) < 0) {
        return raw_target_error(errp, errno, t, "cannot write");
    }
    if (!t->tmp_path) {
        return true;
    }
    ret = rename_noreplace(t->dirfd, t->tmp_path, t->final_path);
    if (ret < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(-ret),
                    "cannot rename '%s' to '%s': %s", t->tmp_path,
                    t->final_path, g_strerror(-ret));
        return false;
    }
    /* The rename itself */
    if (fsync(t->dirfd) < 0 && errno != EINVAL) {
        return raw_target_error(errp, errno, t,
                                "cannot sync the directory of");
    }
    return true;
}

static bool raw_target_close(VmaTarget *target, bool commit, GError **errp)
{
    RawTarget *t = (RawTarget *)target;
    bool ok = commit && raw_target_commit(t, errp);

    if (!ok && t->tmp_path) {
        unlinkat(t->dirfd, t->tmp_path, 0);
    }
    raw_target_free(t);
    return ok || !commit;
}

static VmaTarget *raw_target_create(int dirfd, const char *path,
                                    uint64_t size, GError **errp)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *base = g_path_get_basename(path);
    g_autofree char *tmp_base = g_strconcat("tmp-", base, NULL);
    g_autofree char *tmp_path = strcmp(dir, ".") ?
        g_build_filename(dir, tmp_base, NULL) : g_strdup(tmp_base);
    RawTarget *t = raw_target_new(tmp_path, size);

    t->zero_known = true;
    t->final_path = g_strdup(path);
    t->tmp_path = g_steal_pointer(&tmp_path);

    /* Our own copy: the caller may close its directory before we commit */
    if (dirfd == AT_FDCWD) {
        t->dirfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } else {
        t->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    }
    if (t->dirfd < 0) {
        raw_target_error(errp, errno, t, "cannot create");
        raw_target_free(t);
        return NULL;
    }
    t->fd = openat(t->dirfd, t->tmp_path,
                   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                   0666);
    if (t->fd < 0) {
        raw_target_error(errp, errno, t, "cannot create");
        raw_target_free(t);
        return NULL;
    }
    if (size && ftruncate(t->fd, size) < 0) {
        raw_target_error(errp, errno, t, "cannot set the size of");
        raw_target_close(&t->common, false, NULL);
        return NULL;
    }
    return &t->common;
}

/* Refuse what only the QEMU build can do */
static bool raw_target_check_options(const char *path,
                                     const VmaTargetOptions *opts,
                                     GError **errp)
{
    const char *what = opts->bps ? "throttling.bps" :
                       opts->group ? "throttling.group" :
                       opts->cache ? "cache" : NULL;

    if (what) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "target '%s': '%s' needs the vma tool built with QEMU",
                    path, what);
        return false;
    }
    return true;
}

static VmaTarget *raw_target_open(const char *format, const char *path,
                                  const VmaTargetOptions *opts, GError **errp)
{
    RawTarget *t;
    struct stat st;
    off_t end;

    if (!raw_target_check_options(path, opts, errp)) {
        return NULL;
    }
    t = raw_target_new(path, 0);
    t->zero_known = opts->zero_known;
    /* Without known zeroes, whole clusters are one write, not several */
    t->common.sparse_blocks = opts->zero_known;
    t->fd = open(path, O_WRONLY | O_CLOEXEC);
    if (t->fd < 0) {
        raw_target_error(errp, errno, t, "cannot open");
        raw_target_free(t);
        return NULL;
    }
    if (fstat(t->fd, &st) < 0) {
        raw_target_error(errp, errno, t, "cannot stat");
        raw_target_free(t);
        return NULL;
    }
    if (S_ISREG(st.st_mode)) {
        t->common.size = st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        t->is_blockdev = true;
        end = lseek(t->fd, 0, SEEK_END);
        if (end < 0) {
            raw_target_error(errp, errno, t, "cannot get the size of");
            raw_target_free(t);
            return NULL;
        }
        t->common.size = end;
    } else {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "target '%s' is neither a regular file nor a block "
                    "device", path);
        raw_target_free(t);
        return NULL;
    }
    return &t->common;
}

const VmaTargetOps vma_target_raw_ops = {
    .create = raw_target_create,
    .open = raw_target_open,
    .write = raw_target_write,
    .write_zeroes = raw_target_write_zeroes,
    .flush = raw_target_flush,
    .close = raw_target_close,
};
