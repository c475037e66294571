#!/usr/bin/env python3
"""A week of daily incremental backups of a real guest (the
`guest-incremental` test group).

  test_incremental_week.py <qemu build dir> [vma binary]

One kit guest boots on livebackup.make_disks' disks (ext4 in a qcow2 image
on virtio-blk in an iothread, written by fswork; a raw disk on
virtio-scsi, written by blkwork) and writes all along.  The ext4 also
holds STATIC_MIB of random data that never changes (lost+found/static, the
one place fswork check ignores: the rest of a VM's disk), and QEMU
throttles the guest's writes (block_set_io_throttle) so that a day changes
a few MiB: otherwise the TCG guest rewrites its whole working set within
seconds and no incremental could be much smaller than the full.  Each
"day" it is backed up the way livebackup.run_case does it:

  stop -> copy the image files (exactly what the guest had written) ->
  backup -> cont

and the backup runs throttled while the guest keeps writing until enough
guest writes overlapped it, then at full speed.  Day 0 is a full backup
with track-changes; days 1..7 first let the guest write DAY_WRITE_MIB more,
then back up incrementally to the previous day's archive uuid.  On odd
days the backup instant is right after a 10th file, when fswork starts a
FITRIM: its discards meet the backup's copy-before-write filter.  A guest
file writer that makes no progress for STALL_S s during a backup fails the
test, with what QEMU reports and whether unthrottling the backup, then the
guest, then the backup's end lets it go on.

Tests (one line each):
  day0: full backup   done; query-backup says every disk new, not
                      incremental; config backup-chain depth 0, disks
                      full:new
  dayK: incremental   (K = 1..7) done; query-backup says every disk used,
                      incremental, base = day K-1's uuid; backup-chain
                      depth K, base and chain right, every disk
                      incremental:used; the archive holds no more
                      than the changed clusters: at most the dirty bytes
                      query-backup reported + 1% + 1 MiB (header, configs),
                      and less than MAX_INC_RATIO of the full's
  dayK: restore       (K = 0..7) `vma verify` of the chain 0..K, then
                      `vma extract` of it: every disk equals, bit for bit,
                      the copy made at day K's backup instant
  merge               `vma merge` of the whole chain, `vma verify` of the
                      merged archive, its `vma extract` == the chain's
                      extract for day 7 (cmp; before the checker boots)
  dayK: checker       (K = 0..7, CHECK_DAYS) a VM booted from the disks
                      extracted for day K runs the kit's checkers with the
                      file and block numbers the guest had acknowledged at
                      day K's backup instant: no damage, every acknowledged
                      write there (livebackup.check_restored)

The guest runs under KVM if the kit boots there within 8 s, else TCG (the
choice is printed); if neither boots it, every test is skipped with the
reason.  The kit is copied into the work dir (a rebuild of the shared one
removes it).  The seed is printed (GUEST_SEED=N replays it).  About 2 min
under TCG here.  Last line: "N passed, N failed[, N skipped]".
"""

import filecmp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestvm import (Guest, QMPError, print_totals,  # noqa: E402
                     private_kit_and_accel, report_tests)
from livebackup import (BLK_DEV, FS_DEV, MiB, Case, CaseFailed,  # noqa: E402
                        Env, bytes_done, check_restored, make_disks, run,
                        to_raw, wait_console_quiet)

