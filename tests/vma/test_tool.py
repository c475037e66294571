#!/usr/bin/env python3
"""Tool-level tests of the `vma` command: the real binary on real files,
pipes and FIFOs in a temporary directory.  No mocks.

    VMA_BIN=/path/to/vma python3 tests/vma/test_tool.py [-v] [PATTERN...]

PATTERNs select tests by substring (unittest -k).  The last line of the
output is "N passed, N failed[, N skipped]"; the exit status is non-zero if
any test failed.  Archives of other writers (odd cluster orders, vmstate,
59-cluster extents, broken rules) come from vmagen.py, an independent VMA
writer in this directory.
"""

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmagen  # noqa: E402

# Absolute: every test runs in a directory of its own
VMA = os.path.abspath(os.environ.get(
    "VMA_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "vma")))
TIMEOUT = 30            # per command; everything here takes ~1 s
BAD_TIMEOUT = 10        # per command on the small broken archives
MiB = 1048576
CTIME = 1434369600          # 2015-06-15 12:00:00 UTC: 2015 in every zone
SUITE_TMP = None


# ---------------------------------------------------------------------------
# Helpers


class Result:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    @property
    def errtext(self):
        return self.err.decode("utf-8", "replace")

    @property
    def outtext(self):
        return self.out.decode("utf-8", "replace")

    def __str__(self):
        return "command: %r\nexit: %s\nstdout: %s\nstderr: %s" % (
            self.args, self.rc, self.out[:2000], self.errtext[:3000])


def mixed_data(size, seed):
    """Disk content: random, zero and nearly-zero blocks, zero clusters."""
    rng = random.Random(seed)
    b = bytearray(size)
    for off in range(0, size, 4096):
        n = min(4096, size - off)
        if (off // 65536) % 5 == 3:
            continue                        # a whole zero cluster
        k = rng.randrange(5)
        if k in (0, 1):
            b[off:off + n] = rng.randbytes(n)
        elif k == 2:
            b[off + rng.randrange(n)] = rng.randrange(1, 256)
    if size:
        b[size - 1] = 0xA5                  # the very last byte is data
    return bytes(b)


def pad512(data):
    """What `vma create` archives: disks padded with zeroes to 512."""
    return data + bytes(-len(data) % 512)


def random_data(size, seed):
    return random.Random(seed).randbytes(size)


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def tree(root):
    """All paths under @root, relative, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


class ToolTest(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix=self.id().split(".")[-1][:40] + "-",
                                    dir=SUITE_TMP)
        self.inp = os.path.join(self.tmp, "in")
        self.box = os.path.join(self.tmp, "box")
        os.mkdir(self.inp)
        os.mkdir(self.box)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # running things

    def run_cmd(self, args, input=None, stdin=None, timeout=TIMEOUT,
                env=None):
        try:
            # cwd: whatever a relative path does stays in the sandbox
            p = subprocess.run(args, input=input, stdin=stdin,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=timeout, env=env, cwd=self.tmp)
        except subprocess.TimeoutExpired:
            self.fail("hang: %r did not finish within %ds" % (args, timeout))
        return Result(args, p.returncode, p.stdout, p.stderr)

    def vma(self, *args, **kw):
        return self.run_cmd([VMA] + [str(a) for a in args], **kw)

    def shell(self, script, *args, timeout=TIMEOUT):
        """bash -o pipefail -c SCRIPT with $1.. = args; VMA in $VMA"""
        env = dict(os.environ, VMA=VMA)
        return self.run_cmd(["bash", "-o", "pipefail", "-c", script, "_"] +
                            [str(a) for a in args], timeout=timeout, env=env)

    # assertions

    def ok(self, r):
        self.assertEqual(r.rc, 0, "expected success\n%s" % r)
        return r

    def refused(self, r, keywords=None):
        """Non-zero exit (not a signal), and if @keywords, a one-line
        message on stderr containing one of them (case-insensitive)."""
        self.assertGreaterEqual(r.rc, 0, "killed by signal %d\n%s" %
                                (-r.rc if r.rc < 0 else 0, r))
        self.assertNotEqual(r.rc, 0, "expected failure\n%s" % r)
        lines = [ln for ln in r.errtext.splitlines() if ln.strip()]
        self.assertTrue(lines, "no error message on stderr\n%s" % r)
        if keywords:
            self.assertEqual(len(lines), 1,
                             "error message is not one line\n%s" % r)
            low = lines[0].lower()
            self.assertTrue(any(k.lower() in low for k in keywords),
                            "stderr names none of %r\n%s" % (keywords, r))
        return r

    def not_signal(self, r):
        self.assertGreaterEqual(r.rc, 0, "killed by signal\n%s" % r)
        return r

    def assertSameFile(self, a, b):
        r = self.run_cmd(["cmp", a, b])
        self.assertEqual(r.rc, 0, "files differ: %s %s\n%s" % (a, b, r))

    def assertFileData(self, path, data):
        self.assertTrue(os.path.isfile(path), "%s missing (have: %r)" %
                        (path, tree(os.path.dirname(path))
                         if os.path.isdir(os.path.dirname(path)) else None))
        got = read_file(path)
        self.assertEqual(len(got), len(data), "%s: size %d, expected %d" %
                         (path, len(got), len(data)))
        if got != data:
            first = next(i for i in range(len(data)) if got[i] != data[i])
            self.fail("%s differs from the source at byte %d" % (path, first))

    def assertNoDiskFiles(self, root):
        left = [p for p in tree(root)
                if re.match(r"disk-.*\.raw$", os.path.basename(p)) or
                os.path.basename(p) == "vmstate.bin"]
        self.assertEqual(left, [], "failed extract left complete-looking "
                         "disk files under %s" % root)

    def assertNothingOutside(self, target, before):
        """Nothing but @target appeared in its parent (listing @before),
        and no 'evil' anywhere in this test's temp dir outside @target."""
        parent = os.path.dirname(target)
        after = set(os.listdir(parent))
        new = after - set(before) - {os.path.basename(target)}
        self.assertEqual(new, set(), "files created outside the target dir")
        for p in tree(self.tmp):
            full = os.path.join(self.tmp, p)
            if "evil" in os.path.basename(p) and \
                    not os.path.abspath(full).startswith(
                        os.path.abspath(target) + os.sep) and \
                    not full.startswith(self.inp + os.sep):
                self.fail("'%s' created outside the target dir" % full)

    # building blocks

    def disk(self, name, data):
        return write_file(os.path.join(self.inp, name), data)

    def create(self, archive, disks=(), configs=(), extra=()):
        """vma create ARCHIVE -c CFG... -d format=raw:NAME=PATH..."""
        args = ["create", archive] + list(extra)
        for c in configs:
            args += ["-c", c]
        for name, path in disks:
            args += ["-d", "format=raw:%s=%s" % (name, path)]
        return self.vma(*args)

    def gen(self, name, disks=(), configs=(), vmstate=None, breaks=(), **kw):
        """Write an archive with vmagen into the input dir."""
        path = os.path.join(self.inp, name)
        kw.setdefault("ctime", CTIME)
        vmagen.write_archive(path, disks, configs, vmstate, breaks, **kw)
        return path

    def extract_ok(self, archive, expect_disks, expect_configs=(),
                   extra=()):
        out = os.path.join(self.box, "out")
        self.ok(self.vma("extract", archive, *extra, out))
        for name, data in expect_disks:
            self.assertFileData(os.path.join(out, "disk-%s.raw" % name), data)
        for name, data in expect_configs:
            self.assertFileData(os.path.join(out, name), data)
        return out


# ---------------------------------------------------------------------------
# Round trips through `vma create`


class RoundTrip(ToolTest):
    def roundtrip(self, sizes_data, configs=()):
        disks = []
        for i, data in enumerate(sizes_data):
            disks.append(("drive-scsi%d" % i,
                          self.disk("src%d.raw" % i, data)))
        cfgs = [write_file(os.path.join(self.inp, n), d) for n, d in configs]
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, disks, cfgs))
        self.ok(self.vma("verify", arch))
        out = os.path.join(self.box, "out")
        self.ok(self.vma("extract", arch, out))
        for name, path in disks:
            self.assertFileData(os.path.join(out, "disk-%s.raw" % name),
                                pad512(read_file(path)))
        for n, d in configs:
            self.assertFileData(os.path.join(out, n), d)
        return arch, out

    def test_size_540672(self):
        self.roundtrip([mixed_data(540672, 1)])

    def test_size_4MiB_plus_4608(self):
        self.roundtrip([mixed_data(4 * MiB + 4608, 2)])

    def test_size_512(self):
        self.roundtrip([mixed_data(512, 3)])

    def test_size_65536(self):
        self.roundtrip([mixed_data(65536, 4)])

    def test_size_1(self):
        self.roundtrip([b"\x7f"])

    def test_size_1_zero(self):
        self.roundtrip([b"\0"])

    def test_size_4095_4097(self):
        self.roundtrip([mixed_data(4095, 5), mixed_data(4097, 6)])

    def test_random_data(self):
        self.roundtrip([random_data(3 * MiB + 777, 7)])

    def test_all_zero_disk(self):
        arch, out = self.roundtrip([bytes(2 * MiB + 512)])
        # zero clusters are recorded, not stored: the archive stays small
        self.assertLess(os.path.getsize(arch), 256 * 1024)

    def test_several_disks_and_configs(self):
        self.roundtrip([mixed_data(540672, 8), mixed_data(70000, 9),
                        random_data(1000, 10)],
                       configs=[("qemu-server.conf", b"memory: 2048\n"),
                                ("qemu-server.fw", b"[OPTIONS]\n")])

    def test_sparse_64MiB(self):
        src = os.path.join(self.inp, "sparse.raw")
        rng = random.Random(11)
        with open(src, "wb") as f:
            f.truncate(64 * MiB)
            f.seek(10 * MiB)
            f.write(rng.randbytes(3 * MiB))
            f.seek(60000 * 1024)
            f.write(rng.randbytes(100 * 1024))
            f.seek(64 * MiB - 1)
            f.write(b"\x01")
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [("drive-scsi0", src)]))
        self.assertLess(os.path.getsize(arch), 8 * MiB,
                        "holes were stored in the archive")
        self.ok(self.vma("verify", arch))
        out = os.path.join(self.box, "out")
        self.ok(self.vma("extract", arch, out))
        dst = os.path.join(out, "disk-drive-scsi0.raw")
        self.assertSameFile(src, dst)
        st = os.stat(dst)
        self.assertEqual(st.st_size, 64 * MiB)
        src_alloc = os.stat(src).st_blocks * 512
        if src_alloc >= 32 * MiB:
            self.skipTest("this file system does not keep holes")
        self.assertLess(st.st_blocks * 512, 16 * MiB,
                        "extracted disk is not sparse (%d bytes allocated)"
                        % (st.st_blocks * 512))

    def test_sparse_scattered_unaligned(self):
        """Small unaligned data islands and a trailing hole in a file whose
        size is not a multiple of 512: holes must come back as zeroes."""
        size = 8 * MiB + 1000
        src = os.path.join(self.inp, "sparse.raw")
        rng = random.Random(12)
        want = bytearray(size)
        with open(src, "wb") as f:
            f.truncate(size)
            for _ in range(40):
                off = rng.randrange(0, 7 * MiB)
                data = rng.randbytes(rng.randrange(1, 20000))
                f.seek(off)
                f.write(data)
                want[off:off + len(data)] = data
        self.assertEqual(read_file(src), bytes(want))
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [("drive-scsi0", src)]))
        self.ok(self.vma("verify", arch))
        self.extract_ok(arch, [("drive-scsi0", pad512(bytes(want)))])

    def test_ctime_and_uuid(self):
        src = self.disk("d.raw", mixed_data(4096, 13))
        t0 = int(time.time())
        a1, a2 = os.path.join(self.inp, "1.vma"), os.path.join(self.inp, "2.vma")
        self.ok(self.create(a1, [("drive-scsi0", src)]))
        self.ok(self.create(a2, [("drive-scsi0", src)]))
        t1 = int(time.time())
        i1, i2 = vmagen.parse(read_file(a1)), vmagen.parse(read_file(a2))
        self.assertTrue(t0 - 1 <= i1["ctime"] <= t1 + 1,
                        "ctime %d not the creation time" % i1["ctime"])
        self.assertNotEqual(i1["uuid"], bytes(16))
        self.assertNotEqual(i1["uuid"], i2["uuid"], "uuid not unique")

    def test_config_base_name(self):
        sub = os.path.join(self.inp, "etc", "pve")
        os.makedirs(sub)
        cfg = write_file(os.path.join(sub, "qemu-server.conf"), b"cores: 4\n")
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [("drive-scsi0",
                                    self.disk("d.raw", mixed_data(8192, 1)))],
                            [cfg]))
        info = vmagen.parse(read_file(arch))
        self.assertEqual([c[0] for c in info["configs"]],
                         [b"qemu-server.conf"])
        self.extract_ok(arch, [], [("qemu-server.conf", b"cores: 4\n")])


# ---------------------------------------------------------------------------
# Archive shapes and limits


