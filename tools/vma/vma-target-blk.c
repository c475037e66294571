/*
 * vma tool: BlockBackend target (QEMU build)
 *
 * Restores a disk into anything QEMU opens: image files of any format,
 * block devices, nbd://, rbd: ...  The format is given in the restore map
 * (default raw), never probed.
 *
 * The archive is read in one thread, cluster by cluster.  So that reading
 * and writing overlap, adjacent clusters of a target are gathered into
 * buffers of BUF_SIZE which are written asynchronously, at most
 * MAX_IN_FLIGHT requests at a time for all targets together; when none is
 * free, we run the main loop until one completes.  Whole zero clusters are
 * skipped where the target is known to read as zeroes (map flag 0), and
 * otherwise gathered into ranges written with write_zeroes (flag 1), which
 * lets formats and file systems unmap them.
 *
 * Throttling (throttling.bps, throttling.group) is QEMU's I/O throttling
 * of the BlockBackend: targets of one group share its limit.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/aio.h"
#include "block/aio-wait.h"
#include "block/block.h"
#include "qemu/iov.h"
#include "qemu/main-loop.h"
#include "qemu/memalign.h"
#include "qemu/throttle.h"
#include "vma-blk.h"
#include "vma-ops.h"

#define BUF_SIZE        (1024 * 1024)
#define MAX_IN_FLIGHT   16
#define MAX_ZERO_RANGE  (1024 * 1024 * 1024)

typedef struct BlkTarget {
    VmaTarget common;
    BlockBackend *blk;
    bool zero_known;        /* map flag 0: skip whole zero clusters */
    unsigned in_flight;     /* requests submitted and not completed */
    int error;              /* first failed request: negative errno */
    /* A zero range grown while zero clusters are adjacent */
    uint64_t zero_offset;
    uint64_t zero_len;
} BlkTarget;

typedef struct BlkBuf {
    BlkTarget *target;      /* NULL: free */
    uint64_t offset;
    size_t len;
    uint8_t *data;
    QEMUIOVector qiov;
} BlkBuf;

/* Buffers of all targets; one at a time is being filled */
static struct {
    BlkBuf bufs[MAX_IN_FLIGHT];
    BlkBuf *filling;
    unsigned in_flight;     /* requests of all targets */
    unsigned targets;       /* open targets; the last one frees the buffers */
} pool;

static bool blk_target_check(BlkTarget *t, GError **errp)
{
    if (t->error) {
        return vma_blk_set_gerror_errno(errp, t->error, "cannot write",
                                        t->common.name);
    }
    return true;
}

/* Run the main loop (completing requests) as long as @cond holds */
#define WAIT_WHILE(cond) AIO_WAIT_WHILE(qemu_get_aio_context(), (cond))

static void blk_target_request_done(BlkTarget *t, int ret)
{
    t->in_flight--;
    pool.in_flight--;
    if (ret < 0 && !t->error) {
        t->error = ret;
    }
}

static void blk_target_write_done(void *opaque, int ret)
{
    BlkBuf *b = opaque;
    BlkTarget *t = b->target;

    b->target = NULL;
    blk_target_request_done(t, ret);
}

static void blk_target_zeroes_done(void *opaque, int ret)
{
    blk_target_request_done(opaque, ret);
}

static void blk_target_submit_buf(BlkBuf *b)
{
    BlkTarget *t = b->target;

    if (pool.filling == b) {
        pool.filling = NULL;
    }
    t->in_flight++;
    pool.in_flight++;
    qemu_iovec_init_buf(&b->qiov, b->data, b->len);
    blk_aio_pwritev(t->blk, b->offset, &b->qiov, 0, blk_target_write_done, b);
}

static void blk_target_submit_zeroes(BlkTarget *t)
{
    if (!t->zero_len) {
        return;
    }
    WAIT_WHILE(pool.in_flight >= MAX_IN_FLIGHT);
    t->in_flight++;
    pool.in_flight++;
    blk_aio_pwrite_zeroes(t->blk, t->zero_offset, t->zero_len,
                          BDRV_REQ_MAY_UNMAP, blk_target_zeroes_done, t);
    t->zero_len = 0;
}

/* A buffer nobody uses, or NULL */
static BlkBuf *blk_target_free_buf(void)
{
    if (pool.in_flight >= MAX_IN_FLIGHT) {
        return NULL;
    }
    for (unsigned i = 0; i < MAX_IN_FLIGHT; i++) {
        if (!pool.bufs[i].target) {
            return &pool.bufs[i];
        }
    }
    return NULL;
}

/* A free buffer, once the requests in flight leave one */
static BlkBuf *blk_target_get_buf(void)
{
    BlkBuf *b;

    WAIT_WHILE(!(b = blk_target_free_buf()));
    if (!b->data) {
        b->data = qemu_blockalign(NULL, BUF_SIZE);
    }
    return b;
}

