/*
 * vma: read-only block driver for one disk of a VMA backup archive
 *
 *   -blockdev driver=vma,node-name=N,read-only=on,file=<child>,device=<name>
 *
 * A VMA archive stores each disk as 64 KiB clusters in any order, in
 * extents of up to 59 clusters; the 512-byte header of each extent says
 * which clusters follow and which of their 4 KiB blocks are stored (the
 * others are zero).  At open, this driver reads the extent headers only,
 * seeking over the data, checks them with the format library's reader
 * (vma_reader_scan(): the same checks and messages as `vma verify`, so a
 * damaged, truncated or incomplete archive does not open) and keeps an
 * index of where the disk's clusters are.  Reads then go straight to the
 * archive, zero blocks read as zero without I/O, and block-status reports
 * zero and data ranges as the archive has them.
 *
 * Backup chains: a disk that the archive's "backup-chain" config marks
 * incremental has absent clusters, unchanged since the chain's previous
 * archive (its base).  Such a disk needs a backing node, the same disk of
 * the base opened with this driver:
 *
 *   driver=vma,file.filename=inc2.vma,backing.file.filename=inc1.vma,
 *       backing.backing.file.filename=full.vma
 *
 * (backing.driver defaults to vma and backing.device to this disk's name).
 * The backing is checked at open (archive uuid = the chain's base, same
 * disk name and size) and again before each read from it; without one the
 * disk does not open.  Absent clusters are unallocated in this layer and
 * read from the backing; stored and zero clusters are allocated here.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "block/block-io.h"
#include "qemu/bitops.h"
#include "qemu/host-utils.h"
#include "qemu/module.h"
#include "qemu/option.h"
#include "qobject/qdict.h"
#include "block/block_int.h"
#include "block/vma.h"

/*
 * log2 of the clusters per entry of the rank table: at least 2048 (a
 * multiple of BITS_PER_LONG); more for disks with few stored clusters, so
 * that the table never takes more than 3 bytes per stored cluster
 */
#define VMA_RANK_MIN_SHIFT  11

/* An index entry: where the stored blocks of a cluster are, and which */
#define VMA_LOC_MAKE(offset, mask)  ((offset) / 512 << 16 | (mask))
#define VMA_LOC_OFFSET(loc)         ((loc) >> 16 << 9)
#define VMA_LOC_MASK(loc)           ((uint16_t)(loc))
/* Archive offsets up to this fit in an entry */
#define VMA_LOC_MAX_OFFSET          (UINT64_C(1) << 57)

/*
 * Every field is set at open and never changes after it: requests only
 * read them and need no lock.
 */
typedef struct BDRVVmaState {
    char *device;           /* the disk's name in the archive */
    uint8_t dev_id;
    uint8_t uuid[VMA_UUID_SIZE];        /* the archive's */
    /*
     * An incremental disk of a backup chain: absent clusters are those of
     * the archive with uuid @base_uuid, read from bs->backing
     */
    bool incremental;
    uint8_t base_uuid[VMA_UUID_SIZE];
    uint64_t size;          /* the disk's size in bytes */
    uint64_t clusters;

    /*
     * The index: one bit per cluster, set when some block of the cluster
     * is stored (clear: the whole cluster is zero); for each set bit, in
     * cluster order, one entry VMA_LOC_MAKE(offset of the first stored
     * block, mask of stored blocks); the number of set bits before each
     * group of 2^rank_shift clusters, to find a cluster's entry.  At most
     * 11.125 bytes per stored cluster and 1 bit per zero cluster.
     */
    unsigned long *stored;
    uint64_t *loc;
    uint32_t *rank;
    unsigned rank_shift;
    uint64_t stored_clusters;
    /* Incremental disks: one bit per cluster, set when it is present */
    unsigned long *present;
} BDRVVmaState;

static BlockDriver bdrv_vma;

static QemuOptsList runtime_opts = {
    .name = "vma",
    .head = QTAILQ_HEAD_INITIALIZER(runtime_opts.head),
    .desc = {
        {
            .name = "device",
            .type = QEMU_OPT_STRING,
            .help = "Name of the disk in the archive",
        },
        {
            .name = "dev-id",
            .type = QEMU_OPT_NUMBER,
            .help = "Number of the disk in the archive (1-255)",
        },
        { /* end of list */ }
    },
};