class Shapes(ToolTest):
    def test_no_disks_configs_only(self):
        cfg = write_file(os.path.join(self.inp, "qemu-server.conf"),
                         b"name: empty\n")
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [], [cfg]))
        self.ok(self.vma("verify", arch))
        out = self.extract_ok(arch, [], [("qemu-server.conf",
                                          b"name: empty\n")])
        self.assertEqual(tree(out), ["qemu-server.conf"])

    def test_254_disks(self):
        disks, datas = [], []
        for i in range(254):
            data = mixed_data(512 * (1 + i % 9) + (i % 3) * 4096, 100 + i)
            datas.append(data)
            disks.append(("d%03d" % i, self.disk("s%03d.raw" % i, data)))
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, disks))
        info = vmagen.parse(read_file(arch))
        self.assertEqual(len(info["devices"]), 254)
        self.assertEqual(sorted(d[0] for d in info["devices"]),
                         list(range(1, 255)))
        self.ok(self.vma("verify", arch))
        self.extract_ok(arch, [("d%03d" % i, datas[i]) for i in range(254)])

    def test_255_disks_refused(self):
        disks = [("d%03d" % i, self.disk("s%03d.raw" % i, b"x" * 512))
                 for i in range(255)]
        arch = os.path.join(self.inp, "a.vma")
        self.refused(self.create(arch, disks))
        self.assertFalse(os.path.exists(arch), "partial archive left")

    def test_256_configs(self):
        cfgs = []
        for i in range(256):
            cfgs.append(write_file(os.path.join(self.inp, "cfg-%03d.conf" % i),
                                   b"config %d\n" % i * (i % 7)))
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [], cfgs))
        self.ok(self.vma("verify", arch))
        out = self.extract_ok(arch, [], [("cfg-%03d.conf" % i,
                                          b"config %d\n" % i * (i % 7))
                                         for i in range(256)])
        self.assertEqual(len(tree(out)), 256)

    def test_257_configs_refused(self):
        cfgs = [write_file(os.path.join(self.inp, "cfg-%03d.conf" % i), b"x")
                for i in range(257)]
        arch = os.path.join(self.inp, "a.vma")
        self.refused(self.create(arch, [], cfgs))
        self.assertFalse(os.path.exists(arch), "partial archive left")

    def test_config_65535_bytes(self):
        data = random_data(65535, 12)
        cfg = write_file(os.path.join(self.inp, "qemu-server.conf"), data)
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [("drive-scsi0",
                                    self.disk("d.raw", mixed_data(4096, 1)))],
                            [cfg]))
        self.ok(self.vma("verify", arch))
        self.extract_ok(arch, [], [("qemu-server.conf", data)])
        r = self.ok(self.vma("config", arch))
        self.assertEqual(r.out, data)

    def test_config_65536_bytes_refused(self):
        cfg = write_file(os.path.join(self.inp, "qemu-server.conf"),
                         bytes(65536))
        arch = os.path.join(self.inp, "a.vma")
        r = self.create(arch, [("drive-scsi0",
                                self.disk("d.raw", mixed_data(4096, 1)))],
                        [cfg])
        self.refused(r)
        self.assertFalse(os.path.exists(arch), "partial archive left")

    def test_empty_config(self):
        cfg = write_file(os.path.join(self.inp, "qemu-server.fw"), b"")
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [], [cfg]))
        self.extract_ok(arch, [], [("qemu-server.fw", b"")])

    def test_vmstate_with_zero_blocks(self):
        rng = random.Random(13)
        vm = bytearray(rng.randbytes(6 * 65536 + 12345))
        vm[4096:3 * 4096] = bytes(8192)             # zero blocks inside
        vm[2 * 65536:3 * 65536] = bytes(65536)      # a whole zero cluster
        vm[5 * 65536 + 4096:5 * 65536 + 8192] = bytes(4096)
        vm = bytes(vm)
        d = mixed_data(540672, 14)
        arch = self.gen("vm.vma", [("drive-scsi0", d)],
                        [("qemu-server.conf", b"vmstate: yes\n")],
                        vmstate=vm, order="shuffle", seed=5)
        self.ok(self.vma("verify", arch))
        out = self.extract_ok(arch, [("drive-scsi0", d)])
        self.assertFileData(os.path.join(out, "vmstate.bin"), vm)

    def test_create_vmstate_stream(self):
        """`vma create -d vmstate=FILE` stores the RAM state (see usage)."""
        rng = random.Random(16)
        vm = bytearray(rng.randbytes(4 * 65536 + 9000))
        vm[8192:5 * 4096] = bytes(3 * 4096)
        vm[65536:2 * 65536] = bytes(65536)
        vm[-5000:] = bytes(5000)                    # ends with zeroes
        vm = bytes(vm)
        d = mixed_data(200000, 17)
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [("drive-scsi0", self.disk("d.raw", d)),
                                   ("vmstate", self.disk("vm.bin", vm))]))
        r = self.ok(self.vma("list", arch))
        self.assertIn("VMSTATE: dev_id=2 memory: %d" % len(vm),
                      r.outtext.splitlines())
        self.ok(self.vma("verify", arch))
        out = self.extract_ok(arch, [("drive-scsi0", pad512(d))])
        # the RAM state is a stream: never padded
        self.assertFileData(os.path.join(out, "vmstate.bin"), vm)
        self.assertFalse(os.path.exists(os.path.join(out,
                                                     "disk-vmstate.raw")))

    def test_vmstate_only(self):
        vm = bytes(65536) + random_data(65536, 15) + bytes(4096) + b"end"
        arch = self.gen("vm.vma", [], [], vmstate=vm)
        self.ok(self.vma("verify", arch))
        out = self.extract_ok(arch, [])
        self.assertFileData(os.path.join(out, "vmstate.bin"), vm)


# ---------------------------------------------------------------------------
# Archives written by another implementation (vmagen.py)


