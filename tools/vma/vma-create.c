/*
 * vma tool: `vma create`, an archive from disk images and config files
 *
 * Each source is read front to back in large chunks; extents the back end
 * reports as zero (holes, unallocated or zero clusters) are recorded as zero
 * clusters without reading them.  The archive is written in one sequential
 * pass, so it can go to a pipe, a FIFO or a command (vma-output.h).
 *
 * A disk whose size is not a multiple of 512 is archived padded with zeroes
 * to the next multiple, as QEMU sizes block devices: the reference reader
 * drops a disk's last partial sector.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "vma-cmd.h"
#include "vma-ops.h"
#include "vma-output.h"
#include "vma-progress.h"
#include "vma-report.h"
#include "vma-source-check.h"

/* Sources are read in chunks of this many bytes */
#define CREATE_CHUNK_SIZE   (4 * 1024 * 1024)
/* and archive writes smaller than this are gathered */
#define CREATE_OUTPUT_BUFFER_SIZE   (256 * 1024)

typedef struct CreateDevice {
    char *format;
    bool format_given;          /* false: raw, checked not to be an image */
    char *name;
    char *path;
    VmaSource *src;
    uint64_t size;              /* in the archive: src->size, disks padded */
    uint8_t dev_id;
    bool is_vmstate;
} CreateDevice;

typedef struct CreateJob {
    GPtrArray *config_paths;
    GPtrArray *devices;         /* of CreateDevice */
    bool verbose;
    VmaWriter *writer;
    const char *archive;        /* "-": stdout, "exec:<cmd>", a FIFO... */
    VmaOutput *output;
    int fd;
    uint8_t *buf;               /* CREATE_CHUNK_SIZE */
    uint8_t *out_buf;           /* CREATE_OUTPUT_BUFFER_SIZE */
    size_t out_len;
    VmaProgress *progress;
    int last_percent;           /* of the reference progress lines */
    uint64_t done;
} CreateJob;

static void create_device_free(gpointer p)
{
    CreateDevice *dev = p;

    if (dev->src) {
        dev->src->ops->close(dev->src);
    }
    g_free(dev->format);
    g_free(dev->name);
    g_free(dev->path);
    g_free(dev);
}

/*
 * Parse "[format=<fmt>:]<devname>=<path>".  Without "<devname>=", the
 * device is called disk<index>, as the reference tool does.  Without
 * "format=", dev->format is the build's default, which may be NULL.
 */
static CreateDevice *parse_device_spec(const char *spec, unsigned index)
{
    CreateDevice *dev = g_new0(CreateDevice, 1);
    const char *rest = spec;
    const char *eq;

    if (g_str_has_prefix(spec, "format=")) {
        const char *colon = strchr(spec, ':');

        if (!colon || colon == spec + strlen("format=")) {
            create_device_free(dev);
            return NULL;
        }
        dev->format = g_strndup(spec + strlen("format="),
                                colon - spec - strlen("format="));
        dev->format_given = true;
        rest = colon + 1;
    } else {
        dev->format = g_strdup(vma_default_source_format());
    }
    eq = strchr(rest, '=');
    if (eq) {
        dev->name = g_strndup(rest, eq - rest);
        dev->path = g_strdup(eq + 1);
    } else {
        dev->name = g_strdup_printf("disk%u", index);
        dev->path = g_strdup(rest);
    }
    if (!dev->name[0] || !dev->path[0]) {
        create_device_free(dev);
        return NULL;
    }
    dev->is_vmstate = !strcmp(dev->name, VMA_VMSTATE_NAME);
    return dev;
}

/*
 * Add the device @spec of a -d option or, with @positional, of an argument
 * after the archive: the reference tool's old form, which it probes; we
 * read it as raw (refusing what looks like another format) and warn.
 */
static int create_add_device(CreateJob *job, const char *spec,
                             bool positional)
{
    CreateDevice *dev = parse_device_spec(spec, job->devices->len);

    if (!dev) {
        return vma_cmd_usage_error("create: bad device '%s': expected "
                                   "[format=<fmt>:]<devname>=<path>", spec);
    }
    if (positional && !dev->format_given) {
        g_free(dev->format);
        dev->format = g_strdup("raw");
        vma_cmd_error("warning: devices without -d are deprecated: use "
                      "-d format=raw:%s=%s", dev->name, dev->path);
    }
    if (!dev->format) {
        /* Probing would let a guest's raw disk pass itself off as qcow2 */
        g_autofree char *shown = vma_printable_name(dev->name);
        int ret = vma_cmd_usage_error("create: no format given for device "
                                      "'%s': use format=<fmt>:%s=<path> "
                                      "(images are never probed)",
                                      shown, shown);

        create_device_free(dev);
        return ret;
    }
    g_ptr_array_add(job->devices, dev);
    return EXIT_SUCCESS;
}

