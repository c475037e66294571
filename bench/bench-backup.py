#!/usr/bin/env python3
"""Live backup benchmarks: the QMP `backup` command (VMA archive) beside
upstream `blockdev-backup` and `qemu-img convert`, on tmpfs.

Every comparison runs side by side in one run, in alternating orders,
REPEAT times; tables show medians and the median of the per-round ratios.
The machine is shared and noisy: read ratios, not absolute times.

Parts (--parts, default all but analyze, in this order):
  sparse   64 GiB empty disk (raw sparse; qcow2 empty for context):
           seconds to back up, archive size; beside blockdev-backup to a
           qcow2 target and qemu-img convert
  idle     4 GiB disk full of random data, idle guest: backup,
           blockdev-backup (sync=full, raw file target added with
           blockdev-add), the same in QEMU without the series (STOCK_QEMU,
           if built: scripts/qemu-build-stock.sh) and qemu-img convert -O
           raw; QEMU's peak extra RSS (VmHWM
           after clear_refs, and sampled VmRSS) during each
  workers  the same backup with max-workers 1, 2, 4, 16, 64 (WORKERS),
           beside qemu-img convert
  cbw      I/O per guest write during a backup held back (speed 1 B/s), on
           a 1 GiB disk (CBW_GIB): source-file syscalls (strace),
           query-blockstats, archive bytes, for writes to saved clusters,
           to unsaved ones, again to the same ones, and 4 KiB writes; then
           the archive is verified and extracted and the clusters checked
  guest    guest write throughput (random 64 KiB writes through the
           virtio-blk device, pipelined HMP qemu-io commands; QD1 `write`
           and an `aio_write` burst) without a backup, during `backup`,
           during a held-back `backup` (every write copies first) and
           during blockdev-backup; disk in the main loop and in an iothread
  analyze  where the time goes: strace -c -f and (if present) perf record
           of QEMU during one backup and one blockdev-backup of the 4 GiB
           disk

Freed memory: on a VM that reports freed pages to its host at once
(Linux free page reporting, /sys/module/page_reporting/parameters/
min_free_ms = 0, as here), a page used again costs a fault in the host,
and the same work takes several times as long depending on which pages it
gets (a 4 GiB dd into tmpfs: 1.4 s to 12 s).  The run holds freed pages
back for HOLD_FREED_MS (default 60000) so that every method pays the same
for memory, and restores the setting at the end (HOLD_FREED_MS=0: leave
it).  The setting is printed with the results.

Memory: everything lives in tmpfs (memory) on a shared machine.  A step
that could leave less than MIN_FREE_GIB (default 4) of available memory is
refused, and a watchdog kills this script's own QEMU/qemu-img processes if
available memory still falls below it.

Usage: bench/bench-backup.py [--parts idle,sparse,...] [--repeat N]
Env:   QEMU_BUILD (default /var/tmp/vma-qemu/qemu/build; its ../python is
       QEMU's python library unless QEMU_PYTHON is set), VMA_BIN (default
       build/vma next to bench/), BENCH_DIR (default a new directory under
       /dev/shm, removed at the end), REPEAT (default 5), SIZE_GIB (4),
       SPARSE_GIB (64), GUEST_WRITES (1024), CBW_WRITES (116), CBW_GIB (1),
       MIN_FREE_GIB (4), HOLD_FREED_MS (60000), STOCK_QEMU (default
       /var/tmp/vma-qemu/stock/build/qemu-system-x86_64 if it exists;
       "none": leave stock blockdev-backup out)
"""

import argparse
import glob
import itertools
import json
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QEMU_BUILD = os.path.abspath(os.environ.get('QEMU_BUILD',
                                            '/var/tmp/vma-qemu/qemu/build'))
QEMU_PYTHON = os.environ.get('QEMU_PYTHON',
                             os.path.join(QEMU_BUILD, '..', 'python'))
VMA_BIN = os.path.abspath(os.environ.get(
    'VMA_BIN', os.path.join(HERE, '..', 'build', 'vma')))
QEMU_SYSTEM = os.path.join(QEMU_BUILD, 'qemu-system-x86_64')
STOCK_QEMU = os.environ.get(
    'STOCK_QEMU', '/var/tmp/vma-qemu/stock/build/qemu-system-x86_64')
if STOCK_QEMU == 'none' or not os.access(STOCK_QEMU, os.X_OK):
    STOCK_QEMU = None
QEMU_IMG = os.path.join(QEMU_BUILD, 'qemu-img')

sys.path.insert(0, QEMU_PYTHON)
from qemu.machine import QEMUMachine  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
CLUSTER = 64 * KiB
CLK_TCK = os.sysconf('SC_CLK_TCK')
QDEV = '/machine/peripheral/vd0/virtio-backend'


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


def median(values):
    return statistics.median(values)


def orders(items, rounds):
    """One order of @items per round: every permutation in turn"""
    perms = list(itertools.permutations(items))
    # start with an order and its reverse, then the others
    perms.sort(key=lambda p: (p != tuple(items), p != tuple(reversed(items))))
    return [list(perms[i % len(perms)]) for i in range(rounds)]


def fmt_s(t):
    return f'{t:.2f} s' if t >= 0.1 else f'{t * 1000:.0f} ms'


def fmt_mib(n):
    return f'{n / MiB:.1f} MiB'


def allocated(path):
    return os.stat(path).st_blocks * 512


def rm(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


# /proc helpers

def proc_status(pid, key):
    """A kB value from /proc/<pid>/status, in bytes"""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * KiB
    raise KeyError(key)


def proc_minflt(pid):
    """Minor page faults of a process so far"""
    with open(f'/proc/{pid}/stat') as f:
        return int(f.read().rsplit(')', 1)[1].split()[7])


def proc_cpu(pid, tid=None):
    """User + system CPU seconds of a process (all its threads) or of one
    of its threads"""
    path = f'/proc/{pid}/task/{tid}/stat' if tid else f'/proc/{pid}/stat'
    with open(path) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class RssSampler:
    """Resets VmHWM, samples VmRSS every few ms until stopped"""

    def __init__(self, pid):
        self.pid = pid
        with open(f'/proc/{pid}/clear_refs', 'w') as f:
            f.write('5')            # VmHWM := VmRSS
        self.base = proc_status(pid, 'VmRSS')
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.005):
            try:
                self.peak = max(self.peak, proc_status(self.pid, 'VmRSS'))
            except (OSError, KeyError):
                return

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.hwm = proc_status(self.pid, 'VmHWM')
        self.after = proc_status(self.pid, 'VmRSS')
        return self


