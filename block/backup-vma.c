/*
 * VM backup into a VMA archive: the QMP commands and the backup's life
 *
 * One backup job per disk, each with a sink node (backup-vma-sink.c) as its
 * target, all writing to one archive (backup-vma-archive.c).  The jobs are
 * created in one drained section, so every copy-before-write filter is in
 * place at the same point in time; from then on a guest write to a cluster
 * not yet saved copies the old data into the archive first.
 *
 * The jobs form one sequential transaction (job_txn_set_sequential()): they
 * copy one disk after another, none is finalized before the archive is
 * complete, and a failure or cancel of any of them aborts all.  They are
 * created with manual finalization: once all of them are pending, the
 * archive is finished (last extent, written, synced) and only then are the
 * jobs finalized, so BLOCK_JOB_COMPLETED without error means the disk is in
 * a complete archive.
 *
 *   qmp_backup -> jobs created, archive armed, first job started
 *   each job completes -> the next starts ... -> all pending
 *   -> backup_vma_disks_done -> archive finished -> jobs finalized
 *   -> one callback per job -> backup_vma_end (status, BACKUP_COMPLETED)
 *
 * Errors never reach the guest: the copy-before-write filters run with
 * on-cbw-error=break-snapshot and cbw-timeout, so a failed or slow copy
 * fails the backup and lets the guest write through.  A stalled archive
 * consumer never freezes the VM: see backup-vma-output.c.
 *
 * Everything here runs in the main loop, except the snapshot-break
 * notifiers, which run in the disks' AioContexts and only fail the archive
 * (thread-safe).
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/clone-visitor.h"
#include "qapi/qapi-visit-backup.h"
#include "qapi/qapi-commands-backup.h"
#include "qapi/qapi-events-backup.h"
#include "qemu/cutils.h"
#include "qemu/id.h"
#include "qemu/job.h"
#include "qemu/main-loop.h"
#include "qemu/units.h"
#include "qemu/uuid.h"
#include "block/block_int.h"
#include "block/blockjob.h"
#include "block/copy-before-write.h"
#include "block/dirty-bitmap.h"
#include "system/block-backend.h"
#include "system/blockdev.h"
#include "system/runstate.h"
#include "block/backup-vma.h"
#include "block/backup-vma-bitmaps.h"
#if defined(CONFIG_MALLOC_TRIM)
#include <malloc.h>
#endif

/*
 * Parallel 1 MiB copy requests per disk when the caller does not say.
 * Local files are read from the page cache or with the kernel's readahead:
 * two requests keep them busy, more only compete with the output thread
 * for the CPU (bench/RESULTS.md, max-workers).  Storage with latency (RBD,
 * NBD, iSCSI, block devices) needs more in flight.
 */
#define BACKUP_VMA_DEFAULT_WORKERS_FILE 2
#define BACKUP_VMA_DEFAULT_WORKERS 16
/* Below common guest driver timeouts (Linux: 30 s per try, a few tries) */
#define BACKUP_VMA_DEFAULT_CBW_TIMEOUT 45
#define BACKUP_VMA_DEFAULT_STALL_TIMEOUT 300
/* Archive bytes queued for the consumer before producers wait */
#define BACKUP_VMA_QUEUE_LIMIT (16 * MiB)
/* Output buffers reused: one extent of block-copy's largest request, 1 MiB */
#define BACKUP_VMA_OUTPUT_BUFFER_SIZE \
    VMA_EXTENT_PACK_SIZE(MiB / VMA_CLUSTER_SIZE)

typedef struct BackupVmaState BackupVmaState;

typedef struct BackupVmaDevice {
    BackupVmaState *backup;
    char *name;                 /* in the archive */
    char *drive;                /* its -drive (BlockBackend) name, if any */
    BlockDriverState *source;   /* reference held */
    BlockDriverState *sink;     /* reference held */
    uint8_t dev_id;
    uint64_t size;
    BackupVmaFleecing fleecing; /* all NULL without fleecing */
    BlockJob *job;              /* from creation until its callback */
    BlockJob *created_job;      /* the same, only compared, never used */
    Error *blocker;             /* while the source is blocked */
    Notifier job_pending;       /* the job waits for finalization */
    Notifier cbw_break;         /* its filter broke the snapshot */
    Notifier fleecing_break;    /* the fleecing filter did */
    BackupVmaTracking tracking; /* bs NULL without change tracking */
} BackupVmaDevice;

typedef enum BackupVmaPhase {
    BACKUP_VMA_SETUP,           /* in qmp_backup() */
    BACKUP_VMA_RUNNING,         /* jobs copying */
    BACKUP_VMA_FINISHING,       /* completing the archive */
    BACKUP_VMA_FINALIZING,      /* the archive is whole: jobs finalize */
    BACKUP_VMA_ABORTING,        /* failed or cancelled: jobs abort */
} BackupVmaPhase;

struct BackupVmaState {
    /*
     * References: the jobs' (dropped when the last job has ended) and the
     * finishing coroutine's (until its BH ran); main loop only
     */
    int refcnt;
    BackupVmaArchive *archive;
    BackupVmaDevice *devs;
    unsigned n_devs;
    JobTxn *txn;
    BackupVmaPhase phase;
    unsigned jobs_pending;      /* jobs that reached PENDING */
    unsigned jobs_ended;        /* job callbacks that ran */
    bool cancelled;             /* by backup-cancel */
    char *errmsg;               /* the first error */
    uint32_t cbw_timeout;
    VMChangeStateEntry *vm_state;
    /* vmstate: the RAM state's part, until it has ended; see qmp_backup() */
    BackupVmaVmstate *vmstate;
    int64_t speed;
    int64_t max_workers;
    QemuUUID uuid;              /* the archive's */
    char *uuid_str;
    /*
     * Change tracking: the bitmap every disk gets once the archive is
     * complete ("vma-chain:<chain>,<uuid>"), NULL without tracking
     */
    char *final_bitmap;
    char *base_str;             /* incremental: the base archive's uuid */
};

