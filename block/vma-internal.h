/*
 * VMA archive format: byte layout shared by the writer and the reader
 *
 * Offsets follow docs/specs/vma_spec.txt.  The code reads and writes fields
 * at explicit offsets instead of through packed structs, so it does not
 * depend on the compiler's struct layout or the host's byte order.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BLOCK_VMA_INTERNAL_H
#define BLOCK_VMA_INTERNAL_H

#include <inttypes.h>
#include <string.h>
#include "block/vma.h"

#define VMA_VERSION 1
#define VMA_MD5_SIZE 16

/* Main header */
#define VMA_HDR_MAGIC          0
#define VMA_HDR_VERSION        4
#define VMA_HDR_UUID           8
#define VMA_HDR_CTIME          24
#define VMA_HDR_MD5            32
#define VMA_HDR_BLOB_OFFSET    48
#define VMA_HDR_BLOB_SIZE      52
#define VMA_HDR_HEADER_SIZE    56
#define VMA_HDR_RESERVED1      60
#define VMA_HDR_CONFIG_NAMES   2044
#define VMA_HDR_CONFIG_DATA    3068
#define VMA_HDR_RESERVED2      4092
#define VMA_HDR_DEV_INFO       4096
#define VMA_DEV_INFO_SIZE      32
/* Fields of one dev_info entry */
#define VMA_DEV_NAME           0
#define VMA_DEV_RESERVED1      4
#define VMA_DEV_SIZE           8
#define VMA_DEV_RESERVED2      16

/*
 * Headers larger than this are refused.  The largest legitimate blob buffer
 * (256 config names, 256 config bodies and 255 device names, each at most
 * 65535 bytes) is about 48 MiB.
 */
#define VMA_MAX_HEADER_SIZE    (VMA_HEADER_FIXED_SIZE + 64 * 1024 * 1024)

/* Extent header */
#define VMA_EXT_MAGIC          0
#define VMA_EXT_RESERVED       4
#define VMA_EXT_BLOCK_COUNT    6
#define VMA_EXT_UUID           8
#define VMA_EXT_MD5            24
#define VMA_EXT_BLOCKINFO      40

#define VMA_EXTENT_MAX_BYTES \
    (VMA_EXTENT_HEADER_SIZE + VMA_MAX_EXTENT_CLUSTERS * VMA_CLUSTER_SIZE)

/* blockinfo = mask << 48 | reserved << 40 | dev_id << 32 | cluster_num */
#define VMA_BI_MASK(bi)        ((uint16_t)((bi) >> 48))
#define VMA_BI_RESERVED(bi)    ((uint8_t)((bi) >> 40))
#define VMA_BI_DEV_ID(bi)      ((uint8_t)((bi) >> 32))
#define VMA_BI_CLUSTER(bi)     ((uint32_t)(bi))
#define VMA_BI_MAKE(mask, dev_id, cluster) \
    (((uint64_t)(mask) << 48) | ((uint64_t)(dev_id) << 32) | \
     (uint32_t)(cluster))

#define VMA_MAGIC              "VMA"     /* 4 bytes with the NUL */
#define VMA_EXTENT_MAGIC       "VMAE"    /* 4 bytes, NUL not stored */

static inline uint16_t vma_get_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t vma_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t vma_get_be64(const uint8_t *p)
{
    return (uint64_t)vma_get_be32(p) << 32 | vma_get_be32(p + 4);
}

static inline void vma_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = v >> 8;
    p[1] = v;
}

static inline void vma_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

static inline void vma_put_be64(uint8_t *p, uint64_t v)
{
    vma_put_be32(p, v >> 32);
    vma_put_be32(p + 4, v);
}

/* Blob lengths are the one little-endian field of the format */
static inline uint16_t vma_get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline void vma_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = v;
    p[1] = v >> 8;
}

#define ROUND_UP_512(n)        (((n) + 511) & ~(uint64_t)511)

/* Clusters needed for @size bytes */
static inline uint64_t vma_size_to_clusters(uint64_t size)
{
    return size / VMA_CLUSTER_SIZE + (size % VMA_CLUSTER_SIZE != 0);
}

/*
 * A set of cluster numbers (which clusters of a device were seen), with
 * bitmap pages allocated on first use: a crafted header announcing huge
 * devices costs nothing until clusters actually arrive.
 */
typedef struct VmaClusterSet VmaClusterSet;

VmaClusterSet *vma_cluster_set_new(uint64_t clusters);
void vma_cluster_set_free(VmaClusterSet *set);
/* Add @cluster; returns false if it was already there */
bool vma_cluster_set_add(VmaClusterSet *set, uint64_t cluster);
/* Clusters in the set */
uint64_t vma_cluster_set_count(VmaClusterSet *set);
/* The lowest cluster not in the set, or the set's size if it is full */
uint64_t vma_cluster_set_first_missing(VmaClusterSet *set);

/*
 * MD5 of @len bytes of @buf, reading the 16 bytes at @md5_offset as zero
 * (every checksum in the format covers its own field zeroed).
 */
void vma_md5_with_hole(const uint8_t *buf, size_t len, size_t md5_offset,
                       uint8_t digest[VMA_MD5_SIZE]);

/* True if all @len bytes at @buf are zero */
bool vma_buffer_is_zero(const uint8_t *buf, size_t len);

#endif /* BLOCK_VMA_INTERNAL_H */
