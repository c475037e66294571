#!/usr/bin/env python3
"""Benchmark instant restore (tools/vma/vma-instant-restore) of a 10 GiB
disk, side by side in one run with `vma extract -r` into the same kind of
target, and with starting the same VM on an ordinary disk.

    bench/bench-vma-instant-restore.py [QEMU build dir]

Archive: one 10 GiB disk (SIZE_GIB) whose every block holds data
(bench/make-dense-vma.py), under /var/tmp (BENCH_DIR), page cache warm.

- time to running: from the start of `vma-instant-restore prepare` (it
  creates the target) to QMP `query-status` saying "running" of a QEMU
  (TCG, PC machine, the disk as virtio-blk) started on the archive; beside
  it the same QEMU started on a raw image of the same size.
- copy: `vma-instant-restore run` (block-stream into a qcow2 target;
  blockdev-mirror into a raw one) from the command to "done", beside
  `qemu-img create` + `vma extract -r` of the same archive into the same
  kind of target.  The targets are compared with qemu-img compare.

Median of REPEAT (default 3) runs; prints markdown tables.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1
                        else '/var/tmp/vma-qemu/qemu/build')
QEMU = os.path.join(BUILD, 'qemu-system-x86_64')
QEMU_IMG = os.path.join(BUILD, 'qemu-img')
VMA = os.path.join(BUILD, 'vma')
HELPER = os.path.join(REPO, 'tools', 'vma', 'vma-instant-restore')
REPEAT = int(os.environ.get('REPEAT', '3'))
SIZE_GIB = int(os.environ.get('SIZE_GIB', '10'))
DIR = os.environ.get('BENCH_DIR') or tempfile.mkdtemp(
    prefix='vma-ir-bench.', dir='/var/tmp')
ENV = dict(os.environ, VMA=VMA, QEMU_IMG=QEMU_IMG)


def p(name):
    return os.path.join(DIR, name)


def rm(*names):
    for n in names:
        if os.path.exists(p(n)):
            os.remove(p(n))


def qmp_connect(path, deadline):
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            f = s.makefile('rw', encoding='utf-8')
            f.readline()
            return s, f
        except (FileNotFoundError, ConnectionRefusedError):
            if time.time() > deadline:
                raise
            time.sleep(0.002)


def qmp(f, cmd):
    f.write(json.dumps({'execute': cmd}) + '\n')
    f.flush()
    while True:
        msg = json.loads(f.readline())
        if 'return' in msg or 'error' in msg:
            return msg


def start_vm(blockdev_args, sock):
    """Start QEMU; returns (process, seconds until it runs)"""
    t0 = time.time()
    vm = subprocess.Popen([QEMU, '-accel', 'tcg', '-M', 'pc', '-m', '256',
                           '-nodefaults', '-display', 'none',
                           *blockdev_args,
                           '-device', 'virtio-blk-pci,drive=drive-scsi0',
                           '-qmp', f'unix:{sock},server=on,wait=off'])
    s, f = qmp_connect(sock, t0 + 30)
    qmp(f, 'qmp_capabilities')
    while qmp(f, 'query-status')['return']['status'] != 'running':
        time.sleep(0.001)
    elapsed = time.time() - t0
    s.close()
    return vm, elapsed


def stop_vm(vm, sock):
    s, f = qmp_connect(sock, time.time() + 10)
    qmp(f, 'qmp_capabilities')
    qmp(f, 'quit')
    s.close()
    vm.wait(timeout=60)
    if os.path.exists(sock):
        os.remove(sock)


def instant_restore(fmt, target):
    """time to running (incl. prepare), copy time"""
    sock = p('qmp.sock')
    t0 = time.time()
    args = subprocess.run([HELPER, 'prepare', p('a.vma'),
                           f'drive-scsi0={target},format={fmt}'],
                          check=True, stdout=subprocess.PIPE, env=ENV,
                          universal_newlines=True).stdout.split()
    prep = time.time() - t0
    vm, running = start_vm(args, sock)
    t1 = time.time()
    subprocess.run([HELPER, 'run', '--qmp', sock, p('a.vma'),
                    f'drive-scsi0={target},format={fmt}'],
                   check=True, env=ENV, stderr=subprocess.DEVNULL)
    copy = time.time() - t1
    stop_vm(vm, sock)
    return prep + running, copy


def extract_restore(fmt, target):
    t0 = time.time()
    subprocess.run([QEMU_IMG, 'create', '-q', '-f', fmt, target,
                    f'{SIZE_GIB}G'], check=True)
    with open(p('map'), 'w', encoding='utf-8') as f:
        f.write(f'format={fmt}:0:drive-scsi0={target}\n')
    shutil.rmtree(p('x'), ignore_errors=True)
    subprocess.run([VMA, 'extract', p('a.vma'), '-r', p('map'), p('x')],
                   check=True, stdout=subprocess.DEVNULL)
    return time.time() - t0


def main():
    for prog in (QEMU, QEMU_IMG, VMA):
        if not os.access(prog, os.X_OK):
            sys.exit(f'bench-vma-instant-restore: {prog} not found')
    subprocess.run([sys.executable, os.path.join(REPO, 'bench',
                                                 'make-dense-vma.py'),
                    f'{SIZE_GIB}G', p('a.vma')], check=True)
    subprocess.run(['cat', p('a.vma')], stdout=subprocess.DEVNULL,
                   check=True)
    subprocess.run([QEMU_IMG, 'create', '-q', '-f', 'raw', p('plain.raw'),
                    f'{SIZE_GIB}G'], check=True)
    size = SIZE_GIB << 30
    res = {k: [] for k in ('plain', 'run-qcow2', 'run-raw', 'copy-qcow2',
                           'copy-raw', 'extract-qcow2', 'extract-raw')}
    for i in range(REPEAT):
        vm, t = start_vm(['-blockdev', 'driver=file,node-name=f,'
                          f'filename={p("plain.raw")}',
                          '-blockdev', 'driver=raw,node-name=drive-scsi0,'
                          'file=f'], p('qmp.sock'))
        res['plain'].append(t)
        stop_vm(vm, p('qmp.sock'))
        for fmt in ('qcow2', 'raw'):
            target, ref = p(f'ir.{fmt}'), p(f'ex.{fmt}')
            rm(f'ir.{fmt}', f'ex.{fmt}')
            run, copy = instant_restore(fmt, target)
            res[f'run-{fmt}'].append(run)
            res[f'copy-{fmt}'].append(copy)
            res[f'extract-{fmt}'].append(extract_restore(fmt, ref))
            if i == 0:
                subprocess.run([QEMU_IMG, 'compare', '-q', '-f', fmt, '-F',
                                fmt, target, ref], check=True)
            rm(f'ir.{fmt}', f'ex.{fmt}')
    med = {k: statistics.median(v) for k, v in res.items()}
    load = os.getloadavg()[0]
    print(f'instant restore benchmark: {time.strftime("%Y-%m-%d")}, '
          f'{os.cpu_count()} cores, {os.uname().release}, REPEAT={REPEAT}, '
          f'{SIZE_GIB} GiB dense disk, load average {load:.1f}')
    print()
    print('| time to running (median) | qcow2 target | raw target |')
    print('|---|---|---|')
    print(f"| vma-instant-restore prepare + QEMU start on the archive | "
          f"{med['run-qcow2']:.2f} s | {med['run-raw']:.2f} s |")
    print(f"| QEMU start on a raw image (reference) | {med['plain']:.2f} s "
          f"| {med['plain']:.2f} s |")
    print()
    print('| copy into the target (median) | qcow2 target | raw target |')
    print('|---|---|---|')
    for label, key in (('instant restore (VM running)', 'copy'),
                       ('qemu-img create + vma extract -r', 'extract')):
        cells = []
        for fmt in ('qcow2', 'raw'):
            t = med[f'{key}-{fmt}']
            cells.append(f'{t:.1f} s ({size / t / 2**20:.0f} MiB/s)')
        print(f'| {label} | {cells[0]} | {cells[1]} |')
    print('| ratio (extract time / instant restore copy time) | '
          f"{med['extract-qcow2'] / med['copy-qcow2']:.2f} | "
          f"{med['extract-raw'] / med['copy-raw']:.2f} |")


if __name__ == '__main__':
    try:
        main()
    finally:
        if not os.environ.get('BENCH_DIR'):
            shutil.rmtree(DIR, ignore_errors=True)
