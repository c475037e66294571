#!/usr/bin/env python3
"""Guest write throughput during a backup to a slow target, with and
without fleecing.

One QEMU (qtest accelerator, no guest OS) with one 2 GiB raw disk full of
random data (virtio-blk, -drive id=drive0), on tmpfs.  The archive goes to
a pipe: QEMU gets the write end with getfd (backup-file
"/dev/fdname/bkp"), a child process reads the other end at RATE_MIB
(20 MiB/s: it reads up to 1 MiB, then sleeps until the bytes read so far
match the rate, with at most 50 ms of credit; `pv -q -L 20m` would do the
same, it is not needed) and throws the data away.

Guest writes (fio-like, randwrite bs=64k iodepth=BATCH): WRITES (2000)
writes of 64 KiB at distinct random 64 KiB aligned offsets over the whole
disk, each an HMP `qemu-io drive0 "aio_write -q -P <pat> <off> 64k"`,
through the device's BlockBackend, so they pass the backup's
copy-before-write filter like guest writes do.  A sliding window keeps up
to BATCH (32) in flight: each step sends, pipelined on a second QMP
monitor, as many aio_write as there are free slots followed by
query-blockstats, whose wr_operations of drive0 counts the completed writes
(qemu-io accounts an aio_write when it completes).  Time: first command
sent to the reply showing all writes complete.

Not `aio_flush` to wait for a batch: qemu-io's aio_flush is
blk_drain_all(), which also drains the backup job and waits for its
in-flight archive write into the slow pipe; a guest flush does not do that.
WAIT=aio_flush measures that way (batches of BATCH aio_write + aio_flush,
all pipelined) for comparison.

Modes, measured in each round in alternating orders (each permutation in
turn), one new QEMU per round:
  none      no backup running
  backup    `backup` without fleecing started just before the writes
            (every write to a cluster not yet saved first puts the old data
            into the archive, i.e. into the slow pipe); cancelled after them
  fleecing  `backup fleecing=true devlist=drive0` with the qcow2 node
            "drive0-fleecing" (new, 2 GiB, on tmpfs, discard=unmap) added
            before; the old data goes to the fleecing image.  After the
            writes, the reader stops throttling (SIGUSR1) and the backup
            runs to its end, to see what discard-source leaves in the
            fleecing image.  Its allocation (st_blocks) is sampled every
            5 ms from the backup command until the end.

Usage: bench/bench-fleecing.py [--repeat N] [--json FILE]
Env:   QEMU_BUILD (default /var/tmp/vma-dev/qemu/build; its ../python is
       QEMU's python library unless QEMU_PYTHON is set), BENCH_DIR (default
       a new directory under /dev/shm, removed at the end), FLEECE_DIR
       (fleecing image directory, default BENCH_DIR), REPEAT (6), SIZE_GIB
       (2), WRITES (2000), BATCH (32), RATE_MIB (20), SEED (1), WAIT
       (window or aio_flush, default window)
"""

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

QEMU_BUILD = os.path.abspath(os.environ.get('QEMU_BUILD',
                                            '/var/tmp/vma-dev/qemu/build'))
QEMU_PYTHON = os.environ.get('QEMU_PYTHON',
                             os.path.join(QEMU_BUILD, '..', 'python'))
QEMU_SYSTEM = os.path.join(QEMU_BUILD, 'qemu-system-x86_64')
QEMU_IMG = os.path.join(QEMU_BUILD, 'qemu-img')

sys.path.insert(0, QEMU_PYTHON)
from qemu.machine import QEMUMachine  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
CLUSTER = 64 * KiB
MODES = ['none', 'backup', 'fleecing']
TITLES = {'none': '(a) no backup',
          'backup': '(b) backup, no fleecing',
          'fleecing': '(c) backup with fleecing'}

# The slow archive reader: reads up to 1 MiB, then sleeps to hold the rate
# (at most 50 ms of credit); SIGUSR1 lifts the limit.  Prints the bytes read.
READER = r'''
import os, signal, sys, time
rate = float(sys.argv[1])
unlimited = False
def lift(*_):
    global unlimited
    unlimited = True
signal.signal(signal.SIGUSR1, lift)
null = os.open('/dev/null', os.O_WRONLY)
total = 0
t0 = time.monotonic()
while True:
    data = os.read(0, 1 << 20)
    if not data:
        break
    os.write(null, data)
    total += len(data)
    if unlimited:
        continue
    now = time.monotonic()
    ahead = total / rate - (now - t0)
    if ahead < -0.05:
        t0 += -ahead - 0.05        # no more than 50 ms of credit
    elif ahead > 0:
        time.sleep(ahead)
print(total, flush=True)
'''


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


