#!/usr/bin/env python3
"""stop/cont of a writing guest whose disks are in an IOThread (the
`guest-stopcont` test group).

  test_stop_cont.py <qemu build dir>

A kit guest writes ext4 on virtio-blk and a raw disk on virtio-scsi
(scsi-hd), both devices in iothread io0 (livebackup.make_disks' disks).
QEMU throttles the guest's writes (block_set_io_throttle, as the
guest-incremental test does), so that requests are queued in QEMU most of
the time, and the host then stops and continues the VM CYCLES times at
random moments, each time right after the raw disk's writer reported a
batch.  `stop` drains the queued requests: they complete in the IOThread
while the main loop stops the devices' ioeventfd.  Both writers must go on
after every `cont`:

  virtio-scsi: raw writer goes on   the raw disk's writer (blkwork: Linux
                                    AIO + fdatasync) reports a new batch
                                    within STALL_S s of each cont
  virtio-blk: ext4 writer goes on   the ext4 writer (fswork: fsync'ed
                                    files) never goes STALL_S s without a
                                    file, and writes one after the last cont

A writer stalls for good when QEMU loses the interrupt of a request
completed while `stop` drained it: the request is in the used ring, the
guest never hears of it and waits for ever (virtio-scsi: fixed by patch
0015; without it the raw writer hung in 10 of 10 runs here, after 8 to 79
stops; virtio-blk: patch 0014).  A stall is reported with the stuck
virtqueue's state (QEMU's used index, the guest's used_event read from
guest memory, in-use requests, the disk's completed requests, twice 2 s
apart) and whether unthrottling and another stop/cont let the writer go
on.

Under KVM if the kit boots there within 8 s, else TCG.  The seed (workload
and the moments of the stops) is printed; GUEST_SEED=N replays it,
STOPCONT_CYCLES=N changes the number of cycles.  About 1 min under TCG
here.  Last line: "N passed, N failed[, N skipped]".
"""

import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestvm import (Guest, QMPError, print_totals,  # noqa: E402
                     private_kit_and_accel, report_tests)
from livebackup import (BLK_DEV, FS_DEV, MiB, Env,  # noqa: E402
                        make_disks)

