/*
 * vma: list, verify, create and extract VMA backup archives
 *
 * The command line is compatible with Proxmox VE's `vma` tool.  This file
 * is the front end: it parses arguments, runs the commands and reports
 * errors.  Disks are read and written through the back ends of vma-ops.h,
 * archives are read through vma-input.h (plain, gzip, zstd, from a file or
 * a pipe).
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>
#include "block/vma.h"
#include "vma-input.h"
#include "vma-ops.h"
#include "vma-progress.h"

#define EXIT_USAGE          2
#define DEFAULT_CONFIG      "qemu-server.conf"
#define DEFAULT_FORMAT      "raw"
#define VMSTATE_FILE        "vmstate.bin"

/* `vma create` reads sources in chunks of this many bytes */
#define CREATE_CHUNK_SIZE   (4 * 1024 * 1024)
/* and gathers archive writes smaller than this */
#define CREATE_OUTPUT_BUFFER_SIZE   (256 * 1024)

volatile sig_atomic_t vma_interrupted;

/* Zeroes for vmstate clusters that were not stored */
static const uint8_t zero_cluster[VMA_CLUSTER_SIZE];

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

static void print_usage(FILE *f)
{
    fprintf(f,
"Usage:\n"
"  vma list [--output=human|json] <archive|->\n"
"  vma config <archive|-> [-c <name>]\n"
"  vma create <archive|-> [-v] [-c <file>]...\n"
"             [-d [format=<fmt>:]<devname>=<path>]... [<devname>=<path>]...\n"
"  vma extract <archive|-> [-v] [-d <dev>[,<dev>...]]... <targetdir>\n"
"  vma verify <archive|-> [-v]\n"
"  vma help\n"
"\n"
"Archives are read plain, gzip or zstd compressed; '-' is stdin (or stdout\n"
"for create).  'config' prints %s unless -c names another config.\n"
"-d without a format means format=%s; a device spec without '<devname>='\n"
"gets the name disk<N>.  The device name 'vmstate' stores the RAM state.\n"
"-v reports progress on stderr.\n", DEFAULT_CONFIG, DEFAULT_FORMAT);
}

