/*
 * VMA archive format: writer and reader
 *
 * A VMA archive holds the disks of one virtual machine (up to 254 streams
 * plus an optional "vmstate" stream with the RAM state) and up to 256 small
 * config files.  It is written in one sequential pass: a header that lists
 * every stream and config, then extents of up to 59 clusters of 64 KiB, in
 * any cluster order.  All-zero 4 KiB blocks are not stored.  See
 * docs/specs/vma_spec.txt for the byte layout.
 *
 * This library is plain C11 + GLib.  It does no I/O of its own: the writer
 * hands finished bytes to an output callback and the reader pulls bytes
 * through an input callback, so the same code serves files, pipes, FIFOs,
 * compressed streams and QEMU coroutines.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BLOCK_VMA_H
#define BLOCK_VMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

/* Format constants */
#define VMA_BLOCK_SIZE              4096
#define VMA_BLOCKS_PER_CLUSTER      16
#define VMA_CLUSTER_SIZE            (VMA_BLOCK_SIZE * VMA_BLOCKS_PER_CLUSTER)
#define VMA_EXTENT_HEADER_SIZE      512
/* Slots in an extent header; readers accept them all */
#define VMA_MAX_EXTENT_CLUSTERS     59
/* The writer flushes an extent once it holds this many clusters */
#define VMA_WRITER_EXTENT_CLUSTERS  58
#define VMA_HEADER_FIXED_SIZE       12288
#define VMA_MAX_DEVICES             256  /* table slots; dev_id 0 is unused */
#define VMA_MAX_CONFIGS             256
#define VMA_MAX_BLOB_SIZE           65535
#define VMA_MAX_CLUSTERS_PER_DEVICE (UINT64_C(1) << 32)
#define VMA_VMSTATE_NAME            "vmstate"
#define VMA_UUID_SIZE               16
#define VMA_UUID_STR_SIZE           37   /* 36 characters and a NUL */

/* Error domain of every GError this library returns */
#define VMA_ERROR vma_error_quark()
GQuark vma_error_quark(void);

typedef enum VmaErrorCode {
    VMA_ERROR_INVALID_ARGUMENT, /* caller misuse: bad name, size, order... */
    VMA_ERROR_IO,               /* the input or output callback failed */
    VMA_ERROR_FORMAT,           /* the archive breaks the format */
    VMA_ERROR_TRUNCATED,        /* the archive ends early or misses clusters */
    VMA_ERROR_ABORTED,          /* the caller gave up (vma_writer_set_error) */
} VmaErrorCode;

/* Format @uuid as the usual 36-character lower case string */
void vma_uuid_unparse(const uint8_t uuid[VMA_UUID_SIZE],
                      char out[VMA_UUID_STR_SIZE]);

/*
 * Is @name acceptable as a file name in an extract directory?  False for
 * an empty name, ".", "..", a name containing '/' or a control character.
 * Archives may contain such names (the format allows any bytes); the writer
 * refuses to create them and extractors must not use them as paths.
 */
bool vma_name_is_safe(const char *name);

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Output callback: write all @len bytes of @buf to the archive.  Returns 0
 * on success or a negative errno; any error is sticky for the writer.  The
 * writer calls it synchronously from vma_writer_write_cluster(),
 * vma_writer_write_zero_clusters() and vma_writer_finish(); @buf is only
 * valid during the call.
 *
 * The callback may wait for its output to drain (block, or yield a
 * coroutine): the writer never waits on its own.
 */
typedef int (*VmaOutputFunc)(void *opaque, const void *buf, size_t len);

typedef struct VmaWriter VmaWriter;

/* Progress of one stream, for progress reports */
typedef struct VmaStreamStats {
    uint64_t size;          /* registered size in bytes */
    uint64_t transferred;   /* device bytes accounted for so far */
    uint64_t zero_bytes;    /* of which were zero (not stored) */
    uint64_t clusters_done; /* clusters written */
    uint64_t clusters;      /* clusters the stream has (0 for vmstate) */
} VmaStreamStats;

