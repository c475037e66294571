#!/usr/bin/env python3
"""Make the fuzzer's seed corpus: small, valid archives written by `vma
create`, covering configs, partial clusters, zero blocks and several disks.
Usage: make-fuzz-seeds.py <vma binary> <corpus dir>"""

import os
import random
import subprocess
import sys
import tempfile


def make_disk(path, size, rng):
    data = bytearray(size)
    for off in range(0, size, 4096):
        kind = rng.randrange(3)
        if kind == 1:
            data[off:off + 4096] = rng.randbytes(min(4096, size - off))
        elif kind == 2:
            data[off] = 0x5a
    with open(path, "wb") as f:
        f.write(bytes(data[:size]))


def main():
    vma, corpus = sys.argv[1], sys.argv[2]
    rng = random.Random(1)
    layouts = [
        [],                          # configs only
        [512],
        [65536 + 4608],
        [540672, 4096, 1000],
        [3 * 65536],
    ]
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "qemu-server.conf")
        with open(conf, "w") as f:
            f.write("memory: 512\nscsi0: local:vm-100-disk-0\n")
        for i, sizes in enumerate(layouts):
            args = [vma, "create", os.path.join(corpus, f"seed{i}.vma"),
                    "-c", conf]
            for j, size in enumerate(sizes):
                disk = os.path.join(tmp, f"d{i}-{j}.raw")
                make_disk(disk, size, rng)
                args += ["-d", f"format=raw:drive-{j}={disk}"]
            subprocess.run(args, check=True)
    # What `vma create` no longer writes but readers must take: a disk size
    # that is not a multiple of 512 and a zero-padded blob buffer (vmagen)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import vmagen
    vmagen.write_archive(os.path.join(corpus, "seed-odd.vma"),
                         [("drive-0", rng.randbytes(1000))],
                         [("qemu-server.conf", b"memory: 512\n")],
                         blob_pad=3)


if __name__ == "__main__":
    main()
