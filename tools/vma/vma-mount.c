/*
 * vma mount / umount / serve: the disks of an archive, without extracting
 *
 *   vma mount <archive>... <dir>   each disk as <dir>/<devname>.raw, each
 *                                  partition as <dir>/<devname>-part<N>.raw
 *   vma umount <dir>
 *   vma serve <archive>... (--socket <path> | --tcp <host>:<port>)
 *             [--pidfile <file>]
 *
 * All three run qemu-storage-daemon with QEMU's read-only vma block driver
 * on the archive (one node per disk, and a raw node with offset and size
 * per partition the disk's MBR or GPT lists: vma-partitions.c): FUSE
 * exports for mount (the daemon runs in the background until umount), NBD
 * exports named <devname> and <devname>-part<N> for serve (in the
 * foreground, until it is stopped; the pid file, if asked for, appears
 * once every export is up).  The archive is opened at random access: it
 * must be an uncompressed file.
 *
 * Several archives are a backup chain, full archive first (checked as
 * `vma extract` checks it): the disks are those of the newest archive, at
 * its state.  A disk incremental in the newest archive is a vma node with
 * the same disk of the previous archive as backing, and so on down to the
 * archive in which it is complete.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vma-chain-in.h"
#include "vma-cmd.h"
#include "vma-partitions.h"

/* Files vma mount keeps in the mount directory */
#define MOUNT_PIDFILE   ".vma-mount.pid"
#define MOUNT_STATE     ".vma-mount"
#define QSD_NAME        "qemu-storage-daemon"

/* A disk of the (newest) archive and the name it is exported under */
typedef struct ExportDisk {
    char *name;
    uint64_t size;
    unsigned first;         /* the archive in which it is complete */
    uint8_t *ids;           /* its dev_id in archives first..newest */
    GArray *parts;          /* VmaPartition; NULL until found */
} ExportDisk;

static void export_disks_free(GArray *disks)
{
    for (guint i = 0; i < disks->len; i++) {
        ExportDisk *d = &g_array_index(disks, ExportDisk, i);

        g_free(d->name);
        g_free(d->ids);
        if (d->parts) {
            g_array_free(d->parts, true);
        }
    }
    g_array_free(disks, true);
}

/* Where the first cluster of each disk is, found by vma_reader_scan() */
typedef struct FirstClusters {
    int fd;
    bool present[VMA_MAX_DEVICES];
    uint16_t mask[VMA_MAX_DEVICES];
    uint64_t offset[VMA_MAX_DEVICES];
} FirstClusters;

static ssize_t pread_archive(void *opaque, void *buf, size_t len,
                             uint64_t offset)
{
    FirstClusters *fc = opaque;
    ssize_t n;

    do {
        n = pread(fc->fd, buf, len, offset);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static bool note_first_cluster(void *opaque, const VmaDeviceInfo *dev,
                               uint64_t cluster_num, uint16_t mask,
                               uint64_t data_offset, GError **errp)
{
    FirstClusters *fc = opaque;

    if (cluster_num == 0) {
        fc->present[dev->dev_id] = true;
        fc->mask[dev->dev_id] = mask;
        fc->offset[dev->dev_id] = data_offset;
    }
    return true;
}

/*
 * The partitions of the disks whose first cluster archive @k of the chain
 * holds, from the partition table in it.  Reads (and so checks) every
 * extent header of the archive, as the vma driver will.
 */
static bool find_partitions(VmaReader *r, int fd, uint64_t archive_size,
                            unsigned k, GArray *disks, GError **errp)
{
    g_autofree FirstClusters *fc = g_new0(FirstClusters, 1);
    g_autofree uint8_t *first = g_malloc(VMA_CLUSTER_SIZE);

    fc->fd = fd;
    if (!vma_reader_scan(r, pread_archive, fc, archive_size,
                         note_first_cluster, fc, errp)) {
        return false;
    }
    for (guint i = 0; i < disks->len; i++) {
        ExportDisk *d = &g_array_index(disks, ExportDisk, i);
        uint8_t id = k >= d->first ? d->ids[k - d->first] : 0;
        uint64_t off = fc->offset[id];
        size_t len = MIN(VMA_CLUSTER_SIZE, d->size);

        if (d->parts || !id || !fc->present[id]) {
            /* Found already, or in an older archive */
            continue;
        }

        memset(first, 0, VMA_CLUSTER_SIZE);
        for (unsigned b = 0; b < VMA_BLOCKS_PER_CLUSTER; b++) {
            if (!(fc->mask[id] & (1u << b))) {
                continue;
            }
            if (pread_archive(fc, first + b * VMA_BLOCK_SIZE, VMA_BLOCK_SIZE,
                              off) != VMA_BLOCK_SIZE) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "archive offset "
                            "%" PRIu64 ": cannot read the first cluster of "
                            "'%s'", off, d->name);
                return false;
            }
            off += VMA_BLOCK_SIZE;
        }
        d->parts = vma_partitions_parse(first, len, d->size);
    }
    return true;
}