/*
 * Threading contract: a VmaWriter is not thread-safe.  The caller makes sure
 * that one call at a time runs on a given writer (in QEMU: a CoMutex held
 * across each call, since the output callback may yield).  Different writers
 * are independent.
 *
 * Life cycle:
 *   1. vma_writer_new()
 *   2. vma_writer_add_config(), vma_writer_register_stream(),
 *      vma_writer_register_vmstate(), in any order
 *   3. vma_writer_write_cluster() / vma_writer_write_zero_clusters() for any
 *      stream in any order (vmstate in order); the first of these calls
 *      writes the header, after which nothing can be registered
 *   4. vma_writer_finish() to write the last extent, or just
 *      vma_writer_free() to abandon the archive
 */

/* @uuid: archive identity; @ctime: creation time in seconds since the epoch */
VmaWriter *vma_writer_new(const uint8_t uuid[VMA_UUID_SIZE], int64_t ctime,
                          VmaOutputFunc output, void *opaque);
void vma_writer_free(VmaWriter *w);

/*
 * Store a config file.  @name must be vma_name_is_safe() and unique; @len at
 * most VMA_MAX_BLOB_SIZE; at most VMA_MAX_CONFIGS configs.
 */
bool vma_writer_add_config(VmaWriter *w, const char *name,
                           const void *data, size_t len, GError **errp);

/*
 * Register a disk of @size bytes (> 0, at most 2^32 clusters).  @name must be
 * vma_name_is_safe(), unique and not "vmstate".  Returns the stream's dev_id
 * (1..254) or 0 on error.
 */
uint8_t vma_writer_register_stream(VmaWriter *w, const char *name,
                                   uint64_t size, GError **errp);

/*
 * Register the RAM state stream.  Its length is not known in advance:
 * @max_size (> 0) is an upper bound and is what the header records.  Its
 * clusters must be written in order from 0; each one but the last must be
 * full.  Returns the dev_id or 0 on error.
 */
uint8_t vma_writer_register_vmstate(VmaWriter *w, uint64_t max_size,
                                    GError **errp);

/*
 * Write cluster @cluster_num of stream @dev_id.  @len is VMA_CLUSTER_SIZE,
 * or less for the last cluster of a disk (then exactly the bytes up to the
 * disk's end) or of the vmstate stream.  @buf == NULL means all zero.  Zero
 * 4 KiB blocks are detected and not stored.  Every disk cluster must be
 * written exactly once.
 */
bool vma_writer_write_cluster(VmaWriter *w, uint8_t dev_id,
                              uint64_t cluster_num, const void *buf,
                              size_t len, GError **errp);

/* Record @count zero clusters of disk @dev_id from @first_cluster on */
bool vma_writer_write_zero_clusters(VmaWriter *w, uint8_t dev_id,
                                    uint64_t first_cluster, uint64_t count,
                                    GError **errp);

/*
 * Write the pending extent and the archive's end.  Fails, writing nothing,
 * if a disk cluster is missing.  After success the writer accepts nothing
 * more.  Writes the header if no cluster was written (an archive of configs
 * only).
 */
bool vma_writer_finish(VmaWriter *w, GError **errp);

/*
 * Mark disk @dev_id as incremental (part of a backup chain, see
 * vma-chain below): vma_writer_finish() then accepts it with clusters left
 * out, which mean "unchanged since the base".  Any time before finish.
 */
bool vma_writer_set_incremental(VmaWriter *w, uint8_t dev_id,
                                GError **errp);

/*
 * Make the writer fail from now on (e.g. the backup was cancelled): every
 * later call returns this error.  The first error is kept; later ones are
 * ignored.
 */
