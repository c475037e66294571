#!/bin/bash
# Build Debian's QEMU 10.0 with this repository's patch series and overlay.
#
#   scripts/qemu-build.sh
#
# Phases (each timed; each skipped when it has nothing to do):
#   deps       scripts/install-qemu-deps.sh
#   fetch      `apt-get source qemu=<QEMU_VERSION>` into
#              $QEMU_WORKDIR/source/<version>/qemu-<upstream>/  (pristine tree,
#              Debian's patches applied by dpkg-source; never modified)
#   tree       $QEMU_WORKDIR/qemu: copy of the pristine tree (minus quilt's
#              .pc/), git commit "pristine" (tag `pristine`), then one commit
#              per patches/*.patch on top, as `git am` makes them.
#              Recreated only when the pristine version changes.  When
#              patches/ changes, the new commits are built in a private index
#              and the tree is `git reset --hard` to them: only files whose
#              content differs are rewritten, the rest keep their mtimes, so
#              ninja rebuilds only what the change touches.  Edits or commits
#              in the tree that are not in patches/ are built as they are, and
#              never discarded without QEMU_FORCE_RESET=1.
#   overlay    copy this repo's in-tree files (block/vma-*.c, include/...,
#              tools/vma/, ...) into the working tree with rsync --checksum
#              and WITHOUT preserving times: unchanged files are not touched,
#              changed ones get a fresh mtime.
#   configure  once, re-run only when the configure line or the tree changed
#   build      ninja, then make for pc-bios/optionrom (as QEMU's `make` does);
#              link Debian's seabios/ipxe and the option ROMs into
#              build/qemu-bundle, where QEMU run from the build dir looks
#
# Environment:
#   QEMU_WORKDIR          work dir (default /var/tmp/vma-qemu), outside the repo
#   QEMU_CONFIGURE_EXTRA  extra configure arguments (word-split)
#   QEMU_FORCE_RESET=1    discard edits/commits in the working tree that are
#                         not in patches/ when the tree has to be reset
#
# Progress goes to stderr; the build dir and binaries are printed on stdout.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORKDIR=${QEMU_WORKDIR:-/var/tmp/vma-qemu}
VERSION_FILE=$REPO/QEMU_VERSION          # the pinned Debian version, one place
TREE=$WORKDIR/qemu                       # working tree (git)
BUILD=$TREE/build
LOGDIR=$WORKDIR/logs
GIT_IDENT=(-c "user.name=VMA backup developers" -c "user.email=vma-backup@example.org")

# Where Debian's firmware packages put their images (seabios: BIOS + VGA BIOS)
FIRMWARE_DIRS=(/usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu)
CONFIGURE_ARGS=(
    --python=/usr/bin/python3           # Debian's python: imports the packaged meson
    "--cc=ccache gcc"                   # configure puts an explicit compiler in its
                                        # machine file: meson's ccache autodetection
                                        # does not apply, so name ccache here
    --target-list=x86_64-softmmu
    --enable-tools
    --enable-kvm
    --enable-tcg                        # real Linux guests: KVM here is nested and
                                        # boots no Debian kernel; iotests use qtest
    --enable-fuse                       # FUSE exports (vma mount)
    --enable-rbd                        # disks on Ceph RBD
    --enable-linux-aio
    --disable-docs
    --disable-download
    --disable-install-blobs
    # the +ds tree has no firmware blobs: use Debian's (seabios), like debian/rules
    "--firmwarepath=$(IFS=:; echo "${FIRMWARE_DIRS[*]}")"
)
# shellcheck disable=SC2206
CONFIGURE_ARGS+=(${QEMU_CONFIGURE_EXTRA:-})

