/*
 * VM backup into a VMA archive: the archive that producers write to
 *
 * One object per backup: the format writer, the output, progress and the
 * first error.  Producers (the disks' sink nodes, in their AioContexts)
 * write at the same time: each packs its extents (zero detection, and the
 * copy of the data unless the output borrows it) without any lock, and
 * takes @lock only to let the writer check and record the clusters and to
 * queue the finished extent.  Nothing under @lock waits: the output's queue
 * takes the bytes at once, and producers wait for room in it, or for the
 * end of a loan, without the lock.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/main-loop.h"
#include "qemu/thread.h"
#include "block/aio.h"
#include "block/backup-vma.h"

struct BackupVmaArchive {
    BackupVmaOutput *output;
    void (*done_cb)(void *opaque);
    void (*fail_cb)(void *opaque);
    void *opaque;
    /* Main loop BHs calling them; deleted (so never run) with the archive */
    QEMUBH *done_bh;
    QEMUBH *fail_bh;

    /* Protects @writer and the order of what goes into @output */
    QemuMutex lock;
    VmaWriter *writer;
    uint8_t uuid[VMA_UUID_SIZE];

    uint8_t vmstate_dev_id; /* 0 without the RAM state */
    int producers;          /* atomic: producers not done yet */
    bool started;           /* the output was armed */

    /* Atomic: */
    bool failed;
    uint64_t transferred;
    uint64_t zero_bytes;

    /* The first error; set once under @lock */
    char *errmsg;
};

static void archive_done_bh(void *opaque);
static void archive_fail_bh(void *opaque);

/* The writer's output callback: called under @lock, never waits */
static int archive_output_cb(void *opaque, const void *buf, size_t len)
{
    BackupVmaArchive *a = opaque;

    return backup_vma_output_append(a->output, buf, len);
}

BackupVmaArchive *backup_vma_archive_new(BackupVmaOutput *out,
                                         const uint8_t uuid[VMA_UUID_SIZE],
                                         void (*done_cb)(void *opaque),
                                         void (*fail_cb)(void *opaque),
                                         void *opaque)
{
    BackupVmaArchive *a = g_new0(BackupVmaArchive, 1);

    a->output = out;
    a->done_cb = done_cb;
    a->fail_cb = fail_cb;
    a->opaque = opaque;
    a->done_bh = aio_bh_new(qemu_get_aio_context(), archive_done_bh, a);
    a->fail_bh = aio_bh_new(qemu_get_aio_context(), archive_fail_bh, a);
    memcpy(a->uuid, uuid, VMA_UUID_SIZE);
    qemu_mutex_init(&a->lock);
    a->writer = vma_writer_new(uuid, time(NULL), archive_output_cb, a);
    return a;
}

void backup_vma_archive_free(BackupVmaArchive *a)
{
    if (!a) {
        return;
    }
    qemu_bh_delete(a->done_bh);
    qemu_bh_delete(a->fail_bh);
    backup_vma_output_close(a->output);
    vma_writer_free(a->writer);
    qemu_mutex_destroy(&a->lock);
    g_free(a->errmsg);
    g_free(a);
}

uint8_t backup_vma_archive_add_disk(BackupVmaArchive *a, const char *name,
                                    uint64_t size, Error **errp)
{
    g_autoptr(GError) err = NULL;
    uint8_t dev_id;

    QEMU_LOCK_GUARD(&a->lock);
    dev_id = vma_writer_register_stream(a->writer, name, size, &err);
    if (!dev_id) {
        error_setg(errp, "%s", err->message);
    }
    return dev_id;
}

bool backup_vma_archive_set_incremental(BackupVmaArchive *a, uint8_t dev_id,
                                        Error **errp)
{
    g_autoptr(GError) err = NULL;

    QEMU_LOCK_GUARD(&a->lock);
    if (!vma_writer_set_incremental(a->writer, dev_id, &err)) {
        error_setg(errp, "%s", err->message);
        return false;
    }
    return true;
}

bool backup_vma_archive_add_config(BackupVmaArchive *a, const char *name,
                                   const void *data, size_t len,
                                   Error **errp)
{
    g_autoptr(GError) err = NULL;

    QEMU_LOCK_GUARD(&a->lock);
    if (!vma_writer_add_config(a->writer, name, data, len, &err)) {
        error_setg(errp, "%s", err->message);
        return false;
    }
    return true;
}

