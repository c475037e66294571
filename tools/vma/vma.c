/*
 * vma: list, verify, create and extract VMA backup archives
 *
 * The command line is compatible with Proxmox VE's `vma` tool.  This file
 * is the front end's core: main(), the usage text, the helpers all commands
 * share (vma-cmd.h) and the command dispatch.  The commands live in
 * vma-list.c, vma-create.c and vma-extract.c.  Disks are read and written
 * through the back ends of vma-ops.h, archives are read through vma-input.h
 * (plain, gzip, zstd, from a file or a pipe).
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vma-cmd.h"
#include "vma-ops.h"

volatile sig_atomic_t vma_interrupted;

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

static void print_usage(FILE *f)
{
    fprintf(f,
"usage: vma command [command options]\n"
"\n"
"vma list [--output=human|json] <filename>\n"
"vma config <filename> [-c <config>]\n"
"vma create <filename> [-v] [-c <config>]...\n"
"           [-d format=<format>:<device name>=<path>]...\n"
"vma extract <filename>... [-v] [-d <drive-list>]... [-r <fifo>] <targetdir>\n"
"vma verify <filename>... [-v]\n"
"vma merge <full> <incremental>... -o <new archive>\n"
"vma mount <filename>... <dir>, vma umount <dir>\n"
"vma serve <filename>... --socket <path> | --tcp <host>:<port> [--pidfile <f>]\n"
"vma help, vma <command> -h\n"
"\n"
"<filename> '-' is stdin (stdout for create); archives are read plain, gzip\n"
"or zstd compressed.  create also writes to an existing FIFO or, with\n"
"'exec:<command>', into the stdin of a shell command.  'config' prints\n"
"%s unless -c names another config.\n"
"\n"
"Backup chains: extract, verify, mount and serve also take a full archive\n"
"followed by its incrementals, in order (extract, verify: each read once;\n"
"one may be '-'): extract restores, mount and serve show the newest state.\n"
"merge writes that state as one full archive.\n"
"All links are checked before anything is written.\n"
"\n", VMA_DEFAULT_CONFIG);
    fprintf(f,
"create: -d format=<format>:<devname>=<path>, formats: %s.  The old form,\n"
"<devname>=<path> or <path> after the archive (named disk<N>), is\n"
"deprecated: it is read as raw and refused when it looks like another image\n"
"format (images are never probed).  The device name 'vmstate' stores the\n"
"RAM state.  A disk whose size is not a multiple of 512 is padded with\n"
"zeroes to the next multiple.\n"
"\n"
"extract writes configs, the RAM state (vmstate.bin) and, without -r, the\n"
"disks (disk-<devname>.raw) into <targetdir>, which it creates.  With -r it\n"
"writes the configs, prints the listing of 'vma list', then reads one line\n"
"per disk from <fifo> (a file, FIFO or '-') up to its end, an empty line\n"
"or 'done':\n"
"  [format=<fmt>:][throttling.bps=<n>:][throttling.group=<g>:]"
"[cache=<mode>:]\n"
"      {0|1}:<devname>=<target>   restore the disk into <target>, which\n"
"                                 exists (0: reads as zeroes, 1: write them)\n"
"  skip=<devname>                 do not restore the disk\n"
"Every disk selected (-d, default all) needs a line.  Target formats\n"
"(default raw, never probed): %s.\n"
"\n"
"-v prints the reference tool's progress lines (extract, verify: stdout;\n"
"create: stderr), and a progress line with rate and ETA on stderr when it\n"
"is a terminal.  Exit status: 0 success, 1 error (usage: this text on\n"
"stdout), 255 'config' without that config, 128+N stopped by signal N.\n",
            vma_known_source_formats(), vma_known_target_formats());
    fprintf(f,
"\n"
"mount shows each disk of an uncompressed archive, read-only, as\n"
"<dir>/<devname>.raw and each partition of its MBR or GPT as\n"
"<dir>/<devname>-part<N>.raw (qemu-storage-daemon FUSE exports, in the\n"
"background until 'vma umount <dir>'); serve exports them over NBD under\n"
"those names (without .raw), until stopped.  Neither extracts anything.\n");
}

int vma_cmd_help(void)
{
    print_usage(stdout);
    return vma_flush_stdout(NULL) ? EXIT_SUCCESS : EXIT_FAILURE;
}

void vma_cmd_error(const char *fmt, ...)
{
    va_list ap;

    fputs("vma: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int vma_cmd_fail(const GError *err)
{
    if (vma_interrupted) {
        vma_cmd_error("interrupted");
        return 128 + vma_interrupted;
    }
    vma_cmd_error("%s", err ? err->message : "unknown error");
    return EXIT_FAILURE;
}

int vma_cmd_usage_error(const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    vma_cmd_error("%s", msg);
    /* As the reference tool: the usage text on stdout, exit status 1 */
    print_usage(stdout);
    fflush(stdout);
    return VMA_EXIT_USAGE;
}

int vma_cmd_option_error(const char *cmd, int opt, char **argv)
{
    const char *arg = argv[optind - 1];

    if (opt == 'h') {
        return vma_cmd_help();
    }
    if (opt == ':') {
        return vma_cmd_usage_error("%s: option '%s' needs an argument", cmd,
                                   arg);
    }
    if (optopt) {
        return vma_cmd_usage_error("%s: unknown option '-%c'", cmd, optopt);
    }
    return vma_cmd_usage_error("%s: unknown option '%s'", cmd, arg);
}

char *vma_printable_name(const char *name)
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

void vma_add_input_detail(GError *err, VmaInput *in)
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

bool vma_flush_stdout(GError **errp)
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

bool vma_check_interrupted(GError **errp)
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

void vma_archive_close(VmaArchiveIn *a)
{
    vma_reader_free(a->reader);
    vma_input_close(a->input);
    a->reader = NULL;
    a->input = NULL;
}

bool vma_archive_open(VmaArchiveIn *a, const char *path, GError **errp)
{
    a->input = vma_input_open(path, errp);
    if (!a->input) {
        return false;
    }
    a->reader = vma_reader_new(vma_input_read, a->input, errp);
    if (!a->reader) {
        vma_add_input_detail(errp ? *errp : NULL, a->input);
        vma_archive_close(a);
        return false;
    }
    return true;
}

uint64_t vma_archive_total_bytes(VmaReader *r)
{
    uint64_t total = 0;

    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        total += vma_reader_get_device(r, i)->size;
    }
    return total;
}

const VmaDeviceInfo *vma_find_device_by_name(VmaReader *r, const char *name)
{
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);

        if (!strcmp(dev->name, name)) {
            return dev;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    { "list", vma_cmd_list },
    { "config", vma_cmd_config },
    { "create", vma_cmd_create },
    { "extract", vma_cmd_extract },
    { "verify", vma_cmd_verify },
    { "merge", vma_cmd_merge },
    { "mount", vma_cmd_mount },
    { "umount", vma_cmd_umount },
    { "serve", vma_cmd_serve },
};

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    const char *cmd = argc > 1 ? argv[1] : NULL;

    /* Before anything else: the QEMU build starts its block layer here */
    if (!vma_backends_init(argv[0], &err)) {
        return vma_cmd_fail(err);
    }
    if (!cmd) {
        return vma_cmd_usage_error("no command given");
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") ||
        !strcmp(cmd, "-h")) {
        return vma_cmd_help();
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
    return vma_cmd_usage_error("unknown command '%s'", cmd);
}
