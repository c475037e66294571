/*
 * vma tool: the reference tool's `-v` lines, which scripts parse
 *
 * extract and verify print on stdout, whenever the percentage changes,
 *   progress 42% (read 123456 bytes, duration 3 sec)
 * and at the end
 *   total bytes read 123456, sparse bytes 65536 (53.1%)
 *   space reduction due to 4K zero blocks 2.95%
 * (or "vma archive contains no image data").  Bytes are counted in whole
 * 64 KiB clusters; "sparse" are clusters stored as all zero, the reduction
 * is the zero 4 KiB blocks of the other clusters.
 *
 * create prints on stderr
 *   progress 42% 123456/654321 4096      (transferred/total zero bytes)
 *   image drive-scsi0: size=654321 zeros=4096 saved=650225
 *
 * The percentage never divides by zero and never passes 100.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_REPORT_H
#define VMA_REPORT_H

#include <stdint.h>
#include <glib.h>
#include "block/vma.h"

typedef struct VmaReadReport VmaReadReport;

/* For a full pass over the archive of @r */
VmaReadReport *vma_read_report_new(VmaReader *r);
void vma_read_report_free(VmaReadReport *rep);

/* A cluster was read; its stored blocks are the bits of @mask */
void vma_read_report_cluster(VmaReadReport *rep, uint16_t mask);

/* The totals, after a successful pass */
void vma_read_report_finish(VmaReadReport *rep);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaReadReport, vma_read_report_free)

/*
 * One create progress line, if the percentage differs from *@last_percent
 * (start with -1), which it updates
 */
void vma_report_create_progress(int *last_percent, uint64_t transferred,
                                uint64_t total, uint64_t zero_bytes);

/* The summary line of one image */
void vma_report_create_image(const char *name, uint64_t size,
                             uint64_t zero_bytes);

#endif /* VMA_REPORT_H */