/* What query-backup reports; main loop only */
static struct {
    BackupVmaState *running;
    bool ever;
    BackupStatusKind status;
    char *errmsg;
    char *backup_file;
    char *uuid;
    uint64_t total;
    uint64_t transferred;
    uint64_t zero_bytes;
    uint64_t archive_size;
    int64_t start_time;
    int64_t end_time;
    bool vmstate;
    BackupDiskStatusList *disks;
    char *base;
} backup_status;

/* Keep the first error message */
static void backup_vma_set_error(BackupVmaState *s, const char *msg)
{
    if (!s->errmsg) {
        s->errmsg = g_strdup(msg);
    }
}

/* The end */

/*
 * Let go of every node, filter and blocker the backup holds; once every job
 * has ended.  The state itself may live on a little (a finishing coroutine
 * still holds it), but never holds nodes past the end: QEMU's exit closes
 * all nodes right after it cancelled the jobs.
 */
static void backup_vma_release_nodes(BackupVmaState *s)
{
    if (s->vm_state) {
        qemu_del_vm_change_state_handler(s->vm_state);
        s->vm_state = NULL;
    }
    for (unsigned i = 0; i < s->n_devs; i++) {
        BackupVmaDevice *dev = &s->devs[i];

        assert(!dev->job);
        if (dev->blocker) {
            bdrv_op_unblock_all(dev->source, dev->blocker);
            error_free(dev->blocker);
            dev->blocker = NULL;
        }
        if (dev->fleecing.cbw && dev->fleecing_break.notify) {
            notifier_remove(&dev->fleecing_break);
        }
        backup_vma_fleecing_stop(&dev->fleecing);
        backup_vma_tracking_release(&dev->tracking);
        bdrv_unref(dev->sink);
        dev->sink = NULL;
        bdrv_unref(dev->source);
        dev->source = NULL;
    }
}

static void backup_vma_free(BackupVmaState *s)
{
    backup_vma_release_nodes(s);
    backup_vma_vmstate_free(s->vmstate);
    for (unsigned i = 0; i < s->n_devs; i++) {
        g_free(s->devs[i].name);
        g_free(s->devs[i].drive);
    }
    g_free(s->devs);
    if (s->txn) {
        job_txn_unref(s->txn);
    }
    backup_vma_archive_free(s->archive);
    g_free(s->errmsg);
    g_free(s->uuid_str);
    g_free(s->final_bitmap);
    g_free(s->base_str);
    g_free(s);
#if defined(CONFIG_MALLOC_TRIM)
    /*
     * The copy buffers (1 MiB each, several per disk) were freed with the
     * jobs: hand the memory back, as the RCU thread does when it is idle,
     * rather than keep tens of MiB in malloc's free lists until then
     */
    malloc_trim(4 * MiB);
#endif
}

static void backup_vma_ref(BackupVmaState *s)
{
    s->refcnt++;
}

static void backup_vma_unref(BackupVmaState *s)
{
    if (--s->refcnt == 0) {
        backup_vma_free(s);
    }
}

/*
 * Every job has ended, committed or aborted: the disks' bitmaps become the
 * new base only if the archive is complete
 */
static void backup_vma_end_tracking(BackupVmaState *s, bool done)
{
    for (unsigned i = 0; i < s->n_devs; i++) {
        BackupVmaTracking *t = &s->devs[i].tracking;

        if (!t->bs) {
            continue;
        }
        if (done) {
            backup_vma_tracking_commit(t, s->final_bitmap);
        } else {
            backup_vma_tracking_abort(t);
        }
    }
}

/* Every job has ended: record the result and let go of everything */
static void backup_vma_end(BackupVmaState *s)
{
    BackupVmaArchiveProgress p;
    const char *archive_err = backup_vma_archive_get_error(s->archive);

    if (s->phase != BACKUP_VMA_FINALIZING && !s->errmsg) {
        s->errmsg = g_strdup(archive_err ?: "backup failed");
    }
    backup_vma_archive_get_progress(s->archive, &p);
    if (s->phase == BACKUP_VMA_FINALIZING) {
        backup_status.status = BACKUP_STATUS_KIND_DONE;
    } else if (s->cancelled) {
        backup_status.status = BACKUP_STATUS_KIND_CANCELLED;
    } else {
        backup_status.status = BACKUP_STATUS_KIND_ERROR;
    }
    backup_status.errmsg = backup_status.status == BACKUP_STATUS_KIND_DONE ?
                           NULL : g_strdup(s->errmsg);
    backup_status.transferred = p.transferred;
    backup_status.zero_bytes = p.zero_bytes;
    backup_status.archive_size = p.written;
    backup_status.end_time = time(NULL);
    backup_status.running = NULL;
    backup_vma_end_tracking(s, backup_status.status == BACKUP_STATUS_KIND_DONE);
    backup_vma_release_nodes(s);
    backup_vma_unref(s);

    qapi_event_send_backup_completed(backup_status.status,
                                     backup_status.errmsg,
                                     backup_status.uuid,
                                     backup_status.backup_file,
                                     backup_status.archive_size);
}

/*
 * Abort every job (the transaction aborts them all), once; main loop.  Never
 * while the jobs are being finalized: the archive is whole then.
 */
static void backup_vma_abort_jobs(BackupVmaState *s)
{
    BlockJob *victim = NULL;

    /*
     * Cancel the job that runs (one at a time in a sequential transaction)
     * if there is one: that returns at once, and when it has ended the
     * transaction aborts the others, which then wait for nothing.
     * Cancelling another one first would wait here, in the monitor, for the
     * running job's requests in flight (a slow read).
     */
    WITH_JOB_LOCK_GUARD() {
        for (unsigned i = 0; i < s->n_devs; i++) {
            BlockJob *job = s->devs[i].job;

            if (job && (!victim || (job->job.status != JOB_STATUS_CREATED &&
                                    !job_is_completed_locked(&job->job)))) {
                victim = job;
            }
        }
        if (victim) {
            job_cancel_locked(&victim->job, true);
        }
    }
}

/*
 * Stop the backup with @msg: fail the archive (wakes every waiting writer)
 * and abort the jobs.  Too late once the archive is complete.
 */
