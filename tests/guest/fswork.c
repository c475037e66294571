/*
 * fswork: the guest's filesystem workload and its checker.
 *
 *   fswork write <dir> <seed> [ops [trim]]
 *       Operation n (1, 2, ...) writes file s<slot> of the plan in
 *       guest-data.h: the data goes to <dir>/tmp, is fsync'ed, renamed over
 *       s<slot> (so older files are overwritten), some other file may be
 *       deleted, the directory is fsync'ed, and only then the console gets
 *       "DONE n <bytes> <fsync usec>".  Every [trim]th operation (default
 *       10, 0: never) trims the filesystem (FITRIM, as fstrim does) so
 *       discards reach the disk.  Runs forever unless [ops] is given (> 0).
 *
 *   fswork check <dir> <seed> <acked>
 *       Verifies every file's content against the plan and that the set of
 *       files is the one the plan gives after the newest file present (M):
 *       operation M is complete, or complete but for its delete.  Every
 *       operation up to <acked> must be there (M >= acked).  Prints
 *       "FSCHECK OK max=M files=K" or "FSCHECK DAMAGE <what>" lines, then
 *       exits 0 only if OK.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "guest-data.h"

#define CHUNK (64 * 1024)

static unsigned char buf[CHUNK], want[CHUNK];

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

static void die(const char *what)
{
    dprintf(1, "FSWORK ERROR %s: %s\n", what, strerror(errno));
    exit(2);
}

static void write_file(int dirfd, uint64_t seed, uint64_t n,
                       const struct fs_op *op, uint64_t *fsync_us)
{
    int fd = openat(dirfd, "tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    uint64_t t0;

    if (fd < 0) {
        die("open tmp");
    }
    for (uint64_t off = 0; off < op->size; off += CHUNK) {
        size_t len = op->size - off < CHUNK ? op->size - off : CHUNK;

        gd_fill(buf, seed, n, op->size, off, len);
        if (write(fd, buf, len) != (ssize_t)len) {
            die("write tmp");
        }
    }
    t0 = now_us();
    if (fsync(fd) < 0) {
        die("fsync tmp");
    }
    *fsync_us = now_us() - t0;
    close(fd);
}

static int do_write(const char *dir, uint64_t seed, uint64_t ops,
                    uint64_t trim)
{
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
    int trim_ok = 1;

    if (dirfd < 0) {
        die(dir);
    }
    for (uint64_t n = 1; ops == 0 || n <= ops; n++) {
        struct fs_op op = gd_fs_op(seed, n);
        char name[16];
        uint64_t fsync_us;

        write_file(dirfd, seed, n, &op, &fsync_us);
        snprintf(name, sizeof(name), "s%u", op.slot);
        if (renameat(dirfd, "tmp", dirfd, name) < 0) {
            die("rename");
        }
        if (op.del_slot >= 0) {
            snprintf(name, sizeof(name), "s%d", op.del_slot);
            if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT) {
                die("unlink");
            }
        }
        if (fsync(dirfd) < 0) {
            die("fsync dir");
        }
        dprintf(1, "DONE %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
                n, op.size, fsync_us);
        if (trim && n % trim == 0 && trim_ok) {
            struct fstrim_range range = { .len = UINT64_MAX };

            if (ioctl(dirfd, FITRIM, &range) < 0) {
                dprintf(1, "FSWORK no FITRIM: %s\n", strerror(errno));
                trim_ok = 0;
            } else if (n == trim) {
                dprintf(1, "TRIM %" PRIu64 " bytes\n",
                        (uint64_t)range.len);
            }
        }
    }
    return 0;
}

/* Is <name> a file of the plan with the right content?  Returns its
 * sequence number, 0 if damaged (and says why). */
