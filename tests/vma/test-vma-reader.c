/*
 * Unit tests of the VMA reader: round trips through the writer, reading
 * through short reads and a real pipe, and one test per check the reader
 * makes on a damaged archive.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <unistd.h>
#include "vma-test-util.h"
#include "../../block/vma-internal.h"

static const uint8_t test_uuid[VMA_UUID_SIZE] = {
    0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
};

/* Three disks of awkward sizes with data, holes and zero blocks */
#define N_DISKS 3
static const uint64_t disk_sizes[N_DISKS] = {
    540672, 4 * 1024 * 1024 + 4608, 512,
};

typedef struct TestArchive {
    GByteArray *bytes;
    TestDisk disks[N_DISKS + 1];    /* by dev_id; [0] unused */
    TestDisk *by_id[VMA_MAX_DEVICES];
} TestArchive;

/* Make some blocks and clusters of @d zero */
static void punch_zeroes(TestDisk *d, uint32_t seed)
{
    GRand *rand = g_rand_new_with_seed(seed);

    for (uint64_t off = 0; off < d->size; off += VMA_BLOCK_SIZE) {
        if (g_rand_int_range(rand, 0, 3) == 0) {
            memset(d->data + off, 0, MIN(VMA_BLOCK_SIZE, d->size - off));
        }
    }
    if (d->size > 2 * VMA_CLUSTER_SIZE) {
        memset(d->data + VMA_CLUSTER_SIZE, 0, VMA_CLUSTER_SIZE);
    }
    g_rand_free(rand);
}

/* Write all clusters of all disks in a shuffled, interleaved order */
static void archive_build(TestArchive *a, uint32_t seed)
{
    VmaWriter *w;
    GError *err = NULL;
    g_autoptr(GArray) order = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    GRand *rand = g_rand_new_with_seed(seed);
    char name[16];

    memset(a, 0, sizeof(*a));
    a->bytes = g_byte_array_new();
    w = vma_writer_new(test_uuid, 1234567890, test_output_to_array, a->bytes);
    g_assert_true(vma_writer_add_config(w, "qemu-server.conf", "memory: 512\n",
                                        12, &err));
    g_assert_true(vma_writer_add_config(w, "empty", "", 0, &err));
    for (unsigned i = 1; i <= N_DISKS; i++) {
        TestDisk *d = &a->disks[i];

        g_snprintf(name, sizeof(name), "drive-%u", i);
        test_disk_init(d, g_intern_string(name), disk_sizes[i - 1], seed + i);
        punch_zeroes(d, seed + i);
        g_assert_cmpuint(vma_writer_register_stream(w, d->name, d->size,
                                                    &err), ==, i);
        a->by_id[i] = d;
        for (uint64_t c = 0; c * VMA_CLUSTER_SIZE < d->size; c++) {
            uint64_t key = (uint64_t)i << 32 | c;
            g_array_append_val(order, key);
        }
    }
    for (guint i = order->len; i > 1; i--) {
        guint j = g_rand_int_range(rand, 0, i);
        uint64_t tmp = g_array_index(order, uint64_t, i - 1);

        g_array_index(order, uint64_t, i - 1) = g_array_index(order,
                                                              uint64_t, j);
        g_array_index(order, uint64_t, j) = tmp;
    }
    for (guint i = 0; i < order->len; i++) {
        uint64_t key = g_array_index(order, uint64_t, i);

        test_write_cluster(w, key >> 32, a->by_id[key >> 32], (uint32_t)key);
    }
    g_assert_true(vma_writer_finish(w, &err));
    g_assert_no_error(err);
    vma_writer_free(w);
    g_rand_free(rand);
}

static void archive_free(TestArchive *a)
{
    for (unsigned i = 1; i <= N_DISKS; i++) {
        test_disk_free(&a->disks[i]);
    }
    g_byte_array_unref(a->bytes);
}

static void archive_check_restored(TestArchive *a)
{
    for (unsigned i = 1; i <= N_DISKS; i++) {
        TestDisk *d = &a->disks[i];

        g_assert_cmpmem(d->restored, d->size, d->data, d->size);
        for (uint64_t c = 0; c * VMA_CLUSTER_SIZE < d->size; c++) {
            g_assert_cmpuint(d->seen[c], ==, 1);
        }
    }
}

/* Read @len bytes of @data, @max_read at a time; returns the error or NULL */
static GError *read_archive(const uint8_t *data, size_t len, size_t max_read,
                            TestDisk **by_id)
{
    TestInput in = { .data = data, .len = len, .max_read = max_read };
    GError *err = NULL;
    VmaReader *r = vma_reader_new(test_input_from_memory, &in, &err);

    if (r) {
        vma_reader_run(r, by_id ? test_restore_cluster : NULL, by_id, &err);
        vma_reader_free(r);
    }
    return err;
}