static void backup_vma_abort(BackupVmaState *s, const char *msg)
{
    if (s->phase == BACKUP_VMA_FINALIZING || s->phase == BACKUP_VMA_ABORTING) {
        return;
    }
    backup_vma_set_error(s, msg);
    backup_vma_archive_fail(s->archive, -ECANCELED, "%s", msg);
    if (s->phase == BACKUP_VMA_RUNNING) {
        s->phase = BACKUP_VMA_ABORTING;
        backup_vma_abort_jobs(s);
    }
    /*
     * In set up, qmp_backup() cleans up.  While finishing, the archive's
     * last bytes may already be out: backup_vma_finish_co() tells from the
     * output whether the archive is whole or not.
     */
}

/* The archive failed (from any producer); main loop, once */
static void backup_vma_on_archive_failed(void *opaque)
{
    BackupVmaState *s = opaque;

    /* First: aborting the jobs may end and free the backup */
    backup_vma_vmstate_cancel(s->vmstate);
    backup_vma_abort(s, backup_vma_archive_get_error(s->archive));
}

/*
 * Why the transaction aborted although we did not cancel it: a job was
 * cancelled from outside (block-job-cancel, job-cancel, or device_del of a
 * -drive's device, which cancels the jobs on the drive).  Called from a
 * job's completion callback, while the transaction aborts.
 */
static char *backup_vma_outside_cancel_reason(BackupVmaState *s)
{
    Job *origin;

    WITH_JOB_LOCK_GUARD() {
        origin = job_txn_abort_origin_locked(s->txn);
    }
    for (unsigned i = 0; i < s->n_devs; i++) {
        BackupVmaDevice *dev = &s->devs[i];
        BlockBackend *blk = dev->drive ? blk_by_name(dev->drive) : NULL;
        DriveInfo *dinfo = blk ? blk_legacy_dinfo(blk) : NULL;

        if (!origin || &dev->created_job->job != origin) {
            continue;
        }
        if (dev->drive && (!blk || (dinfo && dinfo->auto_del))) {
            return g_strdup_printf("backup cancelled: the drive '%s' of disk "
                                   "'%s' was deleted (device_del of its "
                                   "device)", dev->drive, dev->name);
        }
        return g_strdup_printf("backup cancelled from outside: the job of "
                               "disk '%s' was cancelled (block-job-cancel, "
                               "job-cancel, or device_del of its drive's "
                               "device)", dev->name);
    }
    return g_strdup("backup cancelled from outside: one of its jobs was "
                    "cancelled");
}

static void backup_vma_job_cb(void *opaque, int ret)
{
    BackupVmaDevice *dev = opaque;
    BackupVmaState *s = dev->backup;

    notifier_remove(&dev->job_pending);
    dev->job = NULL;
    if (s->phase == BACKUP_VMA_SETUP) {
        return;     /* qmp_backup() cleans up */
    }
    if (ret < 0 && ret != -ECANCELED) {
        g_autofree char *msg = g_strdup_printf("backup of '%s' failed: %s",
                                               dev->name, strerror(-ret));
        backup_vma_abort(s, msg);
    } else if (ret < 0 && s->phase != BACKUP_VMA_ABORTING) {
        /* Not ours: the transaction aborted all jobs after one was cancelled */
        g_autofree char *msg = backup_vma_outside_cancel_reason(s);

        backup_vma_abort(s, msg);
    }
    if (++s->jobs_ended == s->n_devs) {
        backup_vma_end(s);
    }
}

/* The archive is complete (FINALIZING) or not: finalize or abort the jobs */
static void backup_vma_finished_bh(void *opaque)
{
    BackupVmaState *s = opaque;

    /*
     * Unless the jobs ended meanwhile (cancelled from outside, or by
     * QEMU's shutdown): then there is nothing left to finalize or abort
     */
    if (s->jobs_ended == 0 && s->phase == BACKUP_VMA_FINALIZING) {
        WITH_JOB_LOCK_GUARD() {
            job_finalize_locked(&s->devs[0].job->job, &error_abort);
        }
    } else if (s->jobs_ended < s->n_devs) {
        backup_vma_abort_jobs(s);
    }
    backup_vma_unref(s);
}

/*
 * Complete the archive.  Jobs are finalized outside coroutine context (it
 * changes the graph): in a BH.
 */
static void coroutine_fn backup_vma_finish_co(void *opaque)
{
    BackupVmaState *s = opaque;
    Error *err = NULL;

    if (backup_vma_archive_finish(s->archive, &err)) {
        /* Whole, even if a cancel came while the last bytes went out */
        if (s->phase == BACKUP_VMA_FINISHING) {
            s->phase = BACKUP_VMA_FINALIZING;
        }
    } else {
        backup_vma_set_error(s, error_get_pretty(err));
        error_free(err);
        if (s->phase == BACKUP_VMA_FINISHING) {
            s->phase = BACKUP_VMA_ABORTING;
        }
    }
    aio_bh_schedule_oneshot(qemu_get_aio_context(), backup_vma_finished_bh,
                            s);
}

/* Every producer is done: here just the disks' jobs, all pending */
static void backup_vma_disks_done(void *opaque)
{
    BackupVmaState *s = opaque;

    if (s->phase != BACKUP_VMA_RUNNING) {
        return;
    }
    s->phase = BACKUP_VMA_FINISHING;
    backup_vma_ref(s);  /* the finishing coroutine's, handed to its BH */
    qemu_coroutine_enter(qemu_coroutine_create(backup_vma_finish_co, s));
}

static void backup_vma_job_pending(Notifier *n, void *data)
{
    BackupVmaDevice *dev = container_of(n, BackupVmaDevice, job_pending);
    BackupVmaState *s = dev->backup;

    if (++s->jobs_pending == s->n_devs) {
        backup_vma_archive_producer_done(s->archive);
    }
}

