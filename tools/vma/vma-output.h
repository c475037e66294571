/*
 * vma tool: where `vma create` writes the archive
 *
 * As the reference tool: a new file (never an existing one), stdout ("-"),
 * an existing FIFO, or "exec:<command>", a shell command that gets the
 * archive on its stdin (e.g. "exec:zstd -q -o backup.vma.zst").
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_OUTPUT_H
#define VMA_OUTPUT_H

#include <stdbool.h>
#include <glib.h>

typedef struct VmaOutput VmaOutput;

/* Open @target for writing; nothing is written yet */
VmaOutput *vma_output_open(const char *target, GError **errp);

/* The file descriptor to write the archive to */
int vma_output_fd(VmaOutput *out);

/*
 * All of @buf to @fd, whatever write() does (EINTR retried unless the
 * user interrupted); 0 or a negative errno
 */
int vma_write_full(int fd, const void *buf, size_t len);

/*
 * After a failed write to an exec: command: wait for the command and, if
 * it failed, put why in front of @err's message (a command that exits
 * early is the cause of the broken pipe, not its effect)
 */
void vma_output_explain(VmaOutput *out, GError *err);

/*
 * Close and free @out.  With @commit, fail if closing or the command
 * failed.  Without, remove a file we created (a FIFO, stdout or a command
 * just get their end of file) and never fail.
 */
bool vma_output_close(VmaOutput *out, bool commit, GError **errp);

#endif /* VMA_OUTPUT_H */
