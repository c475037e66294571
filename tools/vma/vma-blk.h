/*
 * vma tool: what the BlockBackend back ends share (QEMU build only)
 *
 * Include after "qemu/osdep.h".
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_BLK_H
#define VMA_BLK_H

#include "qapi/error.h"
#include "system/block-backend.h"

/*
 * Open @path as an image of @format, which is never probed, with the
 * BDRV_O_* @flags and the cache mode @cache (NULL: writeback).  Only the
 * protocol is found from @path, so nbd://, rbd: ... work.
 */
BlockBackend *vma_blk_open(const char *format, const char *path, int flags,
                           const char *cache, Error **errp);

/* Hand @err (consumed) on as a GError for the front end; returns false */
bool vma_blk_set_gerror(GError **errp, Error *err);

/* Same for a failed request: "<what> '<name>': <strerror(-ret)>" */
bool vma_blk_set_gerror_errno(GError **errp, int ret, const char *what,
                              const char *name);

#endif /* VMA_BLK_H */
