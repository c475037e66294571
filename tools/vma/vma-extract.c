/*
 * vma tool: `vma extract` and `vma verify`, the commands that read the
 * whole archive
 *
 * Both read the archive once, front to back, so it can come from a pipe.
 * verify only validates.
 *
 * Both also take a backup chain (vma-chain-in.h): a full archive and its
 * incrementals, oldest first.  Every link is checked from the headers
 * before anything is read or written; then the archives are read one after
 * another, each once.  extract writes each disk into its target from the
 * newest archive in which the disk is complete on: later archives
 * overwrite the clusters they hold (zeroes written as data, since the
 * target no longer reads as zeroes there), absent clusters keep what the
 * earlier ones wrote.  extract writes configs and the RAM state into a
 * new directory and the disks either there (disk-<devname>.raw) or, with a
 * restore map (-r), into the targets the map names: existing images of any
 * format a back end opens (QEMU's block layer in the QEMU build).
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vma-chain-in.h"
#include "vma-cmd.h"
#include "vma-ops.h"
#include "vma-progress.h"
#include "vma-report.h"
#include "vma-restore-map.h"

/*
 * A restore target may be larger than its disk by this much: storage
 * rounds sizes up (the reference tool's tolerance)
 */
#define TARGET_SIZE_SLACK   (4 * 1024 * 1024)

/* Zeroes for vmstate clusters that were not stored */
static const uint8_t zero_cluster[VMA_CLUSTER_SIZE];

/* ------------------------------------------------------------------------ */
/* vma verify                                                                */
/* ------------------------------------------------------------------------ */

typedef struct VerifyJob {
    VmaReadReport *report;
    VmaProgress *progress;
    uint64_t done;
} VerifyJob;

static bool verify_cluster(void *opaque, const VmaDeviceInfo *dev,
                           uint64_t cluster_num, uint16_t mask,
                           const uint8_t *data, size_t len, GError **errp)
{
    VerifyJob *job = opaque;

    job->done += len;
    vma_read_report_cluster(job->report, mask);
    vma_progress_update(job->progress, job->done);
    return vma_check_interrupted(errp);
}

/* Read archive @k of the chain to its end, checking everything */
static bool verify_one(VmaChainIn *c, unsigned k, bool verbose, GError **errp)
{
    VmaReader *r = c->archives[k].reader;
    VerifyJob job = { 0 };
    bool ok;

    if (verbose) {
        /* As the reference: the listing first, then progress */
        vma_list_print_human(r);
        fflush(stdout);
        job.report = vma_read_report_new(r);
        job.progress = vma_progress_new("verify", vma_archive_total_bytes(r));
    }
    /* Without progress to report, no sink is needed at all */
    ok = vma_reader_run(r, verbose ? verify_cluster : NULL, &job, errp);
    if (ok) {
        vma_progress_finish(job.progress, job.done);
        vma_read_report_finish(job.report);
    } else {
        vma_add_input_detail(*errp, c->archives[k].input);
        if (c->count > 1) {
            g_prefix_error(errp, "'%s': ", c->paths[k]);
        }
    }
    vma_progress_free(job.progress);
    vma_read_report_free(job.report);
    return ok;
}

/*
 * One archive, or a chain.  An incremental's absent clusters are allowed
 * for its incremental disks only; its full disks must be complete.  For a
 * chain, every cluster of the newest state is then present somewhere: a
 * disk is complete in the full archive (or where it is full), and each
 * later archive where it is incremental has it at the same size.
 */
int vma_cmd_verify(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    VmaChainIn c;
    bool verbose = false;
    bool ok;
    int opt;

    while ((opt = getopt(argc, argv, ":hv")) != -1) {
        switch (opt) {
        case 'v':
            verbose = true;
            break;
        default:
            return vma_cmd_option_error("verify", opt, argv);
        }
    }
    if (argc - optind < 1) {
        return vma_cmd_usage_error("verify: expected an archive, or a chain "
                                   "of archives (full archive first)");
    }
    ok = vma_chain_in_open(&c, argv + optind, argc - optind, true, &err);
    for (unsigned k = 0; ok && k < c.count; k++) {
        ok = verify_one(&c, k, verbose, &err);
        vma_chain_in_close_one(&c, k);
    }
    vma_chain_in_close(&c);
    if (ok && !vma_flush_stdout(&err)) {
        ok = false;
    }
    return ok ? EXIT_SUCCESS : vma_cmd_fail(err);
}