/*
 * vma_reader_scan(): the clusters' locations, from the extent headers
 * only.  The data at each location is copied into the TestDisks, so that a
 * round trip checks the locations too.
 */
typedef struct TestScan {
    const uint8_t *data;
    size_t len;
    TestDisk **by_id;
} TestScan;

static ssize_t test_pread_memory(void *opaque, void *buf, size_t len,
                                 uint64_t offset)
{
    TestScan *scan = opaque;
    size_t n = offset < scan->len ? MIN(len, scan->len - offset) : 0;

    memcpy(buf, scan->data + offset, n);
    return n;
}

static bool test_locate_cluster(void *opaque, const VmaDeviceInfo *dev,
                                uint64_t cluster_num, uint16_t mask,
                                uint64_t data_offset, GError **errp)
{
    TestScan *scan = opaque;
    TestDisk *d = scan->by_id[dev->dev_id];
    uint64_t off = cluster_num * VMA_CLUSTER_SIZE;

    g_assert_nonnull(d);
    g_assert_cmpuint(data_offset % 512, ==, 0);
    for (unsigned i = 0; i < VMA_BLOCKS_PER_CLUSTER; i++) {
        uint64_t block = off + i * VMA_BLOCK_SIZE;

        if (!(mask & (1u << i))) {
            continue;
        }
        g_assert_cmpuint(block, <, d->size);
        g_assert_cmpuint(data_offset + VMA_BLOCK_SIZE, <=, scan->len);
        memcpy(d->restored + block, scan->data + data_offset,
               MIN(VMA_BLOCK_SIZE, d->size - block));
        data_offset += VMA_BLOCK_SIZE;
    }
    d->seen[cluster_num]++;
    return true;
}

/* Like read_archive(), with vma_reader_scan() */
static GError *scan_archive(const uint8_t *data, size_t len, TestDisk **by_id)
{
    TestScan scan = { .data = data, .len = len, .by_id = by_id };
    TestInput in = { .data = data, .len = len };
    GError *err = NULL;
    VmaReader *r = vma_reader_new(test_input_from_memory, &in, &err);

    if (r) {
        vma_reader_scan(r, test_pread_memory, &scan, len,
                        by_id ? test_locate_cluster : NULL, &scan, &err);
        vma_reader_free(r);
    }
    return err;
}

static void test_scan_round_trip(void)
{
    TestArchive a;
    GError *err;

    archive_build(&a, 77);
    err = scan_archive(a.bytes->data, a.bytes->len, a.by_id);
    g_assert_no_error(err);
    archive_check_restored(&a);
    archive_free(&a);
}

static void test_round_trip(void)
{
    static const size_t max_reads[] = { 0, 1, 4097, 65536 + 13 };

    for (unsigned i = 0; i < G_N_ELEMENTS(max_reads); i++) {
        TestArchive a;
        GError *err;

        archive_build(&a, 100 + i);
        err = read_archive(a.bytes->data, a.bytes->len, max_reads[i],
                           a.by_id);
        g_assert_no_error(err);
        archive_check_restored(&a);
        archive_free(&a);
    }
}

static void test_header_info(void)
{
    TestArchive a;
    TestInput in;
    GError *err = NULL;
    VmaReader *r;
    const VmaConfigInfo *c;
    const VmaDeviceInfo *d;
    uint8_t uuid[VMA_UUID_SIZE];

    archive_build(&a, 7);
    in = (TestInput) { .data = a.bytes->data, .len = a.bytes->len };
    r = vma_reader_new(test_input_from_memory, &in, &err);
    g_assert_no_error(err);

    vma_reader_get_uuid(r, uuid);
    g_assert_cmpmem(uuid, 16, test_uuid, 16);
    g_assert_cmpint(vma_reader_get_ctime(r), ==, 1234567890);
    g_assert_cmpuint(vma_reader_get_config_count(r), ==, 2);
    c = vma_reader_find_config(r, "qemu-server.conf");
    g_assert_nonnull(c);
    g_assert_cmpmem(c->data, c->len, "memory: 512\n", 12);
    c = vma_reader_get_config(r, 1);
    g_assert_cmpstr(c->name, ==, "empty");
    g_assert_cmpuint(c->len, ==, 0);
    g_assert_null(vma_reader_find_config(r, "missing"));
    g_assert_cmpuint(vma_reader_get_device_count(r), ==, N_DISKS);
    d = vma_reader_get_device(r, 1);
    g_assert_cmpuint(d->dev_id, ==, 2);
    g_assert_cmpstr(d->name, ==, "drive-2");
    g_assert_cmpuint(d->size, ==, disk_sizes[1]);
    g_assert_false(d->is_vmstate);
    g_assert_null(vma_reader_find_device(r, 200));
    g_assert_null(vma_reader_get_device(r, N_DISKS));
    g_assert_cmpuint(vma_reader_get_offset(r), ==,
                     vma_reader_get_header_size(r));
    vma_reader_free(r);
    archive_free(&a);
}