/*
 * The qemu-storage-daemon to run: $VMA_STORAGE_DAEMON, the one of the
 * build tree or installation this vma comes from, or the one in $PATH
 */
static char *find_storage_daemon(GError **errp)
{
    const char *env = g_getenv("VMA_STORAGE_DAEMON");
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    char *found;

    if (env) {
        return g_strdup(env);
    }
    if (self) {
        g_autofree char *dir = g_path_get_dirname(self);
        const char *candidates[] = { "storage-daemon/" QSD_NAME, QSD_NAME };

        for (size_t i = 0; i < G_N_ELEMENTS(candidates); i++) {
            char *p = g_build_filename(dir, candidates[i], NULL);

            if (g_file_test(p, G_FILE_TEST_IS_EXECUTABLE)) {
                return p;
            }
            g_free(p);
        }
    }
    found = g_find_program_in_path(QSD_NAME);
    if (!found) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "%s not found (install it, or name it in "
                    "VMA_STORAGE_DAEMON)", QSD_NAME);
    }
    return found;
}

/* @s with every ',' doubled, for a QEMU option value */
static char *opt_escape(const char *s)
{
    g_auto(GStrv) parts = g_strsplit(s, ",", -1);

    return g_strjoinv(",,", parts);
}

/*
 * Open @archive for reading at random: a file or block device, not
 * compressed (refused here already, with advice).  Its reader, with absent
 * clusters allowed for the disks its backup-chain blob marks incremental.
 */
static VmaReader *open_random(const char *archive, int *fdp, GError **errp)
{
    static const struct {
        const char *name, *magic, *decompress;
    } compressed[] = {
        { "zstd", "\x28\xb5\x2f\xfd", "zstd -d" },
        { "gzip", "\x1f\x8b", "gunzip" },
        { "lzop", "\x89LZO", "lzop -d" },
    };
    VmaChainInfo *info = NULL;
    VmaReader *r;
    uint8_t magic[4] = { 0 };
    struct stat st;
    int fd;

    fd = open(archive, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        int err = errno;

        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "cannot open '%s': %s", archive, g_strerror(err));
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "'%s' is not a file: disks are read at random, from a "
                    "file or block device, never a pipe", archive);
        close(fd);
        return NULL;
    }
    if (pread(fd, magic, sizeof(magic), 0) > 0) {
        for (size_t i = 0; i < G_N_ELEMENTS(compressed); i++) {
            if (!memcmp(magic, compressed[i].magic,
                        strlen(compressed[i].magic))) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                            "'%s' is %s compressed: a compressed archive "
                            "cannot be read at random; decompress it first "
                            "(%s)", archive, compressed[i].name,
                            compressed[i].decompress);
                close(fd);
                return NULL;
            }
        }
    }
    r = vma_reader_new_fd(fd, errp);
    if (r && !vma_chain_from_reader(r, true, &info, errp)) {
        g_prefix_error(errp, "'%s': ", archive);
        vma_reader_free(r);
        r = NULL;
    }
    vma_chain_free(info);
    if (!r) {
        close(fd);
        return NULL;
    }
    *fdp = fd;
    return r;
}

