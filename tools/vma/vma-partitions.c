/*
 * vma tool: the partitions of a disk, from its MBR or GPT
 *
 * vma mount and vma serve export each partition of a disk too, so that a
 * filesystem in a partition is one file (or NBD export) to mount or read,
 * without computing offsets.  Only what the first 64 KiB of the disk say
 * is used: the MBR's four primary entries, or a GPT whose header is in
 * sector 1 and whose entries lie in those 64 KiB (the usual layout).
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdbool.h>
#include <string.h>
#include "vma-partitions.h"

#define SECTOR              512
#define MBR_ENTRIES         446
#define MBR_ENTRY_SIZE      16
#define MBR_TYPE_GPT        0xee
#define GPT_HEADER          SECTOR
#define GPT_MAX_ENTRIES     1024

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void add(GArray *parts, unsigned number, uint64_t first_sector,
                uint64_t sectors, uint64_t disk_size)
{
    VmaPartition p = {
        .number = number,
        .offset = first_sector * SECTOR,
        .size = sectors * SECTOR,
    };

    if (!sectors || first_sector > disk_size / SECTOR ||
        sectors > disk_size / SECTOR - first_sector) {
        return;
    }
    g_array_append_val(parts, p);
}

static void parse_gpt(GArray *parts, const uint8_t *first, size_t len,
                      uint64_t disk_size)
{
    const uint8_t *h = first + GPT_HEADER;
    uint64_t entries_lba;
    uint32_t count, entry_size;

    if (len < GPT_HEADER + 92 || memcmp(h, "EFI PART", 8) != 0) {
        return;
    }
    entries_lba = get_le64(h + 72);
    count = get_le32(h + 80);
    entry_size = get_le32(h + 84);
    if (entry_size < 128 || entry_size > 4096 || count > GPT_MAX_ENTRIES ||
        entries_lba < 2 || entries_lba > len / SECTOR) {
        return;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint64_t off = entries_lba * SECTOR + (uint64_t)i * entry_size;
        const uint8_t *e = first + off;
        static const uint8_t unused[16];
        uint64_t start, last;

        if (off + entry_size > len) {
            break;
        }
        if (!memcmp(e, unused, sizeof(unused))) {
            continue;
        }
        start = get_le64(e + 32);
        last = get_le64(e + 40);
        if (last >= start) {
            add(parts, i + 1, start, last - start + 1, disk_size);
        }
    }
}

GArray *vma_partitions_parse(const uint8_t *first, size_t len,
                             uint64_t disk_size)
{
    GArray *parts = g_array_new(false, false, sizeof(VmaPartition));

    if (len < SECTOR || first[510] != 0x55 || first[511] != 0xaa) {
        return parts;
    }
    for (unsigned i = 0; i < 4; i++) {
        const uint8_t *e = first + MBR_ENTRIES + i * MBR_ENTRY_SIZE;
        uint8_t type = e[4];

        if (e[0] != 0 && e[0] != 0x80) {
            /* Not a partition table (boot code of a whole-disk FAT...) */
            g_array_set_size(parts, 0);
            return parts;
        }
        if (type == MBR_TYPE_GPT) {
            g_array_set_size(parts, 0);
            parse_gpt(parts, first, len, disk_size);
            return parts;
        }
        if (type == 0 || type == 0x05 || type == 0x0f || type == 0x85) {
            continue;   /* empty, or extended: logical ones are not read */
        }
        add(parts, i + 1, get_le32(e + 8), get_le32(e + 12), disk_size);
    }
    return parts;
}
