/*
 * Unit tests of the backup-chain blob (block/vma-chain.c) and of
 * incremental archives: the writer leaving clusters out, the strict reader
 * refusing them, a reader told about the chain accepting them.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "vma-test-util.h"

#define U0 "00000000-0000-4000-8000-000000000000"
#define U1 "11111111-1111-4111-8111-111111111111"
#define U2 "22222222-2222-4222-8222-222222222222"
#define U3 "33333333-3333-4333-8333-333333333333"

static VmaChainInfo *parse_ok(const char *text)
{
    GError *err = NULL;
    VmaChainInfo *c = vma_chain_parse(text, strlen(text), &err);

    g_assert_no_error(err);
    g_assert_nonnull(c);
    return c;
}

static void parse_bad(const char *text, const char *what)
{
    GError *err = NULL;
    VmaChainInfo *c = vma_chain_parse(text, strlen(text), &err);

    g_assert_null(c);
    g_assert_error(err, VMA_ERROR, VMA_ERROR_FORMAT);
    if (!strstr(err->message, what)) {
        g_error("'%s' does not say '%s'", err->message, what);
    }
    g_error_free(err);
}

static void test_uuid_parse(void)
{
    uint8_t u[VMA_UUID_SIZE];
    char s[VMA_UUID_STR_SIZE];

    g_assert_true(vma_uuid_parse("0123abcd-EF01-4567-89ab-cdef01234567", u));
    vma_uuid_unparse(u, s);
    g_assert_cmpstr(s, ==, "0123abcd-ef01-4567-89ab-cdef01234567");
    g_assert_false(vma_uuid_parse("0123abcd-ef01-4567-89ab-cdef0123456", u));
    g_assert_false(vma_uuid_parse("0123abcd-ef01-4567-89ab-cdef012345678",
                                  u));
    g_assert_false(vma_uuid_parse("0123abcdxef01-4567-89ab-cdef01234567", u));
    g_assert_false(vma_uuid_parse("0123abcd-ef01-4567-89ab-cdef0123456g", u));
    g_assert_false(vma_uuid_parse("", u));
}

static void test_parse_full(void)
{
    VmaChainInfo *c = parse_ok("# a full archive\nformat=1\nuuid=" U0 "\n"
                               "depth=0\n\nfuture-key=whatever\n"
                               "disk.drive-scsi0=full:new\n"
                               "disk.drive-scsi1=full\n");
    const VmaChainDisk *d;

    g_assert_cmpuint(c->depth, ==, 0);
    g_assert_null(vma_chain_get_base(c));
    g_assert_cmpuint(c->disks->len, ==, 2);
    d = vma_chain_find_disk(c, "drive-scsi0");
    g_assert_false(d->incremental);
    g_assert_cmpstr(d->reason, ==, "new");
    d = vma_chain_find_disk(c, "drive-scsi1");
    g_assert_null(d->reason);
    g_assert_null(vma_chain_find_disk(c, "drive-scsi2"));
    vma_chain_free(c);
}

static void test_parse_incremental(void)
{
    VmaChainInfo *c = parse_ok("format=1\nuuid=" U2 "\ndepth=2\nbase=" U1
                               "\nchain=" U0 "," U1 "\n"
                               "disk.a=incremental:used\n"
                               "disk.b=full:missing-recreated\n");
    uint8_t u[VMA_UUID_SIZE];

    g_assert_cmpuint(c->depth, ==, 2);
    vma_uuid_parse(U1, u);
    g_assert_cmpmem(vma_chain_get_base(c), 16, u, 16);
    vma_uuid_parse(U0, u);
    g_assert_cmpmem(c->chain[0], 16, u, 16);
    g_assert_true(vma_chain_find_disk(c, "a")->incremental);
    g_assert_false(vma_chain_find_disk(c, "b")->incremental);
    vma_chain_free(c);
}

static void test_format_round_trip(void)
{
    uint8_t uuid[VMA_UUID_SIZE], chain[3][VMA_UUID_SIZE];
    VmaChainInfo *c, *back;
    g_autofree char *text = NULL, *text2 = NULL;
    size_t len;

    vma_uuid_parse(U3, uuid);
    vma_uuid_parse(U0, chain[0]);
    vma_uuid_parse(U1, chain[1]);
    vma_uuid_parse(U2, chain[2]);
    c = vma_chain_new(uuid, 3, (const uint8_t (*)[VMA_UUID_SIZE])chain);
    vma_chain_add_disk(c, "drive-scsi0", true, "used");
    vma_chain_add_disk(c, "drive-scsi1", false, "invalid");
    vma_chain_add_disk(c, "drive-scsi2", false, NULL);
    text = vma_chain_format(c, &len);
    g_assert_cmpstr(text, ==, "format=1\nuuid=" U3 "\ndepth=3\nbase=" U2
                    "\nchain=" U0 "," U1 "," U2 "\n"
                    "disk.drive-scsi0=incremental:used\n"
                    "disk.drive-scsi1=full:invalid\n"
                    "disk.drive-scsi2=full\n");
    g_assert_cmpuint(len, ==, strlen(text));
    back = parse_ok(text);
    text2 = vma_chain_format(back, NULL);
    g_assert_cmpstr(text, ==, text2);
    vma_chain_free(c);
    vma_chain_free(back);
}

static void test_parse_strict(void)
{
    parse_bad("uuid=" U0 "\ndepth=0\n", "'format' is missing");
    parse_bad("format=2\nuuid=" U0 "\ndepth=0\n", "unsupported format");
    parse_bad("format=1\ndepth=0\n", "'uuid' is missing");
    parse_bad("format=1\nuuid=" U0 "\n", "'depth' is missing");
    parse_bad("format=1\nuuid=nope\ndepth=0\n", "not a uuid");
    parse_bad("format=1\nuuid=" U0 "\nuuid=" U0 "\ndepth=0\n", "twice");
    parse_bad("format=1\nuuid=" U0 "\ndepth=-1\n", "bad depth");
    parse_bad("format=1\nuuid=" U0 "\ndepth=01\n", "bad depth");
    parse_bad("format=1\nuuid=" U0 "\ndepth=1x\n", "bad depth");
    parse_bad("format=1\nuuid=" U0 "\ndepth=99999999999999999999\n",
              "bad depth");
    parse_bad("format=1\nuuid=" U0 "\ndepth=0\nbase=" U1 "\n",
              "neither base nor chain");
    parse_bad("format=1\nuuid=" U0 "\ndepth=0\ndisk.a=incremental\n",
              "incremental in a full archive");
    parse_bad("format=1\nuuid=" U2 "\ndepth=1\nchain=" U1 "\n",
              "needs base and chain");
    parse_bad("format=1\nuuid=" U2 "\ndepth=2\nbase=" U1 "\nchain=" U1 "\n",
              "depth 2, but the chain has 1");
    parse_bad("format=1\nuuid=" U2 "\ndepth=2\nbase=" U0 "\nchain=" U0 ","
              U1 "\n", "base is not the last");
    parse_bad("format=1\nuuid=" U1 "\ndepth=2\nbase=" U1 "\nchain=" U0 ","
              U1 "\n", "own uuid");
    parse_bad("format=1\nuuid=" U2 "\ndepth=2\nbase=" U1 "\nchain=" U1 ","
              U1 "\n", "also uuid");
    parse_bad("format=1\nuuid=" U2 "\ndepth=1\nbase=" U1 "\nchain=" U1 ",\n",
              "not a uuid");
    parse_bad("format=1\nuuid=" U0 "\ndepth=0\ndisk.a=partial\n",
              "neither 'full'");
    parse_bad("format=1\nuuid=" U0 "\ndepth=0\ndisk.a=full:because\n",
              "unknown reason");
    parse_bad("format=1\nuuid=" U0 "\ndepth=0\ndisk.a=full\ndisk.a=full\n",
              "given twice");
    parse_bad("format=1\nuuid=" U0 "\ndepth=0\ndisk.../x=full\n",
              "bad disk name");
    parse_bad("format=1\nuuid=" U0 "\ndepth=0\ndisk.vmstate=full\n",
              "bad disk name");
    parse_bad("format=1\nuuid=" U0 "\ndepth=0\nno equals sign\n",
              "key=value");
    parse_bad("format=1\r\nuuid=" U0 "\ndepth=0\n", "unsupported format");
    parse_bad("format=1\nuuid=" U0 "\ndepth=0\n\xff\n", "UTF-8");
    {
        static const char nul[] = "format=1\0";
        GError *err = NULL;

        g_assert_null(vma_chain_parse(nul, sizeof(nul) - 1, &err));
        g_assert_error(err, VMA_ERROR, VMA_ERROR_FORMAT);
        g_error_free(err);
    }
}

/* ------------------------------------------------------------------------ */
/* Incremental archives                                                      */

