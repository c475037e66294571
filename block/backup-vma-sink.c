/*
 * VM backup into a VMA archive: the sink node
 *
 * A backup job copies a disk to a target node.  This driver is that target:
 * every write it receives (up to block-copy's chunk of 1 MiB, starting on
 * a cluster boundary) goes to the archive as whole extents.  Zero writes,
 * from ranges the source reports as zero, become zero clusters without
 * data, never read.  Nothing ever reads from the sink.
 *
 * A drained sink lets its writes overfill the archive's queue instead of
 * waiting for the archive's consumer (see backup-vma-output.c), so a drain
 * (graph change, stop, shutdown) never waits for a stalled consumer.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "block/block_int.h"
#include "block/backup-vma.h"

typedef struct BDRVBackupVmaSinkState {
    BackupVmaArchive *archive;
    uint8_t dev_id;
    int64_t size;       /* the source's (whole sectors for the block layer) */
} BDRVBackupVmaSinkState;

static int64_t coroutine_fn backup_vma_sink_co_getlength(BlockDriverState *bs)
{
    BDRVBackupVmaSinkState *s = bs->opaque;

    return s->size;
}

static int coroutine_fn
backup_vma_sink_co_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                          QEMUIOVector *qiov, BdrvRequestFlags flags)
{
    return -EIO;
}

static int coroutine_fn
backup_vma_sink_co_pwritev(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, QEMUIOVector *qiov,
                           BdrvRequestFlags flags)
{
    BDRVBackupVmaSinkState *s = bs->opaque;
    g_autofree void *bounce = NULL;
    const void *buf;

    if (qiov->niov == 1) {
        buf = qiov->iov[0].iov_base;
    } else {
        bounce = g_malloc(bytes);
        qemu_iovec_to_buf(qiov, 0, bounce, bytes);
        buf = bounce;
    }
    return backup_vma_archive_write(s->archive, s->dev_id, offset, buf, bytes);
}

static int coroutine_fn
backup_vma_sink_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes, BdrvRequestFlags flags)
{
    BDRVBackupVmaSinkState *s = bs->opaque;

    return backup_vma_archive_write(s->archive, s->dev_id, offset, NULL,
                                    bytes);
}

static int coroutine_fn
backup_vma_sink_co_flush(BlockDriverState *bs)
{
    return 0;
}

static int coroutine_fn
backup_vma_sink_co_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    bdi->cluster_size = VMA_CLUSTER_SIZE;
    return 0;
}

static void backup_vma_sink_drain_begin(BlockDriverState *bs)
{
    BDRVBackupVmaSinkState *s = bs->opaque;

    backup_vma_archive_drain_begin(s->archive);
}

static void backup_vma_sink_drain_end(BlockDriverState *bs)
{
    BDRVBackupVmaSinkState *s = bs->opaque;

    backup_vma_archive_drain_end(s->archive);
}

static void backup_vma_sink_refresh_limits(BlockDriverState *bs, Error **errp)
{
    /*
     * No limit on the transfer size: block-copy sends chunks of 1 MiB, and
     * the archive splits any write into extents.  (One cluster per request
     * would make 16 times the copy tasks.)  The request alignment stays
     * small: the last cluster of a disk can be shorter than a cluster.
     */
    bs->bl.request_alignment = 1;
    bs->bl.max_transfer = 0;
    bs->bl.max_pwrite_zeroes = 0;
}

static BlockDriver bdrv_backup_vma_sink = {
    .format_name                = "backup-vma-sink",
    .instance_size              = sizeof(BDRVBackupVmaSinkState),

    .bdrv_co_preadv             = backup_vma_sink_co_preadv,
    .bdrv_co_pwritev            = backup_vma_sink_co_pwritev,
    .bdrv_co_pwrite_zeroes      = backup_vma_sink_co_pwrite_zeroes,
    .bdrv_co_flush_to_disk      = backup_vma_sink_co_flush,
    .bdrv_co_get_info           = backup_vma_sink_co_get_info,
    .bdrv_co_getlength          = backup_vma_sink_co_getlength,
    .bdrv_refresh_limits        = backup_vma_sink_refresh_limits,
    .bdrv_drain_begin           = backup_vma_sink_drain_begin,
    .bdrv_drain_end             = backup_vma_sink_drain_end,
};

BlockDriverState *backup_vma_sink_new(BackupVmaArchive *archive,
                                      uint8_t dev_id,
                                      BlockDriverState *source,
                                      Error **errp)
{
    BlockDriverState *bs;
    BDRVBackupVmaSinkState *s;
    int64_t size;

    GLOBAL_STATE_CODE();

    size = bdrv_getlength(source);
    if (size < 0) {
        error_setg_errno(errp, -size, "cannot get the size of the disk");
        return NULL;
    }

    bs = bdrv_new_open_driver(&bdrv_backup_vma_sink, NULL, BDRV_O_RDWR, errp);
    if (!bs) {
        return NULL;
    }
    s = bs->opaque;
    s->archive = archive;
    s->dev_id = dev_id;
    s->size = size;
    bs->total_sectors = DIV_ROUND_UP(size, BDRV_SECTOR_SIZE);
    bs->supported_zero_flags = BDRV_REQ_MAY_UNMAP;

    if (bdrv_try_change_aio_context(bs, bdrv_get_aio_context(source), NULL,
                                    errp) < 0) {
        bdrv_unref(bs);
        return NULL;
    }
    return bs;
}