static void error_msg(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* Print "vma: <message>" on stderr */
static void error_msg(const char *fmt, ...)
{
    va_list ap;

    fputs("vma: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/*
 * Report a failed command.  An interrupted one says so rather than whatever
 * system call noticed the signal.
 */
static int report_error(const GError *err)
{
    if (vma_interrupted) {
        error_msg("interrupted");
        return 128 + vma_interrupted;
    }
    error_msg("%s", err ? err->message : "unknown error");
    return EXIT_FAILURE;
}

static int usage_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static int usage_error(const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    error_msg("%s", msg);
    print_usage(stderr);
    return EXIT_USAGE;
}

/* Describe a getopt() failure; @optstring started with ':' */
static int option_error(const char *cmd, int opt, char **argv)
{
    const char *arg = argv[optind - 1];

    if (opt == ':') {
        return usage_error("%s: option '%s' needs an argument", cmd, arg);
    }
    if (optopt) {
        return usage_error("%s: unknown option '-%c'", cmd, optopt);
    }
    return usage_error("%s: unknown option '%s'", cmd, arg);
}

/* @name with control characters escaped, for messages and listings */
static char *printable_name(const char *name)
{
    static char exceptions[129];

    if (!exceptions[0]) {
        /* Leave UTF-8, quotes and backslashes alone */
        for (int i = 0; i < 128; i++) {
            exceptions[i] = (char)(0x80 + i);
        }
        exceptions[127] = '"';
        exceptions[126] = '\\';
    }
    return g_strescape(name, exceptions);
}

/*
 * Put the input's own explanation (e.g. "zstd: Data corruption detected")
 * in place of the errno text of a failed archive read
 */
static void add_input_detail(GError *err, VmaInput *in)
{
    const char *detail = in ? vma_input_get_error(in) : NULL;
    const char *errno_text = g_strerror(EIO);
    char *msg;

    if (!err || !detail || !g_error_matches(err, VMA_ERROR, VMA_ERROR_IO)) {
        return;
    }
    if (g_str_has_suffix(err->message, errno_text)) {
        msg = g_strdup_printf("%.*s%s",
                              (int)(strlen(err->message) -
                                    strlen(errno_text)),
                              err->message, detail);
    } else {
        msg = g_strdup_printf("%s (%s)", err->message, detail);
    }
    g_free(err->message);
    err->message = msg;
}

/* ------------------------------------------------------------------------ */
/* Signals                                                                   */
/* ------------------------------------------------------------------------ */

static void on_terminate(int signo)
{
    vma_interrupted = signo;
}

static void setup_signals(void)
{
    struct sigaction sa = {
        .sa_handler = on_terminate,
        /* A second signal kills at once */
        .sa_flags = SA_RESETHAND,
    };

    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* Writing to a closed pipe is an error to report, not a reason to die */
    signal(SIGPIPE, SIG_IGN);
}

static bool check_interrupted(GError **errp)
{
    if (vma_interrupted) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_ABORTED, "interrupted");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Reading archives                                                          */
/* ------------------------------------------------------------------------ */

typedef struct ArchiveIn {
    VmaInput *input;
    VmaReader *reader;
} ArchiveIn;

static void archive_in_close(ArchiveIn *a)
{
    vma_reader_free(a->reader);
    vma_input_close(a->input);
    a->reader = NULL;
    a->input = NULL;
}

/* Open @path ("-": stdin) and read the archive header */
static bool archive_in_open(ArchiveIn *a, const char *path, GError **errp)
{
    a->input = vma_input_open(path, errp);
    if (!a->input) {
        return false;
    }
    a->reader = vma_reader_new(vma_input_read, a->input, errp);
    if (!a->reader) {
        add_input_detail(errp ? *errp : NULL, a->input);
        archive_in_close(a);
        return false;
    }
    return true;
}

/* Bytes of all streams: what a full pass over the archive delivers */
static uint64_t archive_total_bytes(VmaReader *r)
{
    uint64_t total = 0;

    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        total += vma_reader_get_device(r, i)->size;
    }
    return total;
}

static const VmaDeviceInfo *find_device_by_name(VmaReader *r,
                                                const char *name)
{
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);

        if (!strcmp(dev->name, name)) {
            return dev;
        }
    }
    return NULL;
}

static bool flush_stdout(GError **errp)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int err = errno;

        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "cannot write to stdout: %s", g_strerror(err));
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* vma list                                                                  */
/* ------------------------------------------------------------------------ */

/* The date as ctime(3) prints it, without the newline */
static char *format_ctime(int64_t ctime_s)
{
    time_t t = (time_t)ctime_s;
    struct tm tm;
    char buf[64];

    if ((int64_t)t != ctime_s || !localtime_r(&t, &tm) ||
        !strftime(buf, sizeof(buf), "%a %b %e %H:%M:%S %Y", &tm)) {
        return g_strdup_printf("%" PRId64 " (not a valid date)", ctime_s);
    }
    return g_strdup(buf);
}

static void list_human(VmaReader *r)
{
    g_autofree char *date = format_ctime(vma_reader_get_ctime(r));

    for (unsigned i = 0; i < vma_reader_get_config_count(r); i++) {
        const VmaConfigInfo *c = vma_reader_get_config(r, i);
        g_autofree char *name = printable_name(c->name);

        printf("CFG: size: %zu name: %s\n", c->len, name);
    }
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);
        g_autofree char *name = printable_name(dev->name);

        if (dev->is_vmstate) {
            printf("VMSTATE: dev_id=%u memory: %" PRIu64 "\n", dev->dev_id,
                   dev->size);
        } else {
            printf("DEV: dev_id=%u size: %" PRIu64 " devname: %s\n",
                   dev->dev_id, dev->size, name);
        }
    }
    printf("CTIME: %s\n", date);
}