static const char *const vma_strong_runtime_opts[] = {
    "device",
    "dev-id",
    NULL
};

/* ------------------------------------------------------------------------ */
/* Open: reading the archive's headers                                      */
/* ------------------------------------------------------------------------ */

/* Extent headers of small extents are read this many bytes at a time */
#define VMA_READAHEAD_SIZE  (64 * 1024)

/* Reads from the archive at open (main loop, graph read lock held) */
typedef struct VmaOpenInput {
    BdrvChild *file;
    uint64_t size;          /* of the archive */
    uint64_t pos;           /* of the sequential header read */
    uint8_t *buf;           /* VMA_READAHEAD_SIZE bytes of the archive */
    uint64_t buf_offset;
    size_t buf_len;
    uint64_t last_offset;   /* of the previous extent header */
} VmaOpenInput;

static ssize_t GRAPH_RDLOCK
vma_open_read(VmaOpenInput *in, void *buf, size_t len, uint64_t offset)
{
    int ret;

    len = MIN(len, in->size - MIN(offset, in->size));
    if (!len) {
        return 0;
    }
    ret = bdrv_pread(in->file, offset, len, buf, 0);
    return ret < 0 ? ret : len;
}

/* VmaInputFunc for the main header */
static ssize_t GRAPH_RDLOCK vma_open_input(void *opaque, void *buf,
                                           size_t len)
{
    VmaOpenInput *in = opaque;
    ssize_t n = vma_open_read(in, buf, len, in->pos);

    if (n > 0) {
        in->pos += n;
    }
    return n;
}

/*
 * VmaPreadFunc for the extent headers.  Those of a dense disk are about
 * 3.7 MiB apart and read 512 bytes each; where they follow one another
 * closely (zero clusters, sparse data), 64 KiB at a time.
 */
static ssize_t GRAPH_RDLOCK vma_open_pread(void *opaque, void *buf,
                                           size_t len, uint64_t offset)
{
    VmaOpenInput *in = opaque;
    bool close_by = offset - in->last_offset < VMA_READAHEAD_SIZE;
    ssize_t n;

    in->last_offset = offset;
    if (offset < in->buf_offset ||
        offset + len > in->buf_offset + in->buf_len) {
        if (!close_by || len > VMA_READAHEAD_SIZE) {
            return vma_open_read(in, buf, len, offset);
        }
        n = vma_open_read(in, in->buf, VMA_READAHEAD_SIZE, offset);
        if (n < 0) {
            return n;
        }
        in->buf_offset = offset;
        in->buf_len = n;
    }
    n = MIN(len, in->buf_offset + in->buf_len - offset);
    memcpy(buf, in->buf + (offset - in->buf_offset), n);
    return n;
}

/* Refuse compressed archives with a message that says what to do */
static int GRAPH_RDLOCK vma_check_compressed(VmaOpenInput *in, Error **errp)
{
    static const struct {
        const char *name;
        const char *magic;
        size_t len;
        const char *decompress;
    } formats[] = {
        { "zstd", "\x28\xb5\x2f\xfd", 4, "zstd -d" },
        { "gzip", "\x1f\x8b", 2, "gunzip" },
        { "lzop", "\x89LZO\0\r\n\x1a\n", 9, "lzop -d" },
    };
    uint8_t magic[9];
    ssize_t n = vma_open_read(in, magic, sizeof(magic), 0);

    if (n < 0) {
        error_setg_errno(errp, -n, "Could not read the archive");
        return n;
    }
    for (size_t i = 0; i < ARRAY_SIZE(formats); i++) {
        if (n >= formats[i].len &&
            !memcmp(magic, formats[i].magic, formats[i].len)) {
            error_setg(errp, "The archive is %s compressed: a compressed "
                       "archive cannot be read at random", formats[i].name);
            error_append_hint(errp, "Decompress it first (%s) and open "
                              "the .vma file, or restore it with "
                              "'vma extract'.\n", formats[i].decompress);
            return -ENOTSUP;
        }
    }
    return 0;
}