/* The disks of the newest archive of the chain @c, and where they start */
static GArray *chain_disks(VmaChainIn *c, GError **errp)
{
    VmaReader *newest = vma_chain_in_newest(c);
    GArray *disks = g_array_new(false, true, sizeof(ExportDisk));

    for (unsigned i = 0; i < vma_reader_get_device_count(newest); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(newest, i);
        ExportDisk d = { .size = dev->size };

        if (dev->is_vmstate) {
            continue;
        }
        /* A name that is no file name: the disk goes by its number */
        d.name = vma_name_is_safe(dev->name) ?
                 g_strdup(dev->name) : g_strdup_printf("disk%u", dev->dev_id);
        d.first = vma_chain_in_first_for(c, dev->name);
        d.ids = g_new0(uint8_t, c->count - d.first);
        for (unsigned k = d.first; k < c->count; k++) {
            d.ids[k - d.first] = vma_find_device_by_name(
                c->archives[k].reader, dev->name)->dev_id;
        }
        g_array_append_val(disks, d);
    }
    if (!disks->len) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "'%s' holds no disk", c->paths[c->count - 1]);
        export_disks_free(disks);
        return NULL;
    }
    return disks;
}

/* Does every disk have its partition list? */
static bool partitions_found(GArray *disks)
{
    for (guint i = 0; i < disks->len; i++) {
        if (!g_array_index(disks, ExportDisk, i).parts) {
            return false;
        }
    }
    return true;
}

/*
 * Read the headers of the archives (@count > 1: a backup chain, full
 * archive first, whose links are checked) and list the disks of the
 * newest one, with their partitions.  The archives must be files that can
 * be read at random.
 */
static GArray *archive_disks(char **archives, unsigned count, GError **errp)
{
    VmaChainIn c;
    GArray *disks;
    bool ok = true;

    for (unsigned k = 0; k < count; k++) {
        int fd;
        VmaReader *r = open_random(archives[k], &fd, errp);

        if (!r) {
            return NULL;
        }
        vma_reader_free(r);
        close(fd);
    }
    if (!vma_chain_in_open(&c, archives, count, false, errp)) {
        vma_chain_in_close(&c);
        return NULL;
    }
    disks = chain_disks(&c, errp);
    vma_chain_in_close(&c);
    if (!disks) {
        return NULL;
    }
    /* The partition table of each disk: in the newest archive holding it */
    for (unsigned k = count; ok && k-- > 0 && !partitions_found(disks);) {
        int fd;
        VmaReader *r = open_random(archives[k], &fd, errp);

        if (!r) {
            ok = false;
            break;
        }
        /* st_size is 0 for a block device */
        ok = find_partitions(r, fd, lseek(fd, 0, SEEK_END), k, disks, errp);
        vma_reader_free(r);
        close(fd);
    }
    if (!ok || !partitions_found(disks)) {
        if (ok) {
            /* Cannot be: the archive where a disk is complete has it all */
            g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT,
                        "the chain lacks the first cluster of a disk");
        }
        export_disks_free(disks);
        return NULL;
    }
    return disks;
}

/* The node of disk @i in archive @k; the newest archive's is "disk<i>" */
static char *disk_node(guint i, unsigned k, unsigned count)
{
    return k + 1 == count ? g_strdup_printf("disk%u", i) :
                            g_strdup_printf("disk%u-%u", i, k);
}

/*
 * qemu-storage-daemon with the archives ("archive<k>") and one vma node
 * "disk<i>" per disk of the newest, over its nodes in the older archives
 */
static GPtrArray *daemon_args(const char *qsd, char **archives,
                              unsigned count, GArray *disks)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);

    g_ptr_array_add(argv, g_strdup(qsd));
    for (unsigned k = 0; k < count; k++) {
        g_autofree char *abs = g_canonicalize_filename(archives[k], NULL);
        g_autofree char *file = opt_escape(abs);

        g_ptr_array_add(argv, g_strdup("--blockdev"));
        g_ptr_array_add(argv, g_strdup_printf("driver=file,"
                                              "node-name=archive%u,"
                                              "read-only=on,filename=%s",
                                              k, file));
    }
    for (guint i = 0; i < disks->len; i++) {
        ExportDisk *d = &g_array_index(disks, ExportDisk, i);

        for (unsigned k = d->first; k < count; k++) {
            g_autofree char *node = disk_node(i, k, count);
            g_autofree char *backing = k > d->first ?
                g_strdup_printf(",backing=disk%u-%u", i, k - 1) : NULL;

            g_ptr_array_add(argv, g_strdup("--blockdev"));
            g_ptr_array_add(argv, g_strdup_printf(
                "driver=vma,node-name=%s,file=archive%u,read-only=on,"
                "dev-id=%u%s", node, k, d->ids[k - d->first],
                backing ? backing : ""));
        }
        for (guint j = 0; j < d->parts->len; j++) {
            VmaPartition *p = &g_array_index(d->parts, VmaPartition, j);

            g_ptr_array_add(argv, g_strdup("--blockdev"));
            g_ptr_array_add(argv, g_strdup_printf(
                "driver=raw,node-name=disk%up%u,file=disk%u,read-only=on,"
                "offset=%" PRIu64 ",size=%" PRIu64, i, p->number, i,
                p->offset, p->size));
        }
    }
    return argv;
}

