/*
 * vma tool: the back ends the copy loops read from and write to
 *
 * A source is something a disk is read from by `vma create`; a target is
 * something a disk is restored to by `vma extract`.  Each kind of source or
 * target (raw file; QEMU BlockBackend in the QEMU build) is one table of
 * function pointers in its own file.  The build registers its tables by
 * format name (vma-standalone.c or vma-qemu.c); the front end finds a table
 * by format name and never looks behind it.
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
    /* Open @path, an image of @format, for reading; fill in the common part */
    VmaSource *(*open)(const char *format, const char *path, GError **errp);

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
    /*
     * True: write() only the stored 4 KiB blocks of a cluster and
     * write_zeroes() the others, keeping them sparse.  False: write whole
     * clusters, zero blocks included (what formats with larger clusters
     * prefer); write_zeroes() then only gets whole zero clusters.
     */
    bool sparse_blocks;
} VmaTarget;

/* How to open an existing target (a line of the restore map) */
typedef struct VmaTargetOptions {
    bool zero_known;        /* it reads as zeroes: write_zeroes() can skip */
    uint64_t bps;           /* write limit in bytes per second, 0: none */
    const char *group;      /* throttling group shared with others, or NULL */
    const char *cache;      /* QEMU cache mode, or NULL for the default */
} VmaTargetOptions;

struct VmaTargetOps {
    /*
     * Create the new file @path (relative to directory @dirfd, which may
     * be AT_FDCWD) for @size bytes; it reads as zeroes.  The result must
     * not appear complete under @path before close() commits it.  NULL in
     * back ends that only open existing targets.
     */
    VmaTarget *(*create)(int dirfd, const char *path, uint64_t size,
                         GError **errp);

    /*
     * Open the existing target @path of @format (a file, a block device,
     * or whatever the back end reaches) for writing; its size is what it
     * is.  NULL in back ends that only create files.
     */
    VmaTarget *(*open)(const char *format, const char *path,
                       const VmaTargetOptions *opts, GError **errp);

    /* Write @len bytes at @offset (inside size, unless size is 0) */
    bool (*write)(VmaTarget *t, uint64_t offset, const void *buf, size_t len,
                  GError **errp);

    /* Make @len bytes at @offset read as zero */
    bool (*write_zeroes)(VmaTarget *t, uint64_t offset, uint64_t len,
                         GError **errp);

    /* Push out whatever is buffered */
    bool (*flush)(VmaTarget *t, GError **errp);

    /*
     * Free the target.  With @commit, write out everything, make it
     * durable and (for create()) make it appear under its path: an error
     * then leaves nothing behind that looks complete.  Without, remove
     * whatever create() made (an opened target keeps what was written) and
     * never fail.
     */
    bool (*close)(VmaTarget *t, bool commit, GError **errp);
};

/* ------------------------------------------------------------------------ */
/* Registry                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Register @ops under the name @format, or (_fallback) for every other
 * format that @accepts, described as @what in messages (e.g. "any other
 * format QEMU opens").  Of two back ends for a format, the first registered
 * wins.
 */
void vma_register_source(const char *format, const VmaSourceOps *ops);
void vma_register_target(const char *format, const VmaTargetOps *ops);
void vma_register_source_fallback(bool (*accepts)(const char *format),
                                  const char *what, const VmaSourceOps *ops);
void vma_register_target_fallback(bool (*accepts)(const char *format),
                                  const char *what, const VmaTargetOps *ops);

/* The back end for @format, or NULL if this build has none */
const VmaSourceOps *vma_find_source_ops(const char *format);
/* Same for targets: one that can create() new files, or open() existing */
const VmaTargetOps *vma_find_target_ops(const char *format, bool create);

/*
 * The formats this build knows, for messages ("raw, qcow2, ..."); for
 * targets, those the restore map can name
 */
const char *vma_known_source_formats(void);
const char *vma_known_target_formats(void);

/* ------------------------------------------------------------------------ */
/* The build: vma-qemu.c (QEMU's block layer) or vma-standalone.c            */
/* ------------------------------------------------------------------------ */

/*
 * Start whatever the back ends need and register them.  main() calls it
 * first.
 */
bool vma_backends_init(const char *argv0, GError **errp);

/* The format of a `create` device spec without format=; NULL: required */
const char *vma_default_source_format(void);

/*
 * What to add to "unknown format" messages: where the other formats are
 * (the standalone build points to the QEMU build), or ""
 */
const char *vma_unknown_format_hint(void);

/* The format of disks `extract` writes into its directory */
#define VMA_EXTRACT_FORMAT  "raw"

/* Back ends (only the build's registration refers to these) */
extern const VmaSourceOps vma_source_raw_ops;
extern const VmaTargetOps vma_target_raw_ops;
extern const VmaSourceOps vma_source_blk_ops;
extern const VmaTargetOps vma_target_blk_ops;

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
