#!/usr/bin/env python3
"""How fast can one thread write a 4 GiB file on this machine, nothing read?

The idle backup benchmark (bench-backup.py --parts idle) writes one 4 GiB
archive per round into tmpfs; so do qemu-img convert and blockdev-backup.
A buffered write to one file holds the file's inode lock, so none of them
can write faster than one thread writing that file alone.  This measures
that floor, and how steady it is, with no QEMU at all:

  new file    write 4 GiB from one 1 MiB buffer into a new file, then
              delete it (the kernel allocates a page per 4 KiB written)
  overwrite   write the same 4 GiB over a file whose pages already exist
  read        read a 4 GiB file into one 1 MiB buffer

Rounds alternate; each line is printed as it is measured, then a table of
min / median / max.  Usage:

  bench/bench-write-floor.py [--rounds N] [--dir DIR] [--gib G]

DIR defaults to /dev/shm (tmpfs, as the backup benchmark uses).
"""

import argparse
import os
import statistics
import tempfile
import time

MiB = 1 << 20


def write_file(path, buf, count, flags):
    """Write @count copies of @buf from offset 0: (seconds, system CPU)"""
    t0, c0 = time.perf_counter(), os.times()
    fd = os.open(path, os.O_WRONLY | flags, 0o600)
    try:
        for _ in range(count):
            os.write(fd, buf)
    finally:
        os.close(fd)
    t1, c1 = time.perf_counter(), os.times()
    return t1 - t0, c1.system - c0.system


def read_file(path):
    """Read @path into one 1 MiB buffer: (seconds, system CPU)"""
    buf = memoryview(bytearray(MiB))
    t0, c0 = time.perf_counter(), os.times()
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.readv(fd, [buf]) > 0:
            pass
    finally:
        os.close(fd)
    t1, c1 = time.perf_counter(), os.times()
    return t1 - t0, c1.system - c0.system


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=8)
    ap.add_argument('--dir', default='/dev/shm')
    ap.add_argument('--gib', type=int, default=4)
    args = ap.parse_args()

    count = args.gib * 1024
    buf = os.urandom(MiB)
    work = tempfile.mkdtemp(prefix='write-floor.', dir=args.dir)
    kept = os.path.join(work, 'kept')
    res = {'new file': [], 'overwrite': [], 'read': []}
    try:
        write_file(kept, buf, count, os.O_CREAT)
        print(f'{time.strftime("%Y-%m-%d %H:%M")}, {os.cpu_count()} cores, '
              f'{os.uname().release}, {args.gib} GiB in {args.dir}; '
              f'free page reporting min_free_ms '
              f'{read_param("/sys/module/page_reporting/parameters/min_free_ms")}',
              flush=True)
        for i in range(args.rounds):
            fresh = os.path.join(work, 'new')
            order = ['new file', 'overwrite', 'read']
            if i % 2:
                order.reverse()
            for what in order:
                if what == 'new file':
                    r = write_file(fresh, buf, count, os.O_CREAT | os.O_EXCL)
                    os.unlink(fresh)
                elif what == 'overwrite':
                    r = write_file(kept, buf, count, 0)
                else:
                    r = read_file(kept)
                res[what].append(r)
                print(f'  round {i + 1}: {what}: {r[0]:.2f} s, '
                      f'system CPU {r[1]:.2f} s', flush=True)
    finally:
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)

    print()
    print(f'| {args.gib} GiB, one thread, 1 MiB writes | min | median | max '
          f'| max / min |')
    print('|---|---|---|---|---|')
    for what, rs in res.items():
        t = [r[0] for r in rs]
        print(f'| {what} | {min(t):.2f} s | {statistics.median(t):.2f} s | '
              f'{max(t):.2f} s | {max(t) / min(t):.1f}x |')


def read_param(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return 'n/a'


if __name__ == '__main__':
    main()