/* A copy-before-write filter broke the snapshot; in the disk's context */
static void backup_vma_cbw_broken(Notifier *n, void *data)
{
    BackupVmaDevice *dev = container_of(n, BackupVmaDevice, cbw_break);
    int err = bdrv_cbw_snapshot_error(data);

    if (err == -ETIMEDOUT) {
        backup_vma_archive_fail(dev->backup->archive, err,
                                "a guest write to '%s' waited longer than "
                                "cbw-timeout (%" PRIu32 " s) for the archive: "
                                "it went through and the backup failed",
                                dev->name, dev->backup->cbw_timeout);
    } else {
        backup_vma_archive_fail(dev->backup->archive, err,
                                "saving old data of '%s' before a guest "
                                "write failed: %s", dev->name,
                                strerror(-err));
    }
}

static void backup_vma_fleecing_broken(Notifier *n, void *data)
{
    BackupVmaDevice *dev = container_of(n, BackupVmaDevice, fleecing_break);
    int err = bdrv_cbw_snapshot_error(data);

    backup_vma_archive_fail(dev->backup->archive, err,
                            "fleecing image '%s' of '%s' failed: %s",
                            bdrv_get_node_name(dev->fleecing.image),
                            dev->name,
                            err == -ETIMEDOUT ?
                            "a copy took longer than cbw-timeout" :
                            strerror(-err));
}

/*
 * QEMU is shutting down: fail the backup before block jobs are cancelled
 * (a cancel would wait for writes queued for a consumer that may be gone)
 */
static void backup_vma_vm_state_changed(void *opaque, bool running,
                                        RunState state)
{
    BackupVmaState *s = opaque;

    if (state == RUN_STATE_SHUTDOWN) {
        backup_vma_abort(s, "QEMU is shutting down");
    }
}

/* Setting up */

/*
 * The name a disk gets in the archive: the drive's name (-drive id=), else
 * its node name if the user gave one, else the device it is attached to
 * (a QOM path for devices without an id, made into a file name).
 */
static char *backup_vma_disk_name(BlockBackend *blk)
{
    const char *node_name = bdrv_get_node_name(blk_bs(blk));
    g_autofree char *dev_id = NULL;
    const char *rel;

    if (blk_name(blk)[0]) {
        return g_strdup(blk_name(blk));
    }
    if (node_name[0] && node_name[0] != '#') {
        return g_strdup(node_name);
    }
    dev_id = blk_get_attached_dev_id(blk);
    if (!strstart(dev_id, "/machine/peripheral/", &rel)) {
        rel = dev_id;
    }
    return g_strdelimit(g_strdup(rel), "/", '-');
}

static bool backup_vma_add_device(GArray *devs, const char *name,
                                  const char *drive, BlockDriverState *bs,
                                  Error **errp)
{
    BackupVmaDevice dev = { 0 };
    int64_t size;

    for (unsigned i = 0; i < devs->len; i++) {
        if (g_array_index(devs, BackupVmaDevice, i).source == bs) {
            return true;
        }
    }
    if (!vma_name_is_safe(name) || !strcmp(name, VMA_VMSTATE_NAME)) {
        error_setg(errp, "device name '%s' cannot be stored in an archive",
                   name);
        return false;
    }
    size = bdrv_getlength(bs);
    if (size < 0) {
        error_setg_errno(errp, -size, "cannot get the size of '%s'", name);
        return false;
    }
    if (size == 0) {
        error_setg(errp, "device '%s' is empty", name);
        return false;
    }
    dev.name = g_strdup(name);
    dev.drive = g_strdup(drive);
    dev.source = bs;
    dev.size = size;
    bdrv_ref(bs);
    g_array_append_val(devs, dev);
    return true;
}

/* The disks named in @devlist, or every inserted writable disk */
static bool backup_vma_find_devices(const char *devlist, GArray *devs,
                                    Error **errp)
{
    GRAPH_RDLOCK_GUARD_MAINLOOP();

    if (devlist) {
        g_auto(GStrv) names = g_strsplit_set(devlist, ",;:", -1);

        for (char **name = names; *name; name++) {
            BlockDriverState *bs;

            if (!**name) {
                continue;
            }
            bs = bdrv_lookup_bs(*name, *name, errp);
            if (!bs ||
                !backup_vma_add_device(devs, *name,
                                       blk_by_name(*name) ? *name : NULL, bs,
                                       errp)) {
                return false;
            }
        }
    } else {
        for (BlockBackend *blk = blk_all_next(NULL); blk;
             blk = blk_all_next(blk)) {
            g_autofree char *name = NULL;

            if (!blk_is_inserted(blk) || !blk_is_writable(blk) ||
                !blk_get_attached_dev(blk)) {
                continue;
            }
            name = backup_vma_disk_name(blk);
            if (!backup_vma_add_device(devs, name,
                                       blk_name(blk)[0] ? blk_name(blk) : NULL,
                                       blk_bs(blk), errp)) {
                return false;
            }
        }
    }
    if (devs->len == 0) {
        error_setg(errp, "no disk to back up");
        return false;
    }
    if (devs->len > VMA_MAX_DEVICES - 2) {
        error_setg(errp, "too many disks (at most %d)", VMA_MAX_DEVICES - 2);
        return false;
    }
    return true;
}

/*
 * Store the file at @path as config @name.  Checked before it is read, and
 * read no further than the limit: a huge file, /dev/zero or a FIFO must not
 * stall the monitor.
 */
static bool backup_vma_add_config(BackupVmaArchive *a, const char *path,
                                  const char *name, Error **errp)
{
    g_autofree char *data = g_malloc(VMA_MAX_BLOB_SIZE + 1);
    struct stat st;
    ssize_t len = 0;
    int fd;

    fd = qemu_open(path, O_RDONLY | O_NONBLOCK, errp);
    if (fd < 0) {
        error_prepend(errp, "cannot store %s: ", name);
        return false;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        error_setg(errp, "cannot store '%s' as %s: not a regular file", path,
                   name);
        close(fd);
        return false;
    }
    if (st.st_size > VMA_MAX_BLOB_SIZE) {
        error_setg(errp, "cannot store '%s' as %s: it has %" PRId64 " bytes, "
                   "at most %d fit", path, name, (int64_t)st.st_size,
                   VMA_MAX_BLOB_SIZE);
        close(fd);
        return false;
    }
    while (len <= VMA_MAX_BLOB_SIZE) {
        ssize_t n = read(fd, data + len, VMA_MAX_BLOB_SIZE + 1 - len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            error_setg_errno(errp, errno, "cannot read '%s'", path);
            close(fd);
            return false;
        }
        if (n == 0) {
            break;
        }
        len += n;
    }
    close(fd);
    if (len > VMA_MAX_BLOB_SIZE) {
        error_setg(errp, "cannot store '%s' as %s: it grew past %d bytes",
                   path, name, VMA_MAX_BLOB_SIZE);
        return false;
    }
    return backup_vma_archive_add_config(a, name, data, len, errp);
}