say() { echo "qemu-build: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
loud() {
    {
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        for l in "$@"; do echo "!!! $l"; done
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    } >&2
}

TIMINGS=()
phase() { PHASE=$1; PHASE_T0=$EPOCHREALTIME; }
phase_done() {
    local d
    d=$(awk -v a="$PHASE_T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    TIMINGS+=("$(printf '%-9s %7ss  %s' "$PHASE" "$d" "${1:-}")")
    say "$PHASE: ${d}s${1:+ - $1}"
}
show_log_tail() { say "last lines of $1:"; tail -n "${2:-40}" "$1" >&2; }

case "$WORKDIR/" in
    "$REPO"/*) die "QEMU_WORKDIR ($WORKDIR) must be outside the repository ($REPO)" ;;
esac
mkdir -p "$WORKDIR" "$LOGDIR"
exec 9>"$WORKDIR/.lock"
if ! flock -n 9; then
    # Several developers (or helpers) share one build tree: wait our turn
    say "another qemu-build.sh is running on $WORKDIR: waiting for it"
    flock 9
fi
T_START=$EPOCHREALTIME

# --- deps ----------------------------------------------------------------
phase deps
"$REPO/scripts/install-qemu-deps.sh"
phase_done

# --- fetch ---------------------------------------------------------------
phase fetch
PINNED=$(tr -d '[:space:]' <"$VERSION_FILE")
[ -n "$PINNED" ] || die "$VERSION_FILE is empty"

version_dir() { echo "$WORKDIR/source/${1//:/_}"; }

# Newest 1:10.0.x among the source versions apt knows about ($1)
newest_10_0() {
    local v newest=
    for v in $1; do
        case $v in
            1:10.0.*) if [ -z "$newest" ] || dpkg --compare-versions "$v" gt "$newest"; then
                          newest=$v
                      fi ;;
        esac
    done
    echo "$newest"
}

VERSION=$PINNED
fetch_note="cached"
if [ ! -f "$(version_dir "$VERSION")/.complete" ]; then
    available=$(apt-cache showsrc qemu 2>/dev/null | sed -n 's/^Version: //p')
    if ! grep -qxF "$PINNED" <<<"$available"; then
        VERSION=$(newest_10_0 "$available")
        [ -n "$VERSION" ] || die "qemu $PINNED is not in the archive and no 10.0.x source is available"
        loud "qemu $PINNED (pinned in QEMU_VERSION) is NOT available from the archive any more." \
             "Building the newest 10.0.x available instead: $VERSION" \
             "Update QEMU_VERSION and check that patches/ still apply."
    fi
fi
SRCDIR=$(version_dir "$VERSION")
if [ ! -f "$SRCDIR/.complete" ]; then
    rm -rf "$SRCDIR.tmp"
    mkdir -p "$SRCDIR.tmp"
    say "apt-get source qemu=$VERSION (log: $LOGDIR/fetch.log)"
    # Downloads as root anyway (the _apt sandbox user cannot write here)
    if ! (cd "$SRCDIR.tmp" && apt-get source -q -o APT::Sandbox::User=root "qemu=$VERSION") \
            >"$LOGDIR/fetch.log" 2>&1; then
        show_log_tail "$LOGDIR/fetch.log"
        die "apt-get source failed"
    fi
    touch "$SRCDIR.tmp/.complete"
    rm -rf "$SRCDIR"
    mv "$SRCDIR.tmp" "$SRCDIR"
    fetch_note="fetched"
fi
PRISTINE=$(find "$SRCDIR" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' -print -quit)
[ -n "$PRISTINE" ] && [ -x "$PRISTINE/configure" ] || die "no extracted source tree in $SRCDIR"
phase_done "$VERSION, $fetch_note: $PRISTINE"

# --- tree ----------------------------------------------------------------
phase tree
shopt -s nullglob
PATCHES=("$REPO"/patches/*.patch)
shopt -u nullglob
SERIES_HASH=$( { echo "$VERSION"; for p in "${PATCHES[@]}"; do
                   basename "$p"; cat "$p"; done; } | sha256sum | cut -d' ' -f1)
STATE=$TREE/.git/vma-state              # lives and dies with the working tree

tgit() { git -C "$TREE" "${GIT_IDENT[@]}" "$@"; }
state() { cat "$STATE/$1" 2>/dev/null || true; }
dirty() { [ -n "$(tgit status --porcelain --untracked-files=no)" ]; }

# Commit patches/ on top of `pristine` the way `git am` does (mailinfo,
# apply to the index, commit; message cleaned up, committer date = author
# date, so the same series gives the same commits), but in a private index:
# no file of the work tree is touched.  Prints the last commit.
series_commits() {
    local tmp parent tree p
    tmp=$(mktemp -d)
    parent=$(tgit rev-parse pristine)
    GIT_INDEX_FILE=$tmp/index tgit read-tree pristine
    for p in "${PATCHES[@]}"; do
        tgit mailinfo "$tmp/msg" "$tmp/diff" <"$p" >"$tmp/info"
        if ! GIT_INDEX_FILE=$tmp/index tgit apply --cached --whitespace=nowarn \
                "$tmp/diff" 2>"$tmp/err"; then
            cat "$tmp/err" >&2
            rm -rf "$tmp"
            die "patch $(basename "$p") does not apply to qemu $VERSION"
        fi
        tree=$(GIT_INDEX_FILE=$tmp/index tgit write-tree)
        parent=$(
            GIT_AUTHOR_NAME=$(sed -n 's/^Author: //p' "$tmp/info")
            GIT_AUTHOR_EMAIL=$(sed -n 's/^Email: //p' "$tmp/info")
            GIT_AUTHOR_DATE=$(sed -n 's/^Date: //p' "$tmp/info")
            GIT_COMMITTER_DATE=$GIT_AUTHOR_DATE
            export GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_AUTHOR_DATE GIT_COMMITTER_DATE
            { sed -n 's/^Subject: //p' "$tmp/info"; echo; cat "$tmp/msg"; } |
                git stripspace | tgit commit-tree "$tree" -p "$parent")
    done
    rm -rf "$tmp"
    echo "$parent"
}

# Refuse to throw away work in the working tree that is not in patches/
# (unless the tree to switch to, $2, has exactly the same content)
check_discardable() {
    [ "${QEMU_FORCE_RESET:-0}" = 1 ] && return 0
    local how="export them (git -C $TREE format-patch pristine -o $REPO/patches) or rerun with QEMU_FORCE_RESET=1 to discard them"
    if dirty; then
        tgit status --short --untracked-files=no >&2
        die "$TREE has uncommitted changes to QEMU files that the $1 would discard: commit and $how"
    fi
    if [ "$(tgit rev-parse HEAD)" != "$(state head)" ] &&
       { [ -z "${2:-}" ] || [ "$(tgit rev-parse "HEAD^{tree}")" != "$(tgit rev-parse "$2^{tree}")" ]; }; then
        tgit log --oneline "$(state head)..HEAD" >&2 2>/dev/null || true
        die "$TREE has commits that are not in patches/ and the $1 would drop them: $how"
    fi
}

tree_note="unchanged"
if [ -d "$TREE/.git" ] && [ "$(state base)" != "$VERSION" ]; then
    check_discardable "switch to qemu $VERSION"
    say "pristine version changed ($(state base) -> $VERSION): recreating $TREE"
    rm -rf "$TREE"
fi
if [ ! -d "$TREE/.git" ]; then
    say "creating working tree $TREE"
    rm -rf "$TREE.tmp"
    # .pc/ is quilt's bookkeeping of Debian's patches, not source
    rsync -a --exclude=/.pc "$PRISTINE/" "$TREE.tmp/"
    git -C "$TREE.tmp" init -q
    git -C "$TREE.tmp" config gc.auto 0
    echo /build/ >>"$TREE.tmp/.git/info/exclude"
    git -C "$TREE.tmp" add -A -f .
    git -C "$TREE.tmp" "${GIT_IDENT[@]}" commit -q -m "pristine" \
        -m "Debian source package qemu $VERSION as extracted by apt-get source."
    git -C "$TREE.tmp" tag pristine
    mkdir -p "$TREE.tmp/.git/vma-state"
    echo "$VERSION" >"$TREE.tmp/.git/vma-state/base"
    git -C "$TREE.tmp" rev-parse HEAD >"$TREE.tmp/.git/vma-state/head"
    mv "$TREE.tmp" "$TREE"
fi
if [ "$(state series)" != "$SERIES_HASH" ]; then
    new=$(series_commits)
    if [ "$new" != "$(tgit rev-parse HEAD)" ]; then
        check_discardable "update to the changed patches/" "$new"
        # Rewrites only the files that differ between the two trees: the
        # rest keep their mtimes, so ninja rebuilds only what the change
        # touches (reset+am would rewrite every patched file)
        tgit reset -q --hard "$new"
        tree_note="${#PATCHES[@]} patches applied"
    fi
    echo "$new" >"$STATE/head"
    echo "$SERIES_HASH" >"$STATE/series"
elif [ "$(tgit rev-parse HEAD)" != "$(state head)" ] || dirty; then
    say "note: $TREE has changes not in patches/ (building them as they are)"
    tree_note="local changes not in patches/"
fi
phase_done "$tree_note"

# --- overlay -------------------------------------------------------------
phase overlay
# This repo's files that belong in QEMU's tree, NUL separated
overlay_files() {
    (
        cd "$REPO"
        if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
            git ls-files -z --cached --others --exclude-standard
        else
            find . -type f -printf '%P\0'
        fi
    ) | while IFS= read -r -d '' f; do
        case $f in
            # the standalone build and repo tooling, never part of QEMU
            # (Makefile: the repo's make test/patches/demo, not QEMU's Makefile)
            meson.build|meson_options.txt|README.md|QEMU_VERSION|Makefile) continue ;;
            .*|tests/vma/*|tests/guest/*|tests/ceph/*|bench/*|scripts/*|patches/*|build/*|build-*/*) continue ;;
            # the design rationale goes into the cover letter, not the tree
            docs/backup-rfc.txt) continue ;;
        esac
        [ -f "$REPO/$f" ] || continue       # deleted but still in git's index
        printf '%s\0' "$f"
    done
}
LIST=$LOGDIR/overlay.list0
overlay_files >"$LIST"
# New files only: an overlay file QEMU (or the series) already has would
# silently replace it - changes to QEMU files belong in patches/
clash=$(xargs -0 -r git -C "$TREE" --literal-pathspecs ls-files -- <"$LIST")
[ -z "$clash" ] || die "overlay files that QEMU's tree already tracks (put changes to them in patches/): $clash"
# Files overlaid last time but gone from the repo: remove them from the tree
if [ -f "$STATE/overlay.list" ]; then
    while IFS= read -r f; do
        say "removing $f (no longer in the repo)"
        rm -f "$TREE/$f"
    done < <(comm -23 <(sort "$STATE/overlay.list") <(tr '\0' '\n' <"$LIST" | sort))