void backup_vma_archive_add_producer(BackupVmaArchive *a)
{
    assert(!a->started);
    qatomic_inc(&a->producers);
}

uint8_t backup_vma_archive_add_vmstate(BackupVmaArchive *a,
                                       uint64_t max_size, Error **errp)
{
    g_autoptr(GError) err = NULL;
    uint8_t dev_id;

    QEMU_LOCK_GUARD(&a->lock);
    dev_id = vma_writer_register_vmstate(a->writer, max_size, &err);
    if (!dev_id) {
        error_setg(errp, "%s", err->message);
    }
    a->vmstate_dev_id = dev_id;
    return dev_id;
}

void backup_vma_archive_start(BackupVmaArchive *a)
{
    a->started = true;
    backup_vma_output_arm(a->output);
}

static void archive_done_bh(void *opaque)
{
    BackupVmaArchive *a = opaque;

    a->done_cb(a->opaque);
}

void backup_vma_archive_producer_done(BackupVmaArchive *a)
{
    if (qatomic_fetch_dec(&a->producers) == 1) {
        qemu_bh_schedule(a->done_bh);
    }
}

/* Errors */

static void archive_fail_bh(void *opaque)
{
    BackupVmaArchive *a = opaque;

    a->fail_cb(a->opaque);
}

static void G_GNUC_PRINTF(3, 0)
archive_fail_va(BackupVmaArchive *a, int error, const char *fmt, va_list ap)
{
    WITH_QEMU_LOCK_GUARD(&a->lock) {
        if (!a->errmsg) {
            a->errmsg = g_strdup_vprintf(fmt, ap);
            vma_writer_set_error(a->writer, "%s", a->errmsg);
        }
    }
    backup_vma_output_fail(a->output, error);
    if (!qatomic_xchg(&a->failed, true)) {
        qemu_bh_schedule(a->fail_bh);
    }
}

void backup_vma_archive_fail(BackupVmaArchive *a, int error,
                             const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    archive_fail_va(a, error, fmt, ap);
    va_end(ap);
}

/* What went wrong with the output, in words */
static void archive_fail_output(BackupVmaArchive *a, int error)
{
    switch (error) {
    case -ETIMEDOUT:
        backup_vma_archive_fail(a, error, "the archive's reader took no data "
                                "for the stall timeout");
        break;
    case -EPIPE:
        backup_vma_archive_fail(a, error, "the archive's reader went away");
        break;
    case -ECANCELED:
        backup_vma_archive_fail(a, error, "backup cancelled");
        break;
    default:
        backup_vma_archive_fail(a, error, "writing the archive failed: %s",
                                strerror(-error));
    }
}

/* The format writer refused (@err): the output's error if it has one */
static void archive_writer_failed(BackupVmaArchive *a, GError *err)
{
    int error = backup_vma_output_get_error(a->output);

    if (error) {
        archive_fail_output(a, error);
    } else {
        backup_vma_archive_fail(a, -EIO, "%s", err->message);
    }
}

const char *backup_vma_archive_get_error(BackupVmaArchive *a)
{
    return a->errmsg;
}

/* Writing */

/* Pack @len bytes of @buf as one extent, copied, and queue it */
static int archive_queue_extent_copy(BackupVmaArchive *a, uint8_t dev_id,
                                     uint64_t cluster, const uint8_t *buf,
                                     size_t len, VmaPackedExtent *p,
                                     GError **errp)
{
    size_t size = VMA_EXTENT_PACK_SIZE(DIV_ROUND_UP(len, VMA_CLUSTER_SIZE));
    uint8_t *extent = backup_vma_output_alloc(a->output, size);
    int ret = -EIO;

    vma_extent_pack(a->uuid, dev_id, cluster, buf, len, extent, p);
    WITH_QEMU_LOCK_GUARD(&a->lock) {
        if (vma_writer_commit_extent(a->writer, p, errp)) {
            ret = backup_vma_output_append_owned(a->output, extent, p->len,
                                                 size);
            extent = NULL;
        }
    }
    backup_vma_output_free(a->output, extent, size);
    return ret;
}

/* Padding of the disk's last block when it is shorter than 4 KiB */
static const uint8_t archive_zero_block[VMA_BLOCK_SIZE];