static bool backup_vma_node_has_parents(BlockDriverState *bs)
{
    GRAPH_RDLOCK_GUARD_MAINLOOP();
    return !QLIST_EMPTY(&bs->parents);
}

/*
 * Find the fleecing image of each disk that gets one: from @images, or
 * "<device>-fleecing" for all disks with @fleecing.  An image must be
 * unused: not a disk of this backup, not another disk's image, not attached
 * to anything.  Nothing changes yet.
 */
static bool backup_vma_prepare_fleecing(BackupVmaState *s, bool fleecing,
                                        BackupFleecingImageList *images,
                                        bool have_devlist, Error **errp)
{
    if ((fleecing || images) && !have_devlist) {
        error_setg(errp, "fleecing needs an explicit devlist");
        return false;
    }
    for (BackupFleecingImageList *l = images; l; l = l->next) {
        unsigned i;

        for (i = 0; i < s->n_devs; i++) {
            if (!strcmp(s->devs[i].name, l->value->device)) {
                break;
            }
        }
        if (i == s->n_devs) {
            error_setg(errp, "fleecing image for '%s', which is not in "
                       "devlist", l->value->device);
            return false;
        }
        if (s->devs[i].fleecing.image) {
            error_setg(errp, "two fleecing images for '%s'",
                       l->value->device);
            return false;
        }
        if (!backup_vma_fleecing_prepare(&s->devs[i].fleecing,
                                         s->devs[i].source, s->devs[i].name,
                                         l->value->node, errp)) {
            return false;
        }
    }
    for (unsigned i = 0; fleecing && i < s->n_devs; i++) {
        g_autofree char *node = g_strdup_printf("%s-fleecing",
                                                s->devs[i].name);

        if (!s->devs[i].fleecing.image &&
            !backup_vma_fleecing_prepare(&s->devs[i].fleecing,
                                         s->devs[i].source, s->devs[i].name,
                                         node, errp)) {
            return false;
        }
    }
    for (unsigned i = 0; i < s->n_devs; i++) {
        BlockDriverState *image = s->devs[i].fleecing.image;

        if (!image) {
            continue;
        }
        for (unsigned j = 0; j < s->n_devs; j++) {
            if (image == s->devs[j].source) {
                error_setg(errp, "fleecing image '%s' of '%s' is a disk of "
                           "this backup", bdrv_get_node_name(image),
                           s->devs[i].name);
                return false;
            }
            if (j != i && image == s->devs[j].fleecing.image) {
                error_setg(errp, "fleecing image '%s' is given for both "
                           "'%s' and '%s'", bdrv_get_node_name(image),
                           s->devs[j].name, s->devs[i].name);
                return false;
            }
        }
        if (backup_vma_node_has_parents(image)) {
            error_setg(errp, "fleecing image '%s' of '%s' is in use",
                       bdrv_get_node_name(image), s->devs[i].name);
            return false;
        }
    }
    return true;
}

/*
 * Change tracking: find each disk's bitmap for @base (NULL: a chain
 * starts), settle the chain and the name of the next generation's bitmap.
 * Disks whose bitmap belongs to another chain than the first one found go
 * in full.  Nothing changes yet.
 */
static bool backup_vma_prepare_tracking(BackupVmaState *s, const uint8_t *base,
                                        Error **errp)
{
    const char *chain_bitmap = NULL;

    for (unsigned i = 0; i < s->n_devs; i++) {
        BackupVmaDevice *dev = &s->devs[i];

        if (!backup_vma_tracking_prepare(&dev->tracking, dev->source,
                                         dev->name, base, errp)) {
            return false;
        }
        if (dev->tracking.action != BACKUP_BITMAP_ACTION_USED) {
            continue;
        }
        if (!chain_bitmap) {
            chain_bitmap = dev->tracking.base_bitmap;
        } else if (strcmp(chain_bitmap, dev->tracking.base_bitmap)) {
            backup_vma_tracking_demote(&dev->tracking);
        }
    }
    /*
     * No disk has the base's bitmap: its chain is unknown, so this archive
     * starts a new one (every disk full, query-backup says why)
     */
    s->final_bitmap = chain_bitmap ?
        g_strconcat(chain_bitmap, ",", s->uuid_str, NULL) :
        g_strconcat(BACKUP_VMA_CHAIN_PREFIX, s->uuid_str, NULL);
    if (strlen(s->final_bitmap) > BDRV_BITMAP_MAX_NAME_SIZE) {
        error_setg(errp, "the chain of '%s' is too long to continue: at most "
                   "%d archives fit in a bitmap name; back up with "
                   "track-changes but without incremental to start a new "
                   "chain", s->base_str,
                   (BDRV_BITMAP_MAX_NAME_SIZE + 1 -
                    (int)strlen(BACKUP_VMA_CHAIN_PREFIX)) / 37);
        return false;
    }
    return true;
}

/*
 * Mark the incremental disks in the archive and store the chain
 * description (config VMA_CHAIN_CONFIG_NAME, docs/specs/vma_spec.txt)
 */