/* Through a real pipe, with a thread feeding it in odd pieces */
typedef struct PipeFeed {
    int fd;
    GByteArray *bytes;
} PipeFeed;

static gpointer pipe_feeder(gpointer opaque)
{
    PipeFeed *f = opaque;

    for (size_t pos = 0; pos < f->bytes->len;) {
        ssize_t n = write(f->fd, f->bytes->data + pos,
                          MIN(7777, f->bytes->len - pos));
        g_assert_cmpint(n, >, 0);
        pos += n;
    }
    close(f->fd);
    return NULL;
}

static void test_pipe_input(void)
{
    TestArchive a;
    int fds[2];
    PipeFeed feed;
    GThread *thread;
    GError *err = NULL;
    VmaReader *r;

    archive_build(&a, 11);
    g_assert_cmpint(pipe(fds), ==, 0);
    feed = (PipeFeed) { .fd = fds[1], .bytes = a.bytes };
    thread = g_thread_new("feeder", pipe_feeder, &feed);
    r = vma_reader_new_fd(fds[0], &err);
    g_assert_no_error(err);
    g_assert_true(vma_reader_run(r, test_restore_cluster, a.by_id, &err));
    g_assert_no_error(err);
    g_assert_false(vma_reader_run(r, NULL, NULL, &err));
    g_clear_error(&err);
    vma_reader_free(r);
    g_thread_join(thread);
    close(fds[0]);
    archive_check_restored(&a);
    archive_free(&a);
}

/* vmstate: in order, zero blocks inside come back as zeroes */
static void test_vmstate(void)
{
    g_autoptr(GByteArray) bytes = g_byte_array_new();
    VmaWriter *w = vma_writer_new(test_uuid, 0, test_output_to_array, bytes);
    TestDisk state;
    TestDisk *by_id[VMA_MAX_DEVICES] = { NULL };
    GError *err = NULL;
    uint64_t size = 3 * VMA_CLUSTER_SIZE;
    const VmaDeviceInfo *d;
    TestInput in;
    VmaReader *r;

    test_disk_init(&state, VMA_VMSTATE_NAME, size, 5);
    memset(state.data + 4096, 0, 3 * 4096);
    memset(state.data + VMA_CLUSTER_SIZE, 0, VMA_CLUSTER_SIZE);
    g_assert_cmpuint(vma_writer_register_vmstate(w, size, &err), ==, 1);
    by_id[1] = &state;
    for (uint64_t c = 0; c < 3; c++) {
        test_write_cluster(w, 1, &state, c);
    }
    g_assert_true(vma_writer_finish(w, &err));
    vma_writer_free(w);

    in = (TestInput) { .data = bytes->data, .len = bytes->len };
    r = vma_reader_new(test_input_from_memory, &in, &err);
    g_assert_no_error(err);
    d = vma_reader_get_device(r, 0);
    g_assert_true(d->is_vmstate);
    g_assert_cmpuint(d->size, ==, size);
    g_assert_true(vma_reader_run(r, test_restore_cluster, by_id, &err));
    g_assert_no_error(err);
    vma_reader_free(r);
    g_assert_cmpmem(state.restored, size, state.data, size);
    test_disk_free(&state);
}

static bool failing_sink(void *opaque, const VmaDeviceInfo *dev,
                         uint64_t cluster_num, uint16_t mask,
                         const uint8_t *data, size_t len, GError **errp)
{
    g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOSPC, "target full");
    return false;
}

static void test_sink_error(void)
{
    TestArchive a;
    TestInput in;
    GError *err = NULL;
    VmaReader *r;

    archive_build(&a, 3);
    in = (TestInput) { .data = a.bytes->data, .len = a.bytes->len };
    r = vma_reader_new(test_input_from_memory, &in, &err);
    g_assert_false(vma_reader_run(r, failing_sink, NULL, &err));
    g_assert_error(err, G_FILE_ERROR, G_FILE_ERROR_NOSPC);
    g_clear_error(&err);
    vma_reader_free(r);
    archive_free(&a);
}

/*
 * Damaged archives.  Each case patches a good archive, fixes up the
 * checksums it does not mean to break, and expects a specific error.
 */