class OtherWriter(ToolTest):
    def three(self):
        return [("drive-scsi0", mixed_data(540672, 21)),
                ("drive-scsi1", mixed_data(4 * MiB + 4608, 22)),
                ("drive-virtio2", mixed_data(1000, 23))]

    def check(self, **kw):
        disks = self.three()
        cfgs = [("qemu-server.conf", b"memory: 512\n")]
        arch = self.gen("g.vma", disks, cfgs, **kw)
        self.ok(self.vma("verify", arch))
        self.extract_ok(arch, disks, cfgs)
        return arch

    def test_sequential(self):
        self.check(order="seq")

    def test_shuffled_interleaved(self):
        arch = self.check(order="shuffle", seed=1)
        # make sure the archive really mixes the devices inside extents
        info = vmagen.parse(read_file(arch))
        self.assertTrue(any(len(set(s[2] for s in e["slots"])) > 1
                            for e in info["extents"]))

    def test_shuffled_other_seed(self):
        self.check(order="shuffle", seed=99)

    def test_round_robin_interleave(self):
        self.check(order="interleave")

    def test_reverse(self):
        self.check(order="reverse")

    def test_copy_before_write_order(self):
        self.check(order="cbw", seed=3)

    def test_59_cluster_extents(self):
        arch = self.check(order="shuffle", seed=4, per_extent=59)
        info = vmagen.parse(read_file(arch))
        self.assertEqual(len(info["extents"][0]["slots"]), 59)

    def test_trailing_empty_extent(self):
        # 58 clusters exactly: one full extent, then an empty one
        d = [("drive-scsi0", mixed_data(58 * 65536, 24))]
        arch = self.gen("g.vma", d, [])
        info = vmagen.parse(read_file(arch))
        self.assertEqual([len(e["slots"]) for e in info["extents"]], [58, 0])
        self.ok(self.vma("verify", arch))
        self.extract_ok(arch, d)

    def test_no_trailing_extent(self):
        d = [("drive-scsi0", mixed_data(58 * 65536, 25))]
        arch = self.gen("g.vma", d, [], trailing_extent=False)
        self.ok(self.vma("verify", arch))
        self.extract_ok(arch, d)

    def clamp(self, brk):
        """Readers clamp writes to the device size: extract either refuses
        or writes exactly the device's bytes, never more."""
        disks = self.three()
        arch = self.gen("g.vma", disks, [], breaks=[brk], order="shuffle",
                        seed=9)
        out = os.path.join(self.box, "out")
        r = self.not_signal(self.vma("extract", arch, out))
        if r.rc != 0:
            self.refused(r)
            self.assertNoDiskFiles(self.box)
            return
        for name, data in disks:
            self.assertFileData(os.path.join(out, "disk-%s.raw" % name), data)

    def test_clamp_garbage_past_end_in_last_block(self):
        self.clamp("tail-garbage")

    def test_clamp_block_past_end(self):
        self.clamp("mask-past-end")

    def test_small_extents(self):
        self.check(order="shuffle", seed=6, per_extent=1)

    def test_vmagen_cli(self):
        """The same through vmagen.py's command line"""
        gen = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "vmagen.py")
        disks = self.three()
        args = [sys.executable, gen, "write",
                os.path.join(self.inp, "cli.vma"), "--order", "shuffle",
                "--seed", "5", "--per-extent", "59"]
        for n, d in disks:
            args += ["--disk", "%s=%s" % (n, self.disk(n, d))]
        cfg = write_file(os.path.join(self.inp, "c"), b"cores: 1\n")
        args += ["--config", "qemu-server.conf=" + cfg]
        self.ok(self.run_cmd(args))
        arch = os.path.join(self.inp, "cli.vma")
        self.ok(self.vma("verify", arch))
        self.extract_ok(arch, disks, [("qemu-server.conf", b"cores: 1\n")])
        bad = os.path.join(self.inp, "bad.vma")
        self.ok(self.run_cmd([sys.executable, gen, "corrupt", arch, bad,
                              "--break", "extent-uuid"]))
        self.refused(self.vma("verify", bad), ["uuid"])

    def test_unrounded_blob_size_and_453(self):
        # a config sized so that blob_buffer_size is 453, as in a real file
        name = b"qemu-server.conf"
        used = 1 + (2 + len(name) + 1) + 2 + (2 + len(b"drive-scsi0") + 1)
        data = b"x" * (453 - used)
        d = [("drive-scsi0", mixed_data(65536, 26))]
        arch = self.gen("g.vma", d, [(name, data)])
        info = vmagen.parse(read_file(arch))
        self.assertEqual(info["blob_size"], 453)
        self.assertEqual(info["header_size"], 12288 + 512)
        self.ok(self.vma("verify", arch))
        self.extract_ok(arch, d, [(name.decode(), data)])

    def test_configs_only_and_empty_archive(self):
        arch = self.gen("c.vma", [], [("qemu-server.conf", b"a\n")])
        self.ok(self.vma("verify", arch))
        self.extract_ok(arch, [], [("qemu-server.conf", b"a\n")])
        empty = self.gen("e.vma", [], [])
        self.ok(self.vma("verify", empty))
        r = self.ok(self.vma("list", empty))
        self.assertNotIn("DEV:", r.outtext)

    def test_tool_archive_matches_reference_layout(self):
        """`vma create` output, as a reference reader sees it."""
        disks = [("drive-scsi0", mixed_data(540672, 31)),
                 ("drive-scsi1", mixed_data(4 * MiB + 4608, 32))]
        paths = [(n, self.disk(n + ".raw", d)) for n, d in disks]
        cfg = write_file(os.path.join(self.inp, "qemu-server.conf"),
                         b"memory: 1024\n")
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, paths, [cfg]))
        raw = read_file(arch)
        info = vmagen.parse(raw)
        self.assertEqual(info["version"], 1)
        self.assertTrue(info["header_md5_ok"], "header MD5 wrong")
        self.assertTrue(info["reserved_ok"], "reserved fields not zero")
        self.assertEqual(info["blob_offset"], 12288)
        self.assertEqual(info["header_size"],
                         12288 + (info["blob_size"] + 511) // 512 * 512)
        blob_used = 1 + sum(2 + len(n) + 1 + 2 + len(d)
                            for n, d in info["configs"]) + \
            sum(2 + len(n) + 1 for _, n, _ in info["devices"])
        self.assertEqual(info["blob_size"], blob_used,
                         "blob_buffer_size must be the bytes in use")
        self.assertEqual(info["configs"], [(b"qemu-server.conf",
                                            b"memory: 1024\n")])
        self.assertEqual([(d[1], d[2]) for d in info["devices"]],
                         [(n.encode(), len(d)) for n, d in disks])
        self.assertTrue(all(1 <= d[0] <= 254 for d in info["devices"]))
        seen = {}
        ext = info["extents"]
        self.assertGreater(len(ext), 0)
        for i, e in enumerate(ext):
            self.assertTrue(e["md5_ok"], "extent %d MD5 wrong" % i)
            self.assertEqual(e["uuid"], info["uuid"])
            self.assertEqual(e["reserved"], 0)
            self.assertEqual(e["block_count"],
                             sum(bin(s[0]).count("1") for s in e["slots"]))
            if i < len(ext) - 1:
                self.assertEqual(len(e["slots"]), 58,
                                 "extent %d not flushed at 58" % i)
            else:
                self.assertLess(len(e["slots"]), 58)
            for mask, res, dev, c in e["slots"]:
                self.assertEqual(res, 0)
                self.assertNotIn((dev, c), seen, "duplicate cluster")
                seen[(dev, c)] = mask
        # every cluster once; zero blocks omitted; nothing past the end
        got = vmagen.extract_devices(raw)
        for (dev_id, name, size), (_, data) in zip(info["devices"], disks):
            self.assertEqual(got[name], data)
            for c in range(vmagen.clusters_of(size)):
                self.assertIn((dev_id, c), seen, "cluster %d missing" % c)
                want = vmagen.cluster_slot(dev_id, c, data, size).mask
                self.assertEqual(seen[(dev_id, c)], want,
                                 "cluster %d of %s: mask %04x, expected "
                                 "%04x" % (c, name, seen[(dev_id, c)], want))
        self.assertEqual(len(raw), ext[-1]["offset"] + 512 +
                         ext[-1]["block_count"] * 4096)


# ---------------------------------------------------------------------------
# Pipes, FIFOs, compression


class Streams(ToolTest):
    def setUp(self):
        super().setUp()
        self.disks = [("drive-scsi0", mixed_data(540672, 41)),
                      ("drive-scsi1", mixed_data(300000, 42))]
        self.cfgs = [("qemu-server.conf", b"memory: 512\n")]
        self.arch = self.gen("a.vma", self.disks, self.cfgs,
                             order="shuffle", seed=7)
        self.out = os.path.join(self.box, "out")

    def check_out(self, padded=False):
        for name, data in self.disks:
            self.assertFileData(os.path.join(self.out, "disk-%s.raw" % name),
                                pad512(data) if padded else data)
        for name, data in self.cfgs:
            self.assertFileData(os.path.join(self.out, name), data)

    def test_extract_from_cat_pipe(self):
        self.ok(self.shell('cat "$1" | "$VMA" extract - "$2"',
                           self.arch, self.out))
        self.check_out()

    def test_verify_from_stdin_pipe(self):
        self.ok(self.vma("verify", "-", input=read_file(self.arch)))

    def test_list_from_pipe(self):
        # no pipefail: list may stop reading after the header (cat: EPIPE)
        r = self.ok(self.run_cmd(["bash", "-c", 'cat "$1" | "$2" list -',
                                  "_", self.arch, VMA]))
        self.assertIn("devname: drive-scsi1", r.outtext)

    def test_config_from_pipe(self):
        r = self.ok(self.vma("config", "-", input=read_file(self.arch)))
        self.assertEqual(r.out, b"memory: 512\n")

    def test_gzip_file(self):
        self.ok(self.shell('gzip -c "$1" >"$1.gz"', self.arch))
        self.ok(self.vma("verify", self.arch + ".gz"))
        self.ok(self.vma("extract", self.arch + ".gz", self.out))
        self.check_out()

    def test_gzip_pipe(self):
        self.ok(self.shell('gzip -c "$1" | "$VMA" extract - "$2"',
                           self.arch, self.out))
        self.check_out()

    def test_zstd_file(self):
        self.ok(self.shell('zstd -q -c "$1" >"$1.zst"', self.arch))
        self.ok(self.vma("verify", self.arch + ".zst"))
        r = self.ok(self.vma("list", self.arch + ".zst"))
        self.assertIn("devname: drive-scsi0", r.outtext)
        self.ok(self.vma("extract", self.arch + ".zst", self.out))
        self.check_out()

    def test_zstd_pipe(self):
        self.ok(self.shell('zstd -q -c "$1" | "$VMA" extract - "$2"',
                           self.arch, self.out))
        self.check_out()

    def test_truncated_zstd_refused(self):
        self.ok(self.shell('zstd -q -c "$1" >"$1.zst"', self.arch))
        z = read_file(self.arch + ".zst")
        write_file(self.arch + ".zst", z[:len(z) // 2])
        self.refused(self.vma("verify", self.arch + ".zst"))
        self.refused(self.vma("extract", self.arch + ".zst", self.out))
        self.assertNoDiskFiles(self.box)

    def test_truncated_gzip_refused(self):
        self.ok(self.shell('gzip -c "$1" >"$1.gz"', self.arch))
        z = read_file(self.arch + ".gz")
        write_file(self.arch + ".gz", z[:len(z) // 2])
        self.refused(self.vma("verify", self.arch + ".gz"))
        self.refused(self.vma("extract", self.arch + ".gz", self.out))
        self.assertNoDiskFiles(self.box)

    def test_gzip_two_members(self):
        raw = read_file(self.arch)
        half = len(raw) // 2 + 1234
        write_file(self.arch + ".1", raw[:half])
        write_file(self.arch + ".2", raw[half:])
        self.ok(self.shell('gzip -c "$1.1" >"$1.gz"; gzip -c "$1.2" >>"$1.gz"',
                           self.arch))
        self.ok(self.vma("verify", self.arch + ".gz"))
        self.ok(self.shell('cat "$1.gz" | "$VMA" extract - "$2"', self.arch,
                           self.out))
        self.check_out()

    def test_zstd_two_frames(self):
        raw = read_file(self.arch)
        half = len(raw) // 2 + 1234
        write_file(self.arch + ".1", raw[:half])
        write_file(self.arch + ".2", raw[half:])
        self.ok(self.shell('zstd -q -c "$1.1" >"$1.zst"; '
                           'zstd -q -c "$1.2" >>"$1.zst"', self.arch))
        self.ok(self.vma("verify", self.arch + ".zst"))
        self.ok(self.shell('cat "$1.zst" | "$VMA" extract - "$2"', self.arch,
                           self.out))
        self.check_out()

    def test_create_stdout_into_verify(self):
        paths = [(n, self.disk(n + ".raw", d)) for n, d in self.disks]
        args = " ".join('-d "format=raw:%s=%s"' % (n, p) for n, p in paths)
        self.ok(self.shell('"$VMA" create - %s | "$VMA" verify -' % args))

    def test_create_stdout_into_extract(self):
        paths = [(n, self.disk(n + ".raw", d)) for n, d in self.disks]
        cfg = write_file(os.path.join(self.inp, "qemu-server.conf"),
                         b"memory: 512\n")
        args = " ".join('-d "format=raw:%s=%s"' % (n, p) for n, p in paths)
        self.ok(self.shell('"$VMA" create - -c "$1" %s | '
                           '"$VMA" extract - "$2"' % args, cfg, self.out))
        self.check_out(padded=True)

    def fifo_feed(self, data):
        fifo = os.path.join(self.inp, "fifo")
        os.mkfifo(fifo)

        def feed():
            try:
                with open(fifo, "wb") as f:
                    f.write(data)
            except OSError:
                pass
        t = threading.Thread(target=feed, daemon=True)
        t.start()
        self.addCleanup(self.unblock_fifo, fifo, t)
        return fifo, t

    @staticmethod
    def unblock_fifo(fifo, t):
        t.join(5)
        if t.is_alive():        # the tool never opened it: let open() return
            try:
                os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            except OSError:
                pass
            t.join(5)

    def trickle(self, data, args):
        """Run vma with @data fed through a pipe in small random pieces."""
        fout = tempfile.TemporaryFile(dir=self.tmp)
        ferr = tempfile.TemporaryFile(dir=self.tmp)
        p = subprocess.Popen([VMA] + args, stdin=subprocess.PIPE,
                             stdout=fout, stderr=ferr, cwd=self.tmp)

        def feed():
            rng = random.Random(len(data))
            pos = 0
            try:
                while pos < len(data):
                    n = rng.choice([1, 7, 511, 512, 513, 4095, 4096, 65537])
                    p.stdin.write(data[pos:pos + n])
                    p.stdin.flush()
                    pos += n
                    if rng.random() < 0.02:
                        time.sleep(0.001)
                p.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        t = threading.Thread(target=feed, daemon=True)
        t.start()
        try:
            p.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.fail("hang: %r" % args)
        t.join(5)
        with fout, ferr:
            fout.seek(0)
            ferr.seek(0)
            return Result(args, p.returncode, fout.read(), ferr.read())

    def test_trickling_pipe_plain(self):
        self.ok(self.trickle(read_file(self.arch), ["extract", "-", self.out]))
        self.check_out()

    def test_trickling_pipe_gzip(self):
        self.ok(self.shell('gzip -c "$1" >"$1.gz"', self.arch))
        self.ok(self.trickle(read_file(self.arch + ".gz"),
                             ["extract", "-", self.out]))
        self.check_out()

    def test_trickling_pipe_zstd(self):
        self.ok(self.shell('zstd -q -c "$1" >"$1.zst"', self.arch))
        self.ok(self.trickle(read_file(self.arch + ".zst"),
                             ["extract", "-", self.out]))
        self.check_out()

    def test_create_into_closed_pipe(self):
        """The reader goes away early: create stops, fails, does not hang"""
        src = self.disk("big.raw", random_data(8 * MiB, 43))
        r = self.shell('"$VMA" create - -d "format=raw:d=$1" | head -c 1000 '
                       '>/dev/null; echo "${PIPESTATUS[0]}"', src)
        self.assertNotEqual(r.out.strip(), b"0", "create claimed success "
                            "with nobody reading\n%s" % r)

    def test_extract_from_fifo(self):
        fifo, t = self.fifo_feed(read_file(self.arch))
        self.ok(self.vma("extract", fifo, self.out))
        t.join(5)
        self.check_out()

    def test_verify_from_fifo(self):
        fifo, t = self.fifo_feed(read_file(self.arch))
        self.ok(self.vma("verify", fifo))
        t.join(5)

    def test_truncated_from_pipe_refused(self):
        raw = read_file(self.arch)
        data = raw[:len(raw) - 70000]
        self.refused(self.vma("extract", "-", self.out, input=data),
                     ["truncat", "missing"])
        self.assertNoDiskFiles(self.box)


# ---------------------------------------------------------------------------
# list / config


def _json_strings(x):
    if isinstance(x, str):
        return [x]
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, list):
        return [s for v in x for s in _json_strings(v)]
    return []


class ListConfig(ToolTest):
    def setUp(self):
        super().setUp()
        self.vm = random_data(3 * 65536 + 100, 51)
        self.conf = b"memory: 2048\ncores: 2\n"
        self.fw = b"[OPTIONS]\nenable: 1\n"
        self.arch = self.gen(
            "a.vma",
            [("drive-scsi0", mixed_data(540672, 52)),
             ("drive-virtio1", mixed_data(4 * MiB + 4608, 53))],
            [("qemu-server.conf", self.conf), ("qemu-server.fw", self.fw)],
            vmstate=self.vm)

    def test_list_human(self):
        r = self.ok(self.vma("list", self.arch))
        lines = [ln.rstrip() for ln in r.outtext.splitlines()]
        for want in ["CFG: size: %d name: qemu-server.conf" % len(self.conf),
                     "CFG: size: %d name: qemu-server.fw" % len(self.fw),
                     "DEV: dev_id=1 size: 540672 devname: drive-scsi0",
                     "DEV: dev_id=2 size: 4198912 devname: drive-virtio1",
                     "VMSTATE: dev_id=3 memory: %d" % len(self.vm)]:
            self.assertIn(want, lines, "\n%s" % r)
        ct = [ln for ln in lines if ln.startswith("CTIME: ")]
        self.assertEqual(len(ct), 1, "\n%s" % r)
        self.assertTrue("2015" in ct[0] or str(CTIME) in ct[0], ct[0])
        self.assertFalse(any(ln.startswith("DEV:") and "vmstate" in ln
                             for ln in lines), "vmstate listed as a disk")

    def test_list_json(self):
        r = self.ok(self.vma("list", "--output=json", self.arch))
        try:
            doc = json.loads(r.out)
        except ValueError as e:
            self.fail("not JSON: %s\n%s" % (e, r))
        dicts = []

        def walk(x):
            if isinstance(x, dict):
                dicts.append(x)
                for v in x.values():
                    walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)
        walk(doc)
        for name, size in [("drive-scsi0", 540672),
                           ("drive-virtio1", 4198912)]:
            self.assertTrue(any(name in d.values() and size in d.values()
                                for d in dicts),
                            "device %s (%d bytes) not in the JSON\n%s" %
                            (name, size, r))
        self.assertIn("qemu-server.conf", r.outtext)

    def test_list_json_odd_names(self):
        """Names are any bytes in the format: JSON must stay valid."""
        odd = 'q"uo\\te\ttab\x01ctl\x7f'
        arch = self.gen("odd.vma", [(odd, b"\1" * 4096)],
                        [(odd + ".conf", b"x")])
        r = self.ok(self.vma("list", "--output=json", arch))
        try:
            doc = json.loads(r.out)
        except ValueError as e:
            self.fail("not JSON: %s\n%s" % (e, r))
        self.assertIn(odd, _json_strings(doc), "\n%s" % r)
        self.assertIn(odd + ".conf", _json_strings(doc), "\n%s" % r)

    def test_list_tool_archive(self):
        cfg = write_file(os.path.join(self.inp, "qemu-server.conf"), b"x\n")
        arch = os.path.join(self.inp, "t.vma")
        self.ok(self.create(arch, [("drive-sata0",
                                    self.disk("d.raw", b"\1" * 540672))],
                            [cfg]))
        r = self.ok(self.vma("list", arch))
        lines = [ln.rstrip() for ln in r.outtext.splitlines()]
        self.assertIn("CFG: size: 2 name: qemu-server.conf", lines)
        self.assertIn("DEV: dev_id=1 size: 540672 devname: drive-sata0",
                      lines)
        self.assertTrue(any(ln.startswith("CTIME: ") for ln in lines))

    def test_config_default(self):
        r = self.ok(self.vma("config", self.arch))
        self.assertEqual(r.out, self.conf)

    def test_config_named(self):
        r = self.ok(self.vma("config", self.arch, "-c", "qemu-server.fw"))
        self.assertEqual(r.out, self.fw)

    def test_config_missing(self):
        r = self.refused(self.vma("config", self.arch, "-c", "nope.conf"))
        self.assertEqual(r.rc, 255)
        self.assertEqual(r.out, b"")

    def test_config_default_missing(self):
        arch = self.gen("b.vma", [("d", b"x" * 4096)],
                        [("qemu-server.fw", b"x")])
        self.refused(self.vma("config", arch))

    def test_list_bad_archive(self):
        bad = self.gen("bad.vma", [("d", b"x" * 4096)], [],
                       breaks=["header-md5"])
        self.refused(self.vma("list", bad), ["md5", "checksum"])
        self.refused(self.vma("config", bad), ["md5", "checksum"])

    def test_list_not_a_file(self):
        self.refused(self.vma("list", os.path.join(self.inp, "nope.vma")))


# ---------------------------------------------------------------------------
# create / extract refusals


class Refusals(ToolTest):
    def src(self):
        return self.disk("d.raw", mixed_data(200000, 61))

    def test_create_refuses_existing_archive(self):
        arch = write_file(os.path.join(self.inp, "a.vma"), b"precious data")
        r = self.create(arch, [("drive-scsi0", self.src())])
        self.refused(r)
        self.assertEqual(read_file(arch), b"precious data")

    def test_create_missing_source(self):
        arch = os.path.join(self.inp, "a.vma")
        r = self.create(arch, [("drive-scsi0", self.src()),
                               ("drive-scsi1",
                                os.path.join(self.inp, "nope.raw"))])
        self.refused(r)
        self.assertFalse(os.path.exists(arch), "partial archive left")
        self.assertEqual(sorted(os.listdir(self.inp)), ["d.raw"])

    def test_create_missing_config(self):
        arch = os.path.join(self.inp, "a.vma")
        r = self.create(arch, [("drive-scsi0", self.src())],
                        [os.path.join(self.inp, "nope.conf")])
        self.refused(r)
        self.assertFalse(os.path.exists(arch), "partial archive left")

    def test_create_duplicate_devname(self):
        arch = os.path.join(self.inp, "a.vma")
        s = self.src()
        self.refused(self.create(arch, [("drive-scsi0", s),
                                        ("drive-scsi0", s)]))
        self.assertFalse(os.path.exists(arch), "partial archive left")

    def test_create_empty_disk_refused(self):
        arch = os.path.join(self.inp, "a.vma")
        self.refused(self.create(arch, [("drive-scsi0",
                                         self.disk("e.raw", b""))]))
        self.assertFalse(os.path.exists(arch), "partial archive left")

    def test_create_duplicate_vmstate_refused(self):
        arch = os.path.join(self.inp, "a.vma")
        s = self.src()
        self.refused(self.create(arch, [("vmstate", s), ("vmstate", s)]))
        self.assertFalse(os.path.exists(arch), "partial archive left")

    def test_create_duplicate_config_names(self):
        a = os.path.join(self.inp, "a")
        b = os.path.join(self.inp, "b")
        os.mkdir(a)
        os.mkdir(b)
        c1 = write_file(os.path.join(a, "qemu-server.conf"), b"1")
        c2 = write_file(os.path.join(b, "qemu-server.conf"), b"2")
        arch = os.path.join(self.inp, "a.vma")
        self.refused(self.create(arch, [("drive-scsi0", self.src())],
                                 [c1, c2]))
        self.assertFalse(os.path.exists(arch), "partial archive left")

    def test_create_unsafe_config_file_name(self):
        cfg = write_file(os.path.join(self.inp, "\x01x"), b"1")
        arch = os.path.join(self.inp, "a.vma")
        self.refused(self.create(arch, [("drive-scsi0", self.src())], [cfg]))
        self.assertFalse(os.path.exists(arch), "partial archive left")

    def test_usage_errors(self):
        for args in [[], ["bogus"], ["list"], ["extract", "x.vma"],
                     ["verify", "--no-such-option", "x.vma"]]:
            with self.subTest(args=args):
                r = self.not_signal(self.vma(*args))
                self.assertNotEqual(r.rc, 0, "\n%s" % r)

    def test_extract_refuses_existing_dir(self):
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [("drive-scsi0", self.src())]))
        out = os.path.join(self.box, "out")
        os.mkdir(out)
        write_file(os.path.join(out, "keep"), b"mine")
        self.refused(self.vma("extract", arch, out))
        self.assertEqual(tree(out), ["keep"])
        self.assertEqual(read_file(os.path.join(out, "keep")), b"mine")

    def test_extract_selected_devices(self):
        disks = [("a", mixed_data(70000, 62)), ("b", mixed_data(5000, 63)),
                 ("c", mixed_data(140000, 64))]
        arch = self.gen("a.vma", disks, [("qemu-server.conf", b"x\n")],
                        order="shuffle", seed=2)
        out = self.extract_ok(arch, [disks[0], disks[2]], [],
                              extra=["-d", "a,c"])
        self.assertFalse(os.path.exists(os.path.join(out, "disk-b.raw")))
        self.assertEqual([p for p in tree(out) if "disk-" in p or
                          "tmp" in p], ["disk-a.raw", "disk-c.raw"])

    def test_extract_selected_devices_repeated_option(self):
        disks = [("a", mixed_data(70000, 62)), ("b", mixed_data(5000, 63)),
                 ("c", mixed_data(140000, 64))]
        arch = self.gen("a.vma", disks, [], order="interleave")
        out = self.extract_ok(arch, [disks[1], disks[2]], [],
                              extra=["-d", "b", "-d", "c"])
        self.assertFalse(os.path.exists(os.path.join(out, "disk-a.raw")))

    def test_extract_unknown_device(self):
        arch = self.gen("a.vma", [("a", b"x" * 5000)], [])
        out = os.path.join(self.box, "out")
        self.refused(self.vma("extract", arch, "-d", "zzz", out))
        self.assertNoDiskFiles(self.box)

    def test_extract_missing_archive(self):
        out = os.path.join(self.box, "out")
        self.refused(self.vma("extract", os.path.join(self.inp, "no.vma"),
                              out))

    def test_verify_garbage(self):
        g = write_file(os.path.join(self.inp, "g"), random_data(100000, 65))
        self.refused(self.vma("verify", g), ["magic", "not a vma",
                                             "format"])


# ---------------------------------------------------------------------------
# Bad input: every rule broken on its own


TRUNC = ["truncat"]
BAD_CASES = [
    # (break, keywords)
    ("bad-magic", ["magic"]),
    ("version-2", ["version"]),
    ("header-md5", ["md5", "checksum"]),
    ("header-size-small", ["header_size", "header size"]),
    ("header-size-unaligned", ["header_size", "header size"]),
    ("header-size-huge", ["header_size", "header size"]),
    ("blob-offset-low", ["blob_buffer_offset", "blob buffer offset",
                         "blob offset", "blob_offset"]),
    ("blob-offset-high", ["blob_buffer_offset", "blob buffer offset",
                          "blob offset", "blob_offset"]),
    ("blob-size-high", ["blob_buffer_size", "blob buffer size", "blob size",
                        "blob_size"]),
    ("blob-ptr-misaligned", ["blob", "pointer"]),
    ("config-ptr-misaligned", ["blob", "pointer"]),
    ("name-no-nul", ["nul", "terminat"]),
    ("config-name-no-nul", ["nul", "terminat"]),
    ("config-no-data", ["config"]),
    ("header-reserved", ["reserved"]),
    ("header-reserved-4092", ["reserved"]),
    ("devinfo-reserved", ["reserved"]),
    ("dev-id-0", ["dev_id 0", "dev_id=0", "device 0", "id 0"]),
    ("dup-devname", ["duplicate"]),
    ("dup-cfgname", ["duplicate"]),
    ("extent-magic", ["magic"]),
    ("extent-md5", ["md5", "checksum"]),
    ("extent-uuid", ["uuid"]),
    ("extent-reserved", ["reserved"]),
    ("blockinfo-reserved", ["reserved"]),
    ("unused-slot-nonzero", ["unused", "slot"]),
    ("block-count-high", ["block_count", "block count"]),
    ("block-count-low", ["block_count", "block count"]),
    ("unknown-dev-id", ["unknown", "dev_id 200", "device 200"]),
    ("cluster-past-end", ["past", "beyond"]),
    ("duplicate-cluster", ["duplicate"]),
    ("missing-cluster", ["missing"]),
    ("vmstate-order", ["order"]),
    ("trunc-empty", ["truncat", "empty"]),
    ("trunc-header-magic", TRUNC),
    ("trunc-header-fixed", TRUNC),
    ("trunc-header-blobs", TRUNC),
    ("trunc-extent-header", TRUNC),
    ("trunc-extent-data", TRUNC),
    ("trunc-between-extents", ["missing", "truncat"]),
]


class BadInput(ToolTest):
    DISKS = [("drive-scsi0", mixed_data(540672, 71)),
             ("drive-scsi1", mixed_data(4 * MiB + 4608, 72))]
    VMSTATE = random_data(3 * 65536 + 10, 73)

    def bad_archive(self, brk):
        vm = self.VMSTATE if brk == "vmstate-order" else None
        return self.gen("bad.vma", self.DISKS,
                        [("qemu-server.conf", b"memory: 512\n")],
                        vmstate=vm, breaks=[brk], order="shuffle", seed=8)

    def check_bad(self, arch, keywords):
        self.refused(self.vma("verify", arch, timeout=BAD_TIMEOUT), keywords)
        out = os.path.join(self.box, "out")
        before = os.listdir(self.box)
        self.refused(self.vma("extract", arch, out, timeout=BAD_TIMEOUT),
                     keywords)
        self.assertNoDiskFiles(self.box)
        self.assertNothingOutside(out, before)

    def test_trailing_partial_extent_header(self):
        """100 bytes of zeroes after a complete archive"""
        arch = self.gen("ok.vma", self.DISKS, [])
        with open(arch, "ab") as f:
            f.write(bytes(100))
        self.check_bad(arch, ["truncat"])

    def test_trailing_garbage_extent(self):
        """512 bytes of zeroes after a complete archive"""
        arch = self.gen("ok.vma", self.DISKS, [])
        with open(arch, "ab") as f:
            f.write(bytes(512))
        self.check_bad(arch, ["magic"])

    def test_huge_device_missing_clusters(self):
        """A 2^48-byte device (the maximum) with no clusters: refused as
        incomplete, quickly, without creating a 256 TiB file."""
        arch = self.bad_archive("huge-device")
        self.refused(self.vma("verify", arch), ["missing", "truncat"])
        out = os.path.join(self.box, "out")
        # the file system may refuse a 256 TiB file before the end is seen
        self.refused(self.vma("extract", arch, out),
                     ["missing", "truncat", "too large", "size"])
        self.assertNoDiskFiles(self.box)
        for p in tree(self.box):
            full = os.path.join(self.box, p)
            if os.path.isfile(full):
                self.assertLess(os.path.getsize(full), 64 * MiB,
                                "left a huge file %s" % full)

    def test_too_large_device(self):
        """2^48 + 1 bytes needs more than 2^32 clusters"""
        self.check_bad(self.bad_archive("too-large-device"),
                       ["large", "size", "big"])

    def test_errors_name_the_offset(self):
        """README: errors are one line naming the archive offset"""
        for brk in ("header-md5", "extent-md5", "trunc-extent-data",
                    "duplicate-cluster", "missing-cluster"):
            with self.subTest(brk=brk):
                r = self.refused(self.vma("verify", self.bad_archive(brk),
                                          timeout=BAD_TIMEOUT))
                self.assertRegex(r.errtext, r"(?i)offset \d+")

    def test_sanity_unbroken_base(self):
        """The base archive of these tests is fine when not broken."""
        arch = self.gen("ok.vma", self.DISKS,
                        [("qemu-server.conf", b"memory: 512\n")],
                        vmstate=self.VMSTATE, order="shuffle", seed=8)
        self.ok(self.vma("verify", arch))
        self.extract_ok(arch, self.DISKS)

    def test_truncate_tool_archive_between_extents(self):
        """An archive of `vma create` cut exactly at an extent boundary."""
        paths = [(n, self.disk(n + ".raw", d)) for n, d in self.DISKS]
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, paths))
        raw = read_file(arch)
        ext = vmagen.parse(raw)["extents"]
        self.assertGreaterEqual(len([e for e in ext if e["slots"]]), 2)
        cut = write_file(os.path.join(self.inp, "cut.vma"),
                         raw[:ext[1]["offset"]])
        self.check_bad(cut, ["missing", "truncat"])
        # and cut before the last extent holding clusters
        last = max(i for i, e in enumerate(ext) if e["slots"])
        cut2 = write_file(os.path.join(self.inp, "cut2.vma"),
                          raw[:ext[last]["offset"]])
        self.refused(self.vma("verify", cut2), ["missing", "truncat"])

    def test_corrupted_tool_archive(self):
        """vmagen's corrupter applied to an archive of `vma create`."""
        paths = [(n, self.disk(n + ".raw", d)) for n, d in self.DISKS]
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, paths))
        raw = read_file(arch)
        same = write_file(os.path.join(self.inp, "same.vma"),
                          vmagen.corrupt(raw, []))
        self.ok(self.vma("verify", same))
        bad = write_file(os.path.join(self.inp, "bad.vma"),
                         vmagen.corrupt(raw, "duplicate-cluster"))
        self.check_bad(bad, ["duplicate"])