/* Which disk of the archive: device=<name> or dev-id=<n>, or the only one */
static const VmaDeviceInfo *vma_choose_device(VmaReader *r, QemuOpts *opts,
                                              Error **errp)
{
    const char *name = qemu_opt_get(opts, "device");
    bool has_id = qemu_opt_get(opts, "dev-id") != NULL;
    uint64_t id = qemu_opt_get_number(opts, "dev-id", 0);
    const VmaDeviceInfo *dev = NULL;
    g_autoptr(GString) names = g_string_new("");
    unsigned disks = 0;

    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *d = vma_reader_get_device(r, i);

        if ((name && !strcmp(d->name, name)) || (has_id && d->dev_id == id)) {
            if (dev && dev != d) {
                error_setg(errp, "device '%s' and dev-id %" PRIu64 " name "
                           "different disks", name, id);
                return NULL;
            }
            dev = d;
        }
        if (!d->is_vmstate) {
            g_string_append_printf(names, "%s%s (dev-id %u)",
                                   disks ? ", " : "", d->name, d->dev_id);
            disks++;
            if (!name && !has_id && disks == 1) {
                dev = d;
            }
        }
    }
    if (!name && !has_id && disks != 1) {
        if (disks) {
            error_setg(errp, "The archive holds %u disks: choose one with "
                       "device=<name> or dev-id=<n>", disks);
            error_append_hint(errp, "Disks: %s\n", names->str);
        } else {
            error_setg(errp, "The archive holds no disk");
        }
        return NULL;
    }
    if (!dev) {
        if (name) {
            error_setg(errp, "The archive has no disk named '%s'", name);
        } else {
            error_setg(errp, "The archive has no disk with dev-id %" PRIu64,
                       id);
        }
        if (disks) {
            error_append_hint(errp, "Disks: %s\n", names->str);
        }
        return NULL;
    }
    if (dev->is_vmstate) {
        error_setg(errp, "'%s' is the VM's RAM state, not a disk", dev->name);
        return NULL;
    }
    return dev;
}

/* The index being built by vma_reader_scan() */
typedef struct VmaIndexBuild {
    BDRVVmaState *s;
    GArray *clusters;       /* uint32_t: stored clusters in archive order */
    GArray *locs;           /* uint64_t: their entries */
    bool in_order;          /* clusters came in ascending order */
} VmaIndexBuild;

/* VmaClusterLocFunc: note where the disk's stored clusters are */
static bool vma_index_cluster(void *opaque, const VmaDeviceInfo *dev,
                              uint64_t cluster_num, uint16_t mask,
                              uint64_t data_offset, GError **errp)
{
    VmaIndexBuild *b = opaque;
    uint32_t c = cluster_num;
    uint64_t loc;

    if (dev->dev_id != b->s->dev_id) {
        return true;
    }
    if (b->s->present) {
        set_bit(c, b->s->present);
    }
    if (!mask) {
        return true;
    }
    if (data_offset >= VMA_LOC_MAX_OFFSET) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "archive offset %"
                    PRIu64 ": archive too large to index", data_offset);
        return false;
    }
    if (b->clusters->len &&
        c < g_array_index(b->clusters, uint32_t, b->clusters->len - 1)) {
        b->in_order = false;
    }
    loc = VMA_LOC_MAKE(data_offset, mask);
    g_array_append_val(b->clusters, c);
    g_array_append_val(b->locs, loc);
    set_bit(c, b->s->stored);
    return true;
}

/* Position of @cluster's entry in s->loc; @cluster must be stored */
static uint64_t vma_loc_index(BDRVVmaState *s, uint64_t cluster)
{
    uint64_t word = cluster / BITS_PER_LONG;
    uint64_t group = cluster >> s->rank_shift;
    uint64_t idx = s->rank[group];

    for (uint64_t w = (group << s->rank_shift) / BITS_PER_LONG; w < word;
         w++) {
        idx += ctpopl(s->stored[w]);
    }
    return idx + ctpopl(s->stored[word] &
                        ((1UL << (cluster % BITS_PER_LONG)) - 1));
}

