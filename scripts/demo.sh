#!/bin/bash
# The main job, end to end:
#  1. the archive tool: make sample disks, archive them with `vma create`,
#     check the archive, stream it through zstd, extract it and compare
#     every disk bit for bit;
#  2. a live backup of a real Linux guest (scripts/demo-live-backup.py):
#     build the patched QEMU and the guest kit (a Debian kernel, tests/guest),
#     boot a VM with ext4 on a qcow2 disk and a raw disk, back it up with the
#     QMP `backup` command into a zstd pipe while the guest writes files and
#     blocks, restore the archive, compare it with the disks at the backup
#     point, boot the restored VM and let it check every file and block.
# Installs and builds what it needs (the first QEMU build takes ~15 min).
# Prints the time of each step at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

scripts/install-deps.sh
scripts/build-standalone.sh plain
VMA=$ROOT/build/vma

WORK=$(mktemp -d /tmp/vma-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
step_name="" step_t0=0 timings=""
now() { date +%s.%N; }
# Close the running step (add its time to the list), start the next one
step() {
    [ -n "$step_name" ] &&
        timings+=$(awk -v a="$step_t0" -v b="$(now)" -v n="$step_name" \
                       'BEGIN { printf "  %7.1fs  %s", b - a, n }')$'\n'
    step_name=$* step_t0=$(now)
    [ -n "$step_name" ] && printf '\n### %s\n' "$*"
    return 0
}
demo_t0=$(now)

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

step "Live VM backup: build the patched QEMU (first time ~15 min)"
QEMU_BUILD=$("$ROOT/scripts/qemu-build.sh" | sed -n 's/^build dir: *//p')
[ -x "$QEMU_BUILD/vma" ] && VMA=$QEMU_BUILD/vma
step "Live VM backup of a real Linux guest, restore, boot the restored VM"
python3 "$ROOT/scripts/demo-live-backup.py" "$QEMU_BUILD" "$VMA" "$WORK"
step ""

printf '\nDemo timings:\n%s' "$timings"
awk -v a="$demo_t0" -v b="$(now)" 'BEGIN { printf "  %7.1fs  total\n", b - a }'
printf '\nDemo OK.\n'