def _bad_test(brk, keywords):
    def test(self):
        self.check_bad(self.bad_archive(brk), keywords)
    test.__doc__ = "%s: %s" % (brk, vmagen.BREAKS[brk])
    return test


for _brk, _kw in BAD_CASES:
    setattr(BadInput, "test_bad_" + _brk.replace("-", "_"),
            _bad_test(_brk, _kw))


# ---------------------------------------------------------------------------
# Unsafe names


UNSAFE = [("dotdot_evil", b"../evil"), ("slash", b"a/b"), ("dot", b"."),
          ("dotdot", b".."), ("empty", b""), ("ctrl", b"\x01x"),
          ("abs_evil", b"/tmp/evil-vma-test"), ("newline", b"evil\nx")]


class UnsafeNames(ToolTest):
    def check_extract(self, arch, what):
        for stale in ("/tmp/evil-vma-test", "/tmp/evil-vma-test.raw"):
            if os.path.isfile(stale):       # left by an earlier run
                os.unlink(stale)
        out = os.path.join(self.box, "out")
        before = os.listdir(self.box)
        r = self.not_signal(self.vma("extract", arch, out))
        self.assertNothingOutside(out, before)
        self.assertFalse(os.path.exists("/tmp/evil-vma-test") or
                         os.path.exists("/tmp/evil-vma-test.raw"),
                         "wrote to an absolute path from the archive")
        if r.rc != 0:
            self.refused(r, ["name"])
            self.assertNoDiskFiles(self.box)
            return
        # accepted: must say so and store under safe names only
        self.assertTrue(r.errtext.strip() or r.outtext.strip(),
                        "unsafe %s name accepted silently\n%s" % (what, r))
        for p in tree(out):
            self.assertNotIn(os.sep, p, "sub-directory created: %r" % p)
            self.assertTrue(p not in (".", "..") and
                            not any(ord(ch) < 32 for ch in p),
                            "unsafe file name %r" % p)
        self.not_signal(self.vma("verify", arch))

    def test_create_refuses_unsafe_devnames(self):
        src = self.disk("d.raw", mixed_data(8192, 81))
        for i, (label, name) in enumerate(UNSAFE):
            with self.subTest(name=name):
                arch = os.path.join(self.inp, "a-%d.vma" % i)
                r = self.vma("create", arch, "-d",
                             "format=raw:%s=%s" % (name.decode(), src))
                self.refused(r)
                self.assertFalse(os.path.exists(arch),
                                 "partial archive left")
                self.assertEqual([p for p in tree(self.tmp)
                                  if "evil" in p], [])


def _unsafe_test(kind, name):
    def test(self):
        if kind == "dev":
            arch = self.gen("u.vma", [("drive-scsi0", mixed_data(70000, 82)),
                                      ("ok", b"\2" * 4096)],
                            [("qemu-server.conf", b"x\n")],
                            breaks=["devname=" + name.decode("latin-1")
                                    .encode("unicode_escape")
                                    .decode("latin-1")])
        else:
            arch = self.gen("u.vma", [("drive-scsi0", mixed_data(70000, 82))],
                            [("qemu-server.conf", b"x\n")],
                            breaks=["cfgname=" + name.decode("latin-1")
                                    .encode("unicode_escape")
                                    .decode("latin-1")])
        info = vmagen.parse(read_file(arch))
        names = [d[1] for d in info["devices"]] if kind == "dev" else \
            [c[0] for c in info["configs"]]
        self.assertIn(name, names)      # the generator did its job
        self.check_extract(arch, kind)
    return test


for _kind in ("dev", "cfg"):
    for _label, _name in UNSAFE:
        setattr(UnsafeNames, "test_extract_%s_%s" % (_kind, _label),
                _unsafe_test(_kind, _name))


# ---------------------------------------------------------------------------
# Interrupted runs


class Interrupted(ToolTest):
    def wait_then_signal(self, p, ready, sig=signal.SIGINT):
        deadline = time.time() + TIMEOUT
        while time.time() < deadline and p.poll() is None and not ready():
            time.sleep(0.005)
        if p.poll() is not None:
            return False
        p.send_signal(sig)
        try:
            p.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.fail("hang after SIGINT")
        return True

    def test_extract_interrupted(self):
        """SIGINT while extracting from a stalled pipe: fails, leaves no
        complete-looking disk file"""
        data = vmagen.serialize(vmagen.build(
            [("drive-scsi0", random_data(4 * MiB, 95))], []))
        out = os.path.join(self.box, "out")
        p = subprocess.Popen([VMA, "extract", "-", out], cwd=self.tmp,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        p.stdin.write(data[:len(data) // 2])   # then stall, pipe open
        p.stdin.flush()
        time.sleep(0.3)
        try:
            self.assertTrue(self.wait_then_signal(p, lambda: True),
                            "extract finished on half an archive")
        finally:
            p.stdin.close()
        err = p.stderr.read().decode("utf-8", "replace")
        p.stdout.close()
        p.stderr.close()
        self.assertNotEqual(p.returncode, 0)
        self.assertGreater(p.returncode, 0, "killed by the signal instead "
                           "of cleaning up (rc %d): %s" % (p.returncode, err))
        self.assertNoDiskFiles(self.box)

    def test_create_interrupted(self):
        """SIGINT during create: no partial archive left"""
        src = os.path.join(self.inp, "big.raw")
        with open(src, "wb") as f:
            chunk = bytes(range(1, 256)) * 4112     # no zero block
            for _ in range(256 * MiB // len(chunk)):
                f.write(chunk)
        arch = os.path.join(self.inp, "a.vma")
        p = subprocess.Popen([VMA, "create", arch, "-d",
                              "format=raw:drive-scsi0=" + src],
                             cwd=self.tmp, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)

        def started():
            try:
                return os.path.getsize(arch) > 1 * MiB
            except OSError:
                return False
        sent = self.wait_then_signal(p, started)
        err = p.stderr.read().decode("utf-8", "replace")
        p.stdout.close()
        p.stderr.close()
        if not sent:
            self.skipTest("create finished before it could be interrupted")
        self.assertGreater(p.returncode, 0, "killed by the signal instead "
                           "of cleaning up (rc %d): %s" % (p.returncode, err))
        self.assertFalse(os.path.exists(arch), "partial archive left")


# ---------------------------------------------------------------------------
# Progress output


class Progress(ToolTest):
    def test_verbose_512_byte_disk(self):
        src = self.disk("d.raw", mixed_data(512, 91))
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [("drive-scsi0", src)], extra=["-v"]))
        self.ok(self.vma("verify", "-v", arch))
        out = self.extract_ok(arch, [("drive-scsi0", read_file(src))],
                              extra=["-v"])
        self.assertTrue(os.path.isdir(out))

    def test_verbose_configs_only(self):
        cfg = write_file(os.path.join(self.inp, "qemu-server.conf"), b"x\n")
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [], [cfg], extra=["-v"]))
        self.ok(self.vma("verify", "-v", arch))
        self.extract_ok(arch, [], [("qemu-server.conf", b"x\n")],
                        extra=["-v"])

    def test_verbose_empty_archive(self):
        arch = self.gen("e.vma", [], [])
        self.ok(self.vma("verify", "-v", arch))
        out = self.extract_ok(arch, [], extra=["-v"])
        self.assertEqual(tree(out), [])

    def test_verbose_pipe(self):
        src = self.disk("d.raw", mixed_data(300000, 92))
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [("drive-scsi0", src)]))
        out = os.path.join(self.box, "out")
        self.ok(self.vma("extract", "-v", "-", out, input=read_file(arch)))
        self.assertFileData(os.path.join(out, "disk-drive-scsi0.raw"),
                            pad512(read_file(src)))


# ---------------------------------------------------------------------------
# A drop-in for the reference tool (Proxmox VE's `vma`): what qemu-server
# and scripts written against it rely on


_QEMU_BUILD = None


