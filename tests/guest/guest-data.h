/*
 * The deterministic plan shared by the guest workloads and their checkers:
 * everything a writer does (which file or block, what size, what content)
 * follows from (seed, sequence number), so a checker that knows the seed
 * can tell exactly what each file or block must contain.
 */
#ifndef GUEST_DATA_H
#define GUEST_DATA_H

#include <stdint.h>
#include <string.h>

/* splitmix64's finalizer: a cheap, well-mixed 64-bit hash */
static inline uint64_t gd_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* An independent random value per (seed, sequence number, purpose) */
static inline uint64_t gd_rand(uint64_t seed, uint64_t n, uint64_t what)
{
    return gd_mix(gd_mix(seed ^ (what << 56)) ^ n);
}

/* Purposes of gd_rand values */
enum { GD_SLOT = 1, GD_SIZE, GD_DEL, GD_DEL_SLOT, GD_DATA, GD_BLOCK };

/*
 * Content of object n: 64-bit little-endian words, word 0 is the sequence
 * number, word 1 the size (or block index), the rest derived from (seed, n).
 * Fills len bytes starting at byte off of the object (off a multiple of 8).
 */
static inline void gd_fill(unsigned char *buf, uint64_t seed, uint64_t n,
                           uint64_t word1, uint64_t off, size_t len)
{
    uint64_t base = gd_mix(seed ^ GD_DATA) ^ (n * 0xd6e8feb86659fd93ULL);

    for (size_t done = 0; done < len; done += 8) {
        uint64_t i = (off + done) / 8;
        uint64_t w = i == 0 ? n : i == 1 ? word1 : gd_mix(base + i);
        unsigned char b[8];

        for (int k = 0; k < 8; k++) {
            b[k] = (unsigned char)(w >> (8 * k));
        }
        memcpy(buf + done, b, len - done < 8 ? len - done : 8);
    }
}

/* --- the filesystem workload: files s0..s47 in one directory ---------- */
#define FS_SLOTS 48

struct fs_op {
    unsigned slot;   /* the file it writes: s<slot> (replacing the old one) */
    uint64_t size;   /* its size: 16 bytes .. 2 MiB, rarely a round number */
    int del_slot;    /* the file it then deletes, or -1 */
};

static inline struct fs_op gd_fs_op(uint64_t seed, uint64_t n)
{
    static const uint64_t base[4] = { 16, 4096, 65536, 524288 };
    static const uint64_t span[4] = { 4080, 61440, 458752, 1572864 };
    struct fs_op op;
    uint64_t r = gd_rand(seed, n, GD_SIZE);

    op.slot = gd_rand(seed, n, GD_SLOT) % FS_SLOTS;
    op.size = base[r % 4] + (r >> 8) % span[r % 4];
    op.del_slot = -1;
    if (gd_rand(seed, n, GD_DEL) % 6 == 0) {
        unsigned d = gd_rand(seed, n, GD_DEL_SLOT) % FS_SLOTS;

        if (d != op.slot) {
            op.del_slot = d;
        }
    }
    return op;
}

/* --- the raw block workload: 4 KiB blocks at random offsets ----------- */
#define BLK_SIZE 4096
#define BLK_BATCH 16          /* writes per batch; batches alternate modes */

static inline uint64_t gd_blk_index(uint64_t seed, uint64_t n,
                                    uint64_t nblocks)
{
    return gd_rand(seed, n, GD_BLOCK) % nblocks;
}

/* Batch b (0-based) writes with O_DIRECT when even, through the page cache
 * when odd */
static inline int gd_blk_direct(uint64_t n)
{
    return ((n - 1) / BLK_BATCH) % 2 == 0;
}

#endif