static bool blk_target_write(VmaTarget *target, uint64_t offset,
                             const void *buf, size_t len, GError **errp)
{
    BlkTarget *t = (BlkTarget *)target;
    BlkBuf *b = pool.filling;

    if (!blk_target_check(t, errp)) {
        return false;
    }
    while (len > 0) {
        size_t n;

        if (!b || b->target != t || offset != b->offset + b->len ||
            b->len == BUF_SIZE) {
            if (b) {
                blk_target_submit_buf(b);
            }
            b = blk_target_get_buf();
            b->target = t;
            b->offset = offset;
            b->len = 0;
            pool.filling = b;
        }
        n = MIN(len, BUF_SIZE - b->len);
        memcpy(b->data + b->len, buf, n);
        b->len += n;
        buf = (const uint8_t *)buf + n;
        offset += n;
        len -= n;
    }
    return true;
}

static bool blk_target_write_zeroes(VmaTarget *target, uint64_t offset,
                                    uint64_t len, GError **errp)
{
    BlkTarget *t = (BlkTarget *)target;

    if (!blk_target_check(t, errp)) {
        return false;
    }
    if (t->zero_known) {
        return true;
    }
    if (t->zero_len && offset == t->zero_offset + t->zero_len &&
        t->zero_len + len <= MAX_ZERO_RANGE) {
        t->zero_len += len;
        return true;
    }
    blk_target_submit_zeroes(t);
    t->zero_offset = offset;
    t->zero_len = len;
    return true;
}

/* Submit what @t has pending and wait for all its requests */
static void blk_target_drain(BlkTarget *t)
{
    if (pool.filling && pool.filling->target == t) {
        blk_target_submit_buf(pool.filling);
    }
    blk_target_submit_zeroes(t);
    WAIT_WHILE(t->in_flight > 0);
}

static bool blk_target_flush(VmaTarget *target, GError **errp)
{
    BlkTarget *t = (BlkTarget *)target;

    blk_target_drain(t);
    return blk_target_check(t, errp);
}

static void blk_target_free(BlkTarget *t)
{
    if (t->blk) {
        blk_unref(t->blk);
    }
    if (--pool.targets == 0) {
        for (unsigned i = 0; i < MAX_IN_FLIGHT; i++) {
            g_clear_pointer(&pool.bufs[i].data, qemu_vfree);
        }
    }
    g_free(t->common.name);
    g_free(t);
}

static bool blk_target_close(VmaTarget *target, bool commit, GError **errp)
{
    BlkTarget *t = (BlkTarget *)target;
    bool ok = true;

    if (!commit) {
        /* What was written stays; what was not submitted is dropped */
        if (pool.filling && pool.filling->target == t) {
            pool.filling->target = NULL;
            pool.filling = NULL;
        }
        t->zero_len = 0;
    }
    blk_target_drain(t);
    if (commit) {
        ok = blk_target_check(t, errp);
        if (ok) {
            int ret = blk_flush(t->blk);

            if (ret < 0) {
                ok = vma_blk_set_gerror_errno(errp, ret, "cannot flush",
                                              t->common.name);
            }
        }
    }
    blk_target_free(t);
    return ok || !commit;
}

/* Limit writes to @opts->bps, alone or shared with the targets of a group */
static bool blk_target_throttle(BlkTarget *t, const VmaTargetOptions *opts,
                                Error **errp)
{
    static unsigned count;
    g_autofree char *own_group = NULL;
    const char *group = opts->group;
    ThrottleConfig cfg;

    if (!opts->bps && !opts->group) {
        return true;
    }
    throttle_config_init(&cfg);
    cfg.buckets[THROTTLE_BPS_TOTAL].avg = opts->bps;
    if (opts->bps && !throttle_is_valid(&cfg, errp)) {
        error_prepend(errp, "throttling.bps of '%s': ", t->common.name);
        return false;
    }
    if (!group) {
        group = own_group = g_strdup_printf("vma-target-%u", count++);
    }
    blk_io_limits_enable(t->blk, group);
    /* A line without a limit joins its group as the group is */
    if (opts->bps) {
        blk_set_io_limits(t->blk, &cfg);
    }
    return true;
}

static VmaTarget *blk_target_open(const char *format, const char *path,
                                  const VmaTargetOptions *opts, GError **errp)
{
    BlkTarget *t = g_new0(BlkTarget, 1);
    Error *err = NULL;
    int64_t size;

    pool.targets++;
    t->common.ops = &vma_target_blk_ops;
    t->common.name = g_strdup(path);
    /* Most formats allocate whole clusters: one write per VMA cluster */
    t->common.sparse_blocks = false;
    t->zero_known = opts->zero_known;
    t->blk = vma_blk_open(format, path, BDRV_O_RDWR | BDRV_O_UNMAP,
                          opts->cache, &err);
    if (!t->blk || !blk_target_throttle(t, opts, &err)) {
        blk_target_free(t);
        vma_blk_set_gerror(errp, err);
        return NULL;
    }
    size = blk_getlength(t->blk);
    if (size < 0) {
        vma_blk_set_gerror_errno(errp, size, "cannot get the size of", path);
        blk_target_free(t);
        return NULL;
    }
    t->common.size = size;
    return &t->common;
}

const VmaTargetOps vma_target_blk_ops = {
    .open = blk_target_open,
    .write = blk_target_write,
    .write_zeroes = blk_target_write_zeroes,
    .flush = blk_target_flush,
    .close = blk_target_close,
};
