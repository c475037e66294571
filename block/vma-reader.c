/*
 * VMA archive reader
 *
 * Reads an archive in one sequential pass (so a pipe works): the header is
 * parsed and validated by vma_reader_new(), then vma_reader_run() reads one
 * extent at a time, validates its header completely before handing any of
 * its clusters to the caller, and checks at the end that no disk cluster is
 * missing.  Every error names the archive offset it was found at.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <stdarg.h>
#include <unistd.h>
#include "vma-internal.h"

typedef struct VmaReaderDevice {
    VmaDeviceInfo info;
    uint64_t clusters;      /* disks: clusters the device has */
    uint64_t seen_count;    /* clusters seen so far */
    VmaClusterSet *seen;    /* disks: clusters seen */
    bool allow_absent;      /* an incremental disk: missing clusters are ok */
} VmaReaderDevice;

struct VmaReader {
    VmaInputFunc input;
    void *input_opaque;
    int fd;                 /* for vma_reader_new_fd() */
    uint64_t offset;        /* archive bytes consumed */

    uint8_t *header;        /* the whole header; names point into a copy */
    uint32_t header_size;
    uint8_t uuid[VMA_UUID_SIZE];
    int64_t ctime;

    VmaReaderDevice devices[VMA_MAX_DEVICES];   /* by dev_id */
    const VmaDeviceInfo *device_list[VMA_MAX_DEVICES];
    unsigned device_count;
    VmaConfigInfo configs[VMA_MAX_CONFIGS];
    unsigned config_count;
    GPtrArray *strings;     /* NUL terminated copies of names */

    bool ran;
    uint8_t *extent;        /* VMA_EXTENT_MAX_BYTES */
    uint8_t *cluster;       /* VMA_CLUSTER_SIZE, for partial clusters */
};

static bool reader_error(GError **errp, VmaErrorCode code, uint64_t offset,
                         const char *fmt, ...) G_GNUC_PRINTF(4, 5);

static bool reader_error(GError **errp, VmaErrorCode code, uint64_t offset,
                         const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, VMA_ERROR, code, "archive offset %" PRIu64 ": %s",
                offset, msg);
    return false;
}

/*
 * Read exactly @len bytes.  Returns the number read, which is less than @len
 * only at the end of the archive, or -1 with @errp set on an input error.
 */
static ssize_t reader_read(VmaReader *r, void *buf, size_t len, GError **errp)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = r->input(r->input_opaque, (uint8_t *)buf + done,
                             len - done);
        if (n < 0) {
            reader_error(errp, VMA_ERROR_IO, r->offset + done,
                         "reading the archive failed: %s", g_strerror(-n));
            return -1;
        }
        if (n == 0) {
            break;
        }
        done += n;
    }
    r->offset += done;
    return done;
}

/*
 * Fuzzing builds accept any checksum, or mutated inputs would never get
 * past them into the code worth fuzzing.
 */
static bool reader_md5_matches(const uint8_t *buf, size_t len,
                               size_t md5_offset)
{
    uint8_t md5[VMA_MD5_SIZE];

    vma_md5_with_hole(buf, len, md5_offset, md5);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    return true;
#else
    return memcmp(md5, buf + md5_offset, VMA_MD5_SIZE) == 0;
#endif
}

/* Header parsing */

/* A NUL terminated copy of @len bytes that lives as long as the reader */
static const char *reader_strdup(VmaReader *r, const uint8_t *data, size_t len)
{
    char *s = g_strndup((const char *)data, len);

    g_ptr_array_add(r->strings, s);
    return s;
}

/*
 * Walk the chain of blobs and mark where each one starts.  Returns the
 * start bitmap (one bit per blob buffer byte) or NULL on error.
 */
