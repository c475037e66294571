/*
 * vma tool: archive input, plain or compressed
 *
 * Opens an archive file or stdin and recognizes gzip and zstd compression by
 * the first bytes, so `vma` reads `vzdump` style .vma.gz / .vma.zst archives
 * directly.  Reads strictly sequentially: pipes work.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_INPUT_H
#define VMA_INPUT_H

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <glib.h>

typedef struct VmaInput VmaInput;

/* Open @path, or stdin for "-", and find out how it is compressed */
VmaInput *vma_input_open(const char *path, GError **errp);
void vma_input_close(VmaInput *in);

/* A VmaInputFunc: pass vma_input_read and the VmaInput to vma_reader_new() */
ssize_t vma_input_read(void *opaque, void *buf, size_t len);

/* fstat() of what is read (a file, or stdin); false if that fails */
bool vma_input_stat(VmaInput *in, struct stat *st);

/* "plain", "gzip" or "zstd" */
const char *vma_input_get_compression(VmaInput *in);

/*
 * Why the last vma_input_read() failed, beyond its errno (e.g. "zstd:
 * Corrupted block detected"), or NULL
 */
const char *vma_input_get_error(VmaInput *in);

#endif /* VMA_INPUT_H */
