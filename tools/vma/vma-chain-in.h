/*
 * vma tool: opening a chain of archives (a full backup and incrementals)
 *
 * Opens every archive of a chain given oldest first, reads all their
 * headers and checks every link before anything is written: the first is
 * the full (depth 0), each next one is the incremental whose base is the
 * previous one, and every disk an incremental leaves clusters out of is in
 * the previous archive with the same size.  The data is then read archive
 * by archive, each once, front to back: one of them may be stdin.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMA_CHAIN_IN_H
#define VMA_CHAIN_IN_H

#include "vma-cmd.h"

typedef struct VmaChainIn {
    unsigned count;
    char **paths;               /* count, oldest first (not owned) */
    VmaArchiveIn *archives;     /* count */
    VmaChainInfo **info;        /* count; NULL: the archive has no blob */
} VmaChainIn;

/*
 * Open @count archives.  A single archive may be anything (a plain full
 * one, or one incremental on its own if @allow_lone_incremental: verify);
 * several must form a chain.  Incremental disks may miss clusters.
 */
bool vma_chain_in_open(VmaChainIn *c, char **paths, unsigned count,
                       bool allow_lone_incremental, GError **errp);
void vma_chain_in_close(VmaChainIn *c);

/* The newest archive's reader: the state a restore or merge produces */
VmaReader *vma_chain_in_newest(VmaChainIn *c);

/*
 * The oldest archive whose clusters of disk @name count for the newest
 * state: the newest one in which it is full (its earlier copies are
 * outdated).  count if the newest archive has no such disk.
 */
unsigned vma_chain_in_first_for(VmaChainIn *c, const char *name);

/* Release archive @i's reader and input once it has been read */
void vma_chain_in_close_one(VmaChainIn *c, unsigned i);

#endif /* VMA_CHAIN_IN_H */