static bool backup_vma_describe_chain(BackupVmaState *s, Error **errp)
{
    g_autofree uint8_t (*chain)[VMA_UUID_SIZE] = NULL;
    g_autofree char *blob = NULL;
    unsigned depth;
    VmaChainInfo *info;
    size_t len;
    bool ok;

    /* The new generation's name lists the chain, this archive last */
    depth = backup_vma_chain_parse_name(s->final_bitmap, &chain) - 1;
    info = vma_chain_new(s->uuid.data, depth, depth ? chain : NULL);
    for (unsigned i = 0; i < s->n_devs; i++) {
        BackupVmaDevice *dev = &s->devs[i];
        bool incremental = dev->tracking.action == BACKUP_BITMAP_ACTION_USED;

        if (incremental &&
            !backup_vma_archive_set_incremental(s->archive, dev->dev_id,
                                                errp)) {
            vma_chain_free(info);
            return false;
        }
        vma_chain_add_disk(info, dev->name, incremental,
                           BackupBitmapAction_str(dev->tracking.action));
    }
    blob = vma_chain_format(info, &len);
    vma_chain_free(info);
    ok = backup_vma_archive_add_config(s->archive, VMA_CHAIN_CONFIG_NAME,
                                       blob, len, errp);
    return ok;
}

/* What query-backup reports per disk of a backup with change tracking */
static BackupDiskStatusList *backup_vma_disks_status(BackupVmaState *s)
{
    BackupDiskStatusList *list = NULL;

    for (unsigned i = s->n_devs; i-- > 0;) {
        BackupVmaDevice *dev = &s->devs[i];
        BackupDiskStatus *d;

        if (!dev->tracking.bs) {
            continue;
        }
        d = g_new0(BackupDiskStatus, 1);
        d->device = g_strdup(dev->name);
        d->incremental = dev->tracking.action == BACKUP_BITMAP_ACTION_USED;
        d->action = dev->tracking.action;
        d->dirty_bytes = dev->tracking.dirty_bytes;
        QAPI_LIST_PREPEND(list, d);
    }
    return list;
}

/* max-workers for @disk when the caller gave none */
static int64_t backup_vma_default_workers(BlockDriverState *disk)
{
    BlockDriverState *leaf = disk;

    GRAPH_RDLOCK_GUARD_MAINLOOP();
    while (bdrv_primary_bs(leaf)) {
        leaf = bdrv_primary_bs(leaf);
    }
    return leaf->drv && !strcmp(leaf->drv->format_name, "file") ?
           BACKUP_VMA_DEFAULT_WORKERS_FILE : BACKUP_VMA_DEFAULT_WORKERS;
}

/* Create the sinks and, in one drained section, all jobs */
static bool backup_vma_create_jobs(BackupVmaState *s, int64_t speed,
                                   int64_t max_workers, Error **errp)
{
    bool ok = true;

    for (unsigned i = 0; i < s->n_devs; i++) {
        BackupVmaDevice *dev = &s->devs[i];

        dev->sink = backup_vma_sink_new(s->archive, dev->dev_id, dev->source,
                                        errp);
        if (!dev->sink) {
            return false;
        }
    }

    s->txn = job_txn_new();
    job_txn_set_sequential(s->txn);
    bdrv_drain_all_begin();
    for (unsigned i = 0; ok && i < s->n_devs; i++) {
        BackupVmaDevice *dev = &s->devs[i];
        g_autofree char *job_id = g_strdup_printf("vma-backup-%s", dev->name);
        BlockDriverState *source = dev->source;
        bool fleecing = dev->fleecing.image != NULL;
        MirrorSyncMode sync_mode = MIRROR_SYNC_MODE_FULL;
        BackupPerf perf = {
            .max_workers = max_workers ?:
                           backup_vma_default_workers(dev->source),
        };
        BdrvDirtyBitmap *bitmap = NULL;

        if (!id_wellformed(job_id)) {
            g_free(job_id);
            job_id = g_strdup_printf("vma-backup-%u", dev->dev_id);
        }
        if (fleecing) {
            source = backup_vma_fleecing_start(&dev->fleecing, dev->source,
                                               s->cbw_timeout, errp);
            if (!source) {
                ok = false;
                break;
            }
            dev->fleecing_break.notify = backup_vma_fleecing_broken;
            bdrv_cbw_add_snapshot_break_notifier(dev->fleecing.cbw,
                                                 &dev->fleecing_break);
        }
        if (dev->tracking.bs) {
            /* This instant starts the next generation of the bitmap */
            bitmap = backup_vma_tracking_start(&dev->tracking, s->uuid_str,
                                               errp);
            if (!bitmap) {
                ok = false;
                break;
            }
            if (dev->tracking.action == BACKUP_BITMAP_ACTION_USED) {
                sync_mode = MIRROR_SYNC_MODE_BITMAP;
            }
        }
        /*
         * With fleecing, what was saved is discarded from the image, and
         * the guest never waits for the archive (no cbw-timeout needed)
         */
        dev->job = backup_job_create(job_id, source, dev->sink, speed,
                                     sync_mode, bitmap,
                                     bitmap ? BITMAP_SYNC_MODE_ON_SUCCESS :
                                     BITMAP_SYNC_MODE_NEVER,
                                     false, fleecing,
                                     NULL, &perf,
                                     BLOCKDEV_ON_ERROR_REPORT,
                                     BLOCKDEV_ON_ERROR_REPORT,
                                     ON_CBW_ERROR_BREAK_SNAPSHOT,
                                     fleecing ? 0 : s->cbw_timeout,
                                     JOB_MANUAL_FINALIZE, backup_vma_job_cb,
                                     dev, s->txn, errp);
        if (!dev->job) {
            ok = false;
            break;
        }
        dev->created_job = dev->job;
        dev->job_pending.notify = backup_vma_job_pending;
        notifier_list_add(&dev->job->job.on_pending, &dev->job_pending);
        dev->cbw_break.notify = backup_vma_cbw_broken;
        bdrv_cbw_add_snapshot_break_notifier(
            backup_job_get_cbw_filter(dev->job), &dev->cbw_break);
        /* Nothing may change the disk under the backup (snapshot, resize) */
        error_setg(&dev->blocker, "'%s' is being backed up into a VMA "
                   "archive", dev->name);
        bdrv_op_block_all(dev->source, dev->blocker);
    }
    bdrv_drain_all_end();
    return ok;
}

/*
 * Undo a backup that failed before its first job started: jobs that never
 * started complete at once when cancelled.  The status of the previous
 * backup stays as it was.  Nothing was written: the output was never armed.
 */
