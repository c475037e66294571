/*
 * Helpers for the VMA unit tests: archives in memory
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_TEST_UTIL_H
#define VMA_TEST_UTIL_H

#include <string.h>
#include "block/vma.h"

/* VmaOutputFunc appending to a GByteArray */
static inline int test_output_to_array(void *opaque, const void *buf,
                                       size_t len)
{
    g_byte_array_append(opaque, buf, len);
    return 0;
}

/* An archive being read from memory, optionally in small pieces */
typedef struct TestInput {
    const uint8_t *data;
    size_t len;
    size_t pos;
    size_t max_read;    /* 0: no limit */
} TestInput;

static inline ssize_t test_input_from_memory(void *opaque, void *buf,
                                             size_t len)
{
    TestInput *in = opaque;
    size_t n = MIN(len, in->len - in->pos);

    if (in->max_read) {
        n = MIN(n, in->max_read);
    }
    memcpy(buf, in->data + in->pos, n);
    in->pos += n;
    return n;
}

/* Deterministic pseudo-random bytes */
static inline void test_fill_random(uint8_t *buf, size_t len, uint32_t seed)
{
    GRand *rand = g_rand_new_with_seed(seed);

    for (size_t i = 0; i < len; i++) {
        buf[i] = g_rand_int(rand);
    }
    g_rand_free(rand);
}

/* A disk image in memory and where the reader put its clusters */
typedef struct TestDisk {
    const char *name;
    uint64_t size;
    uint8_t *data;        /* what was written */
    uint8_t *restored;    /* what the reader delivered */
    uint8_t *seen;        /* per cluster: times delivered */
} TestDisk;

static inline void test_disk_init(TestDisk *d, const char *name,
                                  uint64_t size, uint32_t seed)
{
    uint64_t clusters = (size + VMA_CLUSTER_SIZE - 1) / VMA_CLUSTER_SIZE;

    d->name = name;
    d->size = size;
    d->data = g_malloc0(size);
    d->restored = g_malloc0(size);
    d->seen = g_malloc0(clusters);
    if (seed) {
        test_fill_random(d->data, size, seed);
    }
}

static inline void test_disk_free(TestDisk *d)
{
    g_free(d->data);
    g_free(d->restored);
    g_free(d->seen);
}

/* Write cluster @c of @d to the archive (length clamped to the disk end) */
static inline void test_write_cluster(VmaWriter *w, uint8_t dev_id,
                                      TestDisk *d, uint64_t c)
{
    uint64_t off = c * VMA_CLUSTER_SIZE;
    size_t len = MIN(VMA_CLUSTER_SIZE, d->size - off);
    GError *err = NULL;

    g_assert_true(vma_writer_write_cluster(w, dev_id, c, d->data + off, len,
                                           &err));
    g_assert_no_error(err);
}

/* VmaClusterFunc storing clusters into TestDisks indexed by dev_id */
static inline bool test_restore_cluster(void *opaque,
                                        const VmaDeviceInfo *dev,
                                        uint64_t cluster_num, uint16_t mask,
                                        const uint8_t *data, size_t len,
                                        GError **errp)
{
    TestDisk **disks = opaque;
    TestDisk *d = disks[dev->dev_id];
    uint64_t off = cluster_num * VMA_CLUSTER_SIZE;

    g_assert_nonnull(d);
    g_assert_cmpuint(dev->size, ==, d->size);
    g_assert_cmpuint(len, ==, MIN(VMA_CLUSTER_SIZE, d->size - off));
    g_assert_true((mask == 0) == (data == NULL));
    if (data) {
        memcpy(d->restored + off, data, len);
    }
    d->seen[cluster_num]++;
    return true;
}

#endif /* VMA_TEST_UTIL_H */