def median(values):
    return statistics.median(values)


def orders(items, rounds):
    """One order of @items per round: every permutation in turn"""
    perms = list(itertools.permutations(items))
    perms.sort(key=lambda p: (p != tuple(items), p != tuple(reversed(items))))
    return [list(perms[i % len(perms)]) for i in range(rounds)]


def allocated(path):
    return os.stat(path).st_blocks * 512


def rm(path):
    if os.path.lexists(path):
        os.remove(path)


def fmt_mib(n):
    return f'{n / MiB:.1f} MiB' if n >= MiB else f'{n / KiB:.0f} KiB'


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

    def run(self, cmds):
        """Send every command at once, then collect the replies in order"""
        data = b''.join(json.dumps({'execute': c, 'arguments': a}).encode()
                        + b'\n' for c, a in cmds)
        sender = threading.Thread(target=self.sock.sendall, args=(data,))
        sender.start()
        replies = [self._reply() for _ in cmds]
        sender.join()
        for r in replies:
            if 'error' in r:
                raise RuntimeError(f'QMP error: {r["error"]}')
            if isinstance(r['return'], str) and r['return'].strip():
                # qemu-io prints errors into the HMP output
                raise RuntimeError(f'qemu-io: {r["return"].strip()}')
        return [r['return'] for r in replies]

    def close(self):
        self.f.close()
        self.sock.close()


def hmp_io(cmd):
    return ('human-monitor-command',
            {'command-line': f'qemu-io drive0 "{cmd}"'})


class AllocSampler:
    """Samples the allocation of a file every few ms until stopped"""

    def __init__(self, path, period=0.005):
        self.path = path
        self.period = period
        self.start = allocated(path)
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, allocated(self.path))

    def now(self):
        a = allocated(self.path)
        self.peak = max(self.peak, a)
        return a

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.now()


class VM:
    def __init__(self, workdir, image):
        self.m = QEMUMachine(QEMU_SYSTEM,
                             args=['-accel', 'qtest', '-nodefaults',
                                   '-display', 'none', '-M', 'q35'],
                             base_temp_dir=workdir)
        self.pipe_path = os.path.join(workdir, 'qmp-pipe.sock')
        self.m.add_args(
            '-drive', f'if=none,id=drive0,file={image},format=raw',
            '-device', 'virtio-blk-pci,drive=drive0,id=vd0',
            '-chardev', f'socket,id=pipe,path={self.pipe_path},server=on,'
                        'wait=off',
            '-mon', 'chardev=pipe,mode=control')
        self.m.launch()
        self.pipe = PipeQMP(self.pipe_path)

    def cmd(self, *args, **kwargs):
        return self.m.cmd(*args, **kwargs)

    def shutdown(self):
        self.pipe.close()
        self.m.shutdown()
        rm(self.pipe_path)

    def wait_backup(self, timeout=900, poll=0.02):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st = self.cmd('query-backup')
            if st.get('status') != 'active':
                return st
            time.sleep(poll)
        raise TimeoutError('backup did not end')


