/*
 * vma tool: `vma merge`, a chain of backups into one full archive
 *
 *   vma merge <full> <incremental>... -o <new archive|-|fifo|exec:CMD>
 *
 * Writes a standalone full archive of the newest state of the chain,
 * without the VM: the newest archive's configs (without its backup-chain
 * blob), disks and RAM state, every disk complete.  It has a new uuid and
 * the newest archive's creation time; it starts no chain of its own.
 *
 * How: a VMA archive may hold its clusters in any order, so the archives
 * are read newest first.  Every cluster the newest holds goes out as it
 * comes; from each older archive only the clusters no newer archive had.
 * A bitmap per disk (one bit per 64 KiB cluster: 2 MiB per TiB) remembers
 * which clusters are written.  Each archive is read once, front to back,
 * and memory stays bounded by the bitmaps and one extent of each of the
 * reader and the writer.  The writer checks at the end that every cluster
 * of every disk was written, which the links checked at the start promise.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "vma-chain-in.h"
#include "vma-ops.h"
#include "vma-output.h"

typedef struct MergeJob {
    VmaChainIn *chain;
    VmaWriter *writer;
    VmaOutput *output;
    int fd;
    /* By the dev_id of the archive being read: the output's, 0 to skip */
    uint8_t pass_id[VMA_MAX_DEVICES];
    /* By the output's dev_id: clusters already written (disks) */
    GByteArray *written[VMA_MAX_DEVICES];
    /*
     * By the output's dev_id (the newest archive's, which is read and
     * released first): the device's name, and the first archive of the
     * chain that counts for it
     */
    char *names[VMA_MAX_DEVICES];
    bool is_vmstate[VMA_MAX_DEVICES];
    unsigned first[VMA_MAX_DEVICES];
} MergeJob;

static int merge_output(void *opaque, const void *buf, size_t len)
{
    MergeJob *job = opaque;

    return vma_write_full(job->fd, buf, len);
}

/* Test and set bit @cluster of @set */
static bool merge_claim(GByteArray *set, uint64_t cluster)
{
    uint8_t bit = 1u << (cluster % 8);
    uint8_t *byte = set->data + cluster / 8;

    if (*byte & bit) {
        return false;
    }
    *byte |= bit;
    return true;
}

static bool merge_cluster(void *opaque, const VmaDeviceInfo *dev,
                          uint64_t cluster_num, uint16_t mask,
                          const uint8_t *data, size_t len, GError **errp)
{
    MergeJob *job = opaque;
    uint8_t id = job->pass_id[dev->dev_id];

    if (!vma_check_interrupted(errp)) {
        return false;
    }
    if (!id) {
        return true;
    }
    if (!dev->is_vmstate && !merge_claim(job->written[id], cluster_num)) {
        return true;    /* a newer archive had it */
    }
    return vma_writer_write_cluster(job->writer, id, cluster_num,
                                    mask ? data : NULL, len, errp);
}

/* Configs, streams and bitmaps of the output, from the newest archive */
static bool merge_setup(MergeJob *job, GError **errp)
{
    VmaReader *r = vma_chain_in_newest(job->chain);
    g_autofree char *str = g_uuid_string_random();
    uint8_t uuid[VMA_UUID_SIZE];

    vma_uuid_parse(str, uuid);
    job->writer = vma_writer_new(uuid, vma_reader_get_ctime(r), merge_output,
                                 job);
    for (unsigned i = 0; i < vma_reader_get_config_count(r); i++) {
        const VmaConfigInfo *c = vma_reader_get_config(r, i);

        if (!strcmp(c->name, VMA_CHAIN_CONFIG_NAME)) {
            continue;
        }
        if (!vma_writer_add_config(job->writer, c->name, c->data, c->len,
                                   errp)) {
            return false;
        }
    }
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);
        uint8_t id;

        if (dev->is_vmstate) {
            id = vma_writer_register_vmstate(job->writer, dev->size, errp);
        } else {
            id = vma_writer_register_stream(job->writer, dev->name,
                                            dev->size, errp);
        }
        if (!id) {
            return false;
        }
        job->names[id] = g_strdup(dev->name);
        job->is_vmstate[id] = dev->is_vmstate;
        job->first[id] = dev->is_vmstate ? job->chain->count - 1 :
                         vma_chain_in_first_for(job->chain, dev->name);
        if (!dev->is_vmstate) {
            uint64_t clusters = (dev->size + VMA_CLUSTER_SIZE - 1) /
                                VMA_CLUSTER_SIZE;

            job->written[id] = g_byte_array_sized_new(clusters / 8 + 1);
            g_byte_array_set_size(job->written[id], clusters / 8 + 1);
            memset(job->written[id]->data, 0, clusters / 8 + 1);
        }
    }
    return true;
}

