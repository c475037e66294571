/*
 * Unit tests of the VMA writer: the bytes it produces and how it refuses
 * misuse.  Round trips through the reader are in test-vma-reader.c.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include "vma-test-util.h"
#include "../../block/vma-internal.h"

static const uint8_t test_uuid[VMA_UUID_SIZE] = {
    0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
    0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21,
};

static VmaWriter *new_writer(GByteArray *out)
{
    return vma_writer_new(test_uuid, 1700000000, test_output_to_array, out);
}

/* The header of a small archive, field by field */
static void test_header_layout(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    VmaWriter *w = new_writer(out);
    GError *err = NULL;
    const uint8_t *h;
    uint8_t md5[16];
    uint32_t blob_size, header_size, name_ptr;

    g_assert_true(vma_writer_add_config(w, "qemu-server.conf", "abc", 3,
                                        &err));
    g_assert_cmpuint(vma_writer_register_stream(w, "drive-scsi0", 540672,
                                                &err), ==, 1);
    g_assert_no_error(err);
    g_assert_true(vma_writer_write_zero_clusters(w, 1, 0, 9, &err));
    g_assert_true(vma_writer_finish(w, &err));
    g_assert_no_error(err);
    vma_writer_free(w);

    h = out->data;
    g_assert_cmpmem(h, 4, "VMA", 4);
    g_assert_cmpuint(vma_get_be32(h + VMA_HDR_VERSION), ==, 1);
    g_assert_cmpmem(h + VMA_HDR_UUID, 16, test_uuid, 16);
    g_assert_cmpuint(vma_get_be64(h + VMA_HDR_CTIME), ==, 1700000000);
    g_assert_cmpuint(vma_get_be32(h + VMA_HDR_BLOB_OFFSET), ==, 12288);

    /* 1 unused byte + (2 + 17) + (2 + 3) + (2 + 12), not rounded */
    blob_size = vma_get_be32(h + VMA_HDR_BLOB_SIZE);
    g_assert_cmpuint(blob_size, ==, 1 + 19 + 5 + 14);
    header_size = vma_get_be32(h + VMA_HDR_HEADER_SIZE);
    g_assert_cmpuint(header_size, ==, 12288 + 512);

    /* Blob lengths are little-endian, names carry their NUL */
    name_ptr = vma_get_be32(h + VMA_HDR_CONFIG_NAMES);
    g_assert_cmpuint(name_ptr, ==, 1);
    g_assert_cmpuint(vma_get_le16(h + 12288 + 1), ==, 17);
    g_assert_cmpstr((const char *)h + 12288 + 3, ==, "qemu-server.conf");
    name_ptr = vma_get_be32(h + VMA_HDR_DEV_INFO + 32 + VMA_DEV_NAME);
    g_assert_cmpstr((const char *)h + 12288 + name_ptr + 2, ==,
                    "drive-scsi0");
    g_assert_cmpuint(vma_get_be64(h + VMA_HDR_DEV_INFO + 32 + VMA_DEV_SIZE),
                     ==, 540672);

    vma_md5_with_hole(h, header_size, VMA_HDR_MD5, md5);
    g_assert_cmpmem(md5, 16, h + VMA_HDR_MD5, 16);

    /* One extent with the 9 zero clusters, no data */
    g_assert_cmpuint(out->len, ==, header_size + 512);
    h = out->data + header_size;
    g_assert_cmpmem(h, 4, "VMAE", 4);
    g_assert_cmpuint(vma_get_be16(h + VMA_EXT_BLOCK_COUNT), ==, 0);
    for (unsigned i = 0; i < 9; i++) {
        g_assert_cmpuint(vma_get_be64(h + VMA_EXT_BLOCKINFO + 8 * i), ==,
                         VMA_BI_MAKE(0, 1, i));
    }
    g_assert_cmpuint(vma_get_be64(h + VMA_EXT_BLOCKINFO + 8 * 9), ==, 0);
}