static uint64_t check_file(int dirfd, const char *name, uint64_t seed)
{
    unsigned slot;
    char tail;
    uint64_t hdr[2], n, size;
    struct stat st;
    struct fs_op op;
    int fd;

    if (sscanf(name, "s%u%c", &slot, &tail) != 1 || slot >= FS_SLOTS) {
        dprintf(1, "FSCHECK DAMAGE %s: not a file of the workload\n", name);
        return 0;
    }
    fd = openat(dirfd, name, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 16 ||
        pread(fd, hdr, 16, 0) != 16) {
        dprintf(1, "FSCHECK DAMAGE %s: unreadable or shorter than 16 bytes\n",
                name);
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
    n = hdr[0];
    size = hdr[1];
    op = gd_fs_op(seed, n);
    if (n == 0 || op.slot != slot || op.size != size ||
        (uint64_t)st.st_size != size) {
        dprintf(1, "FSCHECK DAMAGE %s: header says seq %" PRIu64 " size %"
                PRIu64 ", file has %lld bytes\n", name, n, size,
                (long long)st.st_size);
        close(fd);
        return 0;
    }
    for (uint64_t off = 0; off < size; off += CHUNK) {
        size_t len = size - off < CHUNK ? size - off : CHUNK;

        gd_fill(want, seed, n, size, off, len);
        if (pread(fd, buf, len, off) != (ssize_t)len ||
            memcmp(buf, want, len) != 0) {
            dprintf(1, "FSCHECK DAMAGE %s (seq %" PRIu64 "): content differs"
                    " in bytes %" PRIu64 "..%" PRIu64 "\n", name, n, off,
                    off + len);
            close(fd);
            return 0;
        }
    }
    close(fd);
    return n;
}

/* The file set after operations 1..m: seq per slot (0: no file); with
 * skip_last_delete, operation m's delete is left out */
static void plan_state(uint64_t seed, uint64_t m, int skip_last_delete,
                       uint64_t state[FS_SLOTS])
{
    memset(state, 0, sizeof(uint64_t) * FS_SLOTS);
    for (uint64_t n = 1; n <= m; n++) {
        struct fs_op op = gd_fs_op(seed, n);

        state[op.slot] = n;
        if (op.del_slot >= 0 && !(skip_last_delete && n == m)) {
            state[op.del_slot] = 0;
        }
    }
}

static int do_check(const char *dir, uint64_t seed, uint64_t acked)
{
    uint64_t found[FS_SLOTS] = { 0 }, full[FS_SLOTS], partial[FS_SLOTS];
    uint64_t max = 0;
    int damage = 0, files = 0;
    DIR *d = opendir(dir);
    struct dirent *e;

    if (!d) {
        die(dir);
    }
    while ((e = readdir(d))) {
        uint64_t n;
        unsigned slot;

        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            !strcmp(e->d_name, "lost+found")) {
            continue;
        }
        if (!strcmp(e->d_name, "tmp")) {
            dprintf(1, "FSCHECK note: tmp present (a write in progress)\n");
            continue;
        }
        n = check_file(dirfd(d), e->d_name, seed);
        if (n == 0) {
            damage++;
            continue;
        }
        sscanf(e->d_name, "s%u", &slot);
        found[slot] = n;
        files++;
        if (n > max) {
            max = n;
        }
    }
    closedir(d);

    plan_state(seed, max, 0, full);
    plan_state(seed, max, 1, partial);
    if (!damage && memcmp(found, full, sizeof(full)) != 0 &&
        memcmp(found, partial, sizeof(partial)) != 0) {
        for (int s = 0; s < FS_SLOTS; s++) {
            if (found[s] != full[s]) {
                dprintf(1, "FSCHECK DAMAGE s%d: has seq %" PRIu64 ", the plan"
                        " after seq %" PRIu64 " says %" PRIu64 "\n",
                        s, found[s], max, full[s]);
            }
        }
        damage++;
    }
    if (max < acked) {
        dprintf(1, "FSCHECK DAMAGE newest file is seq %" PRIu64 ", but seq %"
                PRIu64 " was acknowledged\n", max, acked);
        damage++;
    }
    if (damage) {
        dprintf(1, "FSCHECK FAILED max=%" PRIu64 " files=%d damaged=%d\n",
                max, files, damage);
        return 1;
    }
    dprintf(1, "FSCHECK OK max=%" PRIu64 " files=%d acked=%" PRIu64 "\n",
            max, files, acked);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "write")) {
        return do_write(argv[2], strtoull(argv[3], NULL, 0),
                        argc > 4 ? strtoull(argv[4], NULL, 0) : 0,
                        argc > 5 ? strtoull(argv[5], NULL, 0) : 10);
    }
    if (argc == 5 && !strcmp(argv[1], "check")) {
        return do_check(argv[2], strtoull(argv[3], NULL, 0),
                        strtoull(argv[4], NULL, 0));
    }
    fprintf(stderr, "usage: fswork write <dir> <seed> [ops [trim]]\n"
                    "       fswork check <dir> <seed> <acked>\n");
    return 2;
}