static uint8_t *reader_index_blobs(VmaReader *r, const uint8_t *blobs,
                                   uint32_t blob_offset, uint32_t blob_size,
                                   GError **errp)
{
    g_autofree uint8_t *starts = g_malloc0(blob_size / 8 + 1);
    uint32_t pos = 1;

    while (pos < blob_size) {
        uint16_t len;

        if (blob_size - pos < 2) {
            /*
             * Zero padding after the last blob (a writer that rounds the
             * buffer size up, as the format text suggests) reads as empty
             * blobs two bytes at a time; an odd count leaves one zero
             * byte, which the reference reader accepts too.
             */
            if (blobs[pos] == 0) {
                break;
            }
            reader_error(errp, VMA_ERROR_FORMAT, blob_offset + pos,
                         "blob length field runs past the end of the blob "
                         "buffer");
            return NULL;
        }
        len = vma_get_le16(blobs + pos);
        if (len > blob_size - pos - 2) {
            reader_error(errp, VMA_ERROR_FORMAT, blob_offset + pos,
                         "blob of %u bytes runs past the end of the blob "
                         "buffer", len);
            return NULL;
        }
        starts[pos / 8] |= 1u << (pos % 8);
        pos += 2 + len;
    }
    return g_steal_pointer(&starts);
}

/*
 * Resolve blob pointer @ptr (found at header offset @field_offset).  With
 * @is_name, the blob must be a NUL terminated string without inner NULs.
 */
static bool reader_get_blob(VmaReader *r, const uint8_t *starts,
                            uint32_t ptr, uint32_t field_offset, bool is_name,
                            const uint8_t **data, uint16_t *len,
                            GError **errp)
{
    uint32_t blob_offset = vma_get_be32(r->header + VMA_HDR_BLOB_OFFSET);
    uint32_t blob_size = vma_get_be32(r->header + VMA_HDR_BLOB_SIZE);
    const uint8_t *blob;

    if (ptr >= blob_size || !(starts[ptr / 8] & (1u << (ptr % 8)))) {
        return reader_error(errp, VMA_ERROR_FORMAT, field_offset,
                            "blob pointer %u does not point to the start "
                            "of a blob", ptr);
    }
    blob = r->header + blob_offset + ptr;
    *len = vma_get_le16(blob);
    *data = blob + 2;
    if (is_name) {
        if (*len == 0 || (*data)[*len - 1] != '\0') {
            return reader_error(errp, VMA_ERROR_FORMAT, blob_offset + ptr,
                                "name is not NUL terminated");
        }
        if (memchr(*data, '\0', *len - 1)) {
            return reader_error(errp, VMA_ERROR_FORMAT, blob_offset + ptr,
                                "name contains a NUL byte");
        }
    }
    return true;
}

static bool reader_check_zero(const uint8_t *buf, size_t len,
                              uint64_t offset, const char *what,
                              GError **errp)
{
    if (!vma_buffer_is_zero(buf, len)) {
        return reader_error(errp, VMA_ERROR_FORMAT, offset,
                            "reserved field (%s) is not zero", what);
    }
    return true;
}

static bool reader_parse_configs(VmaReader *r, const uint8_t *starts,
                                 GError **errp)
{
    for (unsigned i = 0; i < VMA_MAX_CONFIGS; i++) {
        uint32_t name_field = VMA_HDR_CONFIG_NAMES + 4 * i;
        uint32_t data_field = VMA_HDR_CONFIG_DATA + 4 * i;
        uint32_t name_ptr = vma_get_be32(r->header + name_field);
        uint32_t data_ptr = vma_get_be32(r->header + data_field);
        const uint8_t *name, *data;
        uint16_t name_len, data_len;
        VmaConfigInfo *c;

        if (!name_ptr && !data_ptr) {
            continue;
        }
        if (!name_ptr || !data_ptr) {
            return reader_error(errp, VMA_ERROR_FORMAT,
                                name_ptr ? data_field : name_field,
                                "config slot %u has a %s but no %s", i,
                                name_ptr ? "name" : "data",
                                name_ptr ? "data" : "name");
        }
        if (!reader_get_blob(r, starts, name_ptr, name_field, true,
                             &name, &name_len, errp) ||
            !reader_get_blob(r, starts, data_ptr, data_field, false,
                             &data, &data_len, errp)) {
            return false;
        }
        for (unsigned j = 0; j < r->config_count; j++) {
            if (!strcmp(r->configs[j].name, (const char *)name)) {
                return reader_error(errp, VMA_ERROR_FORMAT, name_field,
                                    "duplicate config name '%s'", name);
            }
        }
        c = &r->configs[r->config_count++];
        c->name = reader_strdup(r, name, name_len);
        c->data = data;
        c->len = data_len;
    }
    return true;
}