typedef struct Damage {
    const char *name;
    void (*patch)(GByteArray *bytes);
    VmaErrorCode code;
    const char *message;    /* expected substring */
} Damage;

static uint32_t header_size_of(GByteArray *b)
{
    return vma_get_be32(b->data + VMA_HDR_HEADER_SIZE);
}

static void fix_header_md5(GByteArray *b)
{
    vma_md5_with_hole(b->data, header_size_of(b), VMA_HDR_MD5,
                      b->data + VMA_HDR_MD5);
}

static uint8_t *first_extent(GByteArray *b)
{
    return b->data + header_size_of(b);
}

static void fix_extent_md5(uint8_t *ext)
{
    vma_md5_with_hole(ext, VMA_EXTENT_HEADER_SIZE, VMA_EXT_MD5,
                      ext + VMA_EXT_MD5);
}

static uint64_t get_slot(uint8_t *ext, unsigned slot)
{
    return vma_get_be64(ext + VMA_EXT_BLOCKINFO + 8 * slot);
}

static void set_slot(uint8_t *ext, unsigned slot, uint64_t bi)
{
    vma_put_be64(ext + VMA_EXT_BLOCKINFO + 8 * slot, bi);
    fix_extent_md5(ext);
}

static void patch_magic(GByteArray *b)
{
    b->data[1] = 'X';
}

static void patch_version(GByteArray *b)
{
    vma_put_be32(b->data + VMA_HDR_VERSION, 2);
    fix_header_md5(b);
}

static void patch_header_md5(GByteArray *b)
{
    b->data[VMA_HDR_CTIME] ^= 1;
}

static void patch_header_size_unaligned(GByteArray *b)
{
    vma_put_be32(b->data + VMA_HDR_HEADER_SIZE, header_size_of(b) + 1);
}

static void patch_header_size_small(GByteArray *b)
{
    vma_put_be32(b->data + VMA_HDR_HEADER_SIZE, 4096);
}

static void patch_header_size_huge(GByteArray *b)
{
    vma_put_be32(b->data + VMA_HDR_HEADER_SIZE, 0xfffffe00);
}

static void patch_blob_offset(GByteArray *b)
{
    vma_put_be32(b->data + VMA_HDR_BLOB_OFFSET, 1000);
    fix_header_md5(b);
}

static void patch_blob_size(GByteArray *b)
{
    vma_put_be32(b->data + VMA_HDR_BLOB_SIZE, 100000);
    fix_header_md5(b);
}

static void patch_blob_chain(GByteArray *b)
{
    /* the first blob claims to run past the blob buffer */
    vma_put_le16(b->data + VMA_HEADER_FIXED_SIZE + 1, 60000);
    fix_header_md5(b);
}

static void patch_blob_pointer(GByteArray *b)
{
    /* points into the middle of the first config name */
    vma_put_be32(b->data + VMA_HDR_CONFIG_NAMES, 5);
    fix_header_md5(b);
}

static void patch_name_nul(GByteArray *b)
{
    /* the first blob is "qemu-server.conf\0": drop its NUL */
    uint8_t *blob = b->data + VMA_HEADER_FIXED_SIZE + 1;

    blob[2 + vma_get_le16(blob) - 1] = 'x';
    fix_header_md5(b);
}

static void patch_config_half(GByteArray *b)
{
    vma_put_be32(b->data + VMA_HDR_CONFIG_DATA, 0);
    fix_header_md5(b);
}

static void patch_header_reserved(GByteArray *b)
{
    b->data[VMA_HDR_RESERVED1 + 100] = 1;
    fix_header_md5(b);
}

static void patch_dev_info_reserved(GByteArray *b)
{
    b->data[VMA_HDR_DEV_INFO + 32 + VMA_DEV_RESERVED2 + 3] = 1;
    fix_header_md5(b);
}

static void patch_dev_id_zero(GByteArray *b)
{
    memcpy(b->data + VMA_HDR_DEV_INFO, b->data + VMA_HDR_DEV_INFO + 32, 32);
    fix_header_md5(b);
}

static void patch_duplicate_devname(GByteArray *b)
{
    memcpy(b->data + VMA_HDR_DEV_INFO + 64, b->data + VMA_HDR_DEV_INFO + 32,
           4);
    fix_header_md5(b);
}

static void patch_extent_magic(GByteArray *b)
{
    first_extent(b)[3] = 'X';
}

static void patch_extent_md5(GByteArray *b)
{
    first_extent(b)[VMA_EXT_BLOCKINFO + 3] ^= 0x10;
}

static void patch_extent_uuid(GByteArray *b)
{
    first_extent(b)[VMA_EXT_UUID] ^= 1;
    fix_extent_md5(first_extent(b));
}

