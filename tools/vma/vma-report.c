/*
 * vma tool: the reference tool's `-v` lines, which scripts parse
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include "vma-report.h"

struct VmaReadReport {
    uint64_t clusters;          /* in the archive, the last ones counted */
    uint64_t clusters_read;
    uint64_t zero_cluster_bytes;
    uint64_t zero_block_bytes;  /* zero blocks of clusters with data */
    time_t start;
    int last_percent;
};

/* 0..100 in integers: @done of @total, 100 once @total is reached */
static int report_percent(uint64_t done, uint64_t total)
{
    if (!total || done >= total) {
        return 100;
    }
    /* done < total: no overflow for any total below 2^57 */
    if (total < UINT64_MAX / 100) {
        return (int)(done * 100 / total);
    }
    return (int)(done / (total / 100));
}

static void report_progress_line(VmaReadReport *rep, int percent)
{
    rep->last_percent = percent;
    printf("progress %d%% (read %" PRIu64 " bytes, duration %" PRId64
           " sec)\n", percent, rep->clusters_read * VMA_CLUSTER_SIZE,
           (int64_t)(time(NULL) - rep->start));
    fflush(stdout);
}

VmaReadReport *vma_read_report_new(VmaReader *r)
{
    VmaReadReport *rep = g_new0(VmaReadReport, 1);

    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        uint64_t size = vma_reader_get_device(r, i)->size;

        rep->clusters += size / VMA_CLUSTER_SIZE +
                         !!(size % VMA_CLUSTER_SIZE);
    }
    rep->start = time(NULL);
    return rep;
}

void vma_read_report_free(VmaReadReport *rep)
{
    g_free(rep);
}

void vma_read_report_cluster(VmaReadReport *rep, uint16_t mask)
{
    int percent;

    if (!rep) {
        return;
    }
    rep->clusters_read++;
    if (mask == 0) {
        rep->zero_cluster_bytes += VMA_CLUSTER_SIZE;
    } else {
        rep->zero_block_bytes += (uint64_t)(VMA_BLOCKS_PER_CLUSTER -
                                            __builtin_popcount(mask)) *
                                 VMA_BLOCK_SIZE;
    }
    percent = report_percent(rep->clusters_read, rep->clusters);
    if (percent != rep->last_percent) {
        report_progress_line(rep, percent);
    }
}

void vma_read_report_finish(VmaReadReport *rep)
{
    uint64_t total, data;

    if (!rep) {
        return;
    }
    if (!rep->clusters_read) {
        printf("vma archive contains no image data\n");
        fflush(stdout);
        return;
    }
    /*
     * The whole archive was read: a RAM state that ended before its
     * declared size, or an incremental archive that holds only some
     * clusters, never got there by counting
     */
    if (rep->last_percent != 100) {
        report_progress_line(rep, 100);
    }
    total = rep->clusters_read * VMA_CLUSTER_SIZE;
    printf("total bytes read %" PRIu64 ", sparse bytes %" PRIu64
           " (%.3g%%)\n", total, rep->zero_cluster_bytes,
           100.0 * rep->zero_cluster_bytes / total);
    data = total - rep->zero_cluster_bytes;
    if (data) {
        printf("space reduction due to 4K zero blocks %.3g%%\n",
               100.0 * rep->zero_block_bytes / data);
    }
    fflush(stdout);
}

void vma_report_create_progress(int *last_percent, uint64_t transferred,
                                uint64_t total, uint64_t zero_bytes)
{
    int percent = report_percent(transferred, total);

    if (percent == *last_percent) {
        return;
    }
    *last_percent = percent;
    fprintf(stderr, "progress %d%% %" PRIu64 "/%" PRIu64 " %" PRIu64 "\n",
            percent, transferred, total, zero_bytes);
}

void vma_report_create_image(const char *name, uint64_t size,
                             uint64_t zero_bytes)
{
    fprintf(stderr, "image %s: size=%" PRIu64 " zeros=%" PRIu64
            " saved=%" PRIu64 "\n", name, size, zero_bytes,
            size - MIN(size, zero_bytes));
}