static bool reader_parse_devices(VmaReader *r, const uint8_t *starts,
                                 GError **errp)
{
    for (unsigned dev_id = 0; dev_id < VMA_MAX_DEVICES; dev_id++) {
        uint32_t field = VMA_HDR_DEV_INFO + VMA_DEV_INFO_SIZE * dev_id;
        const uint8_t *entry = r->header + field;
        uint32_t name_ptr = vma_get_be32(entry + VMA_DEV_NAME);
        uint64_t size = vma_get_be64(entry + VMA_DEV_SIZE);
        VmaReaderDevice *d = &r->devices[dev_id];
        const uint8_t *name;
        uint16_t name_len;

        if (!reader_check_zero(entry + VMA_DEV_RESERVED1, 4,
                               field + VMA_DEV_RESERVED1, "dev_info", errp) ||
            !reader_check_zero(entry + VMA_DEV_RESERVED2, 16,
                               field + VMA_DEV_RESERVED2, "dev_info", errp)) {
            return false;
        }
        if (size == 0) {
            /* Not a device, whatever the name says */
            continue;
        }
        if (dev_id == 0) {
            return reader_error(errp, VMA_ERROR_FORMAT, field,
                                "dev_id 0 is used");
        }
        if (!name_ptr) {
            return reader_error(errp, VMA_ERROR_FORMAT, field,
                                "device %u has a size but no name", dev_id);
        }
        if (!reader_get_blob(r, starts, name_ptr, field, true,
                             &name, &name_len, errp)) {
            return false;
        }
        if (vma_size_to_clusters(size) > VMA_MAX_CLUSTERS_PER_DEVICE) {
            return reader_error(errp, VMA_ERROR_FORMAT, field + VMA_DEV_SIZE,
                                "device %u is too large (%" PRIu64 " bytes)",
                                dev_id, size);
        }
        for (unsigned j = 0; j < r->device_count; j++) {
            if (!strcmp(r->device_list[j]->name, (const char *)name)) {
                return reader_error(errp, VMA_ERROR_FORMAT, field,
                                    "duplicate device name '%s'", name);
            }
        }
        d->info.dev_id = dev_id;
        d->info.name = reader_strdup(r, name, name_len);
        d->info.size = size;
        d->info.is_vmstate = !strcmp(d->info.name, VMA_VMSTATE_NAME);
        if (!d->info.is_vmstate) {
            d->clusters = vma_size_to_clusters(size);
            d->seen = vma_cluster_set_new(d->clusters);
        }
        r->device_list[r->device_count++] = &d->info;
    }
    return true;
}

