/*
 * VM backup into a VMA archive: the RAM and device state
 *
 * A backup with vmstate saves the VM's state with a background snapshot
 * (migration capability background-snapshot): the migration thread stops
 * the VM, saves the device state, write-protects RAM (userfaultfd) and has
 * the VM resume, then sends RAM as it was at the stop while the VM runs.
 * The backup's disks get their copy-before-write filters in that stopped
 * instant (the hook given to backup_vma_vmstate_start()), so disks, RAM and
 * devices are all saved at the same point in time.
 *
 * The migration writes into one end of a socket pair; a coroutine in the
 * main loop reads the other end without blocking and stores the stream as
 * the archive's "vmstate" stream, in order, every cluster full but the last.
 * A slow archive makes the coroutine wait for room in the output queue; the
 * migration thread then waits in its write, never the main loop or a vCPU
 * for longer than a write-protect fault takes to be served.
 *
 * The part ends once the migration has ended (its notifier) and the reader
 * saw the end of the stream: then the archive's producer is done, or the
 * archive fails with the migration's error.  Failing or cancelling the
 * backup cancels the migration and shuts the socket down; the VM keeps
 * running and the migration state is clean again (a later "migrate" works)
 * when the part has ended.
 *
 * Main loop only.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-migration.h"
#include "qemu/coroutine.h"
#include "qemu/main-loop.h"
#include "block/aio.h"
#include "qemu/timer.h"
#include "qemu/units.h"
#include "exec/cpu-common.h"
#include "io/channel-socket.h"
#include "migration/misc.h"
#include "block/backup-vma.h"

/* What the reader stores at once: a multiple of the cluster size */
#define VMSTATE_CHUNK (1 * MiB)
/* Room for the device state and the stream's framing besides RAM */
#define VMSTATE_SLACK (512 * MiB)

struct BackupVmaVmstate {
    BackupVmaArchive *archive;
    uint8_t dev_id;
    bool cap_was_set;           /* background-snapshot before the backup */
    bool starting;
    bool started;               /* the migration was started */
    bool reader_done;
    bool migration_ended;
    bool migration_failed;
    bool ending;                /* vmstate_end_bh() is scheduled */
    bool failed;                /* we failed the archive or were cancelled */
    QIOChannel *ioc;            /* our (reading) end */
    /*
     * While the reader waits for the archive, the migration thread soon
     * waits for the reader, and guest writes to RAM not yet saved wait for
     * the migration thread: such a wait fails the backup after
     * @wait_limit_ms (0: never)
     */
    int64_t wait_limit_ms;
    int64_t waiting_since_ms;   /* 0: not waiting */
    QEMUTimer *watchdog;
    NotifierWithReturn notifier;
    void (*ended_cb)(void *opaque);
    void *opaque;
};

/* The last backup's figures, for query-backup; main loop */
static BackupVmaVmstateProgress vmstate_progress;

static bool vmstate_set_capability(bool on, Error **errp)
{
    ERRP_GUARD();
    MigrationCapabilityStatus st = {
        .capability = MIGRATION_CAPABILITY_BACKGROUND_SNAPSHOT,
        .state = on,
    };
    MigrationCapabilityStatusList list = { .value = &st };

    qmp_migrate_set_capabilities(&list, errp);
    return !*errp;
}

BackupVmaVmstate *backup_vma_vmstate_new(uint32_t wait_limit, Error **errp)
{
    ERRP_GUARD();
    BackupVmaVmstate *v;

    if (migration_is_running()) {
        error_setg(errp, "vmstate: a migration is running; the RAM state "
                   "can be saved once it has ended");
        return NULL;
    }
    v = g_new0(BackupVmaVmstate, 1);
    v->wait_limit_ms = (int64_t)wait_limit * 1000;
    v->cap_was_set = migrate_background_snapshot();
    if (!v->cap_was_set && !vmstate_set_capability(true, errp)) {
        error_prepend(errp, "vmstate: the RAM state needs a background "
                      "snapshot, which cannot work here: ");
        g_free(v);
        return NULL;
    }
    return v;
}

static int vmstate_add_ram(RAMBlock *rb, void *opaque)
{
    uint64_t *total = opaque;

    *total += qemu_ram_get_max_length(rb);
    return 0;
}

