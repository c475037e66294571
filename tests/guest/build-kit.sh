#!/bin/bash
# Build the guest kit: a Debian kernel and an initramfs to boot real Linux
# guests in the tests, the demo and the benchmarks.
#
#   tests/guest/build-kit.sh        last line: "kit dir: <dir>"
#
# <dir> holds vmlinuz and initrd.img.  Made from Debian packages only: the
# kernel package linux-image-amd64 currently depends on and busybox-static,
# fetched with `apt-get download` and unpacked with `dpkg-deb -x` (no
# install hooks run), plus fswork/blkwork (this directory) compiled with
# `gcc -static`.  The initramfs holds busybox, those two programs, /init and
# the modules for virtio-pci, virtio-blk, virtio-scsi (+ sd_mod) and ext4,
# in the load order modules.dep gives.
#
# Cached in $GUEST_KIT_CACHE (default /var/tmp/vma-guest-kit), keyed by a
# hash of the package versions and of this directory's files: rebuilt only
# when they change (a rebuild takes ~20 s, most of it the kernel download).
# Installs what it needs (gcc, libc6-dev, kmod, cpio, e2fsprogs) as root.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${GUEST_KIT_CACHE:-/var/tmp/vma-guest-kit}
say() { echo "build-kit: $*" >&2; }

# Build tools; e2fsprogs is for the callers (mkfs.ext4 on the host)
TOOLS=(gcc libc6-dev kmod cpio e2fsprogs)
missing=()
for p in "${TOOLS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi

candidate() { apt-cache show --no-all-versions "$1" | sed -n 's/^Version: //p' | head -n 1; }
# The flavour's meta package names the current ABI's image package
KPKG=$(apt-cache depends linux-image-amd64 |
       sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
[ -n "$KPKG" ] || { say "apt-cache has no linux-image-amd64 (apt-get update?)"; exit 1; }
KVER=$(candidate "$KPKG")
BBVER=$(candidate busybox-static)
KEY=$( { echo "$KPKG $KVER busybox-static $BBVER"
         cd "$HERE" && sha256sum build-kit.sh init ./*.c ./*.h; } |
       sha256sum | cut -c1-16)
KIT=$CACHE/$KEY
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9          # a concurrent build finishes first
if [ -f "$KIT/initrd.img" ] && [ -f "$KIT/vmlinuz" ]; then
    echo "kit dir: $KIT"
    exit 0
fi

say "building $KIT ($KPKG $KVER, busybox-static $BBVER)"
mkdir -p "$CACHE/debs"
BUILD=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
# apt-get download writes into the current directory, as user _apt when
# it may (else it warns and downloads unsandboxed)
DL=$BUILD/download
mkdir -p "$DL"
chmod 755 "$BUILD"
id _apt >/dev/null 2>&1 && chown _apt "$DL"
for p in "$KPKG=$KVER" "busybox-static=$BBVER"; do
    v=${p#*=}
    ls "$CACHE/debs/${p%%=*}_${v//:/%3a}_"*.deb >/dev/null 2>&1 && continue
    (cd "$DL" && apt-get download -q "$p" >&2)
done
find "$DL" -name '*.deb' -exec mv {} "$CACHE/debs/" \;
# Only the versions wanted now: drop older downloads
for deb in "$CACHE"/debs/*.deb; do
    case $(basename "$deb") in
        "${KPKG}_${KVER//:/%3a}_"*|"busybox-static_${BBVER//:/%3a}_"*) ;;
        *) rm -f "$deb" ;;
    esac
done
dpkg-deb -x "$CACHE/debs/${KPKG}_${KVER//:/%3a}_amd64.deb" "$BUILD/kernel"
dpkg-deb -x "$CACHE/debs/busybox-static_${BBVER//:/%3a}_amd64.deb" "$BUILD/busybox"

KREL=${KPKG#linux-image-}
MODDIR=lib/modules/$KREL
# The package ships no modules.dep (its postinst runs depmod): make one
depmod -b "$BUILD/kernel" "$KREL"

# The modules we need.  crc32c_generic first: ext4 and jbd2 ask the crypto
# API for "crc32c" at load time (a softdep, not in modules.dep).
WANT=(crc32c_generic virtio_pci virtio_blk virtio_scsi sd_mod ext4)
declare -A DEPS=() DONE=()
while IFS=: read -r mod deps; do
    DEPS[$mod]=$deps
done <"$BUILD/kernel/$MODDIR/modules.dep"
ORDER=()
# Depth-first: every module after the modules it depends on
add_module() {
    local mod=$1 dep
    [ -n "${DONE[$mod]:-}" ] && return
    DONE[$mod]=1
    for dep in ${DEPS[$mod]}; do add_module "$dep"; done
    ORDER+=("$mod")
}
for name in "${WANT[@]}"; do
    path=$(printf '%s\n' "${!DEPS[@]}" | grep -E "/$name\.ko(\.[a-z]+)?$" | head -n 1)
    [ -n "$path" ] || { say "module $name not in $KPKG"; exit 1; }
    add_module "$path"
done

ROOTFS=$BUILD/rootfs
mkdir -p "$ROOTFS"/{bin,dev,etc,lib/modules,mnt,proc,sys}
cp "$BUILD/busybox/bin/busybox" "$ROOTFS/bin/busybox"
for mod in "${ORDER[@]}"; do
    mkdir -p "$ROOTFS/lib/modules/$(dirname "$mod")"
    cp "$BUILD/kernel/$MODDIR/$mod" "$ROOTFS/lib/modules/$mod"
done
printf '%s\n' "${ORDER[@]}" >"$ROOTFS/etc/modules.load"
for prog in fswork blkwork; do
    gcc -static -O2 -Wall -Wextra -Werror -o "$ROOTFS/bin/$prog" "$HERE/$prog.c"
done
strip "$ROOTFS"/bin/fswork "$ROOTFS"/bin/blkwork
install -m 755 "$HERE/init" "$ROOTFS/init"

mkdir -p "$BUILD/kit"
cp "$BUILD/kernel/boot/vmlinuz-$KREL" "$BUILD/kit/vmlinuz"
(cd "$ROOTFS" && find . | sort | cpio -o -H newc --quiet) | gzip -9 >"$BUILD/kit/initrd.img"
echo "$KPKG $KVER; busybox-static $BBVER; modules: ${ORDER[*]##*/}" >"$BUILD/kit/CONTENTS"
# Older kits go; the new one appears whole (rename)
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -regextype egrep \
     -regex '.*/[0-9a-f]{16}' -exec rm -rf {} +
mv "$BUILD/kit" "$KIT"
say "$(cat "$KIT/CONTENTS")"
echo "kit dir: $KIT"
