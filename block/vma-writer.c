/*
 * VMA archive writer
 *
 * Collects the streams and configs, writes the header on the first cluster,
 * then packs clusters into extents of VMA_WRITER_EXTENT_CLUSTERS and hands
 * each finished extent to the output callback.  All zero 4 KiB blocks are
 * dropped.  See include/block/vma.h for the API and threading contract.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdarg.h>
#include "vma-internal.h"

typedef struct VmaWriterStream {
    char *name;             /* NULL: slot unused */
    bool is_vmstate;
    VmaStreamStats stats;   /* stats.size, stats.clusters are fixed */
    VmaClusterSet *written; /* disks: clusters already written */
    bool vmstate_ended;     /* vmstate: a short (last) cluster was written */
    bool incremental;       /* disks: clusters may be left out */
} VmaWriterStream;

typedef struct VmaWriterConfig {
    char *name;
    GBytes *data;
} VmaWriterConfig;

struct VmaWriter {
    uint8_t uuid[VMA_UUID_SIZE];
    int64_t ctime;
    VmaOutputFunc output;
    void *output_opaque;

    VmaWriterStream streams[VMA_MAX_DEVICES];  /* indexed by dev_id */
    unsigned stream_count;
    bool have_vmstate;
    VmaWriterConfig configs[VMA_MAX_CONFIGS];
    unsigned config_count;

    bool header_written;    /* nothing can be registered any more */
    bool finished;
    GError *error;          /* sticky: the first failure */
    uint64_t bytes_written;

    /*
     * The extent being filled: a header followed by the stored blocks of
     * extent_clusters clusters, extent_blocks blocks in all.
     */
    uint8_t *extent;
    unsigned extent_clusters;
    unsigned extent_blocks;
};

VmaWriter *vma_writer_new(const uint8_t uuid[VMA_UUID_SIZE], int64_t ctime,
                          VmaOutputFunc output, void *opaque)
{
    VmaWriter *w = g_new0(VmaWriter, 1);

    memcpy(w->uuid, uuid, VMA_UUID_SIZE);
    w->ctime = ctime;
    w->output = output;
    w->output_opaque = opaque;
    w->extent = g_malloc(VMA_EXTENT_HEADER_SIZE +
                         VMA_WRITER_EXTENT_CLUSTERS * VMA_CLUSTER_SIZE);
    memset(w->extent, 0, VMA_EXTENT_HEADER_SIZE);
    return w;
}

void vma_writer_free(VmaWriter *w)
{
    if (!w) {
        return;
    }
    for (unsigned i = 0; i < VMA_MAX_DEVICES; i++) {
        g_free(w->streams[i].name);
        vma_cluster_set_free(w->streams[i].written);
    }
    for (unsigned i = 0; i < w->config_count; i++) {
        g_free(w->configs[i].name);
        g_bytes_unref(w->configs[i].data);
    }
    g_clear_error(&w->error);
    g_free(w->extent);
    g_free(w);
}

/* Error helpers */

void vma_writer_set_error(VmaWriter *w, const char *fmt, ...)
{
    va_list ap;

    if (w->error) {
        return;
    }
    va_start(ap, fmt);
    w->error = g_error_new_valist(VMA_ERROR, VMA_ERROR_ABORTED, fmt, ap);
    va_end(ap);
}

const GError *vma_writer_get_error(VmaWriter *w)
{
    return w->error;
}

/* Fail with the sticky error, if any */
static bool writer_check_error(VmaWriter *w, GError **errp)
{
    if (w->error) {
        g_propagate_error(errp, g_error_copy(w->error));
        return false;
    }
    return true;
}

