#!/usr/bin/env python3
"""A backup with the RAM state, resumed (the `guest-vmstate` test group).

  test_vmstate_resume.py <qemu build dir> [vma binary]

A kit guest (workload "resume", see tests/guest/init) prints a counter on
its console, writes ext4 files with fsync (fswork) and keeps other files
dirty in its page cache (writeback held back).  While it works, the host
backs it up with vmstate: true, lets it go on a little, and quits it.  Then
the archive is extracted and a new QEMU with the same devices on the
restored disk loads vmstate.bin (migrate-incoming file:) and runs:

  backup    the backup completes, with the RAM state, while the guest works
  resume    the resumed guest's counter goes on from the value it had at
            the backup instant (between the last value before the backup
            command and the value when the jobs existed)
  check     told on its console, the resumed guest stops, syncs, drops its
            caches and finds every file it believes it wrote (fswork check
            with its own acknowledged number, every page-cache file)
  fsck      e2fsck -fn of the restored disk after the guest's shutdown

Under KVM if the kit boots there within 8 s, else TCG.  Last line:
"N passed, N failed, N skipped".
"""

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestvm import Guest, QMPError, build_kit, choose_accel  # noqa: E402
from livebackup import FS_DEV, Env, make_disks  # noqa: E402

STEPS = ('backup', 'resume', 'check', 'fsck')


class IncomingGuest(Guest):
    """A guest that waits for its state (migrate-incoming)"""

    def args(self, qmp_path, con_path):
        return super().args(qmp_path, con_path) + ['-incoming', 'defer']


class StepFailed(Exception):
    pass


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise StepFailed(f'timeout: {what}')


def last_count(guest):
    """The guest's counter as last printed (0: not yet)"""
    with guest.cond:
        for _, line in reversed(guest.lines):
            m = line and re.match(r'^VMATEST COUNT (\d+)', line)
            if m:
                return int(m.group(1))
    return 0


def run_case(env, work, seed, res, say):
    drives = make_disks(env, work)[:1]      # the ext4 disk on virtio-blk
    archive = os.path.join(work, 'backup.vma')
    guest = Guest(env.qemu, env.kit, work, 'orig', env.accel, drives,
                  {'work': 'resume', 'seed': seed})
    guest.launch()
    try:
        if not guest.wait_line(r'^VMATEST RESUME', 120):
            raise StepFailed(f'the guest did not start its work: '
                             f'{guest.text()[-500:]}')
        # Some files dirty in the page cache, some fswork files done
        wait_for(lambda: guest.last_number('DONE') >= 3, 120,
                 'fswork writes')
        time.sleep(2)
        before = last_count(guest)
        guest.qmp.cmd('backup', backup_file=archive, vmstate=True)
        wait_for(lambda: guest.qmp.cmd('query-block-jobs') or
                 guest.qmp.cmd('query-backup').get('status') != 'active',
                 120, 'the backup instant')
        after = last_count(guest)
        st = wait_for(lambda: (lambda s: s if s.get('status') != 'active'
                               else None)(guest.qmp.cmd('query-backup')),
                      600, 'the end of the backup')
        if st['status'] != 'done':
            raise StepFailed(f"backup: {st['status']}: {st.get('errmsg')}")
        res['backup'] = (f"done: counter {before}..{after} around the "
                         f"instant, RAM state {st['vmstate-bytes']} bytes, "
                         f"archive {st['archive-size']} bytes")
        say(f'  backup: {res["backup"]}')
        # The guest goes on (and its disk on): none of it may be restored
        time.sleep(2)
    finally:
        guest.quit()

    out = os.path.join(work, 'restored')
    subprocess.run([env.vma, 'extract', archive, out], check=True,
                   stdout=subprocess.DEVNULL)
    disk = os.path.join(out, f'disk-{FS_DEV}.raw')
    state = os.path.join(out, 'vmstate.bin')
    back = IncomingGuest(env.qemu, env.kit, work, 'resumed', env.accel,
                         [(FS_DEV, disk, 'raw', 'virtio')],
                         {'work': 'resume', 'seed': seed})
    back.launch()
    try:
        back.qmp.cmd('migrate-incoming', uri=f'file:{state}')
        wait_for(lambda: back.qmp.cmd('query-status')['status'] ==
                 'running', 300, 'the resumed VM running')
        hit = back.wait_line(r'^VMATEST COUNT (\d+)', 120)
        if not hit:
            raise StepFailed(f'resume: no counter: {back.text()[-500:]}')
        first = int(hit[1].group(1))
        if not before <= first <= after + 1:
            raise StepFailed(f'resume: the counter went on at {first}, '
                             f'outside {before}..{after + 1}')
        res['resume'] = (f'counter went on at {first} (instant between '
                         f'{before} and {after})')
        say(f'  resume: {res["resume"]}')
        back.send_console('CHECK\n')
        hit = back.wait_line(r'^VMATEST CHECK (OK|FAILED)', 600)
        lines = [line for line in back.text().splitlines()
                 if re.match(r'^(VMATEST (RESUMED|CACHE)|FSCHECK)', line)]
        if not hit or hit[1].group(1) != 'OK':
            raise StepFailed('check: ' + '; '.join(lines[-6:]))
        res['check'] = '; '.join(lines)
        say(f'  check: {res["check"]}')
        if back.wait_exit(120) is None:
            raise StepFailed('the resumed guest did not power off')
    finally:
        back.kill()
    r = subprocess.run(['e2fsck', '-fn', disk], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise StepFailed(f'fsck: e2fsck -fn exit {r.returncode}: '
                         f'{r.stdout[-500:]}')
    res['fsck'] = 'clean'
    say('  fsck: clean')


def main():
    build = os.path.abspath(sys.argv[1])
    vma = sys.argv[2] if len(sys.argv) > 2 else os.path.join(build, 'vma')
    seed = os.environ.get('GUEST_SEED') or str(random.randrange(1, 1 << 32))
    start = time.monotonic()
    work = tempfile.mkdtemp(prefix='vma-vmstate-test.', dir='/var/tmp')
    passed = failed = skipped = 0
    kit = build_kit()
    try:
        accel, why = choose_accel(os.path.join(build, 'qemu-system-x86_64'),
                                  kit, work)
        print(f'accelerator: {accel} ({why})', flush=True)
        if not accel:
            for step in STEPS:
                print(f'SKIP {step}: the kit does not boot: {why}')
            print(f'0 passed, 0 failed, {len(STEPS)} skipped')
            return 0
        env = Env(build, vma, kit, accel)
        res = {}
        print(f'case vmstate-resume (seed {seed})', flush=True)
        try:
            run_case(env, work, seed, res,
                     lambda m: print(m, flush=True))
        except (StepFailed, QMPError, subprocess.CalledProcessError,
                OSError) as e:
            print(f'  error: {e}', flush=True)
        for step in STEPS:
            if step in res:
                print(f'PASS {step}')
                passed += 1
            else:
                print(f'FAIL {step}')
                failed += 1
    finally:
        if failed and os.environ.get('GUEST_KEEP'):
            print(f'kept {work}')
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f'({time.monotonic() - start:.0f}s)')
    print(f'{passed} passed, {failed} failed, {skipped} skipped')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
