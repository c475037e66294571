#!/usr/bin/env python3
"""vmagen: an independent VMA archive writer, parser and corrupter.

Written from docs/specs (the format facts), not from the C library, so it
plays "another VMA implementation" in the tool tests.  It writes archives
the way the reference writer does:

  * blob_buffer_size = bytes in use (position 0 counted), not rounded;
    header_size = 12288 + blob bytes rounded up to 512 (on request, the
    blob buffer is padded: blob_pad more bytes, counted in its size, zero
    or ending in a chosen byte);
  * extents flushed at 58 clusters (59 on request), then one more extent
    with the remainder, which is empty when the count divides evenly;
  * clusters in any order (sequential, interleaved across devices,
    shuffled, "copy-before-write" like, reverse), vmstate always in order;
  * all-zero blocks omitted, all-zero clusters as mask-0 slots, blocks of
    the last cluster wholly past the device end left clear.

Every rule can be broken on its own (see BREAKS / `vmagen.py breaks`), for
the bad-input tests.  The MD5 sums are recomputed after a break, so that
exactly one rule is broken, unless the break is about an MD5.

Library use:
    arch = build(disks=[("drive-scsi0", data)], configs=[("qemu-server.conf",
                 b"...")], vmstate=None, order="shuffle", seed=1)
    blob = serialize(arch, breaks=["extent-md5"])
    info = parse(blob)          # dict: header fields, devices, extents...
    bad = corrupt(blob, "missing-cluster")

CLI:
    vmagen.py write OUT [--disk NAME=PATH]... [--config NAME=PATH]...
                        [--vmstate PATH] [--order seq|interleave|shuffle|
                        reverse|cbw] [--seed N] [--per-extent 58|59]
                        [--no-trailing-extent] [--uuid HEX32] [--ctime N]
                        [--blob-pad N] [--break KIND]...
    vmagen.py corrupt IN OUT --break KIND [--break KIND]...
    vmagen.py dump IN
    vmagen.py breaks
NAMEs may use backslash escapes (e.g. '\\x01x').  OUT / IN may be '-'.
"""

import hashlib
import os
import random
import struct
import sys

CLUSTER_SIZE = 65536
BLOCK_SIZE = 4096
BLOCKS_PER_CLUSTER = 16
HEADER_FIXED = 12288
EXTENT_HEADER = 512
MAX_SLOTS = 59
WRITER_SLOTS = 58
MAX_BLOB = 65535
MAGIC = b"VMA\0"
EXT_MAGIC = b"VMAE"
VMSTATE = b"vmstate"

# Main header offsets
H_MAGIC, H_VERSION, H_UUID, H_CTIME, H_MD5 = 0, 4, 8, 24, 32
H_BLOB_OFF, H_BLOB_SIZE, H_HDR_SIZE = 48, 52, 56
H_RES1, H_CFG_NAMES, H_CFG_DATA, H_RES2, H_DEV_INFO = 60, 2044, 3068, 4092, 4096
# Extent header offsets
E_MAGIC, E_RES, E_COUNT, E_UUID, E_MD5, E_INFO = 0, 4, 6, 8, 24, 40

ZERO_BLOCK = bytes(BLOCK_SIZE)

BREAKS = {
    # main header
    "bad-magic": "main header magic is not 'VMA\\0'",
    "version-2": "main header version is 2",
    "header-md5": "main header MD5 does not match",
    "header-size-small": "header_size below 12288",
    "header-size-unaligned": "header_size not a multiple of 512",
    "header-size-huge": "header_size far too large (~2 GiB)",
    "blob-offset-low": "blob_buffer_offset inside the fixed header",
    "blob-offset-high": "blob_buffer_offset past header_size",
    "blob-size-high": "blob_buffer_size runs past header_size",
    "blob-ptr-misaligned": "device 1's name pointer is not on a blob start",
    "config-ptr-misaligned": "config 0's data pointer is not on a blob start",
    "name-no-nul": "device 1's name blob lacks its NUL",
    "config-name-no-nul": "config 0's name blob lacks its NUL",
    "config-no-data": "config 0 has a name pointer but no data pointer",
    "header-reserved": "non-zero byte in the main header reserved area (60)",
    "header-reserved-4092": "non-zero byte in the reserved u32 at 4092",
    "devinfo-reserved": "non-zero reserved bytes in device 1's dev_info",
    "dev-id-0": "a device in dev_info slot 0",
    "dup-devname": "two devices with the same name",
    "dup-cfgname": "two configs with the same name",
    "devname=NAME": "device 1 is called NAME (backslash escapes allowed)",
    "cfgname=NAME": "config 0 is called NAME (backslash escapes allowed)",
    # extents
    "extent-magic": "first extent's magic is not 'VMAE'",
    "extent-md5": "first extent's MD5 does not match",
    "extent-uuid": "first extent's uuid differs from the archive's",
    "extent-reserved": "first extent's reserved u16 is not zero",
    "blockinfo-reserved": "reserved bits of a used blockinfo are set",
    "unused-slot-nonzero": "an unused blockinfo slot (dev_id 0) is not zero",
    "block-count-high": "block_count is one more than the masks say",
    "block-count-low": "block_count is one less than the masks say",
    "unknown-dev-id": "a slot names a dev_id that is not in the header",
    "cluster-past-end": "a slot names a cluster past the device end",
    "duplicate-cluster": "a disk cluster appears twice",
    "missing-cluster": "a disk cluster never appears",
    "vmstate-order": "vmstate clusters 0 and 1 swapped",
    "huge-device": "an extra device 'huge' of 2^48 bytes (the maximum) "
                   "whose clusters are all missing",
    "too-large-device": "an extra device 'huge' of 2^48 + 1 bytes "
                        "(more than 2^32 clusters), clusters all missing",
    "tail-garbage": "non-zero bytes past the device end inside the last "
                    "stored block of a disk",
    "mask-past-end": "a block wholly past the device end is stored "
                     "(non-zero data)",
    # truncation
    "trunc-empty": "archive of 0 bytes",
    "trunc-header-magic": "cut after 2 bytes",
    "trunc-header-fixed": "cut inside the fixed header (at 6000)",
    "trunc-header-blobs": "cut inside the blob buffer part of the header",
    "trunc-extent-header": "cut inside the first extent header",
    "trunc-extent-data": "cut inside the first extent's data",
    "trunc-between-extents": "cut exactly after the first extent that "
                             "holds clusters (more clusters follow)",
}


