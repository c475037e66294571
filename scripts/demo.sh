#!/bin/bash
# The main job, end to end:
#  1. the archive tool: make sample disks, archive them with `vma create`,
#     check the archive, stream it through zstd, extract it and compare
#     every disk bit for bit;
#  2. a live backup: build the patched QEMU, start a VM with two disks,
#     back them up with the QMP `backup` command while the VM writes to them,
#     restore the archive and compare it with the disks as they were when
#     the backup started.
# Installs and builds what it needs (the first QEMU build takes ~10 min).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

scripts/install-deps.sh
scripts/build-standalone.sh plain
VMA=$ROOT/build/vma

WORK=$(mktemp -d /tmp/vma-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
step() { printf '\n### %s\n' "$*"; }

step "Sample VM: a config file and three disks of awkward sizes"
cat >qemu-server.conf <<'CONF'
name: demo
memory: 2048
scsi0: local:100/vm-100-disk-0.raw,size=64M
scsi1: local:100/vm-100-disk-1.raw,size=540672
CONF
truncate -s 64M disk0.raw                        # mostly holes
head -c 3M /dev/urandom | dd of=disk0.raw bs=1M seek=10 conv=notrunc status=none
head -c 100K /dev/urandom | dd of=disk0.raw bs=1K seek=60000 conv=notrunc status=none
head -c 540672 /dev/urandom >disk1.raw           # not a multiple of 64 KiB
head -c $((4 * 1048576 + 4608)) /dev/zero >disk2.raw
printf 'boot sector' | dd of=disk2.raw conv=notrunc status=none
ls -ls disk*.raw

step "vma create"
"$VMA" create -v demo.vma -c qemu-server.conf \
    -d format=raw:drive-scsi0=disk0.raw \
    -d format=raw:drive-scsi1=disk1.raw \
    -d format=raw:drive-scsi2=disk2.raw
ls -l demo.vma

step "vma list / vma config"
"$VMA" list demo.vma
"$VMA" config demo.vma

step "vma verify"
"$VMA" verify -v demo.vma

step "Compressed, as vzdump stores it: zstd, then extract from a pipe"
zstd -q -c demo.vma >demo.vma.zst
ls -l demo.vma.zst
zstd -q -d -c demo.vma.zst | "$VMA" extract -v - restored

step "Compare"
for i in 0 1 2; do
    cmp disk$i.raw restored/disk-drive-scsi$i.raw
    echo "disk$i.raw == restored/disk-drive-scsi$i.raw"
done
cmp qemu-server.conf restored/qemu-server.conf
ls -ls restored

step "A damaged archive is refused"
cp demo.vma broken.vma
truncate -s -70000 broken.vma
if "$VMA" verify broken.vma; then
    echo "ERROR: a truncated archive passed verify" >&2
    exit 1
fi

printf '\nArchive tool demo OK: created, verified, restored bit-identical.\n'

step "Live VM backup: build the patched QEMU (first time ~10 min)"
QEMU_BUILD=$("$ROOT/scripts/qemu-build.sh" | sed -n 's/^build dir: *//p')
[ -x "$QEMU_BUILD/vma" ] && VMA=$QEMU_BUILD/vma
python3 "$ROOT/scripts/demo-live-backup.py" "$QEMU_BUILD" "$VMA" "$WORK"

printf '\nDemo OK.\n'