/* Turn what the scan collected into the index */
static void vma_index_finish(VmaIndexBuild *b)
{
    BDRVVmaState *s = b->s;
    uint64_t words = BITS_TO_LONGS(s->clusters);
    uint64_t count = b->locs->len;
    uint64_t words_per_group;

    s->stored_clusters = count;
    s->rank_shift = VMA_RANK_MIN_SHIFT;
    while (s->rank_shift < 32 &&
           4 * DIV_ROUND_UP(s->clusters, 1ULL << s->rank_shift) > 3 * count) {
        s->rank_shift++;
    }
    words_per_group = (1ULL << s->rank_shift) / BITS_PER_LONG;
    s->rank = g_new(uint32_t, DIV_ROUND_UP(s->clusters,
                                           1ULL << s->rank_shift));
    count = 0;
    for (uint64_t w = 0; w < words; w++) {
        if (w % words_per_group == 0) {
            s->rank[w / words_per_group] = count;
        }
        count += ctpopl(s->stored[w]);
    }
    assert(count == s->stored_clusters);

    if (b->in_order) {
        /* The array's spare capacity goes back */
        s->loc = g_realloc(g_array_free(b->locs, false),
                           count * sizeof(uint64_t));
    } else {
        s->loc = g_new(uint64_t, count);
        for (guint i = 0; i < b->locs->len; i++) {
            uint32_t c = g_array_index(b->clusters, uint32_t, i);

            s->loc[vma_loc_index(s, c)] = g_array_index(b->locs, uint64_t, i);
        }
        g_array_free(b->locs, true);
    }
    b->locs = NULL;
    g_array_free(b->clusters, true);
    b->clusters = NULL;
}

/* Read the archive's headers and build the index of the chosen disk */
static int GRAPH_RDLOCK vma_build_index(BlockDriverState *bs, QemuOpts *opts,
                                        Error **errp)
{
    BDRVVmaState *s = bs->opaque;
    g_autoptr(GError) gerr = NULL;
    g_autofree uint8_t *buf = g_malloc(VMA_READAHEAD_SIZE);
    VmaOpenInput in = { .file = bs->file, .buf = buf };
    VmaIndexBuild b = { .s = s, .in_order = true };
    VmaChainInfo *chain = NULL;
    const VmaDeviceInfo *dev;
    VmaReader *r;
    int64_t size;
    int ret;

    size = bdrv_getlength(bs->file->bs);
    if (size < 0) {
        error_setg_errno(errp, -size, "Could not get the archive's size");
        return size;
    }
    in.size = size;
    ret = vma_check_compressed(&in, errp);
    if (ret < 0) {
        return ret;
    }
    r = vma_reader_new(vma_open_input, &in, &gerr);
    if (!r) {
        error_setg(errp, "%s", gerr->message);
        return -EINVAL;
    }
    dev = vma_choose_device(r, opts, errp);
    if (!dev) {
        vma_reader_free(r);
        return -EINVAL;
    }
    if (!vma_chain_from_reader(r, true, &chain, &gerr)) {
        error_setg(errp, "%s", gerr->message);
        vma_reader_free(r);
        return -EINVAL;
    }
    vma_reader_get_uuid(r, s->uuid);
    s->device = g_strdup(dev->name);
    s->dev_id = dev->dev_id;
    s->size = dev->size;
    s->clusters = DIV_ROUND_UP(dev->size, VMA_CLUSTER_SIZE);
    s->stored = bitmap_new(s->clusters);
    if (chain) {
        const VmaChainDisk *cd = vma_chain_find_disk(chain, dev->name);

        if (cd && cd->incremental) {
            s->incremental = true;
            memcpy(s->base_uuid, vma_chain_get_base(chain), VMA_UUID_SIZE);
            s->present = bitmap_new(s->clusters);
        }
        vma_chain_free(chain);
    }
    b.clusters = g_array_new(false, false, sizeof(uint32_t));
    b.locs = g_array_new(false, false, sizeof(uint64_t));

    if (!vma_reader_scan(r, vma_open_pread, &in, in.size, vma_index_cluster,
                         &b, &gerr)) {
        error_setg(errp, "%s", gerr->message);
        g_array_free(b.clusters, true);
        g_array_free(b.locs, true);
        vma_reader_free(r);
        return gerr->code == VMA_ERROR_IO ? -EIO : -EINVAL;
    }
    vma_reader_free(r);
    vma_index_finish(&b);
    return 0;
}

static void vma_close(BlockDriverState *bs)
{
    BDRVVmaState *s = bs->opaque;

    g_free(s->device);
    g_free(s->stored);
    g_free(s->loc);
    g_free(s->rank);
    g_free(s->present);
}