/* What is exported: each disk ("<devname>"), then its partitions */
typedef struct Export {
    char *name;             /* "<devname>" or "<devname>-part<N>" */
    char *node;             /* its node in daemon_args() */
} Export;

static void exports_free(GArray *exports)
{
    for (guint i = 0; i < exports->len; i++) {
        g_free(g_array_index(exports, Export, i).name);
        g_free(g_array_index(exports, Export, i).node);
    }
    g_array_free(exports, true);
}

static GArray *export_list(GArray *disks)
{
    GArray *exports = g_array_new(false, false, sizeof(Export));

    for (guint i = 0; i < disks->len; i++) {
        ExportDisk *d = &g_array_index(disks, ExportDisk, i);
        Export e = {
            .name = g_strdup(d->name),
            .node = g_strdup_printf("disk%u", i),
        };

        g_array_append_val(exports, e);
        for (guint j = 0; j < d->parts->len; j++) {
            VmaPartition *p = &g_array_index(d->parts, VmaPartition, j);
            Export pe = {
                .name = g_strdup_printf("%s-part%u", d->name, p->number),
                .node = g_strdup_printf("disk%up%u", i, p->number),
            };

            g_array_append_val(exports, pe);
        }
    }
    return exports;
}

/* ------------------------------------------------------------------------ */
/* vma mount                                                                 */
/* ------------------------------------------------------------------------ */

/* Remove what mount put into @dir (the exported files, its own files) */
static void mount_cleanup(const char *dir, GArray *exports, bool made_dir)
{
    g_autofree char *pidfile = g_build_filename(dir, MOUNT_PIDFILE, NULL);
    g_autofree char *state = g_build_filename(dir, MOUNT_STATE, NULL);

    for (guint i = 0; i < exports->len; i++) {
        g_autofree char *f = g_strdup_printf("%s/%s.raw", dir,
                                             g_array_index(exports, Export,
                                                           i).name);
        unlink(f);
    }
    unlink(pidfile);
    unlink(state);
    if (made_dir) {
        rmdir(dir);
    }
}

/* Create @dir, or check that it is an empty directory */
static bool mount_prepare_dir(const char *dir, bool *made_dir, GError **errp)
{
    g_autoptr(GDir) d = NULL;

    *made_dir = false;
    if (mkdir(dir, 0755) == 0) {
        *made_dir = true;
        return true;
    }
    if (errno != EEXIST) {
        int err = errno;

        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "cannot create '%s': %s", dir, g_strerror(err));
        return false;
    }
    d = g_dir_open(dir, 0, errp);
    if (!d) {
        return false;
    }
    if (g_dir_read_name(d)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                    "'%s' is not empty (mounted already?)", dir);
        return false;
    }
    return true;
}