fi
changed=$(rsync -lp --checksum --from0 --files-from="$LIST" --out-format='%i %n' \
              "$REPO/" "$TREE/" | awk '$1 ~ /^>f/ { print $2 }')
tr '\0' '\n' <"$LIST" >"$STATE/overlay.list"
n_changed=$(printf '%s' "$changed" | grep -c . || true)
shown=$(echo $changed | tr ' ' '\n' | head -n 8 | tr '\n' ' ')
[ "$n_changed" -le 8 ] || shown+="..."
phase_done "$(tr -cd '\0' <"$LIST" | wc -c) files, $n_changed updated${changed:+: $shown}"

# --- configure -----------------------------------------------------------
phase configure
CONFIG_STAMP=$BUILD/.vma-configure-stamp
# configure's probes depend on the installed packages: re-run it when the
# dependency list changes
config_hash=$( { printf '%s\n' "$VERSION" "$TREE" "${CONFIGURE_ARGS[@]}"
                 cat "$REPO/scripts/install-qemu-deps.sh"; } | sha256sum | cut -d' ' -f1)
config_note="up to date"
if [ ! -f "$BUILD/build.ninja" ] || [ "$(cat "$CONFIG_STAMP" 2>/dev/null)" != "$config_hash" ]; then
    mkdir -p "$BUILD"
    rm -f "$CONFIG_STAMP"
    say "configure ${CONFIGURE_ARGS[*]} (log: $LOGDIR/configure.log)"
    if ! (cd "$BUILD" && ../configure "${CONFIGURE_ARGS[@]}") >"$LOGDIR/configure.log" 2>&1; then
        show_log_tail "$LOGDIR/configure.log"
        die "configure failed"
    fi
    echo "$config_hash" >"$CONFIG_STAMP"
    config_note="ran"
