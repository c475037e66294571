#!/usr/bin/env python3
"""make-vma-chain.py: a backup chain (a full archive and incrementals) of one
dense disk, written streaming with tests/vma/vmagen.py's header and extent
code (an independent VMA writer), for bench/bench-vma-chain.sh.

    make-vma-chain.py SIZE INCREMENTALS PERCENT OUTDIR

SIZE in bytes (suffix M or G), a multiple of 64 KiB.  Writes OUTDIR/full.vma
(depth 0, every cluster stored) and OUTDIR/inc1.vma ... (each with PERCENT %
of the clusters, chosen at random, changed and stored; the others absent),
and OUTDIR/expected.raw, the disk at the newest state.  Cluster c of
generation g holds a pattern made of (g, c): never zero.
"""

import os
import random
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "vma"))
import vmagen  # noqa: E402

CLUSTER = 65536
DISK = "drive-scsi0"


def cluster_data(gen, c):
    return struct.pack(">QQ", gen + 1, c + 1) * (CLUSTER // 16)


def write_archive(path, uuid, chain, size, clusters, gen_of):
    """Stream an archive with the clusters @clusters (ascending)."""
    a = vmagen.Archive(uuid=uuid)
    mode = "incremental" if chain else "full"
    blob = vmagen.chain_blob(uuid, chain, [(DISK, mode,
                                            "used" if chain else "new")])
    a.configs = [(b"qemu-server.conf", b"memory: 1024\n"),
                 (b"backup-chain", blob)]
    a.devices = [(1, DISK.encode(), size)]
    with open(path, "wb") as f:
        f.write(vmagen._header(a, set()))
        batch, index = [], 0
        for c in clusters:
            data = cluster_data(gen_of(c), c)
            batch.append(vmagen.Slot(1, c, 0xFFFF, data))
            if len(batch) == vmagen.WRITER_SLOTS:
                f.write(vmagen._extent(a, batch, index, set()))
                batch, index = [], index + 1
        f.write(vmagen._extent(a, batch, index, set()))


def main(argv):
    size_s, n_inc, percent, outdir = argv
    mult = {"M": 1 << 20, "G": 1 << 30}.get(size_s[-1], 1)
    size = int(size_s.rstrip("MG")) * mult
    if size % CLUSTER:
        sys.exit("size must be a multiple of 64 KiB")
    n = size // CLUSTER
    rng = random.Random(12)
    uuids = [bytes([0xA0 + k] * 16) for k in range(int(n_inc) + 1)]
    os.makedirs(outdir, exist_ok=True)
    write_archive(os.path.join(outdir, "full.vma"), uuids[0], [], size,
                  range(n), lambda c: 0)
    latest = {}
    for k in range(1, int(n_inc) + 1):
        changed = sorted(rng.sample(range(n), max(1, n * int(percent) // 100)))
        for c in changed:
            latest[c] = k
        write_archive(os.path.join(outdir, "inc%d.vma" % k), uuids[k],
                      uuids[:k], size, changed, lambda c, k=k: k)
    with open(os.path.join(outdir, "expected.raw"), "wb") as f:
        for c in range(n):
            f.write(cluster_data(latest.get(c, 0), c))


if __name__ == "__main__":
    main(sys.argv[1:])