/*
 * Which devices of archive @k go out: those of the newest state, from the
 * archive in which they are complete on (the RAM state: the newest only)
 */
static void merge_plan_pass(MergeJob *job, unsigned k)
{
    VmaReader *r = job->chain->archives[k].reader;

    memset(job->pass_id, 0, sizeof(job->pass_id));
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);

        for (unsigned id = 1; id < VMA_MAX_DEVICES && job->names[id]; id++) {
            if (!strcmp(job->names[id], dev->name) &&
                job->is_vmstate[id] == dev->is_vmstate && k >= job->first[id]) {
                job->pass_id[dev->dev_id] = id;
            }
        }
    }
}

static bool merge_run(MergeJob *job, const char *target, GError **errp)
{
    VmaChainIn *c = job->chain;

    if (!merge_setup(job, errp)) {
        return false;
    }
    job->output = vma_output_open(target, errp);
    if (!job->output) {
        return false;
    }
    job->fd = vma_output_fd(job->output);
    for (unsigned k = c->count; k-- > 0;) {
        merge_plan_pass(job, k);
        if (!vma_reader_run(c->archives[k].reader, merge_cluster, job,
                            errp)) {
            if ((*errp)->domain == VMA_ERROR &&
                (*errp)->code == VMA_ERROR_IO &&
                vma_writer_get_error(job->writer)) {
                vma_output_explain(job->output, *errp);
            } else {
                vma_add_input_detail(*errp, c->archives[k].input);
                g_prefix_error(errp, "'%s': ", c->paths[k]);
            }
            return false;
        }
        vma_chain_in_close_one(c, k);
    }
    if (!vma_writer_finish(job->writer, errp)) {
        vma_output_explain(job->output, *errp);
        return false;
    }
    if (fdatasync(job->fd) < 0 && errno != EINVAL && errno != EROFS) {
        int err = errno;

        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "cannot write '%s': %s", target, g_strerror(err));
        return false;
    }
    return true;
}

int vma_cmd_merge(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    const char *target = NULL;
    MergeJob job = { .fd = -1 };
    VmaChainIn chain;
    bool ok;
    int opt;

    while ((opt = getopt(argc, argv, ":ho:")) != -1) {
        switch (opt) {
        case 'o':
            target = optarg;
            break;
        default:
            return vma_cmd_option_error("merge", opt, argv);
        }
    }
    if (!target) {
        return vma_cmd_usage_error("merge: -o <new archive> is required");
    }
    if (argc - optind < 1) {
        return vma_cmd_usage_error("merge: expected the archives of a "
                                   "chain, full archive first");
    }
    if (!vma_chain_in_open(&chain, argv + optind, argc - optind, false,
                           &err)) {
        vma_chain_in_close(&chain);
        return vma_cmd_fail(err);
    }
    job.chain = &chain;
    ok = merge_run(&job, target, &err);
    if (job.output) {
        if (ok) {
            ok = vma_output_close(job.output, true, &err);
        } else {
            vma_output_close(job.output, false, NULL);
        }
    }
    vma_writer_free(job.writer);
    for (unsigned i = 0; i < VMA_MAX_DEVICES; i++) {
        if (job.written[i]) {
            g_byte_array_unref(job.written[i]);
        }
        g_free(job.names[i]);
    }
    vma_chain_in_close(&chain);
    return ok ? EXIT_SUCCESS : vma_cmd_fail(err);
}