class GenError(Exception):
    """The requested archive or break is not possible."""


class Slot:
    """One blockinfo slot and the blocks stored for it."""

    __slots__ = ("dev_id", "cluster", "mask", "data", "reserved")

    def __init__(self, dev_id, cluster, mask, data=b"", reserved=0):
        self.dev_id = dev_id
        self.cluster = cluster
        self.mask = mask
        self.data = data
        self.reserved = reserved

    def copy(self):
        return Slot(self.dev_id, self.cluster, self.mask, self.data,
                    self.reserved)

    def blockinfo(self):
        return ((self.mask << 48) | (self.reserved << 40) |
                (self.dev_id << 32) | self.cluster)

    def __repr__(self):
        return "Slot(dev=%d c=%d mask=%04x)" % (self.dev_id, self.cluster,
                                                 self.mask)


class Archive:
    """What an archive holds, before serialization."""

    def __init__(self, uuid=None, ctime=None):
        self.uuid = uuid if uuid is not None else os.urandom(16)
        self.ctime = ctime if ctime is not None else 1434369600
        self.configs = []   # [(name bytes, data bytes)]
        self.devices = []   # [(dev_id, name bytes, size)]
        self.slots = []     # flat list of Slot in archive order
        self.per_extent = WRITER_SLOTS
        self.trailing_extent = True
        self.blob_pad = 0       # bytes after the last blob, in its size
        self.blob_pad_fill = 0  # the last of them; the others are zero

    def device(self, dev_id):
        for d in self.devices:
            if d[0] == dev_id:
                return d
        return None


def _bytes(s):
    return s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s


def clusters_of(size):
    return (size + CLUSTER_SIZE - 1) // CLUSTER_SIZE


def cluster_slot(dev_id, cluster, data, size):
    """The slot of cluster @cluster of a device whose content is @data."""
    mask = 0
    stored = []
    base = cluster * CLUSTER_SIZE
    for b in range(BLOCKS_PER_CLUSTER):
        off = base + b * BLOCK_SIZE
        if off >= size:
            break           # wholly past the device end: bit stays clear
        blk = data[off:min(off + BLOCK_SIZE, size)]
        if len(blk) < BLOCK_SIZE:
            blk = bytes(blk) + bytes(BLOCK_SIZE - len(blk))
        if blk != ZERO_BLOCK:
            mask |= 1 << b
            stored.append(bytes(blk))
    return Slot(dev_id, cluster, mask, b"".join(stored))


def _order(per_dev, order, rng):
    """Merge the per-device slot lists (each in cluster order)."""
    if order == "seq":
        return [s for lst in per_dev for s in lst]
    if order == "interleave":
        out = []
        i = 0
        while True:
            added = False
            for lst in per_dev:
                if i < len(lst):
                    out.append(lst[i])
                    added = True
            if not added:
                return out
            i += 1
    if order == "reverse":
        out = [s for lst in reversed(per_dev) for s in reversed(lst)]
    elif order == "shuffle":
        out = [s for lst in per_dev for s in lst]
        rng.shuffle(out)
    elif order == "cbw":
        # Sequential backup, with some clusters copied early because the
        # guest wrote to them (copy-before-write)
        out = [s for lst in per_dev for s in lst]
        early = [s for s in out if rng.random() < 0.15]
        rng.shuffle(early)
        ids = set(id(s) for s in early)
        out = early + [s for s in out if id(s) not in ids]
    else:
        raise GenError("unknown order %r" % order)
    # vmstate clusters must stay in order: give the positions vmstate slots
    # landed on back to them in ascending cluster order
    vm = [i for i, s in enumerate(out) if s.is_vmstate_slot]
    vm_slots = sorted((out[i] for i in vm), key=lambda s: s.cluster)
    for i, s in zip(vm, vm_slots):
        out[i] = s
    return out


