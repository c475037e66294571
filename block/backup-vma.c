/*
 * VM backup into a VMA archive: the QMP commands and the backup's life
 *
 * One backup job per disk, each with a sink node (backup-vma-sink.c) as its
 * target, all feeding one archive writer.  All jobs are created in one
 * drained section, so every copy-before-write filter is in place at the
 * same point in time; from then on a guest write to a cluster not yet saved
 * copies the old data into the archive first.  The jobs then run one after
 * another, each started from the previous one's completion callback.
 *
 * Errors never reach the guest: the copy-before-write filters run with
 * on-cbw-error=break-snapshot, so a failed copy fails the backup and lets
 * the guest write through.
 *
 * Everything here runs in the main loop, except backup_vma_archive_write()
 * which the sinks call in their disks' AioContexts.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-backup.h"
#include "qemu/cutils.h"
#include "qemu/id.h"
#include "qemu/job.h"
#include "qemu/main-loop.h"
#include "qemu/uuid.h"
#include "block/block_int.h"
#include "block/blockjob.h"
#include "system/block-backend.h"
#include "block/backup-vma.h"

#define BACKUP_VMA_DEFAULT_WORKERS 64
/* Below common guest driver timeouts (Linux: 30 s per try, a few tries) */
#define BACKUP_VMA_DEFAULT_CBW_TIMEOUT 45

typedef struct BackupVmaState BackupVmaState;

typedef struct BackupVmaDevice {
    BackupVmaState *backup;
    char *name;                 /* in the archive */
    BlockDriverState *source;   /* reference held */
    BlockDriverState *sink;     /* reference held */
    uint8_t dev_id;
    uint64_t size;
    BackupVmaFleecing fleecing; /* all NULL without fleecing */
    BlockJob *job;              /* NULL before creation and once completed */
    bool cancel_sent;           /* job_cancel_locked() was called */
} BackupVmaDevice;

struct BackupVmaState {
    int refcnt;                 /* atomic: the sinks take one for a BH */
    BackupVmaArchive archive;
    BackupVmaDevice *devs;
    unsigned n_devs;
    unsigned next_job;          /* index of the next job to start */
    unsigned jobs_done;
    bool started;               /* set up completely, first job started */
    bool aborting;              /* failed or cancelled: start no more jobs */
    bool cancelled;             /* by backup-cancel */
    char *errmsg;               /* the first error */
};

/* What query-backup reports; main loop only */
static struct {
    BackupVmaState *running;
    bool ever;
    const char *status;
    char *errmsg;
    char *backup_file;
    char *uuid;
    uint64_t total;
    uint64_t transferred;
    uint64_t zero_bytes;
    int64_t start_time;
    int64_t end_time;
    bool finishing;
} backup_status;

static void backup_vma_ref(BackupVmaState *s)
{
    qatomic_inc(&s->refcnt);
}

static void backup_vma_unref(BackupVmaState *s)
{
    if (qatomic_fetch_dec(&s->refcnt) > 1) {
        return;
    }
    for (unsigned i = 0; i < s->n_devs; i++) {
        g_free(s->devs[i].name);
    }
    g_free(s->devs);
    vma_writer_free(s->archive.writer);
    backup_vma_output_close(s->archive.output);
    g_free(s->archive.errmsg);
    g_free(s->errmsg);
    g_free(s);
}

/* Keep the first error message */
static void backup_vma_set_error(BackupVmaState *s, const char *msg)
{
    if (!s->errmsg) {
        s->errmsg = g_strdup(msg);
    }
}

/* The archive writer */

/* The writer's output callback; the writer is only called in coroutines */
static int backup_vma_output_cb(void *opaque, const void *buf, size_t len)
{
    BackupVmaArchive *a = opaque;

    assert(qemu_in_coroutine());
    return backup_vma_output_write(a->output, buf, len);
}

static void backup_vma_archive_failed_bh(void *opaque);