fi
phase_done "$config_note"

# --- build ---------------------------------------------------------------
phase build
# ccache's global counters are shared with every other build on the machine:
# count this build's hits and misses in a stats log of its own
export CCACHE_STATSLOG=$LOGDIR/ccache-stats.log
: >"$CCACHE_STATSLOG"
say "ninja -C $BUILD (log: $LOGDIR/build.log)"
if ! ninja -C "$BUILD" >"$LOGDIR/build.log" 2>&1; then
    grep -E 'error|FAILED' "$LOGDIR/build.log" | head -40 >&2 || true
    show_log_tail "$LOGDIR/build.log" 20
    die "build failed"
fi
# Firmware built by make, not ninja (pc-bios/optionrom: kvmvapic.bin,
# linuxboot_dma.bin, ...): QEMU's own Makefile does this in `make all`
subdirs=$(sed -n 's/^SUBDIRS=//p' "$BUILD/config-host.mak")
for sub in $subdirs; do
    if ! make -C "$BUILD/$sub" TARGET_DIR="$sub/" all >>"$LOGDIR/build.log" 2>&1; then
        show_log_tail "$LOGDIR/build.log" 20
        die "building $sub failed"
    fi
done
hits=$(grep -cxE 'direct_cache_hit|preprocessed_cache_hit' "$CCACHE_STATSLOG" || true)
misses=$(grep -cx 'cache_miss' "$CCACHE_STATSLOG" || true)
steps=$(grep -c '^\[[0-9]*/[0-9]*\]' "$LOGDIR/build.log" || true)
compiled=$(grep -c '^\[[0-9]*/[0-9]*\] Compiling C' "$LOGDIR/build.log" || true)
if [ "$compiled" -gt 0 ] && [ $((hits + misses)) -eq 0 ]; then
    loud "ccache saw none of the $compiled compilations: it is not being used"
