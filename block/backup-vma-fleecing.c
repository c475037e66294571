/*
 * VM backup into a VMA archive: fleecing
 *
 * Without fleecing, a guest write to a cluster not yet saved waits until
 * the old data is in the archive, so the guest runs at the speed of the
 * backup target.  With fleecing, a copy-before-write filter on the disk
 * puts the old data into a fleecing image on fast local storage instead,
 * and the backup job reads the point-in-time view through a
 * snapshot-access node at its own pace, discarding from the fleecing image
 * what it has saved (discard-source).
 *
 *   backup job --reads--> snapshot-access --> copy-before-write --> disk
 *                                                    |
 *                                                    +--target--> fleecing
 *
 * The filter runs with on-cbw-error=break-snapshot and a cbw-timeout: a
 * failing or slow fleecing image breaks the snapshot (the backup fails on
 * its next read), never the guest write.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-types-block-core.h"
#include "qobject/qdict.h"
#include "block/block_int.h"
#include "block/copy-before-write.h"
#include "block/backup-vma.h"

bool backup_vma_fleecing_prepare(BackupVmaFleecing *f,
                                 BlockDriverState *disk,
                                 const char *disk_name,
                                 const char *image_node, Error **errp)
{
    BlockDriverState *image = bdrv_find_node(image_node);
    int64_t disk_size, image_size;

    GLOBAL_STATE_CODE();

    if (!image) {
        error_setg(errp, "fleecing image '%s' for '%s' not found", image_node,
                   disk_name);
        return false;
    }
    disk_size = bdrv_getlength(disk);
    image_size = bdrv_getlength(image);
    if (disk_size < 0 || image_size < 0) {
        error_setg(errp, "cannot get the size of '%s' or '%s'", disk_name,
                   image_node);
        return false;
    }
    if (image_size != disk_size) {
        error_setg(errp, "fleecing image '%s' has %" PRId64 " bytes, the disk "
                   "'%s' %" PRId64 ": they must be the same", image_node,
                   image_size, disk_name, disk_size);
        return false;
    }
    bdrv_ref(image);
    f->image = image;
    return true;
}

BlockDriverState *backup_vma_fleecing_start(BackupVmaFleecing *f,
                                            BlockDriverState *disk,
                                            uint32_t cbw_timeout,
                                            Error **errp)
{
    QDict *opts;

    GLOBAL_STATE_CODE();

    opts = qdict_new();
    qdict_put_str(opts, "driver", "copy-before-write");
    qdict_put_str(opts, "file", bdrv_get_node_name(disk));
    qdict_put_str(opts, "target", bdrv_get_node_name(f->image));
    qdict_put_str(opts, "on-cbw-error",
                  OnCbwError_str(ON_CBW_ERROR_BREAK_SNAPSHOT));
    qdict_put_int(opts, "cbw-timeout", cbw_timeout);
    f->cbw = bdrv_insert_node(disk, opts, BDRV_O_RDWR, errp);
    if (!f->cbw) {
        return NULL;
    }

    opts = qdict_new();
    qdict_put_str(opts, "driver", "snapshot-access");
    qdict_put_str(opts, "file", bdrv_get_node_name(f->cbw));
    /* Discards of what was saved go down to the fleecing image */
    qdict_put_str(opts, "discard", "unmap");
    f->access = bdrv_open(NULL, NULL, opts, BDRV_O_RDWR, errp);
    return f->access;
}

void backup_vma_fleecing_stop(BackupVmaFleecing *f)
{
    GLOBAL_STATE_CODE();

    bdrv_unref(f->access);
    f->access = NULL;
    if (f->cbw) {
        bdrv_cbw_drop(f->cbw);
        f->cbw = NULL;
    }
    bdrv_unref(f->image);
    f->image = NULL;
}