int coroutine_fn backup_vma_archive_write(BackupVmaArchive *a,
                                          uint8_t dev_id, int64_t offset,
                                          const void *buf, int64_t bytes)
{
    g_autoptr(GError) err = NULL;
    VmaStreamStats before, after;
    uint64_t cluster = offset / VMA_CLUSTER_SIZE;
    bool ok = true;

    if (offset % VMA_CLUSTER_SIZE) {
        return -EINVAL;
    }
    qemu_co_mutex_lock(&a->lock);
    vma_writer_get_stream_stats(a->writer, dev_id, &before);
    if (!buf) {
        ok = vma_writer_write_zero_clusters(a->writer, dev_id, cluster,
                                            DIV_ROUND_UP(bytes,
                                                         VMA_CLUSTER_SIZE),
                                            &err);
    }
    for (int64_t pos = 0; buf && ok && pos < bytes; pos += VMA_CLUSTER_SIZE) {
        ok = vma_writer_write_cluster(a->writer, dev_id,
                                      cluster + pos / VMA_CLUSTER_SIZE,
                                      (const uint8_t *)buf + pos,
                                      MIN(VMA_CLUSTER_SIZE, bytes - pos),
                                      &err);
    }
    vma_writer_get_stream_stats(a->writer, dev_id, &after);
    if (!ok && !a->errmsg) {
        a->errmsg = g_strdup(err->message);
    }
    qemu_co_mutex_unlock(&a->lock);

    qatomic_add(&a->transferred, after.transferred - before.transferred);
    qatomic_add(&a->zero_bytes, after.zero_bytes - before.zero_bytes);
    if (!ok) {
        if (!qatomic_xchg(&a->failed, true)) {
            /* The BH holds a reference: the jobs may all end before it runs */
            backup_vma_ref(a->fail_opaque);
            aio_bh_schedule_oneshot(qemu_get_aio_context(), a->fail_cb,
                                    a->fail_opaque);
        }
        return -EIO;
    }
    return 0;
}

/* The end of a backup */

/* Record the result and let go of everything; main loop */
static void backup_vma_end(BackupVmaState *s)
{
    if (s->archive.errmsg && !s->cancelled) {
        /* The writer's error says best what went wrong */
        g_free(s->errmsg);
        s->errmsg = g_strdup(s->archive.errmsg);
    }
    backup_status.status = s->errmsg ? "error" : "done";
    backup_status.errmsg = g_strdup(s->errmsg);
    backup_status.transferred = qatomic_read(&s->archive.transferred);
    backup_status.zero_bytes = qatomic_read(&s->archive.zero_bytes);
    backup_status.end_time = time(NULL);
    backup_status.finishing = false;
    backup_status.running = NULL;
    backup_vma_unref(s);
}

/* Write the end of the archive once every disk is in */
static void coroutine_fn backup_vma_finish_co(void *opaque)
{
    BackupVmaState *s = opaque;
    g_autoptr(GError) err = NULL;

    qemu_co_mutex_lock(&s->archive.lock);
    if (!vma_writer_finish(s->archive.writer, &err)) {
        backup_vma_set_error(s, err->message);
    }
    qemu_co_mutex_unlock(&s->archive.lock);
    backup_vma_end(s);
}

/* Every job has completed: no sink is written any more */
static void backup_vma_jobs_done(BackupVmaState *s)
{
    for (unsigned i = 0; i < s->n_devs; i++) {
        backup_vma_fleecing_stop(&s->devs[i].fleecing);
        bdrv_unref(s->devs[i].sink);
        s->devs[i].sink = NULL;
        bdrv_unref(s->devs[i].source);
        s->devs[i].source = NULL;
    }
    if (s->errmsg || qatomic_read(&s->archive.failed)) {
        backup_vma_set_error(s, "backup failed");
        backup_vma_end(s);
        return;
    }
    backup_status.finishing = true;
    qemu_coroutine_enter(qemu_coroutine_create(backup_vma_finish_co, s));
}