/* Read the fixed part of the header and check what it says about the rest */
static bool reader_read_fixed_header(VmaReader *r, GError **errp)
{
    uint8_t *h;
    ssize_t n;
    uint32_t version, blob_offset, blob_size, header_size;

    r->header = h = g_malloc(VMA_HEADER_FIXED_SIZE);
    n = reader_read(r, h, VMA_HEADER_FIXED_SIZE, errp);
    if (n < 0) {
        return false;
    }
    if (n >= 4 && memcmp(h + VMA_HDR_MAGIC, VMA_MAGIC, 4) != 0) {
        return reader_error(errp, VMA_ERROR_FORMAT, VMA_HDR_MAGIC,
                            "bad magic: not a VMA archive");
    }
    if (n < VMA_HEADER_FIXED_SIZE) {
        return reader_error(errp, VMA_ERROR_TRUNCATED, n,
                            "archive truncated: it ends inside the header "
                            "(%zd of %d bytes)", n, VMA_HEADER_FIXED_SIZE);
    }
    version = vma_get_be32(h + VMA_HDR_VERSION);
    if (version != VMA_VERSION) {
        return reader_error(errp, VMA_ERROR_FORMAT, VMA_HDR_VERSION,
                            "unsupported version %u (only %d is known)",
                            version, VMA_VERSION);
    }

    blob_offset = vma_get_be32(h + VMA_HDR_BLOB_OFFSET);
    blob_size = vma_get_be32(h + VMA_HDR_BLOB_SIZE);
    header_size = vma_get_be32(h + VMA_HDR_HEADER_SIZE);
    if (header_size < VMA_HEADER_FIXED_SIZE ||
        header_size > VMA_MAX_HEADER_SIZE || header_size % 512) {
        return reader_error(errp, VMA_ERROR_FORMAT, VMA_HDR_HEADER_SIZE,
                            "header_size %u out of range", header_size);
    }
    if (blob_offset < VMA_HEADER_FIXED_SIZE || blob_offset > header_size) {
        return reader_error(errp, VMA_ERROR_FORMAT, VMA_HDR_BLOB_OFFSET,
                            "blob_buffer_offset %u out of range",
                            blob_offset);
    }
    if (blob_size > header_size - blob_offset) {
        return reader_error(errp, VMA_ERROR_FORMAT, VMA_HDR_BLOB_SIZE,
                            "blob_buffer_size %u runs past the header end "
                            "(%u)", blob_size, header_size);
    }
    r->header_size = header_size;
    return true;
}

static bool reader_parse_header(VmaReader *r, GError **errp)
{
    g_autofree uint8_t *starts = NULL;
    uint32_t blob_offset, blob_size;
    ssize_t n;

    if (!reader_read_fixed_header(r, errp)) {
        return false;
    }
    r->header = g_realloc(r->header, r->header_size);
    n = reader_read(r, r->header + VMA_HEADER_FIXED_SIZE,
                    r->header_size - VMA_HEADER_FIXED_SIZE, errp);
    if (n < 0) {
        return false;
    }
    if (n < r->header_size - VMA_HEADER_FIXED_SIZE) {
        return reader_error(errp, VMA_ERROR_TRUNCATED, r->offset,
                            "archive truncated: it ends inside the header "
                            "(%" PRIu64 " of %u bytes)", r->offset,
                            r->header_size);
    }

    if (!reader_md5_matches(r->header, r->header_size, VMA_HDR_MD5)) {
        return reader_error(errp, VMA_ERROR_FORMAT, VMA_HDR_MD5,
                            "header checksum (MD5) mismatch");
    }
    if (!reader_check_zero(r->header + VMA_HDR_RESERVED1,
                           VMA_HDR_CONFIG_NAMES - VMA_HDR_RESERVED1,
                           VMA_HDR_RESERVED1, "header", errp) ||
        !reader_check_zero(r->header + VMA_HDR_RESERVED2, 4,
                           VMA_HDR_RESERVED2, "header", errp)) {
        return false;
    }

    memcpy(r->uuid, r->header + VMA_HDR_UUID, VMA_UUID_SIZE);
    r->ctime = (int64_t)vma_get_be64(r->header + VMA_HDR_CTIME);
    blob_offset = vma_get_be32(r->header + VMA_HDR_BLOB_OFFSET);
    blob_size = vma_get_be32(r->header + VMA_HDR_BLOB_SIZE);
    starts = reader_index_blobs(r, r->header + blob_offset, blob_offset,
                                blob_size, errp);
    return starts &&
           reader_parse_configs(r, starts, errp) &&
           reader_parse_devices(r, starts, errp);
}