void vma_writer_set_error(VmaWriter *w, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

/* The sticky error, or NULL.  Owned by the writer. */
const GError *vma_writer_get_error(VmaWriter *w);

/*
 * Packing extents outside the writer.  A caller that fills extents in
 * several threads at once packs each extent with vma_extent_pack(), which
 * needs no writer and no lock, and then, under its lock, commits it with
 * vma_writer_commit_extent(): the writer checks and records the clusters,
 * emits the header first if needed, and the caller then outputs the extent
 * itself (before any other output, still under its lock).
 */

/* Bytes vma_extent_pack() may need for @clusters clusters */
#define VMA_EXTENT_PACK_SIZE(clusters) \
    (VMA_EXTENT_HEADER_SIZE + (size_t)(clusters) * VMA_CLUSTER_SIZE)

/* What vma_extent_pack() stored, for vma_writer_commit_extent() */
typedef struct VmaPackedExtent {
    uint8_t dev_id;
    uint64_t first_cluster;
    unsigned clusters;      /* consecutive clusters from first_cluster */
    uint64_t bytes;         /* device bytes they cover */
    uint64_t zero_bytes;    /* of which were zero (not stored) */
    size_t len;             /* extent bytes to output */
} VmaPackedExtent;

/*
 * Pack @len bytes of disk @dev_id, starting at cluster @first_cluster, into
 * one extent at @out (at least VMA_EXTENT_PACK_SIZE(clusters) bytes): the
 * header, then the non-zero 4 KiB blocks.  @buf == NULL means all zero.
 * @len covers at most VMA_WRITER_EXTENT_CLUSTERS clusters and is a multiple
 * of the cluster size except at the disk's end.
 */
void vma_extent_pack(const uint8_t uuid[VMA_UUID_SIZE], uint8_t dev_id,
                     uint64_t first_cluster, const void *buf, size_t len,
                     uint8_t *out, VmaPackedExtent *packed);

/*
 * The same without copying the data: fill the extent header at @header and
 * store in @blocks (room for one entry per 4 KiB block of @len) the offsets
 * in @buf of the blocks that follow it in the extent, in order.  Returns
 * how many.  A block that ends past @len (the disk's last, partial block)
 * goes into the extent padded with zeroes to 4 KiB.
 */
unsigned vma_extent_pack_header(const uint8_t uuid[VMA_UUID_SIZE],
                                uint8_t dev_id, uint64_t first_cluster,
                                const void *buf, size_t len,
                                uint8_t header[VMA_EXTENT_HEADER_SIZE],
                                size_t *blocks, VmaPackedExtent *packed);

/*
 * Account for an extent packed by vma_extent_pack(): check that its
 * clusters may be written (each disk cluster exactly once, within the
 * disk) and record them, writing the header first if this is the first
 * data.  On success the caller must output the extent next.
 */
bool vma_writer_commit_extent(VmaWriter *w, const VmaPackedExtent *packed,
                              GError **errp);

/* The archive's uuid */
const uint8_t *vma_writer_get_uuid(VmaWriter *w);

/* Progress of stream @dev_id; false if there is no such stream */
bool vma_writer_get_stream_stats(VmaWriter *w, uint8_t dev_id,
                                 VmaStreamStats *stats);

/* Bytes handed to the output callback so far */
uint64_t vma_writer_get_bytes_written(VmaWriter *w);

/* ------------------------------------------------------------------------ */
/* Reader                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Input callback: read up to @len bytes into @buf.  Returns the number of
 * bytes read (0 only at the end of the archive) or a negative errno.  Short
 * reads are fine: the reader calls again.
 */
typedef ssize_t (*VmaInputFunc)(void *opaque, void *buf, size_t len);

typedef struct VmaReader VmaReader;

typedef struct VmaDeviceInfo {
    uint8_t dev_id;
    const char *name;     /* as stored; check vma_name_is_safe() */
    uint64_t size;        /* bytes; an upper bound for vmstate */
    bool is_vmstate;
} VmaDeviceInfo;

typedef struct VmaConfigInfo {
    const char *name;     /* as stored; check vma_name_is_safe() */
    const uint8_t *data;
    size_t len;
} VmaConfigInfo;

/*
 * Called once per cluster of the archive, in archive order, after the
 * extent holding it was fully read and validated.
 *
 * @data: the cluster's @len bytes (@len is VMA_CLUSTER_SIZE, or less for a
 * device's last cluster); blocks that are not stored read as zero.  NULL
 * when @mask is 0 (the whole cluster is zero).  Valid during the call only.
 * @mask: bit i set means block i was stored (may still contain zeroes).
 *
 * Return false with @errp set to stop reading; vma_reader_run() then fails
 * with that error.
 */
typedef bool (*VmaClusterFunc)(void *opaque, const VmaDeviceInfo *dev,
                               uint64_t cluster_num, uint16_t mask,
                               const uint8_t *data, size_t len,
                               GError **errp);

/*
 * Read and validate the archive header.  Error messages name the offset in
 * the archive of what is wrong.
 */
VmaReader *vma_reader_new(VmaInputFunc input, void *opaque, GError **errp);
/* Same, reading from a file descriptor (file, pipe, FIFO, stdin) */
VmaReader *vma_reader_new_fd(int fd, GError **errp);
void vma_reader_free(VmaReader *r);

void vma_reader_get_uuid(VmaReader *r, uint8_t uuid[VMA_UUID_SIZE]);
int64_t vma_reader_get_ctime(VmaReader *r);
/* Size of the header, i.e. the offset of the first extent */
uint64_t vma_reader_get_header_size(VmaReader *r);

/* Configs in slot order */
unsigned vma_reader_get_config_count(VmaReader *r);
const VmaConfigInfo *vma_reader_get_config(VmaReader *r, unsigned index);
/* The config called @name, or NULL */
const VmaConfigInfo *vma_reader_find_config(VmaReader *r, const char *name);

/* Devices in dev_id order */
unsigned vma_reader_get_device_count(VmaReader *r);
const VmaDeviceInfo *vma_reader_get_device(VmaReader *r, unsigned index);
/* The device with @dev_id, or NULL */
const VmaDeviceInfo *vma_reader_find_device(VmaReader *r, uint8_t dev_id);

/*
 * Read every extent to the end of the archive, validating each, and call
 * @func (may be NULL: verify only) for every cluster.  At the end checks
 * that every cluster of every disk was present exactly once; a missing one
 * (a truncated archive, even cut exactly between extents) is an error.
 * Can be called once.
 */
bool vma_reader_run(VmaReader *r, VmaClusterFunc func, void *opaque,
                    GError **errp);

/*
 * Accept disk @dev_id with clusters absent (an incremental disk of a backup
 * chain: absent = unchanged since the base): vma_reader_run() and
 * vma_reader_scan() then do not fail for its missing clusters and simply
 * never report them.  Before reading; by default every disk must be
 * complete, so a reader that does not know about chains refuses an
 * incremental archive.
 */
bool vma_reader_allow_absent(VmaReader *r, uint8_t dev_id, GError **errp);

/* Archive bytes consumed so far (for progress) */
uint64_t vma_reader_get_offset(VmaReader *r);

/*
 * Random access: an index of where each cluster is, built from the extent
 * headers alone (the vma block driver).
 */

/*
 * Read up to @len bytes at archive offset @offset into @buf.  Returns the
 * number of bytes read (less than @len only at the archive's end) or a
 * negative errno.
 */
typedef ssize_t (*VmaPreadFunc)(void *opaque, void *buf, size_t len,
                                uint64_t offset);

/*
 * Called once per cluster of the archive, in archive order, after the
 * extent header naming it was validated.  The cluster's stored blocks (bit
 * i of @mask set: block i is stored) lie one after another, in ascending
 * block order, from archive offset @data_offset on; a multiple of 512.
 * Return false with @errp set to stop.
 */
typedef bool (*VmaClusterLocFunc)(void *opaque, const VmaDeviceInfo *dev,
                                  uint64_t cluster_num, uint16_t mask,
                                  uint64_t data_offset, GError **errp);

/*
 * The random access counterpart of vma_reader_run(), for an archive of
 * @archive_size bytes that @pread reads: reads only the 512-byte extent
 * headers, seeking over the data, and checks each one and the archive as a
 * whole exactly as vma_reader_run() does (same errors, same messages,
 * missing clusters included), except that the data is not read.  Calls
 * @func (may be NULL) for every cluster.  Can be called once, instead of
 * vma_reader_run().
 */
bool vma_reader_scan(VmaReader *r, VmaPreadFunc pread, void *pread_opaque,
                     uint64_t archive_size, VmaClusterLocFunc func,
                     void *opaque, GError **errp);

/* ------------------------------------------------------------------------ */
/* Backup chains (block/vma-chain.c)                                         */
/* ------------------------------------------------------------------------ */

/*
 * An archive that is part of a chain of incremental backups carries the
 * config blob VMA_CHAIN_CONFIG_NAME: UTF-8 text, "key=value" lines, '#'
 * comments, unknown keys ignored (docs/specs/vma_spec.txt):
 *
 *   format=1
 *   uuid=<this archive's uuid>
 *   depth=<0: the full archive, n: the n-th incremental>
 *   base=<uuid of the archive this one is relative to>     (depth > 0)
 *   chain=<uuid of the full>,<incremental 1>,...,<base>    (depth > 0)
 *   disk.<devname>=full|incremental[:new|used|invalid|missing-recreated]
 */

#define VMA_CHAIN_CONFIG_NAME   "backup-chain"
#define VMA_CHAIN_FORMAT        1

typedef struct VmaChainDisk {
    char *name;
    bool incremental;   /* false: complete in this archive */
    char *reason;       /* NULL, "new", "used", "invalid", "missing-recreated" */
} VmaChainDisk;

typedef struct VmaChainInfo {
    uint8_t uuid[VMA_UUID_SIZE];
    unsigned depth;
    uint8_t (*chain)[VMA_UUID_SIZE];    /* depth uuids: full first, base last */
    GPtrArray *disks;                   /* of VmaChainDisk, in blob order */
} VmaChainInfo;

/* Parse a "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" uuid (hex, any case) */
bool vma_uuid_parse(const char *str, uint8_t uuid[VMA_UUID_SIZE]);

/*
 * A new chain description: @depth 0 and @chain NULL for a full archive,
 * else @chain holds @depth uuids (full first, base last).
 */
VmaChainInfo *vma_chain_new(const uint8_t uuid[VMA_UUID_SIZE], unsigned depth,
                            const uint8_t (*chain)[VMA_UUID_SIZE]);
void vma_chain_free(VmaChainInfo *c);
/* Add a disk line; @reason may be NULL */
void vma_chain_add_disk(VmaChainInfo *c, const char *name, bool incremental,
                        const char *reason);
/* The disk line for @name, or NULL */
const VmaChainDisk *vma_chain_find_disk(const VmaChainInfo *c,
                                        const char *name);
/* The base: the last uuid of the chain; NULL at depth 0 */
const uint8_t *vma_chain_get_base(const VmaChainInfo *c);

/*
 * Parse and validate a blob strictly: well-formed uuids, depth consistent
 * with the chain's length, base == last of chain, no uuid twice, disk names
 * usable, known modes and reasons, no disk incremental at depth 0, no key
 * twice.
 */
VmaChainInfo *vma_chain_parse(const void *data, size_t len, GError **errp);

/* The blob text for @c (what vma_chain_parse() accepts); g_free() it */
char *vma_chain_format(const VmaChainInfo *c, size_t *len);

/*
 * The chain description of the archive @r reads: false with @errp set if
 * its blob is invalid or does not match the archive (uuid, one line per
 * disk, no line for a disk it lacks); true with *@out NULL if it has none.
 * With @allow_absent, also calls vma_reader_allow_absent() for each
 * incremental disk.
 */
bool vma_chain_from_reader(VmaReader *r, bool allow_absent,
                           VmaChainInfo **out, GError **errp);

#endif /* BLOCK_VMA_H */