static void patch_extent_reserved(GByteArray *b)
{
    first_extent(b)[VMA_EXT_RESERVED + 1] = 1;
    fix_extent_md5(first_extent(b));
}

static void patch_blockinfo_reserved(GByteArray *b)
{
    uint8_t *ext = first_extent(b);

    set_slot(ext, 0, get_slot(ext, 0) | (UINT64_C(1) << 40));
}

static void patch_unused_slot(GByteArray *b)
{
    set_slot(first_extent(b), VMA_MAX_EXTENT_CLUSTERS - 1, 42);
}

static void patch_block_count(GByteArray *b)
{
    uint8_t *ext = first_extent(b);

    vma_put_be16(ext + VMA_EXT_BLOCK_COUNT,
                 vma_get_be16(ext + VMA_EXT_BLOCK_COUNT) + 1);
    fix_extent_md5(ext);
}

static void patch_unknown_dev(GByteArray *b)
{
    uint8_t *ext = first_extent(b);
    uint64_t bi = get_slot(ext, 0);

    set_slot(ext, 0, (bi & ~(UINT64_C(0xff) << 32)) | (UINT64_C(9) << 32));
}

static void patch_cluster_past_end(GByteArray *b)
{
    uint8_t *ext = first_extent(b);
    uint64_t bi = get_slot(ext, 0);

    set_slot(ext, 0, (bi & ~UINT64_C(0xffffffff)) | 100000);
}

static void patch_duplicate_cluster(GByteArray *b)
{
    uint8_t *ext = first_extent(b);
    uint64_t bi0 = get_slot(ext, 0), bi1 = get_slot(ext, 1);

    /* slot 1 names the cluster of slot 0; keep its mask (data layout) */
    set_slot(ext, 1, (bi1 & ~UINT64_C(0xffffffffffff)) |
                     (bi0 & UINT64_C(0xffffffffffff)));
}

/* Remove the last extent with clusters, keeping the empty trailing one */
static void patch_missing_cluster(GByteArray *b)
{
    uint32_t off = header_size_of(b), last = 0;

    while (off < b->len) {
        uint8_t *ext = b->data + off;
        uint32_t len = VMA_EXTENT_HEADER_SIZE +
                       vma_get_be16(ext + VMA_EXT_BLOCK_COUNT) * 4096;

        if (get_slot(ext, 0) != 0) {
            last = off;
        }
        off += len;
    }
    g_assert_cmpuint(last, !=, 0);
    off = last + VMA_EXTENT_HEADER_SIZE +
          vma_get_be16(b->data + last + VMA_EXT_BLOCK_COUNT) * 4096;
    g_byte_array_remove_range(b, last, off - last);
}

/* Cut exactly after the first extent */
static void patch_cut_between_extents(GByteArray *b)
{
    uint8_t *ext = first_extent(b);

    g_byte_array_set_size(b, header_size_of(b) + VMA_EXTENT_HEADER_SIZE +
                             vma_get_be16(ext + VMA_EXT_BLOCK_COUNT) * 4096);
}

static void patch_cut_in_extent_header(GByteArray *b)
{
    g_byte_array_set_size(b, header_size_of(b) + 100);
}

static void patch_cut_in_extent_data(GByteArray *b)
{
    g_byte_array_set_size(b, header_size_of(b) + VMA_EXTENT_HEADER_SIZE + 5);
}

static void patch_cut_in_header(GByteArray *b)
{
    g_byte_array_set_size(b, 5000);
}

static void patch_empty(GByteArray *b)
{
    g_byte_array_set_size(b, 0);
}

static void patch_trailing_garbage(GByteArray *b)
{
    g_byte_array_append(b, (const uint8_t *)"garbage", 7);
}

