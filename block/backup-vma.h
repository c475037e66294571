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
 * Where the archive bytes go (backup-vma-output.c): a regular file, a FIFO,
 * a pipe or a socket, written by a thread of its own from a bounded queue.
 * Thread-safe: producers in any AioContext append; nothing blocks on the
 * consumer.
 */
typedef struct BackupVmaOutput BackupVmaOutput;

/*
 * Open @path (see backup-file in qapi/backup.json).  The output fails when
 * the consumer takes no byte for @stall_timeout seconds (0: never);
 * producers wait while more than @queue_limit bytes are queued.  Buffers
 * of up to @buffer_size bytes are reused once written.
 */
BackupVmaOutput *backup_vma_output_open(const char *path,
                                        uint32_t stall_timeout,
                                        size_t queue_limit,
                                        size_t buffer_size, Error **errp);
/* Let the thread write: before this, nothing leaves QEMU */
void backup_vma_output_arm(BackupVmaOutput *out);
/* Yield while the queue is full; returns 0 or the output's error */
int coroutine_fn backup_vma_output_wait_room(BackupVmaOutput *out);
/* Queue a copy of @buf; never waits.  Returns 0 or a negative errno. */
int backup_vma_output_append(BackupVmaOutput *out, const void *buf,
                             size_t len);
/*
 * A buffer of @size bytes for backup_vma_output_append_owned(): one written
 * before if @size is at most the output's buffer size.  Any thread.
 */
void *backup_vma_output_alloc(BackupVmaOutput *out, size_t size);
/* Give back @buf, from backup_vma_output_alloc(@size), unused; NULL is fine */
void backup_vma_output_free(BackupVmaOutput *out, void *buf, size_t size);
/*
 * Queue @len bytes of @buf, from backup_vma_output_alloc(@size), which the
 * output then owns (and frees or reuses).  Returns 0 or a negative errno.
 */
int backup_vma_output_append_owned(BackupVmaOutput *out, void *buf,
                                   size_t len, size_t size);
/*
 * Lending data to the output instead of having it copied: the output
 * writes it from the producer's memory, which must stay as it is until the
 * loan has ended (backup_vma_output_wait_loan()).  The output ends the loan
 * once the bytes are written, when it fails, and when a drain begins (it
 * then copies them), so a loan never outlasts a drain.
 */
typedef struct BackupVmaOutputLoan {
    BackupVmaOutput *out;
    Coroutine *co;      /* waiting for the end of the loan */
    bool ended;         /* the producer has its memory back */
} BackupVmaOutputLoan;

/*
 * Whether the output would borrow @len bytes now: its queue is short (the
 * producer then waits for the write about as long as it would for room)
 */
bool backup_vma_output_may_lend(BackupVmaOutput *out, size_t len);
/*
 * Queue a copy of @head_len bytes of @head followed by the bytes of @iov
 * (fewer than IOV_MAX entries), lent if the output still may borrow (else
 * copied, and the loan has ended).  Returns 0 or a negative errno; on an
 * error the loan has ended too.
 */
int backup_vma_output_append_lent(BackupVmaOutput *out, const void *head,
                                  size_t head_len, const struct iovec *iov,
                                  unsigned niov, BackupVmaOutputLoan *loan);
/*
 * Yield until @loan, from backup_vma_output_append_lent(), has ended; a
 * loan that is not over after a short while (a slow or hung write) is
 * ended by copying, and the output copies rather than borrows until its
 * queue has been empty again
 */
void coroutine_fn backup_vma_output_wait_loan(BackupVmaOutput *out,
                                              BackupVmaOutputLoan *loan);
/* While drained, producers may overfill the queue instead of waiting */
void backup_vma_output_drain_begin(BackupVmaOutput *out);
void backup_vma_output_drain_end(BackupVmaOutput *out);
/* Fail with @error (negative errno) unless complete; any thread */
void backup_vma_output_fail(BackupVmaOutput *out, int error);
int backup_vma_output_get_error(BackupVmaOutput *out);
/* Bytes the consumer took so far */
uint64_t backup_vma_output_get_written(BackupVmaOutput *out);
/* Write everything queued and sync; 0 once the archive is whole */
int coroutine_fn backup_vma_output_finish(BackupVmaOutput *out);
void backup_vma_output_close(BackupVmaOutput *out);

/*
 * The archive being written (backup-vma-archive.c): the format writer, the
 * output, progress and the error state, shared by every producer.
 *
 * Life cycle, in the main loop unless said otherwise:
 *   1. backup_vma_archive_new() takes the output.
 *   2. Streams, configs and producers are registered: _add_disk(),
 *      _add_config(), _add_producer().  A producer is anything that writes
 *      streams: the disks' sink nodes count as one.
 *   3. backup_vma_archive_start(): the set up is complete and the output may
 *      write.  Producers may write before (a copy-before-write right after
 *      the filters went in): the bytes wait in the queue, and are dropped if
 *      the set up fails.
 *   4. Producers write with backup_vma_archive_write(), from coroutines in
 *      any AioContext and any number at once.  Each then calls
 *      backup_vma_archive_producer_done() (any thread); once every producer
 *      is done, @done_cb runs in the main loop.
 *   5. backup_vma_archive_finish() completes the archive: its last extent,
 *      written and synced.
 * backup_vma_archive_fail() can be called at any time from any thread: it
 * keeps the first error, fails every later write, wakes waiting producers
 * and runs @fail_cb once in the main loop.
 */