CYCLES = int(os.environ.get('STOPCONT_CYCLES', '150'))
STALL_S = 15                # a writer without progress this long: stalled
PAUSE_S = (0.02, 0.1)       # how long the VM stays stopped
DELAY_S = (0.0, 0.2)        # after a raw batch, wait this long, then stop
# As test_incremental_week.py throttles them: requests wait in QEMU
GUEST_WRITE_BPS = {FS_DEV: 2 * MiB, BLK_DEV: MiB // 2}
DEADLINE_S = 170            # QEMU is killed after this long, whatever it does

SCSI_TEST = 'virtio-scsi: raw writer goes on'
BLK_TEST = 'virtio-blk: ext4 writer goes on'
NAMES = [SCSI_TEST, BLK_TEST]
# The writers' console lines and the virtqueue their disk's requests use
WRITERS = {SCSI_TEST: ('BLK', 'virtio-scsi', 2, BLK_DEV),   # 0 ctrl, 1 event
           BLK_TEST: ('DONE', 'virtio-blk', 0, FS_DEV)}


def hmp(vm, line):
    return vm.qmp.cmd('human-monitor-command', command_line=line)


def guest_u16(vm, addr):
    """A 16-bit value of guest memory (HMP xp)"""
    out = hmp(vm, f'xp /1hx {addr:#x}')
    m = re.search(r':\s*0x([0-9a-f]+)', out)
    return int(m.group(1), 16) if m else None


def queue_state(vm, device, queue, drive):
    """What QEMU and the guest say about one virtqueue of the first
    virtio device named `device`: QEMU's used index, the guest's used_event
    (the used index it wants to be interrupted at, after the avail ring),
    in-use requests, ...; and the requests the drive completed so far"""
    paths = [d['path'] for d in vm.qmp.cmd('x-query-virtio')
             if d['name'] == device]
    if not paths:
        return {'error': f'no {device} in x-query-virtio'}
    q = vm.qmp.cmd('x-query-virtio-queue-status', path=paths[0], queue=queue)
    st = {k: q.get(k) for k in ('used-idx', 'signalled-used', 'inuse',
                                'last-avail-idx', 'shadow-avail-idx')}
    num, avail, used = q['vring-num'], q['vring-avail'], q['vring-used']
    st['guest avail idx'] = guest_u16(vm, avail + 2)
    st['guest used idx'] = guest_u16(vm, used + 2)
    st['guest used_event'] = guest_u16(vm, avail + 4 + 2 * num)
    for b in vm.qmp.cmd('query-blockstats'):
        if b.get('device') == drive:
            st[f'{drive} requests done'] = sum(
                b['stats'][f'{op}_operations'] for op in ('rd', 'wr', 'flush'))
    return st


def lost_interrupt(st):
    """QEMU published the used entry the guest asked to be interrupted at
    (used_event + 1), has nothing in flight, and the guest still waits"""
    ev, used = st.get('guest used_event'), st.get('used-idx')
    return (ev is not None and used is not None and st.get('inuse') == 0 and
            (used - ev - 1) % 65536 < 32768)


class Run:
    def __init__(self, vm, rnd, say):
        self.vm, self.rnd, self.say = vm, rnd, say
        self.cycle = 0
        self.fs_progress = (time.monotonic(), 0)
        self.stalled = {}           # test -> what diagnose() found
        self.marks = (0, 0)         # BLK and DONE numbers at the last cont

    def check_fs(self):
        """The ext4 writer wrote a file within STALL_S s (of running);
        once it stalled, not checked any more"""
        if BLK_TEST in self.stalled:
            return
        n = self.vm.last_number('DONE')
        if n != self.fs_progress[1]:
            self.fs_progress = (time.monotonic(), n)
        elif time.monotonic() - self.fs_progress[0] > STALL_S:
            self.stalled[BLK_TEST] = self.diagnose(BLK_TEST)
            self.say('STALLED ' + self.stalled[BLK_TEST])

    def wait_progress(self, prefix, after, test):
        """Until the writer's number is beyond after: True; False (and
        the diagnosis in self.stalled) if not within STALL_S s"""
        end = time.monotonic() + STALL_S
        while self.vm.last_number(prefix) <= after:
            if time.monotonic() > end:
                self.stalled[test] = self.diagnose(test)
                self.say('STALLED ' + self.stalled[test])
                return False
            if test != BLK_TEST:
                self.check_fs()
            time.sleep(0.02)
        return True

    def stop_cont(self):
        vm = self.vm
        vm.qmp.cmd('stop')
        time.sleep(self.rnd.uniform(*PAUSE_S))
        self.marks = marks = (vm.last_number('BLK'), vm.last_number('DONE'))
        vm.qmp.cmd('cont')
        # a stopped guest does not write: its time does not count
        self.fs_progress = (time.monotonic(), self.fs_progress[1])
        return marks

    def cycles(self, n):
        """n stop/cont, each after a new raw batch; ok per test"""
        for self.cycle in range(1, n + 1):
            self.check_fs()
            time.sleep(self.rnd.uniform(*DELAY_S))
            blk, _ = self.stop_cont()
            if not self.wait_progress('BLK', blk, SCSI_TEST):
                break
        ok = {SCSI_TEST: SCSI_TEST not in self.stalled}
        if BLK_TEST not in self.stalled:
            # after the last cont (or while the raw writer was stuck) the
            # ext4 writer goes on
            ok[BLK_TEST] = self.wait_progress('DONE', self.marks[1],
                                              BLK_TEST)
        return ok

    def diagnose(self, test):
        """What the stuck writer's virtqueue looks like (twice, 2 s apart),
        and whether unthrottling or another stop/cont lets it go on"""
        vm = self.vm
        prefix, device, queue, drive = WRITERS[test]
        last = vm.last_number(prefix)
        st1 = queue_state(vm, device, queue, drive)
        time.sleep(2)
        st2 = queue_state(vm, device, queue, drive)
        tried = []
        for dev in GUEST_WRITE_BPS:
            hmp(vm, f'block_set_io_throttle {dev} 0 0 0 0 0 0')
        for what in ('guest writes unthrottled', 'another stop/cont'):
            if what == 'another stop/cont':
                self.stop_cont()
            end = time.monotonic() + 5
            while vm.last_number(prefix) <= last and \
                    time.monotonic() < end:
                time.sleep(0.1)
            went = vm.last_number(prefix) > last
            tried.append(f'{what}: ' + ('went on' if went else
                                        'still stuck after 5 s'))
            if went:
                break
        verdict = ('the guest waits for the interrupt of a request QEMU '
                   'completed (used index at or beyond used_event + 1, '
                   'nothing in use, the disk idle): interrupt lost'
                   if lost_interrupt(st1) and st1 == st2 else
                   'no lost interrupt visible in the virtqueue')
        return (f'{test}: no new "{prefix}" line for {STALL_S} s after cont '
                f'{self.cycle} (last: {prefix} {last}, file '
                f'{vm.last_number("DONE")}, raw batch '
                f'{vm.last_number("BLK")}); {device} queue {queue}: {st1}; '
                f'2 s later: {st2}; {verdict}; then: {"; ".join(tried)}')


def run_test(env, work, seed, ok, say):
    disks = make_disks(env, work)
    vm = Guest(env.qemu, env.kit, work, 'writer', env.accel, disks,
               {'work': 'write', 'seed': seed}, scsi_iothread=True)
    t = time.monotonic()
    vm.launch()
    # whatever happens (a QMP command that never returns): QEMU goes away
    fired = []
    watchdog = threading.Timer(DEADLINE_S,
                               lambda: (fired.append(1), vm.kill()))
    watchdog.start()
    try:
        run_guest(vm, seed, ok, say, t)
    except (QMPError, OSError) as e:
        if fired:
            raise QMPError(f'QEMU killed after {DEADLINE_S} s ({e})')
        raise
    finally:
        watchdog.cancel()
        vm.kill()


def run_guest(vm, seed, ok, say, t):
    """Wait for both writers, throttle them, stop/cont; ok per test"""
    if not vm.wait_line(r'^DONE 10 ', 120) or \
            not vm.wait_line(r'^BLK ', 30):
        raise QMPError('the guest did not start writing within 120 s; '
                       f'console:\n{vm.text()[-1500:]}')
    for dev, bps in GUEST_WRITE_BPS.items():
        out = hmp(vm, f'block_set_io_throttle {dev} 0 0 {bps} 0 0 0')
        if out.strip():
            raise QMPError(f'block_set_io_throttle {dev}: {out}')
    say(f'guest booted and writing ({time.monotonic() - t:.1f}s); its '
        'writes throttled to ' +
        ', '.join(f'{dev} {bps // 1024} KiB/s'
                  for dev, bps in GUEST_WRITE_BPS.items()) +
        f'; {CYCLES} stop/cont cycles')
    run = Run(vm, random.Random(seed), say)
    t = time.monotonic()
    res = run.cycles(CYCLES)
    errors = [line for _, line in vm.lines
              if line and ('ERROR' in line or 'no FITRIM' in line)]
    if errors:
        raise QMPError(f'the guest reported: {errors[:3]}')
    say(f'{run.cycle} stop/cont in {time.monotonic() - t:.1f}s; '
        f'last file {vm.last_number("DONE")}, raw batch '
        f'{vm.last_number("BLK")}; ' +
        ', '.join(f'{k}: {"yes" if v else "NO"}' for k, v in res.items()))
    ok.update(res)


def main():
    build = os.path.abspath(sys.argv[1])
    seed = os.environ.get('GUEST_SEED') or str(random.randrange(1, 1 << 32))
    start = time.monotonic()
    work = tempfile.mkdtemp(prefix='vma-guest-stopcont.', dir='/var/tmp')
    say = lambda m: print(f'  {m}', flush=True)     # noqa: E731

    try:
        kit, accel, why = private_kit_and_accel(build, work)
    except OSError as e:
        print(f'cannot run QEMU: {e}')
        print(f'0 passed, {len(NAMES)} failed')
        return 1
    ok = {}
    if accel:
        print(f'--- stop/cont with requests in flight (seed {seed}: disks '
              'on virtio-blk and virtio-scsi in iothread io0)', flush=True)
        try:
            run_test(Env(build, None, kit, accel), work, seed, ok, say)
        except (QMPError, OSError) as e:
            print(f'  FAILED: {e}')
        except Exception as e:     # a bug in the test: still a failure
            print(f'  FAILED (unexpected {type(e).__name__}): {e}')
    passed, failed, skipped = report_tests(NAMES, ok, accel, why)
    if failed == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f'(files kept in {work})')
    print(f'guest-stopcont group: {time.monotonic() - start:.0f}s')
    print_totals(passed, failed, skipped)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