/* Zero blocks are dropped; mask bit i is block i; the tail is zero padded */
static void test_cluster_encoding(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    VmaWriter *w = new_writer(out);
    GError *err = NULL;
    size_t size = VMA_CLUSTER_SIZE + 4608;  /* last cluster: 1 block + 512 */
    g_autofree uint8_t *disk = g_malloc0(size);
    VmaStreamStats stats;
    const uint8_t *ext, *data;
    uint32_t header_size;

    memset(disk + 0 * 4096, 0xaa, 4096);      /* block 0 */
    disk[3 * 4096 + 17] = 0x55;               /* block 3 */
    memset(disk + 65536 + 4096, 0xcc, 512);   /* cluster 1, block 1 */
    g_assert_cmpuint(vma_writer_register_stream(w, "d", size, &err), ==, 1);
    g_assert_true(vma_writer_write_cluster(w, 1, 1, disk + 65536, 4608,
                                           &err));
    g_assert_true(vma_writer_write_cluster(w, 1, 0, disk, 65536, &err));
    g_assert_no_error(err);

    g_assert_true(vma_writer_get_stream_stats(w, 1, &stats));
    g_assert_cmpuint(stats.transferred, ==, size);
    g_assert_cmpuint(stats.zero_bytes, ==, size - 3 * 4096);
    g_assert_cmpuint(stats.clusters_done, ==, 2);
    g_assert_true(vma_writer_finish(w, &err));
    vma_writer_free(w);

    header_size = vma_get_be32(out->data + VMA_HDR_HEADER_SIZE);
    ext = out->data + header_size;
    g_assert_cmpuint(vma_get_be16(ext + VMA_EXT_BLOCK_COUNT), ==, 3);
    g_assert_cmpuint(vma_get_be64(ext + VMA_EXT_BLOCKINFO), ==,
                     VMA_BI_MAKE(1u << 1, 1, 1));
    g_assert_cmpuint(vma_get_be64(ext + VMA_EXT_BLOCKINFO + 8), ==,
                     VMA_BI_MAKE(1u << 0 | 1u << 3, 1, 0));
    data = ext + 512;
    /* cluster 1 block 1: 512 bytes then zeroes to the block end */
    g_assert_cmpuint(data[0], ==, 0xcc);
    g_assert_cmpuint(data[511], ==, 0xcc);
    g_assert_true(vma_buffer_is_zero(data + 512, 4096 - 512));
    g_assert_cmpuint(data[4096], ==, 0xaa);
    g_assert_cmpuint(data[2 * 4096 + 17], ==, 0x55);
    g_assert_cmpuint(out->len, ==, header_size + 512 + 3 * 4096);
}

/* Extents hold 58 clusters; the archive ends with one more extent */
static void test_extent_split(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    VmaWriter *w = new_writer(out);
    GError *err = NULL;
    uint32_t header_size;

    g_assert_cmpuint(vma_writer_register_stream(w, "d", 58 * 65536, &err),
                     ==, 1);
    g_assert_true(vma_writer_write_zero_clusters(w, 1, 0, 58, &err));
    g_assert_true(vma_writer_finish(w, &err));
    g_assert_no_error(err);
    vma_writer_free(w);

    header_size = vma_get_be32(out->data + VMA_HDR_HEADER_SIZE);
    g_assert_cmpuint(out->len, ==, header_size + 2 * 512);
    /* The trailing extent is empty */
    for (unsigned i = 0; i < VMA_MAX_EXTENT_CLUSTERS; i++) {
        g_assert_cmpuint(vma_get_be64(out->data + header_size + 512 +
                                      VMA_EXT_BLOCKINFO + 8 * i), ==, 0);
    }
}

/*
 * Extents packed outside the writer (vma_extent_pack) and committed
 * (vma_writer_commit_extent) read back like the writer's own, mixed with
 * them; clusters committed twice or past the end are refused.
 */
