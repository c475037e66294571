/*
 * vma tool: BlockBackend source (QEMU build)
 *
 * Reads any image QEMU opens, in the format given (never probed).  Block
 * status tells which ranges read as zeroes (holes, unallocated or zero
 * clusters, through the whole backing chain): `vma create` records them as
 * zero clusters without reading them.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block.h"
#include "vma-blk.h"
#include "vma-ops.h"

typedef struct BlkSource {
    VmaSource common;
    BlockBackend *blk;
} BlkSource;

static void blk_source_close(VmaSource *src)
{
    BlkSource *s = (BlkSource *)src;

    if (!s) {
        return;
    }
    if (s->blk) {
        blk_unref(s->blk);
    }
    g_free(s->common.name);
    g_free(s);
}

/*
 * QEMU counts sizes in 512-byte sectors and rounds a raw file up to the
 * next one; the archive keeps a disk's bytes exactly (sizes need not be
 * multiples of 512, the standalone build copies them as they are), so a
 * raw image in a regular file has the file's own size.
 */
static uint64_t blk_source_exact_size(const char *format, const char *path,
                                      uint64_t size)
{
    struct stat st;

    if (!strcmp(format, "raw") && stat(path, &st) == 0 &&
        S_ISREG(st.st_mode) && (uint64_t)st.st_size <= size &&
        size - st.st_size < BDRV_SECTOR_SIZE) {
        return st.st_size;
    }
    return size;
}

static VmaSource *blk_source_open(const char *format, const char *path,
                                  GError **errp)
{
    BlkSource *s = g_new0(BlkSource, 1);
    Error *err = NULL;
    int64_t size;

    s->common.ops = &vma_source_blk_ops;
    s->common.name = g_strdup(path);
    s->blk = vma_blk_open(format, path, 0, NULL, &err);
    if (!s->blk) {
        blk_source_close(&s->common);
        vma_blk_set_gerror(errp, err);
        return NULL;
    }
    size = blk_getlength(s->blk);
    if (size < 0) {
        vma_blk_set_gerror_errno(errp, size, "cannot get the size of", path);
        blk_source_close(&s->common);
        return NULL;
    }
    s->common.size = blk_source_exact_size(format, path, size);
    return &s->common;
}

static bool blk_source_read(VmaSource *src, uint64_t offset, void *buf,
                            size_t len, GError **errp)
{
    BlkSource *s = (BlkSource *)src;
    int ret = blk_pread(s->blk, offset, len, buf, 0);

    if (ret < 0) {
        return vma_blk_set_gerror_errno(errp, ret, "cannot read", src->name);
    }
    return true;
}

static bool blk_source_next_extent(VmaSource *src, uint64_t offset,
                                   bool *is_data, uint64_t *end,
                                   GError **errp)
{
    BlkSource *s = (BlkSource *)src;
    int64_t pnum = 0;
    int ret;

    ret = bdrv_block_status_above(blk_bs(s->blk), NULL, offset,
                                  src->size - offset, &pnum, NULL, NULL);
    if (ret < 0) {
        return vma_blk_set_gerror_errno(errp, ret, "cannot get the block "
                                        "status of", src->name);
    }
    /* Allocated or not: only what reads as zero may be skipped */
    *is_data = !(ret & BDRV_BLOCK_ZERO);
    *end = offset + MAX(pnum, 1);
    *end = MIN(*end, src->size);
    return true;
}

const VmaSourceOps vma_source_blk_ops = {
    .open = blk_source_open,
    .read = blk_source_read,
    .next_extent = blk_source_next_extent,
    .close = blk_source_close,
};
