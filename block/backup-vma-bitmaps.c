/*
 * VM backup into a VMA archive: change tracking for incremental backups
 *
 * Each disk of a backup with track-changes or incremental keeps a dirty
 * bitmap named after the chain of archives it continues:
 *
 *   vma-chain:<uuid of the full>,<incremental 1>,...,<last archive>
 *
 * It holds every cluster written since <last archive>.  The name carries
 * the chain because the archive of the next incremental must name its whole
 * chain, and a persistent bitmap (qcow2) outlives QEMU.
 *
 * Life of a generation, all in the main loop:
 *   _prepare()  finds the base's bitmap, or says why the disk goes in full;
 *               nothing changes
 *   _start()    in the drained section that puts in the copy-before-write
 *               filters: the bitmap the job syncs is the base's (it gets a
 *               successor: the changes from this instant on), or a new,
 *               empty, in-memory "vma-pending:<uuid>" one
 *   the job ends: on success its bitmap holds only the changes since the
 *               backup instant (bitmap mode on-success); on failure all of
 *               them since the base (the successor is merged back)
 *   _commit()   once the archive is complete and synced: the job's bitmap
 *               becomes "vma-chain:...,<new uuid>" (persistent where the
 *               format can store it), other vma-chain bitmaps of the disk go
 *   _abort()    otherwise: a pending bitmap goes; the base's stays as the
 *               job left it, with every change since the base
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "block/backup-vma.h"
#include "block/backup-vma-bitmaps.h"

#define PENDING_PREFIX "vma-pending:"
#define UUID_STR_LEN 36

/*
 * The uuids of a "vma-chain:" bitmap name, oldest first; 0 if @name is not
 * one (or not well-formed)
 */
unsigned backup_vma_chain_parse_name(const char *name,
                                     uint8_t (**uuids)[VMA_UUID_SIZE])
{
    const char *p;
    unsigned n = 0;
    g_autofree uint8_t (*list)[VMA_UUID_SIZE] = NULL;

    if (!g_str_has_prefix(name, BACKUP_VMA_CHAIN_PREFIX)) {
        return 0;
    }
    p = name + strlen(BACKUP_VMA_CHAIN_PREFIX);
    list = g_malloc((strlen(p) / UUID_STR_LEN + 1) * VMA_UUID_SIZE);
    for (;;) {
        char one[UUID_STR_LEN + 1];

        if (strlen(p) < UUID_STR_LEN ||
            (p[UUID_STR_LEN] != ',' && p[UUID_STR_LEN] != '\0')) {
            return 0;
        }
        memcpy(one, p, UUID_STR_LEN);
        one[UUID_STR_LEN] = '\0';
        if (!vma_uuid_parse(one, list[n++])) {
            return 0;
        }
        if (p[UUID_STR_LEN] == '\0') {
            break;
        }
        p += UUID_STR_LEN + 1;
    }
    if (uuids) {
        *uuids = g_steal_pointer(&list);
    }
    return n;
}

/* The last uuid of a "vma-chain:" name: the archive it tracks changes since */
static bool chain_name_ends_with(const char *name,
                                 const uint8_t uuid[VMA_UUID_SIZE])
{
    g_autofree uint8_t (*uuids)[VMA_UUID_SIZE] = NULL;
    unsigned n = backup_vma_chain_parse_name(name, &uuids);

    return n && !memcmp(uuids[n - 1], uuid, VMA_UUID_SIZE);
}

/* Bitmaps go below filters, on the node that holds the data */
static BlockDriverState *tracking_data_node(BlockDriverState *disk)
{
    GRAPH_RDLOCK_GUARD_MAINLOOP();
    return bdrv_skip_filters(disk);
}

bool backup_vma_tracking_prepare(BackupVmaTracking *t,
                                 BlockDriverState *disk, const char *disk_name,
                                 const uint8_t *base, Error **errp)
{
    BdrvDirtyBitmap *bm;
    bool have_other = false;
    int64_t size;

    GLOBAL_STATE_CODE();

    *t = (BackupVmaTracking) { 0 };
    t->bs = tracking_data_node(disk);
    if (!t->bs) {
        error_setg(errp, "'%s' has no data node to track changes on",
                   disk_name);
        return false;
    }
    bdrv_ref(t->bs);
    size = bdrv_getlength(t->bs);

    if (!base) {
        t->action = BACKUP_BITMAP_ACTION_NEW;
        return true;
    }
    FOR_EACH_DIRTY_BITMAP(t->bs, bm) {
        const char *name = bdrv_dirty_bitmap_name(bm);

        if (!name || !backup_vma_chain_parse_name(name, NULL)) {
            continue;
        }
        if (!chain_name_ends_with(name, base) ||
            bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_DEFAULT, NULL) ||
            !bdrv_dirty_bitmap_enabled(bm) ||
            bdrv_dirty_bitmap_size(bm) != size) {
            have_other = true;
            continue;
        }
        t->action = BACKUP_BITMAP_ACTION_USED;
        t->base_bitmap = g_strdup(name);
        return true;
    }
    /* Inconsistent, busy, disabled, resized, or of another base */
    t->action = have_other ? BACKUP_BITMAP_ACTION_INVALID :
                BACKUP_BITMAP_ACTION_MISSING_RECREATED;
    return true;
}

void backup_vma_tracking_demote(BackupVmaTracking *t)
{
    t->action = BACKUP_BITMAP_ACTION_INVALID;
    g_free(t->base_bitmap);
    t->base_bitmap = NULL;
}