def qemu_build():
    """True when VMA is the QEMU build (it names QEMU's formats)."""
    global _QEMU_BUILD
    if _QEMU_BUILD is None:
        p = subprocess.run([VMA, "help"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
        _QEMU_BUILD = b"any other format QEMU opens" in p.stdout
    return _QEMU_BUILD


# qemu-server's restore_vma_archive() parses `vma extract` with these
QS_DEV_RE = re.compile(r"^DEV:\sdev_id=(\d+)\ssize:\s(\d+)\sdevname:\s(\S+)$")
QS_CTIME_RE = re.compile(r"^CTIME: ")
PROGRESS_RE = re.compile(r"^progress (\d+)% \(read (\d+) bytes, "
                         r"duration (\d+) sec\)$")
TOTAL_RE = re.compile(r"^total bytes read (\d+), sparse bytes (\d+) "
                      r"\((\S+)%\)$")
REDUCTION_RE = re.compile(r"^space reduction due to 4K zero blocks (\S+)%$")
CREATE_PROGRESS_RE = re.compile(r"^progress (\d+)% (\d+)/(\d+) (\d+)$")
USAGE_START = "usage: vma command [command options]"


def expected_totals(archive_bytes):
    """(clusters, sparse bytes, zero block bytes of clusters with data) of
    an archive, from vmagen's parser: what the totals lines report."""
    info = vmagen.parse(archive_bytes)
    clusters = sparse = partial = 0
    for e in info["extents"]:
        for mask, _, _, _ in e["slots"]:
            clusters += 1
            if mask == 0:
                sparse += 65536
            else:
                partial += (16 - bin(mask).count("1")) * 4096
    return clusters, sparse, partial


def check_read_report(test, lines, archive_bytes):
    """The reference's progress and total lines of extract/verify -v."""
    clusters, sparse, partial = expected_totals(archive_bytes)
    prog = [PROGRESS_RE.match(ln) for ln in lines if ln.startswith("progress")]
    test.assertTrue(all(prog), "bad progress line in %r" % lines)
    pcts = [int(m.group(1)) for m in prog]
    test.assertEqual(pcts, sorted(set(pcts)), "percentages must only grow")
    test.assertTrue(all(0 <= p <= 100 for p in pcts), pcts)
    for m in prog:
        test.assertEqual(int(m.group(2)) % 65536, 0)
    total = [TOTAL_RE.match(ln) for ln in lines if ln.startswith("total")]
    if clusters == 0:
        test.assertEqual(pcts, [])
        test.assertIn("vma archive contains no image data", lines)
        test.assertEqual(total, [])
        return
    test.assertEqual(pcts[-1], 100, lines)
    test.assertEqual(int(prog[-1].group(2)), clusters * 65536)
    test.assertEqual(len(total), 1, lines)
    t = total[0]
    test.assertTrue(t, lines)
    test.assertEqual(int(t.group(1)), clusters * 65536)
    test.assertEqual(int(t.group(2)), sparse)
    test.assertEqual(t.group(3), "%.3g" % (100.0 * sparse /
                                            (clusters * 65536)))
    red = [REDUCTION_RE.match(ln) for ln in lines
           if ln.startswith("space reduction")]
    if clusters * 65536 == sparse:
        test.assertEqual(red, [])
    else:
        test.assertEqual(len(red), 1, lines)
        test.assertEqual(red[0].group(1), "%.3g" % (
            100.0 * partial / (clusters * 65536 - sparse)))


class QemuServerRestore(ToolTest):
    """qemu-server's restore, emulated step by step:
    `zstd -q -d -c ARCHIVE | vma extract -v -r FIFO - TMPDIR`, the FIFO
    opened for writing right after the start, stdout parsed line by line
    with qemu-server's regular expressions; on CTIME: the configs are read
    from TMPDIR, raw targets allocated (sizes rounded up to 1 MiB, as
    storage does), one map line per disk written, then 'done'."""

    CONF = b"boot: order=scsi0\nmemory: 512\nscsi0: local:100/vm-100-disk-0.raw\n"
    FW = b"[OPTIONS]\nenable: 1\n"

    def make_archive(self):
        disks = [("drive-scsi0", mixed_data(3 * MiB + 4096, 201)),
                 ("drive-efidisk0", mixed_data(540672, 202)),
                 ("drive-virtio1", mixed_data(131072 + 1000, 203))]
        paths = [(n, self.disk(n + ".raw", d)) for n, d in disks]
        cfgs = [write_file(os.path.join(self.inp, "qemu-server.conf"),
                           self.CONF),
                write_file(os.path.join(self.inp, "qemu-server.fw"), self.FW)]
        arch = os.path.join(self.inp, "vzdump-qemu-100.vma")
        self.ok(self.create(arch, paths, cfgs))
        self.ok(self.shell('zstd -q -c "$1" >"$1.zst"', arch))
        return arch + ".zst", dict(disks)

    def open_fifo(self, fifo, proc):
        """Open the map FIFO for writing once vma opens it for reading (or
        give up when vma ended first)."""
        end = time.time() + TIMEOUT
        while proc.poll() is None and time.time() < end:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                time.sleep(0.01)
                continue
            os.set_blocking(fd, True)
            return os.fdopen(fd, "w")
        return None

    def restore(self, archive, map_line):
        """Run the restore; map_line(i, devname, target) gives disk i's line.
        Returns (exit status, stdout lines, stderr, {devname: target},
        what was read on CTIME)."""
        tmpdir = os.path.join(self.box, "vzdumptmp4242")
        fifo = tmpdir + ".fifo"
        os.mkfifo(fifo, 0o600)
        proc = subprocess.Popen(
            ["bash", "-o", "pipefail", "-c",
             'zstd -q -d -c "$1" | "$VMA" extract -v -r "$2" - "$3"', "_",
             archive, fifo, tmpdir], cwd=self.tmp, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=dict(os.environ, VMA=VMA),
            start_new_session=True)

        def kill():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        watchdog = threading.Timer(TIMEOUT, kill)
        watchdog.start()
        fifofh = None
        errs = []
        err_reader = threading.Thread(
            target=lambda: errs.append(proc.stderr.read()))
        err_reader.start()
        try:
            fifofh = self.open_fifo(fifo, proc)
            lines, devinfo, targets, seen = [], {}, {}, {}
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                m = QS_DEV_RE.match(line)
                if m:
                    devinfo[m.group(3)] = (int(m.group(1)), int(m.group(2)))
                elif QS_CTIME_RE.match(line):
                    self.assertIsNotNone(fifofh, "vma never opened the map")
                    # the configs must be there now: qemu-server reads them
                    for name in ("qemu-server.conf", "qemu-server.fw"):
                        with open(os.path.join(tmpdir, name), "rb") as f:
                            seen[name] = f.read()
                    for i, dev in enumerate(sorted(
                            devinfo, key=lambda d: devinfo[d][0])):
                        size = devinfo[dev][1]
                        target = os.path.join(self.box,
                                              "vm-100-disk-%d.raw" % i)
                        with open(target, "wb") as f:
                            f.truncate((size + MiB - 1) // MiB * MiB)
                        targets[dev] = target
                        fifofh.write(map_line(i, dev, target) + "\n")
                    fifofh.write("done\n")
                    fifofh.close()
                    fifofh = None
            rc = proc.wait()
        finally:
            watchdog.cancel()
            if fifofh:
                fifofh.close()
            kill()          # the whole pipeline, whatever state it is in
            proc.wait()
            err_reader.join()
            proc.stdout.close()
            proc.stderr.close()
        self.assertGreaterEqual(rc, 0, "killed (timeout?)")
        return rc, lines, b"".join(errs).decode("utf-8", "replace"), \
            targets, seen

    @staticmethod
    def fill_for_zero_flag(map_line):
        """Targets with flag 1 start as garbage: zeroes must be written."""
        def wrap(i, dev, target):
            line = map_line(i, dev, target)
            if ":1:" in line:
                with open(target, "r+b") as f:
                    size = os.path.getsize(target)
                    f.write(b"\xee" * size)
            return line
        return wrap

    def check_restored(self, rc, lines, err, targets, seen, disks, archive):
        self.assertEqual(rc, 0, "restore failed: %s\n%s" % (err, lines))
        self.assertEqual(seen, {"qemu-server.conf": self.CONF,
                                "qemu-server.fw": self.FW})
        ctime_at = next(i for i, ln in enumerate(lines)
                        if QS_CTIME_RE.match(ln))
        self.assertEqual(
            [ln for ln in lines[:ctime_at] if QS_DEV_RE.match(ln)],
            [ln for ln in lines[:ctime_at] if ln.startswith("DEV:")])
        self.assertEqual(sorted(targets), sorted(disks))
        for dev, data in disks.items():
            with open(targets[dev], "rb") as f:
                got = f.read(len(pad512(data)))
            self.assertTrue(got == pad512(data), "%s differs" % dev)
        with open(archive[:-4], "rb") as f:
            check_read_report(self, lines[ctime_at + 1:], f.read())

    def test_restore_like_qemu_server(self):
        """The whole flow; in the QEMU build the first disk's line is
        throttled as qemu-server writes it with a storage limit."""
        archive, disks = self.make_archive()

        def line(i, dev, target):
            if i == 0 and qemu_build():
                return ("throttling.bps=52428800:throttling.group=local-lvm:"
                        "format=raw:0:%s=%s" % (dev, target))
            if i == 0:
                return "format=raw:0:%s=%s" % (dev, target)
            return "format=raw:1:%s=%s" % (dev, target)
        self.check_restored(*self.restore(archive,
                                          self.fill_for_zero_flag(line)),
                            disks, archive)

    def test_restore_throttled_needs_qemu_build(self):
        """Standalone build: the throttled line fails with a message that
        names the QEMU build; nothing is written, TMPDIR is gone."""
        if qemu_build():
            self.skipTest("the QEMU build throttles "
                          "(test_restore_like_qemu_server)")
        archive, disks = self.make_archive()

        def line(i, dev, target):
            if i == 0:
                return ("throttling.bps=52428800:throttling.group=local-lvm:"
                        "format=raw:0:%s=%s" % (dev, target))
            return "format=raw:1:%s=%s" % (dev, target)
        rc, lines, err, targets, seen = self.restore(archive, line)
        self.assertEqual(rc, 1, err)
        self.assertIn("throttling.bps", err)
        self.assertIn("built with QEMU", err)
        self.assertEqual(seen["qemu-server.conf"], self.CONF)
        self.assertFalse(os.path.exists(os.path.join(self.box,
                                                     "vzdumptmp4242")))
        for t in targets.values():
            self.assertEqual(read_file(t), bytes(os.path.getsize(t)))

    def test_restore_skip_line(self):
        """'skip=<dev>' as qemu-server writes it for a disk it does not
        restore"""
        archive, disks = self.make_archive()

        def line(i, dev, target):
            if dev == "drive-virtio1":
                return "skip=%s" % dev
            return "format=raw:0:%s=%s" % (dev, target)
        rc, lines, err, targets, seen = self.restore(archive, line)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read_file(targets["drive-virtio1"]),
                         bytes(os.path.getsize(targets["drive-virtio1"])))
        got = read_file(targets["drive-scsi0"])[:len(disks["drive-scsi0"])]
        self.assertTrue(got == disks["drive-scsi0"])


class ReferenceOutput(ToolTest):
    """The -v lines scripts read, in the reference tool's format."""

    def archive(self):
        disks = [("drive-scsi0", mixed_data(2 * MiB + 4096, 211)),
                 ("drive-scsi1", mixed_data(540672, 212))]
        arch = self.gen("a.vma", disks, [("qemu-server.conf", b"x\n")],
                        order="shuffle", seed=5)
        return arch, disks

    def test_extract_v(self):
        arch, disks = self.archive()
        out = os.path.join(self.box, "out")
        r = self.ok(self.vma("extract", "-v", arch, out))
        lines = r.outtext.splitlines()
        self.assertEqual([ln for ln in lines if ln.startswith("DEVINFO")],
                         ["DEVINFO %s/tmp-disk-%s.raw %d" % (out, n, len(d))
                          for n, d in disks])
        self.assertTrue(lines[0].startswith("DEVINFO"))
        check_read_report(self, lines, read_file(arch))
        self.assertEqual(r.errtext, "", "stderr is not a terminal")
        for n, d in disks:
            self.assertFileData(os.path.join(out, "disk-%s.raw" % n), d)

    def test_extract_without_v_prints_devinfo_only(self):
        arch, disks = self.archive()
        out = os.path.join(self.box, "out")
        r = self.ok(self.vma("extract", arch, out))
        self.assertEqual(r.outtext.splitlines(),
                         ["DEVINFO %s/tmp-disk-%s.raw %d" % (out, n, len(d))
                          for n, d in disks])

    def test_verify_v_listing_first(self):
        arch, _ = self.archive()
        listing = self.ok(self.vma("list", arch)).outtext.splitlines()
        r = self.ok(self.vma("verify", "-v", arch))
        lines = r.outtext.splitlines()
        self.assertEqual(lines[:len(listing)], listing)
        self.assertTrue(lines[len(listing)].startswith("progress"))
        check_read_report(self, lines[len(listing):], read_file(arch))

    def test_verify_v_from_pipe(self):
        arch, _ = self.archive()
        r = self.ok(self.shell('gzip -c "$1" | "$VMA" verify -v -', arch))
        check_read_report(self, r.outtext.splitlines(), read_file(arch))

    def test_no_image_data(self):
        arch = self.gen("c.vma", [], [("qemu-server.conf", b"x\n")])
        for cmd in (["verify", "-v", arch],
                    ["extract", "-v", arch, os.path.join(self.box, "o")]):
            with self.subTest(cmd=cmd[0]):
                r = self.ok(self.vma(*cmd))
                self.assertEqual(r.outtext.splitlines()[-1],
                                 "vma archive contains no image data")
                check_read_report(self, r.outtext.splitlines(),
                                  read_file(arch))

    def test_tiny_and_all_zero_disks(self):
        """Disks under one cluster (the reference divides by zero there)
        and all-zero disks: 100% at the end, never more"""
        for i, disks in enumerate([[("d", b"\1" * 512)], [("d", bytes(512))],
                                   [("a", bytes(3 * 65536)), ("b", b"\2")]]):
            with self.subTest(disks=[(n, len(d)) for n, d in disks]):
                arch = self.gen("t%d.vma" % i, disks, [])
                r = self.ok(self.vma("verify", "-v", arch))
                check_read_report(self, r.outtext.splitlines(),
                                  read_file(arch))

    def test_vmstate_percent_stays_in_range(self):
        arch = self.gen("v.vma", [("d", b"\3" * 70000)], [],
                        vmstate=random_data(200000, 213))
        r = self.ok(self.vma("verify", "-v", arch))
        check_read_report(self, r.outtext.splitlines(), read_file(arch))

    def test_vmstate_ended_early_reaches_100(self):
        """A live backup's RAM state declares an upper bound and ends
        before it: the last progress line is still 100%, of what was read"""
        vm = random_data(200000, 215)
        arch = self.gen("v.vma", [("d", b"\3" * 70000)], [], vmstate=vm,
                        vmstate_size=4 * MiB)
        for cmd in (["verify", "-v", arch],
                    ["extract", "-v", arch, os.path.join(self.box, "x")]):
            with self.subTest(cmd=cmd[0]):
                r = self.ok(self.vma(*cmd))
                check_read_report(self, r.outtext.splitlines(),
                                  read_file(arch))
        # whole clusters: where the stream ends inside its last one is not
        # recorded (the migration stream has its own end)
        self.assertFileData(os.path.join(self.box, "x", "vmstate.bin"),
                            vm + bytes(-len(vm) % 65536))

    def test_create_v(self):
        datas = [("drive-scsi0", mixed_data(3 * MiB + 4608, 214)),
                 ("drive-scsi1", bytes(200000))]
        paths = [(n, self.disk(n + ".raw", d)) for n, d in datas]
        arch = os.path.join(self.inp, "a.vma")
        r = self.ok(self.create(arch, paths, extra=["-v"]))
        lines = r.errtext.splitlines()
        prog = [CREATE_PROGRESS_RE.match(ln) for ln in lines
                if ln.startswith("progress")]
        self.assertTrue(prog and all(prog), lines)
        pcts = [int(m.group(1)) for m in prog]
        self.assertEqual(pcts, sorted(set(pcts)))
        total = sum(len(pad512(d)) for _, d in datas)
        self.assertTrue(all(int(m.group(3)) == total for m in prog))
        self.assertEqual(pcts[-1], 100)
        self.assertEqual(int(prog[-1].group(2)), total)
        images = [ln for ln in lines if ln.startswith("image ")]
        want = []
        for n, d in datas:
            d = pad512(d)
            zeros = 0
            for off in range(0, len(d), 65536):
                c = d[off:off + 65536]
                stored = sum(1 for b in range(0, len(c), 4096)
                             if any(c[b:b + 4096]))
                zeros += len(c) - min(len(c), stored * 4096)
            want.append("image %s: size=%d zeros=%d saved=%d" %
                        (n, len(d), zeros, len(d) - zeros))
        self.assertEqual(images, want)
        self.assertEqual(int(prog[-1].group(4)),
                         sum(int(w.split("zeros=")[1].split()[0])
                             for w in want))

    def test_human_progress_only_on_a_terminal(self):
        """Rate and ETA on stderr when it is a terminal, in plain ASCII;
        nothing there otherwise (checked by the other -v tests)"""
        import pty
        arch, _ = self.archive()
        master, slave = pty.openpty()
        try:
            p = subprocess.run([VMA, "verify", "-v", arch], cwd=self.tmp,
                               stdout=subprocess.PIPE, stderr=slave,
                               timeout=TIMEOUT)
            os.close(slave)
            slave = None
            err = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                err += chunk
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(b"verify: 100%", err)
        self.assertIn(b"done in", err)
        self.assertTrue(all(b < 128 for b in err), "not ASCII: %r" % err)
        check_read_report(self, p.stdout.decode().splitlines()[3:],
                          read_file(arch))


class ReferenceCommandLine(ToolTest):
    def src(self, name="d.raw", size=300000, seed=221):
        return self.disk(name, mixed_data(size, seed))

    def test_usage_errors_help_on_stdout_exit_1(self):
        for args in [[], ["bogus"], ["list"], ["extract", "x.vma"],
                     ["verify", "--no-such-option", "x.vma"],
                     ["config"], ["create"], ["extract", "-r"],
                     ["list", "-x", "a.vma"]]:
            with self.subTest(args=args):
                r = self.vma(*args)
                self.assertEqual(r.rc, 1, r)
                self.assertTrue(r.outtext.startswith(USAGE_START), r)
                self.assertEqual(len(r.errtext.splitlines()), 1, r)

    def test_h_for_every_command(self):
        for args in [["help"], ["-h"], ["--help"], ["list", "-h"],
                     ["config", "-h"], ["create", "-h"], ["extract", "-h"],
                     ["verify", "-h"]]:
            with self.subTest(args=args):
                r = self.vma(*args)
                self.assertEqual(r.rc, 0, r)
                self.assertTrue(r.outtext.startswith(USAGE_START), r)
                self.assertEqual(r.err, b"")

    def test_config_missing_reference_message(self):
        arch = self.gen("a.vma", [("d", b"x" * 4096)],
                        [("qemu-server.fw", b"x")])
        for args, name in [(["config", arch], "qemu-server.conf"),
                           (["config", arch, "-c", "nope.conf"],
                            "nope.conf")]:
            r = self.vma(*args)
            self.assertEqual(r.rc, 255, r)
            self.assertEqual(r.errtext,
                             "unable to find configuration data '%s'\n"
                             % name)
            self.assertEqual(r.out, b"")

    def test_runtime_errors_exit_1(self):
        bad = self.gen("bad.vma", [("d", b"x" * 4096)], [],
                       breaks=["header-md5"])
        for args in (["list", bad], ["verify", bad],
                     ["extract", bad, os.path.join(self.box, "o")],
                     ["create", os.path.join(self.inp, "n.vma"), "-d",
                      "format=raw:d=" + os.path.join(self.inp, "none")]):
            with self.subTest(cmd=args[0]):
                r = self.refused(self.vma(*args))
                self.assertEqual(r.rc, 1)

    def test_create_exec_target(self):
        out = os.path.join(self.inp, "a.vma.gz")
        src = self.src()
        r = self.ok(self.vma("create", "exec:gzip -c > '%s'" % out, "-d",
                             "format=raw:drive-scsi0=" + src))
        self.assertEqual(r.out, b"")
        o = os.path.join(self.box, "out")
        self.ok(self.vma("extract", out, o))
        self.assertFileData(os.path.join(o, "disk-drive-scsi0.raw"),
                            pad512(read_file(src)))

    def test_create_exec_command_fails(self):
        src = self.src(size=4 * MiB)
        for cmd, words in [("exec:exit 3", ["exit status 3"]),
                           ("exec:head -c 1000 >/dev/null", ["exit status",
                                                              "pipe"]),
                           ("exec:", ["command"])]:
            with self.subTest(cmd=cmd):
                self.refused(self.vma("create", cmd, "-d",
                                      "format=raw:d=" + src), words)

    def test_create_into_fifo(self):
        fifo = os.path.join(self.inp, "a.fifo")
        os.mkfifo(fifo)
        src = self.src()
        # The reader is there before create starts; our own idle writer
        # keeps it from seeing the end of file before create's data
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        idle = os.open(fifo, os.O_WRONLY)
        os.set_blocking(rfd, True)
        got = []

        def read_all():
            with os.fdopen(rfd, "rb") as f:
                got.append(f.read())
        reader = threading.Thread(target=read_all)
        reader.start()
        try:
            self.ok(self.vma("create", fifo, "-d",
                             "format=raw:drive-scsi0=" + src))
        finally:
            os.close(idle)
            reader.join(TIMEOUT)
        self.assertTrue(os.path.exists(fifo), "the FIFO was removed")
        copy = write_file(os.path.join(self.inp, "copy.vma"), got[0])
        self.ok(self.vma("verify", copy))
        o = os.path.join(self.box, "o")
        self.ok(self.vma("extract", copy, o))
        self.assertFileData(os.path.join(o, "disk-drive-scsi0.raw"),
                            pad512(read_file(src)))

    def test_create_into_fifo_without_reader(self):
        fifo = os.path.join(self.inp, "a.fifo")
        os.mkfifo(fifo)
        self.refused(self.vma("create", fifo, "-d", "format=raw:d=" +
                              self.src(), timeout=BAD_TIMEOUT),
                     ["no reader"])
        self.assertTrue(os.path.exists(fifo))

    def test_create_positional_deprecated(self):
        src = self.src()
        arch = os.path.join(self.inp, "a.vma")
        arch2 = os.path.join(self.inp, "b.vma")
        r = self.ok(self.vma("create", arch, "drive-scsi0=" + src))
        self.assertIn("deprecated", r.errtext)
        r = self.ok(self.vma("create", arch2, src))
        self.assertIn("deprecated", r.errtext)
        self.assertIn("DEV: dev_id=1 size: %d devname: disk0" %
                      len(pad512(read_file(src))),
                      self.ok(self.vma("list", arch2)).outtext)
        o = os.path.join(self.box, "o")
        self.ok(self.vma("extract", arch, o))
        self.assertFileData(os.path.join(o, "disk-drive-scsi0.raw"),
                            pad512(read_file(src)))

    # (what, magic offset, magic bytes): a few image formats' signatures
    IMAGES = [("qcow2", 0, b"QFI\xfb\0\0\0\3"), ("vmdk", 0, b"KDMV"),
              ("vhdx", 0, b"vhdxfile"), ("luks", 0, b"LUKS\xba\xbe"),
              ("vdi", 64, b"\x7f\x10\xda\xbe"), ("VMA archive", 0, b"VMA\0")]

    def test_create_positional_refuses_images(self):
        for what, off, magic in self.IMAGES:
            with self.subTest(what=what):
                img = bytearray(mixed_data(200000, 222))
                img[off:off + len(magic)] = magic
                path = self.disk("img-%s" % what.split()[0], bytes(img))
                arch = os.path.join(self.inp, "a.vma")
                for args in (["d0=" + path], [path]):
                    r = self.refused(self.vma("create", arch, *args))
                    self.assertIn("looks like", r.errtext)
                    self.assertIn(what, r.errtext)
                    self.assertFalse(os.path.exists(arch))
                # an explicit format=raw is what the user asked for
                self.ok(self.vma("create", arch, "-d",
                                 "format=raw:d0=" + path))
                os.unlink(arch)

    def test_create_positional_and_d_mixed_refused(self):
        src = self.src()
        arch = os.path.join(self.inp, "a.vma")
        r = self.vma("create", arch, "-d", "format=raw:a=" + src, "b=" + src)
        self.assertEqual(r.rc, 1, r)
        self.assertTrue(r.outtext.startswith(USAGE_START))
        self.assertIn("-d", r.errtext)
        self.assertFalse(os.path.exists(arch))

    def test_extract_d_repeated_and_unknown(self):
        disks = [("a", mixed_data(70000, 223)), ("b", mixed_data(5000, 224)),
                 ("c", mixed_data(140000, 225))]
        arch = self.gen("a.vma", disks, [])
        out = os.path.join(self.box, "o1")
        r = self.ok(self.vma("extract", arch, "-d", "a", "-d", "zzz,c", out))
        self.assertIn("zzz", r.errtext)
        self.assertEqual(sorted(p for p in tree(out)),
                         ["disk-a.raw", "disk-c.raw"])
        r = self.refused(self.vma("extract", arch, "-d", "x,y",
                                  os.path.join(self.box, "o2")))
        self.assertFalse(os.path.exists(os.path.join(self.box, "o2")))


    def test_extract_d_and_the_ram_state(self):
        """-d selects the RAM state only when it is named (documented
        difference from the reference)"""
        vm = random_data(70000, 226)
        arch = self.gen("a.vma", [("a", mixed_data(5000, 227))], [],
                        vmstate=vm)
        o1 = os.path.join(self.box, "o1")
        self.ok(self.vma("extract", arch, "-d", "a", o1))
        self.assertEqual(tree(o1), ["disk-a.raw"])
        o2 = os.path.join(self.box, "o2")
        self.ok(self.vma("extract", arch, "-d", "a,vmstate", o2))
        self.assertEqual(tree(o2), ["disk-a.raw", "vmstate.bin"])
        self.assertFileData(os.path.join(o2, "vmstate.bin"), vm)


class BlobPadding(ToolTest):
    """Blob buffers padded past their last blob (issue 8, point 4)"""

    def check(self, pad, fill=0):
        disks = [("drive-scsi0", mixed_data(70000, 231))]
        cfgs = [("qemu-server.conf", b"memory: 1\n"), ("empty.conf", b"")]
        arch = self.gen("p%d-%d.vma" % (pad, fill), disks, cfgs,
                        blob_pad=pad, blob_pad_fill=fill)
        if not fill:
            info = vmagen.parse(read_file(arch))
            self.assertGreaterEqual(info["blob_size"], pad)
        return arch, disks, cfgs

    def test_zero_padding_accepted(self):
        for pad in (1, 2, 3, 511, 4097):
            with self.subTest(pad=pad):
                arch, disks, cfgs = self.check(pad)
                self.ok(self.vma("verify", arch))
                self.ok(self.vma("list", arch))
                self.assertEqual(self.ok(self.vma(
                    "config", arch)).out, cfgs[0][1])
                out = os.path.join(self.box, "o%d" % pad)
                self.ok(self.vma("extract", arch, out))
                self.assertFileData(os.path.join(out, "empty.conf"), b"")
                self.assertFileData(os.path.join(
                    out, "disk-drive-scsi0.raw"), disks[0][1])

    def test_padding_to_512(self):
        a = vmagen.build([("d", b"\1" * 5000)], [("x.conf", b"y")])
        raw = vmagen.serialize(a)
        used = vmagen.parse(raw)["blob_size"]
        arch = self.gen("p.vma", [("d", b"\1" * 5000)], [("x.conf", b"y")],
                        blob_pad=(-used) % 512 or 512)
        self.assertEqual(vmagen.parse(read_file(arch))["blob_size"] % 512, 0)
        self.ok(self.vma("verify", arch))

    def test_nonzero_padding_refused(self):
        for pad in (1, 3):
            with self.subTest(pad=pad):
                arch, _, _ = self.check(pad, fill=7)
                self.refused(self.vma("verify", arch), ["blob"])


class DiskSizes(ToolTest):
    def test_create_pads_to_512(self):
        """A disk of 1000 bytes is archived as 1024 (-v says so): the
        reference reader would drop a partial last sector"""
        data = random_data(1000, 241)
        src = self.disk("d.raw", data)
        arch = os.path.join(self.inp, "a.vma")
        r = self.ok(self.create(arch, [("drive-scsi0", src)], extra=["-v"]))
        self.assertIn("multiple of 512", r.errtext)
        self.assertIn("1024", r.errtext)
        info = vmagen.parse(read_file(arch))
        self.assertEqual(info["devices"], [(1, b"drive-scsi0", 1024)])
        self.assertEqual(vmagen.extract_devices(read_file(arch))
                         [b"drive-scsi0"], data + bytes(24))
        r = self.ok(self.create(os.path.join(self.inp, "b.vma"),
                                [("drive-scsi0", src)]))
        self.assertNotIn("512", r.errtext, "said only with -v")


class StandaloneLimits(ToolTest):
    """What needs the QEMU build says so (issue 8, point 6)"""

    def test_map_options_need_qemu_build(self):
        if qemu_build():
            self.skipTest("the QEMU build has every option")
        arch = self.gen("a.vma", [("d", b"\5" * 70000)], [])
        target = write_file(os.path.join(self.box, "t.raw"), bytes(70000))
        for opt in ("throttling.bps=1000000:", "throttling.group=g:",
                    "cache=none:", "format=qcow2:"):
            with self.subTest(opt=opt):
                out = os.path.join(self.box, "o")
                r = self.vma("extract", "-r", "-", arch, out,
                             input=("%s0:d=%s\n" % (opt, target)).encode())
                self.refused(r)
                self.assertIn("built with QEMU", r.errtext)
                self.assertFalse(os.path.exists(out))
                self.assertEqual(read_file(target), bytes(70000))

    def test_create_format_needs_qemu_build(self):
        if qemu_build():
            self.skipTest("the QEMU build reads every format QEMU opens")
        src = self.disk("d.raw", b"\1" * 512)
        r = self.refused(self.vma("create", os.path.join(self.inp, "a.vma"),
                                  "-d", "format=qcow2:d=" + src))
        self.assertIn("built with QEMU", r.errtext)


class HostileRun(ToolTest):
    """Defects a hostile test run found (issue 8, point 7)"""

    def archive_in_slack(self):
        """An archive whose size is within 4 MiB above its disk's size"""
        data = random_data(2 * MiB, 251)
        src = self.disk("d.raw", data)
        arch = os.path.join(self.inp, "a.vma")
        self.ok(self.create(arch, [("drive-scsi0", src)]))
        self.assertTrue(len(data) < os.path.getsize(arch) <
                        len(data) + 4 * MiB)
        return arch

    def test_restore_refuses_archive_as_target(self):
        """The archive itself (by name, through a symlink, as stdin) as a
        restore target: refused, the archive untouched"""
        arch = self.archive_in_slack()
        before = read_file(arch)
        link = os.path.join(self.box, "link.raw")
        os.symlink(arch, link)
        for target, via_stdin in [(arch, False), (link, False), (link, True)]:
            with self.subTest(target=target, via_stdin=via_stdin):
                out = os.path.join(self.box, "out")
                mapfile = write_file(os.path.join(self.inp, "map"),
                                     ("0:drive-scsi0=%s\n" % target)
                                     .encode())
                if via_stdin:
                    r = self.shell('exec "$VMA" extract -r "$2" - "$3" '
                                   '<"$1"', arch, mapfile, out)
                else:
                    r = self.vma("extract", "-r", mapfile, arch, out)
                self.refused(r, ["archive being read"])
                self.assertEqual(read_file(arch), before)
                self.assertFalse(os.path.exists(out))

    def test_restore_refuses_one_target_twice(self):
        disks = [("a", mixed_data(70000, 252)), ("b", mixed_data(70000, 253))]
        arch = self.gen("a.vma", disks, [])
        t = write_file(os.path.join(self.box, "t.raw"), b"\x11" * 70000)
        link = os.path.join(self.box, "t-link.raw")
        os.symlink(t, link)
        for second in (t, link):
            with self.subTest(second=second):
                out = os.path.join(self.box, "out")
                r = self.vma("extract", "-r", "-", arch, out,
                             input=("1:a=%s\n1:b=%s\n" % (t, second))
                             .encode())
                self.refused(r, ["also the target"])
                self.assertEqual(read_file(t), b"\x11" * 70000)
                self.assertFalse(os.path.exists(out))

    def test_create_refuses_fifo_source(self):
        fifo = os.path.join(self.inp, "f")
        os.mkfifo(fifo)
        arch = os.path.join(self.inp, "a.vma")
        self.refused(self.vma("create", arch, "-d", "format=raw:d0=" + fifo,
                              timeout=BAD_TIMEOUT), ["FIFO"])
        self.assertFalse(os.path.exists(arch))

    def test_create_refuses_dev_zero(self):
        arch = os.path.join(self.inp, "a.vma")
        r = self.refused(self.vma("create", arch, "-d",
                                  "format=raw:d0=/dev/zero",
                                  timeout=BAD_TIMEOUT),
                         ["character device"])
        self.assertNotIn("empty", r.errtext)
        self.assertFalse(os.path.exists(arch))

    def test_long_device_names_checked_up_front(self):
        """242 bytes fit tmp-disk-<name>.raw in 255; 243..246 pass the
        archive's name check but not the file system's: refused before
        anything is created, and fine with -r (no file needed)"""
        for n in (242, 243, 246):
            with self.subTest(n=n):
                name = "d" * n
                data = mixed_data(70000, 254)
                arch = self.gen("l%d.vma" % n, [(name, data)],
                                [("qemu-server.conf", b"x\n")])
                out = os.path.join(self.box, "o%d" % n)
                r = self.vma("extract", arch, out)
                if n == 242:
                    self.ok(r)
                    self.assertFileData(os.path.join(
                        out, "disk-%s.raw" % name), data)
                    continue
                self.refused(r, ["longer than 255"])
                self.assertFalse(os.path.exists(out))
                t = write_file(os.path.join(self.box, "t%d.raw" % n),
                               bytes(70000))
                self.ok(self.vma("extract", "-r", "-", arch, out,
                                 input=("0:%s=%s\n" % (name, t)).encode()))
                self.assertEqual(read_file(t), data)

    def test_config_named_like_a_temporary_file(self):
        for cfg in ("tmp-disk-drive-scsi0.raw", "disk-drive-scsi0.raw"):
            with self.subTest(cfg=cfg):
                arch = self.gen("c.vma", [("drive-scsi0", b"\1" * 5000)],
                                [(cfg, b"x")])
                out = os.path.join(self.box, "o")
                self.refused(self.vma("extract", arch, out), ["both need"])
                self.assertFalse(os.path.exists(out))

    def test_gzip_trailing_zero_padding(self):
        disks = [("drive-scsi0", mixed_data(300000, 255))]
        arch = self.gen("a.vma", disks, [])
        gz = self.run_cmd(["gzip", "-c", arch]).out
        for pad in (1, 511, 512, 10001):
            with self.subTest(pad=pad):
                p = write_file(os.path.join(self.inp, "p%d.vma.gz" % pad),
                               gz + bytes(pad))
                self.ok(self.shell('gzip -dc "$1" | cmp - "$2"', p, arch))
                self.ok(self.vma("verify", p))
                out = os.path.join(self.box, "o%d" % pad)
                self.ok(self.vma("extract", p, out))
                self.assertFileData(os.path.join(out,
                                                 "disk-drive-scsi0.raw"),
                                    disks[0][1])
        p = write_file(os.path.join(self.inp, "g.vma.gz"),
                       gz + bytes(100) + b"junk")
        self.refused(self.vma("verify", p), ["garbage"])


# ---------------------------------------------------------------------------
# vmagen.py itself (no binary needed): what the other tests rely on


class VmagenSelf(unittest.TestCase):
    DISKS = [("a", mixed_data(540672, 1)), ("b", mixed_data(70000, 2)),
             ("c", b"\1")]

    def test_orders_round_trip(self):
        vm = random_data(2 * 65536 + 5, 3)
        for order in ("seq", "interleave", "shuffle", "reverse", "cbw"):
            for pe in (58, 59, 1):
                a = vmagen.build(self.DISKS, [("qemu-server.conf", b"x")],
                                 vm, order=order, seed=4, per_extent=pe)
                raw = vmagen.serialize(a)
                info = vmagen.parse(raw)
                self.assertTrue(info["header_md5_ok"])
                self.assertTrue(all(e["md5_ok"] for e in info["extents"]))
                self.assertTrue(all(len(e["slots"]) <= pe
                                    for e in info["extents"]))
                got = vmagen.extract_devices(raw)
                for n, d in self.DISKS:
                    self.assertEqual(got[n.encode()], d)
                self.assertEqual(got[b"vmstate"], vm)
                vms = [s[3] for e in info["extents"] for s in e["slots"]
                       if s[2] == 4]
                self.assertEqual(vms, sorted(vms))

    def test_header_quirks(self):
        raw = vmagen.serialize(vmagen.build(self.DISKS, [("x.conf", b"")]))
        info = vmagen.parse(raw)
        self.assertEqual(info["blob_size"],
                         1 + (2 + 7) + 2 + 3 * (2 + 2))
        self.assertEqual(info["header_size"], 12288 + 512)
        self.assertEqual([len(e["slots"]) for e in info["extents"]], [12])

    def test_every_break_changes_the_archive(self):
        a = vmagen.build(self.DISKS, [("qemu-server.conf", b"x")],
                         random_data(3 * 65536, 5), order="shuffle", seed=6,
                         per_extent=5)
        good = vmagen.serialize(a)
        kinds = [k for k in vmagen.BREAKS if "=" not in k]
        kinds += ["devname=../evil", "cfgname=\\x01x"]
        for k in kinds:
            with self.subTest(brk=k):
                self.assertNotEqual(vmagen.serialize(a, [k]), good)

    def test_corrupt_keeps_content(self):
        raw = vmagen.serialize(vmagen.build(self.DISKS, [], order="cbw"))
        self.assertEqual(vmagen.extract_devices(vmagen.corrupt(raw, [])),
                         vmagen.extract_devices(raw))


# ---------------------------------------------------------------------------
# A build without zstd/zlib; durability of extract


# The standalone build without libzstd and zlib (-Dzstd=disabled
# -Dzlib=disabled, scripts/build-standalone.sh nozstd): run-tests.sh names it
VMA_NOZSTD = os.environ.get("VMA_NOZSTD_BIN")
if VMA_NOZSTD:
    VMA_NOZSTD = os.path.abspath(VMA_NOZSTD)


@unittest.skipUnless(VMA_NOZSTD, "VMA_NOZSTD_BIN not set (the build "
                     "without zstd: scripts/build-standalone.sh nozstd)")
class BuiltWithoutCompression(ToolTest):
    def setUp(self):
        super().setUp()
        self.data = mixed_data(300000, 41)
        self.arch = self.gen("a.vma", disks=[("drive-scsi0", self.data)])

    def nozstd(self, *args, **kw):
        return self.run_cmd([VMA_NOZSTD] + [str(a) for a in args], **kw)

    def test_zstd_archive_refused_with_hint(self):
        self.ok(self.shell('zstd -q -c "$1" >"$1.zst"', self.arch))
        for cmd in (["list"], ["verify"]):
            r = self.refused(self.nozstd(*cmd, self.arch + ".zst"),
                             ["built without zstd support"])
            self.assertIn("zstd -dc", r.errtext)
        out = os.path.join(self.box, "out")
        self.refused(self.nozstd("extract", self.arch + ".zst", out),
                     ["built without zstd support"])
        self.assertFalse(os.path.exists(out))
        # from a pipe too, and the hint works as it says
        r = self.refused(self.nozstd("verify", "-",
                                     input=read_file(self.arch + ".zst")),
                         ["built without zstd support"])
        self.assertIn("zstd -dc ARCHIVE | vma", r.errtext)
        self.ok(self.run_cmd(["bash", "-o", "pipefail", "-c",
                              'zstd -dc "$1" | "$2" extract - "$3"', "_",
                              self.arch + ".zst", VMA_NOZSTD, out]))
        self.assertFileData(os.path.join(out, "disk-drive-scsi0.raw"),
                            self.data)

    def test_gzip_archive_refused_with_hint(self):
        self.ok(self.shell('gzip -c "$1" >"$1.gz"', self.arch))
        self.refused(self.nozstd("verify", self.arch + ".gz"),
                     ["built without gzip support"])

    def test_plain_archive_works(self):
        self.ok(self.nozstd("verify", self.arch))
        out = os.path.join(self.box, "out")
        self.ok(self.nozstd("extract", self.arch, out))
        self.assertFileData(os.path.join(out, "disk-drive-scsi0.raw"),
                            self.data)


@unittest.skipUnless(shutil.which("strace"), "strace is not installed")
class ExtractDurable(ToolTest):
    """extract fsyncs each file before its rename, and the directory after;
    extract -r fdatasyncs the targets.  Observed with strace on the real
    binary (-y prints the path behind each fd)."""

    def strace(self, *args, input=None):
        log = os.path.join(self.tmp, "strace.log")
        # LeakSanitizer cannot run under ptrace (the tool-asan group)
        env = dict(os.environ, ASAN_OPTIONS=os.environ.get(
            "ASAN_OPTIONS", "") + ":detect_leaks=0")
        r = self.run_cmd(["strace", "-f", "-y", "-o", log, "-e",
                          "trace=fsync,fdatasync,rename,renameat,renameat2"] +
                         [VMA] + [str(a) for a in args], input=input, env=env)
        return r, read_file(log).decode("utf-8", "replace").splitlines()

    @staticmethod
    def index(lines, pattern):
        for i, ln in enumerate(lines):
            if re.search(pattern, ln):
                return i
        return -1

    def test_extract_fsyncs_files_then_renames_then_dir(self):
        data = mixed_data(300000, 42)
        arch = self.gen("a.vma", disks=[("drive-scsi0", data)],
                        configs=[("qemu-server.conf", b"memory: 512\n")],
                        vmstate=b"\x11" * 70000)
        out = os.path.join(self.box, "out")
        r, lines = self.strace("extract", "-d", "drive-scsi0,vmstate",
                               arch, out)
        self.ok(r)
        self.assertFileData(os.path.join(out, "disk-drive-scsi0.raw"), data)
        text = "\n".join(lines)
        for f in ("tmp-disk-drive-scsi0.raw", "tmp-vmstate.bin"):
            sync = self.index(lines, r"\bfsync\(\d+<[^>]*/%s>\)\s*= 0" %
                              re.escape(f))
            ren = self.index(lines, r"\brename(at2?)?\(.*\"%s\".*= 0" %
                             re.escape(f))
            self.assertGreaterEqual(sync, 0, "%s not fsynced:\n%s" %
                                    (f, text))
            self.assertGreaterEqual(ren, 0, "%s not renamed:\n%s" % (f, text))
            self.assertLess(sync, ren, "%s renamed before its fsync" % f)
            dsync = [i for i, ln in enumerate(lines) if i > ren and
                     re.search(r"fsync\(\d+<%s>\)\s*= 0" % re.escape(out), ln)]
            self.assertTrue(dsync, "directory not fsynced after renaming "
                            "%s:\n%s" % (f, text))
        self.assertGreaterEqual(
            self.index(lines, r"fsync\(\d+<[^>]*/qemu-server.conf>\)\s*= 0"), 0,
            "config not fsynced:\n" + text)

    def test_restore_map_targets_synced(self):
        data = mixed_data(300000, 43)
        arch = self.gen("a.vma", disks=[("drive-scsi0", data)])
        target = write_file(os.path.join(self.box, "t.raw"), bytes(len(data)))
        mapf = write_file(os.path.join(self.inp, "map"),
                          ("0:drive-scsi0=%s\n" % target).encode())
        r, lines = self.strace("extract", "-r", mapf, arch,
                               os.path.join(self.box, "out"))
        self.ok(r)
        self.assertFileData(target, data)
        self.assertGreaterEqual(
            self.index(lines, r"f(data)?sync\(\d+<%s>\)\s*= 0" %
                       re.escape(target)), 0,
            "restore target not synced:\n" + "\n".join(lines))


# ---------------------------------------------------------------------------
# Backup chains: a full archive and its incrementals


def change_clusters(data, clusters, rng):
    """@data with each of @clusters rewritten: random, zero or one byte."""
    b = bytearray(data)
    for c in clusters:
        lo, hi = c * 65536, min(len(b), (c + 1) * 65536)
        k = rng.randrange(3)
        if k == 0:
            b[lo:hi] = rng.randbytes(hi - lo)
        elif k == 1:
            b[lo:hi] = bytes(hi - lo)
        else:
            b[lo + rng.randrange(hi - lo)] ^= 0x5A
    return bytes(b)


class Chain(ToolTest):
    """A full archive and three incrementals written by vmagen: disk a is
    incremental throughout, disk b is backed up in full again by the 2nd
    incremental (its bitmap was invalid), disk c is added by the 2nd."""

    SIZE_A = 17 * 65536 + 1000
    SIZE_B = 5 * 65536
    SIZE_C = 3 * 65536 + 512

    def setUp(self):
        super().setUp()
        rng = random.Random(77)
        self.uuids = [bytes([0x10 * (k + 1)] * 15 + [k]) for k in range(4)]
        a = mixed_data(self.SIZE_A, 1)
        b = mixed_data(self.SIZE_B, 2)
        self.states = [{"a": a, "b": b}]
        self.archives = []
        for k in range(4):
            prev = self.states[-1]
            if k == 0:
                state, keep, modes = dict(prev), {}, [("a", "full", "new"),
                                                      ("b", "full", "new")]
            else:
                changed = sorted(rng.sample(range(18), 4))
                if k == 1:
                    changed = [0, 5, 17]    # the first and the short last
                state = dict(prev)
                state["a"] = change_clusters(prev["a"], changed, rng)
                state["b"] = change_clusters(prev["b"], [rng.randrange(5)],
                                             rng)
                keep = {"a": changed, "b": range(5)}
                modes = [("a", "incremental", "used"),
                         ("b", "full" if k == 2 else "incremental",
                          "invalid" if k == 2 else "used")]
                keep_b = sorted(set(c for c in range(5)
                                    if prev["b"][c * 65536:(c + 1) * 65536] !=
                                    state["b"][c * 65536:(c + 1) * 65536]))
                if k != 2:
                    keep["b"] = keep_b
                if k >= 2:
                    if "c" not in prev:
                        state["c"] = mixed_data(self.SIZE_C, 3)
                        modes.append(("c", "full", "new"))
                    else:
                        state["c"] = change_clusters(prev["c"], [1], rng)
                        keep["c"] = [1]
                        modes.append(("c", "incremental", "used"))
            blob = vmagen.chain_blob(self.uuids[k], self.uuids[:k], modes)
            disks = [(n, state[n]) for n in sorted(state)]
            self.archives.append(self.gen(
                "a%d.vma" % k, disks=disks, uuid=self.uuids[k],
                configs=[("qemu-server.conf", b"memory: %d\n" % (512 + k)),
                         ("backup-chain", blob)],
                keep=keep, order="shuffle", seed=k))
            self.states.append(state)
        self.states = self.states[1:]

    def check_dir(self, out, k):
        for name, data in self.states[k].items():
            self.assertFileData(os.path.join(out, "disk-%s.raw" % name), data)
        self.assertFileData(os.path.join(out, "qemu-server.conf"),
                            b"memory: %d\n" % (512 + k))

    # list

    def test_list_human_and_json(self):
        r = self.ok(self.vma("list", self.archives[2]))
        u = [vmagen.uuid_str(x) for x in self.uuids]
        self.assertIn("CHAIN: uuid=%s depth=2 base=%s chain=%s,%s\n" %
                      (u[2], u[1], u[0], u[1]), r.outtext)
        self.assertIn("CHAIN: disk=b full reason=invalid\n", r.outtext)
        self.assertIn("CHAIN: disk=a incremental reason=used\n", r.outtext)
        self.assertTrue(r.outtext.splitlines()[-1].startswith("CTIME: "))
        j = json.loads(self.ok(self.vma("list", "--output=json",
                                        self.archives[2])).out)
        self.assertEqual(j["chain"]["depth"], 2)
        self.assertEqual(j["chain"]["base"], u[1])
        self.assertEqual(j["chain"]["chain"], u[:2])
        self.assertIn({"name": "c", "mode": "full", "reason": "new"},
                      j["chain"]["disks"])
        j = json.loads(self.ok(self.vma("list", "--output=json",
                                        self.archives[0])).out)
        self.assertEqual(j["chain"]["depth"], 0)
        self.assertIsNone(j["chain"]["base"])
        plain = self.gen("plain.vma", disks=[("a", b"x" * 4096)])
        j = json.loads(self.ok(self.vma("list", "--output=json", plain)).out)
        self.assertIsNone(j["chain"])

    # verify

    def test_verify_each_and_the_chain(self):
        for k, arch in enumerate(self.archives):
            self.ok(self.vma("verify", arch))
            self.ok(self.vma("verify", *self.archives[:k + 1]))
        r = self.ok(self.vma("verify", "-v", *self.archives))
        self.assertEqual(r.outtext.count("CTIME:"), 4)
        # incrementals hold a few clusters of their disks: each still ends
        # at 100%
        self.assertEqual(r.outtext.count("\nprogress 100% "), 4, r.outtext)

    def test_strict_reader_refuses_incremental(self):
        """Without the blob (a reader that knows nothing of chains sees
        just this) an incremental is an incomplete archive."""
        info = vmagen.parse(read_file(self.archives[1]))
        self.assertTrue(info)
        state = self.states[1]
        bare = self.gen("bare.vma", disks=[(n, state[n])
                                           for n in sorted(state)],
                        keep={"a": [0, 5, 17]})
        self.refused(self.vma("verify", bare), ["missing"])
        self.refused(self.vma("extract", bare, os.path.join(self.box, "o")),
                     ["missing"])
        self.assertFalse(os.path.exists(os.path.join(self.box, "o")))
        # a blob that says "full" for a disk with absent clusters
        blob = vmagen.chain_blob(self.uuids[1], self.uuids[:1],
                                 [("a", "full", None), ("b", "full", None)])
        lie = self.gen("lie.vma", disks=[(n, state[n]) for n in sorted(state)],
                       configs=[("backup-chain", blob)], uuid=self.uuids[1],
                       keep={"a": [0, 5, 17]})
        self.refused(self.vma("verify", lie), ["missing"])
        self.refused(self.vma("verify", self.archives[0], lie), ["missing"])

    # extract

    def test_extract_every_point(self):
        for k in range(4):
            out = os.path.join(self.box, "out%d" % k)
            self.ok(self.vma("extract", *self.archives[:k + 1], out))
            self.check_dir(out, k)
            self.assertNotIn("tmp-", " ".join(os.listdir(out)))

    def test_extract_r_every_point(self):
        for k in range(4):
            for zero in ("0", "1"):
                targets = {}
                for name, data in self.states[k].items():
                    fill = bytes(len(data)) if zero == "0" else \
                        random_data(len(data), k)
                    targets[name] = write_file(os.path.join(
                        self.box, "t%d%s-%s.raw" % (k, zero, name)), fill)
                mapf = write_file(os.path.join(self.inp, "map%d%s" % (k, zero)),
                                  "".join("%s:%s=%s\n" % (zero, n, t)
                                          for n, t in targets.items())
                                  .encode())
                out = os.path.join(self.box, "o%d%s" % (k, zero))
                r = self.ok(self.vma("extract", "-r", mapf,
                                     *self.archives[:k + 1], out))
                self.assertIn("CHAIN: uuid=%s" %
                              vmagen.uuid_str(self.uuids[k]), r.outtext)
                for name, data in self.states[k].items():
                    self.assertFileData(targets[name], data)

    def test_extract_pipe_and_compressed(self):
        a = self.archives
        self.ok(self.shell('gzip -c "$1" >"$1.gz"; zstd -q -c "$2" >"$2.zst"',
                           a[1], a[2]))
        out = os.path.join(self.box, "out")
        self.ok(self.shell('zstd -q -c "$4" | "$VMA" extract "$1" "$2.gz" '
                           '"$3.zst" - "$5"', a[0], a[1], a[2], a[3], out))
        self.check_dir(out, 3)
        # the pipe need not be the last one
        out2 = os.path.join(self.box, "out2")
        self.ok(self.shell('cat "$1" | "$VMA" extract - "$2" "$3"',
                           a[0], a[1], out2))
        self.check_dir(out2, 1)
        self.refused(self.vma("extract", "-", "-", out + "x",
                              input=b""), ["stdin"])

    def test_extract_selection(self):
        out = os.path.join(self.box, "out")
        self.ok(self.vma("extract", "-d", "a", *self.archives, out))
        self.assertFileData(os.path.join(out, "disk-a.raw"),
                            self.states[3]["a"])
        self.assertFalse(os.path.exists(os.path.join(out, "disk-b.raw")))

    def refused_before_writing(self, args, keywords):
        out = os.path.join(self.box, "out")
        self.refused(self.vma("extract", *args, out), keywords)
        self.assertFalse(os.path.exists(out), "something was written")
        self.refused(self.vma("merge", *args, "-o",
                              os.path.join(self.box, "m.vma")), keywords)
        self.assertFalse(os.path.exists(os.path.join(self.box, "m.vma")))
        self.refused(self.vma("verify", *args), keywords)

    def test_wrong_order_refused(self):
        a = self.archives
        self.refused_before_writing([a[0], a[2], a[1]], ["does not follow"])
        self.refused_before_writing([a[1], a[0]], ["full archive first",
                                                   "comes first"])
        self.refused_before_writing([a[0], a[1], a[1]], ["does not follow"])
        self.refused_before_writing([a[0], a[0]], ["can only come first"])

    def test_missing_link_refused(self):
        a = self.archives
        self.refused_before_writing([a[0], a[2]], ["does not follow"])
        self.refused_before_writing([a[0], a[1], a[3]], ["does not follow"])

    def test_lone_incremental_refused_for_restore(self):
        out = os.path.join(self.box, "out")
        self.refused(self.vma("extract", self.archives[2], out),
                     ["give the whole chain"])
        self.assertFalse(os.path.exists(out))
        self.refused(self.vma("merge", self.archives[2], "-o",
                              os.path.join(self.box, "m.vma")),
                     ["give the whole chain"])

    def test_wrong_base_refused(self):
        """An incremental of another full archive (same disks)."""
        other = bytes([0xEE] * 16)
        blob = vmagen.chain_blob(self.uuids[1], [other],
                                 [("a", "incremental", "used"),
                                  ("b", "incremental", "used")])
        state = self.states[1]
        inc = self.gen("other.vma", disks=[(n, state[n])
                                           for n in sorted(state)],
                       configs=[("backup-chain", blob)], uuid=self.uuids[1],
                       keep={"a": [0], "b": [0]})
        self.refused_before_writing([self.archives[0], inc],
                                    ["does not follow"])
        # the right base, but a chain that names another full archive
        blob = vmagen.chain_blob(self.uuids[2], [other, self.uuids[1]],
                                 [("a", "incremental", "used"),
                                  ("b", "incremental", "used")])
        inc2 = self.gen("other2.vma", disks=[(n, state[n])
                                             for n in sorted(state)],
                        configs=[("backup-chain", blob)], uuid=self.uuids[2],
                        keep={"a": [0], "b": [0]})
        self.refused_before_writing([self.archives[0], self.archives[1], inc2],
                                    ["another chain"])

    def test_size_mismatch_refused(self):
        state = dict(self.states[0])
        state["a"] = state["a"] + bytes(65536)
        blob = vmagen.chain_blob(self.uuids[1], self.uuids[:1],
                                 [("a", "incremental", "used"),
                                  ("b", "incremental", "used")])
        inc = self.gen("grown.vma", disks=[(n, state[n])
                                           for n in sorted(state)],
                       configs=[("backup-chain", blob)], uuid=self.uuids[1],
                       keep={"a": [0], "b": [0]})
        self.refused_before_writing([self.archives[0], inc], ["bytes"])

    def test_bad_blob_refused(self):
        bad = self.gen("bad.vma", disks=[("a", b"x" * 4096)],
                       configs=[("backup-chain", b"format=1\nuuid=x\n")])
        self.refused(self.vma("verify", bad), ["backup-chain"])
        r = self.ok(self.vma("list", bad))
        self.assertIn("backup-chain", r.errtext)

    def test_vmstate_from_the_newest(self):
        """The RAM state is never incremental: the newest archive's."""
        u = [bytes([0x71] * 16), bytes([0x72] * 16)]
        a = mixed_data(3 * 65536, 5)
        a2 = change_clusters(a, [1], random.Random(1))
        full = self.gen("vf.vma", disks=[("a", a)], uuid=u[0],
                        vmstate=b"\x01" * 70000,
                        configs=[("backup-chain", vmagen.chain_blob(
                            u[0], [], [("a", "full", "new")]))])
        inc = self.gen("vi.vma", disks=[("a", a2)], uuid=u[1],
                       vmstate=b"\x02" * 100000, keep={"a": [1]},
                       configs=[("backup-chain", vmagen.chain_blob(
                           u[1], u[:1], [("a", "incremental", "used")]))])
        out = os.path.join(self.box, "out")
        self.ok(self.vma("extract", "-d", "a,vmstate", full, inc, out))
        self.assertFileData(os.path.join(out, "disk-a.raw"), a2)
        self.assertFileData(os.path.join(out, "vmstate.bin"),
                            b"\x02" * 100000)
        m = os.path.join(self.box, "m.vma")
        self.ok(self.vma("merge", full, inc, "-o", m))
        out2 = os.path.join(self.box, "out2")
        self.ok(self.vma("extract", "-d", "a,vmstate", m, out2))
        self.assertFileData(os.path.join(out2, "disk-a.raw"), a2)
        self.assertFileData(os.path.join(out2, "vmstate.bin"),
                            b"\x02" * 100000)

    # merge

    def test_merge_every_point(self):
        for k in range(4):
            m = os.path.join(self.box, "m%d.vma" % k)
            self.ok(self.vma("merge", *self.archives[:k + 1], "-o", m))
            self.ok(self.vma("verify", m))
            j = json.loads(self.ok(self.vma("list", "--output=json", m)).out)
            self.assertIsNone(j["chain"])
            self.assertNotIn(vmagen.uuid_str(self.uuids[k]), j["uuid"])
            self.assertEqual([c["name"] for c in j["configs"]],
                             ["qemu-server.conf"])
            out = os.path.join(self.box, "out%d" % k)
            self.ok(self.vma("extract", m, out))
            self.check_dir(out, k)

    def test_merge_pipes(self):
        a = self.archives
        self.ok(self.shell('zstd -q -c "$1" >"$1.zst"', a[0]))
        r = self.ok(self.shell('cat "$4" | "$VMA" merge "$1.zst" "$2" "$3" - '
                               '-o - | "$VMA" extract - "$5"',
                               a[0], a[1], a[2], a[3],
                               os.path.join(self.box, "out")))
        self.check_dir(os.path.join(self.box, "out"), 3)
        self.assertEqual(r.err, b"")

    def test_merge_refuses_existing_output(self):
        m = write_file(os.path.join(self.box, "m.vma"), b"keep")
        self.refused(self.vma("merge", *self.archives, "-o", m),
                     ["exists"])
        self.assertEqual(read_file(m), b"keep")

    def test_merge_corrupt_input_leaves_nothing(self):
        data = read_file(self.archives[1])
        bad = write_file(os.path.join(self.inp, "bad1.vma"),
                         data[:len(data) - 1000])    # cut inside an extent
        m = os.path.join(self.box, "m.vma")
        self.refused(self.vma("merge", self.archives[0], bad, "-o", m))
        self.assertFalse(os.path.exists(m))
        out = os.path.join(self.box, "out")
        self.refused(self.vma("extract", self.archives[0], bad, out))
        self.assertNoDiskFiles(self.box)


# ---------------------------------------------------------------------------
# Runner


def main(argv):
    global SUITE_TMP
    verbose = "-v" in argv
    patterns = [a for a in argv if not a.startswith("-")]
    SUITE_TMP = tempfile.mkdtemp(prefix="vma-tool-tests-")
    loader = unittest.TestLoader()
    if patterns:
        loader.testNamePatterns = ["*%s*" % p for p in patterns]
    suite = loader.loadTestsFromModule(sys.modules[__name__])
    print("vma binary: %s%s" % (VMA, "" if os.access(VMA, os.X_OK)
                                else "  (NOT FOUND: every test will fail)"))
    start = time.time()
    result = unittest.TextTestRunner(stream=sys.stdout,
                                     verbosity=2 if verbose else 1).run(suite)
    shutil.rmtree(SUITE_TMP, ignore_errors=True)

    def test_id(t):      # a failing subTest counts for its test, once
        return getattr(t, "test_case", t).id()
    failed = len(set(test_id(t) for t, _ in result.failures + result.errors) |
                 set(test_id(t) for t in result.unexpectedSuccesses))
    skipped = len(set(test_id(t) for t, _ in result.skipped))
    passed = result.testsRun - failed - skipped - \
        len(result.expectedFailures)
    print("time: %.1fs" % (time.time() - start))
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    sys.stdout.flush()
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