/* ------------------------------------------------------------------------ */
/* vma extract                                                               */
/* ------------------------------------------------------------------------ */

typedef struct ExtractJob {
    VmaChainIn *chain;
    VmaReader *reader;                  /* the newest archive's */
    const char *dir;
    int dirfd;
    bool dir_created;
    bool selected[VMA_MAX_DEVICES];     /* by dev_id */
    GPtrArray *map;                     /* of VmaMapEntry; NULL without -r */
    VmaMapEntry *mapped[VMA_MAX_DEVICES];   /* by dev_id, into map */
    VmaTarget *targets[VMA_MAX_DEVICES];
    GPtrArray *files;                   /* written into dir, for cleanup */
    struct stat *input_st;              /* of each archive, when it has one */
    bool *have_input_st;
    /* The archive being read: where its devices go (by its dev_ids) */
    VmaTarget *pass_target[VMA_MAX_DEVICES];
    bool pass_overwrite[VMA_MAX_DEVICES];   /* earlier data is there */
    VmaReadReport *report;
    VmaProgress *progress;
    uint64_t done;
} ExtractJob;

/*
 * Select the devices named in the comma separated lists of @names (every
 * -d adds to the selection).  As in the reference tool, a name the archive
 * does not have selects nothing; we warn about it, and refuse a selection
 * that ends up empty: that is a mistake, not a restore.
 */
static bool extract_select(ExtractJob *job, GPtrArray *names, GError **errp)
{
    bool any = false;

    if (names->len == 0) {
        memset(job->selected, true, sizeof(job->selected));
        return true;
    }
    for (unsigned i = 0; i < names->len; i++) {
        g_auto(GStrv) list = g_strsplit(names->pdata[i], ",", -1);

        for (char **name = list; *name; name++) {
            const VmaDeviceInfo *dev;

            if (!**name) {
                continue;
            }
            dev = vma_find_device_by_name(job->reader, *name);
            if (!dev) {
                g_autofree char *shown = vma_printable_name(*name);

                vma_cmd_error("warning: no device '%s' in the archive "
                              "(-d): ignored", shown);
                continue;
            }
            job->selected[dev->dev_id] = true;
            any = true;
        }
    }
    if (!any) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "none of the devices given with -d is in the archive");
        return false;
    }
    return true;
}

/*
 * Print the listing, read the restore map and check it against the
 * archive: every name exists, every selected disk is either mapped or
 * skipped.  Lines for disks not selected with -d are checked, not used.
 */
static bool extract_read_map(ExtractJob *job, const char *map_path,
                             GError **errp)
{
    VmaReader *r = job->reader;

    /* The caller reads this to decide the map: it must see it first */
    vma_list_print_human(r);
    if (!vma_flush_stdout(errp)) {
        return false;
    }
    job->map = vma_restore_map_read(map_path, errp);
    if (!job->map) {
        return false;
    }
    for (unsigned i = 0; i < job->map->len; i++) {
        VmaMapEntry *e = job->map->pdata[i];
        const VmaDeviceInfo *dev = vma_find_device_by_name(r, e->devname);
        g_autofree char *shown = vma_printable_name(e->devname);

        if (!dev) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                        "restore map line %u: no device '%s' in the "
                        "archive", e->line, shown);
            return false;
        }
        if (dev->is_vmstate && !e->skip) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                        "restore map line %u: the RAM state goes to "
                        "<targetdir>/%s; only 'skip=%s' can be given",
                        e->line, VMA_VMSTATE_FILE, VMA_VMSTATE_NAME);
            return false;
        }
        if (!job->selected[dev->dev_id]) {
            continue;
        }
        if (e->skip) {
            job->selected[dev->dev_id] = false;
        } else {
            job->mapped[dev->dev_id] = e;
        }
    }
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);

        if (job->selected[dev->dev_id] && !dev->is_vmstate &&
            !job->mapped[dev->dev_id]) {
            g_autofree char *shown = vma_printable_name(dev->name);

            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                        "the restore map has no line for device '%s': "
                        "give '{0|1}:%s=<target>' or 'skip=%s'",
                        shown, shown, shown);
            return false;
        }
    }
    return true;
}

