#!/bin/bash
# Build the patched QEMU tree a second time, with clang and -Werror: clang
# runs QEMU's thread-safety analysis (-Wthread-safety: the GRAPH_RDLOCK,
# coroutine and lock annotations), which gcc does not.
#
#   scripts/qemu-build-clang.sh
#
# Run scripts/qemu-build.sh first: this builds the same tree (patches and
# overlay applied there) in its own build directory, $TREE/build-clang, in
# a smaller configuration (no TCG, no default devices: the block layer,
# the monitor, the tools and our code are all in it), with ccache.
# QEMU_CLANG_BUILD=full builds all of it; by default only the series' files.
# Progress goes to stderr; the last line on stdout is the build dir.
set -euo pipefail

WORKDIR=${QEMU_WORKDIR:-/var/tmp/vma-qemu}
TREE=$WORKDIR/qemu
BUILD=$TREE/build-clang
LOG=$WORKDIR/logs/build-clang.log
CC_NAME=clang-19        # clang <= 16 fails QEMU's TSA probe (cleanup attribute)

say() { echo "qemu-build-clang: $*" >&2; }

[ -x "$TREE/configure" ] || { say "no QEMU tree in $TREE: run scripts/qemu-build.sh first"; exit 1; }
# Installed here, not by install-qemu-deps.sh: that list is part of the
# main build's configure hash, and clang does not concern it
if ! command -v "$CC_NAME" >/dev/null; then
    say "installing $CC_NAME"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "$CC_NAME" >&2 || { apt-get update -q >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "$CC_NAME" >&2; }
fi
mkdir -p "$(dirname "$LOG")"
grep -qxF /build-clang/ "$TREE/.git/info/exclude" 2>/dev/null ||
    echo /build-clang/ >>"$TREE/.git/info/exclude"

ARGS=(--python=/usr/bin/python3 "--cc=ccache $CC_NAME" --enable-werror
      --target-list=x86_64-softmmu --without-default-devices
      --disable-tcg --enable-kvm --enable-tools --enable-fuse --enable-rbd
      --enable-linux-aio --disable-docs --disable-download
      --disable-install-blobs)
stamp=$BUILD/.vma-configure-stamp
hash=$(printf '%s\n' "${ARGS[@]}" | sha256sum | cut -d' ' -f1)
if [ ! -f "$BUILD/build.ninja" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ]; then
    mkdir -p "$BUILD"
    say "configure ${ARGS[*]}"
    if ! (cd "$BUILD" && ../configure "${ARGS[@]}") >"$LOG.configure" 2>&1; then
        tail -n 30 "$LOG.configure" >&2
        say "configure failed"
        exit 1
    fi
    echo "$hash" >"$stamp"
fi
grep -q -- '-Wthread-safety' "$BUILD/build.ninja" ||
    { say "configure did not enable -Wthread-safety"; exit 1; }
# What to build: by default the objects of every file the series adds or
# changes (the thread-safety analysis runs when a file is compiled; their
# generated headers come along), a few minutes cold; QEMU_CLANG_BUILD=full
# builds everything (about as long as the main build, cold).
targets=()
if [ "${QEMU_CLANG_BUILD:-series}" != full ]; then
    mapfile -t targets < <(ninja -C "$BUILD" -t targets all 2>/dev/null |
        grep -oE '^[^:]+\.c\.o' | sort -u |
        grep -E 'block_backup-vma|block_vma|_block_backup\.c|block_block-copy\.c|block_copy-before-write|[/_]job\.c|block_snapshot\.c|backup-hmp-cmds|migration_migration\.c|tools_vma_')
    [ ${#targets[@]} -gt 20 ] || { say "found only ${#targets[@]} objects of the series to build"; exit 1; }
fi
say "ninja -C $BUILD ${targets[*]:+(${#targets[@]} objects of the series)} (log: $LOG)"
if ! ninja -C "$BUILD" "${targets[@]}" >"$LOG" 2>&1; then
    grep -E 'error:|warning:' "$LOG" | sort -u | head -40 >&2
    say "build failed"
    exit 1
fi
echo "$BUILD"
