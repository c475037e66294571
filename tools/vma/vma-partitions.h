/*
 * vma tool: the partitions of a disk, from its partition table
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_PARTITIONS_H
#define VMA_PARTITIONS_H

#include <stdint.h>
#include <glib.h>

typedef struct VmaPartition {
    unsigned number;        /* as the table numbers it, from 1 */
    uint64_t offset;        /* bytes from the start of the disk */
    uint64_t size;          /* bytes */
} VmaPartition;

/*
 * The partitions of a disk of @disk_size bytes whose first @len bytes are
 * @first, as its MBR (primary partitions) or GPT (entries that lie within
 * @first) lists them, in table order.  512-byte sectors.  Entries that
 * are empty, extended (MBR) or reach past the disk's end are left out.
 * An empty array when there is no table.
 */
GArray *vma_partitions_parse(const uint8_t *first, size_t len,
                             uint64_t disk_size);

#endif /* VMA_PARTITIONS_H */
