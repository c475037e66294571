#!/bin/bash
# Build QEMU as Debian ships it, without this series: the baseline the
# benchmarks compare blockdev-backup against ("stock"), beside the same
# command in the patched QEMU (which includes our block-copy changes).
#
#   scripts/qemu-build-stock.sh
#
# Run scripts/qemu-build.sh first: it fetches the source and makes the
# patched tree, whose commit tagged `pristine` is Debian's tree as
# extracted.  This checks that commit out as a git worktree in
# $QEMU_WORKDIR/stock and builds only qemu-system-x86_64 there, in a small
# configuration (no TCG: the benchmarks use the qtest accelerator), with
# ccache.  Progress goes to stderr; the binary's path is printed on stdout.
set -euo pipefail

WORKDIR=${QEMU_WORKDIR:-/var/tmp/vma-qemu}
TREE=$WORKDIR/qemu
STOCK=$WORKDIR/stock
LOG=$WORKDIR/logs/build-stock.log

say() { echo "qemu-build-stock: $*" >&2; }

git -C "$TREE" rev-parse -q --verify pristine >/dev/null ||
    { say "no patched tree with a 'pristine' tag in $TREE: run scripts/qemu-build.sh first"; exit 1; }
mkdir -p "$WORKDIR/logs"
if [ ! -d "$STOCK" ]; then
    say "worktree of 'pristine' in $STOCK"
    git -C "$TREE" worktree add --detach "$STOCK" pristine >&2
fi
if [ ! -f "$STOCK/build/build.ninja" ]; then
    say "configure (log: $LOG)"
    mkdir -p "$STOCK/build"
    (cd "$STOCK/build" &&
     ../configure --python=/usr/bin/python3 "--cc=ccache gcc" \
         --target-list=x86_64-softmmu --enable-kvm --disable-tcg \
         --disable-docs --disable-download --disable-install-blobs \
         --disable-tools) >"$LOG" 2>&1 ||
        { tail -20 "$LOG" >&2; say "configure failed"; exit 1; }
fi
say "ninja qemu-system-x86_64 (log: $LOG)"
ninja -C "$STOCK/build" qemu-system-x86_64 >>"$LOG" 2>&1 ||
    { tail -20 "$LOG" >&2; say "build failed"; exit 1; }
# Firmware: QEMU run from a build dir looks in build/qemu-bundle's data
# dir.  Link there what the patched build found (Debian's seabios and iPXE
# ROMs, the option ROMs it built): the same QEMU version.
datadir=$STOCK/build/qemu-bundle/usr/local/share/qemu
mkdir -p "$datadir"
for f in "$TREE"/build/qemu-bundle/usr/local/share/qemu/*.bin \
         /usr/share/seabios/*.bin /usr/lib/ipxe/qemu/*.rom; do
    [ -e "$f" ] && [ ! -e "$datadir/${f##*/}" ] && ln -s "$(readlink -f "$f")" "$datadir/${f##*/}"
done
echo "$STOCK/build/qemu-system-x86_64"
