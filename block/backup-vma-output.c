/*
 * VM backup into a VMA archive: the archive output
 *
 * Producers (the disks' sink nodes in their AioContexts, later other
 * streams) append finished archive bytes to a bounded in-memory queue, and
 * one thread of our own writes the queue to the file, FIFO, pipe or socket.
 * Filling and writing overlap, and no AioContext ever blocks on the
 * archive's consumer:
 *
 * - A producer that finds the queue full yields until the writer thread has
 *   made room.  While the output is "drained" (a sink node is in a drained
 *   section: a graph change, `stop`, shutdown) producers may overfill the
 *   queue instead, so requests in flight finish and a drain never waits for
 *   the consumer.  The overfill is bounded by the requests in flight when
 *   the drain began: a drained node gets no new ones.
 * - The writer thread fails the output when the consumer takes no byte for
 *   the stall timeout, and at once when the output is failed from outside
 *   (backup_vma_output_fail() is thread-safe and wakes a waiting poll()).
 * - Nothing is written before backup_vma_output_arm(): a backup whose set up
 *   fails emits no byte, even if a guest write already queued some.
 * - backup_vma_output_finish() waits until everything is written and, for
 *   regular files and block devices, fdatasync()ed.
 * - A producer may lend its data instead of having it copied
 *   (backup_vma_output_append_lent()): the thread writes it from the
 *   producer's buffer, and the loan ends once it is written.  The output
 *   only borrows while the consumer keeps up: a short queue, no write that
 *   came back short (EAGAIN) since the queue was last empty, none taking
 *   over 20 ms; a loan not over after 20 ms is ended by copying.  So a
 *   producer waits about as long as it would for room, a guest write
 *   never waits for a hung write.  A drain copies every lent buffer and
 *   ends its loan, so no drain waits for the consumer.  The buffer being
 *   written to a pipe or socket is copied by the thread between two
 *   non-blocking writes; one being written to a file is copied at once and
 *   its bytes written again, in case the producer changed them while the
 *   write that may hang read them.
 * - Buffers of up to the output's buffer size are recycled once written: a
 *   buffer that was used before costs no page faults, where a new one costs
 *   one per 4 KiB, and in a VM whose freed memory goes back to the host, a
 *   fault can cost as much as the copy.  They are mapped, not malloc()ed,
 *   so that they go back to the system with the output, whatever malloc's
 *   heuristics.
 *
 * A descriptor passed by the user (getfd, add-fd) keeps its file status
 * flags: a pipe or FIFO is reopened through /proc/self/fd to get an open
 * file description of our own to make non-blocking, and a socket is written
 * with MSG_DONTWAIT.  A write to a regular file on storage that hangs
 * cannot be interrupted; the thread then outlives the backup and lets go
 * of the output when the write returns.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "qapi/error.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/iov.h"
#include "qemu/event_notifier.h"
#include "qemu/queue.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "qemu/units.h"
#include "block/aio.h"
#include "monitor/monitor.h"
#include "block/backup-vma.h"

/* Small appends are gathered into chunks of this size, for this long */
#define OUTPUT_GATHER_SIZE (1 * MiB)
#define OUTPUT_GATHER_MS 10
/*
 * The output borrows only while the consumer keeps up: at most this part
 * of its limit queued, and no write taking longer than this
 */
#define OUTPUT_LEND_QUEUE_FRACTION 4
#define OUTPUT_LEND_SLOW_WRITE_NS (20 * SCALE_MS)

typedef enum OutputKind {
    OUTPUT_FILE,        /* regular file or block device: blocking, synced */
    OUTPUT_PIPE,        /* pipe, FIFO, character device: non-blocking */
    OUTPUT_SOCKET,      /* send() with MSG_DONTWAIT */
} OutputKind;