static ssize_t reader_fd_input(void *opaque, void *buf, size_t len)
{
    VmaReader *r = opaque;
    ssize_t n;

    do {
        n = read(r->fd, buf, len);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

/* Parse the header of a reader whose input is set up; frees it on error */
static VmaReader *reader_open(VmaReader *r, GError **errp)
{
    r->strings = g_ptr_array_new_with_free_func(g_free);
    if (!reader_parse_header(r, errp)) {
        vma_reader_free(r);
        return NULL;
    }
    return r;
}

VmaReader *vma_reader_new(VmaInputFunc input, void *opaque, GError **errp)
{
    VmaReader *r = g_new0(VmaReader, 1);

    r->input = input;
    r->input_opaque = opaque;
    r->fd = -1;
    return reader_open(r, errp);
}

VmaReader *vma_reader_new_fd(int fd, GError **errp)
{
    VmaReader *r = g_new0(VmaReader, 1);

    r->input = reader_fd_input;
    r->input_opaque = r;
    r->fd = fd;
    return reader_open(r, errp);
}

void vma_reader_free(VmaReader *r)
{
    if (!r) {
        return;
    }
    for (unsigned i = 0; i < VMA_MAX_DEVICES; i++) {
        vma_cluster_set_free(r->devices[i].seen);
    }
    g_ptr_array_unref(r->strings);
    g_free(r->header);
    g_free(r->extent);
    g_free(r->cluster);
    g_free(r);
}

/* Header accessors */

void vma_reader_get_uuid(VmaReader *r, uint8_t uuid[VMA_UUID_SIZE])
{
    memcpy(uuid, r->uuid, VMA_UUID_SIZE);
}

int64_t vma_reader_get_ctime(VmaReader *r)
{
    return r->ctime;
}

uint64_t vma_reader_get_header_size(VmaReader *r)
{
    return r->header_size;
}

unsigned vma_reader_get_config_count(VmaReader *r)
{
    return r->config_count;
}

const VmaConfigInfo *vma_reader_get_config(VmaReader *r, unsigned index)
{
    return index < r->config_count ? &r->configs[index] : NULL;
}

const VmaConfigInfo *vma_reader_find_config(VmaReader *r, const char *name)
{
    for (unsigned i = 0; i < r->config_count; i++) {
        if (!strcmp(r->configs[i].name, name)) {
            return &r->configs[i];
        }
    }
    return NULL;
}

unsigned vma_reader_get_device_count(VmaReader *r)
{
    return r->device_count;
}

const VmaDeviceInfo *vma_reader_get_device(VmaReader *r, unsigned index)
{
    return index < r->device_count ? r->device_list[index] : NULL;
}

const VmaDeviceInfo *vma_reader_find_device(VmaReader *r, uint8_t dev_id)
{
    return r->devices[dev_id].info.name ? &r->devices[dev_id].info : NULL;
}

uint64_t vma_reader_get_offset(VmaReader *r)
{
    return r->offset;
}

/* Extents */

/*
 * Check one blockinfo slot of the extent header at archive offset @ext_offset
 * and mark its cluster as seen.
 */
static bool reader_check_slot(VmaReader *r, uint64_t bi, unsigned slot,
                              uint64_t ext_offset, GError **errp)
{
    uint64_t field = ext_offset + VMA_EXT_BLOCKINFO + 8 * slot;
    uint8_t dev_id = VMA_BI_DEV_ID(bi);
    uint64_t cluster = VMA_BI_CLUSTER(bi);
    VmaReaderDevice *d = &r->devices[dev_id];

    if (dev_id == 0) {
        if (bi != 0) {
            return reader_error(errp, VMA_ERROR_FORMAT, field,
                                "unused blockinfo slot %u is not zero", slot);
        }
        return true;
    }
    if (VMA_BI_RESERVED(bi)) {
        return reader_error(errp, VMA_ERROR_FORMAT, field,
                            "reserved bits of blockinfo slot %u are not "
                            "zero", slot);
    }
    if (!d->info.name) {
        return reader_error(errp, VMA_ERROR_FORMAT, field,
                            "unknown dev_id %u in blockinfo slot %u",
                            dev_id, slot);
    }
    if (cluster * VMA_CLUSTER_SIZE >= d->info.size) {
        return reader_error(errp, VMA_ERROR_FORMAT, field,
                            "cluster %" PRIu64 " is past the end of device "
                            "'%s' (%" PRIu64 " bytes)", cluster, d->info.name,
                            d->info.size);
    }
    if (d->info.is_vmstate) {
        if (cluster != d->seen_count) {
            return reader_error(errp, VMA_ERROR_FORMAT, field,
                                "vmstate cluster %" PRIu64 " out of order "
                                "(expected cluster %" PRIu64 ")", cluster,
                                d->seen_count);
        }
    } else {
        if (!vma_cluster_set_add(d->seen, cluster)) {
            return reader_error(errp, VMA_ERROR_FORMAT, field,
                                "duplicate cluster %" PRIu64 " of device "
                                "'%s'", cluster, d->info.name);
        }
    }
    d->seen_count++;
    return true;
}

/* Validate the extent header @h, read at @ext_offset */
static bool reader_check_extent_header(VmaReader *r, const uint8_t *h,
                                       uint64_t ext_offset,
                                       unsigned *block_count, GError **errp)
{
    unsigned blocks = 0;

    if (memcmp(h + VMA_EXT_MAGIC, VMA_EXTENT_MAGIC, 4) != 0) {
        return reader_error(errp, VMA_ERROR_FORMAT, ext_offset,
                            "bad extent magic");
    }
    if (!reader_md5_matches(h, VMA_EXTENT_HEADER_SIZE, VMA_EXT_MD5)) {
        return reader_error(errp, VMA_ERROR_FORMAT, ext_offset + VMA_EXT_MD5,
                            "extent header checksum (MD5) mismatch");
    }
    if (memcmp(h + VMA_EXT_UUID, r->uuid, VMA_UUID_SIZE) != 0) {
        return reader_error(errp, VMA_ERROR_FORMAT, ext_offset + VMA_EXT_UUID,
                            "extent uuid does not match the archive uuid");
    }
    if (vma_get_be16(h + VMA_EXT_RESERVED) != 0) {
        return reader_error(errp, VMA_ERROR_FORMAT,
                            ext_offset + VMA_EXT_RESERVED,
                            "reserved field (extent) is not zero");
    }
    for (unsigned slot = 0; slot < VMA_MAX_EXTENT_CLUSTERS; slot++) {
        uint64_t bi = vma_get_be64(h + VMA_EXT_BLOCKINFO + 8 * slot);

        if (!reader_check_slot(r, bi, slot, ext_offset, errp)) {
            return false;
        }
        blocks += __builtin_popcount(VMA_BI_MASK(bi));
    }
    *block_count = vma_get_be16(h + VMA_EXT_BLOCK_COUNT);
    if (*block_count != blocks) {
        return reader_error(errp, VMA_ERROR_FORMAT,
                            ext_offset + VMA_EXT_BLOCK_COUNT,
                            "block_count %u does not match the %u blocks "
                            "the cluster masks announce", *block_count,
                            blocks);
    }
    return true;
}

/* Hand the clusters of the extent in r->extent to @func */
static bool reader_dispatch_extent(VmaReader *r, VmaClusterFunc func,
                                   void *opaque, GError **errp)
{
    const uint8_t *data = r->extent + VMA_EXTENT_HEADER_SIZE;

    for (unsigned slot = 0; slot < VMA_MAX_EXTENT_CLUSTERS; slot++) {
        uint64_t bi = vma_get_be64(r->extent + VMA_EXT_BLOCKINFO + 8 * slot);
        uint16_t mask = VMA_BI_MASK(bi);
        uint64_t cluster = VMA_BI_CLUSTER(bi);
        const VmaDeviceInfo *dev = &r->devices[VMA_BI_DEV_ID(bi)].info;
        size_t len;
        const uint8_t *cluster_data;

        if (VMA_BI_DEV_ID(bi) == 0) {
            continue;
        }
        len = MIN(VMA_CLUSTER_SIZE, dev->size - cluster * VMA_CLUSTER_SIZE);
        if (mask == 0) {
            cluster_data = NULL;
        } else if (mask == 0xffff) {
            cluster_data = data;
            data += VMA_CLUSTER_SIZE;
        } else {
            for (unsigned i = 0; i < VMA_BLOCKS_PER_CLUSTER; i++) {
                uint8_t *block = r->cluster + i * VMA_BLOCK_SIZE;

                if (mask & (1u << i)) {
                    memcpy(block, data, VMA_BLOCK_SIZE);
                    data += VMA_BLOCK_SIZE;
                } else {
                    memset(block, 0, VMA_BLOCK_SIZE);
                }
            }
            cluster_data = r->cluster;
        }
        if (func && !func(opaque, dev, cluster, mask, cluster_data, len,
                          errp)) {
            if (errp && !*errp) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_ABORTED,
                            "extract stopped at cluster %" PRIu64 " of '%s'",
                            cluster, dev->name);
            }
            return false;
        }
    }
    return true;
}