/*
 * Cancel every job that has not completed yet; main loop.  Completing a job
 * polls BHs (graph changes), so this can be re-entered for the same jobs:
 * each job is cancelled once.
 */
static void backup_vma_cancel_jobs(BackupVmaState *s)
{
    backup_vma_ref(s);
    for (unsigned i = 0; i < s->n_devs; i++) {
        BackupVmaDevice *dev = &s->devs[i];

        if (dev->job && !dev->cancel_sent) {
            dev->cancel_sent = true;
            /* A job that never started completes (and calls back) here */
            WITH_JOB_LOCK_GUARD() {
                job_cancel_locked(&dev->job->job, true);
            }
        }
    }
    backup_vma_unref(s);
}

static void backup_vma_cancel_jobs_bh(void *opaque)
{
    BackupVmaState *s = opaque;

    backup_vma_cancel_jobs(s);
    backup_vma_unref(s);
}

/*
 * Stop the backup with @msg: no more jobs are started, a write waiting for
 * a reader is woken, and the remaining jobs are cancelled from a BH (not
 * from inside a job's completion).
 */
static void backup_vma_abort(BackupVmaState *s, const char *msg)
{
    backup_vma_set_error(s, msg);
    if (s->aborting) {
        return;
    }
    s->aborting = true;
    backup_vma_output_cancel(s->archive.output);
    backup_vma_ref(s);
    aio_bh_schedule_oneshot(qemu_get_aio_context(), backup_vma_cancel_jobs_bh,
                            s);
}

static void backup_vma_archive_failed_bh(void *opaque)
{
    BackupVmaState *s = opaque;

    backup_vma_abort(s, "writing the archive failed");
    backup_vma_unref(s);
}

static void backup_vma_start_next_job(BackupVmaState *s)
{
    BackupVmaDevice *dev = &s->devs[s->next_job++];

    job_start(&dev->job->job);
}