class Bench:
    def __init__(self, workdir, fleece_dir, repeat):
        self.dir = workdir
        self.repeat = repeat
        self.size = int(os.environ.get('SIZE_GIB', '2')) * GiB
        self.writes = int(os.environ.get('WRITES', '2000'))
        self.batch = int(os.environ.get('BATCH', '32'))
        self.rate = float(os.environ.get('RATE_MIB', '20')) * MiB
        self.wait = os.environ.get('WAIT', 'window')
        if self.wait not in ('window', 'aio_flush'):
            sys.exit('WAIT must be window or aio_flush')
        self.rng = random.Random(int(os.environ.get('SEED', '1')))
        self.image = os.path.join(workdir, 'disk.raw')
        self.fleece = os.path.join(fleece_dir, 'drive0-fleecing.qcow2')
        self.results = {m: [] for m in MODES}

    def make_image(self):
        log(f'creating {self.size / GiB:g} GiB of random data in '
            f'{self.image}')
        with open(self.image, 'wb') as f:
            left = self.size
            while left:
                n = min(left, 16 * MiB)
                f.write(os.urandom(n))
                left -= n

    def write_offsets(self):
        n_clusters = self.size // CLUSTER
        offs = [c * CLUSTER for c in
                self.rng.sample(range(n_clusters), self.writes)]
        return offs, self.rng.randrange(1, 255)

    @staticmethod
    def wr_stats(ret):
        """(completed, failed) writes of drive0 in a query-blockstats reply"""
        st = next(d['stats'] for d in ret if d.get('device') == 'drive0')
        return st['wr_operations'], st['failed_wr_operations']

    def run_writes(self, vm, offs, pat):
        """Issue the writes, keeping up to BATCH in flight: seconds"""
        def aio(o):
            return hmp_io(f'aio_write -q -P {pat} {o} 64k')

        if self.wait == 'aio_flush':
            cmds = []
            for i in range(0, len(offs), self.batch):
                cmds += [aio(o) for o in offs[i:i + self.batch]]
                cmds.append(hmp_io('aio_flush'))
            t0 = time.perf_counter()
            vm.pipe.run(cmds)
            return time.perf_counter() - t0
        # sliding window: submit while fewer than BATCH are in flight, the
        # completed count comes from query-blockstats (qemu-io counts a
        # write there when it completes)
        base, failed0 = self.wr_stats(vm.cmd('query-blockstats'))
        n = len(offs)
        submitted = done = 0
        t0 = time.perf_counter()
        while done < n:
            k = min(n - submitted, done + self.batch - submitted)
            ret = vm.pipe.run([aio(o) for o in offs[submitted:submitted + k]]
                              + [('query-blockstats', {})])
            submitted += k
            ops, failed = self.wr_stats(ret[-1])
            done = ops - base
            if failed != failed0:
                raise RuntimeError('guest writes failed')
        return time.perf_counter() - t0

    def start_reader(self, vm):
        """The slow reader on a new pipe, whose write end QEMU has as bkp"""
        r, w = os.pipe()
        reader = subprocess.Popen([sys.executable, '-c', READER,
                                   str(self.rate)],
                                  stdin=r, stdout=subprocess.PIPE, text=True)
        os.close(r)
        vm.m.send_fd_scm(fd=w)
        vm.cmd('getfd', fdname='bkp')
        os.close(w)
        return reader

    def add_fleecing_image(self, vm):
        subprocess.run([QEMU_IMG, 'create', '-q', '-f', 'qcow2', self.fleece,
                        str(self.size)], check=True)
        vm.cmd('blockdev-add', {
            'driver': 'qcow2', 'node-name': 'drive0-fleecing',
            'discard': 'unmap',
            'file': {'driver': 'file', 'filename': self.fleece}})

    def del_fleecing_image(self, vm):
        vm.cmd('blockdev-del', node_name='drive0-fleecing')
        rm(self.fleece)

    def measure(self, vm, mode):
        offs, pat = self.write_offsets()
        res = {}
        reader = sampler = None
        if mode != 'none':
            if mode == 'fleecing':
                self.add_fleecing_image(vm)
            reader = self.start_reader(vm)
            if mode == 'fleecing':
                sampler = AllocSampler(self.fleece)
                res['alloc_start'] = sampler.start
            vm.cmd('backup', backup_file='/dev/fdname/bkp', devlist='drive0',
                   fleecing=(mode == 'fleecing'))
        res['t'] = self.run_writes(vm, offs, pat)
        if mode == 'none':
            return res
        t_writes = time.perf_counter()
        st = vm.cmd('query-backup')
        res['progress'] = st['transferred'] / st['total']
        res['status_after_writes'] = st['status']
        if mode == 'backup':
            vm.cmd('backup-cancel')
            st = vm.cmd('query-backup')
        else:
            res['alloc_after_writes'] = sampler.now()
            reader.send_signal(signal.SIGUSR1)
            st = vm.wait_backup()
            res['alloc_final'] = sampler.stop()
            res['alloc_peak'] = sampler.peak
            res['finish_s'] = time.perf_counter() - t_writes
        res['status'] = st['status']
        res['errmsg'] = st.get('errmsg')
        out, _ = reader.communicate(timeout=60)
        res['archive_bytes'] = int(out.strip() or 0)
        if mode == 'fleecing':
            self.del_fleecing_image(vm)
            if st['status'] != 'done':
                raise RuntimeError(f'fleecing backup failed: {st}')
        return res

    def run(self):
        self.make_image()
        for rnd, order in enumerate(orders(MODES, self.repeat)):
            log(f'round {rnd + 1}/{self.repeat}: {", ".join(order)}')
            vm = VM(self.dir, self.image)
            try:
                for mode in order:
                    r = self.measure(vm, mode)
                    self.results[mode].append(r)
                    extra = ''
                    if mode != 'none':
                        extra = (f', backup at {r["progress"]:.1%} after the '
                                 f'writes, then {r["status"]}')
                    if mode == 'fleecing':
                        extra += (f'; fleecing image peak '
                                  f'{fmt_mib(r["alloc_peak"])}, final '
                                  f'{fmt_mib(r["alloc_final"])}')
                    log(f'  {mode}: {r["t"]:.3f} s '
                        f'({self.mib_s(r["t"]):.0f} MiB/s){extra}')
            finally:
                vm.shutdown()

    def mib_s(self, t):
        return self.writes * CLUSTER / MiB / t

    def report(self):
        res = self.results
        base = [r['t'] for r in res['none']]
        out = [
            f'{self.writes} writes of 64 KiB ({self.writes * CLUSTER / MiB:.0f}'
            f' MiB) at distinct random 64 KiB aligned offsets of the '
            f'{self.size / GiB:g} GiB disk, '
            + (f'up to {self.batch} in flight (sliding window, completions '
               'from query-blockstats)' if self.wait == 'window' else
               f'batches of {self.batch} `aio_write` + `aio_flush`')
            + f'; archive pipe read at {self.rate / MiB:g} MiB/s.  Median of '
            f'{self.repeat} rounds; '
            'ratio = throughput / throughput without backup in the same '
            'round (median, min-max); best = fastest round of each mode '
            '(the least disturbed by other load on the machine).', '',
            '| guest writes during | time | throughput | ratio to (a) | '
            'best: time, throughput, ratio of bests | '
            'backup progress when the writes end |',
            '|---|---|---|---|---|---|']
        for mode in MODES:
            ts = [r['t'] for r in res[mode]]
            ratios = [b / t for b, t in zip(base, ts)]
            prog = '-'
            if mode != 'none':
                ps = [r['progress'] for r in res[mode]]
                prog = f'{median(ps):.1%} ({min(ps):.1%}-{max(ps):.1%})'
            out.append(f'| {TITLES[mode]} | {median(ts):.3f} s | '
                       f'{self.mib_s(median(ts)):.0f} MiB/s | '
                       f'{median(ratios):.2f}x ({min(ratios):.2f}-'
                       f'{max(ratios):.2f}) | {min(ts):.3f} s, '
                       f'{self.mib_s(min(ts)):.0f} MiB/s, '
                       f'{min(base) / min(ts):.2f}x | {prog} |')
        fl = res['fleecing']
        out += ['',
                'Fleecing image (qcow2, 64 KiB clusters, tmpfs, discard=unmap)'
                ' allocation, st_blocks sampled every 5 ms; after the writes '
                'the reader is unthrottled and the backup runs to its end:',
                '',
                '| | median | min-max |', '|---|---|---|']
        for key, label in (('alloc_start', 'before the backup (new image)'),
                           ('alloc_after_writes', 'when the writes end'),
                           ('alloc_peak', 'peak during the backup'),
                           ('alloc_final', 'after the backup is done')):
            vs = [r[key] for r in fl]
            out.append(f'| {label} | {fmt_mib(median(vs))} | '
                       f'{fmt_mib(min(vs))}-{fmt_mib(max(vs))} |')
        arch = [r['archive_bytes'] for r in fl]
        fin = [r['finish_s'] for r in fl]
        out += ['',
                f'Fleecing backups: all {len(fl)} done, archive '
                f'{median(arch) / MiB:.0f} MiB read from the pipe (median), '
                f'finished {median(fin):.1f} s after the writes once '
                'unthrottled.  Backups without fleecing: cancelled after '
                'the writes (status '
                f'{", ".join(sorted(set(r["status"] for r in res["backup"])))}'
                ').']
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeat', type=int,
                    default=int(os.environ.get('REPEAT', '6')))
    ap.add_argument('--json', help='also write the raw figures here')
    args = ap.parse_args()
    for prog in (QEMU_SYSTEM, QEMU_IMG):
        if not os.access(prog, os.X_OK):
            sys.exit(f'not found: {prog}')

    workdir = os.environ.get('BENCH_DIR') or tempfile.mkdtemp(
        prefix='fleecing-bench.', dir='/dev/shm')
    keep = 'BENCH_DIR' in os.environ
    os.makedirs(workdir, exist_ok=True)
    fleece_dir = os.environ.get('FLEECE_DIR', workdir)
    bench = Bench(workdir, fleece_dir, args.repeat)
    try:
        bench.run()
    finally:
        rm(bench.fleece)
        if keep:
            rm(bench.image)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    st = os.stat(QEMU_SYSTEM)
    print(f'fleecing benchmark: {time.strftime("%Y-%m-%d %H:%M")}, '
          f'{os.cpu_count()} cores, {os.uname().release}, '
          f'REPEAT={args.repeat}, WAIT={bench.wait}, disk and fleecing '
          'image on '
          f'{"tmpfs" if workdir.startswith("/dev/shm") else workdir}; '
          f'QEMU {QEMU_SYSTEM} (built '
          f'{time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))})')
    print()
    print('\n'.join(bench.report()))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(bench.results, f, indent=1)


if __name__ == '__main__':
    main()
