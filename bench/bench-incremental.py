#!/usr/bin/env python3
"""Incremental backup benchmark: `backup incremental=` against the full
backup it follows, on a 4 GiB disk of random data with 1% of its clusters
changed, and the restore of the resulting chain.

Per round (REPEAT rounds, one QEMU per round, qtest accelerator, raw disk
on tmpfs):
  full   `backup track-changes=true` of the whole disk: seconds, archive
         bytes
  inc    CHANGED_PCT % of the 64 KiB clusters (random ones) rewritten
         through the guest's device, then `backup incremental=<full>`:
         seconds, archive bytes, against the bytes changed
Targets (issue 12): incremental time <= 5% of the full's, archive <=
changed bytes + 1%.

Then the chain: 6 more rounds of changes and incrementals make a full + 7
incrementals (all written by QEMU); side by side, alternating, REPEAT
times: `vma extract` of the full alone and of the whole chain (the newest
state), and `vma merge` of the chain into a new full; the merged archive
and the chain's restore are compared byte for byte once.

Usage: bench/bench-incremental.py [--repeat N]
Env: as bench/bench-backup.py (QEMU_BUILD, VMA_BIN, BENCH_DIR, REPEAT,
     SIZE_GIB, MIN_FREE_GIB), CHANGED_PCT (default 1)
"""

import argparse
import hashlib
import importlib.util
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    'bench_backup', os.path.join(HERE, 'bench-backup.py'))
bb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bb)

MiB, GiB, CLUSTER = bb.MiB, bb.GiB, bb.CLUSTER
log, median, fmt_s, fmt_mib, rm = bb.log, bb.median, bb.fmt_s, bb.fmt_mib, bb.rm


