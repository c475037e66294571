#!/usr/bin/env python3
"""Guest impact of a live backup, measured inside a real Linux guest.

  bench/bench-guest-impact.py <qemu build dir> [seconds per phase [rounds]]

One VM (guest kit, TCG or KVM as the probe decides; 1 vCPU, 256 MiB) with
one disk: ext4 on a qcow2 image, virtio-blk in an iothread.  The image is
made with a 1 GiB file of random data that the guest deletes first, so the
files it then writes land on blocks that still hold old data: each first
write to such a cluster during a backup costs a copy-before-write.  The
guest runs fswork without trim: files of 16 B .. 2 MiB, each fsync'ed,
reporting size and fsync latency per file ("DONE n bytes usec").

After a 10 s warm-up, phases one after another in the same VM, each
`seconds` long (default 15), the sequence repeated `rounds` times (default
3; the machine is shared, interleaving spreads its noise over all phases):
  none            no backup
  file            backups to a file, unthrottled, one after another (in
                  $BENCH_ARCHIVE_DIR if set, else next to the disk image)
  pipe            a backup into a pipe read at 20 MiB/s (cancelled at the
                  end of the phase)
  pipe+fleecing   the same with a fleecing image (qcow2, discard=unmap)
Per phase and round: files written, guest MiB/s (acknowledged bytes / phase
time), fsync latency p50 and p99; then per phase over all rounds (bytes /
time, percentiles of all fsyncs) and ratios against `none`, and the CPU
time the QEMU process used (100% = one core; the machine may have 2).
"""

import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'guest'))
from guestvm import Guest, build_kit, choose_accel  # noqa: E402

MiB = 1024 * 1024
DISK = 1536 * MiB
FILL = 1024 * MiB
DEV = 'drive-virtio0'


def pipe_reader(fd, rate):
    """Read fd at most `rate` bytes/s until EOF, discarding the data"""
    t0 = time.monotonic()
    got = 0
    while True:
        data = os.read(fd, 1 << 20)
        if not data:
            break
        got += len(data)
        ahead = got / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    os.close(fd)


def cpu_seconds(pid):
    """User + system CPU time of a process so far"""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100 * len(v)))] if v else float('nan')


def wait_backup(vm, timeout=600):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = vm.qmp.cmd('query-backup')
        if st.get('status') != 'active':
            return st
        time.sleep(0.1)
    raise RuntimeError('backup did not end')


def phase_none(vm, work, seconds):
    time.sleep(seconds)
    return 'no backup'


def phase_file(vm, work, seconds):
    end = time.monotonic() + seconds
    n = 0
    while True:
        archive = os.path.join(os.environ.get('BENCH_ARCHIVE_DIR', work),
                               f'bench-{n}.vma')
        vm.qmp.cmd('backup', backup_file=archive, devlist=DEV)
        st = wait_backup(vm)
        if st['status'] != 'done':
            raise RuntimeError(f'backup to a file: {st}')
        os.unlink(archive)
        n += 1
        if time.monotonic() >= end:
            return f'{n} backups to a file, each ~{seconds / n:.1f}s'


def phase_pipe(vm, work, seconds, fleecing=False):
    args = {'backup_file': '/dev/fdname/bench', 'devlist': DEV}
    if fleecing:
        img = os.path.join(work, 'fleece.qcow2')
        subprocess.run([vm.qemu_img, 'create', '-q', '-f', 'qcow2', img,
                        str(DISK)], check=True)
        vm.qmp.cmd('blockdev-add', driver='qcow2', node_name=f'{DEV}-fleecing',
                   discard='unmap', file={'driver': 'file', 'filename': img})
        args['fleecing'] = True
    r, w = os.pipe()
    reader = threading.Thread(target=pipe_reader, args=(r, 20 * MiB))
    reader.start()
    vm.qmp.cmd('getfd', fdname='bench', fds=[w])
    os.close(w)
    vm.qmp.cmd('backup', **args)
    time.sleep(seconds)
    st = vm.qmp.cmd('query-backup')
    active = st.get('status') == 'active'
    if active:
        vm.qmp.cmd('backup-cancel')
    st2 = wait_backup(vm)
    reader.join()
    if fleecing:
        vm.qmp.cmd('blockdev-del', node_name=f'{DEV}-fleecing')
        os.unlink(img)
    if not active:
        raise RuntimeError(f'the pipe backup ended before the phase: {st2}')
    return (f'pipe at 20 MiB/s{", fleecing" if fleecing else ""}: '
            f'{st["transferred"] / MiB:.0f} MiB of {st["total"] / MiB:.0f} '
            'sent, then cancelled')