/* Append @str as a JSON string; bytes that are not UTF-8 become U+FFFD */
static void json_append_string(GString *out, const char *str)
{
    g_autofree char *valid = NULL;

    if (!g_utf8_validate(str, -1, NULL)) {
        str = valid = g_utf8_make_valid(str, -1);
    }
    g_string_append_c(out, '"');
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        if (*p == '"' || *p == '\\') {
            g_string_append_c(out, '\\');
            g_string_append_c(out, *p);
        } else if (*p < 0x20 || *p == 0x7f) {
            g_string_append_printf(out, "\\u%04x", *p);
        } else {
            g_string_append_c(out, *p);
        }
    }
    g_string_append_c(out, '"');
}

static void list_json(VmaReader *r)
{
    g_autoptr(GString) out = g_string_new("{\"uuid\": ");
    uint8_t uuid[VMA_UUID_SIZE];
    char uuid_str[VMA_UUID_STR_SIZE];

    vma_reader_get_uuid(r, uuid);
    vma_uuid_unparse(uuid, uuid_str);
    json_append_string(out, uuid_str);
    g_string_append_printf(out, ", \"ctime\": %" PRId64 ", \"configs\": [",
                           vma_reader_get_ctime(r));
    for (unsigned i = 0; i < vma_reader_get_config_count(r); i++) {
        const VmaConfigInfo *c = vma_reader_get_config(r, i);

        g_string_append(out, i ? ", {\"name\": " : "{\"name\": ");
        json_append_string(out, c->name);
        g_string_append_printf(out, ", \"size\": %zu}", c->len);
    }
    g_string_append(out, "], \"devices\": [");
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);

        g_string_append_printf(out, "%s{\"dev_id\": %u, \"name\": ",
                               i ? ", " : "", dev->dev_id);
        json_append_string(out, dev->name);
        g_string_append_printf(out, ", \"size\": %" PRIu64 ", \"vmstate\": "
                               "%s}", dev->size,
                               dev->is_vmstate ? "true" : "false");
    }
    g_string_append(out, "]}\n");
    fputs(out->str, stdout);
}

