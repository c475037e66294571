/*
 * libFuzzer target for the VMA reader: any input must be either accepted
 * or refused with an error, never crash, hang or leak.  Each input is read
 * twice: sequentially (vma_reader_run) and at random access through the
 * extent headers (vma_reader_scan, as the vma block driver reads).
 *
 * The fuzzing build skips the MD5 comparisons
 * (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) so that mutations get past the
 * checksums into the parsing code.
 *
 * Build with meson -Dfuzzer=true (clang); run with
 *   build/fuzz-vma-reader -max_total_time=60 tests/vma/fuzz-corpus
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <string.h>
#include "block/vma.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keeps the compiler from optimizing the reads of the data away */
static volatile uint8_t fuzz_checksum;

typedef struct FuzzInput {
    const uint8_t *data;
    size_t len;
    size_t pos;
} FuzzInput;

static ssize_t fuzz_input(void *opaque, void *buf, size_t len)
{
    FuzzInput *in = opaque;
    size_t n = MIN(len, in->len - in->pos);

    memcpy(buf, in->data + in->pos, n);
    in->pos += n;
    return n;
}

/* Touch every byte handed out so the sanitizers see any bad pointer */
static bool fuzz_sink(void *opaque, const VmaDeviceInfo *dev,
                      uint64_t cluster_num, uint16_t mask,
                      const uint8_t *data, size_t len, GError **errp)
{
    uint8_t *sum = opaque;

    if (len == 0 || len > VMA_CLUSTER_SIZE || !vma_name_is_safe(dev->name)) {
        *sum ^= 1;
    }
    for (size_t i = 0; data && i < len; i++) {
        *sum ^= data[i];
    }
    return true;
}

static ssize_t fuzz_pread(void *opaque, void *buf, size_t len,
                          uint64_t offset)
{
    FuzzInput *in = opaque;
    size_t n = offset < in->len ? MIN(len, in->len - offset) : 0;

    memcpy(buf, in->data + offset, n);
    return n;
}

/* Check what the scan says about where a cluster's blocks are */
static bool fuzz_locate(void *opaque, const VmaDeviceInfo *dev,
                        uint64_t cluster_num, uint16_t mask,
                        uint64_t data_offset, GError **errp)
{
    FuzzInput *in = opaque;
    uint64_t end = data_offset +
                   (uint64_t)__builtin_popcount(mask) * VMA_BLOCK_SIZE;

    /* The scan checked that the extent's data is in the archive */
    if (end > in->len || data_offset % 512 ||
        cluster_num * VMA_CLUSTER_SIZE >= dev->size) {
        __builtin_trap();
    }
    return true;
}

/*
 * The input as a backup-chain blob: what parses must format back into
 * text that parses to the same
 */
static void fuzz_chain_blob(const uint8_t *data, size_t size)
{
    VmaChainInfo *c = vma_chain_parse(data, size, NULL);
    VmaChainInfo *back;
    char *text, *again;

    if (!c) {
        return;
    }
    text = vma_chain_format(c, NULL);
    back = vma_chain_parse(text, strlen(text), NULL);
    if (!back) {
        __builtin_trap();
    }
    again = vma_chain_format(back, NULL);
    if (strcmp(text, again)) {
        __builtin_trap();
    }
    g_free(text);
    g_free(again);
    vma_chain_free(back);
    vma_chain_free(c);
}

static void fuzz_scan(const uint8_t *data, size_t size)
{
    FuzzInput in = { .data = data, .len = size };
    GError *err = NULL;
    VmaReader *r = vma_reader_new(fuzz_input, &in, &err);
    VmaChainInfo *chain = NULL;

    if (r) {
        /* An archive with a valid chain blob: its absent clusters allowed */
        vma_chain_from_reader(r, true, &chain, NULL);
        vma_chain_free(chain);
        vma_reader_scan(r, fuzz_pread, &in, size, fuzz_locate, &in, &err);
        vma_reader_free(r);
    }
    g_clear_error(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzInput in = { .data = data, .len = size };
    GError *err = NULL;
    VmaReader *r = vma_reader_new(fuzz_input, &in, &err);
    uint8_t sum = 0;

    if (r) {
        for (unsigned i = 0; i < vma_reader_get_config_count(r); i++) {
            const VmaConfigInfo *c = vma_reader_get_config(r, i);

            for (size_t j = 0; j < c->len; j++) {
                sum ^= c->data[j];
            }
            sum ^= vma_name_is_safe(c->name);
        }
        vma_reader_run(r, fuzz_sink, &sum, &err);
        vma_reader_free(r);
    }
    g_clear_error(&err);
    fuzz_checksum = sum;
    fuzz_scan(data, size);
    fuzz_chain_blob(data, size);
    return 0;
}