static bool refuse_unsafe_name(const char *what, const char *name,
                               GError **errp)
{
    g_autofree char *shown = NULL;

    if (vma_name_is_safe(name)) {
        return true;
    }
    shown = vma_printable_name(name);
    g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                "refusing to extract: %s name '%s' is not usable as a file "
                "name", what, shown);
    return false;
}

/* The file in the directory a device is extracted to */
static char *extract_file_name(const VmaDeviceInfo *dev)
{
    if (dev->is_vmstate) {
        return g_strdup(VMA_VMSTATE_FILE);
    }
    return g_strdup_printf("disk-%s.raw", dev->name);
}

/* Add @file, which config or device @owner creates, to @files */
static bool extract_claim_name(GHashTable *files, char *file,
                               const char *owner, GError **errp)
{
    g_autofree char *shown = vma_printable_name(file);
    const char *other;

    if (strlen(file) > NAME_MAX) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "refusing to extract: the file '%s' of %s would be "
                    "longer than %d bytes", shown, owner, NAME_MAX);
        g_free(file);
        return false;
    }
    other = g_hash_table_lookup(files, file);
    if (other) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "refusing to extract: %s and %s both need the file "
                    "'%s'", other, owner, shown);
        g_free(file);
        return false;
    }
    g_hash_table_insert(files, file, g_strdup(owner));
    return true;
}

/*
 * Every name that becomes a path must be harmless, short enough and
 * unique, temporary names included: checked before anything is created.
 * With a restore map, disks go to their targets, not into the directory.
 */
static bool extract_check_names(ExtractJob *job, bool with_map,
                                GError **errp)
{
    VmaReader *r = job->reader;
    g_autoptr(GHashTable) files = g_hash_table_new_full(g_str_hash,
                                                        g_str_equal,
                                                        g_free, g_free);

    for (unsigned i = 0; i < vma_reader_get_config_count(r); i++) {
        const VmaConfigInfo *c = vma_reader_get_config(r, i);
        g_autofree char *shown = vma_printable_name(c->name);
        g_autofree char *owner = g_strdup_printf("config '%s'", shown);

        if (!refuse_unsafe_name("config", c->name, errp) ||
            !extract_claim_name(files, g_strdup(c->name), owner, errp)) {
            return false;
        }
    }
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);
        g_autofree char *shown = NULL;
        g_autofree char *owner = NULL;
        char *file;

        if (!job->selected[dev->dev_id] || (with_map && !dev->is_vmstate)) {
            continue;
        }
        if (!refuse_unsafe_name("device", dev->name, errp)) {
            return false;
        }
        shown = vma_printable_name(dev->name);
        owner = g_strdup_printf("device '%s'", shown);
        file = extract_file_name(dev);
        /* The temporary name of vma-target-raw.c's create() */
        if (!extract_claim_name(files, g_strconcat("tmp-", file, NULL),
                                owner, errp)) {
            g_free(file);
            return false;
        }
        if (!extract_claim_name(files, file, owner, errp)) {
            return false;
        }
    }
    return true;
}

/* A target must hold the disk, and not be much larger: a wrong volume? */
static bool extract_check_target_size(const VmaDeviceInfo *dev,
                                      const VmaMapEntry *e, VmaTarget *t,
                                      GError **errp)
{
    g_autofree char *shown = vma_printable_name(dev->name);

    if (t->size < dev->size) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "target '%s' of device '%s' is too small: %" PRIu64
                    " bytes, the disk has %" PRIu64, e->target, shown,
                    t->size, dev->size);
        return false;
    }
    if (t->size - dev->size > TARGET_SIZE_SLACK) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "target '%s' of device '%s' is too large: %" PRIu64
                    " bytes, the disk has %" PRIu64 " (at most %d bytes "
                    "more are accepted)", e->target, shown, t->size,
                    dev->size, TARGET_SIZE_SLACK);
        return false;
    }
    return true;
}