static int cmd_list(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "output", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(GError) err = NULL;
    ArchiveIn a = { 0 };
    bool json = false;
    int opt;

    while ((opt = getopt_long(argc, argv, ":o:", long_options, NULL)) != -1) {
        switch (opt) {
        case 'o':
            if (!strcmp(optarg, "json")) {
                json = true;
            } else if (!strcmp(optarg, "human")) {
                json = false;
            } else {
                return usage_error("list: unknown output format '%s' "
                                   "(human or json)", optarg);
            }
            break;
        default:
            return option_error("list", opt, argv);
        }
    }
    if (argc - optind != 1) {
        return usage_error("list: expected one archive");
    }
    if (!archive_in_open(&a, argv[optind], &err)) {
        return report_error(err);
    }
    if (json) {
        list_json(a.reader);
    } else {
        list_human(a.reader);
    }
    archive_in_close(&a);
    if (!flush_stdout(&err)) {
        return report_error(err);
    }
    return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------------ */
/* vma config                                                                */
/* ------------------------------------------------------------------------ */

static int cmd_config(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    const char *name = DEFAULT_CONFIG;
    const VmaConfigInfo *config;
    ArchiveIn a = { 0 };
    int opt;

    while ((opt = getopt(argc, argv, ":c:")) != -1) {
        switch (opt) {
        case 'c':
            name = optarg;
            break;
        default:
            return option_error("config", opt, argv);
        }
    }
    if (argc - optind != 1) {
        return usage_error("config: expected one archive");
    }
    if (!archive_in_open(&a, argv[optind], &err)) {
        return report_error(err);
    }
    config = vma_reader_find_config(a.reader, name);
    if (!config) {
        g_autofree char *shown = printable_name(name);

        archive_in_close(&a);
        error_msg("no config '%s' in the archive", shown);
        return EXIT_FAILURE;
    }
    fwrite(config->data, 1, config->len, stdout);
    archive_in_close(&a);
    if (!flush_stdout(&err)) {
        return report_error(err);
    }
    return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------------ */
/* vma verify                                                                */
/* ------------------------------------------------------------------------ */

typedef struct VerifyJob {
    VmaProgress *progress;
    uint64_t done;
} VerifyJob;

static bool verify_cluster(void *opaque, const VmaDeviceInfo *dev,
                           uint64_t cluster_num, uint16_t mask,
                           const uint8_t *data, size_t len, GError **errp)
{
    VerifyJob *job = opaque;

    job->done += len;
    vma_progress_update(job->progress, job->done);
    return check_interrupted(errp);
}

static int cmd_verify(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    ArchiveIn a = { 0 };
    VerifyJob job = { 0 };
    bool verbose = false;
    bool ok;
    int opt;

    while ((opt = getopt(argc, argv, ":v")) != -1) {
        switch (opt) {
        case 'v':
            verbose = true;
            break;
        default:
            return option_error("verify", opt, argv);
        }
    }
    if (argc - optind != 1) {
        return usage_error("verify: expected one archive");
    }
    if (!archive_in_open(&a, argv[optind], &err)) {
        return report_error(err);
    }
    if (verbose) {
        job.progress = vma_progress_new("verify",
                                        archive_total_bytes(a.reader));
    }
    /* Without progress to report, no sink is needed at all */
    ok = vma_reader_run(a.reader, verbose ? verify_cluster : NULL, &job,
                        &err);
    if (ok) {
        vma_progress_finish(job.progress, job.done);
    } else {
        add_input_detail(err, a.input);
    }
    vma_progress_free(job.progress);
    archive_in_close(&a);
    return ok ? EXIT_SUCCESS : report_error(err);
}

/* ------------------------------------------------------------------------ */
/* vma create                                                                */
/* ------------------------------------------------------------------------ */

typedef struct CreateDevice {
    char *format;
    char *name;
    char *path;
    VmaSource *src;
    uint8_t dev_id;
    bool is_vmstate;
} CreateDevice;

typedef struct CreateJob {
    GPtrArray *config_paths;
    GPtrArray *devices;         /* of CreateDevice */
    VmaWriter *writer;
    const char *archive;        /* "-" for stdout */
    int fd;
    bool archive_created;       /* unlink it if we fail */
    uint8_t *buf;               /* CREATE_CHUNK_SIZE */
    uint8_t *out_buf;           /* CREATE_OUTPUT_BUFFER_SIZE */
    size_t out_len;
    VmaProgress *progress;
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
 * device is called disk<index>, as the reference tool does.
 */
static CreateDevice *parse_device_spec(const char *spec, unsigned index)
{
    CreateDevice *dev = g_new0(CreateDevice, 1);
    const char *rest = spec;
    const char *eq;

    if (g_str_has_prefix(spec, "format=")) {
        const char *colon = strchr(spec, ':');

        if (!colon) {
            create_device_free(dev);
            return NULL;
        }
        dev->format = g_strndup(spec + strlen("format="),
                                colon - spec - strlen("format="));
        rest = colon + 1;
    } else {
        dev->format = g_strdup(DEFAULT_FORMAT);
    }
    eq = strchr(rest, '=');
    if (eq) {
        dev->name = g_strndup(rest, eq - rest);
        dev->path = g_strdup(eq + 1);
    } else {
        dev->name = g_strdup_printf("disk%u", index);
        dev->path = g_strdup(rest);
    }
    if (!dev->format[0] || !dev->name[0] || !dev->path[0]) {
        create_device_free(dev);
        return NULL;
    }
    dev->is_vmstate = !strcmp(dev->name, VMA_VMSTATE_NAME);
    return dev;
}

static int create_add_device(CreateJob *job, const char *spec)
{
    CreateDevice *dev = parse_device_spec(spec, job->devices->len);

    if (!dev) {
        return usage_error("create: bad device '%s': expected "
                           "[format=<fmt>:]<devname>=<path>", spec);
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
                    "unknown format '%s' for device '%s' (known: %s)",
                    dev->format, dev->name, vma_known_formats());
        return false;
    }
    dev->src = ops->open(dev->path, errp);
    if (!dev->src) {
        return false;
    }
    if (dev->src->size == 0) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                    "device '%s' (%s) is empty", dev->name, dev->path);
        return false;
    }
    if (dev->is_vmstate) {
        dev->dev_id = vma_writer_register_vmstate(job->writer, dev->src->size,
                                                  errp);
    } else {
        dev->dev_id = vma_writer_register_stream(job->writer, dev->name,
                                                 dev->src->size, errp);
    }
    return dev->dev_id != 0;
}