static const Damage damages[] = {
    { "magic", patch_magic, VMA_ERROR_FORMAT, "bad magic" },
    { "version", patch_version, VMA_ERROR_FORMAT, "unsupported version 2" },
    { "header-md5", patch_header_md5, VMA_ERROR_FORMAT,
      "header checksum (MD5) mismatch" },
    { "header-size-unaligned", patch_header_size_unaligned,
      VMA_ERROR_FORMAT, "header_size" },
    { "header-size-small", patch_header_size_small, VMA_ERROR_FORMAT,
      "header_size" },
    { "header-size-huge", patch_header_size_huge, VMA_ERROR_FORMAT,
      "header_size" },
    { "blob-offset", patch_blob_offset, VMA_ERROR_FORMAT,
      "blob_buffer_offset" },
    { "blob-size", patch_blob_size, VMA_ERROR_FORMAT, "blob_buffer_size" },
    { "blob-chain", patch_blob_chain, VMA_ERROR_FORMAT, "runs past" },
    { "blob-pointer", patch_blob_pointer, VMA_ERROR_FORMAT,
      "not point to the start of a blob" },
    { "name-nul", patch_name_nul, VMA_ERROR_FORMAT, "not NUL terminated" },
    { "config-half", patch_config_half, VMA_ERROR_FORMAT, "but no data" },
    { "header-reserved", patch_header_reserved, VMA_ERROR_FORMAT,
      "reserved field (header)" },
    { "dev-info-reserved", patch_dev_info_reserved, VMA_ERROR_FORMAT,
      "reserved field (dev_info)" },
    { "dev-id-zero", patch_dev_id_zero, VMA_ERROR_FORMAT, "dev_id 0" },
    { "duplicate-devname", patch_duplicate_devname, VMA_ERROR_FORMAT,
      "duplicate device name" },
    { "extent-magic", patch_extent_magic, VMA_ERROR_FORMAT,
      "bad extent magic" },
    { "extent-md5", patch_extent_md5, VMA_ERROR_FORMAT,
      "extent header checksum (MD5) mismatch" },
    { "extent-uuid", patch_extent_uuid, VMA_ERROR_FORMAT, "uuid" },
    { "extent-reserved", patch_extent_reserved, VMA_ERROR_FORMAT,
      "reserved field (extent)" },
    { "blockinfo-reserved", patch_blockinfo_reserved, VMA_ERROR_FORMAT,
      "reserved bits" },
    { "unused-slot", patch_unused_slot, VMA_ERROR_FORMAT,
      "unused blockinfo slot" },
    { "block-count", patch_block_count, VMA_ERROR_FORMAT, "block_count" },
    { "unknown-dev", patch_unknown_dev, VMA_ERROR_FORMAT, "unknown dev_id 9" },
    { "cluster-past-end", patch_cluster_past_end, VMA_ERROR_FORMAT,
      "past the end" },
    { "duplicate-cluster", patch_duplicate_cluster, VMA_ERROR_FORMAT,
      "duplicate cluster" },
    { "missing-cluster", patch_missing_cluster, VMA_ERROR_TRUNCATED,
      "missing" },
    { "cut-between-extents", patch_cut_between_extents, VMA_ERROR_TRUNCATED,
      "missing" },
    { "cut-in-extent-header", patch_cut_in_extent_header,
      VMA_ERROR_TRUNCATED, "truncated inside an extent header" },
    { "cut-in-extent-data", patch_cut_in_extent_data, VMA_ERROR_TRUNCATED,
      "truncated inside the data" },
    { "cut-in-header", patch_cut_in_header, VMA_ERROR_TRUNCATED,
      "ends inside the header" },
    { "empty", patch_empty, VMA_ERROR_TRUNCATED, "ends inside the header" },
    { "trailing-garbage", patch_trailing_garbage, VMA_ERROR_TRUNCATED,
      "truncated inside an extent header" },
};

static void test_damage(gconstpointer opaque)
{
    const Damage *dmg = opaque;
    TestArchive a;
    GError *err, *scan_err;

    archive_build(&a, 42);
    dmg->patch(a.bytes);
    err = read_archive(a.bytes->data, a.bytes->len, 0, NULL);
    g_assert_nonnull(err);
    if (!strstr(err->message, dmg->message) || err->code != (int)dmg->code) {
        g_test_message("got: %s (code %d)", err->message, err->code);
    }
    g_assert_error(err, VMA_ERROR, (int)dmg->code);
    g_assert_nonnull(strstr(err->message, dmg->message));
    g_assert_true(g_str_has_prefix(err->message, "archive offset "));

    /* Reading only the extent headers finds the same fault */
    scan_err = scan_archive(a.bytes->data, a.bytes->len, NULL);
    g_assert_nonnull(scan_err);
    g_assert_error(scan_err, VMA_ERROR, err->code);
    g_assert_cmpstr(scan_err->message, ==, err->message);
    g_error_free(scan_err);
    g_error_free(err);
    archive_free(&a);
}

/*
 * Make the blob buffer @pad bytes longer than its blobs, filled with @fill
 * (the last byte; the others are zero), growing the header if needed
 */