static void backup_vma_setup_failed(BackupVmaState *s)
{
    if (s->archive) {
        backup_vma_archive_fail(s->archive, -ECANCELED, "set up failed");
    }
    backup_vma_abort_jobs(s);
    backup_vma_end_tracking(s, false);
    backup_vma_free(s);
}

/* The jobs exist: let them copy */
static void backup_vma_begin(BackupVmaState *s)
{
    s->vm_state = qemu_add_vm_change_state_handler(
        backup_vma_vm_state_changed, s);
    s->phase = BACKUP_VMA_RUNNING;
    backup_vma_archive_start(s->archive);
    job_start(&s->devs[0].job->job);
}

/*
 * vmstate: the background snapshot stopped the VM, saved the device state
 * and protects RAM; the VM resumes right after.  The disks' filters go in
 * now, so the disks' point in time is the RAM's.
 */
static bool backup_vma_instant(void *opaque, Error **errp)
{
    ERRP_GUARD();
    BackupVmaState *s = opaque;

    if (s->errmsg) {
        error_setg(errp, "%s", s->errmsg);     /* cancelled meanwhile */
        return false;
    }
    if (!backup_vma_create_jobs(s, s->speed, s->max_workers, errp)) {
        backup_vma_set_error(s, error_get_pretty(*errp));
        backup_vma_abort_jobs(s);
        return false;
    }
    /* As qmp_backup() counts it, now that the jobs know what they copy */
    backup_status.total = 0;
    for (unsigned i = 0; i < s->n_devs; i++) {
        backup_status.total += s->devs[i].tracking.bs ?
                               s->devs[i].tracking.dirty_bytes :
                               s->devs[i].size;
    }
    qapi_free_BackupDiskStatusList(backup_status.disks);
    backup_status.disks = backup_vma_disks_status(s);
    backup_vma_begin(s);
    return true;
}

/* vmstate: the migration has ended, and the state is stored or not */
static void backup_vma_vmstate_ended(void *opaque)
{
    BackupVmaState *s = opaque;

    s->vmstate = NULL;      /* it frees itself */
    if (s->phase == BACKUP_VMA_SETUP) {
        /* The snapshot failed before its stopped instant: no job runs */
        backup_vma_set_error(s, backup_vma_archive_get_error(s->archive) ?:
                             "saving the VM state failed");
        backup_vma_archive_fail(s->archive, -ECANCELED, "%s", s->errmsg);
        s->phase = BACKUP_VMA_ABORTING;
        backup_vma_end(s);
    }
    backup_vma_unref(s);
}

/* Remove a new regular file that a failed backup created */
static void backup_vma_remove_new_file(const char *backup_file)
{
    struct stat st;

    if (!g_str_has_prefix(backup_file, "/dev/fd") &&
        stat(backup_file, &st) == 0 && S_ISREG(st.st_mode)) {
        unlink(backup_file);
    }
}