/* All of @buf, whatever write() does; 0 or a negative errno */
static int write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR && !vma_interrupted) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        p += n;
        len -= n;
    }
    return 0;
}

static int create_flush_output(CreateJob *job)
{
    int ret = write_full(job->fd, job->out_buf, job->out_len);

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
        return ret < 0 ? ret : write_full(job->fd, buf, len);
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
    uint64_t size = dev->src->size;

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

/* Read clusters [@first, @end) in chunks and hand them to the writer */
static bool create_copy_data(CreateJob *job, CreateDevice *dev,
                             uint64_t first, uint64_t end, GError **errp)
{
    const uint64_t chunk_clusters = CREATE_CHUNK_SIZE / VMA_CLUSTER_SIZE;
    uint64_t size = dev->src->size;

    for (uint64_t c = first; c < end; c += chunk_clusters) {
        uint64_t offset = c * VMA_CLUSTER_SIZE;
        uint64_t n = MIN(chunk_clusters, end - c);
        size_t len = MIN(n * VMA_CLUSTER_SIZE, size - offset);

        if (!check_interrupted(errp) ||
            !dev->src->ops->read(dev->src, offset, job->buf, len, errp)) {
            return false;
        }
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
        vma_progress_update(job->progress, job->done);
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
    uint64_t size = dev->src->size;
    uint64_t clusters = size / VMA_CLUSTER_SIZE + !!(size % VMA_CLUSTER_SIZE);
    uint64_t c = 0;

    while (c < clusters) {
        uint64_t offset = c * VMA_CLUSTER_SIZE;
        uint64_t end, end_cluster;
        bool is_data;

        if (!check_interrupted(errp) ||
            !dev->src->ops->next_extent(dev->src, offset, &is_data, &end,
                                        errp)) {
            return false;
        }
        if (!is_data) {
            end_cluster = end >= size ? clusters : end / VMA_CLUSTER_SIZE;
            if (end_cluster > c) {
                if (!create_write_zeroes(job, dev, c, end_cluster - c,
                                         errp)) {
                    return false;
                }
                job->done += MIN(end_cluster * VMA_CLUSTER_SIZE, size) -
                             offset;
                vma_progress_update(job->progress, job->done);
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

/* Open the sources and register everything: nothing is written yet */
static bool create_prepare(CreateJob *job, GError **errp)
{
    uint8_t uuid[VMA_UUID_SIZE];

    uuid_generate(uuid);
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
    if (!strcmp(job->archive, "-")) {
        if (isatty(STDOUT_FILENO)) {
            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                        "refusing to write an archive to a terminal");
            return false;
        }
        job->fd = STDOUT_FILENO;
        return true;
    }
    /* Never O_DIRECT: it fails on tmpfs and loses data on pipes */
    job->fd = open(job->archive, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                   0666);
    if (job->fd < 0) {
        int err = errno;

        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "cannot create '%s': %s", job->archive, g_strerror(err));
        return false;
    }
    job->archive_created = true;
    return true;
}

static bool create_close_archive(CreateJob *job, GError **errp)
{
    int fd = job->fd;
    int err = -create_flush_output(job);

    job->fd = -1;
    if (fd != STDOUT_FILENO && close(fd) < 0 && !err) {
        err = errno;
    }
    if (err) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "writing the archive failed: %s", g_strerror(err));
        return false;
    }
    return true;
}

static uint64_t create_total_bytes(CreateJob *job)
{
    uint64_t total = 0;

    for (unsigned i = 0; i < job->devices->len; i++) {
        CreateDevice *dev = job->devices->pdata[i];

        total += dev->src->size;
    }
    return total;
}

static bool create_run(CreateJob *job, bool verbose, GError **errp)
{
    if (!create_prepare(job, errp) || !create_open_archive(job, errp)) {
        return false;
    }
    if (verbose) {
        job->progress = vma_progress_new("create", create_total_bytes(job));
    }
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
    return true;
}

static void create_cleanup(CreateJob *job, bool ok)
{
    if (job->fd >= 0 && job->fd != STDOUT_FILENO) {
        close(job->fd);
    }
    if (!ok && job->archive_created) {
        unlink(job->archive);
    }
    vma_writer_free(job->writer);
    vma_progress_free(job->progress);
    g_ptr_array_unref(job->devices);
    g_ptr_array_unref(job->config_paths);
    g_free(job->buf);
    g_free(job->out_buf);
}

static int cmd_create(int argc, char **argv)
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
           (opt = getopt(argc, argv, ":vc:d:")) != -1) {
        switch (opt) {
        case 'v':
            verbose = true;
            break;
        case 'c':
            g_ptr_array_add(job.config_paths, optarg);
            break;
        case 'd':
            ret = create_add_device(&job, optarg);
            break;
        default:
            ret = option_error("create", opt, argv);
        }
    }
    if (ret == EXIT_SUCCESS && optind >= argc) {
        ret = usage_error("create: expected an archive");
    }
    if (ret == EXIT_SUCCESS) {
        job.archive = argv[optind];
        /* The reference tool's form: devices as positional arguments */
        for (int i = optind + 1; i < argc && ret == EXIT_SUCCESS; i++) {
            ret = create_add_device(&job, argv[i]);
        }
    }
    if (ret == EXIT_SUCCESS && !create_run(&job, verbose, &err)) {
        ret = report_error(err);
    }
    create_cleanup(&job, ret == EXIT_SUCCESS);
    return ret;
}

