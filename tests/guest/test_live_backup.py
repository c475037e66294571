#!/usr/bin/env python3
"""Live backups of real Linux guests (the `guest` test group).

  test_live_backup.py <qemu build dir> [vma binary]

Each case (see livebackup.py) is three tests:
  backup    the backup completes while the guest keeps writing, with at
            least overlap_mib MiB of acknowledged guest writes during it
  identical the restored disks equal the disks at the backup point
  checker   a VM booted from the restored disks finds no damage and every
            write acknowledged before the backup point
and the first case has a fourth, detects-damage: with one byte of a
restored block changed and the acknowledged file number raised by 5, the
checkers must report damage (so they can fail).
Cases vary the target (file, zstd pipe passed with getfd), fleecing and the
restore (vma extract to raw files, vma extract -r into qcow2); each has its
own random seed (printed; GUEST_SEEDS="a b c d" replays them).

The guest runs under KVM if the kit boots there within 8 s, else TCG (the
choice is printed); if neither boots it, every test is skipped with the
reason.  Last line: "N passed, N failed, N skipped".
"""

import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestvm import (build_kit, choose_accel, print_totals,  # noqa: E402
                     QMPError)
from livebackup import (Case, CaseFailed, Env, check_restored,  # noqa: E402
                        damage, run_case)

STEPS = ('backup', 'identical', 'checker')


def main():
    build = os.path.abspath(sys.argv[1])
    vma = sys.argv[2] if len(sys.argv) > 2 else os.path.join(build, 'vma')
    seeds = os.environ.get('GUEST_SEEDS', '').split() or \
        [str(random.randrange(1, 1 << 32)) for _ in range(4)]
    cases = [Case('file', seeds[0]),
             Case('zstd-pipe-qcow2', seeds[1], target='zstd',
                  restore='qcow2'),
             Case('zstd-pipe-fleecing', seeds[2], target='zstd',
                  fleecing=True),
             Case('file-fleecing-qcow2', seeds[3], fleecing=True,
                  restore='qcow2')]
    passed = failed = skipped = 0
    start = time.monotonic()
    work = tempfile.mkdtemp(prefix='vma-guest-test.', dir='/var/tmp')

    kit = build_kit()
    try:
        accel, why = choose_accel(os.path.join(build, 'qemu-system-x86_64'),
                                  kit, work)
    except OSError as e:
        # QEMU cannot be run at all: every test fails (never skipped)
        print(f'cannot run QEMU: {e}')
        n = len(cases) * len(STEPS) + 1
        print(f'0 passed, {n} failed')
        return 1
    print(f'guest kit {kit}; accelerator: {accel or "none"} ({why})',
          flush=True)
    if not accel:
        for c in cases:
            for step in STEPS + (('detects-damage',) if c is cases[0] else ()):
                print(f'SKIP {c.name}: {step}: no accelerator boots the '
                      f'guest ({why})')
                skipped += 1
    env = Env(build, vma, kit, accel)
    for c in cases if accel else []:
        t = time.monotonic()
        print(f'--- {c}', flush=True)
        cwork = os.path.join(work, c.name)
        res = {}
        ok = {}
        try:
            run_case(env, c, cwork, res,
                     say=lambda m: print(f'  {m}', flush=True))
            check_restored(env, c, cwork, res['restored'], res['acked'],
                           say=lambda m: print(f'  {m}', flush=True))
            ok['checker'] = True
            if c is cases[0]:
                # The checkers can fail: damage the restored disks of the
                # first case and boot again
                ok['detects-damage'] = False
                raw = [r for r in res['restored'] if r[2] == 'raw']
                acked = damage(raw or res['restored'], res['acked'])
                check_restored(env, c, cwork, res['restored'], acked,
                               say=lambda m: print(f'  {m}', flush=True),
                               expect_damage=True)
                ok['detects-damage'] = True
            shutil.rmtree(cwork)
        except (CaseFailed, QMPError, OSError) as e:
            print(f'  FAILED: {e}')
            print(f'  (files kept in {cwork})')
        except Exception as e:     # a bug in the test: still a failure
            print(f'  FAILED (unexpected {type(e).__name__}): {e}')
        ok['backup'] = res.get('backup_ok', False)
        ok['identical'] = res.get('identical', False)
        for step in STEPS + (('detects-damage',) if c is cases[0] else ()):
            if ok.get(step):
                print(f'ok {c.name}: {step}')
                passed += 1
            else:
                print(f'FAIL {c.name}: {step}')
                failed += 1
        print(f'  ({time.monotonic() - t:.0f}s)', flush=True)
    if failed == 0:
        shutil.rmtree(work, ignore_errors=True)
    print(f'guest group: {time.monotonic() - start:.0f}s')
    print_totals(passed, failed, skipped)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