static bool set_errno_error(GError **errp, int err, const char *what,
                            const char *path)
{
    g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                "%s '%s': %s", what, path, g_strerror(err));
    return false;
}

/* Read a config file and add it under its base name */
static bool create_add_config(CreateJob *job, const char *path,
                              GError **errp)
{
    g_autofree char *name = g_path_get_basename(path);
    /* One byte more than allowed tells a file that is too large */
    g_autofree uint8_t *data = g_malloc(VMA_MAX_BLOB_SIZE + 1);
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return set_errno_error(errp, errno, "cannot open", path);
    }
    while (len <= VMA_MAX_BLOB_SIZE) {
        ssize_t n = read(fd, data + len, VMA_MAX_BLOB_SIZE + 1 - len);

        if (n < 0 && errno == EINTR && !vma_interrupted) {
            continue;
        }
        if (n < 0) {
            int err = errno;

            close(fd);
            return set_errno_error(errp, err, "cannot read", path);
        }
        if (n == 0) {
            break;
        }
        len += n;
    }
    close(fd);
    if (len > VMA_MAX_BLOB_SIZE) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "config file '%s' is larger than %d bytes", path,
                    VMA_MAX_BLOB_SIZE);
        return false;
    }
    return vma_writer_add_config(job->writer, name, data, len, errp);
}

static bool create_open_device(CreateJob *job, CreateDevice *dev,
                               GError **errp)
{
    const VmaSourceOps *ops = vma_find_source_ops(dev->format);

    if (!ops) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "unknown format '%s' for device '%s' (known: %s%s)",
                    dev->format, dev->name, vma_known_source_formats(),
                    vma_unknown_format_hint());
        return false;
    }
    if (!vma_source_check_kind(dev->path, errp)) {
        return false;
    }
    if (!dev->format_given) {
        const char *looks = vma_source_looks_like(dev->path);

        if (looks) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                        "device '%s': '%s' looks like %s, not raw; "
                        "give its format: -d format=<fmt>:%s=%s (formats "
                        "are never guessed)", dev->name, dev->path, looks,
                        dev->name, dev->path);
            return false;
        }
    }
    dev->src = ops->open(dev->format, dev->path, errp);
    if (!dev->src) {
        return false;
    }
    if (dev->src->size == 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "device '%s' (%s) is empty", dev->name, dev->path);
        return false;
    }
    dev->size = dev->src->size;
    if (dev->is_vmstate) {
        dev->dev_id = vma_writer_register_vmstate(job->writer, dev->size,
                                                  errp);
        return dev->dev_id != 0;
    }
    if (dev->size % 512) {
        dev->size += 512 - dev->size % 512;
        if (job->verbose) {
            vma_cmd_error("device '%s': %" G_GUINT64_FORMAT " bytes, not a "
                          "multiple of 512: archived as %" G_GUINT64_FORMAT
                          " bytes, padded with zeroes", dev->name,
                          dev->src->size, dev->size);
        }
    }
    dev->dev_id = vma_writer_register_stream(job->writer, dev->name,
                                             dev->size, errp);
    return dev->dev_id != 0;
}


static int create_flush_output(CreateJob *job)
{
    int ret = vma_write_full(job->fd, job->out_buf, job->out_len);

    job->out_len = 0;
    return ret;
}

/*
 * Output callback.  Extents of zero clusters are just a 512 byte header:
 * small writes are gathered so that a mostly empty disk does not cost a
 * system call per extent.  Large ones go out directly, without a copy.
 */
static int create_output(void *opaque, const void *buf, size_t len)
{
    CreateJob *job = opaque;
    int ret;

    if (len <= CREATE_OUTPUT_BUFFER_SIZE - job->out_len) {
        memcpy(job->out_buf + job->out_len, buf, len);
        job->out_len += len;
        return 0;
    }
    ret = create_flush_output(job);
    if (ret < 0 || len >= CREATE_OUTPUT_BUFFER_SIZE) {
        return ret < 0 ? ret : vma_write_full(job->fd, buf, len);
    }
    memcpy(job->out_buf, buf, len);
    job->out_len = len;
    return 0;
}

/* Record @count zero clusters from @first on */
static bool create_write_zeroes(CreateJob *job, CreateDevice *dev,
                                uint64_t first, uint64_t count,
                                GError **errp)
{
    uint64_t size = dev->size;

    if (!dev->is_vmstate) {
        return vma_writer_write_zero_clusters(job->writer, dev->dev_id, first,
                                              count, errp);
    }
    /* The vmstate stream takes no zero ranges: NULL clusters, in order */
    for (uint64_t c = first; c < first + count; c++) {
        size_t len = MIN(VMA_CLUSTER_SIZE, size - c * VMA_CLUSTER_SIZE);

        if (!vma_writer_write_cluster(job->writer, dev->dev_id, c, NULL, len,
                                      errp)) {
            return false;
        }
    }
    return true;
}