/* ------------------------------------------------------------------------ */
/* vma extract                                                               */
/* ------------------------------------------------------------------------ */

typedef struct ExtractJob {
    VmaReader *reader;
    const char *dir;
    int dirfd;
    bool dir_created;
    bool selected[VMA_MAX_DEVICES];     /* by dev_id */
    VmaTarget *targets[VMA_MAX_DEVICES];
    GPtrArray *files;                   /* written into dir, for cleanup */
    VmaProgress *progress;
    uint64_t done;
} ExtractJob;

/* Select the devices named in the comma separated lists of @names */
static bool extract_select(ExtractJob *job, GPtrArray *names, GError **errp)
{
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
            dev = find_device_by_name(job->reader, *name);
            if (!dev) {
                g_autofree char *shown = printable_name(*name);

                g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                            "no device '%s' in the archive", shown);
                return false;
            }
            job->selected[dev->dev_id] = true;
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
    shown = printable_name(name);
    g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                "refusing to extract: %s name '%s' is not usable as a file "
                "name", what, shown);
    return false;
}

/* The file a device is extracted to */
static char *extract_file_name(const VmaDeviceInfo *dev)
{
    if (dev->is_vmstate) {
        return g_strdup(VMSTATE_FILE);
    }
    return g_strdup_printf("disk-%s.raw", dev->name);
}

/* Every name that becomes a path must be harmless and unique */
static bool extract_check_names(ExtractJob *job, GError **errp)
{
    VmaReader *r = job->reader;
    g_autoptr(GHashTable) files = g_hash_table_new_full(g_str_hash,
                                                        g_str_equal,
                                                        g_free, NULL);

    for (unsigned i = 0; i < vma_reader_get_config_count(r); i++) {
        const VmaConfigInfo *c = vma_reader_get_config(r, i);

        if (!refuse_unsafe_name("config", c->name, errp)) {
            return false;
        }
        g_hash_table_add(files, g_strdup(c->name));
    }
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);
        char *file;

        if (!job->selected[dev->dev_id]) {
            continue;
        }
        if (!refuse_unsafe_name("device", dev->name, errp)) {
            return false;
        }
        file = extract_file_name(dev);
        if (!g_hash_table_add(files, file)) {
            g_autofree char *shown = printable_name(file);

            g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                        "refusing to extract: config '%s' has the name of "
                        "the file of device '%s'", shown, dev->name);
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