static void test_packed_extents(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    VmaWriter *w = new_writer(out);
    GError *err = NULL;
    TestDisk d;
    TestDisk *disks[2] = { NULL, &d };
    g_autofree uint8_t *extent = g_malloc(VMA_EXTENT_PACK_SIZE(58));
    VmaPackedExtent p;
    TestInput in;
    VmaReader *r;
    /* 70 clusters and a partial one; some zero blocks and zero clusters */
    uint64_t size = 70 * 65536 + 5000;

    test_disk_init(&d, "d", size, 7);
    memset(d.data + 3 * 65536 + 4096, 0, 4096);
    memset(d.data + 10 * 65536, 0, 65536);
    g_assert_cmpuint(vma_writer_register_stream(w, "d", size, &err), ==, 1);

    /* Clusters 0-57 in one packed extent, 58-63 by the writer itself */
    vma_extent_pack(vma_writer_get_uuid(w), 1, 0, d.data, 58 * 65536, extent,
                    &p);
    g_assert_cmpuint(p.clusters, ==, 58);
    g_assert_cmpuint(p.zero_bytes, ==, 4096 + 65536);
    g_assert_true(vma_writer_commit_extent(w, &p, &err));
    g_assert_no_error(err);
    g_byte_array_append(out, extent, p.len);
    for (uint64_t c = 58; c < 64; c++) {
        test_write_cluster(w, 1, &d, c);
    }
    /* The rest, with the partial last cluster, packed */
    vma_extent_pack(vma_writer_get_uuid(w), 1, 64, d.data + 64 * 65536,
                    size - 64 * 65536, extent, &p);
    g_assert_cmpuint(p.clusters, ==, 7);
    g_assert_true(vma_writer_commit_extent(w, &p, &err));
    g_byte_array_append(out, extent, p.len);
    /* Twice is refused */
    g_assert_false(vma_writer_commit_extent(w, &p, &err));
    g_assert_error(err, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);
    g_assert_true(vma_writer_finish(w, &err));
    g_assert_no_error(err);
    vma_writer_free(w);

    in = (TestInput) { .data = out->data, .len = out->len };
    r = vma_reader_new(test_input_from_memory, &in, &err);
    g_assert_no_error(err);
    g_assert_true(vma_reader_run(r, test_restore_cluster, disks, &err));
    g_assert_no_error(err);
    vma_reader_free(r);
    g_assert_cmpmem(d.restored, size, d.data, size);
    test_disk_free(&d);
}

