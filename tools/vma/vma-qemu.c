/*
 * vma tool: the QEMU build's start-up and back ends
 *
 * Built in QEMU's tree in place of vma-standalone.c: starts the block
 * layer the way qemu-img does, and registers the BlockBackend back ends,
 * so that `vma create` reads and `vma extract -r` writes any image QEMU
 * opens.  This is the only file that differs between the two builds.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block.h"
#include "crypto/init.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qemu/sockets.h"
#include "qobject/qdict.h"
#include "block/vma.h"
#include "vma-blk.h"
#include "vma-ops.h"

#define DEFAULT_CACHE   "writeback"

/*
 * A raw image can hold anything, including what looks like a qcow2 header
 * pointing at host files: the format is always given, never probed
 */
const char *vma_default_source_format(void)
{
    return NULL;
}

/* Every format this QEMU has is known: there is nowhere else to look */
const char *vma_unknown_format_hint(void)
{
    return "";
}

BlockBackend *vma_blk_open(const char *format, const char *path, int flags,
                           const char *cache, Error **errp)
{
    QDict *options = qdict_new();
    BlockBackend *blk;
    bool writethrough;

    if (bdrv_parse_cache_mode(cache ? cache : DEFAULT_CACHE, &flags,
                              &writethrough) < 0) {
        error_setg(errp, "invalid cache mode '%s'", cache);
        qobject_unref(options);
        return NULL;
    }
    qdict_put_str(options, "driver", format);
    blk = blk_new_open(path, NULL, options, flags, errp);
    if (!blk) {
        /* Not every driver says what it failed to open */
        if (!strstr(error_get_pretty(*errp), path)) {
            error_prepend(errp, "cannot open '%s' (%s): ", path, format);
        }
        return NULL;
    }
    blk_set_enable_write_cache(blk, !writethrough);
    return blk;
}

bool vma_blk_set_gerror(GError **errp, Error *err)
{
    g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "%s", error_get_pretty(err));
    error_free(err);
    return false;
}

bool vma_blk_set_gerror_errno(GError **errp, int ret, const char *what,
                              const char *name)
{
    g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(-ret),
                "%s '%s': %s", what, name, g_strerror(-ret));
    return false;
}

/* The fallback: any driver this QEMU has (formats and protocols) */
static bool blk_has_driver(const char *format)
{
    return bdrv_find_format(format) != NULL;
}

/* What qemu-img's main() does before it opens images */
static bool start_block_layer(const char *argv0, Error **errp)
{
    socket_init();
    error_init(argv0);
    module_call_init(MODULE_INIT_TRACE);
    qemu_init_exec_dir(argv0);
    if (qemu_init_main_loop(errp) < 0 || qcrypto_init(errp) < 0) {
        return false;
    }
    module_call_init(MODULE_INIT_QOM);
    bdrv_init();
    return true;
}

bool vma_backends_init(const char *argv0, GError **errp)
{
    Error *err = NULL;

    if (!start_block_layer(argv0, &err)) {
        return vma_blk_set_gerror(errp, err);
    }
    vma_register_source("raw", &vma_source_blk_ops);
    vma_register_source("qcow2", &vma_source_blk_ops);
    vma_register_source_fallback(blk_has_driver, "any other format QEMU opens",
                                 &vma_source_blk_ops);
    vma_register_target("raw", &vma_target_blk_ops);
    vma_register_target("qcow2", &vma_target_blk_ops);
    vma_register_target_fallback(blk_has_driver, "any other format QEMU opens",
                                 &vma_target_blk_ops);
    /* Disks extracted into the directory: new sparse files, renamed last */
    vma_register_target(VMA_EXTRACT_FORMAT, &vma_target_raw_ops);
    return true;
}
