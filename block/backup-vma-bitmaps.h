/*
 * VM backup into a VMA archive: change tracking for incremental backups
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BLOCK_BACKUP_VMA_BITMAPS_H
#define BLOCK_BACKUP_VMA_BITMAPS_H

#include "block/block.h"
#include "block/vma.h"
#include "qapi/qapi-types-backup.h"

/*
 * Change tracking of one disk for incremental backups
 * (backup-vma-bitmaps.c, which explains a generation's life); main loop
 */
#define BACKUP_VMA_CHAIN_PREFIX "vma-chain:"

typedef struct BackupVmaTracking {
    BlockDriverState *bs;       /* the disk's data node; reference held */
    BackupBitmapAction action;
    char *base_bitmap;          /* action used: the base's bitmap */
    char *job_bitmap;           /* from _start(): the bitmap the job syncs */
    uint64_t dirty_bytes;       /* from _start(): bytes the job will copy */
} BackupVmaTracking;

/*
 * The uuids of a bitmap named "vma-chain:<uuid>,...", oldest first, in
 * *@uuids (g_free() it; may be NULL); 0 if @name is no such name
 */
unsigned backup_vma_chain_parse_name(const char *name,
                                     uint8_t (**uuids)[VMA_UUID_SIZE]);
/*
 * Find @disk's bitmap for @base (NULL: a new chain starts) and decide the
 * action; nothing changes.  Call _release() afterwards in any case.
 */
bool backup_vma_tracking_prepare(BackupVmaTracking *t,
                                 BlockDriverState *disk, const char *disk_name,
                                 const uint8_t *base, Error **errp);
/* The base's bitmap cannot be used after all (another chain): go full */
void backup_vma_tracking_demote(BackupVmaTracking *t);
/*
 * In the drained section that creates the job: the bitmap the job syncs
 * with bitmap mode on-success (sync=bitmap when the action is used, else
 * sync=full)
 */
BdrvDirtyBitmap *backup_vma_tracking_start(BackupVmaTracking *t,
                                           const char *uuid_str,
                                           Error **errp);
/* After the job was finalized with the archive complete and synced */
void backup_vma_tracking_commit(BackupVmaTracking *t, const char *final_name);
/* After the job was aborted (or never created) */
void backup_vma_tracking_abort(BackupVmaTracking *t);
void backup_vma_tracking_release(BackupVmaTracking *t);

#endif /* BLOCK_BACKUP_VMA_BITMAPS_H */
