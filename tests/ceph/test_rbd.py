#!/usr/bin/env python3
"""
Backup of disks on Ceph RBD and restore into RBD, against a real cluster.

    QEMU_BUILD=<build dir> CEPH_CONF=<dir>/ceph.conf python3 test_rbd.py

tests/ceph/run-tests.sh starts the cluster (tests/ceph/start.sh), runs this
and stops it.  The VM is the patched QEMU (-accel qtest, no guest OS),
driven over QMP with QEMU's own python/qemu package from the source tree;
guest writes are HMP `qemu-io -d <device>` (through the device, hence
through the backup's copy-before-write filter).  Archives are checked with
the `vma` tool of the same build; references are taken with `rbd export`,
independently of QEMU.  Last line: "N passed, N failed, N skipped".

Covered: a live backup of an RBD disk and a local qcow2 under guest
writes, with and without a local fleecing image, restored bit-exactly;
the OSD requests of a backup (per 4 MiB object) and of a guest write
during it; `vma extract -r` into RBD (rbd: and json: targets, throttling,
flag 1 over old data, wrong sizes refused untouched); the vma driver on an
archive stored in an RBD image; instant restore into an RBD image.

Copyright (c) the VMA backup authors
SPDX-License-Identifier: GPL-2.0-or-later
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

BUILD = os.path.abspath(os.environ['QEMU_BUILD'])
CONF = os.path.abspath(os.environ['CEPH_CONF'])
POOL = os.environ.get('CEPH_POOL', 'rbd')
sys.path.insert(0, os.path.join(os.path.realpath(BUILD), '..', 'python'))
from qemu.machine import QEMUMachine  # noqa: E402

QEMU = os.path.join(BUILD, 'qemu-system-x86_64')
QEMU_IMG = os.path.join(BUILD, 'qemu-img')
VMA = os.path.join(BUILD, 'vma')
MiB = 1024 * 1024
CHUNK = 64 * 1024


def run(*args, check=True, input=None, timeout=300):
    return subprocess.run(args, check=check, input=input, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def rbd(*args, check=True):
    return run('rbd', '-c', CONF, *args, check=check)


def rbd_filename(image):
    """The legacy filename form of QEMU's rbd driver"""
    return f'rbd:{POOL}/{image}:conf={CONF}'


def rbd_json(image, raw_node=False):
    """The json: form: the rbd node itself (for format=rbd), or under a
    raw node (the map's default format=raw replaces a top-level driver)"""
    node = {'driver': 'rbd', 'pool': POOL, 'image': image, 'conf': CONF}
    if raw_node:
        node = {'driver': 'raw', 'file': node}
    return 'json:' + json.dumps(node)


def make_data(path, size, seed):
    """A raw file of @size: random 64 KiB chunks, zero chunks and a hole"""
    rng = random.Random(seed)
    with open(path, 'wb') as f:
        for off in range(0, size, CHUNK):
            n = min(CHUNK, size - off)
            if off >= size * 3 // 4:
                break                   # the last quarter stays a hole
            if rng.random() < 0.2:
                f.write(bytes(n))
            else:
                f.write(rng.randbytes(n))
        f.truncate(size)


def read_at(path, offset, length):
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(length)


def same_bytes(a, b):
    """Bit-exact comparison of two files"""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        while True:
            x, y = fa.read(4 * MiB), fb.read(4 * MiB)
            if x != y:
                return False
            if not x:
                return True