class PipeQMP:
    """A second QMP monitor, spoken to directly, to pipeline commands"""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        for _ in range(100):
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.05)
        self.f = self.sock.makefile('rb')
        json.loads(self.f.readline())       # greeting
        self.run([('qmp_capabilities', {})])

    def _reply(self):
        while True:
            msg = json.loads(self.f.readline())
            if 'event' not in msg:
                return msg

    def run(self, cmds, times=None):
        """Send every command at once, then collect the replies in order;
        the perf_counter() time of each reply goes to @times"""
        data = b''.join(json.dumps({'execute': c, 'arguments': a}).encode()
                        + b'\n' for c, a in cmds)
        sender = threading.Thread(target=self.sock.sendall, args=(data,))
        sender.start()
        replies = []
        for _ in cmds:
            replies.append(self._reply())
            if times is not None:
                times.append(time.perf_counter())
        sender.join()
        for r in replies:
            if 'error' in r:
                raise RuntimeError(f'QMP error: {r["error"]}')
        return [r['return'] for r in replies]

    def close(self):
        self.f.close()
        self.sock.close()


def hmp_io(cmd):
    """The HMP command for qemu-io @cmd through the guest's device"""
    return ('human-monitor-command',
            {'command-line': f'qemu-io -d {QDEV} "{cmd}"'})


class VM:
    """QEMU (qtest accelerator, q35) with one virtio-blk disk, node d0"""

    def __init__(self, workdir, image, fmt='raw', iothread=False,
                 qemu=None):
        self.workdir = workdir
        self.m = QEMUMachine(qemu or QEMU_SYSTEM,
                             args=['-accel', 'qtest', '-nodefaults',
                                   '-display', 'none', '-M', 'q35'],
                             base_temp_dir=workdir)
        self.pipe_path = os.path.join(workdir, f'pipe-{id(self)}.sock')
        if iothread:
            self.m.add_args('-object', 'iothread,id=io0')
        self.m.add_args(
            '-blockdev', f'driver=file,node-name=f0,filename={image}',
            '-blockdev', f'driver={fmt},node-name=d0,file=f0',
            '-device', 'virtio-blk-pci,drive=d0,id=vd0' +
            (',iothread=io0' if iothread else ''),
            '-chardev', f'socket,id=pipe,path={self.pipe_path},server=on,'
                        'wait=off',
            '-mon', 'chardev=pipe,mode=control')
        self.m.launch()
        self.pid = self.m.get_pid()
        GUARD.pids.add(self.pid)
        self.pipe = PipeQMP(self.pipe_path)

    def cmd(self, *args, **kwargs):
        return self.m.cmd(*args, **kwargs)

    def hmp(self, line):
        return self.m.cmd('human-monitor-command', command_line=line)

    def shutdown(self):
        try:
            self.pipe.close()
            self.m.shutdown()
        finally:
            GUARD.pids.discard(self.pid)
            rm(self.pipe_path)
        GUARD.check()

    def wait_backup(self, timeout=900, poll=0.01):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st = self.cmd('query-backup')
            if st.get('status') != 'active':
                return st
            time.sleep(poll)
        raise TimeoutError('backup did not end')

    def backup(self, archive, timeout=900, **kwargs):
        """A whole backup: (seconds, final query-backup)"""
        t0 = time.perf_counter()
        self.cmd('backup', backup_file=archive, **kwargs)
        st = self.wait_backup(timeout)
        t = time.perf_counter() - t0
        if st['status'] != 'done':
            raise RuntimeError(f'backup failed: {st}')
        return t, st

    def add_target(self, path, size, fmt='raw'):
        subprocess.run([QEMU_IMG, 'create', '-q', '-f', fmt, path,
                        str(size)], check=True)
        self.cmd('blockdev-add', driver=fmt, node_name='tgt',
                 file={'driver': 'file', 'filename': path})

    def del_target(self):
        self.cmd('blockdev-del', node_name='tgt')

    def blockdev_backup(self, timeout=900):
        """blockdev-backup d0 -> tgt, sync=full: seconds"""
        self.m.get_qmp_events(wait=False)
        t0 = time.perf_counter()
        self.cmd('blockdev-backup', job_id='bb', device='d0', target='tgt',
                 sync='full')
        ev = self.m.event_wait('BLOCK_JOB_COMPLETED', timeout=timeout)
        t = time.perf_counter() - t0
        if ev is None or 'error' in ev['data'] or \
                ev['data']['offset'] != ev['data']['len']:
            raise RuntimeError(f'blockdev-backup failed: {ev}')
        return t


def run_timed(args):
    """Run a command: (seconds, CPU seconds, minor page faults)"""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    GUARD.pids.add(proc.pid)
    proc.wait()
    t = time.perf_counter() - t0
    GUARD.pids.discard(proc.pid)
    GUARD.check()
    if proc.returncode:
        raise RuntimeError(f'{args} failed: {proc.returncode}')
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime -
                                                 before.ru_stime)
    return t, cpu, after.ru_minflt - before.ru_minflt


def vma(*args):
    return subprocess.run([VMA_BIN, *args], check=True, capture_output=True,
                          text=True).stdout


def files_equal(a, b, chunk=16 * MiB):
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


class OutOfMemory(RuntimeError):
    pass