static bool writer_invalid(GError **errp, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static bool writer_invalid(GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(errp, g_error_new_valist(VMA_ERROR,
                                               VMA_ERROR_INVALID_ARGUMENT,
                                               fmt, ap));
    va_end(ap);
    return false;
}

/* Registration */

static bool writer_can_register(VmaWriter *w, GError **errp)
{
    if (!writer_check_error(w, errp)) {
        return false;
    }
    if (w->header_written) {
        return writer_invalid(errp, "cannot add to an archive whose header "
                              "was already written");
    }
    return true;
}

/* @name must fit a blob with its NUL */
static bool writer_check_name(const char *what, const char *name,
                              GError **errp)
{
    if (!vma_name_is_safe(name)) {
        return writer_invalid(errp, "invalid %s name '%s': it must be "
                              "non-empty, not '.' or '..', without '/' or "
                              "control characters", what, name ? name : "");
    }
    if (strlen(name) + 1 > VMA_MAX_BLOB_SIZE) {
        return writer_invalid(errp, "%s name is too long", what);
    }
    return true;
}

bool vma_writer_add_config(VmaWriter *w, const char *name,
                           const void *data, size_t len, GError **errp)
{
    if (!writer_can_register(w, errp) ||
        !writer_check_name("config", name, errp)) {
        return false;
    }
    if (len > VMA_MAX_BLOB_SIZE) {
        return writer_invalid(errp, "config '%s' is %zu bytes, more than "
                              "the %d a VMA archive can store", name, len,
                              VMA_MAX_BLOB_SIZE);
    }
    if (w->config_count == VMA_MAX_CONFIGS) {
        return writer_invalid(errp, "too many configs (at most %d)",
                              VMA_MAX_CONFIGS);
    }
    for (unsigned i = 0; i < w->config_count; i++) {
        if (!strcmp(w->configs[i].name, name)) {
            return writer_invalid(errp, "config '%s' added twice", name);
        }
    }
    w->configs[w->config_count].name = g_strdup(name);
    w->configs[w->config_count].data = g_bytes_new(data, len);
    w->config_count++;
    return true;
}

static uint8_t writer_add_stream(VmaWriter *w, const char *name,
                                 uint64_t size, bool is_vmstate,
                                 GError **errp)
{
    VmaWriterStream *s;
    uint64_t clusters = vma_size_to_clusters(size);
    uint8_t dev_id;

    if (size == 0) {
        writer_invalid(errp, "stream '%s' has size 0", name);
        return 0;
    }
    if (clusters > VMA_MAX_CLUSTERS_PER_DEVICE) {
        writer_invalid(errp, "stream '%s' is too large (%" PRIu64 " bytes)",
                       name, size);
        return 0;
    }
    /* dev_id 255 stays unused, as in the reference writer */
    if (w->stream_count == VMA_MAX_DEVICES - 2) {
        writer_invalid(errp, "too many streams (at most %d)",
                       VMA_MAX_DEVICES - 2);
        return 0;
    }
    for (unsigned i = 1; i <= w->stream_count; i++) {
        if (!strcmp(w->streams[i].name, name)) {
            writer_invalid(errp, "stream '%s' registered twice", name);
            return 0;
        }
    }

    dev_id = ++w->stream_count;
    s = &w->streams[dev_id];
    s->name = g_strdup(name);
    s->is_vmstate = is_vmstate;
    s->stats.size = size;
    if (!is_vmstate) {
        s->stats.clusters = clusters;
        s->written = vma_cluster_set_new(clusters);
    }
    return dev_id;
}

uint8_t vma_writer_register_stream(VmaWriter *w, const char *name,
                                   uint64_t size, GError **errp)
{
    if (!writer_can_register(w, errp) ||
        !writer_check_name("device", name, errp)) {
        return 0;
    }
    if (!strcmp(name, VMA_VMSTATE_NAME)) {
        writer_invalid(errp, "the device name '%s' is reserved for the RAM "
                       "state", VMA_VMSTATE_NAME);
        return 0;
    }
    return writer_add_stream(w, name, size, false, errp);
}

uint8_t vma_writer_register_vmstate(VmaWriter *w, uint64_t max_size,
                                    GError **errp)
{
    if (!writer_can_register(w, errp)) {
        return 0;
    }
    if (w->have_vmstate) {
        writer_invalid(errp, "the vmstate stream is already registered");
        return 0;
    }
    w->have_vmstate = true;
    return writer_add_stream(w, VMA_VMSTATE_NAME, max_size, true, errp);
}

/* Output */

static bool writer_output(VmaWriter *w, const void *buf, size_t len,
                          GError **errp)
{
    int ret = w->output(w->output_opaque, buf, len);

    if (ret < 0) {
        w->error = g_error_new(VMA_ERROR, VMA_ERROR_IO,
                               "writing the archive failed: %s",
                               g_strerror(-ret));
        return writer_check_error(w, errp);
    }
    w->bytes_written += len;
    return true;
}

/* Append a blob to @blobs and return its offset in the blob buffer */
static uint32_t blob_append(GByteArray *blobs, const void *data, size_t len)
{
    uint32_t offset = blobs->len;
    uint8_t len_le[2];

    vma_put_le16(len_le, len);
    g_byte_array_append(blobs, len_le, 2);
    g_byte_array_append(blobs, data, len);
    return offset;
}

static bool writer_write_header(VmaWriter *w, GError **errp)
{
    g_autoptr(GByteArray) blobs = g_byte_array_new();
    g_autofree uint8_t *header = NULL;
    uint8_t unused = 0;
    uint32_t header_size;
    uint8_t md5[VMA_MD5_SIZE];

    /* Position 0 of the blob buffer is never used: offset 0 means "none" */
    g_byte_array_append(blobs, &unused, 1);

    header_size = VMA_HEADER_FIXED_SIZE;
    header = g_malloc0(header_size);
    for (unsigned i = 0; i < w->config_count; i++) {
        VmaWriterConfig *c = &w->configs[i];
        gsize len;
        const void *data = g_bytes_get_data(c->data, &len);

        vma_put_be32(header + VMA_HDR_CONFIG_NAMES + 4 * i,
                     blob_append(blobs, c->name, strlen(c->name) + 1));
        vma_put_be32(header + VMA_HDR_CONFIG_DATA + 4 * i,
                     blob_append(blobs, data, len));
    }
    for (unsigned dev_id = 1; dev_id <= w->stream_count; dev_id++) {
        VmaWriterStream *s = &w->streams[dev_id];
        uint8_t *dev = header + VMA_HDR_DEV_INFO + VMA_DEV_INFO_SIZE * dev_id;

        vma_put_be32(dev + VMA_DEV_NAME,
                     blob_append(blobs, s->name, strlen(s->name) + 1));
        vma_put_be64(dev + VMA_DEV_SIZE, s->stats.size);
    }

    /* The header ends on a 512 byte boundary after the blob buffer */
    header_size += ROUND_UP_512(blobs->len);
    header = g_realloc(header, header_size);
    memset(header + VMA_HEADER_FIXED_SIZE, 0,
           header_size - VMA_HEADER_FIXED_SIZE);
    memcpy(header + VMA_HEADER_FIXED_SIZE, blobs->data, blobs->len);

    memcpy(header + VMA_HDR_MAGIC, VMA_MAGIC, 4);
    vma_put_be32(header + VMA_HDR_VERSION, VMA_VERSION);
    memcpy(header + VMA_HDR_UUID, w->uuid, VMA_UUID_SIZE);
    vma_put_be64(header + VMA_HDR_CTIME, (uint64_t)w->ctime);
    vma_put_be32(header + VMA_HDR_BLOB_OFFSET, VMA_HEADER_FIXED_SIZE);
    vma_put_be32(header + VMA_HDR_BLOB_SIZE, blobs->len);
    vma_put_be32(header + VMA_HDR_HEADER_SIZE, header_size);
    vma_md5_with_hole(header, header_size, VMA_HDR_MD5, md5);
    memcpy(header + VMA_HDR_MD5, md5, VMA_MD5_SIZE);

    /* Set first: whatever the output does, nothing may be registered now */
    w->header_written = true;
    return writer_output(w, header, header_size, errp);
}

static bool writer_flush_extent(VmaWriter *w, GError **errp)
{
    uint8_t *hdr = w->extent;
    uint8_t md5[VMA_MD5_SIZE];
    size_t len = VMA_EXTENT_HEADER_SIZE +
                 (size_t)w->extent_blocks * VMA_BLOCK_SIZE;

    /* The blockinfo slots were filled as clusters came in */
    memcpy(hdr + VMA_EXT_MAGIC, VMA_EXTENT_MAGIC, 4);
    vma_put_be16(hdr + VMA_EXT_RESERVED, 0);
    vma_put_be16(hdr + VMA_EXT_BLOCK_COUNT, w->extent_blocks);
    memcpy(hdr + VMA_EXT_UUID, w->uuid, VMA_UUID_SIZE);
    vma_md5_with_hole(hdr, VMA_EXTENT_HEADER_SIZE, VMA_EXT_MD5, md5);
    memcpy(hdr + VMA_EXT_MD5, md5, VMA_MD5_SIZE);

    w->extent_clusters = 0;
    w->extent_blocks = 0;
    if (!writer_output(w, hdr, len, errp)) {
        return false;
    }
    memset(hdr, 0, VMA_EXTENT_HEADER_SIZE);
    return true;
}

/* Cluster writes */

static bool writer_begin_data(VmaWriter *w, GError **errp)
{
    if (!writer_check_error(w, errp)) {
        return false;
    }
    if (w->finished) {
        return writer_invalid(errp, "the archive is already finished");
    }
    if (!w->header_written) {
        return writer_write_header(w, errp);
    }
    return true;
}

static VmaWriterStream *writer_get_stream(VmaWriter *w, uint8_t dev_id,
                                          GError **errp)
{
    if (dev_id == 0 || dev_id > w->stream_count) {
        writer_invalid(errp, "no stream with dev_id %u", dev_id);
        return NULL;
    }
    return &w->streams[dev_id];
}

/* Check that cluster @cluster_num of @s with @len bytes may be written now */
static bool writer_check_cluster(VmaWriterStream *s, uint64_t cluster_num,
                                 size_t len, GError **errp)
{
    uint64_t offset = cluster_num * VMA_CLUSTER_SIZE;

    if (cluster_num >= VMA_MAX_CLUSTERS_PER_DEVICE ||
        offset >= s->stats.size) {
        return writer_invalid(errp, "cluster %" PRIu64 " is past the end "
                              "of stream '%s'", cluster_num, s->name);
    }
    if (s->is_vmstate) {
        if (cluster_num != s->stats.clusters_done || s->vmstate_ended) {
            return writer_invalid(errp, "vmstate cluster %" PRIu64 " out of "
                                  "order", cluster_num);
        }
        if (len == 0 || len > VMA_CLUSTER_SIZE ||
            len > s->stats.size - offset) {
            return writer_invalid(errp, "bad vmstate cluster length %zu",
                                  len);
        }
        return true;
    }
    if (len != MIN(VMA_CLUSTER_SIZE, s->stats.size - offset)) {
        return writer_invalid(errp, "cluster %" PRIu64 " of '%s' has %zu "
                              "bytes, expected %" PRIu64, cluster_num,
                              s->name, len,
                              MIN(VMA_CLUSTER_SIZE, s->stats.size - offset));
    }
    if (!vma_cluster_set_add(s->written, cluster_num)) {
        return writer_invalid(errp, "cluster %" PRIu64 " of '%s' written "
                              "twice", cluster_num, s->name);
    }
    return true;
}

/*
 * Add one cluster to the extent being filled: its blockinfo slot and its
 * non-zero blocks.  Bytes past @len in the last stored block are zero.
 */
static bool writer_add_cluster(VmaWriter *w, uint8_t dev_id,
                               uint64_t cluster_num, const uint8_t *buf,
                               size_t len, GError **errp)
{
    VmaWriterStream *s = &w->streams[dev_id];
    uint8_t *data = w->extent + VMA_EXTENT_HEADER_SIZE +
                    (size_t)w->extent_blocks * VMA_BLOCK_SIZE;
    uint16_t mask = 0;
    unsigned stored = 0;

    for (unsigned i = 0; buf && i * VMA_BLOCK_SIZE < len; i++) {
        size_t blen = MIN(VMA_BLOCK_SIZE, len - i * VMA_BLOCK_SIZE);
        const uint8_t *block = buf + i * VMA_BLOCK_SIZE;

        if (vma_buffer_is_zero(block, blen)) {
            continue;
        }
        memcpy(data, block, blen);
        memset(data + blen, 0, VMA_BLOCK_SIZE - blen);
        data += VMA_BLOCK_SIZE;
        mask |= 1u << i;
        stored++;
    }

    vma_put_be64(w->extent + VMA_EXT_BLOCKINFO + 8 * w->extent_clusters,
                 VMA_BI_MAKE(mask, dev_id, cluster_num));
    w->extent_clusters++;
    w->extent_blocks += stored;

    if (s->is_vmstate) {
        s->vmstate_ended = len < VMA_CLUSTER_SIZE;
    }
    s->stats.clusters_done++;
    s->stats.transferred += len;
    s->stats.zero_bytes += len - MIN(len, (size_t)stored * VMA_BLOCK_SIZE);

    if (w->extent_clusters == VMA_WRITER_EXTENT_CLUSTERS) {
        return writer_flush_extent(w, errp);
    }
    return true;
}

bool vma_writer_write_cluster(VmaWriter *w, uint8_t dev_id,
                              uint64_t cluster_num, const void *buf,
                              size_t len, GError **errp)
{
    VmaWriterStream *s = writer_get_stream(w, dev_id, errp);

    if (!s || !writer_check_cluster(s, cluster_num, len, errp) ||
        !writer_begin_data(w, errp)) {
        return false;
    }
    return writer_add_cluster(w, dev_id, cluster_num, buf, len, errp);
}

bool vma_writer_write_zero_clusters(VmaWriter *w, uint8_t dev_id,
                                    uint64_t first_cluster, uint64_t count,
                                    GError **errp)
{
    VmaWriterStream *s = writer_get_stream(w, dev_id, errp);

    if (!s) {
        return false;
    }
    if (s->is_vmstate) {
        return writer_invalid(errp, "zero ranges are for disks, not for the "
                              "vmstate stream");
    }
    if (first_cluster > s->stats.clusters ||
        count > s->stats.clusters - first_cluster) {
        return writer_invalid(errp, "zero range past the end of '%s'",
                              s->name);
    }
    for (uint64_t c = first_cluster; c < first_cluster + count; c++) {
        uint64_t offset = c * VMA_CLUSTER_SIZE;
        size_t len = MIN(VMA_CLUSTER_SIZE, s->stats.size - offset);

        if (!writer_check_cluster(s, c, len, errp) ||
            !writer_begin_data(w, errp) ||
            !writer_add_cluster(w, dev_id, c, NULL, len, errp)) {
            return false;
        }
    }
    return true;
}

unsigned vma_extent_pack_header(const uint8_t uuid[VMA_UUID_SIZE],
                                uint8_t dev_id, uint64_t first_cluster,
                                const void *buf, size_t len,
                                uint8_t header[VMA_EXTENT_HEADER_SIZE],
                                size_t *blocks, VmaPackedExtent *packed)
{
    uint8_t md5[VMA_MD5_SIZE];
    unsigned stored = 0;
    size_t pos;
    unsigned n;

    g_assert(len > 0 &&
             len <= (size_t)VMA_WRITER_EXTENT_CLUSTERS * VMA_CLUSTER_SIZE);
    memset(header, 0, VMA_EXTENT_HEADER_SIZE);
    for (pos = 0, n = 0; pos < len; pos += VMA_CLUSTER_SIZE, n++) {
        size_t clen = MIN(VMA_CLUSTER_SIZE, len - pos);
        uint16_t mask = 0;

        for (unsigned i = 0; buf && i * VMA_BLOCK_SIZE < clen; i++) {
            size_t off = pos + i * VMA_BLOCK_SIZE;

            if (!vma_buffer_is_zero((const uint8_t *)buf + off,
                                    MIN(VMA_BLOCK_SIZE, clen -
                                        i * VMA_BLOCK_SIZE))) {
                mask |= 1u << i;
                blocks[stored++] = off;
            }
        }
        vma_put_be64(header + VMA_EXT_BLOCKINFO + 8 * n,
                     VMA_BI_MAKE(mask, dev_id, first_cluster + n));
    }
    *packed = (VmaPackedExtent) {
        .dev_id = dev_id,
        .first_cluster = first_cluster,
        .clusters = n,
        .bytes = len,
        .zero_bytes = len - MIN(len, (uint64_t)stored * VMA_BLOCK_SIZE),
        .len = VMA_EXTENT_HEADER_SIZE + (size_t)stored * VMA_BLOCK_SIZE,
    };
    memcpy(header + VMA_EXT_MAGIC, VMA_EXTENT_MAGIC, 4);
    vma_put_be16(header + VMA_EXT_BLOCK_COUNT, stored);
    memcpy(header + VMA_EXT_UUID, uuid, VMA_UUID_SIZE);
    vma_md5_with_hole(header, VMA_EXTENT_HEADER_SIZE, VMA_EXT_MD5, md5);
    memcpy(header + VMA_EXT_MD5, md5, VMA_MD5_SIZE);
    return stored;
}

void vma_extent_pack(const uint8_t uuid[VMA_UUID_SIZE], uint8_t dev_id,
                     uint64_t first_cluster, const void *buf, size_t len,
                     uint8_t *out, VmaPackedExtent *packed)
{
    size_t blocks[VMA_WRITER_EXTENT_CLUSTERS * VMA_BLOCKS_PER_CLUSTER];
    unsigned stored = vma_extent_pack_header(uuid, dev_id, first_cluster, buf,
                                             len, out, blocks, packed);
    uint8_t *data = out + VMA_EXTENT_HEADER_SIZE;

    for (unsigned i = 0; i < stored; i++) {
        size_t blen = MIN(VMA_BLOCK_SIZE, len - blocks[i]);

        memcpy(data, (const uint8_t *)buf + blocks[i], blen);
        memset(data + blen, 0, VMA_BLOCK_SIZE - blen);
        data += VMA_BLOCK_SIZE;
    }
}

bool vma_writer_commit_extent(VmaWriter *w, const VmaPackedExtent *packed,
                              GError **errp)
{
    VmaWriterStream *s = writer_get_stream(w, packed->dev_id, errp);
    uint64_t pos = 0;

    if (!s) {
        return false;
    }
    if (s->is_vmstate) {
        return writer_invalid(errp, "packed extents are for disks, not for "
                              "the vmstate stream");
    }
    for (unsigned n = 0; n < packed->clusters; n++) {
        size_t clen = MIN(VMA_CLUSTER_SIZE, packed->bytes - pos);

        if (!writer_check_cluster(s, packed->first_cluster + n, clen, errp)) {
            return false;
        }
        pos += clen;
    }
    if (!writer_begin_data(w, errp)) {
        return false;
    }
    s->stats.clusters_done += packed->clusters;
    s->stats.transferred += packed->bytes;
    s->stats.zero_bytes += packed->zero_bytes;
    w->bytes_written += packed->len;
    return true;
}

bool vma_writer_set_incremental(VmaWriter *w, uint8_t dev_id,
                                GError **errp)
{
    VmaWriterStream *s;

    if (!writer_check_error(w, errp)) {
        return false;
    }
    if (w->finished) {
        return writer_invalid(errp, "the archive is already finished");
    }
    s = writer_get_stream(w, dev_id, errp);
    if (!s) {
        return false;
    }
    if (s->is_vmstate) {
        return writer_invalid(errp, "the vmstate stream cannot be "
                              "incremental");
    }
    s->incremental = true;
    return true;
}

const uint8_t *vma_writer_get_uuid(VmaWriter *w)
{
    return w->uuid;
}

bool vma_writer_finish(VmaWriter *w, GError **errp)
{
    if (!writer_check_error(w, errp)) {
        return false;
    }
    if (w->finished) {
        return writer_invalid(errp, "the archive is already finished");
    }
    for (unsigned dev_id = 1; dev_id <= w->stream_count; dev_id++) {
        VmaWriterStream *s = &w->streams[dev_id];

        if (s->stats.clusters_done != s->stats.clusters && !s->is_vmstate &&
            !s->incremental) {
            return writer_invalid(errp, "stream '%s' is incomplete: %" PRIu64
                                  " of %" PRIu64 " clusters written", s->name,
                                  s->stats.clusters_done, s->stats.clusters);
        }
    }
    if (!writer_begin_data(w, errp)) {
        return false;
    }
    /* Like the reference writer, always end with an extent, maybe empty */
    if (!writer_flush_extent(w, errp)) {
        return false;
    }
    w->finished = true;
    return true;
}

bool vma_writer_get_stream_stats(VmaWriter *w, uint8_t dev_id,
                                 VmaStreamStats *stats)
{
    if (dev_id == 0 || dev_id > w->stream_count) {
        return false;
    }
    *stats = w->streams[dev_id].stats;
    return true;
}

uint64_t vma_writer_get_bytes_written(VmaWriter *w)
{
    return w->bytes_written;
}