class RbdTestCase(unittest.TestCase):
    """A scratch directory and RBD images removed at the end"""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='vma-ceph-test-')
        self.images = []
        self.vm = None

    def tearDown(self):
        try:
            if self.vm is not None:
                self.vm.shutdown()
        except Exception:
            # QEMU's own last words (an assertion, ...) for the failure
            print(f'\nQEMU log:\n{self.vm.get_log()}')
            raise
        finally:
            for image in self.images:
                rbd('rm', '--no-progress', f'{POOL}/{image}', check=False)
            shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def new_image(self, name, size=None, data=None):
        """An RBD image: empty of @size, or imported from the file @data"""
        image = f'{self.id().rsplit(".", 1)[-1]}-{name}'[:60]
        if data:
            rbd('import', '--no-progress', data, f'{POOL}/{image}')
        else:
            rbd('create', '--size', f'{size}B', f'{POOL}/{image}')
        self.images.append(image)
        return image

    def export(self, image, name):
        out = self.path(name)
        rbd('export', '--no-progress', f'{POOL}/{image}', out)
        return out

    def vma(self, *args, check=True, input=None):
        return run(VMA, *args, check=check, input=input)

    def restore(self, archive, map_lines, check=True):
        """vma extract -r with the map given on stdin (after the listing)"""
        return self.vma('extract', archive, '-r', '-', self.path('extract'),
                        check=check, input=''.join(l + '\n' for l in map_lines))

    # the VM

    def launch(self, blockdevs):
        """A VM with one virtio-blk device per blockdev (node name = id)"""
        self.vm = QEMUMachine(QEMU, base_temp_dir=self.dir,
                              args=['-accel', 'qtest', '-nodefaults',
                                    '-display', 'none'])
        self.vm.set_machine('pc')
        for i, bd in enumerate(blockdevs):
            self.vm.add_args('-blockdev', json.dumps(bd), '-device',
                             f'virtio-blk-pci,drive={bd["node-name"]},'
                             f'id=dev{i}')
        self.vm.launch()

    def guest_write(self, dev, offset, length, pattern):
        out = self.vm.cmd('human-monitor-command',
                          command_line=f'qemu-io -d {dev}/virtio-backend '
                          f'"write -P {pattern} {offset} {length}"')
        self.assertNotIn('error', out.lower(), out)

    def wait_backup(self, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            st = self.vm.cmd('query-backup')
            if st.get('status') in ('done', 'error'):
                return st
            time.sleep(0.05)
        self.fail('backup did not end')

    def unthrottle_jobs(self):
        for j in self.vm.cmd('query-block-jobs'):
            self.vm.cmd('block-job-set-speed', device=j['device'], speed=0)


def rbd_blockdev(node, image):
    return {'driver': 'rbd', 'node-name': node, 'pool': POOL,
            'image': image, 'conf': CONF}


def qcow2_blockdev(node, path):
    return {'driver': 'qcow2', 'node-name': node,
            'file': {'driver': 'file', 'filename': path}}


class TestLiveBackup(RbdTestCase):
    RBD_SIZE = 40 * MiB + 64 * 1024
    LOCAL_SIZE = 16 * MiB

    def setUp(self):
        super().setUp()
        src = self.path('rbd-src.raw')
        make_data(src, self.RBD_SIZE, 1)
        self.rbd_image = self.new_image('disk', data=src)
        os.remove(src)
        self.qcow2 = self.path('local.qcow2')
        raw = self.path('local-src.raw')
        make_data(raw, self.LOCAL_SIZE, 2)
        run(QEMU_IMG, 'convert', '-f', 'raw', '-O', 'qcow2', raw, self.qcow2)
        os.remove(raw)

    def reference(self):
        """The disks now (VM stopped): rbd export and qemu-img convert"""
        ref_rbd = self.export(self.rbd_image, 'ref-rbd.raw')
        ref_local = self.path('ref-local.raw')
        run(QEMU_IMG, 'convert', '-U', '-f', 'qcow2', '-O', 'raw',
            self.qcow2, ref_local)
        return ref_rbd, ref_local

    def write_during_backup(self, rng, n=60):
        """Guest writes to both disks while the backup runs"""
        writes = []
        for _ in range(n):
            dev, size = rng.choice([('dev0', self.RBD_SIZE),
                                    ('dev1', self.LOCAL_SIZE)])
            off = rng.randrange(0, size - 8192) // 512 * 512
            pat = rng.randrange(1, 255)
            self.guest_write(dev, off, 8192, pat)
            writes.append((dev, off, pat))
        return writes

    def check_restores(self, archive, ref_rbd, ref_local):
        """The archive's disks equal the point in time, bit for bit, as
        extracted to files and as restored into a new RBD image"""
        self.vma('verify', archive)
        self.vma('extract', archive, self.path('files'))
        self.assertTrue(same_bytes(
            self.path('files/disk-drive-rbd0.raw'), ref_rbd))
        self.assertTrue(same_bytes(
            self.path('files/disk-drive-local0.raw'), ref_local))
        target = self.new_image('restored', size=self.RBD_SIZE)
        self.restore(archive, [f'0:drive-rbd0={rbd_filename(target)}',
                               'skip=drive-local0'])
        self.assertTrue(same_bytes(self.export(target, 'restored.raw'),
                                   ref_rbd))

    def check_live_disk_has_writes(self, writes):
        """The writes went to the live RBD disk (not just anywhere)"""
        now = self.export(self.rbd_image, 'after.raw')
        for i, (dev, off, pat) in enumerate(writes):
            later = any(d == dev and abs(o - off) < 8192
                        for d, o, _ in writes[i + 1:])
            if dev == 'dev0' and not later:
                self.assertEqual(read_at(now, off, 8192), bytes([pat]) * 8192)

    def test_backup_under_guest_writes(self):
        self.launch([rbd_blockdev('drive-rbd0', self.rbd_image),
                     qcow2_blockdev('drive-local0', self.qcow2)])
        archive = self.path('backup.vma')
        # The point in time: VM stopped, disks copied, backup, cont
        self.vm.cmd('stop')
        ref_rbd, ref_local = self.reference()
        self.vm.cmd('backup', backup_file=archive, speed=8 * MiB)
        self.vm.cmd('cont')
        writes = self.write_during_backup(random.Random(3))
        # the writes raced the copy, they did not come after it
        self.assertEqual(self.vm.cmd('query-backup')['status'], 'active')
        self.unthrottle_jobs()
        st = self.wait_backup()
        self.assertEqual(st['status'], 'done', st.get('errmsg'))
        self.assertEqual(st['total'], self.RBD_SIZE + self.LOCAL_SIZE)
        self.vm.shutdown()
        self.vm = None
        self.check_restores(archive, ref_rbd, ref_local)
        self.check_live_disk_has_writes(writes)

    def test_fleecing_local_image_for_rbd_disk(self):
        fleece = self.path('fleece.qcow2')
        run(QEMU_IMG, 'create', '-f', 'qcow2', fleece, str(self.RBD_SIZE))
        self.launch([rbd_blockdev('drive-rbd0', self.rbd_image),
                     qcow2_blockdev('drive-local0', self.qcow2)])
        self.vm.cmd('blockdev-add', {
            'driver': 'qcow2', 'node-name': 'drive-rbd0-fleecing',
            'discard': 'unmap',
            'file': {'driver': 'file', 'filename': fleece}})
        archive = self.path('backup.vma')
        self.vm.cmd('stop')
        ref_rbd, ref_local = self.reference()
        fleece_size = os.path.getsize(fleece)
        self.vm.cmd('backup', backup_file=archive, speed=8 * MiB,
                    devlist='drive-rbd0,drive-local0',
                    fleecing_images=[{'device': 'drive-rbd0',
                                      'node': 'drive-rbd0-fleecing'}])
        self.vm.cmd('cont')
        # The fleecing node is in the graph now: the old data of the guest
        # writes goes there
        writes = self.write_during_backup(random.Random(4))
        self.assertEqual(self.vm.cmd('query-backup')['status'], 'active')
        # the old data of those writes (one 64 KiB cluster or two each)
        # went to the local fleecing image
        rbd_writes = sum(1 for dev, _, _ in writes if dev == 'dev0')
        grown = os.path.getsize(fleece) - fleece_size
        self.assertGreaterEqual(grown, rbd_writes // 2 * 65536,
                                f'{rbd_writes} writes')
        self.unthrottle_jobs()
        st = self.wait_backup()
        self.assertEqual(st['status'], 'done', st.get('errmsg'))
        self.vm.cmd('blockdev-del', node_name='drive-rbd0-fleecing')
        self.vm.shutdown()
        self.vm = None
        self.check_restores(archive, ref_rbd, ref_local)
        self.check_live_disk_has_writes(writes)


def osd_reads():
    """osd.0's counters of read ops and bytes read"""
    out = run('ceph', '-c', CONF, 'daemon', 'osd.0', 'perf', 'dump').stdout
    osd = json.loads(out)['osd']
    return osd['op_r'], osd['op_r_out_bytes']


class TestReadsPerObject(RbdTestCase):
    """What an idle backup of an RBD disk asks of the OSD (issue 14 point
    4): 7 data objects of 4 MiB, random, and one never written"""
    OBJECTS = 8
    SIZE = OBJECTS * 4 * MiB

    def setUp(self):
        super().setUp()
        src = self.path('src.raw')
        with open(src, 'wb') as f:
            f.write(random.Random(7).randbytes(self.SIZE - 4 * MiB))
            f.truncate(self.SIZE)
        self.image = self.new_image('disk', data=src)
        self.launch([rbd_blockdev('drive-rbd0', self.image)])
        before = osd_reads()
        self.vm.cmd('backup', backup_file=self.path('backup.vma'))
        st = self.wait_backup()
        self.assertEqual(st['status'], 'done', st.get('errmsg'))
        after = osd_reads()
        self.read_ops = after[0] - before[0]
        self.read_bytes = after[1] - before[1]
        print(f'\n  backup of {self.OBJECTS} objects: {self.read_ops} reads, '
              f'{self.read_bytes} bytes', end=' ', flush=True)

    def test_each_object_read_once(self):
        data = self.SIZE - 4 * MiB
        # the hole is not read; the rest once (plus a little metadata)
        self.assertGreaterEqual(self.read_bytes, data)
        self.assertLess(self.read_bytes, data + 256 * 1024)

    # block-copy's largest chunk is 1 MiB: 4 reads per 4 MiB object.  (With
    # the sink's max_transfer at one 64 KiB cluster, as it was, 64.)
    def test_at_most_4_reads_per_object(self):
        # data objects + a few metadata reads (header, object map)
        self.assertLessEqual(self.read_ops, (self.OBJECTS - 1) * 4 + 16,
                             f'{self.read_ops} reads')


class TestEmptyImage(RbdTestCase):
    """An RBD image never written: block status (librbd's diff) tells the
    backup it is all zero, so no data is read"""

    def test_no_data_read(self):
        size = 8 << 30
        self.launch([rbd_blockdev('drive-rbd0',
                                  self.new_image('empty', size=size))])
        before = osd_reads()
        archive = self.path('b.vma')
        self.vm.cmd('backup', backup_file=archive)
        st = self.wait_backup(timeout=60)
        self.assertEqual(st['status'], 'done', st.get('errmsg'))
        after = osd_reads()
        self.assertEqual(st['zero-bytes'], size)
        self.assertLess(after[1] - before[1], 64 * 1024)    # metadata only
        self.assertLess(os.path.getsize(archive), 4 * MiB)


class TestGuestWriteReads(RbdTestCase):
    """What a guest write during the backup asks of the OSD: one 64 KiB
    read (the cluster's old data) where the backup has not been yet, none
    where it has saved the cluster"""

    def test_one_64k_read_per_unsaved_cluster(self):
        size = 32 * MiB
        src = self.path('src.raw')
        with open(src, 'wb') as f:
            f.write(random.Random(8).randbytes(size))
        self.launch([rbd_blockdev('drive-rbd0', self.new_image('disk',
                                                                data=src))])
        # so slow that the end of the disk stays unsaved
        self.vm.cmd('backup', backup_file=self.path('b.vma'), speed=65536)
        for off in (size - 8 * MiB + 8192, size - 4 * MiB + 8192,
                    size - 8 * MiB + 12288):
            before = osd_reads()
            self.guest_write('dev0', off, 4096, 0x61)
            after = osd_reads()
            reads = (after[0] - before[0], after[1] - before[1])
            saved = off == size - 8 * MiB + 12288   # same cluster as the 1st
            self.assertEqual(reads[0], 0 if saved else 1, reads)
            if not saved:
                # 64 KiB of data, plus the reply's few bytes of framing
                self.assertGreaterEqual(reads[1], 65536)
                self.assertLess(reads[1], 65536 + 1024)
        self.assertEqual(self.vm.cmd('query-backup')['status'], 'active')
        self.vm.cmd('backup-cancel')


class ArchiveTestCase(RbdTestCase):
    """An archive of two disks made by `vma create` from raw files"""
    SIZE_A = 12 * MiB + 4096        # not a multiple of the 64 KiB cluster
    SIZE_B = 6 * MiB

    def setUp(self):
        super().setUp()
        self.src_a = self.path('a.raw')
        self.src_b = self.path('b.raw')
        make_data(self.src_a, self.SIZE_A, 5)
        make_data(self.src_b, self.SIZE_B, 6)
        self.archive = self.path('archive.vma')
        self.vma('create', self.archive, '-d', f'format=raw:a={self.src_a}',
                 '-d', f'format=raw:b={self.src_b}')


class TestRestoreIntoRbd(ArchiveTestCase):
    def test_rbd_filename_and_json_targets(self):
        ta = self.new_image('a', size=self.SIZE_A)
        tb = self.new_image('b', size=self.SIZE_B)
        self.restore(self.archive, [f'0:a={rbd_filename(ta)}',
                                    f'format=rbd:0:b={rbd_json(tb)}'])
        self.assertTrue(same_bytes(self.export(ta, 'ta.raw'), self.src_a))
        self.assertTrue(same_bytes(self.export(tb, 'tb.raw'), self.src_b))

    def test_flag_1_overwrites_old_data_with_zeroes(self):
        garbage = self.path('garbage.raw')
        with open(garbage, 'wb') as f:
            f.write(b'\xa5' * self.SIZE_A)
        ta = self.new_image('a', data=garbage)
        self.restore(self.archive, [f'format=raw:1:a={rbd_filename(ta)}',
                                    'skip=b'])
        self.assertTrue(same_bytes(self.export(ta, 'ta.raw'), self.src_a))

    def test_throttled_restore(self):
        ta = self.new_image('a', size=self.SIZE_A)
        tb = self.new_image('b', size=self.SIZE_B)
        bps = 4 * MiB
        start = time.monotonic()
        self.restore(self.archive, [
            f'throttling.bps={bps}:throttling.group=g:0:a={rbd_filename(ta)}',
            f'throttling.group=g:0:b={rbd_json(tb, raw_node=True)}'])
        elapsed = time.monotonic() - start
        # One group of 4 MiB/s for both disks' data (about 13 MiB of it:
        # zero clusters are skipped); QEMU's throttling lets a burst of one
        # second's worth through first
        data = sum(os.path.getsize(p) * 3 // 4 * 0.8
                   for p in (self.src_a, self.src_b))
        self.assertGreater(elapsed, (data - bps) / bps * 0.8,
                           f'{elapsed:.1f}s for {data / MiB:.0f} MiB')
        self.assertTrue(same_bytes(self.export(ta, 'ta.raw'), self.src_a))
        self.assertTrue(same_bytes(self.export(tb, 'tb.raw'), self.src_b))

    def test_wrong_size_refused(self):
        pattern = b'\x5a' * MiB
        old = self.path('old.raw')
        with open(old, 'wb') as f:
            f.write(pattern * 8)
        small = self.new_image('small', data=old)               # 8 MiB < a
        large = self.new_image('large', size=self.SIZE_B + 5 * MiB)
        for line in (f'0:a={rbd_filename(small)}',
                     f'format=rbd:0:b={rbd_json(large)}'):
            other = 'skip=b' if line.startswith('0:a') else 'skip=a'
            res = self.restore(self.archive, [line, other], check=False)
            self.assertNotEqual(res.returncode, 0)
            self.assertRegex(res.stderr, 'small|large|size')
            shutil.rmtree(self.path('extract'), ignore_errors=True)
        # nothing was written into either
        self.assertTrue(same_bytes(self.export(small, 'small.raw'), old))
        with open(self.export(large, 'large.raw'), 'rb') as f:
            self.assertEqual(f.read().count(0), self.SIZE_B + 5 * MiB)


def have_vma_driver():
    return ' vma ' in run(QEMU_IMG, '--help').stdout.split(
        'Supported formats:')[-1] + ' '


class TestVmaDriverOnRbd(ArchiveTestCase):
    """The vma block driver reading an archive stored in an RBD image"""

    def test_archive_in_rbd_image(self):
        if not have_vma_driver():
            self.skipTest('the vma block driver is not in this build')
        image = self.new_image('archive', data=self.archive)
        for dev, src in (('a', self.src_a), ('b', self.src_b)):
            node = {'driver': 'vma', 'device': dev, 'read-only': True,
                    'file': {'driver': 'rbd', 'pool': POOL, 'image': image,
                             'conf': CONF}}
            out = self.path(f'{dev}.raw')
            run(QEMU_IMG, 'convert', '-O', 'raw', 'json:' + json.dumps(node),
                out)
            self.assertTrue(same_bytes(out, src))


class TestInstantRestoreIntoRbd(ArchiveTestCase):
    """Instant restore into an RBD image (README "Instant restore", raw
    target): the disk runs on a local qcow2 overlay over the archive's disk
    (vma driver) while blockdev-mirror (write-blocking) copies it into the
    RBD image; on job-complete the disk switches to the RBD image"""

    def test_disk_runs_on_archive_while_copied_into_rbd(self):
        if not have_vma_driver():
            self.skipTest('the vma block driver is not in this build')
        size = self.SIZE_A
        with open(self.src_a, 'rb') as f:
            expected = bytearray(f.read())
        old = self.path('old.raw')
        with open(old, 'wb') as f:
            f.write(b'\xee' * size)
        target = self.new_image('target', data=old)
        overlay = self.path('overlay.qcow2')
        run(QEMU_IMG, 'create', '-f', 'qcow2', overlay, str(size))
        self.launch([])
        vm = self.vm
        vm.cmd('blockdev-add', driver='file', node_name='archive',
               filename=self.archive, read_only=True)
        vm.cmd('blockdev-add', driver='vma', node_name='archive-a',
               file='archive', device='a', read_only=True)
        vm.cmd('blockdev-add', driver='qcow2', node_name='drive-a',
               file={'driver': 'file', 'filename': overlay},
               backing='archive-a')
        vm.cmd('blockdev-add', rbd_blockdev('target-a', target))
        vm.cmd('device_add', driver='virtio-blk-pci', id='dev0',
               drive='drive-a')
        vm.cmd('blockdev-mirror', job_id='restore-a', device='drive-a',
               target='target-a', sync='full', copy_mode='write-blocking',
               speed=2 * MiB, buf_size=MiB)
        # the guest writes at both ends while the copy is near the start
        for off, length, pat in ((4096 + 512, 1024, 0x22),
                                 (size - 3 * MiB + 1536, 512, 0x33),
                                 (size - 4096, 4096, 0x44)):
            self.guest_write('dev0', off, length, pat)
            expected[off:off + length] = bytes([pat]) * length
        job = vm.cmd('query-block-jobs')[0]
        self.assertLess(job['offset'], job['len'] // 2, 'copy too fast')
        vm.cmd('block-job-set-speed', device='restore-a', speed=0)
        vm.event_wait('BLOCK_JOB_READY', timeout=60)
        vm.cmd('job-complete', id='restore-a')
        ev = vm.event_wait('BLOCK_JOB_COMPLETED', timeout=60)
        self.assertNotIn('error', ev['data'])
        self.assertEqual(vm.cmd('query-block')[0]['inserted']['node-name'],
                         'target-a')
        for node in ('drive-a', 'archive-a', 'archive'):
            vm.cmd('blockdev-del', node_name=node)
        self.guest_write('dev0', MiB, 65536, 0x55)      # on RBD alone now
        expected[MiB:MiB + 65536] = bytes([0x55]) * 65536
        vm.shutdown()
        self.vm = None
        with open(self.export(target, 'final.raw'), 'rb') as f:
            self.assertTrue(f.read() == expected, 'the RBD image differs '
                            'from the archive plus the guest writes')


class TestIncrementalChain(RbdTestCase):
    """Incremental backups of an RBD disk (in-memory dirty bitmap): a full
    archive and two incrementals, guest writes between and during them,
    every point of the chain restored equal to the disk at that point"""

    SIZE = 24 * MiB

    def test_incremental_chain_of_rbd_disk(self):
        src = self.path('src.raw')
        make_data(src, self.SIZE, 3)
        with open(src, 'rb') as f:
            model = bytearray(f.read())
        image = self.new_image('disk', data=src)
        os.remove(src)
        self.launch([rbd_blockdev('drive-rbd0', image)])
        rng = random.Random(5)

        def writes(n):
            for _ in range(n):
                off = rng.randrange(0, self.SIZE - 8192) // 512 * 512
                pat = rng.randrange(1, 255)
                self.guest_write('dev0', off, 8192, pat)
                model[off:off + 8192] = bytes([pat]) * 8192

        archives, points, base = [], [], None
        for k in range(3):
            archive = self.path(f'b{k}.vma')
            points.append(bytes(model))
            args = {'incremental': base} if base else {'track-changes': True}
            self.vm.cmd('backup', {'backup-file': archive, 'speed': 4 * MiB,
                                   **args})
            writes(20)                  # during the backup: not in it
            self.unthrottle_jobs()
            st = self.wait_backup()
            self.assertEqual(st['status'], 'done', st.get('errmsg'))
            self.assertEqual(st['disks'][0]['action'],
                             'used' if base else 'new')
            if base:
                self.assertEqual(st['base'], base)
                self.assertLess(os.path.getsize(archive), self.SIZE // 4)
            base = st['uuid']
            archives.append(archive)
            writes(20)
        self.vma('verify', *archives)
        for k in range(3):
            out = self.path(f'restore{k}')
            self.vma('extract', *archives[:k + 1], out)
            with open(os.path.join(out, 'disk-drive-rbd0.raw'), 'rb') as f:
                self.assertTrue(f.read() == points[k],
                                f'point {k} restores differently')


def main():
    for prog in (QEMU, QEMU_IMG, VMA):
        if not os.access(prog, os.X_OK):
            print(f'{prog} missing')
            print('0 passed, 1 failed')
            return 1
    suite = unittest.defaultTestLoader.loadTestsFromModule(
        sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    for test in result.unexpectedSuccesses:
        print(f'UNEXPECTED SUCCESS: {test.id()}: remove its expectedFailure')
    failed = (len(result.failures) + len(result.errors) +
              len(result.unexpectedSuccesses))
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f'{passed} passed, {failed} failed, {skipped} skipped')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