static bool extract_create_targets(ExtractJob *job, GError **errp)
{
    const VmaTargetOps *ops = vma_find_target_ops(DEFAULT_FORMAT);
    VmaReader *r = job->reader;

    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);
        g_autofree char *file = NULL;

        if (!job->selected[dev->dev_id]) {
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
    }
    return true;
}

/* Write a disk cluster: the stored blocks, in runs; the rest is zero */
static bool extract_write_disk_cluster(VmaTarget *t, uint64_t offset,
                                       uint16_t mask, const uint8_t *data,
                                       size_t len, GError **errp)
{
    unsigned i = 0;

    if (mask == 0) {
        return t->ops->write_zeroes(t, offset, len, errp);
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
    VmaTarget *t = job->targets[dev->dev_id];
    uint64_t offset = cluster_num * VMA_CLUSTER_SIZE;

    job->done += len;
    vma_progress_update(job->progress, job->done);
    if (!check_interrupted(errp)) {
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
    return extract_write_disk_cluster(t, offset, mask, data, len, errp);
}

/* Move every target into place; the first failure stops */
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
        g_ptr_array_add(job->files,
                        extract_file_name(vma_reader_find_device(job->reader,
                                                                 id)));
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
    vma_progress_free(job->progress);
}

static bool extract_run(ExtractJob *job, GPtrArray *names, bool verbose,
                        VmaInput *input, GError **errp)
{
    bool ok;

    if (!extract_select(job, names, errp) ||
        !extract_check_names(job, errp) ||
        !extract_make_dir(job, errp) ||
        !extract_write_configs(job, errp) ||
        !extract_create_targets(job, errp)) {
        return false;
    }
    if (verbose) {
        job->progress = vma_progress_new("extract",
                                         archive_total_bytes(job->reader));
    }
    ok = vma_reader_run(job->reader, extract_cluster, job, errp);
    if (!ok) {
        add_input_detail(*errp, input);
        return false;
    }
    if (!extract_commit(job, errp)) {
        return false;
    }
    vma_progress_finish(job->progress, job->done);
    return true;
}

static int cmd_extract(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    ExtractJob job = { .dirfd = -1 };
    ArchiveIn a = { 0 };
    bool verbose = false;
    bool ok;
    int opt;

    while ((opt = getopt(argc, argv, ":vd:")) != -1) {
        switch (opt) {
        case 'v':
            verbose = true;
            break;
        case 'd':
            g_ptr_array_add(names, optarg);
            break;
        default:
            return option_error("extract", opt, argv);
        }
    }
    if (argc - optind != 2) {
        return usage_error("extract: expected an archive and a target "
                           "directory");
    }
    if (!archive_in_open(&a, argv[optind], &err)) {
        return report_error(err);
    }
    job.reader = a.reader;
    job.dir = argv[optind + 1];
    job.files = g_ptr_array_new_with_free_func(g_free);
    ok = extract_run(&job, names, verbose, a.input, &err);
    extract_cleanup(&job, ok);
    archive_in_close(&a);
    return ok ? EXIT_SUCCESS : report_error(err);
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    { "list", cmd_list },
    { "config", cmd_config },
    { "create", cmd_create },
    { "extract", cmd_extract },
    { "verify", cmd_verify },
};

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    if (!cmd) {
        return usage_error("no command given");
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") ||
        !strcmp(cmd, "-h")) {
        print_usage(stdout);
        return EXIT_SUCCESS;
    }
    setup_signals();
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (!strcmp(cmd, commands[i].name)) {
            /* Options parse from argv[1], the command, as argv[0] */
            opterr = 0;
            optind = 1;
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    return usage_error("unknown command '%s'", cmd);
}