/* After the last extent: every disk cluster must have been seen */
static bool reader_check_complete(VmaReader *r, GError **errp)
{
    for (unsigned i = 0; i < r->device_count; i++) {
        VmaReaderDevice *d = &r->devices[r->device_list[i]->dev_id];

        if (d->info.is_vmstate || d->seen_count == d->clusters ||
            d->allow_absent) {
            continue;
        }
        return reader_error(errp, VMA_ERROR_TRUNCATED, r->offset,
                            "archive incomplete or truncated: device '%s' "
                            "is missing %" PRIu64 " of %" PRIu64 " clusters "
                            "(first missing: cluster %" PRIu64 ")",
                            d->info.name, d->clusters - d->seen_count,
                            d->clusters,
                            vma_cluster_set_first_missing(d->seen));
    }
    return true;
}

/* An archive that ends @n bytes into an extent header (at @offset) */
static bool reader_error_cut_header(GError **errp, uint64_t offset, size_t n)
{
    return reader_error(errp, VMA_ERROR_TRUNCATED, offset,
                        "archive truncated inside an extent header "
                        "(%zu of %d bytes)", n, VMA_EXTENT_HEADER_SIZE);
}

/* An archive that ends (at @offset) @n bytes into the data of an extent */
static bool reader_error_cut_data(GError **errp, uint64_t offset,
                                  uint64_t ext_offset, uint64_t n,
                                  uint64_t data_len)
{
    return reader_error(errp, VMA_ERROR_TRUNCATED, offset,
                        "archive truncated inside the data of the extent at "
                        "offset %" PRIu64 " (%" PRIu64 " of %" PRIu64
                        " bytes)", ext_offset, n, data_len);
}