static void test_configs_only(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    VmaWriter *w = new_writer(out);
    GError *err = NULL;

    g_assert_true(vma_writer_add_config(w, "qemu-server.conf", "", 0, &err));
    g_assert_true(vma_writer_finish(w, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(out->len, ==, 12288 + 512 + 512);
    vma_writer_free(w);
}

static void test_limits(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    VmaWriter *w = new_writer(out);
    g_autofree uint8_t *big = g_malloc0(VMA_MAX_BLOB_SIZE + 1);
    GError *err = NULL;
    char name[32];

    for (unsigned i = 0; i < VMA_MAX_CONFIGS; i++) {
        g_snprintf(name, sizeof(name), "c%u", i);
        g_assert_true(vma_writer_add_config(w, name, big,
                                            i ? 1 : VMA_MAX_BLOB_SIZE,
                                            &err));
    }
    g_assert_false(vma_writer_add_config(w, "one-more", "", 0, &err));
    g_assert_error(err, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);

    for (unsigned i = 1; i <= 254; i++) {
        g_snprintf(name, sizeof(name), "d%u", i);
        g_assert_cmpuint(vma_writer_register_stream(w, name, 512, &err), ==,
                         i);
    }
    g_assert_cmpuint(vma_writer_register_stream(w, "d255", 512, &err), ==,
                     0);
    g_assert_error(err, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);
    vma_writer_free(w);

    w = new_writer(out);
    g_assert_false(vma_writer_add_config(w, "big", big,
                                         VMA_MAX_BLOB_SIZE + 1, &err));
    g_assert_nonnull(strstr(err->message, "65535"));
    g_clear_error(&err);
    vma_writer_free(w);
}

static void test_bad_names(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    VmaWriter *w = new_writer(out);
    static const char *const bad[] = {
        "", ".", "..", "a/b", "../evil", "tab\there", "\x7f",
    };
    GError *err = NULL;

    for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_cmpuint(vma_writer_register_stream(w, bad[i], 512, &err),
                         ==, 0);
        g_assert_error(err, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT);
        g_clear_error(&err);
        g_assert_false(vma_writer_add_config(w, bad[i], "", 0, &err));
        g_clear_error(&err);
    }
    g_assert_cmpuint(vma_writer_register_stream(w, "vmstate", 512, &err), ==,
                     0);
    g_clear_error(&err);
    g_assert_cmpuint(vma_writer_register_stream(w, "ok", 512, &err), ==, 1);
    g_assert_cmpuint(vma_writer_register_stream(w, "ok", 512, &err), ==, 0);
    g_clear_error(&err);
    g_assert_cmpuint(vma_writer_register_stream(w, "empty", 0, &err), ==, 0);
    g_clear_error(&err);
    vma_writer_free(w);
}

/* Misuse after registration is refused and changes nothing */
static void test_misuse(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    VmaWriter *w = new_writer(out);
    uint8_t buf[VMA_CLUSTER_SIZE] = { 1 };
    GError *err = NULL;

    g_assert_cmpuint(vma_writer_register_stream(w, "d", 65536 + 512, &err),
                     ==, 1);
    /* wrong length, past the end, unknown stream */
    g_assert_false(vma_writer_write_cluster(w, 1, 1, buf, 4096, &err));
    g_clear_error(&err);
    g_assert_false(vma_writer_write_cluster(w, 1, 2, buf, 512, &err));
    g_clear_error(&err);
    g_assert_false(vma_writer_write_cluster(w, 2, 0, buf, 65536, &err));
    g_clear_error(&err);
    g_assert_cmpuint(out->len, ==, 0);

    g_assert_true(vma_writer_write_cluster(w, 1, 0, buf, 65536, &err));
    g_assert_no_error(err);
    /* header written: no more registration; no cluster twice */
    g_assert_cmpuint(vma_writer_register_stream(w, "e", 512, &err), ==, 0);
    g_clear_error(&err);
    g_assert_false(vma_writer_add_config(w, "c", "", 0, &err));
    g_clear_error(&err);
    g_assert_false(vma_writer_write_cluster(w, 1, 0, buf, 65536, &err));
    g_assert_nonnull(strstr(err->message, "twice"));
    g_clear_error(&err);
    /* finish refuses an incomplete archive */
    g_assert_false(vma_writer_finish(w, &err));
    g_assert_nonnull(strstr(err->message, "incomplete"));
    g_clear_error(&err);
    g_assert_true(vma_writer_write_cluster(w, 1, 1, buf, 512, &err));
    g_assert_true(vma_writer_finish(w, &err));
    g_assert_no_error(err);
    g_assert_false(vma_writer_finish(w, &err));
    g_clear_error(&err);
    vma_writer_free(w);
}

static void test_vmstate_order(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    VmaWriter *w = new_writer(out);
    uint8_t buf[VMA_CLUSTER_SIZE] = { 0 };
    GError *err = NULL;
    uint8_t id = vma_writer_register_vmstate(w, 4 * 65536, &err);

    g_assert_cmpuint(id, ==, 1);
    g_assert_cmpuint(vma_writer_register_vmstate(w, 65536, &err), ==, 0);
    g_clear_error(&err);
    g_assert_false(vma_writer_write_cluster(w, id, 1, buf, 65536, &err));
    g_assert_nonnull(strstr(err->message, "order"));
    g_clear_error(&err);
    g_assert_true(vma_writer_write_cluster(w, id, 0, buf, 65536, &err));
    g_assert_true(vma_writer_write_cluster(w, id, 1, buf, 100, &err));
    /* after a short cluster the stream has ended */
    g_assert_false(vma_writer_write_cluster(w, id, 2, buf, 65536, &err));
    g_clear_error(&err);
    g_assert_false(vma_writer_write_zero_clusters(w, id, 2, 1, &err));
    g_clear_error(&err);
    /* the vmstate stream may end early: finish is fine */
    g_assert_true(vma_writer_finish(w, &err));
    g_assert_no_error(err);
    vma_writer_free(w);
}

static int failing_output(void *opaque, const void *buf, size_t len)
{
    int *calls = opaque;

    return ++*calls > 1 ? -ENOSPC : 0;
}

/* The first output error sticks; vma_writer_set_error sticks too */
static void test_sticky_errors(void)
{
    int calls = 0;
    VmaWriter *w = vma_writer_new(test_uuid, 0, failing_output, &calls);
    uint8_t buf[VMA_CLUSTER_SIZE];
    GError *err = NULL;

    memset(buf, 1, sizeof(buf));
    g_assert_cmpuint(vma_writer_register_stream(w, "d", 100 * 65536, &err),
                     ==, 1);
    /* call 1 writes the header, call 2 the first extent: it fails */
    for (unsigned c = 0; c < 57; c++) {
        g_assert_true(vma_writer_write_cluster(w, 1, c, buf, 65536, &err));
    }
    g_assert_false(vma_writer_write_cluster(w, 1, 57, buf, 65536, &err));
    g_assert_error(err, VMA_ERROR, VMA_ERROR_IO);
    g_assert_nonnull(strstr(err->message, g_strerror(ENOSPC)));
    g_clear_error(&err);
    g_assert_false(vma_writer_write_cluster(w, 1, 59, buf, 65536, &err));
    g_assert_error(err, VMA_ERROR, VMA_ERROR_IO);
    g_clear_error(&err);
    vma_writer_set_error(w, "later");
    g_assert_error(vma_writer_get_error(w), VMA_ERROR, VMA_ERROR_IO);
    vma_writer_free(w);

    w = vma_writer_new(test_uuid, 0, failing_output, &calls);
    vma_writer_set_error(w, "backup cancelled");
    g_assert_false(vma_writer_finish(w, &err));
    g_assert_error(err, VMA_ERROR, VMA_ERROR_ABORTED);
    g_assert_cmpstr(err->message, ==, "backup cancelled");
    g_clear_error(&err);
    vma_writer_free(w);
}

static void test_name_is_safe(void)
{
    g_assert_true(vma_name_is_safe("drive-scsi0"));
    g_assert_true(vma_name_is_safe("qemu-server.conf"));
    g_assert_true(vma_name_is_safe("..."));
    g_assert_false(vma_name_is_safe(NULL));
    g_assert_false(vma_name_is_safe(""));
    g_assert_false(vma_name_is_safe("."));
    g_assert_false(vma_name_is_safe(".."));
    g_assert_false(vma_name_is_safe("a/b"));
    g_assert_false(vma_name_is_safe("/abs"));
    g_assert_false(vma_name_is_safe("x\ny"));
    g_assert_false(vma_name_is_safe("\x1b[31m"));
}

static void test_uuid_unparse(void)
{
    char s[VMA_UUID_STR_SIZE];

    vma_uuid_unparse(test_uuid, s);
    g_assert_cmpstr(s, ==, "12345678-9abc-def0-0fed-cba987654321");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vma/writer/header-layout", test_header_layout);
    g_test_add_func("/vma/writer/cluster-encoding", test_cluster_encoding);
    g_test_add_func("/vma/writer/extent-split", test_extent_split);
    g_test_add_func("/vma/writer/packed-extents", test_packed_extents);
    g_test_add_func("/vma/writer/configs-only", test_configs_only);
    g_test_add_func("/vma/writer/limits", test_limits);
    g_test_add_func("/vma/writer/bad-names", test_bad_names);
    g_test_add_func("/vma/writer/misuse", test_misuse);
    g_test_add_func("/vma/writer/vmstate-order", test_vmstate_order);
    g_test_add_func("/vma/writer/sticky-errors", test_sticky_errors);
    g_test_add_func("/vma/name-is-safe", test_name_is_safe);
    g_test_add_func("/vma/uuid-unparse", test_uuid_unparse);
    return g_test_run();
}