/* Progress: ours on a terminal, the reference's lines with -v */
static void create_report(CreateJob *job)
{
    uint64_t total = 0, transferred = 0, zero_bytes = 0;

    vma_progress_update(job->progress, job->done);
    if (!job->verbose) {
        return;
    }
    for (unsigned i = 0; i < job->devices->len; i++) {
        CreateDevice *dev = job->devices->pdata[i];
        VmaStreamStats st;

        if (vma_writer_get_stream_stats(job->writer, dev->dev_id, &st)) {
            total += dev->size;
            transferred += st.transferred;
            zero_bytes += st.zero_bytes;
        }
    }
    if (total) {
        vma_report_create_progress(&job->last_percent, transferred, total,
                                   zero_bytes);
    }
}

/* Read clusters [@first, @end) in chunks and hand them to the writer */
static bool create_copy_data(CreateJob *job, CreateDevice *dev,
                             uint64_t first, uint64_t end, GError **errp)
{
    const uint64_t chunk_clusters = CREATE_CHUNK_SIZE / VMA_CLUSTER_SIZE;
    uint64_t size = dev->size;

    for (uint64_t c = first; c < end; c += chunk_clusters) {
        uint64_t offset = c * VMA_CLUSTER_SIZE;
        uint64_t n = MIN(chunk_clusters, end - c);
        size_t len = MIN(n * VMA_CLUSTER_SIZE, size - offset);
        /* The padding past the source's end reads as zeroes */
        size_t from_src = MIN(len, dev->src->size - offset);

        if (!vma_check_interrupted(errp) ||
            !dev->src->ops->read(dev->src, offset, job->buf, from_src,
                                 errp)) {
            return false;
        }
        memset(job->buf + from_src, 0, len - from_src);
        for (uint64_t i = 0; i < n; i++) {
            size_t pos = i * VMA_CLUSTER_SIZE;

            if (!vma_writer_write_cluster(job->writer, dev->dev_id, c + i,
                                          job->buf + pos,
                                          MIN(VMA_CLUSTER_SIZE, len - pos),
                                          errp)) {
                return false;
            }
        }
        job->done += len;
        create_report(job);
    }
    return true;
}

/*
 * Copy one device, extent by extent: clusters wholly inside a hole are
 * recorded as zero without reading them, all others are read.
 */
static bool create_copy_device(CreateJob *job, CreateDevice *dev,
                               GError **errp)
{
    uint64_t size = dev->size;
    uint64_t clusters = size / VMA_CLUSTER_SIZE + !!(size % VMA_CLUSTER_SIZE);
    uint64_t c = 0;

    while (c < clusters) {
        uint64_t offset = c * VMA_CLUSTER_SIZE;
        uint64_t end, end_cluster;
        bool is_data;

        if (!vma_check_interrupted(errp) ||
            !dev->src->ops->next_extent(dev->src, offset, &is_data, &end,
                                        errp)) {
            return false;
        }
        if (!is_data) {
            /* A hole to the source's end runs through the padding */
            end_cluster = end >= dev->src->size ? clusters :
                          end / VMA_CLUSTER_SIZE;
            if (end_cluster > c) {
                if (!create_write_zeroes(job, dev, c, end_cluster - c,
                                         errp)) {
                    return false;
                }
                job->done += MIN(end_cluster * VMA_CLUSTER_SIZE, size) -
                             offset;
                create_report(job);
                c = end_cluster;
                continue;
            }
            /* The hole ends inside this cluster, which has data: read it */
            end = offset + 1;
        }
        end_cluster = MIN(clusters, (end + VMA_CLUSTER_SIZE - 1) /
                                    VMA_CLUSTER_SIZE);
        if (!create_copy_data(job, dev, c, end_cluster, errp)) {
            return false;
        }
        c = end_cluster;
    }
    return true;
}

/* A random (version 4) uuid, from GLib: no libuuid needed */
static void create_random_uuid(uint8_t uuid[VMA_UUID_SIZE])
{
    g_autofree char *str = g_uuid_string_random();
    const char *p = str;

    for (unsigned i = 0; i < VMA_UUID_SIZE; i++, p += 2) {
        if (*p == '-') {
            p++;
        }
        uuid[i] = g_ascii_xdigit_value(p[0]) << 4 |
                  g_ascii_xdigit_value(p[1]);
    }
}