bool vma_reader_allow_absent(VmaReader *r, uint8_t dev_id, GError **errp)
{
    VmaReaderDevice *d = &r->devices[dev_id];

    if (r->ran) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "the archive was already read");
        return false;
    }
    if (dev_id == 0 || !d->info.name || d->info.is_vmstate) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "no disk with dev_id %u in the archive", dev_id);
        return false;
    }
    d->allow_absent = true;
    return true;
}

/* Start vma_reader_run() or vma_reader_scan(): each can run only once */
static bool reader_start(VmaReader *r, GError **errp)
{
    if (r->ran) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "the archive was already read");
        return false;
    }
    r->ran = true;
    return true;
}

bool vma_reader_run(VmaReader *r, VmaClusterFunc func, void *opaque,
                    GError **errp)
{
    if (!reader_start(r, errp)) {
        return false;
    }
    r->extent = g_malloc(VMA_EXTENT_MAX_BYTES);
    r->cluster = g_malloc(VMA_CLUSTER_SIZE);

    for (;;) {
        uint64_t ext_offset = r->offset;
        unsigned block_count = 0;
        size_t data_len;
        ssize_t n;

        n = reader_read(r, r->extent, VMA_EXTENT_HEADER_SIZE, errp);
        if (n < 0) {
            return false;
        }
        if (n == 0) {
            break;      /* a clean end between two extents */
        }
        if (n < VMA_EXTENT_HEADER_SIZE) {
            return reader_error_cut_header(errp, r->offset, n);
        }
        if (!reader_check_extent_header(r, r->extent, ext_offset,
                                        &block_count, errp)) {
            return false;
        }
        data_len = (size_t)block_count * VMA_BLOCK_SIZE;
        n = reader_read(r, r->extent + VMA_EXTENT_HEADER_SIZE, data_len,
                        errp);
        if (n < 0) {
            return false;
        }
        if ((size_t)n < data_len) {
            return reader_error_cut_data(errp, r->offset, ext_offset, n,
                                         data_len);
        }
        if (!reader_dispatch_extent(r, func, opaque, errp)) {
            return false;
        }
    }
    return reader_check_complete(r, errp);
}