/* Device and inode (or the device number of a block device) of @st */
static bool same_file(const struct stat *a, const struct stat *b)
{
    if (S_ISBLK(a->st_mode) && S_ISBLK(b->st_mode)) {
        return a->st_rdev == b->st_rdev;
    }
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/*
 * A restore must not write into the archive it reads, nor two disks into
 * one target.  Targets are compared as files (through symlinks) where they
 * are local files or devices, else by name (nbd://, rbd: ...).
 */
static bool extract_check_map_targets(ExtractJob *job, GError **errp)
{
    VmaReader *r = job->reader;
    struct stat st[VMA_MAX_DEVICES];
    bool have_st[VMA_MAX_DEVICES] = { false };

    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);
        const VmaMapEntry *e = job->mapped[dev->dev_id];

        if (!e || !job->selected[dev->dev_id]) {
            continue;
        }
        have_st[i] = stat(e->target, &st[i]) == 0;
        for (unsigned k = 0; have_st[i] && k < job->chain->count; k++) {
            if (job->have_input_st[k] &&
                same_file(&st[i], &job->input_st[k])) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                            "restore map line %u: target '%s' is the "
                            "archive being read", e->line, e->target);
                return false;
            }
        }
        for (unsigned j = 0; j < i; j++) {
            const VmaDeviceInfo *other = vma_reader_get_device(r, j);
            const VmaMapEntry *o = job->mapped[other->dev_id];

            if (!o || !job->selected[other->dev_id]) {
                continue;
            }
            if (have_st[i] && have_st[j] ? same_file(&st[i], &st[j]) :
                !strcmp(e->target, o->target)) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                            "restore map line %u: target '%s' is also the "
                            "target of line %u", e->line, e->target,
                            o->line);
                return false;
            }
        }
    }
    return true;
}

/* Open every mapped target and check its size; nothing is written yet */
static bool extract_open_map_targets(ExtractJob *job, GError **errp)
{
    VmaReader *r = job->reader;

    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);
        const VmaMapEntry *e = job->mapped[dev->dev_id];
        const char *format = e && e->format ? e->format : "raw";
        const VmaTargetOps *ops;
        VmaTarget *t;

        if (!e || !job->selected[dev->dev_id]) {
            continue;
        }
        ops = vma_find_target_ops(format, false);
        if (!ops) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                        "restore map line %u: unknown format '%s' (known: "
                        "%s%s)", e->line, format, vma_known_target_formats(),
                        vma_unknown_format_hint());
            return false;
        }
        t = ops->open(format, e->target, &e->opts, errp);
        if (!t) {
            return false;
        }
        job->targets[dev->dev_id] = t;
        if (!extract_check_target_size(dev, e, t, errp)) {
            return false;
        }
    }
    return true;
}

static bool extract_make_dir(ExtractJob *job, GError **errp)
{
    int err;

    if (mkdir(job->dir, 0777) < 0) {
        err = errno;
        if (err == EEXIST) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                        "target directory '%s' already exists", job->dir);
        } else {
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                        "cannot create directory '%s': %s", job->dir,
                        g_strerror(err));
        }
        return false;
    }
    job->dir_created = true;
    job->dirfd = open(job->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                      O_CLOEXEC);
    if (job->dirfd < 0) {
        err = errno;
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "cannot open directory '%s': %s", job->dir,
                    g_strerror(err));
        return false;
    }
    return true;
}