/* Bytes to write; the fields other than @next are protected by @lock */
typedef struct OutputChunk {
    QSIMPLEQ_ENTRY(OutputChunk) next;
    uint64_t offset;    /* OUTPUT_FILE: where it goes */
    uint8_t *data;      /* the bytes the output owns, written first */
    size_t own_len;     /* of @data */
    size_t len;         /* all bytes to write: @data's and the lent ones */
    size_t capacity;    /* room in @data for gathering, 0 otherwise */
    bool recycle;       /* @data is a buffer of the output's buffer size */
    /* A lent chunk: the producer's bytes after @data, until @loan ends */
    struct iovec *lent;
    unsigned n_lent;
    BackupVmaOutputLoan *loan;
    bool recall;        /* end the loan before the next write (pipes) */
} OutputChunk;

struct BackupVmaOutput {
    int refcnt;                 /* atomic: the caller's and the thread's */
    int fd;
    OutputKind kind;
    int64_t stall_timeout_ns;   /* 0: wait for the consumer forever */
    EventNotifier wakeup;       /* wakes the thread's poll() on failure */
    int drained;                /* atomic: producers may overfill */

    QemuMutex lock;
    QemuCond cond;              /* the thread waits for work */
    /* Protected by @lock: */
    QSIMPLEQ_HEAD(, OutputChunk) queue;
    OutputChunk *writing;       /* taken off @queue by the thread */
    int64_t write_start_ns;     /* of the thread's write syscall, or 0 */
    bool congested;             /* the consumer took less than offered */
    size_t queued;              /* bytes in @queue and @writing */
    size_t limit;               /* producers wait above this */
    size_t buffer_size;         /* of the recycled buffers */
    GSList *spare;              /* written buffers of @buffer_size */
    unsigned n_spare;           /* at most @limit / @buffer_size */
    bool armed;                 /* the thread may write */
    bool closing;               /* no more appends: write the rest, sync */
    bool thread_done;
    bool all_written;           /* the thread wrote the last byte */
    bool complete;              /* everything written (and synced) */
    int error;                  /* sticky negative errno */
    uint64_t written;           /* atomic: bytes the consumer took */
    uint64_t next_offset;       /* OUTPUT_FILE: first byte not reserved */
    GSList *waiters;            /* Coroutines waiting for room */
    Coroutine *finish_co;       /* waiting in backup_vma_output_finish() */
};

static void output_start_thread(BackupVmaOutput *out);

/* Opening */

