/*
 * vma tool: the back ends the copy loops read from and write to
 *
 * A source is something a disk is read from by `vma create`; a target is
 * something a disk is restored to by `vma extract`.  Each kind of source or
 * target (raw file; QEMU BlockBackend in the QEMU build) is one table of
 * function pointers in its own file.  The front end finds a table by format
 * name and never looks behind it.
 *
 * Every back end object starts with the common VmaSource / VmaTarget struct,
 * so a back end casts the pointer it gets back to its own type.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_OPS_H
#define VMA_OPS_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

/* ------------------------------------------------------------------------ */
/* Sources                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct VmaSourceOps VmaSourceOps;

typedef struct VmaSource {
    const VmaSourceOps *ops;
    char *name;         /* what to call it in messages; owned by the source */
    uint64_t size;      /* bytes, fixed once opened */
} VmaSource;

struct VmaSourceOps {
    const char *format;

    /* Open @path for reading and fill in the common fields */
    VmaSource *(*open)(const char *path, GError **errp);

    /* Read exactly @len bytes at @offset (the range lies inside the source) */
    bool (*read)(VmaSource *src, uint64_t offset, void *buf, size_t len,
                 GError **errp);

    /*
     * Describe the extent starting at @offset (< size): set *@is_data to
     * whether it may hold data (false: it reads as zeroes) and *@end to
     * where it ends (> @offset, at most size).  A back end that cannot tell
     * reports everything as data.
     */
    bool (*next_extent)(VmaSource *src, uint64_t offset, bool *is_data,
                        uint64_t *end, GError **errp);

    void (*close)(VmaSource *src);
};

/* ------------------------------------------------------------------------ */
/* Targets                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct VmaTargetOps VmaTargetOps;

typedef struct VmaTarget {
    const VmaTargetOps *ops;
    char *name;         /* what to call it in messages; owned by the target */
    uint64_t size;      /* bytes; 0: a stream whose length is what is written */
} VmaTarget;

struct VmaTargetOps {
    const char *format;

    /*
     * Create the target @path (relative to directory @dirfd, which may be
     * AT_FDCWD) for @size bytes; a new target reads as zeroes.  What @path
     * means is up to the back end.  The result must not appear complete
     * under @path before close() commits it.
     */
    VmaTarget *(*create)(int dirfd, const char *path, uint64_t size,
                         GError **errp);

    /* Write @len bytes at @offset (inside size, unless size is 0) */
    bool (*write)(VmaTarget *t, uint64_t offset, const void *buf, size_t len,
                  GError **errp);

    /* Make @len bytes at @offset read as zero */
    bool (*write_zeroes)(VmaTarget *t, uint64_t offset, uint64_t len,
                         GError **errp);

    /* Push out whatever is buffered */
    bool (*flush)(VmaTarget *t, GError **errp);

    /*
     * Free the target.  With @commit, flush and make it appear under its
     * path (an error then leaves nothing behind); without, remove whatever
     * create() made and never fail.
     */
    bool (*close)(VmaTarget *t, bool commit, GError **errp);
};

/* ------------------------------------------------------------------------ */
/* Registry                                                                  */
/* ------------------------------------------------------------------------ */

/* The back end for @format, or NULL if this build has none */
const VmaSourceOps *vma_find_source_ops(const char *format);
const VmaTargetOps *vma_find_target_ops(const char *format);

/* Comma separated formats this build knows, for messages */
const char *vma_known_formats(void);

/* Back ends (only the registry refers to these) */
extern const VmaSourceOps vma_source_raw_ops;
extern const VmaTargetOps vma_target_raw_ops;

/* ------------------------------------------------------------------------ */
/* Interrupts                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Set by the front end's SIGINT/SIGTERM handler.  Loops that may block
 * (reads, writes) stop retrying EINTR once it is set, so that the command
 * can clean up instead of dying halfway.
 */
extern volatile sig_atomic_t vma_interrupted;

#endif /* VMA_OPS_H */
