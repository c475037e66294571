/*
 * VM backup into a VMA archive: the archive output
 *
 * The archive goes to a regular file, a FIFO or a passed file descriptor.
 * A reader on the other end of a pipe may be slow or stop reading at all,
 * so a write must never block QEMU's main loop or an iothread: each write
 * runs in a worker thread of the caller's AioContext pool while the calling
 * coroutine yields.  The fd is non-blocking and the worker polls it together
 * with a cancel notifier, so cancelling a backup also wakes a write that
 * waits for a reader that never comes.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "qapi/error.h"
#include "qemu/cutils.h"
#include "qemu/event_notifier.h"
#include "block/thread-pool.h"
#include "monitor/monitor.h"
#include "block/backup-vma.h"

struct BackupVmaOutput {
    int fd;
    bool cancelled;         /* atomic: every pending and later write fails */
    EventNotifier cancel;   /* wakes a worker waiting in poll() */
};

typedef struct BackupVmaOutputWrite {
    BackupVmaOutput *out;
    const uint8_t *buf;
    size_t len;
} BackupVmaOutputWrite;

/* Open @path for the archive; see the backup-file doc in qapi/backup.json */
static int output_open_fd(const char *path, Error **errp)
{
    const char *fdname;
    struct stat st;
    int fd;

    if (strstart(path, "/dev/fdname/", &fdname)) {
        return monitor_get_fd(monitor_cur(), fdname, errp);
    }
    if (g_str_has_prefix(path, "/dev/fdset/")) {
        return qemu_open(path, O_WRONLY, errp);
    }
    if (stat(path, &st) == 0) {
        if (!S_ISFIFO(st.st_mode)) {
            error_setg(errp, "backup file '%s' already exists", path);
            return -1;
        }
        /* Non-blocking: fails at once instead of waiting for a reader */
        fd = qemu_open(path, O_WRONLY | O_NONBLOCK, errp);
        if (fd < 0) {
            error_prepend(errp, "no reader on the FIFO? ");
        }
        return fd;
    }
    return qemu_create(path, O_WRONLY | O_EXCL, 0600, errp);
}

BackupVmaOutput *backup_vma_output_open(const char *path, Error **errp)
{
    BackupVmaOutput *out;
    int fd = output_open_fd(path, errp);

    if (fd < 0) {
        return NULL;
    }
    if (!g_unix_set_fd_nonblocking(fd, true, NULL)) {
        error_setg_errno(errp, errno, "cannot make the backup file "
                         "non-blocking");
        close(fd);
        return NULL;
    }
    out = g_new0(BackupVmaOutput, 1);
    out->fd = fd;
    if (event_notifier_init(&out->cancel, false) < 0) {
        error_setg(errp, "cannot create an event notifier");
        close(fd);
        g_free(out);
        return NULL;
    }
    return out;
}

/* Wait until @out->fd takes data or the output is cancelled */
static int output_wait_writable(BackupVmaOutput *out)
{
    struct pollfd fds[2] = {
        { .fd = out->fd, .events = POLLOUT },
        { .fd = event_notifier_get_fd(&out->cancel), .events = POLLIN },
    };

    if (poll(fds, 2, -1) < 0) {
        return errno == EINTR ? 0 : -errno;
    }
    if (fds[1].revents) {
        return -ECANCELED;
    }
    return 0;
}

/* Runs in a worker thread */
static int output_write_worker(void *opaque)
{
    BackupVmaOutputWrite *w = opaque;
    size_t done = 0;

    while (done < w->len) {
        ssize_t n;
        int ret;

        if (qatomic_read(&w->out->cancelled)) {
            return -ECANCELED;
        }
        n = write(w->out->fd, w->buf + done, w->len - done);
        if (n > 0) {
            done += n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno != EAGAIN) {
            return -errno;
        }
        ret = output_wait_writable(w->out);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int coroutine_fn backup_vma_output_write(BackupVmaOutput *out,
                                         const void *buf, size_t len)
{
    BackupVmaOutputWrite w = { .out = out, .buf = buf, .len = len };

    return thread_pool_submit_co(output_write_worker, &w);
}

void backup_vma_output_cancel(BackupVmaOutput *out)
{
    qatomic_set(&out->cancelled, true);
    event_notifier_set(&out->cancel);
}

void backup_vma_output_close(BackupVmaOutput *out)
{
    if (!out) {
        return;
    }
    close(out->fd);
    event_notifier_cleanup(&out->cancel);
    g_free(out);
}