static bool extract_write_file(ExtractJob *job, const char *name,
                               const uint8_t *data, size_t len,
                               GError **errp)
{
    /* O_EXCL | O_NOFOLLOW: never through a link, never over a file */
    int fd = openat(job->dirfd, name,
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0666);
    size_t done = 0;
    int err = 0;

    if (fd < 0) {
        err = errno;
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "cannot create '%s/%s': %s", job->dir, name,
                    g_strerror(err));
        return false;
    }
    g_ptr_array_add(job->files, g_strdup(name));
    while (done < len && !err) {
        ssize_t n = write(fd, data + done, len - done);

        if (n < 0 && errno != EINTR) {
            err = errno;
        } else if (n > 0) {
            done += n;
        }
    }
    /* Durable before the extract says it is done */
    if (!err && fsync(fd) < 0 && errno != EINVAL) {
        err = errno;
    }
    if (close(fd) < 0 && !err) {
        err = errno;
    }
    if (err) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "cannot write '%s/%s': %s", job->dir, name,
                    g_strerror(err));
        return false;
    }
    return true;
}

static bool extract_write_configs(ExtractJob *job, GError **errp)
{
    for (unsigned i = 0; i < vma_reader_get_config_count(job->reader); i++) {
        const VmaConfigInfo *c = vma_reader_get_config(job->reader, i);

        if (!extract_write_file(job, c->name, c->data, c->len, errp)) {
            return false;
        }
    }
    return true;
}

/* The files in the directory: the RAM state and disks not mapped */
static bool extract_create_file_targets(ExtractJob *job, GError **errp)
{
    const VmaTargetOps *ops = vma_find_target_ops(VMA_EXTRACT_FORMAT, true);
    VmaReader *r = job->reader;

    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);
        g_autofree char *file = NULL;

        if (!job->selected[dev->dev_id] || job->targets[dev->dev_id]) {
            continue;
        }
        file = extract_file_name(dev);
        /* The RAM state is as long as what arrives: a size 0 target */
        job->targets[dev->dev_id] = ops->create(job->dirfd, file,
                                                dev->is_vmstate ? 0 :
                                                dev->size, errp);
        if (!job->targets[dev->dev_id]) {
            return false;
        }
        if (!dev->is_vmstate) {
            /* What the reference tool prints: scripts look for it */
            printf("DEVINFO %s/tmp-%s %" PRIu64 "\n", job->dir, file,
                   dev->size);
        }
    }
    return vma_flush_stdout(errp);
}

/*
 * Write a disk cluster.  Zero blocks are zeroes the target may skip (it
 * knows whether it reads as zero), so a back end that keeps them sparse
 * gets runs of stored blocks and runs of zeroes; others the whole cluster.
 */
static bool extract_write_disk_cluster(VmaTarget *t, uint64_t offset,
                                       uint16_t mask, const uint8_t *data,
                                       size_t len, bool overwrite,
                                       GError **errp)
{
    unsigned i = 0;

    if (overwrite) {
        /* Over an earlier archive's data: every byte, zeroes too */
        return t->ops->write(t, offset, data ? data : zero_cluster, len,
                             errp);
    }
    if (mask == 0) {
        return t->ops->write_zeroes(t, offset, len, errp);
    }
    if (!t->sparse_blocks) {
        /* Blocks not stored read as zero in @data */
        return t->ops->write(t, offset, data, len, errp);
    }
    while (i < VMA_BLOCKS_PER_CLUSTER && i * VMA_BLOCK_SIZE < len) {
        bool stored = mask & (1u << i);
        unsigned j = i + 1;
        size_t start = i * VMA_BLOCK_SIZE;
        size_t stop;
        bool ok;

        while (j < VMA_BLOCKS_PER_CLUSTER && !!(mask & (1u << j)) == stored) {
            j++;
        }
        stop = MIN(j * VMA_BLOCK_SIZE, len);
        if (stored) {
            ok = t->ops->write(t, offset + start, data + start, stop - start,
                               errp);
        } else {
            ok = t->ops->write_zeroes(t, offset + start, stop - start, errp);
        }
        if (!ok) {
            return false;
        }
        i = j;
    }
    return true;
}