/* Open the sources and register everything: nothing is written yet */
static bool create_prepare(CreateJob *job, GError **errp)
{
    uint8_t uuid[VMA_UUID_SIZE];

    create_random_uuid(uuid);
    job->writer = vma_writer_new(uuid, time(NULL), create_output, job);
    for (unsigned i = 0; i < job->config_paths->len; i++) {
        if (!create_add_config(job, job->config_paths->pdata[i], errp)) {
            return false;
        }
    }
    for (unsigned i = 0; i < job->devices->len; i++) {
        if (!create_open_device(job, job->devices->pdata[i], errp)) {
            return false;
        }
    }
    return true;
}

static bool create_open_archive(CreateJob *job, GError **errp)
{
    job->output = vma_output_open(job->archive, errp);
    if (!job->output) {
        return false;
    }
    job->fd = vma_output_fd(job->output);
    return true;
}

static bool create_close_archive(CreateJob *job, GError **errp)
{
    int err = -create_flush_output(job);
    VmaOutput *output = g_steal_pointer(&job->output);

    job->fd = -1;
    if (err) {
        vma_output_close(output, false, NULL);
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "writing the archive failed: %s", g_strerror(err));
        return false;
    }
    return vma_output_close(output, true, errp);
}

/* The reference tool's summary, one line per image */
static void create_report_images(CreateJob *job)
{
    for (unsigned i = 0; i < job->devices->len; i++) {
        CreateDevice *dev = job->devices->pdata[i];
        VmaStreamStats st;

        if (vma_writer_get_stream_stats(job->writer, dev->dev_id, &st)) {
            vma_report_create_image(dev->name, dev->size, st.zero_bytes);
        }
    }
}

static uint64_t create_total_bytes(CreateJob *job)
{
    uint64_t total = 0;

    for (unsigned i = 0; i < job->devices->len; i++) {
        CreateDevice *dev = job->devices->pdata[i];

        total += dev->size;
    }
    return total;
}

static bool create_run(CreateJob *job, bool verbose, GError **errp)
{
    job->verbose = verbose;
    if (!create_prepare(job, errp) || !create_open_archive(job, errp)) {
        return false;
    }
    if (verbose) {
        job->progress = vma_progress_new("create", create_total_bytes(job));
        job->last_percent = -1;
    }
    create_report(job);
    job->buf = g_malloc(CREATE_CHUNK_SIZE);
    job->out_buf = g_malloc(CREATE_OUTPUT_BUFFER_SIZE);
    for (unsigned i = 0; i < job->devices->len; i++) {
        if (!create_copy_device(job, job->devices->pdata[i], errp)) {
            return false;
        }
    }
    if (!vma_writer_finish(job->writer, errp) ||
        !create_close_archive(job, errp)) {
        return false;
    }
    vma_progress_finish(job->progress, job->done);
    if (verbose) {
        create_report_images(job);
    }
    return true;
}

static void create_cleanup(CreateJob *job, bool ok)
{
    /* After a failure: the partial archive goes */
    vma_output_close(job->output, false, NULL);
    vma_writer_free(job->writer);
    vma_progress_free(job->progress);
    g_ptr_array_unref(job->devices);
    g_ptr_array_unref(job->config_paths);
    g_free(job->buf);
    g_free(job->out_buf);
}

int vma_cmd_create(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    CreateJob job = {
        .fd = -1,
        .config_paths = g_ptr_array_new(),
        .devices = g_ptr_array_new_with_free_func(create_device_free),
    };
    bool verbose = false;
    int ret = EXIT_SUCCESS;
    int opt;

    while (ret == EXIT_SUCCESS &&
           (opt = getopt(argc, argv, ":hvc:d:")) != -1) {
        switch (opt) {
        case 'h':
            create_cleanup(&job, false);
            return vma_cmd_help();
        case 'v':
            verbose = true;
            break;
        case 'c':
            g_ptr_array_add(job.config_paths, optarg);
            break;
        case 'd':
            ret = create_add_device(&job, optarg, false);
            break;
        default:
            ret = vma_cmd_option_error("create", opt, argv);
        }
    }
    if (ret == EXIT_SUCCESS && optind >= argc) {
        ret = vma_cmd_usage_error("create: expected an archive");
    }
    if (ret == EXIT_SUCCESS && optind + 1 < argc && job.devices->len) {
        ret = vma_cmd_usage_error("create: unexpected argument '%s': give "
                                  "every device with -d", argv[optind + 1]);
    }
    if (ret == EXIT_SUCCESS) {
        job.archive = argv[optind];
        /* The reference tool's old form: devices as arguments */
        for (int i = optind + 1; i < argc && ret == EXIT_SUCCESS; i++) {
            ret = create_add_device(&job, argv[i], true);
        }
    }
    if (ret == EXIT_SUCCESS && !create_run(&job, verbose, &err)) {
        vma_output_explain(job.output, err);
        ret = vma_cmd_fail(err);
    }
    create_cleanup(&job, ret == EXIT_SUCCESS);
    return ret;
}
