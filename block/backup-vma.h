/*
 * VM backup into a VMA archive: pieces shared by the sink driver, the
 * archive output and the QMP commands
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BLOCK_BACKUP_VMA_H
#define BLOCK_BACKUP_VMA_H

#include "block/block.h"
#include "block/vma.h"
#include "qemu/coroutine.h"

/*
 * Where the archive bytes go: a regular file, a FIFO or a passed fd.
 * Writes run in a worker thread and never block the caller's AioContext;
 * backup_vma_output_cancel() wakes a write that waits for a reader.
 */
typedef struct BackupVmaOutput BackupVmaOutput;

BackupVmaOutput *backup_vma_output_open(const char *path, Error **errp);
int coroutine_fn backup_vma_output_write(BackupVmaOutput *out,
                                         const void *buf, size_t len);
/* Fail the pending and all later writes with -ECANCELED */
void backup_vma_output_cancel(BackupVmaOutput *out);
void backup_vma_output_close(BackupVmaOutput *out);

/*
 * The archive being written, shared by the sink nodes of all disks.  The
 * sinks may run in different AioContexts (iothreads) at the same time.
 */
typedef struct BackupVmaArchive {
    /* Serializes every call on @writer; the output yields under it */
    CoMutex lock;
    VmaWriter *writer;
    BackupVmaOutput *output;

    /* Progress over all disks, updated atomically */
    uint64_t transferred;
    uint64_t zero_bytes;

    /* Set (atomically, once) when the writer failed */
    bool failed;
    /* Why, for the first failure; set under @lock */
    char *errmsg;
    /* Called in the main loop after the first failure */
    void (*fail_cb)(void *opaque);
    void *fail_opaque;
} BackupVmaArchive;

/*
 * Store @bytes at @offset of stream @dev_id: data (@buf) or zeroes
 * (@buf == NULL).  @offset is cluster aligned; @bytes a multiple of the
 * cluster size except at the device end.  Returns 0 or a negative errno.
 */
int coroutine_fn backup_vma_archive_write(BackupVmaArchive *archive,
                                          uint8_t dev_id, int64_t offset,
                                          const void *buf, int64_t bytes);

/*
 * A node that takes the writes of a backup job for one disk and stores
 * them in @archive as stream @dev_id.  It has the size of @source and lives
 * in its AioContext.  Returns a new reference.
 */
BlockDriverState *backup_vma_sink_new(BackupVmaArchive *archive,
                                      uint8_t dev_id,
                                      BlockDriverState *source,
                                      Error **errp);

/*
 * Fleecing of one disk (backup-vma-fleecing.c): the fleecing image, the
 * copy-before-write filter putting old data there, and the snapshot-access
 * node the backup job reads.  All NULL without fleecing.
 */
typedef struct BackupVmaFleecing {
    BlockDriverState *image;    /* reference held */
    BlockDriverState *cbw;
    BlockDriverState *access;
} BackupVmaFleecing;

/* Check that @image_node exists and has @disk's size; nothing changes yet */
bool backup_vma_fleecing_prepare(BackupVmaFleecing *f,
                                 BlockDriverState *disk,
                                 const char *disk_name,
                                 const char *image_node, Error **errp);
/*
 * Put the filter on @disk and open the snapshot-access node, which is
 * returned: the backup job's source.  Call in the drained section that
 * creates the jobs, so all disks share one point in time.
 */
BlockDriverState *backup_vma_fleecing_start(BackupVmaFleecing *f,
                                            BlockDriverState *disk,
                                            uint32_t cbw_timeout,
                                            Error **errp);
/* Remove what _start() added and let go of the image; after the job */
void backup_vma_fleecing_stop(BackupVmaFleecing *f);

#endif /* BLOCK_BACKUP_VMA_H */