/* Does @options give a backing (backing=<node> or backing.<option>=...)? */
static bool vma_backing_given(QDict *options)
{
    for (const QDictEntry *e = qdict_first(options); e;
         e = qdict_next(options, e)) {
        if (!strcmp(e->key, "backing") ||
            g_str_has_prefix(e->key, "backing.")) {
            return true;
        }
    }
    return false;
}

/*
 * Is bs->backing the same disk of this archive's base, opened with this
 * driver (filters above it are fine)?
 */
static bool GRAPH_RDLOCK vma_check_backing(BlockDriverState *bs, Error **errp)
{
    BDRVVmaState *s = bs->opaque;
    BlockDriverState *base = bs->backing ?
                             bdrv_skip_filters(bs->backing->bs) : NULL;
    char self[VMA_UUID_STR_SIZE], want[VMA_UUID_STR_SIZE];
    char got[VMA_UUID_STR_SIZE];
    BDRVVmaState *b;

    vma_uuid_unparse(s->uuid, self);
    vma_uuid_unparse(s->base_uuid, want);
    if (!base || base->drv != &bdrv_vma) {
        error_setg(errp, "Disk '%s' of archive %s is incremental: its "
                   "backing must be disk '%s' of its base archive %s, "
                   "opened with the vma driver, not a %s node", s->device,
                   self, s->device, want,
                   base ? base->drv->format_name : "missing");
        return false;
    }
    b = base->opaque;
    vma_uuid_unparse(b->uuid, got);
    if (memcmp(b->uuid, s->base_uuid, VMA_UUID_SIZE)) {
        error_setg(errp, "Disk '%s' of archive %s: the backing is archive "
                   "%s, but this archive's base is archive %s", s->device,
                   self, got, want);
        return false;
    }
    if (strcmp(b->device, s->device) || b->size != s->size) {
        error_setg(errp, "Disk '%s' of archive %s (%" PRIu64 " bytes): the "
                   "backing is disk '%s' (%" PRIu64 " bytes) of its base "
                   "archive %s, not the same disk at the same size",
                   s->device, self, s->size, b->device, b->size, want);
        return false;
    }
    return true;
}

/*
 * Open the backing of an incremental disk (before the block layer would,
 * so that a wrong one fails the open); refuse one for a complete disk
 */
static int vma_open_backing(BlockDriverState *bs, QDict *options,
                            Error **errp)
{
    /* The block layer hides BDRV_O_NO_BACKING from @flags of bdrv_open */
    int flags = bs->open_flags;
    BDRVVmaState *s = bs->opaque;
    char self[VMA_UUID_STR_SIZE], want[VMA_UUID_STR_SIZE];
    bool ok;
    int ret;

    vma_uuid_unparse(s->uuid, self);
    vma_uuid_unparse(s->base_uuid, want);
    if (!s->incremental) {
        if (vma_backing_given(options)) {
            error_setg(errp, "Disk '%s' of archive %s is complete in it: it "
                       "takes no backing", s->device, self);
            return -EINVAL;
        }
        return 0;
    }
    if (flags & BDRV_O_NO_BACKING) {
        if (flags & BDRV_O_NO_IO) {
            /* Metadata only (qemu-img info): absent clusters fail reads */
            return 0;
        }
        error_setg(errp, "Disk '%s' of archive %s is incremental: it cannot "
                   "be opened without its base (archive %s) as backing",
                   s->device, self, want);
        return -EINVAL;
    }
    if (!vma_backing_given(options)) {
        error_setg(errp, "Disk '%s' of archive %s is incremental: open it "
                   "with the same disk of its base archive %s as backing",
                   s->device, self, want);
        error_append_hint(errp, "Name the base archive with "
                          "backing.file.filename=<file> (its base, if it "
                          "is incremental too, with "
                          "backing.backing.file.filename=..., and so on), "
                          "or give backing=<vma node>.\n");
        return -EINVAL;
    }
    if (!qdict_haskey(options, "backing")) {
        const char *driver = qdict_get_try_str(options, "backing.driver");

        if (!driver) {
            qdict_put_str(options, "backing.driver", "vma");
        }
        if ((!driver || !strcmp(driver, "vma")) &&
            !qdict_haskey(options, "backing.device") &&
            !qdict_haskey(options, "backing.dev-id")) {
            qdict_put_str(options, "backing.device", s->device);
        }
    }
    ret = bdrv_open_backing_file(bs, options, "backing", errp);
    if (ret < 0) {
        return ret;
    }
    bdrv_graph_rdlock_main_loop();
    ok = vma_check_backing(bs, errp);
    bdrv_graph_rdunlock_main_loop();
    if (!ok) {
        bdrv_graph_wrlock();
        bdrv_unref_child(bs, bs->backing);
        bdrv_graph_wrunlock();
        return -EINVAL;
    }
    return 0;
}