static bool extract_cluster(void *opaque, const VmaDeviceInfo *dev,
                            uint64_t cluster_num, uint16_t mask,
                            const uint8_t *data, size_t len, GError **errp)
{
    ExtractJob *job = opaque;
    VmaTarget *t = job->pass_target[dev->dev_id];
    uint64_t offset = cluster_num * VMA_CLUSTER_SIZE;

    job->done += len;
    vma_read_report_cluster(job->report, mask);
    vma_progress_update(job->progress, job->done);
    if (!vma_check_interrupted(errp)) {
        return false;
    }
    if (!t) {
        return true;    /* not selected: validated, not written */
    }
    if (dev->is_vmstate) {
        /* In order; zero blocks must come back as zeroes, bit for bit */
        return t->ops->write(t, offset, data ? data : zero_cluster, len,
                             errp);
    }
    return extract_write_disk_cluster(t, offset, mask, data, len,
                                      job->pass_overwrite[dev->dev_id],
                                      errp);
}

/* Flush every target and move files into place; the first failure stops */
static bool extract_commit(ExtractJob *job, GError **errp)
{
    for (unsigned id = 0; id < VMA_MAX_DEVICES; id++) {
        VmaTarget *t = job->targets[id];

        if (!t) {
            continue;
        }
        job->targets[id] = NULL;
        if (!t->ops->close(t, true, errp)) {
            return false;
        }
        if (!job->mapped[id]) {
            const VmaDeviceInfo *dev = vma_reader_find_device(job->reader,
                                                              id);

            g_ptr_array_add(job->files, extract_file_name(dev));
        }
    }
    return true;
}

/* After a failure: leave nothing that could pass for a restored VM */
static void extract_cleanup(ExtractJob *job, bool ok)
{
    for (unsigned id = 0; id < VMA_MAX_DEVICES; id++) {
        if (job->targets[id]) {
            job->targets[id]->ops->close(job->targets[id], false, NULL);
        }
    }
    if (!ok && job->dirfd >= 0) {
        for (unsigned i = 0; i < job->files->len; i++) {
            unlinkat(job->dirfd, job->files->pdata[i], 0);
        }
    }
    if (job->dirfd >= 0) {
        close(job->dirfd);
    }
    if (!ok && job->dir_created) {
        rmdir(job->dir);    /* only if empty: never remove others' files */
    }
    g_ptr_array_unref(job->files);
    if (job->map) {
        g_ptr_array_unref(job->map);
    }
    vma_progress_free(job->progress);
    vma_read_report_free(job->report);
}

/*
 * Where the devices of archive @k go: a device of the newest state that
 * was selected, from the archive in which it is complete on (the RAM
 * state: the newest archive's only)
 */
static void extract_plan_pass(ExtractJob *job, unsigned k)
{
    VmaReader *r = job->chain->archives[k].reader;
    unsigned newest = job->chain->count - 1;

    memset(job->pass_target, 0, sizeof(job->pass_target));
    memset(job->pass_overwrite, 0, sizeof(job->pass_overwrite));
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);
        const VmaDeviceInfo *now = vma_find_device_by_name(job->reader,
                                                           dev->name);
        unsigned first;

        if (!now || now->is_vmstate != dev->is_vmstate) {
            continue;
        }
        first = dev->is_vmstate ? newest :
                vma_chain_in_first_for(job->chain, dev->name);
        if (k < first) {
            continue;   /* outdated: a later archive has it complete */
        }
        job->pass_target[dev->dev_id] = job->targets[now->dev_id];
        job->pass_overwrite[dev->dev_id] = k > first;
    }
}

/*
 * Push out what the targets still hold of one archive before the next one
 * of a chain writes over it: targets keep writes in flight or pending
 * (write-behind, gathered zero ranges), and two writes of the same cluster
 * must not overtake each other
 */
static bool extract_flush_targets(ExtractJob *job, GError **errp)
{
    for (unsigned i = 0; i < VMA_MAX_DEVICES; i++) {
        VmaTarget *t = job->targets[i];

        if (t && !t->ops->flush(t, errp)) {
            return false;
        }
    }
    return true;
}