bool backup_vma_vmstate_add_to_archive(BackupVmaVmstate *v,
                                       BackupVmaArchive *a, Error **errp)
{
    uint64_t ram = 0;
    uint64_t bound;

    qemu_ram_foreach_block(vmstate_add_ram, &ram);
    /* Each 4 KiB page goes once, with a header of 8 bytes */
    bound = ROUND_UP(ram + ram / 512 + VMSTATE_SLACK, VMA_CLUSTER_SIZE);
    v->dev_id = backup_vma_archive_add_vmstate(a, bound, errp);
    if (!v->dev_id) {
        return false;
    }
    v->archive = a;
    backup_vma_archive_add_producer(a);
    vmstate_progress = (BackupVmaVmstateProgress) { .ram_total = ram };
    return true;
}

/* Restore the migration capability we changed; the object is freed */
static void vmstate_free(BackupVmaVmstate *v)
{
    Error *err = NULL;

    if (!v->cap_was_set && !vmstate_set_capability(false, &err)) {
        error_report_err(err);
    }
    if (v->ioc) {
        object_unref(OBJECT(v->ioc));
    }
    if (v->watchdog) {
        timer_free(v->watchdog);
    }
    g_free(v);
}

void backup_vma_vmstate_free(BackupVmaVmstate *v)
{
    if (v && !v->started) {
        vmstate_free(v);
    }
}

/*
 * The part's result; in a BH, outside the reader coroutine and the migration
 * notifiers, since the backup may end here and change the block graph
 */
static void vmstate_end_bh(void *opaque)
{
    BackupVmaVmstate *v = opaque;

    migration_remove_notifier(&v->notifier);
    if (v->migration_failed && !v->failed) {
        MigrationInfo *info = qmp_query_migrate(NULL);

        backup_vma_archive_fail(v->archive, -EIO, "saving the VM state "
                                "failed: %s", info->error_desc ?:
                                "the background snapshot failed");
        qapi_free_MigrationInfo(info);
    } else if (!v->failed) {
        backup_vma_archive_producer_done(v->archive);
    }
    if (v->watchdog) {
        timer_del(v->watchdog);
    }
    vmstate_progress.done = !v->failed && !v->migration_failed;
    vmstate_progress.ram_remaining = 0;
    qio_channel_close(v->ioc, NULL);
    v->ended_cb(v->opaque);
    vmstate_free(v);
}

/* Both the reader and the migration have ended? */
static void vmstate_maybe_end(BackupVmaVmstate *v)
{
    if (v->ending || !v->started || !v->reader_done || !v->migration_ended) {
        return;
    }
    v->ending = true;
    aio_bh_schedule_oneshot(qemu_get_aio_context(), vmstate_end_bh, v);
}

static int vmstate_migration_notify(NotifierWithReturn *n, MigrationEvent *e,
                                    Error **errp)
{
    BackupVmaVmstate *v = container_of(n, BackupVmaVmstate, notifier);

    if (e->type == MIG_EVENT_PRECOPY_SETUP) {
        return 0;
    }
    v->migration_ended = true;
    v->migration_failed = e->type == MIG_EVENT_PRECOPY_FAILED;
    vmstate_maybe_end(v);
    return 0;
}

/* Stop the migration: it fails, the VM keeps running */
static void vmstate_stop(BackupVmaVmstate *v)
{
    v->failed = true;
    if (!v->migration_ended) {
        qmp_migrate_cancel(NULL);
    }
    /* A migration thread writing to us gets an error at once */
    qio_channel_shutdown(v->ioc, QIO_CHANNEL_SHUTDOWN_BOTH, NULL);
}

void backup_vma_vmstate_cancel(BackupVmaVmstate *v)
{
    if (v && v->started && !v->failed) {
        vmstate_stop(v);
    }
}

