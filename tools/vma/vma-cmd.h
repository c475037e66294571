/*
 * vma tool: what the command implementations share
 *
 * vma.c holds main(), the usage text and the helpers declared here; each
 * command lives in its own file (vma-list.c, vma-create.c, vma-extract.c).
 * Errors travel as GError up to the command, which reports them once.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_CMD_H
#define VMA_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include "block/vma.h"
#include "vma-input.h"

/* Exit statuses besides 0 and EXIT_FAILURE, as the reference tool has them */
#define VMA_EXIT_USAGE          1
#define VMA_EXIT_NO_CONFIG      255
#define VMA_DEFAULT_CONFIG      "qemu-server.conf"
#define VMA_VMSTATE_FILE        "vmstate.bin"

/* ------------------------------------------------------------------------ */
/* Commands                                                                  */
/* ------------------------------------------------------------------------ */

/* argv[0] is the command name; the result is the exit status */
int vma_cmd_list(int argc, char **argv);
int vma_cmd_config(int argc, char **argv);
int vma_cmd_create(int argc, char **argv);
int vma_cmd_extract(int argc, char **argv);
int vma_cmd_verify(int argc, char **argv);
/* vma-merge.c */
int vma_cmd_merge(int argc, char **argv);
/* vma-mount.c */
int vma_cmd_mount(int argc, char **argv);
int vma_cmd_umount(int argc, char **argv);
int vma_cmd_serve(int argc, char **argv);

/* The `vma list` output, also printed by `extract -r` */
void vma_list_print_human(VmaReader *r);

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

/* Print "vma: <message>" on stderr */
void vma_cmd_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/*
 * Report a failed command and return its exit status.  An interrupted
 * command says so rather than whatever system call noticed the signal.
 */
int vma_cmd_fail(const GError *err);

/* Print the usage text on stdout (-h, help); returns the exit status */
int vma_cmd_help(void);

/* Report a command line error with the usage text; returns the status */
int vma_cmd_usage_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/*
 * Describe a getopt() failure (optstring started with ':'), or print the
 * help for -h (every command's optstring has 'h')
 */
int vma_cmd_option_error(const char *cmd, int opt, char **argv);

/* @name with control characters escaped, for messages and listings */
char *vma_printable_name(const char *name);

/*
 * Put the input's own explanation (e.g. "zstd: Data corruption detected")
 * in place of the errno text of a failed archive read
 */
void vma_add_input_detail(GError *err, VmaInput *in);

/* False with an error once SIGINT/SIGTERM/SIGHUP arrived */
bool vma_check_interrupted(GError **errp);

/* fflush(stdout), as an error if it or an earlier write failed */
bool vma_flush_stdout(GError **errp);

/* ------------------------------------------------------------------------ */
/* Reading archives                                                          */
/* ------------------------------------------------------------------------ */

typedef struct VmaArchiveIn {
    VmaInput *input;
    VmaReader *reader;
} VmaArchiveIn;

/* Open @path ("-": stdin) and read the archive header */
bool vma_archive_open(VmaArchiveIn *a, const char *path, GError **errp);
void vma_archive_close(VmaArchiveIn *a);

/* Bytes of all streams: what a full pass over the archive delivers */
uint64_t vma_archive_total_bytes(VmaReader *r);

const VmaDeviceInfo *vma_find_device_by_name(VmaReader *r, const char *name);

#endif /* VMA_CMD_H */
