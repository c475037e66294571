#!/usr/bin/env python3
"""Instant restore of a real Linux guest from a VMA archive (the
`guest-instant` test group).

  test_instant_restore.py <qemu build dir> [vma binary]

A kit guest (ext4 on a qcow2 virtio-blk disk in an iothread, a raw disk on
virtio-scsi, both written by the kit's workloads) is backed up live into a
VMA archive (livebackup.run_case: the archive is checked bit for bit
against the disks at the backup point).  Then, one test each:

  boot-on-archive  `tools/vma/vma-instant-restore prepare` (qcow2 target
                   for the ext4 disk, raw target for the other) and a VM
                   booted at once on the archive runs the kit's checkers
                   while `vma-instant-restore run` copies the disks
                   (throttled, so that the checkers read data not copied
                   yet): no damage, every acknowledged write there
  copy             the copy completes, the archive's nodes are gone from
                   the running VM, the targets hold no reference to it
  boot-on-targets  a VM booted from the targets alone (archive deleted)
                   passes the checkers again

The guest runs under KVM if the kit boots there within 8 s, else TCG; if
neither boots it, the tests are skipped with the reason.  Last line:
"N passed, N failed, N skipped".
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestvm import (Guest, QMPError, build_kit,  # noqa: E402
                     choose_accel, print_totals, report_tests)
from livebackup import (BLK_DEV, FS_DEV, Case, CaseFailed, Env,  # noqa: E402
                        check_restored, run_case)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HELPER = os.path.join(ROOT, 'tools', 'vma', 'vma-instant-restore')
TESTS = ('boot-on-archive', 'copy', 'boot-on-targets')
SPEED = 4 * 1024 * 1024     # the copy takes longer than the checkers


class InstantGuest(Guest):
    """A kit guest whose disks are the -blockdev nodes of
    vma-instant-restore prepare, with a second QMP socket for the helper.
    -no-shutdown: the VM stays (stopped) when the checker powers off, so
    that the copy can finish."""

    def __init__(self, env, work, blockdev_args, qmp2, checker_args):
        super().__init__(env.qemu, env.kit, work, 'instant', env.accel, [],
                         checker_args)
        self.blockdev_args, self.qmp2 = blockdev_args, qmp2

    def args(self, qmp_path, con_path):
        return super().args(qmp_path, con_path) + self.blockdev_args + [
            '-no-shutdown',
            '-device', 'virtio-scsi-pci,id=scsihw0',
            '-device', f'virtio-blk-pci,drive={FS_DEV},iothread=io0',
            '-device', f'scsi-hd,drive={BLK_DEV},bus=scsihw0.0',
            '-qmp', f'unix:{self.qmp2},server=on,wait=off']


def checker_lines(vm):
    return [line for _, line in vm.lines
            if line and re.match(r'^(FSCHECK|BLKCHECK|VMATEST CHECK)', line)]


def instant_restore(env, case, work, acked, ok, say):
    archive = os.path.join(work, 'archive.vma')
    targets = {FS_DEV: (os.path.join(work, 'ir-fs.qcow2'), 'qcow2'),
               BLK_DEV: (os.path.join(work, 'ir-blk.raw'), 'raw')}
    specs = [f'{dev}={path},format={fmt}'
             for dev, (path, fmt) in targets.items()]
    helper_env = dict(os.environ, VMA=env.vma, QEMU_IMG=env.qemu_img)
    t0 = time.monotonic()
    args = subprocess.run([HELPER, 'prepare', archive, *specs], check=True,
                          stdout=subprocess.PIPE, text=True,
                          env=helper_env).stdout.split()
    qmp2 = os.path.join(work, 'helper.qmp')
    vm = InstantGuest(env, work, args, qmp2,
                      {'work': 'check', 'seed': case.seed,
                       'fsack': acked[0], 'blkack': acked[1]})
    vm.launch()
    say(f'VM started on the archive {time.monotonic() - t0:.2f}s after '
        'prepare started')
    helper = None
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(qmp2) and time.monotonic() < deadline:
            time.sleep(0.01)
        helper = subprocess.Popen([HELPER, 'run', '--qmp', qmp2, '--speed',
                                   str(SPEED), archive, *specs],
                                  stderr=subprocess.PIPE, text=True,
                                  env=helper_env)
        # the checkers start reading: the copy must still be running
        if not vm.wait_line(r'^(FSCHECK|BLKCHECK)', 180):
            raise CaseFailed('no checker output; console:\n' +
                             vm.text()[-1500:])
        jobs = vm.qmp.cmd('query-block-jobs')
        busy = [j for j in jobs if j['offset'] < j['len']]
        if not busy:
            raise CaseFailed('the copy was done before the checkers read: '
                             'nothing was read from the archive')
        say('checkers running while the copy is at ' + ', '.join(
            f"{j['device']} {100 * j['offset'] // j['len']}%" for j in busy))
        if not vm.wait_line(r'^VMATEST END', 300):
            raise CaseFailed('the checker did not finish; console:\n' +
                             vm.text()[-1500:])
        lines = checker_lines(vm)
        if 'VMATEST CHECK OK' not in lines:
            raise CaseFailed('checker on the archive: ' + '; '.join(lines))
        ok['boot-on-archive'] = True
        say('checker on the archive: ' + '; '.join(lines))

        # full speed to the end
        for j in vm.qmp.cmd('query-block-jobs'):
            vm.qmp.cmd('block-job-set-speed', device=j['device'], speed=0)
        _, err = helper.communicate(timeout=300)
        if helper.returncode != 0:
            raise CaseFailed(f'vma-instant-restore run failed: {err}')
        nodes = vm.qmp.cmd('query-named-block-nodes')
        left = [n['node-name'] for n in nodes
                if n['drv'] == 'vma' or n['file'] == archive]
        if left:
            raise CaseFailed(f'archive nodes left after the copy: {left}')
        say(err.strip().splitlines()[-1])
    finally:
        if helper and helper.poll() is None:
            helper.kill()
        vm.quit()
    info = json.loads(subprocess.run(
        [env.qemu_img, 'info', '--output=json', targets[FS_DEV][0]],
        check=True, stdout=subprocess.PIPE, text=True).stdout)
    if 'backing-filename' in info:
        raise CaseFailed(f"the qcow2 target still has a backing file: "
                         f"{info['backing-filename']}")
    ok['copy'] = True
    os.remove(archive)
    check_restored(env, case, work,
                   [(dev, path, fmt) for dev, (path, fmt) in targets.items()],
                   acked, say=say)
    ok['boot-on-targets'] = True


def main():
    build = os.path.abspath(sys.argv[1])
    vma = sys.argv[2] if len(sys.argv) > 2 else os.path.join(build, 'vma')
    seed = os.environ.get('GUEST_SEEDS', '').split()[:1] or \
        [str(random.randrange(1, 1 << 32))]
    case = Case('instant', seed[0])
    start = time.monotonic()
    work = tempfile.mkdtemp(prefix='vma-guest-instant.', dir='/var/tmp')
    try:
        kit = build_kit()
        accel, why = choose_accel(os.path.join(build, 'qemu-system-x86_64'),
                                  kit, work)
    except (OSError, subprocess.CalledProcessError) as e:
        # not a reason to skip: the kit or QEMU is broken
        print(f'FAILED to start: {e}')
        kit, accel, why = None, 'broken', str(e)
    print(f'guest kit {kit}; accelerator: {accel or "none"} ({why})',
          flush=True)
    ok = {}
    if accel and kit:
        env = Env(build, vma, kit, accel)
        print(f'--- {case}', flush=True)
        res = {}

        def say(m):
            print(f'  {m}', flush=True)
        try:
            run_case(env, case, work, res, say=say)
            instant_restore(env, case, work, res['acked'], ok, say)
        except (CaseFailed, QMPError, OSError,
                subprocess.CalledProcessError) as e:
            print(f'  FAILED: {e}')
            print(f'  (files kept in {work})')
        except Exception as e:     # a bug in the test: still a failure
            print(f'  FAILED (unexpected {type(e).__name__}): {e}')
    passed, failed, skipped = report_tests(TESTS, ok, accel, why)
    if failed == 0:
        shutil.rmtree(work, ignore_errors=True)
    print(f'guest-instant group: {time.monotonic() - start:.0f}s')
    print_totals(passed, failed, skipped)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
