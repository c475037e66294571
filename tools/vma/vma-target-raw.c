/*
 * vma tool: raw file target
 *
 * The file is created as "tmp-<name>" next to its final name, sized with
 * ftruncate() so that everything not written stays a hole, and renamed into
 * place only when it is committed.  Discarding it unlinks the temporary.
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
#include <sys/stat.h>
#include <unistd.h>
#include "vma-ops.h"

#define RAW_TARGET_GATHER_SIZE  (1024 * 1024)

typedef struct RawTarget {
    VmaTarget common;
    int dirfd;
    char *tmp_path;     /* relative to dirfd */
    char *final_path;
    int fd;
} RawTarget;

/* Writes waiting to go out as one pwrite() */
static struct {
    unsigned targets;   /* open targets; the last one frees buf */
    RawTarget *owner;   /* NULL: nothing pending */
    uint64_t offset;
    size_t len;
    uint8_t *buf;       /* RAW_TARGET_GATHER_SIZE, allocated on first use */
} gather;

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

static bool raw_target_write_zeroes(VmaTarget *target, uint64_t offset,
                                    uint64_t len, GError **errp)
{
    /*
     * create() always makes a new file and every range is written at most
     * once, so ranges not written are holes already.
     */
    return true;
}

static bool raw_target_flush(VmaTarget *target, GError **errp)
{
    if (gather.owner != (RawTarget *)target) {
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

/* Rename without ever replacing an existing file */
static int rename_noreplace(int dirfd, const char *from, const char *to)
{
    struct stat st;

    if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0) {
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS) {
        return -errno;
    }
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
    t->fd = -1;
    if (close(fd) < 0) {
        return raw_target_error(errp, errno, t, "cannot write");
    }
    ret = rename_noreplace(t->dirfd, t->tmp_path, t->final_path);
    if (ret < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(-ret),
                    "cannot rename '%s' to '%s': %s", t->tmp_path,
                    t->final_path, g_strerror(-ret));
        return false;
    }
    return true;
}

static bool raw_target_close(VmaTarget *target, bool commit, GError **errp)
{
    RawTarget *t = (RawTarget *)target;
    bool ok = commit && raw_target_commit(t, errp);

    if (!ok) {
        unlinkat(t->dirfd, t->tmp_path, 0);
    }
    raw_target_free(t);
    return ok || !commit;
}

static VmaTarget *raw_target_create(int dirfd, const char *path,
                                    uint64_t size, GError **errp)
{
    RawTarget *t = g_new0(RawTarget, 1);
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *base = g_path_get_basename(path);
    g_autofree char *tmp_base = g_strconcat("tmp-", base, NULL);

    gather.targets++;
    t->common.ops = &vma_target_raw_ops;
    t->common.size = size;
    t->fd = -1;
    t->final_path = g_strdup(path);
    t->tmp_path = strcmp(dir, ".") ? g_build_filename(dir, tmp_base, NULL)
                                   : g_strdup(tmp_base);
    t->common.name = g_strdup(t->tmp_path);

    /* Our own copy: the caller may close its directory before we commit */
    if (dirfd == AT_FDCWD) {
        t->dirfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
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

const VmaTargetOps vma_target_raw_ops = {
    .format = "raw",
    .create = raw_target_create,
    .write = raw_target_write,
    .write_zeroes = raw_target_write_zeroes,
    .flush = raw_target_flush,
    .close = raw_target_close,
};
