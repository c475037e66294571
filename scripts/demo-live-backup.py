#!/usr/bin/env python3
"""Live backup demo with a real Linux guest (the second half of demo.sh).

Boots a Debian kernel (the guest kit, tests/guest/) with two disks: ext4 on
a qcow2 image (virtio-blk, in an iothread) and a raw disk (virtio-scsi).
The guest writes files and raw blocks and says so on its serial console.
While it writes, the host backs the VM up with the QMP `backup` command
into a zstd pipe, as vzdump does; then it restores the archive with `vma
extract`, checks the restored disks against the disks at the backup point,
and boots a VM from them whose checker verifies every file and block.

Usage: demo-live-backup.py <qemu build dir> <vma binary> <work dir>
"""

import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'tests', 'guest'))
from guestvm import build_kit, choose_accel  # noqa: E402
from livebackup import (Case, CaseFailed, Env, check_restored,  # noqa: E402
                        run_case)

BUILD, VMA, WORK = sys.argv[1:4]
timings = []
t_step = [time.monotonic(), None]


def step(msg):
    now = time.monotonic()
    if t_step[1]:
        timings.append((t_step[1], now - t_step[0]))
    t_step[:] = [now, msg]
    print(f'\n### {msg}', flush=True)


def say(msg):
    print(f'    {msg}', flush=True)


def console(line):
    """Show the guest's console, but only every 10th acknowledgement"""
    words = line.split()
    if words[:1] == ['DONE'] and int(words[1]) % 10:
        return
    if words[:1] == ['BLK'] and int(words[1]) % 320:
        return
    if words[:2] == ['DONE', '10']:
        line += ('   <- file 10 is durable (written, fsync\'ed, renamed);'
                 ' its size, its fsync in usec')
    print(f'    guest| {line}', flush=True)


def main():
    step('Guest kit: Debian kernel + busybox initramfs (cached in /var/tmp)')
    kit = build_kit()
    say(f'kit: {kit}')
    with open(os.path.join(kit, 'CONTENTS')) as f:
        say(f.read().strip())

    step('Which accelerator boots it: KVM (if a probe boot works) or TCG')
    accel, why = choose_accel(os.path.join(BUILD, 'qemu-system-x86_64'), kit,
                              WORK)
    say(why)
    if not accel:
        sys.exit('no accelerator boots the guest: cannot run the live demo')
    say(f'using {accel}')

    env = Env(BUILD, VMA, kit, accel)
    case = Case('demo', str(random.randrange(1, 1 << 32)), target='zstd')
    work = os.path.join(WORK, 'live')
    step('Boot the VM: ext4 on qcow2 (virtio-blk, iothread) + raw disk '
         '(virtio-scsi); the guest writes files (DONE n) and raw blocks '
         '(BLK n). Then, live: stop, copy the disks (the reference), '
         'backup into a zstd pipe, cont; the guest keeps writing while the '
         'backup runs')
    res = {}
    try:
        run_case(env, case, work, res, say=say, echo=console)
        step('Boot a VM from the restored disks: it replays the ext4 journal, '
             'checks every file and block, and must find every write the '
             'guest acknowledged before the backup point')
        check_restored(env, case, work, res['restored'], res['acked'],
                       say=say, echo=console)
    except CaseFailed as e:
        sys.exit(f'live demo FAILED: {e}\n(files kept in {work})')
    step('done')
    print('\nTimings:')
    for msg, secs in timings:
        print(f'  {secs:6.1f}s  {msg[:70]}')
    print(f'\nLive backup demo OK: backed up while writing '
          f'({res["overlap_mib"]:.0f} MiB during the backup), restored '
          'bit-identical to the backup point, restored VM checked.')


if __name__ == '__main__':
    main()
