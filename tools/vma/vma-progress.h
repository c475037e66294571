/*
 * vma tool: human progress on stderr when it is a terminal
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_PROGRESS_H
#define VMA_PROGRESS_H

#include <stdint.h>
#include <glib.h>

typedef struct VmaProgress VmaProgress;

/*
 * Report progress of @what (e.g. "extract") towards @total bytes; 0 means
 * the total is unknown.  NULL when stderr is not a terminal; every function
 * accepts NULL (no reports).
 */
VmaProgress *vma_progress_new(const char *what, uint64_t total);
void vma_progress_free(VmaProgress *p);

/* @done bytes so far; rewrites the line at most twice a second */
void vma_progress_update(VmaProgress *p, uint64_t done);

/* Print the final line, after a success: @done is then the whole total */
void vma_progress_finish(VmaProgress *p, uint64_t done);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaProgress, vma_progress_free)

#endif /* VMA_PROGRESS_H */