class _VSlot(Slot):
    __slots__ = ("is_vmstate_slot",)


def _mark(slots, is_vm):
    out = []
    for s in slots:
        v = _VSlot(s.dev_id, s.cluster, s.mask, s.data, s.reserved)
        v.is_vmstate_slot = is_vm
        out.append(v)
    return out


def uuid_str(u):
    h = u.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def chain_blob(uuid, chain=(), disks=(), extra=""):
    """The backup-chain config blob (docs/specs/vma_spec.txt) of an archive
    with @uuid (16 bytes) after the archives @chain (uuids, full first;
    empty for a full archive).  disks: [(name, "full"|"incremental",
    reason or None)].  extra: lines added as they are."""
    lines = ["format=1", "uuid=" + uuid_str(uuid), "depth=%d" % len(chain)]
    if chain:
        lines.append("base=" + uuid_str(chain[-1]))
        lines.append("chain=" + ",".join(uuid_str(u) for u in chain))
    for name, mode, reason in disks:
        lines.append("disk.%s=%s%s" % (name, mode,
                                       ":" + reason if reason else ""))
    return ("\n".join(lines) + "\n" + extra).encode()


def build(disks=(), configs=(), vmstate=None, order="seq", seed=0,
          per_extent=WRITER_SLOTS, trailing_extent=True, uuid=None,
          ctime=None, blob_pad=0, blob_pad_fill=0, keep=None,
          vmstate_size=None):
    """Build an Archive.

    keep: {disk name: clusters} stores only those clusters of those disks
    (an incremental archive: the others are absent).

    disks: [(name, data)] or [(name, data, size)]; data is bytes (shorter
    than size means zero-padded).  configs: [(name, data)].  vmstate: bytes
    or None (its size in the header is its exact length, or vmstate_size:
    a live backup declares an upper bound and ends the stream before it).
    blob_pad: bytes
    of padding after the last blob, the last one blob_pad_fill.
    """
    if per_extent not in range(1, MAX_SLOTS + 1):
        raise GenError("per_extent must be 1..59")
    rng = random.Random(seed)
    a = Archive(uuid=uuid, ctime=ctime)
    a.per_extent = per_extent
    a.trailing_extent = trailing_extent
    a.blob_pad, a.blob_pad_fill = blob_pad, blob_pad_fill
    for name, data in configs:
        data = _bytes(data)
        if len(data) > MAX_BLOB:
            raise GenError("config %r larger than 65535 bytes" % (name,))
        a.configs.append((_bytes(name), data))
    per_dev = []
    dev_id = 1
    for d in disks:
        name, data = d[0], d[1]
        size = d[2] if len(d) > 2 else len(data)
        if size <= 0:
            raise GenError("disk %r: size must be > 0" % (name,))
        a.devices.append((dev_id, _bytes(name), size))
        wanted = range(clusters_of(size))
        if keep is not None and name in keep:
            wanted = sorted(set(keep[name]))
        per_dev.append(_mark([cluster_slot(dev_id, c, data, size)
                              for c in wanted], False))
        dev_id += 1
    if vmstate is not None:
        if len(vmstate) == 0:
            raise GenError("vmstate must not be empty")
        if vmstate_size is not None and vmstate_size < len(vmstate):
            raise GenError("vmstate_size below the stream's length")
        a.devices.append((dev_id, VMSTATE, vmstate_size or len(vmstate)))
        per_dev.append(_mark([cluster_slot(dev_id, c, vmstate, len(vmstate))
                              for c in range(clusters_of(len(vmstate)))],
                             True))
        dev_id += 1
    if dev_id > 256:
        raise GenError("too many devices")
    a.slots = [Slot(s.dev_id, s.cluster, s.mask, s.data)
               for s in _order(per_dev, order, rng)]
    return a


# ---------------------------------------------------------------------------
# Serialization


def _md5_with_hole(buf, off):
    h = hashlib.md5()
    h.update(bytes(buf[:off]))
    h.update(bytes(16))
    h.update(bytes(buf[off + 16:]))
    return h.digest()


def _round512(n):
    return (n + 511) // 512 * 512


def _unescape(s):
    return s.encode("latin-1", "backslashreplace").decode(
        "unicode_escape").encode("latin-1")