/* Open @path for the archive; see backup-file in qapi/backup.json */
static int output_open_path(const char *path, Error **errp)
{
    const char *fdname;
    struct stat st;
    int fd;

    if (strstart(path, "/dev/fdname/", &fdname)) {
        return monitor_get_fd(monitor_cur(), fdname, errp);
    }
    if (g_str_has_prefix(path, "/dev/fdset/")) {
        fd = qemu_open(path, O_WRONLY, NULL);
        if (fd < 0) {
            error_setg(errp, "%s has no file descriptor open for writing "
                       "(pass one with add-fd, opened write-only or "
                       "read-write)", path);
        }
        return fd;
    }
    if (stat(path, &st) == 0) {
        if (S_ISREG(st.st_mode)) {
            error_setg(errp, "backup file '%s' already exists (it is not "
                       "overwritten)", path);
            return -1;
        }
        if (!S_ISFIFO(st.st_mode)) {
            error_setg(errp, "backup file '%s' is a %s: give a new file, an "
                       "existing FIFO, /dev/fdname/NAME or /dev/fdset/N",
                       path, S_ISDIR(st.st_mode) ? "directory" :
                       S_ISCHR(st.st_mode) ? "character device" :
                       S_ISBLK(st.st_mode) ? "block device" :
                       S_ISSOCK(st.st_mode) ? "socket" : "special file");
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

/*
 * Find out how to write to @fd; a pipe gets an open file description of
 * its own (so O_NONBLOCK does not leak to whoever shares the caller's).
 * Returns the fd to use, or -1; @fd is closed or returned.
 */
static int output_prepare_fd(int fd, OutputKind *kind, Error **errp)
{
    g_autofree char *proc = NULL;
    struct stat st;
    int own;

    if (fstat(fd, &st) < 0) {
        error_setg_errno(errp, errno, "cannot stat the backup file");
        close(fd);
        return -1;
    }
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
        *kind = OUTPUT_FILE;
        return fd;
    }
    if (S_ISSOCK(st.st_mode)) {
        *kind = OUTPUT_SOCKET;
        return fd;
    }
    if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
        error_setg(errp, "the backup file is neither a regular file, a "
                   "block device, a pipe nor a socket");
        close(fd);
        return -1;
    }
    *kind = OUTPUT_PIPE;
    proc = g_strdup_printf("/proc/self/fd/%d", fd);
    own = open(proc, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    close(fd);
    if (own < 0) {
        error_setg_errno(errp, errno, "cannot open the backup pipe for "
                         "non-blocking writes%s",
                         errno == ENXIO ? " (its reader is gone)" : "");
    }
    return own;
}

BackupVmaOutput *backup_vma_output_open(const char *path,
                                        uint32_t stall_timeout,
                                        size_t queue_limit,
                                        size_t buffer_size, Error **errp)
{
    BackupVmaOutput *out;
    OutputKind kind;
    int fd = output_open_path(path, errp);

    if (fd < 0) {
        return NULL;
    }
    fd = output_prepare_fd(fd, &kind, errp);
    if (fd < 0) {
        return NULL;
    }
    out = g_new0(BackupVmaOutput, 1);
    if (event_notifier_init(&out->wakeup, false) < 0) {
        error_setg(errp, "cannot create an event notifier");
        close(fd);
        g_free(out);
        return NULL;
    }
    out->refcnt = 1;
    out->fd = fd;
    out->kind = kind;
    out->stall_timeout_ns = stall_timeout * NANOSECONDS_PER_SECOND;
    out->limit = queue_limit;
    out->buffer_size = buffer_size;
    qemu_mutex_init(&out->lock);
    qemu_cond_init(&out->cond);
    QSIMPLEQ_INIT(&out->queue);
    output_start_thread(out);
    return out;
}

static void output_chunk_free_locked(BackupVmaOutput *out, OutputChunk *c);
static void output_buffer_free(BackupVmaOutput *out, void *buf, bool recycle);

static void output_unref(BackupVmaOutput *out)
{
    OutputChunk *c, *next;

    if (qatomic_fetch_dec(&out->refcnt) > 1) {
        return;
    }
    /* The last reference: no other thread left to take @lock */
    QSIMPLEQ_FOREACH_SAFE(c, &out->queue, next, next) {
        output_chunk_free_locked(out, c);
    }
    for (GSList *l = out->spare; l; l = l->next) {
        output_buffer_free(out, l->data, true);
    }
    g_slist_free(out->spare);
    close(out->fd);
    event_notifier_cleanup(&out->wakeup);
    qemu_cond_destroy(&out->cond);
    qemu_mutex_destroy(&out->lock);
    g_free(out);
}

/* Buffers */

/* A buffer of @out->buffer_size bytes, mapped (see the top of the file) */
static void *output_buffer_map(BackupVmaOutput *out)
{
    void *buf = mmap(NULL, out->buffer_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (buf == MAP_FAILED) {
        error_report("backup: cannot map %zu bytes for the archive output: "
                     "%s", out->buffer_size, strerror(errno));
        abort();
    }
    return buf;
}

/* Called with @lock held */
static void *output_alloc_locked(BackupVmaOutput *out, size_t len,
                                 bool *recycle)
{
    void *buf;

    *recycle = len <= out->buffer_size;
    if (!*recycle) {
        return g_malloc(len);
    }
    if (!out->spare) {
        return output_buffer_map(out);
    }
    buf = out->spare->data;
    out->spare = g_slist_delete_link(out->spare, out->spare);
    out->n_spare--;
    return buf;
}

/* Keep @buf for reuse or free it; with @lock held, unless unreferenced */
static void output_buffer_free(BackupVmaOutput *out, void *buf, bool recycle)
{
    if (!recycle) {
        g_free(buf);
    } else if (out->n_spare < out->limit / out->buffer_size &&
               qatomic_read(&out->refcnt) > 0) {
        out->spare = g_slist_prepend(out->spare, buf);
        out->n_spare++;
    } else {
        munmap(buf, out->buffer_size);
    }
}

/* Loans; called with @lock held */

static void output_wake(Coroutine *co);

/* The producer may have its lent buffer back */
static void output_end_loan_locked(OutputChunk *c)
{
    BackupVmaOutputLoan *loan = c->loan;

    if (loan) {
        c->loan = NULL;
        loan->ended = true;
        if (loan->co) {
            output_wake(loan->co);
            loan->co = NULL;    /* woken once */
        }
    }
}

/* Copy the lent bytes of @c into a buffer of the output's and end the loan */
static void output_chunk_copy_lent_locked(BackupVmaOutput *out,
                                          OutputChunk *c)
{
    bool recycle;
    uint8_t *data = output_alloc_locked(out, c->len, &recycle);

    memcpy(data, c->data, c->own_len);
    iov_to_buf(c->lent, c->n_lent, 0, data + c->own_len, c->len - c->own_len);
    output_buffer_free(out, c->data, c->recycle);
    c->data = data;
    c->recycle = recycle;
    c->own_len = c->len;
    g_free(c->lent);
    c->lent = NULL;
    c->n_lent = 0;
    c->recall = false;
    output_end_loan_locked(c);
}

/* @c is written or dropped */
static void output_chunk_free_locked(BackupVmaOutput *out, OutputChunk *c)
{
    output_end_loan_locked(c);
    output_buffer_free(out, c->data, c->recycle);
    g_free(c->lent);
    g_free(c);
}

/*
 * Copy every lent buffer (a drain): at once, except the one being written
 * to a pipe or socket, which the thread copies before its next write
 */
static void output_recall_loans_locked(BackupVmaOutput *out)
{
    OutputChunk *c;

    QSIMPLEQ_FOREACH(c, &out->queue, next) {
        if (c->loan) {
            output_chunk_copy_lent_locked(out, c);
        }
    }
    c = out->writing;
    if (c && c->loan) {
        if (out->kind == OUTPUT_FILE) {
            output_chunk_copy_lent_locked(out, c);
        } else {
            c->recall = true;
            event_notifier_set(&out->wakeup);
        }
    }
}

/* The consumer is behind: copy rather than lend until the queue empties */
static void output_stop_lending_locked(BackupVmaOutput *out)
{
    out->congested = true;
    output_recall_loans_locked(out);
}

/* Waking producers; called with @lock held */

/*
 * Let @co run again, later, in its own AioContext.  Never aio_co_wake(): in
 * the main thread it would enter a main-loop coroutine at once, under
 * @lock, which the coroutine then takes again.
 */
static void output_wake(Coroutine *co)
{
    aio_co_schedule(qemu_coroutine_get_aio_context(co), co);
}

static void output_wake_waiters_locked(BackupVmaOutput *out)
{
    GSList *waiters = out->waiters;

    out->waiters = NULL;
    for (GSList *l = waiters; l; l = l->next) {
        output_wake(l->data);
    }
    g_slist_free(waiters);
}

static void output_set_error_locked(BackupVmaOutput *out, int error)
{
    OutputChunk *c;

    if (out->all_written) {
        return;     /* too late: the archive is whole (maybe syncing) */
    }
    if (!out->error) {
        out->error = error;
    }
    /*
     * Nothing more is written: loans end, except that of a buffer being
     * written to a pipe or socket, which the thread ends after that
     * non-blocking write.  A write to a file may hang: its loan ends now,
     * and whatever the write then reads goes into a file truncated after.
     */
    QSIMPLEQ_FOREACH(c, &out->queue, next) {
        output_end_loan_locked(c);
    }
    if (out->writing && out->kind == OUTPUT_FILE) {
        output_end_loan_locked(out->writing);
    }
    output_wake_waiters_locked(out);
    qemu_cond_signal(&out->cond);
    event_notifier_set(&out->wakeup);
}

/* The writer thread */

/*
 * Wait until @out->fd takes data; fails on failure from outside or when
 * the consumer took nothing for the stall timeout since @progress_ns
 */
static int output_wait_writable(BackupVmaOutput *out, int64_t progress_ns)
{
    struct pollfd fds[2] = {
        { .fd = out->fd, .events = POLLOUT },
        { .fd = event_notifier_get_fd(&out->wakeup), .events = POLLIN },
    };
    int timeout_ms = -1;

    if (out->stall_timeout_ns) {
        int64_t left = progress_ns + out->stall_timeout_ns -
                       qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

        if (left <= 0) {
            return -ETIMEDOUT;
        }
        timeout_ms = DIV_ROUND_UP(left, SCALE_MS);
    }
    if (poll(fds, 2, timeout_ms) < 0) {
        return errno == EINTR ? 0 : -errno;
    }
    if (fds[1].revents) {
        /* A failure or a recalled loan: the caller looks which */
        event_notifier_test_and_clear(&out->wakeup);
    }
    return 0;
}

static ssize_t output_write_iov(BackupVmaOutput *out,
                                const struct iovec *iov, unsigned niov,
                                uint64_t offset)
{
    struct msghdr msg = {
        .msg_iov = (struct iovec *)iov,
        .msg_iovlen = niov,
    };

    switch (out->kind) {
    case OUTPUT_SOCKET:
        return sendmsg(out->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    case OUTPUT_FILE:
        return pwritev(out->fd, iov, niov, offset);
    default:
        return writev(out->fd, iov, niov);
    }
}

/*
 * Write all of @c; the thread alone does this, taking @lock around each
 * write to see what @c holds now.  @all and @iov have room for IOV_MAX
 * entries.
 */
static int output_write_chunk(BackupVmaOutput *out, OutputChunk *c,
                              struct iovec *all, struct iovec *iov)
{
    int64_t progress_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    size_t done = 0;

    while (done < c->len) {
        unsigned niov;
        bool lent;
        ssize_t n;
        int err, ret;

        qemu_mutex_lock(&out->lock);
        if (out->error) {
            qemu_mutex_unlock(&out->lock);
            return out->error;
        }
        if (c->recall) {
            output_chunk_copy_lent_locked(out, c);
        }
        lent = c->loan != NULL;
        all[0] = (struct iovec) { .iov_base = c->data,
                                  .iov_len = c->own_len };
        memcpy(all + 1, c->lent, c->n_lent * sizeof(*all));
        niov = iov_copy(iov, IOV_MAX, all, c->n_lent + 1, done,
                        c->len - done);
        out->write_start_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
        qemu_mutex_unlock(&out->lock);

        n = output_write_iov(out, iov, niov, c->offset + done);
        err = n < 0 ? errno : 0;

        qemu_mutex_lock(&out->lock);
        out->write_start_ns = 0;
        if (lent && !c->loan) {
            /*
             * The bytes were copied during the write (a drain or a slow
             * write), and their owner may have changed them since: write
             * them again from the copy.  Only a file is ever copied under
             * a write.
             */
            qemu_mutex_unlock(&out->lock);
            continue;
        }
        if (err == EAGAIN || err == EWOULDBLOCK ||
            (n >= 0 && n < c->len - done)) {
            /* The consumer takes less than we offer */
            output_stop_lending_locked(out);
        }
        qemu_mutex_unlock(&out->lock);

        if (n > 0) {
            done += n;
            progress_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
            qatomic_add(&out->written, n);
            continue;
        }
        if (err == EINTR) {
            continue;
        }
        if (err && err != EAGAIN && err != EWOULDBLOCK) {
            return -err;
        }
        if (n == 0) {
            return -ENOSPC;
        }
        ret = output_wait_writable(out, progress_ns);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static void output_finish_locked(BackupVmaOutput *out)
{
    out->thread_done = true;
    output_wake_waiters_locked(out);
    if (out->finish_co) {
        output_wake(out->finish_co);
        out->finish_co = NULL;
    }
}

static void *output_thread(void *opaque)
{
    BackupVmaOutput *out = opaque;
    g_autofree struct iovec *all = g_new(struct iovec, IOV_MAX);
    g_autofree struct iovec *iov = g_new(struct iovec, IOV_MAX);
    OutputChunk *c;
    bool gathered = false;
    int ret;

    qemu_mutex_lock(&out->lock);
    while (!out->error) {
        if (!out->armed || QSIMPLEQ_EMPTY(&out->queue)) {
            out->congested = false;     /* the consumer caught up */
            if (out->closing && out->armed) {
                break;
            }
            qemu_cond_wait(&out->cond, &out->lock);
            continue;
        }
        c = QSIMPLEQ_FIRST(&out->queue);
        /*
         * A lone chunk that small pieces are still gathered into (extent
         * headers of zero clusters): give it a moment to fill, rather than
         * write 512 bytes at a time, one thread wake-up each
         */
        if (c->capacity && c->len < c->capacity / 2 && !out->closing &&
            c == QSIMPLEQ_LAST(&out->queue, OutputChunk, next) && !gathered) {
            gathered = true;
            qemu_cond_timedwait(&out->cond, &out->lock, OUTPUT_GATHER_MS);
            continue;
        }
        gathered = false;
        QSIMPLEQ_REMOVE_HEAD(&out->queue, next);
        /* A gathering chunk is full once it is being written */
        out->writing = c;
        qemu_mutex_unlock(&out->lock);

        ret = output_write_chunk(out, c, all, iov);

        qemu_mutex_lock(&out->lock);
        out->writing = NULL;
        out->queued -= c->len;
        output_chunk_free_locked(out, c);
        if (ret < 0) {
            output_set_error_locked(out, ret);
        } else if (out->queued < out->limit) {
            output_wake_waiters_locked(out);
        }
    }
    out->all_written = !out->error;
    if (out->all_written && out->kind == OUTPUT_FILE) {
        qemu_mutex_unlock(&out->lock);
        ret = qemu_fdatasync(out->fd) < 0 ? -errno : 0;
        qemu_mutex_lock(&out->lock);
        if (ret < 0) {
            out->all_written = false;
            output_set_error_locked(out, ret);
        }
    }
    if (out->error && out->kind == OUTPUT_FILE && ftruncate(out->fd, 0) < 0) {
        /* Only a courtesy: an incomplete archive never verifies anyway */
    }
    out->complete = !out->error;
    output_finish_locked(out);
    qemu_mutex_unlock(&out->lock);
    output_unref(out);
    return NULL;
}

/* The API */

static void output_start_thread(BackupVmaOutput *out)
{
    QemuThread thread;

    qatomic_inc(&out->refcnt);
    qemu_thread_create(&thread, "vma-output", output_thread, out,
                       QEMU_THREAD_DETACHED);
}

void backup_vma_output_arm(BackupVmaOutput *out)
{
    QEMU_LOCK_GUARD(&out->lock);
    out->armed = true;
    qemu_cond_signal(&out->cond);
}

int coroutine_fn backup_vma_output_wait_room(BackupVmaOutput *out)
{
    qemu_mutex_lock(&out->lock);
    while (!out->error && !out->thread_done && out->queued >= out->limit &&
           !qatomic_read(&out->drained)) {
        out->waiters = g_slist_prepend(out->waiters, qemu_coroutine_self());
        qemu_mutex_unlock(&out->lock);
        /* Woken by the thread (room, error) or by a drain */
        qemu_coroutine_yield();
        qemu_mutex_lock(&out->lock);
    }
    qemu_mutex_unlock(&out->lock);
    return qatomic_read(&out->error);
}

static int output_append_locked(BackupVmaOutput *out, OutputChunk *c)
{
    if (out->error) {
        return out->error;
    }
    if (out->closing || out->thread_done) {
        return -EINVAL;
    }
    c->offset = out->next_offset;
    out->next_offset += c->len;
    QSIMPLEQ_INSERT_TAIL(&out->queue, c, next);
    out->queued += c->len;
    qemu_cond_signal(&out->cond);
    return 0;
}

int backup_vma_output_append(BackupVmaOutput *out, const void *buf,
                             size_t len)
{
    OutputChunk *tail, *c;

    QEMU_LOCK_GUARD(&out->lock);
    tail = QSIMPLEQ_LAST(&out->queue, OutputChunk, next);
    if (!out->error && tail && tail->len + len <= tail->capacity &&
        tail->offset + tail->len == out->next_offset) {
        /* The thread never takes a chunk off the queue while we add to it */
        memcpy(tail->data + tail->len, buf, len);
        tail->len += len;
        tail->own_len += len;
        out->queued += len;
        out->next_offset += len;
        return 0;
    }
    c = g_new0(OutputChunk, 1);
    c->capacity = MAX(len, len < OUTPUT_GATHER_SIZE / 16 ?
                           MIN(OUTPUT_GATHER_SIZE, out->buffer_size) : 0);
    c->data = output_alloc_locked(out, c->capacity, &c->recycle);
    memcpy(c->data, buf, len);
    c->len = len;
    c->own_len = len;
    if (output_append_locked(out, c) < 0) {
        output_chunk_free_locked(out, c);
        return out->error ?: -EINVAL;
    }
    return 0;
}

void *backup_vma_output_alloc(BackupVmaOutput *out, size_t size)
{
    bool recycle;

    QEMU_LOCK_GUARD(&out->lock);
    return output_alloc_locked(out, size, &recycle);
}

void backup_vma_output_free(BackupVmaOutput *out, void *buf, size_t size)
{
    if (buf) {
        QEMU_LOCK_GUARD(&out->lock);
        output_buffer_free(out, buf, size <= out->buffer_size);
    }
}

int backup_vma_output_append_owned(BackupVmaOutput *out, void *buf,
                                   size_t len, size_t size)
{
    OutputChunk *c = g_new0(OutputChunk, 1);
    int ret;

    c->data = buf;
    c->len = len;
    c->own_len = len;
    c->recycle = size <= out->buffer_size;
    QEMU_LOCK_GUARD(&out->lock);
    ret = output_append_locked(out, c);
    if (ret < 0) {
        output_chunk_free_locked(out, c);
    }
    return ret;
}

/* Whether a chunk lent now would stay lent; see the top of the file */
static bool output_may_lend_locked(BackupVmaOutput *out)
{
    return out->armed && !out->error && !qatomic_read(&out->drained);
}

bool backup_vma_output_may_lend(BackupVmaOutput *out, size_t len)
{
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

    QEMU_LOCK_GUARD(&out->lock);
    if (out->write_start_ns &&
        now - out->write_start_ns > OUTPUT_LEND_SLOW_WRITE_NS) {
        /* A write that may hang: free the producers waiting behind it */
        output_stop_lending_locked(out);
    }
    return output_may_lend_locked(out) && !out->congested &&
           out->queued + len <= out->limit / OUTPUT_LEND_QUEUE_FRACTION;
}

int backup_vma_output_append_lent(BackupVmaOutput *out, const void *head,
                                  size_t head_len, const struct iovec *iov,
                                  unsigned niov, BackupVmaOutputLoan *loan)
{
    OutputChunk *c = g_new0(OutputChunk, 1);
    size_t lent_len = iov_size(iov, niov);
    int ret;

    assert(niov < IOV_MAX);
    *loan = (BackupVmaOutputLoan) { 0 };
    c->len = head_len + lent_len;
    QEMU_LOCK_GUARD(&out->lock);
    if (niov && output_may_lend_locked(out)) {
        c->data = g_memdup2(head, head_len);
        c->own_len = head_len;
        c->lent = g_memdup2(iov, niov * sizeof(*iov));
        c->n_lent = niov;
        c->loan = loan;
    } else {
        /*
         * Nothing to lend (the extent's blocks are all zero), or, rarely,
         * a drain or failure came since backup_vma_output_may_lend()
         */
        c->data = output_alloc_locked(out, c->len, &c->recycle);
        memcpy(c->data, head, head_len);
        iov_to_buf(iov, niov, 0, c->data + head_len, lent_len);
        c->own_len = c->len;
        loan->ended = true;
    }
    ret = output_append_locked(out, c);
    if (ret < 0) {
        output_chunk_free_locked(out, c);
    }
    return ret;
}

/* A loan outlived OUTPUT_LEND_SLOW_WRITE_NS: wake its producer */
static void output_loan_overdue(void *opaque)
{
    BackupVmaOutputLoan *loan = opaque;
    Coroutine *co;

    qemu_mutex_lock(&loan->out->lock);
    co = loan->co;
    loan->co = NULL;    /* so that the end of the loan does not wake it */
    qemu_mutex_unlock(&loan->out->lock);
    if (co) {
        aio_co_wake(co);
    }
}

void coroutine_fn backup_vma_output_wait_loan(BackupVmaOutput *out,
                                              BackupVmaOutputLoan *loan)
{
    QEMUTimer timer;

    qemu_mutex_lock(&out->lock);
    if (loan->ended) {
        qemu_mutex_unlock(&out->lock);
        return;
    }
    /*
     * Woken once: by whoever ends the loan, or by the timer if the write
     * is slow (nobody else may come to notice: a guest write waiting here
     * could otherwise wait for a hung write until cbw-timeout)
     */
    loan->out = out;
    loan->co = qemu_coroutine_self();
    aio_timer_init(qemu_get_current_aio_context(), &timer,
                   QEMU_CLOCK_REALTIME, SCALE_NS, output_loan_overdue, loan);
    timer_mod(&timer, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) +
                      OUTPUT_LEND_SLOW_WRITE_NS);
    qemu_mutex_unlock(&out->lock);
    qemu_coroutine_yield();
    timer_del(&timer);

    qemu_mutex_lock(&out->lock);
    if (!loan->ended) {
        /* Overdue: the write is slow */
        output_stop_lending_locked(out);
    }
    if (!loan->ended) {
        /* Being written to a pipe: the thread copies it before its next */
        loan->co = qemu_coroutine_self();
        qemu_mutex_unlock(&out->lock);
        qemu_coroutine_yield();
        return;
    }
    qemu_mutex_unlock(&out->lock);
}

void backup_vma_output_drain_begin(BackupVmaOutput *out)
{
    qatomic_inc(&out->drained);
    QEMU_LOCK_GUARD(&out->lock);
    output_wake_waiters_locked(out);
    output_recall_loans_locked(out);
}

void backup_vma_output_drain_end(BackupVmaOutput *out)
{
    qatomic_dec(&out->drained);
}

void backup_vma_output_fail(BackupVmaOutput *out, int error)
{
    QEMU_LOCK_GUARD(&out->lock);
    output_set_error_locked(out, error);
}

int backup_vma_output_get_error(BackupVmaOutput *out)
{
    return qatomic_read(&out->error);
}

uint64_t backup_vma_output_get_written(BackupVmaOutput *out)
{
    return qatomic_read(&out->written);
}

int coroutine_fn backup_vma_output_finish(BackupVmaOutput *out)
{
    qemu_mutex_lock(&out->lock);
    out->closing = true;
    out->armed = true;
    qemu_cond_signal(&out->cond);
    if (!out->thread_done) {
        out->finish_co = qemu_coroutine_self();
        qemu_mutex_unlock(&out->lock);
        qemu_coroutine_yield();
        qemu_mutex_lock(&out->lock);
    }
    qemu_mutex_unlock(&out->lock);
    /* A failure that came after the last byte does not count */
    return out->complete ? 0 : qatomic_read(&out->error) ?: -EIO;
}

void backup_vma_output_close(BackupVmaOutput *out)
{
    if (!out) {
        return;
    }
    WITH_QEMU_LOCK_GUARD(&out->lock) {
        if (!out->thread_done) {
            /* A write stuck in the kernel ends the thread when it returns */
            output_set_error_locked(out, -ECANCELED);
        }
    }
    output_unref(out);
}
