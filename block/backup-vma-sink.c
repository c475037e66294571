/*
 * VM backup into a VMA archive: the sink node
 *
 * A backup job copies a disk to a target node.  This driver is that target:
 * every write it receives is one cluster of the disk (max_transfer is the
 * cluster size), which it hands to the archive writer.  Zero writes, from
 * ranges the source reports as zero, become zero clusters without data.
 * Nothing ever reads from the sink.
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
    int64_t size;       /* the source's, to the byte */
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

static void backup_vma_sink_refresh_limits(BlockDriverState *bs, Error **errp)
{
    /*
     * One cluster per write.  The request alignment stays small: the last
     * cluster of a disk can be shorter than a cluster.
     */
    bs->bl.request_alignment = 1;
    bs->bl.max_transfer = VMA_CLUSTER_SIZE;
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
        error_setg_errno(errp, -size, "cannot get the size of '%s'",
                         bdrv_get_device_or_node_name(source));
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