/* Random access */

/* Hand the cluster locations of the extent header @h at @ext_offset to @func */
static bool reader_locate_clusters(VmaReader *r, const uint8_t *h,
                                   uint64_t ext_offset, VmaClusterLocFunc func,
                                   void *opaque, GError **errp)
{
    uint64_t data_offset = ext_offset + VMA_EXTENT_HEADER_SIZE;

    for (unsigned slot = 0; slot < VMA_MAX_EXTENT_CLUSTERS; slot++) {
        uint64_t bi = vma_get_be64(h + VMA_EXT_BLOCKINFO + 8 * slot);
        uint16_t mask = VMA_BI_MASK(bi);

        if (VMA_BI_DEV_ID(bi) == 0) {
            continue;
        }
        if (func && !func(opaque, &r->devices[VMA_BI_DEV_ID(bi)].info,
                          VMA_BI_CLUSTER(bi), mask, data_offset, errp)) {
            if (errp && !*errp) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_ABORTED,
                            "stopped at cluster %" PRIu32 " of '%s'",
                            VMA_BI_CLUSTER(bi),
                            r->devices[VMA_BI_DEV_ID(bi)].info.name);
            }
            return false;
        }
        data_offset += (uint64_t)__builtin_popcount(mask) * VMA_BLOCK_SIZE;
    }
    return true;
}

bool vma_reader_scan(VmaReader *r, VmaPreadFunc pread, void *pread_opaque,
                     uint64_t archive_size, VmaClusterLocFunc func,
                     void *opaque, GError **errp)
{
    uint8_t h[VMA_EXTENT_HEADER_SIZE];
    uint64_t ext_offset = r->header_size;

    if (!reader_start(r, errp)) {
        return false;
    }
    while (ext_offset < archive_size) {
        size_t want = MIN(VMA_EXTENT_HEADER_SIZE, archive_size - ext_offset);
        unsigned block_count = 0;
        uint64_t data_len, data_end;
        ssize_t n;

        n = pread(pread_opaque, h, want, ext_offset);
        if (n < 0) {
            return reader_error(errp, VMA_ERROR_IO, ext_offset,
                                "reading the archive failed: %s",
                                g_strerror(-n));
        }
        r->offset = ext_offset + n;
        if ((size_t)n < VMA_EXTENT_HEADER_SIZE) {
            return reader_error_cut_header(errp, r->offset, n);
        }
        if (!reader_check_extent_header(r, h, ext_offset, &block_count,
                                        errp)) {
            return false;
        }
        data_len = (uint64_t)block_count * VMA_BLOCK_SIZE;
        data_end = r->offset + data_len;
        if (data_end > archive_size) {
            r->offset = archive_size;
            return reader_error_cut_data(errp, r->offset, ext_offset,
                                         archive_size - ext_offset -
                                         VMA_EXTENT_HEADER_SIZE, data_len);
        }
        if (!reader_locate_clusters(r, h, ext_offset, func, opaque, errp)) {
            return false;
        }
        r->offset = ext_offset = data_end;
    }
    return reader_check_complete(r, errp);
}