class MemGuard:
    """Keeps the benchmark from eating the shared machine's memory (tmpfs
    files are memory): refuses to start a step that could leave less than
    MIN_FREE_GIB available, and kills the processes this script started if
    available memory still drops below it."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.floor = float(os.environ.get('MIN_FREE_GIB', '4')) * GiB
        self.pids = set()
        self.tripped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def available():
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * KiB
        return 0

    def ensure_room(self, need):
        """Before writing up to @need bytes into the work dir"""
        vfs = os.statvfs(self.workdir)
        free = vfs.f_bavail * vfs.f_frsize
        if self.available() - need < self.floor or free - need < GiB:
            raise OutOfMemory(f'not enough memory for {need / GiB:.1f} GiB '
                              f'more (available {self.available() / GiB:.1f}'
                              f' GiB, floor {self.floor / GiB:.1f} GiB)')

    def _run(self):
        while not self._stop.wait(0.1):
            if self.available() < self.floor and not self.tripped:
                self.tripped = True
                log('available memory below the floor: killing our '
                    f'processes {sorted(self.pids)}')
                for pid in list(self.pids):
                    try:
                        os.kill(pid, 9)
                    except OSError:
                        pass

    def check(self):
        if self.tripped:
            raise OutOfMemory('available memory dropped below the floor')

    def stop(self):
        self._stop.set()
        self._thread.join()


GUARD = None


class HeldFreedPages:
    """Free page reporting held back for the run (see the docstring)"""

    PATH = '/sys/module/page_reporting/parameters/min_free_ms'

    def __init__(self):
        self.saved = None
        self.hold = os.environ.get('HOLD_FREED_MS', '60000')
        try:
            with open(self.PATH) as f:
                self.saved = f.read().strip()
        except OSError:
            self.state = 'no free page reporting here'
            return
        if self.hold == '0':
            self.state = f'free page reporting min_free_ms {self.saved} ' \
                         '(left as it was)'
            return
        try:
            with open(self.PATH, 'w') as f:
                f.write(self.hold)
        except OSError as e:
            self.state = f'free page reporting min_free_ms {self.saved} ' \
                         f'(cannot hold freed pages: {e})'
            return
        self.state = (f'free page reporting min_free_ms {self.hold} during '
                      f'the run ({self.saved} before and after)')
        self.held = True

    def warm_up(self, workdir, size):
        """Touch and free @size bytes of tmpfs: the rounds then start on
        pages the host has not taken back"""
        if not getattr(self, 'held', False):
            return
        path = os.path.join(workdir, 'warm-up')
        chunk = b'\1' * (16 * MiB)
        t = time.monotonic()
        with open(path, 'wb') as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)
        os.unlink(path)
        log(f'warmed up {size // MiB} MiB of memory in '
            f'{time.monotonic() - t:.1f} s')

    def restore(self):
        if self.saved is not None and self.hold != '0':
            try:
                with open(self.PATH, 'w') as f:
                    f.write(self.saved)
            except OSError as e:
                log(f'cannot restore {self.PATH} to {self.saved}: {e}')


def make_random_image(path, size):
    log(f'creating {size // GiB} GiB of random data in {path}')
    with open(path, 'wb') as f:
        for _ in range(size // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
        f.write(os.urandom(size % (16 * MiB)))


def copy_through(path):
    """Copy @path once to a scratch file, untimed, and delete the copy: here
    the first copy after a 4 GiB image was written into tmpfs took 9-12 s,
    later ones 2 s, whatever made it (so the first method of the first
    round paid for all)"""
    t = time.monotonic()
    scratch = path + '.warm-up'
    with open(path, 'rb') as src, open(scratch, 'wb') as dst:
        while True:
            buf = src.read(16 * MiB)
            if not buf:
                break
            dst.write(buf)
    os.unlink(scratch)
    log(f'copied {path} once, untimed, in {time.monotonic() - t:.1f} s')


# The benchmarks.  Each returns markdown lines.

class Bench:
    def __init__(self, workdir, repeat):
        self.dir = workdir
        self.repeat = repeat
        self.size = int(os.environ.get('SIZE_GIB', '4')) * GiB
        self.sparse_size = int(os.environ.get('SPARSE_GIB', '64')) * GiB
        self.guest_writes = int(os.environ.get('GUEST_WRITES', '1024'))
        self.cbw_writes = int(os.environ.get('CBW_WRITES', '116'))
        self.image = os.path.join(workdir, 'disk.raw')
        self.archive = os.path.join(workdir, 'backup.vma')
        self.target = os.path.join(workdir, 'target.raw')
        self.copy = os.path.join(workdir, 'copy.raw')
        self.rss = {}           # method -> list of RssSampler
        self.raw = {}           # everything measured, for --json

    def random_image(self):
        if not os.path.exists(self.image):
            GUARD.ensure_room(self.size)
            make_random_image(self.image, self.size)
            GUARD.ensure_room(self.size)
            copy_through(self.image)
        return self.image

    # one measurement of each method on @image

    def m_backup(self, image, fmt='raw', verify=False, **kwargs):
        rm(self.archive)
        GUARD.ensure_room(allocated(image) + 256 * MiB)
        vm = VM(self.dir, image, fmt)
        try:
            cpu0, faults0 = proc_cpu(vm.pid), proc_minflt(vm.pid)
            rss = RssSampler(vm.pid)
            t, st = vm.backup(self.archive, **kwargs)
            rss.stop()
            cpu = proc_cpu(vm.pid) - cpu0
            faults = proc_minflt(vm.pid) - faults0
        finally:
            vm.shutdown()
        res = {'t': t, 'cpu': cpu, 'faults': faults, 'rss': rss, 'st': st,
               'size': os.path.getsize(self.archive),
               'alloc': allocated(self.archive)}
        if verify:
            vma('verify', self.archive)
        rm(self.archive)
        return res

    def m_blockdev_backup(self, image, fmt='raw', verify=False,
                          target_fmt='raw', qemu=None):
        rm(self.target)
        GUARD.ensure_room(allocated(image) + 256 * MiB)
        vm = VM(self.dir, image, fmt, qemu=qemu)
        try:
            vm.add_target(self.target, vm.cmd('query-block')[0]
                          ['inserted']['image']['virtual-size'], target_fmt)
            cpu0, faults0 = proc_cpu(vm.pid), proc_minflt(vm.pid)
            rss = RssSampler(vm.pid)
            t = vm.blockdev_backup()
            rss.stop()
            cpu = proc_cpu(vm.pid) - cpu0
            faults = proc_minflt(vm.pid) - faults0
            vm.del_target()
        finally:
            vm.shutdown()
        res = {'t': t, 'cpu': cpu, 'faults': faults, 'rss': rss,
               'size': os.path.getsize(self.target),
               'alloc': allocated(self.target)}
        if verify and fmt == target_fmt == 'raw' and \
                not files_equal(image, self.target):
            raise RuntimeError('blockdev-backup target differs')
        rm(self.target)
        return res

    def m_convert(self, image, fmt='raw'):
        rm(self.copy)
        GUARD.ensure_room(allocated(image) + 256 * MiB)
        t, cpu, faults = run_timed([QEMU_IMG, 'convert', '-f', fmt, '-O',
                                    'raw', image, self.copy])
        res = {'t': t, 'cpu': cpu, 'faults': faults,
               'size': os.path.getsize(self.copy),
               'alloc': allocated(self.copy)}
        rm(self.copy)
        return res

    def compare(self, methods, image, fmt='raw'):
        """Run @methods (name -> fn(image, fmt, first)) side by side"""
        results = {name: [] for name in methods}
        for rnd, order in enumerate(orders(list(methods), self.repeat)):
            log(f'  round {rnd + 1}/{self.repeat}: {", ".join(order)}')
            for name in order:
                r = methods[name](image, fmt, rnd == 0)
                log(f'    {name}: {r["t"]:.3f} s, cpu {r["cpu"]:.2f} s, '
                    f'{r.get("faults", 0):,} page faults')
                results[name].append(r)
        return results

    @staticmethod
    def ratio(results, a, b):
        """Median over rounds of time(b) / time(a): > 1 when a is faster"""
        rs = [rb['t'] / ra['t'] for ra, rb in zip(results[a], results[b])]
        return median(rs), min(rs), max(rs)

    # part: idle 4 GiB backup

    def part_idle(self):
        image = self.random_image()
        log(f'idle backup of {self.size // GiB} GiB random data')
        methods = {
            'backup': lambda i, f, first: self.m_backup(i, f, verify=first),
            'blockdev-backup': lambda i, f, first:
                self.m_blockdev_backup(i, f, verify=first),
            'qemu-img convert': lambda i, f, first: self.m_convert(i, f),
        }
        if STOCK_QEMU:
            methods['blockdev-backup, stock QEMU'] = lambda i, f, first: \
                self.m_blockdev_backup(i, f, verify=first, qemu=STOCK_QEMU)
        res = self.compare(methods, image)
        self.raw['idle'] = res
        self.rss['backup'] = [r['rss'] for r in res['backup']]
        self.rss['blockdev-backup'] = [r['rss'] for r in
                                       res['blockdev-backup']]
        gib = self.size / GiB
        out = [f'{self.size // GiB} GiB raw image of random data on tmpfs, '
               'target on tmpfs, idle guest; median of '
               f'{self.repeat} rounds (orders alternate)', '',
               '| method | time | throughput | QEMU / qemu-img CPU | '
               'fastest round: time, CPU | '
               'minor page faults, median (min-max) | output size |',
               '|---|---|---|---|---|---|---|']
        for name, rs in res.items():
            t = median([r['t'] for r in rs])
            cpu = median([r['cpu'] for r in rs])
            best = min(rs, key=lambda r: r['t'])
            faults = [r['faults'] for r in rs]
            out.append(f'| {name} | {fmt_s(t)} | {gib / t:.2f} GiB/s | '
                       f'{cpu:.2f} s | {fmt_s(best["t"])}, '
                       f'{best["cpu"]:.2f} s | {median(faults):,.0f} '
                       f'({min(faults):,}-{max(faults):,}) | '
                       f'{rs[0]["size"] / MiB:.0f} MiB |')
        out.append('')
        out.append('| ratio (median of per-round ratios, min-max) | value |')
        out.append('|---|---|')
        for a, b, what in (
                ('backup', 'blockdev-backup',
                 'backup throughput / blockdev-backup throughput'),
                ('backup', 'blockdev-backup, stock QEMU',
                 'backup throughput / stock blockdev-backup throughput'),
                ('backup', 'qemu-img convert',
                 'backup throughput / qemu-img convert throughput'),
                ('blockdev-backup', 'qemu-img convert',
                 'blockdev-backup throughput / qemu-img convert throughput'),
                ('blockdev-backup', 'blockdev-backup, stock QEMU',
                 'blockdev-backup throughput, with the series / stock')):
            if a not in res or b not in res:
                continue
            m, lo, hi = self.ratio(res, a, b)
            out.append(f'| {what} | {m:.2f}x ({lo:.2f}-{hi:.2f}) |')
        for a, b in (('backup', 'blockdev-backup'),
                     ('backup', 'blockdev-backup, stock QEMU'),
                     ('backup', 'qemu-img convert')):
            if b in res:
                ta = min(r['t'] for r in res[a])
                tb = min(r['t'] for r in res[b])
                out.append(f'| {a} / {b} throughput, fastest rounds | '
                           f'{tb / ta:.2f}x |')
        cpu_b = median([r['cpu'] for r in res['backup']])
        cpu_bb = median([r['cpu'] for r in res['blockdev-backup']])
        out.append(f'| QEMU CPU seconds, backup / blockdev-backup | '
                   f'{cpu_b / cpu_bb:.2f}x |')
        return out

    def part_rss(self):
        if not self.rss:
            return []
        out = ['Peak extra RSS of QEMU during the idle backups above '
               '(VmHWM reset with clear_refs just before the command, '
               'minus VmRSS then; sampled VmRSS every 5 ms)', '',
               '| method | VmRSS before | peak extra (VmHWM), median / max |'
               ' peak extra (sampled) max | VmRSS after, extra |',
               '|---|---|---|---|---|']
        for name, rss in self.rss.items():
            hwm = [r.hwm - r.base for r in rss]
            smp = [r.peak - r.base for r in rss]
            aft = [r.after - r.base for r in rss]
            out.append(f'| {name} | {fmt_mib(median([r.base for r in rss]))}'
                       f' | {fmt_mib(median(hwm))} / {fmt_mib(max(hwm))} | '
                       f'{fmt_mib(max(smp))} | {fmt_mib(median(aft))} |')
        return out

    # part: max-workers

    def part_workers(self):
        image = self.random_image()
        log('backup with different max-workers')
        workers = [int(w) for w in
                   os.environ.get('WORKERS', '1,2,4,16,64').split(',')]
        methods = {f'max-workers={w}':
                   (lambda i, f, first, w=w: self.m_backup(i, f,
                                                           max_workers=w))
                   for w in workers}
        methods['qemu-img convert'] = lambda i, f, first: self.m_convert(i, f)
        res = self.compare(methods, image)
        self.raw['workers'] = res
        gib = self.size / GiB
        out = [f'`backup` of the same {self.size // GiB} GiB image with '
               f'max-workers {", ".join(map(str, workers))}, beside '
               f'qemu-img convert; median of {self.repeat} rounds', '',
               '| max-workers | time | throughput | QEMU CPU | '
               'peak extra RSS (VmHWM) | throughput / qemu-img convert |',
               '|---|---|---|---|---|---|']
        for name, rs in res.items():
            if name == 'qemu-img convert':
                continue
            t = median([r['t'] for r in rs])
            m, lo, hi = self.ratio(res, name, 'qemu-img convert')
            out.append(f'| {name.split("=")[1]} | {fmt_s(t)} | '
                       f'{gib / t:.2f} GiB/s | '
                       f'{median([r["cpu"] for r in rs]):.2f} s | '
                       f'{fmt_mib(max(r["rss"].hwm - r["rss"].base for r in rs))}'
                       f' | {m:.2f}x ({lo:.2f}-{hi:.2f}) |')
        return out

    # part: 64 GiB empty disk

    def part_sparse(self):
        out = [f'{self.sparse_size // GiB} GiB empty disks on tmpfs: raw '
               '(sparse file, no data) and qcow2 (no cluster allocated); '
               f'median of {self.repeat} rounds. blockdev-backup target: '
               'qcow2 (a raw one on tmpfs gets every zero allocated); '
               'qemu-img convert: -O raw', '',
               '| disk | method | time | output size (allocated) | '
               'QEMU / qemu-img CPU |',
               '|---|---|---|---|---|']
        ratios = []
        for fmt in ('raw', 'qcow2'):
            image = os.path.join(self.dir, f'sparse.{fmt}')
            subprocess.run([QEMU_IMG, 'create', '-q', '-f', fmt, image,
                            str(self.sparse_size)], check=True)
            log(f'backup of an empty {self.sparse_size // GiB} GiB {fmt}')
            methods = {
                'backup': lambda i, f, first: self.m_backup(i, f,
                                                            verify=first),
                # a raw target on tmpfs would get every zero allocated
                # (tmpfs has no FALLOC_FL_ZERO_RANGE: file-posix punches a
                # hole, then fallocates): 64 GiB of memory
                'blockdev-backup': lambda i, f, first:
                    self.m_blockdev_backup(i, f, target_fmt='qcow2'),
                'qemu-img convert': lambda i, f, first:
                    self.m_convert(i, f),
            }
            res = self.compare(methods, image, fmt)
            self.raw[f'sparse-{fmt}'] = res
            rm(image)
            for name, rs in res.items():
                t = median([r['t'] for r in rs])
                out.append(f'| {fmt} | {name} | {fmt_s(t)} | '
                           f'{rs[0]["size"]:,} B ({rs[0]["alloc"]:,} B) | '
                           f'{median([r["cpu"] for r in rs]):.2f} s |')
            st = res['backup'][0]['st']
            ratios.append((fmt, self.ratio(res, 'backup', 'blockdev-backup'),
                           st))
        out.append('')
        for fmt, (m, lo, hi), st in ratios:
            out.append(f'- {fmt}: blockdev-backup time / backup time = '
                       f'{m:.2f}x ({lo:.2f}-{hi:.2f}); query-backup: '
                       f'transferred {st["transferred"]:,}, zero-bytes '
                       f'{st["zero-bytes"]:,}')
        return out

    # part: I/O per guest write (copy-before-write)

    def part_cbw(self):
        # its own smaller image: the archive is extracted at the end
        size = int(os.environ.get('CBW_GIB', '1')) * GiB
        image = os.path.join(self.dir, 'cbw.raw')
        GUARD.ensure_room(3 * size)
        make_random_image(image, size)
        try:
            return self._part_cbw(image, size)
        finally:
            rm(image)

    def _part_cbw(self, image, size):
        n = self.cbw_writes
        log(f'I/O per guest write: {n} writes per phase, strace on QEMU')
        rm(self.archive)
        vm = VM(self.dir, image)
        strace_log = os.path.join(self.dir, 'strace.log')
        tracer = None
        try:
            # The job saves the start of the disk, then is held back
            vm.cmd('backup', backup_file=self.archive, speed=32 * MiB)
            time.sleep(0.5)
            job = vm.cmd('query-block-jobs')[0]['device']
            vm.cmd('block-job-set-speed', device=job, speed=1)
            time.sleep(0.5)
            saved = vm.cmd('query-backup')['transferred']
            n_clusters = size // CLUSTER
            rng = random.Random(7)
            saved_cl = rng.sample(range(0, saved // 2 // CLUSTER), n)
            far = rng.sample(range(n_clusters // 4, n_clusters), 2 * n)
            unsaved_cl, small_cl = far[:n], far[n:]
            phases = [
                ('64 KiB write, cluster already saved by the job',
                 [(c * CLUSTER, CLUSTER) for c in saved_cl]),
                ('64 KiB write, cluster not yet saved (far ahead of the job)',
                 [(c * CLUSTER, CLUSTER) for c in unsaved_cl]),
                ('64 KiB write, same clusters again (saved by the write '
                 'before)', [(c * CLUSTER, CLUSTER) for c in unsaved_cl]),
                ('4 KiB write at +8 KiB, cluster not yet saved',
                 [(c * CLUSTER + 8 * KiB, 4 * KiB) for c in small_cl]),
            ]
            # what the archive must hold for these clusters
            old = {}
            with open(image, 'rb') as f:
                for c in saved_cl + unsaved_cl + small_cl:
                    f.seek(c * CLUSTER)
                    old[c] = f.read(CLUSTER)

            fds = {}
            for fd in os.listdir(f'/proc/{vm.pid}/fd'):
                try:
                    fds[int(fd)] = os.readlink(f'/proc/{vm.pid}/fd/{fd}')
                except OSError:
                    pass
            src_fds = {fd for fd, p in fds.items() if p == image}
            arc_fds = {fd for fd, p in fds.items() if p == self.archive}
            tracer = subprocess.Popen(
                ['strace', '-f', '-qq', '-ttt', '-s', '0', '-e', 'signal=none',
                 '-e', 'trace=pread64,pwrite64,preadv,pwritev,preadv2,'
                 'pwritev2,write,writev', '-o', strace_log,
                 '-p', str(vm.pid)])
            time.sleep(1.5)

            def bstats():
                s = {}
                for b in vm.cmd('query-blockstats', query_nodes=False):
                    if b.get('qdev') == QDEV:
                        s = b['stats']
                nodes = vm.cmd('query-blockstats', query_nodes=True)
                node = [b['stats'] for b in nodes
                        if b.get('node-name') == 'd0'][0]
                keys = ('rd_operations', 'rd_bytes', 'wr_operations',
                        'wr_bytes')
                return ({k: s[k] for k in keys}, {k: node[k] for k in keys})

            windows = []
            for i, (label, writes) in enumerate(phases):
                before = (bstats(), vm.cmd('query-backup')['transferred'],
                          os.path.getsize(self.archive))
                time.sleep(0.3)
                t0 = time.time()
                cmds = []
                for off, length in writes:
                    cmds.append(hmp_io(f'aio_write -P {0x40 + i} {off} '
                                       f'{length}'))
                    cmds.append(hmp_io('aio_flush'))
                vm.pipe.run(cmds)
                t1 = time.time()
                time.sleep(0.3)
                after = (bstats(), vm.cmd('query-backup')['transferred'],
                         os.path.getsize(self.archive))
                windows.append((label, len(writes), t0, t1, before, after))
            time.sleep(1)
            tracer.terminate()
            tracer.wait()
            tracer = None
            calls = parse_strace(strace_log)

            # let the backup complete and check the archive
            vm.cmd('block-job-set-speed', device=job, speed=0)
            st = vm.wait_backup()
        finally:
            if tracer:
                tracer.terminate()
                tracer.wait()
            vm.shutdown()
        if st['status'] != 'done':
            raise RuntimeError(f'backup failed: {st}')
        vma('verify', self.archive)
        xdir = os.path.join(self.dir, 'extract')
        rm(xdir)
        vma('extract', self.archive, xdir)
        extracted = glob.glob(os.path.join(xdir, '*.raw'))[0]
        bad = 0
        with open(extracted, 'rb') as f:
            for c, data in old.items():
                f.seek(c * CLUSTER)
                bad += f.read(CLUSTER) != data
        rm(xdir)
        archive_size = os.path.getsize(self.archive)
        rm(self.archive)
        if bad:
            raise RuntimeError(f'{bad} clusters in the archive are not the '
                               'data from before the guest writes')

        out = ['Backup held back (speed 32 MiB/s for 0.5 s, then 1 B/s), '
               f'{n} guest writes per row (`aio_write` + `aio_flush` through '
               'the virtio-blk device, HMP qemu-io), figures **per guest '
               'write**. Source I/O = pread/pwrite syscalls on the source '
               'image file counted with strace -f; archive = bytes QEMU '
               'wrote to the archive fd (whole 58-cluster extents, so '
               'quantized) and the query-backup `transferred` delta.', '',
               '| guest write | disk blockstats wr ops / bytes | source reads '
               '/ bytes | source writes / bytes | archive bytes written | '
               '`transferred` delta |',
               '|---|---|---|---|---|---|']
        node_nonzero = False
        for label, cnt, t0, t1, before, after in windows:
            src_r = [c for c in calls if t0 <= c[0] <= t1 and
                     c[2] in src_fds and 'read' in c[1]]
            src_w = [c for c in calls if t0 <= c[0] <= t1 and
                     c[2] in src_fds and 'write' in c[1]]
            arc_w = [c for c in calls if t0 <= c[0] <= t1 and
                     c[2] in arc_fds and 'write' in c[1]]
            (bb0, node0), tr0, _ = before
            (bb1, node1), tr1, _ = after
            node_nonzero |= any(node1[k] != node0[k] for k in node0)
            wr_ops = (bb1['wr_operations'] - bb0['wr_operations']) / cnt
            wr_b = (bb1['wr_bytes'] - bb0['wr_bytes']) / cnt
            out.append(
                f'| {label} | {wr_ops:.2f} / {wr_b / KiB:.0f} KiB | '
                f'{len(src_r) / cnt:.2f} / '
                f'{sum(c[3] for c in src_r) / cnt / KiB:.1f} KiB | '
                f'{len(src_w) / cnt:.2f} / '
                f'{sum(c[3] for c in src_w) / cnt / KiB:.1f} KiB | '
                f'{sum(c[3] for c in arc_w) / cnt / KiB:.1f} KiB | '
                f'{(tr1 - tr0) / cnt / KiB:.1f} KiB |')
        out.append('')
        out.append(
            f'query-blockstats of the source node d0 (query-nodes): rd/wr '
            f'counters {"changed" if node_nonzero else "stay 0"} - QEMU '
            'keeps them only for BlockBackends (the device), so the '
            'source-side reads/writes are counted with strace instead. '
            f'Archive checked afterwards: vma verify OK, all {len(old)} '
            'written clusters hold the data from before the writes; '
            f'archive size {archive_size:,} B.')
        return out

    # part: guest write throughput

    def guest_round(self, vm, mode, style, offs, pat):
        """N guest writes while @mode runs: (seconds for all writes,
        writes completed while the backup ran, seconds the backup ran
        during the writes, note)"""
        if style.startswith('write'):
            cmds = [hmp_io(f'write -P {pat} {o} 64k') for o in offs]
        else:
            cmds = [hmp_io(f'aio_write -P {pat} {o} 64k') for o in offs] + \
                [hmp_io('aio_flush')]
        rm(self.archive)
        rm(self.target)
        GUARD.ensure_room(self.size + 256 * MiB)
        if mode.startswith('backup'):
            vm.cmd('backup', backup_file=self.archive,
                   **({'speed': 1} if 'held' in mode else {}))
        elif mode == 'blockdev-backup':
            vm.add_target(self.target, self.size)
            vm.m.get_qmp_events(wait=False)
            vm.cmd('blockdev-backup', job_id='bb', device='d0', target='tgt',
                   sync='full')

        # the main monitor watches for the end of the backup meanwhile
        ended = []
        stop = threading.Event()

        def running():
            if mode.startswith('backup'):
                return vm.cmd('query-backup')['status'] == 'active'
            return any(j['device'] == 'bb' and j['status'] == 'running'
                       for j in vm.cmd('query-block-jobs'))

        def watch():
            while not stop.wait(0.02):
                if not running():
                    ended.append(time.perf_counter())
                    return
        watcher = threading.Thread(target=watch)
        if mode != 'no backup':
            watcher.start()
        times = []
        t0 = time.perf_counter()
        vm.pipe.run(cmds, times)
        t = times[-1] - t0
        stop.set()
        if mode != 'no backup':
            watcher.join()
        window = (ended[0] if ended else times[-1]) - t0
        in_window = sum(1 for x in times[:len(offs)] if x - t0 <= window)

        note = ''
        if mode.startswith('backup'):
            st = vm.cmd('query-backup')
            note = f'{st["status"]} at {st["transferred"] / st["total"]:.0%}'
            vm.cmd('backup-cancel')
        elif mode == 'blockdev-backup':
            jobs = vm.cmd('query-block-jobs')
            note = 'done'
            if jobs:
                note = f'active at {jobs[0]["offset"] / jobs[0]["len"]:.0%}'
                vm.cmd('block-job-cancel', device='bb', force=True)
            vm.m.events_wait([('BLOCK_JOB_CANCELLED', None),
                              ('BLOCK_JOB_COMPLETED', None)], timeout=60)
            vm.del_target()
        rm(self.archive)
        rm(self.target)
        return t, in_window, min(window, t), note

    def part_guest(self):
        image = self.random_image()
        n = self.guest_writes
        n_clusters = self.size // CLUSTER
        log(f'guest write throughput: {n} random 64 KiB writes')
        modes = ['no backup', 'backup', 'backup held back',
                 'blockdev-backup']
        styles = ['write (QD1)', 'aio_write burst']
        configs = ['main loop', 'iothread']
        keys = [(c, m, s) for c in configs for s in styles for m in modes]
        res = {k: [] for k in keys}
        rng = random.Random(11)
        for rnd, order in enumerate(orders(modes, self.repeat)):
            for config in (configs if rnd % 2 == 0 else configs[::-1]):
                log(f'  round {rnd + 1}/{self.repeat}, disk in the '
                    f'{config}: {", ".join(order)}')
                vm = VM(self.dir, image, iothread=config == 'iothread')
                try:
                    for mode in order:
                        for style in (styles if rnd % 2 == 0
                                      else styles[::-1]):
                            offs = [c * CLUSTER for c in
                                    rng.sample(range(n_clusters), n)]
                            r = self.guest_round(vm, mode, style, offs,
                                                 rng.randrange(1, 255))
                            res[(config, mode, style)].append(r)
                            log(f'    {mode}, {style}: {r[0]:.3f} s, '
                                f'{r[1]} writes in {r[2]:.3f} s of backup, '
                                f'{r[3]}')
                finally:
                    vm.shutdown()
        self.raw['guest'] = {' / '.join(k): v for k, v in res.items()}
        mib = n * CLUSTER / MiB
        out = [f'{n} writes of 64 KiB at random distinct clusters of the '
               f'{self.size // GiB} GiB disk through the virtio-blk device '
               '(HMP qemu-io, commands pipelined on a second QMP monitor), '
               'with the disk in the main loop or in an iothread; QD1 = '
               'synchronous `write` one after another; burst = `aio_write` '
               f'all, then `aio_flush`. Median of {self.repeat} rounds. The '
               'backup starts just before the writes and is cancelled after '
               'them if still running ("held back" = speed 1 B/s: every '
               'write copies its cluster first). "While the backup ran" '
               'counts the QD1 writes completed before the backup ended '
               '(polled on the other monitor every 20 ms) over that time.',
               '',
               '| disk in | during | submission | time for all | throughput '
               '| vs no backup | QD1 while the backup ran | vs no backup | '
               'backup at the end |',
               '|---|---|---|---|---|---|---|---|---|']
        for config in configs:
            for style in styles:
                base = res[(config, 'no backup', style)]
                for mode in modes:
                    rs_ = res[(config, mode, style)]
                    ts = [r[0] for r in rs_]
                    ratios = [b[0] / r[0] for b, r in zip(base, rs_)]
                    row = (f'| {config} | {mode} | {style} | '
                           f'{fmt_s(median(ts))} | '
                           f'{mib / median(ts):.0f} MiB/s | '
                           f'{median(ratios):.2f}x '
                           f'({min(ratios):.2f}-{max(ratios):.2f}) |')
                    if style.startswith('write') and mode != 'no backup':
                        rates = [r[1] * CLUSTER / MiB / r[2] for r in rs_]
                        brates = [b[1] * CLUSTER / MiB / b[2] for b in base]
                        wr = [r / b for r, b in zip(rates, brates)]
                        row += (f' {median(rates):.0f} MiB/s ('
                                f'{median([r[1] for r in rs_]):.0f} writes '
                                f'in {fmt_s(median([r[2] for r in rs_]))}) | '
                                f'{median(wr):.2f}x |')
                    else:
                        row += ' - | - |'
                    notes = sorted(set(r[3].split(' at ')[0] for r in rs_))
                    pct = [r[3].split(' at ')[1] for r in rs_
                           if ' at ' in r[3]]
                    row += (f' {"/".join(notes)}'
                            f'{" (" + ", ".join(pct) + ")" if pct else ""} |'
                            if mode != 'no backup' else ' - |')
                    out.append(row)
        return out

    # part: syscall counts (analysis)

    def part_analyze(self):
        image = self.random_image()
        out = []
        perf = shutil.which('perf')
        tools = [('strace', ['strace', '-c', '-f', '-qq'])]
        if perf:
            tools.append(('perf', [perf, 'record', '-q', '-e', 'cpu-clock',
                                   '-g']))
        for tool, argv in tools:
            for name in ('backup', 'blockdev-backup'):
                log(f'{tool} of QEMU during {name}')
                rm(self.archive)
                rm(self.target)
                GUARD.ensure_room(self.size + 256 * MiB)
                vm = VM(self.dir, image)
                data = os.path.join(self.dir, f'{tool}.out')
                try:
                    if name == 'blockdev-backup':
                        vm.add_target(self.target, self.size)
                    tracer = subprocess.Popen(argv + ['-o', data, '-p',
                                                      str(vm.pid)])
                    time.sleep(1.5)
                    cpu0 = proc_cpu(vm.pid)
                    main0 = proc_cpu(vm.pid, vm.pid)
                    if name == 'backup':
                        t, _ = vm.backup(self.archive)
                    else:
                        t = vm.blockdev_backup()
                        vm.del_target()
                    cpu = proc_cpu(vm.pid) - cpu0
                    main = proc_cpu(vm.pid, vm.pid) - main0
                    tracer.send_signal(2)
                    tracer.wait()
                finally:
                    vm.shutdown()
                if tool == 'strace':
                    with open(data) as f:
                        lines = f.read().splitlines()
                    lines = lines[:12] + ['...'] + lines[-2:]
                else:
                    rep = subprocess.run(
                        [perf, 'report', '-i', data, '--stdio',
                         '--no-children', '--sort', 'sym', '-g', 'none',
                         '--percent-limit', '1'],
                        capture_output=True, text=True).stdout
                    lines = [ln for ln in rep.splitlines()
                             if ln.strip() and not ln.startswith('#')][:20]
                out += [f'{name} under {tool} ({t:.2f} s traced; QEMU CPU '
                        f'{cpu:.2f} s, of which main thread {main:.2f} s):',
                        '', '```'] + lines + ['```', '']
                rm(data)
                rm(self.archive)
                rm(self.target)
        return out


STRACE_RE = re.compile(r'^(\d+)\s+([\d.]+)\s+(\w+)\((\d+),')
RESUMED_RE = re.compile(r'^(\d+)\s+[\d.]+\s+<\.\.\. (\w+) resumed>.*=\s+'
                        r'(-?\d+)')
RET_RE = re.compile(r'=\s+(-?\d+)(\s|$)')


def parse_strace(path):
    """(time, syscall, fd, return value) of every traced call"""
    calls = []
    pending = {}
    with open(path) as f:
        for line in f:
            m = STRACE_RE.match(line)
            if m:
                pid, ts, name, fd = m.groups()
                if line.rstrip().endswith('<unfinished ...>'):
                    pending[pid] = (float(ts), name, int(fd))
                    continue
                r = RET_RE.search(line)
                calls.append((float(ts), name, int(fd),
                              int(r.group(1)) if r else -1))
                continue
            m = RESUMED_RE.match(line)
            if m and m.group(1) in pending:
                ts, name, fd = pending.pop(m.group(1))
                calls.append((ts, name, fd, int(m.group(3))))
    return [c for c in calls if c[3] >= 0]


PARTS = ['sparse', 'idle', 'workers', 'cbw', 'guest']


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--parts', default=','.join(PARTS),
                    help=f'comma separated, from {PARTS + ["analyze"]}')
    ap.add_argument('--repeat', type=int,
                    default=int(os.environ.get('REPEAT', '5')))
    ap.add_argument('--json', help='also write the raw figures here')
    args = ap.parse_args()
    parts = args.parts.split(',')
    for p in parts:
        if p not in PARTS + ['analyze']:
            ap.error(f'unknown part {p}')
    for prog in (QEMU_SYSTEM, QEMU_IMG, VMA_BIN):
        if not os.access(prog, os.X_OK):
            sys.exit(f'not found: {prog}')
    if ('cbw' in parts or 'analyze' in parts) and not shutil.which('strace'):
        sys.exit('strace is needed for the cbw and analyze parts')

    workdir = os.environ.get('BENCH_DIR') or tempfile.mkdtemp(
        prefix='backup-bench.', dir='/dev/shm')
    keep = 'BENCH_DIR' in os.environ
    os.makedirs(workdir, exist_ok=True)
    global GUARD
    GUARD = MemGuard(workdir)
    bench = Bench(workdir, args.repeat)
    held = HeldFreedPages()
    log(held.state)
    sections = []
    try:
        GUARD.ensure_room(2 * bench.size)
        held.warm_up(workdir, 2 * bench.size)
        # the 4 GiB RSS table goes with the idle part
        for p in parts:
            lines = getattr(bench, f'part_{p}')()
            if p == 'idle':
                lines += [''] + bench.part_rss()
            sections.append((p, lines))
    finally:
        held.restore()
        GUARD.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for f in (bench.archive, bench.target, bench.copy):
                rm(f)

    st = os.stat(QEMU_SYSTEM)
    print(f'live backup benchmark: {time.strftime("%Y-%m-%d %H:%M")}, '
          f'{os.cpu_count()} cores, {os.uname().release}, '
          f'REPEAT={args.repeat}, work dir on '
          f'{"tmpfs" if workdir.startswith("/dev/shm") else workdir}; '
          f'QEMU {QEMU_SYSTEM} (built '
          f'{time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))}); '
          f'{held.state}')
    titles = {'sparse': 'Empty disk', 'idle': 'Idle backup',
              'workers': 'max-workers', 'cbw': 'I/O per guest write',
              'guest': 'Guest write throughput',
              'analyze': 'Where the time goes (strace -c -f, perf)'}
    for p, lines in sections:
        print(f'\n### {titles[p]}\n')
        print('\n'.join(lines))
    if args.json:
        def enc(o):
            if isinstance(o, RssSampler):
                return {'base': o.base, 'hwm': o.hwm, 'peak': o.peak,
                        'after': o.after}
            return str(o)
        with open(args.json, 'w') as f:
            json.dump(bench.raw, f, default=enc, indent=1)


if __name__ == '__main__':
    main()
