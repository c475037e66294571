/*
 * vma tool: opening a chain of archives and checking its links
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include "vma-chain-in.h"

static bool chain_in_fail(GError **errp, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static bool chain_in_fail(GError **errp, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT, msg);
    return false;
}

static const VmaDeviceInfo *find_disk(VmaReader *r, const char *name)
{
    const VmaDeviceInfo *dev = vma_find_device_by_name(r, name);

    return dev && !dev->is_vmstate ? dev : NULL;
}

/* Archive @k (k >= 1) must continue the chain of archives 0..k-1 */
static bool chain_in_check_link(VmaChainIn *c, unsigned k, GError **errp)
{
    const VmaChainInfo *cur = c->info[k];
    const char *path = c->paths[k], *prev_path = c->paths[k - 1];
    char have[VMA_UUID_STR_SIZE], want[VMA_UUID_STR_SIZE];
    VmaReader *prev = c->archives[k - 1].reader;

    if (!cur) {
        return chain_in_fail(errp, "'%s' has no %s blob: it is not part of "
                             "a backup chain", path, VMA_CHAIN_CONFIG_NAME);
    }
    vma_uuid_unparse(c->info[k - 1]->uuid, want);
    if (cur->depth == 0) {
        return chain_in_fail(errp, "'%s' is a full archive: it can only "
                             "come first", path);
    }
    vma_uuid_unparse(vma_chain_get_base(cur), have);
    if (cur->depth != k || strcmp(have, want)) {
        return chain_in_fail(errp, "'%s' does not follow '%s': its base is "
                             "%s (incremental %u of its chain), '%s' is %s "
                             "(a link missing or out of order?)", path,
                             prev_path, have, cur->depth, prev_path, want);
    }
    for (unsigned i = 0; i < k; i++) {
        if (memcmp(cur->chain[i], c->info[i]->uuid, VMA_UUID_SIZE)) {
            vma_uuid_unparse(cur->chain[i], have);
            vma_uuid_unparse(c->info[i]->uuid, want);
            return chain_in_fail(errp, "'%s' belongs to another chain: "
                                 "link %u is %s, '%s' is %s", path, i + 1,
                                 have, c->paths[i], want);
        }
    }
    for (unsigned i = 0; i < cur->disks->len; i++) {
        const VmaChainDisk *d = cur->disks->pdata[i];
        const VmaDeviceInfo *now, *before;
        g_autofree char *shown = NULL;

        if (!d->incremental) {
            continue;
        }
        shown = vma_printable_name(d->name);
        now = find_disk(c->archives[k].reader, d->name);
        before = find_disk(prev, d->name);
        if (!before) {
            return chain_in_fail(errp, "disk '%s' is incremental in '%s' "
                                 "but '%s' has no such disk", shown, path,
                                 prev_path);
        }
        if (before->size != now->size) {
            return chain_in_fail(errp, "disk '%s' is incremental in '%s' "
                                 "with %" PRIu64 " bytes but has %" PRIu64
                                 " in '%s'", shown, path, now->size,
                                 before->size, prev_path);
        }
    }
    return true;
}

bool vma_chain_in_open(VmaChainIn *c, char **paths, unsigned count,
                       bool allow_lone_incremental, GError **errp)
{
    unsigned stdin_count = 0;

    memset(c, 0, sizeof(*c));
    for (unsigned i = 0; i < count; i++) {
        stdin_count += !strcmp(paths[i], "-");
    }
    if (stdin_count > 1) {
        return chain_in_fail(errp, "only one archive can be stdin ('-')");
    }
    c->count = count;
    c->paths = paths;
    c->archives = g_new0(VmaArchiveIn, count);
    c->info = g_new0(VmaChainInfo *, count);
    for (unsigned i = 0; i < count; i++) {
        if (!vma_archive_open(&c->archives[i], paths[i], errp)) {
            return false;
        }
        if (!vma_chain_from_reader(c->archives[i].reader, true, &c->info[i],
                                   errp)) {
            g_prefix_error(errp, "'%s': ", paths[i]);
            return false;
        }
    }
    if (count == 1) {
        if (c->info[0] && c->info[0]->depth && !allow_lone_incremental) {
            return chain_in_fail(errp, "'%s' is incremental %u of a chain: "
                                 "give the whole chain, full archive first",
                                 paths[0], c->info[0]->depth);
        }
        return true;
    }
    if (!c->info[0]) {
        return chain_in_fail(errp, "'%s' has no %s blob: it does not start "
                             "a backup chain", paths[0],
                             VMA_CHAIN_CONFIG_NAME);
    }
    if (c->info[0]->depth) {
        return chain_in_fail(errp, "'%s' is incremental %u of a chain, not "
                             "its full archive: the full archive comes "
                             "first", paths[0], c->info[0]->depth);
    }
    for (unsigned k = 1; k < count; k++) {
        if (!chain_in_check_link(c, k, errp)) {
            return false;
        }
    }
    return true;
}

void vma_chain_in_close_one(VmaChainIn *c, unsigned i)
{
    vma_archive_close(&c->archives[i]);
}

void vma_chain_in_close(VmaChainIn *c)
{
    for (unsigned i = 0; i < c->count; i++) {
        if (c->archives) {
            vma_archive_close(&c->archives[i]);
        }
        if (c->info) {
            vma_chain_free(c->info[i]);
        }
    }
    g_free(c->archives);
    g_free(c->info);
    memset(c, 0, sizeof(*c));
}

VmaReader *vma_chain_in_newest(VmaChainIn *c)
{
    return c->archives[c->count - 1].reader;
}

unsigned vma_chain_in_first_for(VmaChainIn *c, const char *name)
{
    unsigned k = c->count - 1;

    if (!find_disk(c->archives[k].reader, name)) {
        return c->count;
    }
    for (;;) {
        const VmaChainDisk *d = c->info[k] ?
            vma_chain_find_disk(c->info[k], name) : NULL;

        if (!d || !d->incremental || k == 0) {
            return k;
        }
        k--;
    }
}
