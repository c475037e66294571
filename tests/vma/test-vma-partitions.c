/*
 * Unit tests of the vma tool's partition table reader (vma mount/serve):
 * MBR and GPT tables as partitioning tools write them, and tables that
 * must not be taken for one.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdbool.h>
#include <string.h>
#include <glib.h>
#include "vma-partitions.h"

#define DISK  (64 * 1024 * 1024)
#define FIRST (64 * 1024)

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = v >> (8 * i);
    }
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, v);
    put_le32(p + 4, v >> 32);
}

static void mbr_entry(uint8_t *first, unsigned i, uint8_t status,
                      uint8_t type, uint32_t start, uint32_t sectors)
{
    uint8_t *e = first + 446 + 16 * i;

    e[0] = status;
    e[4] = type;
    put_le32(e + 8, start);
    put_le32(e + 12, sectors);
    first[510] = 0x55;
    first[511] = 0xaa;
}

static void check(GArray *parts, unsigned n, const VmaPartition *want)
{
    g_assert_cmpuint(parts->len, ==, n);
    for (unsigned i = 0; i < n; i++) {
        VmaPartition *p = &g_array_index(parts, VmaPartition, i);

        g_assert_cmpuint(p->number, ==, want[i].number);
        g_assert_cmpuint(p->offset, ==, want[i].offset);
        g_assert_cmpuint(p->size, ==, want[i].size);
    }
    g_array_free(parts, true);
}

static void test_mbr(void)
{
    g_autofree uint8_t *first = g_malloc0(FIRST);
    const VmaPartition want[] = {
        { 1, 2048 * 512, 4096 * 512 },
        { 3, 8192 * 512, 100 * 512 },
    };

    mbr_entry(first, 0, 0x80, 0x83, 2048, 4096);
    mbr_entry(first, 1, 0, 0x05, 6144, 1000);       /* extended: left out */
    mbr_entry(first, 2, 0, 0x07, 8192, 100);
    mbr_entry(first, 3, 0, 0x83, DISK / 512, 10);   /* past the end */
    check(vma_partitions_parse(first, FIRST, DISK), 2, want);
}

static void test_gpt(void)
{
    g_autofree uint8_t *first = g_malloc0(FIRST);
    const VmaPartition want[] = {
        { 1, 2048 * 512, 2048 * 512 },
        { 4, 10000 * 512, 1 * 512 },
    };
    uint8_t *h = first + 512;

    mbr_entry(first, 0, 0, 0xee, 1, DISK / 512 - 1);
    memcpy(h, "EFI PART", 8);
    put_le64(h + 72, 2);
    put_le32(h + 80, 128);
    put_le32(h + 84, 128);
    first[1024] = 1;                                /* entry 1: a type */
    put_le64(first + 1024 + 32, 2048);
    put_le64(first + 1024 + 40, 4095);
    first[1024 + 3 * 128] = 1;                      /* entry 4 */
    put_le64(first + 1024 + 3 * 128 + 32, 10000);
    put_le64(first + 1024 + 3 * 128 + 40, 10000);
    check(vma_partitions_parse(first, FIRST, DISK), 2, want);

    /* entries outside the first 64 KiB are not read */
    put_le64(h + 72, FIRST / 512);
    check(vma_partitions_parse(first, FIRST, DISK), 0, NULL);
    /* no header: nothing */
    put_le64(h + 72, 2);
    h[0] = 'X';
    check(vma_partitions_parse(first, FIRST, DISK), 0, NULL);
}

static void test_not_a_table(void)
{
    g_autofree uint8_t *first = g_malloc0(FIRST);
    GRand *rand = g_rand_new_with_seed(7);

    /* no signature (a filesystem on the whole disk) */
    check(vma_partitions_parse(first, FIRST, DISK), 0, NULL);
    /* a boot sector with code where the entries are: bad status bytes */
    mbr_entry(first, 0, 0x80, 0x83, 2048, 4096);
    first[446 + 16] = 0x33;
    check(vma_partitions_parse(first, FIRST, DISK), 0, NULL);
    /* a disk smaller than a sector */
    check(vma_partitions_parse(first, 100, 100), 0, NULL);
    /* random first clusters with a signature: whatever comes out lies
     * within the disk */
    for (int round = 0; round < 2000; round++) {
        GArray *parts;

        for (size_t i = 0; i < FIRST; i += 4) {
            put_le32(first + i, g_rand_int(rand));
        }
        first[510] = 0x55;
        first[511] = 0xaa;
        if (round % 2) {
            first[446 + 4] = 0xee;
            first[446] = 0;
            memcpy(first + 512, "EFI PART", 8);
            put_le64(first + 512 + 72, 2 + round % 200);
        }
        parts = vma_partitions_parse(first, FIRST, DISK);
        for (guint i = 0; i < parts->len; i++) {
            VmaPartition *p = &g_array_index(parts, VmaPartition, i);

            g_assert_cmpuint(p->size, >, 0);
            g_assert_cmpuint(p->offset + p->size, <=, DISK);
        }
        g_array_free(parts, true);
    }
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vma/partitions/mbr", test_mbr);
    g_test_add_func("/vma/partitions/gpt", test_gpt);
    g_test_add_func("/vma/partitions/not-a-table", test_not_a_table);
    return g_test_run();
}