#define DISK_SIZE   (10 * VMA_CLUSTER_SIZE + 1000)

static const uint8_t inc_uuid[VMA_UUID_SIZE] = { 0x22, 0x22, 0x22, 0x22 };

/* An archive of disk "a" (incremental: clusters 1, 4, 10 only) and "b"
 * (full, complete), with its chain blob at depth 1 */
static GByteArray *build_incremental(bool mark_incremental, bool with_blob,
                                     GError **errp)
{
    GByteArray *out = g_byte_array_new();
    VmaWriter *w = vma_writer_new(inc_uuid, 1700000000, test_output_to_array,
                                  out);
    uint8_t base[1][VMA_UUID_SIZE] = { { 0x11 } };
    g_autofree uint8_t *buf = g_malloc(VMA_CLUSTER_SIZE);
    VmaChainInfo *c = vma_chain_new(inc_uuid, 1,
                                    (const uint8_t (*)[VMA_UUID_SIZE])base);
    g_autofree char *text = NULL;
    size_t len;
    uint8_t a, b;
    bool ok;

    vma_chain_add_disk(c, "a", true, "used");
    vma_chain_add_disk(c, "b", false, "new");
    text = vma_chain_format(c, &len);
    vma_chain_free(c);
    if (with_blob) {
        g_assert_true(vma_writer_add_config(w, VMA_CHAIN_CONFIG_NAME, text,
                                            len, NULL));
    }
    a = vma_writer_register_stream(w, "a", DISK_SIZE, NULL);
    b = vma_writer_register_stream(w, "b", DISK_SIZE, NULL);
    g_assert_true(a && b);
    if (mark_incremental) {
        g_assert_true(vma_writer_set_incremental(w, a, NULL));
    }
    for (uint64_t i = 0; i <= 10; i++) {
        size_t clen = i == 10 ? 1000 : VMA_CLUSTER_SIZE;

        memset(buf, 0x40 + i, clen);
        if (i == 1 || i == 4 || i == 10) {
            g_assert_true(vma_writer_write_cluster(w, a, i, buf, clen, NULL));
        }
        g_assert_true(vma_writer_write_cluster(w, b, i, buf, clen, NULL));
    }
    ok = vma_writer_finish(w, errp);
    vma_writer_free(w);
    if (!ok) {
        g_byte_array_unref(out);
        return NULL;
    }
    return out;
}