static bool do_mount(char **archives, unsigned count, const char *dir,
                     GError **errp)
{
    g_autofree char *qsd = find_storage_daemon(errp);
    g_autoptr(GPtrArray) argv = NULL;
    g_autoptr(GString) state = g_string_new("");
    g_autofree char *out = NULL, *err_text = NULL;
    g_autofree char *abs_dir = NULL;
    g_autofree char *state_file = NULL;
    GArray *disks, *exports;
    bool made_dir, mounted = false, ok = false;
    int status;

    if (!qsd) {
        return false;
    }
    disks = archive_disks(archives, count, errp);
    if (!disks) {
        return false;
    }
    if (!mount_prepare_dir(dir, &made_dir, errp)) {
        export_disks_free(disks);
        return false;
    }
    abs_dir = g_canonicalize_filename(dir, NULL);
    argv = daemon_args(qsd, archives, count, disks);
    exports = export_list(disks);
    export_disks_free(disks);
    g_string_append_printf(state, "made_dir=%d\n", made_dir);
    for (guint i = 0; i < exports->len; i++) {
        Export *e = &g_array_index(exports, Export, i);
        g_autofree char *file = g_strdup_printf("%s/%s.raw", abs_dir, e->name);
        g_autofree char *mountpoint = opt_escape(file);
        int fd;

        /* A FUSE export is mounted over an existing regular file */
        fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        if (fd < 0) {
            int err = errno;

            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                        "cannot create '%s': %s", file, g_strerror(err));
            goto out;
        }
        close(fd);
        g_string_append_printf(state, "file=%s.raw\n", e->name);
        g_ptr_array_add(argv, g_strdup("--export"));
        g_ptr_array_add(argv, g_strdup_printf("type=fuse,id=export%u,"
                                              "node-name=%s,"
                                              "mountpoint=%s,writable=off",
                                              i, e->node, mountpoint));
    }
    state_file = g_build_filename(abs_dir, MOUNT_STATE, NULL);
    if (!g_file_set_contents(state_file, state->str, -1, errp)) {
        goto out;
    }
    g_ptr_array_add(argv, g_strdup("--pidfile"));
    g_ptr_array_add(argv, g_build_filename(abs_dir, MOUNT_PIDFILE, NULL));
    g_ptr_array_add(argv, g_strdup("--daemonize"));
    g_ptr_array_add(argv, NULL);

    /* The daemon's parent exits once every export is up (or failed) */
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT,
                      NULL, NULL, &out, &err_text, &status, errp)) {
        goto out;
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_strchomp(err_text);
        g_set_error(errp, VMA_ERROR, VMA_ERROR_IO, "%s failed: %s", QSD_NAME,
                    *err_text ? err_text : "no message");
        goto out;
    }
    mounted = true;
    for (guint i = 0; i < exports->len; i++) {
        printf("%s/%s.raw\n", abs_dir, g_array_index(exports, Export, i).name);
    }
    ok = vma_flush_stdout(errp);

out:
    if (!mounted) {
        mount_cleanup(abs_dir, exports, made_dir);
    }
    exports_free(exports);
    return ok;
}

int vma_cmd_mount(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    int c;

    c = getopt(argc, argv, ":h");
    if (c == 'h') {
        return vma_cmd_help();
    }
    if (c != -1) {
        return vma_cmd_option_error("mount", c, argv);
    }
    if (argc - optind < 2) {
        return vma_cmd_usage_error("mount: needs <archive>... and <dir>");
    }
    if (!do_mount(argv + optind, argc - optind - 1, argv[argc - 1], &err)) {
        return vma_cmd_fail(err);
    }
    return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------------ */
/* vma umount                                                                */
/* ------------------------------------------------------------------------ */

/* Is @pid a running qemu-storage-daemon? */
static bool pid_is_storage_daemon(pid_t pid)
{
    g_autofree char *proc = g_strdup_printf("/proc/%d/cmdline", (int)pid);
    g_autofree char *cmdline = NULL;
    g_autofree char *base = NULL;

    if (!g_file_get_contents(proc, &cmdline, NULL, NULL)) {
        return false;
    }
    base = g_path_get_basename(cmdline);
    return !strcmp(base, QSD_NAME);
}

static bool do_umount(const char *dir, GError **errp)
{
    g_autofree char *pidfile = g_build_filename(dir, MOUNT_PIDFILE, NULL);
    g_autofree char *state_file = g_build_filename(dir, MOUNT_STATE, NULL);
    g_autofree char *pid_text = NULL, *state = NULL;
    g_auto(GStrv) lines = NULL;
    bool made_dir = false;
    pid_t pid;

    if (!g_file_get_contents(state_file, &state, NULL, NULL)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "'%s' is not a directory vma mount made", dir);
        return false;
    }
    if (g_file_get_contents(pidfile, &pid_text, NULL, NULL)) {
        pid = atoi(pid_text);
        if (pid > 0 && pid_is_storage_daemon(pid)) {
            /* The daemon unmounts its exports as it exits */
            kill(pid, SIGTERM);
            for (int i = 0; i < 1000 && kill(pid, 0) == 0; i++) {
                g_usleep(10 * 1000);
            }
            if (kill(pid, 0) == 0) {
                g_set_error(errp, VMA_ERROR, VMA_ERROR_IO,
                            "%s (pid %d) did not exit within 10 s: is a "
                            "disk of '%s' still in use?", QSD_NAME,
                            (int)pid, dir);
                return false;
            }
        }
    }
    lines = g_strsplit(state, "\n", -1);
    for (char **l = lines; *l; l++) {
        if (g_str_has_prefix(*l, "file=")) {
            g_autofree char *f = g_build_filename(dir, *l + 5, NULL);

            if (unlink(f) < 0 && errno != ENOENT) {
                int err = errno;

                g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                            "cannot remove '%s': %s", f, g_strerror(err));
                return false;
            }
        } else if (!strcmp(*l, "made_dir=1")) {
            made_dir = true;
        }
    }
    unlink(pidfile);
    unlink(state_file);
    if (made_dir) {
        rmdir(dir);
    }
    return true;
}