/* Read every archive of the chain in order into the targets */
static bool extract_read_all(ExtractJob *job, GError **errp)
{
    VmaChainIn *c = job->chain;

    for (unsigned k = 0; k < c->count; k++) {
        extract_plan_pass(job, k);
        if (!vma_reader_run(c->archives[k].reader, extract_cluster, job,
                            errp)) {
            vma_add_input_detail(*errp, c->archives[k].input);
            if (c->count > 1) {
                g_prefix_error(errp, "'%s': ", c->paths[k]);
            }
            return false;
        }
        if (k + 1 < c->count) {
            vma_chain_in_close_one(c, k);
            if (!extract_flush_targets(job, errp)) {
                return false;
            }
        }
    }
    return true;
}

static bool extract_run(ExtractJob *job, GPtrArray *names,
                        const char *map_path, bool verbose, GError **errp)
{
    uint64_t total = 0;

    /*
     * The reference tool's order, which qemu-server relies on: the configs
     * are in the directory before the listing ends (it reads them when it
     * sees "CTIME:"), then the map is read, then the data.
     */
    if (!extract_select(job, names, errp) ||
        !extract_check_names(job, map_path != NULL, errp) ||
        !extract_make_dir(job, errp) ||
        !extract_write_configs(job, errp) ||
        (map_path && (!extract_read_map(job, map_path, errp) ||
                      !extract_check_map_targets(job, errp) ||
                      !extract_open_map_targets(job, errp))) ||
        !extract_create_file_targets(job, errp)) {
        return false;
    }
    if (verbose) {
        /* A chain's incrementals count at their disks' full size */
        for (unsigned k = 0; k < job->chain->count; k++) {
            total += vma_archive_total_bytes(job->chain->archives[k].reader);
        }
        job->report = vma_read_report_new(job->reader);
        job->progress = vma_progress_new("extract", total);
    }
    if (!extract_read_all(job, errp) || !extract_commit(job, errp)) {
        return false;
    }
    /* The configs' names (the disks' renames synced their own) */
    if (fsync(job->dirfd) < 0 && errno != EINVAL) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot sync directory '%s': %s", job->dir,
                    g_strerror(errno));
        return false;
    }
    vma_progress_finish(job->progress, job->done);
    vma_read_report_finish(job->report);
    return vma_flush_stdout(errp);
}

int vma_cmd_extract(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    const char *map_path = NULL;
    ExtractJob job = { .dirfd = -1 };
    VmaChainIn chain;
    bool verbose = false;
    unsigned count;
    bool ok;
    int opt;

    while ((opt = getopt(argc, argv, ":hvd:r:")) != -1) {
        switch (opt) {
        case 'v':
            verbose = true;
            break;
        case 'd':
            g_ptr_array_add(names, optarg);
            break;
        case 'r':
            map_path = optarg;
            break;
        default:
            return vma_cmd_option_error("extract", opt, argv);
        }
    }
    if (argc - optind < 2) {
        return vma_cmd_usage_error("extract: expected an archive (or a "
                                   "chain, full archive first) and a target "
                                   "directory");
    }
    count = argc - optind - 1;
    for (unsigned k = 0; map_path && k < count; k++) {
        if (!strcmp(map_path, "-") && !strcmp(argv[optind + k], "-")) {
            return vma_cmd_usage_error("extract: the archive and the "
                                       "restore map cannot both be stdin");
        }
    }
    if (!vma_chain_in_open(&chain, argv + optind, count, false, &err)) {
        vma_chain_in_close(&chain);
        return vma_cmd_fail(err);
    }
    job.chain = &chain;
    job.reader = vma_chain_in_newest(&chain);
    job.input_st = g_new0(struct stat, count);
    job.have_input_st = g_new0(bool, count);
    for (unsigned k = 0; k < count; k++) {
        job.have_input_st[k] = vma_input_stat(chain.archives[k].input,
                                              &job.input_st[k]);
    }
    job.dir = argv[argc - 1];
    job.files = g_ptr_array_new_with_free_func(g_free);
    ok = extract_run(&job, names, map_path, verbose, &err);
    extract_cleanup(&job, ok);
    g_free(job.input_st);
    g_free(job.have_input_st);
    vma_chain_in_close(&chain);
    return ok ? EXIT_SUCCESS : vma_cmd_fail(err);
}
