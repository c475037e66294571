#!/usr/bin/env python3
"""make-dense-vma.py: a VMA archive of one disk whose every block is stored.

    make-dense-vma.py SIZE OUT [--holes]

SIZE in bytes (suffix K, M, G allowed), a multiple of 64 KiB.  The archive
has the layout the reference writer gives a disk without zero blocks:
extents of 58 full clusters in cluster order, then one more (empty) extent.
The data is a non-zero pattern; with --holes the data areas are left as
holes in a sparse file instead (they read as zero, which a stored block may
hold), so that a 64 GiB archive takes a few MB of disk while its headers sit
exactly where those of a real dense archive do: what an open has to read.
"""

import hashlib
import os
import struct
import sys

CLUSTER = 65536
BLOCK = 4096
SLOTS = 58
UUID = bytes(range(16))


def md5_with_hole(buf, off):
    h = hashlib.md5()
    h.update(buf[:off])
    h.update(bytes(16))
    h.update(buf[off + 16:])
    return h.digest()


def main_header(name, size):
    blobs = bytearray(b"\0")
    name_ptr = len(blobs)
    blobs += struct.pack("<H", len(name) + 1) + name + b"\0"
    header_size = 12288 + (len(blobs) + 511) // 512 * 512
    h = bytearray(header_size)
    h[0:4] = b"VMA\0"
    struct.pack_into(">I", h, 4, 1)
    h[8:24] = UUID
    struct.pack_into(">q", h, 24, 1700000000)
    struct.pack_into(">III", h, 48, 12288, len(blobs), header_size)
    struct.pack_into(">IQ", h, 4096 + 32 * 1, name_ptr, 0)
    struct.pack_into(">Q", h, 4096 + 32 * 1 + 8, size)
    h[12288:12288 + len(blobs)] = blobs
    h[32:48] = md5_with_hole(bytes(h), 32)
    return bytes(h)


def extent_header(first, count):
    h = bytearray(512)
    h[0:4] = b"VMAE"
    struct.pack_into(">H", h, 6, count * 16)
    h[8:24] = UUID
    for i in range(count):
        struct.pack_into(">Q", h, 40 + 8 * i,
                         0xFFFF << 48 | 1 << 32 | (first + i))
    h[24:40] = md5_with_hole(bytes(h), 24)
    return bytes(h)


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:].upper(), 1)
    return int(s[:-1] if mult > 1 else s) * mult


def main(argv):
    holes = "--holes" in argv
    args = [a for a in argv if a != "--holes"]
    if len(args) != 2:
        sys.exit(__doc__)
    size, out = parse_size(args[0]), args[1]
    if size <= 0 or size % CLUSTER:
        sys.exit("SIZE must be a positive multiple of 64 KiB")
    clusters = size // CLUSTER
    pattern = (bytes(range(1, 256)) * (CLUSTER // 255 + 1))[:CLUSTER]
    data = pattern * SLOTS
    with open(out, "wb") as f:
        f.write(main_header(b"drive-scsi0", size))
        for first in range(0, clusters + 1, SLOTS):
            count = min(SLOTS, clusters - first)
            f.write(extent_header(first, count))
            if holes:
                f.seek(count * CLUSTER, os.SEEK_CUR)
            else:
                f.write(data[:count * CLUSTER])
            if count < SLOTS:
                break
        f.truncate()


if __name__ == "__main__":
    main(sys.argv[1:])