static int vma_open(BlockDriverState *bs, QDict *options, int flags,
                    Error **errp)
{
    BDRVVmaState *s = bs->opaque;
    QemuOpts *opts;
    int ret;

    GLOBAL_STATE_CODE();

    bdrv_graph_rdlock_main_loop();
    ret = bdrv_apply_auto_read_only(bs, "VMA archives are read-only: open "
                                    "them with read-only=on", errp);
    bdrv_graph_rdunlock_main_loop();
    if (ret < 0) {
        return ret;
    }

    ret = bdrv_open_file_child(NULL, options, "file", bs, errp);
    if (ret < 0) {
        return ret;
    }

    opts = qemu_opts_create(&runtime_opts, NULL, 0, &error_abort);
    if (!qemu_opts_absorb_qdict(opts, options, errp)) {
        ret = -EINVAL;
        goto out;
    }
    if (qemu_opt_get(opts, "dev-id") &&
        (qemu_opt_get_number(opts, "dev-id", 0) < 1 ||
         qemu_opt_get_number(opts, "dev-id", 0) > 255)) {
        error_setg(errp, "dev-id must be between 1 and 255");
        ret = -EINVAL;
        goto out;
    }

    bdrv_graph_rdlock_main_loop();
    ret = vma_build_index(bs, opts, errp);
    bdrv_graph_rdunlock_main_loop();
    if (ret < 0) {
        goto out;
    }
    bs->total_sectors = DIV_ROUND_UP(s->size, BDRV_SECTOR_SIZE);
    ret = vma_open_backing(bs, options, errp);

out:
    qemu_opts_del(opts);
    if (ret < 0) {
        vma_close(bs);
    }
    return ret;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum VmaExtentKind {
    VMA_ZERO,       /* zero in this archive */
    VMA_STORED,     /* stored in this archive */
    VMA_ABSENT,     /* incremental disk: the base's */
} VmaExtentKind;

/*
 * Where the disk's bytes from @offset on are: *@pnum (at most @bytes, > 0)
 * bytes that are either zero, absent (those of the base) or stored one
 * after another in the archive from *@archive_offset on.
 */
static VmaExtentKind vma_map(BDRVVmaState *s, uint64_t offset, uint64_t bytes,
                             uint64_t *pnum, uint64_t *archive_offset)
{
    uint64_t cluster = offset / VMA_CLUSTER_SIZE;
    uint64_t end, next_offset, idx, loc;
    unsigned block, last;
    uint16_t mask;

    if (offset >= s->size) {
        /* The rest of the last sector */
        *pnum = bytes;
        return VMA_ZERO;
    }
    if (s->present && !test_bit(cluster, s->present)) {
        uint64_t next = find_next_bit(s->present, s->clusters, cluster);

        *pnum = next < s->clusters ?
                MIN(bytes, next * VMA_CLUSTER_SIZE - offset) : bytes;
        return VMA_ABSENT;
    }
    if (!test_bit(cluster, s->stored)) {
        uint64_t next = find_next_bit(s->stored, s->clusters, cluster);

        if (s->present) {
            next = MIN(next, find_next_zero_bit(s->present, s->clusters,
                                                cluster));
        }
        *pnum = next < s->clusters ?
                MIN(bytes, next * VMA_CLUSTER_SIZE - offset) : bytes;
        return VMA_ZERO;
    }

    idx = vma_loc_index(s, cluster);
    loc = s->loc[idx];
    mask = VMA_LOC_MASK(loc);
    block = offset % VMA_CLUSTER_SIZE / VMA_BLOCK_SIZE;
    for (last = block; last + 1 < VMA_BLOCKS_PER_CLUSTER &&
         !(mask & (1u << (last + 1))) == !(mask & (1u << block)); last++) {
        /* the run of blocks like @block */
    }
    end = cluster * VMA_CLUSTER_SIZE + (last + 1) * VMA_BLOCK_SIZE;
    if (!(mask & (1u << block))) {
        *pnum = MIN(bytes, end - offset);
        return VMA_ZERO;
    }

    *archive_offset = VMA_LOC_OFFSET(loc) +
                      ctpop32(mask & ((1u << block) - 1)) * VMA_BLOCK_SIZE +
                      offset % VMA_BLOCK_SIZE;
    next_offset = VMA_LOC_OFFSET(loc) + ctpop32(mask) * VMA_BLOCK_SIZE;
    /* Fully stored clusters that follow in the archive extend the run */
    while (mask == 0xffff && end < offset + bytes && end < s->size &&
           test_bit(++cluster, s->stored)) {
        loc = s->loc[++idx];
        mask = VMA_LOC_MASK(loc);
        if (!(mask & 1) || VMA_LOC_OFFSET(loc) != next_offset) {
            break;
        }
        for (last = 0; last + 1 < VMA_BLOCKS_PER_CLUSTER &&
             (mask & (1u << (last + 1))); last++) {
            /* the run of stored blocks */
        }
        end = cluster * VMA_CLUSTER_SIZE + (last + 1) * VMA_BLOCK_SIZE;
        next_offset = VMA_LOC_OFFSET(loc) + ctpop32(mask) * VMA_BLOCK_SIZE;
    }
    /* Stored blocks past the disk's end read as zero */
    *pnum = MIN(MIN(bytes, end - offset), s->size - offset);
    return VMA_STORED;
}

static int coroutine_fn GRAPH_RDLOCK
vma_co_preadv_part(BlockDriverState *bs, int64_t offset, int64_t bytes,
                   QEMUIOVector *qiov, size_t qiov_offset,
                   BdrvRequestFlags flags)
{
    BDRVVmaState *s = bs->opaque;

    while (bytes > 0) {
        uint64_t n, at;     /* where @from has the bytes */
        BdrvChild *from = NULL;

        switch (vma_map(s, offset, bytes, &n, &at)) {
        case VMA_STORED:
            BLKDBG_CO_EVENT(bs->file, BLKDBG_READ_AIO);
            from = bs->file;
            break;
        case VMA_ABSENT:
            /* Never zeroes for what only the base has */
            if (!vma_check_backing(bs, NULL)) {
                return -EIO;
            }
            BLKDBG_CO_EVENT(bs->backing, BLKDBG_READ_BACKING_AIO);
            from = bs->backing;
            at = offset;
            break;
        default:
            qemu_iovec_memset(qiov, qiov_offset, 0, n);
            break;
        }
        if (from) {
            int ret = bdrv_co_preadv_part(from, at, n, qiov,
                                          qiov_offset, 0);

            if (ret < 0) {
                return ret;
            }
        }
        offset += n;
        bytes -= n;
        qiov_offset += n;
    }
    return 0;
}

static int coroutine_fn GRAPH_RDLOCK
vma_co_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                    int64_t bytes, int64_t *pnum, int64_t *map,
                    BlockDriverState **file)
{
    BDRVVmaState *s = bs->opaque;
    uint64_t n, archive_offset;
    VmaExtentKind kind = vma_map(s, offset, bytes, &n, &archive_offset);

    *pnum = n;
    if (kind == VMA_ABSENT) {
        /* Unallocated here: the block layer asks the backing */
        return 0;
    }
    if (kind == VMA_ZERO) {
        return BDRV_BLOCK_ZERO;
    }
    *map = archive_offset;
    *file = bs->file->bs;
    return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
}

static int coroutine_fn GRAPH_RDLOCK
vma_co_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    bdi->cluster_size = VMA_CLUSTER_SIZE;
    return 0;
}

static BlockDriver bdrv_vma = {
    .format_name            = "vma",
    .instance_size          = sizeof(BDRVVmaState),
    .is_format              = true,
    .supports_backing       = true,

    .bdrv_open              = vma_open,
    .bdrv_close             = vma_close,
    .bdrv_child_perm        = bdrv_default_perms,

    .bdrv_co_preadv_part    = vma_co_preadv_part,
    .bdrv_co_block_status   = vma_co_block_status,
    .bdrv_co_get_info       = vma_co_get_info,

    .strong_runtime_opts    = vma_strong_runtime_opts,
};

static void bdrv_vma_init(void)
{
    bdrv_register(&bdrv_vma);
}

block_init(bdrv_vma_init);
