"""One live backup of a real guest, end to end, with an exact oracle.

run_case() boots a kit guest with a qcow2 disk on virtio-blk (in an
iothread, ext4, written by fswork) and a raw disk on virtio-scsi (scsi-hd,
written by blkwork), lets the workloads run, then:

  stop -> copy the image files (QEMU flushed them at stop: this is exactly
  what the guest had written) -> backup -> cont

so the archive must hold exactly those copies.  The backup runs throttled
(256 KiB/s: even a guest writing only a few MB/s gets its 32 MiB in
before the ~10 MiB of data are copied) while the guest keeps writing, until
that amount of guest writes have overlapped it, then at full speed.  The archive is restored (vma extract,
or vma extract -r into qcow2 targets), compared bit for bit with the
copies, and a VM booted from the restored disks runs the checkers: no
damage, and every write the guest acknowledged before `stop` present.

Used by tests/guest/test_live_backup.py and scripts/demo-live-backup.py.
"""

import filecmp
import os
import re
import subprocess
import time

from guestvm import Guest, QMPError

MiB = 1024 * 1024
FS_SIZE = 160 * MiB + 12 * 1024      # sizes not multiples of 64 KiB
BLK_SIZE = 48 * MiB + 8 * 1024
FS_DEV, BLK_DEV = 'drive-virtio0', 'drive-scsi0'


class Env:
    """Where things are: QEMU build dir, vma binary, guest kit, accel"""

    def __init__(self, build, vma, kit, accel):
        self.build, self.vma, self.kit, self.accel = build, vma, kit, accel
        self.qemu = os.path.join(build, 'qemu-system-x86_64')
        self.qemu_img = os.path.join(build, 'qemu-img')