typedef struct BackupVmaArchive BackupVmaArchive;

typedef struct BackupVmaArchiveProgress {
    uint64_t transferred;   /* stream bytes accounted for */
    uint64_t zero_bytes;    /* of which were zero (not stored) */
    uint64_t written;       /* archive bytes the consumer took */
} BackupVmaArchiveProgress;

BackupVmaArchive *backup_vma_archive_new(BackupVmaOutput *out,
                                         const uint8_t uuid[VMA_UUID_SIZE],
                                         void (*done_cb)(void *opaque),
                                         void (*fail_cb)(void *opaque),
                                         void *opaque);
/* Returns the stream's dev_id, or 0 with @errp set */
uint8_t backup_vma_archive_add_disk(BackupVmaArchive *a, const char *name,
                                    uint64_t size, Error **errp);
bool backup_vma_archive_add_config(BackupVmaArchive *a, const char *name,
                                   const void *data, size_t len,
                                   Error **errp);
/* Disk @dev_id stores only changed clusters (an incremental) */
bool backup_vma_archive_set_incremental(BackupVmaArchive *a, uint8_t dev_id,
                                        Error **errp);
void backup_vma_archive_add_producer(BackupVmaArchive *a);
void backup_vma_archive_start(BackupVmaArchive *a);
/*
 * Register the "vmstate" stream of at most @max_size bytes, written in
 * order; returns its dev_id, or 0 with @errp set
 */
uint8_t backup_vma_archive_add_vmstate(BackupVmaArchive *a,
                                       uint64_t max_size, Error **errp);
/*
 * Store @bytes at @offset of disk @dev_id: data (@buf) or zeroes (@buf ==
 * NULL).  @offset is cluster aligned; @bytes a multiple of the cluster
 * size except at the disk's end.  Returns 0 or a negative errno.
 */
int coroutine_fn backup_vma_archive_write(BackupVmaArchive *a,
                                          uint8_t dev_id, int64_t offset,
                                          const void *buf, int64_t bytes);
void backup_vma_archive_producer_done(BackupVmaArchive *a);
bool coroutine_fn backup_vma_archive_finish(BackupVmaArchive *a,
                                            Error **errp);
void backup_vma_archive_fail(BackupVmaArchive *a, int error,
                             const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* The first error's message, or NULL; main loop, after @fail_cb */
const char *backup_vma_archive_get_error(BackupVmaArchive *a);
void backup_vma_archive_get_progress(BackupVmaArchive *a,
                                     BackupVmaArchiveProgress *p);
/* See backup_vma_output_drain_begin() */
void backup_vma_archive_drain_begin(BackupVmaArchive *a);
void backup_vma_archive_drain_end(BackupVmaArchive *a);
void backup_vma_archive_free(BackupVmaArchive *a);

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
 * The RAM and device state (backup-vma-vmstate.c), saved by a background
 * snapshot into the archive's "vmstate" stream; main loop only.
 *   1. _new(): refused where a background snapshot cannot work (sets the
 *      migration capability background-snapshot until the end).
 *   2. _add_to_archive(): the stream and a producer.
 *   3. _start(): the migration starts; @instant runs while the VM is stopped
 *      for the snapshot (see MigrationBgSnapshotHook); @ended_cb once the
 *      migration has ended and the stream is stored or the archive failed.
 *      After _start() succeeded the object frees itself after @ended_cb.
 * _cancel() stops a started snapshot (the archive failed); _free() frees
 * one that was never started.
 */
typedef struct BackupVmaVmstate BackupVmaVmstate;

typedef struct BackupVmaVmstateProgress {
    uint64_t bytes;             /* state stream bytes stored */
    uint64_t ram_total;         /* guest RAM */
    uint64_t ram_remaining;     /* RAM bytes not yet saved */
    bool done;                  /* the whole state is stored */
} BackupVmaVmstateProgress;

/* @wait_limit: s the state may wait for the archive (0: no limit) */
BackupVmaVmstate *backup_vma_vmstate_new(uint32_t wait_limit, Error **errp);
bool backup_vma_vmstate_add_to_archive(BackupVmaVmstate *v,
                                       BackupVmaArchive *a, Error **errp);
bool backup_vma_vmstate_start(BackupVmaVmstate *v,
                              bool (*instant)(void *opaque, Error **errp),
                              void (*ended_cb)(void *opaque), void *opaque,
                              Error **errp);
void backup_vma_vmstate_cancel(BackupVmaVmstate *v);
void backup_vma_vmstate_free(BackupVmaVmstate *v);
/* The running or last backup's figures */
void backup_vma_vmstate_get_progress(BackupVmaVmstateProgress *p);

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
