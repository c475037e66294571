#!/usr/bin/env python3
"""
One live backup of an RBD image into a VMA file, timed, with the reads the
OSD served for it (used by bench/bench-ceph.sh):

    ceph-backup.py <QEMU build dir> <ceph.conf> <pool/image> <archive>

Starts the patched QEMU (-accel qtest, no guest OS) with the image as a
virtio-blk disk (-blockdev driver=rbd), runs QMP `backup` into <archive>
and polls `query-backup` every 10 ms until it is done.  Prints one JSON
line: the seconds from `backup` to done, and the deltas over that time of
osd.0's perf counters op_r (read ops) and op_r_out_bytes (bytes read).

Copyright (c) the VMA backup authors
SPDX-License-Identifier: GPL-2.0-or-later
"""

import json
import os
import subprocess
import sys
import tempfile
import time

build, conf, spec, archive = sys.argv[1:5]
sys.path.insert(0, os.path.join(os.path.realpath(build), '..', 'python'))
from qemu.machine import QEMUMachine  # noqa: E402

pool, image = spec.split('/', 1)


def osd_reads():
    out = subprocess.run(['ceph', '-c', conf, 'daemon', 'osd.0', 'perf',
                          'dump'], check=True, stdout=subprocess.PIPE).stdout
    osd = json.loads(out)['osd']
    return osd['op_r'], osd['op_r_out_bytes']


with tempfile.TemporaryDirectory() as tmp:
    vm = QEMUMachine(os.path.join(build, 'qemu-system-x86_64'),
                     base_temp_dir=tmp,
                     args=['-accel', 'qtest', '-nodefaults', '-display', 'none',
                           '-blockdev', json.dumps({
                               'driver': 'rbd', 'node-name': 'drive-rbd0',
                               'pool': pool, 'image': image, 'conf': conf}),
                           '-device', 'virtio-blk-pci,drive=drive-rbd0'])
    vm.launch()
    try:
        ops0, bytes0 = osd_reads()
        start = time.monotonic()
        vm.cmd('backup', backup_file=archive)
        while True:
            st = vm.cmd('query-backup')
            if st['status'] != 'active':
                break
            time.sleep(0.01)
        seconds = time.monotonic() - start
        ops1, bytes1 = osd_reads()
    finally:
        vm.shutdown()
if st['status'] != 'done':
    sys.exit(f'backup failed: {st.get("errmsg")}')
print(json.dumps({'seconds': round(seconds, 3), 'read_ops': ops1 - ops0,
                  'read_bytes': bytes1 - bytes0}))