static void test_writer_incremental(void)
{
    GError *err = NULL;
    GByteArray *out = build_incremental(false, true, &err);
    VmaWriter *w;
    uint8_t id;

    /* Not marked: the writer insists on every cluster, as before */
    g_assert_null(out);
    g_assert_error(err, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull(strstr(err->message, "'a' is incomplete"));
    g_clear_error(&err);
    out = build_incremental(true, true, &err);
    g_assert_no_error(err);
    g_assert_nonnull(out);
    g_byte_array_unref(out);

    /* vmstate and unknown streams cannot be incremental */
    w = vma_writer_new(inc_uuid, 0, test_output_to_array, NULL);
    id = vma_writer_register_vmstate(w, 4096, NULL);
    g_assert_false(vma_writer_set_incremental(w, id, &err));
    g_clear_error(&err);
    g_assert_false(vma_writer_set_incremental(w, 9, &err));
    g_clear_error(&err);
    vma_writer_free(w);
}

typedef struct Seen {
    unsigned a_clusters, b_clusters;
    uint64_t a_list[16];
} Seen;

static bool count_cluster(void *opaque, const VmaDeviceInfo *dev,
                          uint64_t cluster_num, uint16_t mask,
                          const uint8_t *data, size_t len, GError **errp)
{
    Seen *s = opaque;

    if (!strcmp(dev->name, "a")) {
        s->a_list[s->a_clusters++] = cluster_num;
        g_assert_cmpuint(data[0], ==, 0x40 + cluster_num);
    } else {
        s->b_clusters++;
    }
    return true;
}

static void test_reader_incremental(void)
{
    g_autoptr(GByteArray) arch = build_incremental(true, true, NULL);
    TestInput in = { arch->data, arch->len, 0, 0 };
    GError *err = NULL;
    VmaChainInfo *c;
    VmaReader *r;
    Seen seen = { 0 };

    /* A strict reader (one that knows nothing of chains) refuses it */
    r = vma_reader_new(test_input_from_memory, &in, &err);
    g_assert_no_error(err);
    g_assert_false(vma_reader_run(r, NULL, NULL, &err));
    g_assert_error(err, VMA_ERROR, VMA_ERROR_TRUNCATED);
    g_assert_nonnull(strstr(err->message, "device 'a' is missing 8 of 11"));
    g_clear_error(&err);
    vma_reader_free(r);

    /* Told by the blob, it reads the stored clusters only */
    in.pos = 0;
    r = vma_reader_new(test_input_from_memory, &in, &err);
    g_assert_true(vma_chain_from_reader(r, true, &c, &err));
    g_assert_no_error(err);
    g_assert_nonnull(c);
    g_assert_cmpuint(c->depth, ==, 1);
    g_assert_true(vma_reader_run(r, count_cluster, &seen, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(seen.a_clusters, ==, 3);
    g_assert_cmpuint(seen.a_list[0], ==, 1);
    g_assert_cmpuint(seen.a_list[2], ==, 10);
    g_assert_cmpuint(seen.b_clusters, ==, 11);
    vma_chain_free(c);
    /* Too late once read */
    g_assert_false(vma_reader_allow_absent(r, 1, &err));
    g_clear_error(&err);
    vma_reader_free(r);
}

static ssize_t pread_memory(void *opaque, void *buf, size_t len,
                            uint64_t offset)
{
    GByteArray *a = opaque;
    size_t n = offset < a->len ? MIN(len, a->len - offset) : 0;

    memcpy(buf, a->data + offset, n);
    return n;
}

static bool count_located(void *opaque, const VmaDeviceInfo *dev,
                          uint64_t cluster_num, uint16_t mask,
                          uint64_t data_offset, GError **errp)
{
    unsigned *count = opaque;

    count[!strcmp(dev->name, "a") ? 0 : 1]++;
    return true;
}

/* The random access scan (the vma block driver's) honours it too */
static void test_scan_incremental(void)
{
    g_autoptr(GByteArray) arch = build_incremental(true, true, NULL);
    TestInput in = { arch->data, arch->len, 0, 0 };
    unsigned count[2] = { 0, 0 };
    GError *err = NULL;
    VmaChainInfo *c;
    VmaReader *r;

    r = vma_reader_new(test_input_from_memory, &in, &err);
    g_assert_false(vma_reader_scan(r, pread_memory, arch, arch->len, NULL,
                                   NULL, &err));
    g_assert_error(err, VMA_ERROR, VMA_ERROR_TRUNCATED);
    g_clear_error(&err);
    vma_reader_free(r);

    in.pos = 0;
    r = vma_reader_new(test_input_from_memory, &in, &err);
    g_assert_true(vma_chain_from_reader(r, true, &c, &err));
    g_assert_true(vma_reader_scan(r, pread_memory, arch, arch->len,
                                  count_located, count, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(count[0], ==, 3);
    g_assert_cmpuint(count[1], ==, 11);
    vma_chain_free(c);
    vma_reader_free(r);
}

static void test_reader_blob_mismatch(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    VmaWriter *w = vma_writer_new(inc_uuid, 0, test_output_to_array, out);
    static const char wrong_uuid[] = "format=1\nuuid=" U0 "\ndepth=0\n";
    TestInput in = { 0 };
    GError *err = NULL;
    VmaChainInfo *c;
    VmaReader *r;

    g_assert_true(vma_writer_add_config(w, VMA_CHAIN_CONFIG_NAME, wrong_uuid,
                                        strlen(wrong_uuid), NULL));
    g_assert_true(vma_writer_register_stream(w, "a", 4096, NULL));
    g_assert_true(vma_writer_write_zero_clusters(w, 1, 0, 1, NULL));
    g_assert_true(vma_writer_finish(w, NULL));
    vma_writer_free(w);
    in.data = out->data;
    in.len = out->len;
    r = vma_reader_new(test_input_from_memory, &in, &err);
    g_assert_false(vma_chain_from_reader(r, true, &c, &err));
    g_assert_nonnull(strstr(err->message, "uuid is not the archive's"));
    g_assert_null(c);
    g_clear_error(&err);
    vma_reader_free(r);
}

static void test_reader_no_blob(void)
{
    g_autoptr(GByteArray) arch = build_incremental(true, false, NULL);
    TestInput in = { arch->data, arch->len, 0, 0 };
    GError *err = NULL;
    VmaChainInfo *c = (void *)1;
    VmaReader *r = vma_reader_new(test_input_from_memory, &in, &err);

    g_assert_true(vma_chain_from_reader(r, true, &c, &err));
    g_assert_null(c);
    /* Without a blob nothing says clusters may be absent: refused */
    g_assert_false(vma_reader_run(r, NULL, NULL, &err));
    g_assert_error(err, VMA_ERROR, VMA_ERROR_TRUNCATED);
    g_clear_error(&err);
    vma_reader_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vma/chain/uuid-parse", test_uuid_parse);
    g_test_add_func("/vma/chain/parse-full", test_parse_full);
    g_test_add_func("/vma/chain/parse-incremental", test_parse_incremental);
    g_test_add_func("/vma/chain/format-round-trip", test_format_round_trip);
    g_test_add_func("/vma/chain/parse-strict", test_parse_strict);
    g_test_add_func("/vma/chain/writer-incremental", test_writer_incremental);
    g_test_add_func("/vma/chain/reader-incremental", test_reader_incremental);
    g_test_add_func("/vma/chain/scan-incremental", test_scan_incremental);
    g_test_add_func("/vma/chain/reader-blob-mismatch",
                    test_reader_blob_mismatch);
    g_test_add_func("/vma/chain/reader-no-blob", test_reader_no_blob);
    return g_test_run();
}