DAYS = 7
CHECK_DAYS = tuple(range(DAYS + 1))
DAY_WRITE_MIB = 3           # guest file writes between two backups
FULL_OVERLAP_MIB = 4        # guest writes during the full backup
INC_OVERLAP_MIB = 1         # ... during each incremental
FULL_SPEED = MiB // 4       # throttle until the overlap is reached
INC_SPEED = MiB // 8
STALL_S = 20                # no guest file written for this long: failure
# An incremental archive < this x the full's: a guard against one that
# stores everything (a day's changes vary with the guest: 8-24 MiB were
# seen against a 91 MiB full)
MAX_INC_RATIO = 0.5
STATIC_MIB = 80             # data on the ext4 disk that never changes
# The guest's writes, throttled by QEMU (block_set_io_throttle) so that a
# day's changes stay a few MiB: unthrottled, the TCG guest rewrites its
# whole working set (48 files of up to 2 MiB) in a few seconds
GUEST_WRITE_BPS = {FS_DEV: 2 * MiB, BLK_DEV: MiB // 2}


def test_names():
    names = ['day0: full backup']
    names += [f'day{k}: incremental' for k in range(1, DAYS + 1)]
    for k in range(DAYS + 1):
        names.append(f'day{k}: restore')
        if k in CHECK_DAYS:
            names.append(f'day{k}: checker')
    names.append('merge')
    return names


def vma_cmd(env, *args):
    """Run the vma tool; its output, or CaseFailed with it"""
    p = subprocess.run([env.vma, *args], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise CaseFailed(f'vma {" ".join(args)} failed ({p.returncode}): '
                         f'{p.stdout[-1500:]}')
    return p.stdout


def chain_blob(env, archive):
    """The archive's backup-chain config as a dict (disk lines too)"""
    out = vma_cmd(env, 'config', archive, '-c', 'backup-chain')
    return dict(line.split('=', 1) for line in out.splitlines()
                if '=' in line and not line.startswith('#'))


def add_static_data(env, disks, work, seed):
    """STATIC_MIB of random data in lost+found/static of the ext4 disk (the
    one place fswork check ignores): the rest of a VM's disk, which a day
    does not change, so a full backup is much larger than a day's changes.
    The byte comparisons of every restore check it; the checkers do not."""
    dev, qcow2, fmt, _ = disks[0]
    assert dev == FS_DEV and fmt == 'qcow2'
    raw = os.path.join(work, 'fs.raw')
    data = os.path.join(work, 'static.bin')
    with open(data, 'wb') as f:
        f.write(random.Random(seed).randbytes(STATIC_MIB * MiB))
    run(env.qemu_img, 'convert', '-f', 'qcow2', '-O', 'raw', qcow2, raw)
    run('debugfs', '-w', '-R', f'write {data} lost+found/static', raw,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = subprocess.run(['debugfs', '-R', 'stat lost+found/static', raw],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True).stdout
    if f'Size: {STATIC_MIB * MiB}' not in out:
        raise CaseFailed(f'debugfs did not write lost+found/static: {out}')
    os.unlink(qcow2)
    run(env.qemu_img, 'convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2)
    os.unlink(raw)
    os.unlink(data)


class Week:
    """The writer VM and the day-by-day backups"""

    def __init__(self, env, work, seed, say):
        self.env, self.work, self.seed, self.say = env, work, seed, say
        self.days = []      # per day: dict uuid, archive, acked, refs, ...

    def backup(self, vm, disks, day, base):
        """stop, copy the disks, backup, cont, wait for the end; the day's
        record (raises CaseFailed)"""
        vm.qmp.cmd('stop')
        wait_console_quiet(vm)
        acked = (vm.last_number('DONE'), vm.last_number('BLK'))
        refs = {}
        for dev, path, fmt, _ in disks:
            copy = os.path.join(self.work, f'day{day}-{dev}.{fmt}')
            run('cp', '--sparse=always', path, copy)
            refs[dev] = (copy, fmt)
        archive = os.path.join(self.work, f'day{day}.vma')
        args = {'backup_file': archive}
        if base:
            args['incremental'] = base
            speed, overlap = INC_SPEED, INC_OVERLAP_MIB
        else:
            args['track_changes'] = True
            speed, overlap = FULL_SPEED, FULL_OVERLAP_MIB
        args['speed'] = speed
        uuid = vm.qmp.cmd('backup', **args)['UUID']
        t = time.monotonic()
        mark = len(vm.lines)
        vm.qmp.cmd('cont')
        first = vm.qmp.cmd('query-backup')
        unthrottled = False
        progress = (time.monotonic(), vm.last_number('DONE'))
        while True:
            st = vm.qmp.cmd('query-backup')
            if st.get('status') != 'active':
                break
            if time.monotonic() > t + 180:
                raise CaseFailed(f'day {day}: backup still active after '
                                 f'180 s: {st}')
            if vm.last_number('DONE') != progress[1]:
                progress = (time.monotonic(), vm.last_number('DONE'))
            elif time.monotonic() - progress[0] > STALL_S:
                self.stalled(vm, day, st)
            if not unthrottled and bytes_done(vm, mark) >= overlap * MiB:
                for job in vm.qmp.cmd('query-block-jobs'):
                    vm.qmp.cmd('block-job-set-speed', device=job['device'],
                               speed=0)
                unthrottled = True
            time.sleep(0.2)
        rec = {'uuid': uuid, 'archive': archive, 'acked': acked,
               'refs': refs, 'status': st, 'first': first,
               'secs': time.monotonic() - t,
               'overlap_mib': bytes_done(vm, mark) / MiB}
        if st.get('status') != 'done':
            raise CaseFailed(f'day {day}: backup ended with {st}')
        rec['bytes'] = os.path.getsize(archive)
        disks_st = {d['device']: d for d in st.get('disks') or []}
        self.say(f'day {day}: {"incremental to " + base if base else "full"}'
                 f' -> {uuid}; acknowledged at the backup instant: file '
                 f'{acked[0]}, block {acked[1]}; done in {rec["secs"]:.1f}s '
                 f'with {rec["overlap_mib"]:.1f} MiB of guest writes '
                 f'meanwhile; archive {rec["bytes"] / MiB:.2f} MiB; '
                 'query-backup disks: ' +
                 ', '.join(f'{d} {v["action"]} incremental='
                           f'{str(v["incremental"]).lower()} dirty '
                           f'{v["dirty-bytes"] / MiB:.2f} MiB'
                           for d, v in disks_st.items()) +
                 (f', base {st.get("base")}' if base else ''))
        if rec['overlap_mib'] < overlap:
            raise CaseFailed(f'day {day}: only {rec["overlap_mib"]:.2f} MiB '
                             f'of guest writes overlapped the backup (want '
                             f'{overlap})')
        return rec

    def stalled(self, vm, day, st):
        """The guest's file writer made no progress for STALL_S seconds
        while the backup ran: CaseFailed with what QEMU says, and whether
        the writer goes on once the backup runs unthrottled, then once the
        guest's writes are unthrottled, then once the backup ended"""
        n = vm.last_number('DONE')
        stats = [x['stats'] for x in vm.qmp.cmd('query-blockstats')
                 if x.get('device') == FS_DEV]
        ops = {k: v for k, v in (stats or [{}])[0].items()
               if 'operations' in k and v}
        jobs = vm.qmp.cmd('query-block-jobs')
        tried = []

        def went_on(what):
            r = vm.wait_line(r'^DONE ', 20, len(vm.lines))
            tried.append(f'{what}: ' + (r[1].group(0).strip() + ' within 20 s'
                                        if r else 'still stuck after 20 s'))
            return r

        for job in jobs:
            vm.qmp.cmd('block-job-set-speed', device=job['device'], speed=0)
        if not went_on('backup unthrottled'):
            vm.qmp.cmd('human-monitor-command', command_line=(
                f'block_set_io_throttle {FS_DEV} 0 0 0 0 0 0'))
            if not went_on('guest writes unthrottled'):
                end = time.monotonic() + 60
                while vm.qmp.cmd('query-backup').get('status') == 'active' \
                        and time.monotonic() < end:
                    time.sleep(0.5)
                went_on('backup ended ('
                        f'{vm.qmp.cmd("query-backup").get("status")})')
        raise CaseFailed(
            f'day {day}: the guest\'s file writer made no progress for '
            f'{STALL_S} s during the backup (last: DONE {n}'
            f'{", then its FITRIM" if n % 10 == 0 else ""}); query-backup: '
            f'{st}; query-block-jobs: {jobs}; {FS_DEV} blockstats (nonzero '
            f'operations): {ops}; then: {"; ".join(tried)}')

    def check_status(self, day, rec, base):
        """query-backup's disks/base and the archive's backup-chain blob"""
        st = rec['status']
        want_action = 'used' if base else 'new'
        devs = {d['device']: d for d in st.get('disks') or []}
        if sorted(devs) != sorted((FS_DEV, BLK_DEV)):
            raise CaseFailed(f'day {day}: query-backup disks {st.get("disks")}'
                             f' (want {FS_DEV} and {BLK_DEV}); query-backup: '
                             f'{st}')
        for dev, d in devs.items():
            if d['action'] != want_action or d['incremental'] != bool(base):
                raise CaseFailed(f'day {day}: query-backup says {dev}: {d} '
                                 f'(want action {want_action}, incremental '
                                 f'{bool(base)}); query-backup: {st}')
        if base and st.get('base') != base:
            raise CaseFailed(f'day {day}: query-backup base {st.get("base")}'
                             f' (want {base}); query-backup: {st}')
        if st.get('uuid') != rec['uuid']:
            raise CaseFailed(f'day {day}: query-backup uuid {st.get("uuid")} '
                             f'!= backup\'s {rec["uuid"]}')
        blob = chain_blob(self.env, rec['archive'])
        want = {'format': '1', 'uuid': rec['uuid'], 'depth': str(day)}
        mode = 'incremental:used' if base else 'full:new'
        for dev in (FS_DEV, BLK_DEV):
            want[f'disk.{dev}'] = mode
        if base:
            want['base'] = base
            want['chain'] = ','.join(d['uuid'] for d in self.days[:day])
        bad = {k: (blob.get(k), v) for k, v in want.items()
               if blob.get(k) != v}
        if bad:
            raise CaseFailed(f'day {day}: backup-chain config: (got, want) '
                             f'{bad}; whole blob {blob}')
        if base:
            dirty = sum(d['dirty-bytes'] for d in devs.values())
            if rec['bytes'] > dirty + dirty // 100 + MiB:
                raise CaseFailed(f'day {day}: incremental archive '
                                 f'{rec["bytes"] / MiB:.2f} MiB holds more '
                                 f'than the {dirty / MiB:.2f} MiB of changed '
                                 'clusters query-backup reported (+ 1% + '
                                 '1 MiB)')
            ratio = rec['bytes'] / self.days[0]['bytes']
            if ratio >= MAX_INC_RATIO:
                raise CaseFailed(f'day {day}: incremental archive '
                                 f'{rec["bytes"] / MiB:.2f} MiB is '
                                 f'{ratio:.2f} x the full '
                                 f'({self.days[0]["bytes"] / MiB:.2f} MiB); '
                                 f'want < {MAX_INC_RATIO}')

    def run_week(self, ok):
        """Boot the writer, back up day 0..DAYS; ok[name] per test"""
        env = self.env
        disks = make_disks(env, self.work)
        add_static_data(env, disks, self.work, self.seed)
        vm = Guest(env.qemu, env.kit, self.work, 'writer', env.accel, disks,
                   {'work': 'write', 'seed': self.seed})
        t = time.monotonic()
        vm.launch()
        try:
            if not vm.wait_line(r'^DONE 30 ', 120):
                raise CaseFailed('the guest did not write 30 files within '
                                 f'120 s; console:\n{vm.text()[-1500:]}')
            for dev, bps in GUEST_WRITE_BPS.items():
                # through HMP: the QMP client writes '_' in names as '-'
                out = vm.qmp.cmd('human-monitor-command', command_line=(
                    f'block_set_io_throttle {dev} 0 0 {bps} 0 0 0'))
                if out.strip():
                    raise CaseFailed(f'block_set_io_throttle {dev}: {out}')
            self.say(f'guest booted and writing '
                     f'({time.monotonic() - t:.1f}s); its writes throttled '
                     'to ' + ', '.join(f'{dev} {bps // 1024} KiB/s' for
                                       dev, bps in GUEST_WRITE_BPS.items()) +
                     f'; {STATIC_MIB} MiB of static data on {FS_DEV}')
            base = None
            for day in range(DAYS + 1):
                name = (f'day{day}: incremental' if day
                        else 'day0: full backup')
                if day:
                    mark = len(vm.lines)
                    end = time.monotonic() + 90
                    while bytes_done(vm, mark) < DAY_WRITE_MIB * MiB:
                        if time.monotonic() > end:
                            raise CaseFailed(f'day {day}: the guest wrote '
                                             f'only {bytes_done(vm, mark)} '
                                             'bytes in 90 s')
                        time.sleep(0.2)
                    if day % 2:
                        # fswork trims after every 10th file: the backup
                        # instant falls into its FITRIM, whose discards meet
                        # the backup's copy-before-write filter
                        if not vm.wait_line(r'^DONE \d*0 ', 60,
                                            len(vm.lines)):
                            raise CaseFailed(f'day {day}: no 10th file '
                                             'within 60 s')
                rec = self.backup(vm, disks, day, base)
                self.days.append(rec)
                self.check_status(day, rec, base)
                ok[name] = True
                base = rec['uuid']
            if not vm.wait_line(r'^DONE ', 10, len(vm.lines) - 1):
                raise CaseFailed('the guest stopped writing after the last '
                                 'backup')
            errors = [line for _, line in vm.lines
                      if line and ('ERROR' in line or 'no FITRIM' in line)]
            if errors:
                raise CaseFailed(f'the guest reported: {errors[:3]}')
        finally:
            vm.kill()

    def refs_to_raw(self):
        """The days' disk copies as raw files, for the byte comparisons"""
        for day, rec in enumerate(self.days):
            for dev, (copy, fmt) in list(rec['refs'].items()):
                raw = to_raw(self.env, copy, fmt, os.path.join(
                    self.work, f'day{day}-{dev}.ref.raw'))
                if raw != copy:
                    os.unlink(copy)
                rec['refs'][dev] = raw

    def restore(self, day):
        """vma verify + extract of the chain 0..day, compared with the
        copies; the restored (dev, path, fmt) list"""
        chain = [d['archive'] for d in self.days[:day + 1]]
        t = time.monotonic()
        vma_cmd(self.env, 'verify', *chain)
        out = os.path.join(self.work, f'restored-day{day}')
        vma_cmd(self.env, 'extract', *chain, out)
        restored = []
        for dev in (FS_DEV, BLK_DEV):
            got = os.path.join(out, f'disk-{dev}.raw')
            want = self.days[day]['refs'][dev]
            if not os.path.exists(got):
                raise CaseFailed(f'day {day}: vma extract wrote no {got}: '
                                 f'{os.listdir(out)}')
            if os.path.getsize(got) != os.path.getsize(want) or \
                    not filecmp.cmp(got, want, shallow=False):
                raise CaseFailed(f'day {day}: restored {dev} differs from '
                                 'the disk at the backup instant')
            restored.append((dev, got, 'raw'))
        self.say(f'day {day}: vma verify + vma extract of {len(chain)} '
                 f'archive(s) in {time.monotonic() - t:.1f}s; both disks == '
                 'the disks at the backup instant, bit for bit')
        return restored

    def merge(self, restored_last):
        """vma merge of the whole chain: verify it, extract it, cmp with
        the chain's extract"""
        chain = [d['archive'] for d in self.days]
        merged = os.path.join(self.work, 'merged.vma')
        t = time.monotonic()
        vma_cmd(self.env, 'merge', *chain, '-o', merged)
        vma_cmd(self.env, 'verify', merged)
        out = os.path.join(self.work, 'restored-merged')
        vma_cmd(self.env, 'extract', merged, out)
        for dev, path, _ in restored_last:
            got = os.path.join(out, f'disk-{dev}.raw')
            p = subprocess.run(['cmp', got, path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            if p.returncode != 0:
                raise CaseFailed(f'merged archive: {dev}: {p.stdout.strip()}')
        self.say(f'vma merge of {len(chain)} archives -> '
                 f'{os.path.getsize(merged) / MiB:.2f} MiB '
                 f'(full {self.days[0]["bytes"] / MiB:.2f} MiB), verified and '
                 f'extracted in {time.monotonic() - t:.1f}s; == the chain\'s '
                 'extract (cmp)')
        shutil.rmtree(out)
        return True


def main():
    build = os.path.abspath(sys.argv[1])
    vma = sys.argv[2] if len(sys.argv) > 2 else os.path.join(build, 'vma')
    seed = os.environ.get('GUEST_SEED') or str(random.randrange(1, 1 << 32))
    names = test_names()
    start = time.monotonic()
    work = tempfile.mkdtemp(prefix='vma-guest-incremental.', dir='/var/tmp')
    say = lambda m: print(f'  {m}', flush=True)     # noqa: E731

    try:
        kit, accel, why = private_kit_and_accel(build, work)
    except OSError as e:
        print(f'cannot run QEMU: {e}')
        print(f'0 passed, {len(names)} failed')
        return 1
    ok = {}
    if accel:
        print(f'--- a week of daily backups (seed {seed}: full with '
              f'track-changes, then {DAYS} incrementals; checker boots on '
              f'days {", ".join(map(str, CHECK_DAYS))})', flush=True)
        week = Week(Env(build, vma, kit, accel), work, seed, say)
        case = Case('week', seed)

        def attempt(what, fn, *args):
            try:
                return fn(*args)
            except (CaseFailed, QMPError, OSError) as e:
                print(f'  FAILED ({what}): {e}')
            except Exception as e:     # a bug in the test: still a failure
                print(f'  FAILED ({what}; unexpected {type(e).__name__}): '
                      f'{e}')
            return None

        attempt('backups', week.run_week, ok)
        # every archive the week made is restored, even after a failure
        attempt('disk copies', week.refs_to_raw)
        restored = {}
        for day in range(len(week.days)):
            r = attempt(f'day {day} restore', week.restore, day)
            if r:
                ok[f'day{day}: restore'] = True
                if day in CHECK_DAYS:
                    restored[day] = r
                else:
                    shutil.rmtree(os.path.dirname(r[0][1]))
        if DAYS in restored and len(week.days) == DAYS + 1 and \
                attempt('merge', week.merge, restored[DAYS]) is not None:
            ok['merge'] = True
        for day in CHECK_DAYS:
            if day not in restored:
                continue
            acked = week.days[day]['acked']
            say(f'day {day}: checker boot on the extracted chain 0..{day} '
                f'(acknowledged: file {acked[0]}, block {acked[1]})')
            if attempt(f'day {day} checker', check_restored, week.env, case,
                       work, restored[day], acked, say) is not None:
                ok[f'day{day}: checker'] = True
    passed, failed, skipped = report_tests(names, ok, accel, why)
    if failed == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f'(files kept in {work})')
    print(f'guest-incremental group: {time.monotonic() - start:.0f}s')
    print_totals(passed, failed, skipped)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