fi
warnings=$(grep -E 'warning:' "$LOGDIR/build.log" | sort -u || true)
if [ -n "$warnings" ]; then
    say "build warnings:"
    echo "$warnings" | head -50 >&2
fi
phase_done "$steps steps, $compiled C compilations, ccache $hits hits / $misses misses"

# Run from the build dir, QEMU relocates every data/firmware path into
# build/qemu-bundle/ (that is where `-L help` looks), so the configured
# firmware path alone does not find Debian's seabios: link the system
# firmware dirs into the bundle, or the PC machine (iotests!) fails with
# "could not load PC BIOS 'bios-256k.bin'".  The option ROMs built above go
# into the bundle's data dir (default prefix /usr/local), as installing would.
datadir=$BUILD/qemu-bundle/usr/local/share/qemu
if [[ " $subdirs " == *" pc-bios/optionrom "* ]]; then
    mkdir -p "$datadir"
    for f in "$BUILD"/pc-bios/optionrom/*.bin; do
        [ -e "$datadir/${f##*/}" ] || ln -s "$f" "$datadir/${f##*/}"
    done
else
    loud "configure did not enable pc-bios/optionrom (no i386 compiler: gcc-multilib?):" \
         "no kvmvapic.bin, so every PC machine start prints a ROM error"
fi
for d in "${FIRMWARE_DIRS[@]}"; do
    link=$BUILD/qemu-bundle$d
    if [ -d "$d" ] && [ ! -e "$link" ]; then
        mkdir -p "$(dirname "$link")"
        ln -sfn "$d" "$link"
    fi
done
[ -e "$BUILD/qemu-bundle/usr/share/seabios/bios-256k.bin" ] ||
    loud "no bios-256k.bin for the built QEMU: the PC machine will not start (install seabios)"

# --- result --------------------------------------------------------------
for b in qemu-system-x86_64 qemu-img qemu-io; do
    [ -x "$BUILD/$b" ] || die "$BUILD/$b was not built"
done
total=$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
{
    echo "qemu-build: timings"
    printf '  %s\n' "${TIMINGS[@]}"
    printf '  %-9s %7ss\n' total "$total"
} >&2
echo "build dir:          $BUILD"
echo "qemu-system-x86_64: $BUILD/qemu-system-x86_64"
echo "qemu-img:           $BUILD/qemu-img"
echo "qemu-io:            $BUILD/qemu-io"