PHASES = [('none', phase_none), ('file', phase_file), ('pipe', phase_pipe),
          ('pipe+fleecing', lambda vm, w, s: phase_pipe(vm, w, s, True))]


def main():
    build = os.path.abspath(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 15
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    qemu = os.path.join(build, 'qemu-system-x86_64')
    qemu_img = os.path.join(build, 'qemu-img')
    work = tempfile.mkdtemp(prefix='vma-bench-guest.', dir='/var/tmp')
    kit = build_kit()
    accel, why = choose_accel(qemu, kit, work)
    if not accel:
        sys.exit(f'no accelerator boots the guest: {why}')
    print(f'accelerator: {accel} ({why})', flush=True)

    # ext4 with a 1 GiB file of random data, as a qcow2 image
    raw = os.path.join(work, 'fs.raw')
    root = os.path.join(work, 'root')
    os.mkdir(root)
    subprocess.run(['head', '-c', str(FILL), '/dev/urandom'], check=True,
                   stdout=open(os.path.join(root, 'fill'), 'wb'))
    with open(raw, 'wb') as f:
        f.truncate(DISK)
    subprocess.run(['mkfs.ext4', '-q', '-F', '-d', root, '-E',
                    'lazy_itable_init=0,lazy_journal_init=0', raw], check=True)
    os.unlink(os.path.join(root, 'fill'))
    img = os.path.join(work, 'vm.qcow2')
    subprocess.run([qemu_img, 'convert', '-f', 'raw', '-O', 'qcow2', raw, img],
                   check=True)
    os.unlink(raw)

    vm = Guest(qemu, kit, work, 'bench', accel,
               [(DEV, img, 'qcow2', 'virtio')], {'work': 'bench', 'seed': 1})
    vm.qemu_img = qemu_img
    vm.launch()
    pooled = {name: ([], [], 0.0, 0.0) for name, _ in PHASES}
    try:
        if not vm.wait_line(r'^DONE 20 ', 120):
            sys.exit('the guest did not start writing:\n' + vm.text())
        time.sleep(10)        # warm-up: the guest's page cache, the journal
        for rnd, (name, run) in ((r, p) for r in range(1, rounds + 1)
                                 for p in PHASES):
            start_line = len(vm.lines)
            t0, c0 = time.monotonic(), cpu_seconds(vm.proc.pid)
            note = run(vm, work, seconds)
            t1, c1 = time.monotonic(), cpu_seconds(vm.proc.pid)
            sizes, lats = [], []
            for t, line in vm.lines[start_line:]:
                if line and line.startswith('DONE ') and t0 <= t <= t1:
                    _, _, size, usec = line.split()
                    sizes.append(int(size))
                    lats.append(int(usec) / 1000)
            ps, pl, pt, pc = pooled[name]
            pooled[name] = (ps + sizes, pl + lats, pt + t1 - t0, pc + c1 - c0)
            print(f'round {rnd} {name}: {len(sizes)} files, '
                  f'{sum(sizes) / MiB / (t1 - t0):.1f} MiB/s, fsync p50 '
                  f'{percentile(lats, 50):.1f} ms p99 {percentile(lats, 99):.1f}'
                  f' ms, QEMU CPU {100 * (c1 - c0) / (t1 - t0):.0f}% ({note})',
                  flush=True)
    finally:
        vm.quit()

    rows = []
    for name, _ in PHASES:
        sizes, lats, secs, cpu = pooled[name]
        rows.append((name, secs, len(sizes), sum(sizes) / MiB / secs,
                     percentile(lats, 50), percentile(lats, 99),
                     100 * cpu / secs))
    base = rows[0]
    print(f'\n{accel}, {rounds} rounds of {seconds:.0f} s per phase\n')
    print('| phase | seconds | files | guest MiB/s | fsync p50 ms | '
          'fsync p99 ms | MiB/s vs none | p50 vs none | p99 vs none | '
          'QEMU CPU |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for name, secs, files, mibs, p50, p99, cpu in rows:
        print(f'| {name} | {secs:.0f} | {files} | {mibs:.1f} | {p50:.1f} | '
              f'{p99:.1f} | {mibs / base[3]:.2f} | {p50 / base[4]:.1f} | '
              f'{p99 / base[5]:.1f} | {cpu:.0f}% |')
    subprocess.run(['rm', '-rf', work])


if __name__ == '__main__':
    main()
