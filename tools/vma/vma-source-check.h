/*
 * vma tool: what `vma create` checks about a source before opening it
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_SOURCE_CHECK_H
#define VMA_SOURCE_CHECK_H

#include <stdbool.h>
#include <glib.h>

/*
 * A local path must be a regular file or a block device: a FIFO would block
 * open() and could be read once only, a character device (/dev/zero) has
 * no size.  Paths that do not exist locally (nbd://, rbd: ...) pass: the
 * back end decides.
 */
bool vma_source_check_kind(const char *path, GError **errp);

/*
 * What the first bytes of @path announce ("a qcow2 image", "a VMA archive"
 * ...) or NULL.  Only for refusing: a source given without a format is read as
 * raw, and one that looks like another format is refused rather than
 * archived as its container bytes or, worse, guessed.
 */
const char *vma_source_looks_like(const char *path);

#endif /* VMA_SOURCE_CHECK_H */
