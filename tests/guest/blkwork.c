/*
 * blkwork: the guest's raw block workload and its checker.
 *
 *   blkwork write <device> <seed> [ops]
 *       Write n (1, 2, ...) puts a 4 KiB block stamped with n at block
 *       index gd_blk_index(seed, n); batches of BLK_BATCH writes alternate
 *       between O_DIRECT and the page cache.  An O_DIRECT batch is
 *       submitted at once with Linux AIO (up to BLK_BATCH requests in
 *       flight; a block written twice in a batch starts a new group, so
 *       the later write lands last); a cached batch reaches the disk as
 *       the fdatasync's writeback.  After each batch both file descriptors
 *       are fdatasync'ed (flushing the disk's cache) and the console gets
 *       "BLK n".  Runs forever unless [ops] is given.
 *
 *   blkwork check <device> <seed> <acked>
 *       Reads every block: it must be all zeroes or a whole stamped block
 *       at its own index, and no acknowledged write (n <= acked) to it may
 *       be newer than what it holds.  Prints "BLKCHECK OK max=M blocks=K"
 *       or "BLKCHECK DAMAGE <what>" lines; exits 0 only if OK.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "guest-data.h"

static int damage;

/* One line per damaged block, the first 20 of them (the console is slow) */
static void report(const char *fmt, ...)
{
    va_list ap;

    if (++damage > 20) {
        return;
    }
    va_start(ap, fmt);
    dprintf(1, "BLKCHECK DAMAGE ");
    vdprintf(1, fmt, ap);
    va_end(ap);
}

static void die(const char *what)
{
    dprintf(1, "BLKWORK ERROR %s: %s\n", what, strerror(errno));
    exit(2);
}

/* The size in blocks of a block device (or, for tests on the host, a file) */
static uint64_t device_blocks(int fd)
{
    uint64_t bytes;
    struct stat st;

    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        return st.st_size / BLK_SIZE;
    }
    if (ioctl(fd, BLKGETSIZE64, &bytes) < 0) {
        die("BLKGETSIZE64");
    }
    return bytes / BLK_SIZE;
}

/* O_DIRECT writes prepared but not yet submitted (glibc has no wrapper
 * for Linux AIO: raw system calls) */
static aio_context_t aio;
static struct iocb group[BLK_BATCH];
static int group_len;

/* Submit the group, all requests at once, and wait for every one */
static void run_group(void)
{
    struct iocb *ptrs[BLK_BATCH];
    struct io_event ev[BLK_BATCH];
    int sent = 0, done = 0;

    for (int i = 0; i < group_len; i++) {
        ptrs[i] = &group[i];
    }
    while (sent < group_len) {
        long r = syscall(SYS_io_submit, aio, group_len - sent, ptrs + sent);

        if (r <= 0) {
            errno = r < 0 ? errno : EAGAIN;
            die("io_submit");
        }
        sent += r;
    }
    while (done < group_len) {
        long r = syscall(SYS_io_getevents, aio, 1, group_len - done, ev, NULL);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            die("io_getevents");
        }
        for (long i = 0; i < r; i++) {
            if (ev[i].res != BLK_SIZE) {
                errno = ev[i].res < 0 ? -ev[i].res : EIO;
                die("O_DIRECT write");
            }
        }
        done += r;
    }
    group_len = 0;
}

static int in_group(uint64_t b)
{
    for (int i = 0; i < group_len; i++) {
        if ((uint64_t)group[i].aio_offset == b * BLK_SIZE) {
            return 1;
        }
    }
    return 0;
}

