#!/usr/bin/env python3
"""Live backup demo: start the patched QEMU with two disks, back them up
into a VMA archive (through zstd, as vzdump does) while the VM writes to
them, then restore the archive and compare it with the disks as they were
when the backup started.  The live disks keep the new data.

Usage: demo-live-backup.py <qemu build dir> <vma binary> <work dir>
"""

import os
import subprocess
import sys
import time

BUILD, VMA, WORK = sys.argv[1:4]
sys.path.insert(0, os.path.join(BUILD, '..', 'python'))
from qemu.machine import QEMUMachine  # noqa: E402

MiB = 1024 * 1024


def run(*args):
    subprocess.run(args, check=True)


def step(msg):
    print(f'\n### {msg}', flush=True)


def qemu_img(*args):
    run(os.path.join(BUILD, 'qemu-img'), *args)


def hmp(vm, command):
    return vm.cmd('human-monitor-command', command_line=command)


def main():
    disks = [(os.path.join(WORK, 'vm-disk0.qcow2'), 'qcow2', 32 * MiB + 4608),
             (os.path.join(WORK, 'vm-disk1.raw'), 'raw', 540672)]
    step('Two disks: a qcow2 and a raw one, sizes not multiples of 64 KiB')
    for i, (path, fmt, size) in enumerate(disks):
        qemu_img('create', '-q', '-f', fmt, path, str(size))
        run(os.path.join(BUILD, 'qemu-io'), '-f', fmt, '-c',
            f'write -P {0x10 + i} 0 {size // 2}', path)
        # what the backup must contain: the disk before the VM touches it
        qemu_img('convert', '-f', fmt, '-O', 'raw', path, path + '.expected')

    vm = QEMUMachine(os.path.join(BUILD, 'qemu-system-x86_64'),
                     args=['-accel', 'qtest', '-nodefaults', '-display',
                           'none'],
                     base_temp_dir=WORK)
    for i, (path, fmt, _) in enumerate(disks):
        vm.add_args('-drive',
                    f'if=virtio,id=drive-virtio{i},file={path},format={fmt}')
    vm.launch()

    step('backup (QMP) into a zstd pipe, slowed to 4 MiB/s')
    r, w = os.pipe()
    archive = os.path.join(WORK, 'vzdump-live.vma.zst')
    with open(archive, 'wb') as out:
        zstd = subprocess.Popen(['zstd', '-q', '-c'], stdin=r, stdout=out)
        os.close(r)
        vm.send_fd_scm(fd=w)
        vm.cmd('getfd', fdname='archive')
        os.close(w)
        uuid = vm.cmd('backup', backup_file='/dev/fdname/archive',
                      speed=4 * MiB)['UUID']
        print(f'backup started, uuid {uuid}')

        step('The VM writes to both disks while the backup runs')
        for n in range(24):
            d = n % 2
            off = (n * 104729) % (disks[d][2] - 4096) // 512 * 512
            hmp(vm, f'qemu-io drive-virtio{d} "write -P 0xee {off} 4096"')
        print(hmp(vm, 'info backup'))
        for job in vm.cmd('query-block-jobs'):
            vm.cmd('block-job-set-speed', device=job['device'], speed=0)
        while vm.cmd('query-backup')['status'] == 'active':
            time.sleep(0.1)
        zstd.wait()
    status = vm.cmd('query-backup')
    print(hmp(vm, 'info backup'))
    if status['status'] != 'done':
        sys.exit(f'backup failed: {status.get("errmsg")}')
    vm.shutdown()

    step('Restore: zstd -d | vma extract, then compare')
    restored = os.path.join(WORK, 'restored-live')
    unzstd = subprocess.Popen(['zstd', '-q', '-d', '-c', archive],
                              stdout=subprocess.PIPE)
    subprocess.run([VMA, 'extract', '-', restored], stdin=unzstd.stdout,
                   check=True)
    unzstd.wait()
    for i, (path, fmt, _) in enumerate(disks):
        out = os.path.join(restored, f'disk-drive-virtio{i}.raw')
        qemu_img('compare', '-q', '-f', 'raw', '-F', 'raw',
                 path + '.expected', out)
        print(f'{out} == disk {i} as it was when the backup started')
        changed = subprocess.run([os.path.join(BUILD, 'qemu-img'), 'compare',
                                  '-q', '-f', fmt, '-F', 'raw', path,
                                  path + '.expected']).returncode
        if changed != 1:
            sys.exit(f'disk {i} should hold the VM\'s new writes')
        print(f'{path} holds the writes the VM made during the backup')
    print('\nLive backup demo OK.')


if __name__ == '__main__':
    main()