static void coroutine_fn vmstate_read_co(void *opaque)
{
    BackupVmaVmstate *v = opaque;
    g_autofree uint8_t *buf = g_malloc(VMSTATE_CHUNK);
    uint64_t offset = 0;
    size_t fill = 0;
    bool eof = false;

    while (!eof && !v->failed) {
        Error *err = NULL;
        ssize_t n = qio_channel_read(v->ioc, (char *)buf + fill,
                                     VMSTATE_CHUNK - fill, &err);

        if (n == QIO_CHANNEL_ERR_BLOCK) {
            qio_channel_yield(v->ioc, G_IO_IN);
            continue;
        }
        if (n < 0) {
            if (!v->failed) {
                backup_vma_archive_fail(v->archive, -EIO, "reading the VM "
                                        "state from the migration failed: "
                                        "%s", error_get_pretty(err));
                vmstate_stop(v);
            }
            error_free(err);
            break;
        }
        eof = n == 0;
        fill += n;
        if (fill == VMSTATE_CHUNK || (eof && fill)) {
            int ret;

            v->waiting_since_ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
            ret = backup_vma_archive_write(v->archive, v->dev_id, offset,
                                           buf, fill);
            v->waiting_since_ms = 0;
            if (ret < 0) {
                /* The archive has the error; the migration must stop */
                if (!v->failed) {
                    vmstate_stop(v);
                }
                break;
            }
            offset += fill;
            vmstate_progress.bytes = offset;
            fill = 0;
        }
    }
    v->reader_done = true;
    vmstate_maybe_end(v);
}

/* Once a second while the state is saved: is the reader stuck? */
static void vmstate_watchdog(void *opaque)
{
    BackupVmaVmstate *v = opaque;
    int64_t now = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);

    if (v->waiting_since_ms && !v->failed &&
        now - v->waiting_since_ms > v->wait_limit_ms) {
        backup_vma_archive_fail(v->archive, -ETIMEDOUT, "the RAM state "
                                "waited longer than cbw-timeout (%" PRId64
                                " s) for the archive, which would stall "
                                "guest memory writes: the backup failed",
                                v->wait_limit_ms / 1000);
        vmstate_stop(v);
        return;
    }
    timer_mod(v->watchdog, now + 1000);
}

bool backup_vma_vmstate_start(BackupVmaVmstate *v,
                              bool (*instant)(void *opaque, Error **errp),
                              void (*ended_cb)(void *opaque), void *opaque,
                              Error **errp)
{
    QIOChannelSocket *theirs;
    int fds[2];
    bool ok;

    if (qemu_socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) {
        error_setg_errno(errp, errno, "vmstate: cannot create a socket pair");
        return false;
    }
    theirs = qio_channel_socket_new_fd(fds[1], errp);
    if (!theirs) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    v->ioc = QIO_CHANNEL(qio_channel_socket_new_fd(fds[0], errp));
    if (!v->ioc) {
        close(fds[0]);
        object_unref(OBJECT(theirs));
        return false;
    }
    qio_channel_set_name(QIO_CHANNEL(theirs), "backup-vma-vmstate-out");
    qio_channel_set_name(v->ioc, "backup-vma-vmstate-in");
    qio_channel_set_blocking(v->ioc, false, NULL);
    v->ended_cb = ended_cb;
    v->opaque = opaque;

    migration_add_notifier(&v->notifier, vmstate_migration_notify);
    v->starting = true;
    ok = migration_start_to_channel(QIO_CHANNEL(theirs), instant, opaque,
                                    errp);
    v->starting = false;
    /* The migration holds its own reference while it runs */
    object_unref(OBJECT(theirs));
    if (!ok) {
        error_prepend(errp, "vmstate: ");
        migration_remove_notifier(&v->notifier);
        return false;
    }
    v->started = true;
    if (v->wait_limit_ms) {
        v->watchdog = timer_new_ms(QEMU_CLOCK_REALTIME, vmstate_watchdog, v);
        timer_mod(v->watchdog,
                  qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 1000);
    }
    qemu_coroutine_enter(qemu_coroutine_create(vmstate_read_co, v));
    return true;
}

void backup_vma_vmstate_get_progress(BackupVmaVmstateProgress *p)
{
    *p = vmstate_progress;
    if (migration_is_running()) {
        MigrationInfo *info = qmp_query_migrate(NULL);

        if (info->ram) {
            vmstate_progress.ram_remaining = info->ram->remaining;
            p->ram_remaining = info->ram->remaining;
        }
        qapi_free_MigrationInfo(info);
    }
}