/*
 * The extent's data as pieces of @buf: the @n blocks at the offsets in
 * @blocks, runs of adjacent blocks in one entry each.  @iov has room for
 * ARCHIVE_EXTENT_MAX_IOV entries.
 */
#define ARCHIVE_EXTENT_MAX_IOV \
    (VMA_WRITER_EXTENT_CLUSTERS * VMA_BLOCKS_PER_CLUSTER / 2 + 1)

static unsigned archive_extent_iov(const uint8_t *buf, size_t len,
                                   const size_t *blocks, unsigned n,
                                   struct iovec *iov)
{
    unsigned niov = 0;

    for (unsigned i = 0; i < n; i++) {
        const uint8_t *block = buf + blocks[i];
        size_t blen = MIN(VMA_BLOCK_SIZE, len - blocks[i]);
        struct iovec *last = niov ? &iov[niov - 1] : NULL;

        if (last && (uint8_t *)last->iov_base + last->iov_len == block) {
            last->iov_len += blen;
        } else {
            iov[niov++] = (struct iovec) { .iov_base = (void *)block,
                                           .iov_len = blen };
        }
        if (blen < VMA_BLOCK_SIZE) {
            iov[niov++] = (struct iovec) {
                .iov_base = (void *)archive_zero_block,
                .iov_len = VMA_BLOCK_SIZE - blen,
            };
        }
    }
    assert(niov <= ARCHIVE_EXTENT_MAX_IOV);
    return niov;
}

/*
 * Queue @len bytes of @buf as one extent, its data lent to the output
 * (no copy): returns once the output is done with @buf
 */
static int coroutine_fn archive_queue_extent_lent(BackupVmaArchive *a,
                                                  uint8_t dev_id,
                                                  uint64_t cluster,
                                                  const uint8_t *buf,
                                                  size_t len,
                                                  VmaPackedExtent *p,
                                                  GError **errp)
{
    uint8_t header[VMA_EXTENT_HEADER_SIZE];
    size_t blocks[VMA_WRITER_EXTENT_CLUSTERS * VMA_BLOCKS_PER_CLUSTER];
    struct iovec iov[ARCHIVE_EXTENT_MAX_IOV];
    BackupVmaOutputLoan loan;
    unsigned stored, niov;
    int ret = -EIO;

    stored = vma_extent_pack_header(a->uuid, dev_id, cluster, buf, len,
                                    header, blocks, p);
    niov = archive_extent_iov(buf, len, blocks, stored, iov);
    WITH_QEMU_LOCK_GUARD(&a->lock) {
        if (!vma_writer_commit_extent(a->writer, p, errp)) {
            return -EIO;
        }
        ret = backup_vma_output_append_lent(a->output, header,
                                            sizeof(header), iov, niov,
                                            &loan);
    }
    backup_vma_output_wait_loan(a->output, &loan);
    return ret;
}

/*
 * Queue @len bytes of @buf as one extent: lent to the output while it
 * keeps up (the cheapest: no copy), else copied so that the producer is
 * free at once.  Either way packing happens under no lock.
 */
static int coroutine_fn archive_queue_extent(BackupVmaArchive *a,
                                             uint8_t dev_id, uint64_t cluster,
                                             const uint8_t *buf, size_t len,
                                             VmaPackedExtent *p,
                                             GError **errp)
{
    if (backup_vma_output_may_lend(a->output, VMA_EXTENT_HEADER_SIZE + len)) {
        return archive_queue_extent_lent(a, dev_id, cluster, buf, len, p,
                                         errp);
    }
    return archive_queue_extent_copy(a, dev_id, cluster, buf, len, p, errp);
}

/* Store @bytes of @buf as extents; packing happens under no lock */
static int coroutine_fn archive_write_data(BackupVmaArchive *a,
                                           uint8_t dev_id, uint64_t cluster,
                                           const uint8_t *buf, int64_t bytes)
{
    const int64_t max = (int64_t)VMA_WRITER_EXTENT_CLUSTERS *
                        VMA_CLUSTER_SIZE;

    for (int64_t pos = 0; pos < bytes; pos += max) {
        size_t len = MIN(max, bytes - pos);
        uint64_t c = cluster + pos / VMA_CLUSTER_SIZE;
        g_autoptr(GError) err = NULL;
        VmaPackedExtent p;
        int ret;

        ret = archive_queue_extent(a, dev_id, c, buf + pos, len, &p, &err);
        if (ret < 0) {
            if (err) {
                backup_vma_archive_fail(a, -EIO, "%s", err->message);
            } else {
                archive_fail_output(a, ret);
            }
            return -EIO;
        }
        qatomic_add(&a->transferred, p.bytes);
        qatomic_add(&a->zero_bytes, p.zero_bytes);
    }
    return 0;
}