static uint32_t pad_blob_buffer(GByteArray *b, uint32_t pad, uint8_t fill)
{
    uint32_t blob_offset = vma_get_be32(b->data + VMA_HDR_BLOB_OFFSET);
    uint32_t blob_size = vma_get_be32(b->data + VMA_HDR_BLOB_SIZE);
    uint32_t header_size = header_size_of(b);
    uint32_t need = blob_offset + blob_size + pad;

    if (need > header_size) {
        uint32_t grow = (need - header_size + 511) / 512 * 512;

        /* insert at the end of the header: move the extents up */
        g_byte_array_set_size(b, b->len + grow);
        memmove(b->data + header_size + grow, b->data + header_size,
                b->len - grow - header_size);
        memset(b->data + header_size, 0, grow);
        header_size += grow;
        vma_put_be32(b->data + VMA_HDR_HEADER_SIZE, header_size);
    }
    g_assert_true(vma_buffer_is_zero(b->data + blob_offset + blob_size,
                                     pad));
    b->data[blob_offset + blob_size + pad - 1] = fill;
    vma_put_be32(b->data + VMA_HDR_BLOB_SIZE, blob_size + pad);
    fix_header_md5(b);
    return blob_size;
}

/*
 * A blob buffer padded with zero bytes past its last blob (any count, odd
 * too, into a larger header as well) reads as before, as the reference
 * reader reads it
 */
static void test_blob_padding(void)
{
    static const uint32_t pads[] = { 1, 2, 3, 101, 0, 4096 + 1 };

    for (unsigned i = 0; i < G_N_ELEMENTS(pads); i++) {
        TestArchive a;
        uint32_t pad = pads[i];
        TestInput in;
        GError *err = NULL;
        VmaReader *r;

        archive_build(&a, 20 + i);
        if (!pad) {
            /* up to the end of the header: a multiple of 512 */
            pad = header_size_of(a.bytes) - VMA_HEADER_FIXED_SIZE -
                  vma_get_be32(a.bytes->data + VMA_HDR_BLOB_SIZE);
            g_assert_cmpuint(pad, >, 0);
        }
        pad_blob_buffer(a.bytes, pad, 0);
        in = (TestInput) { .data = a.bytes->data, .len = a.bytes->len };
        r = vma_reader_new(test_input_from_memory, &in, &err);
        g_assert_no_error(err);
        g_assert_cmpuint(vma_reader_get_config_count(r), ==, 2);
        g_assert_cmpmem(vma_reader_find_config(r, "qemu-server.conf")->data,
                        12, "memory: 512\n", 12);
        g_assert_cmpuint(vma_reader_find_config(r, "empty")->len, ==, 0);
        g_assert_cmpuint(vma_reader_get_device_count(r), ==, N_DISKS);
        g_assert_true(vma_reader_run(r, test_restore_cluster, a.by_id, &err));
        g_assert_no_error(err);
        vma_reader_free(r);
        archive_check_restored(&a);
        archive_free(&a);
    }
}

/* Padding must be zero, and names in it are still refused */
static void test_blob_padding_strict(void)
{
    static const uint32_t pads[] = { 1, 3 };
    TestArchive a;
    uint32_t used;
    GError *err;

    for (unsigned i = 0; i < G_N_ELEMENTS(pads); i++) {
        archive_build(&a, 30 + i);
        pad_blob_buffer(a.bytes, pads[i], 0x07);
        err = read_archive(a.bytes->data, a.bytes->len, 0, NULL);
        g_assert_error(err, VMA_ERROR, VMA_ERROR_FORMAT);
        g_assert_nonnull(strstr(err->message, "blob"));
        g_error_free(err);
        archive_free(&a);
    }

    /* device 1's name points at the padding: an empty blob, no name */
    archive_build(&a, 40);
    used = pad_blob_buffer(a.bytes, 64, 0);
    vma_put_be32(a.bytes->data + VMA_HDR_DEV_INFO + VMA_DEV_INFO_SIZE,
                 used);
    fix_header_md5(a.bytes);
    err = read_archive(a.bytes->data, a.bytes->len, 0, NULL);
    g_assert_error(err, VMA_ERROR, VMA_ERROR_FORMAT);
    g_assert_nonnull(strstr(err->message, "not NUL terminated"));
    g_error_free(err);
    archive_free(&a);
}

/* vmstate clusters must come in order */
static void test_vmstate_out_of_order(void)
{
    g_autoptr(GByteArray) bytes = g_byte_array_new();
    VmaWriter *w = vma_writer_new(test_uuid, 0, test_output_to_array, bytes);
    uint8_t buf[VMA_CLUSTER_SIZE] = { 1 };
    GError *err = NULL;
    uint8_t *ext;

    g_assert_cmpuint(vma_writer_register_vmstate(w, 2 * VMA_CLUSTER_SIZE,
                                                 &err), ==, 1);
    g_assert_true(vma_writer_write_cluster(w, 1, 0, buf, sizeof(buf), &err));
    g_assert_true(vma_writer_write_cluster(w, 1, 1, buf, sizeof(buf), &err));
    g_assert_true(vma_writer_finish(w, &err));
    vma_writer_free(w);

    /* swap the two slots */
    ext = first_extent(bytes);
    vma_put_be64(ext + VMA_EXT_BLOCKINFO, VMA_BI_MAKE(1, 1, 1));
    vma_put_be64(ext + VMA_EXT_BLOCKINFO + 8, VMA_BI_MAKE(1, 1, 0));
    fix_extent_md5(ext);
    err = read_archive(bytes->data, bytes->len, 0, NULL);
    g_assert_error(err, VMA_ERROR, VMA_ERROR_FORMAT);
    g_assert_nonnull(strstr(err->message, "out of order"));
    g_error_free(err);
}