def _split_breaks(breaks):
    kinds = set()
    devname = cfgname = None
    for b in breaks or ():
        if b.startswith("devname="):
            devname = _unescape(b[len("devname="):])
        elif b.startswith("cfgname="):
            cfgname = _unescape(b[len("cfgname="):])
        elif b in BREAKS:
            kinds.add(b)
        else:
            raise GenError("unknown break %r (see `vmagen.py breaks`)" % b)
    return kinds, devname, cfgname


def _first_disk(a):
    for d in a.devices:
        if d[1] != VMSTATE:
            return d
    raise GenError("this break needs a disk")


def _model_breaks(a, kinds, devname, cfgname):
    """Breaks that change what the archive holds.  Returns a new Archive."""
    b = Archive(a.uuid, a.ctime)
    b.per_extent, b.trailing_extent = a.per_extent, a.trailing_extent
    b.blob_pad, b.blob_pad_fill = a.blob_pad, a.blob_pad_fill
    b.configs = list(a.configs)
    b.devices = list(a.devices)
    b.slots = [s.copy() for s in a.slots]
    if devname is not None:
        if not b.devices:
            raise GenError("devname= needs a device")
        d = b.devices[0]
        b.devices[0] = (d[0], devname, d[2])
    if cfgname is not None:
        if not b.configs:
            raise GenError("cfgname= needs a config")
        b.configs[0] = (cfgname, b.configs[0][1])
    if "dup-devname" in kinds:
        disk = _first_disk(b)
        size = BLOCK_SIZE
        new_id = max(d[0] for d in b.devices) + 1
        b.devices.append((new_id, disk[1], size))
        b.slots.append(Slot(new_id, 0, 0))
    if "dup-cfgname" in kinds:
        if not b.configs:
            raise GenError("dup-cfgname needs a config")
        b.configs.append((b.configs[0][0], b"other data\n"))
    if "dev-id-0" in kinds:
        # renumber every device one down so that the first sits in slot 0
        if not b.devices:
            raise GenError("dev-id-0 needs a device")
        b.devices = [(d[0] - 1, d[1], d[2]) for d in b.devices]
        for s in b.slots:
            s.dev_id -= 1
    disk_slots = [s for s in b.slots
                  if b.device(s.dev_id) and b.device(s.dev_id)[1] != VMSTATE]
    if "missing-cluster" in kinds:
        if not disk_slots:
            raise GenError("missing-cluster needs a disk")
        victim = disk_slots[len(disk_slots) // 2]
        b.slots = [s for s in b.slots if s is not victim]
    if "duplicate-cluster" in kinds:
        if not disk_slots:
            raise GenError("duplicate-cluster needs a disk")
        b.slots.append(disk_slots[0].copy())
    if "unknown-dev-id" in kinds:
        used = set(d[0] for d in b.devices)
        unknown = next(i for i in range(200, 256) if i not in used)
        b.slots.append(Slot(unknown, 0, 0))
    if "cluster-past-end" in kinds:
        disk = _first_disk(b)
        b.slots.append(Slot(disk[0], clusters_of(disk[2]), 0))
    if "huge-device" in kinds or "too-large-device" in kinds:
        new_id = max([d[0] for d in b.devices] + [0]) + 1
        size = 1 << 48
        if "too-large-device" in kinds:
            size += 1
        b.devices.append((new_id, b"huge", size))
    if "tail-garbage" in kinds:
        cands = [d for d in b.devices if d[1] != VMSTATE and d[2] % BLOCK_SIZE]
        for dev_id, _, size in cands:
            last = clusters_of(size) - 1
            blk = (size % CLUSTER_SIZE) // BLOCK_SIZE
            s = next(s for s in b.slots
                     if s.dev_id == dev_id and s.cluster == last)
            if s.mask & (1 << blk):
                pos = bin(s.mask & ((1 << blk) - 1)).count("1") * BLOCK_SIZE
                keep = size % BLOCK_SIZE
                s.data = (s.data[:pos + keep] +
                          b"\xee" * (BLOCK_SIZE - keep) +
                          s.data[pos + BLOCK_SIZE:])
                break
        else:
            raise GenError("tail-garbage needs a disk whose size is not a "
                           "multiple of 4096 with its last block stored")
    if "mask-past-end" in kinds:
        cands = [d for d in b.devices if d[1] != VMSTATE and
                 0 < d[2] % CLUSTER_SIZE <= CLUSTER_SIZE - BLOCK_SIZE]
        if not cands:
            raise GenError("mask-past-end needs a disk with a block wholly "
                           "past its end")
        dev_id, _, size = cands[0]
        last = clusters_of(size) - 1
        s = next(s for s in b.slots
                 if s.dev_id == dev_id and s.cluster == last)
        s.mask |= 1 << (BLOCKS_PER_CLUSTER - 1)   # highest: data goes last
        s.data = s.data + b"\xee" * BLOCK_SIZE
    if "vmstate-order" in kinds:
        vm = [i for i, s in enumerate(b.slots)
              if b.device(s.dev_id) and b.device(s.dev_id)[1] == VMSTATE]
        if len(vm) < 2:
            raise GenError("vmstate-order needs 2 vmstate clusters")
        i, j = vm[0], vm[1]
        b.slots[i], b.slots[j] = b.slots[j], b.slots[i]
    return b


def _header(a, kinds):
    blobs = bytearray(b"\0")     # position 0 is never used

    def add(data):
        if len(data) > MAX_BLOB:
            raise GenError("blob larger than 65535 bytes")
        off = len(blobs)
        blobs.extend(struct.pack("<H", len(data)))
        blobs.extend(data)
        return off

    cfg_ptrs = []
    for i, (name, data) in enumerate(a.configs):
        nul = b"" if (i == 0 and "config-name-no-nul" in kinds) else b"\0"
        cfg_ptrs.append((add(name + nul), add(data)))
    dev_ptrs = []
    for j, (dev_id, name, size) in enumerate(a.devices):
        nul = b"" if (j == 0 and "name-no-nul" in kinds) else b"\0"
        dev_ptrs.append((dev_id, add(name + nul), size))
    if len(cfg_ptrs) > 256:
        raise GenError("more than 256 configs")
    if a.blob_pad:
        blobs.extend(bytes(a.blob_pad))
        blobs[-1] = a.blob_pad_fill

    blob_size = len(blobs)
    header_size = HEADER_FIXED + _round512(blob_size)
    h = bytearray(header_size)
    h[H_MAGIC:H_MAGIC + 4] = MAGIC
    struct.pack_into(">I", h, H_VERSION, 1)
    h[H_UUID:H_UUID + 16] = a.uuid
    struct.pack_into(">q", h, H_CTIME, a.ctime)
    struct.pack_into(">III", h, H_BLOB_OFF, HEADER_FIXED, blob_size,
                     header_size)
    for i, (nptr, dptr) in enumerate(cfg_ptrs):
        struct.pack_into(">I", h, H_CFG_NAMES + 4 * i, nptr)
        struct.pack_into(">I", h, H_CFG_DATA + 4 * i, dptr)
    for dev_id, nptr, size in dev_ptrs:
        if not 0 <= dev_id <= 255:
            raise GenError("dev_id %d out of range" % dev_id)
        e = H_DEV_INFO + 32 * dev_id
        struct.pack_into(">I", h, e, nptr)
        struct.pack_into(">Q", h, e + 8, size)
    h[HEADER_FIXED:HEADER_FIXED + blob_size] = blobs

    # single-field breaks; the MD5 is computed afterwards
    if "bad-magic" in kinds:
        h[0:4] = b"VMB\0"
    if "version-2" in kinds:
        struct.pack_into(">I", h, H_VERSION, 2)
    if "header-size-small" in kinds:
        struct.pack_into(">I", h, H_HDR_SIZE, HEADER_FIXED - 512)
    if "header-size-unaligned" in kinds:
        struct.pack_into(">I", h, H_HDR_SIZE, header_size + 100)
    if "header-size-huge" in kinds:
        struct.pack_into(">I", h, H_HDR_SIZE, 0x7FFFFE00)
    if "blob-offset-low" in kinds:
        struct.pack_into(">I", h, H_BLOB_OFF, 4096)
    if "blob-offset-high" in kinds:
        struct.pack_into(">I", h, H_BLOB_OFF, header_size + 512)
    if "blob-size-high" in kinds:
        struct.pack_into(">I", h, H_BLOB_SIZE,
                         header_size - HEADER_FIXED + 1)
    if "blob-ptr-misaligned" in kinds:
        if not dev_ptrs:
            raise GenError("blob-ptr-misaligned needs a device")
        dev_id, nptr, _ = dev_ptrs[0]
        struct.pack_into(">I", h, H_DEV_INFO + 32 * dev_id, nptr + 1)
    if "config-ptr-misaligned" in kinds:
        if not cfg_ptrs:
            raise GenError("config-ptr-misaligned needs a config")
        struct.pack_into(">I", h, H_CFG_DATA, cfg_ptrs[0][1] + 1)
    if "config-no-data" in kinds:
        if not cfg_ptrs:
            raise GenError("config-no-data needs a config")
        struct.pack_into(">I", h, H_CFG_DATA, 0)
    if "header-reserved" in kinds:
        h[H_RES1 + 40] = 0x01
    if "header-reserved-4092" in kinds:
        h[H_RES2 + 3] = 0x01
    if "devinfo-reserved" in kinds:
        if not dev_ptrs:
            raise GenError("devinfo-reserved needs a device")
        h[H_DEV_INFO + 32 * dev_ptrs[0][0] + 5] = 0x01

    h[H_MD5:H_MD5 + 16] = _md5_with_hole(h, H_MD5)
    if "header-md5" in kinds:
        h[H_MD5 + 7] ^= 0xFF
    return bytes(h)


def _chunks(a):
    pe = a.per_extent
    slots = a.slots
    ext = [slots[i:i + pe] for i in range(0, len(slots), pe)]
    if a.trailing_extent and len(slots) % pe == 0:
        ext.append([])      # the reference writer's final (empty) extent
    return ext


def _extent(a, slots, index, kinds):
    h = bytearray(EXTENT_HEADER)
    h[E_MAGIC:E_MAGIC + 4] = EXT_MAGIC
    blocks = 0
    for i, s in enumerate(slots):
        struct.pack_into(">Q", h, E_INFO + 8 * i, s.blockinfo())
        blocks += bin(s.mask).count("1")
        if len(s.data) != bin(s.mask).count("1") * BLOCK_SIZE:
            raise GenError("slot %r: data does not match its mask" % s)
    struct.pack_into(">H", h, E_COUNT, blocks)
    h[E_UUID:E_UUID + 16] = a.uuid
    first = index == 0
    if first and "extent-magic" in kinds:
        h[0:4] = b"VMAX"
    if first and "extent-uuid" in kinds:
        h[E_UUID] ^= 0x55
    if first and "extent-reserved" in kinds:
        struct.pack_into(">H", h, E_RES, 1)
    if first and "blockinfo-reserved" in kinds:
        if not slots:
            raise GenError("blockinfo-reserved needs a cluster")
        bi = struct.unpack_from(">Q", h, E_INFO)[0] | (0x01 << 40)
        struct.pack_into(">Q", h, E_INFO, bi)
    if first and "unused-slot-nonzero" in kinds:
        if len(slots) >= MAX_SLOTS:
            raise GenError("unused-slot-nonzero needs a free slot")
        struct.pack_into(">Q", h, E_INFO + 8 * (MAX_SLOTS - 1), 5)
    if first and "block-count-high" in kinds:
        struct.pack_into(">H", h, E_COUNT, blocks + 1)
    if first and "block-count-low" in kinds:
        if blocks == 0:
            raise GenError("block-count-low needs stored blocks in extent 0")
        struct.pack_into(">H", h, E_COUNT, blocks - 1)
    h[E_MD5:E_MD5 + 16] = _md5_with_hole(h, E_MD5)
    if first and "extent-md5" in kinds:
        h[E_MD5 + 3] ^= 0xFF
    return bytes(h) + b"".join(s.data for s in slots)


def serialize_layout(a, breaks=()):
    """Serialize @a with @breaks.  Returns (bytes, header_size, extents)
    where extents is a list of (offset, length, slot count)."""
    kinds, devname, cfgname = _split_breaks(breaks)
    a = _model_breaks(a, kinds, devname, cfgname)
    out = [_header(a, kinds)]
    header_size = len(out[0])
    pos = header_size
    layout = []
    for i, slots in enumerate(_chunks(a)):
        e = _extent(a, slots, i, kinds)
        layout.append((pos, len(e), len(slots)))
        out.append(e)
        pos += len(e)
    data = b"".join(out)
    data = _truncate(data, header_size, layout, kinds)
    return data, header_size, layout


def _truncate(data, header_size, layout, kinds):
    cut = None
    if "trunc-empty" in kinds:
        cut = 0
    if "trunc-header-magic" in kinds:
        cut = 2
    if "trunc-header-fixed" in kinds:
        cut = 6000
    if "trunc-header-blobs" in kinds:
        cut = header_size - 10
    if "trunc-extent-header" in kinds:
        if not layout:
            raise GenError("trunc-extent-header needs an extent")
        cut = layout[0][0] + 200
    if "trunc-extent-data" in kinds:
        with_data = [e for e in layout if e[1] > EXTENT_HEADER]
        if not with_data:
            raise GenError("trunc-extent-data needs stored blocks")
        off, ln, _ = with_data[0]
        cut = off + EXTENT_HEADER + (ln - EXTENT_HEADER) // 2
    if "trunc-between-extents" in kinds:
        full = [i for i, e in enumerate(layout) if e[2] > 0]
        if len(full) < 2:
            raise GenError("trunc-between-extents needs two extents that "
                           "hold clusters")
        off, ln, _ = layout[full[0]]
        cut = off + ln
    return data if cut is None else data[:cut]


def serialize(a, breaks=()):
    return serialize_layout(a, breaks)[0]


def write_archive(path, disks=(), configs=(), vmstate=None, breaks=(),
                  **kw):
    """build() + serialize() into the file @path; returns the bytes."""
    data = serialize(build(disks, configs, vmstate, **kw), breaks)
    with open(path, "wb") as f:
        f.write(data)
    return data


# ---------------------------------------------------------------------------
# Parsing (to inspect archives written by others, and to corrupt them)


class ParseError(Exception):
    pass


def parse(data):
    """Parse a complete archive strictly.  Returns a dict:
    uuid, ctime, version, blob_offset, blob_size, header_size, header_md5_ok,
    configs [(name, data)], devices [(dev_id, name, size)],
    extents [{offset, block_count, md5_ok, uuid, reserved, slots
              [(mask, reserved, dev_id, cluster)], data}]."""
    if len(data) < HEADER_FIXED:
        raise ParseError("shorter than the fixed header")
    if data[0:4] != MAGIC:
        raise ParseError("bad magic")
    version, = struct.unpack_from(">I", data, H_VERSION)
    blob_off, blob_size, header_size = struct.unpack_from(">III", data,
                                                          H_BLOB_OFF)
    if header_size < HEADER_FIXED or header_size % 512 or \
            header_size > len(data):
        raise ParseError("bad header_size %d" % header_size)
    if blob_off < HEADER_FIXED or blob_off + blob_size > header_size:
        raise ParseError("blob buffer out of range")
    hdr = data[:header_size]
    info = {
        "version": version,
        "uuid": hdr[H_UUID:H_UUID + 16],
        "ctime": struct.unpack_from(">q", hdr, H_CTIME)[0],
        "blob_offset": blob_off,
        "blob_size": blob_size,
        "header_size": header_size,
        "header_md5_ok": _md5_with_hole(hdr, H_MD5) ==
        hdr[H_MD5:H_MD5 + 16],
        "reserved_ok": not any(hdr[H_RES1:H_CFG_NAMES]) and
        not any(hdr[H_RES2:H_DEV_INFO]),
    }
    blobs = hdr[blob_off:blob_off + blob_size]
    starts = set()
    pos = 1
    while pos < blob_size:
        if pos + 2 > blob_size:
            if blobs[pos] == 0:
                break           # zero padding, an odd count of it
            raise ParseError("blob length past the buffer end")
        ln, = struct.unpack_from("<H", blobs, pos)
        if pos + 2 + ln > blob_size:
            raise ParseError("blob past the buffer end")
        starts.add(pos)
        pos += 2 + ln

    def blob(ptr, name):
        if ptr not in starts:
            raise ParseError("pointer %d not on a blob start" % ptr)
        ln, = struct.unpack_from("<H", blobs, ptr)
        b = blobs[ptr + 2:ptr + 2 + ln]
        if name:
            if not b or b[-1] != 0 or 0 in b[:-1]:
                raise ParseError("bad name blob at %d" % ptr)
            b = b[:-1]
        return bytes(b)

    configs = []
    for i in range(256):
        n, = struct.unpack_from(">I", hdr, H_CFG_NAMES + 4 * i)
        d, = struct.unpack_from(">I", hdr, H_CFG_DATA + 4 * i)
        if n and d:
            configs.append((blob(n, True), blob(d, False)))
        elif n or d:
            raise ParseError("config slot %d half used" % i)
    devices = []
    for dev_id in range(256):
        e = H_DEV_INFO + 32 * dev_id
        n, = struct.unpack_from(">I", hdr, e)
        size, = struct.unpack_from(">Q", hdr, e + 8)
        if any(hdr[e + 4:e + 8]) or any(hdr[e + 16:e + 32]):
            info["reserved_ok"] = False
        if size:
            if dev_id == 0:
                raise ParseError("dev_id 0 used")
            devices.append((dev_id, blob(n, True), size))
    info["configs"] = configs
    info["devices"] = devices
    extents = []
    pos = header_size
    while pos < len(data):
        if pos + EXTENT_HEADER > len(data):
            raise ParseError("truncated extent header at %d" % pos)
        eh = data[pos:pos + EXTENT_HEADER]
        if eh[0:4] != EXT_MAGIC:
            raise ParseError("bad extent magic at %d" % pos)
        count, = struct.unpack_from(">H", eh, E_COUNT)
        slots = []
        for i in range(MAX_SLOTS):
            bi, = struct.unpack_from(">Q", eh, E_INFO + 8 * i)
            if bi:
                slots.append((bi >> 48, (bi >> 40) & 0xFF, (bi >> 32) & 0xFF,
                              bi & 0xFFFFFFFF))
        end = pos + EXTENT_HEADER + count * BLOCK_SIZE
        if end > len(data):
            raise ParseError("truncated extent data at %d" % pos)
        extents.append({
            "offset": pos,
            "block_count": count,
            "reserved": struct.unpack_from(">H", eh, E_RES)[0],
            "uuid": eh[E_UUID:E_UUID + 16],
            "md5_ok": _md5_with_hole(eh, E_MD5) == eh[E_MD5:E_MD5 + 16],
            "slots": slots,
            "data": data[pos + EXTENT_HEADER:end],
        })
        pos = end
    info["extents"] = extents
    return info


def archive_from_bytes(data):
    """An Archive with the content of @data (for corrupt())."""
    info = parse(data)
    a = Archive(uuid=bytes(info["uuid"]), ctime=info["ctime"])
    a.configs = list(info["configs"])
    a.devices = list(info["devices"])
    a.slots = []
    for e in info["extents"]:
        pos = 0
        for mask, res, dev_id, cluster in e["slots"]:
            n = bin(mask).count("1") * BLOCK_SIZE
            a.slots.append(Slot(dev_id, cluster, mask,
                                bytes(e["data"][pos:pos + n]), res))
            pos += n
    counts = [len(e["slots"]) for e in info["extents"]]
    a.per_extent = max(counts + [1])
    a.trailing_extent = bool(counts) and (counts[-1] == 0)
    return a


def extract_devices(data):
    """Rebuild every device's bytes from an archive: {name: bytes}."""
    info = parse(data)
    devs = {d[0]: (d[1], d[2]) for d in info["devices"]}
    out = {d[1]: bytearray(d[2]) for d in info["devices"]}
    for e in info["extents"]:
        pos = 0
        for mask, _res, dev_id, cluster in e["slots"]:
            name, size = devs[dev_id]
            buf = out[name]
            for b in range(BLOCKS_PER_CLUSTER):
                if mask & (1 << b):
                    off = cluster * CLUSTER_SIZE + b * BLOCK_SIZE
                    blk = e["data"][pos:pos + BLOCK_SIZE]
                    pos += BLOCK_SIZE
                    if off < size:
                        n = min(BLOCK_SIZE, size - off)
                        buf[off:off + n] = blk[:n]
    return {k: bytes(v) for k, v in out.items()}


def corrupt(data, breaks):
    """Re-serialize the archive @data with @breaks (a kind or a list)."""
    if isinstance(breaks, str):
        breaks = [breaks]
    return serialize(archive_from_bytes(data), breaks)


# ---------------------------------------------------------------------------
# CLI


def _read(path):
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def _write(path, data):
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        with open(path, "wb") as f:
            f.write(data)


def _name_path(arg):
    if "=" not in arg:
        raise SystemExit("expected NAME=PATH, got %r" % arg)
    name, path = arg.split("=", 1)
    return _unescape(name), path


def main(argv):
    import argparse
    p = argparse.ArgumentParser(prog="vmagen.py", description=__doc__,
                                formatter_class=argparse.
                                RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("out")
    w.add_argument("--disk", action="append", default=[])
    w.add_argument("--config", action="append", default=[])
    w.add_argument("--vmstate")
    w.add_argument("--order", default="seq",
                   choices=["seq", "interleave", "shuffle", "reverse", "cbw"])
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--per-extent", type=int, default=WRITER_SLOTS)
    w.add_argument("--no-trailing-extent", action="store_true")
    w.add_argument("--uuid")
    w.add_argument("--ctime", type=int)
    w.add_argument("--blob-pad", type=int, default=0)
    w.add_argument("--break", dest="breaks", action="append", default=[])
    c = sub.add_parser("corrupt")
    c.add_argument("inp")
    c.add_argument("out")
    c.add_argument("--break", dest="breaks", action="append", required=True)
    d = sub.add_parser("dump")
    d.add_argument("inp")
    sub.add_parser("breaks")
    args = p.parse_args(argv)

    try:
        if args.cmd == "breaks":
            for k, v in BREAKS.items():
                print("%-24s %s" % (k, v))
        elif args.cmd == "write":
            disks = [(n, _read(path)) for n, path in map(_name_path,
                                                         args.disk)]
            configs = [(n, _read(path)) for n, path in map(_name_path,
                                                           args.config)]
            vmstate = _read(args.vmstate) if args.vmstate else None
            a = build(disks, configs, vmstate, order=args.order,
                      seed=args.seed, per_extent=args.per_extent,
                      trailing_extent=not args.no_trailing_extent,
                      uuid=bytes.fromhex(args.uuid) if args.uuid else None,
                      ctime=args.ctime, blob_pad=args.blob_pad)
            _write(args.out, serialize(a, args.breaks))
        elif args.cmd == "corrupt":
            _write(args.out, corrupt(_read(args.inp), args.breaks))
        elif args.cmd == "dump":
            info = parse(_read(args.inp))
            for k in ("version", "ctime", "blob_offset", "blob_size",
                      "header_size", "header_md5_ok", "reserved_ok"):
                print("%s: %s" % (k, info[k]))
            print("uuid: %s" % info["uuid"].hex())
            for n, data in info["configs"]:
                print("config %r: %d bytes" % (n, len(data)))
            for dev_id, n, size in info["devices"]:
                print("device %d %r: %d bytes" % (dev_id, n, size))
            for e in info["extents"]:
                print("extent @%d: %d slots, %d blocks, md5 %s: %s" % (
                    e["offset"], len(e["slots"]), e["block_count"],
                    "ok" if e["md5_ok"] else "BAD",
                    " ".join("d%dc%d/%04x" % (s[2], s[3], s[0])
                             for s in e["slots"])))
    except (GenError, ParseError, OSError) as e:
        print("vmagen.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