static int archive_write_zeroes(BackupVmaArchive *a, uint8_t dev_id,
                                uint64_t cluster, int64_t bytes)
{
    g_autoptr(GError) err = NULL;
    bool ok;

    WITH_QEMU_LOCK_GUARD(&a->lock) {
        ok = vma_writer_write_zero_clusters(a->writer, dev_id, cluster,
                                            DIV_ROUND_UP(bytes,
                                                         VMA_CLUSTER_SIZE),
                                            &err);
    }
    if (!ok) {
        archive_writer_failed(a, err);
        return -EIO;
    }
    qatomic_add(&a->transferred, bytes);
    qatomic_add(&a->zero_bytes, bytes);
    return 0;
}

/*
 * The RAM state: clusters in order, through the writer's own extent (one
 * producer, so nothing to pack in parallel); not counted in @transferred,
 * which is the disks' progress
 */
static int archive_write_vmstate(BackupVmaArchive *a, uint8_t dev_id,
                                 uint64_t cluster, const uint8_t *buf,
                                 int64_t bytes)
{
    for (int64_t pos = 0; pos < bytes; pos += VMA_CLUSTER_SIZE, cluster++) {
        g_autoptr(GError) err = NULL;
        bool ok;

        WITH_QEMU_LOCK_GUARD(&a->lock) {
            ok = vma_writer_write_cluster(a->writer, dev_id, cluster,
                                          buf + pos,
                                          MIN(VMA_CLUSTER_SIZE, bytes - pos),
                                          &err);
        }
        if (!ok) {
            archive_writer_failed(a, err);
            return -EIO;
        }
    }
    return 0;
}

int coroutine_fn backup_vma_archive_write(BackupVmaArchive *a,
                                          uint8_t dev_id, int64_t offset,
                                          const void *buf, int64_t bytes)
{
    int ret;

    if (offset % VMA_CLUSTER_SIZE) {
        return -EINVAL;
    }
    if (qatomic_read(&a->failed)) {
        return -EIO;
    }
    ret = backup_vma_output_wait_room(a->output);
    if (ret < 0) {
        archive_fail_output(a, ret);
        return -EIO;
    }
    if (dev_id == a->vmstate_dev_id && buf) {
        return archive_write_vmstate(a, dev_id, offset / VMA_CLUSTER_SIZE,
                                     buf, bytes);
    }
    if (!buf) {
        return archive_write_zeroes(a, dev_id, offset / VMA_CLUSTER_SIZE,
                                    bytes);
    }
    return archive_write_data(a, dev_id, offset / VMA_CLUSTER_SIZE, buf,
                              bytes);
}

bool coroutine_fn backup_vma_archive_finish(BackupVmaArchive *a,
                                            Error **errp)
{
    g_autoptr(GError) err = NULL;
    bool ok;
    int ret;

    WITH_QEMU_LOCK_GUARD(&a->lock) {
        ok = vma_writer_finish(a->writer, &err);
    }
    if (!ok) {
        archive_writer_failed(a, err);
        error_setg(errp, "%s", a->errmsg);
        return false;
    }
    ret = backup_vma_output_finish(a->output);
    if (ret < 0) {
        archive_fail_output(a, ret);
        error_setg(errp, "%s", a->errmsg);
        return false;
    }
    return true;
}

void backup_vma_archive_get_progress(BackupVmaArchive *a,
                                     BackupVmaArchiveProgress *p)
{
    p->transferred = qatomic_read(&a->transferred);
    p->zero_bytes = qatomic_read(&a->zero_bytes);
    p->written = backup_vma_output_get_written(a->output);
}

void backup_vma_archive_drain_begin(BackupVmaArchive *a)
{
    backup_vma_output_drain_begin(a->output);
}

void backup_vma_archive_drain_end(BackupVmaArchive *a)
{
    backup_vma_output_drain_end(a->output);
}