/* Every prefix of an archive is refused, none crashes */
static void test_every_truncation(void)
{
    TestArchive a;

    archive_build(&a, 9);
    for (size_t len = 0; len < a.bytes->len; len += len < 13000 ? 97 : 4093) {
        GError *err = read_archive(a.bytes->data, len, 0, NULL);
        GError *scan_err = scan_archive(a.bytes->data, len, NULL);

        g_assert_nonnull(err);
        g_assert_nonnull(scan_err);
        g_assert_cmpstr(scan_err->message, ==, err->message);
        g_error_free(err);
        g_error_free(scan_err);
    }
    archive_free(&a);
}

/* Archives at the limits: 254 disks, 256 configs, a 65535 byte config */
static void test_limits(void)
{
    g_autoptr(GByteArray) bytes = g_byte_array_new();
    VmaWriter *w = vma_writer_new(test_uuid, 0, test_output_to_array, bytes);
    g_autofree uint8_t *big = g_malloc(VMA_MAX_BLOB_SIZE);
    GError *err = NULL;
    TestInput in;
    VmaReader *r;
    char name[16];

    test_fill_random(big, VMA_MAX_BLOB_SIZE, 1);
    for (unsigned i = 0; i < VMA_MAX_CONFIGS; i++) {
        g_snprintf(name, sizeof(name), "cfg%u", i);
        g_assert_true(vma_writer_add_config(w, name, big,
                                            i ? i : VMA_MAX_BLOB_SIZE, &err));
    }
    for (unsigned i = 1; i <= 254; i++) {
        g_snprintf(name, sizeof(name), "disk%u", i);
        g_assert_cmpuint(vma_writer_register_stream(w, name, 512 * i, &err),
                         ==, i);
    }
    for (unsigned i = 1; i <= 254; i++) {
        uint64_t clusters = (512 * i + VMA_CLUSTER_SIZE - 1) /
                            VMA_CLUSTER_SIZE;

        g_assert_true(vma_writer_write_zero_clusters(w, i, 0, clusters,
                                                     &err));
    }
    g_assert_true(vma_writer_finish(w, &err));
    g_assert_no_error(err);
    vma_writer_free(w);

    in = (TestInput) { .data = bytes->data, .len = bytes->len };
    r = vma_reader_new(test_input_from_memory, &in, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vma_reader_get_config_count(r), ==, 256);
    g_assert_cmpuint(vma_reader_get_device_count(r), ==, 254);
    g_assert_cmpmem(vma_reader_find_config(r, "cfg0")->data,
                    VMA_MAX_BLOB_SIZE, big, VMA_MAX_BLOB_SIZE);
    g_assert_cmpuint(vma_reader_find_device(r, 254)->size, ==, 512 * 254);
    g_assert_true(vma_reader_run(r, NULL, NULL, &err));
    g_assert_no_error(err);
    vma_reader_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vma/reader/round-trip", test_round_trip);
    g_test_add_func("/vma/reader/header-info", test_header_info);
    g_test_add_func("/vma/reader/pipe-input", test_pipe_input);
    g_test_add_func("/vma/reader/vmstate", test_vmstate);
    g_test_add_func("/vma/reader/sink-error", test_sink_error);
    g_test_add_func("/vma/reader/limits", test_limits);
    g_test_add_func("/vma/reader/vmstate-out-of-order",
                    test_vmstate_out_of_order);
    g_test_add_func("/vma/reader/every-truncation", test_every_truncation);
    g_test_add_func("/vma/reader/scan/round-trip", test_scan_round_trip);
    g_test_add_func("/vma/reader/blob-padding", test_blob_padding);
    g_test_add_func("/vma/reader/blob-padding-strict",
                    test_blob_padding_strict);
    for (unsigned i = 0; i < G_N_ELEMENTS(damages); i++) {
        g_autofree char *path = g_strdup_printf("/vma/reader/damaged/%s",
                                                damages[i].name);
        g_test_add_data_func(path, &damages[i], test_damage);
    }
    return g_test_run();
}