UuidInfo *qmp_backup(const char *backup_file,
                     bool has_format, BackupFormat format,
                     const char *config_file, const char *firewall_file,
                     const char *devlist, bool has_speed, int64_t speed,
                     bool has_max_workers, int64_t max_workers,
                     bool has_fleecing, bool fleecing,
                     bool has_fleecing_images,
                     BackupFleecingImageList *fleecing_images,
                     bool has_cbw_timeout, uint32_t cbw_timeout,
                     bool has_stall_timeout, uint32_t stall_timeout,
                     bool has_track_changes, bool track_changes,
                     const char *incremental,
                     bool has_vmstate, bool vmstate,
                     Error **errp)
{
    g_autoptr(GArray) devs = g_array_new(false, true,
                                         sizeof(BackupVmaDevice));
    BackupVmaOutput *output;
    BackupVmaState *s;
    UuidInfo *info;
    uint64_t total = 0;
    bool track = (has_track_changes && track_changes) || incremental;
    uint8_t base[VMA_UUID_SIZE];

    GLOBAL_STATE_CODE();

    if (backup_status.running) {
        error_setg(errp, "a backup is already running");
        return NULL;
    }
    if (has_speed && speed < 0) {
        error_setg(errp, "speed must not be negative");
        return NULL;
    }
    if (!has_max_workers) {
        max_workers = 0;        /* the default of each disk */
    } else if (max_workers < 1 || max_workers > INT_MAX) {
        error_setg(errp, "max-workers must be between 1 and %d", INT_MAX);
        return NULL;
    }
    if (incremental && !vma_uuid_parse(incremental, base)) {
        error_setg(errp, "incremental: '%s' is not an archive UUID",
                   incremental);
        return NULL;
    }
    if (!backup_vma_find_devices(devlist, devs, errp)) {
        for (unsigned i = 0; i < devs->len; i++) {
            g_free(g_array_index(devs, BackupVmaDevice, i).name);
            g_free(g_array_index(devs, BackupVmaDevice, i).drive);
            bdrv_unref(g_array_index(devs, BackupVmaDevice, i).source);
        }
        return NULL;
    }

    s = g_new0(BackupVmaState, 1);
    s->refcnt = 1;
    s->phase = BACKUP_VMA_SETUP;
    s->n_devs = devs->len;
    s->devs = (BackupVmaDevice *)g_array_free(g_steal_pointer(&devs), false);
    s->cbw_timeout = has_cbw_timeout ? cbw_timeout :
                     BACKUP_VMA_DEFAULT_CBW_TIMEOUT;
    qemu_uuid_generate(&s->uuid);
    s->uuid_str = qemu_uuid_unparse_strdup(&s->uuid);
    s->base_str = g_strdup(incremental);
    for (unsigned i = 0; i < s->n_devs; i++) {
        s->devs[i].backup = s;
    }
    if (has_vmstate && vmstate) {
        s->vmstate = backup_vma_vmstate_new(s->cbw_timeout, errp);
        if (!s->vmstate) {
            goto fail;
        }
    }
    if (!backup_vma_prepare_fleecing(s, has_fleecing && fleecing,
                                     fleecing_images, devlist != NULL,
                                     errp)) {
        goto fail;
    }
    if (track && !backup_vma_prepare_tracking(s, incremental ? base : NULL,
                                              errp)) {
        goto fail;
    }

    output = backup_vma_output_open(backup_file,
                                    has_stall_timeout ? stall_timeout :
                                    BACKUP_VMA_DEFAULT_STALL_TIMEOUT,
                                    BACKUP_VMA_QUEUE_LIMIT,
                                    BACKUP_VMA_OUTPUT_BUFFER_SIZE, errp);
    if (!output) {
        goto fail;
    }
    s->archive = backup_vma_archive_new(output, s->uuid.data,
                                        backup_vma_disks_done,
                                        backup_vma_on_archive_failed, s);
    for (unsigned i = 0; i < s->n_devs; i++) {
        s->devs[i].dev_id = backup_vma_archive_add_disk(s->archive,
                                                        s->devs[i].name,
                                                        s->devs[i].size,
                                                        errp);
        if (!s->devs[i].dev_id) {
            goto fail_remove;
        }
    }
    if ((config_file && !backup_vma_add_config(s->archive, config_file,
                                               "qemu-server.conf", errp)) ||
        (firewall_file && !backup_vma_add_config(s->archive, firewall_file,
                                                 "qemu-server.fw", errp)) ||
        (track && !backup_vma_describe_chain(s, errp))) {
        goto fail_remove;
    }
    /* The disks' jobs are one producer: done when all are pending */
    backup_vma_archive_add_producer(s->archive);
    if (s->vmstate) {
        /* The jobs are created in the snapshot's stopped instant */
        s->speed = has_speed ? speed : 0;
        s->max_workers = max_workers;
        if (!backup_vma_vmstate_add_to_archive(s->vmstate, s->archive,
                                               errp) ||
            !backup_vma_vmstate_start(s->vmstate, backup_vma_instant,
                                      backup_vma_vmstate_ended, s, errp)) {
            goto fail_remove;
        }
        backup_vma_ref(s);  /* the RAM state part's, until it has ended */
    } else if (!backup_vma_create_jobs(s, has_speed ? speed : 0, max_workers,
                                       errp)) {
        goto fail_remove;
    }

    /* An incremental disk's job copies its dirty clusters only */
    for (unsigned i = 0; i < s->n_devs; i++) {
        total += s->devs[i].tracking.bs ? s->devs[i].tracking.dirty_bytes :
                 s->devs[i].size;
    }
    g_free(backup_status.errmsg);
    g_free(backup_status.backup_file);
    g_free(backup_status.uuid);
    g_free(backup_status.base);
    qapi_free_BackupDiskStatusList(backup_status.disks);
    backup_status = (typeof(backup_status)) {
        .running = s,
        .ever = true,
        .status = BACKUP_STATUS_KIND_ACTIVE,
        .backup_file = g_strdup(backup_file),
        .uuid = g_strdup(s->uuid_str),
        .total = total,
        .start_time = time(NULL),
        .disks = backup_vma_disks_status(s),
        .base = strchr(s->final_bitmap ?: "", ',') ? g_strdup(incremental) :
                NULL,
    };
    backup_status.vmstate = s->vmstate != NULL;
    if (!s->vmstate) {
        backup_vma_begin(s);
    }

    info = g_new0(UuidInfo, 1);
    info->UUID = g_strdup(s->uuid_str);
    return info;

fail_remove:
    backup_vma_remove_new_file(backup_file);
fail:
    backup_vma_setup_failed(s);
    return NULL;
}

BackupStatus *qmp_query_backup(Error **errp)
{
    BackupStatus *info = g_new0(BackupStatus, 1);
    BackupVmaState *s = backup_status.running;

    info->finishing = s && s->phase == BACKUP_VMA_FINISHING;
    if (!backup_status.ever) {
        return info;
    }
    info->has_status = true;
    info->status = backup_status.status;
    info->errmsg = g_strdup(backup_status.errmsg);
    info->backup_file = g_strdup(backup_status.backup_file);
    info->uuid = g_strdup(backup_status.uuid);
    info->disks = QAPI_CLONE(BackupDiskStatusList, backup_status.disks);
    info->has_disks = info->disks != NULL;
    info->base = g_strdup(backup_status.base);
    info->has_total = true;
    info->total = backup_status.total;
    info->has_transferred = true;
    info->has_zero_bytes = true;
    info->has_archive_size = true;
    if (s) {
        BackupVmaArchiveProgress p;

        backup_vma_archive_get_progress(s->archive, &p);
        info->transferred = p.transferred;
        info->zero_bytes = p.zero_bytes;
        info->archive_size = p.written;
    } else {
        info->transferred = backup_status.transferred;
        info->zero_bytes = backup_status.zero_bytes;
        info->archive_size = backup_status.archive_size;
    }
    info->has_start_time = true;
    info->start_time = backup_status.start_time;
    if (!s) {
        info->has_end_time = true;
        info->end_time = backup_status.end_time;
    }
    if (backup_status.vmstate) {
        BackupVmaVmstateProgress vp;

        backup_vma_vmstate_get_progress(&vp);
        info->has_vmstate_bytes = true;
        info->vmstate_bytes = vp.bytes;
        info->has_vmstate_ram_total = true;
        info->vmstate_ram_total = vp.ram_total;
        info->has_vmstate_ram_remaining = true;
        info->vmstate_ram_remaining = vp.ram_remaining;
    }
    return info;
}

void qmp_backup_cancel(Error **errp)
{
    BackupVmaState *s = backup_status.running;

    if (!s) {
        return;
    }
    if (s->phase == BACKUP_VMA_RUNNING || s->phase == BACKUP_VMA_FINISHING) {
        s->cancelled = true;
        backup_vma_abort(s, "backup cancelled");
    } else if (s->phase == BACKUP_VMA_SETUP && s->vmstate) {
        /* Before the snapshot's instant: the migration ends, then the rest */
        s->cancelled = true;
        backup_vma_abort(s, "backup cancelled");
        backup_vma_vmstate_cancel(s->vmstate);
    }
}
