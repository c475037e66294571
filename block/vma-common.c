/*
 * VMA archive format: helpers shared by the writer and the reader
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdio.h>
#include "vma-internal.h"

GQuark vma_error_quark(void)
{
    return g_quark_from_static_string("vma-error-quark");
}

void vma_uuid_unparse(const uint8_t uuid[VMA_UUID_SIZE],
                      char out[VMA_UUID_STR_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;

    for (int i = 0; i < VMA_UUID_SIZE; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *p++ = '-';
        }
        *p++ = hex[uuid[i] >> 4];
        *p++ = hex[uuid[i] & 0xf];
    }
    *p = '\0';
}

bool vma_name_is_safe(const char *name)
{
    if (!name || name[0] == '\0' || !strcmp(name, ".") || !strcmp(name, "..")) {
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p == '/' || *p < 0x20 || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

void vma_md5_with_hole(const uint8_t *buf, size_t len, size_t md5_offset,
                       uint8_t digest[VMA_MD5_SIZE])
{
    static const uint8_t zero[VMA_MD5_SIZE];
    GChecksum *md5 = g_checksum_new(G_CHECKSUM_MD5);
    gsize digest_len = VMA_MD5_SIZE;

    g_checksum_update(md5, buf, md5_offset);
    g_checksum_update(md5, zero, VMA_MD5_SIZE);
    g_checksum_update(md5, buf + md5_offset + VMA_MD5_SIZE,
                      len - md5_offset - VMA_MD5_SIZE);
    g_checksum_get_digest(md5, digest, &digest_len);
    g_checksum_free(md5);
}

bool vma_buffer_is_zero(const uint8_t *buf, size_t len)
{
    /* Comparing the buffer with itself shifted by one is vectorized by libc */
    return len == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0);
}

/* Each page covers 32768 clusters (2 GiB of device) with 4 KiB of bits */
#define CLUSTER_SET_PAGE_BITS  (4096 * 8)

struct VmaClusterSet {
    uint64_t clusters;
    uint64_t count;
    uint8_t **pages;
};

VmaClusterSet *vma_cluster_set_new(uint64_t clusters)
{
    VmaClusterSet *set = g_new0(VmaClusterSet, 1);

    set->clusters = clusters;
    set->pages = g_new0(uint8_t *, clusters / CLUSTER_SET_PAGE_BITS + 1);
    return set;
}

void vma_cluster_set_free(VmaClusterSet *set)
{
    if (!set) {
        return;
    }
    for (uint64_t i = 0; i <= set->clusters / CLUSTER_SET_PAGE_BITS; i++) {
        g_free(set->pages[i]);
    }
    g_free(set->pages);
    g_free(set);
}

bool vma_cluster_set_add(VmaClusterSet *set, uint64_t cluster)
{
    uint8_t **page = &set->pages[cluster / CLUSTER_SET_PAGE_BITS];
    uint64_t bit = cluster % CLUSTER_SET_PAGE_BITS;

    g_assert(cluster < set->clusters);
    if (!*page) {
        *page = g_malloc0(CLUSTER_SET_PAGE_BITS / 8);
    }
    if ((*page)[bit / 8] & (1u << (bit % 8))) {
        return false;
    }
    (*page)[bit / 8] |= 1u << (bit % 8);
    set->count++;
    return true;
}

uint64_t vma_cluster_set_count(VmaClusterSet *set)
{
    return set->count;
}

uint64_t vma_cluster_set_first_missing(VmaClusterSet *set)
{
    for (uint64_t c = 0; c < set->clusters; c++) {
        const uint8_t *page = set->pages[c / CLUSTER_SET_PAGE_BITS];
        uint64_t bit = c % CLUSTER_SET_PAGE_BITS;

        if (!page || !(page[bit / 8] & (1u << (bit % 8)))) {
            return c;
        }
    }
    return set->clusters;
}