BdrvDirtyBitmap *backup_vma_tracking_start(BackupVmaTracking *t,
                                           const char *uuid_str,
                                           Error **errp)
{
    BdrvDirtyBitmap *bm;

    GLOBAL_STATE_CODE();

    if (t->action == BACKUP_BITMAP_ACTION_USED) {
        bm = bdrv_find_dirty_bitmap(t->bs, t->base_bitmap);
        if (!bm) {
            error_setg(errp, "the bitmap '%s' of '%s' is gone",
                       t->base_bitmap, bdrv_get_node_name(t->bs));
            return NULL;
        }
        t->job_bitmap = g_strdup(t->base_bitmap);
        t->dirty_bytes = bdrv_get_dirty_count(bm);
        return bm;
    }
    t->job_bitmap = g_strconcat(PENDING_PREFIX, uuid_str, NULL);
    bm = bdrv_create_dirty_bitmap(t->bs, VMA_CLUSTER_SIZE, t->job_bitmap,
                                  errp);
    if (!bm) {
        g_free(t->job_bitmap);
        t->job_bitmap = NULL;
        return NULL;
    }
    t->dirty_bytes = bdrv_dirty_bitmap_size(bm);
    return bm;
}

/* Drop @bm, from the image too if it is stored there */
static void tracking_remove_bitmap(BlockDriverState *bs, BdrvDirtyBitmap *bm)
{
    Error *err = NULL;

    if (bdrv_dirty_bitmap_get_persistence(bm) &&
        bdrv_remove_persistent_dirty_bitmap(bs, bdrv_dirty_bitmap_name(bm),
                                            &err) < 0) {
        warn_reportf_err(err, "cannot remove the bitmap '%s' from '%s': ",
                         bdrv_dirty_bitmap_name(bm),
                         bdrv_get_node_name(bs));
    }
    bdrv_release_dirty_bitmap(bm);
}

/* The new generation: the job's bitmap renamed to @final_name */
static BdrvDirtyBitmap *tracking_rename(BackupVmaTracking *t,
                                       BdrvDirtyBitmap *job_bm,
                                       const char *final_name)
{
    uint32_t granularity = bdrv_dirty_bitmap_granularity(job_bm);
    bool persistent = false;
    BdrvDirtyBitmap *bm;
    Error *err = NULL;

    if (bdrv_supports_persistent_dirty_bitmap(t->bs)) {
        persistent = bdrv_can_store_new_dirty_bitmap(t->bs, final_name,
                                                     granularity, &err);
        if (!persistent) {
            warn_reportf_err(err, "changes of '%s' are tracked in memory "
                             "only: ", bdrv_get_node_name(t->bs));
            err = NULL;
        }
    }
    bm = bdrv_create_dirty_bitmap(t->bs, granularity, final_name, &err);
    if (!bm) {
        warn_reportf_err(err, "changes of '%s' are not tracked: ",
                         bdrv_get_node_name(t->bs));
        return NULL;
    }
    bdrv_dirty_bitmap_set_persistence(bm, persistent);
    if (!bdrv_merge_dirty_bitmap(bm, job_bm, NULL, &err)) {
        warn_reportf_err(err, "changes of '%s' are not tracked: ",
                         bdrv_get_node_name(t->bs));
        bdrv_release_dirty_bitmap(bm);
        return NULL;
    }
    return bm;
}

void backup_vma_tracking_commit(BackupVmaTracking *t, const char *final_name)
{
    BdrvDirtyBitmap *job_bm, *bm, *next;
    BdrvDirtyBitmap *final;

    GLOBAL_STATE_CODE();

    if (!t->job_bitmap) {
        return;
    }
    /* After the job's commit its bitmap (the successor) has the name */
    job_bm = bdrv_find_dirty_bitmap(t->bs, t->job_bitmap);
    if (!job_bm) {
        warn_report("the bitmap '%s' of '%s' is gone: changes are not "
                    "tracked", t->job_bitmap, bdrv_get_node_name(t->bs));
        return;
    }
    final = tracking_rename(t, job_bm, final_name);
    if (!final) {
        return;
    }
    /* One generation per disk: the older ones are of no use any more */
    for (bm = bdrv_dirty_bitmap_first(t->bs); bm; bm = next) {
        const char *name = bdrv_dirty_bitmap_name(bm);

        next = bdrv_dirty_bitmap_next(bm);
        if (bm == final || !name ||
            bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_BUSY, NULL)) {
            continue;
        }
        if (bm == job_bm || backup_vma_chain_parse_name(name, NULL)) {
            tracking_remove_bitmap(t->bs, bm);
        }
    }
}

void backup_vma_tracking_abort(BackupVmaTracking *t)
{
    BdrvDirtyBitmap *bm;

    GLOBAL_STATE_CODE();

    if (t->job_bitmap && t->action != BACKUP_BITMAP_ACTION_USED) {
        bm = bdrv_find_dirty_bitmap(t->bs, t->job_bitmap);
        if (bm && !bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_BUSY, NULL)) {
            bdrv_release_dirty_bitmap(bm);
        }
    }
}

void backup_vma_tracking_release(BackupVmaTracking *t)
{
    g_free(t->base_bitmap);
    g_free(t->job_bitmap);
    t->base_bitmap = t->job_bitmap = NULL;
    bdrv_unref(t->bs);
    t->bs = NULL;
}