class Case:
    def __init__(self, name, seed, target='file', fleecing=False,
                 restore='extract', overlap_mib=32, speed=MiB // 4):
        self.name, self.seed, self.target = name, seed, target
        self.fleecing, self.restore = fleecing, restore
        self.overlap_mib, self.speed = overlap_mib, speed

    def __str__(self):
        return (f'{self.name} (seed {self.seed}: archive to {self.target}'
                f'{", fleecing" if self.fleecing else ""}, restore with '
                f'{"vma extract" if self.restore == "extract" else "vma extract -r into qcow2"})')


class CaseFailed(Exception):
    pass


def run(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def make_disks(env, work):
    """A fresh ext4 in a qcow2 image and an empty raw disk"""
    raw = os.path.join(work, 'fs.raw')
    with open(raw, 'wb') as f:
        f.truncate(FS_SIZE)
    run('mkfs.ext4', '-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0',
        raw)
    fs = os.path.join(work, 'vm-fs.qcow2')
    run(env.qemu_img, 'convert', '-f', 'raw', '-O', 'qcow2', raw, fs)
    os.unlink(raw)
    blk = os.path.join(work, 'vm-blk.raw')
    with open(blk, 'wb') as f:
        f.truncate(BLK_SIZE)
    return [(FS_DEV, fs, 'qcow2', 'virtio'), (BLK_DEV, blk, 'raw', 'scsi')]


def wait_console_quiet(guest, quiet=0.3, limit=3.0):
    """Until nothing new arrived on the console for `quiet` seconds"""
    end = time.monotonic() + limit
    n = -1
    while time.monotonic() < end and n != len(guest.lines):
        n = len(guest.lines)
        time.sleep(quiet)


def bytes_done(guest, start):
    """Bytes of files the guest acknowledged from console line start on"""
    total = 0
    for _, line in guest.lines[start:]:
        m = line and re.match(r'^DONE \d+ (\d+)', line)
        if m:
            total += int(m.group(1))
    return total


def changed_bytes(a, b, chunk=64 * 1024):
    """Bytes in the 64 KiB chunks where files a and b differ"""
    n = 0
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if not x and not y:
                return n
            if x != y:
                n += max(len(x), len(y))


def to_raw(env, path, fmt, out):
    if fmt == 'raw':
        return path
    run(env.qemu_img, 'convert', '-f', fmt, '-O', 'raw', path, out)
    return out


def run_case(env, case, work, res, say=print, echo=None, first_done=30):
    """Fills the dict res as it goes; raises CaseFailed on the first
    failure.  res: backup_ok and identical (the steps that passed), acked
    (last file and block acknowledged at the backup point), overlap_mib,
    changed_mib, backup_s, archive_bytes, restored (list of (dev, path,
    fmt))."""
    os.makedirs(work, exist_ok=True)
    disks = make_disks(env, work)
    sizes = {dev: (FS_SIZE if dev == FS_DEV else BLK_SIZE)
             for dev, _, _, _ in disks}
    vm = Guest(env.qemu, env.kit, work, 'writer', env.accel, disks,
               {'work': 'write', 'seed': case.seed}, echo=echo)
    t_boot = time.monotonic()
    vm.launch()
    zstd = None
    try:
        if not vm.wait_line(rf'^DONE {first_done} ', 120):
            raise CaseFailed(f'the guest did not write {first_done} files '
                             f'within 120 s; console:\n{vm.text()[-1500:]}')
        res['boot_s'] = time.monotonic() - t_boot
        say(f'guest booted and writing ({res["boot_s"]:.1f}s); '
            'stop, copy the disks, backup, cont')

        if case.fleecing:
            for dev, _, _, _ in disks:
                img = os.path.join(work, f'fleece-{dev}.qcow2')
                run(env.qemu_img, 'create', '-q', '-f', 'qcow2', img,
                    str(sizes[dev]))
                vm.qmp.cmd('blockdev-add', driver='qcow2',
                           node_name=f'{dev}-fleecing', discard='unmap',
                           file={'driver': 'file', 'filename': img})

        vm.qmp.cmd('stop')
        wait_console_quiet(vm)
        acked = (vm.last_number('DONE'), vm.last_number('BLK'))
        res['acked'] = acked
        expected = {}
        for dev, path, fmt, _ in disks:
            copy = os.path.join(work, f'expected-{dev}.{fmt}')
            run('cp', '--sparse=always', path, copy)
            expected[dev] = (copy, fmt)

        args = {'speed': case.speed}
        if case.fleecing:
            # fleecing needs the disks named (each has a <dev>-fleecing node)
            args['fleecing'] = True
            args['devlist'] = ','.join(dev for dev, _, _, _ in disks)
        archive = os.path.join(work, 'archive.vma' +
                               ('.zst' if case.target == 'zstd' else ''))
        if case.target == 'zstd':
            r, w = os.pipe()
            with open(archive, 'wb') as out:
                zstd = subprocess.Popen(['zstd', '-q', '-c'], stdin=r,
                                        stdout=out)
            os.close(r)
            vm.qmp.cmd('getfd', fdname='archive', fds=[w])
            os.close(w)
            args['backup_file'] = '/dev/fdname/archive'
        else:
            args['backup_file'] = archive
        vm.qmp.cmd('backup', **args)
        t_backup = time.monotonic()
        mark = len(vm.lines)
        vm.qmp.cmd('cont')
        say(f'backup running at {case.speed // 1024} KiB/s while the guest '
            f'writes (acknowledged at the backup point: file {acked[0]}, '
            f'block {acked[1]})')

        unthrottled = False
        deadline = t_backup + 240
        while True:
            st = vm.qmp.cmd('query-backup')
            if st.get('status') != 'active':
                break
            if time.monotonic() > deadline:
                raise CaseFailed(f'backup still active after 240 s: {st}')
            written = bytes_done(vm, mark)
            if not unthrottled and written >= case.overlap_mib * MiB:
                for job in vm.qmp.cmd('query-block-jobs'):
                    vm.qmp.cmd('block-job-set-speed', device=job['device'],
                               speed=0)
                unthrottled = True
                say(f'guest wrote {written / MiB:.1f} MiB during the backup; '
                    'backup unthrottled')
            time.sleep(0.2)
        res['backup_s'] = time.monotonic() - t_backup
        res['overlap_mib'] = bytes_done(vm, mark) / MiB
        res['overlap_files'] = vm.last_number('DONE') - acked[0]
        if st.get('status') != 'done':
            raise CaseFailed(f'backup ended with {st}')
        res['status'] = st
        if not vm.wait_line(r'^DONE ', 10, len(vm.lines) - 1):
            raise CaseFailed('the guest stopped writing after the backup')
        if vm.last_number('BLK') <= acked[1]:
            raise CaseFailed('the block writer made no progress during the '
                             'backup')
        errors = [line for _, line in vm.lines
                  if line and ('ERROR' in line or 'no FITRIM' in line)]
        if errors:
            raise CaseFailed(f'the guest reported: {errors[:3]}')
    finally:
        vm.kill()
        if zstd:
            zstd.wait()
    res['archive_bytes'] = os.path.getsize(archive)
    # The live disks moved on after the backup point (else the oracle
    # below would prove little)
    res['changed_mib'] = sum(
        changed_bytes(to_raw(env, path, fmt, os.path.join(work, 'live.raw')),
                      to_raw(env, *expected[dev],
                             os.path.join(work, 'point.raw')))
        for dev, path, fmt, _ in disks) / MiB
    for f in ('live.raw', 'point.raw'):
        if os.path.exists(os.path.join(work, f)):
            os.unlink(os.path.join(work, f))
    say(f'backup done in {res["backup_s"]:.1f}s, '
        f'{res["overlap_mib"]:.1f} MiB ({res["overlap_files"]} files) '
        f'written by the guest meanwhile; query-backup: total '
        f'{st["total"] / MiB:.1f} MiB, {st.get("zero-bytes", 0) / MiB:.1f} '
        f'MiB of it zero; archive {os.path.basename(archive)} '
        f'{res["archive_bytes"] / MiB:.1f} MiB; the live disks now differ '
        f'from the backup point in {res["changed_mib"]:.1f} MiB')
    if res['changed_mib'] == 0:
        raise CaseFailed('the live disks did not change after the backup point')
    if res['overlap_mib'] < case.overlap_mib:
        raise CaseFailed(f'only {res["overlap_mib"]:.1f} MiB of guest writes '
                         f'overlapped the backup (want {case.overlap_mib})')
    res['backup_ok'] = True

    # Restore
    out = os.path.join(work, 'restored')
    t = time.monotonic()
    src = subprocess.Popen(['zstd', '-q', '-d', '-c', archive],
                           stdout=subprocess.PIPE) if zstd else None
    cmd = [env.vma, 'extract', '-' if src else archive]
    restored = []
    if case.restore == 'qcow2':
        mapfile = os.path.join(work, 'restore.map')
        with open(mapfile, 'w') as f:
            for dev, _, _, _ in disks:
                target = os.path.join(work, f'restored-{dev}.qcow2')
                run(env.qemu_img, 'create', '-q', '-f', 'qcow2', target,
                    str(sizes[dev]))
                f.write(f'format=qcow2:0:{dev}={target}\n')
                restored.append((dev, target, 'qcow2'))
        cmd += ['-r', mapfile]
    else:
        restored = [(dev, os.path.join(out, f'disk-{dev}.raw'), 'raw')
                    for dev, _, _, _ in disks]
    cmd.append(out)
    p = subprocess.run(cmd, stdin=src.stdout if src else None,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if src:
        src.stdout.close()
        src.wait()
    if p.returncode != 0:
        raise CaseFailed(f'{" ".join(cmd)} failed ({p.returncode}): '
                         f'{p.stdout[-1000:]}')
    res['restore_s'] = time.monotonic() - t
    res['restored'] = restored
    say(f'restored with {" ".join(os.path.basename(c) for c in cmd[:2])}'
        f'{" -r" if case.restore == "qcow2" else ""} in '
        f'{res["restore_s"]:.1f}s')

    # The oracle: the disks as they were at stop
    for dev, path, fmt in restored:
        want = to_raw(env, *expected[dev], os.path.join(work, f'want-{dev}.raw'))
        got = to_raw(env, path, fmt, os.path.join(work, f'got-{dev}.raw'))
        if os.path.getsize(want) != os.path.getsize(got) or \
                not filecmp.cmp(want, got, shallow=False):
            raise CaseFailed(f'restored {dev} differs from the disk at the '
                             'backup point')
        for f in (want, got):
            if f not in (path, expected[dev][0]):
                os.unlink(f)
    res['identical'] = True
    say('restored disks == the disks at the backup point, bit for bit')


def check_restored(env, case, work, restored, acked, say=print, echo=None,
                   expect_damage=False):
    """Boot a VM from the restored disks and run the checkers; the
    checkers' result lines, or CaseFailed.  With expect_damage, the
    checkers must report damage instead."""
    drives = [(dev, path, fmt, 'virtio' if dev == FS_DEV else 'scsi')
              for dev, path, fmt in restored]
    vm = Guest(env.qemu, env.kit, work, 'checker', env.accel, drives,
               {'work': 'check', 'seed': case.seed, 'fsack': acked[0],
                'blkack': acked[1]}, echo=echo)
    t = time.monotonic()
    vm.launch()
    try:
        if not vm.wait_line(r'^VMATEST END', 180) or vm.wait_exit(15) is None:
            raise CaseFailed('the checker VM did not finish; console:\n' +
                             vm.text()[-1500:])
    finally:
        vm.kill()
    lines = [line for _, line in vm.lines
             if line and re.match(r'^(FSCHECK|BLKCHECK|VMATEST CHECK)', line)]
    if expect_damage:
        if 'VMATEST CHECK FAILED' not in lines or not all(
                any(line.startswith(w + ' DAMAGE') for line in lines)
                for w in ('FSCHECK', 'BLKCHECK')):
            raise CaseFailed('checker missed the damage: ' + '; '.join(lines))
    elif 'VMATEST CHECK OK' not in lines:
        raise CaseFailed('checker: ' + '; '.join(lines or [vm.text()[-1500:]]))
    say(f'checker VM ({time.monotonic() - t:.1f}s)'
        f'{" on disks damaged on purpose" if expect_damage else ""}: ' +
        '; '.join(lines))
    return lines


def damage(restored, acked):
    """Spoil a restored backup the way a broken backup would: one byte of
    a written block of the raw disk changes, and the files' acknowledged
    sequence number is 5 beyond what was written.  Returns the acked pair
    to hand the checker."""
    path = dict((dev, p) for dev, p, _ in restored)[BLK_DEV]
    with open(path, 'r+b') as f:
        for off in range(0, BLK_SIZE, 4096):
            f.seek(off)
            block = f.read(4096)
            if block.strip(b'\0'):
                f.seek(off + 100)
                f.write(bytes([block[100] ^ 0xff]))
                break
    return acked[0] + 5, acked[1]
