/*
 * HMP commands of the VM backup into a VMA archive:
 * backup, backup_cancel, info backup
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-backup.h"
#include "qobject/qdict.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "block/block-hmp-cmds.h"

void hmp_backup(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    const char *backup_file = qdict_get_str(qdict, "backupfile");
    const char *devlist = qdict_get_try_str(qdict, "devlist");
    int64_t speed = qdict_get_try_int(qdict, "speed", 0);
    bool vmstate = qdict_get_try_bool(qdict, "vmstate", false);
    g_autoptr(UuidInfo) info = NULL;

    info = qmp_backup(backup_file, false, BACKUP_FORMAT_VMA, NULL, NULL,
                      devlist, true, speed, false, 0, false, false, false,
                      NULL, false, 0, false, 0, false, false, NULL, true,
                      vmstate, &err);
    if (info) {
        monitor_printf(mon, "backup started, uuid %s\n", info->UUID);
    }
    hmp_handle_error(mon, err);
}

void hmp_backup_cancel(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;

    qmp_backup_cancel(&err);
    hmp_handle_error(mon, err);
}

/* "N (P%)" of @total, without dividing by zero */
static void print_part(Monitor *mon, const char *what, int64_t bytes,
                       int64_t total)
{
    int percent = total > 0 ? (int)(bytes * 100 / total) : 0;

    monitor_printf(mon, "%s: %" PRId64 " (%d%%)\n", what, bytes, percent);
}

static void print_time(Monitor *mon, const char *what, int64_t seconds)
{
    g_autoptr(GDateTime) t = g_date_time_new_from_unix_local(seconds);
    g_autofree char *s = t ? g_date_time_format(t, "%c") : NULL;

    monitor_printf(mon, "%s: %s\n", what, s ? s : "?");
}

void hmp_info_backup(Monitor *mon, const QDict *qdict)
{
    g_autoptr(BackupStatus) info = qmp_query_backup(NULL);

    if (!info->has_status) {
        monitor_printf(mon, "No backup has run\n");
        return;
    }
    monitor_printf(mon, "Backup status: %s%s\n",
                   BackupStatusKind_str(info->status),
                   info->finishing ? " (finishing)" : "");
    if (info->errmsg) {
        monitor_printf(mon, "Backup error: %s\n", info->errmsg);
    }
    print_time(mon, "Start time", info->start_time);
    if (info->has_end_time) {
        print_time(mon, "End time", info->end_time);
    }
    monitor_printf(mon, "Backup file: %s\n", info->backup_file);
    monitor_printf(mon, "Backup uuid: %s\n", info->uuid);
    monitor_printf(mon, "Total size: %" PRId64 "\n", info->total);
    print_part(mon, "Transferred bytes", info->transferred, info->total);
    print_part(mon, "Zero bytes", info->zero_bytes, info->total);
    monitor_printf(mon, "Archive size: %" PRId64 "\n", info->archive_size);
    if (info->has_vmstate_bytes) {
        monitor_printf(mon, "RAM state: %" PRId64 " bytes stored, %" PRId64
                       " of %" PRId64 " RAM bytes left\n",
                       info->vmstate_bytes, info->vmstate_ram_remaining,
                       info->vmstate_ram_total);
    }
}