static void backup_vma_job_cb(void *opaque, int ret)
{
    BackupVmaDevice *dev = opaque;
    BackupVmaState *s = dev->backup;

    dev->job = NULL;
    if (!s->started) {
        return;     /* backup_vma_setup_failed() cleans up */
    }
    s->jobs_done++;
    if (ret < 0) {
        g_autofree char *msg = NULL;

        msg = ret == -ECANCELED ?
            g_strdup("backup cancelled") :
            g_strdup_printf("backup of '%s' failed: %s", dev->name,
                            strerror(-ret));
        backup_vma_abort(s, msg);
    } else if (!s->aborting && s->next_job < s->n_devs) {
        backup_vma_start_next_job(s);
    }
    if (s->jobs_done == s->n_devs) {
        backup_vma_jobs_done(s);
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
                                  BlockDriverState *bs, Error **errp)
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
            if (!bs || !backup_vma_add_device(devs, *name, bs, errp)) {
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
            if (!backup_vma_add_device(devs, name, blk_bs(blk), errp)) {
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

static bool backup_vma_add_config(VmaWriter *w, const char *path,
                                  const char *name, Error **errp)
{
    g_autofree char *data = NULL;
    g_autoptr(GError) err = NULL;
    gsize len;

    if (!g_file_get_contents(path, &data, &len, &err) ||
        !vma_writer_add_config(w, name, data, len, &err)) {
        error_setg(errp, "cannot store '%s': %s", path, err->message);
        return false;
    }
    return true;
}

/* Create the sinks and, in one drained section, all jobs */
static bool backup_vma_create_jobs(BackupVmaState *s, int64_t speed,
                                   int64_t max_workers, uint32_t cbw_timeout,
                                   Error **errp)
{
    BackupPerf perf = { .max_workers = max_workers };
    bool ok = true;

    for (unsigned i = 0; i < s->n_devs; i++) {
        BackupVmaDevice *dev = &s->devs[i];

        dev->sink = backup_vma_sink_new(&s->archive, dev->dev_id, dev->source,
                                        errp);
        if (!dev->sink) {
            return false;
        }
    }

    bdrv_drain_all_begin();
    for (unsigned i = 0; ok && i < s->n_devs; i++) {
        BackupVmaDevice *dev = &s->devs[i];
        g_autofree char *job_id = g_strdup_printf("vma-backup-%s", dev->name);
        BlockDriverState *source = dev->source;
        bool fleecing = dev->fleecing.image != NULL;

        if (!id_wellformed(job_id)) {
            g_free(job_id);
            job_id = g_strdup_printf("vma-backup-%u", dev->dev_id);
        }
        if (fleecing) {
            source = backup_vma_fleecing_start(&dev->fleecing, dev->source,
                                               cbw_timeout, errp);
            if (!source) {
                ok = false;
                break;
            }
        }
        /* With fleecing, what was saved is discarded from the image */
        dev->job = backup_job_create(job_id, source, dev->sink, speed,
                                     MIRROR_SYNC_MODE_FULL, NULL,
                                     BITMAP_SYNC_MODE_NEVER, false, fleecing,
                                     NULL, &perf,
                                     BLOCKDEV_ON_ERROR_REPORT,
                                     BLOCKDEV_ON_ERROR_REPORT,
                                     ON_CBW_ERROR_BREAK_SNAPSHOT, 0,
                                     JOB_DEFAULT, backup_vma_job_cb, dev,
                                     NULL, errp);
        ok = dev->job != NULL;
    }
    bdrv_drain_all_end();
    return ok;
}

/*
 * Find the fleecing image of each disk that gets one: from @images, or
 * "<device>-fleecing" for all disks with @fleecing.  Nothing changes yet.
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
    return true;
}

/*
 * Undo a backup that failed before its first job started.  The status of
 * the previous backup stays as it was.
 */
static void backup_vma_setup_failed(BackupVmaState *s)
{
    s->aborting = true;
    /* Jobs that never started complete at once */
    backup_vma_cancel_jobs(s);
    for (unsigned i = 0; i < s->n_devs; i++) {
        assert(!s->devs[i].job);
        backup_vma_fleecing_stop(&s->devs[i].fleecing);
        bdrv_unref(s->devs[i].sink);
        bdrv_unref(s->devs[i].source);
    }
    backup_vma_unref(s);
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
                     Error **errp)
{
    g_autoptr(GArray) devs = g_array_new(false, true,
                                         sizeof(BackupVmaDevice));
    BackupVmaState *s;
    QemuUUID uuid;
    UuidInfo *info;
    uint64_t total = 0;

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
        max_workers = BACKUP_VMA_DEFAULT_WORKERS;
    }
    if (max_workers < 1 || max_workers > INT_MAX) {
        error_setg(errp, "max-workers must be between 1 and %d", INT_MAX);
        return NULL;
    }
    if (!backup_vma_find_devices(devlist, devs, errp)) {
        for (unsigned i = 0; i < devs->len; i++) {
            g_free(g_array_index(devs, BackupVmaDevice, i).name);
            bdrv_unref(g_array_index(devs, BackupVmaDevice, i).source);
        }
        return NULL;
    }

    s = g_new0(BackupVmaState, 1);
    s->refcnt = 1;
    s->n_devs = devs->len;
    s->devs = (BackupVmaDevice *)g_array_free(g_steal_pointer(&devs), false);
    qemu_co_mutex_init(&s->archive.lock);
    s->archive.fail_cb = backup_vma_archive_failed_bh;
    s->archive.fail_opaque = s;

    qemu_uuid_generate(&uuid);
    s->archive.writer = vma_writer_new(uuid.data, time(NULL),
                                       backup_vma_output_cb, &s->archive);
    for (unsigned i = 0; i < s->n_devs; i++) {
        g_autoptr(GError) err = NULL;

        s->devs[i].backup = s;
        s->devs[i].dev_id = vma_writer_register_stream(s->archive.writer,
                                                       s->devs[i].name,
                                                       s->devs[i].size, &err);
        if (!s->devs[i].dev_id) {
            error_setg(errp, "%s", err->message);
            goto fail;
        }
        total += s->devs[i].size;
    }
    if ((config_file && !backup_vma_add_config(s->archive.writer, config_file,
                                               "qemu-server.conf", errp)) ||
        (firewall_file && !backup_vma_add_config(s->archive.writer,
                                                 firewall_file,
                                                 "qemu-server.fw", errp))) {
        goto fail;
    }
    if (!backup_vma_prepare_fleecing(s, has_fleecing && fleecing,
                                     fleecing_images, devlist != NULL,
                                     errp)) {
        goto fail;
    }
    s->archive.output = backup_vma_output_open(backup_file, errp);
    if (!s->archive.output) {
        goto fail;
    }
    if (!backup_vma_create_jobs(s, has_speed ? speed : 0, max_workers,
                                has_cbw_timeout ? cbw_timeout :
                                BACKUP_VMA_DEFAULT_CBW_TIMEOUT, errp)) {
        goto fail;
    }

    g_free(backup_status.errmsg);
    g_free(backup_status.backup_file);
    g_free(backup_status.uuid);
    backup_status = (typeof(backup_status)) {
        .running = s,
        .ever = true,
        .status = "active",
        .backup_file = g_strdup(backup_file),
        .uuid = qemu_uuid_unparse_strdup(&uuid),
        .total = total,
        .start_time = time(NULL),
    };
    s->started = true;
    backup_vma_start_next_job(s);

    info = g_new0(UuidInfo, 1);
    info->UUID = qemu_uuid_unparse_strdup(&uuid);
    return info;

fail:
    /* Nothing was written: a new file is removed again */
    if (s->archive.output && !g_str_has_prefix(backup_file, "/dev/fd")) {
        struct stat st;

        if (stat(backup_file, &st) == 0 && S_ISREG(st.st_mode)) {
            unlink(backup_file);
        }
    }
    backup_vma_setup_failed(s);
    return NULL;
}

BackupStatus *qmp_query_backup(Error **errp)
{
    BackupStatus *info = g_new0(BackupStatus, 1);
    BackupVmaState *s = backup_status.running;

    info->finishing = backup_status.finishing;
    if (!backup_status.ever) {
        return info;
    }
    info->status = g_strdup(backup_status.status);
    info->errmsg = g_strdup(backup_status.errmsg);
    info->backup_file = g_strdup(backup_status.backup_file);
    info->uuid = g_strdup(backup_status.uuid);
    info->has_total = true;
    info->total = backup_status.total;
    info->has_transferred = true;
    info->has_zero_bytes = true;
    if (s) {
        info->transferred = qatomic_read(&s->archive.transferred);
        info->zero_bytes = qatomic_read(&s->archive.zero_bytes);
    } else {
        info->transferred = backup_status.transferred;
        info->zero_bytes = backup_status.zero_bytes;
    }
    info->has_start_time = true;
    info->start_time = backup_status.start_time;
    if (!s) {
        info->has_end_time = true;
        info->end_time = backup_status.end_time;
    }
    return info;
}

void qmp_backup_cancel(Error **errp)
{
    BackupVmaState *s = backup_status.running;

    if (!s) {
        return;
    }
    backup_vma_ref(s);
    s->cancelled = true;
    backup_vma_abort(s, "backup cancelled");
    backup_vma_cancel_jobs(s);
    backup_vma_unref(s);
    /* Return once every filter and node the backup added is gone */
    AIO_WAIT_WHILE_UNLOCKED(NULL, backup_status.running == s);
}