def change_clusters(vm, size, pct, rng):
    """Rewrite @pct % of the disk's clusters through the device: bytes"""
    n = max(1, size // CLUSTER * pct // 100)
    clusters = rng.sample(range(size // CLUSTER), n)
    cmds = [bb.hmp_io(f'write -P {rng.randrange(1, 256)} '
                      f'{c * CLUSTER} {CLUSTER}') for c in clusters]
    for i in range(0, len(cmds), 64):
        for r in vm.pipe.run(cmds[i:i + 64]):
            if r:       # qemu-io prints nothing but errors
                raise RuntimeError(f'guest write failed: {r}')
    return n * CLUSTER


class IncrementalBench:
    def __init__(self, workdir, repeat):
        self.dir = workdir
        self.repeat = repeat
        self.size = int(os.environ.get('SIZE_GIB', '4')) * GiB
        self.pct = int(os.environ.get('CHANGED_PCT', '1'))
        self.image = os.path.join(workdir, 'disk.raw')
        self.rng = random.Random(42)

    def archive(self, name):
        return os.path.join(self.dir, name)

    def one_round(self):
        """Full, changes, incremental in one QEMU: the figures"""
        full, inc = self.archive('full.vma'), self.archive('inc.vma')
        rm(full)
        rm(inc)
        bb.GUARD.ensure_room(self.size + 256 * MiB)
        vm = bb.VM(self.dir, self.image)
        try:
            t_full, st = vm.backup(full, track_changes=True)
            changed = change_clusters(vm, self.size, self.pct, self.rng)
            t_inc, st_inc = vm.backup(inc, incremental=st['uuid'])
        finally:
            vm.shutdown()
        if [d['action'] for d in st_inc['disks']] != ['used']:
            raise RuntimeError(f'not incremental: {st_inc}')
        res = {'t_full': t_full, 'size_full': os.path.getsize(full),
               't_inc': t_inc, 'size_inc': os.path.getsize(inc),
               'changed': changed}
        rm(full)
        rm(inc)
        return res

    def part_backup(self):
        log(f'full vs incremental ({self.pct}% changed), '
            f'{self.repeat} rounds')
        rounds = []
        for i in range(self.repeat):
            r = self.one_round()
            log(f'  round {i + 1}: full {r["t_full"]:.3f} s, incremental '
                f'{r["t_inc"]:.3f} s, {r["size_inc"]} bytes for '
                f'{r["changed"]} changed')
            rounds.append(r)
        time_ratio = median([r['t_inc'] / r['t_full'] for r in rounds])
        size_over = median([r['size_inc'] / r['changed'] - 1 for r in rounds])
        m = {k: median([r[k] for r in rounds]) for k in rounds[0]}
        return [
            f'{self.size // GiB} GiB raw disk of random data on tmpfs, '
            f'archives on tmpfs; {self.pct}% of the clusters rewritten '
            'between the full and the incremental; median of '
            f'{self.repeat} rounds', '',
            '| backup | time | archive size |', '|---|---|---|',
            f'| full (track-changes) | {fmt_s(m["t_full"])} | '
            f'{fmt_mib(m["size_full"])} |',
            f'| incremental | {fmt_s(m["t_inc"])} | '
            f'{fmt_mib(m["size_inc"])} (changed: {fmt_mib(m["changed"])}) |',
            '',
            f'Incremental time / full time: {time_ratio * 100:.1f}% '
            f'(target <= 5%); archive size over the changed bytes: '
            f'{size_over * 100:+.2f}% (target <= +1%).']

    def make_chain(self, links):
        """A full and @links incrementals from one QEMU: the paths"""
        paths = []
        bb.GUARD.ensure_room(self.size * 2 + 512 * MiB)
        vm = bb.VM(self.dir, self.image)
        try:
            path = self.archive('chain0.vma')
            rm(path)
            _, st = vm.backup(path, track_changes=True)
            paths.append(path)
            for k in range(1, links + 1):
                change_clusters(vm, self.size, self.pct, self.rng)
                path = self.archive(f'chain{k}.vma')
                rm(path)
                _, st = vm.backup(path, incremental=st['uuid'])
                paths.append(path)
        finally:
            vm.shutdown()
        return paths

    def part_chain(self):
        links = 7
        log(f'making a chain: full + {links} incrementals')
        chain = self.make_chain(links)
        rm(self.image)      # memory: the chain's restores need the room
        out = self.archive('restore')
        merged = self.archive('merged.vma')
        times = {'extract full': [], 'extract chain': [], 'merge': []}

        def extract(paths, keep=False):
            rm(out)
            t = bb.run_timed([bb.VMA_BIN, 'extract', *paths, out])[0]
            if not keep:
                rm(out)
            return t

        def merge(keep=False):
            rm(merged)
            t = bb.run_timed([bb.VMA_BIN, 'merge', *chain, '-o', merged])[0]
            if not keep:
                rm(merged)
            return t

        def restored_digest():
            h = hashlib.sha256()
            disk = os.path.join(out, [f for f in os.listdir(out)
                                      if f.endswith('.raw')][0])
            with open(disk, 'rb') as f:
                for block in iter(lambda: f.read(16 * MiB), b''):
                    h.update(block)
            rm(out)
            return h.digest()

        methods = {'extract full': lambda: extract(chain[:1]),
                   'extract chain': lambda: extract(chain),
                   'merge': merge}
        for rnd, order in enumerate(bb.orders(list(methods), self.repeat)):
            log(f'  round {rnd + 1}: {", ".join(order)}')
            for name in order:
                times[name].append(methods[name]())
        # The merged full restores to what the chain restores to
        extract(chain, keep=True)
        want = restored_digest()
        merge(keep=True)
        for p in chain:
            rm(p)
        extract([merged], keep=True)
        same = restored_digest() == want
        rm(merged)
        if not same:
            raise RuntimeError('merged archive restores differently')
        m = {k: median(v) for k, v in times.items()}
        ratio = median([c / f for c, f in zip(times['extract chain'],
                                              times['extract full'])])
        return [
            f'A chain written by QEMU: full + {links} incrementals of the '
            f'same disk, {self.pct}% of the clusters changed before each; '
            f'median of {self.repeat} rounds (orders alternate)', '',
            '| command | time | throughput |', '|---|---|---|',
            f'| vma extract full | {fmt_s(m["extract full"])} | '
            f'{self.size / MiB / m["extract full"]:.0f} MiB/s |',
            f'| vma extract full + {links} incrementals | '
            f'{fmt_s(m["extract chain"])} | '
            f'{self.size / MiB / m["extract chain"]:.0f} MiB/s |',
            f'| vma merge of the chain | {fmt_s(m["merge"])} | '
            f'{self.size / MiB / m["merge"]:.0f} MiB/s (of disk) |', '',
            f'Chain restore / full restore: {ratio:.2f}x.  The merged '
            'archive restores byte for byte to what the chain restores to.']


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeat', type=int,
                    default=int(os.environ.get('REPEAT', '5')))
    args = ap.parse_args()
    for prog in (bb.QEMU_SYSTEM, bb.VMA_BIN):
        if not os.access(prog, os.X_OK):
            sys.exit(f'not found: {prog}')
    workdir = os.environ.get('BENCH_DIR') or tempfile.mkdtemp(
        prefix='incremental-bench.', dir='/dev/shm')
    os.makedirs(workdir, exist_ok=True)
    bb.GUARD = bb.MemGuard(workdir)
    bench = IncrementalBench(workdir, args.repeat)
    try:
        bb.GUARD.ensure_room(bench.size)
        bb.make_random_image(bench.image, bench.size)
        backup = bench.part_backup()
        chain = bench.part_chain()
    finally:
        bb.GUARD.stop()
        if 'BENCH_DIR' not in os.environ:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f'incremental backup benchmark: {time.strftime("%Y-%m-%d %H:%M")},'
          f' {os.cpu_count()} cores, {os.uname().release}, '
          f'REPEAT={args.repeat}')
    print('\n### Full and incremental backup\n')
    print('\n'.join(backup))
    print('\n### Restoring and merging the chain\n')
    print('\n'.join(chain))


if __name__ == '__main__':
    main()