int vma_cmd_umount(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    int c;

    c = getopt(argc, argv, ":h");
    if (c == 'h') {
        return vma_cmd_help();
    }
    if (c != -1) {
        return vma_cmd_option_error("umount", c, argv);
    }
    if (argc - optind != 1) {
        return vma_cmd_usage_error("umount: needs <dir>");
    }
    if (!do_umount(argv[optind], &err)) {
        return vma_cmd_fail(err);
    }
    return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------------ */
/* vma serve                                                                 */
/* ------------------------------------------------------------------------ */

int vma_cmd_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "socket", required_argument, NULL, 's' },
        { "tcp", required_argument, NULL, 't' },
        { "pidfile", required_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) args = NULL;
    g_autofree char *qsd = NULL;
    g_autofree char *addr = NULL;
    const char *socket_path = NULL, *tcp = NULL, *pidfile = NULL;
    GArray *disks, *exports;
    int c;

    while ((c = getopt_long(argc, argv, ":hs:t:p:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            return vma_cmd_help();
        case 's':
            socket_path = optarg;
            break;
        case 't':
            tcp = optarg;
            break;
        case 'p':
            pidfile = optarg;
            break;
        default:
            return vma_cmd_option_error("serve", c, argv);
        }
    }
    if (argc - optind < 1) {
        return vma_cmd_usage_error("serve: needs <archive>...");
    }
    if (!socket_path == !tcp) {
        return vma_cmd_usage_error("serve: needs --socket <path> or "
                                   "--tcp <host>:<port>");
    }
    if (tcp) {
        const char *colon = strrchr(tcp, ':');

        if (!colon || colon == tcp || !colon[1]) {
            return vma_cmd_usage_error("serve: --tcp needs <host>:<port>, "
                                       "not '%s'", tcp);
        }
        addr = g_strdup_printf("addr.type=inet,addr.host=%.*s,addr.port=%s",
                               (int)(colon - tcp), tcp, colon + 1);
    } else {
        g_autofree char *p = opt_escape(socket_path);

        addr = g_strdup_printf("addr.type=unix,addr.path=%s", p);
    }

    qsd = find_storage_daemon(&err);
    if (!qsd) {
        return vma_cmd_fail(err);
    }
    disks = archive_disks(argv + optind, argc - optind, &err);
    if (!disks) {
        return vma_cmd_fail(err);
    }
    args = daemon_args(qsd, argv + optind, argc - optind, disks);
    exports = export_list(disks);
    export_disks_free(disks);
    g_ptr_array_add(args, g_strdup("--nbd-server"));
    g_ptr_array_add(args, g_steal_pointer(&addr));
    for (guint i = 0; i < exports->len; i++) {
        Export *e = &g_array_index(exports, Export, i);
        g_autofree char *name = opt_escape(e->name);

        g_ptr_array_add(args, g_strdup("--export"));
        g_ptr_array_add(args, g_strdup_printf("type=nbd,id=export%u,"
                                              "node-name=%s,name=%s,"
                                              "writable=off", i, e->node,
                                              name));
        if (socket_path) {
            fprintf(stderr, "vma: serving nbd+unix:///%s?socket=%s\n",
                    e->name, socket_path);
        } else {
            fprintf(stderr, "vma: serving nbd://%s/%s\n", tcp, e->name);
        }
    }
    exports_free(exports);
    if (pidfile) {
        /* Written once every export is up */
        g_ptr_array_add(args, g_strdup("--pidfile"));
        g_ptr_array_add(args, g_strdup(pidfile));
    }
    g_ptr_array_add(args, NULL);

    /* The daemon serves in the foreground, in place of this process */
    execv(qsd, (char **)args->pdata);
    vma_cmd_error("cannot run %s: %s", qsd, g_strerror(errno));
    return EXIT_FAILURE;
}