static int do_write(const char *dev, uint64_t seed, uint64_t ops)
{
    int direct = open(dev, O_RDWR | O_DIRECT);
    int cached = open(dev, O_RDWR);
    unsigned char *bufs;
    uint64_t nblocks;

    if (direct < 0 || cached < 0) {
        die(dev);
    }
    if (posix_memalign((void **)&bufs, BLK_SIZE, BLK_SIZE * BLK_BATCH)) {
        die("posix_memalign");
    }
    if (syscall(SYS_io_setup, BLK_BATCH, &aio) < 0) {
        die("io_setup");
    }
    nblocks = device_blocks(direct);
    for (uint64_t n = 1; ops == 0 || n <= ops; n++) {
        uint64_t b = gd_blk_index(seed, n, nblocks);
        unsigned char *buf;

        if (gd_blk_direct(n) && in_group(b)) {
            run_group();
        }
        buf = bufs + group_len * BLK_SIZE;
        gd_fill(buf, seed, n, b, 0, BLK_SIZE);
        if (gd_blk_direct(n)) {
            group[group_len] = (struct iocb) {
                .aio_lio_opcode = IOCB_CMD_PWRITE, .aio_fildes = direct,
                .aio_buf = (uintptr_t)buf, .aio_nbytes = BLK_SIZE,
                .aio_offset = b * BLK_SIZE,
            };
            group_len++;
        } else if (pwrite(cached, buf, BLK_SIZE, b * BLK_SIZE) != BLK_SIZE) {
            die("pwrite");
        }
        if (n % BLK_BATCH == 0) {
            run_group();
            if (fdatasync(cached) < 0 || fdatasync(direct) < 0) {
                die("fdatasync");
            }
            dprintf(1, "BLK %" PRIu64 "\n", n);
            usleep(20000);   /* leave the (single) vCPU to the fs writer */
        }
    }
    return 0;
}

static int do_check(const char *dev, uint64_t seed, uint64_t acked)
{
    int fd = open(dev, O_RDONLY);
    unsigned char *buf, *want;
    uint64_t nblocks, *newest, max = 0, stamped = 0;

    if (fd < 0) {
        die(dev);
    }
    nblocks = device_blocks(fd);
    buf = malloc(BLK_SIZE);
    want = malloc(BLK_SIZE);
    newest = calloc(nblocks, sizeof(*newest));
    if (!buf || !want || !newest) {
        die("malloc");
    }
    /* newest[b]: the last acknowledged write to block b */
    for (uint64_t n = 1; n <= acked; n++) {
        newest[gd_blk_index(seed, n, nblocks)] = n;
    }
    for (uint64_t b = 0; b < nblocks; b++) {
        uint64_t n;
        int zero = 1;

        if (pread(fd, buf, BLK_SIZE, b * BLK_SIZE) != BLK_SIZE) {
            die("pread");
        }
        for (int i = 0; i < BLK_SIZE && zero; i++) {
            zero = buf[i] == 0;
        }
        if (zero) {
            if (newest[b]) {
                report("block %" PRIu64 ": zero, but write %" PRIu64
                       " to it was acknowledged\n", b, newest[b]);
            }
            continue;
        }
        memcpy(&n, buf, 8);
        if (n != 0) {
            gd_fill(want, seed, n, b, 0, BLK_SIZE);
        }
        if (n == 0 || gd_blk_index(seed, n, nblocks) != b ||
            memcmp(buf, want, BLK_SIZE) != 0) {
            report("block %" PRIu64 ": not a block the workload wrote"
                   " there (stamp %" PRIu64 ")\n", b, n);
            continue;
        }
        if (n < newest[b]) {
            report("block %" PRIu64 ": holds write %" PRIu64 ", but write %"
                   PRIu64 " was acknowledged\n", b, n, newest[b]);
        }
        stamped++;
        if (n > max) {
            max = n;
        }
    }
    close(fd);
    if (damage) {
        dprintf(1, "BLKCHECK FAILED max=%" PRIu64 " damaged=%d\n", max, damage);
        return 1;
    }
    dprintf(1, "BLKCHECK OK max=%" PRIu64 " blocks=%" PRIu64 " acked=%"
            PRIu64 "\n", max, stamped, acked);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "write")) {
        return do_write(argv[2], strtoull(argv[3], NULL, 0),
                        argc > 4 ? strtoull(argv[4], NULL, 0) : 0);
    }
    if (argc == 5 && !strcmp(argv[1], "check")) {
        return do_check(argv[2], strtoull(argv[3], NULL, 0),
                        strtoull(argv[4], NULL, 0));
    }
    fprintf(stderr, "usage: blkwork write <device> <seed> [ops]\n"
                    "       blkwork check <device> <seed> <acked>\n");
    return 2;
}
