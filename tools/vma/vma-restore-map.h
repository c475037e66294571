/*
 * vma tool: the restore map of `vma extract -r`
 *
 * One line per disk, as the reference tool reads them:
 *
 *   [format=<fmt>:][throttling.bps=<n>:][throttling.group=<g>:]
 *   [cache=<mode>:]{0|1}:<devname>=<target>
 *   skip=<devname>
 *
 * ended by the end of the file, an empty line or "done".  The options may
 * come in any order, each at most once; the target is the rest of the line
 * (it may contain ':' and '=', as nbd:// URLs and rbd: specs do).  0 means
 * the target reads as zeroes already, 1 that zeroes must be written too.
 *
 * This module only parses: whether the names exist in the archive and the
 * targets fit is for the caller to check.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_RESTORE_MAP_H
#define VMA_RESTORE_MAP_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include "vma-ops.h"

typedef struct VmaMapEntry {
    char *devname;
    bool skip;              /* skip=<devname>: nothing else is set */
    char *format;           /* NULL: not given (raw) */
    char *target;
    unsigned line;          /* for messages, from 1 */
    VmaTargetOptions opts;  /* strings point into this entry */
} VmaMapEntry;

/*
 * Parse one line (without its newline).  @line_no is used in messages.
 * Returns NULL with @errp set on a syntax error.
 */
VmaMapEntry *vma_map_entry_parse(const char *line, unsigned line_no,
                                 GError **errp);
void vma_map_entry_free(VmaMapEntry *e);

/*
 * Read the map from @path (a file or FIFO; "-" is stdin) up to its end,
 * an empty line or "done", and return its entries in order.  Fails on a
 * syntax error, a device named twice, or lines of one throttling group
 * asking for different limits.
 */
GPtrArray *vma_restore_map_read(const char *path, GError **errp);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaMapEntry, vma_map_entry_free)

#endif /* VMA_RESTORE_MAP_H */
